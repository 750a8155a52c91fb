//! Robust cleaning before fitting: flagged anomalies, missing values and outages (runs of zeros
//! where the season says traffic is expected) are replaced by same-phase neighbours, and
//! optionally extreme points are winsorised, so attack floods and outages do not teach the models.

use super::models::median;

/// How [`clean`] treats a history.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CleanSpec {
    pub season: usize,
    pub outage_min_run: usize,
    pub winsorise: Option<f64>,
}

/// Same-phase neighbours looked at on each side.
const NEIGHBOURS: usize = 4;

/// Median of the usable values at `t ± j·season`, `j = 1..=NEIGHBOURS`.
fn seasonal_reference(y: &[f64], usable: &[bool], t: usize, season: usize) -> Option<f64> {
    let mut v = Vec::with_capacity(2 * NEIGHBOURS);
    for j in 1..=NEIGHBOURS {
        let d = j * season;
        if t >= d && usable[t - d] {
            v.push(y[t - d]);
        }
        if t + d < y.len() && usable[t + d] {
            v.push(y[t + d]);
        }
    }
    if v.is_empty() {
        None
    } else {
        Some(median(&mut v))
    }
}

/// The cleaned series and how many points were replaced or clipped.
pub(crate) fn clean(y: &[f64], flagged: &[bool], spec: CleanSpec) -> (Vec<f64>, usize) {
    let n = y.len();
    let season = spec.season.max(1);
    let mut bad: Vec<bool> = (0..n)
        .map(|t| flagged.get(t).copied().unwrap_or(false) || !y[t].is_finite())
        .collect();

    // Outages: long zero runs whose same-phase neighbours (outside any long zero run) carry traffic.
    if spec.outage_min_run > 0 {
        let mut runs = Vec::new();
        let mut t = 0;
        while t < n {
            if y[t] == 0.0 {
                let start = t;
                while t < n && y[t] == 0.0 {
                    t += 1;
                }
                if t - start >= spec.outage_min_run {
                    runs.push((start, t));
                }
            } else {
                t += 1;
            }
        }
        let mut usable: Vec<bool> = bad.iter().map(|b| !b).collect();
        for &(a, b) in &runs {
            usable[a..b].iter_mut().for_each(|u| *u = false);
        }
        for &(a, b) in &runs {
            let mut refs: Vec<f64> = (a..b)
                .filter_map(|t| seasonal_reference(y, &usable, t, season))
                .collect();
            if !refs.is_empty() && median(&mut refs) > 0.0 {
                bad[a..b].iter_mut().for_each(|x| *x = true);
            }
        }
    }

    let mut out = y.to_vec();
    let mut changed = 0;
    let usable: Vec<bool> = bad.iter().map(|b| !b).collect();
    for t in 0..n {
        if bad[t] {
            out[t] = seasonal_reference(y, &usable, t, season)
                .or_else(|| interpolate(y, &usable, t))
                .unwrap_or(0.0);
            changed += 1;
        }
    }

    if let Some(k) = spec.winsorise {
        let refs: Vec<Option<f64>> = (0..n)
            .map(|t| seasonal_reference(&out, &usable, t, season))
            .collect();
        let mut dev: Vec<f64> = (0..n)
            .filter(|&t| usable[t])
            .filter_map(|t| refs[t].map(|r| (out[t] - r).abs()))
            .collect();
        let scale = 1.4826 * median(&mut dev);
        if scale.is_finite() && scale > 0.0 {
            for t in 0..n {
                if let (true, Some(r)) = (usable[t], refs[t]) {
                    let clipped = out[t].clamp(r - k * scale, r + k * scale);
                    if clipped != out[t] {
                        out[t] = clipped;
                        changed += 1;
                    }
                }
            }
        }
    }
    (out, changed)
}

/// Linear interpolation between the nearest usable points (or the nearest one at an end).
fn interpolate(y: &[f64], usable: &[bool], t: usize) -> Option<f64> {
    let before = (0..t).rev().find(|&i| usable[i]);
    let after = (t + 1..y.len()).find(|&i| usable[i]);
    match (before, after) {
        (Some(a), Some(b)) => {
            let w = (t - a) as f64 / (b - a) as f64;
            Some(y[a] * (1.0 - w) + y[b] * w)
        }
        (Some(a), None) => Some(y[a]),
        (None, Some(b)) => Some(y[b]),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(winsorise: Option<f64>) -> CleanSpec {
        CleanSpec {
            season: 4,
            outage_min_run: 3,
            winsorise,
        }
    }

    #[test]
    fn cleaning_cases() {
        let base: Vec<f64> = (0..24).map(|t| [10.0, 20.0, 30.0, 20.0][t % 4]).collect();
        let with = |f: &dyn Fn(&mut Vec<f64>, &mut Vec<bool>)| {
            let (mut y, mut flags) = (base.clone(), vec![false; base.len()]);
            f(&mut y, &mut flags);
            (y, flags)
        };
        // (name, history, flags, winsorise, expected changed count)
        type Case = (&'static str, (Vec<f64>, Vec<bool>), Option<f64>, usize);
        let cases: Vec<Case> = vec![
            ("clean series is untouched", with(&|_, _| {}), Some(5.0), 0),
            (
                "flagged flood is replaced",
                with(&|y, f| {
                    for t in 8..12 {
                        y[t] *= 50.0;
                        f[t] = true;
                    }
                }),
                None,
                4,
            ),
            (
                "outage zeros are replaced",
                with(&|y, _| y[9..14].iter_mut().for_each(|v| *v = 0.0)),
                None,
                5,
            ),
            (
                "short zero run is kept",
                with(&|y, _| y[9..11].iter_mut().for_each(|v| *v = 0.0)),
                None,
                0,
            ),
            (
                "missing value is filled",
                with(&|y, _| y[5] = f64::NAN),
                None,
                1,
            ),
        ];
        for (name, (y, flags), w, expect_changed) in cases {
            let (out, changed) = clean(&y, &flags, spec(w));
            assert_eq!(changed, expect_changed, "{name}");
            if expect_changed > 0 {
                assert_eq!(out, base, "{name}");
            }
        }
    }

    #[test]
    fn regular_nightly_zeros_are_not_outages() {
        let y: Vec<f64> = (0..48).map(|t| if t % 8 < 4 { 0.0 } else { 5.0 }).collect();
        let (out, changed) = clean(
            &y,
            &[],
            CleanSpec {
                season: 8,
                outage_min_run: 3,
                winsorise: None,
            },
        );
        assert_eq!((out, changed), (y, 0));
    }

    #[test]
    fn winsorising_clips_an_unflagged_spike() {
        let mut y: Vec<f64> = (0..40)
            .map(|t| 10.0 + (t % 4) as f64 + 0.1 * (t % 3) as f64)
            .collect();
        y[20] = 1000.0;
        let (out, changed) = clean(&y, &[], spec(Some(5.0)));
        assert_eq!(changed, 1);
        assert!(out[20] < 20.0, "{}", out[20]);
    }
}
