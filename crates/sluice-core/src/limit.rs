//! What a rate limit is: which requests share a counter ([`Selector`]), how they are counted
//! ([`Limit`]: one of five algorithms with its parameters), in what unit ([`CostUnit`]), and the
//! IETF `RateLimit-Policy` header value a gateway advertises for it
//! ([`ratelimit_policy_header`], draft-ietf-httpapi-ratelimit-headers).
//!
//! These are the building blocks of a policy rule (`policy` owns the document around them) and
//! what the tuner ([`crate::tuning`]) suggests. A [`Limit`] that passes [`Limit::check`] and a
//! [`Selector`] that deserialised are valid; the exact meaning of every algorithm is what
//! [`crate::tuning::backtest`] simulates.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::identity::ClientKind;

/// Which requests share a counter. Every field that is set must match; a field that is absent
/// matches every request. [`Match::Each`] (`"*"` in JSON) gives every distinct value its own
/// counter (per API key, per IP, ...); [`Match::Exactly`] matches that one value and all its
/// requests share one counter. An empty selector is one global counter. Fields combine: `{"api_key":
/// "*", "route": "/v1/export"}` is one counter per API key on the export route.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Match>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<Match>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Match>,
    /// `"*"` (per address), one address, or a CIDR subnet (all of the subnet shares one counter).
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
    /// The selector that names exactly one client identity (what the tuner suggests limits for).
    /// An IP client must be an address: anything else is refused rather than turned into a
    /// selector without an IP field, which would be one global counter.
    pub fn client(kind: ClientKind, value: &str) -> Result<Selector, CidrError> {
        let exact = Some(Match::Exactly(value.to_owned()));
        Ok(match kind {
            ClientKind::ApiKey => Selector {
                api_key: exact,
                ..Selector::default()
            },
            ClientKind::Consumer => Selector {
                consumer: exact,
                ..Selector::default()
            },
            ClientKind::User => Selector {
                user: exact,
                ..Selector::default()
            },
            ClientKind::Ip => {
                let addr: IpAddr = value
                    .parse()
                    .map_err(|_| CidrError::Syntax(value.to_owned()))?;
                Selector {
                    ip: Some(IpMatch::Net(Cidr::host(addr))),
                    ..Selector::default()
                }
            }
        })
    }

    /// The same selector restricted to one route.
    pub fn on_route(mut self, route: &str) -> Selector {
        self.route = Some(Match::Exactly(route.to_owned()));
        self
    }

    /// Whether no field is set (one global counter).
    pub fn is_global(&self) -> bool {
        self.fields().is_empty()
    }

    /// The fields that are set, in a fixed order, as `(name, value)`.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let named = [
            ("api_key", &self.api_key),
            ("consumer", &self.consumer),
            ("user", &self.user),
        ];
        for (name, m) in named {
            if let Some(m) = m {
                out.push((name, m.to_string()));
            }
        }
        if let Some(m) = &self.ip {
            out.push(("ip", m.to_string()));
        }
        if let Some(m) = &self.route {
            out.push(("route", m.to_string()));
        }
        if let Some(m) = &self.method {
            out.push(("method", m.to_string()));
        }
        out
    }
}

impl fmt::Display for Selector {
    /// `api_key=k1,route=/v1/x`, or `*` for the global selector.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields = self.fields();
        if fields.is_empty() {
            return f.write_str("*");
        }
        for (i, (name, value)) in fields.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{name}={value}")?;
        }
        Ok(())
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

/// An IP selector: `"*"` (per address), or a subnet (a single address is a /32 or /128).
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

