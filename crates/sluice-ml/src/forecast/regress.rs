//! Direct multi-horizon ridge regressions on lagged values: a local one per series (lags plus
//! Fourier terms of the daily and weekly phase) and a pooled one trained across many series on
//! level-normalised windows.

use std::f64::consts::PI;

use super::linalg::{predict_row, Gram};

/// Lags (k ≥ 1 means `y[t − k]` for a forecast origin `t`) used by a regression.
///
/// When every period fits under `cap`, the whole last `max period` values are used. Otherwise the
/// last `recent` values plus, for each period `P` and step `h`, the same-phase lag `m·P − h + 1`
/// (smallest `m ≥ 1` making it positive), so a 1440- or 10080-step season costs `horizon` lags.
pub(crate) fn lag_set(horizon: usize, periods: &[usize], cap: usize, recent: usize) -> Vec<usize> {
    let longest = periods.iter().copied().max().unwrap_or(1).max(1);
    if longest <= cap {
        return (1..=longest).collect();
    }
    let mut lags: Vec<usize> = (1..=recent.max(1)).collect();
    for &p in periods {
        if p == 0 {
            continue;
        }
        for h in 1..=horizon {
            lags.push(h.div_ceil(p) * p + 1 - h);
        }
    }
    lags.sort_unstable();
    lags.dedup();
    lags
}

/// Mean of the last `window` values before `t` (falling back to the mean absolute value over
/// `fallback` values, then 1) so windows of different series share one scale.
fn level(y: &[f64], t: usize, window: usize, fallback: usize) -> f64 {
    let w = window.min(t).max(1);
    let m = y[t - w..t].iter().sum::<f64>() / w as f64;
    if m > 1e-9 {
        return m;
    }
    let f = fallback.min(t).max(1);
    let a = y[t - f..t].iter().map(|v| v.abs()).sum::<f64>() / f as f64;
    if a > 1e-9 {
        a
    } else {
        1.0
    }
}

/// Ratio floor before taking logs, so zeros (idle routes) stay finite.
const LOG_FLOOR: f64 = 1e-3;

/// Forward transform of a level-normalised value.
fn fwd(r: f64, log: bool) -> f64 {
    if log {
        r.max(LOG_FLOOR).ln()
    } else {
        r
    }
}

/// Inverse of [`fwd`] (capped so one wild extrapolation cannot overflow).
fn inv(v: f64, log: bool) -> f64 {
    if log {
        v.min(5.0).exp()
    } else {
        v
    }
}

/// A pooled direct ridge regression from the normalised last values to the next `horizon` values.
#[derive(Debug, Clone)]
pub(crate) struct PooledModel {
    lags: Vec<usize>,
    horizon: usize,
    level_window: usize,
    log: bool,
    coef: Vec<f64>,
}

/// Settings for [`PooledModel::fit`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct PooledSpec {
    pub horizon: usize,
    pub level_window: usize,
    pub lambda: f64,
    pub max_windows_per_series: usize,
    pub threads: usize,
    /// Regress log ratios to the level instead of ratios (multiplicative effects become additive).
    pub log: bool,
}

impl PooledModel {
    pub(crate) fn max_lag(&self) -> usize {
        self.lags.last().copied().unwrap_or(1)
    }

