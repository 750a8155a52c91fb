//! Backtest of a proposed limit: replay stored traffic against it and count what it would have
//! rejected, per client, split between normal and anomalous clients.
//!
//! Each algorithm is simulated exactly as [`Limit`] documents it, on integer microseconds.
//! Traffic given as exact request timestamps is replayed exactly. Traffic given as per-minute
//! counts (what the rollups keep) is an approximation: the `n` requests of a minute are spread
//! evenly over it, at `minute + (2i + 1) * 60 s / 2n` for `i` in `0..n`. This is exact for
//! fixed windows whose length is a multiple of a minute and for smooth clients; it under-counts
//! rejections of clients that burst inside a minute (token and leaky buckets, sliding windows
//! shorter than a minute), so a bursty client's backtest is a lower bound.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::limit::Limit;
use crate::time::{Timestamp, MICROS_PER_MINUTE, MICROS_PER_SEC};

/// A client's requests over the backtest span.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "granularity", content = "data", rename_all = "snake_case")]
pub enum Traffic {
    /// `(minute start, requests)`, from the per-minute rollups.
    Minutes(Vec<(Timestamp, u32)>),
    /// Every request's timestamp.
    Exact(Vec<Timestamp>),
}

impl Traffic {
    /// Arrival times in microseconds, sorted.
    fn arrivals(&self) -> Vec<i64> {
        let mut out = Vec::new();
        match self {
            Traffic::Minutes(minutes) => {
                for &(minute, n) in minutes {
                    let start = minute.minute_floor().micros();
                    let n64 = i64::from(n);
                    for i in 0..n64 {
                        out.push(start + (2 * i + 1) * MICROS_PER_MINUTE / (2 * n64));
                    }
                }
            }
            Traffic::Exact(ts) => out.extend(ts.iter().map(|t| t.micros())),
        }
        out.sort_unstable();
        out
    }
}

/// One client's traffic and what the detector thinks of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientTraffic {
    pub client: String,
    /// Named by an anomaly during the span.
    pub anomalous: bool,
    pub traffic: Traffic,
    /// Cost units per request (the route's weight, see
    /// [`crate::tuning::route_cost_weights`]) when the rule counts cost units; `None` counts each
    /// request as 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}

impl ClientTraffic {
    /// Cost per request in milli-units (at least 1).
    fn cost_milli(&self) -> u64 {
        match self.cost {
            Some(c) if c.is_finite() && c > 0.0 => ((c * MILLI as f64).round() as u64).max(1),
            _ => MILLI,
        }
    }
}

/// Whether the rule gives every client its own counter (a `"*"` or single-client selector) or
/// all the given clients share one (an exact route, a subnet, a global rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Counter {
    PerClient,
    Shared,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientOutcome {
    pub client: String,
    pub anomalous: bool,
    pub requests: u64,
    pub rejected: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupTotals {
    pub clients: u64,
    /// Clients with at least one rejected request.
    pub clients_limited: u64,
    pub requests: u64,
    pub rejected: u64,
}

/// What a proposed limit would have done.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BacktestReport {
    pub limit: Limit,
    pub counter: Counter,
    /// Whether every client's traffic had exact timestamps (otherwise minute counts were
    /// spread evenly, see the module docs).
    pub exact: bool,
    /// Clients in input order.
    pub clients: Vec<ClientOutcome>,
    pub normal: GroupTotals,
    pub anomalous: GroupTotals,
}

/// One unit in thousandths: costs are simulated in integer milli-units so a route weight such as
/// 0.67 is exact enough and every comparison stays integer.
const MILLI: u64 = 1000;

/// One limiter's state, advanced request by request in time order. Rejected requests are not
/// counted. Each request costs `cost` milli-units (1000 for a plain request).
struct Limiter {
    limit: Limit,
    window: i64,
    // Fixed window and sliding counter: the current aligned window, its usage, the previous
    // window's usage (milli-units).
    k: i64,
    cur: u64,
    prev: u64,
    // Sliding log: admitted (time, cost) inside the window and their total.
    log: VecDeque<(i64, u64)>,
    log_sum: u64,
    // GCRA (token and leaky bucket): theoretical arrival time, in microseconds times the rate
    // times MILLI.
    tat: Option<i128>,
}

impl Limiter {
    fn new(limit: Limit) -> Limiter {
        Limiter {
            limit,
            window: (limit.window_seconds().max(1) as i64).saturating_mul(MICROS_PER_SEC),
            k: i64::MIN,
            cur: 0,
            prev: 0,
            log: VecDeque::new(),
            log_sum: 0,
            tat: None,
        }
    }

    fn roll(&mut self, t: i64) -> i64 {
        let k = t.div_euclid(self.window);
        if k != self.k {
            self.prev = if self.k != i64::MIN && k == self.k + 1 {
                self.cur
            } else {
                0
            };
            self.cur = 0;
            self.k = k;
        }
        t - k * self.window
    }

