//! `GET /v1/traffic?from&to&step&route&client&client_kind`: requests, 429s, other 4xx, 5xx and
//! latency per step, aggregated in the database from the per-minute rollups. Analyst or admin.
//!
//! Defaults: `to` is one minute after the newest rollup minute, `from` six hours before `to`, and
//! `step` the smallest of 1m, 5m, 15m, 1h, 6h, 1d that gives at most 360 points. An answer never
//! has more than 2,000 points (a longer range needs a larger step).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use sluice_core::{ClientKind, Role};
use sluice_store::traffic::{self, Traffic, TrafficQuery, TrafficScope, MAX_POINTS};

use crate::analyst::time;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::logs::bad_query;
use crate::AppState;

const READ_TRAFFIC: &str = "read traffic";
/// Default window when `from` is absent.
pub const DEFAULT_WINDOW_MINUTES: i64 = 360;
/// Default steps aim at no more than this many points.
const DEFAULT_POINTS: i64 = 360;
const NICE_STEPS: [i64; 6] = [60, 300, 900, 3_600, 21_600, 86_400];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficParams {
    /// RFC 3339 start (inclusive), rounded down to the minute.
    pub from: Option<String>,
    /// RFC 3339 end (exclusive), rounded down to the minute.
    pub to: Option<String>,
    /// `60`, `60s`, `5m`, `1h` or `1d`: a whole number of minutes, at most 7 days.
    pub step: Option<String>,
    /// One route (`/v1/search`).
    pub route: Option<String>,
    /// One client value.
    pub client: Option<String>,
    /// api_key, consumer, user or ip (with `client`).
    pub client_kind: Option<String>,
}

/// A step such as `5m` in seconds.
pub fn parse_step(v: &str) -> ApiResult<i64> {
    let bad = || {
        ApiError::BadRequest(format!(
            "invalid step {v:?}: expected a whole number of minutes such as 60, 60s, 5m, 1h or 1d (at most 7d)"
        ))
    };
    let (num, unit) = match v.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => v.split_at(i),
        None => (v, "s"),
    };
    let n: i64 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(mult).ok_or_else(bad)?;
    if secs < 60 || secs % 60 != 0 || secs > 7 * 86_400 {
        return Err(bad());
    }
    Ok(secs)
}

/// `a / b` rounded up, for positive `a` and `b` (`i64::div_ceil` is not stable).
fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

fn minute_floor(t: DateTime<Utc>) -> DateTime<Utc> {
    let s = t.timestamp();
    DateTime::from_timestamp(s - s.rem_euclid(60), 0).unwrap_or(t)
}

/// Parse and validate the query; `newest` is the newest rollup minute (for the default `to`).
pub fn parse_query(q: &TrafficParams, newest: Option<DateTime<Utc>>) -> ApiResult<TrafficQuery> {
    let scope = match (q.route.as_deref(), q.client.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "pass route or client, not both (traffic is rolled up per route and per client separately)".into(),
            ))
        }
        (Some(""), None) => return Err(ApiError::BadRequest("route must not be empty".into())),
        (Some(r), None) if !r.starts_with('/') => {
            return Err(ApiError::BadRequest(format!(
                "invalid route {r:?}: expected a route such as /v1/search"
            )))
        }
        (Some(r), None) => TrafficScope::Route(r.to_owned()),
        (None, Some("")) => return Err(ApiError::BadRequest("client must not be empty".into())),
        (None, Some(c)) => TrafficScope::Client {
            kind: q
                .client_kind
                .as_deref()
                .map(|k| {
                    k.parse::<ClientKind>().map_err(|_| {
                        ApiError::BadRequest(format!(
                            "unknown client_kind {k:?} (expected one of api_key, consumer, user, ip)"
                        ))
                    })
                })
                .transpose()?,
            client: c.to_owned(),
        },
        (None, None) => TrafficScope::All,
    };
    if q.client_kind.is_some() && q.client.is_none() {
        return Err(ApiError::BadRequest("client_kind needs client".into()));
    }
    let to = match time(q.to.as_deref(), "to")? {
        Some(t) => minute_floor(t),
        None => newest.map_or_else(
            || minute_floor(Utc::now()),
            |t| minute_floor(t) + TimeDelta::minutes(1),
        ),
    };
    let from = match time(q.from.as_deref(), "from")? {
        Some(t) => minute_floor(t),
        None => to - TimeDelta::minutes(DEFAULT_WINDOW_MINUTES),
    };
    if from >= to {
        return Err(ApiError::BadRequest(format!(
            "from ({}) must be before to ({}) by at least a minute",
            from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )));
    }
    let span = (to - from).num_seconds();
    let step_seconds = match q.step.as_deref() {
        Some(s) => parse_step(s)?,
        None => NICE_STEPS
            .iter()
            .copied()
            .find(|s| ceil_div(span, *s) <= DEFAULT_POINTS)
            .unwrap_or_else(|| ceil_div(ceil_div(span, MAX_POINTS), 60) * 60),
    };
    let query = TrafficQuery {
        from,
        to,
        step_seconds,
        scope,
    };
    if query.steps() > MAX_POINTS {
        return Err(ApiError::BadRequest(format!(
            "{} steps of {step_seconds} s is more than {MAX_POINTS} points: use a larger step or a shorter range",
            query.steps()
        )));
    }
    Ok(query)
}

pub async fn get_traffic(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    q: Result<Query<TrafficParams>, QueryRejection>,
) -> ApiResult<Json<Traffic>> {
    who.require(Role::Analyst, READ_TRAFFIC)?;
    let Query(q) = q.map_err(bad_query)?;
    let newest = if q.to.is_none() {
        traffic::newest_minute(&state.pool).await?
    } else {
        None
    };
    let query = parse_query(&q, newest)?;
    Ok(Json(traffic::traffic(&state.pool, &query).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps() {
        assert_eq!(parse_step("60").unwrap(), 60);
        assert_eq!(parse_step("120s").unwrap(), 120);
        assert_eq!(parse_step("5m").unwrap(), 300);
        assert_eq!(parse_step("1h").unwrap(), 3600);
        assert_eq!(parse_step("7d").unwrap(), 7 * 86_400);
        for bad in [
            "",
            "30",
            "90s",
            "1w",
            "8d",
            "m",
            "-5m",
            "99999999999999999999",
        ] {
            assert!(parse_step(bad).is_err(), "{bad}");
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn defaults_end_after_the_newest_minute_and_pick_a_nice_step() {
        let q = parse_query(&TrafficParams::default(), Some(at("2026-03-02T10:00:30Z"))).unwrap();
        assert_eq!(q.to, at("2026-03-02T10:01:00Z"));
        assert_eq!(q.from, at("2026-03-02T04:01:00Z"));
        assert_eq!(q.step_seconds, 60);
        assert_eq!(q.scope, TrafficScope::All);
        let week = TrafficParams {
            from: Some("2026-03-01T00:00:00Z".into()),
            to: Some("2026-03-08T00:00:00Z".into()),
            ..TrafficParams::default()
        };
        assert_eq!(parse_query(&week, None).unwrap().step_seconds, 3_600);
    }
}
