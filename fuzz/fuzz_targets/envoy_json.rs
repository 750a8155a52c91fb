//! Fuzz the Envoy JSON parser with the default field names.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use sluice_logs::{EnvoyJsonFields, FormatSpec, Parser};

fuzz_target!(|data: &[u8]| {
    let parser = Parser::new(&FormatSpec::EnvoyJson {
        fields: EnvoyJsonFields::default(),
    })
    .unwrap();
    common::check(parser.parse_line(data));
});
