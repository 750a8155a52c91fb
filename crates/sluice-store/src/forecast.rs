//! Forecasting and capacity in Postgres: per-route minute series read from `rollup_route_minute`
//! (dense, missing minutes as zeros), the requests of clients under an anomaly per route and
//! minute (to subtract them), and the forecast loop's outputs: chosen models, forecast points,
//! route capacities, capacity factors and the cursor. The read side answers `GET /v1/forecasts`.
//!
//! The total over all routes is stored and served under the route name [`TOTAL`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sluice_core::time::MICROS_PER_MINUTE;
use sluice_core::Timestamp;
use sqlx::PgPool;

use crate::detection::{from_chrono, to_chrono};
use crate::error::Result;

/// The route name under which the total over all routes is stored.
pub const TOTAL: &str = "*";

/// One route's minutes over `[from, from + len)`, dense: minutes without a rollup row are 0.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RouteSeries {
    /// Requests per minute (all clients).
    pub requests: Vec<f64>,
    /// Requests per minute of clients under an anomaly in that minute.
    pub excluded: Vec<f64>,
    /// Sum and count of latencies (µs) per minute.
    pub latency_sum_us: Vec<f64>,
    pub latency_count: Vec<f64>,
}

impl RouteSeries {
    fn zeros(len: usize) -> Self {
        RouteSeries {
            requests: vec![0.0; len],
            excluded: vec![0.0; len],
            latency_sum_us: vec![0.0; len],
            latency_count: vec![0.0; len],
        }
    }

    /// Requests per minute with the flagged clients' requests subtracted.
    pub fn clean(&self) -> Vec<f64> {
        self.requests
            .iter()
            .zip(&self.excluded)
            .map(|(r, e)| (r - e).max(0.0))
            .collect()
    }
}

/// Dense per-route series over `[from, to)` (whole minutes), plus the total under [`TOTAL`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    pub from: Timestamp,
    pub minutes: usize,
    pub routes: BTreeMap<String, RouteSeries>,
}

fn minute_index(from: Timestamp, t: DateTime<Utc>, len: usize) -> Option<usize> {
    let d = (t.timestamp_micros() - from.micros()).div_euclid(MICROS_PER_MINUTE);
    usize::try_from(d).ok().filter(|&i| i < len)
}

/// Read the per-route minute series over `[from, to)` and subtract nothing yet: `excluded` holds
/// the requests of clients with an anomaly (as its client or a campaign member) whose span
/// `[first_detected, last_flagged]` covers the minute, per route, counted from `access_log` inside
/// those spans only. Minutes whose raw records are gone (retention) exclude nothing.
pub async fn read_series(pool: &PgPool, from: Timestamp, to: Timestamp) -> Result<Series> {
    let from = from.minute_floor();
    let len =
        usize::try_from((to.micros() - from.micros()).max(0) / MICROS_PER_MINUTE).unwrap_or(0);
    let mut out = Series {
        from,
        minutes: len,
        routes: BTreeMap::new(),
    };
    if len == 0 {
        return Ok(out);
    }
    let end = Timestamp::from_micros(from.micros() + len as i64 * MICROS_PER_MINUTE);
    let rows: Vec<(String, DateTime<Utc>, i64, i64, i64)> = sqlx::query_as(
        "SELECT route, minute, requests, latency_sum_us, latency_count FROM rollup_route_minute \
         WHERE minute >= $1 AND minute < $2",
    )
    .bind(to_chrono(from))
    .bind(to_chrono(end))
    .fetch_all(pool)
    .await?;
    let mut total = RouteSeries::zeros(len);
    for (route, minute, requests, lsum, lcount) in rows {
        let Some(i) = minute_index(from, minute, len) else {
            continue;
        };
        let s = out
            .routes
            .entry(route)
            .or_insert_with(|| RouteSeries::zeros(len));
        s.requests[i] += requests as f64;
        s.latency_sum_us[i] += lsum as f64;
        s.latency_count[i] += lcount as f64;
        total.requests[i] += requests as f64;
        total.latency_sum_us[i] += lsum as f64;
        total.latency_count[i] += lcount as f64;
    }
    // Spans of anomalies that overlap the window, per identity (its own or as a campaign
    // member), merged so that a record inside two spans counts once; then the raw records of
    // those identities inside those spans.
    let spans: Vec<(String, String, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT m.client_kind, m.client, \
                greatest(a.first_detected - interval '1 minute', $1), least(a.last_flagged, $2) \
         FROM anomalies a JOIN anomaly_members m ON m.anomaly_id = a.id \
         WHERE a.first_detected - interval '1 minute' < $2 AND a.last_flagged > $1 \
         ORDER BY 1, 2, 3",
    )
    .bind(to_chrono(from))
    .bind(to_chrono(end))
    .fetch_all(pool)
    .await?;
    let merged = merge_spans(spans);
    let excluded: Vec<(String, DateTime<Utc>, i64)> = if merged.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(
            "SELECT l.route, date_trunc('minute', l.ts), count(*)::int8 \
             FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[]) \
                  AS s(kind, client, s, e) \
             JOIN LATERAL (SELECT route, ts FROM access_log \
                           WHERE ts >= s.s AND ts < s.e AND client_kind = s.kind \
                             AND client = s.client) l ON true \
             GROUP BY 1, 2",
        )
        .bind(merged.iter().map(|m| m.0.as_str()).collect::<Vec<_>>())
        .bind(merged.iter().map(|m| m.1.as_str()).collect::<Vec<_>>())
        .bind(merged.iter().map(|m| m.2).collect::<Vec<_>>())
        .bind(merged.iter().map(|m| m.3).collect::<Vec<_>>())
        .fetch_all(pool)
        .await?
    };
    for (route, minute, n) in excluded {
        let Some(i) = minute_index(from, minute, len) else {
            continue;
        };
        if let Some(s) = out.routes.get_mut(&route) {
            s.excluded[i] += n as f64;
            total.excluded[i] += n as f64;
        }
    }
    out.routes.insert(TOTAL.to_owned(), total);
    Ok(out)
}

