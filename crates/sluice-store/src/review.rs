//! The review side of tuning: reading suggested limits (`limit_suggestions`, keyset pages newest
//! first), deciding them (approve, reject, modify-then-approve), the auto-approval configuration,
//! a client's reputation with its history, and the audit log with filters.
//!
//! A decision is one transaction: the suggestion row is locked (`FOR UPDATE`), the
//! `sluice_core::approval` state machine decides whether the transition is allowed (a decided or
//! expired suggestion answers [`StoreError::StateConflict`]), an approval publishes the rule as a
//! new policy version through [`policy::publish_edit_in`], and the decision and its `audit_log`
//! row are written; all of it commits together or not at all, so a failed publish leaves the
//! suggestion pending.
//!
//! The tuning step (`tuning` modules of this crate and of `sluice-engine`) creates the rows read
//! here; this module never creates suggestions or reputation rows.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sluice_core::approval::{
    Action, Actor, ApprovalError, AutoApprovalConfig, SuggestionRecord, SuggestionState,
};
use sluice_core::policy::Rule;
use sluice_core::time::Timestamp;
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, QueryBuilder, Transaction};

use crate::error::{Result, StoreError};
use crate::policy::{self, Edit};
use crate::tokens::{audit_tx, AuditEntry};
use crate::wire::{rfc3339, rfc3339_opt};

/// Page size used when a caller names none.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page of suggestions or audit entries.
pub const MAX_LIMIT: u32 = 500;
/// Reputation events listed with a client's score when a caller names no limit.
pub const DEFAULT_EVENTS_LIMIT: u32 = 50;

/// A value the database holds that this version cannot read: a decode error, like sqlx's own.
fn undecodable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Database(sqlx::Error::Decode(Box::new(e)))
}

// ----------------------------------------------------------------------------------------------
// Suggestions

/// A suggested limit and, once decided, its decision (every column of `limit_suggestions`).
/// Instants named `*_at` (and `temporary_until`) are log time, `*_wall` the wall clock.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Suggestion {
    pub id: i64,
    /// The policy rule an approval replaces (or adds).
    pub rule_id: String,
    pub client: Option<String>,
    pub state: SuggestionState,
    /// The rule an approval would publish.
    pub rule: Rule,
    /// The rule of the same id in force when it was suggested (`None`: none).
    pub current: Option<Rule>,
    /// `sluice_core::approval::LimitDiff` against `current`, as the tuning step stored it.
    pub diff: serde_json::Value,
    pub confidence: f64,
    pub reasons: serde_json::Value,
    /// `sluice_core::approval::Evidence`, as stored.
    pub evidence: serde_json::Value,
    pub backtest: Option<serde_json::Value>,
    pub abusive: bool,
    #[serde(serialize_with = "rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub expires_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    pub created_wall: DateTime<Utc>,
    pub decided_by: Option<String>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub decided_wall: Option<DateTime<Utc>>,
    pub decision_comment: Option<String>,
    /// What an approval published (the modified rule after a modify).
    pub decided_rule: Option<Rule>,
    /// The policy version the approval published.
    pub policy_version: Option<i64>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub temporary_until: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rfc3339_opt")]
    pub reverted_at: Option<DateTime<Utc>>,
    pub reverted_version: Option<i64>,
}

const SUGGESTION_COLUMNS: &str = "id, rule_id, client, state, rule, current, diff, confidence, \
     reasons, evidence, backtest, abusive, created_at, expires_at, created_wall, decided_by, \
     decided_wall, decision_comment, decided_rule, policy_version, temporary_until, reverted_at, \
     reverted_version";

