//! `GET /v1/forecasts` over rollups that the real forecast loop (`sluice_engine::forecast`) has
//! processed: the list with the total, one route's actual/forecast/interval series, the chosen
//! model with its backtest error, configured and learned capacities with evidence, the capacity
//! factor, outage minutes, and every error with its exact detail.

use axum::http::StatusCode;
use serde_json::Value;
use sluice_core::time::MICROS_PER_MINUTE;
use sluice_core::Timestamp;
use sluice_engine::forecast::{ForecastLoop, ForecastOptions};

use crate::helpers::TestApp;

const START: i64 = 1_772_409_600_000_000; // 2026-03-02T00:00:00Z
const MINUTES: i64 = 300;

fn minute(i: i64) -> chrono::DateTime<chrono::Utc> {
    Timestamp::from_micros(START + i * MICROS_PER_MINUTE).to_chrono()
}

/// `/v1/search`: hourly cycle between 5 and 15 rps, latency flat at 20 ms up to 10 rps and
/// climbing 10 ms per rps above (a knee at 10 rps). `/v1/cart`: 3 to 8 rps with a ten-minute
/// outage (no rows) at minutes 100..110.
async fn seed(app: &TestApp) {
    let pool = &app.db.pool;
    sqlx::query(
        "INSERT INTO ingest_batches (source, format, lines_read, lines_accepted, lines_rejected, \
         min_ts, max_ts) VALUES ('test', 'ndjson', 1, 1, 0, $1, $2)",
    )
    .bind(minute(0))
    .bind(minute(MINUTES - 1))
    .execute(pool)
    .await
    .unwrap();
    for i in 0..MINUTES {
        let phase = (2.0 * std::f64::consts::PI * (i % 60) as f64 / 60.0).sin();
        let wobble = ((i * 7919) % 13) as f64 / 13.0 - 0.5;
        let search_rps = 10.0 + 5.0 * phase + wobble;
        let latency_ms = 20.0 + 10.0 * (search_rps - 10.0).max(0.0);
        let cart_rps = 5.5 + 2.5 * phase + wobble;
        let mut rows = vec![("/v1/search", search_rps, latency_ms)];
        if !(100..110).contains(&i) {
            rows.push(("/v1/cart", cart_rps, 15.0));
        }
        for (route, rps, lat) in rows {
            let n = (rps * 60.0).round() as i64;
            sqlx::query(
                "INSERT INTO rollup_route_minute (route, minute, requests, status_2xx, status_3xx, \
                 status_401, status_403, status_404, status_429, status_4xx_other, status_5xx, \
                 method_get, method_post, method_other, bytes_sent, bytes_received, \
                 latency_sum_us, latency_count, latency_max_us) \
                 VALUES ($1, $2, $3, $3, 0, 0, 0, 0, 0, 0, 0, $3, 0, 0, 0, 0, $4, $3, $5)",
            )
            .bind(route)
            .bind(minute(i))
            .bind(n)
            .bind((lat * 1000.0) as i64 * n)
            .bind((lat * 2000.0) as i64)
            .execute(pool)
            .await
            .unwrap();
        }
    }
    let opts = ForecastOptions {
        capacities: [("/v1/cart".to_owned(), 5.0)].into_iter().collect(),
        threads: 1,
        ..ForecastOptions::default()
    };
    let mut fl = ForecastLoop::starting_at(opts, Timestamp::from_micros(START));
    fl.run_until(
        pool,
        Timestamp::from_micros(START + MINUTES * MICROS_PER_MINUTE),
    )
    .await
    .unwrap();
    assert_eq!(fl.stats().minutes, MINUTES as u64);
}

impl TestApp {
    async fn forecasts(&self, query: &str) -> Value {
        let uri = format!("/v1/forecasts{query}");
        let res = self.get(&uri, Some(&self.analyst)).await;
        assert_eq!(
            res.status,
            StatusCode::OK,
            "{uri}: {}",
            String::from_utf8_lossy(&res.body)
        );
        res.json()
    }
}