type Span = (String, String, DateTime<Utc>, DateTime<Utc>);

/// Merge overlapping spans of the same identity; input sorted by identity, then start.
fn merge_spans(spans: Vec<Span>) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for s in spans {
        match out.last_mut() {
            Some(l) if l.0 == s.0 && l.1 == s.1 && s.2 <= l.3 => l.3 = l.3.max(s.3),
            _ => out.push(s),
        }
    }
    out
}

/// Minute counts per route and minute, without anomaly exclusion, for `[from, to)` (sparse).
pub async fn route_actuals(
    pool: &PgPool,
    route: &str,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<(Timestamp, i64)>> {
    let rows: Vec<(DateTime<Utc>, i64)> = if route == TOTAL {
        sqlx::query_as(
            "SELECT minute, sum(requests)::int8 FROM rollup_route_minute \
             WHERE minute >= $1 AND minute < $2 GROUP BY minute ORDER BY minute",
        )
        .bind(to_chrono(from))
        .bind(to_chrono(to))
        .fetch_all(pool)
        .await?
    } else {
        sqlx::query_as(
            "SELECT minute, requests FROM rollup_route_minute \
             WHERE route = $3 AND minute >= $1 AND minute < $2 ORDER BY minute",
        )
        .bind(to_chrono(from))
        .bind(to_chrono(to))
        .bind(route)
        .fetch_all(pool)
        .await?
    };
    Ok(rows.into_iter().map(|(m, n)| (from_chrono(m), n)).collect())
}

/// The chosen model of one series at a refit.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRow {
    pub route: String,
    pub fitted_at: Timestamp,
    pub history_from: Timestamp,
    pub season_minutes: i32,
    pub horizon_minutes: i32,
    pub model: String,
    pub backtest_origins: i32,
    pub mase: f64,
    pub smape: f64,
    pub seasonal_naive_mase: f64,
    pub candidates: serde_json::Value,
    pub cleaned_points: i32,
    pub zero_minutes: i32,
    pub excluded_requests: i64,
    pub fit_ms: f64,
}

/// Forecast of one minute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointRow {
    pub minute: Timestamp,
    pub forecast: f64,
    pub lower: f64,
    pub upper: f64,
}

