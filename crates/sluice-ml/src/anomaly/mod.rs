//! Univariate streaming anomaly scoring (causal: the score at t uses only data up to t).
//!
//! [`read_series_csv`] turns a `timestamp,value` file into [`SeriesPoint`]s, [`score_series`] (or a
//! [`SeriesDetector`] fed point by point) gives every point a score in [0, 1], and
//! [`write_scored_csv`] writes `timestamp,value,anomaly_score`. See [`detector`] for the model.

pub mod csv;
pub mod detector;

pub use csv::{parse_timestamp, read_series_csv, write_scored_csv, SeriesError, SeriesPoint};
pub use detector::{score_series, SeriesDetector, SeriesDetectorConfig};
