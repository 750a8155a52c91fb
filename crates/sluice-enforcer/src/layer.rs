//! [`EnforcerLayer`]: a tower layer any axum or hyper service can add. It turns each request into
//! a [`RequestInfo`], asks the [`Enforcer`], and either answers 429 itself (RFC 9457
//! problem+json naming the violated rule, `Retry-After`, IETF `RateLimit` and
//! `RateLimit-Policy` headers) or forwards the request (after the leaky bucket's delay) and adds
//! the `RateLimit` headers to the answer.
//!
//! Headers follow draft-ietf-httpapi-ratelimit-headers: `RateLimit-Policy: "<rule>";q=<quota>;w=<window>`
//! and `RateLimit: "<rule>";r=<remaining>;t=<seconds until reset>`, for the rule that decided (the
//! violated one, or on an allowed request the enforcing rule with the least quota left). The
//! legacy `X-RateLimit-Limit/-Remaining/-Reset` trio is added when configured.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Request, Response, StatusCode};
use sluice_core::RouteNormalizer;

use crate::enforcer::{Decision, Enforcer, RequestInfo, RuleHit};

/// Base of the problem `type` URIs (the same as the control plane's).
pub const PROBLEM_BASE: &str = "https://sluice.dev/problems/";

/// How a request is turned into a [`RequestInfo`].
#[derive(Clone, Debug)]
pub struct Extract {
    /// Header carrying the API key (default `x-api-key`).
    pub api_key_header: HeaderName,
    /// Header carrying the consumer id (default `x-consumer-id`).
    pub consumer_header: HeaderName,
    /// Header carrying the authenticated user (default `x-user`).
    pub user_header: HeaderName,
    /// Take the client address from the first `X-Forwarded-For` entry (only behind a trusted
    /// proxy); otherwise the connection's peer address is used.
    pub trust_forwarded_for: bool,
    /// Paths to routes (`/v1/items/42` → `/v1/items/{id}`), as the control plane does.
    pub normalizer: RouteNormalizer,
    /// Cost units per route for `cost_units` rules (default 1).
    pub route_costs: HashMap<String, u64>,
}

impl Default for Extract {
    fn default() -> Self {
        Extract {
            api_key_header: HeaderName::from_static("x-api-key"),
            consumer_header: HeaderName::from_static("x-consumer-id"),
            user_header: HeaderName::from_static("x-user"),
            trust_forwarded_for: false,
            normalizer: RouteNormalizer::default(),
            route_costs: HashMap::new(),
        }
    }
}

/// The peer address of a request when the server does not use axum's `ConnectInfo` (the
/// gateway inserts it).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

impl Extract {
    pub fn request_info<B>(&self, req: &Request<B>) -> RequestInfo {
        let h = req.headers();
        let text = |name: &HeaderName| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let forwarded = self
            .trust_forwarded_for
            .then(|| {
                h.get("x-forwarded-for")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.split(',').next())
                    .and_then(|v| v.trim().parse::<IpAddr>().ok())
            })
            .flatten();
        let peer = req
            .extensions()
            .get::<ClientAddr>()
            .map(|c| c.0.ip())
            .or_else(|| {
                req.extensions()
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| c.0.ip())
            });
        let route = self.normalizer.normalize(req.uri().path()).into_owned();
        let cost = self.route_costs.get(&route).copied().unwrap_or(1);
        RequestInfo {
            api_key: text(&self.api_key_header),
            consumer: text(&self.consumer_header),
            user: text(&self.user_header),
            ip: forwarded.or(peer),
            method: req.method().as_str().to_owned(),
            route,
            cost,
        }
    }
}

/// Layer settings.
#[derive(Clone, Debug, Default)]
pub struct LayerConfig {
    /// Add `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` too.
    pub legacy_headers: bool,
    pub extract: Extract,
}

/// Adds rate-limit enforcement to a service.
#[derive(Clone, Debug)]
pub struct EnforcerLayer {
    enforcer: Arc<Enforcer>,
    config: Arc<LayerConfig>,
}

impl EnforcerLayer {
    pub fn new(enforcer: Arc<Enforcer>, config: LayerConfig) -> EnforcerLayer {
        EnforcerLayer {
            enforcer,
            config: Arc::new(config),
        }
    }
}

