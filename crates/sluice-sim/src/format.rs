//! Writers for every log format Sluice ingests, each paired with the parser configuration that
//! reads it back (`SimFormat::parser_spec`, `SimFormat::ingest_flags`).

use std::fmt;
use std::io::Write as _;
use std::str::FromStr;

use sluice_core::time::MICROS_PER_SEC;
use sluice_core::AccessRecord;
use sluice_logs::{EnvoyJsonFields, FormatSpec, NginxEscape};

/// nginx `log_format` for [`SimFormat::NginxApiKey`]: `combined` plus the API key header, the
/// request time and the upstream time (`combined` carries no key).
///
/// ```nginx
/// log_format sluice '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
///                   '"$http_referer" "$http_user_agent" "$http_x_api_key" $request_time $upstream_response_time';
/// ```
pub const NGINX_APIKEY_LOG_FORMAT: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_api_key" $request_time $upstream_response_time"#;

/// Apache `LogFormat` for [`SimFormat::Apache`]: `combined` plus `%D` (microseconds) and the API
/// key header.
pub const APACHE_SIM_LOG_FORMAT: &str =
    r#"%h %l %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-agent}i\" %D \"%{X-API-Key}i\""#;

/// Envoy text format for [`SimFormat::Envoy`]: Envoy's default format (client IP in
/// `X-Forwarded-For`, as set by the load balancer in front) plus the API key header.
pub const ENVOY_SIM_FORMAT: &str = r#"[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" "%REQ(X-API-KEY)%""#;

/// Envoy `json_format` for [`SimFormat::EnvoyJson`]; its keys are `EnvoyJsonFields::default()`.
/// Numbers are written as numbers and unset values as `null` (newer Envoy).
pub const ENVOY_SIM_JSON_FORMAT: &str = r#"{"start_time":"%START_TIME%","method":"%REQ(:METHOD)%","path":"%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%","protocol":"%PROTOCOL%","response_code":"%RESPONSE_CODE%","response_flags":"%RESPONSE_FLAGS%","bytes_received":"%BYTES_RECEIVED%","bytes_sent":"%BYTES_SENT%","duration":"%DURATION%","upstream_service_time":"%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%","x_forwarded_for":"%REQ(X-FORWARDED-FOR)%","user_agent":"%REQ(USER-AGENT)%","request_id":"%REQ(X-REQUEST-ID)%","authority":"%REQ(:AUTHORITY)%","upstream_host":"%UPSTREAM_HOST%","downstream_remote_address":"%DOWNSTREAM_REMOTE_ADDRESS%","x_api_key":"%REQ(X-API-KEY)%"}"#;

const UPSTREAM_HOST: &str = "10.0.0.5:8080";

/// An output format of the simulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SimFormat {
    /// nginx `combined` (no API key, no latency): second precision.
    Nginx,
    /// nginx with [`NGINX_APIKEY_LOG_FORMAT`]: second precision, latency in milliseconds.
    NginxApiKey,
    /// Apache with [`APACHE_SIM_LOG_FORMAT`]: second precision, latency in microseconds.
    Apache,
    /// Envoy text with [`ENVOY_SIM_FORMAT`]: millisecond precision.
    Envoy,
    /// Envoy JSON with [`ENVOY_SIM_JSON_FORMAT`]: millisecond precision.
    EnvoyJson,
    /// Kong file-log JSON lines (API key in `request.headers["x-api-key"]`): millisecond precision.
    Kong,
    /// Sluice canonical NDJSON (`sluice_logs::to_ndjson`): every field, microsecond precision.
    Ndjson,
}

