//! Fuzz the nginx `combined` parser on arbitrary lines.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use sluice_logs::{FormatSpec, NginxEscape, Parser};

fuzz_target!(|data: &[u8]| {
    let parser = Parser::new(&FormatSpec::Nginx {
        log_format: "combined".into(),
        escape: NginxEscape::Default,
    })
    .unwrap();
    common::check(parser.parse_line(data));
});
