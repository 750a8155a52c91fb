//! `sluice series`: causal anomaly scores for one `timestamp,value` series.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context;
use sluice_ml::anomaly::{read_series_csv, score_series, write_scored_csv, SeriesDetectorConfig};

use crate::cli::SeriesArgs;

pub fn run(args: SeriesArgs) -> anyhow::Result<ExitCode> {
    let file = File::open(&args.input)
        .with_context(|| format!("failed to open {}", args.input.display()))?;
    let points = read_series_csv(BufReader::new(file))
        .with_context(|| format!("{}", args.input.display()))?;
    let scores = score_series(&points, &SeriesDetectorConfig::default());
    let out: Box<dyn Write> = if args.output.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(
            File::create(&args.output)
                .with_context(|| format!("failed to create {}", args.output.display()))?,
        )
    };
    let mut out = BufWriter::new(out);
    write_scored_csv(&mut out, &points, &scores).context("failed to write scores")?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
