//! The policy document gateways fetch: a versioned format (`sluice.policy/v1`), a list of rules
//! (selector, limit, cost unit, shadow flag, expiry, `RateLimit-Policy` header value, reason and
//! source), its content hash, validation with exact error messages, the diff between two
//! policies, and exports to other gateways' configuration (`export`).
//!
//! A [`Policy`] is valid by construction: it can only be made by [`Policy::parse`] or
//! [`Policy::new`], which check every rule. Its rules are sorted by id (every rule whose selector
//! matches a request counts it; order carries no meaning), and its content hash is the SHA-256 of
//! the canonical JSON of the rules (see `docs/policy-format.md`).

pub mod export;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::limit::{
    ratelimit_policy_header, Algorithm, Cidr, CostUnit, IpMatch, Limit, Match, Selector,
};

/// The only format this version of Sluice reads and writes.
pub const FORMAT_V1: &str = "sluice.policy/v1";

/// Longest rule id.
pub const MAX_RULE_ID_LEN: usize = 128;

/// One rule as it appears in a document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique within the policy: 1 to 128 characters of `A-Z a-z 0-9 . _ : -`.
    pub id: String,
    /// Which requests the rule counts, and which share a counter.
    #[serde(default)]
    pub selector: Selector,
    pub limit: Limit,
    /// What the limit counts (default: requests).
    #[serde(default)]
    pub cost: CostUnit,
    /// Shadow rules are evaluated and reported but never reject.
    #[serde(default)]
    pub shadow: bool,
    /// After this instant gateways ignore the rule (a temporary limit reverts by itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The IETF `RateLimit-Policy` header value gateways may advertise for this rule. Optional in
    /// input (it is derived from `id`, `limit` and `cost`); when given it must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratelimit_policy: Option<String>,
    /// Why the rule exists (free text shown to operators).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where the rule came from, e.g. `manual`, `tuner`, `suggestion:42`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Rule {
    /// Whether the rule is in force at `now`.
    pub fn active_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }
}

/// A policy document on the wire. `version` and `content_hash` are set by the server on every
/// published version; in a document submitted for publishing they may be left out (a given
/// `version` is ignored, a given `content_hash` must match the rules).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    pub format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<String>,
    pub rules: Vec<Rule>,
}

/// One problem in a document: where (`rules[2].limit.rate`) and what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyIssue {
    pub path: String,
    pub message: String,
}

impl fmt::Display for PolicyIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a document is not a valid policy: every problem found, in document order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    pub issues: Vec<PolicyIssue>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.issues.as_slice() {
            [one] => write!(f, "invalid policy: {one}"),
            many => {
                write!(f, "invalid policy ({} problems):", many.len())?;
                for i in many {
                    write!(f, "\n  {i}")?;
                }
                Ok(())
            }
        }
    }
}

impl PolicyError {
    fn one(path: impl Into<String>, message: impl Into<String>) -> Self {
        PolicyError {
            issues: vec![PolicyIssue {
                path: path.into(),
                message: message.into(),
            }],
        }
    }
}

/// A validated policy: rules sorted by id, every `ratelimit_policy` filled in, and its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    rules: Vec<Rule>,
    content_hash: String,
}

