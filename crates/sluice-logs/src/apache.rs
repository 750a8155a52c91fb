//! Apache `LogFormat` compiler (mod_log_config directives such as `%h %l %u %t \"%r\" %>s %b`).

use crate::error::FormatError;
use crate::text::{Escape, Field, Piece, Program, Required, TimeKind};

/// Apache's `common` log format.
pub const APACHE_COMMON: &str = r#"%h %l %u %t \"%r\" %>s %b"#;
/// Apache's `combined` log format.
pub const APACHE_COMBINED: &str = r#"%h %l %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-agent}i\""#;
/// Apache's `vhost_combined` log format (Debian default for virtual hosts).
pub const APACHE_VHOST_COMBINED: &str =
    r#"%v:%p %h %l %u %t \"%r\" %>s %O \"%{Referer}i\" \"%{User-Agent}i\""#;

const REQUIRED: Required = Required {
    time: "%t, %{...}t",
    status: "%s, %>s",
    path: "%r, %U",
};

/// Compile a `LogFormat` string, or one of the names `common`, `combined`, `vhost_combined`.
/// Backslash escapes of the configuration syntax (`\"`, `\\`, `\t`, `\n`) are accepted.
pub(crate) fn compile(log_format: &str) -> Result<Program, FormatError> {
    let format = match log_format.trim() {
        "common" => APACHE_COMMON,
        "" | "combined" => APACHE_COMBINED,
        "vhost_combined" => APACHE_VHOST_COMBINED,
        _ => log_format.trim_matches(|c| c == '\n' || c == '\r'),
    };
    Program::build(pieces(format)?, Escape::Apache, &REQUIRED)
}

fn pieces(format: &str) -> Result<Vec<Piece>, FormatError> {
    let b = format.as_bytes();
    let mut raw: Vec<(Option<Directive>, Vec<u8>)> = Vec::new();
    let mut lit = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                let (c, n) = match b.get(i + 1) {
                    Some(b'n') => (b'\n', 2),
                    Some(b't') => (b'\t', 2),
                    Some(&c @ (b'"' | b'\\')) => (c, 2),
                    _ => (b'\\', 1),
                };
                lit.push(c);
                i += n;
            }
            b'%' if b.get(i + 1) == Some(&b'%') => {
                lit.push(b'%');
                i += 2;
            }
            b'%' => {
                let (d, next) = directive(format, i)?;
                raw.push((None, std::mem::take(&mut lit)));
                raw.push((Some(d), Vec::new()));
                i = next;
            }
            c => {
                lit.push(c);
                i += 1;
            }
        }
    }
    raw.push((None, lit));
    let directives: Vec<&Directive> = raw.iter().filter_map(|(d, _)| d.as_ref()).collect();
    let has_body_bytes = directives
        .iter()
        .any(|d| d.letter == 'b' || d.letter == 'B');
    let has_fine_latency = directives.iter().any(|d| d.letter == 'D');
    let mut out = Vec::new();
    for (d, lit) in raw {
        match d {
            None => out.push(Piece::Lit(lit)),
            Some(d) if d.letter == 't' && d.arg.is_none() => {
                // %t is written as "[10/Oct/2000:13:55:36 -0700]", brackets included
                out.push(Piece::Lit(b"[".to_vec()));
                out.push(Piece::Field(Field::Time(TimeKind::Clf), d.label.clone()));
                out.push(Piece::Lit(b"]".to_vec()));
            }
            Some(d) => {
                let field = meaning(&d, has_body_bytes, has_fine_latency)?;
                out.push(Piece::Field(field, d.label));
            }
        }
    }
    Ok(out)
}

#[derive(Debug)]
struct Directive {
    letter: char,
    arg: Option<String>,
    /// As written, without status conditions: `%>s`, `%{User-agent}i`.
    label: String,
}

