//! The limit and selector types a policy rule is made of: which requests a rule counts
//! ([`Selector`]), how it counts them ([`Limit`], one of five algorithms with its parameters) and
//! in what unit ([`CostUnit`]), and the IETF `RateLimit-Policy` header value of a rule.
//!
//! Every value here is valid by construction once it has passed [`Limit::check`] and
//! [`Selector`]'s parsers; `policy` calls those while it validates a document.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Which requests share a counter. Every field that is set must match; a field that is absent
/// matches every request. `"*"` means "every distinct value gets its own counter" (per API key,
/// per IP, ...); any other value matches exactly that value and all its requests share one
/// counter. An empty selector is one global counter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Match>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<Match>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Match>,
    /// `"*"` (per address), one address, or a CIDR subnet (the subnet shares one counter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpMatch>,
    /// A normalised route such as `/v1/items/{id}`, or `"*"` (per route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Match>,
    /// An HTTP method (upper case), or `"*"` (per method).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Match>,
}

impl Selector {
    /// The selector's fields that are set, in a fixed order, as `(name, value)`.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let text = |m: &Match| m.to_string();
        if let Some(m) = &self.api_key {
            out.push(("api_key", text(m)));
        }
        if let Some(m) = &self.consumer {
            out.push(("consumer", text(m)));
        }
        if let Some(m) = &self.user {
            out.push(("user", text(m)));
        }
        if let Some(m) = &self.ip {
            out.push(("ip", m.to_string()));
        }
        if let Some(m) = &self.route {
            out.push(("route", text(m)));
        }
        if let Some(m) = &self.method {
            out.push(("method", text(m)));
        }
        out
    }
}

/// A selector value: every distinct value separately (`"*"`) or exactly one value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Match {
    Each,
    Exactly(String),
}

impl fmt::Display for Match {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Match::Each => f.write_str("*"),
            Match::Exactly(v) => f.write_str(v),
        }
    }
}

impl Serialize for Match {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Match {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "*" => Ok(Match::Each),
            "" => Err(serde::de::Error::custom(
                "must not be empty (use \"*\" for every value, or leave the field out)",
            )),
            _ => Ok(Match::Exactly(s)),
        }
    }
}

/// An IP selector: `"*"`, or a subnet (a single address is a /32 or /128).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IpMatch {
    Each,
    Net(Cidr),
}

impl fmt::Display for IpMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpMatch::Each => f.write_str("*"),
            IpMatch::Net(c) => c.fmt(f),
        }
    }
}

impl Serialize for IpMatch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpMatch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "*" {
            return Ok(IpMatch::Each);
        }
        s.parse()
            .map(IpMatch::Net)
            .map_err(serde::de::Error::custom)
    }
}

/// An IPv4 or IPv6 network in CIDR notation, with its host bits zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// Whether this is a single address (`/32` or `/128`).
    pub fn is_host(&self) -> bool {
        self.prefix == if self.addr.is_ipv4() { 32 } else { 128 }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CidrError {
    #[error(
        "invalid IP address or CIDR {0:?} (expected e.g. 203.0.113.7, 10.0.0.0/8 or 2001:db8::/32)"
    )]
    Syntax(String),
    #[error("invalid CIDR {value:?}: prefix length {prefix} is longer than {max}")]
    Prefix {
        value: String,
        prefix: u32,
        max: u32,
    },
    #[error("invalid CIDR {value:?}: host bits are set (the network is {network})")]
    HostBits { value: String, network: String },
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || CidrError::Syntax(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => {
                let addr: IpAddr = a.parse().map_err(|_| syntax())?;
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 3 {
                    return Err(syntax());
                }
                let prefix: u32 = p.parse().map_err(|_| syntax())?;
                (addr, Some(prefix))
            }
            None => (s.parse().map_err(|_| syntax())?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(CidrError::Prefix {
                value: s.to_owned(),
                prefix,
                max,
            });
        }
        let cidr = Cidr {
            addr,
            prefix: prefix as u8,
        };
        let network = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        if network != addr {
            return Err(CidrError::HostBits {
                value: s.to_owned(),
                network: format!("{network}/{prefix}"),
            });
        }
        Ok(cidr)
    }
}

/// What a limit counts: requests, or cost units (each route has a cost weight; an expensive
/// request uses up the quota faster). Rendered as the IETF `qu` parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostUnit {
    #[default]
    Requests,
    CostUnits,
}

impl CostUnit {
    pub fn is_requests(&self) -> bool {
        *self == CostUnit::Requests
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            CostUnit::Requests => "requests",
            CostUnit::CostUnits => "cost_units",
        }
    }
}

/// A limit: the algorithm and its parameters. `rate` is in the rule's cost unit per
/// `window_seconds`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "snake_case", deny_unknown_fields)]
pub enum Limit {
    /// At most `rate` per aligned window.
    FixedWindow { rate: u64, window_seconds: u64 },
    /// At most `rate` in any window ending now (exact; stores a timestamp per request).
    SlidingWindowLog { rate: u64, window_seconds: u64 },
    /// The previous window's count weighted by its overlap plus the current window's count.
    SlidingWindowCounter { rate: u64, window_seconds: u64 },
    /// GCRA: `rate` per window on average, with up to `burst` at once.
    TokenBucket {
        rate: u64,
        window_seconds: u64,
        burst: u64,
    },
    /// Requests drain at `rate` per window; up to `queue` wait, the rest are rejected.
    LeakyBucket {
        rate: u64,
        window_seconds: u64,
        queue: u64,
    },
}

