//! Reputation: a score per client in [0, 1] built from its history, where every change carries a
//! recorded reason ([`ReputationEvent`]) so the store can keep the history an analyst reads.
//!
//! The model is a fold over log time ([`Reputation::update`]); the store keeps the
//! [`Reputation`] state and appends the events each update returns.
//!
//! - **Penalties** are multiplicative, so they never push the score below 0: a newly detected
//!   anomaly with score `a` multiplies the reputation by `1 - anomaly_weight * a`; every minute
//!   with 429s multiplies it by `1 - violation_weight * share_of_429s`; every minute with a burst
//!   of 401/403/404 (at least `abusive_burst_min` of them and at least `abusive_burst_share` of
//!   the minute's requests) by `1 - abusive_burst_weight`.
//! - **Standing** grows with good history: the score recovers towards a target
//!   `prior + (1 - prior) * trust`, where `trust` is half the share of `full_trust_good_minutes`
//!   the client has (minutes without 429s or abusive bursts) plus half the share of
//!   `full_trust_age_days` since it was first seen. A new client starts at `prior`.
//! - **Recovery** is exponential: the gap to the target halves every `recovery_half_life_hours`
//!   of log time, so a client earns its standing back.
//! - **While an anomaly is open** the target is capped at `1 - anomaly score`: an ongoing attack
//!   cannot be outgrown.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::anomaly::{AnomalyKind, AnomalyState};
use crate::time::{Timestamp, MICROS_PER_DAY, MICROS_PER_MINUTE};

/// Every weight and time constant of the reputation model; the defaults are documented in
/// `docs/tuning.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReputationConfig {
    /// Where a client without history starts.
    pub prior: f64,
    /// The gap between the score and its target halves in this many hours of log time.
    pub recovery_half_life_hours: f64,
    /// Good minutes (active, no 429s, no abusive burst) for full trust from history.
    pub full_trust_good_minutes: u64,
    /// Days since first seen for full trust from age.
    pub full_trust_age_days: f64,
    /// A new anomaly with score `a` multiplies the reputation by `1 - anomaly_weight * a`.
    pub anomaly_weight: f64,
    /// A minute where a share `v` of the requests got 429 multiplies it by
    /// `1 - violation_weight * v`.
    pub violation_weight: f64,
    /// A minute with at least this many 401/403/404 ...
    pub abusive_burst_min: u32,
    /// ... making up at least this share of its requests is an abusive burst ...
    pub abusive_burst_share: f64,
    /// ... and multiplies the reputation by `1 - abusive_burst_weight`.
    pub abusive_burst_weight: f64,
}

impl Default for ReputationConfig {
    fn default() -> Self {
        ReputationConfig {
            prior: 0.5,
            recovery_half_life_hours: 12.0,
            full_trust_good_minutes: 1440,
            full_trust_age_days: 7.0,
            anomaly_weight: 0.6,
            violation_weight: 0.02,
            abusive_burst_min: 20,
            abusive_burst_share: 0.5,
            abusive_burst_weight: 0.05,
        }
    }
}

/// A client's counters for one log-time minute (the columns of `client_minute_features` the model
/// needs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteCounters {
    /// Start of the minute.
    pub minute: Timestamp,
    pub requests: u32,
    pub status_401: u32,
    pub status_403: u32,
    pub status_404: u32,
    pub status_429: u32,
}

impl MinuteCounters {
    fn abusive_statuses(&self) -> u64 {
        u64::from(self.status_401) + u64::from(self.status_403) + u64::from(self.status_404)
    }
}

/// What reputation needs to know about one anomaly naming the client.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnomalySignal {
    pub id: i64,
    pub kind: AnomalyKind,
    /// The detector's score in [0, 1].
    pub score: f64,
    pub first_detected: Timestamp,
    pub state: AnomalyState,
}

/// Why a client's reputation changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReputationReason {
    /// A newly detected anomaly.
    Anomaly {
        anomaly_id: i64,
        anomaly: AnomalyKind,
        score: f64,
    },
    /// Minutes in which requests were rejected with 429.
    LimitViolations { minutes: u32, rejected: u64 },
    /// Minutes with a burst of 401/403/404.
    AbusiveStatuses { minutes: u32, responses: u64 },
    /// Recovery towards the standing the client's history earns.
    Recovery {
        hours: f64,
        target: f64,
        good_minutes: u64,
    },
    /// Held down while an anomaly is open.
    OpenAnomalyCap { anomaly_id: i64, cap: f64 },
}

