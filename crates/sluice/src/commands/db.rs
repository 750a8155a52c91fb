//! `sluice db migrate|status|grant-readonly`.

use std::process::ExitCode;

use anyhow::Context;
use secrecy::ExposeSecret;
use sluice_store::{roles, Database};

use super::database_config;
use crate::cli::{DbCommand, GlobalArgs, GrantReadonlyArgs};

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
        DbCommand::GrantReadonly(args) => {
            // Migrate first, so the grants cover every table this version of Sluice has.
            db.migrate()
                .await
                .context("failed to migrate the database")?;
            grant_readonly(&db, args).await
        }
    };
    db.close().await;
    res
}

async fn grant_readonly(db: &Database, args: GrantReadonlyArgs) -> anyhow::Result<ExitCode> {
    roles::check_role_name(&args.role)?;
    let exists = roles::role_exists(db.pool(), &args.role).await?;
    let generated = (!exists && args.password.is_none()).then(roles::generate_password);
    let password = args
        .password
        .as_ref()
        .map(|p| p.expose_secret().to_owned())
        .or_else(|| generated.clone());
    let grant = roles::grant_readonly(db.pool(), &args.role, password.as_deref())
        .await
        .with_context(|| format!("failed to grant read-only access to {}", args.role))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&grant)?);
    } else {
        println!(
            "{} role {} may now read {} tables of {} (schema {}); api_tokens stays hidden",
            if grant.created { "created" } else { "updated" },
            grant.role,
            grant.tables.len(),
            grant.database,
            grant.schema
        );
    }
    if let Some(pw) = generated {
        eprintln!("password for {} (shown once):", grant.role);
        println!("{pw}");
    }
    Ok(ExitCode::SUCCESS)
}
