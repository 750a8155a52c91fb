//! The text-format engine shared by nginx, Apache and Envoy text logs: a compiled program of
//! literals and fields, matched left to right.
//!
//! Matching works like nginx log parsers: a field's value extends up to the first occurrence of the
//! first byte of the literal that follows it (found with memchr), and a field at the end of the
//! format takes the rest of the line. The literal must then match in full. For backslash-escaping
//! formats (Apache, nginx `escape=json`) a `"` preceded by an odd number of backslashes does not end
//! a field.

use std::borrow::Cow;
use std::net::IpAddr;

use memchr::memchr;
use serde_json::Value;
use sluice_core::AccessRecord;

use crate::error::{show_byte, snippet, FormatError, ParseError};
use crate::num;

/// How field values are escaped in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Escape {
    /// Values are written raw (Envoy text, nginx `escape=none`).
    None,
    /// nginx default: `"`, `\` and bytes below 0x20 or above 0x7e are written as `\xHH`.
    Nginx,
    /// Apache: `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\v` and `\xhh`.
    Apache,
    /// nginx `escape=json`: `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`, `\uXXXX`.
    Json,
}

impl Escape {
    fn backslash_quotes(self) -> bool {
        matches!(self, Escape::Apache | Escape::Json)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimeKind {
    /// `10/Oct/2000:13:55:36 -0700`
    Clf,
    /// RFC 3339 / ISO 8601 with offset.
    Iso,
    /// Decimal epoch; the number times `10^scale` is microseconds (see [`num::parse_epoch`]).
    Epoch(u32),
}

/// What a field of a text format means and where its value goes in the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Field {
    /// Client address: an IP; a host name goes to extras `remote_host`.
    Addr,
    /// Client address that may carry a port: `1.2.3.4:5678`, `[::1]:80`.
    AddrPort,
    User,
    Time(TimeKind),
    /// A full request line `GET /path?q HTTP/1.1`.
    Request,
    Method,
    /// Path plus optional `?query`.
    RequestUri,
    /// Path without query (a `?` in it still starts the query).
    Path,
    /// Query string, with or without a leading `?`.
    Query,
    Protocol,
    Status,
    BytesSent,
    /// Apache `%b`: `-` means zero bytes.
    BytesSentClf,
    BytesReceived,
    /// Total latency; the decimal value times `10^scale` is microseconds.
    Latency(u32),
    /// Upstream latency; a list separated by `,` or `:` (nginx retries) is summed.
    Upstream(u32),
    Host,
    ApiKey,
    Consumer,
    UserAgent,
    Referer,
    RequestId,
    ForwardedFor,
    Extra(Box<str>),
}

impl Field {
    fn is_time(&self) -> bool {
        matches!(self, Field::Time(_))
    }
    fn is_path(&self) -> bool {
        matches!(self, Field::Request | Field::RequestUri | Field::Path)
    }
}

/// Output of a format compiler, before [`Program::build`] links fields to their delimiters.
#[derive(Debug)]
pub(crate) enum Piece {
    Lit(Vec<u8>),
    Field(Field, String),
}

/// How a format names its required fields, for [`FormatError::Missing`].
pub(crate) struct Required {
    pub time: &'static str,
    pub status: &'static str,
    pub path: &'static str,
}

#[derive(Debug)]
enum Step {
    Lit(Box<[u8]>),
    Field {
        field: Field,
        label: Box<str>,
        /// First byte of the following literal; `None` for the last field (takes the rest).
        delim: Option<u8>,
        /// Occurrences of `delim` that belong to the value (the space inside `$time_local`).
        skip: u8,
        /// The field is between double quotes (for the "unterminated quoted field" hint).
        quoted: bool,
    },
}

/// A compiled text format. `Send + Sync`, immutable after build.
#[derive(Debug)]
pub(crate) struct Program {
    steps: Vec<Step>,
    escape: Escape,
}

impl Program {
    pub(crate) fn build(
        pieces: Vec<Piece>,
        escape: Escape,
        required: &Required,
    ) -> Result<Program, FormatError> {
        // merge adjacent literals, drop empty ones
        let mut merged: Vec<Piece> = Vec::with_capacity(pieces.len());
        for p in pieces {
            match (merged.last_mut(), p) {
                (_, Piece::Lit(l)) if l.is_empty() => {}
                (Some(Piece::Lit(prev)), Piece::Lit(l)) => prev.extend_from_slice(&l),
                (_, p) => merged.push(p),
            }
        }
        let has = |f: fn(&Field) -> bool| {
            merged
                .iter()
                .any(|p| matches!(p, Piece::Field(field, _) if f(field)))
        };
        if !has(Field::is_time) {
            return Err(FormatError::Missing {
                what: "timestamp",
                expected: required.time,
            });
        }
        if !has(|f| *f == Field::Status) {
            return Err(FormatError::Missing {
                what: "status",
                expected: required.status,
            });
        }
        if !has(Field::is_path) {
            return Err(FormatError::Missing {
                what: "request path",
                expected: required.path,
            });
        }
        let mut steps = Vec::with_capacity(merged.len());
        for i in 0..merged.len() {
            match &merged[i] {
                Piece::Lit(l) => steps.push(Step::Lit(l.clone().into_boxed_slice())),
                Piece::Field(field, label) => {
                    let next = merged.get(i + 1);
                    let delim = match next {
                        Some(Piece::Lit(l)) => Some(l[0]),
                        Some(Piece::Field(_, other)) => {
                            return Err(FormatError::AdjacentFields(label.clone(), other.clone()))
                        }
                        None => None,
                    };
                    let skip = match (field, delim) {
                        (Field::Time(TimeKind::Clf), Some(b' ')) => 1,
                        (Field::Request, Some(b' ')) => 2,
                        _ => 0,
                    };
                    let quoted = delim == Some(b'"')
                        && i > 0
                        && matches!(&merged[i - 1], Piece::Lit(l) if l.last() == Some(&b'"'));
                    steps.push(Step::Field {
                        field: field.clone(),
                        label: label.clone().into_boxed_str(),
                        delim,
                        skip,
                        quoted,
                    });
                }
            }
        }
        Ok(Program { steps, escape })
    }

