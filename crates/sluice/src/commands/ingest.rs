//! `sluice ingest`: files or stdin into the database, with progress and a summary.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use sluice_engine::ingest::{ingest_stream, input_for, FormatChoice, IngestSummary, StreamConfig};
use sluice_store::ingest::IngestWriter;

use super::{enrichment, open_db};
use crate::cli::{GlobalArgs, IngestArgs, InputArgs};

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Report {
    pub read: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub duplicate_batches: u64,
    pub duplicate_lines: u64,
    pub seconds: f64,
    pub lines_per_second: f64,
    pub files: Vec<IngestSummary>,
}

/// Validate the format flags before anything touches the database.
pub fn format_choice(args: &InputArgs) -> anyhow::Result<FormatChoice> {
    let name = args
        .format
        .parse()
        .map_err(|e: sluice_logs::UnknownFormat| anyhow::anyhow!("{e}"))?;
    let format = FormatChoice {
        name,
        log_format: args.log_format.clone(),
    };
    format.spec().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(format)
}

/// Ingest every path in turn, with a progress bar on a terminal. Stops at the first file that
/// fails (what was committed before stays committed).
pub async fn ingest_inputs(
    writer: &Arc<IngestWriter>,
    args: &InputArgs,
    format: &FormatChoice,
    show_progress: bool,
) -> (Report, Option<anyhow::Error>) {
    let started = std::time::Instant::now();
    let mut report = Report::default();
    let enrich = match enrichment(&args.enrich) {
        Ok(e) => e,
        Err(e) => return (report, Some(e)),
    };
    let mut failure = None;
    for path in &args.paths {
        let input = input_for(path);
        let cfg = StreamConfig {
            format: format.clone(),
            enrich: enrich.clone(),
            source: args.source.clone(),
            batch_lines: args.batch_lines,
            ..StreamConfig::default()
        };
        let bar = show_progress.then(|| {
            let total = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {prefix} [{bar:30}] {bytes}/{total_bytes} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_prefix(input.describe());
            bar
        });
        let progress_bar = bar.clone();
        let res = ingest_stream(writer.clone(), input.clone(), cfg, move |p| {
            if let Some(b) = &progress_bar {
                b.set_position(p.bytes_read);
                b.set_message(format!(
                    "{} lines, {} rejected",
                    p.counts.read, p.counts.rejected
                ));
            }
        })
        .await;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        match res {
            Ok(s) => {
                if let Some(d) = &s.detection {
                    eprintln!("{}: {d}", input.describe());
                }
                report.read += s.read;
                report.accepted += s.accepted;
                report.rejected += s.rejected;
                report.duplicate_batches += s.duplicate_batches;
                report.duplicate_lines += s.duplicate_lines;
                report.files.push(s);
            }
            Err(e) => {
                failure = Some(
                    anyhow::Error::new(e).context(format!("failed to ingest {}", input.describe())),
                );
                break;
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.lines_per_second = if report.seconds > 0.0 {
        report.read as f64 / report.seconds
    } else {
        0.0
    };
    (report, failure)
}

pub async fn run(g: &GlobalArgs, args: IngestArgs) -> anyhow::Result<ExitCode> {
    let format = format_choice(&args.input)?; // validate before touching the database
    enrichment(&args.input.enrich)?;
    let db = open_db(g).await?;
    let writer = Arc::new(IngestWriter::new(db.pool().clone()));
    let show_progress = !args.json && std::io::stderr().is_terminal();
    let (report, failure) = ingest_inputs(&writer, &args.input, &format, show_progress).await;
    if failure.is_none()
        && (args.retention.retention_days > 0 || args.retention.rollup_retention_days > 0)
    {
        let raw = if args.retention.retention_days == 0 {
            u32::MAX / 2
        } else {
            args.retention.retention_days
        };
        let rollup = if args.retention.rollup_retention_days == 0 {
            u32::MAX / 2
        } else {
            args.retention.rollup_retention_days
        };
        let dropped = writer
            .apply_retention(raw, rollup)
            .await
            .context("failed to apply retention")?;
        if !dropped.is_empty() {
            tracing::info!(?dropped, "retention dropped partitions");
        }
    }
    db.close().await;
    if let Some(e) = failure {
        return Err(e);
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        eprintln!(
            "read {} lines: {} accepted, {} rejected in {:.2} s ({:.0} lines/s){}",
            report.read,
            report.accepted,
            report.rejected,
            report.seconds,
            report.lines_per_second,
            if report.duplicate_batches > 0 {
                format!(
                    "; {} batches ({} lines) were already ingested and skipped",
                    report.duplicate_batches, report.duplicate_lines
                )
            } else {
                String::new()
            }
        );
        if report.rejected > 0 {
            eprintln!("list the rejected lines and their reasons with `sluice rejects`");
        }
    }
    Ok(ExitCode::SUCCESS)
}
