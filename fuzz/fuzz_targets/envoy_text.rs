//! Fuzz the Envoy text parser: default and Istio formats on the whole input, and a fuzzed format
//! string (first line) applied to the second line.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use sluice_logs::{FormatSpec, Parser};

fuzz_target!(|data: &[u8]| {
    for format in [None, Some("istio".to_owned())] {
        let parser = Parser::new(&FormatSpec::EnvoyText { format }).unwrap();
        common::check(parser.parse_line(data));
    }
    if let Some(i) = data.iter().position(|&c| c == b'\n') {
        let spec = FormatSpec::EnvoyText {
            format: Some(String::from_utf8_lossy(&data[..i]).into_owned()),
        };
        if let Ok(parser) = Parser::new(&spec) {
            common::check(parser.parse_line(&data[i + 1..]));
        }
    }
});
