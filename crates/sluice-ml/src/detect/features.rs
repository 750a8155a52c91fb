//! Per-client, per-minute aggregates ([`ClientMinute`]) and the log-time [`Aggregator`] that
//! builds them from access records and closes minutes behind a watermark.
//!
//! Merge semantics (what a Postgres rollup can mirror):
//! - exact under [`ClientMinute::merge`] (sums and maxima): `requests`, `per_10s`, the status and
//!   method counters, `bytes_sent`, the latency sum/count/max, `route_counts`;
//! - exact as set unions (a rollup would keep them as arrays or HyperLogLog sketches, which makes
//!   them approximate there): `paths` (64-bit hashes), `ips`, `user_agents`;
//! - approximate: the inter-arrival moments (`gap_*`): gaps that straddle two merged parts are
//!   lost, so a merged coefficient of variation is computed from fewer gaps.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use sluice_core::time::{MICROS_PER_MINUTE, MICROS_PER_SEC};
use sluice_core::{AccessRecord, ClientId, ClientKind, Timestamp};

/// Response status counters of one client minute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusMix {
    pub s2xx: u32,
    pub s3xx: u32,
    pub s401: u32,
    pub s403: u32,
    pub s404: u32,
    pub s429: u32,
    /// Other 4xx (400, 409, 422, ...).
    pub s4xx_other: u32,
    pub s5xx: u32,
}

impl StatusMix {
    pub fn add(&mut self, status: u16) {
        match status {
            200..=299 => self.s2xx += 1,
            300..=399 => self.s3xx += 1,
            401 => self.s401 += 1,
            403 => self.s403 += 1,
            404 => self.s404 += 1,
            429 => self.s429 += 1,
            400..=499 => self.s4xx_other += 1,
            500..=599 => self.s5xx += 1,
            // 1xx and out-of-range codes: counted with other 4xx so the totals still add up
            _ => self.s4xx_other += 1,
        }
    }

    pub fn merge(&mut self, o: &StatusMix) {
        self.s2xx += o.s2xx;
        self.s3xx += o.s3xx;
        self.s401 += o.s401;
        self.s403 += o.s403;
        self.s404 += o.s404;
        self.s429 += o.s429;
        self.s4xx_other += o.s4xx_other;
        self.s5xx += o.s5xx;
    }

    /// All 4xx responses.
    pub fn client_errors(&self) -> u32 {
        self.s401 + self.s403 + self.s404 + self.s429 + self.s4xx_other
    }
}

/// One client's traffic in one log minute.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientMinute {
    pub client: ClientId<'static>,
    /// Start of the minute.
    pub minute: Timestamp,
    pub requests: u32,
    /// Requests per 10-second slot of the minute (the peak is the burstiness numerator).
    pub per_10s: [u32; 6],
    pub status: StatusMix,
    pub get: u32,
    pub post: u32,
    pub other_method: u32,
    pub bytes_sent: u64,
    pub latency_sum_us: u64,
    pub latency_count: u32,
    pub latency_max_us: u64,
    /// Requests per normalised route, sorted by route.
    pub route_counts: Vec<(String, u32)>,
    /// Distinct raw paths as sorted 64-bit hashes.
    pub paths: Vec<u64>,
    /// Distinct source IPs, sorted.
    pub ips: Vec<IpAddr>,
    /// Distinct user agents, sorted.
    pub user_agents: Vec<String>,
    /// Inter-arrival gaps within the minute: count, sum and sum of squares in seconds.
    pub gap_count: u32,
    pub gap_sum: f64,
    pub gap_sumsq: f64,
}

impl ClientMinute {
    /// An empty row (merge identity).
    pub fn empty(client: ClientId<'static>, minute: Timestamp) -> ClientMinute {
        ClientMinute {
            client,
            minute,
            requests: 0,
            per_10s: [0; 6],
            status: StatusMix::default(),
            get: 0,
            post: 0,
            other_method: 0,
            bytes_sent: 0,
            latency_sum_us: 0,
            latency_count: 0,
            latency_max_us: 0,
            route_counts: Vec::new(),
            paths: Vec::new(),
            ips: Vec::new(),
            user_agents: Vec::new(),
            gap_count: 0,
            gap_sum: 0.0,
            gap_sumsq: 0.0,
        }
    }

