//! Limit tuning: a suggested [`Limit`] per client from its baseline, reputation, open anomaly,
//! the route's capacity factor and its tier, with the algorithm that fits its burstiness, a
//! human-readable reason list and a confidence. Also route cost weights ([`route_cost_weights`]),
//! fair sharing under overload ([`fairshare`]) and the backtest of a proposed rule
//! ([`backtest`]). Every rule and default is explained in `docs/tuning.md`.
//!
//! All rates are per minute unless a name says otherwise.

pub mod backtest;
pub mod campaign;
pub mod fairshare;

use serde::{Deserialize, Serialize};

use crate::anomaly::AnomalyKind;
use crate::limit::{CostUnit, Limit, Selector};
use crate::time::Timestamp;

/// A client's baseline over its history: the columns of `client_profiles` the tuner reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientBaseline {
    pub active_minutes: u32,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// Requests per active minute: median, median absolute deviation, 95th percentile.
    pub requests_median: f64,
    pub requests_mad: f64,
    pub requests_p95: f64,
    /// 95th percentile of the busiest 10 seconds of each active minute.
    pub peak_10s_p95: f64,
}

/// An open anomaly of the client, as the tuner sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AbuseEvidence {
    pub anomaly_id: i64,
    pub kind: AnomalyKind,
    /// The detector's score in [0, 1].
    pub score: f64,
    /// The client's request rate per minute while flagged (e.g. the anomaly's peak minute).
    pub attack_per_minute: f64,
    /// Its rate before the anomaly started, when known (else the baseline's p95 stands in).
    pub pre_attack_per_minute: Option<f64>,
}

/// A tier's default limit and the range learned limits must stay within.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TierLimits {
    pub name: String,
    /// What a client without enough data gets.
    pub default: Limit,
    pub floor_per_minute: u64,
    pub ceiling_per_minute: u64,
}

/// The tuner's constants; defaults in `docs/tuning.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TuningConfig {
    /// Below this many active minutes the tier default is suggested (confidence gating).
    pub min_active_minutes: u32,
    /// Active minutes for full confidence from the amount of data.
    pub full_confidence_minutes: u32,
    /// The high percentile of normal rate is `max(p95, median + mad_k * 1.4826 * MAD)`.
    pub mad_k: f64,
    /// Headroom above that percentile for smooth clients ...
    pub headroom_smooth: f64,
    /// ... and for bursty or batch clients.
    pub headroom_bursty: f64,
    /// A client is bursty within a minute when `6 * peak_10s_p95 / p95` exceeds this.
    pub bursty_peak_ratio: f64,
    /// A client is a batch client when `p95 / median` is at least this.
    pub batch_ratio: f64,
    /// An open anomaly makes a client abusive when its score is at least this ...
    pub abusive_anomaly_score: f64,
    /// ... or the client's reputation is below this.
    pub abusive_reputation: f64,
    /// An abusive client's limit is at most this share of its attack rate.
    pub abuse_cut: f64,
    /// An abusive client with no normal traffic to keep (no pre-attack rate and no baseline of at
    /// least `min_active_minutes`) gets this many requests per `abuse_without_history_window_seconds`:
    /// all it ever sent is the abuse, so the limit all but blocks it.
    pub abuse_without_history_rate: u64,
    pub abuse_without_history_window_seconds: u64,
    /// Suggested limits that tighten the limit in force start in shadow mode.
    pub shadow_tightening: bool,
}

impl Default for TuningConfig {
    fn default() -> Self {
        TuningConfig {
            min_active_minutes: 60,
            full_confidence_minutes: 1440,
            mad_k: 3.0,
            headroom_smooth: 0.25,
            headroom_bursty: 0.5,
            bursty_peak_ratio: 2.0,
            batch_ratio: 4.0,
            abusive_anomaly_score: 0.8,
            abusive_reputation: 0.3,
            abuse_cut: 0.5,
            abuse_without_history_rate: 1,
            abuse_without_history_window_seconds: 600,
            shadow_tightening: true,
        }
    }
}

/// Everything the tuner knows about one client.
#[derive(Clone, Debug, PartialEq)]
pub struct TuningInput<'a> {
    pub selector: Selector,
    pub tier: &'a TierLimits,
    pub baseline: Option<ClientBaseline>,
    /// In [0, 1] (see [`crate::reputation`]).
    pub reputation: f64,
    /// The client's strongest open anomaly, if any.
    pub abuse: Option<AbuseEvidence>,
    /// The route's capacity factor in (0, 1]; 1 when the route is not under pressure.
    pub capacity_factor: f64,
    pub cost_unit: CostUnit,
    /// The limit in force for this selector, if any.
    pub current: Option<Limit>,
}

/// Where a suggested limit comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Learned from the client's own baseline.
    Learned,
    /// Not enough data: the tier's default.
    TierDefault,
    /// An abusive client: a limit that stops the abuse.
    Abuse,
    /// Under predicted overload: the client's fair share of one route's capacity (a rule for
    /// the client on that route, `fairshare::share_by_route`).
    FairShare,
}

/// How a client's traffic is shaped, which decides the algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Burstiness {
    /// Evenly spread within and across minutes.
    Smooth,
    /// Peaks within a minute (busy 10-second slices).
    Bursty,
    /// Mostly quiet, with busy minutes (an hourly batch job).
    Batch,
}

/// A suggested limit with its reasons and confidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    pub selector: Selector,
    pub limit: Limit,
    pub cost_unit: CostUnit,
    /// Whether it should start in shadow mode (log, do not reject).
    pub shadow: bool,
    pub basis: Basis,
    /// In [0, 1]: how much the suggestion rests on data.
    pub confidence: f64,
    /// Human-readable, in the order the rules applied.
    pub reasons: Vec<String>,
}

