//! `sluice audit`: the audit log, newest first, with filters.

use std::process::ExitCode;

use sluice_store::review::{self, AuditFilter};

use super::open_db;
use crate::cli::{AuditArgs, GlobalArgs};

pub async fn run(g: &GlobalArgs, args: AuditArgs) -> anyhow::Result<ExitCode> {
    let since = args
        .since
        .as_deref()
        .map(|s| {
            chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|_| {
                    anyhow::anyhow!(
                        "invalid --since {s:?}: expected an RFC 3339 time such as 2026-03-02T04:10:00Z"
                    )
                })
        })
        .transpose()?;
    let filter = AuditFilter {
        actor: args.actor,
        action: args.action,
        since,
        limit: args.limit.clamp(1, review::MAX_LIMIT),
        before_id: None,
    };
    let db = open_db(g).await?;
    let page = review::audit(db.pool(), &filter).await;
    db.close().await;
    let page = page?;
    if args.json {
        for e in &page.items {
            println!("{}", serde_json::to_string(e)?);
        }
    } else if page.items.is_empty() {
        println!("no audit entries");
    } else {
        println!(
            "{:<6} {:<20} {:<20} {:<22} {:<18} REASON",
            "ID", "AT", "ACTOR", "ACTION", "TARGET"
        );
        for e in &page.items {
            println!(
                "{:<6} {:<20} {:<20} {:<22} {:<18} {}",
                e.id,
                e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                e.actor,
                e.action,
                e.target.as_deref().unwrap_or("-"),
                e.reason.as_deref().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
