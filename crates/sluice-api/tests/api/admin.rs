//! The review API through the router: suggestions listed and shown, approve/reject/modify with
//! their status codes (400 bad input, 404 unknown, 409 already decided), the served policy after
//! an approval, auto-approval rules, the audit log, and a client's reputation.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use sluice_core::policy::Policy;
use sluice_store::policy::{self as store, Publish};

use crate::helpers::{request, Response, TestApp};

async fn call(app: &TestApp, method: Method, uri: &str, token: &str, body: Value) -> Response {
    let body = if body.is_null() {
        Body::empty()
    } else {
        Body::from(body.to_string())
    };
    app.send(request(method, uri, Some(token)).body(body).unwrap())
        .await
}

#[track_caller]
fn ok(res: &Response) -> Value {
    assert_eq!(
        res.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&res.body)
    );
    res.json()
}

/// A pending suggestion for `client`'s rule (`client:<client>`) with `rate` per minute.
async fn suggest(app: &TestApp, client: &str, rate: u64, abusive: bool) -> i64 {
    let rule_id = format!("client:{client}");
    sqlx::query_scalar(
        "INSERT INTO limit_suggestions
             (rule_id, client, rule, diff, confidence, evidence, abusive, created_at, expires_at)
         VALUES ($1, $2, $3, '{\"change\": \"new\"}', 0.8, '{}', $4,
                 '2026-03-02T04:00:00Z', '2026-03-03T04:00:00Z')
         RETURNING id",
    )
    .bind(&rule_id)
    .bind(client)
    .bind(json!({
        "id": rule_id,
        "selector": {"api_key": client},
        "limit": {"algorithm": "token_bucket", "rate": rate, "window_seconds": 60, "burst": 10},
    }))
    .bind(abusive)
    .fetch_one(&app.db.pool)
    .await
    .unwrap()
}

