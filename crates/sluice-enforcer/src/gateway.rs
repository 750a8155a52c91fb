//! The reference gateway: a reverse proxy (hyper-util's legacy client to one upstream) with the
//! [`EnforcerLayer`] in front, the [`PolicyClient`] keeping its policy current, and the
//! [`Shipper`] sending one access record per request (429s included) to the control plane.
//!
//! [`start_gateway`] binds, loads the last good policy from the state directory, starts the
//! poller and the shipper, and returns a [`GatewayHandle`] with the bound address; `sluice
//! gateway` and in-process demos (with a scaled clock) both use it.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use http::header::{self, HeaderName, HeaderValue};
use http::{StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use sluice_core::AccessRecord;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::algo::Clock;
use crate::client::{ClientConfig, PolicyClient};
use crate::enforcer::{Enforcer, EnforcerConfig, Fallback};
use crate::layer::{EnforcerLayer, Extract, LayerConfig, PROBLEM_BASE};
use crate::shipper::{LogSink, Shipper, ShipperConfig};

/// Where the gateway gets its policy and sends its logs.
#[derive(Clone, Debug)]
pub struct ControlPlane {
    /// Base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// Bearer token with the gateway role.
    pub token: String,
    pub gateway_id: String,
    /// Gateway group for staged rollouts.
    pub group: Option<String>,
    /// Ship access logs to `POST /v1/logs`.
    pub ship_logs: bool,
}

/// Everything `sluice gateway` is configured with.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// Upstream base URL (`http://host:port`); the request's path and query are appended.
    pub upstream: String,
    /// `None`: no control plane (the fallback, or the policy on disk, is enforced).
    pub control_plane: Option<ControlPlane>,
    /// Where the last good policy is kept.
    pub state_dir: Option<PathBuf>,
    pub legacy_headers: bool,
    pub fallback: Fallback,
    /// Enforcement off: a plain proxy (the benchmark's reference).
    pub enforce: bool,
    pub extract: Extract,
    /// Long-poll wait of the policy client.
    pub poll_wait: Duration,
    pub shipper: Option<ShipperConfig>,
}

impl GatewayConfig {
    pub fn new(listen: SocketAddr, upstream: &str) -> GatewayConfig {
        GatewayConfig {
            listen,
            upstream: upstream.trim_end_matches('/').to_owned(),
            control_plane: None,
            state_dir: None,
            legacy_headers: false,
            fallback: Fallback::Allow,
            enforce: true,
            extract: Extract::default(),
            poll_wait: Duration::from_secs(30),
            shipper: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("invalid upstream URL {0:?}: expected http://host:port")]
    Upstream(String),
    #[error("failed to listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running gateway.
#[derive(Debug)]
pub struct GatewayHandle {
    pub local_addr: SocketAddr,
    pub enforcer: Arc<Enforcer>,
    /// The shipper's counters (when logs are shipped).
    pub log_stats: Option<Arc<crate::shipper::ShipperStats>>,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    poller: Option<JoinHandle<()>>,
    shipper: Option<Shipper>,
}

impl GatewayHandle {
    /// Stop accepting, finish requests in flight, stop polling, ship the remaining logs.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        if let Some(p) = self.poller {
            let _ = p.await;
        }
        if let Some(s) = self.shipper {
            s.shutdown().await;
        }
    }