impl fmt::Display for ReputationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReputationReason::Anomaly {
                anomaly_id,
                anomaly,
                score,
            } => write!(f, "{anomaly} anomaly {anomaly_id} detected (score {score:.2})"),
            ReputationReason::LimitViolations { minutes, rejected } => write!(
                f,
                "{rejected} requests rejected with 429 in {minutes} minute(s)"
            ),
            ReputationReason::AbusiveStatuses { minutes, responses } => write!(
                f,
                "{responses} responses 401/403/404 in {minutes} minute(s) with an abusive burst"
            ),
            ReputationReason::Recovery {
                hours,
                target,
                good_minutes,
            } => write!(
                f,
                "recovered over {hours:.1} h towards {target:.2} ({good_minutes} good minutes of history)"
            ),
            ReputationReason::OpenAnomalyCap { anomaly_id, cap } => {
                write!(f, "held at most {cap:.2} while anomaly {anomaly_id} is open")
            }
        }
    }
}

/// One recorded change of a reputation: the deltas of an update's events sum to the change of
/// the score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReputationEvent {
    pub at: Timestamp,
    pub delta: f64,
    pub reason: ReputationReason,
}

/// The persisted reputation of one client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reputation {
    /// In [0, 1].
    pub score: f64,
    /// Log time the score is valid at; the next update starts here.
    pub updated_at: Timestamp,
    pub first_seen: Timestamp,
    /// Active minutes without 429s or abusive bursts.
    pub good_minutes: u64,
}

/// Aggregation of an update's changes by reason (one event per reason and update, one per
/// anomaly).
#[derive(Default)]
struct Tally {
    delta: f64,
    last: Option<Timestamp>,
    minutes: u32,
    count: u64,
}

impl Tally {
    fn add(&mut self, at: Timestamp, delta: f64, count: u64) {
        self.delta += delta;
        self.last = Some(at);
        self.minutes += 1;
        self.count += count;
    }
}

impl Reputation {
    /// A client first seen at `first_seen`, with the prior score.
    pub fn new(first_seen: Timestamp, cfg: &ReputationConfig) -> Reputation {
        Reputation {
            score: cfg.prior.clamp(0.0, 1.0),
            updated_at: first_seen,
            first_seen,
            good_minutes: 0,
        }
    }

    /// The standing the client's history earns at `at`, before any open-anomaly cap.
    pub fn target(&self, at: Timestamp, cfg: &ReputationConfig) -> f64 {
        let history = if cfg.full_trust_good_minutes == 0 {
            1.0
        } else {
            (self.good_minutes as f64 / cfg.full_trust_good_minutes as f64).min(1.0)
        };
        let age_days =
            (at.micros() - self.first_seen.micros()).max(0) as f64 / MICROS_PER_DAY as f64;
        let age = if cfg.full_trust_age_days <= 0.0 {
            1.0
        } else {
            (age_days / cfg.full_trust_age_days).min(1.0)
        };
        let prior = cfg.prior.clamp(0.0, 1.0);
        prior + (1.0 - prior) * (0.5 * history + 0.5 * age)
    }

