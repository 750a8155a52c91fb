//! Access-log parsers: every supported format into the canonical [`AccessRecord`]. Pure, fast and
//! fuzzable: no IO, no panics on input, borrowing from the line wherever no unescaping is needed.
//!
//! ```
//! use sluice_logs::{FormatSpec, NginxEscape, Parser};
//!
//! let parser = Parser::new(&FormatSpec::Nginx {
//!     log_format: "combined".into(),
//!     escape: NginxEscape::Default,
//! })
//! .unwrap();
//! let line = br#"10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /a?b=1 HTTP/1.1" 200 2326 "-" "curl/8""#;
//! let rec = parser.parse_line(line).unwrap();
//! assert_eq!((rec.path.as_ref(), rec.query.as_deref(), rec.status), ("/a", Some("b=1"), 200));
//! let err = parser.parse_line(b"10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.1\" 2x0 1 \"-\" \"-\"");
//! assert_eq!(err.unwrap_err().reason(), r#"invalid $status "2x0": not a number"#);
//! ```
//!
//! The API:
//! - [`FormatSpec`] describes a format; [`FormatName`] parses a `--format` name into one.
//! - [`Parser::new`] compiles it ([`FormatError`] with an exact message when it cannot);
//!   [`Parser::parse_line`] turns one line (or one JSON value) into a record or a [`ParseError`]
//!   whose [`ParseError::reason`] is stored per rejected line.
//! - [`split_json_array`] splits Kong's batched bodies (or any JSON array) into elements.
//! - [`detect`] picks a format from sample lines for `--format auto`.
//! - [`to_ndjson`] writes a record in the canonical NDJSON schema that [`FormatSpec::Ndjson`] reads.
//!
//! Parsers fill every field the format carries except `route`, `client` and `source` (set by the
//! ingest pipeline; the canonical NDJSON format does read `source`). docs/log-formats.md documents
//! each format's field mapping, escaping and the detection rules.

mod apache;
mod detect;
mod envoy;
mod error;
mod json;
mod kong;
mod ndjson;
mod nginx;
mod num;
mod text;

use std::fmt;
use std::str::FromStr;

pub use sluice_core::AccessRecord;

pub use apache::{APACHE_COMBINED, APACHE_COMMON, APACHE_VHOST_COMBINED};
pub use detect::{detect, Detected, DETECT_SAMPLE_LINES};
pub use envoy::{EnvoyJsonFields, ENVOY_DEFAULT_FORMAT, ENVOY_ISTIO_FORMAT};
pub use error::{DetectError, FormatError, ParseError, UnknownFormat};
pub use json::split_json_array;
pub use ndjson::to_ndjson;
pub use nginx::{NginxEscape, NGINX_COMBINED, NGINX_MAIN};

/// A log format and its configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // configuration, built once per input
pub enum FormatSpec {
    /// nginx `log_format`: any format string of literal text and `$variables`. `combined` (or an
    /// empty string) and `main` name the predefined formats. A leading `escape=json ` /
    /// `escape=none ` / `escape=default ` token in the string overrides `escape`.
    Nginx {
        log_format: String,
        escape: NginxEscape,
    },
    /// Apache `LogFormat`: `common`, `combined` (or empty), `vhost_combined`, or any format string.
    Apache { log_format: String },
    /// Envoy text access log; `None` is Envoy's default format, `Some("istio")` Istio's.
    EnvoyText { format: Option<String> },
    /// Envoy JSON access log (`json_format`), one object per line.
    EnvoyJson { fields: EnvoyJsonFields },
    /// Kong http-log / file-log JSON, one object per line (split batches with [`split_json_array`]).
    Kong,
    /// Sluice's canonical NDJSON (see [`to_ndjson`]).
    Ndjson,
}

/// A `--format` name: `nginx`, `apache`, `envoy` (text), `envoy-json`, `kong`, `ndjson` or `auto`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatName {
    Nginx,
    Apache,
    Envoy,
    EnvoyJson,
    Kong,
    Ndjson,
    /// Detect from the input with [`detect`] (the caller samples the lines).
    Auto,
}

