//! Authentication and roles: every `/v1` route against every kind of caller.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use sluice_core::Role;

use crate::fixtures::Anomaly;
use crate::helpers::{combined_lines, request, TestApp};

const UNAUTHENTICATED: &str = "missing or invalid API token: send `Authorization: Bearer <token>` (create one with `sluice token create`)";

/// Who is calling in the matrix.
#[derive(Clone, Copy, Debug)]
enum Caller {
    NoToken,
    Gateway,
    Analyst,
    Admin,
    Revoked,
}

const CALLERS: [Caller; 5] = [
    Caller::NoToken,
    Caller::Gateway,
    Caller::Analyst,
    Caller::Admin,
    Caller::Revoked,
];

/// One `/v1` route: how to call it successfully and which role it needs (admin may do
/// everything). Add a route here and the matrix covers it.
struct Route {
    method: Method,
    uri: &'static str,
    body: fn() -> String,
    needs: Role,
    /// The `action` of the 403 detail.
    action: &'static str,
}

fn routes() -> Vec<Route> {
    vec![
        Route {
            method: Method::POST,
            uri: "/v1/logs",
            body: || combined_lines(3),
            needs: Role::Gateway,
            action: "ship logs",
        },
        Route {
            method: Method::GET,
            uri: "/v1/logs/rejects",
            body: String::new,
            needs: Role::Analyst,
            action: "read rejected lines",
        },
        Route {
            method: Method::GET,
            uri: "/v1/anomalies",
            body: String::new,
            needs: Role::Analyst,
            action: "read anomalies",
        },
        Route {
            method: Method::GET,
            uri: "/v1/anomalies/1", // inserted by the matrix
            body: String::new,
            needs: Role::Analyst,
            action: "read anomalies",
        },
        Route {
            method: Method::GET,
            uri: "/v1/clients/ak_matrix", // inserted by the matrix
            body: String::new,
            needs: Role::Analyst,
            action: "read client behaviour",
        },
        Route {
            method: Method::GET,
            uri: "/v1/policy",
            body: String::new,
            needs: Role::Gateway, // any valid token: gateways poll it, analysts and admins read it
            action: "",
        },
        Route {
            method: Method::GET,
            uri: "/v1/policy/versions",
            body: String::new,
            needs: Role::Analyst,
            action: "read policy versions",
        },
        Route {
            method: Method::GET,
            uri: "/v1/policy/versions/1",
            body: String::new,
            needs: Role::Analyst,
            action: "read policy versions",
        },
        Route {
            method: Method::GET,
            uri: "/v1/policy/diff?from=1&to=2",
            body: String::new,
            needs: Role::Analyst,
            action: "read policy versions",
        },
        Route {
            method: Method::GET,
            uri: "/v1/gateways",
            body: String::new,
            needs: Role::Analyst,
            action: "read gateway status",
        },
        Route {
            method: Method::POST,
            uri: "/v1/gateways/edge-1/status",
            body: || r#"{"applied_version": 1}"#.to_owned(),
            needs: Role::Gateway,
            action: "report gateway status",
        },
        // The matrix publishes v1 and v2 to everyone and v3 to the canary group first.
        Route {
            method: Method::POST,
            uri: "/v1/policy/promote",
            body: || r#"{"version": 3}"#.to_owned(),
            needs: Role::Admin,
            action: "promote policy",
        },
        Route {
            method: Method::POST,
            uri: "/v1/policy/versions?comment=matrix",
            body: || crate::policy::doc(4242),
            needs: Role::Admin,
            action: "publish policy",
        },
        Route {
            method: Method::POST,
            uri: "/v1/policy/rollback",
            body: || r#"{"to": 1}"#.to_owned(),
            needs: Role::Admin,
            action: "roll back policy",
        },
        Route {
            method: Method::GET,
            uri: "/v1/whoami",
            body: String::new,
            needs: Role::Gateway, // any valid token; the gateway is the least privileged role
            action: "",
        },
    ]
}

