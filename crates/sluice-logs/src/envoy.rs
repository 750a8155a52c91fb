//! Envoy access logs: text format strings with `%COMMAND(arg):len%` operators, and JSON logs
//! (`json_format`) with configurable field names.

use sluice_core::AccessRecord;

use crate::apache::request_header;
use crate::error::{FormatError, ParseError};
use crate::json::{self, Obj};
use crate::num;
use crate::text::{Builder, Escape, Field, Piece, Program, Required, TimeKind};

/// Envoy's default text format (all versions since 1.0 document this one).
pub const ENVOY_DEFAULT_FORMAT: &str = r#"[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%""#;

/// Istio's sidecar text format: Envoy's default with response code details, connection
/// termination details and addresses inserted.
pub const ENVOY_ISTIO_FORMAT: &str = r#"[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%"#;

const REQUIRED: Required = Required {
    time: "%START_TIME%",
    status: "%RESPONSE_CODE%",
    path: "%REQ(:PATH)%, %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
};

/// Compile an Envoy text format string (`None` = the default format). Values are not escaped.
pub(crate) fn compile(format: Option<&str>) -> Result<Program, FormatError> {
    let format = match format.map(str::trim) {
        None | Some("") | Some("default") => ENVOY_DEFAULT_FORMAT,
        Some("istio") => ENVOY_ISTIO_FORMAT,
        Some(_) => format
            .unwrap_or_default()
            .trim_matches(|c| c == '\n' || c == '\r'),
    };
    let b = format.as_bytes();
    let mut out = Vec::new();
    let mut lit = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            lit.push(b[i]);
            i += 1;
            continue;
        }
        let start = i;
        let name_len = b[i + 1..]
            .iter()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || **c == b'_')
            .count();
        if name_len == 0 {
            return Err(FormatError::UnterminatedOperator(start));
        }
        let name = &format[i + 1..i + 1 + name_len];
        i += 1 + name_len;
        let mut arg = None;
        if b.get(i) == Some(&b'(') {
            let close = b[i..]
                .iter()
                .position(|&c| c == b')')
                .ok_or(FormatError::UnterminatedOperator(start))?;
            arg = Some(&format[i + 1..i + close]);
            i += close + 1;
        }
        if b.get(i) == Some(&b':') {
            i += 1 + b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        }
        if b.get(i) != Some(&b'%') {
            return Err(FormatError::UnterminatedOperator(start));
        }
        i += 1;
        if !lit.is_empty() {
            out.push(Piece::Lit(std::mem::take(&mut lit)));
        }
        out.push(Piece::Field(
            operator(name, arg),
            format[start..i].to_owned(),
        ));
    }
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    Program::build(out, Escape::None, &REQUIRED)
}

/// The meaning of one command operator; unknown ones become extras named in lowercase.
fn operator(name: &str, arg: Option<&str>) -> Field {
    match (name, arg) {
        ("START_TIME", Some("%s")) => Field::Time(TimeKind::Epoch(6)),
        ("START_TIME", _) => Field::Time(TimeKind::Iso),
        ("PROTOCOL", _) => Field::Protocol,
        ("RESPONSE_CODE", _) => Field::Status,
        ("BYTES_RECEIVED", _) => Field::BytesReceived,
        ("BYTES_SENT", _) => Field::BytesSent,
        ("DURATION", _) => Field::Latency(3),
        (
            "DOWNSTREAM_REMOTE_ADDRESS"
            | "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT"
            | "DOWNSTREAM_DIRECT_REMOTE_ADDRESS"
            | "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT",
            _,
        ) => Field::AddrPort,
        ("REQ", Some(h)) => {
            let primary = h.split('?').next().unwrap_or(h).trim();
            match primary.to_ascii_lowercase().as_str() {
                ":method" => Field::Method,
                ":path" | "x-envoy-original-path" => Field::RequestUri,
                ":authority" => Field::Host,
                _ => request_header(primary),
            }
        }
        ("RESP", Some(h)) if h.eq_ignore_ascii_case("x-envoy-upstream-service-time") => {
            Field::Upstream(3)
        }
        ("RESP", Some(h)) => {
            Field::Extra(format!("sent_http_{}", h.to_ascii_lowercase().replace('-', "_")).into())
        }
        (other, _) => Field::Extra(other.to_ascii_lowercase().into()),
    }
}

