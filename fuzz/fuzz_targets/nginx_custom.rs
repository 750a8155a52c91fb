//! Fuzz the nginx `log_format` compiler and the compiled parser: the input is
//! `<escape byte><format>\n<line>`; the format may be anything, `escape=json` included.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use sluice_logs::{FormatSpec, NginxEscape, Parser};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (format, line) = match rest.iter().position(|&c| c == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let escape = match mode % 3 {
        0 => NginxEscape::Default,
        1 => NginxEscape::Json,
        _ => NginxEscape::None,
    };
    let spec = FormatSpec::Nginx {
        log_format: String::from_utf8_lossy(format).into_owned(),
        escape,
    };
    if let Ok(parser) = Parser::new(&spec) {
        common::check(parser.parse_line(line));
    }
});
