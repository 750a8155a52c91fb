//! The tuning step in log time, shared by `sluice serve` (every `--tune-every` seconds, behind
//! the detection cursor) and `sluice replay` (once, through the end of the logs).
//!
//! [`tune_step`] runs from the tuning cursor to `through`:
//!
//! 1. **Reputation**: every client with minutes or anomalies in the span has its reputation folded
//!    forward ([`sluice_core::reputation`]); the state and every event (with its reason) are
//!    stored.
//! 2. **Suggestions** (when the step crosses a `suggest_every_minutes` boundary, and always on the
//!    first step): for every client active in the last `backtest_hours`, the suggested limit
//!    ([`sluice_core::tuning::suggest`]: abuse, confidence gating, learned baseline, capacity
//!    factor, tier clamp, algorithm from burstiness), optionally in cost units; under predicted
//!    overload with fair share on, a rule for a client on one route for every client whose fair
//!    share of that route is below its demand
//!    ([`sluice_core::tuning::fairshare::share_by_route`]: the total among routes by priority
//!    class, then each route among its clients by reputation). Each is backtested on the client's
//!    stored minutes (on that route, for a route rule) and kept, with its evidence, only when it
//!    differs materially from the rule in force and from the pending suggestion for the same rule
//!    (no churn).
//! 3. **Expiry**: pending suggestions past their deadline (log time) expire.
//! 4. **Reverts**: approved temporary limits past `temporary_until` are reverted (the rule they
//!    replaced is restored, or the rule removed) in one transaction with the suggestion's
//!    `reverted_at`/`reverted_version`.
//!
//! Invariants: `through` must be at most the detection cursor (every minute and anomaly read is
//! final); everything runs on log time, so a replay and the live loop store the same rows; the
//! cursor only moves forward, and a step through a time not after the cursor changes nothing but
//! expiry and reverts.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sluice_core::approval::{
    auto_decide, diff_limits, may_enforce_after_shadow, AutoApprovalConfig, AutoDecision, Change,
    Evidence, LimitDiff,
};
use sluice_core::limit::{Cidr, IpMatch};
use sluice_core::policy::{Policy, Rule};
use sluice_core::reputation::{MinuteCounters, Reputation, ReputationConfig};
use sluice_core::time::{MICROS_PER_MINUTE, MICROS_PER_SEC};
use sluice_core::tuning::backtest::{backtest, BacktestReport, ClientTraffic, Counter, Traffic};
use sluice_core::tuning::campaign::{campaign_nets, SubnetConfig};
use sluice_core::tuning::fairshare::{
    share_by_route, Demand, FairShareConfig, PriorityClass, RouteLoad,
};
use sluice_core::tuning::{
    route_cost_weights, route_share_suggestion, suggest, AbuseEvidence, Basis, ClientBaseline,
    CostWeightConfig, RouteCost, Suggestion, TierLimits, TuningConfig, TuningInput,
};
use sluice_core::{AnomalyState, ClientKind, CostUnit, Limit, Selector, Timestamp};
use sluice_store::tuning::{
    self as store, ClientAnomaly, NewSuggestion, ReputationUpdate, StoredReputation,
};
use sluice_store::{PgPool, StoreError};

/// Everything the tuning step is configured with (`sluice serve --tuning-config FILE`, TOML or
/// JSON; every field optional). Rules and defaults: `docs/tuning.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TuningSettings {
    pub tuning: TuningConfig,
    pub reputation: ReputationConfig,
    /// The tier of a client not named in `client_tiers`.
    pub default_tier: TierLimits,
    /// Other tiers, by name.
    pub tiers: BTreeMap<String, TierLimits>,
    /// Client (identity value) to tier name.
    pub client_tiers: BTreeMap<String, String>,
    /// Log time a pending suggestion waits for a decision before it expires.
    pub suggestion_ttl_hours: f64,
    /// Log time of stored traffic a suggestion is backtested on (and in which a client must
    /// have been active to get one).
    pub backtest_hours: f64,
    /// Suggestions are computed when a step crosses a multiple of this many log minutes.
    pub suggest_every_minutes: u32,
    /// A suggestion is kept only if its steady rate differs by more than this share from the
    /// rule in force and from the pending suggestion (or its algorithm, unit or shadow flag
    /// differs).
    pub min_change: f64,
    /// Fair share under predicted overload; `None` turns it off.
    pub fair_share: Option<FairShareConfig>,
    /// Priority class per route for fair share, by normalised route (`/v1/payments`; default
    /// `normal`): under overload critical routes keep their capacity, best-effort routes shed
    /// first.
    pub route_priority: BTreeMap<String, PriorityClass>,
    /// Count cost units (route weights) instead of requests; `None` turns it off.
    pub cost_units: Option<CostWeightConfig>,
    /// When a campaign's network gets one limit with a shared counter.
    pub campaign_subnets: SubnetConfig,
}

/// The tier every client gets unless configured: token bucket of 600 per minute with a burst of
/// 100, floor 10 per minute, ceiling 60,000 per minute.
pub fn default_tier() -> TierLimits {
    TierLimits {
        name: "default".into(),
        default: Limit::TokenBucket {
            rate: 600,
            window_seconds: 60,
            burst: 100,
        },
        floor_per_minute: 10,
        ceiling_per_minute: 60_000,
    }
}

impl Default for TuningSettings {
    fn default() -> Self {
        TuningSettings {
            tuning: TuningConfig::default(),
            reputation: ReputationConfig::default(),
            default_tier: default_tier(),
            tiers: BTreeMap::new(),
            client_tiers: BTreeMap::new(),
            suggestion_ttl_hours: 24.0,
            backtest_hours: 6.0,
            suggest_every_minutes: 15,
            min_change: 0.1,
            fair_share: None,
            route_priority: BTreeMap::new(),
            cost_units: None,
            campaign_subnets: SubnetConfig::default(),
        }
    }
}

