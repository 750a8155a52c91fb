//! The tuning step's reads and writes: what it reads over a log-time range (per-client minute
//! counters from `rollup_client_minute`, anomalies naming each client, client baselines from
//! `client_profiles`, route cost statistics from `rollup_route_minute`, each client's requests
//! per route and minute from `access_log` for fair share, the latest capacity factors), the reputation state and its events, limit suggestions (inserted, superseded,
//! expired, reverted), the auto-approval configuration and the tuning cursor.
//!
//! Invariants: at most one pending suggestion per rule id (the unique index
//! `limit_suggestions_one_pending`): inserting a newer one expires the older one in the same
//! transaction, with a comment naming its successor; expiry and reverts compare log time, never
//! the wall clock; the cursor only moves forward.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sluice_core::approval::AutoApprovalConfig;
use sluice_core::policy::Rule;
use sluice_core::reputation::{AnomalySignal, MinuteCounters, Reputation, ReputationEvent};
use sluice_core::tuning::{ClientBaseline, RouteCostStats};
use sluice_core::{AnomalyKind, AnomalyState, ClientKind, Timestamp};
use sqlx::{PgPool, Row};

use crate::detection::{from_chrono, to_chrono};
use crate::error::{Result, StoreError};

/// Who the store names as the actor of what the tuner does by itself (expiry, supersession,
/// reverts).
pub const TUNER_ACTOR: &str = "sluice:tuner";

/// One client minute of `rollup_client_minute`: the counters the reputation folds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientMinute {
    pub client_kind: ClientKind,
    pub client: String,
    pub counters: MinuteCounters,
}

fn sat_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

/// Every client minute in `[from, to)`, ordered by client then minute. Minutes of an unknown
/// client kind are skipped.
pub async fn client_minutes(
    pool: &PgPool,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<ClientMinute>> {
    let mut rows = sqlx::query(
        "SELECT client_kind, client, minute, requests, status_401, status_403, status_404, \
                status_429 \
         FROM rollup_client_minute WHERE minute >= $1 AND minute < $2 \
         ORDER BY client, client_kind, minute",
    )
    .bind(to_chrono(from))
    .bind(to_chrono(to))
    .fetch(pool);
    let mut out = Vec::new();
    while let Some(row) = rows.try_next().await? {
        let Ok(kind) = row.try_get::<&str, _>(0)?.parse::<ClientKind>() else {
            continue;
        };
        let minute: DateTime<Utc> = row.try_get(2)?;
        out.push(ClientMinute {
            client_kind: kind,
            client: row.try_get::<String, _>(1)?,
            counters: MinuteCounters {
                minute: from_chrono(minute),
                requests: sat_u32(row.try_get(3)?),
                status_401: sat_u32(row.try_get(4)?),
                status_403: sat_u32(row.try_get(5)?),
                status_404: sat_u32(row.try_get(6)?),
                status_429: sat_u32(row.try_get(7)?),
            },
        });
    }
    Ok(out)
}

/// An anomaly naming a client (as its client or as a campaign member).
#[derive(Clone, Debug, PartialEq)]
pub struct ClientAnomaly {
    pub client_kind: ClientKind,
    pub client: String,
    pub signal: AnomalySignal,
    pub last_flagged: Timestamp,
}

/// The anomalies that matter to the reputation fold and the tuner at log time `to`: every
/// anomaly detected at or before `to` that is still open, or was first detected after `from`
/// (so a fold over `(from, to]` sees every anomaly it must penalise), once per identity it names.
/// Ordered by client, then first detection.
#[allow(clippy::type_complexity)] // one sqlx row tuple, read once and mapped below
pub async fn client_anomalies(
    pool: &PgPool,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<ClientAnomaly>> {
    let rows: Vec<(
        String,
        String,
        i64,
        String,
        f32,
        DateTime<Utc>,
        DateTime<Utc>,
        String,
    )> = sqlx::query_as(
        "SELECT m.client_kind, m.client, a.id, a.kind, a.score, a.first_detected, \
                    a.last_flagged, a.state \
             FROM anomalies a \
             JOIN LATERAL ( \
                 SELECT a.client_kind, a.client \
                 UNION \
                 SELECT am.client_kind, am.client FROM anomaly_members am \
                 WHERE am.anomaly_id = a.id \
             ) m ON true \
             WHERE a.first_detected <= $2 AND (a.state = 'open' OR a.first_detected > $1) \
             ORDER BY m.client, m.client_kind, a.first_detected, a.id",
    )
    .bind(to_chrono(from))
    .bind(to_chrono(to))
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (ck, client, id, kind, score, first, last, state) in rows {
        let Ok(client_kind) = ck.parse::<ClientKind>() else {
            continue;
        };
        let kind: AnomalyKind = kind
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("anomaly {id}: {e}")))?;
        let state = match state.as_str() {
            "open" => AnomalyState::Open,
            _ => AnomalyState::Resolved,
        };
        out.push(ClientAnomaly {
            client_kind,
            client,
            signal: AnomalySignal {
                id,
                kind,
                score: f64::from(score),
                first_detected: from_chrono(first),
                state,
            },
            last_flagged: from_chrono(last),
        });
    }
    Ok(out)
}

