//! `sluice-bench`: benchmark programs that print their numbers (see docs/BENCHMARKS.md).

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = sluice_bench::Cli::parse();
    // `RUST_LOG=sluice_store=debug` shows the time of each phase of every batch.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(sluice_bench::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