    /// Move the reputation to log time `at`.
    ///
    /// `minutes` are the client's counters; those with `updated_at <= minute < at` are used and
    /// the others ignored, so overlapping calls never count a minute twice. `anomalies` are the
    /// anomalies naming the client that are open or were detected since the last update: an
    /// anomaly is penalised once, in the update whose span contains its `first_detected`
    /// (`updated_at < first_detected <= at`), and caps the score while it is open. Call with `at`
    /// no later than the detection cursor. Updating to a time before `updated_at` changes nothing.
    pub fn update(
        &mut self,
        at: Timestamp,
        minutes: &[MinuteCounters],
        anomalies: &[AnomalySignal],
        cfg: &ReputationConfig,
    ) -> Vec<ReputationEvent> {
        if at <= self.updated_at {
            return Vec::new();
        }
        let start = self.updated_at;
        enum Item<'a> {
            Minute(&'a MinuteCounters),
            Anomaly(&'a AnomalySignal),
        }
        let mut items: Vec<(Timestamp, Item<'_>)> = Vec::new();
        for m in minutes {
            if m.minute >= start && m.minute < at && m.requests > 0 {
                // A minute's effect lands at its end.
                items.push((
                    Timestamp(m.minute.micros() + MICROS_PER_MINUTE).min(at),
                    Item::Minute(m),
                ));
            }
        }
        for a in anomalies {
            if a.first_detected > start && a.first_detected <= at {
                items.push((a.first_detected, Item::Anomaly(a)));
            }
        }
        items.sort_by_key(|(t, _)| *t);

        // The lowest cap among open anomalies detected before `t` (or at `t` when `inclusive`:
        // an anomaly's own penalty lands before its cap).
        let cap_at = |t: Timestamp, inclusive: bool| -> Option<(i64, f64)> {
            anomalies
                .iter()
                .filter(|a| {
                    a.state == AnomalyState::Open
                        && (a.first_detected < t || (inclusive && a.first_detected == t))
                })
                .map(|a| (a.id, 1.0 - a.score.clamp(0.0, 1.0)))
                .min_by(|x, y| x.1.total_cmp(&y.1))
        };

        let mut events = Vec::new();
        let mut recovery = Tally::default();
        let mut capped: Option<(i64, f64, Tally)> = None;
        let mut violations = Tally::default();
        let mut statuses = Tally::default();
        let mut cursor = start;

        let settle = |rep: &mut Reputation,
                      cursor: &mut Timestamp,
                      t: Timestamp,
                      inclusive: bool,
                      recovery: &mut Tally,
                      capped: &mut Option<(i64, f64, Tally)>| {
            let target = rep.target(t, cfg);
            let cap = cap_at(t, inclusive);
            let goal = match cap {
                Some((_, c)) => target.min(c),
                None => target,
            };
            let before = rep.score;
            if before > goal {
                rep.score = goal;
                if let Some((id, c)) = cap {
                    let entry = capped.get_or_insert_with(|| (id, c, Tally::default()));
                    entry.0 = id;
                    entry.1 = c;
                    entry.2.add(t, rep.score - before, 0);
                }
            } else if t > *cursor && cfg.recovery_half_life_hours > 0.0 {
                let hours = (t.micros() - cursor.micros()) as f64 / 3_600_000_000.0;
                let keep = 0.5f64.powf(hours / cfg.recovery_half_life_hours);
                rep.score = goal - (goal - before) * keep;
                recovery.add(t, rep.score - before, 0);
            }
            *cursor = t;
        };

        for (t, item) in &items {
            settle(self, &mut cursor, *t, false, &mut recovery, &mut capped);
            match item {
                Item::Minute(m) => {
                    let requests = f64::from(m.requests);
                    let mut good = true;
                    if m.status_429 > 0 {
                        good = false;
                        let share = (f64::from(m.status_429) / requests).min(1.0);
                        let before = self.score;
                        self.score *= 1.0 - (cfg.violation_weight * share).clamp(0.0, 1.0);
                        violations.add(*t, self.score - before, u64::from(m.status_429));
                    }
                    let abusive = m.abusive_statuses();
                    if abusive >= u64::from(cfg.abusive_burst_min)
                        && abusive as f64 >= cfg.abusive_burst_share * requests
                    {
                        good = false;
                        let before = self.score;
                        self.score *= 1.0 - cfg.abusive_burst_weight.clamp(0.0, 1.0);
                        statuses.add(*t, self.score - before, abusive);
                    }
                    if good {
                        self.good_minutes += 1;
                    }
                }
                Item::Anomaly(a) => {
                    let before = self.score;
                    let score = a.score.clamp(0.0, 1.0);
                    self.score *= 1.0 - (cfg.anomaly_weight * score).clamp(0.0, 1.0);
                    events.push(ReputationEvent {
                        at: *t,
                        delta: self.score - before,
                        reason: ReputationReason::Anomaly {
                            anomaly_id: a.id,
                            anomaly: a.kind,
                            score,
                        },
                    });
                }
            }
        }
        settle(self, &mut cursor, at, true, &mut recovery, &mut capped);
        self.score = self.score.clamp(0.0, 1.0);
        self.updated_at = at;

        if let Some(last) = violations.last {
            events.push(ReputationEvent {
                at: last,
                delta: violations.delta,
                reason: ReputationReason::LimitViolations {
                    minutes: violations.minutes,
                    rejected: violations.count,
                },
            });
        }
        if let Some(last) = statuses.last {
            events.push(ReputationEvent {
                at: last,
                delta: statuses.delta,
                reason: ReputationReason::AbusiveStatuses {
                    minutes: statuses.minutes,
                    responses: statuses.count,
                },
            });
        }
        if let Some((id, cap, tally)) = capped {
            if let Some(last) = tally.last {
                events.push(ReputationEvent {
                    at: last,
                    delta: tally.delta,
                    reason: ReputationReason::OpenAnomalyCap {
                        anomaly_id: id,
                        cap,
                    },
                });
            }
        }
        if recovery.delta.abs() > 1e-12 {
            events.push(ReputationEvent {
                at,
                delta: recovery.delta,
                reason: ReputationReason::Recovery {
                    hours: (at.micros() - start.micros()) as f64 / 3_600_000_000.0,
                    target: self.target(at, cfg),
                    good_minutes: self.good_minutes,
                },
            });
        }
        events.retain(|e| e.delta.abs() > 1e-12);
        events.sort_by_key(|e| e.at);
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000;

    fn t(hours: f64) -> Timestamp {
        Timestamp((hours * HOUR as f64) as i64)
    }

    fn minute(at_minutes: i64, requests: u32, s429: u32, s401: u32) -> MinuteCounters {
        MinuteCounters {
            minute: Timestamp(at_minutes * MICROS_PER_MINUTE),
            requests,
            status_401: s401,
            status_429: s429,
            ..MinuteCounters::default()
        }
    }

    fn anomaly(id: i64, score: f64, at: Timestamp, state: AnomalyState) -> AnomalySignal {
        AnomalySignal {
            id,
            kind: AnomalyKind::Scraping,
            score,
            first_detected: at,
            state,
        }
    }

    fn assert_close(got: f64, want: f64) {
        assert!((got - want).abs() < 1e-9, "got {got}, want {want}");
    }

    /// The deltas of the events returned by one update sum to the change of the score.
    fn update_checked(
        rep: &mut Reputation,
        at: Timestamp,
        minutes: &[MinuteCounters],
        anomalies: &[AnomalySignal],
        cfg: &ReputationConfig,
    ) -> Vec<ReputationEvent> {
        let before = rep.score;
        let events = rep.update(at, minutes, anomalies, cfg);
        let sum: f64 = events.iter().map(|e| e.delta).sum();
        assert_close(sum, rep.score - before);
        assert!((0.0..=1.0).contains(&rep.score));
        events
    }

    #[test]
    fn a_new_client_starts_at_the_prior_and_earns_standing_with_good_history() {
        let cfg = ReputationConfig::default();
        let mut rep = Reputation::new(t(0.0), &cfg);
        assert_eq!(rep.score, 0.5);
        // One request a minute for 24 hours: 1440 good minutes, one day of age.
        let minutes: Vec<_> = (0..1440).map(|m| minute(m, 1, 0, 0)).collect();
        let events = update_checked(&mut rep, t(24.0), &minutes, &[], &cfg);
        assert_eq!(rep.good_minutes, 1440);
        // Target at 24 h: 0.5 + 0.5 * (0.5 * 1 + 0.5 * 1/7).
        assert_close(rep.target(t(24.0), &cfg), 0.5 + 0.5 * (0.5 + 0.5 / 7.0));
        assert!(rep.score > 0.6 && rep.score < rep.target(t(24.0), &cfg));
        assert_eq!(events.len(), 1);
        assert!(matches!(
            events[0].reason,
            ReputationReason::Recovery {
                good_minutes: 1440,
                ..
            }
        ));
        // A week later with no more traffic, age is full and the gap has closed.
        update_checked(&mut rep, t(24.0 * 8.0), &[], &[], &cfg);
        assert!(rep.score > 0.99, "{}", rep.score);
    }

    #[test]
    fn an_anomaly_penalises_once_caps_while_open_and_decays_after_resolution() {
        let cfg = ReputationConfig {
            prior: 1.0,
            ..ReputationConfig::default()
        };
        let mut rep = Reputation::new(t(0.0), &cfg);
        let open = anomaly(7, 0.5, t(1.0), AnomalyState::Open);
        let events = update_checked(&mut rep, t(2.0), &[], &[open], &cfg);
        // 1.0 * (1 - 0.6 * 0.5) = 0.7, then capped at 1 - 0.5 = 0.5 while open.
        assert_close(rep.score, 0.5);
        assert_eq!(events.len(), 2);
        assert_close(events[0].delta, -0.3);
        assert_eq!(
            events[0].reason.to_string(),
            "scraping anomaly 7 detected (score 0.50)"
        );
        assert_close(events[1].delta, -0.2);
        assert_eq!(
            events[1].reason.to_string(),
            "held at most 0.50 while anomaly 7 is open"
        );
        // Still open 12 hours later: no recovery, and no second penalty.
        let events = update_checked(&mut rep, t(14.0), &[], &[open], &cfg);
        assert_close(rep.score, 0.5);
        assert!(events.is_empty());
        // Resolved: the gap to the target (1.0) halves every 12 hours.
        let resolved = AnomalySignal {
            state: AnomalyState::Resolved,
            ..open
        };
        update_checked(&mut rep, t(26.0), &[], &[resolved], &cfg);
        assert_close(rep.score, 0.75);
        let events = update_checked(&mut rep, t(38.0), &[], &[], &cfg);
        assert_close(rep.score, 0.875);
        assert_eq!(
            events[0].reason.to_string(),
            "recovered over 12.0 h towards 1.00 (0 good minutes of history)"
        );
    }

    #[test]
    fn violations_and_abusive_bursts_cost_standing_and_are_not_good_minutes() {
        let cfg = ReputationConfig {
            prior: 0.8,
            recovery_half_life_hours: 0.0, // isolate the penalties
            ..ReputationConfig::default()
        };
        let mut rep = Reputation::new(t(0.0), &cfg);
        let minutes = [
            minute(0, 100, 50, 0),  // half rejected: * (1 - 0.02 * 0.5)
            minute(1, 100, 100, 0), // all rejected: * 0.98
            minute(2, 40, 0, 30),   // 30 of 40 are 401: burst, * 0.95
            minute(3, 100, 0, 30),  // 30 of 100: below the share, a good minute
            minute(4, 10, 0, 10),   // 10 < 20: not a burst, a good minute
        ];
        let events = update_checked(&mut rep, t(1.0), &minutes, &[], &cfg);
        assert_close(rep.score, 0.8 * 0.99 * 0.98 * 0.95);
        assert_eq!(rep.good_minutes, 2);
        let texts: Vec<String> = events.iter().map(|e| e.reason.to_string()).collect();
        assert_eq!(
            texts,
            [
                "150 requests rejected with 429 in 2 minute(s)",
                "30 responses 401/403/404 in 1 minute(s) with an abusive burst",
            ]
        );
        assert_eq!(events[0].at, Timestamp(2 * MICROS_PER_MINUTE));
    }

    #[test]
    fn overlapping_updates_never_count_a_minute_or_an_anomaly_twice() {
        let cfg = ReputationConfig {
            recovery_half_life_hours: 0.0,
            ..ReputationConfig::default()
        };
        let minutes = [minute(0, 10, 10, 0), minute(90, 10, 10, 0)];
        let a = anomaly(
            1,
            1.0,
            Timestamp(30 * MICROS_PER_MINUTE),
            AnomalyState::Resolved,
        );
        let mut once = Reputation::new(t(0.0), &cfg);
        update_checked(&mut once, t(2.0), &minutes, &[a], &cfg);
        let mut twice = Reputation::new(t(0.0), &cfg);
        update_checked(&mut twice, t(1.0), &minutes, &[a], &cfg);
        update_checked(&mut twice, t(2.0), &minutes, &[a], &cfg);
        assert_close(once.score, twice.score);
        assert_close(once.score, 0.5 * 0.98 * 0.4 * 0.98);
        // Going back in time changes nothing.
        assert!(twice.update(t(1.0), &minutes, &[a], &cfg).is_empty());
    }

    #[test]
    fn events_serialise_with_their_reason_tagged() {
        let e = ReputationEvent {
            at: t(1.0),
            delta: -0.25,
            reason: ReputationReason::LimitViolations {
                minutes: 3,
                rejected: 12,
            },
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"at":"1970-01-01T01:00:00Z","delta":-0.25,"reason":{"kind":"limit_violations","minutes":3,"rejected":12}}"#
        );
    }
}
