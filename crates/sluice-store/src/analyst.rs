//! Read queries for analysts: anomalies (filtered, keyset-paginated), one anomaly with its
//! members, and a client's view (profile, recent minutes, anomaly history).
//!
//! Pages are ordered by `first_detected DESC, id DESC` and continued with an opaque cursor that
//! names the last row of the previous page, so concurrent inserts never shift a page (no
//! duplicates, no gaps). Queries that read several tables run in one read-only
//! `REPEATABLE READ` transaction, so counts and rows agree.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};
use sluice_core::anomaly::{AnomalyKind, AnomalyState, Reason};
use sluice_core::ClientKind;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};

use crate::error::{Result, StoreError};
use crate::wire::{rfc3339, rfc3339_opt};

/// Page size used when a caller names none.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page of anomalies.
pub const MAX_LIMIT: u32 = 500;
/// Members listed with one anomaly when a caller names no limit.
pub const DEFAULT_MEMBERS_LIMIT: u32 = 100;
/// Largest page of members.
pub const MAX_MEMBERS_LIMIT: u32 = 1000;
/// Recent minutes shown in a client's view when a caller names no window (6 hours).
pub const DEFAULT_WINDOW_MINUTES: u32 = 360;
/// Longest window of recent minutes (7 days).
pub const MAX_WINDOW_MINUTES: u32 = 7 * 24 * 60;

// ----------------------------------------------------------------------------------------------
// Wire-facing types

/// An anomaly as stored: one client, or a campaign of identities acting together.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredAnomaly {
    pub id: i64,
    /// The identity value itself (for a campaign: the member the detector named first).
    pub client: String,
    pub client_kind: ClientKind,
    pub kind: AnomalyKind,
    /// Highest score so far, in [0, 1].
    pub score: f32,
    /// Log time of the first minute that flagged it.
    #[serde(serialize_with = "rfc3339")]
    pub first_detected: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub last_flagged: DateTime<Utc>,
    pub state: AnomalyState,
    pub reasons: Vec<Reason>,
    /// What the campaign members share; `None` for a single client.
    pub campaign: Option<String>,
    pub member_count: i32,
}

/// An identity named by an anomaly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Member {
    pub client: String,
    pub client_kind: ClientKind,
}

/// One anomaly with one page of its members.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AnomalyDetail {
    #[serde(flatten)]
    pub anomaly: StoredAnomaly,
    /// Members ordered by `(client_kind, client)` in byte order.
    pub members: Vec<Member>,
    /// All members of the anomaly (not only this page).
    pub members_total: i64,
    /// Where the next page of members starts, if there is one.
    #[serde(rename = "members_next_cursor")]
    pub members_next: Option<MemberCursor>,
}

/// A page of anomalies and where the next one starts (`None` on the last page).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AnomalyPage {
    pub items: Vec<StoredAnomaly>,
    #[serde(rename = "next_cursor")]
    pub next: Option<AnomalyCursor>,
}

/// Which anomalies to list. Every filter given must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnomalyFilter {
    pub state: Option<AnomalyState>,
    pub kind: Option<AnomalyKind>,
    /// The anomaly's client or any of its members has this value.
    pub client: Option<String>,
    /// With `client`: the matching identity has this kind. Alone: the anomaly's client has it.
    pub client_kind: Option<ClientKind>,
    /// `first_detected >= since`.
    pub since: Option<DateTime<Utc>>,
    /// `first_detected < until`.
    pub until: Option<DateTime<Utc>>,
}

/// Hour-of-day statistics of a profile (requests per active minute in that UTC hour).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct HourStat {
    pub minutes: u32,
    /// `None` when `minutes` is 0.
    pub median: Option<f32>,
    pub mad: Option<f32>,
}

/// A client's profile (`client_profiles`): the baseline recent behaviour is compared with.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct StoredProfile {
    #[serde(serialize_with = "rfc3339")]
    pub computed_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub history_from: DateTime<Utc>,
    pub active_minutes: i32,
    #[serde(serialize_with = "rfc3339")]
    pub first_seen: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub last_seen: DateTime<Utc>,
    pub requests_median: f32,
    pub requests_mad: f32,
    pub requests_p95: f32,
    pub peak_10s_p95: f32,
    pub distinct_routes_median: f32,
    pub error_share_median: f32,
    /// 24 entries, index = hour of day (UTC).
    #[serde(serialize_with = "serialize_json")]
    pub hour_of_day: Json<Vec<HourStat>>,
}

