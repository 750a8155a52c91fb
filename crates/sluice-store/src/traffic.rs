//! Traffic over time for the web UI and `GET /v1/traffic`: requests, 429s, other 4xx, 5xx and
//! latency summed per step from the per-minute rollups (`rollup_route_minute` for everything or
//! one route, `rollup_client_minute` for one client).
//!
//! The aggregation runs in Postgres (`date_bin` + `GROUP BY`), so an answer is at most
//! [`MAX_POINTS`] rows however many clients or routes there are; the range scan uses the
//! `(minute)` index for the total and the primary keys for one route or one client.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sluice_core::ClientKind;
use sqlx::PgPool;

use crate::error::Result;
use crate::wire::rfc3339;

/// Most points one answer may hold.
pub const MAX_POINTS: i64 = 2_000;

/// Whose traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrafficScope {
    /// Every route together.
    All,
    /// One normalised route (`/v1/search`).
    Route(String),
    /// One client; without a kind, the value under every kind.
    Client {
        kind: Option<ClientKind>,
        client: String,
    },
}

/// A validated request: whole minutes, `from < to`, `step` a whole number of minutes, and at
/// most [`MAX_POINTS`] steps (the API checks these; [`traffic`] assumes them).
#[derive(Clone, Debug)]
pub struct TrafficQuery {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub step_seconds: i64,
    pub scope: TrafficScope,
}

impl TrafficQuery {
    /// Number of steps in `[from, to)` (the last one may be partial).
    pub fn steps(&self) -> i64 {
        let span = (self.to - self.from).num_seconds();
        (span + self.step_seconds - 1) / self.step_seconds
    }
}

/// One step: sums over the minutes in `[t, t + step)`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TrafficPoint {
    #[serde(serialize_with = "rfc3339")]
    pub t: DateTime<Utc>,
    pub requests: i64,
    /// Requests answered 429 (limited).
    pub status_429: i64,
    /// Other 4xx (401, 403, 404 and the rest).
    pub status_4xx: i64,
    pub status_5xx: i64,
    /// Mean latency in milliseconds (absent when no request in the step had one).
    pub latency_avg_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
}

/// Totals over the whole range.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TrafficTotals {
    pub requests: i64,
    pub status_429: i64,
    pub status_4xx: i64,
    pub status_5xx: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Traffic {
    #[serde(serialize_with = "rfc3339")]
    pub from: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub to: DateTime<Utc>,
    pub step_seconds: i64,
    /// Dense: one point per step from `from`, zeros where nothing was logged.
    pub points: Vec<TrafficPoint>,
    pub totals: TrafficTotals,
}

type Row = (DateTime<Utc>, i64, i64, i64, i64, i64, i64, Option<i64>);

const COLUMNS: &str = "date_bin(make_interval(secs => $3), minute, $1) AS t,
    sum(requests)::int8, sum(status_429)::int8,
    sum(status_401 + status_403 + status_404 + status_4xx_other)::int8, sum(status_5xx)::int8,
    sum(latency_sum_us)::int8, sum(latency_count)::int8, max(latency_max_us)::int8";

/// Traffic of `q.scope` per step over `[q.from, q.to)`.
pub async fn traffic(pool: &PgPool, q: &TrafficQuery) -> Result<Traffic> {
    let step = q.step_seconds as f64;
    let rows: Vec<Row> = match &q.scope {
        TrafficScope::All => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM rollup_route_minute
                 WHERE minute >= $1 AND minute < $2 GROUP BY 1"
            ))
            .bind(q.from)
            .bind(q.to)
            .bind(step)
            .fetch_all(pool)
            .await?
        }
        TrafficScope::Route(route) => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM rollup_route_minute
                 WHERE route = $4 AND minute >= $1 AND minute < $2 GROUP BY 1"
            ))
            .bind(q.from)
            .bind(q.to)
            .bind(step)
            .bind(route)
            .fetch_all(pool)
            .await?
        }
        TrafficScope::Client { kind, client } => {
            // `client_kind = ANY(...)` keeps the primary key usable without a kind (one index
            // range per kind) instead of scanning every client.
            let kinds: Vec<&str> = match kind {
                Some(k) => vec![k.as_str()],
                None => ClientKind::ALL.iter().map(|k| k.as_str()).collect(),
            };
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM rollup_client_minute
                 WHERE client_kind = ANY($5) AND client = $4 AND minute >= $1 AND minute < $2
                 GROUP BY 1"
            ))
            .bind(q.from)
            .bind(q.to)
            .bind(step)
            .bind(client)
            .bind(&kinds)
            .fetch_all(pool)
            .await?
        }
    };
    Ok(densify(q, rows))
}

/// One point per step, zeros where no row fell.
fn densify(q: &TrafficQuery, rows: Vec<Row>) -> Traffic {
    let steps = q.steps().max(0) as usize;
    let step = chrono::TimeDelta::seconds(q.step_seconds);
    let mut points: Vec<TrafficPoint> = (0..steps)
        .map(|i| TrafficPoint {
            t: q.from + step * i as i32,
            ..TrafficPoint::default()
        })
        .collect();
    let mut totals = TrafficTotals::default();
    for (t, requests, s429, s4xx, s5xx, lat_sum, lat_count, lat_max) in rows {
        let i = (t - q.from).num_seconds() / q.step_seconds;
        let Some(p) = usize::try_from(i).ok().and_then(|i| points.get_mut(i)) else {
            continue;
        };
        p.requests = requests;
        p.status_429 = s429;
        p.status_4xx = s4xx;
        p.status_5xx = s5xx;
        if lat_count > 0 {
            p.latency_avg_ms = Some(lat_sum as f64 / lat_count as f64 / 1000.0);
            p.latency_max_ms = lat_max.map(|m| m as f64 / 1000.0);
        }
        totals.requests += requests;
        totals.status_429 += s429;
        totals.status_4xx += s4xx;
        totals.status_5xx += s5xx;
    }
    Traffic {
        from: q.from,
        to: q.to,
        step_seconds: q.step_seconds,
        points,
        totals,
    }
}

/// The newest minute with any rollup row (the end of the default window), if any.
pub async fn newest_minute(pool: &PgPool) -> Result<Option<DateTime<Utc>>> {
    Ok(
        sqlx::query_scalar("SELECT max(minute) FROM rollup_route_minute")
            .fetch_one(pool)
            .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn steps_round_up_and_densify_fills_zeros() {
        let q = TrafficQuery {
            from: at("2026-03-02T00:00:00Z"),
            to: at("2026-03-02T00:25:00Z"),
            step_seconds: 600,
            scope: TrafficScope::All,
        };
        assert_eq!(q.steps(), 3);
        let t = densify(
            &q,
            vec![(at("2026-03-02T00:10:00Z"), 7, 2, 1, 0, 3000, 3, Some(2000))],
        );
        assert_eq!(t.points.len(), 3);
        assert_eq!(t.points[0].requests, 0);
        assert_eq!(t.points[0].latency_avg_ms, None);
        assert_eq!(t.points[1].t, at("2026-03-02T00:10:00Z"));
        assert_eq!(t.points[1].requests, 7);
        assert_eq!(t.points[1].status_429, 2);
        assert_eq!(t.points[1].latency_avg_ms, Some(1.0));
        assert_eq!(t.points[1].latency_max_ms, Some(2.0));
        assert_eq!(t.points[2].t, at("2026-03-02T00:20:00Z"));
        assert_eq!(t.totals.requests, 7);
    }
}
