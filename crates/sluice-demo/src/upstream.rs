//! The small upstream API the gateway protects. It answers every request with the status and
//! body size the driver asks for (`x-sluice-sim-status`, `x-sluice-sim-bytes`), so the status
//! patterns the simulator plays (401 bursts of credential stuffing, 404s of enumeration and
//! probing) reach the access logs as they would from a real service. Every answer carries
//! `x-sluice-upstream: 1`, which tells the driver the request got through the gateway.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Status the upstream answers with (default 200).
pub const STATUS_HEADER: &str = "x-sluice-sim-status";
/// Response body size in bytes (default 64, at most [`MAX_BYTES`]).
pub const BYTES_HEADER: &str = "x-sluice-sim-bytes";
/// Set on every upstream answer.
pub const MARK_HEADER: &str = "x-sluice-upstream";
/// Largest body the upstream sends (bigger asks are cut, the log keeps the size it really sent).
pub const MAX_BYTES: usize = 256 << 10;

/// The routes of the shop API. Anything else is a 404 (scanner paths), unless the driver asks
/// for another status.
pub fn router() -> Router {
    Router::new()
        .route("/", get(answer))
        .route("/healthz", get(answer))
        .route("/v1/products", get(answer))
        .route("/v1/products/{id}", get(answer))
        .route("/v1/search", get(answer))
        .route("/v1/cart", get(answer).post(answer))
        .route("/v1/orders", post(answer))
        .route("/v1/orders/{id}", get(answer))
        .route("/v1/login", post(answer))
        .route("/v1/users/{id}", get(answer))
        .route("/v1/export", get(answer))
        .route("/v1/admin/users", get(answer))
        .route("/v1/admin/keys", get(answer))
        .route("/static/{*rest}", get(answer))
        .fallback(not_found)
}

fn asked(req: &Request, default: StatusCode) -> (StatusCode, usize) {
    let h = req.headers();
    let status = h
        .get(STATUS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(default);
    let bytes = h
        .get(BYTES_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(64)
        .min(MAX_BYTES);
    (status, bytes)
}

fn respond(status: StatusCode, bytes: usize) -> Response {
    let mut res = Response::new(Body::from(vec![b'x'; bytes]));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(MARK_HEADER, HeaderValue::from_static("1"));
    res
}

async fn answer(req: Request) -> Response {
    let (status, bytes) = asked(&req, StatusCode::OK);
    respond(status, bytes)
}

async fn not_found(req: Request) -> Response {
    let (status, bytes) = asked(&req, StatusCode::NOT_FOUND);
    respond(status, bytes)
}

/// Serve the upstream on `addr` (port 0 picks one) in the background.
pub async fn spawn(addr: SocketAddr) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router()).await {
            tracing::error!(error = %e, "demo upstream failed");
        }
    });
    Ok((local, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn call(
        path: &str,
        method: &str,
        status: Option<&str>,
        bytes: Option<&str>,
    ) -> (u16, usize, bool) {
        let mut req = Request::builder().uri(path).method(method);
        if let Some(s) = status {
            req = req.header(STATUS_HEADER, s);
        }
        if let Some(b) = bytes {
            req = req.header(BYTES_HEADER, b);
        }
        let res = router()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let marked = res.headers().contains_key(MARK_HEADER);
        let status = res.status().as_u16();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, body.len(), marked)
    }

    #[tokio::test]
    async fn answers_what_the_driver_asks_for() {
        assert_eq!(
            call("/v1/products/7", "GET", None, None).await,
            (200, 64, true)
        );
        assert_eq!(
            call("/v1/login", "POST", Some("401"), Some("420")).await,
            (401, 420, true)
        );
        assert_eq!(
            call("/.env", "GET", None, Some("150")).await,
            (404, 150, true)
        );
        assert_eq!(
            call("/v1/users/12", "GET", Some("403"), None).await,
            (403, 64, true)
        );
        // garbage headers fall back to the defaults; sizes are capped
        assert_eq!(
            call("/v1/search", "GET", Some("abc"), Some("-1")).await,
            (200, 64, true)
        );
        assert_eq!(
            call("/v1/export", "GET", None, Some("99999999")).await,
            (200, MAX_BYTES, true)
        );
    }
}
