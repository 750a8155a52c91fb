//! One demo run: history first (so baselines exist), then the control plane, the upstream, the
//! gateway and the loops on live log time, the driver for the requested duration, a live
//! summary, and the final report.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use sluice_api::{ApiConfig, AppState};
use sluice_core::approval::{AutoApprovalConfig, TightenAbusiveRule};
use sluice_core::{AccessRecord, Role, RouteNormalizer, Timestamp};
use sluice_enforcer::{start_gateway, ControlPlane, GatewayConfig};
use sluice_engine::detection::{DetectionLoop, DetectionOptions};
use sluice_engine::forecast::{ForecastLoop, ForecastOptions};
use sluice_engine::ingest::Enrichment;
use sluice_engine::profiles::{refresh_profiles, ProfileOptions};
use sluice_engine::tuning::{tune_step, TuningSettings};
use sluice_store::ingest::IngestWriter;
use sluice_store::{BatchBuilder, Database, EncodedBatch, PgPool};
use tokio::sync::{mpsc, oneshot};

use crate::clock::DemoClock;
use crate::driver::{drive, DriverConfig, DriverStats};
use crate::scenario::{self, ScenarioConfig};
use crate::score::{
    Classifier, Score, Summary, TARGET_ADMITTED_AFTER_ENFORCE, TARGET_LEGIT_REJECTED,
    TARGET_TIME_TO_ENFORCE_S,
};

/// How the demo runs (`sluice demo` flags).
#[derive(Clone, Debug)]
pub struct DemoConfig {
    /// Wall time the traffic is played for.
    pub duration: Duration,
    /// Log seconds per wall second.
    pub time_scale: f64,
    /// No auto-approval: suggestions wait for an administrator in the UI.
    pub manual: bool,
    /// Where the control plane (API and UI) listens.
    pub listen: SocketAddr,
    pub seed: u64,
    pub clients: usize,
    pub history_hours: f64,
    /// Log minutes an auto-approved tightening stays in shadow mode before it is enforced.
    pub shadow_minutes: f64,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// How often the live summary is printed.
    pub summary_every: Duration,
    /// Where the gateway keeps its last good policy and models are exported.
    pub work_dir: PathBuf,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            duration: Duration::from_secs(180),
            time_scale: 30.0,
            manual: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            seed: 1,
            clients: 30,
            history_hours: 3.0,
            shadow_minutes: 5.0,
            concurrency: 256,
            summary_every: Duration::from_secs(5),
            work_dir: std::env::temp_dir().join("sluice-demo"),
        }
    }
}

/// Lines the demo prints while it runs (the caller picks stdout or stderr).
pub type Printer = Arc<dyn Fn(&str) + Send + Sync>;

/// The targets, as the report shows them.
#[derive(Clone, Debug, Serialize)]
pub struct Targets {
    pub time_to_enforce_s: f64,
    pub admitted_after_enforce_ratio: f64,
    pub legit_rejected_ratio: f64,
    pub time_to_enforce_met: bool,
    pub admitted_after_enforce_met: bool,
    pub legit_rejected_met: bool,
}

/// Everything the demo reports at the end (one JSON object with `--json`).
#[derive(Clone, Debug, Serialize)]
pub struct DemoReport {
    #[serde(flatten)]
    pub summary: Summary,
    pub targets: Targets,
    pub duration_s: f64,
    pub time_scale: f64,
    pub auto_approval: bool,
    pub history_records: u64,
    pub requests_sent: u64,
    pub driver_max_lag_s: f64,
    pub driver_late_requests: u64,
    /// Newest policy version at the end, and how many were published during the live part.
    pub policy_version: Option<i64>,
    pub policy_versions_published: i64,
    pub anomalies_detected: usize,
    pub logs_shipped_dropped: Option<u64>,
}