    /// Parse one line (without its line terminator).
    pub(crate) fn run<'a>(&self, line: &'a [u8]) -> Result<AccessRecord<'a>, ParseError> {
        if line.is_empty() {
            return Err(ParseError::Empty);
        }
        let mut b = Builder::default();
        let mut pos = 0usize;
        let mut prev: Option<&str> = None;
        for step in &self.steps {
            let rest = &line[pos..];
            match step {
                Step::Lit(lit) => {
                    if !rest.starts_with(lit) {
                        return Err(lit_mismatch(lit, prev, rest));
                    }
                    pos += lit.len();
                }
                Step::Field {
                    field,
                    label,
                    delim,
                    skip,
                    quoted,
                } => {
                    let len = match delim {
                        None => rest.len(),
                        Some(d) => match self.find_delim(rest, *d, *skip) {
                            Some(len) => len,
                            None => {
                                let hint = if *quoted {
                                    " (unterminated quoted field)"
                                } else {
                                    ""
                                };
                                return Err(ParseError::Shape(format!(
                                    "expected {} after {label} but the line ended{hint}",
                                    show_byte(*d)
                                )));
                            }
                        },
                    };
                    self.apply(field, label, &rest[..len], &mut b)?;
                    pos += len;
                    prev = Some(label);
                }
            }
        }
        if pos < line.len() {
            return Err(ParseError::Shape(format!(
                "unexpected text after the end of the format: {}",
                snippet(&line[pos..])
            )));
        }
        Ok(b.finish())
    }

    #[inline]
    fn find_delim(&self, hay: &[u8], d: u8, skip: u8) -> Option<usize> {
        let mut from = 0usize;
        let mut skipped = 0u8;
        loop {
            let i = from + memchr(d, hay.get(from..)?)?;
            if d == b'"' && self.escape.backslash_quotes() && odd_backslashes_before(hay, i) {
                from = i + 1;
                continue;
            }
            if skipped < skip {
                skipped += 1;
                from = i + 1;
                continue;
            }
            return Some(i);
        }
    }

    /// Decode a field's bytes into text: unescape only when a backslash is present, borrow otherwise.
    /// Invalid UTF-8 is replaced with U+FFFD.
    pub(crate) fn text<'a>(&self, raw: &'a [u8], label: &str) -> Result<Cow<'a, str>, ParseError> {
        if self.escape != Escape::None && memchr(b'\\', raw).is_some() {
            let bytes = unescape(raw, self.escape).map_err(|p| ParseError::field(label, raw, p))?;
            return Ok(match String::from_utf8(bytes) {
                Ok(s) => Cow::Owned(s),
                Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
            });
        }
        Ok(utf8(raw))
    }

    fn apply<'a>(
        &self,
        field: &Field,
        label: &str,
        raw: &'a [u8],
        b: &mut Builder<'a>,
    ) -> Result<(), ParseError> {
        let bad = |p: &str| ParseError::field(label, raw, p);
        let rec = &mut b.rec;
        match field {
            Field::Addr | Field::AddrPort => {
                if rec.ip.is_none() && !is_dash(raw) {
                    let text = self.text(raw, label)?;
                    b.addr(&text, *field == Field::AddrPort)
                        .map_err(|p| ParseError::field(label, raw, p))?;
                }
            }
            Field::User => self.put(|r| &mut r.user, raw, label, b)?,
            Field::Time(kind) => {
                if !b.have_ts {
                    rec.ts = match kind {
                        TimeKind::Clf => num::parse_clf(raw),
                        TimeKind::Iso => num::parse_iso(raw),
                        TimeKind::Epoch(scale) => num::parse_epoch(raw, *scale),
                    }
                    .map_err(bad)?;
                    b.have_ts = true;
                }
            }
            Field::Request => {
                if !b.have_path {
                    let text = self.text(raw, label)?;
                    b.request(text).map_err(bad)?;
                }
            }
            Field::Method => self.put(|r| &mut r.method, raw, label, b)?,
            Field::RequestUri | Field::Path => {
                if !b.have_path {
                    let text = self.text(raw, label)?;
                    b.target(text).map_err(bad)?;
                }
            }
            Field::Query => {
                if rec.query.is_none() && !is_dash(raw) {
                    let text = self.text(raw, label)?;
                    rec.query = query(text);
                }
            }
            Field::Protocol => self.put(|r| &mut r.protocol, raw, label, b)?,
            Field::Status => {
                if !b.have_status {
                    rec.status = num::parse_status(raw).map_err(bad)?;
                    b.have_status = true;
                }
            }
            Field::BytesSent => opt_num(&mut rec.bytes_sent, raw, 0).map_err(bad)?,
            Field::BytesSentClf => {
                if is_dash(raw) && rec.bytes_sent.is_none() {
                    rec.bytes_sent = Some(0);
                } else {
                    opt_num(&mut rec.bytes_sent, raw, 0).map_err(bad)?;
                }
            }
            Field::BytesReceived => opt_num(&mut rec.bytes_received, raw, 0).map_err(bad)?,
            Field::Latency(scale) => opt_num(&mut rec.latency_us, raw, *scale).map_err(bad)?,
            Field::Upstream(scale) => {
                if rec.upstream_latency_us.is_none() && !is_dash(raw) {
                    rec.upstream_latency_us = upstream_sum(raw, *scale).map_err(bad)?;
                }
            }
            Field::Host => self.put(|r| &mut r.host, raw, label, b)?,
            Field::ApiKey => self.put(|r| &mut r.api_key, raw, label, b)?,
            Field::Consumer => self.put(|r| &mut r.consumer, raw, label, b)?,
            Field::UserAgent => self.put(|r| &mut r.user_agent, raw, label, b)?,
            Field::Referer => self.put(|r| &mut r.referer, raw, label, b)?,
            Field::RequestId => self.put(|r| &mut r.request_id, raw, label, b)?,
            Field::ForwardedFor => {
                if b.xff.is_none() && !is_dash(raw) {
                    b.xff = Some(self.text(raw, label)?);
                }
            }
            Field::Extra(key) => {
                if !is_dash(raw) && !rec.extras.contains_key(&**key) {
                    let text = self.text(raw, label)?;
                    rec.extras
                        .insert(key.to_string(), Value::String(text.into_owned()));
                }
            }
        }
        Ok(())
    }

    #[inline]
    fn put<'a>(
        &self,
        slot: for<'r> fn(&'r mut AccessRecord<'a>) -> &'r mut Option<Cow<'a, str>>,
        raw: &'a [u8],
        label: &str,
        b: &mut Builder<'a>,
    ) -> Result<(), ParseError> {
        let s = slot(&mut b.rec);
        if s.is_none() && !is_dash(raw) {
            *s = Some(self.text(raw, label)?);
        }
        Ok(())
    }
}