impl<S> tower::Layer<S> for EnforcerLayer {
    type Service = EnforcerService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        EnforcerService {
            inner,
            enforcer: self.enforcer.clone(),
            config: self.config.clone(),
        }
    }
}

/// The service [`EnforcerLayer`] wraps around another.
#[derive(Clone, Debug)]
pub struct EnforcerService<S> {
    inner: S,
    enforcer: Arc<Enforcer>,
    config: Arc<LayerConfig>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B, ResBody> tower::Service<Request<B>> for EnforcerService<S>
where
    S: tower::Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    ResBody: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let info = self.config.extract.request_info(&req);
        let decision = self.enforcer.check(&info);
        let legacy = self.config.legacy_headers;
        if !decision.allowed {
            let res = rejection(&decision, legacy);
            return Box::pin(async move { Ok(res) });
        }
        // The service called must be the one that was polled ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let wait = self.enforcer.clock().real_wait(decision.delay_us);
        let decision = Arc::new(decision);
        req.extensions_mut().insert(decision.clone());
        Box::pin(async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let res = inner.call(req).await?;
            let (mut parts, body) = res.into_parts();
            if let Some(hit) = &decision.closest {
                add_headers(&mut parts.headers, hit, legacy);
            }
            Ok(Response::from_parts(parts, Body::new(body)))
        })
    }
}

fn value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(s).ok()
}

/// The `RateLimit` and `RateLimit-Policy` headers (and optionally the legacy trio) for `hit`.
pub fn add_headers(h: &mut HeaderMap, hit: &RuleHit, legacy: bool) {
    if let Some(v) = value(&hit.policy_header) {
        h.insert(HeaderName::from_static("ratelimit-policy"), v);
    }
    let name = hit.policy_header.split(';').next().unwrap_or("\"\"");
    if let Some(v) = value(&format!("{name};r={};t={}", hit.remaining, hit.reset_secs)) {
        h.insert(HeaderName::from_static("ratelimit"), v);
    }
    if legacy {
        h.insert(
            HeaderName::from_static("x-ratelimit-limit"),
            HeaderValue::from(hit.quota),
        );
        h.insert(
            HeaderName::from_static("x-ratelimit-remaining"),
            HeaderValue::from(hit.remaining),
        );
        h.insert(
            HeaderName::from_static("x-ratelimit-reset"),
            HeaderValue::from(hit.reset_secs),
        );
    }
}

