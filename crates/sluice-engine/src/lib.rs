//! The engine: everything that runs over traffic in log time. Today it holds the ingest pipeline
//! (split, parse, enrich, encode, write) that `sluice ingest` and `POST /v1/logs` share.

pub mod detection;
pub mod forecast;
pub mod ingest;
