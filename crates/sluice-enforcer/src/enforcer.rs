//! Matching and decisions: a [`Policy`] compiled into matchers, every matching rule evaluated for
//! a request, shadow rules counted but never blocking.
//!
//! A decision has two phases: every matching rule is asked without counting ([`Limiter::peek`]);
//! only when no enforcing rule rejects are the counters updated ([`Limiter::check`]). So a
//! rejected request counts against no limit, as the policy format says. Two concurrent requests
//! can both pass the first phase of a nearly exhausted counter; the second phase then counts only
//! what still fits, so a counter is never pushed past its limit, but such a race may let a
//! request through that a strictly serial gateway would have rejected.
//!
//! A new policy is swapped in atomically ([`arc_swap`]); rules whose id, selector, limit and cost
//! are unchanged keep their counters (a publish that touches one rule does not reset the others).

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::Serialize;
use sluice_core::limit::{ratelimit_policy_header, CostUnit, IpMatch, Limit, Match};
use sluice_core::policy::{Policy, Rule};
use sluice_core::time::Timestamp;

use crate::algo::{Clock, Limiter, Outcome, DEFAULT_MAX_KEYS};

/// What the enforcer knows about a request. Field names are those of the policy selector.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    pub api_key: Option<String>,
    pub consumer: Option<String>,
    pub user: Option<String>,
    pub ip: Option<IpAddr>,
    /// The normalised route (`/v1/items/{id}`).
    pub route: String,
    /// Upper-case HTTP method.
    pub method: String,
    /// Cost units of this request (its route's weight), charged by `cost_units` rules; rules
    /// counting requests charge 1.
    pub cost: u64,
}

/// What the gateway does while it has no policy at all (never fetched one, none on disk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// Forward everything.
    Allow,
    /// Answer 503 to everything until a policy arrives.
    Deny,
    /// One limit per client IP address (rule id `fallback`).
    Limit(Limit),
}

impl FromStr for Fallback {
    type Err = String;
    /// `allow`, `deny`, or `RATE/WINDOW` (`100/60s`, `1000/1m`, `5000/1h`): a sliding window
    /// counter per client IP.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "invalid fallback {s:?}: expected allow, deny, or a limit per client IP such as 100/60s (units s, m, h)"
            )
        };
        match s {
            "allow" => return Ok(Fallback::Allow),
            "deny" => return Ok(Fallback::Deny),
            _ => {}
        }
        let (rate, window) = s.split_once('/').ok_or_else(bad)?;
        let rate: u64 = rate.parse().map_err(|_| bad())?;
        let (n, unit) = window.split_at(window.len().saturating_sub(1));
        let n: u64 = if n.is_empty() {
            1
        } else {
            n.parse().map_err(|_| bad())?
        };
        let secs = match unit {
            "s" => n,
            "m" => n * 60,
            "h" => n * 3600,
            _ => return Err(bad()),
        };
        let limit = Limit::SlidingWindowCounter {
            rate,
            window_seconds: secs,
        };
        if let Some((field, msg)) = limit.check().into_iter().next() {
            return Err(format!("invalid fallback {s:?}: {field} {msg}"));
        }
        Ok(Fallback::Limit(limit))
    }
}

/// One rule's part in a decision: what the `RateLimit` headers and the problem body report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleHit {
    pub rule_id: Arc<str>,
    /// The rule's `RateLimit-Policy` header value.
    pub policy_header: Arc<str>,
    pub source: Option<Arc<str>>,
    pub reason: Option<Arc<str>>,
    pub shadow: bool,
    pub quota: u64,
    pub window_seconds: u64,
    pub remaining: u64,
    /// Seconds until the full quota is back (rounded up).
    pub reset_secs: u64,
    /// Seconds until a rejected request could pass (rounded up, at least 1); 0 when allowed.
    pub retry_after_secs: u64,
}

