//! Turning parsed records into a ready-to-send batch: Postgres binary `COPY` rows for
//! `access_log`, per-minute rollup aggregates, and rejected lines.
//!
//! Architecture invariant: pure CPU work with no IO, so callers run it on the parsing thread and
//! the database connection only ever streams finished bytes.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::hash::Hash;
use std::net::IpAddr;

use hashbrown::{Equivalent, HashMap};
use sluice_core::time::MICROS_PER_DAY;
use sluice_core::{AccessRecord, ClientKind, Timestamp};

/// Raw text of a rejected line is cut to this many bytes before it is stored.
pub const MAX_REJECT_RAW_BYTES: usize = 8 * 1024;

/// Microseconds between the Unix epoch and Postgres' epoch (2000-01-01).
const PG_EPOCH_OFFSET_US: i64 = 946_684_800_000_000;

/// Columns of `access_log` in the order the encoder writes them.
pub const ACCESS_LOG_COLUMNS: &str =
    "ts, source, client_kind, client, api_key, consumer, username, ip, \
method, host, path, route, query, protocol, status, bytes_sent, bytes_received, latency_us, \
upstream_latency_us, user_agent, referer, request_id, extras";
const ACCESS_LOG_FIELD_COUNT: i16 = 23;

/// Names of the rollup counters, in the order of [`Counters::values`].
pub const COUNTER_COLUMNS: [&str; 17] = [
    "requests",
    "status_2xx",
    "status_3xx",
    "status_401",
    "status_403",
    "status_404",
    "status_429",
    "status_4xx_other",
    "status_5xx",
    "method_get",
    "method_post",
    "method_other",
    "bytes_sent",
    "bytes_received",
    "latency_sum_us",
    "latency_count",
    "latency_max_us",
];
/// Index of the one counter merged with `GREATEST` instead of `+`.
pub const COUNTER_MAX_INDEX: usize = 16;

/// Per-minute aggregate of requests (for one client or one route).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters(pub [i64; 17]);

impl Counters {
    fn add(&mut self, rec: &AccessRecord<'_>) {
        let c = &mut self.0;
        c[0] += 1;
        let status_slot = match rec.status {
            200..=299 => Some(1),
            300..=399 => Some(2),
            401 => Some(3),
            403 => Some(4),
            404 => Some(5),
            429 => Some(6),
            400..=499 => Some(7),
            500..=599 => Some(8),
            _ => None,
        };
        if let Some(i) = status_slot {
            c[i] += 1;
        }
        match rec.method.as_deref() {
            Some("GET") => c[9] += 1,
            Some("POST") => c[10] += 1,
            _ => c[11] += 1,
        }
        c[12] += clamp_i64(rec.bytes_sent.unwrap_or(0));
        c[13] += clamp_i64(rec.bytes_received.unwrap_or(0));
        if let Some(l) = rec.latency_us {
            let l = clamp_i64(l);
            c[14] = c[14].saturating_add(l);
            c[15] += 1;
            c[16] = c[16].max(l);
        }
    }

    pub fn values(&self) -> &[i64; 17] {
        &self.0
    }

    pub fn requests(&self) -> i64 {
        self.0[0]
    }
}

fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientMinute {
    pub kind: ClientKind,
    pub client: String,
    pub minute: i64,
}

#[derive(Hash)]
struct ClientMinuteRef<'a> {
    kind: ClientKind,
    client: &'a str,
    minute: i64,
}

impl Equivalent<ClientMinute> for ClientMinuteRef<'_> {
    fn equivalent(&self, key: &ClientMinute) -> bool {
        self.kind == key.kind && self.minute == key.minute && self.client == key.client
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RouteMinute {
    pub route: String,
    pub minute: i64,
}

#[derive(Hash)]
struct RouteMinuteRef<'a> {
    route: &'a str,
    minute: i64,
}

impl Equivalent<RouteMinute> for RouteMinuteRef<'_> {
    fn equivalent(&self, key: &RouteMinute) -> bool {
        self.minute == key.minute && self.route == key.route
    }
}

// `ClientMinuteRef` must hash exactly like `ClientMinute` (derived Hash hashes fields in order,
// and `&str` hashes like `String`); this assertion guards that property.
#[cfg(test)]
fn hash_of<T: Hash>(t: &T) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    t.hash(&mut h);
    h.finish()
}

