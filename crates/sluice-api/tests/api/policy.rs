//! Policy delivery through the router: ETag/304, gzip, long polls that return on publish (also
//! one made by another process, seen through NOTIFY) or answer 304 at the timeout, exports,
//! publish/rollback/promote/diff, and gateway reports.

use std::io::Read;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, StatusCode};
use sluice_core::policy::Policy;
use sluice_store::policy::{self as store, Publish};

use crate::helpers::{request, send, Response, TestApp};

/// A policy document whose content depends on `rate`.
pub fn doc(rate: u64) -> String {
    format!(
        r#"{{"format":"sluice.policy/v1","rules":[
        {{"id":"per-key","selector":{{"api_key":"*"}},"limit":{{"algorithm":"token_bucket","rate":{rate},"window_seconds":60,"burst":10}}}},
        {{"id":"login","selector":{{"ip":"*","route":"/login","method":"POST"}},"limit":{{"algorithm":"fixed_window","rate":5,"window_seconds":60}},"shadow":true}}
    ]}}"#
    )
}

/// Publish straight through the store, as another process (the CLI) would, and refresh the
/// cache as that process's NOTIFY would shortly after.
pub async fn publish_direct(app: &TestApp, rate: u64, group: Option<&str>) -> i64 {
    let v = publish_elsewhere(app, rate, group).await;
    app.state.policy.refresh(&app.db.pool).await.unwrap();
    v
}

/// Publish straight through the store and leave noticing it to the server.
async fn publish_elsewhere(app: &TestApp, rate: u64, group: Option<&str>) -> i64 {
    let p = Policy::parse(doc(rate).as_bytes()).unwrap();
    store::publish(
        &app.db.pool,
        &p,
        &Publish {
            actor: "cli:test",
            comment: None,
            group,
        },
    )
    .await
    .unwrap()
    .version
}

async fn get_with(app: &TestApp, uri: &str, token: &str, headers: &[(&str, &str)]) -> Response {
    let mut b = request(Method::GET, uri, Some(token));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    app.send(b.body(Body::empty()).unwrap()).await
}

async fn post(app: &TestApp, uri: &str, token: &str, body: String) -> Response {
    let b = request(Method::POST, uri, Some(token)).header("content-type", "application/json");
    app.send(b.body(Body::from(body)).unwrap()).await
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test]
async fn etag_304_and_gzip() {
    let app = TestApp::new().await;
    app.get("/v1/policy", Some(&app.gateway))
        .await
        .assert_problem(
            StatusCode::NOT_FOUND,
            "policy for gateway group \"default\" (nothing has been published yet) not found",
        );
    let res = post(
        &app,
        "/v1/policy/versions?comment=first",
        &app.admin,
        doc(100),
    )
    .await;
    assert_eq!(
        res.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&res.body)
    );
    assert_eq!(res.header("location"), Some("/v1/policy/versions/1"));
    assert_eq!(res.json()["version"], 1);
    assert_eq!(res.json()["comment"], "first");

    let res = app.get("/v1/policy", Some(&app.gateway)).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_eq!(res.header("x-sluice-policy-version"), Some("1"));
    let etag = res.header("etag").unwrap().to_owned();
    let body = res.json();
    assert_eq!(body["format"], "sluice.policy/v1");
    assert_eq!(body["version"], 1);
    let hash = body["content_hash"].as_str().unwrap();
    assert_eq!(etag, format!("\"v1-{}\"", &hash[7..23]));
    assert_eq!(body["rules"][0]["id"], "login");
    assert_eq!(
        body["rules"][1]["ratelimit_policy"],
        "\"per-key\";q=100;w=60"
    );
    // The body is a valid policy again, with the same hash.
    let again = Policy::parse(&res.body).unwrap();
    assert_eq!(again.content_hash(), hash);
    // What the publishing server rendered from the upload is byte for byte what any other server
    // renders from the stored version.
    let fresh = sluice_api::policy::PolicyCache::default();
    let snap = fresh.snapshot(&app.db.pool).await.unwrap();
    assert_eq!(
        snap.for_group("default").unwrap().json.as_ref(),
        res.body.as_slice()
    );

    let res = get_with(
        &app,
        "/v1/policy",
        &app.gateway,
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(res.status, StatusCode::NOT_MODIFIED);
    assert!(res.body.is_empty());
    assert_eq!(res.header("etag"), Some(etag.as_str()));
    let res = get_with(
        &app,
        "/v1/policy",
        &app.gateway,
        &[("if-none-match", "\"v0-x\"")],
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);

    let plain = app.get("/v1/policy", Some(&app.analyst)).await.body;
    let res = get_with(
        &app,
        "/v1/policy",
        &app.gateway,
        &[("accept-encoding", "gzip, br")],
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("content-encoding"), Some("gzip"));
    assert_eq!(res.header("vary"), Some("accept-encoding"));
    assert_eq!(gunzip(&res.body), plain);

    // A new version changes the ETag; the old one no longer matches.
    publish_direct(&app, 200, None).await;
    let res = get_with(
        &app,
        "/v1/policy",
        &app.gateway,
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["version"], 2);
    assert_ne!(res.header("etag").unwrap(), etag);
}

