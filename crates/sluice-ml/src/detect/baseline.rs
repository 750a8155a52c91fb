//! Baselines: what is normal for one client (level and spread per feature, daily and hourly
//! rhythm, the routes, networks and agents it uses), for one route, and for the population as a
//! whole in a given minute (the flash-crowd factor).
//!
//! Level and spread are exponentially weighted and robust: a new value is clipped to
//! `level ± 3 spread` before it updates them, and the spread is an exponentially weighted mean
//! absolute deviation (scaled to a standard deviation), so one wild minute cannot drag a baseline.

use std::collections::{HashMap, HashSet};

use super::features::{subnet, ClientMinute};

/// Mean absolute deviation to standard deviation for a normal distribution.
const MAD_TO_SD: f64 = 1.2533;

/// A robust exponentially weighted level and spread.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RobustEwm {
    pub level: f64,
    /// Exponentially weighted mean absolute deviation.
    pub mad: f64,
    pub n: u32,
}

impl RobustEwm {
    /// `alpha` is the weight of the newest value once warmed up; the first values are averaged
    /// with weight `1/n` so a short history is not dominated by the first one.
    pub fn update(&mut self, x: f64, alpha: f64) {
        if !x.is_finite() {
            return;
        }
        self.n += 1;
        if self.n == 1 {
            self.level = x;
            self.mad = 0.0;
            return;
        }
        let a = alpha.max(1.0 / f64::from(self.n));
        let sd = self.sd();
        let clipped = if self.n > 4 && sd > 0.0 {
            x.clamp(self.level - 3.0 * sd, self.level + 3.0 * sd)
        } else {
            x
        };
        let dev = (clipped - self.level).abs();
        self.level += a * (clipped - self.level);
        self.mad += a * (dev - self.mad);
    }

    pub fn sd(&self) -> f64 {
        self.mad * MAD_TO_SD
    }

    /// Robust z-score of `x` with a floor on the spread.
    pub fn z(&self, x: f64, floor: f64) -> f64 {
        (x - self.level) / self.sd().max(floor)
    }
}

/// Per-client scalar features that have a baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Feature {
    /// `ln(1 + requests)` per active minute.
    LogRate,
    /// Share of 4xx responses.
    ErrorShare,
    /// Share of 5xx responses.
    ServerErrorShare,
    /// `ln(1 + distinct paths)`.
    LogDistinctPaths,
    /// `ln(1 + distinct routes)`.
    DistinctRoutes,
}

impl Feature {
    pub const ALL: [Feature; 5] = [
        Feature::LogRate,
        Feature::ErrorShare,
        Feature::ServerErrorShare,
        Feature::LogDistinctPaths,
        Feature::DistinctRoutes,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Feature::LogRate => "requests_per_min",
            Feature::ErrorShare => "client_error_share",
            Feature::ServerErrorShare => "server_error_share",
            Feature::LogDistinctPaths => "distinct_paths",
            Feature::DistinctRoutes => "distinct_routes",
        }
    }

    /// Smallest spread used in a z-score, in the feature's units.
    pub const fn floor(self) -> f64 {
        match self {
            Feature::LogRate => 0.35,
            Feature::ErrorShare => 0.08,
            Feature::ServerErrorShare => 0.05,
            Feature::LogDistinctPaths => 0.35,
            Feature::DistinctRoutes => 0.35,
        }
    }

    pub fn value(self, row: &ClientMinute) -> f64 {
        match self {
            Feature::LogRate => f64::from(row.requests).ln_1p(),
            Feature::ErrorShare => row.share(row.status.client_errors()),
            Feature::ServerErrorShare => row.share(row.status.s5xx),
            Feature::LogDistinctPaths => (row.distinct_paths() as f64).ln_1p(),
            Feature::DistinctRoutes => (row.distinct_routes() as f64).ln_1p(),
        }
    }

    /// Back from the baseline's units to the units an analyst reads.
    pub fn display(self, v: f64) -> f64 {
        match self {
            Feature::LogRate | Feature::LogDistinctPaths | Feature::DistinctRoutes => v.exp() - 1.0,
            _ => v,
        }
    }
}