/// Every client's baseline (`client_profiles`), keyed by (kind, client).
#[allow(clippy::type_complexity)] // one sqlx row tuple, read once and mapped below
pub async fn baselines(pool: &PgPool) -> Result<HashMap<(ClientKind, String), ClientBaseline>> {
    let rows: Vec<(
        String,
        String,
        i32,
        DateTime<Utc>,
        DateTime<Utc>,
        f32,
        f32,
        f32,
        f32,
    )> = sqlx::query_as(
        "SELECT client_kind, client, active_minutes, first_seen, last_seen, requests_median, \
                    requests_mad, requests_p95, peak_10s_p95 \
             FROM client_profiles",
    )
    .fetch_all(pool)
    .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for (ck, client, active, first, last, median, mad, p95, peak) in rows {
        let Ok(kind) = ck.parse::<ClientKind>() else {
            continue;
        };
        out.insert(
            (kind, client),
            ClientBaseline {
                active_minutes: u32::try_from(active.max(0)).unwrap_or(0),
                first_seen: from_chrono(first),
                last_seen: from_chrono(last),
                requests_median: f64::from(median),
                requests_mad: f64::from(mad),
                requests_p95: f64::from(p95),
                peak_10s_p95: f64::from(peak),
            },
        );
    }
    Ok(out)
}

/// Requests, mean latency and mean bytes sent per route over `[from, to)` (the input of
/// `sluice_core::tuning::route_cost_weights`), by route.
pub async fn route_cost_stats(
    pool: &PgPool,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<RouteCostStats>> {
    let rows: Vec<(String, i64, f64, f64)> = sqlx::query_as(
        "SELECT route, sum(requests)::int8, \
                coalesce(sum(latency_sum_us)::float8 / nullif(sum(latency_count), 0), 0), \
                coalesce(sum(bytes_sent)::float8 / nullif(sum(requests), 0), 0) \
         FROM rollup_route_minute WHERE minute >= $1 AND minute < $2 \
         GROUP BY route ORDER BY route",
    )
    .bind(to_chrono(from))
    .bind(to_chrono(to))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(route, requests, latency, bytes)| RouteCostStats {
            route,
            requests: u64::try_from(requests).unwrap_or(0),
            latency_mean_us: latency,
            bytes_mean: bytes,
        })
        .collect())
}

/// Requests per client and route over `[from, to)`, counted from the raw records
/// (`access_log`): which routes a client's cost-unit limit weighs. Ordered by client, route.
pub async fn client_route_requests(
    pool: &PgPool,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<(String, String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT client, route, count(*) FROM access_log \
         WHERE ts >= $1 AND ts < $2 AND client IS NOT NULL \
         GROUP BY client, route ORDER BY client, route",
    )
    .bind(to_chrono(from))
    .bind(to_chrono(to))
    .fetch_all(pool)
    .await?)
}

/// One client's requests on one route in one minute (from `access_log`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRouteMinute {
    pub client: String,
    pub route: String,
    pub minute: Timestamp,
    pub requests: u32,
}

