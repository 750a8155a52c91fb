//! Errors of this crate: bad format definitions, rejected lines and failed auto-detection.

use std::fmt::Write as _;

/// A log format definition that cannot be compiled (`Parser::new`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("unterminated \"${{\" at byte {0} of the log format")]
    UnterminatedBrace(usize),
    #[error("invalid variable at byte {0} of the log format: '$' must be followed by a name or {{name}}")]
    BadVariable(usize),
    #[error("unterminated directive at byte {0} of the log format")]
    UnterminatedDirective(usize),
    #[error("unsupported directive {0}: {1}")]
    Unsupported(String, &'static str),
    #[error("unterminated command operator at byte {0} of the log format")]
    UnterminatedOperator(usize),
    #[error("unknown escape mode {0:?} (expected default, json or none)")]
    UnknownEscape(String),
    #[error("fields {0} and {1} are adjacent with no literal text between them, so they cannot be told apart")]
    AdjacentFields(String, String),
    #[error("log format has no {what} field (expected one of {expected})")]
    Missing {
        what: &'static str,
        expected: &'static str,
    },
    #[error("json field name for {0} is empty")]
    EmptyJsonField(&'static str),
}

/// Why one line was rejected. `reason()` (the same text as `Display`) is stored per rejected line and
/// shown to users, so every message is exact, lowercase and stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty line")]
    Empty,
    /// The line does not have the shape of the format (a literal is missing, the line ended early).
    #[error("{0}")]
    Shape(String),
    /// A field was found but its value is not valid, e.g. `invalid $status "2x0": not a number`.
    #[error("invalid {field} {value}: {problem}")]
    Field {
        /// The field as the format spells it: `$status`, `%>s`, `%RESPONSE_CODE%`, `response.status`.
        field: String,
        /// The offending value, quoted (text formats) or as JSON text (JSON formats), shortened.
        value: String,
        problem: String,
    },
    /// The line (or JSON value) is not valid JSON, or not of the expected JSON type.
    #[error("invalid json: {0}")]
    Json(String),
    #[error("missing required field {0}")]
    Missing(String),
}

impl ParseError {
    /// The human reason, identical to `to_string()`.
    pub fn reason(&self) -> String {
        self.to_string()
    }

    pub(crate) fn field(field: &str, raw: &[u8], problem: impl Into<String>) -> ParseError {
        ParseError::Field {
            field: field.to_owned(),
            value: quote(raw),
            problem: problem.into(),
        }
    }

    pub(crate) fn json_field(
        field: &str,
        raw_json: &str,
        problem: impl Into<String>,
    ) -> ParseError {
        ParseError::Field {
            field: field.to_owned(),
            value: shorten(raw_json, MAX_SHOWN),
            problem: problem.into(),
        }
    }
}

/// At most this many characters of an offending value are shown in a reason.
pub(crate) const MAX_SHOWN: usize = 64;

/// `raw` as a Rust-style quoted string (non-printables escaped), shortened to [`MAX_SHOWN`] characters.
pub(crate) fn quote(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let short = shorten(&text, MAX_SHOWN);
    format!("{short:?}")
}

/// A snippet of the line at `pos` for "but found ..." messages.
pub(crate) fn snippet(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut s = shorten(&text, 24);
    if s.chars().count() < text.chars().count() {
        s.push_str("...");
    }
    format!("{s:?}")
}

fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => text[..i].to_owned(),
        None => text.to_owned(),
    }
}

/// A byte shown as a quoted character: `'"'`, `' '`, `'\t'`.
pub(crate) fn show_byte(b: u8) -> String {
    let mut s = String::from("'");
    if (0x20..0x7f).contains(&b) && b != b'\'' && b != b'\\' {
        s.push(b as char);
    } else if b.is_ascii() {
        for c in (b as char).escape_default() {
            s.push(c);
        }
    } else {
        let _ = write!(s, "\\x{b:02x}");
    }
    s.push('\'');
    s
}

/// `--format auto` could not pick exactly one format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectError {
    #[error("cannot detect the log format: the sample has no non-blank lines")]
    NoLines,
    #[error("cannot detect the log format: sampled lines match different formats ({0}); name the format explicitly (--format, or ?format= / X-Sluice-Format over HTTP)")]
    Ambiguous(String),
    #[error("cannot detect the log format: no known format matches the sampled lines ({0}); name the format explicitly (--format, or ?format= / X-Sluice-Format over HTTP)")]
    NoMatch(String),
}

/// An unknown `--format` name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log format {0:?} (expected one of nginx, apache, envoy, envoy-json, kong, ndjson, auto)")]
pub struct UnknownFormat(pub String);
