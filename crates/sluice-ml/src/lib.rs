//! Models over data: univariate anomaly scoring, forecasting, per-client features, baselines and
//! profiles (batch extraction over history with polars). Synchronous and pure: no IO, no async,
//! callers run it on a blocking thread.

pub mod anomaly;
pub mod detect;
pub mod forecast;
#[cfg(feature = "profiles")]
pub mod profile;
