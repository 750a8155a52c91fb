//! `sluice replay`: ingest log files, run detection through them in log time (the same loop
//! `sluice serve` runs), then forecasting, client profiles and the tuning step (reputation and
//! limit suggestions), and write a JSON report with the policy every suggestion would give.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use sluice_core::Timestamp;
use sluice_engine::detection::{DetectionLoop, DetectionOptions, DetectionStats, RegisteredModel};
use sluice_engine::forecast::{FactorRecord, ForecastLoop, ForecastStats};
use sluice_engine::profiles::{refresh_profiles, ProfileRefresh};
use sluice_engine::tuning::{policy_with_pending, tune_step, SuggestionSummary, TuneReport};
use sluice_ml::detect::{Anomaly, AnomalyState, Reason, RouteSurge};
use sluice_store::ingest::IngestWriter;

use super::ingest::{format_choice, ingest_inputs, Report as IngestReport};
use super::{enrichment, open_db};
use crate::cli::{GlobalArgs, ReplayArgs};

#[derive(serde::Serialize)]
struct Lines {
    read: u64,
    accepted: u64,
    rejected: u64,
}

#[derive(serde::Serialize)]
struct Member {
    client: String,
    client_kind: String,
}

#[derive(serde::Serialize)]
struct ReportAnomaly<'a> {
    /// Id in the database (`GET /v1/anomalies/{id}`).
    id: Option<i64>,
    client: &'a str,
    client_kind: &'static str,
    kind: &'static str,
    first_detected: String,
    last_flagged: String,
    score: f64,
    state: &'static str,
    reasons: &'a [Reason],
    #[serde(skip_serializing_if = "Option::is_none")]
    campaign: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    members: Vec<Member>,
}

#[derive(serde::Serialize)]
struct Detection<'a> {
    log_time_from: Option<String>,
    log_time_to: Option<String>,
    seconds: f64,
    #[serde(flatten)]
    stats: &'a DetectionStats,
}

#[derive(serde::Serialize)]
struct Report<'a> {
    lines: Lines,
    anomalies: Vec<ReportAnomaly<'a>>,
    anomalies_by_kind: BTreeMap<&'static str, usize>,
    /// Minutes in which one route's traffic rose far above that route's own baseline.
    route_surges: &'a [RouteSurge],
    detection: Detection<'a>,
    models: &'a [RegisteredModel],
    forecasts: Option<Forecasts<'a>>,
    /// Client profiles written at the end (`client_profiles`, `GET /v1/clients/{client}`).
    profiles: Option<&'a ProfileRefresh>,
    /// Limits suggested by the tuning step through the end of the logs (stored as pending
    /// suggestions), each with its reason, confidence and backtest.
    suggestions: &'a [SuggestionSummary],
    /// The tuning step in short (reputation fold, what was not suggested and why).
    tuning: Option<TuningSummary<'a>>,
    /// The policy (`sluice.policy/v1`) that would be served if every pending suggestion were
    /// approved; validated, published only with `--publish`.
    policy: Option<serde_json::Value>,
    ingest: &'a IngestReport,
    seconds: f64,
}

#[derive(serde::Serialize)]
struct TuningSummary<'a> {
    seconds: f64,
    through: &'a str,
    clients_folded: usize,
    reputation_events: usize,
    clients_considered: usize,
    /// Suggestions not stored: no material change from the rule in force or the pending one.
    unchanged: usize,
    /// Clients left to their tier's default limit (too little history, not abusive).
    tier_default: usize,
    fair_share: &'a Option<sluice_engine::tuning::FairShareSummary>,
    cost_weights: &'a [sluice_core::tuning::RouteCost],
    /// The version `--publish` created.
    published_version: Option<i64>,
}

/// Backtest error of one series: the mean over its refits of the chosen model's MASE and of
/// seasonal naive's on the same origins, and the latest fit.
#[derive(serde::Serialize)]
struct SeriesForecast {
    route: String,
    refits: usize,
    mase: f64,
    smape: f64,
    seasonal_naive_mase: f64,
    /// mase / seasonal_naive_mase: below 1 beats seasonal naive.
    relative_mase: f64,
    latest_model: String,
    latest_season_minutes: usize,
    excluded_requests: f64,
}