#[derive(sqlx::FromRow)]
struct SuggestionRow {
    id: i64,
    rule_id: String,
    client: Option<String>,
    state: String,
    rule: serde_json::Value,
    current: Option<serde_json::Value>,
    diff: serde_json::Value,
    confidence: f64,
    reasons: serde_json::Value,
    evidence: serde_json::Value,
    backtest: Option<serde_json::Value>,
    abusive: bool,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    created_wall: DateTime<Utc>,
    decided_by: Option<String>,
    decided_wall: Option<DateTime<Utc>>,
    decision_comment: Option<String>,
    decided_rule: Option<serde_json::Value>,
    policy_version: Option<i64>,
    temporary_until: Option<DateTime<Utc>>,
    reverted_at: Option<DateTime<Utc>>,
    reverted_version: Option<i64>,
}

fn rule_of(id: i64, column: &str, v: serde_json::Value) -> Result<Rule> {
    serde_json::from_value(v).map_err(|e| {
        StoreError::Corrupt(format!(
            "suggestion {id}: {column} is not a policy rule: {e}"
        ))
    })
}

impl TryFrom<SuggestionRow> for Suggestion {
    type Error = StoreError;
    fn try_from(r: SuggestionRow) -> Result<Suggestion> {
        let id = r.id;
        Ok(Suggestion {
            id,
            rule_id: r.rule_id,
            client: r.client,
            state: r.state.parse().map_err(undecodable)?,
            rule: rule_of(id, "rule", r.rule)?,
            current: r.current.map(|v| rule_of(id, "current", v)).transpose()?,
            diff: r.diff,
            confidence: r.confidence,
            reasons: r.reasons,
            evidence: r.evidence,
            backtest: r.backtest,
            abusive: r.abusive,
            created_at: r.created_at,
            expires_at: r.expires_at,
            created_wall: r.created_wall,
            decided_by: r.decided_by,
            decided_wall: r.decided_wall,
            decision_comment: r.decision_comment,
            decided_rule: r
                .decided_rule
                .map(|v| rule_of(id, "decided_rule", v))
                .transpose()?,
            policy_version: r.policy_version,
            temporary_until: r.temporary_until,
            reverted_at: r.reverted_at,
            reverted_version: r.reverted_version,
        })
    }
}

/// Which suggestions to list. Every filter given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SuggestionFilter {
    pub state: Option<SuggestionState>,
    pub client: Option<String>,
    pub abusive: Option<bool>,
    /// Page size, clamped to 1..=[`MAX_LIMIT`]; 0 means [`DEFAULT_LIMIT`].
    pub limit: u32,
    /// Only suggestions with a smaller id (the `next_before_id` of the previous page).
    pub before_id: Option<i64>,
}

/// A page of suggestions, newest (highest id) first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SuggestionPage {
    pub items: Vec<Suggestion>,
    /// Pass as `before_id` for the next page; `None` on the last page.
    pub next_before_id: Option<i64>,
}

fn page_size(limit: u32) -> u32 {
    if limit == 0 {
        DEFAULT_LIMIT
    } else {
        limit.min(MAX_LIMIT)
    }
}

/// One suggestion; [`StoreError::NotFound`] when there is none with this id.
pub async fn get(pool: &PgPool, id: i64) -> Result<Suggestion> {
    let row: Option<SuggestionRow> = sqlx::query_as(&format!(
        "SELECT {SUGGESTION_COLUMNS} FROM limit_suggestions WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.ok_or_else(|| StoreError::NotFound(format!("suggestion {id}")))?
        .try_into()
}

/// Suggestions matching `filter`, newest first, one page.
#[tracing::instrument(skip_all)]
pub async fn list(pool: &PgPool, filter: &SuggestionFilter) -> Result<SuggestionPage> {
    let limit = page_size(filter.limit);
    let mut q = QueryBuilder::<Postgres>::new(format!(
        "SELECT {SUGGESTION_COLUMNS} FROM limit_suggestions WHERE true"
    ));
    if let Some(s) = filter.state {
        q.push(" AND state = ").push_bind(s.as_str());
    }
    if let Some(c) = &filter.client {
        q.push(" AND client = ").push_bind(c.clone());
    }
    if let Some(a) = filter.abusive {
        q.push(" AND abusive = ").push_bind(a);
    }
    if let Some(b) = filter.before_id {
        q.push(" AND id < ").push_bind(b);
    }
    q.push(" ORDER BY id DESC LIMIT ")
        .push_bind(i64::from(limit) + 1);
    let rows: Vec<SuggestionRow> = q.build_query_as().fetch_all(pool).await?;
    let mut items = rows
        .into_iter()
        .map(Suggestion::try_from)
        .collect::<Result<Vec<_>>>()?;
    let next_before_id = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|s| s.id)
    } else {
        None
    };
    Ok(SuggestionPage {
        items,
        next_before_id,
    })
}