    /// Add another part of the same client and minute (or of a group, for campaign summaries).
    pub fn merge(&mut self, o: &ClientMinute) {
        self.merge_all(std::iter::once(o));
    }

    /// Merge many rows at once: counters add up, route counts add per route, and the path, IP
    /// and user-agent sets are unioned with one sort at the end (merging a large campaign row by
    /// row would re-sort the growing sets every time).
    pub fn merge_all<'a>(&mut self, others: impl IntoIterator<Item = &'a ClientMinute>) {
        let mut routes: HashMap<String, u32> = self.route_counts.drain(..).collect();
        let (paths, ips, uas) = (self.paths.len(), self.ips.len(), self.user_agents.len());
        for o in others {
            self.requests += o.requests;
            for (a, b) in self.per_10s.iter_mut().zip(o.per_10s) {
                *a += b;
            }
            self.status.merge(&o.status);
            self.get += o.get;
            self.post += o.post;
            self.other_method += o.other_method;
            self.bytes_sent += o.bytes_sent;
            self.latency_sum_us += o.latency_sum_us;
            self.latency_count += o.latency_count;
            self.latency_max_us = self.latency_max_us.max(o.latency_max_us);
            for (r, n) in &o.route_counts {
                match routes.get_mut(r) {
                    Some(c) => *c += n,
                    None => {
                        routes.insert(r.clone(), *n);
                    }
                }
            }
            self.paths.extend_from_slice(&o.paths);
            self.ips.extend_from_slice(&o.ips);
            self.user_agents.extend_from_slice(&o.user_agents);
            self.gap_count += o.gap_count;
            self.gap_sum += o.gap_sum;
            self.gap_sumsq += o.gap_sumsq;
        }
        let mut routes: Vec<(String, u32)> = routes.into_iter().collect();
        routes.sort_unstable();
        self.route_counts = routes;
        if self.paths.len() > paths {
            self.paths.sort_unstable();
            self.paths.dedup();
        }
        if self.ips.len() > ips {
            self.ips.sort_unstable();
            self.ips.dedup();
        }
        if self.user_agents.len() > uas {
            self.user_agents.sort_unstable();
            self.user_agents.dedup();
        }
    }

    pub fn peak_10s(&self) -> u32 {
        self.per_10s.iter().copied().max().unwrap_or(0)
    }

    /// Peak 10-second rate over the mean 10-second rate (1 = perfectly even, 6 = all in one slot).
    pub fn burstiness(&self) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        f64::from(self.peak_10s()) * 6.0 / f64::from(self.requests)
    }

    pub fn distinct_paths(&self) -> usize {
        self.paths.len()
    }

    pub fn distinct_routes(&self) -> usize {
        self.route_counts.len()
    }

    /// Shannon entropy of the route mix in bits.
    pub fn route_entropy(&self) -> f64 {
        let n = f64::from(self.requests.max(1));
        self.route_counts
            .iter()
            .map(|(_, c)| {
                let p = f64::from(*c) / n;
                if p > 0.0 {
                    -p * p.log2()
                } else {
                    0.0
                }
            })
            .sum()
    }

    /// The route with most requests (ties: the first in order).
    pub fn dominant_route(&self) -> Option<&str> {
        let mut best: Option<(&str, u32)> = None;
        for (r, c) in &self.route_counts {
            if best.is_none_or(|(_, b)| *c > b) {
                best = Some((r, *c));
            }
        }
        best.map(|(r, _)| r)
    }

    /// Coefficient of variation of inter-arrival gaps (0 = clockwork, ~1 = Poisson); 0 with
    /// fewer than two gaps.
    pub fn inter_arrival_cv(&self) -> f64 {
        if self.gap_count < 2 {
            return 0.0;
        }
        let n = f64::from(self.gap_count);
        let mean = self.gap_sum / n;
        let var = (self.gap_sumsq / n - mean * mean).max(0.0);
        if mean > 0.0 {
            var.sqrt() / mean
        } else {
            0.0
        }
    }

    pub fn mean_latency_ms(&self) -> f64 {
        if self.latency_count == 0 {
            return 0.0;
        }
        self.latency_sum_us as f64 / f64::from(self.latency_count) / 1000.0
    }

    pub fn mean_bytes(&self) -> f64 {
        self.bytes_sent as f64 / f64::from(self.requests.max(1))
    }

    /// Share of requests with a status in the mix accessor.
    pub fn share(&self, n: u32) -> f64 {
        f64::from(n) / f64::from(self.requests.max(1))
    }
}