    fn admit(&mut self, t: i64, cost: u64) -> bool {
        let quota = self.limit.rate().max(1).saturating_mul(MILLI);
        match self.limit {
            Limit::FixedWindow { .. } => {
                self.roll(t);
                if self.cur + cost <= quota {
                    self.cur += cost;
                    true
                } else {
                    false
                }
            }
            Limit::SlidingWindowLog { .. } => {
                while let Some(&(a, c)) = self.log.front() {
                    if a > t - self.window {
                        break;
                    }
                    self.log.pop_front();
                    self.log_sum -= c;
                }
                if self.log_sum + cost <= quota {
                    self.log.push_back((t, cost));
                    self.log_sum += cost;
                    true
                } else {
                    false
                }
            }
            Limit::SlidingWindowCounter { .. } => {
                let elapsed = i128::from(self.roll(t));
                let w = i128::from(self.window);
                let estimate =
                    i128::from(self.prev) * (w - elapsed) + i128::from(self.cur + cost) * w;
                if estimate <= i128::from(quota) * w {
                    self.cur += cost;
                    true
                } else {
                    false
                }
            }
            Limit::TokenBucket { burst: b, .. } | Limit::LeakyBucket { queue: b, .. } => {
                // Scaled by rate * MILLI: a request of one unit is `window * MILLI` long; a
                // request passes if, after it, the bucket holds at most `b` units.
                let scale = i128::from(self.limit.rate().max(1)) * i128::from(MILLI);
                let now = i128::from(t) * scale;
                let w = i128::from(self.window);
                let step = w * i128::from(cost);
                let capacity = i128::from(b.max(1)) * w * i128::from(MILLI);
                let tat = self.tat.map_or(now, |x| x.max(now));
                if tat + step - now <= capacity {
                    self.tat = Some(tat + step);
                    true
                } else {
                    false
                }
            }
        }
    }
}

/// Rejected requests of one arrival sequence (sorted) under `limit`.
pub fn rejected(limit: &Limit, arrivals: &[Timestamp]) -> u64 {
    let mut l = Limiter::new(*limit);
    arrivals
        .iter()
        .filter(|t| !l.admit(t.micros(), MILLI))
        .count() as u64
}

