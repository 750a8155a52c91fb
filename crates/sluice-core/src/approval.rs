//! The approval workflow of suggested limits: a suggestion is pending until an administrator
//! approves, rejects or modifies-then-approves it, or it expires ([`SuggestionRecord::apply`],
//! every other transition is an error with an exact message); the diff of a suggestion against
//! the limit in force ([`diff_limits`]); temporary limits that revert by themselves
//! ([`TemporaryLimit`]); and auto-approval rules with guardrails ([`auto_decide`]), all off by
//! default and never enforcing unless configured to.
//!
//! The store persists records and appends every [`Transition`] to the audit log; nothing here
//! reads a clock: every call takes the log time it happens at.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::limit::Limit;
use crate::time::{Timestamp, MICROS_PER_SEC};
use crate::tuning::backtest::BacktestReport;
use crate::tuning::{AbuseEvidence, Basis, ClientBaseline, Suggestion, TuningInput};

/// Where a suggestion is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuggestionState {
    Pending,
    Approved,
    Rejected,
    ModifiedApproved,
    Expired,
}

impl SuggestionState {
    pub const ALL: [SuggestionState; 5] = [
        SuggestionState::Pending,
        SuggestionState::Approved,
        SuggestionState::Rejected,
        SuggestionState::ModifiedApproved,
        SuggestionState::Expired,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            SuggestionState::Pending => "pending",
            SuggestionState::Approved => "approved",
            SuggestionState::Rejected => "rejected",
            SuggestionState::ModifiedApproved => "modified_approved",
            SuggestionState::Expired => "expired",
        }
    }

    /// Whether no further transition is possible.
    pub const fn is_final(self) -> bool {
        !matches!(self, SuggestionState::Pending)
    }
}

impl fmt::Display for SuggestionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown suggestion state {0:?} (expected one of pending, approved, rejected, modified_approved, expired)")]
pub struct UnknownSuggestionState(pub String);

impl FromStr for SuggestionState {
    type Err = UnknownSuggestionState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SuggestionState::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownSuggestionState(s.to_owned()))
    }
}

/// Who acted: an administrator (by name) or an auto-approval rule (by rule name), or the system
/// (expiry).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Actor {
    Admin(String),
    Rule(String),
    System,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Admin(n) => write!(f, "admin {n}"),
            Actor::Rule(n) => write!(f, "rule {n}"),
            Actor::System => f.write_str("system"),
        }
    }
}

/// What is done to a suggestion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Approve the proposed limit as it is; `until` makes it temporary.
    Approve {
        by: Actor,
        comment: Option<String>,
        shadow: bool,
        until: Option<Timestamp>,
    },
    /// Reject it; a comment saying why is required.
    Reject { by: Actor, comment: String },
    /// Approve a different limit; a comment saying why is required.
    Modify {
        by: Actor,
        limit: Limit,
        comment: String,
        shadow: bool,
        until: Option<Timestamp>,
    },
    /// Expire a pending suggestion whose deadline has passed.
    Expire,
}

impl Action {
    pub const fn verb(&self) -> &'static str {
        match self {
            Action::Approve { .. } => "approve",
            Action::Reject { .. } => "reject",
            Action::Modify { .. } => "modify",
            Action::Expire => "expire",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApprovalError {
    #[error("cannot {action} a suggestion that is {state}")]
    NotPending {
        action: &'static str,
        state: SuggestionState,
    },
    #[error("cannot {action}: the suggestion expired at {expired_at}")]
    PastExpiry {
        action: &'static str,
        expired_at: Timestamp,
    },
    #[error("cannot expire: the suggestion is pending until {expires_at}")]
    NotYetExpired { expires_at: Timestamp },
    #[error("a comment is required to {action}")]
    CommentRequired { action: &'static str },
    #[error("modified limit: {field} {message}")]
    InvalidLimit {
        field: &'static str,
        message: String,
    },
    #[error("modified limit is the same as the proposed one (approve it instead)")]
    Unmodified,
    #[error("a temporary limit must end after {at}, not at {until}")]
    UntilNotAfter { at: Timestamp, until: Timestamp },
}

/// An approval: the limit that goes into force and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub by: Actor,
    pub at: Timestamp,
    pub comment: Option<String>,
    /// What goes into force (the proposed or the modified limit); `None` for a rejection or
    /// expiry.
    pub limit: Option<Limit>,
    pub shadow: bool,
    /// End of a temporary limit.
    pub until: Option<Timestamp>,
}

/// One state change, for the audit log (who, when, what, why, before/after).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub from: SuggestionState,
    pub to: SuggestionState,
    pub by: Actor,
    pub at: Timestamp,
    pub comment: Option<String>,
    pub before: Limit,
    pub after: Option<Limit>,
}

/// A suggestion under review: the proposal, its deadline and the decision once there is one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SuggestionRecord {
    pub state: SuggestionState,
    pub proposed: Limit,
    pub created_at: Timestamp,
    /// Pending suggestions expire at this log time.
    pub expires_at: Timestamp,
    pub decision: Option<Decision>,
}

