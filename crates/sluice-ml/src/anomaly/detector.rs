//! The streaming series detector: records of a few causal features, scored by how far they leave
//! everything seen before, with repeated alarms suppressed.
//!
//! For each point `x_t` (using rows `<= t` only) the detector derives six features:
//!
//! | feature            | definition                                                         |
//! |--------------------|--------------------------------------------------------------------|
//! | value              | `x_t`                                                              |
//! | change             | `|x_t - x_{t-1}|`                                                  |
//! | short mean         | mean of the last `short_window` values                             |
//! | long mean          | mean of the last `long_window` values                              |
//! | seasonal residual  | `x_t` minus the median of the same time of day on up to 3 past days |
//! | seasonal mean      | mean of the last `seasonal_window` seasonal residuals              |
//!
//! A feature value is a *record* when it lies outside the range of every earlier value of the
//! same feature by more than `tolerance` times that range (Numenta's "spatial anomaly" rule,
//! applied to derived features too). A record of the value itself scores 1; a record of another
//! feature scores `0.5 + 0.5 * excess / (excess + range)`, in [0.5, 1). Everything else scores 0.
//!
//! The first `warmup` points only teach the ranges. Points per day come from the median of the
//! first 31 sampling intervals; series sampled more coarsely than twice a day have no seasonal
//! features.
//!
//! Alarm suppression: NAB credits only the first detection in a window and charges every other
//! detection outside windows, so a score is reported only when it exceeds every score of the
//! previous `rest_period` points; otherwise 0. This needs no threshold: whatever threshold the
//! caller picks, a long excursion crosses it once.

use std::collections::VecDeque;

use sluice_core::Timestamp;

use super::csv::SeriesPoint;

/// Hyper-parameters of [`SeriesDetector`]. None depends on the series length, name or labels.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesDetectorConfig {
    /// Points of pure learning at the start, scored 0. Default 150 (NAB's probation is 15% of a
    /// file, at least 169 points on its shortest file).
    pub warmup: usize,
    /// How far beyond the seen range, as a fraction of it, a value must lie to be a record.
    /// Default 0.05, Numenta's spatial tolerance.
    pub tolerance: f64,
    /// Values in the short rolling mean. Default 10.
    pub short_window: usize,
    /// Values in the long rolling mean. Default 50.
    pub long_window: usize,
    /// Seasonal residuals in their rolling mean. Default 5.
    pub seasonal_window: usize,
    /// Points after a score during which only a higher score is reported. Default 30, as in
    /// CAD OSE.
    pub rest_period: usize,
}

impl Default for SeriesDetectorConfig {
    fn default() -> Self {
        SeriesDetectorConfig {
            warmup: 150,
            tolerance: 0.05,
            short_window: 10,
            long_window: 50,
            seasonal_window: 5,
            rest_period: 30,
        }
    }
}

/// Causal anomaly scorer for one univariate series. Feed points in time order.
#[derive(Clone, Debug)]
pub struct SeriesDetector {
    cfg: SeriesDetectorConfig,
    seen: usize,
    last_value: Option<f64>,
    short: Window,
    long: Window,
    seasonal: Window,
    last_secs: Option<i64>,
    intervals: Vec<i64>,
    period: Option<usize>,
    past: VecDeque<f64>,
    records: [Record; Feature::COUNT],
    recent_scores: VecDeque<f64>,
}

#[derive(Clone, Copy)]
enum Feature {
    Value,
    Change,
    ShortMean,
    LongMean,
    SeasonalResidual,
    SeasonalMean,
}

impl Feature {
    const COUNT: usize = 6;
}

impl SeriesDetector {
    pub fn new(cfg: SeriesDetectorConfig) -> Self {
        SeriesDetector {
            seen: 0,
            last_value: None,
            short: Window::new(cfg.short_window),
            long: Window::new(cfg.long_window),
            seasonal: Window::new(cfg.seasonal_window),
            last_secs: None,
            intervals: Vec::new(),
            period: None,
            past: VecDeque::new(),
            records: Default::default(),
            recent_scores: VecDeque::new(),
            cfg,
        }
    }