    /// Whether shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

struct Proxy {
    client: Client<HttpConnector, Body>,
    upstream: String,
    clock: Arc<dyn Clock>,
    logs: Option<LogSink>,
    source: String,
    extract: Extract,
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

async fn forward(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let pq = parts.uri.path_and_query().map_or("/", |x| x.as_str());
    let Ok(uri) = format!("{}{pq}", p.upstream).parse::<Uri>() else {
        return problem(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "invalid request target",
        );
    };
    parts.uri = uri;
    for h in HOP_BY_HOP {
        parts.headers.remove(h);
    }
    if let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        let xff = match parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(prev) => format!("{prev}, {}", peer.ip()),
            None => peer.ip().to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&xff) {
            parts
                .headers
                .insert(HeaderName::from_static("x-forwarded-for"), v);
        }
    }
    parts.version = http::Version::HTTP_11;
    match p
        .client
        .request(http::Request::from_parts(parts, body))
        .await
    {
        Ok(res) => {
            let (mut parts, body) = res.into_parts();
            for h in HOP_BY_HOP {
                parts.headers.remove(h);
            }
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => {
            tracing::warn!(error = %crate::net::error_chain(&e), "upstream request failed");
            problem(
                StatusCode::BAD_GATEWAY,
                "upstream-unavailable",
                "the upstream service could not be reached",
            )
        }
    }
}

fn problem(status: StatusCode, kind: &str, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": format!("{PROBLEM_BASE}{kind}"),
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut res = Response::new(Body::from(body.to_string()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    res
}

/// Writes one access record per request (after the answer's head is known).
async fn access_log(State(p): State<Arc<Proxy>>, req: Request, next: Next) -> Response {
    let Some(logs) = p.logs.clone() else {
        return next.run(req).await;
    };
    let started = Instant::now();
    let ts = p.clock.now();
    let info = p.extract.request_info(&req);
    let h = req.headers();
    let text = |n: &str| {
        h.get(n)
            .and_then(|v| v.to_str().ok())
            .map(|s| Cow::Owned(s.to_owned()))
    };
    let mut rec = AccessRecord {
        ts,
        source: Some(Cow::Owned(p.source.clone())),
        api_key: info.api_key.map(Cow::Owned),
        consumer: info.consumer.map(Cow::Owned),
        user: info.user.map(Cow::Owned),
        ip: info.ip,
        method: Some(Cow::Owned(info.method)),
        host: text("host"),
        path: Cow::Owned(req.uri().path().to_owned()),
        query: req.uri().query().map(|q| Cow::Owned(q.to_owned())),
        protocol: Some(Cow::Borrowed(match req.version() {
            http::Version::HTTP_10 => "HTTP/1.0",
            http::Version::HTTP_2 => "HTTP/2.0",
            _ => "HTTP/1.1",
        })),
        user_agent: text("user-agent"),
        referer: text("referer"),
        request_id: text("x-request-id"),
        bytes_received: h
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()),
        ..AccessRecord::default()
    };
    let res = next.run(req).await;
    rec.status = res.status().as_u16();
    rec.bytes_sent = res
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    rec.latency_us = Some(started.elapsed().as_micros() as u64);
    logs.record(&rec);
    res
}

/// Bind, load the last good policy, start the policy client and the log shipper, and serve.
pub async fn start_gateway(
    cfg: GatewayConfig,
    clock: Arc<dyn Clock>,
) -> Result<GatewayHandle, GatewayError> {
    let upstream = cfg.upstream.trim_end_matches('/').to_owned();
    match upstream.parse::<Uri>() {
        Ok(u) if u.scheme_str() == Some("http") && u.host().is_some() => {}
        _ => return Err(GatewayError::Upstream(cfg.upstream.clone())),
    }
    let enforcer = Arc::new(Enforcer::new(
        clock.clone(),
        EnforcerConfig {
            fallback: cfg.fallback,
            ..EnforcerConfig::default()
        },
    ));
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| GatewayError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| GatewayError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let (stop, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    // The policy: from disk first, then from the control plane.
    let mut poller = None;
    let mut client = cfg.control_plane.as_ref().map(|cp| {
        let mut c = ClientConfig::new(&cp.url, &cp.token, &cp.gateway_id);
        c.group = cp.group.clone();
        c.state_dir = cfg.state_dir.clone();
        c.wait = cfg.poll_wait;
        PolicyClient::new(c, enforcer.clone())
    });
    if client.is_none() {
        if let Some(dir) = &cfg.state_dir {
            // No control plane: enforce what is on disk.
            let c = ClientConfig {
                state_dir: Some(dir.clone()),
                ..ClientConfig::new("http://127.0.0.1:9", "", "")
            };
            let mut c = PolicyClient::new(c, enforcer.clone());
            if let Err(e) = c.load_from_disk() {
                tracing::error!(error = %e, "could not load the last good policy");
            }
        }
    }
    if let Some(c) = client.as_mut() {
        if let Err(e) = c.load_from_disk() {
            tracing::error!(error = %e, "could not load the last good policy; waiting for the control plane");
        }
    }
    if let Some(c) = client {
        poller = Some(tokio::spawn(c.run(stopped(stop_rx.clone()))));
    }

    let shipper = match (&cfg.control_plane, &cfg.shipper) {
        (Some(cp), Some(sc)) if cp.ship_logs => Some(Shipper::spawn(sc.clone())),
        (Some(cp), None) if cp.ship_logs => Some(Shipper::spawn(ShipperConfig::new(
            &cp.url,
            &cp.token,
            &cp.gateway_id,
        ))),
        _ => None,
    };
    let source = cfg
        .control_plane
        .as_ref()
        .map_or_else(|| "gateway".to_owned(), |c| c.gateway_id.clone());
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let proxy = Arc::new(Proxy {
        client: Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1024)
            .build(connector),
        upstream,
        clock,
        logs: shipper.as_ref().map(Shipper::sink),
        source,
        extract: cfg.extract.clone(),
    });
    let mut app = axum::Router::new()
        .fallback(forward)
        .with_state(proxy.clone());
    if cfg.enforce {
        app = app.layer(EnforcerLayer::new(
            enforcer.clone(),
            LayerConfig {
                legacy_headers: cfg.legacy_headers,
                extract: cfg.extract.clone(),
            },
        ));
    }
    let app = app.layer(middleware::from_fn_with_state(proxy, access_log));
    let server = tokio::spawn(async move {
        let res = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stopped(stop_rx))
        .await;
        if let Err(e) = res {
            tracing::error!(error = %e, "gateway server failed");
        }
    });
    Ok(GatewayHandle {
        local_addr,
        log_stats: shipper.as_ref().map(|s| s.stats().clone()),
        enforcer,
        stop,
        server,
        poller,
        shipper,
    })
}
