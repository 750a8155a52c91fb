//! Subcommands. Each opens what it needs and returns the process exit code.

mod audit;
mod db;
mod demo;
mod forecast;
mod gateway;
mod ingest;
mod models;
mod policy;
mod rejects;
mod replay;
mod series;
mod serve;
mod sim;
mod suggestions;
mod token;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;
use sluice_engine::ingest::Enrichment;
use sluice_store::{Database, DatabaseConfig};

use crate::cli::{Cli, Command, EnrichArgs, GlobalArgs};

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(&cli.global, args).await,
        Command::Ingest(args) => ingest::run(&cli.global, args).await,
        Command::Replay(args) => replay::run(&cli.global, args).await,
        Command::Models(args) => models::run(&cli.global, args).await,
        Command::Rejects(args) => rejects::run(&cli.global, args).await,
        Command::Db(cmd) => db::run(&cli.global, cmd).await,
        Command::Token(cmd) => token::run(&cli.global, cmd).await,
        Command::Policy(cmd) => policy::run(&cli.global, cmd).await,
        Command::Suggestions(cmd) => suggestions::run(&cli.global, cmd).await,
        Command::AutoApproval(cmd) => suggestions::auto_approval(&cli.global, cmd).await,
        Command::Audit(args) => audit::run(&cli.global, args).await,
        Command::Series(args) => series::run(args),
        Command::Forecast(args) => forecast::run(args),
        Command::Sim(args) => sim::run(args),
        Command::Demo(args) => demo::run(&cli.global, args).await,
        Command::Gateway(args) => gateway::run(args).await,
    }
}

pub fn database_config(g: &GlobalArgs) -> DatabaseConfig {
    DatabaseConfig {
        url: g
            .database_url
            .as_ref()
            .map(|u| u.expose_secret().to_owned()),
        data_dir: g.data_dir.clone(),
        pg_user: Some(g.pg_user.clone()),
        pg_bin_dir: g.pg_bin_dir.clone(),
        max_connections: 16,
        acquire_timeout: std::time::Duration::from_secs(5),
    }
}

/// Open the database (starting the embedded cluster when needed) and apply migrations.
pub async fn open_db(g: &GlobalArgs) -> anyhow::Result<Database> {
    let cfg = database_config(g);
    let db = Database::open(&cfg)
        .await
        .context("failed to open the database")?;
    tracing::debug!(database = %db.description(), "database ready");
    db.migrate()
        .await
        .context("failed to migrate the database")?;
    Ok(db)
}

pub fn enrichment(a: &EnrichArgs) -> anyhow::Result<Arc<Enrichment>> {
    let client_key = a
        .client_key
        .parse()
        .with_context(|| format!("invalid --client-key {:?}", a.client_key))?;
    let patterns = a
        .route_patterns
        .iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.parse()
                .with_context(|| "invalid --route-pattern".to_string())
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Arc::new(Enrichment {
        client_key,
        routes: sluice_core::RouteNormalizer::new(patterns),
    }))
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