impl TuningSettings {
    /// Check what serde cannot: every named tier exists, durations are positive.
    pub fn check(&self) -> Result<(), String> {
        for (client, tier) in &self.client_tiers {
            if !self.tiers.contains_key(tier) && tier != &self.default_tier.name {
                return Err(format!(
                    "client_tiers: client {client:?} names tier {tier:?}, which is not in tiers"
                ));
            }
        }
        if self.suggestion_ttl_hours.is_nan() || self.suggestion_ttl_hours <= 0.0 {
            return Err("suggestion_ttl_hours must be above 0".into());
        }
        if self.backtest_hours.is_nan() || self.backtest_hours <= 0.0 {
            return Err("backtest_hours must be above 0".into());
        }
        if self.suggest_every_minutes == 0 {
            return Err("suggest_every_minutes must be at least 1".into());
        }
        if self.min_change.is_nan() || self.min_change < 0.0 {
            return Err("min_change must be at least 0".into());
        }
        self.campaign_subnets.check()?;
        if let Some(route) = self.route_priority.keys().find(|r| !r.starts_with('/')) {
            return Err(format!(
                "route_priority: {route:?} is not a normalised route (expected a path starting with /)"
            ));
        }
        for (path, limit) in std::iter::once(("default_tier", &self.default_tier.default)).chain(
            self.tiers
                .iter()
                .map(|(name, t)| (name.as_str(), &t.default)),
        ) {
            if let Some((field, msg)) = limit.check().into_iter().next() {
                return Err(format!("{path}.default.{field}: {msg}"));
            }
        }
        Ok(())
    }

    fn tier_of(&self, client: &str) -> &TierLimits {
        self.client_tiers
            .get(client)
            .and_then(|t| self.tiers.get(t))
            .unwrap_or(&self.default_tier)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("invalid tuning settings: {0}")]
    Settings(String),
}

/// The backtest of one suggestion, in short.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BacktestSummary {
    /// Log-time span replayed.
    pub from: String,
    pub to: String,
    pub requests: u64,
    /// Requests it would have rejected.
    pub rejected: u64,
    /// Of those, requests of a client no anomaly named (what a wrong limit costs).
    pub normal_rejected: u64,
    pub anomalous_rejected: u64,
    /// Per-minute counts spread evenly: a lower bound for bursty clients.
    pub exact: bool,
}

/// A suggestion the step stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SuggestionSummary {
    pub id: i64,
    pub client: String,
    pub client_kind: ClientKind,
    pub rule_id: String,
    /// The route of a fair-share rule (a limit for the client on that route only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    pub limit: Limit,
    pub cost: CostUnit,
    pub shadow: bool,
    pub basis: Basis,
    pub reason: String,
    pub confidence: f64,
    /// Against the rule in force (`new`, `loosen`, `tighten`, `same`) and its summary.
    pub change: Change,
    pub diff: String,
    pub backtest: BacktestSummary,
    /// The pending suggestion this one replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub superseded: Option<i64>,
}

/// What one step did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TuneReport {
    /// The log-time span folded: `(from, through]`.
    pub from: Option<String>,
    pub through: String,
    pub clients_folded: usize,
    pub reputation_events: usize,
    /// Whether suggestions were computed in this step.
    pub suggested: bool,
    /// Clients considered for a suggestion.
    pub clients_considered: usize,
    pub suggestions: Vec<SuggestionSummary>,
    /// Suggestions not stored because they did not differ materially from the rule in force or
    /// the pending suggestion.
    pub unchanged: usize,
    /// Clients with too little history for a learned limit, no rule in force and no abuse: the
    /// tier default covers them, so no suggestion of their own.
    pub tier_default: usize,
    /// Whether fair share cut suggestions under predicted overload.
    pub fair_share: Option<FairShareSummary>,
    /// Route cost weights, when limits count cost units.
    pub cost_weights: Vec<RouteCost>,
    /// Campaign networks given no limit because an established client lives there, as
    /// `(anomaly id, network, established client)`.
    pub campaign_nets_spared: Vec<(i64, String, String)>,
    pub expired: Vec<i64>,
    pub reverted: Vec<i64>,
    /// Suggestions the auto-approval rules approved in this step.
    pub auto_approved: Vec<AutoApproved>,
    /// Auto-approved shadow rules switched to enforcement in this step, by suggestion id.
    pub enforced_after_shadow: Vec<i64>,
}

/// One suggestion approved by an auto-approval rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AutoApproved {
    pub id: i64,
    /// The rule that approved it (`loosen_good_standing`, `tighten_abusive`).
    pub rule: String,
    pub shadow: bool,
    pub policy_version: Option<i64>,
    pub reason: String,
}

/// Actor of decisions taken by the auto-approval rules (`auto-approval:<rule>`).
pub const AUTO_ACTOR_PREFIX: &str = "auto-approval:";

/// Fair share under predicted overload, in short.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FairShareSummary {
    /// The total capacity (route `*`) shared among routes, when its factor is below 1 and its
    /// capacity is known.
    pub capacity_per_minute: Option<f64>,
    /// Every route's demand: the sum of its clients' (p95 minute on the route).
    pub demand_per_minute: f64,
    /// Client-and-route shares below demand (each one a suggested rule unless unchanged).
    pub cut: usize,
    /// Every route whose clients shared a capacity (its own, or its grant from the total).
    pub routes: Vec<RouteShareSummary>,
}

/// How one route's capacity was shared among its clients.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteShareSummary {
    pub route: String,
    pub priority: PriorityClass,
    pub demand_per_minute: f64,
    /// Its own predicted capacity (when its factor is below 1).
    pub capacity_per_minute: Option<f64>,
    /// What sharing the total among routes granted it.
    pub granted_per_minute: Option<f64>,
    /// What its clients shared: the lower of the two.
    pub shared_per_minute: Option<f64>,
    pub clients: usize,
    /// Clients granted less than their demand.
    pub cut: usize,
}

const MICROS_PER_HOUR: i64 = 3_600 * MICROS_PER_SEC;

fn hours(h: f64) -> i64 {
    (h * MICROS_PER_HOUR as f64).round() as i64
}

/// The rule id of a client's own limit: `client:<client>`, or `client:h<first 16 hex digits of
/// its SHA-256>` when the client string is not a valid rule id.
pub fn rule_id_for(client: &str) -> String {
    let id = format!("client:{client}");
    let valid = id.len() <= sluice_core::policy::MAX_RULE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if valid {
        id
    } else {
        let digest = Sha256::digest(client.as_bytes());
        format!("client:h{}", &hex::encode(digest)[..16])
    }
}

/// The rule id of a client's fair-share limit on one route: `<rule_id_for(client)>:route:<route>`,
/// the route replaced by `h<first 16 hex digits of its SHA-256>` when it is not valid in a rule
/// id (any route with a `/`, so in practice always), and both hashed when the whole is too long.
pub fn route_rule_id_for(client: &str, route: &str) -> String {
    let hashed = |s: &str| format!("h{}", &hex::encode(Sha256::digest(s.as_bytes()))[..16]);
    let route_part = if route
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        route.to_owned()
    } else {
        hashed(route)
    };
    let id = format!("{}:route:{route_part}", rule_id_for(client));
    if id.len() <= sluice_core::policy::MAX_RULE_ID_LEN {
        id
    } else {
        format!("client:{}:route:{}", hashed(client), hashed(route))
    }
}