impl Policy {
    /// Parse and validate a JSON document. Syntax and type errors name the path of the bad value
    /// (`rules[1].limit: unknown variant ...`); validation reports every problem at once.
    pub fn parse(json: &[u8]) -> Result<Policy, PolicyError> {
        let de = &mut serde_json::Deserializer::from_slice(json);
        let doc: PolicyDocument = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." || path == "?" {
                String::new()
            } else {
                path
            };
            PolicyError::one(path, e.inner().to_string())
        })?;
        Policy::from_document(doc)
    }

    /// Validate a document already deserialised.
    pub fn from_document(doc: PolicyDocument) -> Result<Policy, PolicyError> {
        let mut issues = Vec::new();
        if doc.format != FORMAT_V1 {
            issues.push(PolicyIssue {
                path: "format".into(),
                message: format!(
                    "unsupported format {:?} (expected {FORMAT_V1:?})",
                    doc.format
                ),
            });
        }
        if let Some(v) = doc.version {
            if v < 1 {
                issues.push(PolicyIssue {
                    path: "version".into(),
                    message: format!("must be at least 1, got {v}"),
                });
            }
        }
        let claimed = doc.content_hash.clone();
        let checked = check_rules(doc.rules, &mut issues);
        if !issues.is_empty() {
            return Err(PolicyError { issues });
        }
        let policy = Policy::from_checked(checked);
        if let Some(claimed) = claimed {
            if claimed != policy.content_hash {
                return Err(PolicyError::one(
                    "content_hash",
                    format!(
                        "does not match the rules (they hash to {}); leave it out to have it computed",
                        policy.content_hash
                    ),
                ));
            }
        }
        Ok(policy)
    }

    /// Build from rules, validating them like a document.
    pub fn new(rules: Vec<Rule>) -> Result<Policy, PolicyError> {
        let mut issues = Vec::new();
        let checked = check_rules(rules, &mut issues);
        if issues.is_empty() {
            Ok(Policy::from_checked(checked))
        } else {
            Err(PolicyError { issues })
        }
    }

    fn from_checked(mut rules: Vec<Rule>) -> Policy {
        rules.sort_by(|a, b| a.id.cmp(&b.id));
        let content_hash = content_hash(&rules);
        Policy {
            rules,
            content_hash,
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// `sha256:` and 64 hex digits.
    pub fn content_hash(&self) -> &str {
        &self.content_hash
    }

    /// The document of this policy as published under `version`.
    pub fn document(&self, version: Option<i64>) -> PolicyDocument {
        PolicyDocument {
            format: FORMAT_V1.into(),
            version,
            content_hash: Some(self.content_hash.clone()),
            rules: self.rules.clone(),
        }
    }

    /// The document as compact JSON (what gateways receive).
    pub fn to_json(&self, version: Option<i64>) -> Vec<u8> {
        serde_json::to_vec(&self.document(version)).expect("a policy always serialises")
    }
}

/// SHA-256 over the canonical JSON of the rules: sorted by id, object keys sorted, no
/// whitespace, absent optional fields left out.
fn content_hash(rules: &[Rule]) -> String {
    let canonical = serde_json::to_value(rules).expect("rules serialise");
    // serde_json's Value keeps object keys sorted (no `preserve_order`), so this is canonical.
    let bytes = serde_json::to_vec(&canonical).expect("a value serialises");
    format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_RULE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

fn valid_method(m: &str) -> bool {
    !m.is_empty() && m.len() <= 32 && m.bytes().all(|b| b.is_ascii_uppercase())
}

/// Check every rule, pushing issues with their input paths; returns the rules with their
/// `ratelimit_policy` filled in.
fn check_rules(rules: Vec<Rule>, issues: &mut Vec<PolicyIssue>) -> Vec<Rule> {
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(rules.len());
    let mut out = Vec::with_capacity(rules.len());
    for (i, mut rule) in rules.into_iter().enumerate() {
        let at = |field: &str| format!("rules[{i}].{field}");
        let mut push = |path: String, message: String| issues.push(PolicyIssue { path, message });
        if !valid_id(&rule.id) {
            push(
                at("id"),
                format!(
                    "invalid rule id {:?}: use 1 to {MAX_RULE_ID_LEN} characters of A-Z a-z 0-9 . _ : -",
                    rule.id
                ),
            );
        } else if let Some(first) = seen.get(&rule.id) {
            push(
                at("id"),
                format!(
                    "duplicate rule id {:?} (first used by rules[{first}])",
                    rule.id
                ),
            );
        } else {
            seen.insert(rule.id.clone(), i);
        }
        for (field, message) in rule.limit.check() {
            push(at(&format!("limit.{field}")), message);
        }
        if let Some(Match::Exactly(m)) = &rule.selector.method {
            if !valid_method(m) {
                push(
                    at("selector.method"),
                    format!(
                        "invalid HTTP method {m:?} (expected upper case such as GET, or \"*\")"
                    ),
                );
            }
        }
        if let Some(Match::Exactly(r)) = &rule.selector.route {
            if !r.starts_with('/') {
                push(
                    at("selector.route"),
                    format!("invalid route {r:?} (expected a path starting with /, or \"*\")"),
                );
            }
        }
        for (field, value) in [("reason", &rule.reason), ("source", &rule.source)] {
            if value.as_ref().is_some_and(|v| v.len() > 1024) {
                push(at(field), "must be at most 1024 bytes".to_owned());
            }
        }
        let header = ratelimit_policy_header(&rule.id, &rule.limit, rule.cost);
        match &rule.ratelimit_policy {
            Some(given) if *given != header => push(
                at("ratelimit_policy"),
                format!(
                    "{given:?} does not match the rule's limit (expected {header:?}); leave it out to have it derived"
                ),
            ),
            _ => rule.ratelimit_policy = Some(header),
        }
        out.push(rule);
    }
    out
}

/// A rule that differs between two policies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleChange {
    pub id: String,
    /// The top-level fields that differ (`limit`, `selector`, `shadow`, ...).
    pub fields: Vec<&'static str>,
    pub before: Rule,
    pub after: Rule,
}

/// What changed from one policy to another, by rule id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PolicyDiff {
    pub added: Vec<Rule>,
    pub removed: Vec<Rule>,
    pub changed: Vec<RuleChange>,
    pub unchanged: usize,
}