/// The enforcer's answer for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// No policy and the fallback is `deny`: answer 503.
    pub unavailable: bool,
    /// Rejected: the violated enforcing rule that frees up last (the honest `Retry-After`).
    pub violated: Option<RuleHit>,
    /// Allowed: the enforcing rule with the least quota left (what the headers advertise).
    pub closest: Option<RuleHit>,
    /// Shadow rules this request would have violated (counted, never blocking).
    pub shadow_violations: Vec<Arc<str>>,
    /// Leaky bucket smoothing: how long (µs of the enforcer's clock) to hold the request before
    /// forwarding it.
    pub delay_us: i64,
    /// Rules that matched the request.
    pub matched: usize,
}

impl Decision {
    fn allow() -> Decision {
        Decision {
            allowed: true,
            unavailable: false,
            violated: None,
            closest: None,
            shadow_violations: Vec::new(),
            delay_us: 0,
            matched: 0,
        }
    }
}

/// Counters of one rule since it appeared (kept across policy swaps while its id lives on).
#[derive(Debug, Default)]
pub struct RuleCounters {
    pub matched: AtomicU64,
    pub rejected: AtomicU64,
    /// Requests a shadow rule would have rejected.
    pub shadow_rejected: AtomicU64,
}

/// A snapshot of one rule's counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleMetrics {
    pub rule: String,
    pub shadow: bool,
    pub matched: u64,
    pub rejected: u64,
    pub shadow_rejected: u64,
    /// Keys (clients) currently tracked by the rule.
    pub keys: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Field {
    ApiKey,
    Consumer,
    User,
    Route,
}

struct CompiledRule {
    rule: Rule,
    hit: RuleHit,
    expires_us: Option<i64>,
    limiter: Arc<Limiter>,
    counters: Arc<RuleCounters>,
}

impl CompiledRule {
    /// Whether the rule counts this request, and the counter key (the values of its `*` fields).
    fn key(&self, req: &RequestInfo) -> Option<String> {
        let s = &self.rule.selector;
        let mut key = String::new();
        let mut text = |m: &Option<Match>, v: Option<&str>| -> bool {
            match (m, v) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(Match::Exactly(want)), Some(v)) => want == v,
                (Some(Match::Each), Some(v)) => {
                    key.push_str(v);
                    key.push('\u{1f}');
                    true
                }
            }
        };
        let ok = text(&s.api_key, req.api_key.as_deref())
            && text(&s.consumer, req.consumer.as_deref())
            && text(&s.user, req.user.as_deref())
            && text(&s.route, Some(&req.route))
            && text(&s.method, Some(&req.method));
        if !ok {
            return None;
        }
        match (&s.ip, req.ip) {
            (None, _) => {}
            (Some(_), None) => return None,
            (Some(IpMatch::Net(net)), Some(ip)) => {
                if !net.contains(ip) {
                    return None;
                }
            }
            (Some(IpMatch::Each), Some(ip)) => {
                use std::fmt::Write as _;
                let _ = write!(key, "{ip}");
            }
        }
        Some(key)
    }
}

/// A policy compiled for matching: rules with an exact api key, consumer, user, route or host
/// address are indexed by that value, so a request looks at the rules that can match it, not at
/// every rule.
struct Compiled {
    version: Option<i64>,
    content_hash: Option<String>,
    rules: Vec<CompiledRule>,
    by_value: HashMap<(Field, String), Vec<usize>>,
    by_ip: HashMap<IpAddr, Vec<usize>>,
    general: Vec<usize>,
    /// No policy: the fallback is in force.
    fallback: bool,
}