/// A client's demand on a route, per minute: the 95th percentile (nearest rank) of its requests
/// in the minutes it used the route, as its own limit is sized on the p95 of its active minutes.
fn route_demand(minutes: &[(Timestamp, u32)]) -> f64 {
    let mut counts: Vec<u32> = minutes.iter().map(|(_, n)| *n).collect();
    if counts.is_empty() {
        return 0.0;
    }
    counts.sort_unstable();
    let rank = ((counts.len() as f64 * 0.95).ceil() as usize).clamp(1, counts.len());
    f64::from(counts[rank - 1])
}

/// Whether `a` differs materially from `b`: another algorithm, unit or shadow flag, or a steady
/// rate more than `min_change` apart (relative to `b`).
pub fn differs_materially(a: &Rule, b: &Rule, min_change: f64) -> bool {
    if a.limit.algorithm() != b.limit.algorithm() || a.cost != b.cost || a.shadow != b.shadow {
        return true;
    }
    if a.selector != b.selector {
        return true;
    }
    let (x, y) = (a.limit.per_minute(), b.limit.per_minute());
    (x - y).abs() > min_change * y.abs().max(f64::MIN_POSITIVE)
}

/// Run one tuning step from the tuning cursor to `through` (at most the detection cursor). See
/// the module documentation for what it does.
#[tracing::instrument(skip_all, fields(through = %through))]
pub async fn tune_step(
    pool: &PgPool,
    settings: &TuningSettings,
    through: Timestamp,
) -> Result<TuneReport, TuneError> {
    settings.check().map_err(TuneError::Settings)?;
    let through = through.minute_floor();
    let cursor = store::cursor(pool).await?;
    let mut report = TuneReport {
        from: cursor.map(|c| c.to_string()),
        through: through.to_string(),
        ..TuneReport::default()
    };
    let advancing = cursor.is_none_or(|c| through > c);
    if advancing {
        let from = match cursor {
            Some(c) => c,
            None => oldest_minute(pool).await?.unwrap_or(through),
        };
        report.from = Some(from.to_string());
        let reps = fold_reputations(pool, settings, from, through, &mut report).await?;
        let every = i64::from(settings.suggest_every_minutes) * MICROS_PER_MINUTE;
        let crosses = cursor.is_none()
            || through.micros().div_euclid(every) > from.micros().div_euclid(every);
        if crosses {
            report.suggested = true;
            make_suggestions(pool, settings, through, &reps, &mut report).await?;
        }
    }
    report.expired = store::expire_due(pool, through).await?;
    report.reverted = revert_due(pool, through).await?;
    report.enforced_after_shadow = enforce_after_shadow(pool, through).await?;
    if advancing {
        store::advance_cursor(pool, through).await?;
    }
    Ok(report)
}

async fn oldest_minute(pool: &PgPool) -> Result<Option<Timestamp>, StoreError> {
    // The oldest committed record; the fold starts at its minute.
    Ok(sluice_store::detection::oldest_batch_time(pool)
        .await?
        .map(Timestamp::minute_floor))
}

/// Fold every client's reputation over `[from, through)`; returns every known reputation after
/// the fold (by client).
async fn fold_reputations(
    pool: &PgPool,
    settings: &TuningSettings,
    from: Timestamp,
    through: Timestamp,
    report: &mut TuneReport,
) -> Result<HashMap<String, StoredReputation>, TuneError> {
    let minutes = store::client_minutes(pool, from, through).await?;
    let anomalies = store::client_anomalies(pool, from, through).await?;
    let mut reps = store::reputations(pool).await?;

    let mut by_client: BTreeMap<(&str, ClientKind), (Vec<MinuteCounters>, Vec<_>)> =
        BTreeMap::new();
    for m in &minutes {
        by_client
            .entry((m.client.as_str(), m.client_kind))
            .or_default()
            .0
            .push(m.counters);
    }
    for a in &anomalies {
        by_client
            .entry((a.client.as_str(), a.client_kind))
            .or_default()
            .1
            .push(a.signal);
    }
    let cfg = &settings.reputation;
    let mut updates = Vec::with_capacity(by_client.len());
    for ((client, kind), (minutes, signals)) in by_client {
        let first = minutes
            .first()
            .map(|m| m.minute)
            .into_iter()
            .chain(signals.iter().map(|s| s.first_detected))
            .min()
            .unwrap_or(from);
        let mut state = reps.get(client).cloned().unwrap_or(StoredReputation {
            client_kind: kind,
            // A new client starts just before its first minute or anomaly, so both count.
            reputation: Reputation::new(Timestamp::from_micros(first.micros() - 1), cfg),
        });
        let events = state.reputation.update(through, &minutes, &signals, cfg);
        report.reputation_events += events.len();
        updates.push(ReputationUpdate {
            client: client.to_owned(),
            state: state.clone(),
            events,
        });
        reps.insert(client.to_owned(), state);
    }
    report.clients_folded = updates.len();
    // Every client is written (its `updated_at` moves even without events), in one transaction.
    store::save_reputations(pool, &updates).await?;
    Ok(reps)
}

/// Per-minute request counts, by minute.
type Minutes = Vec<(Timestamp, u32)>;

/// What the step knows about one client active in the backtest window.
struct Candidate<'a> {
    kind: ClientKind,
    client: &'a str,
    minutes: Vec<(Timestamp, u32)>,
    anomalies: Vec<&'a ClientAnomaly>,
}

