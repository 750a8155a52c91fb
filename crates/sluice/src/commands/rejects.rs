//! `sluice rejects`: the lines ingestion could not parse, with their reasons.

use std::process::ExitCode;

use sluice_store::ingest::IngestWriter;

use super::open_db;
use crate::cli::{GlobalArgs, RejectsArgs};

pub async fn run(g: &GlobalArgs, args: RejectsArgs) -> anyhow::Result<ExitCode> {
    let db = open_db(g).await?;
    let writer = IngestWriter::new(db.pool().clone());
    let list = writer
        .list_rejects(args.source.as_deref(), args.limit.clamp(1, 100_000), None)
        .await;
    db.close().await;
    let list = list?;
    if args.json {
        for r in &list {
            println!("{}", serde_json::to_string(r)?);
        }
    } else if list.is_empty() {
        println!("no rejected lines");
    } else {
        for r in &list {
            println!("{}:{}: {}", r.source, r.line_no, r.reason);
            let raw: String = r.raw.chars().take(200).collect();
            println!(
                "    {raw}{}",
                if r.raw.chars().count() > 200 {
                    " …"
                } else {
                    ""
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
