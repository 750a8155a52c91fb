//! Log time of the demo: `origin + scale × (wall time since start)`. The gateway's enforcer
//! counts its windows on this clock and stamps its access logs with it, and the driver sends each
//! simulated request when this clock reaches the request's log time, so detection, tuning and
//! enforcement all run on the same (compressed) log time.

use std::time::{Duration, Instant};

use sluice_core::Timestamp;

#[derive(Clone, Copy, Debug)]
pub struct DemoClock {
    started: Instant,
    origin: Timestamp,
    scale: f64,
}

impl DemoClock {
    /// Starts now at log time `origin`; `scale` log seconds pass per wall second (positive).
    pub fn start(origin: Timestamp, scale: f64) -> DemoClock {
        DemoClock {
            started: Instant::now(),
            origin,
            scale: if scale.is_finite() && scale > 0.0 {
                scale
            } else {
                1.0
            },
        }
    }

    pub fn scale(&self) -> f64 {
        self.scale
    }

    pub fn origin(&self) -> Timestamp {
        self.origin
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// The log time now.
    pub fn now(&self) -> Timestamp {
        self.log_time_at(self.started.elapsed())
    }

    /// Log time after `wall` of wall time.
    pub fn log_time_at(&self, wall: Duration) -> Timestamp {
        let us = wall.as_micros() as f64 * self.scale;
        Timestamp::from_micros(self.origin.micros().saturating_add(us as i64))
    }

    /// Wall time (since the start) at which log time `t` is reached (zero before the origin).
    pub fn wall_at(&self, t: Timestamp) -> Duration {
        let us = (t.micros() - self.origin.micros()).max(0) as f64 / self.scale;
        Duration::from_micros(us as u64)
    }

    /// Wall time for `us` microseconds of log time.
    pub fn real_wait(&self, us: i64) -> Duration {
        Duration::from_micros((us.max(0) as f64 / self.scale) as u64)
    }
}

impl sluice_enforcer::Clock for DemoClock {
    fn now(&self) -> Timestamp {
        DemoClock::now(self)
    }

    fn real_wait(&self, us: i64) -> Duration {
        DemoClock::real_wait(self, us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_both_ways() {
        let origin = Timestamp::from_micros(1_000_000_000_000);
        let c = DemoClock::start(origin, 30.0);
        assert_eq!(
            c.log_time_at(Duration::from_secs(2)).micros(),
            origin.micros() + 60_000_000
        );
        assert_eq!(
            c.wall_at(Timestamp::from_micros(origin.micros() + 60_000_000)),
            Duration::from_secs(2)
        );
        assert_eq!(
            c.wall_at(Timestamp::from_micros(origin.micros() - 5)),
            Duration::ZERO
        );
        assert_eq!(c.real_wait(30_000_000), Duration::from_secs(1));
        assert!(c.now() >= origin);
        assert_eq!(DemoClock::start(origin, f64::NAN).scale(), 1.0);
    }
}