/// An IPv4 or IPv6 network in CIDR notation, with its host bits zero (parse, don't validate:
/// `10.0.0.1/8` is refused rather than silently widened).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The network of one address (`/32` or `/128`).
    pub fn host(addr: IpAddr) -> Cidr {
        Cidr {
            addr,
            prefix: if addr.is_ipv4() { 32 } else { 128 },
        }
    }

    /// The network of `prefix` bits that holds `addr` (host bits cleared); the prefix is capped
    /// at the address family's length.
    pub fn network_of(addr: IpAddr, prefix: u8) -> Cidr {
        let (addr, prefix) = match addr {
            IpAddr::V4(a) => {
                let p = prefix.min(32);
                (IpAddr::V4((u32::from(a) & mask_v4(p)).into()), p)
            }
            IpAddr::V6(a) => {
                let p = prefix.min(128);
                (IpAddr::V6((u128::from(a) & mask_v6(p)).into()), p)
            }
        };
        Cidr { addr, prefix }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside this network (never across address families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = mask_v4(self.prefix);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = mask_v6(self.prefix);
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

fn mask_v4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask_v6(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
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
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(syntax());
                }
                let prefix: u32 = p.parse().map_err(|_| syntax())?;
                (addr, Some(prefix))
            }
            None => (s.parse::<IpAddr>().map_err(|_| syntax())?, None),
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
        let p = prefix as u8;
        let network = match addr {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & mask_v4(p)).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & mask_v6(p)).into()),
        };
        if network != addr {
            return Err(CidrError::HostBits {
                value: s.to_owned(),
                network: format!("{network}/{prefix}"),
            });
        }
        Ok(Cidr { addr, prefix: p })
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// What a limit counts: requests, or cost units (each route has a cost weight, see
/// [`crate::tuning::route_cost_weights`], so an expensive request uses up the quota faster).
/// Advertised as the IETF `qu` parameter.
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

    /// The `qu` value: `None` for requests (the draft's default unit `"request"` is left
    /// implicit), `"cost-units"` otherwise. The draft's registry names `request`,
    /// `content-bytes` and `concurrent-requests`; cost units are a service-specific unit, which
    /// the draft allows to be described out of band (our policy document does).
    pub const fn quota_unit(self) -> Option<&'static str> {
        match self {
            CostUnit::Requests => None,
            CostUnit::CostUnits => Some("cost-units"),
        }
    }
}

/// The algorithm of a limit, without its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    FixedWindow,
    SlidingWindowLog,
    SlidingWindowCounter,
    TokenBucket,
    LeakyBucket,
}

impl Algorithm {
    pub const ALL: [Algorithm; 5] = [
        Algorithm::FixedWindow,
        Algorithm::SlidingWindowLog,
        Algorithm::SlidingWindowCounter,
        Algorithm::TokenBucket,
        Algorithm::LeakyBucket,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::FixedWindow => "fixed_window",
            Algorithm::SlidingWindowLog => "sliding_window_log",
            Algorithm::SlidingWindowCounter => "sliding_window_counter",
            Algorithm::TokenBucket => "token_bucket",
            Algorithm::LeakyBucket => "leaky_bucket",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A limit: the algorithm and its parameters. `rate` is in the rule's [`CostUnit`] per
/// `window_seconds`. Rejected requests never count against any limit.
///
/// JSON: `{"algorithm": "token_bucket", "rate": 100, "window_seconds": 60, "burst": 20}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "snake_case", deny_unknown_fields)]
pub enum Limit {
    /// At most `rate` per window aligned to the Unix epoch (`[k*w, (k+1)*w)`); cheap, but a
    /// client can send `2*rate` across a window boundary.
    FixedWindow { rate: u64, window_seconds: u64 },
    /// At most `rate` in every window `(t - w, t]` ending at a request: exact, one timestamp
    /// stored per admitted request.
    SlidingWindowLog { rate: u64, window_seconds: u64 },
    /// The previous aligned window's count weighted by how much of it still overlaps the sliding
    /// window, plus the current window's count: admitted while `prev * (w - elapsed) / w + cur + 1
    /// <= rate`. Two counters per key, close to the log.
    SlidingWindowCounter { rate: u64, window_seconds: u64 },
    /// Token bucket as GCRA: `rate` per window on average (one token every `w / rate`), at most
    /// `burst` requests at once from an idle bucket (the bucket's capacity, at least 1).
    TokenBucket {
        rate: u64,
        window_seconds: u64,
        burst: u64,
    },
    /// Leaky bucket as a queue: requests wait in a queue of `queue` places that drains at `rate`
    /// per window; a request that finds the queue full is rejected. Admits the same requests as
    /// a token bucket with `burst = queue` but delays them instead of letting them burst.
    LeakyBucket {
        rate: u64,
        window_seconds: u64,
        queue: u64,
    },
}

/// The longest window a limit may have: 31 days.
pub const MAX_WINDOW_SECONDS: u64 = 31 * 86_400;

impl Limit {
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Limit::FixedWindow { .. } => Algorithm::FixedWindow,
            Limit::SlidingWindowLog { .. } => Algorithm::SlidingWindowLog,
            Limit::SlidingWindowCounter { .. } => Algorithm::SlidingWindowCounter,
            Limit::TokenBucket { .. } => Algorithm::TokenBucket,
            Limit::LeakyBucket { .. } => Algorithm::LeakyBucket,
        }
    }

