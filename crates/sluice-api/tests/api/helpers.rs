//! Shared setup: a fresh database, the router over it, one token per role, and request helpers
//! that drive the router in-process with `tower::ServiceExt::oneshot`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use sluice_api::{ApiConfig, AppState};
use sluice_core::Role;
use sluice_engine::ingest::Enrichment;
use sluice_store::testing::TestDb;
use tower::ServiceExt;

/// A combined-format line (nginx/Apache), unique per `i`.
pub fn combined(i: usize) -> String {
    format!(
        r#"203.0.113.{} - - [17/May/2015:10:05:{:02} +0000] "GET /items/{i}?page=2 HTTP/1.1" 200 {} "-" "test-agent/1.0""#,
        i % 250,
        i % 60,
        100 + i
    )
}

/// `n` combined lines joined by newlines.
pub fn combined_lines(n: usize) -> String {
    (0..n).map(combined).collect::<Vec<_>>().join("\n")
}

#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header"))
    }

    /// Assert an RFC 9457 problem response with this status and exact detail.
    #[track_caller]
    pub fn assert_problem(&self, status: StatusCode, detail: &str) {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let p = self.json();
        assert_eq!(p["status"], status.as_u16());
        assert_eq!(p["detail"], detail);
        assert_eq!(p["title"], status.canonical_reason().unwrap());
        assert!(
            p["type"]
                .as_str()
                .unwrap()
                .starts_with("https://sluice.dev/problems/"),
            "{p}"
        );
    }

    /// Assert 200 and return the ingest answer, checking that its counts add up.
    #[track_caller]
    pub fn ingested(&self) -> sluice_api::logs::LogsResponse {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        let r: sluice_api::logs::LogsResponse =
            serde_json::from_slice(&self.body).expect("an ingest answer");
        assert_eq!(r.read, r.accepted + r.rejected, "{r:?}");
        r
    }
}

pub struct TestApp {
    pub db: TestDb,
    pub state: Arc<AppState>,
    pub router: Router,
    pub gateway: String,
    pub analyst: String,
    pub admin: String,
}

impl TestApp {
    pub async fn new() -> TestApp {
        TestApp::with_config(ApiConfig::default()).await
    }

    pub async fn with_config(config: ApiConfig) -> TestApp {
        let db = TestDb::new().await;
        let state = AppState::new(db.pool.clone(), Arc::new(Enrichment::default()), config);
        let router = sluice_api::router(state.clone());
        let mut app = TestApp {
            db,
            state,
            router,
            gateway: String::new(),
            analyst: String::new(),
            admin: String::new(),
        };
        app.gateway = app.token("edge-1", Role::Gateway).await;
        app.analyst = app.token("alice", Role::Analyst).await;
        app.admin = app.token("root", Role::Admin).await;
        app
    }

    /// Create a token and return its secret.
    pub async fn token(&self, name: &str, role: Role) -> String {
        sluice_store::tokens::create_token(&self.db.pool, name, role, "test")
            .await
            .expect("create token")
            .1
    }

    pub async fn send(&self, req: Request<Body>) -> Response {
        send(&self.router, req).await
    }

    pub async fn get(&self, uri: &str, token: Option<&str>) -> Response {
        self.send(
            request(Method::GET, uri, token)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// `POST /v1/logs` with extra headers.
    pub async fn post_logs_with(
        &self,
        uri: &str,
        token: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Response {
        let mut b = request(Method::POST, uri, Some(token));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(body.into()).unwrap()).await
    }

    pub async fn post_logs(&self, token: &str, body: impl Into<Body>) -> Response {
        self.post_logs_with("/v1/logs", token, &[], body).await
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.db.pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub async fn access_rows(&self) -> i64 {
        self.count("SELECT count(*) FROM access_log").await
    }
}

/// Drive `router` with one request.
pub async fn send(router: &Router, req: Request<Body>) -> Response {
    let res = router.clone().oneshot(req).await.expect("infallible");
    let (parts, body) = res.into_parts();
    let body = body.collect().await.expect("read body").to_bytes().to_vec();
    Response {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub fn request(method: Method, uri: &str, token: Option<&str>) -> axum::http::request::Builder {
    let b = Request::builder().method(method).uri(uri);
    match token {
        Some(t) => b.header("authorization", format!("Bearer {t}")),
        None => b,
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}
