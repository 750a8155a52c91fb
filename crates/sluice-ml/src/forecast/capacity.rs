//! The capacity factor: how much every client's share of a route must shrink so that the load
//! predicted over the next horizon fits the route's capacity, with hysteresis so it does not flap.
//!
//! Utilisation `u` is predicted load over capacity (both in requests per second). The factor is
//! the multiplier that brings the predicted load down to the high mark: `high / u`, clamped to
//! `[floor, 1]`.
//! - Above the high mark the factor tightens at once to that target (never loosens there).
//! - Between the marks (the dead band) it holds.
//! - Below the low mark it relaxes only once utilisation has stayed below the low mark for
//!   `hold_minutes`, and then by at most `relax_per_minute` per minute of log time.
//!
//! The factor is never 0 (`floor > 0`) and is exactly 1 with plenty of headroom.

use serde::{Deserialize, Serialize};

/// Thresholds of the capacity factor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CapacityPolicy {
    /// Predicted utilisation above which the factor tightens (e.g. 0.9).
    pub high: f64,
    /// Predicted utilisation below which the factor may relax (e.g. 0.7); below `high`.
    pub low: f64,
    /// Minutes utilisation must stay below `low` before the factor relaxes.
    pub hold_minutes: u32,
    /// Largest increase of the factor per minute of log time while relaxing.
    pub relax_per_minute: f64,
    /// Smallest factor ever returned, in (0, 1].
    pub floor: f64,
}

impl Default for CapacityPolicy {
    fn default() -> Self {
        CapacityPolicy {
            high: 0.9,
            low: 0.7,
            hold_minutes: 15,
            relax_per_minute: 0.05,
            floor: 0.05,
        }
    }
}

/// Why a policy is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CapacityPolicyError {
    #[error("capacity marks must satisfy 0 < low < high, got low {low} and high {high}")]
    Marks { low: f64, high: f64 },
    #[error("capacity factor floor must be in (0, 1], got {0}")]
    Floor(f64),
    #[error("capacity factor relax step must be positive, got {0}")]
    Relax(f64),
}

impl CapacityPolicy {
    pub fn validate(&self) -> Result<(), CapacityPolicyError> {
        if !(self.low > 0.0 && self.low < self.high && self.high.is_finite()) {
            return Err(CapacityPolicyError::Marks {
                low: self.low,
                high: self.high,
            });
        }
        if !(self.floor > 0.0 && self.floor <= 1.0) {
            return Err(CapacityPolicyError::Floor(self.floor));
        }
        if !(self.relax_per_minute > 0.0 && self.relax_per_minute.is_finite()) {
            return Err(CapacityPolicyError::Relax(self.relax_per_minute));
        }
        Ok(())
    }
}

/// What changed at one update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorChange {
    Tightened,
    Relaxed,
    Held,
}

/// One evaluation of the capacity factor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FactorUpdate {
    pub factor: f64,
    /// Predicted utilisation (predicted load / capacity), `None` when the load was unknown.
    pub utilisation: Option<f64>,
    pub change: FactorChange,
}

/// The hysteresis state of one route's factor. Minutes are log-time minute indices (minutes since
/// the epoch), and updates must come in increasing minute order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CapacityFactor {
    factor: f64,
    /// First minute of the current run of utilisation below the low mark.
    below_since: Option<i64>,
    /// Minute of the last update.
    last_minute: Option<i64>,
}

impl Default for CapacityFactor {
    fn default() -> Self {
        CapacityFactor::new()
    }
}

impl CapacityFactor {
    /// A route starts unconstrained.
    pub fn new() -> Self {
        CapacityFactor {
            factor: 1.0,
            below_since: None,
            last_minute: None,
        }
    }