impl SimFormat {
    pub const ALL: [SimFormat; 7] = [
        SimFormat::Nginx,
        SimFormat::NginxApiKey,
        SimFormat::Apache,
        SimFormat::Envoy,
        SimFormat::EnvoyJson,
        SimFormat::Kong,
        SimFormat::Ndjson,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            SimFormat::Nginx => "nginx",
            SimFormat::NginxApiKey => "nginx-apikey",
            SimFormat::Apache => "apache",
            SimFormat::Envoy => "envoy",
            SimFormat::EnvoyJson => "envoy-json",
            SimFormat::Kong => "kong",
            SimFormat::Ndjson => "ndjson",
        }
    }

    /// File extension for a log written in this format.
    pub const fn extension(self) -> &'static str {
        match self {
            SimFormat::Nginx | SimFormat::NginxApiKey | SimFormat::Apache | SimFormat::Envoy => {
                "log"
            }
            SimFormat::EnvoyJson | SimFormat::Kong | SimFormat::Ndjson => "ndjson",
        }
    }

    /// Whether the format carries the API key (only nginx `combined` does not).
    pub const fn carries_api_key(self) -> bool {
        !matches!(self, SimFormat::Nginx)
    }

    /// Timestamp precision in microseconds.
    pub const fn ts_precision_us(self) -> i64 {
        match self {
            SimFormat::Nginx | SimFormat::NginxApiKey | SimFormat::Apache => MICROS_PER_SEC,
            SimFormat::Envoy | SimFormat::EnvoyJson | SimFormat::Kong => 1000,
            SimFormat::Ndjson => 1,
        }
    }

    /// The parser configuration that reads this format.
    pub fn parser_spec(self) -> FormatSpec {
        match self {
            SimFormat::Nginx => FormatSpec::Nginx {
                log_format: "combined".into(),
                escape: NginxEscape::Default,
            },
            SimFormat::NginxApiKey => FormatSpec::Nginx {
                log_format: NGINX_APIKEY_LOG_FORMAT.into(),
                escape: NginxEscape::Default,
            },
            SimFormat::Apache => FormatSpec::Apache {
                log_format: APACHE_SIM_LOG_FORMAT.into(),
            },
            SimFormat::Envoy => FormatSpec::EnvoyText {
                format: Some(ENVOY_SIM_FORMAT.into()),
            },
            SimFormat::EnvoyJson => FormatSpec::EnvoyJson {
                fields: EnvoyJsonFields::default(),
            },
            SimFormat::Kong => FormatSpec::Kong,
            SimFormat::Ndjson => FormatSpec::Ndjson,
        }
    }

    /// `sluice ingest` flags that read this format: `(--format, --log-format)`.
    pub const fn ingest_flags(self) -> (&'static str, Option<&'static str>) {
        match self {
            SimFormat::Nginx => ("nginx", None),
            SimFormat::NginxApiKey => ("nginx", Some(NGINX_APIKEY_LOG_FORMAT)),
            SimFormat::Apache => ("apache", Some(APACHE_SIM_LOG_FORMAT)),
            SimFormat::Envoy => ("envoy", Some(ENVOY_SIM_FORMAT)),
            SimFormat::EnvoyJson => ("envoy-json", None),
            SimFormat::Kong => ("kong", None),
            SimFormat::Ndjson => ("ndjson", None),
        }
    }
}

impl fmt::Display for SimFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown simulator format {0:?} (expected one of nginx, nginx-apikey, apache, envoy, envoy-json, kong, ndjson)")]
pub struct UnknownSimFormat(pub String);

impl FromStr for SimFormat {
    type Err = UnknownSimFormat;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase();
        SimFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == norm)
            .ok_or_else(|| UnknownSimFormat(s.to_owned()))
    }
}

/// Writes records as lines of one format; caches the formatted time of the current second.
#[derive(Debug)]
pub struct LineWriter {
    format: SimFormat,
    cached_sec: i64,
    /// `dd/Mon/yyyy:hh:mm:ss` and `yyyy-mm-ddThh:mm:ss` of `cached_sec`.
    clf: [u8; 20],
    iso: [u8; 19],
}