fn finite(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// Store a refit: the model row (replacing the previous one) and its forecast points (replacing
/// older forecasts of the same minutes), in one transaction.
pub async fn write_fit(pool: &PgPool, m: &ModelRow, points: &[PointRow]) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO forecast_models (route, fitted_at, history_from, season_minutes, \
             horizon_minutes, model, backtest_origins, mase, smape, seasonal_naive_mase, \
             candidates, cleaned_points, zero_minutes, excluded_requests, fit_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
         ON CONFLICT (route) DO UPDATE SET fitted_at = EXCLUDED.fitted_at, \
             history_from = EXCLUDED.history_from, season_minutes = EXCLUDED.season_minutes, \
             horizon_minutes = EXCLUDED.horizon_minutes, model = EXCLUDED.model, \
             backtest_origins = EXCLUDED.backtest_origins, mase = EXCLUDED.mase, \
             smape = EXCLUDED.smape, seasonal_naive_mase = EXCLUDED.seasonal_naive_mase, \
             candidates = EXCLUDED.candidates, cleaned_points = EXCLUDED.cleaned_points, \
             zero_minutes = EXCLUDED.zero_minutes, excluded_requests = EXCLUDED.excluded_requests, \
             fit_ms = EXCLUDED.fit_ms",
    )
    .bind(&m.route)
    .bind(to_chrono(m.fitted_at))
    .bind(to_chrono(m.history_from))
    .bind(m.season_minutes)
    .bind(m.horizon_minutes)
    .bind(&m.model)
    .bind(m.backtest_origins)
    .bind(finite(m.mase))
    .bind(finite(m.smape))
    .bind(finite(m.seasonal_naive_mase))
    .bind(&m.candidates)
    .bind(m.cleaned_points)
    .bind(m.zero_minutes)
    .bind(m.excluded_requests)
    .bind(m.fit_ms)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO forecast_points (route, minute, fitted_at, forecast, lower, upper) \
         SELECT $1, * FROM UNNEST($2::timestamptz[], $3::timestamptz[], $4::float8[], \
             $5::float8[], $6::float8[]) \
         ON CONFLICT (route, minute) DO UPDATE SET fitted_at = EXCLUDED.fitted_at, \
             forecast = EXCLUDED.forecast, lower = EXCLUDED.lower, upper = EXCLUDED.upper \
         WHERE forecast_points.fitted_at <= EXCLUDED.fitted_at",
    )
    .bind(&m.route)
    .bind(
        points
            .iter()
            .map(|p| to_chrono(p.minute))
            .collect::<Vec<_>>(),
    )
    .bind(vec![to_chrono(m.fitted_at); points.len()])
    .bind(
        points
            .iter()
            .map(|p| finite(p.forecast))
            .collect::<Vec<_>>(),
    )
    .bind(points.iter().map(|p| finite(p.lower)).collect::<Vec<_>>())
    .bind(points.iter().map(|p| finite(p.upper)).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Where a route's capacity comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CapacitySource {
    Configured,
    Learned,
}

impl CapacitySource {
    pub fn as_str(self) -> &'static str {
        match self {
            CapacitySource::Configured => "configured",
            CapacitySource::Learned => "learned",
        }
    }
}

/// Store a route's capacity (replacing the previous one).
pub async fn upsert_capacity(
    pool: &PgPool,
    route: &str,
    capacity_rps: f64,
    source: CapacitySource,
    evidence: Option<&serde_json::Value>,
    computed_at: Timestamp,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO route_capacity (route, capacity_rps, source, evidence, computed_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (route) DO UPDATE SET \
             capacity_rps = EXCLUDED.capacity_rps, source = EXCLUDED.source, \
             evidence = EXCLUDED.evidence, computed_at = EXCLUDED.computed_at",
    )
    .bind(route)
    .bind(capacity_rps)
    .bind(source.as_str())
    .bind(evidence)
    .bind(to_chrono(computed_at))
    .execute(pool)
    .await?;
    Ok(())
}

/// Forget a learned capacity that the data no longer shows (configured ones stay).
pub async fn drop_learned_capacity(pool: &PgPool, route: &str) -> Result<()> {
    sqlx::query("DELETE FROM route_capacity WHERE route = $1 AND source = 'learned'")
        .bind(route)
        .execute(pool)
        .await?;
    Ok(())
}

/// The capacity factor of a route at the end of a minute.
#[derive(Debug, Clone, PartialEq)]
pub struct FactorRow {
    pub route: String,
    pub minute: Timestamp,
    pub factor: f64,
    pub utilisation: Option<f64>,
    pub planned_rps: Option<f64>,
    pub capacity_rps: Option<f64>,
}