    pub fn config(&self) -> &SeriesDetectorConfig {
        &self.cfg
    }

    /// Score the next point; the result is in [0, 1]. A missing (non-finite) value scores 0 and
    /// teaches nothing, though it still counts as a sample for the time-of-day alignment.
    pub fn update(&mut self, ts: Timestamp, value: f64) -> f64 {
        self.observe_time(ts);
        let residual = self.seasonal_residual(value);
        if !value.is_finite() {
            self.remember_score(0.0);
            return 0.0;
        }
        self.seen += 1;
        let change = self
            .last_value
            .replace(value)
            .map(|last| (value - last).abs());
        self.short.push(value);
        self.long.push(value);
        let seasonal_mean = residual.map(|r| {
            self.seasonal.push(r);
            self.seasonal.mean()
        });

        let features = [
            (Feature::Value, Some(value)),
            (Feature::Change, change),
            (Feature::ShortMean, Some(self.short.mean())),
            (Feature::LongMean, Some(self.long.mean())),
            (Feature::SeasonalResidual, residual),
            (Feature::SeasonalMean, seasonal_mean),
        ];
        let learning = self.seen <= self.cfg.warmup;
        // Features of a perfectly regular series vary only by rounding noise; a range below a
        // millionth of the value range is not evidence of anything.
        let value_record = &self.records[Feature::Value as usize];
        let floor = 1e-6 * (value_record.max - value_record.min).max(0.0);
        let mut score = 0.0f64;
        for (feature, x) in features {
            let Some(x) = x else { continue };
            let record = &mut self.records[feature as usize];
            let excess = if learning {
                None
            } else {
                record.excess(x, self.cfg.tolerance, floor, self.cfg.warmup)
            };
            record.learn(x);
            if let Some((excess, range)) = excess {
                let s = match feature {
                    Feature::Value => 1.0,
                    _ => 0.5 + 0.5 * excess / (excess + range),
                };
                score = score.max(s);
            }
        }
        let score = if score.is_finite() {
            score.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let reported = if self.recent_scores.iter().all(|&s| score > s) {
            score
        } else {
            0.0
        };
        self.remember_score(score);
        reported
    }

    fn remember_score(&mut self, score: f64) {
        if self.cfg.rest_period == 0 {
            return;
        }
        if self.recent_scores.len() == self.cfg.rest_period {
            self.recent_scores.pop_front();
        }
        self.recent_scores.push_back(score);
    }

    /// Learn the sampling interval from the first timestamps and derive the points per day.
    fn observe_time(&mut self, ts: Timestamp) {
        const SAMPLES: usize = 31;
        let secs = ts.micros().div_euclid(1_000_000);
        let Some(last) = self.last_secs.replace(secs) else {
            return;
        };
        if self.period.is_some() || secs <= last || self.intervals.len() >= SAMPLES {
            return;
        }
        self.intervals.push(secs - last);
        if self.intervals.len() == SAMPLES {
            self.intervals.sort_unstable();
            let per_day = (86_400.0 / self.intervals[SAMPLES / 2] as f64).round();
            self.period = (2.0..=5000.0)
                .contains(&per_day)
                .then_some(per_day as usize);
        }
    }

    /// Value minus the median of the same phase on up to three previous days (missing values
    /// skipped); `None` until a day is known. Every value, finite or not, is remembered.
    fn seasonal_residual(&mut self, value: f64) -> Option<f64> {
        let period = self.period?;
        let n = self.past.len();
        let residual = if value.is_finite() && n >= period {
            let mut same = [f64::NAN; 3];
            let mut k = 0;
            for day in 1..=3 {
                if day * period <= n {
                    let v = self.past[n - day * period];
                    if v.is_finite() {
                        same[k] = v;
                        k += 1;
                    }
                }
            }
            let same = &mut same[..k];
            same.sort_by(f64::total_cmp);
            same.get(k / 2).map(|m| value - m)
        } else {
            None
        };
        if n == 3 * period {
            self.past.pop_front();
        }
        self.past.push_back(value);
        residual
    }
}

/// Running range of one feature.
#[derive(Clone, Debug)]
struct Record {
    min: f64,
    max: f64,
    count: usize,
}

impl Default for Record {
    fn default() -> Self {
        Record {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            count: 0,
        }
    }
}

impl Record {
    /// How far `x` lies beyond the range widened by `tolerance` of it (the range taken at least
    /// `floor`), with that range; `None` inside it, before `min_count` values, or while the range
    /// is empty.
    fn excess(&self, x: f64, tolerance: f64, floor: f64, min_count: usize) -> Option<(f64, f64)> {
        let range = (self.max - self.min).max(floor);
        if self.count < min_count || range.is_nan() || range <= 0.0 {
            return None;
        }
        let excess = (x - self.max).max(self.min - x) - tolerance * range;
        (excess > 0.0).then_some((excess, range))
    }