impl Compiled {
    fn build(
        version: Option<i64>,
        content_hash: Option<String>,
        rules: &[Rule],
        old: Option<&Compiled>,
        max_keys: usize,
    ) -> Compiled {
        let reuse: HashMap<&str, &CompiledRule> = old
            .map(|o| o.rules.iter().map(|r| (r.rule.id.as_str(), r)).collect())
            .unwrap_or_default();
        let mut c = Compiled {
            version,
            content_hash,
            rules: Vec::with_capacity(rules.len()),
            by_value: HashMap::new(),
            by_ip: HashMap::new(),
            general: Vec::new(),
            fallback: false,
        };
        for (i, rule) in rules.iter().enumerate() {
            let prev = reuse.get(rule.id.as_str());
            let limiter = match prev {
                Some(p)
                    if p.rule.selector == rule.selector
                        && p.rule.limit == rule.limit
                        && p.rule.cost == rule.cost =>
                {
                    p.limiter.clone()
                }
                _ => Arc::new(Limiter::with_max_keys(rule.limit, max_keys)),
            };
            let counters = prev.map(|p| p.counters.clone()).unwrap_or_default();
            let header = rule
                .ratelimit_policy
                .clone()
                .unwrap_or_else(|| ratelimit_policy_header(&rule.id, &rule.limit, rule.cost));
            let hit = RuleHit {
                rule_id: rule.id.as_str().into(),
                policy_header: header.into(),
                source: rule.source.as_deref().map(Into::into),
                reason: rule.reason.as_deref().map(Into::into),
                shadow: rule.shadow,
                quota: rule.limit.rate(),
                window_seconds: rule.limit.window_seconds(),
                remaining: 0,
                reset_secs: 0,
                retry_after_secs: 0,
            };
            let s = &rule.selector;
            let exact = |m: &Option<Match>| match m {
                Some(Match::Exactly(v)) => Some(v.clone()),
                _ => None,
            };
            if let Some(v) = exact(&s.api_key) {
                c.by_value.entry((Field::ApiKey, v)).or_default().push(i);
            } else if let Some(v) = exact(&s.consumer) {
                c.by_value.entry((Field::Consumer, v)).or_default().push(i);
            } else if let Some(v) = exact(&s.user) {
                c.by_value.entry((Field::User, v)).or_default().push(i);
            } else if let Some(IpMatch::Net(net)) = &s.ip {
                if net.is_host() {
                    c.by_ip.entry(net.addr()).or_default().push(i);
                } else if let Some(v) = exact(&s.route) {
                    c.by_value.entry((Field::Route, v)).or_default().push(i);
                } else {
                    c.general.push(i);
                }
            } else if let Some(v) = exact(&s.route) {
                c.by_value.entry((Field::Route, v)).or_default().push(i);
            } else {
                c.general.push(i);
            }
            c.rules.push(CompiledRule {
                rule: rule.clone(),
                hit,
                expires_us: rule.expires_at.map(|t| Timestamp::from_chrono(t).micros()),
                limiter,
                counters,
            });
        }
        c
    }

    fn candidates(&self, req: &RequestInfo, out: &mut Vec<usize>) {
        out.extend_from_slice(&self.general);
        let mut look = |f: Field, v: Option<&str>| {
            if let Some(v) = v {
                // A borrowed lookup would need a custom key type; the owned key is one small
                // allocation per indexed field and request.
                if let Some(ids) = self.by_value.get(&(f, v.to_owned())) {
                    out.extend_from_slice(ids);
                }
            }
        };
        if !self.by_value.is_empty() {
            look(Field::ApiKey, req.api_key.as_deref());
            look(Field::Consumer, req.consumer.as_deref());
            look(Field::User, req.user.as_deref());
            look(Field::Route, Some(&req.route));
        }
        if let Some(ids) = req.ip.and_then(|ip| self.by_ip.get(&ip)) {
            out.extend_from_slice(ids);
        }
    }
}

/// Enforcer settings.
#[derive(Clone, Copy, Debug)]
pub struct EnforcerConfig {
    pub fallback: Fallback,
    /// Bound on the keys each rule keeps.
    pub max_keys_per_rule: usize,
}

impl Default for EnforcerConfig {
    fn default() -> Self {
        EnforcerConfig {
            fallback: Fallback::Allow,
            max_keys_per_rule: DEFAULT_MAX_KEYS,
        }
    }
}

/// The policy in force and its counters. Cheap to share (`Arc<Enforcer>`); `check` takes no
/// global lock.
pub struct Enforcer {
    current: ArcSwap<Compiled>,
    clock: Arc<dyn Clock>,
    config: EnforcerConfig,
    apply_lock: Mutex<()>,
}

impl fmt::Debug for Enforcer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.current.load();
        f.debug_struct("Enforcer")
            .field("version", &c.version)
            .field("rules", &c.rules.len())
            .field("fallback", &c.fallback)
            .finish()
    }
}

