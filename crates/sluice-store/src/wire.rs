//! Serde helpers shared by the wire-facing row types: times as RFC 3339 in UTC with a `Z`
//! (`2026-03-02T04:10:00Z`), whole seconds unless the value has a fraction.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

pub(crate) fn rfc3339<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

pub(crate) fn rfc3339_opt<S: Serializer>(
    t: &Option<DateTime<Utc>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => rfc3339(t, s),
        None => s.serialize_none(),
    }
}