    fn learn(&mut self, x: f64) {
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        self.count += 1;
    }
}

/// The last `cap` values with their running sum.
#[derive(Clone, Debug)]
struct Window {
    values: VecDeque<f64>,
    cap: usize,
    sum: f64,
    pushes: usize,
}

impl Window {
    fn new(cap: usize) -> Self {
        Window {
            values: VecDeque::with_capacity(cap.max(1)),
            cap: cap.max(1),
            sum: 0.0,
            pushes: 0,
        }
    }

    fn push(&mut self, x: f64) {
        if self.values.len() == self.cap {
            self.sum -= self.values.pop_front().unwrap_or(0.0);
        }
        self.values.push_back(x);
        self.sum += x;
        // Adding and removing accumulates rounding error: recompute the sum now and then.
        self.pushes += 1;
        if self.pushes.is_multiple_of(1024) {
            self.sum = self.values.iter().sum();
        }
    }

    fn mean(&self) -> f64 {
        self.sum / self.values.len().max(1) as f64
    }
}

/// Score a whole series with a fresh detector; `scores[i]` depends on `points[..=i]` only.
pub fn score_series(points: &[SeriesPoint], cfg: &SeriesDetectorConfig) -> Vec<f64> {
    let mut det = SeriesDetector::new(cfg.clone());
    points
        .iter()
        .map(|p| det.update(p.timestamp, p.value))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: i64 = 300; // seconds between points, as in most NAB files

    fn ts(i: usize) -> Timestamp {
        Timestamp::from_micros(1_396_310_400_000_000 + i as i64 * STEP * 1_000_000)
    }

    fn score(values: &[f64]) -> Vec<f64> {
        let mut det = SeriesDetector::new(SeriesDetectorConfig::default());
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| det.update(ts(i), v))
            .collect()
    }

