//! Sluice's canonical NDJSON: one object per line with keys named like the `AccessRecord` fields.

use std::io::Write as _;

use serde_json::value::RawValue;
use sluice_core::{AccessRecord, Timestamp};

use crate::envoy::require;
use crate::error::ParseError;
use crate::json::{self, Obj};
use crate::num;
use crate::text::Builder;

pub(crate) fn parse(line: &[u8]) -> Result<AccessRecord<'_>, ParseError> {
    let obj = Obj::parse(line)?;
    let mut b = Builder::default();
    for (key, raw) in &obj.0 {
        let raw = *raw;
        let k: &str = key;
        let rec = &mut b.rec;
        match k {
            "ts" => {
                rec.ts = timestamp(raw)?;
                b.have_ts = true;
            }
            "source" => rec.source = json::text_exact(k, raw)?,
            "api_key" => rec.api_key = json::text_exact(k, raw)?,
            "consumer" => rec.consumer = json::text_exact(k, raw)?,
            "user" => rec.user = json::text_exact(k, raw)?,
            "ip" => {
                rec.ip =
                    match json::text(k, raw)? {
                        Some(s) => Some(s.parse().map_err(|_| {
                            ParseError::json_field(k, raw.get(), "not an ip address")
                        })?),
                        None => None,
                    }
            }
            "method" => rec.method = json::text_exact(k, raw)?,
            "host" => rec.host = json::text_exact(k, raw)?,
            "path" => {
                if let Some(p) = json::text(k, raw)? {
                    b.target(p)
                        .map_err(|p| ParseError::json_field(k, raw.get(), p))?;
                }
            }
            "query" => rec.query = json::text_exact(k, raw)?,
            "protocol" => rec.protocol = json::text_exact(k, raw)?,
            "status" => {
                if let Some(s) = json::status(k, raw)? {
                    rec.status = s;
                    b.have_status = true;
                }
            }
            "bytes_sent" => rec.bytes_sent = json::int(k, raw)?,
            "bytes_received" => rec.bytes_received = json::int(k, raw)?,
            "latency_us" => rec.latency_us = json::int(k, raw)?,
            "upstream_latency_us" => rec.upstream_latency_us = json::int(k, raw)?,
            "user_agent" => rec.user_agent = json::text_exact(k, raw)?,
            "referer" => rec.referer = json::text_exact(k, raw)?,
            "request_id" => rec.request_id = json::text_exact(k, raw)?,
            "extras" => {
                if raw.get() != "null" {
                    let o = Obj::nested(k, raw)?;
                    for (ek, ev) in &o.0 {
                        rec.extras.insert(ek.to_string(), json::value(ev));
                    }
                }
            }
            other => json::extra(&mut rec.extras, other, raw, true),
        }
    }
    require(&b, "ts", "status", "path")?;
    Ok(b.finish())
}

/// `ts`: an RFC 3339 string or integer microseconds since the epoch.
fn timestamp(raw: &RawValue) -> Result<Timestamp, ParseError> {
    let t = raw.get();
    let bad = |p: &str| ParseError::json_field("ts", t, p);
    match t.as_bytes().first() {
        Some(b'"') => {
            let s = json::text("ts", raw)?
                .ok_or_else(|| bad("expected an rfc 3339 time or integer epoch microseconds"))?;
            num::parse_iso(s.as_bytes()).map_err(bad)
        }
        Some(b'-' | b'0'..=b'9') => t
            .parse::<i64>()
            .map(Timestamp)
            .map_err(|_| bad("expected an rfc 3339 time or integer epoch microseconds")),
        _ => Err(bad(
            "expected an rfc 3339 time or integer epoch microseconds",
        )),
    }
}

/// Append `rec` as one canonical NDJSON object (without a newline). Absent fields are omitted;
/// `ts` is written as RFC 3339 UTC (integer microseconds outside years 0000-9999); `route` and `client` (derived by ingest) are not written.
pub fn to_ndjson(rec: &AccessRecord<'_>, out: &mut Vec<u8>) {
    // RFC 3339 covers years 0000 to 9999; other instants are written as integer microseconds
    const YEAR_10000: i64 = 253_402_300_800_000_000;
    const YEAR_0: i64 = -62_167_219_200_000_000;
    if (YEAR_0..YEAR_10000).contains(&rec.ts.micros()) {
        out.extend_from_slice(b"{\"ts\":\"");
        num::write_rfc3339(rec.ts, out);
        out.push(b'"');
    } else {
        let _ = write!(out, "{{\"ts\":{}", rec.ts.micros());
    }
    let s = |key: &str, v: &Option<std::borrow::Cow<'_, str>>, out: &mut Vec<u8>| {
        if let Some(v) = v {
            write_key(key, out);
            write_str(v, out);
        }
    };
    s("source", &rec.source, out);
    s("api_key", &rec.api_key, out);
    s("consumer", &rec.consumer, out);
    s("user", &rec.user, out);
    if let Some(ip) = rec.ip {
        write_key("ip", out);
        let _ = write!(out, "\"{ip}\"");
    }
    s("method", &rec.method, out);
    s("host", &rec.host, out);
    write_key("path", out);
    write_str(if rec.path.is_empty() { "/" } else { &rec.path }, out);
    s("query", &rec.query, out);
    s("protocol", &rec.protocol, out);
    write_key("status", out);
    let _ = write!(out, "{}", rec.status);
    let n = |key: &str, v: Option<u64>, out: &mut Vec<u8>| {
        if let Some(v) = v {
            write_key(key, out);
            let _ = write!(out, "{v}");
        }
    };
    n("bytes_sent", rec.bytes_sent, out);
    n("bytes_received", rec.bytes_received, out);
    n("latency_us", rec.latency_us, out);
    n("upstream_latency_us", rec.upstream_latency_us, out);
    s("user_agent", &rec.user_agent, out);
    s("referer", &rec.referer, out);
    s("request_id", &rec.request_id, out);
    if !rec.extras.is_empty() {
        write_key("extras", out);
        let _ = serde_json::to_writer(&mut *out, &rec.extras);
    }
    out.push(b'}');
}

fn write_key(key: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

fn write_str(v: &str, out: &mut Vec<u8>) {
    if v.bytes().all(|c| c >= 0x20 && c != b'"' && c != b'\\') {
        out.push(b'"');
        out.extend_from_slice(v.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, v);
    }
}
