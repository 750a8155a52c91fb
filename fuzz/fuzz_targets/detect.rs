//! Fuzz auto-detection: the input's lines are the sample; a detected format must compile and
//! its reason must be a sentence without a trailing period.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_logs::{detect, Parser};

fuzz_target!(|data: &[u8]| {
    let lines: Vec<&[u8]> = data.split(|&c| c == b'\n').collect();
    match detect(&lines) {
        Ok(d) => {
            assert!(Parser::new(&d.spec).is_ok());
            assert!(!d.reason.is_empty() && !d.reason.ends_with('.'));
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
