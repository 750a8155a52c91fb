//! `sluice sim`: labelled synthetic access logs from `sluice-sim`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::process::ExitCode;

use anyhow::{bail, Context};
use sluice_core::Timestamp;
use sluice_sim::{
    parse_duration_secs, write_logs, AttackClass, AttackSpec, FlashCrowdSpec, SimConfig, SimFormat,
};

use crate::cli::SimArgs;

pub fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    let format: SimFormat = args.format.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    if args.print_log_format {
        let (f, lf) = format.ingest_flags();
        match lf {
            Some(lf) => println!("--format {f} --log-format '{lf}'"),
            None => println!("--format {f}"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let duration = parse_duration_secs(&args.duration)
        .map_err(|e| anyhow::anyhow!("invalid --duration: {e}"))?;
    let start = chrono::DateTime::parse_from_rfc3339(&args.start).with_context(|| {
        format!(
            "invalid --start {:?} (expected RFC 3339, e.g. 2026-03-02T00:00:00Z)",
            args.start
        )
    })?;
    let mut cfg = SimConfig::for_duration(args.seed, duration);
    cfg.start = Timestamp::from_chrono(start.with_timezone(&chrono::Utc));
    cfg.legit_clients = args.clients;
    cfg.browsers = args.browsers;
    cfg.batch_jobs = args.batch_jobs;
    cfg.target_lines = (args.lines > 0).then_some(args.lines);
    cfg.attacks = match args.attacks.trim() {
        "all" => AttackSpec::default_schedule(duration),
        "none" | "" => Vec::new(),
        list => {
            let wanted: Vec<AttackClass> = list
                .split(',')
                .map(|c| {
                    c.trim()
                        .parse()
                        .map_err(|e| anyhow::anyhow!("invalid --attacks: {e}"))
                })
                .collect::<anyhow::Result<_>>()?;
            AttackSpec::default_schedule(duration)
                .into_iter()
                .filter(|a| wanted.contains(&a.class))
                .collect()
        }
    };
    cfg.flash_crowd = (!args.no_flash_crowd).then(|| FlashCrowdSpec::default_for(duration));
    cfg.validate().map_err(|e| anyhow::anyhow!("{e}"))?;

    let to_stdout = args.output.as_os_str() == "-";
    let labels_path = match (&args.labels, to_stdout) {
        (Some(p), _) => Some(p.clone()),
        (None, false) => Some(args.output.with_extension("labels.json")),
        (None, true) => None,
    };
    let out: Box<dyn Write> = if to_stdout {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(
            File::create(&args.output)
                .with_context(|| format!("failed to create {}", args.output.display()))?,
        )
    };
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let started = std::time::Instant::now();
    let labels = write_logs(&cfg, format, &mut out).context("failed to write logs")?;
    out.flush()?;
    if let Some(p) = &labels_path {
        std::fs::write(p, labels.to_json())
            .with_context(|| format!("failed to write {}", p.display()))?;
    }
    if labels.identities.is_empty() {
        bail!("the simulation produced no traffic; raise --clients, --browsers or --duration");
    }
    let (f, lf) = format.ingest_flags();
    eprintln!(
        "simulated {} identities and {} attacks in {:.1} s{}; ingest with: sluice ingest --format {f}{}",
        labels.identities.len(),
        labels.attacks.len(),
        started.elapsed().as_secs_f64(),
        labels_path.map(|p| format!(", labels in {}", p.display())).unwrap_or_default(),
        lf.map(|l| format!(" --log-format '{l}'")).unwrap_or_default(),
    );
    Ok(ExitCode::SUCCESS)
}