/// The answer to a request the enforcer refused: 429 naming the violated rule, or 503 while
/// the gateway has no policy and its fallback is `deny`.
pub fn rejection(d: &Decision, legacy: bool) -> Response<Body> {
    let (status, body, retry) = match &d.violated {
        Some(v) => {
            let anomaly = v
                .source
                .as_deref()
                .is_some_and(|s| s.starts_with("anomaly:"));
            let kind = if anomaly {
                "abnormal-usage-detected"
            } else {
                "rate-limited"
            };
            let unit = if v.policy_header.contains("qu=\"cost-units\"") {
                "cost units"
            } else {
                "requests"
            };
            let mut body = serde_json::json!({
                "type": format!("{PROBLEM_BASE}{kind}"),
                "title": "Too Many Requests",
                "status": 429,
                "detail": format!(
                    "rate limit rule {:?} exceeded ({} {unit} per {} s); retry after {} s",
                    &*v.rule_id, v.quota, v.window_seconds, v.retry_after_secs
                ),
                "rule": &*v.rule_id,
                "retry_after": v.retry_after_secs,
            });
            if let Some(reason) = &v.reason {
                body["reason"] = serde_json::Value::from(&**reason);
            }
            (StatusCode::TOO_MANY_REQUESTS, body, v.retry_after_secs)
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({
                "type": format!("{PROBLEM_BASE}no-policy"),
                "title": "Service Unavailable",
                "status": 503,
                "detail": "the gateway has no rate-limit policy yet and its fallback is deny",
            }),
            5,
        ),
    };
    let mut res = Response::new(Body::from(body.to_string()));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    h.insert(RETRY_AFTER, HeaderValue::from(retry));
    if let Some(v) = &d.violated {
        add_headers(h, v, legacy);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::ManualClock;
    use crate::enforcer::EnforcerConfig;
    use http_body_util::BodyExt;
    use sluice_core::policy::Policy;
    use sluice_core::time::Timestamp;
    use tower::ServiceExt;

    fn app(rules: &str, legacy: bool) -> axum::Router {
        let clock = Arc::new(ManualClock::new(Timestamp::from_micros(
            1_700_000_000_000_000,
        )));
        let e = Arc::new(Enforcer::new(clock, EnforcerConfig::default()));
        let doc = format!(r#"{{"format":"sluice.policy/v1","rules":{rules}}}"#);
        e.apply(&Policy::parse(doc.as_bytes()).unwrap(), Some(3));
        axum::Router::new()
            .route("/items/{id}", axum::routing::get(|| async { "item" }))
            .layer(EnforcerLayer::new(
                e,
                LayerConfig {
                    legacy_headers: legacy,
                    ..LayerConfig::default()
                },
            ))
    }

    async fn get(app: &axum::Router, path: &str, key: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
        let req = Request::get(path)
            .header("x-api-key", key)
            .body(Body::empty())
            .unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        let (p, b) = res.into_parts();
        (
            p.status,
            p.headers,
            b.collect().await.unwrap().to_bytes().to_vec(),
        )
    }

    fn h<'a>(h: &'a HeaderMap, n: &str) -> Option<&'a str> {
        h.get(n).map(|v| v.to_str().unwrap())
    }

    #[tokio::test]
    async fn allowed_requests_carry_ratelimit_headers_and_limited_ones_get_a_problem() {
        let app = app(
            r#"[{"id":"per-key","selector":{"api_key":"*","route":"/items/{id}"},"limit":{"algorithm":"fixed_window","rate":2,"window_seconds":60},"reason":"tier default"}]"#,
            true,
        );
        let (s, hs, body) = get(&app, "/items/1", "k1").await;
        assert_eq!((s, body.as_slice()), (StatusCode::OK, &b"item"[..]));
        assert_eq!(h(&hs, "ratelimit-policy"), Some("\"per-key\";q=2;w=60"));
        assert_eq!(h(&hs, "ratelimit"), Some("\"per-key\";r=1;t=40"));
        assert_eq!(h(&hs, "x-ratelimit-limit"), Some("2"));
        assert_eq!(h(&hs, "x-ratelimit-remaining"), Some("1"));
        assert_eq!(h(&hs, "x-ratelimit-reset"), Some("40"));
        // The route is normalised: /items/2 counts on the same rule and key.
        assert_eq!(get(&app, "/items/2", "k1").await.0, StatusCode::OK);
        let (s, hs, body) = get(&app, "/items/3", "k1").await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(h(&hs, "retry-after"), Some("40"));
        assert_eq!(h(&hs, "content-type"), Some("application/problem+json"));
        assert_eq!(h(&hs, "ratelimit"), Some("\"per-key\";r=0;t=40"));
        let p: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            p,
            serde_json::json!({
                "type": "https://sluice.dev/problems/rate-limited",
                "title": "Too Many Requests",
                "status": 429,
                "detail": "rate limit rule \"per-key\" exceeded (2 requests per 60 s); retry after 40 s",
                "rule": "per-key",
                "retry_after": 40,
                "reason": "tier default",
            })
        );
        // Another key has its own counter.
        assert_eq!(get(&app, "/items/3", "k2").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn anomaly_rules_answer_abnormal_usage_and_legacy_headers_are_optional() {
        let app = app(
            r#"[{"id":"campaign-7","selector":{"api_key":"bad"},"limit":{"algorithm":"token_bucket","rate":1,"window_seconds":10,"burst":1},"source":"anomaly:7"}]"#,
            false,
        );
        let (s, hs, _) = get(&app, "/items/1", "bad").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h(&hs, "x-ratelimit-limit"), None);
        assert_eq!(h(&hs, "ratelimit"), Some("\"campaign-7\";r=0;t=10"));
        let (s, hs, body) = get(&app, "/items/1", "bad").await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(h(&hs, "retry-after"), Some("10"));
        let p: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            p["type"],
            "https://sluice.dev/problems/abnormal-usage-detected"
        );
        assert_eq!(p["rule"], "campaign-7");
        // Unmatched requests carry no RateLimit headers.
        let (s, hs, _) = get(&app, "/items/1", "good").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h(&hs, "ratelimit"), None);
    }
}
