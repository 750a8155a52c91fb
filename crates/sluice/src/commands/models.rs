//! `sluice models`: the model registry, newest first.

use std::process::ExitCode;

use super::open_db;
use crate::cli::{GlobalArgs, ModelsArgs};

pub async fn run(g: &GlobalArgs, args: ModelsArgs) -> anyhow::Result<ExitCode> {
    let db = open_db(g).await?;
    let list = sluice_store::detection::list_models(db.pool(), args.limit.clamp(1, 10_000)).await;
    db.close().await;
    let list = list?;
    if args.json {
        for m in &list {
            println!("{}", serde_json::to_string(m)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        println!("no models registered yet (detection refits them every 60 log minutes)");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<24} {:>7} {:<22} {:<22} {:>8} {:>11}  artefact",
        "kind", "version", "trained from", "trained to", "rows", "training ms"
    );
    for m in &list {
        println!(
            "{:<24} {:>7} {:<22} {:<22} {:>8} {:>11.1}  {}",
            m.kind,
            m.version,
            m.trained_from.format("%Y-%m-%dT%H:%M:%SZ"),
            m.trained_to.format("%Y-%m-%dT%H:%M:%SZ"),
            m.metrics["rows"].as_u64().unwrap_or(0),
            m.training_ms,
            m.artefact.as_deref().unwrap_or("-")
        );
    }
    Ok(ExitCode::SUCCESS)
}
