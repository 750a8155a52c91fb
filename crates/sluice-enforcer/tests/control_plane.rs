//! The gateway against the REAL control plane: `sluice_api` served on 127.0.0.1:0 over a fresh
//! Postgres database (`TestDb`: `DATABASE_URL` or the embedded cluster), policies published
//! through `POST /v1/policy/versions`, logs counted in `access_log`.
//!
//! Waits poll for a state with a generous bound (a missed state fails the test; nothing asserts
//! how fast anything is).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use sluice_api::{ApiConfig, AppState};
use sluice_core::Role;
use sluice_enforcer::net::{self, HttpClient};
use sluice_enforcer::shipper::ShipperConfig;
use sluice_enforcer::{start_gateway, ControlPlane, GatewayConfig, GatewayHandle, SystemClock};
use sluice_engine::ingest::Enrichment;
use sluice_store::testing::TestDb;
use tower::ServiceExt;

struct ControlPlaneServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl ControlPlaneServer {
    async fn start(state: Arc<AppState>) -> ControlPlaneServer {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (bound_tx, bound) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            sluice_api::serve(
                "127.0.0.1:0".parse().unwrap(),
                state,
                async move {
                    let _ = stopped.await;
                },
                move |a| {
                    let _ = bound_tx.send(a);
                },
            )
            .await
            .expect("serve the control plane");
        });
        ControlPlaneServer {
            addr: bound.await.expect("bound"),
            stop: Some(stop),
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
    }
}

struct Setup {
    db: TestDb,
    state: Arc<AppState>,
    gateway_token: String,
    admin_token: String,
    http: HttpClient,
}

async fn setup() -> Setup {
    let db = TestDb::new().await;
    let state = AppState::new(
        db.pool.clone(),
        Arc::new(Enrichment::default()),
        ApiConfig::default(),
    );
    let token = |name: &'static str, role| {
        let pool = db.pool.clone();
        async move {
            sluice_store::tokens::create_token(&pool, name, role, "test")
                .await
                .expect("token")
                .1
        }
    };
    let gateway_token = token("edge-1", Role::Gateway).await;
    let admin_token = token("root", Role::Admin).await;
    Setup {
        db,
        state,
        gateway_token,
        admin_token,
        http: net::client(),
    }
}

/// A tiny upstream that answers 200 `ok` to everything.
async fn upstream() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    addr
}

async fn publish(s: &Setup, cp: &str, rules: &str) {
    let doc = format!(r#"{{"format":"sluice.policy/v1","rules":{rules}}}"#);
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("{cp}/v1/policy/versions"))
        .header("authorization", format!("Bearer {}", s.admin_token))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(doc)))
        .unwrap();
    let res = net::send(&s.http, req, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(res.body())
    );
}

async fn get(s: &Setup, gw: SocketAddr, key: &str) -> StatusCode {
    let req = Request::get(format!("http://{gw}/items/1"))
        .header("x-api-key", key)
        .body(Full::new(Bytes::new()))
        .unwrap();
    net::send(&s.http, req, Duration::from_secs(30))
        .await
        .unwrap()
        .status()
}

async fn statuses(s: &Setup, gw: SocketAddr, key: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(get(s, gw, key).await.as_u16());
    }
    out
}

/// Wait (bounded) until `f` holds.
async fn eventually<F: Fn() -> bool>(what: &str, f: F) {
    for _ in 0..1500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} did not happen within 30 s");
}

fn gateway_config(
    s: &Setup,
    cp: &str,
    upstream: SocketAddr,
    state_dir: &std::path::Path,
    ship: bool,
) -> GatewayConfig {
    let mut cfg = GatewayConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        &format!("http://{upstream}"),
    );
    cfg.control_plane = Some(ControlPlane {
        url: cp.to_owned(),
        token: s.gateway_token.clone(),
        gateway_id: "gw-1".into(),
        group: None,
        ship_logs: ship,
    });
    cfg.state_dir = Some(state_dir.to_owned());
    cfg.poll_wait = Duration::from_secs(20);
    if ship {
        let mut sc = ShipperConfig::new(cp, &s.gateway_token, "gw-1");
        sc.interval = Duration::from_millis(100);
        sc.retry_min = Duration::from_millis(10);
        sc.retry_max = Duration::from_millis(200);
        cfg.shipper = Some(sc);
    }
    cfg
}