async fn make_suggestions(
    pool: &PgPool,
    settings: &TuningSettings,
    through: Timestamp,
    reps: &HashMap<String, StoredReputation>,
    report: &mut TuneReport,
) -> Result<(), TuneError> {
    let window_from = Timestamp::from_micros(through.micros() - hours(settings.backtest_hours));
    let minutes = store::client_minutes(pool, window_from, through).await?;
    let anomalies = store::client_anomalies(pool, window_from, through).await?;
    let baselines = store::baselines(pool).await?;
    let factors = store::capacity_factors(pool, through).await?;
    let forecasts = store::forecasts_at(pool, through).await?;
    let served = sluice_store::policy::current(pool, sluice_store::policy::ALL_GROUPS).await?;
    let in_force: HashMap<&str, &Rule> = served
        .as_ref()
        .map(|p| {
            p.policy
                .rules()
                .iter()
                .map(|r| (r.id.as_str(), r))
                .collect()
        })
        .unwrap_or_default();
    let pending = store::pending(pool).await?;
    let auto = store::auto_approval_config(pool).await?;

    // Cost weights and each client's routes (for its cost per request and its capacity factor).
    let client_routes = store::client_route_requests(pool, window_from, through).await?;
    let mut routes_of: HashMap<&str, Vec<(&str, i64)>> = HashMap::new();
    for (c, r, n) in &client_routes {
        routes_of
            .entry(c.as_str())
            .or_default()
            .push((r.as_str(), *n));
    }
    let weights: HashMap<String, f64> = match &settings.cost_units {
        Some(cfg) => {
            let stats = store::route_cost_stats(pool, window_from, through).await?;
            report.cost_weights = route_cost_weights(&stats, cfg);
            report
                .cost_weights
                .iter()
                .map(|w| (w.route.clone(), w.weight))
                .collect()
        }
        None => HashMap::new(),
    };
    let factor_of: HashMap<&str, f64> = factors
        .iter()
        .map(|f| (f.route.as_str(), f.factor))
        .collect();

    // Candidates: every client active in the window, and every client an open anomaly names.
    let mut candidates: BTreeMap<(&str, ClientKind), Candidate<'_>> = BTreeMap::new();
    for m in &minutes {
        candidates
            .entry((m.client.as_str(), m.client_kind))
            .or_insert_with(|| Candidate {
                kind: m.client_kind,
                client: m.client.as_str(),
                minutes: Vec::new(),
                anomalies: Vec::new(),
            })
            .minutes
            .push((m.counters.minute, m.counters.requests));
    }
    for a in &anomalies {
        if let Some(c) = candidates.get_mut(&(a.client.as_str(), a.client_kind)) {
            c.anomalies.push(a);
        }
    }
    report.clients_considered = candidates.len();

    // Campaign networks: enough of one open campaign's addresses in one network, and no
    // established client there, get one limit with a shared counter (a candidate of its own).
    let plans = plan_campaign_nets(&anomalies, &candidates, &baselines, reps, settings, report);
    let net_cands: Vec<Candidate<'_>> = plans
        .iter()
        .map(|p| {
            let mut per_minute: BTreeMap<Timestamp, u32> = BTreeMap::new();
            for c in &p.clients {
                for &(m, n) in &c.minutes {
                    *per_minute.entry(m).or_default() += n;
                }
            }
            Candidate {
                kind: ClientKind::Ip,
                client: p.name.as_str(),
                minutes: per_minute.into_iter().collect(),
                anomalies: vec![p.anomaly],
            }
        })
        .collect();

    /// One rule to suggest: a client's own limit, or (fair share) its limit on one route.
    struct Made<'a> {
        cand: &'a Candidate<'a>,
        rule_id: String,
        /// The route of a fair-share rule.
        route: Option<String>,
        /// What the suggestion was made from (its evidence).
        input: TuningInput<'a>,
        current: Option<&'a Rule>,
        suggestion: Suggestion,
        /// What it is backtested on, and whether its clients share one counter.
        traffic: Vec<ClientTraffic>,
        counter: Counter,
    }
    let mut made: Vec<Made<'_>> = Vec::new();
    for cand in candidates.values() {
        let Ok(selector) = Selector::client(cand.kind, cand.client) else {
            continue;
        };
        let rule_id = rule_id_for(cand.client);
        let tier = settings.tier_of(cand.client);
        let reputation = reps
            .get(cand.client)
            .map_or(settings.reputation.prior, |r| r.reputation.score);
        let routes = routes_of.get(cand.client).map(Vec::as_slice).unwrap_or(&[]);
        // The tightest capacity factor among the routes the client uses (1 without any).
        let capacity_factor = routes
            .iter()
            .filter_map(|(r, _)| factor_of.get(r))
            .copied()
            .chain(factor_of.get("*").copied())
            .fold(1.0_f64, f64::min);
        // Cost per request: the client's requests weighted by their routes' weights.
        let cost = settings.cost_units.as_ref().map(|_| {
            let total: i64 = routes.iter().map(|(_, n)| n).sum();
            if total == 0 {
                1.0
            } else {
                routes
                    .iter()
                    .map(|(r, n)| *n as f64 * weights.get(*r).copied().unwrap_or(1.0))
                    .sum::<f64>()
                    / total as f64
            }
        });
        let scale = cost.unwrap_or(1.0);
        let baseline = baselines
            .get(&(cand.kind, cand.client.to_owned()))
            .cloned()
            .map(|mut b| {
                b.requests_median *= scale;
                b.requests_mad *= scale;
                b.requests_p95 *= scale;
                b.peak_10s_p95 *= scale;
                b
            });
        let abuse = abuse_evidence(cand, scale);
        let current = in_force.get(rule_id.as_str()).copied();
        let input = TuningInput {
            selector,
            tier,
            baseline,
            reputation,
            abuse,
            capacity_factor,
            cost_unit: if cost.is_some() {
                CostUnit::CostUnits
            } else {
                CostUnit::Requests
            },
            current: current.map(|r| r.limit),
        };
        let suggestion = suggest(&input, &settings.tuning);
        if suggestion.basis == Basis::TierDefault && current.is_none() {
            report.tier_default += 1;
            continue;
        }
        made.push(Made {
            cand,
            rule_id,
            route: None,
            input,
            current,
            suggestion,
            traffic: own_traffic(cand, cand.minutes.clone(), cost),
            counter: Counter::PerClient,
        });
    }

    for (plan, cand) in plans.iter().zip(&net_cands) {
        let rule_id = subnet_rule_id(&plan.net);
        let current = in_force.get(rule_id.as_str()).copied();
        // Nothing in the network is established: it has no normal traffic to keep.
        let abuse = abuse_evidence(cand, 1.0).map(|a| AbuseEvidence {
            pre_attack_per_minute: None,
            ..a
        });
        let input = TuningInput {
            selector: Selector {
                ip: Some(IpMatch::Net(plan.net)),
                ..Selector::default()
            },
            tier: &settings.default_tier,
            baseline: None,
            reputation: plan.reputation,
            abuse,
            capacity_factor: 1.0,
            cost_unit: CostUnit::Requests,
            current: current.map(|r| r.limit),
        };
        let mut suggestion = suggest(&input, &settings.tuning);
        if suggestion.basis != Basis::Abuse {
            continue;
        }
        suggestion.reasons.insert(
            0,
            format!(
                "campaign anomaly {}: {} of its flagged addresses in {} ({} other new addresses active there, counted with the campaign; no established client): one counter for the whole network",
                plan.anomaly.signal.id,
                plan.members,
                plan.net,
                plan.clients.len() - plan.members
            ),
        );
        made.push(Made {
            cand,
            rule_id,
            route: None,
            input,
            current,
            suggestion,
            traffic: plan
                .clients
                .iter()
                .map(|c| ClientTraffic {
                    client: c.client.to_owned(),
                    // The new addresses alongside the campaign count with it (the network holds
                    // no established client by construction); the reasons say so.
                    anomalous: true,
                    traffic: Traffic::Minutes(c.minutes.clone()),
                    cost: None,
                })
                .collect(),
            counter: Counter::Shared,
        });
    }

    // Fair share under predicted overload, per route: the total capacity among routes by class,
    // then each overloaded route's capacity among its clients by reputation; a client-and-route
    // rule for every client whose share is below its demand.
    if let Some(fs) = &settings.fair_share {
        // A capacity counts only where its factor is below 1 (predicted overload): the total
        // (`*`) for sharing among routes, a route's own for sharing among its clients.
        let overloaded = |f: &&store::RouteFactor| f.factor < 1.0 && f.capacity_rps.is_some();
        let total = factors
            .iter()
            .filter(overloaded)
            .find(|f| f.route == "*")
            .and_then(|f| f.capacity_rps)
            .map(|rps| rps * 60.0);
        let own: HashMap<&str, f64> = factors
            .iter()
            .filter(overloaded)
            .filter(|f| f.route != "*")
            .filter_map(|f| Some((f.route.as_str(), f.capacity_rps? * 60.0)))
            .collect();
        if total.is_some() || !own.is_empty() {
            let route_minutes = store::client_route_minutes(pool, window_from, through).await?;
            let by_client: HashMap<&str, &Candidate<'_>> =
                candidates.values().map(|c| (c.client, c)).collect();
            // Route -> client -> its minutes on the route.
            let mut by_route: BTreeMap<&str, BTreeMap<&str, Minutes>> = BTreeMap::new();
            for m in &route_minutes {
                if by_client.contains_key(m.client.as_str()) {
                    by_route
                        .entry(m.route.as_str())
                        .or_default()
                        .entry(m.client.as_str())
                        .or_default()
                        .push((m.minute, m.requests));
                }
            }
            let reputation_of = |client: &str| {
                reps.get(client)
                    .map_or(settings.reputation.prior, |r| r.reputation.score)
            };
            let loads: Vec<RouteLoad> = by_route
                .iter()
                .map(|(route, clients)| RouteLoad {
                    route: (*route).to_owned(),
                    priority: settings
                        .route_priority
                        .get(*route)
                        .copied()
                        .unwrap_or(PriorityClass::Normal),
                    capacity: own.get(route).copied(),
                    clients: clients
                        .iter()
                        .map(|(client, minutes)| Demand {
                            id: (*client).to_owned(),
                            demand: route_demand(minutes),
                            reputation: reputation_of(client),
                            priority: PriorityClass::Normal,
                        })
                        .collect(),
                })
                .collect();
            let shares = share_by_route(total, &loads, fs);
            let own_limit: HashMap<&str, Limit> = made
                .iter()
                .map(|m| (m.cand.client, m.suggestion.limit))
                .collect();
            let mut summary = FairShareSummary {
                capacity_per_minute: total,
                demand_per_minute: shares.iter().map(|s| s.demand).sum(),
                cut: 0,
                routes: Vec::new(),
            };
            let mut route_rules = Vec::new();
            for share in &shares {
                if share.shared.is_some() {
                    summary.routes.push(RouteShareSummary {
                        route: share.route.clone(),
                        priority: share.priority,
                        demand_per_minute: share.demand,
                        capacity_per_minute: share.capacity,
                        granted_per_minute: share.granted,
                        shared_per_minute: share.shared,
                        clients: share.allocations.len(),
                        cut: share.cut,
                    });
                }
                summary.cut += share.cut;
                let minutes_of = &by_route[share.route.as_str()];
                let route_factor = [share.route.as_str(), "*"]
                    .iter()
                    .filter_map(|r| factor_of.get(r).copied())
                    .fold(1.0_f64, f64::min);
                for a in share
                    .allocations
                    .iter()
                    .filter(|a| a.allocated + 1e-9 < a.demand)
                {
                    let cand = by_client[a.id.as_str()];
                    let Ok(selector) = Selector::client(cand.kind, cand.client) else {
                        continue;
                    };
                    let rule_id = route_rule_id_for(cand.client, &share.route);
                    let current = in_force.get(rule_id.as_str()).copied();
                    let tier = settings.tier_of(cand.client);
                    let minutes = minutes_of[a.id.as_str()].clone();
                    // Confidence from data: the client's active minutes on the route.
                    let confidence =
                        minutes.len() as f64 / f64::from(settings.tuning.min_active_minutes.max(1));
                    let base = own_limit.get(cand.client).copied().unwrap_or(tier.default);
                    let suggestion = route_share_suggestion(
                        &selector,
                        share,
                        base,
                        a,
                        current.map(|r| r.limit),
                        confidence,
                        &settings.tuning,
                    );
                    let input = TuningInput {
                        selector: suggestion.selector.clone(),
                        tier,
                        baseline: baselines.get(&(cand.kind, cand.client.to_owned())).cloned(),
                        reputation: reputation_of(cand.client),
                        abuse: abuse_evidence(cand, 1.0),
                        capacity_factor: route_factor,
                        cost_unit: CostUnit::Requests,
                        current: current.map(|r| r.limit),
                    };
                    route_rules.push(Made {
                        cand,
                        rule_id,
                        route: Some(share.route.clone()),
                        input,
                        current,
                        suggestion,
                        traffic: own_traffic(cand, minutes, None),
                        counter: Counter::PerClient,
                    });
                }
            }
            report.fair_share = Some(summary);
            made.extend(route_rules);
        }
    }

    let forecast_total = forecasts.get("*").copied();
    let mut approvals = Vec::new();
    for m in made {
        let s = &m.suggestion;
        let rule_id = m.rule_id.clone();
        let source = match (&m.input.abuse, s.basis) {
            (Some(a), Basis::Abuse) => format!("anomaly:{}", a.anomaly_id),
            _ => "tuner".to_owned(),
        };
        let rule = Rule {
            id: rule_id.clone(),
            selector: s.selector.clone(),
            limit: s.limit,
            cost: s.cost_unit,
            shadow: s.shadow,
            expires_at: None,
            ratelimit_policy: None,
            reason: Some(s.reasons.join("; ")),
            source: Some(source),
        };
        if let Err(e) = Policy::new(vec![rule.clone()]) {
            tracing::warn!(client = m.cand.client, error = %e, "suggested rule is invalid; skipped");
            continue;
        }
        if let Some(cur) = m.current {
            if !differs_materially(&rule, cur, settings.min_change) {
                report.unchanged += 1;
                continue;
            }
        }
        // Same rule as the pending suggestion: nothing new for an administrator. It is stored
        // again (superseding the pending one) only when an auto-approval rule now approves it,
        // say because the anomaly's score rose past the rule's confidence since: otherwise a
        // suggestion first made on a weak signal would wait for a person however strong the
        // evidence grew.
        let same_as_pending = pending
            .get(&rule_id)
            .is_some_and(|p| !differs_materially(&rule, &p.rule, settings.min_change));
        if same_as_pending && !auto.loosen.enabled && !auto.tighten_abusive.enabled {
            report.unchanged += 1;
            continue;
        }
        let bt = backtest(&s.limit, &m.traffic, m.counter);
        let diff: LimitDiff = diff_limits(m.current.map(|r| &r.limit), &s.limit);
        let auto_decision = auto_decide(s, m.input.reputation, &diff, Some(&bt), &auto);
        if same_as_pending && !matches!(auto_decision, AutoDecision::Approve { .. }) {
            report.unchanged += 1;
            continue;
        }
        let input = &m.input;
        let evidence = Evidence::gather(input, s, forecast_total, Some(bt.clone()));
        let window_from = Timestamp::from_micros(through.micros() - hours(settings.backtest_hours));
        let summary = summarise(&bt, window_from, through);
        let new = NewSuggestion {
            rule_id: rule_id.clone(),
            client: Some(m.cand.client.to_owned()),
            rule: rule.clone(),
            current: m.current.cloned(),
            diff: serde_json::to_value(&diff).expect("diff serialises"),
            confidence: s.confidence,
            reasons: s.reasons.clone(),
            evidence: serde_json::to_value(&evidence).expect("evidence serialises"),
            backtest: Some(serde_json::to_value(&bt).expect("backtest serialises")),
            abusive: s.basis == Basis::Abuse,
            created_at: through,
            expires_at: Timestamp::from_micros(
                through.micros() + hours(settings.suggestion_ttl_hours),
            ),
        };
        let inserted = store::insert_suggestion(pool, &new).await?;
        tracing::info!(
            id = inserted.id,
            client = m.cand.client,
            route = m.route.as_deref(),
            rule = %rule_id,
            limit = %s.limit,
            change = ?diff.change,
            "limit suggested"
        );
        report.suggestions.push(SuggestionSummary {
            id: inserted.id,
            client: m.cand.client.to_owned(),
            client_kind: m.cand.kind,
            rule_id,
            route: m.route.clone(),
            limit: s.limit,
            cost: s.cost_unit,
            shadow: s.shadow,
            basis: s.basis,
            reason: s.reasons.join("; "),
            confidence: s.confidence,
            change: diff.change,
            diff: diff.summary,
            backtest: summary,
            superseded: inserted.superseded,
        });
        if let AutoDecision::Approve {
            rule: which,
            shadow,
            reason,
        } = auto_decision
        {
            approvals.push((
                sluice_store::review::DecideRequest {
                    id: inserted.id,
                    kind: sluice_store::review::DecisionKind::Approve,
                    actor: format!("{AUTO_ACTOR_PREFIX}{which}"),
                    comment: Some(reason.clone()),
                    shadow: Some(shadow),
                    temporary_until: None,
                },
                AutoApproved {
                    id: inserted.id,
                    rule: which,
                    shadow,
                    policy_version: None,
                    reason,
                },
            ));
        }
    }
    auto_approve(pool, approvals, report).await
}