#[derive(serde::Serialize)]
struct Forecasts<'a> {
    seconds: f64,
    #[serde(flatten)]
    stats: &'a ForecastStats,
    /// The total over all routes is the series named `*`.
    series: Vec<SeriesForecast>,
    /// Capacity factors of routes with a capacity: the first value and every change.
    capacity_factors: &'a [FactorRecord],
}

fn summarise(fl: &ForecastLoop) -> Vec<SeriesForecast> {
    let mut by_route: BTreeMap<&str, Vec<&sluice_engine::forecast::FitRecord>> = BTreeMap::new();
    for f in fl.fits() {
        by_route.entry(f.route.as_str()).or_default().push(f);
    }
    let mut out: Vec<SeriesForecast> = by_route
        .into_iter()
        .map(|(route, fits)| {
            let n = fits.len() as f64;
            let mean = |g: fn(&sluice_engine::forecast::FitRecord) -> f64| {
                fits.iter().map(|f| g(f)).sum::<f64>() / n
            };
            let mase = mean(|f| f.mase);
            let sn = mean(|f| f.seasonal_naive_mase);
            let last = fits[fits.len() - 1];
            SeriesForecast {
                route: route.to_owned(),
                refits: fits.len(),
                mase: round3(mase),
                smape: round3(mean(|f| f.smape)),
                seasonal_naive_mase: round3(sn),
                relative_mase: round3(if sn > 0.0 { mase / sn } else { f64::NAN }),
                latest_model: last.model.clone(),
                latest_season_minutes: last.season_minutes,
                excluded_requests: fits.iter().map(|f| f.excluded_requests).sum(),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        (b.route == "*")
            .cmp(&(a.route == "*"))
            .then(a.route.cmp(&b.route))
    });
    out
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

pub async fn run(g: &GlobalArgs, args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let format = format_choice(&args.input)?;
    enrichment(&args.input.enrich)?;
    let settings = args.tuning.settings()?;
    if let Some(dir) = args.report.parent().filter(|d| !d.as_os_str().is_empty()) {
        anyhow::ensure!(
            dir.is_dir(),
            "cannot write the report to {}: {} is not a directory",
            args.report.display(),
            dir.display()
        );
    }
    let started = std::time::Instant::now();
    let db = open_db(g).await?;
    let writer = Arc::new(IngestWriter::new(db.pool().clone()));
    let terminal = std::io::stderr().is_terminal();
    let (ingest, failure) = ingest_inputs(&writer, &args.input, &format, terminal).await;
    if let Some(e) = failure {
        db.close().await;
        return Err(e);
    }
    eprintln!(
        "ingested {} lines ({} accepted, {} rejected) in {:.1} s",
        ingest.read, ingest.accepted, ingest.rejected, ingest.seconds
    );

    let sources: Vec<String> = ingest.files.iter().map(|f| f.source.clone()).collect();
    let bounds = sluice_store::detection::batch_bounds(db.pool(), &sources)
        .await
        .context("failed to read the log-time span of the ingested files")?;
    let mut opts = DetectionOptions {
        models_dir: Some(
            args.models_dir
                .clone()
                .unwrap_or_else(|| g.data_dir.join("models")),
        ),
        ..DetectionOptions::default()
    };
    opts.detector.warmup_minutes = args.warmup_minutes;
    let detect_started = std::time::Instant::now();
    let mut detection = None;
    if let Some((from, to)) = bounds {
        let mut dl = DetectionLoop::starting_at(opts, from);
        let bar = terminal.then(|| {
            let bar = indicatif::ProgressBar::new(minutes_between(from, to));
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} detection [{bar:30}] {pos}/{len} log minutes {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        let end = Timestamp::from_micros(to.micros() + 1);
        let res = dl
            .run_until(db.pool(), end, |s| {
                if let Some(b) = &bar {
                    if let Some(r) = s.read_until {
                        b.set_position(minutes_between(from, r));
                    }
                    b.set_message(format!("{} records", s.records));
                }
            })
            .await;
        let res = match res {
            Ok(()) => dl.finish(db.pool()).await,
            Err(e) => Err(e),
        };
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        if let Err(e) = res {
            db.close().await;
            return Err(anyhow::Error::new(e).context("detection failed"));
        }
        detection = Some((dl, from, to));
    }
    let detect_seconds = detect_started.elapsed().as_secs_f64();

    // Forecasting walks the same log time behind detection (it only reads minutes detection
    // has scored, so the exclusion of flagged clients is what detection knew by then).
    let forecast_started = std::time::Instant::now();
    let mut forecasting = None;
    if let Some((_, from, to)) = &detection {
        let mut fl = ForecastLoop::starting_at(args.forecast.options(), *from);
        let end = Timestamp::from_micros(to.micros() + sluice_core::time::MICROS_PER_MINUTE);
        let bound = match sluice_store::detection::cursor(db.pool()).await {
            Ok(c) => c.map_or(end, |c| c.min(end)),
            Err(e) => {
                db.close().await;
                return Err(anyhow::Error::new(e).context("failed to read the detection cursor"));
            }
        };
        if let Err(e) = fl.run_until(db.pool(), bound).await {
            db.close().await;
            return Err(anyhow::Error::new(e).context("forecasting failed"));
        }
        forecasting = Some(fl);
    }
    let forecast_seconds = forecast_started.elapsed().as_secs_f64();

    // Client profiles over the replayed span (bounded by the history window), up to the cursor.
    let mut profiles = None;
    if detection.is_some() {
        let cursor = match sluice_store::detection::cursor(db.pool()).await {
            Ok(c) => c,
            Err(e) => {
                db.close().await;
                return Err(anyhow::Error::new(e).context("failed to read the detection cursor"));
            }
        };
        if let Some(until) = cursor {
            match refresh_profiles(db.pool(), until, &args.profiles.options()).await {
                Ok(r) => profiles = r,
                Err(e) => {
                    db.close().await;
                    return Err(anyhow::Error::new(e).context("profile extraction failed"));
                }
            }
        }
    }

    // Tuning through the end of the logs (the detection cursor), then the policy it proposes.
    let tune_started = std::time::Instant::now();
    let mut tuned: Option<(TuneReport, sluice_core::policy::Policy, Option<i64>)> = None;
    if detection.is_some() {
        let res = async {
            let Some(until) = sluice_store::detection::cursor(db.pool())
                .await
                .context("failed to read the detection cursor")?
            else {
                return Ok(None);
            };
            let r = tune_step(db.pool(), &settings, until)
                .await
                .context("tuning failed")?;
            let policy = policy_with_pending(db.pool())
                .await
                .context("the proposed policy is invalid")?;
            let mut published = None;
            if args.publish {
                let info = sluice_store::policy::publish(
                    db.pool(),
                    &policy,
                    &sluice_store::policy::Publish {
                        actor: "sluice:replay",
                        comment: Some("every suggestion of the replay approved (--publish)"),
                        group: None,
                    },
                )
                .await
                .context("failed to publish the proposed policy")?;
                published = Some(info.version);
            }
            Ok::<_, anyhow::Error>(Some((r, policy, published)))
        }
        .await;
        match res {
            Ok(t) => tuned = t,
            Err(e) => {
                db.close().await;
                return Err(e);
            }
        }
    }
    let tune_seconds = tune_started.elapsed().as_secs_f64();
    db.close().await;

    let empty = DetectionStats::default();
    let surges = detection
        .as_ref()
        .map_or(&[][..], |(dl, _, _)| dl.route_surges());
    let (anomalies, stats, models, span) = match &detection {
        Some((dl, from, to)) => (
            dl.anomalies()
                .iter()
                .enumerate()
                .map(|(i, a)| report_anomaly(a, dl.anomaly_id(i)))
                .collect::<Vec<_>>(),
            dl.stats(),
            dl.models(),
            Some((*from, *to)),
        ),
        None => (Vec::new(), &empty, &[][..], None),
    };
    let mut by_kind = BTreeMap::new();
    for a in &anomalies {
        *by_kind.entry(a.kind).or_insert(0) += 1;
    }
    let report = Report {
        lines: Lines {
            read: ingest.read,
            accepted: ingest.accepted,
            rejected: ingest.rejected,
        },
        anomalies,
        anomalies_by_kind: by_kind,
        route_surges: surges,
        detection: Detection {
            log_time_from: span.map(|s| s.0.to_string()),
            log_time_to: span.map(|s| s.1.to_string()),
            seconds: detect_seconds,
            stats,
        },
        models,
        forecasts: forecasting.as_ref().map(|fl| Forecasts {
            seconds: forecast_seconds,
            stats: fl.stats(),
            series: summarise(fl),
            capacity_factors: fl.factor_changes(),
        }),
        profiles: profiles.as_ref(),
        suggestions: tuned.as_ref().map_or(&[][..], |(r, _, _)| &r.suggestions),
        tuning: tuned.as_ref().map(|(r, _, published)| TuningSummary {
            seconds: tune_seconds,
            through: &r.through,
            clients_folded: r.clients_folded,
            reputation_events: r.reputation_events,
            clients_considered: r.clients_considered,
            unchanged: r.unchanged,
            tier_default: r.tier_default,
            fair_share: &r.fair_share,
            cost_weights: &r.cost_weights,
            published_version: *published,
        }),
        policy: match &tuned {
            Some((_, p, _)) => Some(serde_json::from_slice(&p.to_json(None))?),
            None => None,
        },
        ingest: &ingest,
        seconds: started.elapsed().as_secs_f64(),
    };
    let text = serde_json::to_string_pretty(&report)?;
    std::fs::write(&args.report, format!("{text}\n"))
        .with_context(|| format!("failed to write the report to {}", args.report.display()))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }

    let kinds: Vec<String> = report
        .anomalies_by_kind
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    match span {
        Some((from, to)) => eprintln!(
            "replayed {} records over {} .. {} ({} log minutes) in {:.1} s ({:.1} s detection): \
             {} anomalies{}; {} models registered; {} client profiles; {} limit suggestions{}; report: {}",
            stats.records,
            from,
            to,
            stats.minutes,
            report.seconds,
            detect_seconds,
            report.anomalies.len(),
            if kinds.is_empty() {
                String::new()
            } else {
                format!(" ({})", kinds.join(", "))
            },
            stats.models_registered,
            profiles.as_ref().map_or(0, |p| p.profiles),
            report.suggestions.len(),
            match tuned.as_ref().and_then(|t| t.2) {
                Some(v) => format!(" (published as policy version {v})"),
                None => String::new(),
            },
            args.report.display()
        ),
        None => eprintln!(
            "no records were accepted, so there was nothing to replay; report: {}",
            args.report.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn minutes_between(from: Timestamp, to: Timestamp) -> u64 {
    u64::try_from((to.micros() - from.micros()) / sluice_core::time::MICROS_PER_MINUTE).unwrap_or(0)
}

fn report_anomaly(a: &Anomaly, id: Option<i64>) -> ReportAnomaly<'_> {
    ReportAnomaly {
        id,
        client: &a.client,
        client_kind: a.client_kind.as_str(),
        kind: a.kind.as_str(),
        first_detected: a.first_detected.to_string(),
        last_flagged: a.last_flagged.to_string(),
        score: (a.score * 1000.0).round() / 1000.0,
        state: match a.state {
            AnomalyState::Open => "open",
            AnomalyState::Resolved => "resolved",
        },
        reasons: &a.reasons,
        campaign: a.campaign.as_deref(),
        members: a
            .members
            .iter()
            .map(|m| Member {
                client: m.value.clone(),
                client_kind: m.kind.as_str().to_owned(),
            })
            .collect(),
    }
}