impl SuggestionRecord {
    /// A pending suggestion that expires `ttl_seconds` after `created_at`.
    pub fn new(proposed: Limit, created_at: Timestamp, ttl_seconds: u64) -> SuggestionRecord {
        let ttl = i64::try_from(ttl_seconds).unwrap_or(i64::MAX / MICROS_PER_SEC);
        SuggestionRecord {
            state: SuggestionState::Pending,
            proposed,
            created_at,
            expires_at: Timestamp(
                created_at
                    .micros()
                    .saturating_add(ttl.saturating_mul(MICROS_PER_SEC)),
            ),
            decision: None,
        }
    }

    /// Whether the record is pending past its deadline (the engine then applies
    /// [`Action::Expire`]).
    pub fn is_due_to_expire(&self, at: Timestamp) -> bool {
        self.state == SuggestionState::Pending && at >= self.expires_at
    }

    /// Apply `action` at log time `at`. Only a pending suggestion moves: before its deadline it
    /// can be approved, rejected (with a comment) or modified (with a comment, to a valid limit
    /// that differs from the proposal); from its deadline on it can only expire. Every other
    /// combination is an error and leaves the record unchanged.
    pub fn apply(&mut self, action: Action, at: Timestamp) -> Result<Transition, ApprovalError> {
        let verb = action.verb();
        if self.state != SuggestionState::Pending {
            return Err(ApprovalError::NotPending {
                action: verb,
                state: self.state,
            });
        }
        let expired = at >= self.expires_at;
        if expired && !matches!(action, Action::Expire) {
            return Err(ApprovalError::PastExpiry {
                action: verb,
                expired_at: self.expires_at,
            });
        }
        let check_until = |until: Option<Timestamp>| match until {
            Some(u) if u <= at => Err(ApprovalError::UntilNotAfter { at, until: u }),
            _ => Ok(()),
        };
        let (to, decision) = match action {
            Action::Approve {
                by,
                comment,
                shadow,
                until,
            } => {
                check_until(until)?;
                let d = Decision {
                    by,
                    at,
                    comment: comment.filter(|c| !c.trim().is_empty()),
                    limit: Some(self.proposed),
                    shadow,
                    until,
                };
                (SuggestionState::Approved, d)
            }
            Action::Reject { by, comment } => {
                if comment.trim().is_empty() {
                    return Err(ApprovalError::CommentRequired { action: verb });
                }
                let d = Decision {
                    by,
                    at,
                    comment: Some(comment),
                    limit: None,
                    shadow: false,
                    until: None,
                };
                (SuggestionState::Rejected, d)
            }
            Action::Modify {
                by,
                limit,
                comment,
                shadow,
                until,
            } => {
                if comment.trim().is_empty() {
                    return Err(ApprovalError::CommentRequired { action: verb });
                }
                if let Some((field, message)) = limit.check().into_iter().next() {
                    return Err(ApprovalError::InvalidLimit { field, message });
                }
                if limit == self.proposed {
                    return Err(ApprovalError::Unmodified);
                }
                check_until(until)?;
                let d = Decision {
                    by,
                    at,
                    comment: Some(comment),
                    limit: Some(limit),
                    shadow,
                    until,
                };
                (SuggestionState::ModifiedApproved, d)
            }
            Action::Expire => {
                if !expired {
                    return Err(ApprovalError::NotYetExpired {
                        expires_at: self.expires_at,
                    });
                }
                let d = Decision {
                    by: Actor::System,
                    at,
                    comment: None,
                    limit: None,
                    shadow: false,
                    until: None,
                };
                (SuggestionState::Expired, d)
            }
        };
        let transition = Transition {
            from: self.state,
            to,
            by: decision.by.clone(),
            at,
            comment: decision.comment.clone(),
            before: self.proposed,
            after: decision.limit,
        };
        self.state = to;
        self.decision = Some(decision);
        Ok(transition)
    }