impl LineWriter {
    pub fn new(format: SimFormat) -> LineWriter {
        LineWriter {
            format,
            cached_sec: i64::MIN,
            clf: [0; 20],
            iso: [0; 19],
        }
    }

    pub fn format(&self) -> SimFormat {
        self.format
    }

    /// Append one line (with its `\n`).
    pub fn write(&mut self, rec: &AccessRecord<'_>, out: &mut Vec<u8>) {
        let us = rec.ts.micros();
        let sec = us.div_euclid(MICROS_PER_SEC);
        if sec != self.cached_sec {
            self.set_second(sec);
        }
        let ms = us.rem_euclid(MICROS_PER_SEC) / 1000;
        match self.format {
            SimFormat::Nginx | SimFormat::NginxApiKey => self.nginx(rec, out),
            SimFormat::Apache => self.apache(rec, out),
            SimFormat::Envoy => self.envoy(rec, ms, out),
            SimFormat::EnvoyJson => self.envoy_json(rec, ms, out),
            SimFormat::Kong => kong(rec, out),
            SimFormat::Ndjson => sluice_logs::to_ndjson(rec, out),
        }
        out.push(b'\n');
    }

    fn set_second(&mut self, sec: i64) {
        const MONTHS: [&[u8; 3]; 12] = [
            b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
            b"Dec",
        ];
        let (y, mo, d) = civil_from_days(sec.div_euclid(86_400));
        let s = sec.rem_euclid(86_400);
        let (h, mi, s) = (s / 3600, s / 60 % 60, s % 60);
        let mut clf = Vec::with_capacity(20);
        let _ = write!(
            clf,
            "{d:02}/{}/{y:04}:{h:02}:{mi:02}:{s:02}",
            std::str::from_utf8(MONTHS[(mo - 1) as usize]).unwrap_or("Jan")
        );
        let mut iso = Vec::with_capacity(19);
        let _ = write!(iso, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
        if clf.len() == 20 && iso.len() == 19 {
            self.clf.copy_from_slice(&clf);
            self.iso.copy_from_slice(&iso);
            self.cached_sec = sec;
        }
    }

    fn nginx(&self, rec: &AccessRecord<'_>, out: &mut Vec<u8>) {
        write_ip(rec, out);
        out.extend_from_slice(b" - ");
        opt(rec.user.as_deref(), out, nginx_escaped);
        out.extend_from_slice(b" [");
        out.extend_from_slice(&self.clf);
        out.extend_from_slice(b" +0000] \"");
        request_line(rec, out, nginx_escaped);
        let _ = write!(out, "\" {} {} \"", rec.status, rec.bytes_sent.unwrap_or(0));
        opt(rec.referer.as_deref(), out, nginx_escaped);
        out.extend_from_slice(b"\" \"");
        opt(rec.user_agent.as_deref(), out, nginx_escaped);
        out.push(b'"');
        if self.format == SimFormat::NginxApiKey {
            out.extend_from_slice(b" \"");
            opt(rec.api_key.as_deref(), out, nginx_escaped);
            out.extend_from_slice(b"\" ");
            seconds(rec.latency_us, out);
            out.push(b' ');
            seconds(rec.upstream_latency_us, out);
        }
    }

    fn apache(&self, rec: &AccessRecord<'_>, out: &mut Vec<u8>) {
        write_ip(rec, out);
        out.extend_from_slice(b" - ");
        opt(rec.user.as_deref(), out, apache_escaped);
        out.extend_from_slice(b" [");
        out.extend_from_slice(&self.clf);
        out.extend_from_slice(b" +0000] \"");
        request_line(rec, out, apache_escaped);
        let _ = write!(out, "\" {} ", rec.status);
        match rec.bytes_sent {
            Some(b) if b > 0 => {
                let _ = write!(out, "{b}");
            }
            _ => out.push(b'-'),
        }
        out.extend_from_slice(b" \"");
        opt(rec.referer.as_deref(), out, apache_escaped);
        out.extend_from_slice(b"\" \"");
        opt(rec.user_agent.as_deref(), out, apache_escaped);
        out.extend_from_slice(b"\" ");
        match rec.latency_us {
            Some(us) => {
                let _ = write!(out, "{us}");
            }
            None => out.push(b'-'),
        }
        out.extend_from_slice(b" \"");
        opt(rec.api_key.as_deref(), out, apache_escaped);
        out.push(b'"');
    }

    fn envoy(&self, rec: &AccessRecord<'_>, ms: i64, out: &mut Vec<u8>) {
        out.push(b'[');
        out.extend_from_slice(&self.iso);
        let _ = write!(out, ".{ms:03}Z] \"");
        request_line(rec, out, raw);
        let _ = write!(
            out,
            "\" {} - {} {} ",
            rec.status,
            rec.bytes_received.unwrap_or(0),
            rec.bytes_sent.unwrap_or(0)
        );
        millis(rec.latency_us, out);
        out.push(b' ');
        millis(rec.upstream_latency_us, out);
        out.extend_from_slice(b" \"");
        write_ip(rec, out);
        out.extend_from_slice(b"\" \"");
        opt(rec.user_agent.as_deref(), out, raw);
        out.extend_from_slice(b"\" \"");
        opt(rec.request_id.as_deref(), out, raw);
        out.extend_from_slice(b"\" \"");
        opt(rec.host.as_deref(), out, raw);
        out.extend_from_slice(b"\" \"");
        out.extend_from_slice(if rec.upstream_latency_us.is_some() {
            UPSTREAM_HOST.as_bytes()
        } else {
            b"-"
        });
        out.extend_from_slice(b"\" \"");
        opt(rec.api_key.as_deref(), out, raw);
        out.push(b'"');
    }

    fn envoy_json(&self, rec: &AccessRecord<'_>, ms: i64, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"start_time\":\"");
        out.extend_from_slice(&self.iso);
        let _ = write!(out, ".{ms:03}Z\",\"method\":");
        json_opt(rec.method.as_deref(), out);
        out.extend_from_slice(b",\"path\":");
        json_target(rec, out);
        out.extend_from_slice(b",\"protocol\":");
        json_opt(rec.protocol.as_deref(), out);
        let _ = write!(out, ",\"response_code\":{},\"response_flags\":\"-\",\"bytes_received\":{},\"bytes_sent\":{},\"duration\":",
            rec.status, rec.bytes_received.unwrap_or(0), rec.bytes_sent.unwrap_or(0));
        json_millis(rec.latency_us, out);
        out.extend_from_slice(b",\"upstream_service_time\":");
        json_millis(rec.upstream_latency_us, out);
        out.extend_from_slice(b",\"x_forwarded_for\":null,\"user_agent\":");
        json_opt(rec.user_agent.as_deref(), out);
        out.extend_from_slice(b",\"request_id\":");
        json_opt(rec.request_id.as_deref(), out);
        out.extend_from_slice(b",\"authority\":");
        json_opt(rec.host.as_deref(), out);
        out.extend_from_slice(b",\"upstream_host\":");
        json_opt(rec.upstream_latency_us.map(|_| UPSTREAM_HOST), out);
        out.extend_from_slice(b",\"downstream_remote_address\":");
        match rec.ip {
            Some(std::net::IpAddr::V4(ip)) => {
                let _ = write!(out, "\"{ip}:{}\"", port(rec));
            }
            Some(std::net::IpAddr::V6(ip)) => {
                let _ = write!(out, "\"[{ip}]:{}\"", port(rec));
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"x_api_key\":");
        json_opt(rec.api_key.as_deref(), out);
        out.push(b'}');
    }
}

/// Kong file-log shape: `request`, `response`, `latencies`, `client_ip`, `started_at` (ms).
fn kong(rec: &AccessRecord<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"request\":{\"method\":");
    json_opt(rec.method.as_deref(), out);
    out.extend_from_slice(b",\"uri\":");
    json_target(rec, out);
    out.extend_from_slice(b",\"url\":");
    let host = rec.host.as_deref().unwrap_or("localhost");
    let query = rec
        .query
        .as_deref()
        .map_or(String::new(), |q| format!("?{q}"));
    json_str(&format!("https://{host}{}{query}", rec.path), out);
    let _ = write!(
        out,
        ",\"size\":{},\"querystring\":{{",
        rec.bytes_received.unwrap_or(0)
    );
    for (i, pair) in rec
        .query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .enumerate()
    {
        if i > 0 {
            out.push(b',');
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        json_str(k, out);
        out.push(b':');
        json_str(v, out);
    }
    out.extend_from_slice(b"},\"headers\":{");
    let mut first = true;
    for (name, value) in [
        ("host", rec.host.as_deref()),
        ("user-agent", rec.user_agent.as_deref()),
        ("referer", rec.referer.as_deref()),
        ("x-api-key", rec.api_key.as_deref()),
        ("x-request-id", rec.request_id.as_deref()),
    ] {
        if let Some(v) = value {
            if !first {
                out.push(b',');
            }
            first = false;
            json_str(name, out);
            out.push(b':');
            json_str(v, out);
        }
    }
    out.extend_from_slice(b"}},\"upstream_uri\":");
    json_target(rec, out);
    let _ = write!(
        out,
        ",\"response\":{{\"status\":{},\"size\":{},\"headers\":{{}}}},\"latencies\":{{\"proxy\":{},\"kong\":{},\"request\":{}}},\"client_ip\":",
        rec.status,
        rec.bytes_sent.unwrap_or(0),
        rec.upstream_latency_us.map_or(-1, |us| (us / 1000) as i64),
        match (rec.latency_us, rec.upstream_latency_us) {
            (Some(t), Some(u)) => (t - u) / 1000,
            _ => 0,
        },
        rec.latency_us.map_or(0, |us| us / 1000),
    );
    match rec.ip {
        Some(ip) => {
            let _ = write!(out, "\"{ip}\"");
        }
        None => out.extend_from_slice(b"null"),
    }
    let _ = write!(
        out,
        ",\"started_at\":{}}}",
        rec.ts.micros().div_euclid(1000)
    );
}

/// A client source port derived from the request, so lines stay reproducible.
fn port(rec: &AccessRecord<'_>) -> u64 {
    32_768 + (rec.ts.micros().unsigned_abs() / 7) % 28_000
}

fn write_ip(rec: &AccessRecord<'_>, out: &mut Vec<u8>) {
    match rec.ip {
        Some(ip) => {
            let _ = write!(out, "{ip}");
        }
        None => out.push(b'-'),
    }
}

/// `METHOD /path?query PROTOCOL`.
fn request_line(rec: &AccessRecord<'_>, out: &mut Vec<u8>, esc: fn(&str, &mut Vec<u8>)) {
    esc(rec.method.as_deref().unwrap_or("GET"), out);
    out.push(b' ');
    esc(&rec.path, out);
    if let Some(q) = rec.query.as_deref() {
        out.push(b'?');
        esc(q, out);
    }
    out.push(b' ');
    esc(rec.protocol.as_deref().unwrap_or("HTTP/1.1"), out);
}

fn opt(v: Option<&str>, out: &mut Vec<u8>, esc: fn(&str, &mut Vec<u8>)) {
    match v {
        Some(v) if !v.is_empty() => esc(v, out),
        _ => out.push(b'-'),
    }
}

fn raw(v: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(v.as_bytes());
}

/// nginx `escape=default`: `"`, `\`, control bytes and bytes above 0x7e as `\xHH`.
fn nginx_escaped(v: &str, out: &mut Vec<u8>) {
    for &b in v.as_bytes() {
        if b == b'"' || b == b'\\' || !(0x20..=0x7e).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b);
        }
    }
}