fn lit_mismatch(lit: &[u8], prev: Option<&str>, rest: &[u8]) -> ParseError {
    let lit_s = format!("{:?}", String::from_utf8_lossy(lit));
    let place = match prev {
        Some(label) => format!("after {label}"),
        None => "at the start of the line".to_owned(),
    };
    if rest.len() < lit.len() && lit.starts_with(rest) {
        ParseError::Shape(format!("expected {lit_s} {place} but the line ended"))
    } else {
        ParseError::Shape(format!(
            "expected {lit_s} {place} but found {}",
            snippet(rest)
        ))
    }
}

fn odd_backslashes_before(hay: &[u8], i: usize) -> bool {
    hay[..i].iter().rev().take_while(|&&c| c == b'\\').count() % 2 == 1
}

/// `-` (or nothing) is how every text format writes an unset value.
#[inline]
pub(crate) fn is_dash(raw: &[u8]) -> bool {
    raw.is_empty() || raw == b"-"
}

#[inline]
pub(crate) fn utf8(raw: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(raw) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(String::from_utf8_lossy(raw).into_owned()),
    }
}

fn opt_num(slot: &mut Option<u64>, raw: &[u8], scale: u32) -> Result<(), num::Problem> {
    if slot.is_none() && !is_dash(raw) {
        *slot = Some(if scale == 0 {
            num::parse_u64(raw)?
        } else {
            num::parse_scaled(raw, scale)?
        });
    }
    Ok(())
}

