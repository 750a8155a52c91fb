//! Per-route rolling-origin backtest of the forecaster on simulated traffic with a flash crowd,
//! side by side with seasonal naive from the same run (issue 4 benchmark).
//!
//! Traffic: `sluice-sim` with its default populations (API clients with daily rhythms, browsers,
//! hourly batch jobs), no attacks, and a 25-minute ×5 flash crowd on the third day; routes are
//! normalised as ingestion does. Every `step` minutes from the first origin with two days plus the
//! horizon of history, every route with traffic and the total are forecast `horizon` minutes
//! ahead from the history before the origin (per-minute counts, daily season 1440), exactly as
//! the forecast loop does; the chosen model and seasonal naive are scored on the same minutes.
//! MASE is scaled by the in-sample seasonal-naive (lag 1440) error before each origin.
//!
//! `cargo run --release -p sluice-ml --example route_backtest -- [days] [lines] [seed]`

use std::collections::BTreeMap;

use sluice_core::time::MICROS_PER_MINUTE;
use sluice_core::RouteNormalizer;
use sluice_ml::forecast::{forecast_many, ForecastConfig, History};
use sluice_sim::{generate, FlashCrowdSpec, SimConfig};

#[derive(Default, Clone, Copy)]
struct Acc {
    mase: f64,
    smape: f64,
    n: f64,
}

impl Acc {
    fn add(&mut self, mase: f64, smape: f64) {
        self.mase += mase;
        self.smape += smape;
        self.n += 1.0;
    }
    fn mase(&self) -> f64 {
        self.mase / self.n.max(1.0)
    }
    fn smape(&self) -> f64 {
        self.smape / self.n.max(1.0)
    }
}

fn smape(a: f64, f: f64) -> f64 {
    if a + f > 0.0 {
        200.0 * (a - f).abs() / (a.abs() + f.abs())
    } else {
        0.0
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let days: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(3);
    let lines: u64 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3_000_000);
    let seed: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(7);
    let (horizon, season, step) = (60usize, 1440usize, 60usize);

    let mut cfg = SimConfig::for_duration(seed, days * 86_400);
    cfg.attacks.clear();
    cfg.target_lines = Some(lines);
    let mut crowd = FlashCrowdSpec::default_for(6 * 3600);
    crowd.start_offset_secs = (days - 1) * 86_400 + 14 * 3600 + 17 * 60;
    crowd.duration_secs = 25 * 60;
    cfg.flash_crowd = Some(crowd);
    let sim = generate(&cfg).expect("valid simulation");
    let start = sim.start().micros();
    let labels = sim.labels().clone();
    let fc = labels.flash_crowds.first().cloned().expect("a flash crowd");
    let minutes = (days * 1440) as usize;
    let norm = RouteNormalizer::default();
    let mut series: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut total = vec![0.0; minutes];
    let mut records = 0u64;
    for rec in sim {
        let i = ((rec.ts.micros() - start) / MICROS_PER_MINUTE) as usize;
        if i >= minutes {
            continue;
        }
        let route = norm.normalize(&rec.path).into_owned();
        series.entry(route).or_insert_with(|| vec![0.0; minutes])[i] += 1.0;
        total[i] += 1.0;
        records += 1;
    }
    // Routes with at least one request per minute on average, plus the total.
    series.retain(|_, v| v.iter().sum::<f64>() >= minutes as f64);
    series.insert("*".into(), total);
    let names: Vec<String> = series.keys().cloned().collect();
    let crowd_from = ((fc.start.micros() - start) / MICROS_PER_MINUTE) as usize;
    let crowd_to = ((fc.end.micros() - start) / MICROS_PER_MINUTE) as usize;
    println!(
        "simulated {records} records over {days} days (seed {seed}), {} series; flash crowd {} .. {} on {} (minutes {crowd_from}..{crowd_to})",
        names.len(),
        fc.start,
        fc.end,
        fc.route
    );

    let fcfg = ForecastConfig {
        weekly_season: None,
        threads: 2,
        ..ForecastConfig::new(horizon, season)
    };
    let first = fcfg.min_history().div_ceil(step) * step;
    let mut chosen: BTreeMap<&str, Acc> = BTreeMap::new();
    let mut naive: BTreeMap<&str, Acc> = BTreeMap::new();
    let mut crowd_err: BTreeMap<&str, (f64, f64, f64)> = BTreeMap::new(); // chosen MAE, naive MAE, n
    let mut models: BTreeMap<String, usize> = BTreeMap::new();
    let t0 = std::time::Instant::now();
    let mut origins = 0;
    let mut o = first;
    while o + horizon <= minutes {
        let hist: Vec<History<'_>> = names
            .iter()
            .map(|n| History::new(&series[n][..o]))
            .collect();
        let fs = forecast_many(&hist, &fcfg).expect("forecast");
        for (name, f) in names.iter().zip(&fs) {
            let y = &series[name];
            let scale = (season..o)
                .map(|t| (y[t] - y[t - season]).abs())
                .sum::<f64>()
                / (o - season) as f64;
            let scale = scale.max(1e-9);
            let (mut ae_c, mut ae_n, mut sm_c, mut sm_n) = (0.0, 0.0, 0.0, 0.0);
            for i in 0..horizon {
                let a = y[o + i];
                let c = f.point[i];
                let n = y[o + i - season];
                ae_c += (a - c).abs();
                ae_n += (a - n).abs();
                sm_c += smape(a, c);
                sm_n += smape(a, n);
                if (crowd_from..crowd_to).contains(&(o + i)) {
                    let e = crowd_err.entry(name.as_str()).or_default();
                    e.0 += (a - c).abs() / scale;
                    e.1 += (a - n).abs() / scale;
                    e.2 += 1.0;
                }
            }
            let h = horizon as f64;
            chosen
                .entry(name.as_str())
                .or_default()
                .add(ae_c / h / scale, sm_c / h);
            naive
                .entry(name.as_str())
                .or_default()
                .add(ae_n / h / scale, sm_n / h);
            *models.entry(f.model.to_string()).or_default() += 1;
        }
        origins += 1;
        o += step;
    }
    println!(
        "{origins} origins every {step} min from minute {first}, horizon {horizon}, season {season}; {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    println!();
    println!("| series | MASE chosen | MASE seasonal naive | ratio | sMAPE chosen | sMAPE seasonal naive |");
    println!("|---|---:|---:|---:|---:|---:|");
    let (mut all_c, mut all_n) = (Acc::default(), Acc::default());
    for name in &names {
        let (c, n) = (chosen[name.as_str()], naive[name.as_str()]);
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} | {:.2} | {:.2} |",
            c.mase(),
            n.mase(),
            c.mase() / n.mase(),
            c.smape(),
            n.smape()
        );
        if name != "*" {
            all_c.add(c.mase(), c.smape());
            all_n.add(n.mase(), n.smape());
        }
    }
    println!(
        "| **mean over routes** | {:.3} | {:.3} | {:.3} | {:.2} | {:.2} |",
        all_c.mase(),
        all_n.mase(),
        all_c.mase() / all_n.mase(),
        all_c.smape(),
        all_n.smape()
    );
    println!();
    println!("flash crowd minutes only (scaled absolute error, mean over forecast minutes that fall in the crowd):");
    println!("| series | minutes | chosen | seasonal naive |");
    println!("|---|---:|---:|---:|");
    for name in &names {
        if let Some(&(c, n, k)) = crowd_err.get(name.as_str()) {
            println!("| {name} | {k} | {:.3} | {:.3} |", c / k, n / k);
        }
    }
    println!();
    println!("models chosen (series x origins): {models:?}");
}