const V1: &str = r#"[{"id":"per-key","selector":{"api_key":"*"},"limit":{"algorithm":"fixed_window","rate":2,"window_seconds":3600}}]"#;
const V2: &str = r#"[{"id":"per-key","selector":{"api_key":"*"},"limit":{"algorithm":"fixed_window","rate":4,"window_seconds":3600}}]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_are_long_polled_reported_and_survive_an_outage_on_disk() {
    let s = setup().await;
    let cp = ControlPlaneServer::start(s.state.clone()).await;
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    publish(&s, &cp.url(), V1).await;

    let gw = start_gateway(
        gateway_config(&s, &cp.url(), up, dir.path(), false),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let e = gw.enforcer.clone();
    eventually("version 1 applied", || e.version() == Some(1)).await;
    assert_eq!(statuses(&s, gw.local_addr, "k1", 3).await, [200, 200, 429]);

    // The gateway reported what it applied.
    let pool = s.db.pool.clone();
    let mut reported = None;
    for _ in 0..1500 {
        let gws = sluice_store::policy::list_gateways(&pool).await.unwrap();
        reported = gws.into_iter().find(|g| g.id == "gw-1");
        if reported
            .as_ref()
            .is_some_and(|g| g.applied_version == Some(1))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reported = reported.expect("gw-1 reported");
    assert_eq!(reported.applied_version, Some(1));
    assert_eq!(reported.state, "current");

    // The gateway is waiting in a long poll (20 s): a publish reaches it through that poll.
    publish(&s, &cp.url(), V2).await;
    eventually("version 2 applied", || e.version() == Some(2)).await;
    // A new limit is a new counter: k1 may send 4 more.
    assert_eq!(
        statuses(&s, gw.local_addr, "k1", 5).await,
        [200, 200, 200, 200, 429]
    );
    gw.shutdown().await;
    cp.stop().await;

    // The control plane is gone; a restarted gateway enforces the policy it kept on disk.
    let dead = format!("http://{}", cp_addr_placeholder());
    let gw: GatewayHandle = start_gateway(
        gateway_config(&s, &dead, up, dir.path(), false),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    assert_eq!(gw.enforcer.version(), Some(2));
    assert_eq!(
        statuses(&s, gw.local_addr, "k2", 5).await,
        [200, 200, 200, 200, 429]
    );
    gw.shutdown().await;
}

/// An address nothing listens on (a port bound and released).
fn cp_addr_placeholder() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_batches_survive_503s_and_lost_answers_without_duplicates() {
    let s = setup().await;
    // A front for the real router: the first attempt of a batch is refused with 503 and
    // Retry-After, the second is stored but its answer is replaced by a 503 (a lost answer),
    // later ones pass through. The shipper must retry with the same Idempotency-Key.
    let real = sluice_api::router(s.state.clone());
    let calls = Arc::new(AtomicUsize::new(0));
    let keys = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let front = {
        let (calls, keys) = (calls.clone(), keys.clone());
        axum::Router::new().fallback(move |req: Request<Body>| {
            let (real, calls, keys) = (real.clone(), calls.clone(), keys.clone());
            async move {
                let logs = req.uri().path() == "/v1/logs";
                if !logs {
                    return real.oneshot(req).await.unwrap();
                }
                let key = req
                    .headers()
                    .get("idempotency-key")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                keys.lock().unwrap().push(key);
                let n = calls.fetch_add(1, Ordering::SeqCst);
                let unavailable = || {
                    axum::response::Response::builder()
                        .status(503)
                        .header("retry-after", "1")
                        .body(Body::from("try later"))
                        .unwrap()
                };
                match n {
                    0 => unavailable(),
                    1 => {
                        let res = real.oneshot(req).await.unwrap();
                        assert_eq!(res.status(), StatusCode::OK);
                        unavailable()
                    }
                    _ => real.oneshot(req).await.unwrap(),
                }
            }
        })
    };
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, front).await;
    });
    let cp = format!("http://{front_addr}");
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = gateway_config(&s, &cp, up, dir.path(), true);
    // Everything in one batch (count the attempts of exactly one batch).
    cfg.shipper.as_mut().unwrap().interval = Duration::from_secs(3600);
    let gw = start_gateway(cfg, Arc::new(SystemClock)).await.unwrap();
    let n = 25;
    for i in 0..n {
        assert_eq!(
            get(&s, gw.local_addr, &format!("k{i}")).await,
            StatusCode::OK
        );
    }
    let stats = gw.log_stats.clone().unwrap();
    gw.shutdown().await;
    assert_eq!(stats.records.load(Ordering::SeqCst), n);
    assert_eq!(stats.shipped.load(Ordering::SeqCst), n);
    assert_eq!(stats.batches.load(Ordering::SeqCst), 1);
    assert_eq!(stats.retries.load(Ordering::SeqCst), 2);
    assert_eq!(stats.failed_batches.load(Ordering::SeqCst), 0);
    let keys = keys.lock().unwrap().clone();
    assert_eq!(keys.len(), 3);
    assert!(
        keys.iter().all(|k| *k == keys[0] && !k.is_empty()),
        "{keys:?}"
    );
    let (rows, distinct_keys): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT api_key) FROM access_log WHERE source = 'gw-1'",
    )
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    assert_eq!((rows, distinct_keys), (n as i64, n as i64));
}
