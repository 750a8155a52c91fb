//! `sluice suggestions list|show|approve|reject|modify` and `sluice auto-approval show|set`:
//! the review of suggested limits, straight on the database (like `sluice policy`), with the CLI
//! user as actor.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use sluice_core::approval::{AutoApprovalConfig, SuggestionState};
use sluice_core::policy::{Limit, Rule};
use sluice_core::time::Timestamp;
use sluice_store::review::{self, DecideRequest, Decided, DecisionKind, SuggestionFilter};

use super::open_db;
use super::token::cli_actor;
use crate::cli::{AutoApprovalCommand, DecisionArgs, GlobalArgs, SuggestionsCommand};

fn read(file: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    if file == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .with_context(|| format!("failed to read the {what} from stdin"))?;
        Ok(buf)
    } else {
        std::fs::read(file).with_context(|| format!("failed to read {}", file.display()))
    }
}

/// JSON into `T`, naming the path of a bad value.
fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> anyhow::Result<T> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." || path == "?" {
            anyhow::anyhow!("invalid {what}: {}", e.inner())
        } else {
            anyhow::anyhow!("invalid {what}: {path}: {}", e.inner())
        }
    })
}

fn until(v: Option<&str>) -> anyhow::Result<Option<Timestamp>> {
    v.map(|u| {
        chrono::DateTime::parse_from_rfc3339(u)
            .map(|t| Timestamp::from_chrono(t.with_timezone(&chrono::Utc)))
            .map_err(|_| {
                anyhow::anyhow!(
                    "invalid --until {u:?}: expected an RFC 3339 time such as 2026-03-02T18:00:00Z"
                )
            })
    })
    .transpose()
}

