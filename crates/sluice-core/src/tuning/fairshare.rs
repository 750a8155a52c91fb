//! Fair sharing of a capacity under predicted overload, in the spirit of Doorman's fair share:
//! weighted max-min fairness where the weight comes from reputation, inside strict route
//! priority classes (critical routes keep their capacity, best-effort routes shed first).
//!
//! Within a class, every client whose demand fits under the common water level gets its whole
//! demand; the others get `level * weight`. Raising reputation raises the weight, so
//! low-reputation clients give up capacity first.
//!
//! [`share_by_route`] applies it on two levels: the total capacity among routes (by class),
//! then each overloaded route's capacity among the clients of that route (by reputation).

use serde::{Deserialize, Serialize};

/// How a route's traffic ranks under overload (configured per route).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriorityClass {
    /// Payments, login: served first, in full while capacity allows.
    Critical,
    Normal,
    /// Shed first.
    BestEffort,
}

impl PriorityClass {
    pub const ALL: [PriorityClass; 3] = [
        PriorityClass::Critical,
        PriorityClass::Normal,
        PriorityClass::BestEffort,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            PriorityClass::Critical => "critical",
            PriorityClass::Normal => "normal",
            PriorityClass::BestEffort => "best_effort",
        }
    }
}

/// One client's (or client and route's) demand on a shared capacity, per minute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Demand {
    pub id: String,
    /// What it would send (forecast or suggested limit), per minute.
    pub demand: f64,
    /// In [0, 1].
    pub reputation: f64,
    pub priority: PriorityClass,
}

/// What one demand is granted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    pub id: String,
    pub demand: f64,
    pub allocated: f64,
    /// The weight it was shared with.
    pub weight: f64,
    pub priority: PriorityClass,
    pub reason: String,
}

/// Weights; defaults in `docs/tuning.md`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FairShareConfig {
    /// weight = max(reputation ^ exponent, min_weight): an exponent above 1 makes low reputation
    /// give up capacity faster than proportionally.
    pub reputation_exponent: f64,
    /// No client's weight falls below this, so nobody is starved to zero by weight alone.
    pub min_weight: f64,
}

impl Default for FairShareConfig {
    fn default() -> Self {
        FairShareConfig {
            reputation_exponent: 2.0,
            min_weight: 0.05,
        }
    }
}

impl FairShareConfig {
    pub fn weight(&self, reputation: f64) -> f64 {
        reputation
            .clamp(0.0, 1.0)
            .powf(self.reputation_exponent)
            .max(self.min_weight)
    }
}

/// Share `capacity` (per minute) among `demands`; allocations come back in the input's order.
/// Classes are served in order critical, normal, best effort; each takes what it needs of what
/// is left, and a class that does not fit is shared by weighted max-min (water-filling). The
/// allocations never sum to more than the capacity, and sum to `min(capacity, total demand)`.
pub fn fair_share(capacity: f64, demands: &[Demand], cfg: &FairShareConfig) -> Vec<Allocation> {
    let mut alloc = vec![0.0f64; demands.len()];
    let mut level_of = vec![None::<f64>; demands.len()];
    let weights: Vec<f64> = demands.iter().map(|d| cfg.weight(d.reputation)).collect();
    let mut remaining = capacity.max(0.0);
    for class in PriorityClass::ALL {
        let members: Vec<usize> = (0..demands.len())
            .filter(|&i| demands[i].priority == class && demands[i].demand > 0.0)
            .collect();
        let total: f64 = members.iter().map(|&i| demands[i].demand).sum();
        if total <= remaining {
            for &i in &members {
                alloc[i] = demands[i].demand;
            }
            remaining -= total;
            continue;
        }
        // Water-filling: repeatedly satisfy everyone whose remaining demand fits under the
        // current level; when nobody fits, the rest share what is left by weight.
        let mut open = members;
        let mut left = remaining;
        while !open.is_empty() && left > 0.0 {
            let total_w: f64 = open.iter().map(|&i| weights[i]).sum();
            let level = left / total_w;
            let (fits, rest): (Vec<usize>, Vec<usize>) = open
                .iter()
                .partition(|&&i| demands[i].demand <= level * weights[i]);
            if fits.is_empty() {
                for &i in &rest {
                    alloc[i] = level * weights[i];
                    level_of[i] = Some(level);
                }
                left = 0.0;
                break;
            }
            for &i in &fits {
                alloc[i] = demands[i].demand;
                left -= demands[i].demand;
            }
            open = rest;
        }
        remaining = left.max(0.0);
    }
    demands
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let reason = if d.demand <= 0.0 {
                "no demand".to_owned()
            } else if alloc[i] >= d.demand {
                format!("{} class: full demand {:.1}/min", d.priority.as_str(), d.demand)
            } else if alloc[i] <= 0.0 {
                format!(
                    "{} class: shed, no capacity left after higher classes",
                    d.priority.as_str()
                )
            } else {
                format!(
                    "{} class under overload: fair share {:.1} of {:.1}/min (weight {:.2} from reputation {:.2}, level {:.1})",
                    d.priority.as_str(),
                    alloc[i],
                    d.demand,
                    weights[i],
                    d.reputation,
                    level_of[i].unwrap_or(0.0)
                )
            };
            Allocation {
                id: d.id.clone(),
                demand: d.demand,
                allocated: alloc[i],
                weight: weights[i],
                priority: d.priority,
                reason,
            }
        })
        .collect()
}