/// Field names of an Envoy JSON access log (`json_format`). Defaults follow the common examples
/// (`start_time: "%START_TIME%"`, `method: "%REQ(:METHOD)%"`, ...). Keys not named here are kept
/// as extras.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvoyJsonFields {
    pub start_time: String,
    pub method: String,
    /// Path with optional `?query`.
    pub path: String,
    pub protocol: String,
    pub response_code: String,
    pub bytes_received: String,
    pub bytes_sent: String,
    /// Milliseconds.
    pub duration: String,
    /// Milliseconds.
    pub upstream_service_time: String,
    pub x_forwarded_for: String,
    pub user_agent: String,
    pub request_id: String,
    pub authority: String,
    /// `ip:port`; the client IP when present, else the first X-Forwarded-For entry.
    pub downstream_remote_address: String,
    pub api_key: String,
    pub referer: String,
}

impl Default for EnvoyJsonFields {
    fn default() -> Self {
        let s = |v: &str| v.to_owned();
        EnvoyJsonFields {
            start_time: s("start_time"),
            method: s("method"),
            path: s("path"),
            protocol: s("protocol"),
            response_code: s("response_code"),
            bytes_received: s("bytes_received"),
            bytes_sent: s("bytes_sent"),
            duration: s("duration"),
            upstream_service_time: s("upstream_service_time"),
            x_forwarded_for: s("x_forwarded_for"),
            user_agent: s("user_agent"),
            request_id: s("request_id"),
            authority: s("authority"),
            downstream_remote_address: s("downstream_remote_address"),
            api_key: s("x_api_key"),
            referer: s("referer"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    StartTime,
    Method,
    Path,
    Protocol,
    Status,
    BytesReceived,
    BytesSent,
    Duration,
    Upstream,
    Xff,
    UserAgent,
    RequestId,
    Authority,
    RemoteAddr,
    ApiKey,
    Referer,
}

/// A compiled Envoy JSON field mapping.
#[derive(Debug)]
pub(crate) struct EnvoyJson {
    keys: Vec<(Box<str>, Target)>,
    start_time: Box<str>,
    status: Box<str>,
    path: Box<str>,
}

impl EnvoyJson {
    pub(crate) fn new(f: &EnvoyJsonFields) -> Result<EnvoyJson, FormatError> {
        let all = [
            ("start_time", &f.start_time, Target::StartTime),
            ("method", &f.method, Target::Method),
            ("path", &f.path, Target::Path),
            ("protocol", &f.protocol, Target::Protocol),
            ("response_code", &f.response_code, Target::Status),
            ("bytes_received", &f.bytes_received, Target::BytesReceived),
            ("bytes_sent", &f.bytes_sent, Target::BytesSent),
            ("duration", &f.duration, Target::Duration),
            (
                "upstream_service_time",
                &f.upstream_service_time,
                Target::Upstream,
            ),
            ("x_forwarded_for", &f.x_forwarded_for, Target::Xff),
            ("user_agent", &f.user_agent, Target::UserAgent),
            ("request_id", &f.request_id, Target::RequestId),
            ("authority", &f.authority, Target::Authority),
            (
                "downstream_remote_address",
                &f.downstream_remote_address,
                Target::RemoteAddr,
            ),
            ("api_key", &f.api_key, Target::ApiKey),
            ("referer", &f.referer, Target::Referer),
        ];
        let mut keys = Vec::with_capacity(all.len());
        for (what, name, target) in all {
            if name.is_empty() {
                return Err(FormatError::EmptyJsonField(what));
            }
            keys.push((name.as_str().into(), target));
        }
        Ok(EnvoyJson {
            keys,
            start_time: f.start_time.as_str().into(),
            status: f.response_code.as_str().into(),
            path: f.path.as_str().into(),
        })
    }

    pub(crate) fn parse<'a>(&self, line: &'a [u8]) -> Result<AccessRecord<'a>, ParseError> {
        let obj = Obj::parse(line)?;
        let mut b = Builder::default();
        for (key, raw) in &obj.0 {
            let Some(target) = self
                .keys
                .iter()
                .find(|(k, _)| **k == **key)
                .map(|(_, t)| *t)
            else {
                json::extra(&mut b.rec.extras, key, raw, true);
                continue;
            };
            let raw = *raw;
            let rec = &mut b.rec;
            match target {
                Target::StartTime => {
                    if let Some(t) = json::text(key, raw)? {
                        rec.ts = num::parse_iso(t.as_bytes())
                            .map_err(|p| ParseError::json_field(key, raw.get(), p))?;
                        b.have_ts = true;
                    }
                }
                Target::Method => rec.method = json::text(key, raw)?,
                Target::Path => {
                    if let Some(p) = json::text(key, raw)? {
                        b.target(p)
                            .map_err(|p| ParseError::json_field(key, raw.get(), p))?;
                    }
                }
                Target::Protocol => rec.protocol = json::text(key, raw)?,
                Target::Status => {
                    if let Some(s) = json::status(key, raw)? {
                        rec.status = s;
                        b.have_status = true;
                    }
                }
                Target::BytesReceived => rec.bytes_received = json::int(key, raw)?,
                Target::BytesSent => rec.bytes_sent = json::int(key, raw)?,
                Target::Duration => rec.latency_us = json::scaled(key, raw, 3)?,
                Target::Upstream => rec.upstream_latency_us = json::scaled(key, raw, 3)?,
                Target::Xff => b.xff = json::text(key, raw)?,
                Target::UserAgent => rec.user_agent = json::text(key, raw)?,
                Target::RequestId => rec.request_id = json::text(key, raw)?,
                Target::Authority => rec.host = json::text(key, raw)?,
                Target::ApiKey => rec.api_key = json::text(key, raw)?,
                Target::Referer => rec.referer = json::text(key, raw)?,
                Target::RemoteAddr => {
                    if let Some(a) = json::text(key, raw)? {
                        b.addr(&a, true)
                            .map_err(|p| ParseError::json_field(key, raw.get(), p))?;
                    }
                }
            }
        }
        require(&b, &self.start_time, &self.status, &self.path)?;
        Ok(b.finish())
    }
}

/// The JSON formats' required fields: a timestamp, a status and a path.
pub(crate) fn require(
    b: &Builder<'_>,
    ts: &str,
    status: &str,
    path: &str,
) -> Result<(), ParseError> {
    let missing = if !b.have_ts {
        ts
    } else if !b.have_status {
        status
    } else if !b.have_path {
        path
    } else {
        return Ok(());
    };
    Err(ParseError::Missing(format!("{missing:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(format: &str, expect: Result<(), &str>) {
        let got = compile(Some(format)).map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(
            got.as_ref().map(|_| ()).map_err(String::as_str),
            expect,
            "{format}"
        );
    }

    #[test]
    fn compile_errors() {
        check("default", Ok(()));
        check("istio", Ok(()));
        check(
            "%START_TIME(%s)% %RESPONSE_CODE% %REQ(:PATH):10% %DOWNSTREAM_REMOTE_ADDRESS%",
            Ok(()),
        );
        check(
            "%START_TIME% %RESPONSE_CODE% %REQ(:PATH",
            Err("unterminated command operator at byte 29 of the log format"),
        );
        check(
            "%START_TIME% %RESPONSE_CODE% %REQ(:PATH) x",
            Err("unterminated command operator at byte 29 of the log format"),
        );
        check(
            "%START_TIME% 100% %RESPONSE_CODE%",
            Err("unterminated command operator at byte 16 of the log format"),
        );
        check(
            "%START_TIME% %REQ(:PATH)%",
            Err("log format has no status field (expected one of %RESPONSE_CODE%)"),
        );
        let fields = EnvoyJsonFields {
            path: String::new(),
            ..Default::default()
        };
        assert_eq!(
            EnvoyJson::new(&fields).unwrap_err().to_string(),
            "json field name for path is empty"
        );
    }
}