/// The high percentile of a client's normal rate: `max(p95, median + k * 1.4826 * MAD)`.
pub fn normal_high(b: &ClientBaseline, cfg: &TuningConfig) -> f64 {
    b.requests_p95
        .max(b.requests_median + cfg.mad_k * 1.4826 * b.requests_mad)
}

/// How a baseline's traffic is shaped. Batch wins over bursty: a client quiet most minutes with
/// busy minutes (`p95 / median >= batch_ratio`) is a batch client; otherwise one whose busiest
/// 10 seconds carry more than `bursty_peak_ratio` times an even share of its p95 minute is
/// bursty; everything else is smooth.
pub fn burstiness(b: &ClientBaseline, cfg: &TuningConfig) -> Burstiness {
    let p95 = b.requests_p95.max(1.0);
    if b.requests_p95 / b.requests_median.max(1.0) >= cfg.batch_ratio {
        Burstiness::Batch
    } else if 6.0 * b.peak_10s_p95 / p95 > cfg.bursty_peak_ratio {
        Burstiness::Bursty
    } else {
        Burstiness::Smooth
    }
}

/// The algorithm and its parameters for a learned limit of `per_minute`:
///
/// - **batch**: token bucket (GCRA) whose burst is one whole minute's quota, so a batch run's
///   opening burst passes and then paces at the rate;
/// - **bursty**: token bucket with the burst sized to its 10-second peaks plus headroom;
/// - **smooth**: token bucket with a small burst (5 seconds of quota or its 10-second peak,
///   whichever is larger); when the route is under pressure (capacity factor < 1) a leaky bucket
///   with that queue instead, which delays the client's excess rather than rejecting it and
///   smooths what reaches the backend.
///
/// Fixed windows are never chosen (a client can pass twice the quota across a boundary), nor
/// sliding window counters (the token bucket is as cheap and models bursts explicitly); the
/// sliding window log is kept for abusive clients ([`suggest`]) where exactness matters more than
/// memory.
pub fn choose_limit(
    shape: Burstiness,
    b: &ClientBaseline,
    per_minute: u64,
    capacity_factor: f64,
    cfg: &TuningConfig,
) -> Limit {
    let rate = per_minute.max(1);
    let small = (rate.div_ceil(12)).max(b.peak_10s_p95.ceil() as u64).max(1);
    match shape {
        Burstiness::Batch => Limit::TokenBucket {
            rate,
            window_seconds: 60,
            burst: rate,
        },
        Burstiness::Bursty => Limit::TokenBucket {
            rate,
            window_seconds: 60,
            burst: ((b.peak_10s_p95 * (1.0 + cfg.headroom_bursty)).ceil() as u64).clamp(1, rate),
        },
        Burstiness::Smooth if capacity_factor < 1.0 => Limit::LeakyBucket {
            rate,
            window_seconds: 60,
            queue: small.min(rate),
        },
        Burstiness::Smooth => Limit::TokenBucket {
            rate,
            window_seconds: 60,
            burst: small.min(rate),
        },
    }
}

fn fmt_rate(x: f64) -> String {
    if (x - x.round()).abs() < 0.05 {
        format!("{:.0}", x)
    } else {
        format!("{:.1}", x)
    }
}

