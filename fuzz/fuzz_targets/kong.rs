//! Fuzz the Kong parser on single objects and on batched arrays (split_json_array).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use sluice_logs::{split_json_array, FormatSpec, Parser};

fuzz_target!(|data: &[u8]| {
    let parser = Parser::new(&FormatSpec::Kong).unwrap();
    common::check(parser.parse_line(data));
    if let Ok(items) = split_json_array(data) {
        for item in items {
            common::check(parser.parse_line(item));
        }
    }
});
