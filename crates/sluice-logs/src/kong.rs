//! Kong http-log / file-log JSON records (one object per line, or elements of a batched array).

use std::borrow::Cow;

use serde_json::value::RawValue;
use sluice_core::{AccessRecord, Timestamp};

use crate::envoy::require;
use crate::error::ParseError;
use crate::json::{self, Obj};
use crate::text::Builder;

pub(crate) fn parse(line: &[u8]) -> Result<AccessRecord<'_>, ParseError> {
    let obj = Obj::parse(line)?;
    let mut b = Builder::default();
    for (key, raw) in &obj.0 {
        let raw = *raw;
        match key.as_ref() {
            "started_at" => {
                if let Some(ms) = json::int("started_at", raw)? {
                    let us = ms
                        .checked_mul(1000)
                        .filter(|us| *us <= i64::MAX as u64)
                        .ok_or_else(|| {
                            ParseError::json_field("started_at", raw.get(), "number too large")
                        })?;
                    b.rec.ts = Timestamp(us as i64);
                    b.have_ts = true;
                }
            }
            "client_ip" => {
                if let Some(ip) = json::text("client_ip", raw)? {
                    b.addr(&ip, false)
                        .map_err(|p| ParseError::json_field("client_ip", raw.get(), p))?;
                }
            }
            "request" => request(&mut b, raw)?,
            "response" => {
                let o = Obj::nested("response", raw)?;
                if let Some(v) = o.get("status") {
                    if let Some(s) = json::status("response.status", v)? {
                        b.rec.status = s;
                        b.have_status = true;
                    }
                }
                if let Some(v) = o.get("size") {
                    b.rec.bytes_sent = json::int("response.size", v)?;
                }
            }
            "latencies" => {
                let o = Obj::nested("latencies", raw)?;
                if let Some(v) = o.get("request") {
                    b.rec.latency_us = latency("latencies.request", v)?;
                }
                if let Some(v) = o.get("proxy") {
                    b.rec.upstream_latency_us = latency("latencies.proxy", v)?;
                }
                if let Some(v) = o.get("kong") {
                    json::extra(&mut b.rec.extras, "kong_latency_ms", v, false);
                }
            }
            "consumer" => {
                if json::text("consumer", raw).is_ok() {
                    // a bare string (some plugins log the consumer id directly)
                    b.rec.consumer = json::text("consumer", raw)?;
                } else {
                    let o = Obj::nested("consumer", raw)?;
                    if let Some(v) = o.get("id") {
                        b.rec.consumer = json::text("consumer.id", v)?;
                    }
                    if let Some(v) = o.get("username") {
                        b.rec.user = json::text("consumer.username", v)?;
                    }
                    if let Some(v) = o.get("custom_id") {
                        json::extra(&mut b.rec.extras, "consumer_custom_id", v, false);
                    }
                }
            }
            "route" | "service" => {
                if let Ok(o) = Obj::nested(key, raw) {
                    if let Some(v) = o.get("name") {
                        json::extra(&mut b.rec.extras, &format!("{key}_name"), v, false);
                    }
                }
            }
            "authenticated_entity" => {
                if let Ok(o) = Obj::nested(key, raw) {
                    if let Some(v) = o.get("id") {
                        json::extra(&mut b.rec.extras, "authenticated_entity_id", v, false);
                    }
                }
            }
            other => json::extra(&mut b.rec.extras, other, raw, false),
        }
    }
    require(&b, "started_at", "response.status", "request.uri")?;
    Ok(b.finish())
}

/// Kong latencies are milliseconds; `-1` (no upstream reached) means absent.
fn latency(label: &str, raw: &RawValue) -> Result<Option<u64>, ParseError> {
    if raw.get().starts_with('-') {
        return Ok(None);
    }
    json::scaled(label, raw, 3)
}

fn request<'a>(b: &mut Builder<'a>, raw: &'a RawValue) -> Result<(), ParseError> {
    let o = Obj::nested("request", raw)?;
    let mut uri: Option<(Cow<'a, str>, &RawValue, &str)> = None;
    let mut url: Option<(Cow<'a, str>, &RawValue, &str)> = None;
    let mut query_key: Option<Cow<'a, str>> = None;
    for (key, raw) in &o.0 {
        let raw = *raw;
        match key.as_ref() {
            "method" => b.rec.method = json::text("request.method", raw)?,
            "uri" => uri = json::text("request.uri", raw)?.map(|t| (t, raw, "request.uri")),
            "url" => url = json::text("request.url", raw)?.map(|t| (t, raw, "request.url")),
            "size" => b.rec.bytes_received = json::int("request.size", raw)?,
            "id" if b.rec.request_id.is_none() => {
                b.rec.request_id = json::text("request.id", raw)?;
            }
            "headers" => headers(b, raw)?,
            "querystring" => {
                if let Ok(q) = Obj::nested("request.querystring", raw) {
                    if let Some(v) = q.get("apikey") {
                        query_key = json::text("request.querystring.apikey", v).ok().flatten();
                    }
                }
            }
            _ => {}
        }
    }
    if b.rec.api_key.is_none() {
        b.rec.api_key = query_key;
    }
    if let Some((text, raw, label)) = uri.or(url) {
        b.target(text)
            .map_err(|p| ParseError::json_field(label, raw.get(), p))?;
    }
    Ok(())
}

fn headers<'a>(b: &mut Builder<'a>, raw: &'a RawValue) -> Result<(), ParseError> {
    let o = Obj::nested("request.headers", raw)?;
    for (name, raw) in &o.0 {
        let slot = match name.to_ascii_lowercase().as_str() {
            "x-api-key" | "apikey" => &mut b.rec.api_key,
            "user-agent" => &mut b.rec.user_agent,
            "referer" => &mut b.rec.referer,
            "host" => &mut b.rec.host,
            "x-request-id" | "kong-request-id" => &mut b.rec.request_id,
            "x-forwarded-for" => &mut b.xff,
            _ => continue,
        };
        if slot.is_some() {
            continue;
        }
        // repeated headers are logged as an array of strings: take the first
        let label = format!("request.headers.{name}");
        let value = if raw.get().starts_with('[') {
            let items: Vec<&'a RawValue> = serde_json::from_str(raw.get()).unwrap_or_default();
            match items.first() {
                Some(v) => json::text(&label, v)?,
                None => None,
            }
        } else {
            json::text(&label, raw)?
        };
        *slot = value;
    }
    Ok(())
}