    /// Fits on every window of every series (thinned to `max_windows_per_series`); `None` when
    /// there are fewer windows than features.
    pub(crate) fn fit(series: &[&[f64]], lags: Vec<usize>, spec: PooledSpec) -> Option<Self> {
        let max_lag = *lags.last()?;
        let h = spec.horizon;
        let p = lags.len() + 1;
        let threads = spec.threads.max(1).min(series.len().max(1));
        let chunk = series.len().div_ceil(threads).max(1);
        let lags_ref = &lags;
        let grams: Vec<Gram> = std::thread::scope(|s| {
            let handles: Vec<_> = series
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        let mut g = Gram::new(p, h);
                        let mut x = vec![0.0; p];
                        let mut yv = vec![0.0; h];
                        for y in part {
                            let n = y.len();
                            if n < max_lag + h {
                                continue;
                            }
                            let count = n - max_lag - h + 1;
                            let stride = count.div_ceil(spec.max_windows_per_series.max(1)).max(1);
                            // Align the thinned windows so the latest one is always included.
                            let mut t = n - h;
                            loop {
                                let l = level(y, t, spec.level_window, max_lag);
                                for (xi, &k) in x.iter_mut().zip(lags_ref) {
                                    *xi = fwd(y[t - k] / l, spec.log);
                                }
                                x[p - 1] = 1.0;
                                for (o, &v) in yv.iter_mut().zip(&y[t..t + h]) {
                                    *o = fwd(v / l, spec.log);
                                }
                                g.add(&x, &yv);
                                if t < max_lag + stride {
                                    break;
                                }
                                t -= stride;
                            }
                        }
                        g
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|hd| hd.join().expect("pooled fit worker panicked"))
                .collect()
        });
        let mut total = Gram::new(p, h);
        for g in &grams {
            total.merge(g);
        }
        if total.rows() < p {
            return None;
        }
        let coef = total.solve(spec.lambda, 1)?;
        Some(PooledModel {
            lags,
            horizon: h,
            level_window: spec.level_window,
            log: spec.log,
            coef,
        })
    }

    /// Forecasts the `horizon` values after `y`; `None` when `y` is shorter than the longest lag.
    pub(crate) fn predict(&self, y: &[f64]) -> Option<Vec<f64>> {
        let n = y.len();
        let max_lag = self.max_lag();
        if n < max_lag {
            return None;
        }
        let l = level(y, n, self.level_window, max_lag);
        let mut x: Vec<f64> = self
            .lags
            .iter()
            .map(|&k| fwd(y[n - k] / l, self.log))
            .collect();
        x.push(1.0);
        Some(
            predict_row(&x, &self.coef, self.horizon)
                .into_iter()
                .map(|v| inv(v, self.log) * l)
                .collect(),
        )
    }
}

/// Fourier harmonics per period in the local regression.
const HARMONICS: usize = 3;

/// Most windows one local fit uses.
const LOCAL_MAX_WINDOWS: usize = 3000;

/// Shortest history the local regression accepts.
pub(crate) fn local_min_len(lags: &[usize], periods: &[usize], horizon: usize) -> usize {
    let p = lags.len() + 2 * HARMONICS * periods.len() + 1;
    lags.last().copied().unwrap_or(1) + horizon + (2 * p).max(48)
}

/// Fits a direct multi-horizon ridge regression on this series alone (lags scaled by the series'
/// mean absolute value, Fourier terms of the origin's phase in each period, an intercept) and
/// forecasts the `horizon` values after `y`. With `log`, it regresses the logs of a positive
/// series (`None` when a value is not positive).
pub(crate) fn local_ridge(
    y: &[f64],
    lags: &[usize],
    periods: &[usize],
    horizon: usize,
    lambda: f64,
    log: bool,
) -> Option<Vec<f64>> {
    let n = y.len();
    if n < local_min_len(lags, periods, horizon) {
        return None;
    }
    if log {
        if y.iter().any(|&v| v <= 0.0) {
            return None;
        }
        let ly: Vec<f64> = y.iter().map(|v| v.ln()).collect();
        let f = local_ridge_raw(&ly, lags, periods, horizon, lambda)?;
        return Some(f.into_iter().map(|v| v.min(700.0).exp()).collect());
    }
    local_ridge_raw(y, lags, periods, horizon, lambda)
}