pub async fn write_factors(pool: &PgPool, rows: &[FactorRow]) -> Result<()> {
    for chunk in rows.chunks(20_000) {
        sqlx::query(
            "INSERT INTO capacity_factors (route, minute, factor, utilisation, planned_rps, \
                 capacity_rps) \
             SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::float8[], $4::float8[], \
                 $5::float8[], $6::float8[]) \
             ON CONFLICT (route, minute) DO UPDATE SET factor = EXCLUDED.factor, \
                 utilisation = EXCLUDED.utilisation, planned_rps = EXCLUDED.planned_rps, \
                 capacity_rps = EXCLUDED.capacity_rps",
        )
        .bind(chunk.iter().map(|r| r.route.as_str()).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|r| to_chrono(r.minute))
                .collect::<Vec<_>>(),
        )
        .bind(chunk.iter().map(|r| r.factor).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|r| r.utilisation.filter(|v| v.is_finite()))
                .collect::<Vec<_>>(),
        )
        .bind(
            chunk
                .iter()
                .map(|r| r.planned_rps.filter(|v| v.is_finite()))
                .collect::<Vec<_>>(),
        )
        .bind(chunk.iter().map(|r| r.capacity_rps).collect::<Vec<_>>())
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// The last stored capacity factor of every route before `before`: `(route, minute, factor)`.
/// The forecast loop restores its hysteresis state from these after a restart.
pub async fn last_factors(
    pool: &PgPool,
    before: Timestamp,
) -> Result<Vec<(String, Timestamp, f64)>> {
    let rows: Vec<(String, DateTime<Utc>, f64)> = sqlx::query_as(
        "SELECT DISTINCT ON (route) route, minute, factor FROM capacity_factors \
         WHERE minute < $1 ORDER BY route, minute DESC",
    )
    .bind(to_chrono(before))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(r, m, f)| (r, from_chrono(m), f))
        .collect())
}

/// The forecast cursor: minutes before `evaluated_until` are final; the last refit time.
pub async fn cursor(pool: &PgPool) -> Result<Option<(Timestamp, Option<Timestamp>)>> {
    let row: Option<(DateTime<Utc>, Option<DateTime<Utc>>)> =
        sqlx::query_as("SELECT evaluated_until, last_refit FROM forecast_cursor")
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(a, b)| (from_chrono(a), b.map(from_chrono))))
}

pub async fn advance_cursor(
    pool: &PgPool,
    evaluated_until: Timestamp,
    last_refit: Option<Timestamp>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO forecast_cursor (id, evaluated_until, last_refit) VALUES (true, $1, $2) \
         ON CONFLICT (id) DO UPDATE SET \
             evaluated_until = greatest(forecast_cursor.evaluated_until, EXCLUDED.evaluated_until), \
             last_refit = coalesce(EXCLUDED.last_refit, forecast_cursor.last_refit), \
             updated_at = now()",
    )
    .bind(to_chrono(evaluated_until))
    .bind(last_refit.map(to_chrono))
    .execute(pool)
    .await?;
    Ok(())
}

// ---- read side (GET /v1/forecasts) ----

fn rfc3339<S: serde::Serializer>(t: &Timestamp, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_string())
}

fn rfc3339_opt<S: serde::Serializer>(
    t: &Option<Timestamp>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_string()),
        None => s.serialize_none(),
    }
}

/// The chosen model of a series and its backtest error.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredModel {
    pub model: String,
    #[serde(serialize_with = "rfc3339")]
    pub fitted_at: Timestamp,
    #[serde(serialize_with = "rfc3339")]
    pub history_from: Timestamp,
    pub season_minutes: i32,
    pub horizon_minutes: i32,
    pub backtest: StoredBacktest,
    pub cleaned_points: i32,
    pub zero_minutes: i32,
    pub excluded_requests: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredBacktest {
    pub origins: i32,
    pub mase: f64,
    pub smape: f64,
    pub seasonal_naive_mase: f64,
    pub candidates: serde_json::Value,
}

/// A route's capacity as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredCapacity {
    pub capacity_rps: f64,
    pub source: String,
    pub evidence: Option<serde_json::Value>,
    #[serde(serialize_with = "rfc3339")]
    pub computed_at: Timestamp,
}

/// One capacity factor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredFactor {
    #[serde(serialize_with = "rfc3339")]
    pub minute: Timestamp,
    pub factor: f64,
    pub utilisation: Option<f64>,
    pub planned_rps: Option<f64>,
}

