//! `GET /v1/traffic` (per-step sums from the rollups, dense, with 429s), `GET
//! /v1/clients/{client}/limits` (rules in force naming a client) and the static UI at `/ui`.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::fixtures::at;
use crate::helpers::TestApp;

/// Rollups: `/a` 10 requests a minute (2 of them 429) for minutes 0..30, `/b` 5 a minute for
/// minutes 10..20; client `k1` (api_key) 3 a minute for minutes 0..30 and the same value as an
/// ip with 1 a minute.
async fn seed(app: &TestApp) {
    for (route, n, l, from, to) in [("/a", 10, 2, 0, 29), ("/b", 5, 0, 10, 19)] {
        sqlx::query(
            "INSERT INTO rollup_route_minute (route, minute, requests, status_2xx, status_3xx,
                 status_401, status_403, status_404, status_429, status_4xx_other, status_5xx,
                 method_get, method_post, method_other, bytes_sent, bytes_received,
                 latency_sum_us, latency_count, latency_max_us)
             SELECT $1, m, $2, $2 - $3 - 1, 0, 0, 0, 1, $3, 0, 0, $2, 0, 0, 0, 0, $2 * 4000, $2, 9000
             FROM generate_series($4::timestamptz, $5::timestamptz, interval '1 minute') AS m",
        )
        .bind(route)
        .bind(n as i64)
        .bind(l as i64)
        .bind(at(from))
        .bind(at(to))
        .execute(&app.db.pool)
        .await
        .unwrap();
    }
    for (kind, n) in [("api_key", 3i64), ("ip", 1)] {
        sqlx::query(
            "INSERT INTO rollup_client_minute (client_kind, client, minute, requests, status_2xx,
                 status_3xx, status_401, status_403, status_404, status_429, status_4xx_other,
                 status_5xx, method_get, method_post, method_other, bytes_sent, bytes_received,
                 latency_sum_us, latency_count, latency_max_us)
             SELECT $1, 'k1', m, $2, $2, 0, 0, 0, 0, 0, 0, 0, $2, 0, 0, 0, 0, 0, 0, 0
             FROM generate_series($3::timestamptz, $4::timestamptz, interval '1 minute') AS m",
        )
        .bind(kind)
        .bind(n)
        .bind(at(0))
        .bind(at(29))
        .execute(&app.db.pool)
        .await
        .unwrap();
    }
}