/// nginx `$upstream_response_time`: `0.010, 0.020 : 0.005` is the sum of all attempts; `-` parts
/// (no response) count as nothing; only dashes gives `None`.
fn upstream_sum(raw: &[u8], scale: u32) -> Result<Option<u64>, num::Problem> {
    let mut total: Option<u64> = None;
    for part in raw.split(|&c| c == b',' || c == b':') {
        let part = part.trim_ascii();
        if is_dash(part) {
            continue;
        }
        let v = num::parse_scaled(part, scale)?;
        total = Some(total.unwrap_or(0).checked_add(v).ok_or(num::TOO_LARGE)?);
    }
    Ok(total)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn hex_at(raw: &[u8], i: usize, n: usize) -> Option<u32> {
    let digits = raw.get(i..i + n)?;
    digits
        .iter()
        .try_fold(0u32, |acc, &c| Some(acc * 16 + u32::from(hex(c)?)))
}

fn bad_escape(raw: &[u8], i: usize, len: usize, expected: &str) -> String {
    let end = (i + len).min(raw.len());
    let seq = String::from_utf8_lossy(&raw[i..end]);
    format!("bad escape {seq} ({expected})")
}

/// Undo a format's escaping. Unknown backslash sequences are kept verbatim for nginx and Apache
/// (older versions did not escape `\`), and rejected for JSON.
pub(crate) fn unescape(raw: &[u8], mode: Escape) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let next = raw.get(i + 1).copied();
        match (mode, next) {
            (Escape::Nginx | Escape::Apache, Some(b'x')) => match hex_at(raw, i + 2, 2) {
                Some(v) => {
                    out.push(v as u8);
                    i += 4;
                }
                None => return Err(bad_escape(raw, i, 4, "expected two hex digits")),
            },
            (Escape::Apache, Some(e @ (b'"' | b'\\' | b'n' | b'r' | b't' | b'b' | b'v'))) => {
                out.push(match e {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 0x08,
                    b'v' => 0x0b,
                    other => other,
                });
                i += 2;
            }
            (Escape::Json, Some(e @ (b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't'))) => {
                out.push(match e {
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    other => other,
                });
                i += 2;
            }
            (Escape::Json, Some(b'u')) => {
                let Some(unit) = hex_at(raw, i + 2, 4) else {
                    return Err(bad_escape(raw, i, 6, "expected four hex digits"));
                };
                i += 6;
                let ch = if (0xD800..0xDC00).contains(&unit) {
                    // a high surrogate: combine with a following \uDC00..\uDFFF
                    let low = (raw.get(i..i + 2) == Some(b"\\u"))
                        .then(|| hex_at(raw, i + 2, 4))
                        .flatten()
                        .filter(|l| (0xDC00..0xE000).contains(l));
                    match low {
                        Some(low) => {
                            i += 6;
                            char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
                        }
                        None => None,
                    }
                } else {
                    char::from_u32(unit)
                };
                let mut buf = [0u8; 4];
                out.extend_from_slice(
                    ch.unwrap_or(char::REPLACEMENT_CHARACTER)
                        .encode_utf8(&mut buf)
                        .as_bytes(),
                );
            }
            (Escape::Json, _) => return Err(bad_escape(raw, i, 2, "not a json escape")),
            _ => {
                out.push(b'\\');
                i += 1;
            }
        }
    }
    Ok(out)
}