/// Everything learned about one client.
#[derive(Clone, Debug)]
pub struct ClientBaseline {
    /// Minutes with at least one request that were learned from.
    pub active_minutes: u32,
    pub first_seen: i64,
    pub last_seen: i64,
    pub stats: [RobustEwm; 5],
    /// `ln(1 + requests)` by UTC hour of day (daily rhythm).
    pub hour_of_day: [RobustEwm; 24],
    /// Highest `ln(1 + requests)` seen at each minute of the hour, decayed slowly: a regular
    /// burst (an hourly job) becomes expected at its minute.
    pub minute_of_hour_peak: [f32; 60],
    pub routes: HashMap<String, u32>,
    /// Share of requests per active minute on routes the client had not used before: browsers
    /// wander, API clients do not.
    pub novelty: RobustEwm,
    pub subnets: HashSet<String>,
    pub ips: HashSet<std::net::IpAddr>,
    pub user_agents: HashSet<String>,
}

impl Default for ClientBaseline {
    fn default() -> Self {
        ClientBaseline {
            active_minutes: 0,
            first_seen: 0,
            last_seen: 0,
            stats: Default::default(),
            hour_of_day: Default::default(),
            minute_of_hour_peak: [0.0; 60],
            routes: HashMap::new(),
            novelty: RobustEwm::default(),
            subnets: HashSet::new(),
            ips: HashSet::new(),
            user_agents: HashSet::new(),
        }
    }
}

/// Learning rate of the per-client level and spread.
pub const CLIENT_ALPHA: f64 = 0.05;
/// Minutes of data an hour-of-day bucket needs before it is used.
const HOUR_MIN_MINUTES: u32 = 30;

impl ClientBaseline {
    pub fn stat(&self, f: Feature) -> &RobustEwm {
        &self.stats[f as usize]
    }

    /// Expected `ln(1 + requests)` at `minute` (log-time µs): the level, the hour-of-day profile
    /// when it has enough history, and at least the regular peak of this minute of the hour
    /// (±1 minute).
    pub fn expected_log_rate(&self, minute: i64) -> f64 {
        let mut e = self.stat(Feature::LogRate).level;
        let hour = hour_of_day(minute);
        let h = &self.hour_of_day[hour];
        if h.n >= HOUR_MIN_MINUTES {
            e = 0.5 * e + 0.5 * h.level;
        }
        let m = minute_of_hour(minute);
        let peak = [(m + 59) % 60, m, (m + 1) % 60]
            .iter()
            .map(|&i| f64::from(self.minute_of_hour_peak[i]))
            .fold(0.0, f64::max);
        e.max(peak)
    }

    pub fn learn(&mut self, row: &ClientMinute) {
        let t = row.minute.micros();
        if self.active_minutes == 0 {
            self.first_seen = t;
        }
        self.active_minutes += 1;
        self.last_seen = t;
        for f in Feature::ALL {
            self.stats[f as usize].update(f.value(row), CLIENT_ALPHA);
        }
        let lr = Feature::LogRate.value(row);
        self.hour_of_day[hour_of_day(t)].update(lr, CLIENT_ALPHA);
        // decay every peak a little (a job that stops bursting is forgotten over ~a day)
        for p in &mut self.minute_of_hour_peak {
            *p *= 0.9995;
        }
        let m = minute_of_hour(t);
        self.minute_of_hour_peak[m] = self.minute_of_hour_peak[m].max(lr as f32);
        if self.active_minutes > 1 {
            let new: u32 = row
                .route_counts
                .iter()
                .filter(|(r, _)| !self.routes.contains_key(r))
                .map(|(_, c)| c)
                .sum();
            self.novelty.update(row.share(new), CLIENT_ALPHA);
        }
        for (r, c) in &row.route_counts {
            match self.routes.get_mut(r) {
                Some(n) => *n += c,
                None => {
                    self.routes.insert(r.clone(), *c);
                }
            }
        }
        for ip in &row.ips {
            if self.ips.insert(*ip) {
                self.subnets.insert(subnet(ip));
            }
        }
        for ua in &row.user_agents {
            if !self.user_agents.contains(ua) {
                self.user_agents.insert(ua.clone());
            }
        }
    }
}

