//! The detection loop in log time, shared by `sluice serve` and `sluice replay`.
//!
//! It reads committed records back from Postgres in log-time order, up to a bound that stays
//! `lateness` behind the ingestion watermark (so records that arrive a little late still count),
//! feeds them to the pure detector of `sluice-ml`, and stores what it learns: per-client minute
//! features, anomalies (with members and explanations), refitted population models in the
//! registry (with their artefacts on disk), and the cursor.
//!
//! Invariants:
//! - a minute is scored once every record up to its end has been read, and only with data up to
//!   that minute (the detector never looks ahead);
//! - the CPU work (aggregation, scoring, learning, model fits) runs on the blocking pool, never on
//!   the async runtime;
//! - after a restart the detector re-reads `rewarm` of history before the cursor to rebuild its
//!   baselines, but stores nothing for minutes before the cursor (they are already stored).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use sluice_core::time::MICROS_PER_MINUTE;
use sluice_core::{AccessRecord, ClientKind, Timestamp};
use sluice_ml::detect::{
    population, Aggregator, Anomaly, AnomalyState, Detector, DetectorConfig, Retrained, RouteSurge,
};
use sluice_store::detection::{self as store, AnomalyRow, FeatureRow, ModelEntry};
use sluice_store::{PgPool, StoreError};

/// Settings of the detection loop.
#[derive(Clone, Debug)]
pub struct DetectionOptions {
    pub detector: DetectorConfig,
    /// How far behind the ingestion watermark (newest committed log time) detection stays.
    pub lateness: Duration,
    /// Log time read from the database per step.
    pub step: Duration,
    /// History re-read before the cursor after a restart, to rebuild baselines.
    pub rewarm: Duration,
    /// Where refitted models are exported (`<dir>/<kind>/v<version>.json`); `None`: not exported.
    pub models_dir: Option<PathBuf>,
}

impl Default for DetectionOptions {
    fn default() -> Self {
        DetectionOptions {
            detector: DetectorConfig::default(),
            lateness: Duration::from_secs(120),
            step: Duration::from_secs(15 * 60),
            rewarm: Duration::from_secs(6 * 3600),
            models_dir: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DetectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("failed to write model artefact {path}: {source}")]
    Artefact {
        path: String,
        source: std::io::Error,
    },
    #[error("detection worker failed: {0}")]
    Worker(String),
}

/// Counters of the loop so far.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct DetectionStats {
    pub records: u64,
    pub minutes: u64,
    pub feature_rows: u64,
    pub anomalies_written: u64,
    pub models_registered: u64,
    /// Log time up to which records have been read (exclusive).
    #[serde(skip)]
    pub read_until: Option<Timestamp>,
}

/// A model the loop registered.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RegisteredModel {
    pub kind: String,
    pub version: i32,
    pub rows: usize,
    pub training_ms: f64,
    pub artefact: Option<String>,
}

struct Core {
    aggregator: Aggregator,
    detector: Detector,
}

/// What one blocking step produced.
struct Processed {
    features: Vec<FeatureRow>,
    retrained: Vec<(Retrained, serde_json::Value)>,
    route_surges: Vec<RouteSurge>,
    minutes: u64,
    last_minute: Option<Timestamp>,
}

/// Persisted view of one detector anomaly, to write only what changed.
#[derive(Clone, Copy, PartialEq)]
struct Written {
    open: bool,
    last_flagged: Timestamp,
    score_bits: u64,
    members: usize,
    id: i64,
}

/// The stateful loop. One per database.
pub struct DetectionLoop {
    opts: DetectionOptions,
    core: Option<Box<Core>>,
    /// Records before this instant have been fed (`None`: nothing yet).
    read_until: Option<Timestamp>,
    /// Minutes before this instant were stored by an earlier run.
    persist_from: Timestamp,
    written: HashMap<usize, Written>,
    model_versions: [Option<i32>; 2],
    models: Vec<RegisteredModel>,
    route_surges: Vec<RouteSurge>,
    stats: DetectionStats,
}