/// Run the demo on `db` (fresh and migrated). `print` gets the live lines.
pub async fn run(db: &Database, cfg: &DemoConfig, print: Printer) -> anyhow::Result<DemoReport> {
    let pool = db.pool().clone();
    let live_secs = (cfg.duration.as_secs_f64() * cfg.time_scale).ceil() as u64 + 60;
    let sc = scenario::build(&ScenarioConfig {
        seed: cfg.seed,
        clients: cfg.clients,
        history_secs: (cfg.history_hours * 3600.0) as u64,
        live_secs,
    });
    let routes = RouteNormalizer::new(vec!["/static/**"
        .parse()
        .context("invalid built-in route pattern")?]);
    let enrich = Arc::new(Enrichment {
        client_key: Default::default(),
        routes: routes.clone(),
    });

    // The simulation runs on its own thread: history batches first, then live chunks.
    let (hist_tx, mut hist_rx) = mpsc::channel::<EncodedBatch>(4);
    let (live_tx, live_rx) = mpsc::channel::<Vec<AccessRecord<'static>>>(256);
    let (labels_tx, labels_rx) = oneshot::channel();
    let sim_cfg = sc.sim.clone();
    let live_start = sc.live_start;
    let hist_enrich = enrich.clone();
    std::thread::Builder::new()
        .name("demo-sim".into())
        .spawn(move || {
            produce(
                sim_cfg,
                live_start,
                hist_enrich,
                hist_tx,
                live_tx,
                labels_tx,
            )
        })
        .context("failed to start the simulator thread")?;
    let labels = labels_rx.await.context("the simulator failed to start")??;
    let classifier = Arc::new(Classifier::new(&labels));

    // History: ingest, detect, profile and tune through it.
    let t0 = Instant::now();
    print(&format!(
        "ingesting {:.1} h of simulated history ({} API clients, {} browsers)...",
        cfg.history_hours, cfg.clients, cfg.clients
    ));
    let writer = IngestWriter::new(pool.clone());
    let mut history_records = 0;
    while let Some(batch) = hist_rx.recv().await {
        let out = writer
            .write(batch)
            .await
            .context("failed to ingest the simulated history")?;
        history_records += out.counts().accepted;
    }
    let models_dir = cfg.work_dir.join("models");
    let opts = DetectionOptions {
        models_dir: Some(models_dir),
        ..DetectionOptions::default()
    };
    let mut dl = DetectionLoop::starting_at(opts, sc.sim.start);
    dl.run_until(&pool, live_start, |_| {})
        .await
        .context("detection over the history failed")?;
    if let Some(c) = sluice_store::detection::cursor(&pool).await? {
        refresh_profiles(&pool, c, &ProfileOptions::default())
            .await
            .context("profile extraction over the history failed")?;
    }
    // Load forecasts (the UI's forecast band, the forecast dashboard). The demo upstream has no
    // capacity to learn (its latency does not bend under load), so no capacity is learned and no
    // limit is scaled for predicted overload.
    let forecast_opts = ForecastOptions {
        learn_capacity: false,
        ..ForecastOptions::default()
    };
    ForecastLoop::starting_at(forecast_opts.clone(), sc.sim.start)
        .run_until(&pool, live_start)
        .await
        .context("forecasting over the history failed")?;
    let settings = TuningSettings {
        // suggestions every log minute: the demo compresses time, so the default 15 would
        // propose a limit only every 30 wall seconds
        suggest_every_minutes: 1,
        ..TuningSettings::default()
    };
    if let Some(c) = sluice_store::detection::cursor(&pool).await? {
        tune_step(&pool, &settings, c)
            .await
            .context("tuning over the history failed")?;
    }
    let auto = AutoApprovalConfig {
        tighten_abusive: TightenAbusiveRule {
            enabled: !cfg.manual,
            shadow_hours: cfg.shadow_minutes / 60.0,
            ..TightenAbusiveRule::default()
        },
        enforce: !cfg.manual,
        ..AutoApprovalConfig::default()
    };
    sluice_store::review::set_auto_approval(&pool, &auto, "sluice-demo")
        .await
        .context("failed to set the auto-approval rules")?;
    let versions_before = newest_version(&pool).await;
    print(&format!(
        "history ready in {:.1} s: {history_records} records, {} anomalies",
        t0.elapsed().as_secs_f64(),
        dl.anomalies().len()
    ));

    // The control plane.
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S");
    let (_, gw_token) = sluice_store::tokens::create_token(
        &pool,
        &format!("demo-gateway-{stamp}"),
        Role::Gateway,
        "sluice-demo",
    )
    .await?;
    let (_, admin_token) = sluice_store::tokens::create_token(
        &pool,
        &format!("demo-admin-{stamp}"),
        Role::Admin,
        "sluice-demo",
    )
    .await?;
    let state = AppState::new(pool.clone(), enrich.clone(), ApiConfig::default());
    let (stop_api, api_stopped) = oneshot::channel::<()>();
    let (addr_tx, addr_rx) = oneshot::channel();
    let listen = cfg.listen;
    let api = tokio::spawn(async move {
        sluice_api::serve(
            listen,
            state,
            async move {
                let _ = api_stopped.await;
            },
            move |a| {
                let _ = addr_tx.send(a);
            },
        )
        .await
    });
    let api_addr = match addr_rx.await {
        Ok(a) => a,
        Err(_) => {
            return Err(match api.await {
                Ok(Err(e)) => {
                    anyhow::Error::new(e).context(format!("failed to listen on {listen}"))
                }
                _ => anyhow::anyhow!("the control plane did not start"),
            })
        }
    };
    let (up_addr, upstream) = crate::upstream::spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .context("failed to start the demo upstream")?;

    // The gateway on demo log time.
    let clock = DemoClock::start(live_start, cfg.time_scale);
    let mut gcfg = GatewayConfig::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        &format!("http://{up_addr}"),
    );
    gcfg.control_plane = Some(ControlPlane {
        url: format!("http://{api_addr}"),
        token: gw_token,
        gateway_id: "demo-gateway".into(),
        group: None,
        ship_logs: true,
    });
    gcfg.state_dir = Some(cfg.work_dir.join("gateway"));
    gcfg.extract.trust_forwarded_for = true;
    gcfg.extract.normalizer = routes;
    let mut ship = sluice_enforcer::shipper::ShipperConfig::new(
        &format!("http://{api_addr}"),
        gcfg.control_plane.as_ref().map_or("", |c| c.token.as_str()),
        "demo-gateway",
    );
    ship.interval = Duration::from_millis(500);
    gcfg.shipper = Some(ship);
    let gateway = start_gateway(gcfg, Arc::new(clock))
        .await
        .context("failed to start the gateway")?;

    print(&format!(
        "control plane: http://{api_addr}  UI: http://{api_addr}/ui  admin token: {admin_token}"
    ));
    print(&format!(
        "gateway http://{} -> upstream http://{up_addr}; playing {} s of traffic at {}x ({} log minutes){}",
        gateway.local_addr,
        cfg.duration.as_secs(),
        cfg.time_scale,
        (cfg.duration.as_secs_f64() * cfg.time_scale / 60.0).round(),
        if cfg.manual {
            "; auto-approval is off: approve suggestions in the UI"
        } else {
            "; auto-approval: shadow first, then enforce"
        }
    ));

    // The loops, on log time.
    let anomalies = Arc::new(Mutex::new(dl.anomalies().len()));
    let loops = vec![
        spawn_detection(pool.clone(), dl, anomalies.clone()),
        spawn_profiles(pool.clone()),
        sluice_engine::forecast::spawn_live(pool.clone(), forecast_opts, Duration::from_secs(2)),
        spawn_tuning(pool.clone(), settings),
    ];

    // The driver.
    let score = Arc::new(Mutex::new(Score::new(&classifier)));
    let stats = Arc::new(Mutex::new(DriverStats::default()));
    let mut driver = tokio::spawn(drive(
        live_rx,
        clock,
        classifier.clone(),
        score.clone(),
        stats.clone(),
        DriverConfig {
            gateway: format!("http://{}", gateway.local_addr),
            concurrency: cfg.concurrency,
            duration: cfg.duration,
        },
    ));
    let mut tick = tokio::time::interval(cfg.summary_every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = &mut driver => break,
            _ = tick.tick() => {
                let s = score.lock().unwrap_or_else(|e| e.into_inner()).summary();
                let v = newest_version(&pool).await;
                let n = *anomalies.lock().unwrap_or_else(|e| e.into_inner());
                print(&live_line(&clock, &s, v, n));
            }
        }
    }

    // Wind down: stop sending, ship the last logs, stop the loops and the servers.
    let dropped = gateway
        .log_stats
        .as_ref()
        .map(|s| s.dropped.load(std::sync::atomic::Ordering::Relaxed));
    gateway.shutdown().await;
    for l in loops {
        l.abort();
    }
    let _ = stop_api.send(());
    let _ = api.await;
    upstream.abort();

    let summary = score.lock().unwrap_or_else(|e| e.into_inner()).summary();
    let stats = stats.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let version = newest_version(&pool).await;
    let (t1, t2, t3) = summary.targets_met();
    let n = *anomalies.lock().unwrap_or_else(|e| e.into_inner());
    Ok(DemoReport {
        targets: Targets {
            time_to_enforce_s: TARGET_TIME_TO_ENFORCE_S,
            admitted_after_enforce_ratio: TARGET_ADMITTED_AFTER_ENFORCE,
            legit_rejected_ratio: TARGET_LEGIT_REJECTED,
            time_to_enforce_met: t1,
            admitted_after_enforce_met: t2,
            legit_rejected_met: t3,
        },
        summary,
        duration_s: cfg.duration.as_secs_f64(),
        time_scale: cfg.time_scale,
        auto_approval: !cfg.manual,
        history_records,
        requests_sent: stats.sent,
        driver_max_lag_s: (stats.max_lag_s * 100.0).round() / 100.0,
        driver_late_requests: stats.late,
        policy_version: version,
        policy_versions_published: version.unwrap_or(0) - versions_before.unwrap_or(0),
        anomalies_detected: n,
        logs_shipped_dropped: dropped,
    })
}