/// Suggest a limit for one client. The rules, in order (`docs/tuning.md`):
///
/// 1. **Abuse**: an open anomaly with score >= `abusive_anomaly_score`, or any open anomaly while
///    the reputation is below `abusive_reputation`, makes the client abusive: its limit is its
///    pre-attack rate (or the p95 of a baseline with at least `min_active_minutes`), raised to the
///    tier floor, then cut to at most `abuse_cut` of its attack rate so the abuse stops; without
///    either it has no normal traffic to keep and gets `abuse_without_history_rate` per
///    `abuse_without_history_window_seconds`; sliding window log; confidence is the anomaly's
///    score.
/// 2. **Confidence gating**: fewer than `min_active_minutes` active minutes gives the tier default
///    (scaled by the capacity factor, never below the tier floor).
/// 3. **Learned**: need = p95; high = [`normal_high`]; the target is `high * (1 + headroom)` with
///    the headroom of its [`burstiness`]; reputation `r` weighs the part above need:
///    `need + (target - need) * r`, so a client is never given less than its p95.
/// 4. **Capacity**: multiplied by the capacity factor, but never below need (cutting a good
///    client below its need is only for [`fairshare`] under overload).
/// 5. **Tier**: clamped to `[floor, ceiling]`; the ceiling is a hard cap even below need.
pub fn suggest(input: &TuningInput<'_>, cfg: &TuningConfig) -> Suggestion {
    let tier = input.tier;
    let floor = tier.floor_per_minute.max(1) as f64;
    let ceiling = (tier.ceiling_per_minute as f64).max(floor);
    let rep = input.reputation.clamp(0.0, 1.0);
    let factor = if input.capacity_factor > 0.0 {
        input.capacity_factor.min(1.0)
    } else {
        1.0
    };
    let mut reasons = Vec::new();
    let finish = |limit: Limit, basis: Basis, confidence: f64, reasons: Vec<String>| {
        let tighter = input
            .current
            .is_some_and(|c| limit.per_minute() < c.per_minute());
        Suggestion {
            selector: input.selector.clone(),
            limit,
            cost_unit: input.cost_unit,
            shadow: cfg.shadow_tightening && tighter,
            basis,
            confidence: confidence.clamp(0.0, 1.0),
            reasons,
        }
    };

    // 1. Abuse.
    if let Some(a) = &input.abuse {
        let score = a.score.clamp(0.0, 1.0);
        if score >= cfg.abusive_anomaly_score || rep < cfg.abusive_reputation {
            reasons.push(format!(
                "open {} anomaly {} (score {:.2}) with reputation {:.2}: treated as abusive",
                a.kind, a.anomaly_id, score, rep
            ));
            let (base, from) = match (a.pre_attack_per_minute, &input.baseline) {
                (Some(pre), _) => (pre, "pre-attack rate"),
                (None, Some(b)) if b.active_minutes >= cfg.min_active_minutes => {
                    (b.requests_p95, "baseline p95")
                }
                _ => {
                    // Nothing but the attack to learn from (a baseline of a few minutes is the
                    // attack's own): there is no legitimate need to keep.
                    let limit = Limit::SlidingWindowLog {
                        rate: cfg.abuse_without_history_rate.max(1),
                        window_seconds: cfg.abuse_without_history_window_seconds.max(1),
                    };
                    reasons.push(format!(
                        "no traffic before the attack and no baseline of {} active minutes: nothing legitimate to keep",
                        cfg.min_active_minutes
                    ));
                    reasons.push(format!(
                        "{limit}: exact counting, all but blocks a client whose every request was the abuse"
                    ));
                    return finish(limit, Basis::Abuse, score, reasons);
                }
            };
            let mut rate = base.max(floor);
            reasons.push(format!(
                "limit at its {from} {}/min (tier floor {}/min)",
                fmt_rate(base),
                fmt_rate(floor)
            ));
            let stop = a.attack_per_minute * cfg.abuse_cut;
            if rate > stop {
                rate = stop;
                reasons.push(format!(
                    "cut to {:.0}% of its attack rate {}/min so the abuse stops",
                    cfg.abuse_cut * 100.0,
                    fmt_rate(a.attack_per_minute)
                ));
            }
            let rate = (rate.floor() as u64).max(1);
            let limit = Limit::SlidingWindowLog {
                rate,
                window_seconds: 60,
            };
            reasons.push(format!(
                "{}: exact counting, no burst allowance for an abusive client",
                limit
            ));
            return finish(limit, Basis::Abuse, score, reasons);
        }
        reasons.push(format!(
            "open {} anomaly {} (score {:.2}) is not strong enough to treat the client as abusive; reputation {:.2} weighs its limit",
            a.kind, a.anomaly_id, score, rep
        ));
    }

    // 2. Confidence gating.
    let active = input.baseline.as_ref().map_or(0, |b| b.active_minutes);
    let baseline = match &input.baseline {
        Some(b) if active >= cfg.min_active_minutes => b,
        _ => {
            reasons.push(format!(
                "only {active} active minutes of history (< {}): tier {:?} default",
                cfg.min_active_minutes, tier.name
            ));
            let mut limit = tier.default;
            if factor < 1.0 {
                let scaled = ((limit.rate() as f64 * factor).floor() as u64).max(1);
                let floor_rate = (floor * limit.window_seconds() as f64 / 60.0).ceil() as u64;
                limit = limit.with_rate(scaled.max(floor_rate).min(limit.rate()));
                reasons.push(format!(
                    "scaled by the route's capacity factor {factor:.2} (not below the tier floor)"
                ));
            }
            let confidence = 0.5 * f64::from(active) / f64::from(cfg.min_active_minutes.max(1));
            return finish(limit, Basis::TierDefault, confidence, reasons);
        }
    };

    // 3. Learned.
    let shape = burstiness(baseline, cfg);
    let headroom = match shape {
        Burstiness::Smooth => cfg.headroom_smooth,
        Burstiness::Bursty | Burstiness::Batch => cfg.headroom_bursty,
    };
    let need = baseline.requests_p95.max(0.0);
    let high = normal_high(baseline, cfg);
    let target = high * (1.0 + headroom);
    let mut rate = need + (target - need) * rep;
    reasons.push(format!(
        "{} client: normal need (p95) {}/min, high percentile {}/min, +{:.0}% headroom = {}/min",
        match shape {
            Burstiness::Smooth => "smooth",
            Burstiness::Bursty => "bursty",
            Burstiness::Batch => "batch",
        },
        fmt_rate(need),
        fmt_rate(high),
        headroom * 100.0,
        fmt_rate(target)
    ));
    if rep < 1.0 {
        reasons.push(format!(
            "reputation {rep:.2} keeps {:.0}% of the headroom: {}/min",
            rep * 100.0,
            fmt_rate(rate)
        ));
    }

    // 4. Capacity.
    if factor < 1.0 {
        let scaled = rate * factor;
        if scaled < need {
            reasons.push(format!(
                "capacity factor {factor:.2} would give {}/min, below its normal need: kept at {}/min (fair share decides cuts under overload)",
                fmt_rate(scaled),
                fmt_rate(need)
            ));
            rate = need;
        } else {
            reasons.push(format!(
                "scaled by the route's capacity factor {factor:.2}: {}/min",
                fmt_rate(scaled)
            ));
            rate = scaled;
        }
    }

    // 5. Tier.
    if rate > ceiling {
        reasons.push(if ceiling < need {
            format!(
                "tier {:?} ceiling {}/min caps it below its normal need {}/min",
                tier.name,
                fmt_rate(ceiling),
                fmt_rate(need)
            )
        } else {
            format!(
                "capped at tier {:?} ceiling {}/min",
                tier.name,
                fmt_rate(ceiling)
            )
        });
        rate = ceiling;
    } else if rate < floor {
        reasons.push(format!(
            "raised to tier {:?} floor {}/min",
            tier.name,
            fmt_rate(floor)
        ));
        rate = floor;
    }

    let per_minute = (rate - 1e-9).ceil().max(1.0) as u64;
    let limit = choose_limit(shape, baseline, per_minute, factor, cfg);
    reasons.push(format!("{limit}"));
    let data = (f64::from(active) / f64::from(cfg.full_confidence_minutes.max(1))).min(1.0);
    let spread = 1.4826 * baseline.requests_mad / baseline.requests_median.max(1.0);
    let confidence = data * (0.5 + 0.5 / (1.0 + spread));
    finish(limit, Basis::Learned, confidence, reasons)
}