fn serialize_json<T: Serialize, S: Serializer>(
    v: &Json<T>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    v.0.serialize(s)
}

/// One closed minute of a client's traffic (`client_minute_features`), with what its own baseline
/// expected and the detector's score.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct RecentMinute {
    /// Start of the minute (log time).
    #[serde(serialize_with = "rfc3339")]
    pub minute: DateTime<Utc>,
    pub requests: i32,
    /// `None` while the client has no baseline.
    pub expected_requests: Option<f32>,
    pub peak_10s: i32,
    pub distinct_routes: i32,
    pub distinct_paths: i32,
    pub distinct_ips: i32,
    pub distinct_uas: i32,
    pub error_share: f32,
    pub score: Option<f32>,
}

/// The log-time window of a client view's recent minutes: minutes that start after `since` and
/// no later than `until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Window {
    #[serde(serialize_with = "rfc3339")]
    pub since: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub until: DateTime<Utc>,
    pub minutes: u32,
}

/// What to show in a client's view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientViewOptions {
    /// Which identity kind, when the value exists under several; `None`: the first kind (in
    /// `ClientKind::ALL` order: api_key, consumer, user, ip) under which it exists.
    pub kind: Option<ClientKind>,
    /// End of the window of recent minutes; `None`: the client's last active minute.
    pub until: Option<DateTime<Utc>>,
    /// Length of the window of recent minutes.
    pub window_minutes: u32,
    /// Most anomalies listed in the history.
    pub anomalies_limit: u32,
}

impl Default for ClientViewOptions {
    fn default() -> Self {
        ClientViewOptions {
            kind: None,
            until: None,
            window_minutes: DEFAULT_WINDOW_MINUTES,
            anomalies_limit: DEFAULT_LIMIT,
        }
    }
}

/// A client's baseline against its recent behaviour, and its anomaly history.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClientView {
    pub client: String,
    pub client_kind: ClientKind,
    /// Other kinds the same value exists under (ask for them with `kind`).
    pub other_kinds: Vec<ClientKind>,
    /// Start of the client's last active minute known (profile or minute features).
    #[serde(serialize_with = "rfc3339_opt")]
    pub last_seen: Option<DateTime<Utc>>,
    /// `None` when the client has no minutes at all and no `until` was given.
    pub window: Option<Window>,
    pub profile: Option<StoredProfile>,
    /// Active minutes in the window, oldest first.
    pub recent: Vec<RecentMinute>,
    /// Anomalies naming the client (as their client or as a member), newest first.
    pub anomalies: Vec<StoredAnomaly>,
    /// All anomalies naming the client.
    pub anomalies_total: i64,
    /// Continue the history with `GET /v1/anomalies?client=..&client_kind=..&cursor=..`.
    #[serde(rename = "anomalies_next_cursor")]
    pub anomalies_next: Option<AnomalyCursor>,
}

// ----------------------------------------------------------------------------------------------
// Cursors

/// A cursor that was not produced by this server (edited, truncated, or of another list).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid cursor")]
pub struct InvalidCursor;

const ANOMALY_CURSOR_TAG: u8 = 1;
const MEMBER_CURSOR_TAG: u8 = 2;
const CHECKSUM_LEN: usize = 4;

fn checksum(bytes: &[u8]) -> [u8; CHECKSUM_LEN] {
    let digest = Sha256::new()
        .chain_update(b"sluice-cursor\0")
        .chain_update(bytes)
        .finalize();
    let mut out = [0u8; CHECKSUM_LEN];
    out.copy_from_slice(&digest[..CHECKSUM_LEN]);
    out
}

/// Hex of `tag || payload || checksum`. The checksum catches edited cursors; it is not a secret
/// (a forged cursor only moves the reader within data it may read anyway).
fn encode_cursor(tag: u8, payload: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(1 + payload.len() + CHECKSUM_LEN);
    bytes.push(tag);
    bytes.extend_from_slice(payload);
    let sum = checksum(&bytes);
    bytes.extend_from_slice(&sum);
    hex::encode(bytes)
}