    /// Continue from a factor stored at `minute` (after a restart). The hold starts afresh: a
    /// tightened route stays tightened for at least `hold_minutes` of low load after the restart,
    /// which errs on the safe side rather than relaxing at once.
    pub fn restored(factor: f64, minute: i64) -> Self {
        let factor = if factor.is_finite() && factor > 0.0 {
            factor.min(1.0)
        } else {
            1.0
        };
        CapacityFactor {
            factor,
            below_since: None,
            last_minute: Some(minute),
        }
    }

    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// Update at `minute` with the load predicted over the next horizon (requests/s) against
    /// `capacity` (requests/s). A non-finite or negative load, or a capacity that is not positive,
    /// holds the factor.
    pub fn update(
        &mut self,
        policy: &CapacityPolicy,
        minute: i64,
        predicted_rps: f64,
        capacity_rps: f64,
    ) -> FactorUpdate {
        let elapsed = self.last_minute.map_or(1, |m| (minute - m).max(0)).max(0);
        self.last_minute = Some(minute);
        let known = predicted_rps.is_finite()
            && predicted_rps >= 0.0
            && capacity_rps.is_finite()
            && capacity_rps > 0.0;
        if !known {
            self.below_since = None;
            return FactorUpdate {
                factor: self.factor,
                utilisation: None,
                change: FactorChange::Held,
            };
        }
        let u = predicted_rps / capacity_rps;
        let target = if u > 0.0 {
            (policy.high / u).clamp(policy.floor, 1.0)
        } else {
            1.0
        };
        let change = if u > policy.high {
            self.below_since = None;
            if target < self.factor {
                self.factor = target;
                FactorChange::Tightened
            } else {
                FactorChange::Held
            }
        } else if u < policy.low {
            let since = *self.below_since.get_or_insert(minute);
            let held_for = minute - since;
            if held_for >= i64::from(policy.hold_minutes) && self.factor < target {
                // Relax by at most the step per minute elapsed since the last update, and never
                // for minutes spent waiting out the hold.
                let minutes = elapsed.min(held_for - i64::from(policy.hold_minutes) + 1);
                let step = policy.relax_per_minute * minutes.max(1) as f64;
                self.factor = (self.factor + step).min(target);
                FactorChange::Relaxed
            } else {
                FactorChange::Held
            }
        } else {
            self.below_since = None;
            FactorChange::Held
        };
        self.factor = self.factor.clamp(policy.floor, 1.0);
        FactorUpdate {
            factor: self.factor,
            utilisation: Some(u),
            change,
        }
    }
}

