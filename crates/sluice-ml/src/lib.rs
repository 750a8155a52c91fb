//! Models over data: univariate anomaly scoring, forecasting, and (later) per-client features and
//! baselines. Synchronous and pure: no IO, no async, callers run it on a blocking thread.

pub mod anomaly;
pub mod detect;
pub mod forecast;