/// One minute of the series view: actual requests (all clients; `null` after the data), the
/// forecast and its interval (`null` where none was made).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesPoint {
    #[serde(serialize_with = "rfc3339")]
    pub minute: Timestamp,
    pub actual: Option<i64>,
    pub forecast: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
}

/// A series in the route list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteSummary {
    pub route: String,
    pub model: Option<String>,
    pub mase: Option<f64>,
    pub seasonal_naive_mase: Option<f64>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub fitted_at: Option<Timestamp>,
    pub capacity_rps: Option<f64>,
    pub capacity_source: Option<String>,
    pub factor: Option<f64>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub factor_minute: Option<Timestamp>,
}

/// Every series with a model, a capacity or a factor, the total first, then routes by name.
pub async fn list_routes(pool: &PgPool) -> Result<Vec<RouteSummary>> {
    type Row = (
        String,
        Option<String>,
        Option<f64>,
        Option<f64>,
        Option<DateTime<Utc>>,
        Option<f64>,
        Option<String>,
        Option<f64>,
        Option<DateTime<Utc>>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "WITH routes AS (SELECT route FROM forecast_models UNION SELECT route FROM route_capacity), \
              latest AS (SELECT DISTINCT ON (route) route, minute, factor FROM capacity_factors \
                         ORDER BY route, minute DESC) \
         SELECT r.route, m.model, m.mase, m.seasonal_naive_mase, m.fitted_at, c.capacity_rps, \
                c.source, l.factor, l.minute \
         FROM routes r LEFT JOIN forecast_models m USING (route) \
              LEFT JOIN route_capacity c USING (route) LEFT JOIN latest l USING (route) \
         ORDER BY (r.route = '*') DESC, r.route",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| RouteSummary {
            route: r.0,
            model: r.1,
            mase: r.2,
            seasonal_naive_mase: r.3,
            fitted_at: r.4.map(from_chrono),
            capacity_rps: r.5,
            capacity_source: r.6,
            factor: r.7,
            factor_minute: r.8.map(from_chrono),
        })
        .collect())
}

type FactorDb = (DateTime<Utc>, f64, Option<f64>, Option<f64>);

/// One series in detail over a window of minutes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteForecast {
    pub route: String,
    pub model: Option<StoredModel>,
    pub capacity: Option<StoredCapacity>,
    /// The latest capacity factor (1 when none was computed: no capacity known).
    pub factor: Option<StoredFactor>,
    pub series: Vec<SeriesPoint>,
    pub factors: Vec<StoredFactor>,
}