impl PolicyDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

fn changed_fields(a: &Rule, b: &Rule) -> Vec<&'static str> {
    let mut f = Vec::new();
    if a.selector != b.selector {
        f.push("selector");
    }
    if a.limit != b.limit {
        f.push("limit");
    }
    if a.cost != b.cost {
        f.push("cost");
    }
    if a.shadow != b.shadow {
        f.push("shadow");
    }
    if a.expires_at != b.expires_at {
        f.push("expires_at");
    }
    if a.ratelimit_policy != b.ratelimit_policy {
        f.push("ratelimit_policy");
    }
    if a.reason != b.reason {
        f.push("reason");
    }
    if a.source != b.source {
        f.push("source");
    }
    f
}

/// The diff from `from` to `to`, each list sorted by rule id.
pub fn diff(from: &Policy, to: &Policy) -> PolicyDiff {
    let old: BTreeMap<&str, &Rule> = from.rules.iter().map(|r| (r.id.as_str(), r)).collect();
    let new: BTreeMap<&str, &Rule> = to.rules.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut d = PolicyDiff::default();
    for (id, after) in &new {
        match old.get(id) {
            None => d.added.push((*after).clone()),
            Some(before) if before != after => d.changed.push(RuleChange {
                id: (*id).to_owned(),
                fields: changed_fields(before, after),
                before: (*before).clone(),
                after: (*after).clone(),
            }),
            Some(_) => d.unchanged += 1,
        }
    }
    for (id, before) in &old {
        if !new.contains_key(id) {
            d.removed.push((*before).clone());
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: Result<usize, &str>) {
        let got = Policy::parse(input.as_bytes())
            .map(|p| p.rules().len())
            .map_err(|e| e.to_string());
        if got != expect.map_err(str::to_owned) {
            MISMATCHES.with(|m| m.borrow_mut().push(format!("{input}\n  got: {got:?}")));
        }
    }

    thread_local! {
        static MISMATCHES: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    fn assert_no_mismatches() {
        let m = MISMATCHES.with(|m| std::mem::take(&mut *m.borrow_mut()));
        assert!(m.is_empty(), "{}", m.join("\n"));
    }

    const OK: &str = r#"{"format":"sluice.policy/v1","rules":[
        {"id":"b","selector":{"api_key":"*","route":"/v1/search"},"limit":{"algorithm":"token_bucket","rate":100,"window_seconds":60,"burst":20}},
        {"id":"a","selector":{"ip":"10.0.0.0/8"},"limit":{"algorithm":"fixed_window","rate":5,"window_seconds":1},"shadow":true,"cost":"cost_units"}
    ]}"#;

    #[test]
    fn valid_documents() {
        check(OK, Ok(2));
        check(r#"{"format":"sluice.policy/v1","rules":[]}"#, Ok(0));
        assert_no_mismatches();
        let p = Policy::parse(OK.as_bytes()).unwrap();
        assert_eq!(p.rules()[0].id, "a", "sorted by id");
        assert_eq!(
            p.rules()[0].ratelimit_policy.as_deref(),
            Some("\"a\";q=5;w=1;qu=\"cost-units\"")
        );
        assert!(p.content_hash().starts_with("sha256:"));
        assert_eq!(p.content_hash().len(), 7 + 64);
        // The published document parses back to the same policy, hash included.
        let again = Policy::parse(&p.to_json(Some(7))).unwrap();
        assert_eq!(again, p);
    }

    #[test]
    fn hash_ignores_rule_order_and_whitespace_but_not_content() {
        let a = Policy::parse(OK.as_bytes()).unwrap();
        let v: serde_json::Value = serde_json::from_str(OK).unwrap();
        let mut rev = v.clone();
        rev["rules"].as_array_mut().unwrap().reverse();
        let b = Policy::parse(serde_json::to_string_pretty(&rev).unwrap().as_bytes()).unwrap();
        assert_eq!(a.content_hash(), b.content_hash());
        let mut changed = v;
        changed["rules"][0]["limit"]["rate"] = 101.into();
        let c = Policy::parse(changed.to_string().as_bytes()).unwrap();
        assert_ne!(a.content_hash(), c.content_hash());
    }

    #[test]
    fn invalid_documents_have_exact_messages() {
        let rule = |id: &str, limit: &str| format!(r#"{{"id":"{id}","limit":{limit}}}"#);
        let doc = |rules: &[String]| {
            format!(
                r#"{{"format":"sluice.policy/v1","rules":[{}]}}"#,
                rules.join(",")
            )
        };
        let fw = r#"{"algorithm":"fixed_window","rate":10,"window_seconds":60}"#;
        check(
            &doc(&[rule("a", fw), rule("b", fw), rule("a", fw)]),
            Err("invalid policy: rules[2].id: duplicate rule id \"a\" (first used by rules[0])"),
        );
        check(
            &doc(&[rule("a", r#"{"algorithm":"fixed_window","rate":0,"window_seconds":0}"#)]),
            Err("invalid policy (2 problems):\n  rules[0].limit.rate: must be at least 1 (to block a client use a rate of 1 over a long window)\n  rules[0].limit.window_seconds: must be at least 1"),
        );
        check(
            &doc(&[rule("a", r#"{"algorithm":"gcra","rate":1,"window_seconds":1}"#)]),
            Err("invalid policy: rules[0].limit.algorithm: unknown variant `gcra`, expected one of `fixed_window`, `sliding_window_log`, `sliding_window_counter`, `token_bucket`, `leaky_bucket` at line 1 column 75"),
        );
        check(
            &doc(&[rule(
                "a",
                r#"{"algorithm":"token_bucket","rate":1,"window_seconds":1}"#,
            )]),
            Err("invalid policy: rules[0].limit: missing field `burst` at line 1 column 113"),
        );
        check(
            &doc(&[rule("a", r#"{"algorithm":"fixed_window","rate":1,"window_seconds":1,"burst":3}"#)]),
            Err("invalid policy: rules[0].limit: unknown field `burst`, expected `rate` or `window_seconds` at line 1 column 123"),
        );
        check(
            &doc(&[r#"{"id":"a","selector":{"ip":"10.0.0.1/8"},"limit":{"algorithm":"fixed_window","rate":1,"window_seconds":1}}"#.to_owned()]),
            Err("invalid policy: rules[0].selector.ip: invalid CIDR \"10.0.0.1/8\": host bits are set (the network is 10.0.0.0/8) at line 1 column 78"),
        );
        check(
            &doc(&[r#"{"id":"a","selector":{"client":"x"},"limit":{"algorithm":"fixed_window","rate":1,"window_seconds":1}}"#.to_owned()]),
            Err("invalid policy: rules[0].selector.client: unknown field `client`, expected one of `api_key`, `consumer`, `user`, `ip`, `route`, `method` at line 1 column 68"),
        );
        check(
            &doc(&[r#"{"id":"a b","selector":{"method":"get","route":"v1"},"limit":{"algorithm":"leaky_bucket","rate":1,"window_seconds":1,"queue":1},"ratelimit_policy":"x"}"#.to_owned()]),
            Err("invalid policy (4 problems):\n  rules[0].id: invalid rule id \"a b\": use 1 to 128 characters of A-Z a-z 0-9 . _ : -\n  rules[0].selector.method: invalid HTTP method \"get\" (expected upper case such as GET, or \"*\")\n  rules[0].selector.route: invalid route \"v1\" (expected a path starting with /, or \"*\")\n  rules[0].ratelimit_policy: \"x\" does not match the rule's limit (expected \"\\\"a b\\\";q=1;w=1\"); leave it out to have it derived"),
        );
        check(
            r#"{"format":"sluice.policy/v2","rules":[]}"#,
            Err("invalid policy: format: unsupported format \"sluice.policy/v2\" (expected \"sluice.policy/v1\")"),
        );
        check(
            r#"{"format":"sluice.policy/v1"}"#,
            Err("invalid policy: missing field `rules` at line 1 column 29"),
        );
        check(
            r#"{"format":"sluice.policy/v1","rules":[],"content_hash":"sha256:00"}"#,
            Err("invalid policy: content_hash: does not match the rules (they hash to sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945); leave it out to have it computed"),
        );
        check(
            "{",
            Err("invalid policy: EOF while parsing an object at line 1 column 1"),
        );
        assert_no_mismatches();
    }

    #[test]
    fn diff_by_rule_id() {
        let a = Policy::parse(OK.as_bytes()).unwrap();
        let mut v: serde_json::Value = serde_json::from_str(OK).unwrap();
        v["rules"][0]["shadow"] = true.into(); // b changes
        v["rules"][1]["id"] = "c".into(); // a removed, c added
        let b = Policy::parse(v.to_string().as_bytes()).unwrap();
        let d = diff(&a, &b);
        assert_eq!(
            d.added.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
        assert_eq!(
            d.removed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(d.changed.len(), 1);
        assert_eq!(d.changed[0].id, "b");
        assert_eq!(d.changed[0].fields, ["shadow"]);
        assert_eq!(d.unchanged, 0);
        assert!(diff(&a, &a).is_empty());
        assert_eq!(diff(&a, &a).unchanged, 2);
    }
}
