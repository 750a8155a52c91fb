//! `sluice demo`: the closed loop on a fresh database (see `sluice_demo`).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sluice_demo::run::{render_report, DemoConfig};
use sluice_store::Database;

use super::database_config;
use crate::cli::{DemoArgs, GlobalArgs};

pub async fn run(g: &GlobalArgs, args: DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.duration > 0, "--duration must be at least 1 second");
    anyhow::ensure!(
        args.time_scale.is_finite() && args.time_scale > 0.0,
        "--time-scale must be a positive number, not {}",
        args.time_scale
    );
    anyhow::ensure!(args.clients > 0, "--clients must be at least 1");
    anyhow::ensure!(
        args.history_hours >= 1.0,
        "--history-hours must be at least 1 (detection learns for 30 log minutes first)"
    );
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S").to_string();
    let work_dir = g.data_dir.join(format!("demo-{stamp}"));
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("failed to create {}", work_dir.display()))?;
    let mut dbc = database_config(g);
    dbc.data_dir = work_dir.clone();
    let db_name = format!("sluice_demo_{}", stamp.replace('-', "_"));
    let db = Database::open_fresh(&dbc, &db_name)
        .await
        .context("failed to open the demo's database")?;
    db.migrate()
        .await
        .context("failed to migrate the demo's database")?;
    eprintln!("demo database: {}", db.description());

    let json = args.json;
    let print: sluice_demo::run::Printer = if json {
        Arc::new(|l: &str| eprintln!("{l}"))
    } else {
        Arc::new(|l: &str| println!("{l}"))
    };
    let cfg = DemoConfig {
        duration: Duration::from_secs(args.duration),
        time_scale: args.time_scale,
        manual: args.manual,
        listen: args.listen,
        seed: args.seed,
        clients: args.clients,
        history_hours: args.history_hours,
        shadow_minutes: args.shadow_minutes,
        work_dir: work_dir.clone(),
        ..DemoConfig::default()
    };
    let res = tokio::select! {
        r = sluice_demo::run::run(&db, &cfg, print) => r,
        _ = super::shutdown_signal() => Err(anyhow::anyhow!("interrupted")),
    };
    db.close().await;
    if args.keep_data {
        eprintln!("demo data kept in {}", work_dir.display());
    } else if let Err(e) = std::fs::remove_dir_all(&work_dir) {
        eprintln!("warning: could not remove {}: {e}", work_dir.display());
    }
    let report = res?;
    if json {
        eprint!("{}", render_report(&report));
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", render_report(&report));
    }
    Ok(ExitCode::SUCCESS)
}