#[tokio::test]
async fn role_matrix() {
    let app = TestApp::new().await;
    let revoked = app.token("gone", Role::Admin).await;
    sluice_store::tokens::revoke_token(&app.db.pool, "gone", "test")
        .await
        .unwrap();
    let id = Anomaly::new("api_key", "ak_matrix", 0).insert(&app).await;
    assert_eq!(id, 1);
    crate::policy::publish_direct(&app, 1, None).await;
    crate::policy::publish_direct(&app, 2, None).await;
    crate::policy::publish_direct(&app, 3, Some("canary")).await;

    for route in routes() {
        for caller in CALLERS {
            let (token, role) = match caller {
                Caller::NoToken => (None, None),
                Caller::Gateway => (Some(app.gateway.as_str()), Some(Role::Gateway)),
                Caller::Analyst => (Some(app.analyst.as_str()), Some(Role::Analyst)),
                Caller::Admin => (Some(app.admin.as_str()), Some(Role::Admin)),
                Caller::Revoked => (Some(revoked.as_str()), None),
            };
            let req = request(route.method.clone(), route.uri, token)
                .body(Body::from((route.body)()))
                .unwrap();
            let res = app.send(req).await;
            let what = format!("{} {} as {caller:?}", route.method, route.uri);
            match role {
                None => {
                    res.assert_problem(StatusCode::UNAUTHORIZED, UNAUTHENTICATED);
                    assert_eq!(
                        res.header("www-authenticate"),
                        Some("Bearer realm=\"sluice\""),
                        "{what}"
                    );
                }
                Some(r) if route.action.is_empty() || r.allows(route.needs) => {
                    assert!(
                        res.status == StatusCode::OK || res.status == StatusCode::CREATED,
                        "{what}: {}",
                        String::from_utf8_lossy(&res.body)
                    );
                }
                Some(r) => res.assert_problem(
                    StatusCode::FORBIDDEN,
                    &format!(
                        "this token's role ({}) may not {}; it needs the {} role",
                        r.as_str(),
                        route.action,
                        route.needs.as_str()
                    ),
                ),
            }
        }
    }
}

#[tokio::test]
async fn malformed_credentials_are_unauthenticated() {
    let app = TestApp::new().await;
    let gateway = app.gateway.clone();
    for auth in [
        "Bearer sluice_not_a_real_token".to_owned(),
        format!("Basic {gateway}"),
        "Bearer ".to_owned(),
        "Bearer".to_owned(),
        gateway.clone(),
    ] {
        let req = request(Method::GET, "/v1/whoami", None)
            .header("authorization", auth.as_str())
            .body(Body::empty())
            .unwrap();
        app.send(req)
            .await
            .assert_problem(StatusCode::UNAUTHORIZED, UNAUTHENTICATED);
    }
    // The scheme is case-insensitive and surrounding blanks do not matter.
    let req = request(Method::GET, "/v1/whoami", None)
        .header("authorization", format!("bearer   {gateway} "))
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::OK);
}

#[tokio::test]
async fn whoami_names_the_token_and_its_role() {
    let app = TestApp::new().await;
    for (token, name, role) in [
        (&app.gateway, "edge-1", "gateway"),
        (&app.analyst, "alice", "analyst"),
        (&app.admin, "root", "admin"),
    ] {
        let res = app.get("/v1/whoami", Some(token)).await;
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(res.json(), serde_json::json!({"name": name, "role": role}));
    }
}

#[tokio::test]
async fn health_and_readiness_need_no_token() {
    let app = TestApp::new().await;
    let res = app.get("/healthz", None).await;
    assert_eq!(
        (res.status, res.body.as_slice()),
        (StatusCode::OK, &b"ok"[..])
    );
    let res = app.get("/readyz", None).await;
    assert_eq!(
        (res.status, res.body.as_slice()),
        (StatusCode::OK, &b"ready"[..])
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_problems() {
    let app = TestApp::new().await;
    app.get("/v1/nope", Some(&app.admin))
        .await
        .assert_problem(StatusCode::NOT_FOUND, "route /v1/nope not found");
    app.get("/nope", None)
        .await
        .assert_problem(StatusCode::NOT_FOUND, "route /nope not found");
    let res = app.get("/v1/logs", Some(&app.admin)).await;
    res.assert_problem(
        StatusCode::METHOD_NOT_ALLOWED,
        "method GET is not allowed on /v1/logs",
    );
    assert_eq!(res.header("allow"), Some("POST"));
}