fn sub<'a>(text: &Cow<'a, str>, start: usize, end: usize) -> Cow<'a, str> {
    match text {
        Cow::Borrowed(s) => Cow::Borrowed(&s[start..end]),
        Cow::Owned(s) => Cow::Owned(s[start..end].to_owned()),
    }
}

/// A query string without its leading `?`; empty means none.
pub(crate) fn query(text: Cow<'_, str>) -> Option<Cow<'_, str>> {
    let skip = usize::from(text.starts_with('?'));
    (text.len() > skip).then(|| sub(&text, skip, text.len()))
}

fn is_method(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
}

const REQUEST_SHAPE: &str = "expected \"METHOD /path PROTOCOL\"";

/// Builds a record from field values; shared by the text and JSON formats.
#[derive(Default)]
pub(crate) struct Builder<'a> {
    pub rec: AccessRecord<'a>,
    pub have_ts: bool,
    pub have_status: bool,
    pub have_path: bool,
    /// Raw `X-Forwarded-For`, kept as extra `x_forwarded_for`.
    pub xff: Option<Cow<'a, str>>,
}

impl<'a> Builder<'a> {
    /// A request line: `GET /path?q HTTP/1.1`, `GET /path` (HTTP/0.9) or a bare `/path`.
    pub(crate) fn request(&mut self, text: Cow<'a, str>) -> Result<(), &'static str> {
        let s: &str = &text;
        let Some(sp) = s.find(' ') else {
            if s.starts_with('/') {
                return self.target(text);
            }
            return Err(REQUEST_SHAPE);
        };
        let method = &s[..sp];
        if !is_method(method) {
            return Err(REQUEST_SHAPE);
        }
        let rest = &s[sp + 1..];
        let (target_end, proto) = match rest.rfind(' ') {
            Some(j) if rest[j + 1..].starts_with("HTTP/") => (sp + 1 + j, Some(sp + 2 + j)),
            _ => (s.len(), None),
        };
        let target = s[sp + 1..target_end].trim_matches(' ');
        if target.is_empty() {
            return Err(REQUEST_SHAPE);
        }
        if !(target.starts_with('/')
            || target == "*"
            || target.starts_with("http://")
            || target.starts_with("https://")
            || method == "CONNECT")
        {
            return Err("request target must start with '/'");
        }
        let t0 = target.as_ptr() as usize - s.as_ptr() as usize;
        let t1 = t0 + target.len();
        if self.rec.method.is_none() {
            self.rec.method = Some(sub(&text, 0, sp));
        }
        if let Some(p) = proto {
            if self.rec.protocol.is_none() {
                self.rec.protocol = Some(sub(&text, p, text.len()));
            }
        }
        self.target(sub(&text, t0, t1))
    }

    /// A request target: path with an optional `?query` (a `?` always starts the query, so a path
    /// never contains one); absolute-form `http://host/path` gives the host too.
    pub(crate) fn target(&mut self, text: Cow<'a, str>) -> Result<(), &'static str> {
        let s: &str = &text;
        if s.is_empty() || s == "-" {
            return Err("empty path");
        }
        let mut start = 0;
        if let Some(after) = s
            .strip_prefix("http://")
            .or_else(|| s.strip_prefix("https://"))
        {
            let a0 = s.len() - after.len();
            let a1 = after.find('/').map_or(s.len(), |i| a0 + i);
            if self.rec.host.is_none() && a1 > a0 {
                self.rec.host = Some(sub(&text, a0, a1));
            }
            start = a1;
        }
        let end = s[start..].find('?').map_or(s.len(), |i| start + i);
        self.rec.path = if end > start {
            sub(&text, start, end)
        } else {
            Cow::Borrowed("/")
        };
        if end < s.len() && self.rec.query.is_none() {
            self.rec.query = query(sub(&text, end + 1, s.len()));
        }
        self.have_path = true;
        Ok(())
    }

    /// A client address; `with_port` strips `:port` / `[v6]:port`.
    pub(crate) fn addr(&mut self, s: &str, with_port: bool) -> Result<(), &'static str> {
        let mut host = s;
        if with_port {
            if let Some(rest) = s.strip_prefix('[') {
                host = rest.split(']').next().unwrap_or(rest);
            } else if s.bytes().filter(|&c| c == b':').count() == 1 {
                host = s.split(':').next().unwrap_or(s);
            }
        } else if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            host = inner;
        }
        match host.parse::<IpAddr>() {
            Ok(ip) => self.rec.ip = Some(ip),
            Err(_) if s.starts_with("unix:") => {
                self.rec
                    .extras
                    .insert("remote_addr".into(), Value::String(s.to_owned()));
            }
            Err(_)
                if s.bytes()
                    .any(|c| (c.is_ascii_alphabetic() && !c.is_ascii_hexdigit()) || c == b'-') =>
            {
                self.rec
                    .extras
                    .insert("remote_host".into(), Value::String(s.to_owned()));
            }
            Err(_) => return Err("not an ip address"),
        }
        Ok(())
    }