/// Apply the step's auto-approvals as one batch: one policy version for all of them. An approval
/// that fails (say, a concurrent administrator decision) leaves its suggestion for an
/// administrator; it never fails the tuning step.
async fn auto_approve(
    pool: &PgPool,
    approvals: Vec<(sluice_store::review::DecideRequest, AutoApproved)>,
    report: &mut TuneReport,
) -> Result<(), TuneError> {
    if approvals.is_empty() {
        return Ok(());
    }
    let mut rules: Vec<&str> = approvals.iter().map(|(_, a)| a.rule.as_str()).collect();
    rules.sort_unstable();
    rules.dedup();
    let actor = format!("{AUTO_ACTOR_PREFIX}{}", rules.join("+"));
    let ids: Vec<String> = approvals.iter().map(|(r, _)| r.id.to_string()).collect();
    let comment = format!("auto-approved suggestions {}", ids.join(", "));
    let reqs: Vec<_> = approvals.iter().map(|(r, _)| r.clone()).collect();
    let batch = sluice_store::review::decide_batch(pool, &reqs, &actor, &comment).await?;
    for ((_, mut approved), outcome) in approvals.into_iter().zip(batch.decided) {
        match outcome {
            Ok(d) => {
                approved.policy_version = d.policy_version;
                tracing::info!(id = approved.id, rule = %approved.rule, shadow = approved.shadow, version = ?d.policy_version, "suggestion auto-approved");
                report.auto_approved.push(approved);
            }
            Err(e) => {
                tracing::warn!(id = approved.id, error = %e, "auto-approval failed; left for an administrator")
            }
        }
    }
    Ok(())
}

