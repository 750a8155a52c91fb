//! Learned capacity: the load at which a route's latency starts to climb (the knee of latency vs
//! load), from its per-minute rollups, returned with the evidence it rests on.
//!
//! Minutes are bucketed by load (equal widths between the lowest and highest load seen); buckets
//! with too few minutes are dropped. A hinge `latency = base + slope · max(0, load − knee)` is
//! fitted to the bucket means by weighted least squares for every candidate knee (a bucket's mean
//! load). The knee is accepted only when the latency really climbs (the fitted latency at the
//! highest load is at least `rise_factor` times the base), the hinge explains the buckets clearly
//! better than one straight line (so a latency that grows steadily from zero load has no knee), and
//! there are flat buckets before it. Otherwise there is no knee: the data never reached capacity.

use serde::Serialize;

/// One minute of a route: load and mean latency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadSample {
    /// Requests per second over the minute.
    pub rps: f64,
    /// Mean latency over the minute, in milliseconds.
    pub latency_ms: f64,
}

/// Settings of the knee search.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KneeConfig {
    /// Load buckets (equal widths).
    pub buckets: usize,
    /// Minutes a bucket needs to count.
    pub min_minutes: usize,
    /// Buckets needed in all (and at least two on each side of the knee).
    pub min_buckets: usize,
    /// Latency at the highest load over the base that counts as climbing.
    pub rise_factor: f64,
    /// Largest ratio of the hinge's squared error to a straight line's.
    pub max_sse_ratio: f64,
}

impl Default for KneeConfig {
    fn default() -> Self {
        KneeConfig {
            buckets: 20,
            min_minutes: 5,
            min_buckets: 6,
            rise_factor: 1.5,
            max_sse_ratio: 0.5,
        }
    }
}

/// Minutes whose load fell in `[load_from, load_to)` requests per second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LoadBucket {
    pub load_from: f64,
    pub load_to: f64,
    pub minutes: usize,
    pub mean_rps: f64,
    pub mean_latency_ms: f64,
}

/// The hinge fitted to the buckets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HingeFit {
    pub base_latency_ms: f64,
    pub knee_rps: f64,
    /// Latency added per request per second above the knee.
    pub slope_ms_per_rps: f64,
    /// Weighted squared error of the hinge and of the best straight line.
    pub sse: f64,
    pub line_sse: f64,
}

/// A learned capacity and its evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Knee {
    /// Capacity in requests per second: the load where latency starts to climb.
    pub capacity_rps: f64,
    pub fit: HingeFit,
    pub buckets: Vec<LoadBucket>,
    /// Minutes used (with traffic and a latency).
    pub minutes: usize,
}

/// Buckets of the usable samples (positive load, finite latency); empty when there are none.
pub fn load_buckets(samples: &[LoadSample], cfg: &KneeConfig) -> Vec<LoadBucket> {
    let usable: Vec<&LoadSample> = samples
        .iter()
        .filter(|s| s.rps.is_finite() && s.rps > 0.0 && s.latency_ms.is_finite())
        .collect();
    let n = cfg.buckets.max(1);
    let Some(lo) = usable.iter().map(|s| s.rps).reduce(f64::min) else {
        return Vec::new();
    };
    let hi = usable.iter().map(|s| s.rps).fold(lo, f64::max);
    let width = ((hi - lo) / n as f64).max(f64::MIN_POSITIVE);
    let mut acc = vec![(0usize, 0.0f64, 0.0f64); n];
    for s in usable {
        let i = (((s.rps - lo) / width) as usize).min(n - 1);
        acc[i].0 += 1;
        acc[i].1 += s.rps;
        acc[i].2 += s.latency_ms;
    }
    acc.iter()
        .enumerate()
        .filter(|(_, a)| a.0 >= cfg.min_minutes.max(1))
        .map(|(i, &(k, r, l))| LoadBucket {
            load_from: lo + i as f64 * width,
            load_to: lo + (i + 1) as f64 * width,
            minutes: k,
            mean_rps: r / k as f64,
            mean_latency_ms: l / k as f64,
        })
        .collect()
}

