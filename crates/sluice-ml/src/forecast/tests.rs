//! Behaviour tests of model selection, robustness, intervals and validation.

use super::*;

/// Deterministic standard normal draws (xorshift64* and Box–Muller), so tests need no rand crate.
struct Noise(u64);

impl Noise {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// A daily shape with a night trough, in (0.4, 1.6).
fn daily(t: usize) -> f64 {
    1.0 + 0.6 * (2.0 * std::f64::consts::PI * (t % 24) as f64 / 24.0).sin()
}

fn hourly(horizon: usize) -> ForecastConfig {
    ForecastConfig {
        weekly_season: None,
        threads: 1,
        ..ForecastConfig::new(horizon, 24)
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn selection_picks_seasonal_naive_for_pure_seasonality_and_a_trend_model_for_trends() {
    let mut noise = Noise(7);
    let pure: Vec<f64> = (0..24 * 20).map(|t| 100.0 * daily(t)).collect();
    let trending: Vec<f64> = (0..24 * 20)
        .map(|t| (100.0 + 2.0 * t as f64) * daily(t) + noise.normal())
        .collect();
    // (name, history, expect seasonal naive)
    let cases: [(&str, &[f64], bool); 2] = [
        ("pure seasonal", &pure, true),
        ("trending", &trending, false),
    ];
    for (name, y, expect_snaive) in cases {
        let f = forecast(y, &hourly(24)).expect("valid input");
        assert_eq!(
            f.model == Model::Single(ModelKind::SeasonalNaive),
            expect_snaive,
            "{name}: chose {} ({:?})",
            f.model,
            f.backtest.candidates
        );
        assert!(f.backtest.mase <= f.backtest.seasonal_naive_mase, "{name}");
        if !expect_snaive {
            assert!(
                f.backtest.mase < 0.5 * f.backtest.seasonal_naive_mase,
                "{name}: {:?}",
                f.backtest
            );
            let n = y.len();
            for (h, v) in f.point.iter().enumerate() {
                let truth = (100.0 + 2.0 * (n + h) as f64) * daily(n + h);
                assert!(
                    (v - truth).abs() < 0.05 * truth,
                    "{name} h={h}: {v} vs {truth}"
                );
            }
        }
    }
}

#[test]
fn outages_and_flagged_floods_do_not_distort_the_forecast() {
    let n = 24 * 21;
    let mut noise = Noise(11);
    let clean: Vec<f64> = (0..n)
        .map(|t| 200.0 * daily(t) + 5.0 * noise.normal())
        .collect();
    let truth: Vec<f64> = (n..n + 24).map(|t| 200.0 * daily(t)).collect();
    let mut outage = clean.clone();
    outage[n - 40..n - 20].iter_mut().for_each(|v| *v = 0.0);
    let mut long_outage = clean.clone();
    long_outage[n - 80..n - 30]
        .iter_mut()
        .for_each(|v| *v = 0.0);
    let mut flood = clean.clone();
    let mut flags = vec![false; n];
    for t in n - 12..n {
        flood[t] *= 20.0;
        flags[t] = true;
    }
    // (name, history, flags)
    let cases: [(&str, &[f64], &[bool]); 4] = [
        ("clean", &clean, &[]),
        ("outage in the last two days", &outage, &[]),
        ("outage of two days", &long_outage, &[]),
        ("flagged flood at the end", &flood, &flags),
    ];
    for (name, y, flagged) in cases {
        let f = forecast_flagged(y, flagged, &hourly(24)).expect("valid input");
        let ratio = mean(&f.point) / mean(&truth);
        assert!(
            (0.9..1.1).contains(&ratio),
            "{name}: level ratio {ratio}, model {}",
            f.model
        );
        let shape_err = f
            .point
            .iter()
            .zip(&truth)
            .map(|(p, t)| (p - t).abs())
            .fold(0.0, f64::max);
        assert!(shape_err < 30.0, "{name}: max error {shape_err}");
        let upper = mean(&f.upper) / mean(&truth);
        assert!(upper < 1.3, "{name}: upper bound ratio {upper}");
    }
}

#[test]
fn an_unflagged_flood_is_learned_but_a_flagged_one_is_not() {
    let n = 24 * 21;
    let base: Vec<f64> = (0..n).map(|t| 100.0 * daily(t) + (t % 5) as f64).collect();
    let mut flood = base.clone();
    for v in &mut flood[n - 6..] {
        *v *= 30.0;
    }
    let flags: Vec<bool> = (0..n).map(|t| t >= n - 6).collect();
    let cfg = ForecastConfig {
        outage_min_run: 0,
        ..hourly(12)
    };
    let unflagged = forecast(&flood, &cfg).expect("valid");
    let flagged = forecast_flagged(&flood, &flags, &cfg).expect("valid");
    let reference = forecast(&base, &cfg).expect("valid");
    assert!(mean(&unflagged.point) > 1.5 * mean(&reference.point));
    let ratio = mean(&flagged.point) / mean(&reference.point);
    assert!((0.95..1.05).contains(&ratio), "ratio {ratio}");
    assert_eq!(flagged.cleaned_points, 6);
}

#[test]
fn intervals_cover_the_truth_at_about_the_nominal_rate() {
    let horizon = 12;
    let (mut inside, mut total) = (0usize, 0usize);
    for (level, seed) in [
        (0.9, 1u64),
        (0.9, 2),
        (0.9, 3),
        (0.8, 4),
        (0.8, 5),
        (0.8, 6),
    ] {
        let mut noise = Noise(seed * 7919);
        let n = 24 * 16;
        let y: Vec<f64> = (0..n + horizon)
            .map(|t| 500.0 * daily(t) + 20.0 * noise.normal())
            .collect();
        let cfg = ForecastConfig {
            interval_level: level,
            backtest_origins: 10,
            ..hourly(horizon)
        };
        let f = forecast(&y[..n], &cfg).expect("valid");
        let hits = (0..horizon)
            .filter(|&h| f.lower[h] <= y[n + h] && y[n + h] <= f.upper[h])
            .count();
        inside += hits;
        total += horizon;
        assert!(f.lower.iter().zip(&f.point).all(|(l, p)| l <= p));
        assert!(f.upper.iter().zip(&f.point).all(|(u, p)| u >= p));
    }
    // Nominal 85% on average over the runs.
    let rate = inside as f64 / total as f64;
    assert!((0.7..=0.98).contains(&rate), "coverage {rate}");
}

#[test]
fn pooled_batches_forecast_every_series() {
    let series: Vec<Vec<f64>> = [1.0, 10.0, 50.0]
        .iter()
        .map(|&s| {
            (0..24 * 15)
                .map(|t| s * daily(t) * (1.0 + 0.001 * t as f64))
                .collect()
        })
        .collect();
    let hs: Vec<History<'_>> = series.iter().map(|y| History::new(y)).collect();
    let cfg = ForecastConfig {
        threads: 2,
        ..hourly(6)
    };
    let out = forecast_many(&hs, &cfg).expect("valid");
    assert_eq!(out.len(), 3);
    for (f, y) in out.iter().zip(&series) {
        assert_eq!(f.point.len(), 6);
        let n = y.len();
        let truth = y[n - 24] * (1.0 + 0.001 * 24.0);
        assert!(
            (f.point[0] - truth).abs() < 0.05 * truth,
            "{} vs {truth}",
            f.point[0]
        );
        assert!(f
            .backtest
            .candidates
            .iter()
            .any(|c| c.model == Model::Single(ModelKind::PooledRidge)));
    }
}

#[test]
fn invalid_configuration_and_input_have_exact_messages() {
    let y: Vec<f64> = (0..200).map(|t| daily(t) * 10.0).collect();
    let ok = hourly(24);
    // (name, config, history, flags, expected message)
    let cases: Vec<(&str, ForecastConfig, usize, usize, &str)> = vec![
        (
            "zero horizon",
            ForecastConfig {
                horizon: 0,
                ..ok.clone()
            },
            200,
            0,
            "horizon must be at least 1",
        ),
        (
            "zero season",
            ForecastConfig {
                season: 0,
                ..ok.clone()
            },
            200,
            0,
            "season must be at least 1",
        ),
        (
            "weekly not longer",
            ForecastConfig {
                weekly_season: Some(24),
                ..ok.clone()
            },
            200,
            0,
            "weekly season 24 must be longer than the season 24",
        ),
        (
            "interval level",
            ForecastConfig {
                interval_level: 1.0,
                ..ok.clone()
            },
            200,
            0,
            "interval level must be strictly between 0 and 1, got 1",
        ),
        (
            "origins",
            ForecastConfig {
                backtest_origins: 0,
                ..ok.clone()
            },
            200,
            0,
            "backtest origins must be at least 1",
        ),
        (
            "step",
            ForecastConfig {
                backtest_step: Some(0),
                ..ok.clone()
            },
            200,
            0,
            "backtest step must be at least 1",
        ),
        (
            "candidates",
            ForecastConfig {
                candidates: vec![],
                ..ok.clone()
            },
            200,
            0,
            "no candidate models configured",
        ),
        (
            "too short",
            ok.clone(),
            71,
            0,
            "history has 71 points, need at least 72 (two seasons plus the horizon)",
        ),
        (
            "flags",
            ok.clone(),
            200,
            3,
            "flags have 3 entries for 200 values",
        ),
    ];
    for (name, cfg, len, flags, expect) in cases {
        let flagged = vec![false; flags];
        let got = forecast_flagged(&y[..len], &flagged, &cfg)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert_eq!(got, Err(expect.to_string()), "{name}");
    }
    let short = [1.0; 10];
    let err = forecast_many(&[History::new(&y), History::new(&short)], &ok)
        .map(|_| ())
        .map_err(|e| e.to_string());
    assert_eq!(
        err,
        Err(
            "series 1: history has 10 points, need at least 72 (two seasons plus the horizon)"
                .to_string()
        )
    );
}

#[test]
fn model_names_round_trip() {
    for kind in ModelKind::ALL {
        assert_eq!(kind.to_string().parse::<ModelKind>().ok(), Some(kind));
    }
    let cases: [(Model, &str); 2] = [
        (Model::Single(ModelKind::SeasonalNaive), "seasonal-naive"),
        (
            Model::Mean(vec![ModelKind::LocalRidge, ModelKind::PooledRidge]),
            "mean(local-ridge,pooled-ridge)",
        ),
    ];
    for (model, name) in cases {
        assert_eq!(model.to_string(), name);
    }
    assert_eq!(
        "arima".parse::<ModelKind>().map_err(|e| e.to_string()),
        Err("unknown model \"arima\"".to_string())
    );
}

#[test]
fn short_histories_use_fewer_backtest_origins() {
    let cfg = hourly(24);
    // (history length, expected origins)
    let cases = [(72, 1), (95, 1), (96, 2), (72 + 24 * 5, 6), (1000, 6)];
    for (n, expect) in cases {
        assert_eq!(cfg.origins_for(n), expect, "n={n}");
    }
}

#[test]
fn series_csv_round_trip_with_per_minute_defaults() {
    // Three days of per-minute traffic with a daily cycle, written as `timestamp,value` rows.
    let n = 3 * 1440;
    let mut noise = Noise(3);
    let mut csv = String::from("timestamp,value\n");
    for t in 0..n {
        let v = 50.0 * (1.0 + 0.5 * (2.0 * std::f64::consts::PI * t as f64 / 1440.0).sin())
            + 2.0 * noise.normal();
        csv.push_str(&format!("{},{v:.2}\n", 1_700_000_000 + 60 * t as i64));
    }
    let input = read_series_csv(csv.as_bytes()).expect("valid csv");
    let cfg = ForecastConfig {
        horizon: 5,
        backtest_origins: 2,
        threads: 1,
        ..ForecastConfig::default()
    };
    let f = forecast(&input.values, &cfg).expect("enough history");
    let mut out = Vec::new();
    write_series_forecast_csv(&mut out, &input, &f).expect("writes");
    let text = String::from_utf8(out).expect("utf8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0], "timestamp,value,lower,upper");
    let last = 1_700_000_000 + 60 * (n as i64 - 1);
    for (i, line) in lines[1..].iter().enumerate() {
        let fields: Vec<f64> = line
            .split(',')
            .map(|v| v.parse().expect("number"))
            .collect();
        assert_eq!(fields[0] as i64, last + 60 * (i as i64 + 1));
        assert!(fields[2] <= fields[1] && fields[1] <= fields[3], "{line}");
        assert!((fields[1] - 50.0).abs() < 8.0, "{line}");
    }
}