async fn newest_version(pool: &PgPool) -> Option<i64> {
    sluice_store::policy::list(pool, 1, None)
        .await
        .ok()
        .and_then(|v| v.first().map(|v| v.version))
}

fn live_line(clock: &DemoClock, s: &Summary, version: Option<i64>, anomalies: usize) -> String {
    let enforced: Vec<String> = s
        .attacks
        .iter()
        .filter_map(|a| a.time_to_enforce_s.map(|t| format!("{} {t:.0}s", a.id)))
        .collect();
    format!(
        "[{:>5.0} s | log {}] legit {} ({} rejected) | attack {} ({} rejected) | anomalies {} | policy v{} | enforced: {}",
        clock.started().elapsed().as_secs_f64(),
        clock.now(),
        s.legit_requests,
        s.legit_rejected,
        s.attack_requests,
        s.attacks.iter().map(|a| a.rejected).sum::<u64>(),
        anomalies,
        version.unwrap_or(0),
        if enforced.is_empty() {
            "none yet".to_owned()
        } else {
            enforced.join(", ")
        }
    )
}

/// The human report: the figures next to their targets and one line per attack.
pub fn render_report(r: &DemoReport) -> String {
    use std::fmt::Write;
    let s = &r.summary;
    let mut out = String::new();
    let yes = |b: bool| if b { "met" } else { "NOT met" };
    let _ = writeln!(
        out,
        "\nsluice demo: {} s at {}x, auto-approval {}",
        r.duration_s,
        r.time_scale,
        if r.auto_approval { "on" } else { "off" }
    );
    let _ = writeln!(
        out,
        "  time to enforce (median over attacks): {}  (target < {} s: {})",
        s.attack_time_to_enforce_s
            .map_or("never".into(), |t| format!("{t:.1} s")),
        r.targets.time_to_enforce_s,
        yes(r.targets.time_to_enforce_met)
    );
    let _ = writeln!(
        out,
        "  attack requests admitted after enforcement: {}  (target <= {:.1}%: {})",
        s.attack_admitted_after_enforce_ratio
            .map_or("n/a".into(), |v| format!("{:.2}%", v * 100.0)),
        r.targets.admitted_after_enforce_ratio * 100.0,
        yes(r.targets.admitted_after_enforce_met)
    );
    let _ = writeln!(
        out,
        "  legitimate requests rejected: {} of {} = {:.3}%  (target <= {:.1}%: {})",
        s.legit_rejected,
        s.legit_requests,
        s.legit_rejected_ratio * 100.0,
        r.targets.legit_rejected_ratio * 100.0,
        yes(r.targets.legit_rejected_met)
    );
    let _ = writeln!(
        out,
        "  {} attack requests, {} requests sent in all (driver max lag {:.2} s); policy v{} ({} versions published); {} anomalies",
        s.attack_requests,
        r.requests_sent,
        r.driver_max_lag_s,
        r.policy_version.unwrap_or(0),
        r.policy_versions_published,
        r.anomalies_detected
    );
    let _ = writeln!(
        out,
        "\n  {:<24} {:>8} {:>9} {:>9} {:>14} {:>18}  rules",
        "attack", "requests", "admitted", "rejected", "to enforce", "admitted after"
    );
    for a in &s.attacks {
        let _ = writeln!(
            out,
            "  {:<24} {:>8} {:>9} {:>9} {:>14} {:>18}  {}",
            a.id,
            a.requests,
            a.admitted,
            a.rejected,
            a.time_to_enforce_s
                .map_or("never".into(), |t| format!("{t:.1} s")),
            format!("{}/{}", a.admitted_after_enforce, a.requests_after_enforce),
            a.rules.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    out
}

type Labels = sluice_sim::Labels;

/// The simulator thread: history as encoded batches, then live records in chunks.
fn produce(
    cfg: sluice_sim::SimConfig,
    live_start: Timestamp,
    enrich: Arc<Enrichment>,
    hist: mpsc::Sender<EncodedBatch>,
    live: mpsc::Sender<Vec<AccessRecord<'static>>>,
    labels: oneshot::Sender<anyhow::Result<Labels>>,
) {
    let sim = match sluice_sim::generate(&cfg) {
        Ok(s) => s,
        Err(e) => {
            let _ = labels.send(Err(anyhow::Error::new(e).context("invalid demo scenario")));
            return;
        }
    };
    let _ = labels.send(Ok(sim.labels().clone()));
    let mut sim = sim.peekable();
    let mut n = 0u64;
    let mut b = BatchBuilder::new("demo-history");
    while let Some(mut rec) = sim.next_if(|r| r.ts < live_start) {
        rec.route = Some(enrich.routes.normalize(&rec.path).into_owned().into());
        rec.client = enrich.client_key.resolve(&rec).map(|c| c.into_owned());
        b.push(&rec);
        n += 1;
        if n.is_multiple_of(20_000) {
            let full = std::mem::replace(&mut b, BatchBuilder::new("demo-history"));
            let key = format!("demo-history-{n}");
            if hist.blocking_send(full.finish(Some(key), "sim")).is_err() {
                return;
            }
        }
    }
    if b.counts().accepted > 0 {
        let _ = hist.blocking_send(b.finish(Some(format!("demo-history-{n}-end")), "sim"));
    }
    drop(hist);
    let mut chunk = Vec::with_capacity(256);
    for rec in sim {
        chunk.push(rec);
        if chunk.len() == 256 {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(256));
            if live.blocking_send(full).is_err() {
                return;
            }
        }
    }
    if !chunk.is_empty() {
        let _ = live.blocking_send(chunk);
    }
}

fn spawn_detection(
    pool: PgPool,
    mut dl: DetectionLoop,
    anomalies: Arc<Mutex<usize>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let res = async {
                if let Some(bound) = dl.live_bound(&pool).await? {
                    dl.run_until(&pool, bound, |_| {}).await?;
                }
                Ok::<_, sluice_engine::detection::DetectionError>(())
            }
            .await;
            if let Err(e) = res {
                tracing::warn!(error = %e, "demo detection step failed; retrying");
            }
            *anomalies.lock().unwrap_or_else(|e| e.into_inner()) = dl.anomalies().len();
        }
    })
}

fn spawn_profiles(pool: PgPool) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Ok(Some(c)) = sluice_store::detection::cursor(&pool).await {
                if let Err(e) = refresh_profiles(&pool, c, &ProfileOptions::default()).await {
                    tracing::warn!(error = %e, "demo profile refresh failed");
                }
            }
        }
    })
}

fn spawn_tuning(pool: PgPool, settings: TuningSettings) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Ok(Some(c)) = sluice_store::detection::cursor(&pool).await {
                if let Err(e) = tune_step(&pool, &settings, c).await {
                    tracing::warn!(error = %e, "demo tuning step failed");
                }
            }
        }
    })
}