/// Weighted least squares of `y = a + b·x`; returns (a, b, sse).
fn line_fit(pts: &[(f64, f64, f64)]) -> (f64, f64, f64) {
    let sw: f64 = pts.iter().map(|p| p.2).sum();
    let mx = pts.iter().map(|p| p.2 * p.0).sum::<f64>() / sw;
    let my = pts.iter().map(|p| p.2 * p.1).sum::<f64>() / sw;
    let sxx: f64 = pts.iter().map(|p| p.2 * (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pts.iter().map(|p| p.2 * (p.0 - mx) * (p.1 - my)).sum();
    let b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let a = my - b * mx;
    let sse = pts.iter().map(|p| p.2 * (p.1 - a - b * p.0).powi(2)).sum();
    (a, b, sse)
}

/// The knee of latency vs load, or `None` when the data never shows one.
pub fn learn_capacity(samples: &[LoadSample], cfg: &KneeConfig) -> Option<Knee> {
    let buckets = load_buckets(samples, cfg);
    if buckets.len() < cfg.min_buckets.max(4) {
        return None;
    }
    let pts: Vec<(f64, f64, f64)> = buckets
        .iter()
        .map(|b| (b.mean_rps, b.mean_latency_ms, b.minutes as f64))
        .collect();
    let (_, _, line_sse) = line_fit(&pts);
    let mut best: Option<HingeFit> = None;
    // At least two buckets on each side of the knee.
    for k in pts[1..pts.len() - 2].iter().map(|p| p.0) {
        let hinge: Vec<(f64, f64, f64)> = pts
            .iter()
            .map(|&(x, y, w)| ((x - k).max(0.0), y, w))
            .collect();
        let (a, b, sse) = line_fit(&hinge);
        if b <= 0.0 {
            continue;
        }
        if best.is_none_or(|f| sse < f.sse) {
            best = Some(HingeFit {
                base_latency_ms: a,
                knee_rps: k,
                slope_ms_per_rps: b,
                sse,
                line_sse,
            });
        }
    }
    let fit = best?;
    let top = pts.last().map_or(0.0, |p| p.0);
    let at_top = fit.base_latency_ms + fit.slope_ms_per_rps * (top - fit.knee_rps);
    let climbs = fit.base_latency_ms > 0.0 && at_top >= cfg.rise_factor * fit.base_latency_ms;
    let beats_line = fit.sse <= cfg.max_sse_ratio * line_sse;
    (climbs && beats_line).then(|| Knee {
        capacity_rps: fit.knee_rps,
        fit,
        minutes: buckets.iter().map(|b| b.minutes).sum(),
        buckets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loads spread evenly over `0.5..max` rps with a deterministic wobble on latency.
    fn samples(max: f64, latency: impl Fn(f64) -> f64) -> Vec<LoadSample> {
        (0..2000)
            .map(|i| {
                let rps = 0.5 + (max - 0.5) * ((i * 7919) % 2000) as f64 / 2000.0;
                let wobble = 1.0 + 0.05 * ((i as f64) * 1.7).sin();
                LoadSample {
                    rps,
                    latency_ms: latency(rps) * wobble,
                }
            })
            .collect()
    }

    #[test]
    fn finds_a_known_knee() {
        let s = samples(100.0, |r| 20.0 + 1.5 * (r - 60.0).max(0.0));
        let k = learn_capacity(&s, &KneeConfig::default()).expect("knee");
        assert!(
            (k.capacity_rps - 60.0).abs() <= 5.0,
            "knee at {}",
            k.capacity_rps
        );
        assert!((k.fit.base_latency_ms - 20.0).abs() < 2.0, "{:?}", k.fit);
        assert!(k.fit.sse < 0.5 * k.fit.line_sse);
        assert_eq!(k.buckets.len(), 20);
        assert_eq!(k.minutes, 2000);
    }

    #[test]
    fn flat_latency_has_no_knee() {
        let s = samples(100.0, |_| 20.0);
        assert_eq!(learn_capacity(&s, &KneeConfig::default()), None);
    }

    #[test]
    fn steady_linear_growth_has_no_knee() {
        let s = samples(100.0, |r| 5.0 + 0.5 * r);
        assert_eq!(learn_capacity(&s, &KneeConfig::default()), None);
    }

    #[test]
    fn a_knee_beyond_the_loads_seen_is_not_found() {
        // The knee is at 200 rps but traffic never went above 100.
        let s = samples(100.0, |r| 20.0 + 1.5 * (r - 200.0).max(0.0));
        assert_eq!(learn_capacity(&s, &KneeConfig::default()), None);
    }

    #[test]
    fn too_little_data_has_no_knee() {
        let s: Vec<LoadSample> = samples(100.0, |r| 20.0 + 1.5 * (r - 60.0).max(0.0))
            .into_iter()
            .take(20)
            .collect();
        assert_eq!(learn_capacity(&s, &KneeConfig::default()), None);
        assert!(learn_capacity(&[], &KneeConfig::default()).is_none());
    }

    #[test]
    fn idle_minutes_and_missing_latency_are_ignored() {
        let mut s = samples(100.0, |r| 20.0 + 1.5 * (r - 60.0).max(0.0));
        s.extend((0..500).map(|_| LoadSample {
            rps: 0.0,
            latency_ms: 1000.0,
        }));
        s.extend((0..500).map(|_| LoadSample {
            rps: 50.0,
            latency_ms: f64::NAN,
        }));
        let k = learn_capacity(&s, &KneeConfig::default()).expect("knee");
        assert_eq!(k.minutes, 2000);
    }
}