/// Replay `traffic` against `limit`.
pub fn backtest(limit: &Limit, traffic: &[ClientTraffic], counter: Counter) -> BacktestReport {
    let arrivals: Vec<Vec<i64>> = traffic.iter().map(|c| c.traffic.arrivals()).collect();
    let costs: Vec<u64> = traffic.iter().map(|c| c.cost_milli()).collect();
    let mut rejected = vec![0u64; traffic.len()];
    match counter {
        Counter::PerClient => {
            for (i, times) in arrivals.iter().enumerate() {
                let mut l = Limiter::new(*limit);
                rejected[i] = times.iter().filter(|&&t| !l.admit(t, costs[i])).count() as u64;
            }
        }
        Counter::Shared => {
            // Merge in time order; ties go to clients in input order.
            let mut all: Vec<(i64, usize)> = arrivals
                .iter()
                .enumerate()
                .flat_map(|(i, ts)| ts.iter().map(move |&t| (t, i)))
                .collect();
            all.sort_unstable();
            let mut l = Limiter::new(*limit);
            for (t, i) in all {
                if !l.admit(t, costs[i]) {
                    rejected[i] += 1;
                }
            }
        }
    }
    let mut normal = GroupTotals::default();
    let mut anomalous = GroupTotals::default();
    let clients: Vec<ClientOutcome> = traffic
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let outcome = ClientOutcome {
                client: c.client.clone(),
                anomalous: c.anomalous,
                requests: arrivals[i].len() as u64,
                rejected: rejected[i],
            };
            let group = if c.anomalous {
                &mut anomalous
            } else {
                &mut normal
            };
            group.clients += 1;
            group.clients_limited += u64::from(outcome.rejected > 0);
            group.requests += outcome.requests;
            group.rejected += outcome.rejected;
            outcome
        })
        .collect();
    BacktestReport {
        limit: *limit,
        counter,
        exact: traffic
            .iter()
            .all(|c| matches!(c.traffic, Traffic::Exact(_))),
        clients,
        normal,
        anomalous,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(xs: &[f64]) -> Vec<Timestamp> {
        xs.iter()
            .map(|s| Timestamp((s * MICROS_PER_SEC as f64) as i64))
            .collect()
    }

    /// Arrivals at 8, 9, 10, 11, 16, 17, 19 s against 2 requests per 10 s, computed by hand
    /// (see each case).
    #[test]
    fn every_algorithm_rejects_what_was_computed_by_hand() {
        let arrivals = secs(&[8.0, 9.0, 10.0, 11.0, 16.0, 17.0, 19.0]);
        let cases = [
            // [0, 10): 8, 9 pass; [10, 20): 10, 11 pass, 16, 17, 19 rejected: the boundary
            // lets 4 through in 3 s.
            (
                Limit::FixedWindow {
                    rate: 2,
                    window_seconds: 10,
                },
                3,
            ),
            // 10 and 11 see 8 and 9 in (t - 10, t]; 16 and 17 too; at 19 both have left.
            (
                Limit::SlidingWindowLog {
                    rate: 2,
                    window_seconds: 10,
                },
                4,
            ),
            // At 10: 2 * (10 - 0) / 10 + 0 + 1 = 3 > 2; at 11: 2 * 0.9 + 1 = 2.8; at 16:
            // 2 * 0.4 + 1 = 1.8 passes; at 17: 2 * 0.3 + 2 = 2.6; at 19: 2 * 0.1 + 2 = 2.2.
            (
                Limit::SlidingWindowCounter {
                    rate: 2,
                    window_seconds: 10,
                },
                4,
            ),
            // GCRA, one token per 5 s, tolerance 5 s: TAT 13 after 8, 18 after 9; 10 and 11
            // find TAT 8 and 7 s ahead (> 5); 16 passes (TAT 23); 17 finds 6 s; 19 finds 4 s.
            (
                Limit::TokenBucket {
                    rate: 2,
                    window_seconds: 10,
                    burst: 2,
                },
                3,
            ),
            // Burst 1: strictly one per 5 s: 8 and 16 pass (TAT 13, then 21), the rest wait.
            (
                Limit::TokenBucket {
                    rate: 2,
                    window_seconds: 10,
                    burst: 1,
                },
                5,
            ),
            // A queue of 2 draining one per 5 s admits what a burst of 2 does.
            (
                Limit::LeakyBucket {
                    rate: 2,
                    window_seconds: 10,
                    queue: 2,
                },
                3,
            ),
        ];
        for (limit, want) in cases {
            assert_eq!(rejected(&limit, &arrivals), want, "{limit}");
        }
    }

    #[test]
    fn minute_counts_are_spread_evenly() {
        let minutes = Traffic::Minutes(vec![
            (Timestamp(0), 120),
            (Timestamp(MICROS_PER_MINUTE), 30),
        ]);
        let a = minutes.arrivals();
        assert_eq!(a.len(), 150);
        assert_eq!(&a[..3], &[250_000, 750_000, 1_250_000]);
        assert_eq!(a[120], MICROS_PER_MINUTE + MICROS_PER_SEC);
        let traffic = [ClientTraffic {
            client: "k".into(),
            anomalous: false,
            traffic: minutes,
            cost: None,
        }];
        // Fixed 100/min: 20 of the first minute's 120.
        let fixed = Limit::FixedWindow {
            rate: 100,
            window_seconds: 60,
        };
        assert_eq!(
            backtest(&fixed, &traffic, Counter::PerClient)
                .normal
                .rejected,
            20
        );
        // GCRA 60/min (one per second), burst 10, arrivals every 0.5 s from 0.25 s: after n
        // admissions TAT = 0.25 + n s, so arrival i passes while n <= 9 + i / 2: arrivals 0..=18
        // (19), then every other one, 20, 22, ..., 118 (50): 69 pass, 51 rejected. The second
        // minute (one every 2 s) finds TAT 69.25 s, 8.25 s ahead of 61 s, and drains: all pass.
        let gcra = Limit::TokenBucket {
            rate: 60,
            window_seconds: 60,
            burst: 10,
        };
        let report = backtest(&gcra, &traffic, Counter::PerClient);
        assert_eq!(report.clients[0].rejected, 51);
        assert!(!report.exact);
    }

    #[test]
    fn reports_split_normal_and_anomalous_clients() {
        let per_minute = |n: u32| {
            Traffic::Minutes(
                (0..3)
                    .map(|m| (Timestamp(m * MICROS_PER_MINUTE), n))
                    .collect(),
            )
        };
        let traffic = [
            ClientTraffic {
                client: "steady".into(),
                anomalous: false,
                traffic: per_minute(50),
                cost: None,
            },
            ClientTraffic {
                client: "busy".into(),
                anomalous: false,
                traffic: per_minute(100),
                cost: None,
            },
            ClientTraffic {
                client: "scraper".into(),
                anomalous: true,
                traffic: per_minute(300),
                cost: None,
            },
        ];
        let limit = Limit::FixedWindow {
            rate: 100,
            window_seconds: 60,
        };
        let r = backtest(&limit, &traffic, Counter::PerClient);
        assert_eq!(
            r.normal,
            GroupTotals {
                clients: 2,
                clients_limited: 0,
                requests: 450,
                rejected: 0
            }
        );
        assert_eq!(
            r.anomalous,
            GroupTotals {
                clients: 1,
                clients_limited: 1,
                requests: 900,
                rejected: 600
            }
        );
        assert_eq!(r.clients[2].rejected, 600);
    }

    #[test]
    fn a_shared_counter_splits_rejections_between_its_clients() {
        let one_minute = |n: u32| Traffic::Minutes(vec![(Timestamp(0), n)]);
        let traffic = [
            ClientTraffic {
                client: "a".into(),
                anomalous: false,
                traffic: one_minute(80),
                cost: None,
            },
            ClientTraffic {
                client: "b".into(),
                anomalous: true,
                traffic: one_minute(80),
                cost: None,
            },
        ];
        let limit = Limit::FixedWindow {
            rate: 100,
            window_seconds: 60,
        };
        // Same spread, ties alternate a, b: 50 of each pass, 30 of each are rejected.
        let r = backtest(&limit, &traffic, Counter::Shared);
        assert_eq!((r.clients[0].rejected, r.clients[1].rejected), (30, 30));
        // Per client, neither reaches 100.
        let r = backtest(&limit, &traffic, Counter::PerClient);
        assert_eq!(r.normal.rejected + r.anomalous.rejected, 0);
    }

    #[test]
    fn exact_timestamps_are_replayed_exactly() {
        // Ten requests within one second, then nothing: a per-minute view would spread them,
        // exact timestamps show the burst.
        let burst: Vec<Timestamp> = (0..10).map(|i| Timestamp(i * 100_000)).collect();
        let traffic = [ClientTraffic {
            client: "k".into(),
            anomalous: false,
            traffic: Traffic::Exact(burst),
            cost: None,
        }];
        let limit = Limit::TokenBucket {
            rate: 60,
            window_seconds: 60,
            burst: 3,
        };
        let r = backtest(&limit, &traffic, Counter::PerClient);
        assert!(r.exact);
        // 3 pass at once; the next token is 1 s later, after the burst: 7 rejected.
        assert_eq!(r.clients[0].rejected, 7);
        let spread = [ClientTraffic {
            client: "k".into(),
            anomalous: false,
            traffic: Traffic::Minutes(vec![(Timestamp(0), 10)]),
            cost: None,
        }];
        assert_eq!(
            backtest(&limit, &spread, Counter::PerClient).clients[0].rejected,
            0
        );
    }

    #[test]
    fn cost_unit_rules_charge_each_request_its_route_weight() {
        let per_minute = |n: u32| Traffic::Minutes(vec![(Timestamp(0), n)]);
        let traffic = [
            ClientTraffic {
                client: "reads".into(),
                anomalous: false,
                traffic: per_minute(60),
                cost: Some(1.0),
            },
            ClientTraffic {
                client: "exports".into(),
                anomalous: false,
                traffic: per_minute(60),
                cost: Some(2.5),
            },
        ];
        // 100 units a minute: 60 reads cost 60; exports cost 2.5 each, 40 fit, 20 rejected.
        let fixed = Limit::FixedWindow {
            rate: 100,
            window_seconds: 60,
        };
        let r = backtest(&fixed, &traffic, Counter::PerClient);
        assert_eq!((r.clients[0].rejected, r.clients[1].rejected), (0, 20));
        let log = Limit::SlidingWindowLog {
            rate: 100,
            window_seconds: 60,
        };
        let r = backtest(&log, &traffic, Counter::PerClient);
        assert_eq!((r.clients[0].rejected, r.clients[1].rejected), (0, 20));
        // A bucket of 5 units and three requests at once: at 2 units each the third does not
        // fit; at 1.67 they need 5.01 units, so the third is still rejected; at 1.6 (4.8) all
        // pass.
        let bucket = Limit::TokenBucket {
            rate: 10,
            window_seconds: 60,
            burst: 5,
        };
        let at_once = |cost: f64| {
            [ClientTraffic {
                client: "k".into(),
                anomalous: false,
                traffic: Traffic::Exact(vec![Timestamp(0); 3]),
                cost: Some(cost),
            }]
        };
        assert_eq!(
            backtest(&bucket, &at_once(2.0), Counter::PerClient).clients[0].rejected,
            1
        );
        assert_eq!(
            backtest(&bucket, &at_once(1.67), Counter::PerClient).clients[0].rejected,
            1
        );
        assert_eq!(
            backtest(&bucket, &at_once(1.6), Counter::PerClient).clients[0].rejected,
            0
        );
        // No cost, or a nonsensical one, counts requests.
        assert_eq!(
            backtest(&bucket, &at_once(f64::NAN), Counter::PerClient).clients[0].rejected,
            0
        );
    }
}