impl FormatName {
    pub const fn as_str(self) -> &'static str {
        match self {
            FormatName::Nginx => "nginx",
            FormatName::Apache => "apache",
            FormatName::Envoy => "envoy",
            FormatName::EnvoyJson => "envoy-json",
            FormatName::Kong => "kong",
            FormatName::Ndjson => "ndjson",
            FormatName::Auto => "auto",
        }
    }

    /// The format with its default configuration (`combined` for nginx and Apache, Envoy's default
    /// text format, the default Envoy JSON field names); `None` for `auto`.
    pub fn default_spec(self) -> Option<FormatSpec> {
        Some(match self {
            FormatName::Nginx => FormatSpec::Nginx {
                log_format: "combined".into(),
                escape: NginxEscape::Default,
            },
            FormatName::Apache => FormatSpec::Apache {
                log_format: "combined".into(),
            },
            FormatName::Envoy => FormatSpec::EnvoyText { format: None },
            FormatName::EnvoyJson => FormatSpec::EnvoyJson {
                fields: EnvoyJsonFields::default(),
            },
            FormatName::Kong => FormatSpec::Kong,
            FormatName::Ndjson => FormatSpec::Ndjson,
            FormatName::Auto => return None,
        })
    }
}

impl FromStr for FormatName {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "nginx" => FormatName::Nginx,
            "apache" => FormatName::Apache,
            "envoy" => FormatName::Envoy,
            "envoy-json" => FormatName::EnvoyJson,
            "kong" => FormatName::Kong,
            "ndjson" => FormatName::Ndjson,
            "auto" => FormatName::Auto,
            _ => return Err(UnknownFormat(s.to_owned())),
        })
    }
}

impl fmt::Display for FormatName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A compiled format: `Send + Sync`, immutable, cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Parser {
    inner: Inner,
    name: &'static str,
}

#[derive(Debug)]
enum Inner {
    Text(text::Program),
    EnvoyJson(envoy::EnvoyJson),
    Kong,
    Ndjson,
}

impl Parser {
    /// Compile a format. Unknown nginx variables (and unknown Envoy operators, Apache headers) are
    /// fine: their values are kept as extras. Syntax errors, formats without a timestamp, status
    /// or path field, and fields that cannot be told apart are errors.
    pub fn new(spec: &FormatSpec) -> Result<Parser, FormatError> {
        let (inner, name) = match spec {
            FormatSpec::Nginx { log_format, escape } => {
                (Inner::Text(nginx::compile(log_format, *escape)?), "nginx")
            }
            FormatSpec::Apache { log_format } => {
                (Inner::Text(apache::compile(log_format)?), "apache")
            }
            FormatSpec::EnvoyText { format } => {
                (Inner::Text(envoy::compile(format.as_deref())?), "envoy")
            }
            FormatSpec::EnvoyJson { fields } => (
                Inner::EnvoyJson(envoy::EnvoyJson::new(fields)?),
                "envoy-json",
            ),
            FormatSpec::Kong => (Inner::Kong, "kong"),
            FormatSpec::Ndjson => (Inner::Ndjson, "ndjson"),
        };
        Ok(Parser { inner, name })
    }

    /// Parse one line (a trailing `\n` / `\r\n` is ignored) or one JSON value.
    pub fn parse_line<'a>(&self, line: &'a [u8]) -> Result<AccessRecord<'a>, ParseError> {
        let mut line = line;
        while let [rest @ .., b'\n' | b'\r'] = line {
            line = rest;
        }
        match &self.inner {
            Inner::Text(p) => p.run(line),
            Inner::EnvoyJson(p) => p.parse(line),
            Inner::Kong => kong::parse(line),
            Inner::Ndjson => ndjson::parse(line),
        }
    }

    /// The format name as accepted by [`FormatName`]: `nginx`, `apache`, `envoy`, ...
    pub fn name(&self) -> &'static str {
        self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_is_send_sync() {
        fn assert<T: Send + Sync>() {}
        assert::<Parser>();
    }

    #[test]
    fn format_names() {
        for name in [
            "nginx",
            "apache",
            "envoy",
            "envoy-json",
            "kong",
            "ndjson",
            "auto",
        ] {
            let f: FormatName = name.parse().unwrap();
            assert_eq!(f.to_string(), name);
            if let Some(spec) = f.default_spec() {
                assert_eq!(Parser::new(&spec).unwrap().name(), name);
            }
        }
        assert_eq!(
            "json".parse::<FormatName>().unwrap_err().to_string(),
            "unknown log format \"json\" (expected one of nginx, apache, envoy, envoy-json, kong, ndjson, auto)"
        );
    }
}