fn secs_up(us: i64) -> u64 {
    (us.max(0) as u64).div_ceil(1_000_000)
}

impl Enforcer {
    /// An enforcer with no policy yet: the fallback is in force.
    pub fn new(clock: Arc<dyn Clock>, config: EnforcerConfig) -> Enforcer {
        let fallback = Enforcer::fallback_compiled(&config);
        Enforcer {
            current: ArcSwap::from_pointee(fallback),
            clock,
            config,
            apply_lock: Mutex::new(()),
        }
    }

    fn fallback_compiled(config: &EnforcerConfig) -> Compiled {
        let rules = match config.fallback {
            Fallback::Limit(limit) => vec![Rule {
                id: "fallback".into(),
                selector: sluice_core::limit::Selector {
                    ip: Some(IpMatch::Each),
                    ..Default::default()
                },
                limit,
                cost: CostUnit::Requests,
                shadow: false,
                expires_at: None,
                ratelimit_policy: None,
                reason: Some("no policy received yet: the gateway's fallback limit".into()),
                source: Some("fallback".into()),
            }],
            _ => Vec::new(),
        };
        let mut c = Compiled::build(None, None, &rules, None, config.max_keys_per_rule);
        c.fallback = true;
        c
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Swap in `policy` (published as `version`). Counters of rules whose id, selector, limit and
    /// cost are unchanged carry over.
    pub fn apply(&self, policy: &Policy, version: Option<i64>) {
        let _guard = self.apply_lock.lock().expect("apply lock poisoned");
        let old = self.current.load();
        let old = (!old.fallback).then_some(&**old);
        let next = Compiled::build(
            version,
            Some(policy.content_hash().to_owned()),
            policy.rules(),
            old,
            self.config.max_keys_per_rule,
        );
        self.current.store(Arc::new(next));
    }

    /// The version in force (`None` while the fallback is).
    pub fn version(&self) -> Option<i64> {
        let c = self.current.load();
        if c.fallback {
            None
        } else {
            c.version
        }
    }

    /// The content hash of the policy in force.
    pub fn content_hash(&self) -> Option<String> {
        self.current.load().content_hash.clone()
    }

    /// Whether a policy (rather than the fallback) is in force.
    pub fn has_policy(&self) -> bool {
        !self.current.load().fallback
    }

    /// Counters of every rule in force.
    pub fn metrics(&self) -> Vec<RuleMetrics> {
        self.current
            .load()
            .rules
            .iter()
            .map(|r| RuleMetrics {
                rule: r.rule.id.clone(),
                shadow: r.rule.shadow,
                matched: r.counters.matched.load(Ordering::Relaxed),
                rejected: r.counters.rejected.load(Ordering::Relaxed),
                shadow_rejected: r.counters.shadow_rejected.load(Ordering::Relaxed),
                keys: r.limiter.len(),
            })
            .collect()
    }

    /// Decide `req` at the clock's now.
    pub fn check(&self, req: &RequestInfo) -> Decision {
        self.check_at(req, self.clock.now())
    }

    /// Decide `req` at `now`.
    pub fn check_at(&self, req: &RequestInfo, now: Timestamp) -> Decision {
        let c = self.current.load();
        if c.fallback && self.config.fallback == Fallback::Deny {
            return Decision {
                allowed: false,
                unavailable: true,
                ..Decision::allow()
            };
        }
        let mut ids = Vec::new();
        c.candidates(req, &mut ids);
        let t = now.micros();
        let mut hits: Vec<(usize, String, u64, Outcome)> = Vec::with_capacity(ids.len());
        for i in ids {
            let r = &c.rules[i];
            if r.expires_us.is_some_and(|e| e <= t) {
                continue;
            }
            let Some(key) = r.key(req) else { continue };
            let cost = match r.rule.cost {
                CostUnit::Requests => 1,
                CostUnit::CostUnits => req.cost.max(1),
            };
            let o = r.limiter.peek(&key, cost, now);
            hits.push((i, key, cost, o));
        }
        let mut d = Decision::allow();
        d.matched = hits.len();
        let hit = |i: usize, o: &Outcome| RuleHit {
            remaining: o.remaining,
            reset_secs: secs_up(o.reset_us),
            retry_after_secs: if o.allowed {
                0
            } else {
                secs_up(o.retry_after_us).max(1)
            },
            ..c.rules[i].hit.clone()
        };
        for (i, _, _, o) in &hits {
            let r = &c.rules[*i];
            r.counters.matched.fetch_add(1, Ordering::Relaxed);
            if o.allowed {
                continue;
            }
            if r.rule.shadow {
                r.counters.shadow_rejected.fetch_add(1, Ordering::Relaxed);
                d.shadow_violations.push(r.hit.rule_id.clone());
                continue;
            }
            d.allowed = false;
            r.counters.rejected.fetch_add(1, Ordering::Relaxed);
            let h = hit(*i, o);
            if d.violated
                .as_ref()
                .is_none_or(|v| h.retry_after_secs > v.retry_after_secs)
            {
                d.violated = Some(h);
            }
        }
        if !d.allowed {
            return d;
        }
        for (i, key, cost, _) in &hits {
            let r = &c.rules[*i];
            let o = r.limiter.check(key, *cost, now);
            if r.rule.shadow {
                continue;
            }
            d.delay_us = d.delay_us.max(o.delay_us);
            let h = hit(*i, &o);
            if d.closest.as_ref().is_none_or(|b| {
                (h.remaining, std::cmp::Reverse(h.reset_secs))
                    < (b.remaining, std::cmp::Reverse(b.reset_secs))
            }) {
                d.closest = Some(h);
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::ManualClock;

    fn policy(json: &str) -> Policy {
        let doc = format!(r#"{{"format":"sluice.policy/v1","rules":{json}}}"#);
        Policy::parse(doc.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn req(key: Option<&str>, ip: &str, route: &str, method: &str) -> RequestInfo {
        RequestInfo {
            api_key: key.map(str::to_owned),
            ip: Some(ip.parse().unwrap()),
            route: route.into(),
            method: method.into(),
            cost: 1,
            ..RequestInfo::default()
        }
    }

    fn enforcer(fallback: Fallback) -> (Arc<ManualClock>, Enforcer) {
        let clock = Arc::new(ManualClock::new(Timestamp::from_micros(1_000_000_000_000)));
        let e = Enforcer::new(
            clock.clone(),
            EnforcerConfig {
                fallback,
                ..EnforcerConfig::default()
            },
        );
        (clock, e)
    }

    fn passes(e: &Enforcer, r: &RequestInfo, n: usize) -> usize {
        (0..n).filter(|_| e.check(r).allowed).count()
    }

    #[test]
    fn selectors_match_on_every_field_and_star_gives_each_value_a_counter() {
        let (_, e) = enforcer(Fallback::Allow);
        e.apply(
            &policy(
                r#"[
                {"id":"per-key","selector":{"api_key":"*"},"limit":{"algorithm":"fixed_window","rate":3,"window_seconds":60}},
                {"id":"vip","selector":{"api_key":"vip"},"limit":{"algorithm":"fixed_window","rate":5,"window_seconds":60}},
                {"id":"subnet-login","selector":{"ip":"198.51.100.0/24","route":"/login","method":"POST"},"limit":{"algorithm":"fixed_window","rate":2,"window_seconds":60}},
                {"id":"one-host","selector":{"ip":"192.0.2.7"},"limit":{"algorithm":"fixed_window","rate":1,"window_seconds":60}},
                {"id":"per-route","selector":{"route":"*","consumer":"acme"},"limit":{"algorithm":"fixed_window","rate":1,"window_seconds":60}}
            ]"#,
            ),
            Some(1),
        );
        assert_eq!(e.version(), Some(1));
        // per-key: each key its own counter of 3 (vip is also per-key, so 3 is its bound).
        assert_eq!(passes(&e, &req(Some("a"), "10.0.0.1", "/x", "GET"), 5), 3);
        assert_eq!(passes(&e, &req(Some("b"), "10.0.0.1", "/x", "GET"), 5), 3);
        assert_eq!(passes(&e, &req(Some("vip"), "10.0.0.1", "/x", "GET"), 5), 3);
        // No api key: per-key does not match; the subnet rule needs route and method too.
        let login = req(None, "198.51.100.9", "/login", "POST");
        assert_eq!(passes(&e, &login, 2), 2);
        // The whole subnet shares the counter.
        let other = req(None, "198.51.100.77", "/login", "POST");
        let d = e.check(&other);
        assert!(!d.allowed);
        let v = d.violated.unwrap();
        assert_eq!(&*v.rule_id, "subnet-login");
        assert_eq!(&*v.policy_header, "\"subnet-login\";q=2;w=60");
        assert_eq!(v.retry_after_secs, 20);
        assert!(e.check(&req(None, "198.51.100.9", "/login", "GET")).allowed);
        assert!(
            e.check(&req(None, "198.51.101.9", "/login", "POST"))
                .allowed
        );
        assert_eq!(passes(&e, &req(None, "192.0.2.7", "/", "GET"), 3), 1);
        let acme = |route: &str| RequestInfo {
            consumer: Some("acme".into()),
            ..req(None, "10.1.1.1", route, "GET")
        };
        assert_eq!(passes(&e, &acme("/a"), 2), 1);
        assert_eq!(passes(&e, &acme("/b"), 2), 1);
        let m: HashMap<String, RuleMetrics> = e
            .metrics()
            .into_iter()
            .map(|m| (m.rule.clone(), m))
            .collect();
        assert_eq!(m["per-key"].matched, 15);
        assert_eq!(m["per-key"].rejected, 6);
        assert_eq!(m["per-key"].keys, 3);
        assert_eq!(m["subnet-login"].rejected, 1);
    }

    #[test]
    fn shadow_rules_count_but_never_block_and_rejected_requests_count_nowhere() {
        let (_, e) = enforcer(Fallback::Allow);
        e.apply(
            &policy(
                r#"[
                {"id":"tight-shadow","selector":{"api_key":"*"},"limit":{"algorithm":"fixed_window","rate":1,"window_seconds":60},"shadow":true},
                {"id":"real","selector":{"api_key":"*"},"limit":{"algorithm":"fixed_window","rate":3,"window_seconds":60}},
                {"id":"global","limit":{"algorithm":"fixed_window","rate":100,"window_seconds":60}}
            ]"#,
            ),
            Some(1),
        );
        let r = req(Some("k"), "10.0.0.1", "/x", "GET");
        let ds: Vec<Decision> = (0..5).map(|_| e.check(&r)).collect();
        assert_eq!(
            ds.iter().map(|d| d.allowed).collect::<Vec<_>>(),
            [true, true, true, false, false]
        );
        assert_eq!(
            ds[1].shadow_violations,
            vec![Arc::<str>::from("tight-shadow")]
        );
        assert_eq!(&*ds[0].closest.as_ref().unwrap().rule_id, "real");
        assert_eq!(ds[0].closest.as_ref().unwrap().remaining, 2);
        let m: HashMap<String, RuleMetrics> = e
            .metrics()
            .into_iter()
            .map(|m| (m.rule.clone(), m))
            .collect();
        assert_eq!(m["tight-shadow"].shadow_rejected, 4);
        assert_eq!(m["tight-shadow"].rejected, 0);
        assert_eq!(m["real"].rejected, 2);
        // The two rejected requests did not use the global quota.
        let d = e.check(&req(None, "10.0.0.2", "/x", "GET"));
        assert_eq!(d.closest.unwrap().remaining, 100 - 4);
    }

    #[test]
    fn cost_units_expiry_and_leaky_delay() {
        let (clock, e) = enforcer(Fallback::Allow);
        e.apply(
            &policy(
                r#"[
                {"id":"units","selector":{"route":"/export"},"cost":"cost_units","limit":{"algorithm":"token_bucket","rate":10,"window_seconds":10,"burst":10}},
                {"id":"gone","expires_at":"1970-01-02T00:00:00Z","limit":{"algorithm":"fixed_window","rate":1,"window_seconds":60}},
                {"id":"smooth","selector":{"route":"/smooth"},"limit":{"algorithm":"leaky_bucket","rate":1,"window_seconds":1,"queue":2}}
            ]"#,
            ),
            Some(2),
        );
        let export = RequestInfo {
            cost: 4,
            ..req(None, "10.0.0.1", "/export", "GET")
        };
        assert_eq!(passes(&e, &export, 5), 2);
        let smooth = req(None, "10.0.0.1", "/smooth", "GET");
        let d: Vec<(bool, i64)> = (0..3)
            .map(|_| {
                let d = e.check(&smooth);
                (d.allowed, d.delay_us)
            })
            .collect();
        assert_eq!(d, [(true, 0), (true, 1_000_000), (false, 0)]);
        clock.advance(std::time::Duration::from_secs(1));
        assert!(e.check(&smooth).allowed);
        // "gone" (expired long ago) never matched.
        let m = e.metrics();
        assert_eq!(m.iter().find(|m| m.rule == "gone").unwrap().matched, 0);
    }

    #[test]
    fn swapping_a_policy_keeps_counters_of_unchanged_rules() {
        let (_, e) = enforcer(Fallback::Allow);
        let v1 = r#"[
            {"id":"a","selector":{"api_key":"*"},"limit":{"algorithm":"fixed_window","rate":2,"window_seconds":60}},
            {"id":"b","selector":{"user":"*"},"limit":{"algorithm":"fixed_window","rate":2,"window_seconds":60}}
        ]"#;
        e.apply(&policy(v1), Some(1));
        let r = RequestInfo {
            user: Some("u".into()),
            ..req(Some("k"), "10.0.0.1", "/", "GET")
        };
        assert_eq!(passes(&e, &r, 2), 2);
        // "a" unchanged (a reason added is not a counting change), "b" gets a new limit.
        e.apply(
            &policy(
                r#"[
            {"id":"a","selector":{"api_key":"*"},"limit":{"algorithm":"fixed_window","rate":2,"window_seconds":60},"reason":"kept"},
            {"id":"b","selector":{"user":"*"},"limit":{"algorithm":"fixed_window","rate":3,"window_seconds":60}}
        ]"#,
            ),
            Some(2),
        );
        let d = e.check(&r);
        assert!(!d.allowed);
        assert_eq!(&*d.violated.unwrap().rule_id, "a");
        let only_b = RequestInfo {
            api_key: None,
            ..r.clone()
        };
        assert_eq!(passes(&e, &only_b, 5), 3);
        assert_eq!(e.version(), Some(2));
    }

    #[test]
    fn fallbacks() {
        let (_, e) = enforcer(Fallback::Allow);
        assert!(!e.has_policy());
        assert!(e.check(&req(None, "10.0.0.1", "/", "GET")).allowed);
        let (_, e) = enforcer(Fallback::Deny);
        let d = e.check(&req(None, "10.0.0.1", "/", "GET"));
        assert!(!d.allowed && d.unavailable);
        let (_, e) = enforcer("2/1m".parse().unwrap());
        assert_eq!(passes(&e, &req(None, "10.0.0.1", "/", "GET"), 5), 2);
        assert_eq!(passes(&e, &req(None, "10.0.0.2", "/", "GET"), 5), 2);
        e.apply(&policy("[]"), Some(1));
        assert_eq!(passes(&e, &req(None, "10.0.0.1", "/", "GET"), 5), 5);
        assert_eq!(
            "100/60x".parse::<Fallback>().unwrap_err(),
            "invalid fallback \"100/60x\": expected allow, deny, or a limit per client IP such as 100/60s (units s, m, h)"
        );
        assert_eq!(
            "0/1s".parse::<Fallback>().unwrap_err(),
            "invalid fallback \"0/1s\": rate must be at least 1 (to block a client use a rate of 1 over a long window)"
        );
        assert_eq!(
            "100/1h".parse::<Fallback>().unwrap(),
            Fallback::Limit(Limit::SlidingWindowCounter {
                rate: 100,
                window_seconds: 3600
            })
        );
    }
}