fn decode_cursor(tag: u8, text: &str) -> std::result::Result<Vec<u8>, InvalidCursor> {
    let bytes = hex::decode(text).map_err(|_| InvalidCursor)?;
    if bytes.len() < 1 + CHECKSUM_LEN || bytes[0] != tag {
        return Err(InvalidCursor);
    }
    let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if checksum(body) != sum {
        return Err(InvalidCursor);
    }
    Ok(body[1..].to_vec())
}

/// The last anomaly of a page, in list order (`first_detected DESC, id DESC`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AnomalyCursor {
    pub first_detected: DateTime<Utc>,
    pub id: i64,
}

impl AnomalyCursor {
    pub fn encode(&self) -> String {
        let mut payload = [0u8; 16];
        payload[..8].copy_from_slice(&self.first_detected.timestamp_micros().to_be_bytes());
        payload[8..].copy_from_slice(&self.id.to_be_bytes());
        encode_cursor(ANOMALY_CURSOR_TAG, &payload)
    }

    pub fn decode(text: &str) -> std::result::Result<AnomalyCursor, InvalidCursor> {
        let payload = decode_cursor(ANOMALY_CURSOR_TAG, text)?;
        let payload: [u8; 16] = payload.try_into().map_err(|_| InvalidCursor)?;
        let micros = i64::from_be_bytes(payload[..8].try_into().map_err(|_| InvalidCursor)?);
        let id = i64::from_be_bytes(payload[8..].try_into().map_err(|_| InvalidCursor)?);
        let first_detected = DateTime::from_timestamp_micros(micros).ok_or(InvalidCursor)?;
        Ok(AnomalyCursor { first_detected, id })
    }
}

/// The last member of a page of members, in `(client_kind, client)` byte order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberCursor {
    pub client_kind: ClientKind,
    pub client: String,
}

impl Serialize for AnomalyCursor {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.encode())
    }
}

impl MemberCursor {
    pub fn encode(&self) -> String {
        let mut payload = Vec::with_capacity(1 + self.client.len());
        let kind = ClientKind::ALL
            .iter()
            .position(|k| *k == self.client_kind)
            .unwrap_or(0);
        payload.push(kind as u8);
        payload.extend_from_slice(self.client.as_bytes());
        encode_cursor(MEMBER_CURSOR_TAG, &payload)
    }

    pub fn decode(text: &str) -> std::result::Result<MemberCursor, InvalidCursor> {
        let payload = decode_cursor(MEMBER_CURSOR_TAG, text)?;
        let (&kind, client) = payload.split_first().ok_or(InvalidCursor)?;
        let client_kind = *ClientKind::ALL.get(kind as usize).ok_or(InvalidCursor)?;
        let client = String::from_utf8(client.to_vec()).map_err(|_| InvalidCursor)?;
        Ok(MemberCursor {
            client_kind,
            client,
        })
    }
}

impl Serialize for MemberCursor {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.encode())
    }
}

// ----------------------------------------------------------------------------------------------
// Row decoding

const ANOMALY_COLUMNS: &str = "a.id, a.client_kind, a.client, a.kind, a.score, a.first_detected, \
     a.last_flagged, a.state, a.reasons, a.campaign, a.member_count";

#[derive(sqlx::FromRow)]
struct AnomalyRow {
    id: i64,
    client_kind: String,
    client: String,
    kind: String,
    score: f32,
    first_detected: DateTime<Utc>,
    last_flagged: DateTime<Utc>,
    state: String,
    reasons: Json<Vec<Reason>>,
    campaign: Option<String>,
    member_count: i32,
}

/// A value the database holds that this version cannot read: a decode error, like sqlx's own.
fn undecodable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Database(sqlx::Error::Decode(Box::new(e)))
}

fn client_kind(text: &str) -> Result<ClientKind> {
    text.parse().map_err(undecodable)
}

impl TryFrom<AnomalyRow> for StoredAnomaly {
    type Error = StoreError;
    fn try_from(r: AnomalyRow) -> Result<StoredAnomaly> {
        Ok(StoredAnomaly {
            id: r.id,
            client_kind: client_kind(&r.client_kind)?,
            client: r.client,
            kind: r.kind.parse().map_err(undecodable)?,
            score: r.score,
            first_detected: r.first_detected,
            last_flagged: r.last_flagged,
            state: r.state.parse().map_err(undecodable)?,
            reasons: r.reasons.0,
            campaign: r.campaign,
            member_count: r.member_count,
        })
    }
}