/// Switch shadow rules that `tighten_abusive` auto-approved to enforcement once
/// [`may_enforce_after_shadow`] allows it (enforcement on, the shadow time passed in log time,
/// and the rule's backtest rejected no more normal requests than allowed). One policy version
/// per step, whatever the number of rules switched.
async fn enforce_after_shadow(pool: &PgPool, at: Timestamp) -> Result<Vec<i64>, TuneError> {
    let cfg: AutoApprovalConfig = store::auto_approval_config(pool).await?;
    if !(cfg.enforce && cfg.tighten_abusive.enabled) {
        return Ok(Vec::new());
    }
    let Some(served) =
        sluice_store::policy::current(pool, sluice_store::policy::ALL_GROUPS).await?
    else {
        return Ok(Vec::new());
    };
    let actor = format!("{AUTO_ACTOR_PREFIX}tighten_abusive");
    let mut due: Vec<(String, i64)> = Vec::new();
    for rule in served.policy.rules().iter().filter(|r| r.shadow) {
        let Some(id) = rule
            .source
            .as_deref()
            .and_then(|s| s.strip_prefix("suggestion:"))
            .and_then(|s| s.parse::<i64>().ok())
        else {
            continue;
        };
        let sug = match sluice_store::review::get(pool, id).await {
            Ok(s) => s,
            Err(StoreError::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        if sug.decided_by.as_deref() != Some(actor.as_str()) {
            continue;
        }
        let normal_rejected = sug
            .backtest
            .as_ref()
            .and_then(|b| serde_json::from_value::<BacktestReport>(b.clone()).ok())
            .map_or(u64::MAX, |b| b.normal.rejected);
        let since = Timestamp::from_micros(sug.created_at.timestamp_micros());
        if may_enforce_after_shadow(since, at, normal_rejected, &cfg) {
            due.push((rule.id.clone(), id));
        }
    }
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = due.iter().map(|(r, _)| r.clone()).collect();
    let comment = format!(
        "shadow time of {} h passed with no normal client limited: enforcing {}",
        cfg.tighten_abusive.shadow_hours,
        ids.join(", ")
    );
    let mut tx = pool.begin().await.map_err(StoreError::from)?;
    let edit = sluice_store::policy::Edit {
        actor: &actor,
        action: "suggestion.enforce_after_shadow",
        comment: Some(&comment),
    };
    let published = sluice_store::policy::publish_edit_in(&mut tx, &edit, |rules| {
        for r in rules.iter_mut().filter(|r| ids.contains(&r.id)) {
            r.shadow = false;
        }
    })
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(rules = ?ids, version = ?published.map(|v| v.version), "auto-approved shadow rules now enforced");
    Ok(due.into_iter().map(|(_, id)| id).collect())
}

fn summarise(bt: &BacktestReport, from: Timestamp, to: Timestamp) -> BacktestSummary {
    BacktestSummary {
        from: from.to_string(),
        to: to.to_string(),
        requests: bt.normal.requests + bt.anomalous.requests,
        rejected: bt.normal.rejected + bt.anomalous.rejected,
        normal_rejected: bt.normal.rejected,
        anomalous_rejected: bt.anomalous.rejected,
        exact: bt.exact,
    }
}

/// The client's strongest open anomaly as abuse evidence: its attack rate is the busiest minute
/// since it was first detected, its pre-attack rate the mean of the active minutes before (when
/// there are at least five), both in the rule's unit (`scale` per request).
/// What a client's own rule is backtested on: its minutes, anomalous when an anomaly names it.
fn own_traffic(
    cand: &Candidate<'_>,
    minutes: Vec<(Timestamp, u32)>,
    cost: Option<f64>,
) -> Vec<ClientTraffic> {
    vec![ClientTraffic {
        client: cand.client.to_owned(),
        anomalous: !cand.anomalies.is_empty(),
        traffic: Traffic::Minutes(minutes),
        cost,
    }]
}

/// One campaign network that gets a limit of its own.
struct NetPlan<'a> {
    net: Cidr,
    /// The network as text (the suggestion's client).
    name: String,
    /// The campaign (one of its rows).
    anomaly: &'a ClientAnomaly,
    /// Flagged members in the network.
    members: usize,
    /// Every IP client active in the network in the window (members and new addresses).
    clients: Vec<&'a Candidate<'a>>,
    /// The lowest reputation among the members.
    reputation: f64,
}

/// Rule id of a campaign network's limit: `subnet:<address>-<prefix>` (rule ids hold no `/`).
pub fn subnet_rule_id(net: &Cidr) -> String {
    format!("subnet:{}-{}", net.addr(), net.prefix())
}

/// The networks of open campaigns that get a limit ([`campaign_nets`]), strongest campaign first,
/// each network once. Networks spared for an established client are recorded in the report.
fn plan_campaign_nets<'a>(
    anomalies: &'a [ClientAnomaly],
    candidates: &'a BTreeMap<(&'a str, ClientKind), Candidate<'a>>,
    baselines: &HashMap<(ClientKind, String), ClientBaseline>,
    reps: &HashMap<String, StoredReputation>,
    settings: &TuningSettings,
    report: &mut TuneReport,
) -> Vec<NetPlan<'a>> {
    let cfg = &settings.campaign_subnets;
    if cfg.min_members == 0 {
        return Vec::new();
    }
    // Open anomalies with their IP members, strongest first.
    let mut campaigns: BTreeMap<i64, (&ClientAnomaly, Vec<IpAddr>)> = BTreeMap::new();
    for a in anomalies {
        if a.signal.state != AnomalyState::Open || a.client_kind != ClientKind::Ip {
            continue;
        }
        if let Ok(ip) = a.client.parse::<IpAddr>() {
            campaigns
                .entry(a.signal.id)
                .or_insert_with(|| (a, Vec::new()))
                .1
                .push(ip);
        }
    }
    let mut campaigns: Vec<_> = campaigns.into_values().collect();
    campaigns.sort_by(|x, y| y.0.signal.score.total_cmp(&x.0.signal.score));
    if campaigns.is_empty() {
        return Vec::new();
    }
    let ip_clients: Vec<(IpAddr, &Candidate<'_>)> = candidates
        .values()
        .filter(|c| c.kind == ClientKind::Ip)
        .filter_map(|c| Some((c.client.parse::<IpAddr>().ok()?, c)))
        .collect();
    let established = |c: &Candidate<'_>| {
        baselines
            .get(&(ClientKind::Ip, c.client.to_owned()))
            .is_some_and(|b| b.active_minutes >= settings.tuning.min_active_minutes)
    };
    let active: Vec<(IpAddr, bool)> = ip_clients
        .iter()
        .map(|(ip, c)| (*ip, established(c)))
        .collect();
    let reputation_of = |ip: &IpAddr| {
        reps.get(&ip.to_string())
            .map_or(settings.reputation.prior, |r| r.reputation.score)
    };
    let mut planned: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (anomaly, members) in campaigns {
        let found = campaign_nets(&members, &active, cfg);
        for (net, ip) in found.spared {
            report
                .campaign_nets_spared
                .push((anomaly.signal.id, net.to_string(), ip.to_string()));
        }
        for n in found.nets {
            let name = n.net.to_string();
            if !planned.insert(name.clone()) {
                continue;
            }
            let clients: Vec<&Candidate<'_>> = ip_clients
                .iter()
                .filter(|(ip, _)| n.net.contains(*ip))
                .map(|(_, c)| *c)
                .collect();
            out.push(NetPlan {
                net: n.net,
                name,
                anomaly,
                members: n.members.len(),
                clients,
                reputation: n
                    .members
                    .iter()
                    .map(reputation_of)
                    .fold(settings.reputation.prior.max(1.0), f64::min),
            });
        }
    }
    out
}