// ----------------------------------------------------------------------------------------------
// Decisions

/// What to do with a pending suggestion.
// One value per decision, never stored in bulk: the size of `Modify` does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum DecisionKind {
    /// Publish the suggested rule as it is.
    Approve,
    /// Publish nothing; a comment saying why is required.
    Reject,
    /// Publish this rule instead (same rule id, a different limit); a comment is required.
    Modify(Rule),
}

impl DecisionKind {
    pub const fn verb(&self) -> &'static str {
        match self {
            DecisionKind::Approve => "approve",
            DecisionKind::Reject => "reject",
            DecisionKind::Modify(_) => "modify",
        }
    }
}

/// A decision on suggestion `id`.
#[derive(Clone, Debug, PartialEq)]
pub struct DecideRequest {
    pub id: i64,
    pub kind: DecisionKind,
    /// Who decides (audit log `actor`), e.g. `token:alice` or `cli:root`.
    pub actor: String,
    pub comment: Option<String>,
    /// Override the rule's shadow flag (shadow first: publish it reporting, not rejecting).
    pub shadow: Option<bool>,
    /// Make the limit temporary: it reverts at this log time.
    pub temporary_until: Option<Timestamp>,
}

/// The decided suggestion and the policy version its approval published (`None` for a
/// rejection, or when the served rules already were exactly the approved ones).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Decided {
    pub suggestion: Suggestion,
    pub policy_version: Option<i64>,
}

fn approval_error(e: ApprovalError) -> StoreError {
    match e {
        ApprovalError::NotPending { .. } | ApprovalError::PastExpiry { .. } => {
            StoreError::StateConflict(e.to_string())
        }
        _ => StoreError::Conflict(e.to_string()),
    }
}

/// The log time a decision happens at: how far tuning has run (the tuning cursor), and never
/// before the suggestion was made.
async fn decision_time(
    tx: &mut Transaction<'_, Postgres>,
    created_at: DateTime<Utc>,
) -> Result<Timestamp> {
    let through: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT through FROM tuning_cursor WHERE id")
            .fetch_optional(&mut **tx)
            .await?;
    Ok(Timestamp::from_chrono(
        through.map_or(created_at, |t| t.max(created_at)),
    ))
}

fn summary(s: &Suggestion) -> serde_json::Value {
    serde_json::json!({
        "state": s.state,
        "rule_id": s.rule_id,
        "client": s.client,
        "rule": s.rule,
        "current": s.current,
        "decided_rule": s.decided_rule,
        "policy_version": s.policy_version,
        "temporary_until": s.temporary_until,
    })
}

/// Decide a suggestion inside the caller's transaction (see the module docs). The caller commits
/// `tx`; on error nothing it wrote should be committed (drop `tx`).
#[tracing::instrument(skip_all, fields(id = req.id, action = req.kind.verb()))]
pub async fn decide_in(tx: &mut Transaction<'_, Postgres>, req: &DecideRequest) -> Result<Decided> {
    decide_with(tx, req, true).await.map(|(d, _)| d)
}