async fn base_policy(app: &TestApp) {
    let p = Policy::parse(crate::policy::doc(1000).as_bytes()).unwrap();
    store::publish(
        &app.db.pool,
        &p,
        &Publish {
            actor: "cli:test",
            comment: None,
            group: None,
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn suggestions_are_listed_shown_and_decided() {
    let app = TestApp::new().await;
    base_policy(&app).await;
    let a = suggest(&app, "ak_a", 100, false).await;
    let b = suggest(&app, "ak_b", 50, true).await;
    let c = suggest(&app, "ak_c", 70, false).await;

    // Lists: newest first, filters, pages by cursor.
    let all = ok(&app.get("/v1/suggestions", Some(&app.analyst)).await);
    let ids: Vec<i64> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [c, b, a]);
    assert_eq!(all["next_cursor"], Value::Null);
    let page = ok(&app.get("/v1/suggestions?limit=2", Some(&app.analyst)).await);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let next = page["next_cursor"].as_str().unwrap().to_owned();
    let rest = ok(&app
        .get(
            &format!("/v1/suggestions?limit=2&cursor={next}"),
            Some(&app.analyst),
        )
        .await);
    assert_eq!(rest["items"][0]["id"], a);
    let abusive = ok(&app
        .get(
            "/v1/suggestions?abusive=true&state=pending",
            Some(&app.analyst),
        )
        .await);
    assert_eq!(abusive["items"].as_array().unwrap().len(), 1);
    assert_eq!(abusive["items"][0]["id"], b);
    let shown = ok(&app
        .get(&format!("/v1/suggestions/{a}"), Some(&app.analyst))
        .await);
    assert_eq!(shown["rule"]["limit"]["rate"], 100);
    assert_eq!(shown["state"], "pending");
    assert_eq!(shown["created_at"], "2026-03-02T04:00:00Z");

    // Approve in shadow mode: version 2 is served at once.
    let d = ok(&call(
        &app,
        Method::POST,
        &format!("/v1/suggestions/{a}/approve"),
        &app.admin,
        json!({"comment": "fine", "shadow": true}),
    )
    .await);
    assert_eq!(d["policy_version"], 2);
    assert_eq!(d["suggestion"]["state"], "approved");
    assert_eq!(d["suggestion"]["decided_by"], "token:root");
    assert_eq!(d["suggestion"]["decided_rule"]["shadow"], true);
    let served = ok(&app.get("/v1/policy", Some(&app.gateway)).await);
    assert_eq!(served["version"], 2);
    let rule = served["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "client:ak_a")
        .unwrap()
        .clone();
    assert_eq!(rule["shadow"], true);
    assert_eq!(rule["source"], format!("suggestion:{a}"));

    // Approving again is a conflict.
    call(
        &app,
        Method::POST,
        &format!("/v1/suggestions/{a}/approve"),
        &app.admin,
        Value::Null,
    )
    .await
    .assert_problem(
        StatusCode::CONFLICT,
        "cannot approve a suggestion that is approved",
    );

    // Reject needs a comment; then a second reject is a conflict.
    let reject = format!("/v1/suggestions/{b}/reject");
    call(&app, Method::POST, &reject, &app.admin, Value::Null)
        .await
        .assert_problem(StatusCode::BAD_REQUEST, "a comment is required to reject");
    let d = ok(&call(
        &app,
        Method::POST,
        &reject,
        &app.admin,
        json!({"comment": "partner traffic"}),
    )
    .await);
    assert_eq!(d["suggestion"]["state"], "rejected");
    assert_eq!(d["policy_version"], Value::Null);
    call(
        &app,
        Method::POST,
        &reject,
        &app.admin,
        json!({"comment": "again"}),
    )
    .await
    .assert_problem(
        StatusCode::CONFLICT,
        "cannot reject a suggestion that is rejected",
    );

    // Modify: exactly one of rule or limit; a limit replaces the suggested one.
    let modify = format!("/v1/suggestions/{c}/modify");
    call(
        &app,
        Method::POST,
        &modify,
        &app.admin,
        json!({"comment": "x"}),
    )
    .await
    .assert_problem(
        StatusCode::BAD_REQUEST,
        "modify needs exactly one of rule (a whole rule) or limit (replaces the suggested rule's limit)",
    );
    call(
        &app,
        Method::POST,
        &modify,
        &app.admin,
        json!({"comment": "x", "limit": {"algorithm": "token_bucket", "rate": 60}}),
    )
    .await
    .assert_problem(
        StatusCode::BAD_REQUEST,
        "invalid JSON body: limit: missing field `window_seconds` at line 1 column 62",
    );
    let d = ok(&call(
        &app,
        Method::POST,
        &modify,
        &app.admin,
        json!({
            "comment": "a little tighter",
            "limit": {"algorithm": "fixed_window", "rate": 60, "window_seconds": 60},
            "temporary_until": "2026-03-02T08:00:00Z",
        }),
    )
    .await);
    assert_eq!(d["suggestion"]["state"], "modified_approved");
    assert_eq!(d["policy_version"], 3);
    assert_eq!(
        d["suggestion"]["decided_rule"]["limit"],
        json!({"algorithm": "fixed_window", "rate": 60, "window_seconds": 60})
    );
    assert_eq!(d["suggestion"]["temporary_until"], "2026-03-02T08:00:00Z");

    // Unknown and malformed ids.
    call(
        &app,
        Method::POST,
        "/v1/suggestions/999/approve",
        &app.admin,
        Value::Null,
    )
    .await
    .assert_problem(StatusCode::NOT_FOUND, "suggestion 999 not found");
    app.get("/v1/suggestions/abc", Some(&app.analyst))
        .await
        .assert_problem(
            StatusCode::BAD_REQUEST,
            "invalid suggestion id \"abc\": expected a positive integer",
        );
    call(
        &app,
        Method::POST,
        &format!("/v1/suggestions/{c}/approve"),
        &app.admin,
        json!({"coment": "typo"}),
    )
    .await
    .assert_problem(
        StatusCode::BAD_REQUEST,
        "invalid JSON body: coment: unknown field `coment`, expected one of `comment`, `shadow`, `temporary_until` at line 1 column 9",
    );

    // Every decision is in the audit log, newest first, filtered by action prefix.
    let audit = ok(&app
        .get("/v1/audit?action=suggestion.*&limit=10", Some(&app.analyst))
        .await);
    let entries: Vec<(String, String)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("suggestion.modify".to_owned(), format!("suggestion:{c}")),
            ("suggestion.modify".to_owned(), "policy:3".to_owned()),
            ("suggestion.reject".to_owned(), format!("suggestion:{b}")),
            ("suggestion.approve".to_owned(), format!("suggestion:{a}")),
            ("suggestion.approve".to_owned(), "policy:2".to_owned()),
        ]
    );
    let page = ok(&app
        .get("/v1/audit?actor=token:root&limit=2", Some(&app.analyst))
        .await);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let next = page["next_cursor"].as_str().unwrap();
    let page2 = ok(&app
        .get(
            &format!("/v1/audit?actor=token:root&limit=2&cursor={next}"),
            Some(&app.analyst),
        )
        .await);
    assert!(page2["items"][0]["id"].as_i64() < page["items"][1]["id"].as_i64());
    app.get("/v1/audit?since=yesterday", Some(&app.analyst))
        .await
        .assert_problem(
            StatusCode::BAD_REQUEST,
            "invalid since \"yesterday\": expected an RFC 3339 time such as 2026-03-02T04:10:00Z",
        );
}

#[tokio::test]
async fn auto_approval_rules_are_read_and_replaced() {
    let app = TestApp::new().await;
    let got = ok(&app.get("/v1/auto-approval", Some(&app.analyst)).await);
    assert_eq!(got["config"]["enforce"], false);
    assert_eq!(got["config"]["loosen"]["enabled"], false);
    assert_eq!(got["updated_by"], Value::Null);

    let put = ok(&call(
        &app,
        Method::PUT,
        "/v1/auto-approval",
        &app.admin,
        json!({"loosen": {"enabled": true, "max_increase": 0.1}}),
    )
    .await);
    assert_eq!(put["config"]["loosen"]["enabled"], true);
    assert_eq!(put["config"]["loosen"]["max_increase"], 0.1);
    assert_eq!(
        put["config"]["loosen"]["min_reputation"], 0.8,
        "defaults fill the rest"
    );
    assert_eq!(put["updated_by"], "token:root");
    assert_eq!(
        ok(&app.get("/v1/auto-approval", Some(&app.analyst)).await),
        put
    );
    call(
        &app,
        Method::PUT,
        "/v1/auto-approval",
        &app.admin,
        json!({"loosen": {"min_confidence": 2.0}}),
    )
    .await
    .assert_problem(
        StatusCode::BAD_REQUEST,
        "invalid auto-approval configuration: loosen.min_confidence must be between 0 and 1, got 2",
    );
    call(
        &app,
        Method::PUT,
        "/v1/auto-approval",
        &app.admin,
        json!({"enforce": "yes"}),
    )
    .await
    .assert_problem(
        StatusCode::BAD_REQUEST,
        "invalid JSON body: enforce: invalid type: string \"yes\", expected a boolean at line 1 column 16",
    );
    let audit = ok(&app
        .get("/v1/audit?action=auto_approval.set", Some(&app.analyst))
        .await);
    assert_eq!(audit["items"].as_array().unwrap().len(), 1);
    assert_eq!(audit["items"][0]["before"]["loosen"]["enabled"], false);
    assert_eq!(audit["items"][0]["after"]["loosen"]["enabled"], true);
}

#[tokio::test]
async fn a_client_view_carries_its_reputation() {
    let app = TestApp::new().await;
    crate::fixtures::minutes(&app, "api_key", "ak_rep", 0, 5).await;
    sqlx::query(
        "INSERT INTO client_reputation (client, score, updated_at, first_seen, good_minutes, state)
         VALUES ('ak_rep', 0.35, '2026-03-02T00:05:00Z', '2026-03-01T00:00:00Z', 4, '{}')",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO reputation_events (client, at, delta, score_after, kind, reason)
         VALUES ('ak_rep', '2026-03-02T00:03:00Z', -0.5, 0.35, 'anomaly', '{\"anomaly\": 7}')",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    let view = ok(&app.get("/v1/clients/ak_rep", Some(&app.analyst)).await);
    let rep = &view["reputation"];
    assert_eq!(rep["score"], 0.35);
    assert_eq!(rep["first_seen"], "2026-03-01T00:00:00Z");
    assert_eq!(rep["updated_at"], "2026-03-02T00:05:00Z");
    assert_eq!(
        rep["history"],
        json!([{
            "id": 1, "at": "2026-03-02T00:03:00Z", "delta": -0.5, "score_after": 0.35,
            "kind": "anomaly", "reason": {"anomaly": 7}
        }])
    );
    assert_eq!(view["client"], "ak_rep", "the client view is still there");
}
