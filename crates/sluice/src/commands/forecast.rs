//! `sluice forecast`: M4-style batch forecasts or one series with prediction intervals.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context;
use sluice_ml::forecast::{
    forecast, forecast_many, read_m4_csv, read_series_csv, write_m4_csv, write_series_forecast_csv,
    ForecastConfig, History,
};

use crate::cli::{ForecastArgs, ForecastInput};

pub fn run(args: ForecastArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = ForecastConfig::new(args.horizon, args.season);
    cfg.interval_level = args.interval;
    cfg.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let input = File::open(&args.input)
        .with_context(|| format!("failed to open {}", args.input.display()))?;
    let out: Box<dyn Write> = if args.output.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(
            File::create(&args.output)
                .with_context(|| format!("failed to create {}", args.output.display()))?,
        )
    };
    let mut out = BufWriter::new(out);
    match args.input_format {
        ForecastInput::M4 => {
            let series = read_m4_csv(BufReader::new(input))
                .with_context(|| format!("{}", args.input.display()))?;
            eprintln!(
                "forecasting {} series, horizon {}, season {}",
                series.len(),
                args.horizon,
                args.season
            );
            let started = std::time::Instant::now();
            let histories: Vec<History<'_>> = series.iter().map(|(_, y)| History::new(y)).collect();
            let forecasts = forecast_many(&histories, &cfg)?;
            let rows: Vec<(String, Vec<f64>)> = series
                .iter()
                .zip(&forecasts)
                .map(|((id, _), f)| (id.clone(), f.point.clone()))
                .collect();
            write_m4_csv(&mut out, &rows)?;
            eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
        }
        ForecastInput::Series => {
            let s = read_series_csv(BufReader::new(input))
                .with_context(|| format!("{}", args.input.display()))?;
            let f = forecast(&s.values, &cfg)?;
            eprintln!(
                "model {} (backtest MASE {:.3} vs seasonal naive {:.3} over {} origins)",
                f.model, f.backtest.mase, f.backtest.seasonal_naive_mase, f.backtest.origins
            );
            write_series_forecast_csv(&mut out, &s, &f)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