/// Apache: `\"`, `\\`, and other non-printable bytes as `\xhh`.
fn apache_escaped(v: &str, out: &mut Vec<u8>) {
    for &b in v.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x20..=0x7e => out.push(b),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
}

/// Seconds with milliseconds (`0.123`), as nginx writes `$request_time`.
fn seconds(us: Option<u64>, out: &mut Vec<u8>) {
    match us {
        Some(us) => {
            let ms = us / 1000;
            let _ = write!(out, "{}.{:03}", ms / 1000, ms % 1000);
        }
        None => out.push(b'-'),
    }
}

fn millis(us: Option<u64>, out: &mut Vec<u8>) {
    match us {
        Some(us) => {
            let _ = write!(out, "{}", us / 1000);
        }
        None => out.push(b'-'),
    }
}

fn json_millis(us: Option<u64>, out: &mut Vec<u8>) {
    match us {
        Some(us) => {
            let _ = write!(out, "{}", us / 1000);
        }
        None => out.extend_from_slice(b"null"),
    }
}

fn json_target(rec: &AccessRecord<'_>, out: &mut Vec<u8>) {
    match rec.query.as_deref() {
        Some(q) => json_str(&format!("{}?{q}", rec.path), out),
        None => json_str(&rec.path, out),
    }
}

