//! Fuzz the canonical NDJSON parser (and, through the common checks, to_ndjson round trips).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use sluice_logs::{FormatSpec, Parser};

fuzz_target!(|data: &[u8]| {
    let parser = Parser::new(&FormatSpec::Ndjson).unwrap();
    common::check(parser.parse_line(data));
});
