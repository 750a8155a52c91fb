//! `sluice-bench memory`: peak resident memory of the release `sluice ingest --json` process for
//! growing inputs (it should stay flat: the pipeline holds a bounded number of batches).
//! Peak RSS is `VmHWM`, reported by `/usr/bin/time -v` as "Maximum resident set size".

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::server::Server;
use crate::{generate, load_average, MemoryArgs, WorkDir};

pub async fn run(args: MemoryArgs) -> anyhow::Result<()> {
    let bin = match &args.sluice_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.with_file_name("sluice"),
    };
    if !bin.exists() {
        bail!(
            "{} not found; build it with `cargo build --release -p sluice` or pass --sluice-bin",
            bin.display()
        );
    }
    let time = PathBuf::from("/usr/bin/time");
    if !time.exists() {
        bail!("/usr/bin/time not found (apt-get install time)");
    }
    let work = WorkDir::new(args.server.work_dir.as_ref())?;
    let server = Server::open(args.server.database_url.as_deref()).await?;
    let res = run_on(&args, &server, &bin, &time, work.path()).await;
    server.stop();
    res
}

async fn run_on(
    args: &MemoryArgs,
    server: &Server,
    bin: &Path,
    time: &Path,
    dir: &Path,
) -> anyhow::Result<()> {
    println!(
        "sluice-bench memory: {} ingest --json --format nginx FILE, under /usr/bin/time -v",
        bin.display()
    );
    println!("server: {}", server.description);
    println!();
    println!(
        "{:>10}  {:>9}  {:>8}  {:>10}  {:>13}  load",
        "lines", "file MB", "seconds", "lines/s", "peak RSS MiB"
    );
    for &lines in &args.sizes {
        let log = dir.join(format!("access-{lines}.log"));
        let bytes = generate::write_nginx_combined(&log, lines, 42)?;
        let name = format!("sluice_bench_mem_{}_{lines}", std::process::id());
        server.create_db(&name).await?;
        server.checkpoint().await?;
        let time_out = dir.join("time.txt");
        let out = tokio::process::Command::new(time)
            .arg("-v")
            .arg("-o")
            .arg(&time_out)
            .arg(bin)
            .args([
                "--database-url",
                &server.url(&name),
                "ingest",
                "--json",
                "--format",
                "nginx",
            ])
            .arg(&log)
            .output()
            .await
            .context("failed to run sluice under /usr/bin/time")?;
        let load = load_average();
        let stats = std::fs::read_to_string(&time_out)?;
        server.drop_db(&name).await?;
        std::fs::remove_file(&log)?;
        if !out.status.success() {
            bail!(
                "sluice ingest failed: {}\n{stats}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("sluice ingest --json output")?;
        if report["accepted"].as_u64() != Some(lines) {
            bail!(
                "sluice accepted {} lines, expected {lines}",
                report["accepted"]
            );
        }
        let rss_kb: u64 = stats
            .lines()
            .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
            .and_then(|v| v.trim().parse().ok())
            .context("no \"Maximum resident set size\" in the output of /usr/bin/time -v")?;
        println!(
            "{:>10}  {:>9.1}  {:>8.2}  {:>10.0}  {:>13.1}  {}",
            lines,
            bytes as f64 / 1e6,
            report["seconds"].as_f64().unwrap_or(f64::NAN),
            report["lines_per_second"].as_f64().unwrap_or(f64::NAN),
            rss_kb as f64 / 1024.0,
            load
        );
    }
    Ok(())
}