/// The load to plan for at one moment: the highest upper prediction bound over the remaining
/// horizon, and never less than the load just observed (so a surge the forecast did not see still
/// counts), in requests per second from per-minute counts.
pub fn planned_rps(upper_per_minute: &[f64], observed_per_minute: Option<f64>) -> f64 {
    let peak = upper_per_minute
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f64::NAN, f64::max);
    let obs = observed_per_minute.filter(|v| v.is_finite());
    let per_minute = match (peak.is_nan(), obs) {
        (false, Some(o)) => peak.max(o),
        (false, None) => peak,
        (true, Some(o)) => o,
        (true, None) => f64::NAN,
    };
    per_minute / 60.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CapacityPolicy {
        CapacityPolicy {
            high: 0.9,
            low: 0.7,
            hold_minutes: 10,
            relax_per_minute: 0.05,
            floor: 0.05,
        }
    }

    #[test]
    fn exactly_one_with_plenty_of_headroom() {
        let p = policy();
        let mut f = CapacityFactor::new();
        for m in 0..100 {
            let u = f.update(&p, m, 10.0, 100.0);
            assert_eq!(u.factor, 1.0);
            assert_eq!(u.utilisation, Some(0.1));
        }
        assert_eq!(f.update(&p, 100, 0.0, 100.0).factor, 1.0);
    }

    #[test]
    fn tightens_immediately_to_bring_load_to_the_high_mark() {
        let p = policy();
        let mut f = CapacityFactor::new();
        f.update(&p, 0, 50.0, 100.0);
        let u = f.update(&p, 1, 180.0, 100.0);
        assert_eq!(u.change, FactorChange::Tightened);
        assert!((u.factor - 0.5).abs() < 1e-12, "{u:?}");
        // A bigger surge tightens further at once; a smaller one above the mark does not loosen.
        assert!((f.update(&p, 2, 360.0, 100.0).factor - 0.25).abs() < 1e-12);
        let u = f.update(&p, 3, 200.0, 100.0);
        assert_eq!(u.change, FactorChange::Held);
        assert!((u.factor - 0.25).abs() < 1e-12);
    }

    #[test]
    fn never_zero_however_large_the_load() {
        let p = policy();
        let mut f = CapacityFactor::new();
        let u = f.update(&p, 0, 1e12, 1.0);
        assert_eq!(u.factor, p.floor);
        assert!(u.factor > 0.0);
        let u = f.update(&p, 1, f64::INFINITY, 1.0);
        assert_eq!(u.factor, p.floor);
        assert_eq!(u.utilisation, None);
    }

    #[test]
    fn does_not_flap_around_the_threshold() {
        let p = policy();
        let mut f = CapacityFactor::new();
        // Utilisation oscillating between 0.85 and 0.95 around the high mark, then between 0.65
        // and 0.75 around the low mark: after the first tightening, no relaxation ever happens
        // because utilisation never stays below the low mark for the hold time.
        let mut changes = Vec::new();
        for m in 0..200 {
            let load = if m < 100 {
                if m % 2 == 0 {
                    95.0
                } else {
                    85.0
                }
            } else if m % 3 == 0 {
                75.0
            } else {
                65.0
            };
            let u = f.update(&p, m, load, 100.0);
            if u.change != FactorChange::Held {
                changes.push((m, u.change));
            }
        }
        assert_eq!(changes, vec![(0, FactorChange::Tightened)]);
        assert!((f.factor() - 0.9 / 0.95).abs() < 1e-12);
    }

    #[test]
    fn relaxes_only_after_the_hold_time_by_bounded_steps() {
        let p = policy();
        let mut f = CapacityFactor::new();
        f.update(&p, 0, 300.0, 100.0); // factor 0.3
        assert!((f.factor() - 0.3).abs() < 1e-12);
        // Load drops to 10% at minute 1: held for 10 minutes (1..=10), then +0.05 per minute.
        let mut seen = Vec::new();
        for m in 1..=40 {
            seen.push(f.update(&p, m, 10.0, 100.0).factor);
        }
        for (i, v) in seen.iter().enumerate().take(10) {
            assert!((v - 0.3).abs() < 1e-12, "minute {}: {v}", i + 1);
        }
        assert!((seen[10] - 0.35).abs() < 1e-12, "{seen:?}");
        assert!((seen[11] - 0.40).abs() < 1e-12, "{seen:?}");
        for w in seen.windows(2) {
            assert!(w[1] - w[0] <= p.relax_per_minute + 1e-12);
        }
        assert_eq!(*seen.last().unwrap(), 1.0);
    }

    #[test]
    fn sparse_updates_relax_by_the_step_times_elapsed_minutes() {
        let p = policy();
        let mut f = CapacityFactor::new();
        f.update(&p, 0, 300.0, 100.0); // 0.3
        f.update(&p, 1, 10.0, 100.0); // below since 1
        let u = f.update(&p, 16, 10.0, 100.0); // held 15 >= 10: relaxing for minutes 11..=16
        assert_eq!(u.change, FactorChange::Relaxed);
        assert!((u.factor - (0.3 + 6.0 * 0.05)).abs() < 1e-9, "{u:?}");
    }

    #[test]
    fn a_blip_above_the_low_mark_restarts_the_hold() {
        let p = policy();
        let mut f = CapacityFactor::new();
        f.update(&p, 0, 300.0, 100.0);
        for m in 1..=9 {
            f.update(&p, m, 10.0, 100.0);
        }
        f.update(&p, 10, 80.0, 100.0); // in the dead band: hold restarts
        for m in 11..=20 {
            assert_eq!(f.update(&p, m, 10.0, 100.0).change, FactorChange::Held);
        }
        assert_eq!(f.update(&p, 21, 10.0, 100.0).change, FactorChange::Relaxed);
    }

    #[test]
    fn unknown_load_holds() {
        let p = policy();
        let mut f = CapacityFactor::new();
        f.update(&p, 0, 300.0, 100.0);
        let u = f.update(&p, 1, f64::NAN, 100.0);
        assert_eq!(u.change, FactorChange::Held);
        assert!((u.factor - 0.3).abs() < 1e-12);
        assert_eq!(f.update(&p, 2, 10.0, 0.0).utilisation, None);
    }

    #[test]
    fn policy_validation() {
        assert!(policy().validate().is_ok());
        let bad = CapacityPolicy {
            low: 0.9,
            high: 0.7,
            ..policy()
        };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "capacity marks must satisfy 0 < low < high, got low 0.9 and high 0.7"
        );
        let bad = CapacityPolicy {
            floor: 0.0,
            ..policy()
        };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "capacity factor floor must be in (0, 1], got 0"
        );
    }

    #[test]
    fn planned_load_is_the_peak_upper_bound_or_the_observed_load() {
        assert_eq!(planned_rps(&[60.0, 120.0, 90.0], Some(30.0)), 2.0);
        assert_eq!(planned_rps(&[60.0, 120.0], Some(600.0)), 10.0);
        assert_eq!(planned_rps(&[], Some(600.0)), 10.0);
        assert!(planned_rps(&[], None).is_nan());
    }
}

#[cfg(test)]
mod restore_tests {
    use super::*;

    #[test]
    fn a_restored_factor_holds_for_the_hold_time_before_relaxing() {
        let p = CapacityPolicy::default();
        let mut f = CapacityFactor::restored(0.5, 100);
        assert_eq!(f.factor(), 0.5);
        // Low load right after the restart: held for `hold_minutes`, then relaxed step by step.
        for m in 101..101 + i64::from(p.hold_minutes) {
            assert_eq!(
                f.update(&p, m, 0.0, 10.0).change,
                FactorChange::Held,
                "minute {m}"
            );
        }
        let u = f.update(&p, 101 + i64::from(p.hold_minutes), 0.0, 10.0);
        assert_eq!(u.change, FactorChange::Relaxed);
        assert!(u.factor > 0.5);
        // Garbage in storage falls back to unconstrained, never to a zero factor.
        assert_eq!(CapacityFactor::restored(0.0, 1).factor(), 1.0);
        assert_eq!(CapacityFactor::restored(f64::NAN, 1).factor(), 1.0);
        assert_eq!(CapacityFactor::restored(3.0, 1).factor(), 1.0);
    }
}
