//! Per-client behavioural detection: per-minute client features, baselines (per client, per
//! route, population-wide), and a layered detector (self-deviation, a linfa population model,
//! coordinated campaigns), all in log time.
//!
//! Pure and synchronous: records or rollup rows in, anomalies out. The data flow is
//! [`AccessRecord`] → [`Aggregator`] (closes a minute once the watermark, newest log time minus
//! the allowed lateness, passes its end) → [`ClosedMinute`] → [`Detector::observe`]. A score for
//! a minute uses only rows of that minute and earlier, and `first_detected` is the end of the
//! minute that raised it; in live use it is emitted one allowed lateness later.
//!
//! ```
//! use sluice_ml::detect::Pipeline;
//! let mut p = Pipeline::default();
//! // for rec in records { p.push(&rec); }   (client and route already set)
//! p.finish();
//! assert!(p.anomalies().is_empty());
//! ```

pub mod baseline;
pub mod detector;
pub mod features;
pub mod population;

#[cfg(test)]
mod tests;

use sluice_core::AccessRecord;

pub use baseline::{ClientBaseline, RobustEwm, RouteBaselines, RouteSurge};
pub use detector::{
    score, Anomaly, AnomalyKind, AnomalyState, Detector, DetectorConfig, MemberRef, MinuteOutcome,
    Reason, Retrained,
};
pub use features::{Aggregator, ClientMinute, ClosedMinute, StatusMix};
pub use population::{PopulationConfig, PopulationModel};

/// Aggregator and detector together: push records in log-time order, read anomalies.
#[derive(Debug, Default)]
pub struct Pipeline {
    pub aggregator: Aggregator,
    pub detector: Detector,
}

impl Pipeline {
    pub fn new(aggregator: Aggregator, detector: Detector) -> Pipeline {
        Pipeline {
            aggregator,
            detector,
        }
    }

    /// Add one record; returns the outcomes of the minutes it closed.
    pub fn push(&mut self, rec: &AccessRecord<'_>) -> Vec<MinuteOutcome> {
        let closed = self.aggregator.push(rec);
        self.observe_all(closed)
    }

    /// End of input: close and score every open minute.
    pub fn finish(&mut self) -> Vec<MinuteOutcome> {
        let closed = self.aggregator.flush();
        self.observe_all(closed)
    }

    fn observe_all(&mut self, closed: Vec<ClosedMinute>) -> Vec<MinuteOutcome> {
        closed
            .into_iter()
            .map(|m| self.detector.observe(m.minute, &m.rows))
            .collect()
    }

    pub fn anomalies(&self) -> &[Anomaly] {
        self.detector.anomalies()
    }
}
