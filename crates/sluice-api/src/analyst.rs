//! The analyst read API: `GET /v1/anomalies` (filtered, keyset-paginated),
//! `GET /v1/anomalies/{id}` (one anomaly and its members) and `GET /v1/clients/{client}` (a
//! client's baseline against its recent minutes, and its anomaly history). Analyst or admin.
//!
//! Query parameters are parsed into store types here, so every bad value answers 400 with what
//! was expected; unknown parameters are refused rather than silently ignored.

use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sluice_core::{AnomalyKind, AnomalyState, ClientKind, Role};
use sluice_store::analyst::{
    self, AnomalyCursor, AnomalyDetail, AnomalyFilter, AnomalyPage, ClientView, ClientViewOptions,
    MemberCursor,
};

use sluice_store::review::{self, ClientReputation};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::logs::bad_query;
use crate::AppState;

const READ_ANOMALIES: &str = "read anomalies";
const READ_CLIENTS: &str = "read client behaviour";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// open or resolved.
    pub state: Option<String>,
    /// An anomaly kind (scraping, credential_stuffing, ...).
    pub kind: Option<String>,
    /// The anomaly's client or one of its members has this value.
    pub client: Option<String>,
    /// api_key, consumer, user or ip.
    pub client_kind: Option<String>,
    /// RFC 3339; `first_detected >= since`.
    pub since: Option<String>,
    /// RFC 3339; `first_detected < until`.
    pub until: Option<String>,
    /// 1..=500, default 50.
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetailQuery {
    /// 1..=1000, default 100.
    pub members_limit: Option<String>,
    /// `members_next_cursor` of the previous answer.
    pub members_cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientQuery {
    /// api_key, consumer, user or ip; needed only when the value exists under several kinds.
    #[serde(alias = "client_kind")]
    pub kind: Option<String>,
    /// RFC 3339 end of the window of recent minutes; default: the client's last active minute.
    pub until: Option<String>,
    /// 1..=10080, default 360 (6 hours).
    pub window_minutes: Option<String>,
    /// 1..=500, default 50.
    pub anomalies_limit: Option<String>,
}

fn parse_with<T, E: std::fmt::Display>(
    value: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> ApiResult<Option<T>> {
    value
        .map(|v| parse(v).map_err(|e| ApiError::BadRequest(e.to_string())))
        .transpose()
}

fn client_kind(value: Option<&str>, name: &str) -> ApiResult<Option<ClientKind>> {
    parse_with(value, |v| {
        v.parse::<ClientKind>().map_err(|_| {
            format!("unknown {name} {v:?} (expected one of api_key, consumer, user, ip)")
        })
    })
}

/// An RFC 3339 time (any offset), as UTC.
pub(crate) fn time(value: Option<&str>, name: &str) -> ApiResult<Option<DateTime<Utc>>> {
    parse_with(value, |v| {
        DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                // A `+` in a query string is a space: the offset was not percent-encoded.
                let hint = if v.contains(' ') {
                    " (write + as %2B in a query string)"
                } else {
                    ""
                };
                format!(
                    "invalid {name} {v:?}: expected an RFC 3339 time such as 2026-03-02T04:10:00Z{hint}"
                )
            })
    })
}

/// An integer in `1..=max`, or `default` when absent.
pub(crate) fn bounded(value: Option<&str>, name: &str, default: u32, max: u32) -> ApiResult<u32> {
    Ok(parse_with(value, |v| {
        v.parse::<u32>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| format!("{name} must be an integer from 1 to {max}, got {v:?}"))
    })?
    .unwrap_or(default))
}

fn cursor<T>(
    value: Option<&str>,
    name: &str,
    decode: impl FnOnce(&str) -> Result<T, analyst::InvalidCursor>,
) -> ApiResult<Option<T>> {
    parse_with(value, |v| {
        decode(v).map_err(|_| {
            format!("invalid {name}: pass the cursor of the previous answer unchanged")
        })
    })
}