    /// Quota per window.
    pub fn rate(&self) -> u64 {
        match *self {
            Limit::FixedWindow { rate, .. }
            | Limit::SlidingWindowLog { rate, .. }
            | Limit::SlidingWindowCounter { rate, .. }
            | Limit::TokenBucket { rate, .. }
            | Limit::LeakyBucket { rate, .. } => rate,
        }
    }

    pub fn window_seconds(&self) -> u64 {
        match *self {
            Limit::FixedWindow { window_seconds, .. }
            | Limit::SlidingWindowLog { window_seconds, .. }
            | Limit::SlidingWindowCounter { window_seconds, .. }
            | Limit::TokenBucket { window_seconds, .. }
            | Limit::LeakyBucket { window_seconds, .. } => window_seconds,
        }
    }

    /// Requests admitted at once from idle beyond the steady rate: the token bucket's burst, the
    /// leaky bucket's queue; 0 for the window algorithms.
    pub fn burst(&self) -> u64 {
        match *self {
            Limit::TokenBucket { burst, .. } => burst,
            Limit::LeakyBucket { queue, .. } => queue,
            _ => 0,
        }
    }

    /// The steady rate per minute (what the tuner reasons in and a diff compares).
    pub fn per_minute(&self) -> f64 {
        self.rate() as f64 * 60.0 / self.window_seconds().max(1) as f64
    }

    /// The same algorithm and window with another rate (burst and queue kept).
    pub fn with_rate(self, rate: u64) -> Limit {
        match self {
            Limit::FixedWindow { window_seconds, .. } => Limit::FixedWindow {
                rate,
                window_seconds,
            },
            Limit::SlidingWindowLog { window_seconds, .. } => Limit::SlidingWindowLog {
                rate,
                window_seconds,
            },
            Limit::SlidingWindowCounter { window_seconds, .. } => Limit::SlidingWindowCounter {
                rate,
                window_seconds,
            },
            Limit::TokenBucket {
                window_seconds,
                burst,
                ..
            } => Limit::TokenBucket {
                rate,
                window_seconds,
                burst,
            },
            Limit::LeakyBucket {
                window_seconds,
                queue,
                ..
            } => Limit::LeakyBucket {
                rate,
                window_seconds,
                queue,
            },
        }
    }

    /// Parameter errors as `(field, message)`; empty when the limit is valid.
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut errs = Vec::new();
        if self.rate() == 0 {
            errs.push((
                "rate",
                "must be at least 1 (to block a client use a rate of 1 over a long window)"
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
        match *self {
            Limit::TokenBucket { burst: 0, .. } => {
                errs.push(("burst", "must be at least 1".to_owned()))
            }
            Limit::LeakyBucket { queue: 0, .. } => {
                errs.push(("queue", "must be at least 1".to_owned()))
            }
            _ => {}
        }
        errs
    }
}

impl fmt::Display for Limit {
    /// `token_bucket 100/60s burst 20`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}s",
            self.algorithm(),
            self.rate(),
            self.window_seconds()
        )?;
        match *self {
            Limit::TokenBucket { burst, .. } => write!(f, " burst {burst}"),
            Limit::LeakyBucket { queue, .. } => write!(f, " queue {queue}"),
            _ => Ok(()),
        }
    }
}