    /// The temporary limit an approval created, if it was temporary; `in_force` is the limit it
    /// replaced (what it reverts to).
    pub fn temporary(&self, in_force: Option<Limit>) -> Option<TemporaryLimit> {
        let d = self.decision.as_ref()?;
        Some(TemporaryLimit {
            limit: d.limit?,
            revert_to: in_force,
            from: d.at,
            until: d.until?,
        })
    }
}

/// A limit in force between `from` and `until`, which then reverts to `revert_to` (no limit when
/// `None`) without anyone acting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemporaryLimit {
    pub limit: Limit,
    pub revert_to: Option<Limit>,
    pub from: Timestamp,
    pub until: Timestamp,
}

impl TemporaryLimit {
    /// The limit in force at `at` (once the temporary limit has started).
    pub fn effective(&self, at: Timestamp) -> Option<Limit> {
        if at < self.until {
            Some(self.limit)
        } else {
            self.revert_to
        }
    }

    /// Whether the revert is due: the publisher should publish `revert_to`.
    pub fn is_due(&self, at: Timestamp) -> bool {
        at >= self.until
    }
}

/// How a proposed limit compares with the limit in force.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// No limit in force.
    New,
    Loosen,
    Tighten,
    /// Same steady rate (maybe another algorithm, window or burst).
    Same,
}

/// The diff of a suggestion against the limit in force.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LimitDiff {
    pub before: Option<Limit>,
    pub after: Limit,
    pub change: Change,
    /// Relative change of the steady rate per minute (`0.2` = 20% looser); `None` when new.
    pub rate_change: Option<f64>,
    pub algorithm_changed: bool,
    pub burst_changed: bool,
    /// Human-readable, e.g. `token_bucket 100/60s burst 20 -> token_bucket 120/60s burst 20
    /// (+20% rate)`.
    pub summary: String,
}

/// Compare `after` with `before` by steady rate per minute, algorithm and burst.
pub fn diff_limits(before: Option<&Limit>, after: &Limit) -> LimitDiff {
    let Some(b) = before else {
        return LimitDiff {
            before: None,
            after: *after,
            change: Change::New,
            rate_change: None,
            algorithm_changed: false,
            burst_changed: false,
            summary: format!("new: {after}"),
        };
    };
    let (old, new) = (b.per_minute(), after.per_minute());
    let rate_change = if old > 0.0 { new / old - 1.0 } else { 0.0 };
    let change = if (new - old).abs() < 1e-9 {
        Change::Same
    } else if new > old {
        Change::Loosen
    } else {
        Change::Tighten
    };
    let mut notes = vec![format!("{:+.0}% rate", rate_change * 100.0)];
    let algorithm_changed = b.algorithm() != after.algorithm();
    if algorithm_changed {
        notes.push(format!(
            "algorithm {} -> {}",
            b.algorithm(),
            after.algorithm()
        ));
    }
    let burst_changed = b.burst() != after.burst();
    if burst_changed {
        notes.push(format!("burst {} -> {}", b.burst(), after.burst()));
    }
    LimitDiff {
        before: Some(*b),
        after: *after,
        change,
        rate_change: Some(rate_change),
        algorithm_changed,
        burst_changed,
        summary: format!("{b} -> {after} ({})", notes.join(", ")),
    }
}

/// What a suggestion rests on, stored with it and shown to whoever approves it: the baseline,
/// the open anomaly, the forecast and capacity factor, the reputation, the backtest and the diff
/// against the limit in force.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub baseline: Option<ClientBaseline>,
    pub anomaly: Option<AbuseEvidence>,
    pub reputation: f64,
    pub capacity_factor: f64,
    /// The route's forecast load per minute, when there is one.
    pub forecast_per_minute: Option<f64>,
    pub backtest: Option<BacktestReport>,
    pub diff: LimitDiff,
    pub confidence: f64,
    pub reasons: Vec<String>,
}

impl Evidence {
    /// Collect the evidence of `suggestion`, made from `input`.
    pub fn gather(
        input: &TuningInput<'_>,
        suggestion: &Suggestion,
        forecast_per_minute: Option<f64>,
        backtest: Option<BacktestReport>,
    ) -> Evidence {
        Evidence {
            baseline: input.baseline.clone(),
            anomaly: input.abuse.clone(),
            reputation: input.reputation,
            capacity_factor: input.capacity_factor,
            forecast_per_minute,
            backtest,
            diff: diff_limits(input.current.as_ref(), &suggestion.limit),
            confidence: suggestion.confidence,
            reasons: suggestion.reasons.clone(),
        }
    }
}