/// The filters of `GET /v1/anomalies`.
pub fn parse_list_query(q: &ListQuery) -> ApiResult<(AnomalyFilter, Option<AnomalyCursor>, u32)> {
    let client = match q.client.as_deref() {
        Some("") => return Err(ApiError::BadRequest("client must not be empty".into())),
        other => other.map(str::to_owned),
    };
    let filter = AnomalyFilter {
        state: parse_with(q.state.as_deref(), str::parse::<AnomalyState>)?,
        kind: parse_with(q.kind.as_deref(), str::parse::<AnomalyKind>)?,
        client,
        client_kind: client_kind(q.client_kind.as_deref(), "client_kind")?,
        since: time(q.since.as_deref(), "since")?,
        until: time(q.until.as_deref(), "until")?,
    };
    if let (Some(since), Some(until)) = (filter.since, filter.until) {
        if since >= until {
            return Err(ApiError::BadRequest(format!(
                "since ({}) must be before until ({})",
                q.since.as_deref().unwrap_or_default(),
                q.until.as_deref().unwrap_or_default()
            )));
        }
    }
    let limit = bounded(
        q.limit.as_deref(),
        "limit",
        analyst::DEFAULT_LIMIT,
        analyst::MAX_LIMIT,
    )?;
    let after = cursor(q.cursor.as_deref(), "cursor", AnomalyCursor::decode)?;
    Ok((filter, after, limit))
}

pub async fn list_anomalies(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<AnomalyPage>> {
    who.require(Role::Analyst, READ_ANOMALIES)?;
    let Query(q) = q.map_err(bad_query)?;
    let (filter, after, limit) = parse_list_query(&q)?;
    Ok(Json(
        analyst::list_anomalies(&state.pool, &filter, after, limit).await?,
    ))
}

pub async fn get_anomaly(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<DetailQuery>, QueryRejection>,
) -> ApiResult<Json<AnomalyDetail>> {
    who.require(Role::Analyst, READ_ANOMALIES)?;
    let Path(id) = id.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let id = id.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "invalid anomaly id {id:?}: expected a positive integer"
        ))
    })?;
    let Query(q) = q.map_err(bad_query)?;
    let limit = bounded(
        q.members_limit.as_deref(),
        "members_limit",
        analyst::DEFAULT_MEMBERS_LIMIT,
        analyst::MAX_MEMBERS_LIMIT,
    )?;
    let after = cursor(
        q.members_cursor.as_deref(),
        "members_cursor",
        MemberCursor::decode,
    )?;
    Ok(Json(
        analyst::get_anomaly(&state.pool, id, after.as_ref(), limit).await?,
    ))
}

/// `GET /v1/clients/{client}`: the store's client view plus the client's reputation (`null`
/// before the tuning step has scored it).
#[derive(Debug, serde::Serialize)]
pub struct ClientAnswer {
    #[serde(flatten)]
    pub view: ClientView,
    pub reputation: Option<ClientReputation>,
}

pub async fn get_client(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    client: Result<Path<String>, PathRejection>,
    q: Result<Query<ClientQuery>, QueryRejection>,
) -> ApiResult<Json<ClientAnswer>> {
    who.require(Role::Analyst, READ_CLIENTS)?;
    let Path(client) = client.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let Query(q) = q.map_err(bad_query)?;
    let opts = ClientViewOptions {
        kind: client_kind(q.kind.as_deref(), "kind")?,
        until: time(q.until.as_deref(), "until")?,
        window_minutes: bounded(
            q.window_minutes.as_deref(),
            "window_minutes",
            analyst::DEFAULT_WINDOW_MINUTES,
            analyst::MAX_WINDOW_MINUTES,
        )?,
        anomalies_limit: bounded(
            q.anomalies_limit.as_deref(),
            "anomalies_limit",
            analyst::DEFAULT_LIMIT,
            analyst::MAX_LIMIT,
        )?,
    };
    let view = analyst::client_view(&state.pool, &client, &opts).await?;
    let reputation = review::reputation(&state.pool, &client, review::DEFAULT_EVENTS_LIMIT).await?;
    Ok(Json(ClientAnswer { view, reputation }))
}
