//! The five rate-limit algorithms of `sluice_core::limit::Limit`, each with its state per key,
//! driven by an explicit `now` from a [`Clock`] and counting cost units.
//!
//! The semantics are exactly those `sluice_core::tuning::backtest` simulates (same integer
//! arithmetic, rejected requests never count), so a backtest predicts what a gateway does. On top
//! of the admission decision every check reports what the `RateLimit` headers need: the quota
//! remaining, the time until it is fully available again, the time until a rejected request could
//! pass, and for the leaky bucket how long an admitted request waits in the queue.
//!
//! Hand-written rather than `governor`: governor implements GCRA only, has no sliding windows, no
//! leaky-bucket queueing delay, and reports neither the remaining quota nor the reset time in the
//! form the headers need; keeping one integer model for all five keeps gateway and backtest equal.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sluice_core::limit::Limit;
use sluice_core::time::{Timestamp, MICROS_PER_SEC};

/// Where "now" comes from. Every algorithm takes its time from here, so tests drive time by hand
/// and a demo can run faster than real time.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> Timestamp;

    /// The real time to wait for `us` microseconds of this clock (a scaled clock waits less).
    fn real_wait(&self, us: i64) -> Duration {
        Duration::from_micros(us.max(0) as u64)
    }
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_chrono(chrono::Utc::now())
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock {
            now: AtomicI64::new(start.micros()),
        }
    }

    pub fn set(&self, t: Timestamp) {
        self.now.store(t.micros(), Ordering::SeqCst);
    }

    pub fn advance(&self, d: Duration) {
        self.now.fetch_add(d.as_micros() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.now.load(Ordering::SeqCst))
    }

    /// Nothing waits in real time on a manual clock.
    fn real_wait(&self, _us: i64) -> Duration {
        Duration::ZERO
    }
}

/// A clock that starts at `origin` and runs `factor` times faster than real time (a demo can
/// show an hour of traffic in a minute).
#[derive(Debug)]
pub struct ScaledClock {
    started: Instant,
    origin: Timestamp,
    factor: f64,
}

impl ScaledClock {
    /// `factor` must be positive; anything else is taken as 1.
    pub fn new(origin: Timestamp, factor: f64) -> ScaledClock {
        let factor = if factor.is_finite() && factor > 0.0 {
            factor
        } else {
            1.0
        };
        ScaledClock {
            started: Instant::now(),
            origin,
            factor,
        }
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> Timestamp {
        let us = self.started.elapsed().as_micros() as f64 * self.factor;
        Timestamp::from_micros(self.origin.micros().saturating_add(us as i64))
    }

    fn real_wait(&self, us: i64) -> Duration {
        Duration::from_micros((us.max(0) as f64 / self.factor) as u64)
    }
}

/// What one check decided and what the headers report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    /// Quota left after this request (in the rule's unit).
    pub remaining: u64,
    /// Microseconds until the full quota is available again.
    pub reset_us: i64,
    /// Rejected: microseconds until a request of the same cost could pass (0 when allowed).
    pub retry_after_us: i64,
    /// Leaky bucket: microseconds an admitted request waits in the queue before it is
    /// forwarded (0 for every other algorithm).
    pub delay_us: i64,
}

/// The state of one key. Rolling a window forward or dropping expired log entries never changes
/// a decision, so a check may do it even when it does not count the request.
#[derive(Clone, Debug)]
enum State {
    /// Fixed window and sliding window counter: the current aligned window, its count, the
    /// previous window's count.
    Window { k: i64, cur: u64, prev: u64 },
    /// Sliding window log: admitted (time, cost) inside the window and their sum.
    Log { log: VecDeque<(i64, u64)>, sum: u64 },
    /// Token and leaky bucket (GCRA): the theoretical arrival time in microseconds times the rate.
    Gcra { tat: i128 },
}

fn div_ceil(a: i128, b: i128) -> i128 {
    if a <= 0 {
        0
    } else {
        (a + b - 1) / b
    }
}

fn to_i64(x: i128) -> i64 {
    x.clamp(0, i128::from(i64::MAX)) as i64
}

