//! Logging setup: human-readable text on stderr (coloured on a terminal) or JSON lines.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogOutput;

pub fn init(output: LogOutput, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|e| {
        eprintln!("warning: invalid --log filter {filter:?} ({e}); using `info`");
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match output {
        LogOutput::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogOutput::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}
