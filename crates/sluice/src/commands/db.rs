//! `sluice db migrate|status`.

use std::process::ExitCode;

use anyhow::Context;
use sluice_store::Database;

use super::database_config;
use crate::cli::{DbCommand, GlobalArgs};

pub async fn run(g: &GlobalArgs, cmd: DbCommand) -> anyhow::Result<ExitCode> {
    let db = Database::open(&database_config(g))
        .await
        .context("failed to open the database")?;
    let res = match cmd {
        DbCommand::Migrate => {
            db.migrate()
                .await
                .context("failed to migrate the database")?;
            let n = db.migration_status().await?.len();
            println!(
                "database is up to date ({n} migrations applied) — {}",
                db.description()
            );
            Ok(ExitCode::SUCCESS)
        }
        DbCommand::Status { json } => {
            let status = db.migration_status().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                println!("{}", db.description());
                println!(
                    "{:<8} {:<26} {:<10} DESCRIPTION",
                    "VERSION", "APPLIED AT", "STATE"
                );
                for m in &status {
                    let state = match (m.success, m.checksum_matches) {
                        (None, _) => "pending",
                        (Some(false), _) => "FAILED",
                        (Some(true), Some(false)) => "CHANGED",
                        (Some(true), _) => "applied",
                    };
                    let at = m
                        .applied_at
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_else(|| "-".into());
                    println!(
                        "{:<8} {:<26} {:<10} {}",
                        m.version, at, state, m.description
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    };
    db.close().await;
    res
}