// ----------------------------------------------------------------------------------------------
// Queries

/// Begin a read-only snapshot: every statement of the transaction sees the same data.
async fn snapshot(pool: &PgPool) -> Result<sqlx::Transaction<'static, Postgres>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// List anomalies matching `filter`, newest `first_detected` first, at most `limit` (clamped to
/// 1..=[`MAX_LIMIT`]) after `after`.
#[tracing::instrument(skip_all, fields(limit))]
pub async fn list_anomalies(
    pool: &PgPool,
    filter: &AnomalyFilter,
    after: Option<AnomalyCursor>,
    limit: u32,
) -> Result<AnomalyPage> {
    let mut conn = pool.acquire().await?;
    list_anomalies_on(&mut conn, filter, after, limit.clamp(1, MAX_LIMIT)).await
}

async fn list_anomalies_on(
    conn: &mut PgConnection,
    filter: &AnomalyFilter,
    after: Option<AnomalyCursor>,
    limit: u32,
) -> Result<AnomalyPage> {
    let mut q = QueryBuilder::<Postgres>::new(format!(
        "SELECT {ANOMALY_COLUMNS} FROM anomalies a WHERE true"
    ));
    push_filter(&mut q, filter);
    if let Some(c) = after {
        q.push(" AND (a.first_detected, a.id) < (")
            .push_bind(c.first_detected)
            .push(", ")
            .push_bind(c.id)
            .push(")");
    }
    q.push(" ORDER BY a.first_detected DESC, a.id DESC LIMIT ")
        .push_bind(i64::from(limit) + 1);
    let rows: Vec<AnomalyRow> = q.build_query_as().fetch_all(&mut *conn).await?;
    let mut items = rows
        .into_iter()
        .map(StoredAnomaly::try_from)
        .collect::<Result<Vec<_>>>()?;
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|a| AnomalyCursor {
            first_detected: a.first_detected,
            id: a.id,
        })
    } else {
        None
    };
    Ok(AnomalyPage { items, next })
}

/// `AND ...` for every filter given, over `anomalies a`.
fn push_filter(q: &mut QueryBuilder<'_, Postgres>, f: &AnomalyFilter) {
    if let Some(state) = f.state {
        q.push(" AND a.state = ").push_bind(state.as_str());
    }
    if let Some(kind) = f.kind {
        q.push(" AND a.kind = ").push_bind(kind.as_str());
    }
    match (&f.client, f.client_kind) {
        (Some(client), kind) => {
            // A semi-join over two index lookups (anomalies_client, anomaly_members_client),
            // not an OR the planner could only answer by scanning every anomaly.
            q.push(" AND a.id IN (SELECT id FROM anomalies WHERE client = ")
                .push_bind(client.clone());
            if let Some(kind) = kind {
                q.push(" AND client_kind = ").push_bind(kind.as_str());
            }
            q.push(" UNION ALL SELECT anomaly_id FROM anomaly_members WHERE client = ")
                .push_bind(client.clone());
            if let Some(kind) = kind {
                q.push(" AND client_kind = ").push_bind(kind.as_str());
            }
            q.push(")");
        }
        (None, Some(kind)) => {
            q.push(" AND a.client_kind = ").push_bind(kind.as_str());
        }
        (None, None) => {}
    }
    if let Some(since) = f.since {
        q.push(" AND a.first_detected >= ").push_bind(since);
    }
    if let Some(until) = f.until {
        q.push(" AND a.first_detected < ").push_bind(until);
    }
}

async fn count_anomalies_on(conn: &mut PgConnection, filter: &AnomalyFilter) -> Result<i64> {
    let mut q = QueryBuilder::<Postgres>::new("SELECT count(*) FROM anomalies a WHERE true");
    push_filter(&mut q, filter);
    Ok(q.build_query_scalar().fetch_one(&mut *conn).await?)
}