    /// Deterministic pseudo-random noise in [-1, 1].
    fn noise(i: usize) -> f64 {
        let x = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let x = (x ^ (x >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        ((x >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }

    fn daily(i: usize) -> f64 {
        let phase = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
        50.0 + 20.0 * phase.sin()
    }

    fn first_alarm(scores: &[f64], from: usize, threshold: f64) -> Option<usize> {
        scores[from..]
            .iter()
            .position(|&s| s >= threshold)
            .map(|k| k + from)
    }

    /// Highest score a weak record of pure noise may reach (a new extreme of a noisy mean just
    /// past the tolerance); real anomalies in these tests score above 0.9.
    const WEAK: f64 = 0.6;

    #[test]
    fn normal_series_score_low() {
        // (name, series, highest allowed score after two days)
        type Case = (&'static str, fn(usize) -> f64, f64);
        let cases: &[Case] = &[
            ("constant", |_| 42.0, 0.0),
            ("daily sine", daily, 0.0),
            (
                "square wave",
                |i| if (i / 144) % 2 == 0 { 0.0 } else { 80.0 },
                0.0,
            ),
            ("daily sine with noise", |i| daily(i) + noise(i), WEAK),
            ("white noise", |i| 10.0 + noise(i), WEAK),
        ];
        for &(name, f, bound) in cases {
            let values: Vec<f64> = (0..4032).map(f).collect();
            let scores = score(&values);
            // After two days everything, seasonal features included, has been seen.
            let worst = scores[600..].iter().copied().fold(0.0, f64::max);
            assert!(worst <= bound, "{name}: max score {worst} above {bound}");
        }
    }

    #[test]
    fn anomalies_are_detected_quickly() {
        // (name, series, anomaly start, max delay in points)
        type Case = (&'static str, fn(usize) -> f64, usize, usize);
        let cases: &[Case] = &[
            (
                "step up",
                |i| 10.0 + noise(i) + if i >= 1500 { 5.0 } else { 0.0 },
                1500,
                2,
            ),
            (
                "spike",
                |i| 10.0 + noise(i) + if i == 1500 { 8.0 } else { 0.0 },
                1500,
                0,
            ),
            (
                "dip within range",
                |i| {
                    daily(i)
                        + if (2000..2060).contains(&i) {
                            -15.0
                        } else {
                            0.0
                        }
                },
                2000,
                10,
            ),
            (
                "flat day segment",
                |i| {
                    if (2000..2100).contains(&i) {
                        daily(1999)
                    } else {
                        daily(i)
                    }
                },
                2000,
                60,
            ),
        ];
        for &(name, f, start, delay) in cases {
            let values: Vec<f64> = (0..3000).map(f).collect();
            let scores = score(&values);
            let before = scores[300..start].iter().copied().fold(0.0, f64::max);
            assert!(
                before <= WEAK,
                "{name}: false alarm before the anomaly ({before})"
            );
            let hit = first_alarm(&scores, start, 0.9);
            assert!(
                hit.is_some_and(|t| t <= start + delay),
                "{name}: first alarm at {hit:?}, anomaly at {start}"
            );
        }
    }

    #[test]
    fn repeated_alarms_are_suppressed() {
        // A lasting level shift alarms once, not on every point.
        let values: Vec<f64> = (0..2000)
            .map(|i| 10.0 + noise(i) + if i >= 1000 { 20.0 } else { 0.0 })
            .collect();
        let scores = score(&values);
        let alarms = scores[1000..1030].iter().filter(|&&s| s >= 0.5).count();
        assert_eq!(alarms, 1, "{:?}", &scores[1000..1030]);
    }

    #[test]
    fn scores_stay_in_unit_interval_and_missing_values_score_zero() {
        let values: Vec<f64> = (0..3000)
            .map(|i| match i % 97 {
                0 => f64::NAN,
                1 => f64::INFINITY,
                _ => noise(i) * 10f64.powi((i % 300) as i32 - 150),
            })
            .collect();
        let scores = score(&values);
        for (i, (&v, &s)) in values.iter().zip(&scores).enumerate() {
            assert!((0.0..=1.0).contains(&s), "score {s} at {i}");
            if !v.is_finite() {
                assert_eq!(s, 0.0, "missing value at {i} must score 0");
            }
        }

        // Gaps do not hide an anomaly after them.
        let values: Vec<f64> = (0..2000)
            .map(|i| match i {
                1200..=1210 => f64::NAN,
                1211 => 40.0,
                _ => 10.0 + noise(i),
            })
            .collect();
        assert_eq!(score(&values)[1211], 1.0);
    }

    #[test]
    fn appending_points_never_changes_past_scores() {
        let values: Vec<f64> = (0..3000)
            .map(|i| daily(i) + 3.0 * noise(i) + if i > 2000 { 30.0 } else { 0.0 })
            .collect();
        let full = score(&values);
        for cut in [1, 149, 150, 151, 700, 2001, 2500] {
            assert_eq!(score(&values[..cut]), full[..cut], "prefix of {cut}");
        }
    }

    #[test]
    fn score_series_matches_streaming() {
        let points: Vec<SeriesPoint> = (0..500)
            .map(|i| SeriesPoint {
                timestamp: ts(i),
                timestamp_text: String::new(),
                value: noise(i) + if i == 400 { 9.0 } else { 0.0 },
                value_text: String::new(),
            })
            .collect();
        let values: Vec<f64> = points.iter().map(|p| p.value).collect();
        let scores = score_series(&points, &SeriesDetectorConfig::default());
        assert_eq!(scores, score(&values));
        assert_eq!(scores[400], 1.0);
    }
}