/// Auto-approval of small loosenings for clients in good standing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoosenRule {
    pub enabled: bool,
    /// At most this relative increase of the steady rate (0.2 = +20%).
    pub max_increase: f64,
    pub min_reputation: f64,
    pub min_confidence: f64,
}

impl Default for LoosenRule {
    fn default() -> Self {
        LoosenRule {
            enabled: false,
            max_increase: 0.2,
            min_reputation: 0.8,
            min_confidence: 0.7,
        }
    }
}

/// Auto-approval of tightening for abusive clients, in shadow mode first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TightenAbusiveRule {
    pub enabled: bool,
    pub min_confidence: f64,
    pub max_reputation: f64,
    /// The backtest may reject at most this many requests of normal clients.
    pub max_normal_rejections: u64,
    /// Hours in shadow mode before the limit may be enforced (only with `enforce`).
    pub shadow_hours: f64,
}

impl Default for TightenAbusiveRule {
    fn default() -> Self {
        TightenAbusiveRule {
            enabled: false,
            min_confidence: 0.9,
            max_reputation: 0.3,
            max_normal_rejections: 0,
            shadow_hours: 1.0,
        }
    }
}

/// Auto-approval rules; everything is off by default, and even with rules on nothing is
/// enforced (auto-approved limits stay in shadow mode) unless `enforce` is set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoApprovalConfig {
    pub loosen: LoosenRule,
    pub tighten_abusive: TightenAbusiveRule,
    pub enforce: bool,
}

/// What the auto-approval rules decide for one suggestion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum AutoDecision {
    /// Approve as `Actor::Rule(rule)`, in shadow mode when `shadow`.
    Approve {
        rule: String,
        shadow: bool,
        reason: String,
    },
    /// Leave it to an administrator; why no rule applied.
    Manual { reasons: Vec<String> },
}

/// Decide whether a rule approves `suggestion` (for a client with `reputation`), given its diff
/// against the limit in force and its backtest.
///
/// - `loosen_good_standing`: a loosening by at most `max_increase` of a limit in force, for a
///   client with reputation >= `min_reputation`, confidence >= `min_confidence`, not based on
///   abuse. Enforced only with `enforce`, else approved in shadow mode.
/// - `tighten_abusive`: a tightening based on abuse with confidence >= `min_confidence`,
///   reputation <= `max_reputation`, and a backtest rejecting at most `max_normal_rejections`
///   requests of normal clients. Always approved in shadow mode first; see
///   [`may_enforce_after_shadow`].
pub fn auto_decide(
    suggestion: &Suggestion,
    reputation: f64,
    diff: &LimitDiff,
    backtest: Option<&BacktestReport>,
    cfg: &AutoApprovalConfig,
) -> AutoDecision {
    let mut why = Vec::new();
    let l = &cfg.loosen;
    match diff.change {
        Change::Loosen if !l.enabled => why.push("loosen rule is off".to_owned()),
        Change::Loosen => {
            let inc = diff.rate_change.unwrap_or(f64::INFINITY);
            let mut fails = Vec::new();
            if inc > l.max_increase + 1e-9 {
                fails.push(format!(
                    "increase {:+.0}% is above {:+.0}%",
                    inc * 100.0,
                    l.max_increase * 100.0
                ));
            }
            if reputation < l.min_reputation {
                fails.push(format!(
                    "reputation {reputation:.2} is below {:.2}",
                    l.min_reputation
                ));
            }
            if suggestion.confidence < l.min_confidence {
                fails.push(format!(
                    "confidence {:.2} is below {:.2}",
                    suggestion.confidence, l.min_confidence
                ));
            }
            if suggestion.basis == Basis::Abuse {
                fails.push("it is based on abuse".to_owned());
            }
            if fails.is_empty() {
                return AutoDecision::Approve {
                    rule: "loosen_good_standing".into(),
                    shadow: !cfg.enforce,
                    reason: format!(
                        "loosening {:+.0}% (at most {:+.0}%) for a client in good standing (reputation {reputation:.2}, confidence {:.2})",
                        inc * 100.0,
                        l.max_increase * 100.0,
                        suggestion.confidence
                    ),
                };
            }
            why.push(format!("loosen rule: {}", fails.join("; ")));
        }
        Change::New => why.push("no limit in force to compare with".to_owned()),
        Change::Same => why.push("same rate as the limit in force".to_owned()),
        Change::Tighten => {}
    }
    let t = &cfg.tighten_abusive;
    if diff.change == Change::Tighten
        || (diff.change == Change::New && suggestion.basis == Basis::Abuse)
    {
        if !t.enabled {
            why.push("tighten rule is off".to_owned());
        } else {
            let mut fails = Vec::new();
            if suggestion.basis != Basis::Abuse {
                fails.push("the client is not abusive".to_owned());
            }
            if suggestion.confidence < t.min_confidence {
                fails.push(format!(
                    "confidence {:.2} is below {:.2}",
                    suggestion.confidence, t.min_confidence
                ));
            }
            if reputation > t.max_reputation {
                fails.push(format!(
                    "reputation {reputation:.2} is above {:.2}",
                    t.max_reputation
                ));
            }
            match backtest {
                None => fails.push("no backtest".to_owned()),
                Some(b) if b.normal.rejected > t.max_normal_rejections => fails.push(format!(
                    "backtest rejects {} requests of normal clients (at most {})",
                    b.normal.rejected, t.max_normal_rejections
                )),
                Some(_) => {}
            }
            if fails.is_empty() {
                return AutoDecision::Approve {
                    rule: "tighten_abusive".into(),
                    shadow: true,
                    reason: format!(
                        "abusive client (confidence {:.2}, reputation {reputation:.2}), no normal client limited in the backtest: shadow mode first",
                        suggestion.confidence
                    ),
                };
            }
            why.push(format!("tighten rule: {}", fails.join("; ")));
        }
    }
    AutoDecision::Manual { reasons: why }
}

