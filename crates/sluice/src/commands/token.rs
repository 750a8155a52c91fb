//! `sluice token create|list|revoke`.

use std::process::ExitCode;

use anyhow::Context;
use sluice_core::Role;
use sluice_store::tokens;

use super::open_db;
use crate::cli::{GlobalArgs, TokenCommand};

/// Actor recorded in the audit log for tokens managed from the command line.
pub(crate) fn cli_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

pub async fn run(g: &GlobalArgs, cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    let db = open_db(g).await?;
    let pool = db.pool().clone();
    let res: anyhow::Result<ExitCode> = async {
        match cmd {
            TokenCommand::Create { role, name } => {
                let role: Role = role.parse()?;
                let (info, secret) = tokens::create_token(&pool, &name, role, &cli_actor()).await?;
                eprintln!(
                    "created {} token {:?} (shown once; store it now)",
                    info.role, info.name
                );
                println!("{secret}");
            }
            TokenCommand::List { json } => {
                let list = tokens::list_tokens(&pool).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                } else {
                    println!(
                        "{:<6} {:<24} {:<8} {:<12} {:<26} STATE",
                        "ID", "NAME", "ROLE", "PREFIX", "CREATED"
                    );
                    for t in list {
                        let state = t
                            .revoked_at
                            .map(|r| format!("revoked {}", r.to_rfc3339()))
                            .unwrap_or_else(|| "active".into());
                        println!(
                            "{:<6} {:<24} {:<8} {:<12} {:<26} {}",
                            t.id,
                            t.name,
                            t.role,
                            t.prefix,
                            t.created_at.to_rfc3339(),
                            state
                        );
                    }
                }
            }
            TokenCommand::Revoke { name } => {
                let t = tokens::revoke_token(&pool, &name, &cli_actor())
                    .await
                    .context("failed to revoke")?;
                println!("revoked token {:?} ({})", t.name, t.role);
            }
        }
        Ok(ExitCode::SUCCESS)
    }
    .await;
    db.close().await;
    res
}