/// Route surges kept in memory for the report (the newest ones win beyond this).
const MAX_ROUTE_SURGES: usize = 10_000;

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl DetectionLoop {
    fn with(
        opts: DetectionOptions,
        read_until: Option<Timestamp>,
        persist_from: Timestamp,
    ) -> Self {
        let core = Core {
            aggregator: Aggregator::new(0),
            detector: Detector::new(opts.detector.clone()),
        };
        DetectionLoop {
            opts,
            core: Some(Box::new(core)),
            read_until,
            persist_from,
            written: HashMap::new(),
            model_versions: [None, None],
            models: Vec::new(),
            route_surges: Vec::new(),
            stats: DetectionStats::default(),
        }
    }

    /// Start over at `from` (replay): everything from there on is scored and stored.
    pub fn starting_at(opts: DetectionOptions, from: Timestamp) -> Self {
        DetectionLoop::with(opts, Some(from.minute_floor()), from.minute_floor())
    }

    /// Continue where the stored cursor says (serve): re-read `rewarm` of history before it to
    /// rebuild baselines; with no cursor, start at the oldest committed record.
    pub async fn resume(pool: &PgPool, opts: DetectionOptions) -> Result<Self, DetectionError> {
        match store::cursor(pool).await? {
            Some(c) => {
                let from = Timestamp::from_micros(c.micros() - micros(opts.rewarm)).minute_floor();
                Ok(DetectionLoop::with(opts, Some(from), c))
            }
            None => Ok(DetectionLoop::with(
                opts,
                None,
                Timestamp::from_micros(i64::MIN),
            )),
        }
    }

    pub fn stats(&self) -> &DetectionStats {
        &self.stats
    }

    pub fn models(&self) -> &[RegisteredModel] {
        &self.models
    }

    /// Minutes in which one route's total rose far above its own baseline (a surge on one
    /// endpoint, whoever caused it), oldest first.
    pub fn route_surges(&self) -> &[RouteSurge] {
        &self.route_surges
    }

    /// Every anomaly found by this loop, open and resolved.
    pub fn anomalies(&self) -> &[Anomaly] {
        self.core
            .as_ref()
            .map(|c| c.detector.anomalies())
            .unwrap_or(&[])
    }

    pub fn detector(&self) -> Option<&Detector> {
        self.core.as_ref().map(|c| &c.detector)
    }

    /// The bound live detection may read up to: the ingestion watermark minus the lateness.
    pub async fn live_bound(&self, pool: &PgPool) -> Result<Option<Timestamp>, DetectionError> {
        Ok(store::global_watermark(pool)
            .await?
            .map(|w| Timestamp::from_micros(w.micros() - micros(self.opts.lateness))))
    }

    /// Read and score every record before `bound`, one step of log time at a time, calling
    /// `progress` after each step.
    pub async fn run_until(
        &mut self,
        pool: &PgPool,
        bound: Timestamp,
        mut progress: impl FnMut(&DetectionStats),
    ) -> Result<(), DetectionError> {
        if self.read_until.is_none() {
            match store::oldest_batch_time(pool).await? {
                Some(t) => self.read_until = Some(t.minute_floor()),
                None => return Ok(()),
            }
        }
        let step = micros(self.opts.step).max(MICROS_PER_MINUTE);
        while let Some(from) = self.read_until {
            if from >= bound {
                break;
            }
            let to = Timestamp::from_micros(from.micros().saturating_add(step).min(bound.micros()));
            let records = store::read_records(pool, from, to).await?;
            self.process(pool, records, Some(to)).await?;
            self.read_until = Some(to);
            self.stats.read_until = Some(to);
            progress(&self.stats);
        }
        Ok(())
    }

    /// End of input (replay): score the minutes still open.
    pub async fn finish(&mut self, pool: &PgPool) -> Result<(), DetectionError> {
        self.process(pool, Vec::new(), None).await
    }

    async fn process(
        &mut self,
        pool: &PgPool,
        records: Vec<AccessRecord<'static>>,
        close_through: Option<Timestamp>,
    ) -> Result<(), DetectionError> {
        let mut core = self
            .core
            .take()
            .ok_or_else(|| DetectionError::Worker("an earlier step failed".into()))?;
        let step_started = std::time::Instant::now();
        let persist_from = self.persist_from;
        let n = records.len() as u64;
        let (core, processed) = tokio::task::spawn_blocking(move || {
            let p = step_blocking(&mut core, records, close_through, persist_from);
            (core, p)
        })
        .await
        .map_err(|e| DetectionError::Worker(e.to_string()))?;
        self.core = Some(core);
        self.stats.records += n;
        self.stats.minutes += processed.minutes;
        for s in &processed.route_surges {
            tracing::info!(route = %s.route, minute = %s.minute, observed = s.observed,
                expected = s.expected, "route surge");
        }
        self.route_surges.extend(processed.route_surges);
        if self.route_surges.len() > MAX_ROUTE_SURGES {
            let extra = self.route_surges.len() - MAX_ROUTE_SURGES;
            self.route_surges.drain(..extra);
        }

        store::write_features(pool, &processed.features).await?;
        self.stats.feature_rows += processed.features.len() as u64;
        for (r, artefact) in processed.retrained {
            self.register(pool, &r, artefact).await?;
        }
        self.write_anomalies(pool).await?;
        if let Some(last) = processed.last_minute {
            let scored_until = Timestamp::from_micros(last.micros() + MICROS_PER_MINUTE);
            if scored_until > self.persist_from {
                store::advance_cursor(pool, scored_until).await?;
            }
        }
        metrics::histogram!("sluice_detection_step_seconds").record(step_started.elapsed());
        metrics::counter!("sluice_detection_minutes_total").increment(processed.minutes);
        Ok(())
    }

    async fn register(
        &mut self,
        pool: &PgPool,
        r: &Retrained,
        artefact: serde_json::Value,
    ) -> Result<(), DetectionError> {
        let kind = format!("population-gmm-{}", r.group);
        let metrics = serde_json::json!({
            "rows": r.rows,
            "components": artefact["model"]["components"].as_array().map_or(0, Vec::len),
            "nll_median": artefact["model"]["nll_median"],
            "nll_q999": artefact["model"]["nll_q999"],
        });
        let entry = ModelEntry {
            kind: kind.clone(),
            trained_from: r.trained_from,
            trained_to: r.trained_to,
            features: population::FEATURE_NAMES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            config: artefact["config"].clone(),
            metrics,
            training_ms: r.training_ms,
        };
        let dir = self.opts.models_dir.clone();
        let path_of = |v: i32| {
            dir.as_ref().map(|d| {
                d.join(&kind)
                    .join(format!("v{v}.json"))
                    .display()
                    .to_string()
            })
        };
        let version = store::register_model(pool, &entry, path_of).await?;
        let path = path_of(version);
        if let Some(p) = &path {
            let body = serde_json::json!({
                "kind": kind,
                "version": version,
                "trained_from": r.trained_from.to_string(),
                "trained_to": r.trained_to.to_string(),
                "features": population::FEATURE_NAMES,
                "config": artefact["config"],
                "model": artefact["model"],
            });
            write_artefact(p, &body).await?;
        }
        metrics::gauge!("sluice_model_version", "kind" => kind.clone()).set(f64::from(version));
        metrics::histogram!("sluice_model_training_seconds", "kind" => kind.clone())
            .record(r.training_ms / 1000.0);
        self.model_versions[usize::from(r.kind == ClientKind::Ip)] = Some(version);
        self.stats.models_registered += 1;
        self.models.push(RegisteredModel {
            kind,
            version,
            rows: r.rows,
            training_ms: r.training_ms,
            artefact: path,
        });
        Ok(())
    }

    async fn write_anomalies(&mut self, pool: &PgPool) -> Result<(), DetectionError> {
        let Some(core) = self.core.as_ref() else {
            return Ok(());
        };
        let mut changed = Vec::new();
        for (i, a) in core.detector.anomalies().iter().enumerate() {
            if a.last_flagged < self.persist_from {
                continue;
            }
            let open = a.state == AnomalyState::Open;
            let now = Written {
                open,
                last_flagged: a.last_flagged,
                score_bits: a.score.to_bits(),
                members: a.members.len(),
                id: 0,
            };
            match self.written.get(&i) {
                Some(w) if Written { id: 0, ..*w } == now => {}
                _ => changed.push((i, now, to_row(a, self.model_versions))),
            }
        }
        for (i, mut w, row) in changed {
            let first_write = !self.written.contains_key(&i);
            w.id = store::upsert_anomaly(pool, &row).await?;
            if first_write && row.open {
                observe_detection_latency(&row);
            }
            self.written.insert(i, w);
            self.stats.anomalies_written += 1;
        }
        Ok(())
    }

    /// The database id of a detector anomaly, once written.
    pub fn anomaly_id(&self, index: usize) -> Option<i64> {
        self.written.get(&index).map(|w| w.id)
    }
}

