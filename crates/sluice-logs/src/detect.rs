//! `--format auto`: pick a format from a sample of lines, with a sentence saying why.

use std::fmt::Write as _;

use crate::error::{snippet, DetectError};
use crate::json::split_json_array;
use crate::{
    EnvoyJsonFields, FormatSpec, NginxEscape, Parser, APACHE_COMMON, APACHE_VHOST_COMBINED,
    ENVOY_ISTIO_FORMAT, NGINX_MAIN,
};

/// At most this many non-blank lines of the sample are looked at.
pub const DETECT_SAMPLE_LINES: usize = 200;

/// The outcome of [`detect`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detected {
    pub spec: FormatSpec,
    /// What was recognised, e.g. `combined (nginx/apache)`.
    pub name: &'static str,
    /// Why, e.g. `every sampled line (100) matches combined (nginx/apache)`.
    pub reason: String,
    /// Lines are JSON arrays of records (Kong batches): split each with
    /// [`crate::split_json_array`] and parse the elements.
    pub json_array: bool,
}

struct Candidate {
    name: &'static str,
    spec: FormatSpec,
    json_array: bool,
}

fn candidates() -> Vec<Candidate> {
    let c = |name, spec, json_array| Candidate {
        name,
        spec,
        json_array,
    };
    vec![
        c("ndjson (sluice canonical)", FormatSpec::Ndjson, false),
        c("kong", FormatSpec::Kong, false),
        c("kong (batched json array)", FormatSpec::Kong, true),
        c(
            "envoy-json",
            FormatSpec::EnvoyJson {
                fields: EnvoyJsonFields::default(),
            },
            false,
        ),
        c(
            "envoy (default format)",
            FormatSpec::EnvoyText { format: None },
            false,
        ),
        c(
            "envoy (istio format)",
            FormatSpec::EnvoyText {
                format: Some(ENVOY_ISTIO_FORMAT.to_owned()),
            },
            false,
        ),
        c(
            "combined (nginx/apache)",
            FormatSpec::Nginx {
                log_format: "combined".to_owned(),
                escape: NginxEscape::Default,
            },
            false,
        ),
        c(
            "nginx main (combined + x-forwarded-for)",
            FormatSpec::Nginx {
                log_format: NGINX_MAIN.to_owned(),
                escape: NginxEscape::Default,
            },
            false,
        ),
        c(
            "common (apache)",
            FormatSpec::Apache {
                log_format: APACHE_COMMON.to_owned(),
            },
            false,
        ),
        c(
            "vhost_combined (apache)",
            FormatSpec::Apache {
                log_format: APACHE_VHOST_COMBINED.to_owned(),
            },
            false,
        ),
    ]
}

/// Pick the format of a log from sample lines (blank lines are skipped; at most
/// [`DETECT_SAMPLE_LINES`] are used).
///
/// Each line is tried against every known format. A format is chosen when it accepts every line
/// that any format accepts, and at most one line in ten matches no format (so one malformed line
/// does not defeat detection). Lines accepted by different formats are an [`DetectError::Ambiguous`]
/// error; a sample where no format fits is [`DetectError::NoMatch`]. nginx and Apache write the
/// same `combined` format: it is reported as `combined (nginx/apache)` and parsed as nginx.
pub fn detect(sample_lines: &[&[u8]]) -> Result<Detected, DetectError> {
    let lines: Vec<&[u8]> = sample_lines
        .iter()
        .map(|l| l.trim_ascii_end())
        .filter(|l| !l.trim_ascii().is_empty())
        .take(DETECT_SAMPLE_LINES)
        .collect();
    if lines.is_empty() {
        return Err(DetectError::NoLines);
    }
    let cands = candidates();
    let parsers: Vec<Option<Parser>> = cands.iter().map(|c| Parser::new(&c.spec).ok()).collect();
    let mut hits = vec![0usize; cands.len()];
    let mut recognised = 0usize;
    let mut unmatched: Vec<&[u8]> = Vec::new();
    for line in &lines {
        let mut any = false;
        for (i, c) in cands.iter().enumerate() {
            let Some(p) = &parsers[i] else { continue };
            let ok = if c.json_array {
                line.first() == Some(&b'[')
                    && split_json_array(line).is_ok_and(|items| {
                        !items.is_empty() && items.iter().all(|e| p.parse_line(e).is_ok())
                    })
            } else {
                p.parse_line(line).is_ok()
            };
            if ok {
                hits[i] += 1;
                any = true;
            }
        }
        if any {
            recognised += 1;
        } else {
            unmatched.push(line);
        }
    }
    let seen = |hits: &[usize]| {
        let mut s = String::new();
        for (c, n) in cands.iter().zip(hits) {
            if *n > 0 {
                let _ = write!(s, "{n} {}, ", c.name);
            }
        }
        if let Some(first) = unmatched.first() {
            let _ = write!(
                s,
                "{} match no known format, first: {}",
                unmatched.len(),
                describe(first)
            );
        }
        s.trim_end_matches([',', ' ']).to_owned()
    };
    // At most one line in ten may match nothing, but a small sample (an HTTP batch of a few
    // lines) may hold one stray line as long as most lines agree.
    let tolerated = (lines.len() / 10).max(1);
    if recognised == 0 || unmatched.len() > tolerated || recognised <= unmatched.len() {
        return Err(DetectError::NoMatch(seen(&hits)));
    }
    let Some(win) = hits.iter().position(|&n| n == recognised) else {
        return Err(DetectError::Ambiguous(seen(&hits)));
    };
    let c = &cands[win];
    let reason = if unmatched.is_empty() {
        format!("every sampled line ({}) matches {}", lines.len(), c.name)
    } else {
        format!(
            "{recognised} of {} sampled lines match {}; {} match no known format (first: {})",
            lines.len(),
            c.name,
            unmatched.len(),
            describe(unmatched[0])
        )
    };
    Ok(Detected {
        spec: c.spec.clone(),
        name: c.name,
        reason,
        json_array: c.json_array,
    })
}

fn describe(line: &[u8]) -> String {
    if line.first() == Some(&b'{') {
        if let Ok(obj) = crate::json::Obj::parse(line) {
            let keys: Vec<&str> = obj.0.iter().take(8).map(|(k, _)| k.as_ref()).collect();
            return format!("a json object with keys {}", keys.join(", "));
        }
    }
    snippet(line)
}
