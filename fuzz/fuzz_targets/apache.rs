//! Fuzz the Apache parser: `combined` on the whole input, and a fuzzed `LogFormat` (first line)
//! applied to the second line.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use sluice_logs::{FormatSpec, Parser};

fuzz_target!(|data: &[u8]| {
    let combined = Parser::new(&FormatSpec::Apache {
        log_format: "combined".into(),
    })
    .unwrap();
    common::check(combined.parse_line(data));
    if let Some(i) = data.iter().position(|&c| c == b'\n') {
        let spec = FormatSpec::Apache {
            log_format: String::from_utf8_lossy(&data[..i]).into_owned(),
        };
        if let Ok(parser) = Parser::new(&spec) {
            common::check(parser.parse_line(&data[i + 1..]));
        }
    }
});
