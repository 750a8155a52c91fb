//! Local univariate models: seasonal naive and Theta on a robustly seasonally adjusted series.

/// Repeats the last `period` values: `f[h] = y[n − period + (h mod period)]`.
pub(crate) fn seasonal_naive(y: &[f64], period: usize, horizon: usize) -> Option<Vec<f64>> {
    let n = y.len();
    if period == 0 || n < period {
        return None;
    }
    Some((0..horizon).map(|h| y[n - period + h % period]).collect())
}

/// Mean absolute error of the in-sample seasonal naive forecast: the MASE scale.
pub(crate) fn snaive_scale(y: &[f64], period: usize) -> f64 {
    let n = y.len();
    if n <= period {
        return f64::NAN;
    }
    let s: f64 = (period..n).map(|t| (y[t] - y[t - period]).abs()).sum();
    s / (n - period) as f64
}

/// A seasonal index aligned with absolute positions: the factor for position `t` is `idx[t % period]`.
#[derive(Debug, Clone)]
pub(crate) struct SeasonalIndex {
    idx: Vec<f64>,
    multiplicative: bool,
}

impl SeasonalIndex {
    /// Robust classical decomposition over the last `max_cycles` cycles: a centred moving average
    /// gives the local level, and each phase's index is the median of its ratios (or differences
    /// when the series has non-positive values) to that level.
    pub(crate) fn fit(y: &[f64], period: usize, max_cycles: usize) -> Option<Self> {
        let n = y.len();
        if period < 2 || n < 2 * period {
            return None;
        }
        let start = n.saturating_sub(max_cycles * period);
        let multiplicative = y[start..].iter().all(|&v| v > 0.0);
        let half = period / 2;
        let even = period.is_multiple_of(2);
        let mut per_phase: Vec<Vec<f64>> = vec![Vec::new(); period];
        // Prefix sums for the moving average.
        let mut cum = vec![0.0; n + 1];
        for t in 0..n {
            cum[t + 1] = cum[t] + y[t];
        }
        for t in (start + half).max(half)..n.saturating_sub(half) {
            let level = if even {
                if t + half >= n {
                    continue;
                }
                // 2×P moving average: half weight on the two ends.
                let inner = cum[t + half] - cum[t - half + 1];
                (inner + 0.5 * (y[t - half] + y[t + half])) / period as f64
            } else {
                (cum[t + half + 1] - cum[t - half]) / period as f64
            };
            let v = if multiplicative {
                if level <= 0.0 {
                    continue;
                }
                y[t] / level
            } else {
                y[t] - level
            };
            per_phase[t % period].push(v);
        }
        let mut idx = Vec::with_capacity(period);
        for ratios in &mut per_phase {
            if ratios.is_empty() {
                return None;
            }
            idx.push(median(ratios));
        }
        let mean = idx.iter().sum::<f64>() / period as f64;
        if multiplicative {
            if mean <= 0.0 {
                return None;
            }
            idx.iter_mut().for_each(|v| *v /= mean);
        } else {
            idx.iter_mut().for_each(|v| *v -= mean);
        }
        Some(SeasonalIndex {
            idx,
            multiplicative,
        })
    }

    pub(crate) fn adjust(&self, t: usize, v: f64) -> f64 {
        let f = self.idx[t % self.idx.len()];
        if self.multiplicative {
            v / f.max(1e-9)
        } else {
            v - f
        }
    }

    pub(crate) fn restore(&self, t: usize, v: f64) -> f64 {
        let f = self.idx[t % self.idx.len()];
        if self.multiplicative {
            v * f
        } else {
            v + f
        }
    }
}