/// One suggestion entering the overload rule, with what fair sharing weighs it by.
#[derive(Clone, Debug, PartialEq)]
pub struct OverloadEntry {
    pub suggestion: Suggestion,
    /// In [0, 1].
    pub reputation: f64,
    pub priority: fairshare::PriorityClass,
}

/// The overload rule: when the suggestions for clients sharing a capacity (per minute, the
/// route's predicted capacity) add up to more than it, share it by [`fairshare::fair_share`]
/// and cut each limit that does not fit to its share (rounded down, at least 1; a burst or
/// queue larger than the new rate shrinks to it), with a reason. This is the only rule that may
/// give a good client less than its normal need. Returns the allocations in input order.
pub fn apply_fair_share(
    capacity_per_minute: f64,
    entries: &mut [OverloadEntry],
    cfg: &fairshare::FairShareConfig,
) -> Vec<fairshare::Allocation> {
    let demands: Vec<fairshare::Demand> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| fairshare::Demand {
            id: i.to_string(),
            demand: e.suggestion.limit.per_minute(),
            reputation: e.reputation,
            priority: e.priority,
        })
        .collect();
    let allocations = fairshare::fair_share(capacity_per_minute, &demands, cfg);
    for (e, a) in entries.iter_mut().zip(&allocations) {
        if a.allocated + 1e-9 >= a.demand {
            continue;
        }
        let cut = cut_limit(e.suggestion.limit, a.allocated);
        e.suggestion.reasons.push(format!(
            "predicted overload (capacity {}/min): {}; cut to {cut}",
            fmt_rate(capacity_per_minute),
            a.reason
        ));
        e.suggestion.limit = cut;
    }
    allocations
}

/// `limit` at a steady rate of `per_minute` (rounded down, at least 1 per window): the same
/// algorithm and window, a token bucket's burst or a leaky bucket's queue shrunk to the new rate
/// when larger. How fair share cuts a limit to a share.
pub fn cut_limit(limit: Limit, per_minute: f64) -> Limit {
    let window = limit.window_seconds().max(1) as f64;
    let rate = ((per_minute * window / 60.0 + 1e-9).floor() as u64).max(1);
    match limit.with_rate(rate) {
        Limit::TokenBucket {
            rate,
            window_seconds,
            burst,
        } => Limit::TokenBucket {
            rate,
            window_seconds,
            burst: burst.min(rate),
        },
        Limit::LeakyBucket {
            rate,
            window_seconds,
            queue,
        } => Limit::LeakyBucket {
            rate,
            window_seconds,
            queue: queue.min(rate),
        },
        other => other,
    }
}

/// The rule for one client on one route under predicted overload: the client's selector
/// restricted to `route`, `base` (the client's own suggested limit, or its tier default) cut to
/// the allocation ([`cut_limit`]), counting requests (a route's capacity is in requests), with
/// basis [`Basis::FairShare`] and the allocation's reason. `share` is how the route was shared;
/// `current` the limit in force for this rule (a tightening of it starts in shadow mode when
/// `cfg.shadow_tightening` is on).
pub fn route_share_suggestion(
    client: &Selector,
    share: &fairshare::RouteShare,
    base: Limit,
    allocation: &fairshare::Allocation,
    current: Option<Limit>,
    confidence: f64,
    cfg: &TuningConfig,
) -> Suggestion {
    let route = share.route.as_str();
    let capacity = share.shared.unwrap_or(share.demand);
    let limit = cut_limit(base, allocation.allocated);
    let tighter = current.is_some_and(|c| limit.per_minute() < c.per_minute());
    Suggestion {
        selector: client.clone().on_route(route),
        limit,
        cost_unit: CostUnit::Requests,
        shadow: cfg.shadow_tightening && tighter,
        basis: Basis::FairShare,
        confidence: confidence.clamp(0.0, 1.0),
        reasons: vec![
            format!(
                "predicted overload on {route} (capacity {}/min shared among its clients): {}",
                fmt_rate(capacity),
                allocation.reason
            ),
            format!("{limit} on {route}"),
        ],
    }
}

/// What a route costs per request, from the rollups.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteCostStats {
    pub route: String,
    pub requests: u64,
    pub latency_mean_us: f64,
    pub bytes_mean: f64,
}

/// How route costs are learned; defaults in `docs/tuning.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CostWeightConfig {
    /// Routes with fewer requests keep weight 1 (and do not set the medians).
    pub min_requests: u64,
    /// Share of the weight from latency; the rest is from bytes.
    pub latency_share: f64,
    pub min_weight: f64,
    pub max_weight: f64,
}

impl Default for CostWeightConfig {
    fn default() -> Self {
        CostWeightConfig {
            min_requests: 100,
            latency_share: 0.7,
            min_weight: 0.25,
            max_weight: 10.0,
        }
    }
}

/// A route's learned cost in units per request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteCost {
    pub route: String,
    pub weight: f64,
    pub reason: String,
}

fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Cost weights: `latency_share * latency / median latency + (1 - latency_share) * bytes /
/// median bytes`, the medians over routes with at least `min_requests`, clamped to
/// `[min_weight, max_weight]` and rounded to 2 decimals, so the median route costs about 1 unit
/// and an export that is 8 times slower and 20 times larger costs about 11.6 (clamped to 10).
/// Routes with too little traffic cost 1.
pub fn route_cost_weights(stats: &[RouteCostStats], cfg: &CostWeightConfig) -> Vec<RouteCost> {
    let known: Vec<&RouteCostStats> = stats
        .iter()
        .filter(|s| s.requests >= cfg.min_requests)
        .collect();
    let med_latency = median(known.iter().map(|s| s.latency_mean_us).collect());
    let med_bytes = median(known.iter().map(|s| s.bytes_mean).collect());
    let share = cfg.latency_share.clamp(0.0, 1.0);
    stats
        .iter()
        .map(|s| {
            if s.requests < cfg.min_requests {
                return RouteCost {
                    route: s.route.clone(),
                    weight: 1.0,
                    reason: format!(
                        "{} requests (< {}): default weight 1",
                        s.requests, cfg.min_requests
                    ),
                };
            }
            let lat = if med_latency > 0.0 {
                s.latency_mean_us / med_latency
            } else {
                1.0
            };
            let bytes = if med_bytes > 0.0 {
                s.bytes_mean / med_bytes
            } else {
                1.0
            };
            let raw = share * lat + (1.0 - share) * bytes;
            let weight = (raw.clamp(cfg.min_weight, cfg.max_weight) * 100.0).round() / 100.0;
            RouteCost {
                route: s.route.clone(),
                weight,
                reason: format!(
                    "latency {lat:.2}x and bytes {bytes:.2}x the median route: weight {weight:.2}"
                ),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::ClientKind;

    fn tier() -> TierLimits {
        TierLimits {
            name: "standard".into(),
            default: Limit::TokenBucket {
                rate: 600,
                window_seconds: 60,
                burst: 100,
            },
            floor_per_minute: 10,
            ceiling_per_minute: 10_000,
        }
    }

    fn baseline(active: u32, median: f64, mad: f64, p95: f64, peak10: f64) -> ClientBaseline {
        ClientBaseline {
            active_minutes: active,
            first_seen: Timestamp(0),
            last_seen: Timestamp(0),
            requests_median: median,
            requests_mad: mad,
            requests_p95: p95,
            peak_10s_p95: peak10,
        }
    }

    fn steady() -> ClientBaseline {
        baseline(2000, 100.0, 5.0, 110.0, 20.0)
    }

    struct Case {
        name: &'static str,
        baseline: Option<ClientBaseline>,
        reputation: f64,
        abuse: Option<AbuseEvidence>,
        capacity_factor: f64,
        tier: TierLimits,
        current: Option<Limit>,
    }

    fn case(name: &'static str, baseline: Option<ClientBaseline>) -> Case {
        Case {
            name,
            baseline,
            reputation: 1.0,
            abuse: None,
            capacity_factor: 1.0,
            tier: tier(),
            current: None,
        }
    }

    struct Expect {
        limit: Limit,
        basis: Basis,
        confidence: f64,
        shadow: bool,
        /// Substrings that must appear in the reasons, in order.
        reasons: &'static [&'static str],
    }

    fn check(c: Case, e: Expect) {
        let input = TuningInput {
            selector: Selector::client(ClientKind::ApiKey, "k").unwrap(),
            tier: &c.tier,
            baseline: c.baseline,
            reputation: c.reputation,
            abuse: c.abuse,
            capacity_factor: c.capacity_factor,
            cost_unit: CostUnit::Requests,
            current: c.current,
        };
        let s = suggest(&input, &TuningConfig::default());
        assert_eq!(s.limit, e.limit, "{}: {:#?}", c.name, s.reasons);
        assert_eq!(s.basis, e.basis, "{}", c.name);
        assert!(
            (s.confidence - e.confidence).abs() < 1e-3,
            "{}: confidence {}",
            c.name,
            s.confidence
        );
        assert_eq!(s.shadow, e.shadow, "{}", c.name);
        let text = s.reasons.join("\n");
        let mut from = 0;
        for want in e.reasons {
            match text[from..].find(want) {
                Some(i) => from += i + want.len(),
                None => panic!(
                    "{}: reason {want:?} missing (in order) from\n{text}",
                    c.name
                ),
            }
        }
        assert!(s.limit.check().is_empty(), "{}", c.name);
    }

    fn tb(rate: u64, burst: u64) -> Limit {
        Limit::TokenBucket {
            rate,
            window_seconds: 60,
            burst,
        }
    }

    // Steady: high = max(110, 100 + 3 * 1.4826 * 5) = 122.239; * 1.25 = 152.8 -> 153/min;
    // burst max(ceil(153 / 12) = 13, peak 20) = 20. Confidence: full data,
    // 0.5 + 0.5 / (1 + 1.4826 * 5 / 100) = 0.96549.
    const STEADY_CONFIDENCE: f64 = 0.965_49;

    #[test]
    fn steady_client_gets_gcra_with_a_small_burst() {
        check(
            case("steady", Some(steady())),
            Expect {
                limit: tb(153, 20),
                basis: Basis::Learned,
                confidence: STEADY_CONFIDENCE,
                shadow: false,
                reasons: &[
                    "smooth client: normal need (p95) 110/min, high percentile 122.2/min, +25% headroom = 152.8/min",
                    "token_bucket 153/60s burst 20",
                ],
            },
        );
    }

    #[test]
    fn bursty_client_gets_a_burst_sized_to_its_peaks() {
        // 6 * 60 / 110 = 3.3 > 2: bursty; 122.239 * 1.5 = 183.4 -> 184; burst ceil(60 * 1.5).
        check(
            case("bursty", Some(baseline(2000, 100.0, 5.0, 110.0, 60.0))),
            Expect {
                limit: tb(184, 90),
                basis: Basis::Learned,
                confidence: STEADY_CONFIDENCE,
                shadow: false,
                reasons: &["bursty client", "+50% headroom = 183.4/min"],
            },
        );
    }

    #[test]
    fn batch_client_gets_a_minute_of_quota_as_burst() {
        // p95 / median = 60: batch; high = 600, target 900; reputation 0.9:
        // 600 + 300 * 0.9 = 870. Confidence (300 / 1440) * (0.5 + 0.5 / (1 + 0.7413)).
        let mut c = case("batch", Some(baseline(300, 10.0, 5.0, 600.0, 200.0)));
        c.reputation = 0.9;
        check(
            c,
            Expect {
                limit: tb(870, 870),
                basis: Basis::Learned,
                confidence: (300.0 / 1440.0) * (0.5 + 0.5 / (1.0 + 1.4826 * 0.5)),
                shadow: false,
                reasons: &[
                    "batch client",
                    "reputation 0.90 keeps 90% of the headroom: 870/min",
                ],
            },
        );
    }

    #[test]
    fn scraper_is_cut_to_its_baseline_in_shadow_first() {
        let mut c = case("scraper", Some(steady()));
        c.reputation = 0.2;
        c.current = Some(tb(153, 20));
        c.abuse = Some(AbuseEvidence {
            anomaly_id: 42,
            kind: AnomalyKind::Scraping,
            score: 0.95,
            attack_per_minute: 3000.0,
            pre_attack_per_minute: None,
        });
        check(
            c,
            Expect {
                limit: Limit::SlidingWindowLog {
                    rate: 110,
                    window_seconds: 60,
                },
                basis: Basis::Abuse,
                confidence: 0.95,
                shadow: true,
                reasons: &[
                    "open scraping anomaly 42 (score 0.95) with reputation 0.20: treated as abusive",
                    "limit at its baseline p95 110/min (tier floor 10/min)",
                    "sliding_window_log 110/60s",
                ],
            },
        );
    }

    #[test]
    fn new_attacker_without_history_is_all_but_blocked_or_gets_half_its_attack() {
        // No history at all, or a baseline of a few minutes (the attack's own): all but blocked.
        let young = Some(baseline(8, 450.0, 30.0, 500.0, 90.0));
        for (name, history) in [("flood", None), ("young flood", young)] {
            let mut c = case(name, history);
            c.abuse = Some(AbuseEvidence {
                anomaly_id: 1,
                kind: AnomalyKind::Flood,
                score: 0.9,
                attack_per_minute: 500.0,
                pre_attack_per_minute: None,
            });
            check(
                c,
                Expect {
                    limit: Limit::SlidingWindowLog {
                        rate: 1,
                        window_seconds: 600,
                    },
                    basis: Basis::Abuse,
                    confidence: 0.9,
                    shadow: false,
                    reasons: &[
                        "no traffic before the attack and no baseline of 60 active minutes: nothing legitimate to keep",
                    ],
                },
            );
        }
        // A slow attacker whose attack rate is below the floor still gets cut below it.
        let mut c = case("slow stuffing", None);
        c.abuse = Some(AbuseEvidence {
            anomaly_id: 2,
            kind: AnomalyKind::CredentialStuffing,
            score: 0.85,
            attack_per_minute: 12.0,
            pre_attack_per_minute: Some(2.0),
        });
        check(
            c,
            Expect {
                limit: Limit::SlidingWindowLog {
                    rate: 6,
                    window_seconds: 60,
                },
                basis: Basis::Abuse,
                confidence: 0.85,
                shadow: false,
                reasons: &[
                    "limit at its pre-attack rate 2/min (tier floor 10/min)",
                    "cut to 50% of its attack rate 12/min so the abuse stops",
                ],
            },
        );
    }

    #[test]
    fn weak_anomaly_on_a_reputable_client_is_not_abuse() {
        // Reputation 0.6 keeps 60% of the headroom: 110 + 42.8 * 0.6 = 135.7 -> 136.
        let mut c = case("weak anomaly", Some(steady()));
        c.reputation = 0.6;
        c.abuse = Some(AbuseEvidence {
            anomaly_id: 3,
            kind: AnomalyKind::Unusual,
            score: 0.5,
            attack_per_minute: 200.0,
            pre_attack_per_minute: None,
        });
        check(
            c,
            Expect {
                limit: tb(136, 20),
                basis: Basis::Learned,
                confidence: STEADY_CONFIDENCE,
                shadow: false,
                reasons: &["is not strong enough to treat the client as abusive"],
            },
        );
    }

    #[test]
    fn new_client_with_little_data_gets_the_tier_default() {
        check(
            case("new", Some(baseline(30, 5.0, 1.0, 8.0, 2.0))),
            Expect {
                limit: tb(600, 100),
                basis: Basis::TierDefault,
                confidence: 0.25,
                shadow: false,
                reasons: &["only 30 active minutes of history (< 60): tier \"standard\" default"],
            },
        );
        check(
            case("unknown", None),
            Expect {
                limit: tb(600, 100),
                basis: Basis::TierDefault,
                confidence: 0.0,
                shadow: false,
                reasons: &["only 0 active minutes"],
            },
        );
        let mut c = case("new under pressure", None);
        c.capacity_factor = 0.5;
        check(
            c,
            Expect {
                limit: tb(300, 100),
                basis: Basis::TierDefault,
                confidence: 0.0,
                shadow: false,
                reasons: &["scaled by the route's capacity factor 0.50"],
            },
        );
    }

    #[test]
    fn capacity_factor_scales_but_never_below_normal_need() {
        // 152.8 * 0.8 = 122.2 -> 123, smooth under pressure: leaky bucket, queue 20.
        let mut c = case("factor 0.8", Some(steady()));
        c.capacity_factor = 0.8;
        check(
            c,
            Expect {
                limit: Limit::LeakyBucket {
                    rate: 123,
                    window_seconds: 60,
                    queue: 20,
                },
                basis: Basis::Learned,
                confidence: STEADY_CONFIDENCE,
                shadow: false,
                reasons: &["scaled by the route's capacity factor 0.80: 122.2/min"],
            },
        );
        // 152.8 * 0.5 = 76.4 < need 110: kept at 110; tightening the limit in force: shadow.
        let mut c = case("factor 0.5", Some(steady()));
        c.capacity_factor = 0.5;
        c.current = Some(tb(153, 20));
        check(
            c,
            Expect {
                limit: Limit::LeakyBucket {
                    rate: 110,
                    window_seconds: 60,
                    queue: 20,
                },
                basis: Basis::Learned,
                confidence: STEADY_CONFIDENCE,
                shadow: true,
                reasons: &["capacity factor 0.50 would give 76.4/min, below its normal need: kept at 110/min"],
            },
        );
    }

    #[test]
    fn tier_floor_and_ceiling_clamp() {
        let mut c = case("ceiling", Some(steady()));
        c.tier.ceiling_per_minute = 100;
        check(
            c,
            Expect {
                limit: tb(100, 20),
                basis: Basis::Learned,
                confidence: STEADY_CONFIDENCE,
                shadow: false,
                reasons: &[
                    "tier \"standard\" ceiling 100/min caps it below its normal need 110/min",
                ],
            },
        );
        let mut c = case("ceiling above need", Some(steady()));
        c.tier.ceiling_per_minute = 120;
        check(
            c,
            Expect {
                limit: tb(120, 20),
                basis: Basis::Learned,
                confidence: STEADY_CONFIDENCE,
                shadow: false,
                reasons: &["capped at tier \"standard\" ceiling 120/min"],
            },
        );
        // high = max(2, 1 + 0) = 2; * 1.25 = 2.5 < floor 10.
        check(
            case("floor", Some(baseline(2000, 1.0, 0.0, 2.0, 0.3))),
            Expect {
                limit: tb(10, 1),
                basis: Basis::Learned,
                confidence: 1.0,
                shadow: false,
                reasons: &["raised to tier \"standard\" floor 10/min"],
            },
        );
    }

    #[test]
    fn low_reputation_never_squeezes_below_need() {
        for rep in [0.0, 0.2, 0.5] {
            let mut c = case("low reputation", Some(steady()));
            c.reputation = rep;
            let want = (110.0 + (152.799 - 110.0) * rep - 1e-9_f64).ceil() as u64;
            check(
                c,
                Expect {
                    limit: tb(want, 20),
                    basis: Basis::Learned,
                    confidence: STEADY_CONFIDENCE,
                    shadow: false,
                    reasons: &["keeps"],
                },
            );
        }
    }

    #[test]
    fn low_reputation_clients_give_up_capacity_first_under_overload() {
        use fairshare::{FairShareConfig, PriorityClass};
        // Three steady clients: reputation 1.0, 0.5 and 0.2 suggest 153, 132 and 119/min
        // (weights 1, 0.25 and 0.05).
        let entries = || -> Vec<OverloadEntry> {
            [1.0, 0.5, 0.2]
                .into_iter()
                .map(|rep| {
                    let t = tier();
                    let input = TuningInput {
                        selector: Selector::default(),
                        tier: &t,
                        baseline: Some(steady()),
                        reputation: rep,
                        abuse: None,
                        capacity_factor: 1.0,
                        cost_unit: CostUnit::Requests,
                        current: None,
                    };
                    OverloadEntry {
                        suggestion: suggest(&input, &TuningConfig::default()),
                        reputation: rep,
                        priority: PriorityClass::Normal,
                    }
                })
                .collect()
        };
        // (capacity, rates after the rule): at 300 the good client keeps 153 and the rest share
        // 147 at level 490: 122.5 and 24.5; at 150 nobody fits: level 115.4 gives 115, 28.8 and
        // 5.8.
        let table: [(f64, [u64; 3]); 3] = [
            (1000.0, [153, 132, 119]),
            (300.0, [153, 122, 24]),
            (150.0, [115, 28, 5]),
        ];
        for (capacity, want) in table {
            let mut e = entries();
            let before: Vec<u64> = e.iter().map(|x| x.suggestion.limit.rate()).collect();
            assert_eq!(before, [153, 132, 119]);
            apply_fair_share(capacity, &mut e, &FairShareConfig::default());
            let got: Vec<u64> = e.iter().map(|x| x.suggestion.limit.rate()).collect();
            assert_eq!(got, want, "capacity {capacity}");
            assert!(got.iter().sum::<u64>() as f64 <= capacity);
            for x in &e {
                assert!(x.suggestion.limit.check().is_empty());
                assert!(x.suggestion.limit.burst() <= x.suggestion.limit.rate());
            }
            if capacity == 300.0 {
                let last = e[2].suggestion.reasons.last().unwrap();
                assert!(
                    last.starts_with("predicted overload (capacity 300/min): normal class under overload: fair share 24.5 of 119.0/min (weight 0.05 from reputation 0.20"),
                    "{last}"
                );
                assert!(
                    last.ends_with("cut to token_bucket 24/60s burst 20"),
                    "{last}"
                );
            }
        }
    }

    #[test]
    fn cut_limit_keeps_the_algorithm_and_shrinks_burst_and_queue() {
        let tb = |rate, window_seconds, burst| Limit::TokenBucket {
            rate,
            window_seconds,
            burst,
        };
        let lb = |rate, queue| Limit::LeakyBucket {
            rate,
            window_seconds: 60,
            queue,
        };
        let swl = |rate| Limit::SlidingWindowLog {
            rate,
            window_seconds: 60,
        };
        // (limit, share per minute, cut)
        let cases: &[(Limit, f64, Limit)] = &[
            (tb(600, 60, 100), 15.0, tb(15, 60, 15)),
            (tb(600, 60, 10), 45.9, tb(45, 60, 10)),
            // Floating error below a whole share does not lose a request.
            (tb(600, 60, 10), 45.0 - 1e-12, tb(45, 60, 10)),
            // Per second: 30/min is 0.5/s, at least 1 per window.
            (tb(10, 1, 5), 30.0, tb(1, 1, 1)),
            (tb(100, 10, 5), 120.0, tb(20, 10, 5)),
            (lb(200, 20), 12.0, lb(12, 12)),
            (swl(50), 0.0, swl(1)),
        ];
        for (limit, share, want) in cases {
            assert_eq!(cut_limit(*limit, *share), *want, "{limit} at {share}/min");
        }
    }

    #[test]
    fn route_share_suggestion_is_a_client_and_route_rule() {
        use fairshare::{share_by_route, Demand, FairShareConfig, PriorityClass, RouteLoad};
        let client = Selector::client(ClientKind::ApiKey, "ak_bad").unwrap();
        let loads = [RouteLoad {
            route: "/v1/reports".into(),
            priority: PriorityClass::BestEffort,
            capacity: Some(45.0),
            clients: vec![
                Demand {
                    id: "ak_good".into(),
                    demand: 30.0,
                    reputation: 0.95,
                    priority: PriorityClass::Normal,
                },
                Demand {
                    id: "ak_bad".into(),
                    demand: 30.0,
                    reputation: 0.1,
                    priority: PriorityClass::Normal,
                },
            ],
        }];
        let shares = share_by_route(None, &loads, &FairShareConfig::default());
        let share = &shares[0];
        assert_eq!(share.cut, 1);
        let base = tier().default;
        // (limit in force, shadow)
        let cases: &[(Option<Limit>, bool)] = &[
            (None, false),
            (Some(base), true),
            (Some(base.with_rate(10)), false),
        ];
        for (current, shadow) in cases {
            let s = route_share_suggestion(
                &client,
                share,
                base,
                &share.allocations[1],
                *current,
                0.7,
                &TuningConfig::default(),
            );
            assert_eq!(s.selector, client.clone().on_route("/v1/reports"));
            assert_eq!(
                s.limit,
                Limit::TokenBucket {
                    rate: 15,
                    window_seconds: 60,
                    burst: 15
                }
            );
            assert_eq!(s.basis, Basis::FairShare);
            assert_eq!(s.cost_unit, CostUnit::Requests);
            assert_eq!(s.shadow, *shadow, "{current:?}");
            assert_eq!(s.confidence, 0.7);
            assert_eq!(
                s.reasons,
                [
                    "predicted overload on /v1/reports (capacity 45/min shared among its clients): best_effort class under overload: fair share 15.0 of 30.0/min (weight 0.05 from reputation 0.10, level 300.0)".to_owned(),
                    "token_bucket 15/60s burst 15 on /v1/reports".to_owned(),
                ]
            );
        }
    }

    #[test]
    fn cost_weights_are_relative_to_the_median_route() {
        let stats = [
            RouteCostStats {
                route: "/v1/items/{id}".into(),
                requests: 10_000,
                latency_mean_us: 10_000.0,
                bytes_mean: 1_000.0,
            },
            RouteCostStats {
                route: "/v1/search".into(),
                requests: 5_000,
                latency_mean_us: 20_000.0,
                bytes_mean: 2_000.0,
            },
            RouteCostStats {
                route: "/v1/export".into(),
                requests: 200,
                latency_mean_us: 160_000.0,
                bytes_mean: 40_000.0,
            },
            RouteCostStats {
                route: "/healthz".into(),
                requests: 10_000,
                latency_mean_us: 100.0,
                bytes_mean: 10.0,
            },
            RouteCostStats {
                route: "/v1/rare".into(),
                requests: 3,
                latency_mean_us: 1e9,
                bytes_mean: 1e9,
            },
        ];
        let got = route_cost_weights(&stats, &CostWeightConfig::default());
        let weights: Vec<(&str, f64)> = got.iter().map(|c| (c.route.as_str(), c.weight)).collect();
        // Medians over the four busy routes: latency 15 ms, bytes 1500.
        // items: 0.7 * 0.667 + 0.3 * 0.667 = 0.67; search 1.33; export 0.7 * 10.67 + 0.3 * 26.67
        // = 15.47 -> 10; healthz 0.0067 -> 0.25.
        assert_eq!(
            weights,
            [
                ("/v1/items/{id}", 0.67),
                ("/v1/search", 1.33),
                ("/v1/export", 10.0),
                ("/healthz", 0.25),
                ("/v1/rare", 1.0),
            ]
        );
        assert_eq!(got[4].reason, "3 requests (< 100): default weight 1");
        assert_eq!(
            got[1].reason,
            "latency 1.33x and bytes 1.33x the median route: weight 1.33"
        );
    }
}