/// The longest window a limit may have: 31 days.
pub const MAX_WINDOW_SECONDS: u64 = 31 * 86_400;

impl Limit {
    pub const ALGORITHMS: [&'static str; 5] = [
        "fixed_window",
        "sliding_window_log",
        "sliding_window_counter",
        "token_bucket",
        "leaky_bucket",
    ];

    pub fn algorithm(&self) -> &'static str {
        match self {
            Limit::FixedWindow { .. } => "fixed_window",
            Limit::SlidingWindowLog { .. } => "sliding_window_log",
            Limit::SlidingWindowCounter { .. } => "sliding_window_counter",
            Limit::TokenBucket { .. } => "token_bucket",
            Limit::LeakyBucket { .. } => "leaky_bucket",
        }
    }

    /// Quota per window.
    pub fn rate(&self) -> u64 {
        match self {
            Limit::FixedWindow { rate, .. }
            | Limit::SlidingWindowLog { rate, .. }
            | Limit::SlidingWindowCounter { rate, .. }
            | Limit::TokenBucket { rate, .. }
            | Limit::LeakyBucket { rate, .. } => *rate,
        }
    }

    pub fn window_seconds(&self) -> u64 {
        match self {
            Limit::FixedWindow { window_seconds, .. }
            | Limit::SlidingWindowLog { window_seconds, .. }
            | Limit::SlidingWindowCounter { window_seconds, .. }
            | Limit::TokenBucket { window_seconds, .. }
            | Limit::LeakyBucket { window_seconds, .. } => *window_seconds,
        }
    }

    /// Extra requests allowed at once beyond the steady rate (token bucket burst, leaky bucket
    /// queue); 0 for the window algorithms.
    pub fn burst(&self) -> u64 {
        match self {
            Limit::TokenBucket { burst, .. } => *burst,
            Limit::LeakyBucket { queue, .. } => *queue,
            _ => 0,
        }
    }

    /// Parameter errors as `(field, message)`.
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut errs = Vec::new();
        if self.rate() == 0 {
            errs.push((
                "rate",
                "must be at least 1 (to block every request use a rate of 1 over a long window)"
                    .to_owned(),
            ));
        }
        let w = self.window_seconds();
        if w == 0 {
            errs.push(("window_seconds", "must be at least 1".to_owned()));
        } else if w > MAX_WINDOW_SECONDS {
            errs.push((
                "window_seconds",
                format!("must be at most {MAX_WINDOW_SECONDS} (31 days)"),
            ));
        }
        errs
    }
}

/// The IETF `RateLimit-Policy` header value of one rule
/// (draft-ietf-httpapi-ratelimit-headers: `"name";q=quota;w=window[;qu="unit"]`).
pub fn ratelimit_policy_header(id: &str, limit: &Limit, cost: CostUnit) -> String {
    let mut out = String::with_capacity(id.len() + 24);
    out.push('"');
    for c in id.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out.push_str(&format!(";q={};w={}", limit.rate(), limit.window_seconds()));
    if cost == CostUnit::CostUnits {
        out.push_str(";qu=\"cost-units\"");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        for (input, expect) in [
            ("203.0.113.7", Ok("203.0.113.7")),
            ("203.0.113.7/32", Ok("203.0.113.7")),
            ("10.0.0.0/8", Ok("10.0.0.0/8")),
            ("0.0.0.0/0", Ok("0.0.0.0/0")),
            ("2001:db8::/32", Ok("2001:db8::/32")),
            (
                "10.0.0.1/8",
                Err("invalid CIDR \"10.0.0.1/8\": host bits are set (the network is 10.0.0.0/8)"),
            ),
            (
                "10.0.0.0/33",
                Err("invalid CIDR \"10.0.0.0/33\": prefix length 33 is longer than 32"),
            ),
            (
                "10.0.0/8",
                Err("invalid IP address or CIDR \"10.0.0/8\" (expected e.g. 203.0.113.7, 10.0.0.0/8 or 2001:db8::/32)"),
            ),
            (
                "10.0.0.0/",
                Err("invalid IP address or CIDR \"10.0.0.0/\" (expected e.g. 203.0.113.7, 10.0.0.0/8 or 2001:db8::/32)"),
            ),
        ] {
            let got = input
                .parse::<Cidr>()
                .map(|c| c.to_string())
                .map_err(|e| e.to_string());
            assert_eq!(
                got,
                expect.map(str::to_owned).map_err(str::to_owned),
                "{input}"
            );
        }
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn header_values() {
        let l = Limit::TokenBucket {
            rate: 100,
            window_seconds: 60,
            burst: 20,
        };
        assert_eq!(
            ratelimit_policy_header("ak-1", &l, CostUnit::Requests),
            "\"ak-1\";q=100;w=60"
        );
        assert_eq!(
            ratelimit_policy_header("a\"b", &l, CostUnit::CostUnits),
            "\"a\\\"b\";q=100;w=60;qu=\"cost-units\""
        );
    }
}