/// A line that could not be parsed, as it will be stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedLine {
    pub line_no: u64,
    pub reason: String,
    pub raw: String,
}

/// Lines read, accepted and rejected; `read == accepted + rejected` always.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IngestCounts {
    pub read: u64,
    pub accepted: u64,
    pub rejected: u64,
}

impl IngestCounts {
    pub fn add(&mut self, other: IngestCounts) {
        self.read += other.read;
        self.accepted += other.accepted;
        self.rejected += other.rejected;
    }
}

/// A batch ready to be written in one transaction.
#[derive(Debug)]
pub struct EncodedBatch {
    pub idempotency_key: Option<String>,
    pub source: String,
    pub format: String,
    pub counts: IngestCounts,
    /// Binary COPY stream for `access_log` (header, rows, trailer).
    pub copy_data: Vec<u8>,
    pub rejects: Vec<RejectedLine>,
    pub clients: Vec<(ClientMinute, Counters)>,
    pub routes: Vec<(RouteMinute, Counters)>,
    /// Start (µs) of every UTC day the records fall on: the partitions the batch needs.
    pub days: Vec<i64>,
    pub min_ts: Option<Timestamp>,
    pub max_ts: Option<Timestamp>,
}

/// Accumulates records and rejects into an [`EncodedBatch`].
#[derive(Debug)]
pub struct BatchBuilder {
    source: String,
    copy: Vec<u8>,
    counts: IngestCounts,
    rejects: Vec<RejectedLine>,
    clients: HashMap<ClientMinute, Counters>,
    routes: HashMap<RouteMinute, Counters>,
    days: BTreeSet<i64>,
    min_ts: Option<Timestamp>,
    max_ts: Option<Timestamp>,
}

impl BatchBuilder {
    /// `source` names the gateway or file for records that do not carry their own.
    pub fn new(source: &str) -> Self {
        let mut copy = Vec::with_capacity(1 << 20);
        copy.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        copy.extend_from_slice(&0i32.to_be_bytes());
        copy.extend_from_slice(&0i32.to_be_bytes());
        BatchBuilder {
            source: source.to_owned(),
            copy,
            counts: IngestCounts::default(),
            rejects: Vec::new(),
            clients: HashMap::new(),
            routes: HashMap::new(),
            days: BTreeSet::new(),
            min_ts: None,
            max_ts: None,
        }
    }

    pub fn counts(&self) -> IngestCounts {
        self.counts
    }

    /// Approximate size of the encoded rows, to cut batches by bytes.
    pub fn encoded_bytes(&self) -> usize {
        self.copy.len()
    }