fn abuse_evidence(c: &Candidate<'_>, scale: f64) -> Option<AbuseEvidence> {
    let a = c
        .anomalies
        .iter()
        .filter(|a| a.signal.state == AnomalyState::Open)
        .max_by(|x, y| x.signal.score.total_cmp(&y.signal.score))?;
    let start = a.signal.first_detected.minute_floor();
    let attack = c
        .minutes
        .iter()
        .filter(|(m, _)| *m >= start)
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(0);
    let mut before: Vec<u32> = c
        .minutes
        .iter()
        .filter(|(m, _)| *m < start)
        .map(|(_, n)| *n)
        .collect();
    // Its normal need before the attack: the 95th percentile of those minutes (nearest rank), as
    // a baseline's p95 is, so a client whose key or address was abused keeps its usual peaks.
    before.sort_unstable();
    let pre = (before.len() >= 5).then(|| {
        let rank = (0.95 * before.len() as f64).ceil() as usize;
        f64::from(before[rank.clamp(1, before.len()) - 1]) * scale
    });
    Some(AbuseEvidence {
        anomaly_id: a.signal.id,
        kind: a.signal.kind,
        score: a.signal.score,
        attack_per_minute: f64::from(attack) * scale,
        pre_attack_per_minute: pre,
    })
}