/// Wall time from the end of the log minute an anomaly was first detected in to the moment it
/// was written (meaningful live; a replay of old logs lands in the histogram's `+Inf` bucket).
fn observe_detection_latency(row: &AnomalyRow) {
    let now = Timestamp::from_chrono(chrono::Utc::now());
    let seconds = (now.micros() - row.first_detected.micros()) as f64 / 1e6;
    metrics::counter!("sluice_anomalies_opened_total", "kind" => row.kind.clone()).increment(1);
    metrics::histogram!("sluice_detection_latency_seconds").record(seconds.max(0.0));
}

async fn write_artefact(path: &str, body: &serde_json::Value) -> Result<(), DetectionError> {
    let err = |source| DetectionError::Artefact {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = std::path::Path::new(path).parent() {
        tokio::fs::create_dir_all(dir).await.map_err(err)?;
    }
    let text = serde_json::to_vec_pretty(body).map_err(|e| err(e.into()))?;
    // Write then rename, so a reader never sees half an artefact.
    let tmp = format!("{path}.tmp");
    tokio::fs::write(&tmp, text).await.map_err(err)?;
    tokio::fs::rename(&tmp, path).await.map_err(err)?;
    Ok(())
}

fn step_blocking(
    core: &mut Core,
    records: Vec<AccessRecord<'static>>,
    close_through: Option<Timestamp>,
    persist_from: Timestamp,
) -> Processed {
    let mut closed = Vec::new();
    for rec in &records {
        closed.extend(core.aggregator.push(rec));
    }
    drop(records);
    closed.extend(match close_through {
        Some(t) => core.aggregator.close_through(t),
        None => core.aggregator.flush(),
    });
    let mut out = Processed {
        features: Vec::new(),
        retrained: Vec::new(),
        route_surges: Vec::new(),
        minutes: closed.len() as u64,
        last_minute: closed.last().map(|m| m.minute),
    };
    for m in closed {
        let t = m.minute.micros();
        let min_history = core.detector.config().min_history;
        let expected: Vec<Option<f32>> = m
            .rows
            .iter()
            .map(|r| {
                core.detector
                    .baseline(&r.client)
                    .filter(|b| b.active_minutes >= min_history)
                    .map(|b| (b.expected_log_rate(t).exp() - 1.0).max(0.0) as f32)
            })
            .collect();
        let outcome = core.detector.observe(m.minute, &m.rows);
        if m.minute >= persist_from {
            out.route_surges
                .extend(outcome.route_surges.iter().cloned());
        }
        for r in outcome.retrained {
            let model = core
                .detector
                .population_model(r.kind)
                .and_then(|m| serde_json::to_value(m).ok())
                .unwrap_or(serde_json::Value::Null);
            let config = serde_json::to_value(&core.detector.config().population)
                .unwrap_or(serde_json::Value::Null);
            out.retrained
                .push((r, serde_json::json!({"model": model, "config": config})));
        }
        if m.minute < persist_from {
            continue;
        }
        let mut flagged: HashMap<(ClientKind, &str), f32> = HashMap::new();
        let anomalies = core.detector.anomalies();
        for &i in &outcome.flagged {
            let a = &anomalies[i];
            if a.members.is_empty() {
                flagged.insert((a.client_kind, a.client.as_str()), a.score as f32);
            } else {
                for mem in &a.members {
                    flagged.insert((mem.kind, mem.value.as_str()), a.score as f32);
                }
            }
        }
        for (r, exp) in m.rows.iter().zip(expected) {
            let n = r.requests.max(1) as f32;
            let st = &r.status;
            let errors = st.client_errors() + st.s5xx;
            out.features.push(FeatureRow {
                client_kind: r.client.kind,
                client: r.client.value.to_string(),
                minute: m.minute,
                requests: clamp_i32(r.requests as usize),
                peak_10s: clamp_i32(r.peak_10s() as usize),
                distinct_routes: clamp_i32(r.distinct_routes()),
                distinct_paths: clamp_i32(r.distinct_paths()),
                distinct_ips: clamp_i32(r.ips.len()),
                distinct_uas: clamp_i32(r.user_agents.len()),
                route_entropy: r.route_entropy() as f32,
                error_share: errors as f32 / n,
                status_401: clamp_i32(st.s401 as usize),
                status_403: clamp_i32(st.s403 as usize),
                status_404: clamp_i32(st.s404 as usize),
                status_429: clamp_i32(st.s429 as usize),
                status_5xx: clamp_i32(st.s5xx as usize),
                bytes_sent: i64::try_from(r.bytes_sent).unwrap_or(i64::MAX),
                latency_mean_us: (r.latency_count > 0)
                    .then(|| (r.mean_latency_ms() * 1000.0) as f32),
                inter_arrival_cv: (r.gap_count >= 2).then(|| r.inter_arrival_cv() as f32),
                expected_requests: exp,
                score: flagged
                    .get(&(r.client.kind, r.client.value.as_ref()))
                    .copied(),
            });
        }
    }
    out
}

fn clamp_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn to_row(a: &Anomaly, versions: [Option<i32>; 2]) -> AnomalyRow {
    AnomalyRow {
        client_kind: a.client_kind,
        client: a.client.clone(),
        kind: a.kind.as_str().to_owned(),
        score: a.score as f32,
        first_detected: a.first_detected,
        last_flagged: a.last_flagged,
        open: a.state == AnomalyState::Open,
        reasons: serde_json::to_value(&a.reasons).unwrap_or(serde_json::Value::Null),
        campaign: a.campaign.clone(),
        members: a
            .identities()
            .into_iter()
            .map(|m| (m.kind, m.value))
            .collect(),
        member_count: a.members.len(),
        model_version: versions[usize::from(a.client_kind == ClientKind::Ip)].map(i64::from),
    }
}

/// Run detection behind live ingestion until the task is aborted: every `every`, score what was
/// committed up to the ingestion watermark minus the lateness. A failed step (the database gone
/// away, say) is logged and retried from the stored cursor on the next tick.
pub fn spawn_live(
    pool: PgPool,
    opts: DetectionOptions,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut dl: Option<DetectionLoop> = None;
        loop {
            tick.tick().await;
            if dl.is_none() {
                match DetectionLoop::resume(&pool, opts.clone()).await {
                    Ok(l) => dl = Some(l),
                    Err(e) => {
                        tracing::warn!(error = %e, "detection could not start; retrying");
                        continue;
                    }
                }
            }
            let Some(l) = dl.as_mut() else { continue };
            let res = async {
                let Some(bound) = l.live_bound(&pool).await? else {
                    return Ok(());
                };
                let before = l.stats().clone();
                l.run_until(&pool, bound, |_| {}).await?;
                let after = l.stats();
                if after.minutes > before.minutes {
                    tracing::debug!(
                        minutes = after.minutes - before.minutes,
                        records = after.records - before.records,
                        anomalies_written = after.anomalies_written - before.anomalies_written,
                        read_until = ?after.read_until.map(|t| t.to_string()),
                        "detection step"
                    );
                }
                Ok::<_, DetectionError>(())
            }
            .await;
            if let Err(e) = res {
                tracing::warn!(error = %e, "detection step failed; resuming from the stored cursor");
                dl = None;
            }
        }
    })
}