    /// Add an accepted record. Its `route` should be set (the path is used otherwise).
    pub fn push(&mut self, rec: &AccessRecord<'_>) {
        self.counts.read += 1;
        self.counts.accepted += 1;
        let ts = rec.ts;
        self.min_ts = Some(self.min_ts.map_or(ts, |m| m.min(ts)));
        self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
        let day = ts.day_floor().micros();
        if self.days.last() != Some(&day) {
            self.days.insert(day);
        }
        let route: &str = rec.route.as_deref().unwrap_or(&rec.path);
        let minute = ts.minute_floor().micros();

        // Rollups.
        if let Some(client) = &rec.client {
            let key = ClientMinuteRef {
                kind: client.kind,
                client: &client.value,
                minute,
            };
            match self.clients.get_mut(&key) {
                Some(c) => c.add(rec),
                None => {
                    let mut c = Counters::default();
                    c.add(rec);
                    self.clients.insert(
                        ClientMinute {
                            kind: client.kind,
                            client: client.value.to_string(),
                            minute,
                        },
                        c,
                    );
                }
            }
        }
        let key = RouteMinuteRef { route, minute };
        match self.routes.get_mut(&key) {
            Some(c) => c.add(rec),
            None => {
                let mut c = Counters::default();
                c.add(rec);
                self.routes.insert(
                    RouteMinute {
                        route: route.to_owned(),
                        minute,
                    },
                    c,
                );
            }
        }

        // COPY row.
        let b = &mut self.copy;
        b.extend_from_slice(&ACCESS_LOG_FIELD_COUNT.to_be_bytes());
        put_i64(b, ts.micros() - PG_EPOCH_OFFSET_US);
        put_text(b, rec.source.as_deref().unwrap_or(&self.source));
        put_opt_text(b, rec.client.as_ref().map(|c| c.kind.as_str()));
        put_opt_text(b, rec.client.as_ref().map(|c| &*c.value));
        put_opt_text(b, rec.api_key.as_deref());
        put_opt_text(b, rec.consumer.as_deref());
        put_opt_text(b, rec.user.as_deref());
        match rec.ip {
            Some(ip) => put_inet(b, ip),
            None => put_null(b),
        }
        put_opt_text(b, rec.method.as_deref());
        put_opt_text(b, rec.host.as_deref());
        put_text(b, &rec.path);
        put_text(b, route);
        put_opt_text(b, rec.query.as_deref());
        put_opt_text(b, rec.protocol.as_deref());
        b.extend_from_slice(&2i32.to_be_bytes());
        b.extend_from_slice(&(rec.status.min(i16::MAX as u16) as i16).to_be_bytes());
        put_opt_i64(b, rec.bytes_sent.map(clamp_i64));
        put_opt_i64(b, rec.bytes_received.map(clamp_i64));
        put_opt_i64(b, rec.latency_us.map(clamp_i64));
        put_opt_i64(b, rec.upstream_latency_us.map(clamp_i64));
        put_opt_text(b, rec.user_agent.as_deref());
        put_opt_text(b, rec.referer.as_deref());
        put_opt_text(b, rec.request_id.as_deref());
        if rec.extras.is_empty() {
            put_null(b);
        } else {
            let json = serde_json::to_string(&rec.extras).unwrap_or_else(|_| "{}".into());
            let json = strip_nul(&json);
            b.extend_from_slice(&((json.len() + 1) as i32).to_be_bytes());
            b.push(1);
            b.extend_from_slice(json.as_bytes());
        }
    }

    /// Record a line that could not be parsed. The raw text is cut at [`MAX_REJECT_RAW_BYTES`].
    pub fn reject(&mut self, line_no: u64, reason: &str, raw: &[u8]) {
        self.counts.read += 1;
        self.counts.rejected += 1;
        let cut = &raw[..raw.len().min(MAX_REJECT_RAW_BYTES)];
        let raw = strip_nul(&String::from_utf8_lossy(cut)).into_owned();
        self.rejects.push(RejectedLine {
            line_no,
            reason: strip_nul(reason).into_owned(),
            raw,
        });
    }

    pub fn finish(mut self, idempotency_key: Option<String>, format: &str) -> EncodedBatch {
        self.copy.extend_from_slice(&(-1i16).to_be_bytes());
        let mut clients: Vec<_> = self.clients.into_iter().collect();
        // A stable order means concurrent batches lock rollup rows in the same order (no
        // deadlocks between writers).
        clients.sort_unstable_by(|a, b| {
            (a.0.kind, &a.0.client, a.0.minute).cmp(&(b.0.kind, &b.0.client, b.0.minute))
        });
        let mut routes: Vec<_> = self.routes.into_iter().collect();
        routes.sort_unstable_by(|a, b| (&a.0.route, a.0.minute).cmp(&(&b.0.route, b.0.minute)));
        EncodedBatch {
            idempotency_key,
            source: self.source,
            format: format.to_owned(),
            counts: self.counts,
            copy_data: self.copy,
            rejects: self.rejects,
            clients,
            routes,
            days: self.days.into_iter().collect(),
            min_ts: self.min_ts,
            max_ts: self.max_ts,
        }
    }
}

impl EncodedBatch {
    /// The days after the newest one that should exist before traffic reaches them.
    pub fn days_with_lookahead(&self, ahead: u32) -> Vec<i64> {
        let mut days = self.days.clone();
        if let Some(&last) = days.last() {
            for i in 1..=i64::from(ahead) {
                days.push(last + i * MICROS_PER_DAY);
            }
        }
        days
    }
}

/// Postgres `text` cannot hold NUL bytes; they become U+FFFD.
fn strip_nul(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{fffd}"))
    } else {
        Cow::Borrowed(s)
    }
}

fn put_null(b: &mut Vec<u8>) {
    b.extend_from_slice(&(-1i32).to_be_bytes());
}