/// Stable 64-bit hash of a path (std's SipHash with fixed keys).
pub fn path_hash(path: &str) -> u64 {
    let mut h = DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

/// The `/24` (IPv4) or `/48` (IPv6) network of an address, as text.
pub fn subnet(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
    }
}

/// All client rows of one log minute, closed by the watermark.
#[derive(Clone, Debug, PartialEq)]
pub struct ClosedMinute {
    pub minute: Timestamp,
    /// One row per active client, sorted by client.
    pub rows: Vec<ClientMinute>,
}

#[derive(Debug, Default)]
struct Builder {
    offsets: Vec<i64>,
    status: StatusMix,
    get: u32,
    post: u32,
    other_method: u32,
    bytes_sent: u64,
    latency_sum_us: u64,
    latency_count: u32,
    latency_max_us: u64,
    routes: HashMap<String, u32>,
    paths: HashSet<u64>,
    ips: Vec<IpAddr>,
    user_agents: Vec<String>,
}

impl Builder {
    fn add(&mut self, rec: &AccessRecord<'_>, offset: i64) {
        self.offsets.push(offset);
        self.status.add(rec.status);
        match rec.method.as_deref() {
            Some("GET") | Some("HEAD") => self.get += 1,
            Some("POST") => self.post += 1,
            _ => self.other_method += 1,
        }
        self.bytes_sent += rec.bytes_sent.unwrap_or(0);
        if let Some(l) = rec.latency_us {
            self.latency_sum_us += l;
            self.latency_count += 1;
            self.latency_max_us = self.latency_max_us.max(l);
        }
        let route = rec.route.as_deref().unwrap_or(&rec.path);
        match self.routes.get_mut(route) {
            Some(n) => *n += 1,
            None => {
                self.routes.insert(route.to_owned(), 1);
            }
        }
        self.paths.insert(path_hash(&rec.path));
        if let Some(ip) = rec.ip {
            if !self.ips.contains(&ip) {
                self.ips.push(ip);
            }
        }
        if let Some(ua) = rec.user_agent.as_deref() {
            if !self.user_agents.iter().any(|u| u == ua) {
                self.user_agents.push(ua.to_owned());
            }
        }
    }

    fn finish(mut self, client: ClientId<'static>, minute: Timestamp) -> ClientMinute {
        self.offsets.sort_unstable();
        let mut per_10s = [0u32; 6];
        for &o in &self.offsets {
            per_10s[((o / (10 * MICROS_PER_SEC)) as usize).min(5)] += 1;
        }
        let (mut gap_count, mut gap_sum, mut gap_sumsq) = (0u32, 0.0, 0.0);
        for w in self.offsets.windows(2) {
            let g = (w[1] - w[0]) as f64 / MICROS_PER_SEC as f64;
            gap_count += 1;
            gap_sum += g;
            gap_sumsq += g * g;
        }
        let mut route_counts: Vec<(String, u32)> = self.routes.into_iter().collect();
        route_counts.sort_unstable();
        let mut paths: Vec<u64> = self.paths.into_iter().collect();
        paths.sort_unstable();
        self.ips.sort_unstable();
        self.user_agents.sort_unstable();
        ClientMinute {
            client,
            minute,
            requests: self.offsets.len() as u32,
            per_10s,
            status: self.status,
            get: self.get,
            post: self.post,
            other_method: self.other_method,
            bytes_sent: self.bytes_sent,
            latency_sum_us: self.latency_sum_us,
            latency_count: self.latency_count,
            latency_max_us: self.latency_max_us,
            route_counts,
            paths,
            ips: self.ips,
            user_agents: self.user_agents,
            gap_count,
            gap_sum,
            gap_sumsq,
        }
    }
}

/// Open minute: one map of builders per client kind, so a lookup borrows the value (no
/// allocation per record).
#[derive(Debug, Default)]
struct OpenMinute {
    by_kind: [HashMap<String, Builder>; 4],
}