impl State {
    fn fresh(limit: &Limit) -> State {
        match limit {
            Limit::FixedWindow { .. } | Limit::SlidingWindowCounter { .. } => State::Window {
                k: i64::MIN,
                cur: 0,
                prev: 0,
            },
            Limit::SlidingWindowLog { .. } => State::Log {
                log: VecDeque::new(),
                sum: 0,
            },
            Limit::TokenBucket { .. } | Limit::LeakyBucket { .. } => State::Gcra { tat: i128::MIN },
        }
    }

    /// Whether this state decides like a fresh one from `t` on (the key can be forgotten).
    fn is_idle(&self, limit: &Limit, w: i64, t: i64) -> bool {
        match self {
            State::Window { k, .. } => *k == i64::MIN || t.div_euclid(w) > k.saturating_add(1),
            State::Log { log, .. } => log.back().is_none_or(|&(a, _)| a <= t - w),
            State::Gcra { tat } => *tat <= i128::from(t) * i128::from(limit.rate().max(1)),
        }
    }

    /// Decide a request of `cost` at `t` (µs); count it when `commit` and allowed.
    fn check(&mut self, limit: &Limit, w: i64, t: i64, cost: u64, commit: bool) -> Outcome {
        let rate = limit.rate().max(1);
        let mut out = Outcome {
            allowed: false,
            remaining: 0,
            reset_us: 0,
            retry_after_us: 0,
            delay_us: 0,
        };
        match self {
            State::Window { k, cur, prev } => {
                let kt = t.div_euclid(w);
                if kt != *k {
                    *prev = if *k != i64::MIN && kt == k.saturating_add(1) {
                        *cur
                    } else {
                        0
                    };
                    *cur = 0;
                    *k = kt;
                }
                let elapsed = t - kt * w;
                let left = w - elapsed;
                if let Limit::FixedWindow { .. } = limit {
                    out.allowed = cur.saturating_add(cost) <= rate;
                    if out.allowed && commit {
                        *cur += cost;
                    }
                    let used = if out.allowed && !commit {
                        *cur + cost
                    } else {
                        *cur
                    };
                    out.remaining = rate.saturating_sub(used);
                    out.reset_us = if used > 0 { left } else { 0 };
                    out.retry_after_us = if out.allowed { 0 } else { left };
                } else {
                    let (wi, p, r) = (i128::from(w), i128::from(*prev), i128::from(rate));
                    let weighted = p * i128::from(left);
                    out.allowed = weighted + i128::from(cur.saturating_add(cost)) * wi <= r * wi;
                    if out.allowed && commit {
                        *cur += cost;
                    }
                    let c = i128::from(if out.allowed && !commit {
                        *cur + cost
                    } else {
                        *cur
                    });
                    out.remaining = ((r * wi - weighted - c * wi).max(0) / wi) as u64;
                    out.reset_us = if c > 0 {
                        left + w
                    } else if p > 0 {
                        left
                    } else {
                        0
                    };
                    if !out.allowed {
                        let cost = i128::from(cost);
                        out.retry_after_us = if c + cost <= r {
                            // Wait in this window until the previous one weighs little enough:
                            // prev * (w - e) <= (rate - cur - cost) * w.
                            let e = wi - (r - c - cost) * wi / p;
                            to_i64(e - i128::from(elapsed))
                        } else if cost > r || c == 0 {
                            // Never in this window; from the next one on, only the weight of
                            // this window's count stands in the way.
                            to_i64(i128::from(left) + wi)
                        } else {
                            let e = wi - (r - cost) * wi / c;
                            to_i64(i128::from(left) + e)
                        };
                    }
                }
            }
            State::Log { log, sum } => {
                while let Some(&(a, c)) = log.front() {
                    if a > t - w {
                        break;
                    }
                    log.pop_front();
                    *sum -= c;
                }
                out.allowed = sum.saturating_add(cost) <= rate;
                if out.allowed && commit {
                    log.push_back((t, cost));
                    *sum += cost;
                }
                let used = if out.allowed && !commit {
                    *sum + cost
                } else {
                    *sum
                };
                out.remaining = rate.saturating_sub(used);
                out.reset_us = match log.back() {
                    Some(&(a, _)) if !out.allowed || commit => a + w - t,
                    _ if used > 0 => w,
                    _ => 0,
                };
                if !out.allowed {
                    out.retry_after_us = w;
                    if cost <= rate {
                        // The oldest entries must leave until the request fits.
                        let mut freed = 0u64;
                        for &(a, c) in log.iter() {
                            freed += c;
                            if *sum - freed + cost <= rate {
                                out.retry_after_us = a + w - t;
                                break;
                            }
                        }
                    }
                }
            }
            State::Gcra { tat } => {
                // Scaled by the rate: one unit is `w` long, the bucket holds `b` units.
                let b = limit.burst().max(1);
                let r = i128::from(rate);
                let wi = i128::from(w);
                let now = i128::from(t) * r;
                let cap = i128::from(b) * wi;
                let start = (*tat).max(now);
                let end = start + wi * i128::from(cost);
                out.allowed = end - now <= cap;
                if out.allowed && commit {
                    *tat = end;
                }
                let after = if out.allowed { end } else { start };
                out.remaining = ((cap - (after - now)).max(0) / wi) as u64;
                out.reset_us = to_i64(div_ceil(after - now, r));
                if out.allowed {
                    if let Limit::LeakyBucket { .. } = limit {
                        out.delay_us = to_i64(div_ceil(start - now, r));
                    }
                } else {
                    out.retry_after_us = to_i64(div_ceil(end - now - cap, r));
                }
            }
        }
        out
    }
}