#[tokio::test]
async fn long_poll_returns_on_publish_and_304_at_timeout() {
    let app = TestApp::new().await;
    publish_direct(&app, 100, None).await;
    let res = app.get("/v1/policy", Some(&app.gateway)).await;
    let etag = res.header("etag").unwrap().to_owned();

    // Nothing new: 304 after the wait, not before.
    let t = Instant::now();
    let res = get_with(
        &app,
        "/v1/policy?wait=300ms",
        &app.gateway,
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(res.status, StatusCode::NOT_MODIFIED);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );

    // A client that is behind gets the policy at once, without waiting.
    let t = Instant::now();
    let res = get_with(
        &app,
        "/v1/policy?wait=30s",
        &app.gateway,
        &[("if-none-match", "\"old\"")],
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(t.elapsed() < Duration::from_secs(5));

    // Published through the API: the waiting poll returns right away with the new version.
    let router = app.router.clone();
    let token = app.gateway.clone();
    let e = etag.clone();
    let waiting = tokio::spawn(async move {
        let t = Instant::now();
        let req = request(Method::GET, "/v1/policy?wait=30s", Some(&token))
            .header("if-none-match", e)
            .header("accept-encoding", "gzip")
            .body(Body::empty())
            .unwrap();
        (send(&router, req).await, t.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let res = post(&app, "/v1/policy/versions", &app.admin, doc(150)).await;
    assert_eq!(res.status, StatusCode::CREATED);
    let (res, took) = waiting.await.unwrap();
    assert_eq!(res.status, StatusCode::OK);
    assert!(took < Duration::from_secs(5), "{took:?}");
    let body: serde_json::Value = serde_json::from_slice(&gunzip(&res.body)).unwrap();
    assert_eq!(body["version"], 2);
    let etag2 = res.header("etag").unwrap().to_owned();

    // Published by another process (straight into the database): NOTIFY wakes the poll.
    let router = app.router.clone();
    let token = app.gateway.clone();
    let waiting = tokio::spawn(async move {
        let req = request(Method::GET, "/v1/policy?wait=30s", Some(&token))
            .header("if-none-match", etag2)
            .body(Body::empty())
            .unwrap();
        send(&router, req).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let v = publish_elsewhere(&app, 175, None).await;
    let res = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the long poll saw a publish from another process")
        .unwrap();
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["version"], v);
}

#[tokio::test]
async fn bad_parameters_are_400s_that_say_what_is_valid() {
    let app = TestApp::new().await;
    publish_direct(&app, 100, None).await;
    for (uri, detail) in [
        ("/v1/policy?wait=2m", "invalid wait \"2m\": expected a duration such as 30s, 500ms or 1m, at most 60s"),
        ("/v1/policy?wait=soon", "invalid wait \"soon\": expected a duration such as 30s, 500ms or 1m, at most 60s"),
        ("/v1/policy?format=yaml", "unknown format \"yaml\" (expected one of json, envoy-ratelimit, nginx)"),
        ("/v1/policy?group=Canary", "invalid gateway group \"Canary\": use 1 to 64 characters of a-z 0-9 _ -"),
        ("/v1/policy?domain=x", "domain applies only to format=envoy-ratelimit"),
        ("/v1/policy?since=1", "invalid query string: since: unknown field `since`, expected one of `wait`, `format`, `group`, `domain`"),
        ("/v1/policy/diff?from=1", "diff needs both from and to (policy versions)"),
        ("/v1/policy/diff?from=1&to=x", "to must be a policy version (an integer from 1), got \"x\""),
        ("/v1/policy/versions/0", "version must be a policy version (an integer from 1), got \"0\""),
    ] {
        app.get(uri, Some(&app.admin))
            .await
            .assert_problem(StatusCode::BAD_REQUEST, detail);
    }
    app.get("/v1/policy/versions/9", Some(&app.admin))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "policy version 9 not found");
    app.get("/v1/policy/diff?from=1&to=9", Some(&app.admin))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "policy version 9 not found");
}

#[tokio::test]
async fn exports_for_envoy_and_nginx() {
    let app = TestApp::new().await;
    publish_direct(&app, 120, None).await;
    let res = app
        .get(
            "/v1/policy?format=envoy-ratelimit&domain=edge",
            Some(&app.gateway),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("content-type"), Some("application/yaml"));
    let y = String::from_utf8(res.body.clone()).unwrap();
    assert!(y.contains("domain: \"edge\"\n"), "{y}");
    assert!(
        y.contains("  - key: api_key\n    # rule \"per-key\"\n"),
        "{y}"
    );
    assert!(y.contains("requests_per_unit: 120"), "{y}");
    assert!(y.contains("shadow_mode: true"), "{y}");
    let res = app.get("/v1/policy?format=nginx", Some(&app.gateway)).await;
    assert_eq!(res.status, StatusCode::OK);
    let n = String::from_utf8(res.body.clone()).unwrap();
    assert!(
        n.contains("limit_req_zone $sluice_key_1 zone=sluice_1:10m rate=2r/s;"),
        "{n}"
    );
    assert!(
        n.contains("limit_req zone=sluice_1 burst=10 nodelay;"),
        "{n}"
    );
    assert!(n.contains("# shadow: limit_req zone=sluice_0;"), "{n}");
}

#[tokio::test]
async fn publish_rejects_invalid_and_unchanged_documents() {
    let app = TestApp::new().await;
    let bad = r#"{"format":"sluice.policy/v1","rules":[
        {"id":"a","limit":{"algorithm":"fixed_window","rate":0,"window_seconds":1}},
        {"id":"a","limit":{"algorithm":"fixed_window","rate":1,"window_seconds":1}}]}"#;
    post(&app, "/v1/policy/versions", &app.admin, bad.into()).await.assert_problem(
        StatusCode::BAD_REQUEST,
        "invalid policy (2 problems):\n  rules[0].limit.rate: must be at least 1 (to block a client use a rate of 1 over a long window)\n  rules[1].id: duplicate rule id \"a\" (first used by rules[0])",
    );
    post(&app, "/v1/policy/versions", &app.admin, "{}".into())
        .await
        .assert_problem(
            StatusCode::BAD_REQUEST,
            "invalid policy: missing field `format` at line 1 column 2",
        );
    assert_eq!(
        post(&app, "/v1/policy/versions", &app.admin, doc(1))
            .await
            .status,
        StatusCode::CREATED
    );
    let res = post(&app, "/v1/policy/versions", &app.admin, doc(1)).await;
    assert_eq!(
        res.status,
        StatusCode::CONFLICT,
        "same content as the newest version"
    );
    assert_eq!(
        res.json()["type"].as_str().unwrap().rsplit('/').next(),
        Some("conflict")
    );
    assert!(res.json()["detail"]
        .as_str()
        .unwrap()
        .starts_with("policy unchanged: version 1 already has this content (sha256:"));
    post(&app, "/v1/policy/versions?group=x%20y", &app.admin, doc(2))
        .await
        .assert_problem(
            StatusCode::BAD_REQUEST,
            "invalid gateway group \"x y\": use 1 to 64 characters of a-z 0-9 _ -",
        );
    let audited = app
        .count("SELECT count(*) FROM audit_log WHERE action = 'policy.publish' AND actor = 'token:root'")
        .await;
    assert_eq!(audited, 1);
}

#[tokio::test]
async fn rollback_diff_versions_and_canary_rollout() {
    let app = TestApp::new().await;
    for rate in [100, 200] {
        assert_eq!(
            post(&app, "/v1/policy/versions", &app.admin, doc(rate))
                .await
                .status,
            StatusCode::CREATED
        );
    }
    let d = app
        .get("/v1/policy/diff?from=1&to=2", Some(&app.analyst))
        .await;
    assert_eq!(d.status, StatusCode::OK);
    let d = d.json();
    assert_eq!((d["from"].clone(), d["to"].clone()), (1.into(), 2.into()));
    assert_eq!(d["changed"][0]["id"], "per-key");
    assert_eq!(
        d["changed"][0]["fields"],
        serde_json::json!(["limit", "ratelimit_policy"])
    );
    assert_eq!(d["changed"][0]["before"]["limit"]["rate"], 100);
    assert_eq!(d["changed"][0]["after"]["limit"]["rate"], 200);
    assert_eq!(d["unchanged"], 1);

    let res = post(
        &app,
        "/v1/policy/rollback",
        &app.admin,
        r#"{"to": 1, "comment": "too loose"}"#.into(),
    )
    .await;
    assert_eq!(res.status, StatusCode::CREATED);
    assert_eq!(res.json()["version"], 3);
    assert_eq!(res.json()["restored_from"], 1);
    let cur = app.get("/v1/policy", Some(&app.gateway)).await.json();
    assert_eq!(cur["version"], 3);
    assert_eq!(cur["rules"][1]["limit"]["rate"], 100);
    post(
        &app,
        "/v1/policy/rollback",
        &app.admin,
        r#"{"to": "one"}"#.into(),
    )
    .await
    .assert_problem(
        StatusCode::BAD_REQUEST,
        "invalid JSON body: to: invalid type: string \"one\", expected i64 at line 1 column 12",
    );
    let one = app
        .get("/v1/policy/versions/1", Some(&app.analyst))
        .await
        .json();
    assert_eq!(one["version"], 1);
    assert_eq!(one["document"]["content_hash"], cur["content_hash"]);

    // Canary: group canary gets v4 first; everyone else keeps v3 until promotion.
    let res = post(
        &app,
        "/v1/policy/versions?group=canary",
        &app.admin,
        doc(300),
    )
    .await;
    assert_eq!(res.json()["published_to"], "canary");
    let canary = app.get("/v1/policy?group=canary", Some(&app.gateway)).await;
    assert_eq!(canary.json()["version"], 4);
    assert_eq!(
        app.get("/v1/policy", Some(&app.gateway)).await.json()["version"],
        3
    );
    let list = app
        .get("/v1/policy/versions?limit=2", Some(&app.analyst))
        .await
        .json();
    assert_eq!(
        list["rollout"],
        serde_json::json!({"all": 3, "pinned": [["canary", 4]]})
    );
    assert_eq!(list["versions"].as_array().unwrap().len(), 2);
    assert_eq!(list["next_before"], 3);
    let res = post(
        &app,
        "/v1/policy/promote",
        &app.admin,
        r#"{"version": 4, "comment": "canary ok"}"#.into(),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json(), serde_json::json!({"all": 4, "pinned": []}));
    assert_eq!(
        app.get("/v1/policy", Some(&app.gateway)).await.json()["version"],
        4
    );
    let actions: Vec<(String, String)> = sqlx::query_as(
        "SELECT action, actor FROM audit_log WHERE action LIKE 'policy.%' ORDER BY id",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(
        actions.iter().map(|a| a.0.as_str()).collect::<Vec<_>>(),
        [
            "policy.publish",
            "policy.publish",
            "policy.rollback",
            "policy.publish",
            "policy.promote"
        ]
    );
    assert!(actions.iter().all(|a| a.1 == "token:root"));
}

#[tokio::test]
async fn gateways_report_status_and_admins_see_the_rollout() {
    let app = TestApp::new().await;
    publish_direct(&app, 100, None).await;
    publish_direct(&app, 110, Some("canary")).await;
    let res = post(
        &app,
        "/v1/gateways/edge-1/status",
        &app.gateway,
        r#"{"applied_version": 1}"#.into(),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["state"], "current");
    let res = post(
        &app,
        "/v1/gateways/edge-2/status",
        &app.gateway,
        r#"{"applied_version": 1, "group": "canary"}"#.into(),
    )
    .await;
    assert_eq!(res.json()["state"], "behind");
    assert_eq!(res.json()["desired_version"], 2);
    let res = post(
        &app,
        "/v1/gateways/edge-2/status",
        &app.gateway,
        r#"{"error": "unknown algorithm"}"#.into(),
    )
    .await;
    assert_eq!(res.json()["state"], "error");
    post(&app, "/v1/gateways/edge-3/status", &app.gateway, "{}".into()).await.assert_problem(
        StatusCode::BAD_REQUEST,
        "report applied_version (the version the gateway now enforces) or error (why it could not apply one)",
    );
    post(
        &app,
        "/v1/gateways/edge-3/status",
        &app.gateway,
        r#"{"applied_version": 99}"#.into(),
    )
    .await
    .assert_problem(
        StatusCode::BAD_REQUEST,
        "applied_version 99 is not a published policy version",
    );
    let list = app.get("/v1/gateways", Some(&app.analyst)).await.json();
    assert_eq!(
        list["rollout"],
        serde_json::json!({"all": 1, "pinned": [["canary", 2]]})
    );
    let gws: Vec<(String, String, String)> = list["gateways"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["id"].as_str().unwrap().into(),
                g["group"].as_str().unwrap().into(),
                g["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        gws,
        [
            ("edge-2".to_owned(), "canary".to_owned(), "error".to_owned()),
            (
                "edge-1".to_owned(),
                "default".to_owned(),
                "current".to_owned()
            )
        ]
    );
}
