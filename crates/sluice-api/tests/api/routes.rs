//! The route table (`sluice_api::routes::ROUTES`) against the router: every route in the table
//! answers every caller as its access says (no token 401; each role allowed or 403), every route
//! the router declares is in the table, and the OpenAPI document lists exactly the table.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use sluice_api::routes::{path_params, Access, ROUTES};
use sluice_core::Role;

use crate::helpers::{request, TestApp};

/// A concrete URI for a route: every path parameter gets a value that names nothing.
fn concrete(path: &str) -> String {
    // Static files exist only under their own names.
    if path == "/ui/assets/{file}" {
        return "/ui/assets/app.js".to_owned();
    }
    let mut uri = path.to_owned();
    for p in path_params(path) {
        uri = uri.replace(&format!("{{{p}}}"), "999999");
    }
    uri
}

#[tokio::test]
async fn every_route_answers_each_role_as_the_table_says() {
    let app = TestApp::new().await;
    let callers = [
        (None, None),
        (Some(app.gateway.as_str()), Some(Role::Gateway)),
        (Some(app.analyst.as_str()), Some(Role::Analyst)),
        (Some(app.admin.as_str()), Some(Role::Admin)),
    ];
    for r in ROUTES {
        let uri = concrete(r.path);
        let method = Method::from_bytes(r.method.as_bytes()).unwrap();
        for (token, role) in callers {
            let req = request(method.clone(), &uri, token)
                .body(Body::empty())
                .unwrap();
            let res = app.send(req).await;
            let what = format!(
                "{} {uri} as {}: {} {}",
                r.method,
                role.map_or("no token", |r| r.as_str()),
                res.status,
                String::from_utf8_lossy(&res.body)
            );
            // The route exists: never the router's own 404 or 405.
            assert_ne!(res.status, StatusCode::METHOD_NOT_ALLOWED, "{what}");
            if res.status == StatusCode::NOT_FOUND {
                let detail = res.json()["detail"].as_str().unwrap_or_default().to_owned();
                assert!(!detail.starts_with("route "), "{what}");
            }
            match (r.access, role) {
                (Access::Public, _) => assert!(res.status.is_success(), "{what}"),
                (_, None) => assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{what}"),
                (access, Some(role)) if access.allows(role) => assert!(
                    res.status != StatusCode::UNAUTHORIZED && res.status != StatusCode::FORBIDDEN,
                    "{what}"
                ),
                (Access::Role(need), Some(role)) => {
                    assert_eq!(res.status, StatusCode::FORBIDDEN, "{what}");
                    let detail = res.json()["detail"].as_str().unwrap().to_owned();
                    assert!(
                        detail.starts_with(&format!("this token's role ({role}) may not "))
                            && detail.ends_with(&format!("; it needs the {need} role")),
                        "{what}"
                    );
                }
                (access, Some(role)) => unreachable!("{access:?} refuses {role}"),
            }
        }
    }
}

/// The table's (method, path) pairs.
fn table() -> BTreeSet<(String, String)> {
    ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect()
}

/// Every `.route("path", get(..).post(..))` in the crate's sources, as (METHOD, path).
fn declared_routes() -> BTreeSet<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.extend(routes_in(&text));
        }
    }
    out
}

/// Parse `.route(` calls: the path literal, then the method functions called at the top level
/// of the second argument (`get(..)`, `.post(..)`, ...).
fn routes_in(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + ".route(".len()..];
        let arg = rest.trim_start();
        let Some(arg) = arg.strip_prefix('"') else {
            continue;
        };
        let end = arg.find('"').unwrap();
        let path = arg[..end].to_owned();
        let b = &arg.as_bytes()[end + 1..];
        // Walk the second argument until the `)` closing `.route(`.
        let (mut depth, mut k, mut ident) = (0i32, 0usize, String::new());
        let mut in_str = false;
        while k < b.len() {
            let c = b[k] as char;
            if in_str {
                if c == '\\' {
                    k += 1;
                } else if c == '"' {
                    in_str = false;
                }
            } else if c == '"' {
                in_str = true;
            } else if c == '(' {
                if depth == 0 && ["get", "post", "put", "delete", "patch"].contains(&&*ident) {
                    out.push((ident.to_ascii_uppercase(), path.clone()));
                }
                depth += 1;
            } else if c == ')' {
                if depth == 0 {
                    break;
                }
                depth -= 1;
            }
            if c.is_ascii_alphanumeric() || c == '_' {
                ident.push(c);
            } else {
                ident.clear();
            }
            k += 1;
        }
    }
    out
}

#[test]
fn the_route_parser_reads_chained_methods_and_closures() {
    let src = r#"
        .route("/a", get(x::a).post(x::b))
        .route(
            "/b/{id}",
            put(|| async { ")" }),
        )
        .route("/c", axum::routing::delete(c))
    "#;
    assert_eq!(
        routes_in(src),
        [
            ("GET".to_owned(), "/a".to_owned()),
            ("POST".to_owned(), "/a".to_owned()),
            ("PUT".to_owned(), "/b/{id}".to_owned()),
            ("DELETE".to_owned(), "/c".to_owned()),
        ]
    );
}

#[test]
fn every_route_of_the_router_is_in_the_table_and_the_openapi_document() {
    let declared = declared_routes();
    let table = table();
    assert!(declared.len() > 20, "{declared:?}");
    let missing: Vec<_> = declared.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "routes the router declares but sluice_api::routes::ROUTES does not list (add them): {missing:?}"
    );
    let stale: Vec<_> = table.difference(&declared).collect();
    assert!(
        stale.is_empty(),
        "routes in the table the router does not declare: {stale:?}"
    );
    let doc = sluice_api::routes::openapi();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    assert_eq!(documented, declared);
}

#[tokio::test]
async fn the_openapi_document_is_served_without_a_token() {
    let app = TestApp::new().await;
    let res = app.get("/openapi.json", None).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("content-type"), Some("application/json"));
    let doc = res.json();
    assert_eq!(doc, sluice_api::routes::openapi());
    assert_eq!(doc["openapi"], "3.1.0");
    let op = &doc["paths"]["/v1/suggestions/{id}/reject"]["post"];
    assert_eq!(op["description"], "Role: admin.");
    assert_eq!(
        op["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/RejectBody"
    );
    assert_eq!(
        op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Decided"
    );
    assert_eq!(
        doc["paths"]["/healthz"]["get"]["security"],
        serde_json::json!([])
    );
    // Every $ref resolves.
    let text = doc.to_string();
    for piece in text.split("\"$ref\":\"#/components/").skip(1) {
        let target = &piece[..piece.find('"').unwrap()];
        let (kind, name) = target.split_once('/').unwrap();
        assert!(doc["components"][kind][name].is_object(), "{target}");
    }
}