#[tokio::test]
async fn list_has_the_total_and_every_route_with_model_capacity_and_factor() {
    let app = TestApp::new().await;
    seed(&app).await;
    let list = app.forecasts("").await;
    assert_eq!(list["total"]["route"], "*");
    assert_eq!(list["total"]["fitted_at"], "2026-03-02T04:00:00Z");
    assert!(list["total"]["capacity_rps"].is_null());
    let routes = list["routes"].as_array().unwrap();
    let names: Vec<&str> = routes
        .iter()
        .map(|r| r["route"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["/v1/cart", "/v1/search"]);
    let cart = &routes[0];
    assert_eq!(cart["capacity_source"], "configured");
    assert_eq!(cart["capacity_rps"], 5.0);
    let f = cart["factor"].as_f64().unwrap();
    assert!(f > 0.0 && f < 1.0, "load above 5 rps must tighten: {cart}");
    assert_eq!(cart["factor_minute"], "2026-03-02T04:59:00Z");
    let search = &routes[1];
    assert_eq!(search["capacity_source"], "learned");
    let cap = search["capacity_rps"].as_f64().unwrap();
    assert!((cap - 10.0).abs() <= 1.5, "learned knee {cap}");
    assert!(search["mase"].as_f64().unwrap().is_finite());
}

#[tokio::test]
async fn one_route_has_actuals_forecasts_intervals_model_and_capacity() {
    let app = TestApp::new().await;
    seed(&app).await;
    let v = app.forecasts("?route=/v1/cart").await;
    assert_eq!(v["route"], "/v1/cart");
    let model = &v["model"];
    assert_eq!(model["fitted_at"], "2026-03-02T04:00:00Z");
    assert_eq!(model["history_from"], "2026-03-02T00:00:00Z");
    assert_eq!(model["season_minutes"], 60);
    assert_eq!(model["horizon_minutes"], 60);
    assert_eq!(model["zero_minutes"], 10, "the outage minutes are zeros");
    assert!(model["model"].as_str().unwrap().len() > 3);
    let bt = &model["backtest"];
    assert!(bt["origins"].as_i64().unwrap() >= 1);
    assert!(bt["mase"].as_f64().unwrap().is_finite());
    assert!(bt["seasonal_naive_mase"].as_f64().unwrap().is_finite());
    assert!(bt["candidates"].as_array().unwrap().len() >= 2);
    assert_eq!(v["capacity"]["source"], "configured");
    assert!(v["capacity"]["evidence"].is_null());

    // Default window: 180 minutes ending after the newest minute (04:59).
    let series = v["series"].as_array().unwrap();
    assert_eq!(series.len(), 180);
    assert_eq!(series[0]["minute"], "2026-03-02T02:00:00Z");
    assert_eq!(series[179]["minute"], "2026-03-02T04:59:00Z");
    for p in series {
        assert!(p["actual"].as_i64().is_some(), "{p}");
        // The first refit with enough history (two hourly seasons plus the horizon) is at 03:00.
        let fitted = p["minute"].as_str().unwrap() >= "2026-03-02T03:00:00Z";
        assert_eq!(p["forecast"].is_number(), fitted, "{p}");
        if fitted {
            let (lo, f, hi) = (
                p["lower"].as_f64().unwrap(),
                p["forecast"].as_f64().unwrap(),
                p["upper"].as_f64().unwrap(),
            );
            assert!(lo <= f && f <= hi, "{p}");
        }
    }
    let factors = v["factors"].as_array().unwrap();
    assert_eq!(factors.len(), 180);
    assert_eq!(v["factor"], factors[179]);
    assert!(factors
        .iter()
        .all(|f| f["factor"].as_f64().unwrap() > 0.0 && f["factor"].as_f64().unwrap() <= 1.0));

    // An earlier window: the outage shows as zero actuals.
    let v = app
        .forecasts("?route=/v1/cart&until=2026-03-02T01:55:00Z&window_minutes=10")
        .await;
    let actual: Vec<i64> = v["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["actual"].as_i64().unwrap())
        .collect();
    assert_eq!(actual.len(), 10);
    assert!(actual[..5].iter().all(|&a| a == 0), "{actual:?}");
    assert!(actual[5..].iter().all(|&a| a > 0), "{actual:?}");
}

#[tokio::test]
async fn learned_capacity_comes_with_its_evidence_and_the_total_is_a_series() {
    let app = TestApp::new().await;
    seed(&app).await;
    let v = app.forecasts("?route=/v1/search").await;
    let cap = &v["capacity"];
    assert_eq!(cap["source"], "learned");
    let ev = &cap["evidence"];
    assert!(ev["buckets"].as_array().unwrap().len() >= 6, "{ev}");
    assert!((ev["fit"]["knee_rps"].as_f64().unwrap() - 10.0).abs() <= 1.5);
    assert!((ev["fit"]["base_latency_ms"].as_f64().unwrap() - 20.0).abs() <= 3.0);

    for q in ["?route=*", "?route=total"] {
        let t = app.forecasts(q).await;
        assert_eq!(t["route"], "*");
        assert!(t["model"]["backtest"]["mase"].is_number());
        assert!(t["capacity"].is_null());
        assert!(t["factor"].is_null());
        let last = &t["series"].as_array().unwrap()[179];
        assert!(last["actual"].as_i64().unwrap() > 0);
    }
}

#[tokio::test]
async fn errors_say_what_was_wrong() {
    let app = TestApp::new().await;
    seed(&app).await;
    let cases = [
        (
            "?route=search",
            StatusCode::BAD_REQUEST,
            "invalid route \"search\": expected a route such as /v1/search, or * for the total",
        ),
        (
            "?route=",
            StatusCode::BAD_REQUEST,
            "route must not be empty",
        ),
        (
            "?route=/v1/cart&window_minutes=0",
            StatusCode::BAD_REQUEST,
            "window_minutes must be an integer from 1 to 10080, got \"0\"",
        ),
        (
            "?route=/v1/cart&until=yesterday",
            StatusCode::BAD_REQUEST,
            "invalid until \"yesterday\": expected an RFC 3339 time such as 2026-03-02T04:10:00Z",
        ),
        (
            "?window_minutes=10",
            StatusCode::BAD_REQUEST,
            "until and window_minutes need a route",
        ),
        (
            "?route=/v1/nothing",
            StatusCode::NOT_FOUND,
            "route \"/v1/nothing\" not found",
        ),
    ];
    for (q, status, detail) in cases {
        let res = app
            .get(&format!("/v1/forecasts{q}"), Some(&app.analyst))
            .await;
        res.assert_problem(status, detail);
    }
    let res = app
        .get("/v1/forecasts?routes=/v1/cart", Some(&app.analyst))
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(
        res.json()["detail"]
            .as_str()
            .unwrap()
            .contains("unknown field `routes`"),
        "{:?}",
        res.json()
    );
}

#[tokio::test]
async fn analysts_and_admins_only() {
    let app = TestApp::new().await;
    assert_eq!(
        app.get("/v1/forecasts", Some(&app.admin)).await.status,
        StatusCode::OK
    );
    app.get("/v1/forecasts", Some(&app.gateway))
        .await
        .assert_problem(
            StatusCode::FORBIDDEN,
            "this token's role (gateway) may not read forecasts; it needs the analyst role",
        );
    assert_eq!(
        app.get("/v1/forecasts", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Nothing forecast yet: an empty list.
    let v = app.forecasts("").await;
    assert!(v["total"].is_null());
    assert_eq!(v["routes"], serde_json::json!([]));
}

/// A restarted forecast loop continues each route's capacity factor from its last stored value:
/// a restart alone never lifts a tightening.
#[tokio::test]
async fn a_resumed_loop_keeps_the_stored_capacity_factor() {
    let app = TestApp::new().await;
    seed(&app).await;
    let pool = &app.db.pool;
    let stored: f64 = sqlx::query_scalar(
        "SELECT factor FROM capacity_factors WHERE route = '/v1/cart' ORDER BY minute DESC LIMIT 1",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert!(stored < 1.0, "the seed tightens /v1/cart: {stored}");
    let opts = ForecastOptions {
        capacities: [("/v1/cart".to_owned(), 5.0)].into_iter().collect(),
        threads: 1,
        ..ForecastOptions::default()
    };
    let resumed = ForecastLoop::resume(pool, opts).await.unwrap();
    assert_eq!(resumed.factor("/v1/cart"), stored);
    let search: f64 = sqlx::query_scalar(
        "SELECT factor FROM capacity_factors WHERE route = '/v1/search' \
         ORDER BY minute DESC LIMIT 1",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        resumed.factor("/v1/search"),
        search,
        "learned capacity, stored factor"
    );
    assert_eq!(
        resumed.factor("/v1/none"),
        1.0,
        "a route without factors is unconstrained"
    );
}