fn put_text(b: &mut Vec<u8>, s: &str) {
    let s = strip_nul(s);
    b.extend_from_slice(&(s.len() as i32).to_be_bytes());
    b.extend_from_slice(s.as_bytes());
}

fn put_opt_text(b: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_text(b, s),
        None => put_null(b),
    }
}

fn put_i64(b: &mut Vec<u8>, v: i64) {
    b.extend_from_slice(&8i32.to_be_bytes());
    b.extend_from_slice(&v.to_be_bytes());
}

fn put_opt_i64(b: &mut Vec<u8>, v: Option<i64>) {
    match v {
        Some(v) => put_i64(b, v),
        None => put_null(b),
    }
}

fn put_inet(b: &mut Vec<u8>, ip: IpAddr) {
    // Postgres' inet wire format: family (PGSQL_AF_INET = 2, PGSQL_AF_INET6 = 3), prefix bits,
    // is_cidr, address length, address bytes.
    match ip {
        IpAddr::V4(v4) => {
            b.extend_from_slice(&8i32.to_be_bytes());
            b.extend_from_slice(&[2, 32, 0, 4]);
            b.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            b.extend_from_slice(&20i32.to_be_bytes());
            b.extend_from_slice(&[3, 128, 0, 16]);
            b.extend_from_slice(&v6.octets());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::ClientId;

    fn rec(ts_min: i64, client: &str, route: &str, status: u16) -> AccessRecord<'static> {
        AccessRecord {
            ts: Timestamp(ts_min * 60_000_000 + 5),
            path: route.to_owned().into(),
            route: Some(route.to_owned().into()),
            client: Some(ClientId {
                kind: ClientKind::ApiKey,
                value: client.to_owned().into(),
            }),
            method: Some("GET".into()),
            status,
            latency_us: Some(1000),
            ..Default::default()
        }
    }

    #[test]
    fn borrowed_keys_hash_like_owned_keys() {
        let owned = ClientMinute {
            kind: ClientKind::Ip,
            client: "1.2.3.4".into(),
            minute: 7,
        };
        let borrowed = ClientMinuteRef {
            kind: ClientKind::Ip,
            client: "1.2.3.4",
            minute: 7,
        };
        assert_eq!(hash_of(&owned), hash_of(&borrowed));
        let owned = RouteMinute {
            route: "/a".into(),
            minute: 7,
        };
        assert_eq!(
            hash_of(&owned),
            hash_of(&RouteMinuteRef {
                route: "/a",
                minute: 7
            })
        );
    }

    #[test]
    fn rollups_aggregate_per_minute() {
        let mut b = BatchBuilder::new("test");
        b.push(&rec(1, "a", "/x", 200));
        b.push(&rec(1, "a", "/x", 404));
        b.push(&rec(2, "a", "/y", 503));
        b.push(&rec(1, "b", "/x", 401));
        b.reject(5, "bad line", b"garbage\0here");
        let batch = b.finish(None, "nginx");
        assert_eq!(
            batch.counts,
            IngestCounts {
                read: 5,
                accepted: 4,
                rejected: 1
            }
        );
        assert_eq!(batch.clients.len(), 3);
        let (k, c) = &batch.clients[0];
        assert_eq!((k.client.as_str(), k.minute), ("a", 60_000_000));
        assert_eq!(c.requests(), 2);
        assert_eq!(c.values()[1], 1); // 2xx
        assert_eq!(c.values()[5], 1); // 404
        assert_eq!(c.values()[15], 2); // latency count
        assert_eq!(batch.routes.len(), 2); // /x at minute 1, /y at minute 2
        assert_eq!(batch.rejects[0].raw, "garbage\u{fffd}here");
        assert_eq!(batch.days, vec![0]);
        assert_eq!(
            batch.days_with_lookahead(2),
            vec![0, MICROS_PER_DAY, 2 * MICROS_PER_DAY]
        );
    }

    #[test]
    fn reject_raw_is_cut_at_8_kib() {
        let mut b = BatchBuilder::new("t");
        b.reject(1, "too long", &vec![b'a'; 20_000]);
        assert_eq!(
            b.finish(None, "x").rejects[0].raw.len(),
            MAX_REJECT_RAW_BYTES
        );
    }
}
