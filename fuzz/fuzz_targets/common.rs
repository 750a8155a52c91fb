//! Invariants every fuzz target checks on an accepted record.

use sluice_core::AccessRecord;
use sluice_logs::{to_ndjson, FormatSpec, Parser};

/// An accepted record has a path, no derived fields, a non-empty reason on rejection, and survives
/// a round trip through the canonical NDJSON (extras are compared by key: JSON floats may move by
/// one ulp through serde_json's default parser).
pub fn check(result: Result<AccessRecord<'_>, sluice_logs::ParseError>) {
    let rec = match result {
        Ok(rec) => rec,
        Err(e) => {
            let reason = e.reason();
            assert!(!reason.is_empty());
            assert!(!reason.ends_with('.'), "{reason}");
            return;
        }
    };
    assert!(!rec.path.is_empty());
    assert!(!rec.path.contains('?'), "{:?}", rec.path);
    assert!(rec.route.is_none() && rec.client.is_none());
    let mut out = Vec::new();
    to_ndjson(&rec, &mut out);
    let ndjson = Parser::new(&FormatSpec::Ndjson).unwrap();
    let back = ndjson
        .parse_line(&out)
        .unwrap_or_else(|e| panic!("round trip failed: {e}: {}", String::from_utf8_lossy(&out)));
    let keys = |r: &AccessRecord<'_>| r.extras.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&back), keys(&rec));
    let strip = |mut r: AccessRecord<'_>| {
        r.extras.clear();
        r.into_owned()
    };
    assert_eq!(strip(back), strip(rec), "{}", String::from_utf8_lossy(&out));
}