/// The IETF `RateLimit-Policy` header value of one rule (a Structured Fields list member,
/// draft-ietf-httpapi-ratelimit-headers): `"name";q=quota;w=window`, plus `;qu="cost-units"` when
/// the rule counts cost units. The name is an SF string: `"` and `\` are escaped and characters
/// outside printable ASCII are replaced by `_` (SF strings cannot carry them).
pub fn ratelimit_policy_header(name: &str, limit: &Limit, unit: CostUnit) -> String {
    let mut out = String::with_capacity(name.len() + 32);
    out.push('"');
    for c in name.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('_'),
        }
    }
    out.push('"');
    out.push_str(&format!(";q={};w={}", limit.rate(), limit.window_seconds()));
    if let Some(qu) = unit.quota_unit() {
        out.push_str(&format!(";qu=\"{qu}\""));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_exactly() {
        let cases: [(&str, Result<&str, &str>); 9] = [
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
                "10.0.0.0/+8",
                Err("invalid IP address or CIDR \"10.0.0.0/+8\" (expected e.g. 203.0.113.7, 10.0.0.0/8 or 2001:db8::/32)"),
            ),
        ];
        for (input, expect) in cases {
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
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
    }

    #[test]
    fn limits_round_trip_through_json_with_snake_case_tags() {
        let l = Limit::TokenBucket {
            rate: 100,
            window_seconds: 60,
            burst: 20,
        };
        let json = serde_json::to_string(&l).unwrap();
        assert_eq!(
            json,
            r#"{"algorithm":"token_bucket","rate":100,"window_seconds":60,"burst":20}"#
        );
        assert_eq!(serde_json::from_str::<Limit>(&json).unwrap(), l);
        let err = serde_json::from_str::<Limit>(
            r#"{"algorithm":"fixed_window","rate":1,"window_seconds":1,"burst":3}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("unknown field `burst`"), "{err}");
        for a in Algorithm::ALL {
            assert_eq!(
                serde_json::to_string(&a).unwrap(),
                format!("\"{}\"", a.as_str())
            );
        }
    }

    #[test]
    fn selectors_serialise_only_their_fields_and_combine() {
        let s = Selector {
            api_key: Some(Match::Each),
            ip: Some(IpMatch::Net("10.0.0.0/8".parse().unwrap())),
            route: Some(Match::Exactly("/v1/export".into())),
            ..Selector::default()
        };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"{"api_key":"*","ip":"10.0.0.0/8","route":"/v1/export"}"#
        );
        assert_eq!(serde_json::from_str::<Selector>(&json).unwrap(), s);
        assert_eq!(s.to_string(), "api_key=*,ip=10.0.0.0/8,route=/v1/export");
        assert_eq!(Selector::default().to_string(), "*");
        assert!(Selector::default().is_global());
        let err = serde_json::from_str::<Selector>(r#"{"ip":"10.0.0.1/8"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("host bits are set"), "{err}");
        let err = serde_json::from_str::<Selector>(r#"{"user":""}"#)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("must not be empty"), "{err}");
        let err = serde_json::from_str::<Selector>(r#"{"tenant":"a"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("unknown field `tenant`"), "{err}");
        assert_eq!(
            Selector::client(ClientKind::Ip, "192.0.2.9")
                .unwrap()
                .on_route("/login")
                .to_string(),
            "ip=192.0.2.9,route=/login"
        );
        assert_eq!(
            Selector::client(ClientKind::ApiKey, "k1")
                .unwrap()
                .to_string(),
            "api_key=k1"
        );
        assert_eq!(
            Selector::client(ClientKind::Ip, "10.0.0.0/8")
                .unwrap_err()
                .to_string(),
            "invalid IP address or CIDR \"10.0.0.0/8\" (expected e.g. 203.0.113.7, 10.0.0.0/8 or 2001:db8::/32)"
        );
    }

    #[test]
    fn checks_name_every_bad_parameter() {
        let bad = Limit::TokenBucket {
            rate: 0,
            window_seconds: 0,
            burst: 0,
        };
        assert_eq!(
            bad.check(),
            vec![
                (
                    "rate",
                    "must be at least 1 (to block a client use a rate of 1 over a long window)"
                        .to_owned()
                ),
                ("window_seconds", "must be at least 1".to_owned()),
                ("burst", "must be at least 1".to_owned()),
            ]
        );
        let long = Limit::LeakyBucket {
            rate: 1,
            window_seconds: MAX_WINDOW_SECONDS + 1,
            queue: 0,
        };
        assert_eq!(
            long.check(),
            vec![
                (
                    "window_seconds",
                    "must be at most 2678400 (31 days)".to_owned()
                ),
                ("queue", "must be at least 1".to_owned()),
            ]
        );
        let ok = Limit::FixedWindow {
            rate: 10,
            window_seconds: 60,
        };
        assert!(ok.check().is_empty());
        assert_eq!(ok.with_rate(20).rate(), 20);
        assert_eq!(ok.per_minute(), 10.0);
        assert_eq!(bad.with_rate(5).to_string(), "token_bucket 5/0s burst 0");
    }

    #[test]
    fn header_values_follow_the_draft() {
        let l = Limit::TokenBucket {
            rate: 100,
            window_seconds: 60,
            burst: 20,
        };
        assert_eq!(
            ratelimit_policy_header("default", &l, CostUnit::Requests),
            "\"default\";q=100;w=60"
        );
        assert_eq!(
            ratelimit_policy_header("a\"b\\c", &l, CostUnit::CostUnits),
            "\"a\\\"b\\\\c\";q=100;w=60;qu=\"cost-units\""
        );
        assert_eq!(
            ratelimit_policy_header("ké y", &l, CostUnit::Requests),
            "\"k_ y\";q=100;w=60"
        );
    }
}