/// The standard Theta method (SES with half the linear-trend drift, Hyndman & Billah 2003) on the
/// series seasonally adjusted with period `period`.
pub(crate) fn seasonal_theta(y: &[f64], period: usize, horizon: usize) -> Option<Vec<f64>> {
    let n = y.len();
    if period < 2 {
        return theta(y, horizon);
    }
    let si = SeasonalIndex::fit(y, period, 8)?;
    let d: Vec<f64> = y
        .iter()
        .enumerate()
        .map(|(t, &v)| si.adjust(t, v))
        .collect();
    let f = theta(&d, horizon)?;
    Some(
        f.iter()
            .enumerate()
            .map(|(h, &v)| si.restore(n + h, v))
            .collect(),
    )
}

fn theta(d: &[f64], horizon: usize) -> Option<Vec<f64>> {
    let n = d.len();
    if n < 3 {
        return None;
    }
    let (alpha, level) = fit_ses(d);
    // Drift: half the slope of the least-squares line through the series.
    let nf = n as f64;
    let tbar = (nf - 1.0) / 2.0;
    let ybar = d.iter().sum::<f64>() / nf;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (t, &v) in d.iter().enumerate() {
        let dt = t as f64 - tbar;
        sxy += dt * (v - ybar);
        sxx += dt * dt;
    }
    let b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let decay = (1.0 - alpha).powi(n as i32);
    Some(
        (1..=horizon)
            .map(|h| level + 0.5 * b * ((h as f64 - 1.0) + 1.0 / alpha - decay / alpha))
            .collect(),
    )
}

/// Simple exponential smoothing with the smoothing weight chosen by one-step squared error over a
/// grid refined once; returns (alpha, final level).
fn fit_ses(d: &[f64]) -> (f64, f64) {
    let sse = |alpha: f64| -> (f64, f64) {
        let mut level = d[0];
        let mut e2 = 0.0;
        for &v in &d[1..] {
            let e = v - level;
            e2 += e * e;
            level += alpha * e;
        }
        (e2, level)
    };
    let mut best = (f64::INFINITY, 0.5, d[d.len() - 1]);
    for i in 1..=20 {
        let a = i as f64 * 0.05;
        let (e, l) = sse(a);
        if e < best.0 {
            best = (e, a, l);
        }
    }
    let centre = best.1;
    for i in -4..=4 {
        let a = (centre + i as f64 * 0.01).clamp(0.01, 1.0);
        let (e, l) = sse(a);
        if e < best.0 {
            best = (e, a, l);
        }
    }
    (best.1, best.2)
}

/// Median of a slice (reordered in place); NaN for an empty slice.
pub(crate) fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seasonal_naive_repeats_the_last_season() {
        // (history, period, horizon, expected)
        type Case<'a> = (&'a [f64], usize, usize, Option<&'a [f64]>);
        let cases: &[Case] = &[
            (
                &[1.0, 2.0, 3.0, 4.0],
                2,
                5,
                Some(&[3.0, 4.0, 3.0, 4.0, 3.0]),
            ),
            (&[1.0, 2.0, 3.0], 1, 2, Some(&[3.0, 3.0])),
            (&[1.0], 2, 2, None),
        ];
        for (y, p, h, expect) in cases {
            assert_eq!(seasonal_naive(y, *p, *h).as_deref(), *expect, "{y:?}");
        }
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        let cases: &[(&[f64], f64)] = &[(&[3.0, 1.0, 2.0], 2.0), (&[4.0, 1.0, 2.0, 3.0], 2.5)];
        for (v, expect) in cases {
            assert_eq!(median(&mut v.to_vec()), *expect);
        }
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn theta_follows_a_seasonal_trend() {
        let period = 24;
        let shape =
            |t: usize| 1.0 + 0.5 * (2.0 * std::f64::consts::PI * (t % period) as f64 / 24.0).sin();
        let y: Vec<f64> = (0..480)
            .map(|t| (100.0 + 0.5 * t as f64) * shape(t))
            .collect();
        let f = seasonal_theta(&y, period, 24).expect("enough data");
        for (h, v) in f.iter().enumerate() {
            let t = 480 + h;
            let truth = (100.0 + 0.5 * t as f64) * shape(t);
            assert!((v - truth).abs() / truth < 0.05, "h={h}: {v} vs {truth}");
        }
    }
}
