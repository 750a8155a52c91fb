//! Benchmarks of the foundation issue as programs that print numbers, with the reference measured
//! in the same run and shown as a ratio (docs/BENCHMARKS.md records the results):
//!
//! - `sluice-bench ingest`: nginx `combined` lines end to end (parse, binary COPY, rollups) through
//!   the real ingest pipeline, side by side with `psql \copy` of the same rows as CSV.
//! - `sluice-bench memory`: peak RSS of the release `sluice ingest` process per input size.
//!
//! - `sluice-bench policy`: `GET /v1/policy` 304 polls against nginx serving the same file, 1,000
//!   long-polling gateways receiving a publish, and a 100,000-rule policy.
//!
//! - `sluice-bench enforcer`: the reference gateway with a 1,000-rule policy enforced against the
//!   same proxy with enforcement off (throughput and p99 latency as ratios).
//!
//! The parser-only benchmark is `cargo run --release -p sluice-logs --example parse_bench`.

pub mod csv;
pub mod enforcer;
pub mod generate;
pub mod ingest;
pub mod memory;
pub mod policy;
pub mod server;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "sluice-bench",
    about = "Sluice benchmarks: print numbers, reference side by side"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// End-to-end ingestion (in-process `ingest_stream`) against `psql \copy` of the same rows.
    Ingest(IngestArgs),
    /// Peak RSS of the release `sluice ingest --json` binary for several input sizes.
    Memory(MemoryArgs),
    /// Policy delivery: 304 polls against nginx (wrk), long-poll fan-out, a 100,000-rule policy.
    Policy(policy::PolicyArgs),
    /// The reference gateway: throughput and p99 with a 1,000-rule policy enforced against the
    /// same proxy with enforcement off.
    Enforcer(enforcer::EnforcerArgs),
}

/// Where to measure.
#[derive(Debug, Args, Clone)]
pub struct ServerArgs {
    /// Postgres server to benchmark on (postgres://USER@HOST:PORT/DB, trust auth or PGPASSWORD);
    /// a scratch database is created and dropped on it for every run. Without it, an ephemeral
    /// embedded cluster is started (fsync=off, synchronous_commit=off, full_page_writes=off).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Directory for the generated files (default: a temporary directory, deleted afterwards).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Lines of nginx `combined` log to generate and ingest.
    #[arg(long, default_value_t = 1_000_000)]
    pub lines: u64,

    /// Measured runs of each side (fresh database each run, alternating which side goes first).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,

    /// Lines per batch (one transaction each) for the sluice side.
    #[arg(long, default_value_t = sluice_engine::ingest::DEFAULT_BATCH_LINES)]
    pub batch_lines: usize,

    /// Skip the row-by-row comparison of the two tables after the first run.
    #[arg(long)]
    pub no_verify: bool,

    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct MemoryArgs {
    /// Input sizes in lines.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000,3000000")]
    pub sizes: Vec<u64>,

    /// The `sluice` binary to run (default: `sluice` next to this executable, i.e. the same
    /// target directory; build it with `cargo build --release -p sluice`).
    #[arg(long)]
    pub sluice_bin: Option<PathBuf>,

    #[command(flatten)]
    pub server: ServerArgs,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Ingest(args) => ingest::run(args).await,
        Command::Memory(args) => memory::run(args).await,
        Command::Policy(args) => policy::run(args).await,
        Command::Enforcer(args) => enforcer::run(args).await,
    }
}

/// Median of a non-empty sample.
pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `/proc/loadavg`'s three load averages, for the record next to every measurement.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// A scratch directory: the one given, or a temporary one removed on drop.
pub enum WorkDir {
    Given(PathBuf),
    Temp(tempfile::TempDir),
}

impl WorkDir {
    pub fn new(given: Option<&PathBuf>) -> anyhow::Result<WorkDir> {
        Ok(match given {
            Some(p) => {
                std::fs::create_dir_all(p)?;
                WorkDir::Given(p.clone())
            }
            None => WorkDir::Temp(tempfile::Builder::new().prefix("sluice-bench-").tempdir()?),
        })
    }

    pub fn path(&self) -> &std::path::Path {
        match self {
            WorkDir::Given(p) => p,
            WorkDir::Temp(t) => t.path(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_samples() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
