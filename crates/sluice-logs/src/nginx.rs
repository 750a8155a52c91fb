//! nginx `log_format` compiler: literal text interleaved with `$name` / `${name}` variables.

use crate::error::FormatError;
use crate::text::{Escape, Field, Piece, Program, Required, TimeKind};

/// nginx's predefined `combined` format (the default).
pub const NGINX_COMBINED: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#;

/// The `main` format shipped in the official nginx packages and Docker image: `combined` plus
/// `"$http_x_forwarded_for"`.
pub const NGINX_MAIN: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_forwarded_for""#;

/// How the `log_format` was declared: `escape=default` (`\xHH`), `escape=json` or `escape=none`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NginxEscape {
    #[default]
    Default,
    Json,
    None,
}

const REQUIRED: Required = Required {
    time: "$time_local, $time_iso8601, $msec",
    status: "$status",
    path: "$request, $request_uri, $uri",
};

/// Compile a log format. `combined`, `main` and the empty string name the predefined formats; a
/// leading `escape=json ` / `escape=none ` / `escape=default ` token overrides `escape`.
pub(crate) fn compile(log_format: &str, escape: NginxEscape) -> Result<Program, FormatError> {
    let mut format = log_format.trim_matches(|c| c == '\n' || c == '\r');
    let mut escape = escape;
    if let Some(rest) = format.strip_prefix("escape=") {
        let end = rest.find(' ').unwrap_or(rest.len());
        escape = match &rest[..end] {
            "default" => NginxEscape::Default,
            "json" => NginxEscape::Json,
            "none" => NginxEscape::None,
            other => return Err(FormatError::UnknownEscape(other.to_owned())),
        };
        format = rest[end..].trim_start_matches(' ');
    }
    let format = match format.trim() {
        "" | "combined" => NGINX_COMBINED,
        "main" => NGINX_MAIN,
        _ => format,
    };
    let pieces = pieces(format)?;
    let escape = match escape {
        NginxEscape::Default => Escape::Nginx,
        NginxEscape::Json => Escape::Json,
        NginxEscape::None => Escape::None,
    };
    Program::build(pieces, escape, &REQUIRED)
}

fn is_name(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn pieces(format: &str) -> Result<Vec<Piece>, FormatError> {
    let b = format.as_bytes();
    let mut names = Vec::new();
    let mut out = Vec::new();
    let mut lit = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            lit.push(b[i]);
            i += 1;
            continue;
        }
        let start = i;
        let name = if b.get(i + 1) == Some(&b'{') {
            let close = b[i + 2..]
                .iter()
                .position(|&c| c == b'}')
                .ok_or(FormatError::UnterminatedBrace(start))?;
            let name = &format[i + 2..i + 2 + close];
            if name.is_empty() || !name.bytes().all(is_name) {
                return Err(FormatError::BadVariable(start));
            }
            i += close + 3;
            name
        } else {
            let len = b[i + 1..].iter().take_while(|&&c| is_name(c)).count();
            if len == 0 {
                return Err(FormatError::BadVariable(start));
            }
            i += len + 1;
            &format[start + 1..i]
        };
        if !lit.is_empty() {
            out.push(Piece::Lit(std::mem::take(&mut lit)));
        }
        names.push(name.to_owned());
        out.push(Piece::Field(Field::Extra(name.into()), format!("${name}")));
    }
    if !lit.is_empty() {
        out.push(Piece::Lit(lit));
    }
    let has_body_bytes = names.iter().any(|n| n == "body_bytes_sent");
    for p in &mut out {
        if let Piece::Field(field, label) = p {
            *field = variable(&label[1..], has_body_bytes);
        }
    }
    Ok(out)
}

/// The meaning of one nginx variable. Unknown variables are kept as extras under their name.
fn variable(name: &str, has_body_bytes: bool) -> Field {
    match name {
        "remote_addr" | "realip_remote_addr" => Field::Addr,
        "remote_user" => Field::User,
        "time_local" => Field::Time(TimeKind::Clf),
        "time_iso8601" => Field::Time(TimeKind::Iso),
        "msec" => Field::Time(TimeKind::Epoch(6)),
        "request" => Field::Request,
        "request_method" => Field::Method,
        "request_uri" => Field::RequestUri,
        "uri" | "document_uri" => Field::Path,
        "args" | "query_string" => Field::Query,
        "server_protocol" => Field::Protocol,
        "status" => Field::Status,
        "body_bytes_sent" => Field::BytesSent,
        "bytes_sent" if !has_body_bytes => Field::BytesSent,
        "request_length" => Field::BytesReceived,
        "request_time" => Field::Latency(6),
        "upstream_response_time" => Field::Upstream(6),
        "host" | "http_host" | "server_name" => Field::Host,
        "http_x_api_key" | "http_apikey" => Field::ApiKey,
        "http_x_consumer_id" => Field::Consumer,
        "http_user_agent" => Field::UserAgent,
        "http_referer" => Field::Referer,
        "http_x_request_id" | "request_id" => Field::RequestId,
        "http_x_forwarded_for" => Field::ForwardedFor,
        other => Field::Extra(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(format: &str, expect: Result<(), &str>) {
        let got = compile(format, NginxEscape::Default)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert_eq!(
            got.as_ref().map(|_| ()).map_err(String::as_str),
            expect,
            "{format}"
        );
    }

    #[test]
    fn compile_errors() {
        check("combined", Ok(()));
        check("", Ok(()));
        check("escape=json combined", Ok(()));
        check("[$time_local] $status ${request}", Ok(()));
        check(
            "[$time_local] $status $request ${http_x",
            Err("unterminated \"${\" at byte 31 of the log format"),
        );
        check("[$time_local] $status $request $ x", Err("invalid variable at byte 31 of the log format: '$' must be followed by a name or {name}"));
        check("[$time_local] $status $request ${}", Err("invalid variable at byte 31 of the log format: '$' must be followed by a name or {name}"));
        check(
            "escape=yaml combined",
            Err("unknown escape mode \"yaml\" (expected default, json or none)"),
        );
        check("$time_local $status $request$request_time", Err("fields $request and $request_time are adjacent with no literal text between them, so they cannot be told apart"));
        check("$remote_addr $status $request", Err("log format has no timestamp field (expected one of $time_local, $time_iso8601, $msec)"));
        check(
            "$msec $request",
            Err("log format has no status field (expected one of $status)"),
        );
        check("$msec $status", Err("log format has no request path field (expected one of $request, $request_uri, $uri)"));
    }
}