/// One anomaly with at most `members_limit` (clamped to 1..=[`MAX_MEMBERS_LIMIT`]) of its
/// members after `members_after`. [`StoreError::NotFound`] when there is no such anomaly.
#[tracing::instrument(skip_all, fields(id))]
pub async fn get_anomaly(
    pool: &PgPool,
    id: i64,
    members_after: Option<&MemberCursor>,
    members_limit: u32,
) -> Result<AnomalyDetail> {
    let limit = members_limit.clamp(1, MAX_MEMBERS_LIMIT);
    let mut tx = snapshot(pool).await?;
    let row: Option<AnomalyRow> = sqlx::query_as(&format!(
        "SELECT {ANOMALY_COLUMNS} FROM anomalies a WHERE a.id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let anomaly =
        StoredAnomaly::try_from(row.ok_or_else(|| StoreError::NotFound(format!("anomaly {id}")))?)?;
    // Byte order (COLLATE "C"), so pages do not depend on the database's locale.
    let rows: Vec<(String, String)> = sqlx::query_as(
        r#"SELECT client_kind, client FROM anomaly_members
           WHERE anomaly_id = $1
             AND ($2::text IS NULL
                  OR (client_kind COLLATE "C", client COLLATE "C") > ($2::text, $3::text))
           ORDER BY client_kind COLLATE "C", client COLLATE "C" LIMIT $4"#,
    )
    .bind(id)
    .bind(members_after.map(|c| c.client_kind.as_str()))
    .bind(members_after.map(|c| c.client.as_str()))
    .bind(i64::from(limit) + 1)
    .fetch_all(&mut *tx)
    .await?;
    let members_total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM anomaly_members WHERE anomaly_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
    tx.commit().await?;
    let mut members = rows
        .into_iter()
        .map(|(kind, client)| {
            Ok(Member {
                client_kind: client_kind(&kind)?,
                client,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let members_next = if members.len() > limit as usize {
        members.truncate(limit as usize);
        members.last().map(|m| MemberCursor {
            client_kind: m.client_kind,
            client: m.client.clone(),
        })
    } else {
        None
    };
    Ok(AnomalyDetail {
        anomaly,
        members,
        members_total,
        members_next,
    })
}

/// The kinds under which `client` is known (profile, minute features, anomaly client or
/// member), in `ClientKind::ALL` order.
pub async fn client_kinds(pool: &PgPool, client: &str) -> Result<Vec<ClientKind>> {
    let mut conn = pool.acquire().await?;
    client_kinds_on(&mut conn, client).await
}

async fn client_kinds_on(conn: &mut PgConnection, client: &str) -> Result<Vec<ClientKind>> {
    let kinds: Vec<&str> = ClientKind::ALL.iter().map(|k| k.as_str()).collect();
    let found: Vec<String> = sqlx::query_scalar(
        "SELECT k FROM unnest($1::text[]) WITH ORDINALITY AS t(k, o)
         WHERE EXISTS (SELECT 1 FROM client_profiles WHERE client_kind = k AND client = $2)
            OR EXISTS (SELECT 1 FROM client_minute_features WHERE client_kind = k AND client = $2)
            OR EXISTS (SELECT 1 FROM anomalies WHERE client_kind = k AND client = $2)
            OR EXISTS (SELECT 1 FROM anomaly_members WHERE client_kind = k AND client = $2)
         ORDER BY o",
    )
    .bind(kinds)
    .bind(client)
    .fetch_all(&mut *conn)
    .await?;
    found.iter().map(|k| client_kind(k)).collect()
}

/// A client's view: which identity (see [`ClientViewOptions::kind`]), its profile, its active
/// minutes in the window, and the anomalies naming it. [`StoreError::NotFound`] when the value
/// is unknown (under the kind asked for, if any).
#[tracing::instrument(skip_all)]
pub async fn client_view(
    pool: &PgPool,
    client: &str,
    opts: &ClientViewOptions,
) -> Result<ClientView> {
    let mut tx = snapshot(pool).await?;
    let kinds = client_kinds_on(&mut tx, client).await?;
    let kind = match opts.kind {
        Some(k) if kinds.contains(&k) => k,
        Some(k) => {
            return Err(StoreError::NotFound(format!(
                "client {client:?} of kind {k}"
            )))
        }
        None => *kinds
            .first()
            .ok_or_else(|| StoreError::NotFound(format!("client {client:?}")))?,
    };
    let other_kinds = kinds.into_iter().filter(|k| *k != kind).collect();

    let profile: Option<StoredProfile> = sqlx::query_as(
        "SELECT computed_at, history_from, active_minutes, first_seen, last_seen, requests_median,
                requests_mad, requests_p95, peak_10s_p95, distinct_routes_median,
                error_share_median, hour_of_day
         FROM client_profiles WHERE client_kind = $1 AND client = $2",
    )
    .bind(kind.as_str())
    .bind(client)
    .fetch_optional(&mut *tx)
    .await?;
    let newest_minute: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT max(minute) FROM client_minute_features WHERE client_kind = $1 AND client = $2",
    )
    .bind(kind.as_str())
    .bind(client)
    .fetch_one(&mut *tx)
    .await?;
    let last_seen = match (profile.as_ref().map(|p| p.last_seen), newest_minute) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };

    let minutes = opts.window_minutes.clamp(1, MAX_WINDOW_MINUTES);
    let window = opts.until.or(last_seen).map(|until| Window {
        since: until - TimeDelta::minutes(i64::from(minutes)),
        until,
        minutes,
    });
    let recent: Vec<RecentMinute> = match window {
        Some(w) => {
            sqlx::query_as(
                "SELECT minute, requests, expected_requests, peak_10s, distinct_routes,
                        distinct_paths, distinct_ips, distinct_uas, error_share, score
                 FROM client_minute_features
                 WHERE client_kind = $1 AND client = $2 AND minute > $3 AND minute <= $4
                 ORDER BY minute",
            )
            .bind(kind.as_str())
            .bind(client)
            .bind(w.since)
            .bind(w.until)
            .fetch_all(&mut *tx)
            .await?
        }
        None => Vec::new(),
    };

    let filter = AnomalyFilter {
        client: Some(client.to_owned()),
        client_kind: Some(kind),
        ..Default::default()
    };
    let page = list_anomalies_on(
        &mut tx,
        &filter,
        None,
        opts.anomalies_limit.clamp(1, MAX_LIMIT),
    )
    .await?;
    let anomalies_total = count_anomalies_on(&mut tx, &filter).await?;
    tx.commit().await?;

    Ok(ClientView {
        client: client.to_owned(),
        client_kind: kind,
        other_kinds,
        last_seen,
        window,
        profile,
        recent,
        anomalies: page.items,
        anomalies_total,
        anomalies_next: page.next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn anomaly_cursors_round_trip() {
        for c in [
            AnomalyCursor {
                first_detected: at("2026-03-02T04:10:00Z"),
                id: 1,
            },
            AnomalyCursor {
                first_detected: at("1970-01-01T00:00:00.000001Z"),
                id: i64::MAX,
            },
        ] {
            assert_eq!(AnomalyCursor::decode(&c.encode()), Ok(c));
        }
    }

    #[test]
    fn member_cursors_round_trip() {
        for c in [
            MemberCursor {
                client_kind: ClientKind::Ip,
                client: "2001:db8::1".into(),
            },
            MemberCursor {
                client_kind: ClientKind::ApiKey,
                client: "ak_é/ü".into(),
            },
        ] {
            assert_eq!(MemberCursor::decode(&c.encode()), Ok(c));
        }
    }

    #[test]
    fn edited_or_foreign_cursors_are_rejected() {
        let c = AnomalyCursor {
            first_detected: at("2026-03-02T04:10:00Z"),
            id: 42,
        }
        .encode();
        assert_eq!(c.len(), 2 * (1 + 16 + CHECKSUM_LEN));
        // Every single-character edit is caught.
        for i in 0..c.len() {
            let mut edited = c.clone().into_bytes();
            edited[i] = if edited[i] == b'0' { b'1' } else { b'0' };
            let edited = String::from_utf8(edited).unwrap();
            assert_eq!(
                AnomalyCursor::decode(&edited),
                Err(InvalidCursor),
                "{edited}"
            );
        }
        for bad in ["", "zz", "00", &c[..c.len() - 2], &format!("{c}00")] {
            assert_eq!(AnomalyCursor::decode(bad), Err(InvalidCursor), "{bad:?}");
        }
        // A member cursor is not an anomaly cursor, and the other way round.
        let m = MemberCursor {
            client_kind: ClientKind::Ip,
            client: "10.0.0.1".into(),
        }
        .encode();
        assert_eq!(AnomalyCursor::decode(&m), Err(InvalidCursor));
        assert_eq!(MemberCursor::decode(&c), Err(InvalidCursor));
    }
}