fn json_opt(v: Option<&str>, out: &mut Vec<u8>) {
    match v {
        Some(v) => json_str(v, out),
        None => out.extend_from_slice(b"null"),
    }
}

fn json_str(v: &str, out: &mut Vec<u8>) {
    if v.bytes().all(|c| c >= 0x20 && c != b'"' && c != b'\\') {
        out.push(b'"');
        out.extend_from_slice(v.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, v);
    }
}

/// Civil date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::time::days_from_civil;

    #[test]
    fn civil_round_trips() {
        for days in [-719_468, -1, 0, 59, 365, 11_016, 20_514, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y as i32, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(20_514), (2026, 3, 2));
    }

    #[test]
    fn names_round_trip() {
        for f in SimFormat::ALL {
            assert_eq!(f.to_string().parse::<SimFormat>().unwrap(), f);
        }
        assert_eq!(
            "json".parse::<SimFormat>().unwrap_err().to_string(),
            "unknown simulator format \"json\" (expected one of nginx, nginx-apikey, apache, envoy, envoy-json, kong, ndjson)"
        );
    }

    #[test]
    fn sim_formats_extend_the_stock_ones() {
        assert_eq!(
            ENVOY_SIM_FORMAT,
            format!("{} \"%REQ(X-API-KEY)%\"", sluice_logs::ENVOY_DEFAULT_FORMAT)
        );
        assert!(NGINX_APIKEY_LOG_FORMAT.starts_with(sluice_logs::NGINX_COMBINED));
        assert!(APACHE_SIM_LOG_FORMAT.starts_with(sluice_logs::APACHE_COMBINED));
        let keys: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(ENVOY_SIM_JSON_FORMAT).unwrap();
        let f = EnvoyJsonFields::default();
        for k in [
            &f.start_time,
            &f.method,
            &f.path,
            &f.protocol,
            &f.response_code,
            &f.bytes_received,
            &f.bytes_sent,
            &f.duration,
            &f.upstream_service_time,
            &f.x_forwarded_for,
            &f.user_agent,
            &f.request_id,
            &f.authority,
            &f.downstream_remote_address,
            &f.api_key,
        ] {
            assert!(keys.contains_key(k.as_str()), "{k}");
        }
    }

    #[test]
    fn escaping() {
        let mut out = Vec::new();
        nginx_escaped("a\"b\\c\u{e9}", &mut out);
        assert_eq!(out, b"a\\x22b\\x5Cc\\xC3\\xA9");
        out.clear();
        apache_escaped("a\"b\\c\n", &mut out);
        assert_eq!(out, b"a\\\"b\\\\c\\x0a");
    }
}