/// Every client's requests per route and minute over `[from, to)`, counted from the raw records
/// (`access_log`; records without a client are left out): what fair share sizes a client's
/// demand on a route by, and what a client-and-route rule is backtested on. Ordered by client,
/// route, minute.
pub async fn client_route_minutes(
    pool: &PgPool,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<ClientRouteMinute>> {
    // Minutes by the epoch, whatever the session's time zone.
    let mut rows = sqlx::query(
        "SELECT client, route, \
                to_timestamp(floor(extract(epoch FROM ts) / 60) * 60) AS minute, count(*) \
         FROM access_log WHERE ts >= $1 AND ts < $2 AND client IS NOT NULL \
         GROUP BY client, route, minute ORDER BY client, route, minute",
    )
    .bind(to_chrono(from))
    .bind(to_chrono(to))
    .fetch(pool);
    let mut out = Vec::new();
    while let Some(row) = rows.try_next().await? {
        let minute: DateTime<Utc> = row.try_get(2)?;
        out.push(ClientRouteMinute {
            client: row.try_get(0)?,
            route: row.try_get(1)?,
            minute: from_chrono(minute),
            requests: sat_u32(row.try_get(3)?),
        });
    }
    Ok(out)
}

/// A route's capacity factor as the forecast loop last stored it.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteFactor {
    pub route: String,
    pub minute: Timestamp,
    pub factor: f64,
    /// Planned load and capacity, requests per second (when known).
    pub planned_rps: Option<f64>,
    pub capacity_rps: Option<f64>,
}

/// The last capacity factor of every route at or before `at`, by route.
#[allow(clippy::type_complexity)] // one sqlx row tuple, read once and mapped below
pub async fn capacity_factors(pool: &PgPool, at: Timestamp) -> Result<Vec<RouteFactor>> {
    let rows: Vec<(String, DateTime<Utc>, f64, Option<f64>, Option<f64>)> = sqlx::query_as(
        "SELECT DISTINCT ON (route) route, minute, factor, planned_rps, capacity_rps \
         FROM capacity_factors WHERE minute <= $1 ORDER BY route, minute DESC",
    )
    .bind(to_chrono(at))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(route, minute, factor, planned_rps, capacity_rps)| RouteFactor {
                route,
                minute: from_chrono(minute),
                factor,
                planned_rps,
                capacity_rps,
            },
        )
        .collect())
}

/// The forecast (requests per minute) of every route for the minute `minute`, by route (the
/// total is the route `*`).
pub async fn forecasts_at(pool: &PgPool, minute: Timestamp) -> Result<HashMap<String, f64>> {
    let rows: Vec<(String, f64)> = sqlx::query_as(
        "SELECT DISTINCT ON (route) route, forecast FROM forecast_points \
         WHERE minute <= $1 ORDER BY route, minute DESC",
    )
    .bind(to_chrono(minute))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// The stored reputation of one client, with the kind of its identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredReputation {
    pub client_kind: ClientKind,
    pub reputation: Reputation,
}

/// Every stored reputation, by client.
pub async fn reputations(pool: &PgPool) -> Result<HashMap<String, StoredReputation>> {
    let rows: Vec<(String, serde_json::Value)> =
        sqlx::query_as("SELECT client, state FROM client_reputation")
            .fetch_all(pool)
            .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for (client, state) in rows {
        let r: StoredReputation = serde_json::from_value(state).map_err(|e| {
            StoreError::Corrupt(format!("reputation state of client {client:?}: {e}"))
        })?;
        out.insert(client, r);
    }
    Ok(out)
}

/// One client's reputation after an update, with the events that moved it there.
#[derive(Clone, Debug, PartialEq)]
pub struct ReputationUpdate {
    pub client: String,
    pub state: StoredReputation,
    pub events: Vec<ReputationEvent>,
}

/// The `kind` column of a reputation event: the reason's tag.
fn event_kind(e: &ReputationEvent) -> String {
    serde_json::to_value(&e.reason)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str().map(str::to_owned)))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Upsert every client's reputation and append its events (with the score after each), in one