pub fn hour_of_day(t_us: i64) -> usize {
    (t_us.rem_euclid(86_400_000_000) / 3_600_000_000) as usize
}

pub fn minute_of_hour(t_us: i64) -> usize {
    (t_us.rem_euclid(3_600_000_000) / 60_000_000) as usize
}

/// Per-route request-rate baselines, so a surge on one endpoint is seen as such.
#[derive(Clone, Debug, Default)]
pub struct RouteBaselines {
    routes: HashMap<String, RobustEwm>,
}

/// A route whose traffic this minute is far above its baseline.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RouteSurge {
    pub route: String,
    #[serde(serialize_with = "crate::detect::detector::rfc3339")]
    pub minute: sluice_core::Timestamp,
    pub observed: f64,
    pub expected: f64,
    /// Robust z-score of `ln(1 + requests)`.
    pub z: f64,
}

impl RouteBaselines {
    /// Score this minute's route totals against the baselines, then learn them. Returns surges
    /// (z at least 6 and at least 50 requests more than expected).
    pub fn observe(
        &mut self,
        minute: sluice_core::Timestamp,
        totals: &HashMap<String, u32>,
        learn: bool,
    ) -> Vec<RouteSurge> {
        let mut out = Vec::new();
        for (route, &n) in totals {
            let x = f64::from(n).ln_1p();
            let b = self.routes.entry(route.clone()).or_default();
            if b.n >= 10 {
                let z = b.z(x, 0.25);
                let expected = b.level.exp() - 1.0;
                if z >= 6.0 && f64::from(n) - expected >= 50.0 {
                    out.push(RouteSurge {
                        route: route.clone(),
                        minute,
                        observed: f64::from(n),
                        expected,
                        z,
                    });
                }
            }
            if learn {
                b.update(x, 0.05);
            }
        }
        out.sort_by(|a, b| a.route.cmp(&b.route));
        out
    }

    pub fn get(&self, route: &str) -> Option<&RobustEwm> {
        self.routes.get(route)
    }
}

/// The population-wide rise this minute: the median, over established clients, of how far each
/// one's `ln(1 + requests)` is above its own expectation. A flash crowd lifts it; one abusive
/// client does not. `None` with fewer than `min_clients` contributions.
pub fn population_factor(mut residuals: Vec<f64>, min_clients: usize) -> Option<f64> {
    if residuals.len() < min_clients.max(1) {
        return None;
    }
    let mid = residuals.len() / 2;
    let (_, m, _) = residuals.select_nth_unstable_by(mid, f64::total_cmp);
    Some(*m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robust_ewm_ignores_one_outlier() {
        let mut e = RobustEwm::default();
        for i in 0..50 {
            e.update(10.0 + f64::from(i % 3) - 1.0, 0.05);
        }
        let before = e.level;
        e.update(1000.0, 0.05);
        assert!((e.level - before).abs() < 0.5, "{}", e.level);
        assert!(e.z(20.0, 0.1) > 5.0);
    }

    #[test]
    fn population_factor_is_the_median() {
        assert_eq!(population_factor(vec![0.1, 5.0, 0.2], 3), Some(0.2));
        assert_eq!(population_factor(vec![0.1], 3), None);
    }

    #[test]
    fn time_buckets() {
        let t = 3 * 3_600_000_000 + 7 * 60_000_000;
        assert_eq!(hour_of_day(t), 3);
        assert_eq!(minute_of_hour(t), 7);
    }
}