fn kind_index(k: ClientKind) -> usize {
    match k {
        ClientKind::ApiKey => 0,
        ClientKind::Consumer => 1,
        ClientKind::User => 2,
        ClientKind::Ip => 3,
    }
}

/// Builds [`ClientMinute`] rows from records in log-time order and closes a minute once the
/// watermark (newest log time seen minus the allowed lateness) has passed its end.
///
/// Records older than the start of the newest closed minute's successor are counted in
/// [`Aggregator::late_dropped`] and ignored; records without a client in
/// [`Aggregator::without_client`].
#[derive(Debug)]
pub struct Aggregator {
    lateness_us: i64,
    open: BTreeMap<i64, OpenMinute>,
    newest: Option<i64>,
    /// Minutes strictly before this one are closed.
    closed_before: Option<i64>,
    late_dropped: u64,
    without_client: u64,
}

impl Default for Aggregator {
    fn default() -> Self {
        Aggregator::new(MICROS_PER_MINUTE)
    }
}

impl Aggregator {
    /// `lateness_us`: how far behind the newest record a record may arrive and still count.
    pub fn new(lateness_us: i64) -> Aggregator {
        Aggregator {
            lateness_us: lateness_us.max(0),
            open: BTreeMap::new(),
            newest: None,
            closed_before: None,
            late_dropped: 0,
            without_client: 0,
        }
    }

    pub fn late_dropped(&self) -> u64 {
        self.late_dropped
    }

    pub fn without_client(&self) -> u64 {
        self.without_client
    }

    /// The watermark: every minute ending at or before it is closed.
    pub fn watermark(&self) -> Option<Timestamp> {
        self.newest.map(|n| Timestamp(n - self.lateness_us))
    }

    /// Add one record (with `client` and `route` set); returns the minutes it closed, oldest
    /// first.
    pub fn push(&mut self, rec: &AccessRecord<'_>) -> Vec<ClosedMinute> {
        let Some(client) = &rec.client else {
            self.without_client += 1;
            return Vec::new();
        };
        let ts = rec.ts.micros();
        let minute = rec.ts.minute_floor().micros();
        if self.closed_before.is_some_and(|c| minute < c) {
            self.late_dropped += 1;
            return Vec::new();
        }
        let map = &mut self.open.entry(minute).or_default().by_kind[kind_index(client.kind)];
        let b = match map.get_mut(client.value.as_ref()) {
            Some(b) => b,
            None => map.entry(client.value.to_string()).or_default(),
        };
        b.add(rec, ts - minute);
        if self.newest.is_none_or(|n| ts > n) {
            self.newest = Some(ts);
        }
        let wm = ts.max(self.newest.unwrap_or(ts)) - self.lateness_us;
        self.close_until(wm)
    }

    /// Close every minute that ends at or before `watermark`, whether or not a newer record
    /// arrived (a caller that reads committed records in order knows when a minute is complete).
    pub fn close_through(&mut self, watermark: Timestamp) -> Vec<ClosedMinute> {
        if self.newest.is_none_or(|n| watermark.micros() > n) {
            self.newest = Some(watermark.micros().saturating_add(self.lateness_us));
        }
        self.close_until(watermark.micros())
    }

    /// Close every open minute (end of input).
    pub fn flush(&mut self) -> Vec<ClosedMinute> {
        self.close_until(i64::MAX)
    }

    fn close_until(&mut self, watermark: i64) -> Vec<ClosedMinute> {
        let mut out = Vec::new();
        while let Some((&m, _)) = self.open.first_key_value() {
            if m.saturating_add(MICROS_PER_MINUTE) > watermark {
                break;
            }
            let Some((m, open)) = self.open.pop_first() else {
                break;
            };
            let minute = Timestamp(m);
            let mut rows = Vec::new();
            for (i, map) in open.by_kind.into_iter().enumerate() {
                let kind = ClientKind::ALL[i];
                for (value, b) in map {
                    let client = ClientId {
                        kind,
                        value: value.into(),
                    };
                    rows.push(b.finish(client, minute));
                }
            }
            rows.sort_unstable_by(|a, b| {
                (a.client.kind, &a.client.value).cmp(&(b.client.kind, &b.client.value))
            });
            self.closed_before = Some(m + MICROS_PER_MINUTE);
            out.push(ClosedMinute { minute, rows });
        }
        out
    }
}