/// [`decide_in`], publishing the approved rule now (`publish`) or handing it back for the caller
/// to publish with others ([`decide_batch`]).
async fn decide_with(
    tx: &mut Transaction<'_, Postgres>,
    req: &DecideRequest,
    publish: bool,
) -> Result<(Decided, Option<Rule>)> {
    let row: Option<SuggestionRow> = sqlx::query_as(&format!(
        "SELECT {SUGGESTION_COLUMNS} FROM limit_suggestions WHERE id = $1 FOR UPDATE"
    ))
    .bind(req.id)
    .fetch_optional(&mut **tx)
    .await?;
    let before: Suggestion = row
        .ok_or_else(|| StoreError::NotFound(format!("suggestion {}", req.id)))?
        .try_into()?;
    let at = decision_time(tx, before.created_at).await?;
    let mut record = SuggestionRecord {
        state: before.state,
        proposed: before.rule.limit,
        created_at: Timestamp::from_chrono(before.created_at),
        expires_at: Timestamp::from_chrono(before.expires_at),
        decision: None,
    };
    let by = Actor::Admin(req.actor.clone());
    let shadow = req.shadow.unwrap_or(before.rule.shadow);
    let action = match &req.kind {
        DecisionKind::Approve => Action::Approve {
            by,
            comment: req.comment.clone(),
            shadow,
            until: req.temporary_until,
        },
        DecisionKind::Reject => Action::Reject {
            by,
            comment: req.comment.clone().unwrap_or_default(),
        },
        DecisionKind::Modify(rule) => {
            if rule.id != before.rule_id {
                return Err(StoreError::Conflict(format!(
                    "the modified rule must keep the suggestion's rule id {:?}, not {:?}",
                    before.rule_id, rule.id
                )));
            }
            Action::Modify {
                by,
                limit: rule.limit,
                comment: req.comment.clone().unwrap_or_default(),
                shadow,
                until: req.temporary_until,
            }
        }
    };
    let transition = record.apply(action, at).map_err(approval_error)?;

    // The rule that goes into force, if any.
    let published: Option<Rule> = match &req.kind {
        DecisionKind::Reject => None,
        DecisionKind::Approve | DecisionKind::Modify(_) => {
            let mut rule = match &req.kind {
                DecisionKind::Modify(r) => r.clone(),
                _ => before.rule.clone(),
            };
            rule.shadow = shadow;
            rule.source = Some(format!("suggestion:{}", before.id));
            // Derived again on publish (it depends on the limit).
            rule.ratelimit_policy = None;
            Some(rule)
        }
    };
    let action_name = format!("suggestion.{}", req.kind.verb());
    let policy_version = match &published {
        None => None,
        Some(_) if !publish => None,
        Some(rule) => {
            let comment = record
                .decision
                .as_ref()
                .and_then(|d| d.comment.clone())
                .unwrap_or_else(|| format!("suggestion {} {}", before.id, transition.to));
            let edit = Edit {
                actor: &req.actor,
                action: &action_name,
                comment: Some(&comment),
            };
            let new = rule.clone();
            policy::publish_edit_in(tx, &edit, move |rules| {
                match rules.iter_mut().find(|r| r.id == new.id) {
                    Some(r) => *r = new,
                    None => rules.push(new),
                }
            })
            .await?
            .map(|info| info.version)
        }
    };
    let decision = record.decision.as_ref().expect("apply records a decision");
    let row: SuggestionRow = sqlx::query_as(&format!(
        "UPDATE limit_suggestions SET state = $2, decided_by = $3, decided_wall = now(),
             decision_comment = $4, decided_rule = $5, policy_version = $6, temporary_until = $7
         WHERE id = $1 RETURNING {SUGGESTION_COLUMNS}"
    ))
    .bind(before.id)
    .bind(record.state.as_str())
    .bind(&req.actor)
    .bind(decision.comment.as_deref())
    .bind(published.as_ref().map(Json))
    .bind(policy_version)
    .bind(decision.until.map(Timestamp::to_chrono))
    .fetch_one(&mut **tx)
    .await?;
    let after: Suggestion = row.try_into()?;
    audit_tx(
        tx,
        &req.actor,
        &action_name,
        Some(&format!("suggestion:{}", before.id)),
        decision.comment.as_deref(),
        Some(summary(&before)),
        Some(summary(&after)),
    )
    .await?;
    let deferred = if publish { None } else { published };
    Ok((
        Decided {
            suggestion: after,
            policy_version,
        },
        deferred,
    ))
}

