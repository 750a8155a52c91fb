//! Exports of a policy for gateways that cannot run Sluice's enforcer: the envoyproxy/ratelimit
//! service's YAML configuration, and an nginx `limit_req_zone`/`limit_req` snippet.
//!
//! Both targets are less expressive than a Sluice policy; every approximation is written into the
//! output as a comment next to the rule it concerns, so nothing is lost silently. Rules expired at
//! `now` are left out.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::{CostUnit, IpMatch, Limit, Match, Policy, Rule};

/// The export formats `GET /v1/policy?format=` knows.
pub const FORMATS: [&str; 3] = ["json", "envoy-ratelimit", "nginx"];

/// A time unit of envoyproxy/ratelimit and its length in seconds.
const ENVOY_UNITS: [(&str, u64); 4] = [
    ("day", 86_400),
    ("hour", 3_600),
    ("minute", 60),
    ("second", 1),
];

/// `(unit, requests_per_unit, exact)`: the largest unit not longer than the window, and the rate
/// scaled to it (rounded down, at least 1, so the export is never looser than the rule).
fn envoy_rate(limit: &Limit) -> (&'static str, u64, bool) {
    let w = limit.window_seconds().max(1);
    let (unit, secs) = ENVOY_UNITS
        .iter()
        .copied()
        .find(|(_, s)| *s <= w)
        .unwrap_or(("second", 1));
    let scaled = u128::from(limit.rate()) * u128::from(secs) / u128::from(w);
    let exact = u128::from(limit.rate()) * u128::from(secs) % u128::from(w) == 0;
    (
        unit,
        u64::try_from(scaled).unwrap_or(u64::MAX).max(1),
        exact && scaled > 0,
    )
}

/// Requests per second as a float, to pick the stricter of two rules.
fn per_second(limit: &Limit) -> f64 {
    limit.rate() as f64 / limit.window_seconds().max(1) as f64
}