/// The clients of one route under predicted overload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteLoad {
    /// The normalised route (`/v1/payments`).
    pub route: String,
    pub priority: PriorityClass,
    /// The route's own predicted capacity per minute, when it is overloaded (capacity factor
    /// below 1) and the capacity is known; `None` otherwise.
    pub capacity: Option<f64>,
    /// Each client's demand on the route (`id` = the client; the `priority` field is ignored:
    /// every client of a route has the route's class).
    pub clients: Vec<Demand>,
}

/// How one route's capacity was shared among its clients.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteShare {
    pub route: String,
    pub priority: PriorityClass,
    /// Sum of its clients' demands, per minute.
    pub demand: f64,
    /// Its own capacity (as given).
    pub capacity: Option<f64>,
    /// What sharing the total capacity among routes granted it (`None` when the total was not
    /// known or all routes' demand fitted in it).
    pub granted: Option<f64>,
    /// The capacity its clients shared: the lower of `capacity` and `granted`, `None` when
    /// neither applies (nobody is cut).
    pub shared: Option<f64>,
    /// One per client, in input order.
    pub allocations: Vec<Allocation>,
    /// Clients granted less than their demand.
    pub cut: usize,
}

/// Two-level fair share under predicted overload:
///
/// 1. When `total` (the capacity of all routes together, per minute) is known and the routes'
///    demands add up to more, it is shared among the routes by [`fair_share`] with each route's
///    class (critical routes in full first, best-effort routes get what is left; routes of one
///    class share by max-min with equal weights).
/// 2. Each route whose capacity (its own, or what step 1 granted it, whichever is lower) is
///    below its demand shares it among its clients by [`fair_share`] weighted by reputation.
///
/// A route with neither an own capacity nor a grant, or whose demand fits, grants every client
/// its full demand. Routes come back in input order.
pub fn share_by_route(
    total: Option<f64>,
    routes: &[RouteLoad],
    cfg: &FairShareConfig,
) -> Vec<RouteShare> {
    let demand_of = |r: &RouteLoad| -> f64 { r.clients.iter().map(|c| c.demand.max(0.0)).sum() };
    let demands: Vec<f64> = routes.iter().map(demand_of).collect();
    let all: f64 = demands.iter().sum();
    let granted: Vec<Option<f64>> = match total {
        Some(t) if all > t => {
            let per_route: Vec<Demand> = routes
                .iter()
                .zip(&demands)
                .map(|(r, &d)| Demand {
                    id: r.route.clone(),
                    demand: d,
                    reputation: 1.0,
                    priority: r.priority,
                })
                .collect();
            fair_share(t, &per_route, cfg)
                .into_iter()
                .map(|a| Some(a.allocated))
                .collect()
        }
        _ => vec![None; routes.len()],
    };
    routes
        .iter()
        .zip(demands)
        .zip(granted)
        .map(|((r, demand), granted)| {
            let shared = match (r.capacity, granted) {
                (Some(c), Some(g)) => Some(c.min(g)),
                (c, g) => c.or(g),
            };
            let clients: Vec<Demand> = r
                .clients
                .iter()
                .map(|c| Demand {
                    priority: r.priority,
                    ..c.clone()
                })
                .collect();
            let allocations = match shared {
                Some(cap) if demand > cap => fair_share(cap.max(0.0), &clients, cfg),
                // Room for everyone: a capacity far above the demand grants each its demand.
                _ => fair_share(f64::INFINITY, &clients, cfg),
            };
            let cut = allocations
                .iter()
                .filter(|a| a.allocated + 1e-9 < a.demand)
                .count();
            RouteShare {
                route: r.route.clone(),
                priority: r.priority,
                demand,
                capacity: r.capacity,
                granted,
                shared,
                allocations,
                cut,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(id: &str, demand: f64, reputation: f64, priority: PriorityClass) -> Demand {
        Demand {
            id: id.into(),
            demand,
            reputation,
            priority,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// The properties every allocation must have: never above demand, sum within capacity and
    /// work-conserving, strict priority, and weighted max-min inside the class that was cut.
    fn check_properties(capacity: f64, demands: &[Demand], got: &[Allocation]) {
        let sum: f64 = got.iter().map(|a| a.allocated).sum();
        let total: f64 = demands.iter().map(|d| d.demand.max(0.0)).sum();
        assert!(sum <= capacity + 1e-9, "sum {sum} > capacity {capacity}");
        assert!(close(sum, capacity.min(total)), "sum {sum}, total {total}");
        for a in got {
            assert!(a.allocated >= 0.0 && a.allocated <= a.demand.max(0.0) + 1e-9);
        }
        // A class gets anything only once every higher class got all it asked for.
        for a in got.iter().filter(|a| a.allocated > 0.0) {
            for b in got.iter().filter(|b| b.priority < a.priority) {
                assert!(
                    close(b.allocated, b.demand),
                    "{} cut while {} is served",
                    b.id,
                    a.id
                );
            }
        }
        // Max-min: inside a class, every cut client sits at the same level allocated / weight,
        // and no satisfied client is above it.
        for class in PriorityClass::ALL {
            let members: Vec<&Allocation> = got.iter().filter(|a| a.priority == class).collect();
            let cut: Vec<f64> = members
                .iter()
                .filter(|a| a.allocated < a.demand - 1e-9 && a.allocated > 0.0)
                .map(|a| a.allocated / a.weight)
                .collect();
            if let Some(&level) = cut.first() {
                assert!(cut.iter().all(|l| close(*l, level)), "{class:?}: {cut:?}");
                for a in &members {
                    assert!(
                        a.allocated / a.weight <= level + 1e-9,
                        "{} above level",
                        a.id
                    );
                }
            }
        }
    }

    #[test]
    fn enough_capacity_grants_every_demand() {
        let demands = [
            d("a", 100.0, 1.0, PriorityClass::Normal),
            d("b", 50.0, 0.1, PriorityClass::BestEffort),
        ];
        let got = fair_share(1000.0, &demands, &FairShareConfig::default());
        check_properties(1000.0, &demands, &got);
        assert_eq!(got[0].allocated, 100.0);
        assert_eq!(got[1].allocated, 50.0);
        assert_eq!(got[1].reason, "best_effort class: full demand 50.0/min");
    }

    #[test]
    fn equal_weights_give_max_min_fairness() {
        // Capacity 90 over demands 10, 50, 60 with equal weight: 10 is satisfied, the others
        // get 40 each.
        let demands = [
            d("small", 10.0, 1.0, PriorityClass::Normal),
            d("mid", 50.0, 1.0, PriorityClass::Normal),
            d("big", 60.0, 1.0, PriorityClass::Normal),
        ];
        let got = fair_share(90.0, &demands, &FairShareConfig::default());
        check_properties(90.0, &demands, &got);
        let a: Vec<f64> = got.iter().map(|a| a.allocated).collect();
        assert_eq!(a, [10.0, 40.0, 40.0]);
    }

    #[test]
    fn low_reputation_gives_up_capacity_first() {
        // Weights 1.0 and 0.25 (reputation 0.5 squared); capacity 100, demands 100 each:
        // level 100 / 1.25 = 80, so 80 and 20.
        let demands = [
            d("good", 100.0, 1.0, PriorityClass::Normal),
            d("shady", 100.0, 0.5, PriorityClass::Normal),
        ];
        let got = fair_share(100.0, &demands, &FairShareConfig::default());
        check_properties(100.0, &demands, &got);
        assert!(close(got[0].allocated, 80.0));
        assert!(close(got[1].allocated, 20.0));
        assert_eq!(
            got[1].reason,
            "normal class under overload: fair share 20.0 of 100.0/min (weight 0.25 from reputation 0.50, level 80.0)"
        );
        // Reputation 0.1 hits the minimum weight 0.05.
        let demands = [
            d("good", 100.0, 1.0, PriorityClass::Normal),
            d("bad", 100.0, 0.1, PriorityClass::Normal),
        ];
        let got = fair_share(105.0, &demands, &FairShareConfig::default());
        check_properties(105.0, &demands, &got);
        assert!(close(got[0].allocated, 100.0));
        assert!(close(got[1].allocated, 5.0));
    }

    #[test]
    fn critical_routes_keep_capacity_and_best_effort_sheds_first() {
        let demands = [
            d("payments", 300.0, 0.2, PriorityClass::Critical),
            d("browse-a", 400.0, 1.0, PriorityClass::Normal),
            d("browse-b", 400.0, 1.0, PriorityClass::Normal),
            d("reports", 200.0, 1.0, PriorityClass::BestEffort),
        ];
        let got = fair_share(1000.0, &demands, &FairShareConfig::default());
        check_properties(1000.0, &demands, &got);
        let a: Vec<f64> = got.iter().map(|a| a.allocated).collect();
        assert_eq!(a, [300.0, 350.0, 350.0, 0.0]);
        assert_eq!(
            got[3].reason,
            "best_effort class: shed, no capacity left after higher classes"
        );
        // Less capacity than the critical class needs: only critical traffic is served.
        let got = fair_share(200.0, &demands, &FairShareConfig::default());
        check_properties(200.0, &demands, &got);
        assert!(close(got[0].allocated, 200.0));
        assert!(got[1..].iter().all(|a| a.allocated == 0.0));
    }

    #[test]
    fn properties_hold_over_many_mixed_cases() {
        // Deterministic pseudo-random cases (a small LCG), so a failure is reproducible.
        let mut x: u64 = 12345;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as f64 / (1u64 << 31) as f64
        };
        for _ in 0..300 {
            let n = 1 + (next() * 12.0) as usize;
            let demands: Vec<Demand> = (0..n)
                .map(|i| {
                    let class = PriorityClass::ALL[(next() * 3.0) as usize % 3];
                    d(&format!("c{i}"), (next() * 500.0).floor(), next(), class)
                })
                .collect();
            let capacity = (next() * 2000.0).floor();
            let got = fair_share(capacity, &demands, &FairShareConfig::default());
            check_properties(capacity, &demands, &got);
        }
    }

    #[test]
    fn zero_capacity_sheds_everything() {
        let demands = [d("a", 10.0, 1.0, PriorityClass::Critical)];
        let got = fair_share(0.0, &demands, &FairShareConfig::default());
        assert_eq!(got[0].allocated, 0.0);
        check_properties(0.0, &demands, &got);
    }

    type Client<'a> = (&'a str, f64, f64);
    type RouteCase<'a> = (&'a str, PriorityClass, Option<f64>, &'a [Client<'a>]);
    /// (route, granted, shared, allocations in client order)
    type RouteWant<'a> = (&'a str, Option<f64>, Option<f64>, &'a [f64]);
    /// (name, total, routes, wanted)
    type ShareCase<'a> = (
        &'a str,
        Option<f64>,
        &'a [RouteCase<'a>],
        &'a [RouteWant<'a>],
    );

    #[test]
    fn share_by_route_serves_route_classes_then_shares_each_route_by_reputation() {
        use PriorityClass::{BestEffort, Critical, Normal};
        let cases: &[ShareCase] = &[
            (
                // The engine test's numbers: the total (105) does not cover both routes (120):
                // payments (critical) keeps its 60, reports (best effort) gets 45, below its
                // own 60, and its low-reputation client gives up the 15 missing.
                "critical keeps, best effort sheds its low-reputation client first",
                Some(105.0),
                &[
                    (
                        "/v1/payments",
                        Critical,
                        Some(120.0),
                        &[("good", 30.0, 0.95), ("bad", 30.0, 0.1)],
                    ),
                    (
                        "/v1/reports",
                        BestEffort,
                        Some(60.0),
                        &[("good", 30.0, 0.95), ("bad", 30.0, 0.1)],
                    ),
                ],
                &[
                    ("/v1/payments", Some(60.0), Some(60.0), &[30.0, 30.0]),
                    ("/v1/reports", Some(45.0), Some(45.0), &[30.0, 15.0]),
                ],
            ),
            (
                // No total known: each route's own capacity, weighted by reputation (weights 1
                // and 0.25, level 80).
                "own capacity only",
                None,
                &[(
                    "/a",
                    Normal,
                    Some(100.0),
                    &[("good", 100.0, 1.0), ("shady", 100.0, 0.5)],
                )],
                &[("/a", None, Some(100.0), &[80.0, 20.0])],
            ),
            (
                "demand fits the total and no route has its own capacity: nobody is cut",
                Some(1000.0),
                &[
                    ("/a", BestEffort, None, &[("x", 100.0, 0.1)]),
                    ("/b", Normal, None, &[("y", 200.0, 1.0)]),
                ],
                &[("/a", None, None, &[100.0]), ("/b", None, None, &[200.0])],
            ),
            (
                "an own capacity below the grant wins",
                Some(150.0),
                &[
                    (
                        "/a",
                        Normal,
                        Some(40.0),
                        &[("x", 50.0, 1.0), ("y", 50.0, 1.0)],
                    ),
                    ("/b", Normal, None, &[("z", 100.0, 1.0)]),
                ],
                // Routes share 150 max-min with equal weights: 75 each; /a keeps its own 40.
                &[
                    ("/a", Some(75.0), Some(40.0), &[20.0, 20.0]),
                    ("/b", Some(75.0), Some(75.0), &[75.0]),
                ],
            ),
            (
                "a critical route is still bounded by its own capacity",
                None,
                &[(
                    "/login",
                    Critical,
                    Some(30.0),
                    &[("x", 20.0, 1.0), ("y", 20.0, 1.0)],
                )],
                &[("/login", None, Some(30.0), &[15.0, 15.0])],
            ),
            (
                "an own capacity above the demand cuts nobody",
                None,
                &[("/a", Normal, Some(500.0), &[("x", 20.0, 0.0)])],
                &[("/a", None, Some(500.0), &[20.0])],
            ),
            (
                "with no capacity left, a best-effort route is shed entirely",
                Some(50.0),
                &[
                    ("/pay", Critical, None, &[("x", 60.0, 1.0)]),
                    (
                        "/report",
                        BestEffort,
                        None,
                        &[("x", 10.0, 1.0), ("y", 10.0, 0.2)],
                    ),
                ],
                &[
                    ("/pay", Some(50.0), Some(50.0), &[50.0]),
                    ("/report", Some(0.0), Some(0.0), &[0.0, 0.0]),
                ],
            ),
        ];
        for (name, total, routes, want) in cases {
            let loads: Vec<RouteLoad> = routes
                .iter()
                .map(|(route, class, cap, clients)| RouteLoad {
                    route: (*route).into(),
                    priority: *class,
                    capacity: *cap,
                    clients: clients
                        .iter()
                        // The given class is ignored: every client has its route's.
                        .map(|(id, demand, rep)| d(id, *demand, *rep, BestEffort))
                        .collect(),
                })
                .collect();
            let got = share_by_route(*total, &loads, &FairShareConfig::default());
            assert_eq!(got.len(), want.len(), "{name}");
            for (g, (route, granted, shared, allocs)) in got.iter().zip(want.iter()) {
                assert_eq!(g.route, *route, "{name}");
                let same = |a: Option<f64>, b: Option<f64>| match (a, b) {
                    (Some(a), Some(b)) => close(a, b),
                    (a, b) => a.is_none() && b.is_none(),
                };
                assert!(
                    same(g.granted, *granted),
                    "{name} {route}: granted {:?}",
                    g.granted
                );
                assert!(
                    same(g.shared, *shared),
                    "{name} {route}: shared {:?}",
                    g.shared
                );
                let a: Vec<f64> = g.allocations.iter().map(|a| a.allocated).collect();
                assert_eq!(a.len(), allocs.len(), "{name} {route}");
                for (x, y) in a.iter().zip(allocs.iter()) {
                    assert!(close(*x, *y), "{name} {route}: {a:?} != {allocs:?}");
                }
                assert!(g.allocations.iter().all(|a| a.priority == g.priority));
                let cut = g
                    .allocations
                    .iter()
                    .filter(|a| a.allocated + 1e-9 < a.demand)
                    .count();
                assert_eq!(g.cut, cut, "{name} {route}");
                let sum: f64 = a.iter().sum();
                if let Some(s) = g.shared {
                    assert!(sum <= s + 1e-9, "{name} {route}: {sum} > {s}");
                }
            }
            if let Some(t) = total {
                let sum: f64 = got
                    .iter()
                    .flat_map(|g| &g.allocations)
                    .map(|a| a.allocated)
                    .sum();
                assert!(sum <= t + 1e-9, "{name}: {sum} > total {t}");
            }
        }
    }
}
