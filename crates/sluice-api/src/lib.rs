//! Sluice's HTTP API: the axum router, token authentication, wire types, and the mapping of
//! error kinds to HTTP statuses. Handlers read and write through `sluice-store` and
//! `sluice-engine`; no SQL and no model code lives here.

pub mod admin;
pub mod analyst;
pub mod auth;
pub mod error;
pub mod forecasts;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod policy;
pub mod routes;
pub mod traffic;
pub mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::{get, post};
use axum::{middleware, Extension, Json, Router};
use sluice_engine::ingest::Enrichment;
use sluice_store::ingest::IngestWriter;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub use auth::Principal;
pub use error::ApiError;

/// Limits and sizes of the API.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Largest request body accepted (compressed size), in bytes.
    pub max_body_bytes: usize,
    /// Largest body after gzip decompression, in bytes.
    pub max_decompressed_bytes: usize,
    /// Batches that may wait for the ingest writers before `POST /v1/logs` answers 429.
    pub queue_capacity: usize,
    /// Concurrent ingest writers (database connections used for ingestion).
    pub writers: usize,
    /// Format used when a request names none.
    pub default_format: String,
    /// How long a token lookup is cached (revocation takes effect within this time).
    pub token_cache_ttl: Duration,
    /// Largest policy document `POST /v1/policy/versions` accepts, in bytes.
    pub max_policy_bytes: usize,
    /// How often the served policy is checked against the database (besides `NOTIFY`).
    pub policy_refresh: Duration,
    /// Serve `GET /metrics` without a token (for scrapers behind a firewall). Off by default:
    /// then it needs an analyst or admin token like the rest of the API.
    pub metrics_public: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_body_bytes: 16 << 20,
            max_decompressed_bytes: 128 << 20,
            queue_capacity: 64,
            writers: 2,
            default_format: "auto".into(),
            token_cache_ttl: Duration::from_secs(10),
            max_policy_bytes: 256 << 20,
            policy_refresh: Duration::from_secs(1),
            metrics_public: false,
        }
    }
}

/// Shared state of every handler.
#[derive(Debug)]
pub struct AppState {
    pub pool: sqlx::PgPool,
    pub writer: Arc<IngestWriter>,
    pub enrich: Arc<Enrichment>,
    pub config: ApiConfig,
    pub tokens: auth::TokenCache,
    /// The policy versions being served, rendered once.
    pub policy: Arc<policy::PolicyCache>,
    pub(crate) ingest_queue: mpsc::Sender<logs::Job>,
}

impl AppState {
    /// Build the state and start the ingest writers (tasks that drain the bounded queue).
    pub fn new(pool: sqlx::PgPool, enrich: Arc<Enrichment>, config: ApiConfig) -> Arc<AppState> {
        // Install the Prometheus recorder now: counters incremented before the first scrape of
        // `/metrics` would otherwise go to no recorder and be lost.
        let _ = metrics::handle();
        let writer = Arc::new(IngestWriter::new(pool.clone()));
        let (tx, rx) = mpsc::channel::<logs::Job>(config.queue_capacity.max(1));
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..config.writers.max(1) {
            let rx = rx.clone();
            let writer = writer.clone();
            tokio::spawn(async move {
                loop {
                    let job = rx.lock().await.recv().await;
                    let Some((batch, reply)) = job else { break };
                    let res = writer.write(batch).await;
                    let _ = reply.send(res);
                }
            });
        }
        let policy = Arc::new(policy::PolicyCache::default());
        policy::spawn_refresher(Arc::downgrade(&policy), pool.clone(), config.policy_refresh);
        Arc::new(AppState {
            pool,
            writer,
            enrich,
            tokens: auth::TokenCache::new(config.token_cache_ttl),
            policy,
            config,
            ingest_queue: tx,
        })
    }
}

/// The whole router. Everything under `/v1` needs a token.
pub fn router(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/v1/logs", post(logs::post_logs))
        .route("/v1/logs/rejects", get(logs::get_rejects))
        .route("/v1/whoami", get(whoami))
        .route("/v1/anomalies", get(analyst::list_anomalies))
        .route("/v1/anomalies/{id}", get(analyst::get_anomaly))
        .route("/v1/clients/{client}", get(analyst::get_client))
        .route("/v1/forecasts", get(forecasts::get_forecasts))
        .route("/v1/policy", get(policy::get_policy))
        .route(
            "/v1/policy/versions",
            get(policy::list_versions).post(policy::publish),
        )
        .route("/v1/policy/versions/{version}", get(policy::get_version))
        .route("/v1/policy/diff", get(policy::diff))
        .route("/v1/policy/rollback", post(policy::rollback))
        .route("/v1/policy/promote", post(policy::promote))
        .route("/v1/gateways", get(policy::list_gateways))
        .route("/v1/gateways/{id}/status", post(policy::report_status))
        .merge(metrics_route(!state.config.metrics_public))
        .route("/v1/traffic", get(traffic::get_traffic))
        .route(
            "/v1/clients/{client}/limits",
            get(limits::get_client_limits),
        )
        // Review of suggested limits, auto-approval, audit log (admin.rs).
        .route("/v1/suggestions", get(admin::list_suggestions))
        .route("/v1/suggestions/{id}", get(admin::get_suggestion))
        .route("/v1/suggestions/{id}/approve", post(admin::approve))
        .route("/v1/suggestions/{id}/reject", post(admin::reject))
        .route("/v1/suggestions/{id}/modify", post(admin::modify))
        .route(
            "/v1/auto-approval",
            get(admin::get_auto_approval).put(admin::put_auto_approval),
        )
        .route("/v1/audit", get(admin::list_audit))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .merge(metrics_route(state.config.metrics_public))
        .merge(ui::routes())
        .route("/openapi.json", get(admin::openapi))
        .merge(v1)
        .fallback(|uri: axum::http::Uri| async move {
            ApiError::NotFound(format!("route {}", uri.path()))
        })
        .method_not_allowed_fallback(
            |method: axum::http::Method, uri: axum::http::Uri| async move {
                ApiError::MethodNotAllowed {
                    method: method.to_string(),
                    path: uri.path().to_owned(),
                }
            },
        )
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// `GET /metrics` when `on` (it sits behind authentication unless `--metrics-public`).
fn metrics_route(on: bool) -> Router<Arc<AppState>> {
    if on {
        Router::new().route("/metrics", get(metrics::get_metrics))
    } else {
        Router::new()
    }
}

#[derive(serde::Serialize)]
struct WhoAmI {
    name: String,
    role: sluice_core::Role,
}

async fn whoami(Extension(p): Extension<Principal>) -> Json<WhoAmI> {
    Json(WhoAmI {
        name: p.name,
        role: p.role,
    })
}

async fn readyz(State(state): State<Arc<AppState>>) -> Result<&'static str, ApiError> {
    sqlx::query("SELECT 1")
        .execute(&state.pool)
        .await
        .map_err(|e| ApiError::from(sluice_store::StoreError::from(e)))?;
    Ok("ready")
}

/// Bind `addr` (port 0 picks a free port) and serve until `shutdown` completes. Returns the bound
/// address through `bound` before serving.
pub async fn serve(
    addr: SocketAddr,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    bound: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    bound(listener.local_addr()?);
    let policy = state.policy.clone();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Long polls answer now rather than holding the shutdown for up to a minute.
            policy.close();
        })
        .await
}

/// Start the server on an ephemeral loopback port in the background (tests, the demo).
pub async fn spawn_test_server(state: Arc<AppState>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(state)).await;
    });
    Ok(addr)
}