/// What [`decide_batch`] did: each request's outcome, in order, and the one version published.
#[derive(Debug)]
pub struct BatchDecided {
    pub decided: Vec<Result<Decided>>,
    pub policy_version: Option<i64>,
}

/// Several decisions in one transaction and at most one policy version: each decision runs in a
/// savepoint (one that fails is rolled back alone and reported, the others go on), then the rules
/// of every approval are published together as one version, whose number each approved
/// suggestion records. `actor` and `comment` are the version's. The tuner's auto-approvals use it
/// so that a step approving many limits does not wake every gateway once per limit.
pub async fn decide_batch(
    pool: &PgPool,
    reqs: &[DecideRequest],
    actor: &str,
    comment: &str,
) -> Result<BatchDecided> {
    let mut tx = pool.begin().await?;
    let mut decided = Vec::with_capacity(reqs.len());
    let mut rules: Vec<Rule> = Vec::new();
    for req in reqs {
        let mut sp = sqlx::Acquire::begin(&mut *tx).await?;
        match decide_with(&mut sp, req, false).await {
            Ok((d, rule)) => {
                sp.commit().await?;
                rules.extend(rule);
                decided.push(Ok(d));
            }
            Err(e) => {
                sp.rollback().await?;
                decided.push(Err(e));
            }
        }
    }
    let mut policy_version = None;
    if !rules.is_empty() {
        let edit = Edit {
            actor,
            action: "suggestion.approve",
            comment: Some(comment),
        };
        policy_version = policy::publish_edit_in(&mut tx, &edit, move |served| {
            for new in rules {
                match served.iter_mut().find(|r| r.id == new.id) {
                    Some(r) => *r = new,
                    None => served.push(new),
                }
            }
        })
        .await?
        .map(|info| info.version);
        if let Some(v) = policy_version {
            let ids: Vec<i64> = decided
                .iter()
                .filter_map(|d| d.as_ref().ok())
                .filter(|d| d.suggestion.decided_rule.is_some())
                .map(|d| d.suggestion.id)
                .collect();
            sqlx::query("UPDATE limit_suggestions SET policy_version = $2 WHERE id = ANY($1)")
                .bind(&ids)
                .bind(v)
                .execute(&mut *tx)
                .await?;
            for d in decided.iter_mut().flatten() {
                if d.suggestion.decided_rule.is_some() {
                    d.policy_version = Some(v);
                    d.suggestion.policy_version = Some(v);
                }
            }
        }
    }
    tx.commit().await?;
    Ok(BatchDecided {
        decided,
        policy_version,
    })
}

/// [`decide_in`] in a transaction of its own, committed on success.
pub async fn decide(pool: &PgPool, req: &DecideRequest) -> Result<Decided> {
    let mut tx = pool.begin().await?;
    let decided = decide_in(&mut tx, req).await?;
    tx.commit().await?;
    Ok(decided)
}

// ----------------------------------------------------------------------------------------------
// Auto-approval configuration

/// The auto-approval rules in force and who set them last (`None` while the defaults apply).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AutoApproval {
    pub config: AutoApprovalConfig,
    #[serde(serialize_with = "rfc3339_opt")]
    pub updated_at: Option<DateTime<Utc>>,
    pub updated_by: Option<String>,
}