/// Default bound on the keys one limiter keeps.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

const SHARDS: usize = 16;

type Shard = Mutex<HashMap<Box<str>, Entry>>;

struct Entry {
    state: State,
    last_seen: i64,
}

/// One rule's counters: a [`Limit`] and the state of every key it has seen. At most `max_keys`
/// keys are kept: a new key in a full shard first drops keys that are idle (their state decides
/// like a fresh one), then the least recently seen half, so memory is bounded at the price of
/// forgetting the oldest active keys under a flood of new ones.
pub struct Limiter {
    limit: Limit,
    window_us: i64,
    max_per_shard: usize,
    shards: Box<[Shard]>,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("limit", &self.limit)
            .field("keys", &self.len())
            .finish()
    }
}

impl Limiter {
    pub fn new(limit: Limit) -> Limiter {
        Limiter::with_max_keys(limit, DEFAULT_MAX_KEYS)
    }

    pub fn with_max_keys(limit: Limit, max_keys: usize) -> Limiter {
        let shards = (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        Limiter {
            limit,
            window_us: (limit.window_seconds().max(1) as i64).saturating_mul(MICROS_PER_SEC),
            max_per_shard: max_keys.div_ceil(SHARDS).max(1),
            shards,
        }
    }

    pub fn limit(&self) -> &Limit {
        &self.limit
    }

    /// Keys currently held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().expect("limiter shard poisoned").len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: &str) -> &Shard {
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        &self.shards[h.finish() as usize % SHARDS]
    }

    /// Decide a request of `cost` units for `key` at `now`, counting it if allowed.
    pub fn check(&self, key: &str, cost: u64, now: Timestamp) -> Outcome {
        self.check_with(key, cost, now, true)
    }

    /// Decide without counting (the first phase of a decision over several rules).
    pub fn peek(&self, key: &str, cost: u64, now: Timestamp) -> Outcome {
        self.check_with(key, cost, now, false)
    }

    fn check_with(&self, key: &str, cost: u64, now: Timestamp, commit: bool) -> Outcome {
        let t = now.micros();
        let (limit, w) = (&self.limit, self.window_us);
        let mut shard = self.shard(key).lock().expect("limiter shard poisoned");
        if let Some(e) = shard.get_mut(key) {
            e.last_seen = e.last_seen.max(t);
            return e.state.check(limit, w, t, cost, commit);
        }
        let mut state = State::fresh(limit);
        let out = state.check(limit, w, t, cost, commit);
        if commit && out.allowed {
            if shard.len() >= self.max_per_shard {
                evict(&mut shard, limit, w, t, self.max_per_shard);
            }
            shard.insert(
                key.into(),
                Entry {
                    state,
                    last_seen: t,
                },
            );
        }
        out
    }
}