/// Whether a limit a rule approved in shadow mode at `shadow_since` may now be enforced: only
/// with `enforce` on, after `shadow_hours`, and when shadow mode saw no normal client's request
/// rejected beyond `max_normal_rejections`.
pub fn may_enforce_after_shadow(
    shadow_since: Timestamp,
    at: Timestamp,
    normal_rejections_in_shadow: u64,
    cfg: &AutoApprovalConfig,
) -> bool {
    let t = &cfg.tighten_abusive;
    let hours = (at.micros() - shadow_since.micros()) as f64 / 3_600_000_000.0;
    cfg.enforce
        && t.enabled
        && hours >= t.shadow_hours
        && normal_rejections_in_shadow <= t.max_normal_rejections
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::{CostUnit, Selector};
    use crate::tuning::backtest::{Counter, GroupTotals};

    const MIN: i64 = 60 * MICROS_PER_SEC;

    fn tb(rate: u64) -> Limit {
        Limit::TokenBucket {
            rate,
            window_seconds: 60,
            burst: 10,
        }
    }

    fn admin() -> Actor {
        Actor::Admin("ana".into())
    }

    fn approve() -> Action {
        Action::Approve {
            by: admin(),
            comment: None,
            shadow: false,
            until: None,
        }
    }

    fn reject(comment: &str) -> Action {
        Action::Reject {
            by: admin(),
            comment: comment.into(),
        }
    }

    fn modify(limit: Limit, comment: &str) -> Action {
        Action::Modify {
            by: admin(),
            limit,
            comment: comment.into(),
            shadow: false,
            until: None,
        }
    }

    /// A record in `state`: pending ones are created at 0 and expire at 60 minutes.
    fn record(state: SuggestionState) -> SuggestionRecord {
        let mut r = SuggestionRecord::new(tb(100), Timestamp(0), 3600);
        let at = Timestamp(MIN);
        match state {
            SuggestionState::Pending => {}
            SuggestionState::Approved => {
                r.apply(approve(), at).unwrap();
            }
            SuggestionState::Rejected => {
                r.apply(reject("no"), at).unwrap();
            }
            SuggestionState::ModifiedApproved => {
                r.apply(modify(tb(90), "a bit less"), at).unwrap();
            }
            SuggestionState::Expired => {
                r.apply(Action::Expire, Timestamp(60 * MIN)).unwrap();
            }
        }
        assert_eq!(r.state, state);
        r
    }

    #[test]
    fn every_transition_from_every_state() {
        let before = Timestamp(10 * MIN);
        let after = Timestamp(61 * MIN);
        let actions = || {
            [
                approve(),
                reject("too tight"),
                modify(tb(120), "more headroom"),
                Action::Expire,
            ]
        };
        // (state, at, result per action in the order above)
        type Want = Result<SuggestionState, &'static str>;
        let table: [(SuggestionState, Timestamp, [Want; 4]); 6] = [
            (
                SuggestionState::Pending,
                before,
                [
                    Ok(SuggestionState::Approved),
                    Ok(SuggestionState::Rejected),
                    Ok(SuggestionState::ModifiedApproved),
                    Err("cannot expire: the suggestion is pending until 1970-01-01T01:00:00Z"),
                ],
            ),
            (
                SuggestionState::Pending,
                after,
                [
                    Err("cannot approve: the suggestion expired at 1970-01-01T01:00:00Z"),
                    Err("cannot reject: the suggestion expired at 1970-01-01T01:00:00Z"),
                    Err("cannot modify: the suggestion expired at 1970-01-01T01:00:00Z"),
                    Ok(SuggestionState::Expired),
                ],
            ),
            (
                SuggestionState::Approved,
                before,
                [
                    Err("cannot approve a suggestion that is approved"),
                    Err("cannot reject a suggestion that is approved"),
                    Err("cannot modify a suggestion that is approved"),
                    Err("cannot expire a suggestion that is approved"),
                ],
            ),
            (
                SuggestionState::Rejected,
                before,
                [
                    Err("cannot approve a suggestion that is rejected"),
                    Err("cannot reject a suggestion that is rejected"),
                    Err("cannot modify a suggestion that is rejected"),
                    Err("cannot expire a suggestion that is rejected"),
                ],
            ),
            (
                SuggestionState::ModifiedApproved,
                before,
                [
                    Err("cannot approve a suggestion that is modified_approved"),
                    Err("cannot reject a suggestion that is modified_approved"),
                    Err("cannot modify a suggestion that is modified_approved"),
                    Err("cannot expire a suggestion that is modified_approved"),
                ],
            ),
            (
                SuggestionState::Expired,
                after,
                [
                    Err("cannot approve a suggestion that is expired"),
                    Err("cannot reject a suggestion that is expired"),
                    Err("cannot modify a suggestion that is expired"),
                    Err("cannot expire a suggestion that is expired"),
                ],
            ),
        ];
        for (state, at, wants) in table {
            for (action, want) in actions().into_iter().zip(wants) {
                let mut r = record(state);
                let untouched = r.clone();
                let verb = action.verb();
                let got = r.apply(action, at).map(|t| t.to).map_err(|e| e.to_string());
                assert_eq!(
                    got,
                    want.map_err(str::to_owned),
                    "{state} --{verb}--> at {at}"
                );
                match got {
                    Ok(to) => assert_eq!(r.state, to),
                    Err(_) => assert_eq!(r, untouched, "a failed {verb} changed the record"),
                }
            }
        }
    }

    #[test]
    fn decisions_need_their_comment_and_a_valid_different_limit() {
        let at = Timestamp(MIN);
        let cases: [(Action, &str); 5] = [
            (reject("  "), "a comment is required to reject"),
            (modify(tb(120), ""), "a comment is required to modify"),
            (
                modify(tb(0), "zero"),
                "modified limit: rate must be at least 1 (to block a client use a rate of 1 over a long window)",
            ),
            (
                modify(tb(100), "same"),
                "modified limit is the same as the proposed one (approve it instead)",
            ),
            (
                Action::Approve {
                    by: admin(),
                    comment: None,
                    shadow: false,
                    until: Some(at),
                },
                "a temporary limit must end after 1970-01-01T00:01:00Z, not at 1970-01-01T00:01:00Z",
            ),
        ];
        for (action, want) in cases {
            let mut r = record(SuggestionState::Pending);
            assert_eq!(r.apply(action, at).unwrap_err().to_string(), want);
            assert_eq!(r.state, SuggestionState::Pending);
        }
    }

    #[test]
    fn transitions_carry_who_when_why_and_before_after() {
        let mut r = record(SuggestionState::Pending);
        let t = r
            .apply(
                modify(tb(80), "tighter while we investigate"),
                Timestamp(5 * MIN),
            )
            .unwrap();
        assert_eq!(
            t,
            Transition {
                from: SuggestionState::Pending,
                to: SuggestionState::ModifiedApproved,
                by: admin(),
                at: Timestamp(5 * MIN),
                comment: Some("tighter while we investigate".into()),
                before: tb(100),
                after: Some(tb(80)),
            }
        );
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(
            json["by"],
            serde_json::json!({"kind": "admin", "name": "ana"})
        );
        assert_eq!(json["to"], "modified_approved");
        for s in SuggestionState::ALL {
            assert_eq!(s.as_str().parse::<SuggestionState>(), Ok(s));
        }
        assert_eq!(
            "done".parse::<SuggestionState>().unwrap_err().to_string(),
            "unknown suggestion state \"done\" (expected one of pending, approved, rejected, modified_approved, expired)"
        );
    }

    #[test]
    fn temporary_limits_revert_by_themselves() {
        let mut r = record(SuggestionState::Pending);
        assert!(!r.is_due_to_expire(Timestamp(60 * MIN - 1)));
        assert!(r.is_due_to_expire(Timestamp(60 * MIN)));
        let until = Timestamp(30 * MIN);
        r.apply(
            Action::Approve {
                by: admin(),
                comment: Some("launch day".into()),
                shadow: false,
                until: Some(until),
            },
            Timestamp(MIN),
        )
        .unwrap();
        let temp = r.temporary(Some(tb(50))).unwrap();
        assert_eq!(temp.effective(Timestamp(29 * MIN)), Some(tb(100)));
        assert!(!temp.is_due(Timestamp(29 * MIN)));
        assert_eq!(temp.effective(until), Some(tb(50)));
        assert!(temp.is_due(until));
        // Without a limit before, it reverts to none.
        assert_eq!(r.temporary(None).unwrap().effective(until), None);
        // A decided record never expires.
        assert!(!r.is_due_to_expire(Timestamp(61 * MIN)));
        // A permanent approval is not temporary.
        let mut p = record(SuggestionState::Pending);
        p.apply(approve(), Timestamp(MIN)).unwrap();
        assert_eq!(p.temporary(Some(tb(50))), None);
    }

    #[test]
    fn diffs_name_the_direction_and_what_changed() {
        let d = diff_limits(None, &tb(100));
        assert_eq!(
            (d.change, d.summary.as_str()),
            (Change::New, "new: token_bucket 100/60s burst 10")
        );
        let d = diff_limits(Some(&tb(100)), &tb(120));
        assert_eq!(d.change, Change::Loosen);
        assert_eq!(
            d.summary,
            "token_bucket 100/60s burst 10 -> token_bucket 120/60s burst 10 (+20% rate)"
        );
        let hourly = Limit::SlidingWindowLog {
            rate: 3000,
            window_seconds: 3600,
        };
        let d = diff_limits(Some(&tb(100)), &hourly);
        assert_eq!(d.change, Change::Tighten);
        assert_eq!(
            d.summary,
            "token_bucket 100/60s burst 10 -> sliding_window_log 3000/3600s (-50% rate, algorithm token_bucket -> sliding_window_log, burst 10 -> 0)"
        );
        let d = diff_limits(
            Some(&tb(100)),
            &Limit::TokenBucket {
                rate: 100,
                window_seconds: 60,
                burst: 30,
            },
        );
        assert_eq!((d.change, d.burst_changed), (Change::Same, true));
    }

    fn suggestion(limit: Limit, basis: Basis, confidence: f64) -> Suggestion {
        Suggestion {
            selector: Selector::default(),
            limit,
            cost_unit: CostUnit::Requests,
            shadow: false,
            basis,
            confidence,
            reasons: vec![],
        }
    }

    fn report(normal_rejected: u64) -> BacktestReport {
        BacktestReport {
            limit: tb(10),
            counter: Counter::PerClient,
            exact: false,
            clients: vec![],
            normal: GroupTotals {
                rejected: normal_rejected,
                ..GroupTotals::default()
            },
            anomalous: GroupTotals::default(),
        }
    }

    fn on() -> AutoApprovalConfig {
        AutoApprovalConfig {
            loosen: LoosenRule {
                enabled: true,
                ..LoosenRule::default()
            },
            tighten_abusive: TightenAbusiveRule {
                enabled: true,
                ..TightenAbusiveRule::default()
            },
            enforce: false,
        }
    }

    #[test]
    fn auto_approval_is_off_by_default_and_guarded() {
        let current = tb(100);
        let loosen = suggestion(tb(115), Basis::Learned, 0.9);
        let d = diff_limits(Some(&current), &loosen.limit);
        // Off by default.
        assert_eq!(
            auto_decide(&loosen, 0.95, &d, None, &AutoApprovalConfig::default()),
            AutoDecision::Manual {
                reasons: vec!["loosen rule is off".into()]
            }
        );
        // On: approved, but only in shadow mode unless enforcement is on.
        match auto_decide(&loosen, 0.95, &d, None, &on()) {
            AutoDecision::Approve { rule, shadow, .. } => {
                assert_eq!((rule.as_str(), shadow), ("loosen_good_standing", true))
            }
            other => panic!("{other:?}"),
        }
        let enforcing = AutoApprovalConfig {
            enforce: true,
            ..on()
        };
        assert!(matches!(
            auto_decide(&loosen, 0.95, &d, None, &enforcing),
            AutoDecision::Approve { shadow: false, .. }
        ));
        // Guardrails: too large, poor standing, low confidence, all named.
        let big = suggestion(tb(150), Basis::Learned, 0.5);
        let d = diff_limits(Some(&current), &big.limit);
        assert_eq!(
            auto_decide(&big, 0.6, &d, None, &on()),
            AutoDecision::Manual {
                reasons: vec!["loosen rule: increase +50% is above +20%; reputation 0.60 is below 0.80; confidence 0.50 is below 0.70".into()]
            }
        );
        // Tightening an abusive client: shadow first even when enforcing.
        let abuse = suggestion(tb(20), Basis::Abuse, 0.95);
        let d = diff_limits(Some(&current), &abuse.limit);
        assert!(matches!(
            auto_decide(&abuse, 0.1, &d, Some(&report(0)), &enforcing),
            AutoDecision::Approve { shadow: true, .. }
        ));
        assert_eq!(
            auto_decide(&abuse, 0.1, &d, Some(&report(3)), &on()),
            AutoDecision::Manual {
                reasons: vec![
                    "tighten rule: backtest rejects 3 requests of normal clients (at most 0)"
                        .into()
                ]
            }
        );
        assert_eq!(
            auto_decide(&abuse, 0.1, &d, None, &AutoApprovalConfig::default()),
            AutoDecision::Manual {
                reasons: vec!["tighten rule is off".into()]
            }
        );
        // Tightening a client that is not abusive is never automatic.
        let squeeze = suggestion(tb(80), Basis::Learned, 0.99);
        let d = diff_limits(Some(&current), &squeeze.limit);
        assert_eq!(
            auto_decide(&squeeze, 0.1, &d, Some(&report(0)), &on()),
            AutoDecision::Manual {
                reasons: vec!["tighten rule: the client is not abusive".into()]
            }
        );
    }

    #[test]
    fn evidence_carries_the_diff_against_the_limit_in_force() {
        use crate::tuning::{suggest, TierLimits, TuningConfig};
        let tier = TierLimits {
            name: "free".into(),
            default: tb(60),
            floor_per_minute: 1,
            ceiling_per_minute: 1000,
        };
        let input = TuningInput {
            selector: Selector::default(),
            tier: &tier,
            baseline: None,
            reputation: 0.5,
            abuse: None,
            capacity_factor: 1.0,
            cost_unit: CostUnit::Requests,
            current: Some(tb(50)),
        };
        let s = suggest(&input, &TuningConfig::default());
        let e = Evidence::gather(&input, &s, Some(1200.0), Some(report(0)));
        assert_eq!(e.diff.change, Change::Loosen);
        assert_eq!(
            e.diff.summary,
            "token_bucket 50/60s burst 10 -> token_bucket 60/60s burst 10 (+20% rate)"
        );
        assert_eq!(e.reasons, s.reasons);
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["diff"]["change"], "loosen");
        assert_eq!(json["forecast_per_minute"], 1200.0);
        assert_eq!(serde_json::from_value::<Evidence>(json).unwrap(), e);
    }

    #[test]
    fn shadow_promotion_needs_enforce_time_and_no_collateral() {
        let since = Timestamp(0);
        let hour = Timestamp(60 * MIN);
        let enforcing = AutoApprovalConfig {
            enforce: true,
            ..on()
        };
        assert!(may_enforce_after_shadow(since, hour, 0, &enforcing));
        assert!(!may_enforce_after_shadow(
            since,
            Timestamp(59 * MIN),
            0,
            &enforcing
        ));
        assert!(!may_enforce_after_shadow(since, hour, 1, &enforcing));
        assert!(!may_enforce_after_shadow(since, hour, 0, &on()));
        assert!(!may_enforce_after_shadow(
            since,
            hour,
            0,
            &AutoApprovalConfig::default()
        ));
    }
}