/// Parse the directive starting at `format[start] == '%'`: `%[<>][!][codes][{arg}]letter`.
fn directive(format: &str, start: usize) -> Result<(Directive, usize), FormatError> {
    let b = format.as_bytes();
    let mut i = start + 1;
    let mut redirect = "";
    if let Some(&c @ (b'<' | b'>')) = b.get(i) {
        redirect = if c == b'<' { "<" } else { ">" };
        i += 1;
    }
    // status conditions such as %400,501{User-agent}i or %!200i are accepted and ignored
    while let Some(c) = b.get(i) {
        if c.is_ascii_digit() || *c == b',' || *c == b'!' {
            i += 1;
        } else {
            break;
        }
    }
    let mut arg = None;
    if b.get(i) == Some(&b'{') {
        let close = b[i..]
            .iter()
            .position(|&c| c == b'}')
            .ok_or(FormatError::UnterminatedDirective(start))?;
        arg = Some(format[i + 1..i + close].to_owned());
        i += close + 1;
    }
    let letter = format[i..]
        .chars()
        .next()
        .ok_or(FormatError::UnterminatedDirective(start))?;
    if letter == '^' {
        let name: String = format[i..].chars().take(3).collect();
        return Err(FormatError::Unsupported(
            format!("%{name}"),
            "trailer and header-size directives are not supported",
        ));
    }
    i += letter.len_utf8();
    let label = match &arg {
        Some(a) => format!("%{redirect}{{{a}}}{letter}"),
        None => format!("%{redirect}{letter}"),
    };
    Ok((Directive { letter, arg, label }, i))
}

fn snake(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace('-', "_")
}

/// Map an HTTP request header name (any case) to its canonical field; others become `http_<name>`.
pub(crate) fn request_header(name: &str) -> Field {
    match snake(name).as_str() {
        "x_api_key" | "apikey" => Field::ApiKey,
        "user_agent" => Field::UserAgent,
        "referer" | "referrer" => Field::Referer,
        "x_request_id" => Field::RequestId,
        "host" => Field::Host,
        "x_forwarded_for" => Field::ForwardedFor,
        "x_consumer_id" => Field::Consumer,
        other => Field::Extra(format!("http_{other}").into()),
    }
}

fn meaning(
    d: &Directive,
    has_body_bytes: bool,
    has_fine_latency: bool,
) -> Result<Field, FormatError> {
    let arg = d.arg.as_deref();
    let extra = |name: &str| Ok(Field::Extra(name.into()));
    match (d.letter, arg) {
        ('h' | 'a', _) => Ok(Field::Addr),
        ('A', _) => extra("local_addr"),
        ('l', _) => extra("remote_logname"),
        ('u', _) => Ok(Field::User),
        ('t', Some(fmt)) => time_format(fmt, d),
        ('r', _) => Ok(Field::Request),
        ('m', _) => Ok(Field::Method),
        ('U', _) => Ok(Field::Path),
        ('q', _) => Ok(Field::Query),
        ('H', _) => Ok(Field::Protocol),
        ('s', _) => Ok(Field::Status),
        ('b', _) => Ok(Field::BytesSentClf),
        ('B', _) => Ok(Field::BytesSent),
        ('O', _) if !has_body_bytes => Ok(Field::BytesSent),
        ('O', _) => extra("bytes_sent_with_headers"),
        ('I', _) => Ok(Field::BytesReceived),
        ('S', _) => extra("bytes_transferred"),
        ('D', _) => Ok(Field::Latency(0)),
        ('T', None | Some("s")) if !has_fine_latency => Ok(Field::Latency(6)),
        ('T', Some("ms")) if !has_fine_latency => Ok(Field::Latency(3)),
        ('T', Some("us")) => Ok(Field::Latency(0)),
        ('T', None | Some("s" | "ms")) => extra("request_time"),
        ('T', Some(_)) => Err(FormatError::Unsupported(
            d.label.clone(),
            "expected %T, %{s}T, %{ms}T or %{us}T",
        )),
        ('v' | 'V', _) => Ok(Field::Host),
        ('i', Some(h)) => Ok(request_header(h)),
        ('o', Some(h)) => Ok(Field::Extra(format!("sent_http_{}", snake(h)).into())),
        ('e', Some(v)) => Ok(Field::Extra(format!("env_{v}").into())),
        ('n', Some(v)) => Ok(Field::Extra(format!("note_{v}").into())),
        ('C', Some(v)) => Ok(Field::Extra(format!("cookie_{v}").into())),
        ('i' | 'o' | 'e' | 'n' | 'C', None) => Err(FormatError::Unsupported(
            d.label.clone(),
            "this directive needs a {name} argument",
        )),
        ('L', _) => extra("log_id"),
        ('p', _) => extra("port"),
        ('P', _) => extra("pid"),
        ('k', _) => extra("keepalive"),
        ('X', _) => extra("connection_status"),
        ('R', _) => extra("handler"),
        ('f', _) => extra("filename"),
        _ => Err(FormatError::Unsupported(
            d.label.clone(),
            "unknown directive",
        )),
    }
}

