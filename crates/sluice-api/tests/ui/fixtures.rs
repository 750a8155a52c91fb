//! The data the UI shows, written with SQL and the store (no detection or tuning run needed):
//! six hours of per-route and per-client rollups with 429s, the total's forecast with its
//! interval, open anomalies (one a campaign with members), a client's minute features, profile
//! and reputation, two policy versions, gateways, and pending limit suggestions, all in log time
//! from 2026-03-02T00:00:00Z.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use sluice_core::policy::Policy;
use sluice_store::policy::{self as store, GatewayReport, Publish};
use sqlx::PgPool;

/// Minutes of traffic written.
pub const MINUTES: i64 = 360;
/// The client the anomaly, profile, reputation and suggestion are about.
pub const ABUSER: &str = "key-abuser";

/// 2026-03-02T00:00:00Z plus `minutes`.
pub fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + TimeDelta::minutes(minutes)
}

fn policy(abuser_rate: u64) -> Policy {
    Policy::parse(
        json!({
            "format": "sluice.policy/v1",
            "rules": [
                {"id": "per-key", "selector": {"api_key": "*"},
                 "limit": {"algorithm": "token_bucket", "rate": 600, "window_seconds": 60, "burst": 50}},
                {"id": "client-key-abuser", "selector": {"api_key": ABUSER},
                 "limit": {"algorithm": "token_bucket", "rate": abuser_rate, "window_seconds": 60, "burst": 20}},
            ]
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

/// Everything above; returns the id of the pending suggestion for [`ABUSER`].
pub async fn seed(pool: &PgPool) -> i64 {
    // Rollups: two routes with a daily-ish wave, 429s while the abuser is active.
    sqlx::query(
        "INSERT INTO rollup_route_minute (route, minute, requests, status_2xx, status_3xx,
             status_401, status_403, status_404, status_429, status_4xx_other, status_5xx,
             method_get, method_post, method_other, bytes_sent, bytes_received,
             latency_sum_us, latency_count, latency_max_us)
         SELECT r, m, n, n - l - 3, 0, 1, 0, 2, l, 0, 0, n, 0, 0, n * 500, 0, n * 20000, n, 90000
         FROM (SELECT r, m,
                      (400 + 200 * sin(extract(epoch FROM m) / 3600.0) + (CASE WHEN r = '/v1/search' THEN 300 ELSE 0 END)
                       + (CASE WHEN r = '/v1/search' AND m >= $3 AND m < $4 THEN 280 ELSE 0 END))::int8 AS n,
                      (CASE WHEN m >= $3 AND m < $4 THEN 40 ELSE 0 END)::int8 AS l
               FROM unnest(ARRAY['/v1/search', '/v1/cart']) AS r,
                    generate_series($1::timestamptz, $2::timestamptz, interval '1 minute') AS m) s",
    )
    .bind(at(0))
    .bind(at(MINUTES - 1))
    .bind(at(240))
    .bind(at(300))
    .execute(pool)
    .await
    .expect("route rollups");
    sqlx::query(
        "INSERT INTO rollup_client_minute (client_kind, client, minute, requests, status_2xx,
             status_3xx, status_401, status_403, status_404, status_429, status_4xx_other,
             status_5xx, method_get, method_post, method_other, bytes_sent, bytes_received,
             latency_sum_us, latency_count, latency_max_us)
         SELECT 'api_key', $5, m, n, n - l, 0, 0, 0, 0, l, 0, 0, n, 0, 0, n * 500, 0, n * 20000, n, 90000
         FROM (SELECT m, (CASE WHEN m >= $3 AND m < $4 THEN 300 ELSE 20 END)::int8 AS n,
                         (CASE WHEN m >= $3 AND m < $4 THEN 40 ELSE 0 END)::int8 AS l
               FROM generate_series($1::timestamptz, $2::timestamptz, interval '1 minute') AS m) s",
    )
    .bind(at(0))
    .bind(at(MINUTES - 1))
    .bind(at(240))
    .bind(at(300))
    .bind(ABUSER)
    .execute(pool)
    .await
    .expect("client rollups");
    // The total's forecast: the wave without the abuser, with a ±15% interval.
    sqlx::query(
        "INSERT INTO forecast_points (route, minute, fitted_at, forecast, lower, upper)
         SELECT '*', m, $1, f, f * 0.85, f * 1.15
         FROM (SELECT m, 1100 + 400 * sin(extract(epoch FROM m) / 3600.0) AS f
               FROM generate_series($1::timestamptz, $2::timestamptz, interval '1 minute') AS m) s",
    )
    .bind(at(0))
    .bind(at(MINUTES - 1))
    .execute(pool)
    .await
    .expect("forecast points");

    // Anomalies: the abuser's scraping, a campaign, and a resolved one.
    let reasons = json!([
        {"feature": "requests", "observed": 300.0, "expected": 20.0},
        {"feature": "distinct_routes", "observed": 41.0, "expected": 3.0},
        {"feature": "error_share", "observed": 0.4, "expected": 0.05},
    ]);
    let anomaly: i64 = sqlx::query_scalar(
        "INSERT INTO anomalies (client_kind, client, kind, score, first_detected, last_flagged,
             state, reasons, campaign, member_count)
         VALUES ('api_key', $1, 'scraping', 0.93, $2, $3, 'open', $4, NULL, 0) RETURNING id",
    )
    .bind(ABUSER)
    .bind(at(241))
    .bind(at(299))
    .bind(&reasons)
    .fetch_one(pool)
    .await
    .expect("anomaly");
    let campaign: i64 = sqlx::query_scalar(
        "INSERT INTO anomalies (client_kind, client, kind, score, first_detected, last_flagged,
             state, reasons, campaign, member_count)
         VALUES ('ip', '198.51.100.7', 'credential_stuffing', 0.81, $1, $2, 'open', $3, 'subnet 198.51.100.0/24', 3)
         RETURNING id",
    )
    .bind(at(200))
    .bind(at(230))
    .bind(json!([{"feature": "status_401", "observed": 55.0, "expected": 0.5}]))
    .fetch_one(pool)
    .await
    .expect("campaign");
    for ip in ["198.51.100.7", "198.51.100.8", "198.51.100.9"] {
        sqlx::query(
            "INSERT INTO anomaly_members (anomaly_id, client_kind, client) VALUES ($1, 'ip', $2)",
        )
        .bind(campaign)
        .bind(ip)
        .execute(pool)
        .await
        .expect("member");
    }
    sqlx::query(
        "INSERT INTO anomalies (client_kind, client, kind, score, first_detected, last_flagged,
             state, reasons, member_count)
         VALUES ('api_key', 'key-spiky', 'rate_spike', 0.62, $1, $2, 'resolved', '[]', 0)",
    )
    .bind(at(60))
    .bind(at(70))
    .execute(pool)
    .await
    .expect("resolved anomaly");

    // The abuser's minutes, baseline and reputation.
    sqlx::query(
        "INSERT INTO client_minute_features (client_kind, client, minute, requests, peak_10s,
             distinct_routes, distinct_paths, distinct_ips, distinct_uas, route_entropy,
             error_share, status_401, status_403, status_404, status_429, status_5xx, bytes_sent,
             expected_requests, score)
         SELECT 'api_key', $1, m, CASE WHEN m >= $4 AND m < $5 THEN 300 ELSE 18 + (extract(minute FROM m)::int % 5) END,
                4, 3, 5, 1, 1, 1.2, 0.05, 0, 0, 1, 0, 0, 1000, 20.0, 0.1
         FROM generate_series($2::timestamptz, $3::timestamptz, interval '1 minute') AS m",
    )
    .bind(ABUSER)
    .bind(at(0))
    .bind(at(MINUTES - 1))
    .bind(at(240))
    .bind(at(300))
    .execute(pool)
    .await
    .expect("minute features");
    let hours: Vec<_> = (0..24)
        .map(|h| json!({"minutes": 400, "median": 15.0 + (h % 6) as f64, "mad": 2.0}))
        .collect();
    sqlx::query(
        "INSERT INTO client_profiles (client_kind, client, computed_at, history_from,
             active_minutes, first_seen, last_seen, requests_median, requests_mad, requests_p95,
             peak_10s_p95, distinct_routes_median, error_share_median, hour_of_day)
         VALUES ('api_key', $1, $2, $3, 9000, $3, $4, 20.0, 2.0, 26.0, 5.0, 3.0, 0.05, $5)",
    )
    .bind(ABUSER)
    .bind(at(MINUTES))
    .bind(at(-7 * 24 * 60))
    .bind(at(MINUTES - 1))
    .bind(json!(hours))
    .execute(pool)
    .await
    .expect("profile");
    sqlx::query(
        "INSERT INTO client_reputation (client, score, updated_at, first_seen, good_minutes, state)
         VALUES ($1, 0.35, $2, $3, 200, '{}')",
    )
    .bind(ABUSER)
    .bind(at(MINUTES - 1))
    .bind(at(-7 * 24 * 60))
    .execute(pool)
    .await
    .expect("reputation");
    for (i, (minute, delta, after)) in [(100, 0.02, 0.9), (241, -0.4, 0.5), (270, -0.15, 0.35)]
        .into_iter()
        .enumerate()
    {
        sqlx::query(
            "INSERT INTO reputation_events (client, at, delta, score_after, kind, reason)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(ABUSER)
        .bind(at(minute))
        .bind(delta)
        .bind(after)
        .bind(if i == 0 { "good_behaviour" } else { "anomaly" })
        .bind(json!({"anomaly_id": anomaly}))
        .execute(pool)
        .await
        .expect("reputation event");
    }

    // Policy: two versions, three gateways (one behind).
    for (rate, comment) in [(300, "initial"), (240, "tighten key-abuser")] {
        store::publish(
            pool,
            &policy(rate),
            &Publish {
                actor: "cli:test",
                comment: Some(comment),
                group: None,
            },
        )
        .await
        .expect("publish");
    }
    for (id, version) in [("edge-1", 2), ("edge-2", 2), ("edge-3", 1)] {
        store::report_gateway(
            pool,
            id,
            &GatewayReport {
                group: None,
                applied_version: Some(version),
                error: None,
            },
        )
        .await
        .expect("gateway report");
    }

    // A pending suggestion for the abuser (what the tuning step writes), and one for another key.
    let current = json!({"id": "client-key-abuser", "selector": {"api_key": ABUSER},
        "limit": {"algorithm": "token_bucket", "rate": 240, "window_seconds": 60, "burst": 20}});
    let rule = json!({"id": "client-key-abuser", "selector": {"api_key": ABUSER},
        "limit": {"algorithm": "token_bucket", "rate": 60, "window_seconds": 60, "burst": 10}});
    let backtest = json!({
        "limit": rule["limit"], "counter": "per_client", "exact": false, "clients": [],
        "normal": {"clients": 40, "clients_limited": 0, "requests": 52000, "rejected": 0},
        "anomalous": {"clients": 1, "clients_limited": 1, "requests": 18000, "rejected": 14400}
    });
    let diff = json!({"before": current["limit"], "after": rule["limit"], "change": "tighter",
        "rate_change": -0.75, "algorithm_changed": false, "burst_changed": true,
        "summary": "token_bucket 240/60s burst 20 -> token_bucket 60/60s burst 10 (-75% rate)"});
    let evidence = json!({
        "baseline": {"active_minutes": 9000, "first_seen": "2026-02-23T00:00:00Z",
                     "last_seen": "2026-03-02T05:59:00Z", "requests_median": 20.0,
                     "requests_mad": 2.0, "requests_p95": 26.0, "peak_10s_p95": 5.0},
        "anomaly": {"anomaly_id": anomaly, "kind": "scraping", "score": 0.93,
                    "attack_per_minute": 300.0, "pre_attack_per_minute": 20.0},
        "reputation": 0.35, "capacity_factor": 0.9, "forecast_per_minute": 1100.0,
        "backtest": backtest, "diff": diff, "confidence": 0.88,
        "reasons": ["open scraping anomaly (score 0.93)", "reputation 0.35 below 0.5"]
    });
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO limit_suggestions (rule_id, client, rule, current, diff, confidence, reasons,
             evidence, backtest, abusive, created_at, expires_at)
         VALUES ('client-key-abuser', $1, $2, $3, $4, 0.88, $5, $6, $7, true, $8, $9) RETURNING id",
    )
    .bind(ABUSER)
    .bind(&rule)
    .bind(&current)
    .bind(&diff)
    .bind(&evidence["reasons"])
    .bind(&evidence)
    .bind(&backtest)
    .bind(at(300))
    .bind(at(300 + 24 * 60))
    .fetch_one(pool)
    .await
    .expect("suggestion");
    sqlx::query(
        "INSERT INTO limit_suggestions (rule_id, client, rule, current, diff, confidence, reasons,
             evidence, backtest, abusive, created_at, expires_at)
         VALUES ('client-key-good', 'key-good', $1, NULL, $2, 0.7, '[]', $3, NULL, false, $4, $5)",
    )
    .bind(json!({"id": "client-key-good", "selector": {"api_key": "key-good"},
        "limit": {"algorithm": "token_bucket", "rate": 120, "window_seconds": 60, "burst": 30}}))
    .bind(json!({"before": null, "after": {"algorithm": "token_bucket", "rate": 120, "window_seconds": 60, "burst": 30},
        "change": "new", "rate_change": null, "algorithm_changed": false, "burst_changed": false,
        "summary": "new: token_bucket 120/60s burst 30"}))
    .bind(json!({"baseline": null, "anomaly": null, "reputation": 0.8, "capacity_factor": 1.0,
        "forecast_per_minute": null, "backtest": null, "diff": null, "confidence": 0.7, "reasons": []}))
    .bind(at(310))
    .bind(at(310 + 24 * 60))
    .execute(pool)
    .await
    .expect("second suggestion");
    id
}
