//! Runs the forecaster over the M4 Hourly training file and writes the submission CSV (`id,F1..F48`).
//!
//! ```text
//! cargo run --release -p sluice-ml --example m4 -- [TRAIN.csv] [--out OUT.csv] [--threads N]
//!     [--holdout] [--origins N] [--combine K] [--pooled-ridge X] [--local-ridge X]
//!     [--window N] [--winsorise K] [--only model,model] [--select-mase]
//! ```
//! `--holdout` never looks at the test file: it cuts the last 48 points off every training series,
//! forecasts from the rest and scores against the cut points (sMAPE, MASE, and both for seasonal
//! naive), which is how settings are validated before one scored run.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::time::Instant;

use sluice_ml::forecast::{
    forecast_many, read_m4_csv, write_m4_csv, ForecastConfig, History, ModelKind, SelectBy,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut train = "/work/shared/data/m4-hourly/Hourly-train.csv".to_string();
    let mut out = None;
    let mut holdout = false;
    let mut cfg = ForecastConfig::new(48, 24);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--out" => out = Some(val()?),
            "--holdout" => holdout = true,
            "--select-mase" => cfg.select_by = SelectBy::Mase,
            "--threads" => cfg.threads = val()?.parse()?,
            "--origins" => cfg.backtest_origins = val()?.parse()?,
            "--combine" => cfg.combine_top = val()?.parse()?,
            "--pooled-ridge" => cfg.pooled_ridge = val()?.parse()?,
            "--local-ridge" => cfg.local_ridge = val()?.parse()?,
            "--window" => cfg.max_lag_window = val()?.parse()?,
            "--winsorise" => cfg.winsorise = Some(val()?.parse()?),
            "--only" => {
                cfg.candidates = val()?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<Vec<ModelKind>, _>>()?
            }
            other if !other.starts_with("--") => train = other.to_string(),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let h = cfg.horizon;
    let series = read_m4_csv(BufReader::new(File::open(&train)?))?;
    eprintln!("read {} series from {train}", series.len());
    let (inputs, actuals): (Vec<&[f64]>, Vec<&[f64]>) = series
        .iter()
        .map(|(_, y)| {
            if holdout {
                y.split_at(y.len() - h)
            } else {
                (y.as_slice(), &y[y.len()..])
            }
        })
        .unzip();
    let histories: Vec<History<'_>> = inputs.iter().map(|y| History::new(y)).collect();
    let started = Instant::now();
    let forecasts = forecast_many(&histories, &cfg)?;
    eprintln!(
        "forecast {} series in {:.1} s",
        forecasts.len(),
        started.elapsed().as_secs_f64()
    );

    let mut chosen: BTreeMap<String, usize> = BTreeMap::new();
    for f in &forecasts {
        *chosen.entry(f.model.to_string()).or_default() += 1;
    }
    for (model, count) in &chosen {
        eprintln!("{count:>5}  {model}");
    }
    let bt_mase = forecasts.iter().map(|f| f.backtest.mase).sum::<f64>() / forecasts.len() as f64;
    let bt_sn = forecasts
        .iter()
        .map(|f| f.backtest.seasonal_naive_mase)
        .sum::<f64>()
        / forecasts.len() as f64;
    eprintln!("backtest MASE: chosen {bt_mase:.3}, seasonal naive {bt_sn:.3}");

    if holdout {
        let (mut s, mut m, mut ss, mut sm) = (0.0, 0.0, 0.0, 0.0);
        for ((f, x), a) in forecasts.iter().zip(&inputs).zip(&actuals) {
            let snaive: Vec<f64> = (0..h).map(|i| x[x.len() - 24 + i % 24]).collect();
            let scale = (24..x.len()).map(|t| (x[t] - x[t - 24]).abs()).sum::<f64>()
                / (x.len() - 24) as f64;
            let (a1, b1) = score(a, &f.point, scale);
            let (a2, b2) = score(a, &snaive, scale);
            s += a1;
            m += b1;
            ss += a2;
            sm += b2;
        }
        let k = forecasts.len() as f64;
        println!(
            "holdout: sMAPE={:.3} MASE={:.3} | seasonal naive sMAPE={:.3} MASE={:.3} | relative OWA vs snaive {:.3}",
            s / k,
            m / k,
            ss / k,
            sm / k,
            0.5 * (s / ss + m / sm)
        );
    }
    if let Some(path) = out {
        let rows: Vec<(String, Vec<f64>)> = series
            .iter()
            .zip(&forecasts)
            .map(|((id, _), f)| (id.clone(), f.point.clone()))
            .collect();
        write_m4_csv(BufWriter::new(File::create(&path)?), &rows)?;
        eprintln!("wrote {path}");
    }
    Ok(())
}

/// sMAPE (percent) and MASE of one forecast, as M4 defines them.
fn score(actual: &[f64], forecast: &[f64], scale: f64) -> (f64, f64) {
    let h = actual.len() as f64;
    let smape = actual
        .iter()
        .zip(forecast)
        .map(|(a, f)| 200.0 * (a - f).abs() / (a.abs() + f.abs()))
        .sum::<f64>()
        / h;
    let mase = actual
        .iter()
        .zip(forecast)
        .map(|(a, f)| (a - f).abs())
        .sum::<f64>()
        / h
        / scale;
    (smape, mase)
}