/// `%{format}t`: the CLF layout, ISO 8601 layouts and `sec`/`msec`/`usec` are supported; `begin:`
/// and `end:` prefixes are ignored.
fn time_format(fmt: &str, d: &Directive) -> Result<Field, FormatError> {
    let fmt = fmt
        .strip_prefix("begin:")
        .or_else(|| fmt.strip_prefix("end:"))
        .unwrap_or(fmt);
    match fmt {
        "sec" => Ok(Field::Time(TimeKind::Epoch(6))),
        "msec" => Ok(Field::Time(TimeKind::Epoch(3))),
        "usec" => Ok(Field::Time(TimeKind::Epoch(0))),
        "%d/%b/%Y:%H:%M:%S %z" => Ok(Field::Time(TimeKind::Clf)),
        "%Y-%m-%dT%H:%M:%S%z" | "%Y-%m-%dT%H:%M:%S %z" | "%FT%T%z" => Ok(Field::Time(TimeKind::Iso)),
        _ => Err(FormatError::Unsupported(
            d.label.clone(),
            "supported time formats are the default, %d/%b/%Y:%H:%M:%S %z, %Y-%m-%dT%H:%M:%S%z, sec, msec and usec",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(format: &str, expect: Result<(), &str>) {
        let got = compile(format).map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(
            got.as_ref().map(|_| ()).map_err(String::as_str),
            expect,
            "{format}"
        );
    }

    #[test]
    fn compile_errors() {
        check("common", Ok(()));
        check("combined", Ok(()));
        check("vhost_combined", Ok(()));
        check(
            r#"%h %t "%r" %>s %b %D %{X-API-Key}i %400,501{Referer}i %{sec}t %%"#,
            Ok(()),
        );
        check(
            "%h %t %r %>s %{Referer",
            Err("unterminated directive at byte 13 of the log format"),
        );
        check(
            "%h %t %r %>s %",
            Err("unterminated directive at byte 13 of the log format"),
        );
        check(
            "%h %t %r %>s %Z",
            Err("unsupported directive %Z: unknown directive"),
        );
        check(
            "%h %t %r %>s %{Foo}Z",
            Err("unsupported directive %{Foo}Z: unknown directive"),
        );
        check(
            "%h %t %r %>s %i",
            Err("unsupported directive %i: this directive needs a {name} argument"),
        );
        check(
            "%h %t %r %>s %^ti",
            Err("unsupported directive %^ti: trailer and header-size directives are not supported"),
        );
        // found by fuzzing: a multi-byte character right after %^ (used to panic on a slice)
        check(
            "%h %t %r %>s %^€x",
            Err("unsupported directive %^€x: trailer and header-size directives are not supported"),
        );
        check("%h %{%H:%M}t %r %>s", Err("unsupported directive %{%H:%M}t: supported time formats are the default, %d/%b/%Y:%H:%M:%S %z, %Y-%m-%dT%H:%M:%S%z, sec, msec and usec"));
        check(
            "%h %r %>s",
            Err("log format has no timestamp field (expected one of %t, %{...}t)"),
        );
        check("%h %t %r%>s", Err("fields %r and %>s are adjacent with no literal text between them, so they cannot be told apart"));
    }
}