    /// Keep `X-Forwarded-For` as extra and use its first entry as the client IP when the format
    /// had no client address.
    pub(crate) fn finish(mut self) -> AccessRecord<'a> {
        if let Some(xff) = self.xff.take() {
            if self.rec.ip.is_none() {
                let first = xff.split(',').next().unwrap_or("").trim();
                if let Ok(ip) = first.parse::<IpAddr>() {
                    self.rec.ip = Some(ip);
                }
            }
            self.rec
                .extras
                .insert("x_forwarded_for".into(), Value::String(xff.into_owned()));
        }
        self.rec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, mode: Escape, expect: Result<&str, &str>) {
        let got = unescape(raw.as_bytes(), mode);
        let got = got
            .as_ref()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .map_err(|e| e.as_str());
        assert_eq!(got.as_deref().map_err(|e| *e), expect, "{raw:?} {mode:?}");
    }

    #[test]
    fn unescaping() {
        check(r"a\x22b\x5Cc", Escape::Nginx, Ok("a\"b\\c"));
        check(r"caf\xC3\xA9", Escape::Nginx, Ok("café"));
        check(r"a\q", Escape::Nginx, Ok(r"a\q"));
        check(r"a\", Escape::Nginx, Ok(r"a\"));
        check(
            r"a\xZZ",
            Escape::Nginx,
            Err(r"bad escape \xZZ (expected two hex digits)"),
        );
        check(
            r"a\x4",
            Escape::Nginx,
            Err(r"bad escape \x4 (expected two hex digits)"),
        );
        check(
            r#"say \"hi\" \\ \t\x41"#,
            Escape::Apache,
            Ok("say \"hi\" \\ \tA"),
        );
        check(
            r#"\"\\\/\n\u00e9\ud83d\ude00"#,
            Escape::Json,
            Ok("\"\\/\né😀"),
        );
        check(r"\ud83d", Escape::Json, Ok("\u{fffd}"));
        check(
            r"\q",
            Escape::Json,
            Err(r"bad escape \q (not a json escape)"),
        );
        check(
            r"\u12",
            Escape::Json,
            Err(r"bad escape \u12 (expected four hex digits)"),
        );
    }

    #[test]
    fn upstream_lists() {
        assert_eq!(upstream_sum(b"0.010, 0.020", 6), Ok(Some(30_000)));
        assert_eq!(upstream_sum(b"0.010, - : 0.005", 6), Ok(Some(15_000)));
        assert_eq!(upstream_sum(b"-, -", 6), Ok(None));
        assert_eq!(upstream_sum(b"0.01x", 6), Err(num::NOT_A_NUMBER));
    }
}