/// A YAML double-quoted scalar.
fn yq(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Descriptor entries of a rule, in a fixed order: `(key, value)` with `None` meaning "each
/// value separately".
fn envoy_entries(rule: &Rule) -> Vec<(&'static str, Option<String>)> {
    let s = &rule.selector;
    let mut e = Vec::new();
    let m = |m: &Match| match m {
        Match::Each => None,
        Match::Exactly(v) => Some(v.clone()),
    };
    if let Some(v) = &s.api_key {
        e.push(("api_key", m(v)));
    }
    if let Some(v) = &s.consumer {
        e.push(("consumer", m(v)));
    }
    if let Some(v) = &s.user {
        e.push(("user", m(v)));
    }
    match &s.ip {
        Some(IpMatch::Each) => e.push(("remote_address", None)),
        Some(IpMatch::Net(c)) if c.is_host() => {
            e.push(("remote_address", Some(c.addr().to_string())))
        }
        Some(IpMatch::Net(c)) => e.push(("masked_remote_address", Some(c.to_string()))),
        None => {}
    }
    if let Some(v) = &s.route {
        e.push(("route", m(v)));
    }
    if let Some(v) = &s.method {
        e.push(("method", m(v)));
    }
    if e.is_empty() {
        // A global rule: the gateway sends a constant generic_key descriptor.
        e.push(("generic_key", Some("sluice".to_owned())));
    }
    e
}

#[derive(Default)]
struct Node<'a> {
    rule: Option<&'a Rule>,
    notes: Vec<String>,
    children: BTreeMap<(&'static str, Option<String>), Node<'a>>,
}

/// The envoyproxy/ratelimit configuration (YAML) of `policy`, in `domain`.
///
/// Descriptor keys: `api_key`, `consumer`, `user`, `remote_address` (Envoy's remote_address
/// action), `masked_remote_address` (subnets; Envoy's masked_remote_address action), `route`,
/// `method`, and `generic_key: sluice` for global rules; configure the Envoy rate limit actions to
/// send them in this order. The service counts requests in fixed windows: bursts and queues are
/// not expressible, and cost units need the gateway to set `hits_addend`.
pub fn envoy_ratelimit(
    policy: &Policy,
    version: Option<i64>,
    domain: &str,
    now: DateTime<Utc>,
) -> String {
    let mut root = Node::default();
    for rule in policy.rules().iter().filter(|r| r.active_at(now)) {
        let mut node = &mut root;
        for entry in envoy_entries(rule) {
            node = node.children.entry(entry).or_default();
        }
        match node.rule {
            Some(other) if per_second(&other.limit) <= per_second(&rule.limit) => {
                node.notes.push(format!(
                    "rule {:?} has the same descriptor and a looser limit; {:?} is kept",
                    rule.id, other.id
                ));
            }
            Some(other) => {
                node.notes.push(format!(
                    "rule {:?} has the same descriptor and a looser limit; {:?} is kept",
                    other.id, rule.id
                ));
                node.rule = Some(rule);
            }
            None => node.rule = Some(rule),
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# envoyproxy/ratelimit configuration generated by Sluice from policy {} ({}).",
        version.map_or_else(|| "(unpublished)".to_owned(), |v| format!("version {v}")),
        policy.content_hash()
    );
    let _ = writeln!(
        out,
        "# Descriptor keys, in this order: api_key, consumer, user, remote_address or masked_remote_address, route, method."
    );
    let _ = writeln!(out, "domain: {}", yq(domain));
    if root.children.is_empty() {
        out.push_str("descriptors: []\n");
        return out;
    }
    out.push_str("descriptors:\n");
    write_envoy_nodes(&mut out, &root.children, 0);
    out
}

fn write_envoy_nodes(
    out: &mut String,
    nodes: &BTreeMap<(&'static str, Option<String>), Node<'_>>,
    depth: usize,
) {
    let pad = "  ".repeat(depth * 2);
    for ((key, value), node) in nodes {
        let _ = writeln!(out, "{pad}  - key: {key}");
        if let Some(v) = value {
            let _ = writeln!(out, "{pad}    value: {}", yq(v));
        }
        if let Some(rule) = node.rule {
            let (unit, rpu, exact) = envoy_rate(&rule.limit);
            let _ = writeln!(out, "{pad}    # rule {}", yq(&rule.id));
            if !exact {
                let _ = writeln!(
                    out,
                    "{pad}    # {} per {} s approximated as {rpu} per {unit} (rounded down)",
                    rule.limit.rate(),
                    rule.limit.window_seconds()
                );
            }
            if !matches!(rule.limit, Limit::FixedWindow { .. }) {
                let _ = writeln!(
                    out,
                    "{pad}    # {} is enforced as a fixed window{}",
                    rule.limit.algorithm(),
                    if rule.limit.burst() > 0 {
                        format!(" (burst/queue {} not expressible)", rule.limit.burst())
                    } else {
                        String::new()
                    }
                );
            }
            if rule.cost == CostUnit::CostUnits {
                let _ = writeln!(
                    out,
                    "{pad}    # counts cost units: the gateway must send hits_addend = the route's cost"
                );
            }
            for note in &node.notes {
                let _ = writeln!(out, "{pad}    # {note}");
            }
            let _ = writeln!(out, "{pad}    rate_limit:");
            let _ = writeln!(out, "{pad}      unit: {unit}");
            let _ = writeln!(out, "{pad}      requests_per_unit: {rpu}");
            if rule.shadow {
                let _ = writeln!(out, "{pad}    shadow_mode: true");
            }
        }
        if !node.children.is_empty() {
            let _ = writeln!(out, "{pad}    descriptors:");
            write_envoy_nodes(out, &node.children, depth + 1);
        }
    }
}

/// Escape a literal for an nginx regular expression inside double quotes.
fn nginx_regex_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\^$.|?*+()[]{}/".contains(c) {
            out.push('\\');
            out.push(c);
        } else if c == '"' {
            out.push_str("\\x22");
        } else if c.is_control() || c == ' ' {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// A route template (`/v1/items/{id}`) as a regex: `{...}` matches one path segment.
fn route_regex(route: &str) -> String {
    let mut out = String::new();
    let mut rest = route;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        out.push_str(&nginx_regex_literal(&rest[..start]));
        out.push_str("[^/]+");
        rest = &rest[start + len + 1..];
    }
    out.push_str(&nginx_regex_literal(rest));
    out
}

/// nginx `rate=`: `Nr/s` when the rule allows at least one request per second, else `Nr/m`
/// (rounded down, at least 1r/m). Returns the text and whether it is exact.
fn nginx_rate(limit: &Limit) -> (String, bool) {
    let (rate, w) = (
        u128::from(limit.rate()),
        u128::from(limit.window_seconds().max(1)),
    );
    if rate % w == 0 {
        (format!("{}r/s", rate / w), true)
    } else {
        let per_min = rate * 60 / w;
        (
            format!("{}r/m", per_min.max(1)),
            (rate * 60) % w == 0 && per_min > 0,
        )
    }
}

/// An nginx configuration snippet for `policy`: the `http {}` part (`geo`, `map`,
/// `limit_req_zone`) and the `server {}` part (`limit_req`). Variables used: `$http_x_api_key`,
/// `$http_x_consumer`, `$remote_user`, `$binary_remote_addr`/`$remote_addr`, `$uri`,
/// `$request_method`. Shadow rules are emitted commented out (nginx's `limit_req_dry_run` applies
/// to a whole context, not one zone).
pub fn nginx(policy: &Policy, version: Option<i64>, now: DateTime<Utc>) -> String {
    let mut http = String::new();
    let mut server = String::new();
    let _ = writeln!(
        http,
        "# nginx rate limits generated by Sluice from policy {} ({}).",
        version.map_or_else(|| "(unpublished)".to_owned(), |v| format!("version {v}")),
        policy.content_hash()
    );
    let _ = writeln!(
        http,
        "# Put this part in http {{}} and the limit_req part below in the server {{}} (or location) to limit."
    );
    let _ = writeln!(
        http,
        "# nginx counts requests with a leaky bucket per zone."
    );
    server.push_str("# --- server {} ---\nlimit_req_status 429;\n");
    for (n, rule) in policy
        .rules()
        .iter()
        .filter(|r| r.active_at(now))
        .enumerate()
    {
        let zone = format!("sluice_{n}");
        let comment = if rule.shadow { "# shadow: " } else { "" };
        let _ = writeln!(http, "\n# rule {:?}", rule.id);
        let s = &rule.selector;
        // (variable, regex) per component; the key is empty (not counted) unless all match.
        let mut parts: Vec<(String, String)> = Vec::new();
        let each = |m: &Match| match m {
            Match::Each => ".+".to_owned(),
            Match::Exactly(v) => nginx_regex_literal(v),
        };
        if let Some(m) = &s.api_key {
            parts.push(("$http_x_api_key".into(), each(m)));
        }
        if let Some(m) = &s.consumer {
            parts.push(("$http_x_consumer".into(), each(m)));
        }
        if let Some(m) = &s.user {
            parts.push(("$remote_user".into(), each(m)));
        }
        match &s.ip {
            Some(IpMatch::Each) => parts.push(("$remote_addr".into(), ".+".into())),
            Some(IpMatch::Net(c)) => {
                let var = format!("$sluice_net_{n}");
                let _ = writeln!(http, "{comment}geo {var} {{ default \"\"; {c} \"{c}\"; }}");
                parts.push((var, ".+".into()));
            }
            None => {}
        }
        if let Some(m) = &s.route {
            let re = match m {
                Match::Each => ".+".to_owned(),
                Match::Exactly(r) => route_regex(r),
            };
            parts.push(("$uri".into(), re));
        }
        if let Some(m) = &s.method {
            parts.push(("$request_method".into(), each(m)));
        }
        let key = if parts.is_empty() {
            // A global rule: one counter for every request.
            "\"sluice\"".to_owned()
        } else {
            let source = parts
                .iter()
                .map(|(v, _)| v.as_str())
                .collect::<Vec<_>>()
                .join("|");
            let regex = parts
                .iter()
                .map(|(_, r)| r.as_str())
                .collect::<Vec<_>>()
                .join("\\|");
            let var = format!("$sluice_key_{n}");
            let _ = writeln!(
                http,
                "{comment}map \"{source}\" {var} {{ \"~^{regex}$\" \"{source}\"; default \"\"; }}"
            );
            var
        };
        let (rate, exact) = nginx_rate(&rule.limit);
        if !exact {
            let _ = writeln!(
                http,
                "# {} per {} s approximated as {rate} (rounded down)",
                rule.limit.rate(),
                rule.limit.window_seconds()
            );
        }
        if rule.cost == CostUnit::CostUnits {
            let _ = writeln!(http, "# counts cost units in Sluice; nginx counts requests");
        }
        let _ = writeln!(
            http,
            "{comment}limit_req_zone {key} zone={zone}:10m rate={rate};"
        );
        let burst = match rule.limit {
            Limit::TokenBucket { burst, .. } => format!(" burst={burst} nodelay"),
            Limit::LeakyBucket { queue, .. } => format!(" burst={queue}"),
            _ => String::new(),
        };
        let _ = writeln!(
            server,
            "{comment}limit_req zone={zone}{burst};  # rule {:?}",
            rule.id
        );
    }
    http.push('\n');
    http.push_str(&server);
    http
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::parse(
            br#"{"format":"sluice.policy/v1","rules":[
            {"id":"global","limit":{"algorithm":"fixed_window","rate":1000,"window_seconds":1}},
            {"id":"per-key-search","selector":{"api_key":"*","route":"/v1/items/{id}"},"limit":{"algorithm":"token_bucket","rate":100,"window_seconds":60,"burst":20}},
            {"id":"bad-key","selector":{"api_key":"ak_bad"},"limit":{"algorithm":"sliding_window_log","rate":10,"window_seconds":90},"shadow":true},
            {"id":"subnet","selector":{"ip":"10.0.0.0/8","method":"POST"},"limit":{"algorithm":"leaky_bucket","rate":5,"window_seconds":1,"queue":10},"cost":"cost_units"},
            {"id":"expired","selector":{"user":"bob"},"limit":{"algorithm":"fixed_window","rate":1,"window_seconds":1},"expires_at":"2020-01-01T00:00:00Z"}
        ]}"#,
        )
        .unwrap()
    }

    fn now() -> DateTime<Utc> {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn envoy_yaml() {
        let p = policy();
        let y = envoy_ratelimit(&p, Some(3), "sluice", now());
        let body: Vec<&str> = y.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            body.join("\n"),
            r#"domain: "sluice"
descriptors:
  - key: api_key
    descriptors:
      - key: route
        value: "/v1/items/{id}"
        # rule "per-key-search"
        # token_bucket is enforced as a fixed window (burst/queue 20 not expressible)
        rate_limit:
          unit: minute
          requests_per_unit: 100
  - key: api_key
    value: "ak_bad"
    # rule "bad-key"
    # 10 per 90 s approximated as 6 per minute (rounded down)
    # sliding_window_log is enforced as a fixed window
    rate_limit:
      unit: minute
      requests_per_unit: 6
    shadow_mode: true
  - key: generic_key
    value: "sluice"
    # rule "global"
    rate_limit:
      unit: second
      requests_per_unit: 1000
  - key: masked_remote_address
    value: "10.0.0.0/8"
    descriptors:
      - key: method
        value: "POST"
        # rule "subnet"
        # leaky_bucket is enforced as a fixed window (burst/queue 10 not expressible)
        # counts cost units: the gateway must send hits_addend = the route's cost
        rate_limit:
          unit: second
          requests_per_unit: 5"#
        );
        assert!(y.starts_with("# envoyproxy/ratelimit configuration generated by Sluice from policy version 3 (sha256:"));
        assert!(!y.contains("expired"));
    }

    #[test]
    fn envoy_same_descriptor_keeps_the_stricter_rule() {
        let p = Policy::parse(
            br#"{"format":"sluice.policy/v1","rules":[
            {"id":"loose","selector":{"api_key":"*"},"limit":{"algorithm":"fixed_window","rate":100,"window_seconds":1}},
            {"id":"tight","selector":{"api_key":"*"},"limit":{"algorithm":"fixed_window","rate":50,"window_seconds":1}}
        ]}"#,
        )
        .unwrap();
        let y = envoy_ratelimit(&p, None, "d", now());
        assert!(y.contains("requests_per_unit: 50"), "{y}");
        assert!(!y.contains("requests_per_unit: 100"), "{y}");
        assert!(
            y.contains(
                "# rule \"loose\" has the same descriptor and a looser limit; \"tight\" is kept"
            ),
            "{y}"
        );
        let empty = Policy::new(vec![]).unwrap();
        assert!(envoy_ratelimit(&empty, None, "d", now()).ends_with("descriptors: []\n"));
    }

    #[test]
    fn nginx_snippet() {
        let n = nginx(&policy(), Some(3), now());
        let body: Vec<&str> = n
            .lines()
            .filter(|l| !l.starts_with("# nginx") && !l.starts_with("# Put"))
            .collect();
        assert_eq!(
            body.join("\n"),
            r#"
# rule "bad-key"
# shadow: map "$http_x_api_key" $sluice_key_0 { "~^ak_bad$" "$http_x_api_key"; default ""; }
# 10 per 90 s approximated as 6r/m (rounded down)
# shadow: limit_req_zone $sluice_key_0 zone=sluice_0:10m rate=6r/m;

# rule "global"
limit_req_zone "sluice" zone=sluice_1:10m rate=1000r/s;

# rule "per-key-search"
map "$http_x_api_key|$uri" $sluice_key_2 { "~^.+\|\/v1\/items\/[^/]+$" "$http_x_api_key|$uri"; default ""; }
limit_req_zone $sluice_key_2 zone=sluice_2:10m rate=100r/m;

# rule "subnet"
geo $sluice_net_3 { default ""; 10.0.0.0/8 "10.0.0.0/8"; }
map "$sluice_net_3|$request_method" $sluice_key_3 { "~^.+\|POST$" "$sluice_net_3|$request_method"; default ""; }
# counts cost units in Sluice; nginx counts requests
limit_req_zone $sluice_key_3 zone=sluice_3:10m rate=5r/s;

# --- server {} ---
limit_req_status 429;
# shadow: limit_req zone=sluice_0;  # rule "bad-key"
limit_req zone=sluice_1;  # rule "global"
limit_req zone=sluice_2 burst=20 nodelay;  # rule "per-key-search"
limit_req zone=sluice_3 burst=10;  # rule "subnet""#
        );
    }
}
