//! The engine: everything that runs over traffic in log time: the ingest pipeline (split, parse,
//! enrich, encode, write) that `sluice ingest` and `POST /v1/logs` share, and the detection,
//! forecast and client-profile loops that `sluice serve` and `sluice replay` share.

pub mod detection;
pub mod forecast;
pub mod ingest;
#[cfg(feature = "profiles")]
pub mod profiles;
pub mod tuning;