/// transaction. A stored state newer than the update (a replay of older logs) is kept.
pub async fn save_reputations(pool: &PgPool, updates: &[ReputationUpdate]) -> Result<()> {
    let mut tx = pool.begin().await?;
    for u in updates {
        let r = &u.state.reputation;
        let state = serde_json::to_value(&u.state).expect("reputation serialises");
        let written = sqlx::query(
            "INSERT INTO client_reputation (client, score, updated_at, first_seen, good_minutes, state) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (client) DO UPDATE SET score = EXCLUDED.score, \
                 updated_at = EXCLUDED.updated_at, first_seen = EXCLUDED.first_seen, \
                 good_minutes = EXCLUDED.good_minutes, state = EXCLUDED.state \
             WHERE client_reputation.updated_at <= EXCLUDED.updated_at",
        )
        .bind(&u.client)
        .bind(r.score.clamp(0.0, 1.0))
        .bind(to_chrono(r.updated_at))
        .bind(to_chrono(r.first_seen))
        .bind(i64::try_from(r.good_minutes).unwrap_or(i64::MAX))
        .bind(state)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if written == 0 || u.events.is_empty() {
            continue;
        }
        // Scores after each event: the final score minus the deltas still to come.
        let mut after = Vec::with_capacity(u.events.len());
        let mut score = r.score;
        for e in u.events.iter().rev() {
            after.push(score.clamp(0.0, 1.0));
            score -= e.delta;
        }
        after.reverse();
        let clients: Vec<&str> = u.events.iter().map(|_| u.client.as_str()).collect();
        let ats: Vec<DateTime<Utc>> = u.events.iter().map(|e| to_chrono(e.at)).collect();
        let deltas: Vec<f64> = u.events.iter().map(|e| e.delta).collect();
        let kinds: Vec<String> = u.events.iter().map(event_kind).collect();
        let reasons: Vec<serde_json::Value> = u
            .events
            .iter()
            .map(|e| {
                let mut v = serde_json::to_value(&e.reason).expect("reason serialises");
                if let Some(o) = v.as_object_mut() {
                    o.insert("text".into(), e.reason.to_string().into());
                }
                v
            })
            .collect();
        sqlx::query(
            "INSERT INTO reputation_events (client, at, delta, score_after, kind, reason) \
             SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::float8[], $4::float8[], \
                                  $5::text[], $6::jsonb[])",
        )
        .bind(&clients)
        .bind(&ats)
        .bind(&deltas)
        .bind(&after)
        .bind(&kinds)
        .bind(&reasons)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A stored reputation event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredEvent {
    pub at: Timestamp,
    pub delta: f64,
    pub score_after: f64,
    pub kind: String,
    pub reason: serde_json::Value,
}

/// A client's reputation events, newest first, at most `limit`.
pub async fn reputation_events(
    pool: &PgPool,
    client: &str,
    limit: i64,
) -> Result<Vec<StoredEvent>> {
    let rows: Vec<(DateTime<Utc>, f64, f64, String, serde_json::Value)> = sqlx::query_as(
        "SELECT at, delta, score_after, kind, reason FROM reputation_events \
         WHERE client = $1 ORDER BY at DESC, id DESC LIMIT $2",
    )
    .bind(client)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(at, delta, score_after, kind, reason)| StoredEvent {
            at: from_chrono(at),
            delta,
            score_after,
            kind,
            reason,
        })
        .collect())
}

