//! Prometheus metrics: `GET /metrics` in the text exposition format, the process-wide recorder
//! behind the `metrics` facade (so the engine and the handlers record without a handle passed
//! around), and the collector task that refreshes the gauges read from the database.
//!
//! Every metric is listed with its type and labels in `docs/metrics.md`; the alerting rules in
//! `dashboards/alerts.yml` and the Grafana dashboards query exactly these names.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sluice_core::Role;
use sluice_store::metrics::{read_gauges, DbGauges};

use crate::auth::Principal;
use crate::error::ApiResult;
use crate::AppState;

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Buckets of every `_seconds` histogram: 1 ms to 1 hour.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0, 1800.0, 3600.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use. If another recorder was
/// installed first (an embedding program), `/metrics` still answers but shows only what this
/// handle records (nothing), and a warning says so.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .expect("static buckets are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed: /metrics shows nothing");
        }
        describe();
        handle
    })
}

/// HELP texts, and the metrics without labels set to zero so they exist from the start (alert
/// rules and dashboards can rely on their presence).
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "sluice_ingest_lines_accepted_total",
        "Log lines stored by POST /v1/logs, per format and source"
    );
    describe_counter!(
        "sluice_ingest_lines_rejected_total",
        "Log lines POST /v1/logs could not parse, per format and source"
    );
    describe_counter!(
        "sluice_ingest_batches_total",
        "Batches shipped to POST /v1/logs by outcome (committed, duplicate, queue_full, error)"
    );
    describe_counter!(
        "sluice_ingested_requests_total",
        "Requests in the stored access logs per source and status class (2xx, 3xx, 401, 403, 404, 429, 4xx, 5xx, other)"
    );
    describe_gauge!(
        "sluice_ingest_queue_depth",
        "Batches waiting for an ingest writer"
    );
    describe_gauge!(
        "sluice_ingest_queue_capacity",
        "Batches that may wait before POST /v1/logs answers 429"
    );
    describe_histogram!(
        "sluice_ingest_batch_seconds",
        Unit::Seconds,
        "Time from queueing a batch to its commit (queue wait plus write)"
    );
    describe_histogram!(
        "sluice_detection_step_seconds",
        Unit::Seconds,
        "Wall time of one detection step (read, score, write)"
    );
    describe_histogram!(
        "sluice_detection_latency_seconds",
        Unit::Seconds,
        "From the end of the log minute an anomaly was detected in to the anomaly being written"
    );
    describe_counter!(
        "sluice_detection_minutes_total",
        "Log minutes scored by detection"
    );
    describe_counter!(
        "sluice_anomalies_opened_total",
        "Anomalies written for the first time, per kind"
    );
    describe_gauge!("sluice_anomalies_open", "Open anomalies per kind");
    describe_gauge!(
        "sluice_anomalies_open_high_severity",
        "Open anomalies with score >= 0.8 per kind"
    );
    describe_gauge!("sluice_model_version", "Newest model version per kind");
    describe_histogram!(
        "sluice_model_training_seconds",
        Unit::Seconds,
        "Training time of a detection model, per kind"
    );
    describe_histogram!(
        "sluice_forecast_fit_seconds",
        Unit::Seconds,
        "Wall time of one forecast refit (every series)"
    );
    describe_gauge!(
        "sluice_forecast_mape",
        "Mean absolute percentage error (fraction) of the forecasts of the last evaluated hour, per route (* is the total)"
    );
    describe_gauge!(
        "sluice_forecast_smape",
        "Symmetric MAPE (fraction, 0 to 2) of the forecasts of the last evaluated hour, per route"
    );
    describe_gauge!("sluice_suggestions", "Limit suggestions per state");
    describe_gauge!(
        "sluice_suggestion_oldest_pending_seconds",
        "Wall-clock age of the oldest suggestion waiting for approval (0 when none waits)"
    );
    describe_gauge!(
        "sluice_policy_version",
        "Policy version served per rollout group (* is every gateway without a pin)"
    );
    describe_gauge!(
        "sluice_policy_latest_version",
        "Newest published policy version"
    );
    describe_counter!(
        "sluice_policy_publishes_total",
        "Policy versions created or promoted through this server, per action"
    );
    describe_counter!("sluice_policy_polls_total", "GET /v1/policy requests");
    describe_counter!(
        "sluice_policy_not_modified_total",
        "GET /v1/policy answered 304 Not Modified"
    );
    describe_gauge!(
        "sluice_policy_long_poll_waiters",
        "Long polls of GET /v1/policy waiting now"
    );
    describe_gauge!(
        "sluice_gateway_applied_version",
        "Policy version a gateway reported as applied (-1: none yet)"
    );
    describe_gauge!(
        "sluice_gateway_versions_behind",
        "Versions a gateway is behind what its group is served"
    );
    describe_gauge!(
        "sluice_gateway_report_age_seconds",
        "Seconds since a gateway last reported"
    );
    describe_counter!(
        "sluice_metrics_collect_errors_total",
        "Failed reads of the database gauges"
    );
    describe_gauge!(
        "sluice_metrics_collected_timestamp_seconds",
        "Unix time of the last successful read of the database gauges"
    );
    for name in [
        "sluice_policy_polls_total",
        "sluice_policy_not_modified_total",
        "sluice_detection_minutes_total",
        "sluice_metrics_collect_errors_total",
    ] {
        metrics::counter!(name).absolute(0);
    }
    metrics::gauge!("sluice_policy_long_poll_waiters").set(0.0);
}

