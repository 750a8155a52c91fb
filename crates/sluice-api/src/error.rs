//! API errors and their HTTP mapping: every error answers with an RFC 9457 problem+json body that
//! says what was wrong. 5xx details are logged, not sent.

use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sluice_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or invalid API token: send `Authorization: Bearer <token>` (create one with `sluice token create`)")]
    Unauthenticated,
    #[error("this token's role ({have}) may not {action}; it needs the {need} role")]
    Forbidden {
        have: &'static str,
        need: &'static str,
        action: &'static str,
    },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("request body is larger than the limit of {limit} bytes{what}")]
    TooLarge { limit: usize, what: &'static str },
    #[error("unsupported content encoding {0:?}: send identity or gzip")]
    UnsupportedEncoding(String),
    #[error("ingest queue is full (it holds {capacity} batches); retry after {retry_after_s} s")]
    QueueFull { capacity: usize, retry_after_s: u64 },
    #[error("database unavailable; retry later")]
    Unavailable { retry_after: Duration },
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::QueueFull { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn problem_type(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad-request",
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::Conflict(_) => "conflict",
            ApiError::MethodNotAllowed { .. } => "method-not-allowed",
            ApiError::TooLarge { .. } => "payload-too-large",
            ApiError::UnsupportedEncoding(_) => "unsupported-encoding",
            ApiError::QueueFull { .. } => "ingest-queue-full",
            ApiError::Unavailable { .. } => "database-unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "database unavailable");
                ApiError::Unavailable {
                    retry_after: Duration::from_secs(5),
                }
            }
            StoreError::NotFound(what) => ApiError::NotFound(what),
            StoreError::Conflict(msg) => ApiError::BadRequest(msg),
            StoreError::StateConflict(msg) => ApiError::Conflict(msg),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "internal error; the server log has the details".to_owned()
            }
            other => other.to_string(),
        };
        let body = serde_json::json!({
            "type": format!("https://sluice.dev/problems/{}", self.problem_type()),
            "title": status.canonical_reason().unwrap_or("error"),
            "status": status.as_u16(),
            "detail": detail,
        });
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        match &self {
            ApiError::Unavailable { retry_after } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after.as_secs()),
                );
            }
            ApiError::QueueFull {
                capacity,
                retry_after_s,
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
                // IETF httpapi RateLimit headers (draft-ietf-httpapi-ratelimit-headers).
                if let Ok(v) = HeaderValue::from_str(&format!("\"ingest\";r=0;t={retry_after_s}")) {
                    headers.insert("ratelimit", v);
                }
                if let Ok(v) = HeaderValue::from_str(&format!("\"ingest\";q={capacity};w=1")) {
                    headers.insert("ratelimit-policy", v);
                }
            }
            ApiError::Unauthenticated => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"sluice\""),
                );
            }
            _ => {}
        }
        (status, headers, body.to_string()).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