fn requests(v: &Value) -> Vec<i64> {
    v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["requests"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn traffic_is_summed_per_step_and_dense() {
    let app = TestApp::new().await;
    seed(&app).await;
    let res = app
        .get(
            "/v1/traffic?from=2026-03-02T00:00:00Z&to=2026-03-02T00:40:00Z&step=10m",
            Some(&app.analyst),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{:?}", res.json());
    let v = res.json();
    assert_eq!(v["step_seconds"], 600);
    assert_eq!(requests(&v), [100, 150, 100, 0]);
    assert_eq!(v["points"][1]["t"], "2026-03-02T00:10:00Z");
    assert_eq!(v["points"][1]["status_429"], 20);
    assert_eq!(v["points"][1]["status_4xx"], 20);
    assert_eq!(v["points"][0]["latency_avg_ms"], 4.0);
    assert_eq!(v["points"][3]["latency_avg_ms"], Value::Null);
    assert_eq!(
        v["totals"],
        json!({"requests": 350, "status_429": 60, "status_4xx": 40, "status_5xx": 0})
    );

    let route = app
        .get(
            "/v1/traffic?from=2026-03-02T00:00:00Z&to=2026-03-02T00:30:00Z&step=10m&route=/b",
            Some(&app.analyst),
        )
        .await
        .json();
    assert_eq!(requests(&route), [0, 50, 0]);

    // One client: every kind by default, or one kind.
    let client = app
        .get(
            "/v1/traffic?from=2026-03-02T00:00:00Z&to=2026-03-02T00:30:00Z&step=15m&client=k1",
            Some(&app.analyst),
        )
        .await
        .json();
    assert_eq!(requests(&client), [60, 60]);
    let ip = app
        .get(
            "/v1/traffic?from=2026-03-02T00:00:00Z&to=2026-03-02T00:30:00Z&step=15m&client=k1&client_kind=ip",
            Some(&app.analyst),
        )
        .await
        .json();
    assert_eq!(requests(&ip), [15, 15]);

    // Defaults: six hours ending a minute after the newest rollup minute, one-minute steps.
    let d = app.get("/v1/traffic", Some(&app.analyst)).await.json();
    assert_eq!(d["to"], "2026-03-02T00:30:00Z");
    assert_eq!(d["from"], "2026-03-01T18:30:00Z");
    assert_eq!(d["step_seconds"], 60);
    assert_eq!(d["points"].as_array().unwrap().len(), 360);
    assert_eq!(d["totals"]["requests"], 350);
}

#[tokio::test]
async fn traffic_errors_say_what_is_wrong() {
    let app = TestApp::new().await;
    for (q, detail) in [
        ("step=90s", "invalid step \"90s\": expected a whole number of minutes such as 60, 60s, 5m, 1h or 1d (at most 7d)"),
        ("from=2026-03-02T00:00:00Z&to=2026-03-12T00:00:00Z&step=1m", "14400 steps of 60 s is more than 2000 points: use a larger step or a shorter range"),
        ("from=2026-03-02T01:00:00Z&to=2026-03-02T01:00:30Z", "from (2026-03-02T01:00:00Z) must be before to (2026-03-02T01:00:00Z) by at least a minute"),
        ("route=/a&client=k1", "pass route or client, not both (traffic is rolled up per route and per client separately)"),
        ("route=a", "invalid route \"a\": expected a route such as /v1/search"),
        ("client_kind=ip", "client_kind needs client"),
        ("client=k1&client_kind=cookie", "unknown client_kind \"cookie\" (expected one of api_key, consumer, user, ip)"),
        ("to=yesterday", "invalid to \"yesterday\": expected an RFC 3339 time such as 2026-03-02T04:10:00Z"),
    ] {
        app.get(&format!("/v1/traffic?{q}"), Some(&app.analyst))
            .await
            .assert_problem(StatusCode::BAD_REQUEST, detail);
    }
    let unknown = app.get("/v1/traffic?color=red", Some(&app.analyst)).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    app.get("/v1/traffic", Some(&app.gateway))
        .await
        .assert_problem(
            StatusCode::FORBIDDEN,
            "this token's role (gateway) may not read traffic; it needs the analyst role",
        );
    assert_eq!(
        app.get("/v1/traffic", None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn limits_in_force_for_a_client() {
    let app = TestApp::new().await;
    let none = app
        .get("/v1/clients/k1/limits", Some(&app.analyst))
        .await
        .json();
    assert_eq!(
        none,
        json!({"client": "k1", "version": null, "rules": [], "per_client": [], "truncated": false})
    );
    let doc = json!({"format": "sluice.policy/v1", "rules": [
        {"id": "per-key", "selector": {"api_key": "*"},
         "limit": {"algorithm": "fixed_window", "rate": 100, "window_seconds": 60}},
        {"id": "k1", "selector": {"api_key": "k1"},
         "limit": {"algorithm": "fixed_window", "rate": 10, "window_seconds": 60}},
        {"id": "k2", "selector": {"api_key": "k2"},
         "limit": {"algorithm": "fixed_window", "rate": 10, "window_seconds": 60}},
        {"id": "subnet", "selector": {"ip": "198.51.100.0/24"},
         "limit": {"algorithm": "fixed_window", "rate": 50, "window_seconds": 60}},
    ]});
    let p = sluice_core::policy::Policy::parse(doc.to_string().as_bytes()).unwrap();
    sluice_store::policy::publish(
        &app.db.pool,
        &p,
        &sluice_store::policy::Publish {
            actor: "cli:test",
            comment: None,
            group: None,
        },
    )
    .await
    .unwrap();
    app.state.policy.refresh(&app.db.pool).await.unwrap();
    let ids = |v: &Value, part: &str| -> Vec<String> {
        v[part]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let k1 = app
        .get("/v1/clients/k1/limits", Some(&app.analyst))
        .await
        .json();
    assert_eq!(k1["version"], 1);
    assert_eq!(ids(&k1, "rules"), ["k1"]);
    assert_eq!(ids(&k1, "per_client"), ["per-key"]);
    let ip = app
        .get("/v1/clients/198.51.100.7/limits", Some(&app.analyst))
        .await
        .json();
    assert_eq!(ids(&ip, "rules"), ["subnet"]);
    app.get("/v1/clients/k1/limits", Some(&app.gateway))
        .await
        .assert_problem(
        StatusCode::FORBIDDEN,
        "this token's role (gateway) may not read the limits in force; it needs the analyst role",
    );
}

#[tokio::test]
async fn the_ui_is_served_without_a_token_and_holds_no_data() {
    let app = TestApp::new().await;
    let index = app.get("/ui", None).await;
    assert_eq!(index.status, StatusCode::OK);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(index
        .header("content-security-policy")
        .unwrap()
        .contains("script-src 'self'"));
    let html = String::from_utf8(index.body.clone()).unwrap();
    assert!(html.contains("/ui/assets/app.js"), "{html}");
    for (path, ct) in [
        ("/ui/assets/app.js", "text/javascript; charset=utf-8"),
        (
            "/ui/assets/uPlot.iife.min.js",
            "text/javascript; charset=utf-8",
        ),
        ("/ui/assets/style.css", "text/css; charset=utf-8"),
    ] {
        let res = app.get(path, None).await;
        assert_eq!(res.status, StatusCode::OK, "{path}");
        assert_eq!(res.header("content-type"), Some(ct), "{path}");
        assert!(!res.body.is_empty());
    }
    app.get("/ui/assets/secrets.json", None)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "UI asset \"secrets.json\" not found");
}