/// Refuse values the rules cannot mean: fractions outside [0, 1], negative or non-finite
/// numbers.
pub fn check_auto_approval(cfg: &AutoApprovalConfig) -> Result<()> {
    let mut problems = Vec::new();
    let fraction = |name: &str, v: f64, problems: &mut Vec<String>| {
        if !(0.0..=1.0).contains(&v) {
            problems.push(format!("{name} must be between 0 and 1, got {v}"));
        }
    };
    let l = &cfg.loosen;
    if !(l.max_increase.is_finite() && l.max_increase >= 0.0) {
        problems.push(format!(
            "loosen.max_increase must be a number of at least 0 (0.2 = +20%), got {}",
            l.max_increase
        ));
    }
    fraction("loosen.min_reputation", l.min_reputation, &mut problems);
    fraction("loosen.min_confidence", l.min_confidence, &mut problems);
    let t = &cfg.tighten_abusive;
    fraction(
        "tighten_abusive.min_confidence",
        t.min_confidence,
        &mut problems,
    );
    fraction(
        "tighten_abusive.max_reputation",
        t.max_reputation,
        &mut problems,
    );
    if !(t.shadow_hours.is_finite() && t.shadow_hours >= 0.0) {
        problems.push(format!(
            "tighten_abusive.shadow_hours must be a number of at least 0, got {}",
            t.shadow_hours
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "invalid auto-approval configuration: {}",
            problems.join("; ")
        )))
    }
}

type AutoRow = (Json<AutoApprovalConfig>, DateTime<Utc>, String);

fn auto_of(row: Option<AutoRow>) -> AutoApproval {
    match row {
        Some((cfg, at, by)) => AutoApproval {
            config: cfg.0,
            updated_at: Some(at),
            updated_by: Some(by),
        },
        None => AutoApproval {
            config: AutoApprovalConfig::default(),
            updated_at: None,
            updated_by: None,
        },
    }
}

/// The auto-approval rules in force (the defaults, everything off, when none were set).
pub async fn get_auto_approval(pool: &PgPool) -> Result<AutoApproval> {
    let row: Option<AutoRow> =
        sqlx::query_as("SELECT config, updated_at, updated_by FROM auto_approval_config")
            .fetch_optional(pool)
            .await?;
    Ok(auto_of(row))
}

/// Replace the auto-approval rules; audited (`auto_approval.set`) with before and after.
pub async fn set_auto_approval(
    pool: &PgPool,
    cfg: &AutoApprovalConfig,
    actor: &str,
) -> Result<AutoApproval> {
    check_auto_approval(cfg)?;
    let mut tx = pool.begin().await?;
    let before: Option<AutoRow> = sqlx::query_as(
        "SELECT config, updated_at, updated_by FROM auto_approval_config FOR UPDATE",
    )
    .fetch_optional(&mut *tx)
    .await?;
    let before = auto_of(before);
    let row: AutoRow = sqlx::query_as(
        "INSERT INTO auto_approval_config (id, config, updated_by) VALUES (true, $1, $2)
         ON CONFLICT (id) DO UPDATE SET config = EXCLUDED.config, updated_by = EXCLUDED.updated_by,
             updated_at = now()
         RETURNING config, updated_at, updated_by",
    )
    .bind(Json(cfg))
    .bind(actor)
    .fetch_one(&mut *tx)
    .await?;
    let after = auto_of(Some(row));
    audit_tx(
        &mut tx,
        actor,
        "auto_approval.set",
        Some("auto_approval"),
        None,
        Some(serde_json::to_value(&before.config).expect("config serialises")),
        Some(serde_json::to_value(&after.config).expect("config serialises")),
    )
    .await?;
    tx.commit().await?;
    Ok(after)
}

// ----------------------------------------------------------------------------------------------
// Reputation

/// One change of a client's score (log time), with its reason as stored.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct ReputationEvent {
    pub id: i64,
    #[serde(serialize_with = "rfc3339")]
    pub at: DateTime<Utc>,
    pub delta: f64,
    pub score_after: f64,
    pub kind: String,
    pub reason: serde_json::Value,
}