fn shadow(how: &DecisionArgs) -> Option<bool> {
    match (how.shadow, how.enforce) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

fn report(d: &Decided) {
    let s = &d.suggestion;
    match d.policy_version {
        Some(v) => println!(
            "suggestion {} {}: published policy version {v} with rule {} ({}{})",
            s.id,
            s.state,
            s.rule_id,
            s.decided_rule
                .as_ref()
                .map_or(String::new(), |r| r.limit.to_string()),
            if s.decided_rule.as_ref().is_some_and(|r| r.shadow) {
                ", shadow"
            } else {
                ""
            }
        ),
        None if s.state == SuggestionState::Rejected => {
            println!("suggestion {} rejected", s.id)
        }
        None => println!(
            "suggestion {} {}: the served policy already had this rule; no new version",
            s.id, s.state
        ),
    }
}

pub async fn run(g: &GlobalArgs, cmd: SuggestionsCommand) -> anyhow::Result<ExitCode> {
    // Parse what can be parsed before opening the database, so bad input fails fast.
    let modified: Option<Rule> = match &cmd {
        SuggestionsCommand::Modify {
            rule: Some(file), ..
        } => Some(parse(&read(file, "rule")?, "rule")?),
        _ => None,
    };
    let new_limit: Option<Limit> = match &cmd {
        SuggestionsCommand::Modify {
            limit: Some(json), ..
        } => Some(parse(json.as_bytes(), "--limit")?),
        _ => None,
    };
    let state = match &cmd {
        SuggestionsCommand::List { state: Some(s), .. } => Some(s.parse::<SuggestionState>()?),
        _ => None,
    };
    let db = open_db(g).await?;
    let pool = db.pool().clone();
    let actor = cli_actor();
    let res: anyhow::Result<ExitCode> = async {
        match cmd {
            SuggestionsCommand::List {
                client,
                abusive,
                limit,
                json,
                ..
            } => {
                let page = review::list(
                    &pool,
                    &SuggestionFilter {
                        state,
                        client,
                        abusive: abusive.then_some(true),
                        limit: limit.clamp(1, review::MAX_LIMIT),
                        before_id: None,
                    },
                )
                .await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&page)?);
                } else if page.items.is_empty() {
                    println!("no suggestions");
                } else {
                    println!(
                        "{:<6} {:<17} {:<20} {:<24} {:<5} {:<22} DIFF",
                        "ID", "STATE", "CLIENT", "RULE", "CONF", "CREATED (LOG TIME)"
                    );
                    for s in &page.items {
                        let diff = s.diff["summary"]
                            .as_str()
                            .map_or_else(|| s.rule.limit.to_string(), str::to_owned);
                        println!(
                            "{:<6} {:<17} {:<20} {:<24} {:<5.2} {:<22} {}{}",
                            s.id,
                            s.state.as_str(),
                            s.client.as_deref().unwrap_or("-"),
                            s.rule_id,
                            s.confidence,
                            s.created_at
                                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                            diff,
                            if s.abusive { " [abusive]" } else { "" }
                        );
                    }
                }
            }
            SuggestionsCommand::Show { id } => {
                let s = review::get(&pool, id).await?;
                println!("{}", serde_json::to_string_pretty(&s)?);
            }
            SuggestionsCommand::Approve { id, comment, how } => {
                let d = review::decide(
                    &pool,
                    &DecideRequest {
                        id,
                        kind: DecisionKind::Approve,
                        actor: actor.clone(),
                        comment,
                        shadow: shadow(&how),
                        temporary_until: until(how.until.as_deref())?,
                    },
                )
                .await
                .with_context(|| format!("failed to approve suggestion {id}"))?;
                report(&d);
            }
            SuggestionsCommand::Reject { id, comment } => {
                let d = review::decide(
                    &pool,
                    &DecideRequest {
                        id,
                        kind: DecisionKind::Reject,
                        actor: actor.clone(),
                        comment: Some(comment),
                        shadow: None,
                        temporary_until: None,
                    },
                )
                .await
                .with_context(|| format!("failed to reject suggestion {id}"))?;
                report(&d);
            }
            SuggestionsCommand::Modify {
                id, comment, how, ..
            } => {
                let rule = match (modified, new_limit) {
                    (Some(rule), _) => rule,
                    (None, Some(limit)) => {
                        let mut rule = review::get(&pool, id).await?.rule;
                        rule.limit = limit;
                        rule
                    }
                    (None, None) => unreachable!("clap requires --limit or --rule"),
                };
                let d = review::decide(
                    &pool,
                    &DecideRequest {
                        id,
                        kind: DecisionKind::Modify(rule),
                        actor: actor.clone(),
                        comment: Some(comment),
                        shadow: shadow(&how),
                        temporary_until: until(how.until.as_deref())?,
                    },
                )
                .await
                .with_context(|| format!("failed to modify suggestion {id}"))?;
                report(&d);
            }
        }
        Ok(ExitCode::SUCCESS)
    }
    .await;
    db.close().await;
    res
}

pub async fn auto_approval(g: &GlobalArgs, cmd: AutoApprovalCommand) -> anyhow::Result<ExitCode> {
    let cfg: Option<AutoApprovalConfig> = match &cmd {
        AutoApprovalCommand::Set { file } => Some(parse(
            &read(file, "auto-approval configuration")?,
            "auto-approval configuration",
        )?),
        AutoApprovalCommand::Show => None,
    };
    if let Some(cfg) = &cfg {
        review::check_auto_approval(cfg)?;
    }
    let db = open_db(g).await?;
    let pool = db.pool().clone();
    let res: anyhow::Result<ExitCode> = async {
        let answer = match cfg {
            Some(cfg) => review::set_auto_approval(&pool, &cfg, &cli_actor())
                .await
                .context("failed to set the auto-approval rules")?,
            None => review::get_auto_approval(&pool).await?,
        };
        println!("{}", serde_json::to_string_pretty(&answer)?);
        Ok(ExitCode::SUCCESS)
    }
    .await;
    db.close().await;
    res
}