/// A suggestion to store.
#[derive(Clone, Debug, PartialEq)]
pub struct NewSuggestion {
    pub rule_id: String,
    pub client: Option<String>,
    /// The rule an approval would publish.
    pub rule: Rule,
    /// The rule of the same id in force when suggested.
    pub current: Option<Rule>,
    pub diff: serde_json::Value,
    pub confidence: f64,
    pub reasons: Vec<String>,
    pub evidence: serde_json::Value,
    pub backtest: Option<serde_json::Value>,
    pub abusive: bool,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A stored suggestion.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredSuggestion {
    pub id: i64,
    pub rule_id: String,
    pub client: Option<String>,
    pub state: String,
    pub rule: Rule,
    pub current: Option<Rule>,
    pub diff: serde_json::Value,
    pub confidence: f64,
    pub reasons: Vec<String>,
    pub evidence: serde_json::Value,
    pub backtest: Option<serde_json::Value>,
    pub abusive: bool,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub decided_by: Option<String>,
    pub decision_comment: Option<String>,
    pub decided_rule: Option<Rule>,
    pub policy_version: Option<i64>,
    pub temporary_until: Option<Timestamp>,
    pub reverted_at: Option<Timestamp>,
    pub reverted_version: Option<i64>,
}

const SUGGESTION_COLUMNS: &str = "id, rule_id, client, state, rule, current, diff, confidence, \
     reasons, evidence, backtest, abusive, created_at, expires_at, decided_by, decision_comment, \
     decided_rule, policy_version, temporary_until, reverted_at, reverted_version";

fn rule_from(id: i64, col: &str, v: serde_json::Value) -> Result<Rule> {
    serde_json::from_value(v)
        .map_err(|e| StoreError::Corrupt(format!("suggestion {id}: {col} is not a rule: {e}")))
}

fn suggestion_from(row: sqlx::postgres::PgRow) -> Result<StoredSuggestion> {
    let id: i64 = row.try_get("id")?;
    let opt_rule = |col: &str| -> Result<Option<Rule>> {
        let v: Option<serde_json::Value> = row.try_get(col)?;
        v.map(|v| rule_from(id, col, v)).transpose()
    };
    let ts = |col: &str| -> Result<Option<Timestamp>> {
        let v: Option<DateTime<Utc>> = row.try_get(col)?;
        Ok(v.map(from_chrono))
    };
    let reasons: serde_json::Value = row.try_get("reasons")?;
    Ok(StoredSuggestion {
        id,
        rule_id: row.try_get("rule_id")?,
        client: row.try_get("client")?,
        state: row.try_get("state")?,
        rule: rule_from(id, "rule", row.try_get("rule")?)?,
        current: opt_rule("current")?,
        diff: row.try_get("diff")?,
        confidence: row.try_get("confidence")?,
        reasons: serde_json::from_value(reasons).unwrap_or_default(),
        evidence: row.try_get("evidence")?,
        backtest: row.try_get("backtest")?,
        abusive: row.try_get("abusive")?,
        created_at: ts("created_at")?.unwrap_or_default(),
        expires_at: ts("expires_at")?.unwrap_or_default(),
        decided_by: row.try_get("decided_by")?,
        decision_comment: row.try_get("decision_comment")?,
        decided_rule: opt_rule("decided_rule")?,
        policy_version: row.try_get("policy_version")?,
        temporary_until: ts("temporary_until")?,
        reverted_at: ts("reverted_at")?,
        reverted_version: row.try_get("reverted_version")?,
    })
}

/// What inserting a suggestion did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inserted {
    pub id: i64,
    /// The pending suggestion for the same rule it replaced (now expired).
    pub superseded: Option<i64>,
}

/// Store a pending suggestion. A pending suggestion for the same rule id is expired first, in
/// the same transaction, with a comment naming its successor.
pub async fn insert_suggestion(pool: &PgPool, s: &NewSuggestion) -> Result<Inserted> {
    if s.expires_at < s.created_at {
        return Err(StoreError::Conflict(format!(
            "suggestion for {} expires at {} before it is created at {}",
            s.rule_id, s.expires_at, s.created_at
        )));
    }
    let mut tx = pool.begin().await?;
    let old: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM limit_suggestions WHERE rule_id = $1 AND state = 'pending' FOR UPDATE",
    )
    .bind(&s.rule_id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(old) = old {
        // Expire first: the unique index allows one pending suggestion per rule.
        sqlx::query(
            "UPDATE limit_suggestions SET state = 'expired', decided_by = $2, \
                 decided_wall = now(), decision_comment = 'superseded by a newer suggestion' \
             WHERE id = $1",
        )
        .bind(old)
        .bind(TUNER_ACTOR)
        .execute(&mut *tx)
        .await?;
    }
    let json = |r: &Rule| serde_json::to_value(r).expect("rule serialises");
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO limit_suggestions (rule_id, client, rule, current, diff, confidence, \
             reasons, evidence, backtest, abusive, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
    )
    .bind(&s.rule_id)
    .bind(&s.client)
    .bind(json(&s.rule))
    .bind(s.current.as_ref().map(json))
    .bind(&s.diff)
    .bind(s.confidence.clamp(0.0, 1.0))
    .bind(serde_json::to_value(&s.reasons).expect("reasons serialise"))
    .bind(&s.evidence)
    .bind(&s.backtest)
    .bind(s.abusive)
    .bind(to_chrono(s.created_at))
    .bind(to_chrono(s.expires_at))
    .fetch_one(&mut *tx)
    .await?;
    if let Some(old) = old {
        sqlx::query("UPDATE limit_suggestions SET decision_comment = $2 WHERE id = $1")
            .bind(old)
            .bind(format!("superseded by suggestion {id}"))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Inserted {
        id,
        superseded: old,
    })
}