/// A client's reputation: its score, since when it is known, and its latest changes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClientReputation {
    pub client: String,
    pub score: f64,
    #[serde(serialize_with = "rfc3339")]
    pub first_seen: DateTime<Utc>,
    /// The log time the score was last folded to.
    #[serde(serialize_with = "rfc3339")]
    pub updated_at: DateTime<Utc>,
    pub good_minutes: i64,
    /// The latest changes, newest first.
    pub history: Vec<ReputationEvent>,
}

/// `client`'s reputation with at most `events_limit` (clamped to 1..=[`MAX_LIMIT`]) of its
/// latest events; `None` when the client has no score yet.
pub async fn reputation(
    pool: &PgPool,
    client: &str,
    events_limit: u32,
) -> Result<Option<ClientReputation>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let row: Option<(f64, DateTime<Utc>, DateTime<Utc>, i64)> = sqlx::query_as(
        "SELECT score, first_seen, updated_at, good_minutes FROM client_reputation WHERE client = $1",
    )
    .bind(client)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((score, first_seen, updated_at, good_minutes)) = row else {
        return Ok(None);
    };
    let history: Vec<ReputationEvent> = sqlx::query_as(
        "SELECT id, at, delta, score_after, kind, reason FROM reputation_events
         WHERE client = $1 ORDER BY at DESC, id DESC LIMIT $2",
    )
    .bind(client)
    .bind(i64::from(events_limit.clamp(1, MAX_LIMIT)))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(ClientReputation {
        client: client.to_owned(),
        score,
        first_seen,
        updated_at,
        good_minutes,
        history,
    }))
}

// ----------------------------------------------------------------------------------------------
// Audit log

/// Which audit entries to list. Every filter given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor: Option<String>,
    /// An exact action (`suggestion.approve`), or a prefix ending in `.*` (`suggestion.*`).
    pub action: Option<String>,
    /// Entries at or after this wall-clock instant.
    pub since: Option<DateTime<Utc>>,
    /// Page size, clamped to 1..=[`MAX_LIMIT`]; 0 means [`DEFAULT_LIMIT`].
    pub limit: u32,
    /// Only entries with a smaller id (the `next_before_id` of the previous page).
    pub before_id: Option<i64>,
}

/// A page of audit entries, newest first.
#[derive(Clone, Debug, Serialize)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    /// Pass as `before_id` for the next page; `None` on the last page.
    pub next_before_id: Option<i64>,
}

/// Audit entries matching `filter`, newest first, one page.
pub async fn audit(pool: &PgPool, filter: &AuditFilter) -> Result<AuditPage> {
    let limit = page_size(filter.limit);
    let mut q = QueryBuilder::<Postgres>::new(
        "SELECT id, at, actor, action, target, reason, before, after FROM audit_log WHERE true",
    );
    if let Some(a) = &filter.actor {
        q.push(" AND actor = ").push_bind(a.clone());
    }
    match filter.action.as_deref().map(|a| (a, a.strip_suffix(".*"))) {
        Some((_, Some(prefix))) => {
            // `starts_with` takes the prefix literally (no LIKE wildcards to escape).
            q.push(" AND starts_with(action, ")
                .push_bind(format!("{prefix}."))
                .push(")");
        }
        Some((exact, None)) => {
            q.push(" AND action = ").push_bind(exact.to_owned());
        }
        None => {}
    }
    if let Some(s) = filter.since {
        q.push(" AND at >= ").push_bind(s);
    }
    if let Some(b) = filter.before_id {
        q.push(" AND id < ").push_bind(b);
    }
    q.push(" ORDER BY id DESC LIMIT ")
        .push_bind(i64::from(limit) + 1);
    let mut items: Vec<AuditEntry> = q.build_query_as().fetch_all(pool).await?;
    let next_before_id = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|e| e.id)
    } else {
        None
    };
    Ok(AuditPage {
        items,
        next_before_id,
    })
}