/// `GET /metrics`. Needs an analyst or admin token unless the server was started with
/// `--metrics-public` (then the route is outside authentication and no principal is present).
pub async fn get_metrics(
    State(state): State<Arc<AppState>>,
    who: Option<Extension<Principal>>,
) -> ApiResult<Response> {
    if let Some(Extension(p)) = &who {
        p.require(Role::Analyst, "read metrics")?;
    }
    let capacity = state.config.queue_capacity.max(1);
    let free = state.ingest_queue.capacity();
    metrics::gauge!("sluice_ingest_queue_capacity").set(capacity as f64);
    metrics::gauge!("sluice_ingest_queue_depth").set(capacity.saturating_sub(free) as f64);
    let body = handle().render();
    let mut res = body.into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(res)
}

/// Label sets set by the previous refresh, per metric: a label set that disappeared (no more
/// open anomalies of a kind, a gateway removed) is set to 0 rather than left at its last value.
#[derive(Debug, Default)]
pub struct Collector {
    seen: hashbrown::HashMap<&'static str, BTreeSet<Vec<(&'static str, String)>>>,
}

impl Collector {
    fn family(&mut self, name: &'static str, rows: Vec<(Vec<(&'static str, String)>, f64)>) {
        let now: BTreeSet<_> = rows.iter().map(|(l, _)| l.clone()).collect();
        let prev = self.seen.insert(name, now.clone()).unwrap_or_default();
        for gone in prev.difference(&now) {
            metrics::gauge!(name, labels(gone)).set(0.0);
        }
        for (l, v) in rows {
            metrics::gauge!(name, labels(&l)).set(v);
        }
    }

    /// Set every database gauge from one snapshot.
    pub fn apply(&mut self, g: &DbGauges) {
        let by = |key: &'static str, rows: &[(String, i64)]| {
            rows.iter()
                .map(|(k, n)| (vec![(key, k.clone())], *n as f64))
                .collect::<Vec<_>>()
        };
        self.family("sluice_anomalies_open", by("kind", &g.open_anomalies));
        self.family(
            "sluice_anomalies_open_high_severity",
            by("kind", &g.open_high_severity),
        );
        self.family("sluice_suggestions", by("state", &g.suggestions));
        metrics::gauge!("sluice_suggestion_oldest_pending_seconds")
            .set(g.oldest_pending_suggestion_seconds);
        self.family("sluice_policy_version", by("group", &g.policy_rollout));
        metrics::gauge!("sluice_policy_latest_version").set(g.policy_latest as f64);
        self.family("sluice_model_version", by("kind", &g.model_versions));
        let gw = |f: fn(&sluice_store::metrics::GatewayGauge) -> f64| {
            g.gateways
                .iter()
                .map(|x| {
                    (
                        vec![("gateway", x.gateway.clone()), ("group", x.group.clone())],
                        f(x),
                    )
                })
                .collect::<Vec<_>>()
        };
        self.family(
            "sluice_gateway_applied_version",
            gw(|x| x.applied_version as f64),
        );
        self.family("sluice_gateway_versions_behind", gw(|x| x.behind as f64));
        self.family(
            "sluice_gateway_report_age_seconds",
            gw(|x| x.seconds_since_report),
        );
        let fc = |f: fn(&sluice_store::metrics::ForecastError) -> f64| {
            g.forecast_error
                .iter()
                .map(|x| (vec![("route", x.route.clone())], f(x)))
                .collect::<Vec<_>>()
        };
        self.family("sluice_forecast_mape", fc(|x| x.mape));
        self.family("sluice_forecast_smape", fc(|x| x.smape));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        metrics::gauge!("sluice_metrics_collected_timestamp_seconds").set(now);
    }

    /// Read the database gauges once and set them. A failure is counted and logged; the gauges
    /// keep their last values.
    pub async fn refresh(&mut self, pool: &sqlx::PgPool) -> bool {
        handle();
        match read_gauges(pool).await {
            Ok(g) => {
                self.apply(&g);
                true
            }
            Err(e) => {
                metrics::counter!("sluice_metrics_collect_errors_total").increment(1);
                tracing::warn!(error = %e, "reading the metrics gauges failed");
                false
            }
        }
    }
}

fn labels(l: &[(&'static str, String)]) -> Vec<metrics::Label> {
    l.iter()
        .map(|(k, v)| metrics::Label::new(*k, v.clone()))
        .collect()
}

/// Refresh the database gauges every `every` (first at once) until the task is aborted.
pub fn spawn_collector(pool: sqlx::PgPool, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut collector = Collector::default();
        let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            collector.refresh(&pool).await;
            handle().run_upkeep();
        }
    })
}

/// Decrements `sluice_policy_long_poll_waiters` when a long poll ends, however it ends.
#[derive(Debug)]
pub(crate) struct WaiterGuard;

impl WaiterGuard {
    pub(crate) fn enter() -> WaiterGuard {
        metrics::gauge!("sluice_policy_long_poll_waiters").increment(1.0);
        WaiterGuard
    }
}

impl Drop for WaiterGuard {
    fn drop(&mut self) {
        metrics::gauge!("sluice_policy_long_poll_waiters").decrement(1.0);
    }
}