fn evict(shard: &mut HashMap<Box<str>, Entry>, limit: &Limit, w: i64, t: i64, max: usize) {
    shard.retain(|_, e| !e.state.is_idle(limit, w, t));
    if shard.len() < max {
        return;
    }
    let mut seen: Vec<i64> = shard.values().map(|e| e.last_seen).collect();
    let mid = seen.len() / 2;
    let (_, cut, _) = seen.select_nth_unstable(mid);
    let cut = *cut;
    shard.retain(|_, e| e.last_seen > cut);
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = MICROS_PER_SEC;

    fn at(us: i64) -> Timestamp {
        Timestamp::from_micros(us)
    }

    fn allowed(l: &Limiter, t: i64, n: usize) -> usize {
        (0..n).filter(|_| l.check("k", 1, at(t)).allowed).count()
    }

    #[test]
    fn fixed_window_admits_a_double_burst_across_a_boundary() {
        let l = Limiter::new(Limit::FixedWindow {
            rate: 10,
            window_seconds: 60,
        });
        // 10 in the last second of one window, 10 in the first second of the next: 20 within
        // two seconds, which is the known weakness of fixed windows.
        assert_eq!(allowed(&l, 59 * S, 12), 10);
        let o = l.check("k", 1, at(59 * S + S / 2));
        assert!(!o.allowed);
        assert_eq!(o.retry_after_us, S / 2);
        assert_eq!(o.remaining, 0);
        assert_eq!(allowed(&l, 60 * S, 12), 10);
        let o = l.check("other", 1, at(60 * S));
        assert_eq!((o.allowed, o.remaining, o.reset_us), (true, 9, 60 * S));
    }

    #[test]
    fn sliding_window_log_is_exact() {
        let l = Limiter::new(Limit::SlidingWindowLog {
            rate: 3,
            window_seconds: 10,
        });
        for s in [0, 1, 2] {
            assert!(l.check("k", 1, at(s * S)).allowed);
        }
        // Just before the first entry leaves the window (t - w, t]: rejected, and told exactly
        // when it could pass.
        let o = l.check("k", 1, at(10 * S - 1));
        assert!(!o.allowed);
        assert_eq!(o.retry_after_us, 1);
        assert_eq!(o.reset_us, 2 * S + 1);
        assert!(l.check("k", 1, at(10 * S)).allowed);
        assert!(!l.check("k", 1, at(10 * S)).allowed);
        // A request costing 2 units waits for two entries to leave (t=1 and t=2).
        let o = l.check("k", 2, at(10 * S + 1));
        assert_eq!(o.retry_after_us, 12 * S - (10 * S + 1));
    }

    #[test]
    fn sliding_window_counter_weights_the_previous_window() {
        let l = Limiter::new(Limit::SlidingWindowCounter {
            rate: 10,
            window_seconds: 60,
        });
        assert_eq!(allowed(&l, 0, 10), 10);
        // Half way into the next window the previous one weighs 10 * 30/60 = 5: five more fit.
        let o = l.peek("k", 1, at(90 * S));
        assert_eq!((o.allowed, o.remaining), (true, 4));
        assert_eq!(allowed(&l, 90 * S, 10), 5);
        let o = l.check("k", 1, at(90 * S));
        assert!(!o.allowed);
        // cur = 5 + 1 > 10 - 10*(60-e)/60 until e = 60 - (10 - 5 - 1) * 6 = 36 s.
        assert_eq!(o.retry_after_us, 6 * S);
        assert!(!l.check("k", 1, at(96 * S - 1)).allowed);
        assert!(l.check("k", 1, at(96 * S)).allowed);
        // The window after next forgets both.
        assert_eq!(allowed(&l, 180 * S, 12), 10);
    }

    #[test]
    fn token_bucket_bursts_then_admits_the_steady_rate() {
        let l = Limiter::new(Limit::TokenBucket {
            rate: 60,
            window_seconds: 60,
            burst: 5,
        });
        assert_eq!(allowed(&l, 0, 8), 5);
        let o = l.check("k", 1, at(0));
        assert_eq!((o.allowed, o.retry_after_us, o.remaining), (false, S, 0));
        // Then one per second: the emission interval is 60 s / 60.
        for s in 1..=10 {
            assert_eq!(allowed(&l, s * S, 3), 1, "second {s}");
        }
        // Idle for long enough, the bucket is full again.
        let o = l.check("k", 1, at(100 * S));
        assert_eq!((o.allowed, o.remaining, o.reset_us), (true, 4, S));
        assert_eq!(o.delay_us, 0);
        // A request costing 3 units uses three tokens.
        let o = l.check("k", 3, at(100 * S));
        assert_eq!((o.allowed, o.remaining), (true, 1));
    }

    #[test]
    fn leaky_bucket_delays_until_the_queue_is_full_then_rejects() {
        let l = Limiter::new(Limit::LeakyBucket {
            rate: 1,
            window_seconds: 1,
            queue: 3,
        });
        let delays: Vec<i64> = (0..3)
            .map(|_| {
                let o = l.check("k", 1, at(0));
                assert!(o.allowed);
                o.delay_us
            })
            .collect();
        // Smoothing: admitted requests leave one per second, in order.
        assert_eq!(delays, [0, S, 2 * S]);
        let o = l.check("k", 1, at(0));
        assert_eq!((o.allowed, o.retry_after_us), (false, S));
        // One place frees every second.
        let o = l.check("k", 1, at(S));
        assert_eq!((o.allowed, o.delay_us), (true, 2 * S));
        assert!(!l.check("k", 1, at(S)).allowed);
    }

    #[test]
    fn peeking_counts_nothing() {
        for limit in [
            Limit::FixedWindow {
                rate: 2,
                window_seconds: 10,
            },
            Limit::SlidingWindowLog {
                rate: 2,
                window_seconds: 10,
            },
            Limit::SlidingWindowCounter {
                rate: 2,
                window_seconds: 10,
            },
            Limit::TokenBucket {
                rate: 2,
                window_seconds: 10,
                burst: 2,
            },
            Limit::LeakyBucket {
                rate: 2,
                window_seconds: 10,
                queue: 2,
            },
        ] {
            let l = Limiter::new(limit);
            for _ in 0..5 {
                let o = l.peek("k", 1, at(S));
                assert_eq!((o.allowed, o.remaining), (true, 1), "{limit}");
            }
            assert!(l.is_empty());
            assert_eq!(allowed(&l, S, 5), 2, "{limit}");
            assert!(!l.peek("k", 1, at(S)).allowed, "{limit}");
        }
    }

    #[test]
    fn key_state_is_bounded_and_idle_keys_go_first() {
        let l = Limiter::with_max_keys(
            Limit::FixedWindow {
                rate: 1,
                window_seconds: 1,
            },
            SHARDS * 4,
        );
        for i in 0..1000 {
            l.check(&format!("k{i}"), 1, at(i * S));
        }
        assert!(l.len() <= SHARDS * 4, "{}", l.len());
        // Active keys under a flood of new ones are bounded too.
        let l = Limiter::with_max_keys(
            Limit::FixedWindow {
                rate: 1,
                window_seconds: 3600,
            },
            SHARDS * 4,
        );
        for i in 0..1000 {
            l.check(&format!("k{i}"), 1, at(0));
        }
        assert!(l.len() <= SHARDS * 4, "{}", l.len());
        assert!(!l.is_empty());
    }

    #[test]
    fn clocks() {
        let c = ManualClock::new(at(5));
        c.advance(Duration::from_millis(2));
        assert_eq!(c.now(), at(2005));
        c.set(at(1));
        assert_eq!(c.now(), at(1));
        let s = ScaledClock::new(at(0), 60.0);
        assert_eq!(s.real_wait(60 * S), Duration::from_secs(1));
        assert!(s.now() >= at(0));
    }
}