fn local_ridge_raw(
    y: &[f64],
    lags: &[usize],
    periods: &[usize],
    horizon: usize,
    lambda: f64,
) -> Option<Vec<f64>> {
    let n = y.len();
    let max_lag = *lags.last()?;
    let scale = {
        let m = y.iter().map(|v| v.abs()).sum::<f64>() / n as f64;
        if m > 1e-9 {
            m
        } else {
            1.0
        }
    };
    let fourier = 2 * HARMONICS * periods.len();
    let p = lags.len() + fourier + 1;
    let features = |t: usize, x: &mut [f64]| {
        for (xi, &k) in x.iter_mut().zip(lags) {
            *xi = y[t - k] / scale;
        }
        let mut i = lags.len();
        for &per in periods {
            let phase = 2.0 * PI * (t % per) as f64 / per as f64;
            for j in 1..=HARMONICS {
                let a = phase * j as f64;
                x[i] = a.sin();
                x[i + 1] = a.cos();
                i += 2;
            }
        }
        x[p - 1] = 1.0;
    };
    let mut g = Gram::new(p, horizon);
    let mut x = vec![0.0; p];
    let mut target = vec![0.0; horizon];
    // Long per-minute histories are thinned to at most LOCAL_MAX_WINDOWS windows, newest kept.
    let count = n - horizon - max_lag + 1;
    let stride = count.div_ceil(LOCAL_MAX_WINDOWS).max(1);
    for t in (max_lag..=n - horizon).rev().step_by(stride) {
        features(t, &mut x);
        for (o, &v) in target.iter_mut().zip(&y[t..t + horizon]) {
            *o = v / scale;
        }
        g.add(&x, &target);
    }
    let coef = g.solve(lambda, 1)?;
    features(n, &mut x);
    Some(
        predict_row(&x, &coef, horizon)
            .into_iter()
            .map(|v| v * scale)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_sets_are_contiguous_under_the_cap_and_sparse_above() {
        // (horizon, periods, cap, recent, expected)
        type Case<'a> = (usize, &'a [usize], usize, usize, Vec<usize>);
        let cases: &[Case] = &[
            (2, &[4], 10, 2, vec![1, 2, 3, 4]),
            // period 6 over cap: recent 1..=2, same-phase lags 6, 5 for h = 1, 2
            (2, &[6], 4, 2, vec![1, 2, 5, 6]),
            // horizon longer than the period wraps to the previous cycle
            (5, &[3], 2, 1, vec![1, 2, 3]),
        ];
        for (h, periods, cap, recent, expect) in cases {
            assert_eq!(&lag_set(*h, periods, *cap, *recent), expect, "{periods:?}");
        }
    }

    #[test]
    fn pooled_model_learns_a_shared_shape_across_scales() {
        let shape = [1.0, 2.0, 3.0, 2.0];
        let series: Vec<Vec<f64>> = [1.0, 10.0, 100.0]
            .iter()
            .map(|&s| (0..80).map(|t| s * shape[t % 4]).collect())
            .collect();
        let refs: Vec<&[f64]> = series.iter().map(|v| v.as_slice()).collect();
        let spec = PooledSpec {
            horizon: 6,
            level_window: 4,
            lambda: 1e-6,
            max_windows_per_series: 1000,
            threads: 2,
            log: false,
        };
        let m = PooledModel::fit(&refs, lag_set(6, &[4], 8, 4), spec).expect("fits");
        let y: Vec<f64> = (0..40).map(|t| 7.0 * shape[t % 4]).collect();
        let f = m.predict(&y).expect("long enough");
        for (h, v) in f.iter().enumerate() {
            let truth = 7.0 * shape[(40 + h) % 4];
            assert!((v - truth).abs() < 1e-3 * truth, "h={h}: {v} vs {truth}");
        }
    }

    #[test]
    fn local_ridge_extrapolates_a_seasonal_trend() {
        let y: Vec<f64> = (0..400)
            .map(|t| 50.0 + 0.2 * t as f64 + 10.0 * (2.0 * PI * (t % 24) as f64 / 24.0).sin())
            .collect();
        let lags = lag_set(12, &[24], 24, 24);
        for log in [false, true] {
            let f = local_ridge(&y, &lags, &[24], 12, 1e-6, log).expect("long enough");
            for (h, v) in f.iter().enumerate() {
                let t = 400 + h;
                let truth =
                    50.0 + 0.2 * t as f64 + 10.0 * (2.0 * PI * (t % 24) as f64 / 24.0).sin();
                assert!((v - truth).abs() < 1.0, "log={log} h={h}: {v} vs {truth}");
            }
        }
    }
}