/// One suggestion by id.
pub async fn suggestion(pool: &PgPool, id: i64) -> Result<StoredSuggestion> {
    let row = sqlx::query(&format!(
        "SELECT {SUGGESTION_COLUMNS} FROM limit_suggestions WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("suggestion {id}")))?;
    suggestion_from(row)
}

/// Every pending suggestion, by rule id.
pub async fn pending(pool: &PgPool) -> Result<HashMap<String, StoredSuggestion>> {
    let rows = sqlx::query(&format!(
        "SELECT {SUGGESTION_COLUMNS} FROM limit_suggestions WHERE state = 'pending'"
    ))
    .fetch_all(pool)
    .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let s = suggestion_from(row)?;
        out.insert(s.rule_id.clone(), s);
    }
    Ok(out)
}

/// Suggestions created at or after log time `since` (every state), oldest first.
pub async fn suggestions_since(pool: &PgPool, since: Timestamp) -> Result<Vec<StoredSuggestion>> {
    let rows = sqlx::query(&format!(
        "SELECT {SUGGESTION_COLUMNS} FROM limit_suggestions WHERE created_at >= $1 ORDER BY id"
    ))
    .bind(to_chrono(since))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(suggestion_from).collect()
}

/// Expire every pending suggestion whose deadline (log time) is at or before `at`; returns their
/// ids.
pub async fn expire_due(pool: &PgPool, at: Timestamp) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar(
        "UPDATE limit_suggestions SET state = 'expired', decided_by = $2, decided_wall = now(), \
             decision_comment = 'expired at ' || to_char(expires_at AT TIME ZONE 'UTC', \
                 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') || ' without a decision' \
         WHERE state = 'pending' AND expires_at <= $1 RETURNING id",
    )
    .bind(to_chrono(at))
    .bind(TUNER_ACTOR)
    .fetch_all(pool)
    .await?)
}

/// Approved temporary limits whose `temporary_until` (log time) is at or before `at` and that
/// were not reverted yet, oldest first.
pub async fn due_reverts(pool: &PgPool, at: Timestamp) -> Result<Vec<StoredSuggestion>> {
    let rows = sqlx::query(&format!(
        "SELECT {SUGGESTION_COLUMNS} FROM limit_suggestions \
         WHERE state IN ('approved', 'modified_approved') AND temporary_until IS NOT NULL \
           AND temporary_until <= $1 AND reverted_at IS NULL ORDER BY temporary_until, id"
    ))
    .bind(to_chrono(at))
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(suggestion_from).collect()
}

/// Record, inside `tx`, that a temporary limit was reverted at log time `at` by policy
/// `version` (`None`: the policy already had the rule it reverts to).
pub async fn mark_reverted_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: i64,
    at: Timestamp,
    version: Option<i64>,
) -> Result<()> {
    let n = sqlx::query(
        "UPDATE limit_suggestions SET reverted_at = $2, reverted_version = $3 \
         WHERE id = $1 AND reverted_at IS NULL",
    )
    .bind(id)
    .bind(to_chrono(at))
    .bind(version)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(StoreError::StateConflict(format!(
            "suggestion {id} was already reverted"
        )));
    }
    Ok(())
}

/// The auto-approval rules (`auto_approval_config`); the defaults (everything off) when no row.
pub async fn auto_approval_config(pool: &PgPool) -> Result<AutoApprovalConfig> {
    let v: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT config FROM auto_approval_config")
            .fetch_optional(pool)
            .await?;
    match v {
        None => Ok(AutoApprovalConfig::default()),
        Some(v) => serde_json::from_value(v)
            .map_err(|e| StoreError::Corrupt(format!("auto_approval_config: {e}"))),
    }
}

/// How far (log time) the tuning step has run.
pub async fn cursor(pool: &PgPool) -> Result<Option<Timestamp>> {
    let v: Option<DateTime<Utc>> = sqlx::query_scalar("SELECT through FROM tuning_cursor")
        .fetch_optional(pool)
        .await?;
    Ok(v.map(from_chrono))
}

/// Move the tuning cursor to `through` (never backwards).
pub async fn advance_cursor(pool: &PgPool, through: Timestamp) -> Result<()> {
    sqlx::query(
        "INSERT INTO tuning_cursor (id, through) VALUES (true, $1) \
         ON CONFLICT (id) DO UPDATE SET \
             through = greatest(tuning_cursor.through, EXCLUDED.through), updated_at = now()",
    )
    .bind(to_chrono(through))
    .execute(pool)
    .await?;
    Ok(())
}