/// Revert every approved temporary limit due at `at`: restore the rule it replaced (or remove
/// it), in one transaction with the suggestion's `reverted_at`/`reverted_version`.
async fn revert_due(pool: &PgPool, at: Timestamp) -> Result<Vec<i64>, TuneError> {
    let mut done = Vec::new();
    for s in store::due_reverts(pool, at).await? {
        let mut tx = pool.begin().await.map_err(StoreError::from)?;
        let comment = format!(
            "temporary limit of suggestion {} reverted at {} (log time)",
            s.id,
            s.temporary_until.unwrap_or(at)
        );
        let previous = s.current.clone();
        let rule_id = s.rule_id.clone();
        let version = sluice_store::policy::publish_edit_in(
            &mut tx,
            &sluice_store::policy::Edit {
                actor: store::TUNER_ACTOR,
                action: "suggestion.revert",
                comment: Some(&comment),
            },
            |rules| {
                rules.retain(|r| r.id != rule_id);
                if let Some(p) = previous {
                    rules.push(p);
                }
            },
        )
        .await?;
        store::mark_reverted_in(&mut tx, s.id, at, version.as_ref().map(|v| v.version)).await?;
        tx.commit().await.map_err(StoreError::from)?;
        tracing::info!(id = s.id, rule = %s.rule_id, version = ?version.map(|v| v.version), "temporary limit reverted");
        done.push(s.id);
    }
    Ok(done)
}

/// The policy that would be served if every pending suggestion were approved as proposed: the
/// policy served to every gateway now (empty before the first publish) with each suggestion's
/// rule replacing the rule of the same id. Validated.
pub async fn policy_with_pending(pool: &PgPool) -> Result<Policy, TuneError> {
    let served = sluice_store::policy::current(pool, sluice_store::policy::ALL_GROUPS).await?;
    let mut rules: Vec<Rule> = served
        .map(|p| p.policy.rules().to_vec())
        .unwrap_or_default();
    for r in &mut rules {
        r.ratelimit_policy = None;
    }
    let pending = store::pending(pool).await?;
    let mut pending: Vec<_> = pending.into_values().collect();
    pending.sort_by(|a, b| a.rule_id.cmp(&b.rule_id));
    for s in pending {
        rules.retain(|r| r.id != s.rule_id);
        rules.push(s.rule);
    }
    Policy::new(rules).map_err(|e| TuneError::Store(StoreError::Corrupt(e.to_string())))
}

/// Tune behind live detection until the task is aborted: every `every`, if the detection cursor
/// moved past the tuning cursor, run [`tune_step`] through it. Failures are logged and retried on
/// the next tick.
pub fn spawn_live(
    pool: PgPool,
    settings: TuningSettings,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let res = async {
                let Some(bound) = sluice_store::detection::cursor(&pool).await? else {
                    return Ok(None);
                };
                tune_step(&pool, &settings, bound).await.map(Some)
            }
            .await;
            match res {
                Ok(Some(r)) => {
                    if r.clients_folded > 0
                        || !r.suggestions.is_empty()
                        || !r.expired.is_empty()
                        || !r.reverted.is_empty()
                    {
                        tracing::info!(
                            through = %r.through,
                            clients = r.clients_folded,
                            events = r.reputation_events,
                            suggestions = r.suggestions.len(),
                            unchanged = r.unchanged,
                            expired = r.expired.len(),
                            reverted = r.reverted.len(),
                            "tuning step"
                        );
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "tuning step failed; retrying"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::reputation::AnomalySignal;
    use sluice_core::AnomalyKind;

    #[test]
    fn the_pre_attack_rate_is_the_normal_need_before_the_anomaly() {
        let t = |m: i64| Timestamp::from_micros(m * MICROS_PER_MINUTE);
        let anomaly = ClientAnomaly {
            client_kind: ClientKind::ApiKey,
            client: "ak_1".into(),
            signal: AnomalySignal {
                id: 7,
                kind: AnomalyKind::CompromisedKey,
                score: 0.9,
                first_detected: t(20),
                state: AnomalyState::Open,
            },
            last_flagged: t(25),
        };
        // Twenty normal minutes (nineteen at 10/min, one peak at 40), then the attack at 100.
        let mut minutes: Vec<(Timestamp, u32)> = (0..20)
            .map(|m| (t(m), if m == 7 { 40 } else { 10 }))
            .collect();
        minutes.extend((20..25).map(|m| (t(m), 100)));
        let cand = Candidate {
            kind: ClientKind::ApiKey,
            client: "ak_1",
            minutes,
            anomalies: vec![&anomaly],
        };
        let a = abuse_evidence(&cand, 1.0).unwrap();
        assert_eq!(a.anomaly_id, 7);
        assert_eq!(a.attack_per_minute, 100.0);
        // p95 of twenty minutes is the 19th smallest: 10; with two peaks it is the peak.
        assert_eq!(a.pre_attack_per_minute, Some(10.0));
        let mut two = cand.minutes.clone();
        two[3].1 = 40;
        let cand = Candidate {
            minutes: two,
            ..cand
        };
        assert_eq!(
            abuse_evidence(&cand, 2.0).unwrap().pre_attack_per_minute,
            Some(80.0),
            "scaled by the cost per request"
        );
        // Fewer than five minutes before: unknown.
        let short = Candidate {
            minutes: cand.minutes[16..].to_vec(),
            ..cand
        };
        assert_eq!(
            abuse_evidence(&short, 1.0).unwrap().pre_attack_per_minute,
            None
        );
    }
}