/// A series over `[since, until)`: actuals from the rollups, stored forecasts, factors. `None`
/// when the route is unknown (no rollup, model or capacity ever).
pub async fn route_forecast(
    pool: &PgPool,
    route: &str,
    since: Timestamp,
    until: Timestamp,
) -> Result<Option<RouteForecast>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    type ModelDb = (
        String,
        DateTime<Utc>,
        DateTime<Utc>,
        i32,
        i32,
        i32,
        f64,
        f64,
        f64,
        serde_json::Value,
        i32,
        i32,
        i64,
    );
    let model: Option<ModelDb> = sqlx::query_as(
        "SELECT model, fitted_at, history_from, season_minutes, horizon_minutes, \
             backtest_origins, mase, smape, seasonal_naive_mase, candidates, cleaned_points, \
             zero_minutes, excluded_requests FROM forecast_models WHERE route = $1",
    )
    .bind(route)
    .fetch_optional(&mut *tx)
    .await?;
    let capacity: Option<(f64, String, Option<serde_json::Value>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT capacity_rps, source, evidence, computed_at FROM route_capacity \
             WHERE route = $1",
    )
    .bind(route)
    .fetch_optional(&mut *tx)
    .await?;
    let known: bool = if route == TOTAL {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM rollup_route_minute)")
            .fetch_one(&mut *tx)
            .await?
    } else {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM rollup_route_minute WHERE route = $1)")
            .bind(route)
            .fetch_one(&mut *tx)
            .await?
    };
    if model.is_none() && capacity.is_none() && !known {
        return Ok(None);
    }
    let actual_rows: Vec<(DateTime<Utc>, i64)> = if route == TOTAL {
        sqlx::query_as(
            "SELECT minute, sum(requests)::int8 FROM rollup_route_minute \
             WHERE minute >= $1 AND minute < $2 GROUP BY minute",
        )
        .bind(to_chrono(since))
        .bind(to_chrono(until))
        .fetch_all(&mut *tx)
        .await?
    } else {
        sqlx::query_as(
            "SELECT minute, requests FROM rollup_route_minute \
             WHERE route = $3 AND minute >= $1 AND minute < $2",
        )
        .bind(to_chrono(since))
        .bind(to_chrono(until))
        .bind(route)
        .fetch_all(&mut *tx)
        .await?
    };
    let newest_actual: Option<DateTime<Utc>> = if route == TOTAL {
        sqlx::query_scalar("SELECT max(minute) FROM rollup_route_minute")
            .fetch_one(&mut *tx)
            .await?
    } else {
        sqlx::query_scalar("SELECT max(minute) FROM rollup_route_minute WHERE route = $1")
            .bind(route)
            .fetch_one(&mut *tx)
            .await?
    };
    let points: Vec<(DateTime<Utc>, f64, f64, f64)> = sqlx::query_as(
        "SELECT minute, forecast, lower, upper FROM forecast_points \
         WHERE route = $1 AND minute >= $2 AND minute < $3",
    )
    .bind(route)
    .bind(to_chrono(since))
    .bind(to_chrono(until))
    .fetch_all(&mut *tx)
    .await?;
    let factor_rows: Vec<FactorDb> = sqlx::query_as(
        "SELECT minute, factor, utilisation, planned_rps FROM capacity_factors \
         WHERE route = $1 AND minute >= $2 AND minute < $3 ORDER BY minute",
    )
    .bind(route)
    .bind(to_chrono(since))
    .bind(to_chrono(until))
    .fetch_all(&mut *tx)
    .await?;
    let latest: Option<FactorDb> = sqlx::query_as(
        "SELECT minute, factor, utilisation, planned_rps FROM capacity_factors \
         WHERE route = $1 ORDER BY minute DESC LIMIT 1",
    )
    .bind(route)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;

    let len = usize::try_from((until.micros() - since.micros()) / MICROS_PER_MINUTE).unwrap_or(0);
    let newest = newest_actual.map(from_chrono);
    let mut series: Vec<SeriesPoint> = (0..len)
        .map(|i| {
            let minute = Timestamp::from_micros(since.micros() + i as i64 * MICROS_PER_MINUTE);
            SeriesPoint {
                minute,
                actual: newest.filter(|&n| minute <= n).map(|_| 0),
                forecast: None,
                lower: None,
                upper: None,
            }
        })
        .collect();
    for (m, n) in actual_rows {
        if let Some(i) = minute_index(since, m, len) {
            series[i].actual = Some(n);
        }
    }
    for (m, f, lo, hi) in points {
        if let Some(i) = minute_index(since, m, len) {
            series[i].forecast = Some(f);
            series[i].lower = Some(lo);
            series[i].upper = Some(hi);
        }
    }
    let to_factor =
        |(m, factor, utilisation, planned_rps): (DateTime<Utc>, f64, Option<f64>, Option<f64>)| {
            StoredFactor {
                minute: from_chrono(m),
                factor,
                utilisation,
                planned_rps,
            }
        };
    Ok(Some(RouteForecast {
        route: route.to_owned(),
        model: model.map(|m| StoredModel {
            model: m.0,
            fitted_at: from_chrono(m.1),
            history_from: from_chrono(m.2),
            season_minutes: m.3,
            horizon_minutes: m.4,
            backtest: StoredBacktest {
                origins: m.5,
                mase: m.6,
                smape: m.7,
                seasonal_naive_mase: m.8,
                candidates: m.9,
            },
            cleaned_points: m.10,
            zero_minutes: m.11,
            excluded_requests: m.12,
        }),
        capacity: capacity.map(|c| StoredCapacity {
            capacity_rps: c.0,
            source: c.1,
            evidence: c.2,
            computed_at: from_chrono(c.3),
        }),
        factor: latest.map(to_factor),
        series,
        factors: factor_rows.into_iter().map(to_factor).collect(),
    }))
}

/// The newest minute that has a rollup, a forecast point or a factor (the default end of the API
/// window).
pub async fn newest_minute(pool: &PgPool) -> Result<Option<Timestamp>> {
    let t: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT greatest((SELECT max(minute) FROM rollup_route_minute), \
                         (SELECT max(minute) FROM forecast_points))",
    )
    .fetch_one(pool)
    .await?;
    Ok(t.map(from_chrono))
}
