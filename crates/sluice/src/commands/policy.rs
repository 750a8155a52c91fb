//! `sluice policy check|publish|show|versions|diff|rollback|promote`.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use sluice_core::policy::Policy;
use sluice_store::policy::{self as store, Publish};

use super::open_db;
use super::token::cli_actor;
use crate::cli::{GlobalArgs, PolicyCommand};

/// Exit status of `check` (and `publish`) for an invalid policy.
const INVALID: u8 = 2;

fn read(file: &Path) -> anyhow::Result<Vec<u8>> {
    if file == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("failed to read the policy from stdin")?;
        Ok(buf)
    } else {
        std::fs::read(file).with_context(|| format!("failed to read {}", file.display()))
    }
}

/// Parse FILE; on failure print every problem to stderr and return the exit code.
fn load(file: &Path) -> anyhow::Result<Result<Policy, ExitCode>> {
    let bytes = read(file)?;
    Ok(Policy::parse(&bytes).map_err(|e| {
        eprintln!("{}: {e}", file.display());
        ExitCode::from(INVALID)
    }))
}

pub async fn run(g: &GlobalArgs, cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    if let PolicyCommand::Check { file } = &cmd {
        return Ok(match load(file)? {
            Ok(p) => {
                println!(
                    "{}: ok: {} rules, {}",
                    file.display(),
                    p.rules().len(),
                    p.content_hash()
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        });
    }
    // Check before opening the database, so a bad file fails fast and offline.
    let to_publish = match &cmd {
        PolicyCommand::Publish { file, .. } => match load(file)? {
            Ok(p) => Some(p),
            Err(code) => return Ok(code),
        },
        _ => None,
    };
    let db = open_db(g).await?;
    let pool = db.pool().clone();
    let actor = cli_actor();
    let res: anyhow::Result<ExitCode> = async {
        match cmd {
            PolicyCommand::Check { .. } => unreachable!("handled above"),
            PolicyCommand::Publish { comment, group, .. } => {
                let p = to_publish.expect("parsed above");
                let info = store::publish(
                    &pool,
                    &p,
                    &Publish {
                        actor: &actor,
                        comment: comment.as_deref(),
                        group: group.as_deref(),
                    },
                )
                .await
                .context("failed to publish")?;
                println!(
                    "published version {} ({} rules, {}) to {}",
                    info.version,
                    info.rule_count,
                    info.content_hash,
                    group.map_or_else(|| "every gateway".to_owned(), |g| format!("group {g}"))
                );
            }
            PolicyCommand::Show { version, group } => {
                let stored = match version {
                    Some(v) => store::get(&pool, v).await?,
                    None => store::current(&pool, &group).await?.with_context(|| {
                        format!("no policy is served to group {group:?} yet (publish one first)")
                    })?,
                };
                let doc = stored.policy.document(Some(stored.info.version));
                println!("{}", serde_json::to_string_pretty(&doc)?);
            }
            PolicyCommand::Versions { limit, json } => {
                let versions = store::list(&pool, limit.clamp(1, 10_000), None).await?;
                let rollout = store::rollout(&pool).await?;
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(
                            &serde_json::json!({"rollout": rollout, "versions": versions})
                        )?
                    );
                } else {
                    println!(
                        "{:<8} {:<7} {:<26} {:<20} {:<10} COMMENT",
                        "VERSION", "RULES", "CREATED", "BY", "SERVED TO"
                    );
                    for v in versions {
                        let mut served: Vec<String> = rollout
                            .pinned
                            .iter()
                            .filter(|p| p.1 == v.version)
                            .map(|p| p.0.clone())
                            .collect();
                        if rollout.all == Some(v.version) {
                            served.insert(0, "all".into());
                        }
                        let mut comment = v.comment.unwrap_or_default();
                        if let Some(r) = v.restored_from {
                            comment = format!("(restores {r}) {comment}");
                        }
                        println!(
                            "{:<8} {:<7} {:<26} {:<20} {:<10} {}",
                            v.version,
                            v.rule_count,
                            v.created_at.to_rfc3339(),
                            v.created_by,
                            served.join(","),
                            comment
                        );
                    }
                }
            }
            PolicyCommand::Diff { from, to } => {
                let d = store::diff(&pool, from, to).await?;
                println!("{}", serde_json::to_string_pretty(&d)?);
            }
            PolicyCommand::Rollback { version, comment } => {
                let info = store::rollback(&pool, version, &actor, comment.as_deref())
                    .await
                    .context("failed to roll back")?;
                println!(
                    "published version {} restoring version {version} ({})",
                    info.version, info.content_hash
                );
            }
            PolicyCommand::Promote { version, comment } => {
                let state = store::promote(&pool, version, &actor, comment.as_deref())
                    .await
                    .context("failed to promote")?;
                println!(
                    "version {version} is now served to every gateway (rollout: {})",
                    serde_json::to_string(&state)?
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    }
    .await;
    db.close().await;
    res
}
