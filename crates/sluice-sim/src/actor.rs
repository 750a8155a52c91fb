//! Who sends traffic: one actor per identity (API client, browser, batch job, attacker), each with
//! its own random stream, active window and behaviour.
//!
//! Generation runs in two steps per log minute: [`Actor::emit`] draws how many requests the actor
//! sends in the minute and when (a Poisson count around [`Actor::expected`], so the expected
//! volume is known before anything is generated), then, once the minute's requests from every
//! actor are sorted by time, [`Actor::build`] fills in each request in time order (sequential ids,
//! routes, statuses, sizes).

use std::borrow::Cow;
use std::f64::consts::TAU;
use std::net::IpAddr;

use rand::Rng;
use sluice_core::time::{MICROS_PER_MINUTE, MICROS_PER_SEC};
use sluice_core::{AccessRecord, Timestamp};

use crate::catalog::{self, RouteId, PRODUCTS};
use crate::dist::{self, SimRng};

/// `Host` of every simulated request.
pub const HOST: &str = "api.example.com";
const PROTOCOL: &str = "HTTP/1.1";
const BROWSER_REFERER: &str = "https://www.example.com/";
/// Mean number of static assets a browser page view pulls (uniform 0..=3).
const MEAN_STATIC: f64 = 1.5;
const HOUR_US: i64 = 3600 * MICROS_PER_SEC;
const DAY_US: i64 = 24 * HOUR_US;
/// AR(1) log-noise of API client rates: x' = PHI x + SIGMA n.
const NOISE_PHI: f64 = 0.9;
const NOISE_SIGMA: f64 = 0.15;
pub(crate) const NOISE_VAR: f64 = NOISE_SIGMA * NOISE_SIGMA / (1.0 - NOISE_PHI * NOISE_PHI);

/// A request slot: when, whose, and (for browsers) whether it is a page or one of its assets.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pending {
    pub ts: i64,
    pub actor: u32,
    pub seq: u32,
    pub asset: bool,
}

/// The flash crowd as the actors see it.
#[derive(Debug)]
pub(crate) struct Flash {
    pub from: i64,
    pub to: i64,
    pub multiplier: f64,
    pub hot_product: u32,
}

impl Flash {
    /// 0 outside the window, rising linearly to 1 over 3 minutes and falling over the last 5
    /// (shorter for short windows).
    pub fn ramp(&self, t: i64) -> f64 {
        if t < self.from || t >= self.to {
            return 0.0;
        }
        let len = (self.to - self.from) as f64;
        let up = (3.0 * MICROS_PER_MINUTE as f64).min(len / 3.0);
        let down = (5.0 * MICROS_PER_MINUTE as f64).min(len / 3.0);
        ((t - self.from) as f64 / up)
            .min((self.to - t) as f64 / down)
            .min(1.0)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Ctx {
    pub flash: Option<Flash>,
}

impl Ctx {
    fn ramp(&self, t: i64) -> f64 {
        self.flash.as_ref().map_or(0.0, |f| f.ramp(t))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BatchKind {
    /// Pages through `/v1/products?page=N`.
    Products,
    /// Reads `/v1/orders/{id}` from a cursor.
    Orders,
}

#[derive(Debug)]
pub(crate) enum Behaviour {
    /// Requests per minute follow `rate * (1 + amp sin(2 pi (hour - phase) / 24))` times a
    /// slowly varying log-normal noise; routes from a fixed mix (cumulative weights).
    Client {
        rate: f64,
        amp: f64,
        phase_h: f64,
        routes: Vec<RouteId>,
        /// Cumulative weights of `routes`.
        cum: Vec<f64>,
        order_base: u32,
        user_base: u32,
    },
    /// Page views during sessions; each pulls 0 to 3 static assets right after.
    Browser {
        sessions: Vec<(i64, i64)>,
        page_rate: f64,
        /// Arrived with the flash crowd: mostly the popular page.
        crowd: bool,
    },
    /// Bursts at `offset` after the top of every hour for `burst`, quiet otherwise.
    Batch {
        offset: i64,
        burst: i64,
        rate: f64,
        kind: BatchKind,
        export: bool,
        order_base: u32,
        hour: i64,
        cursor: u32,
    },
    Scraper {
        rate: f64,
        next: u32,
    },
    Stuffer {
        rate: f64,
    },
    Enumerator {
        rate: f64,
        next: u32,
    },
    Compromised {
        rate: f64,
        next_user: u32,
    },
    Prober {
        rate: f64,
        i: usize,
    },
    Flooder {
        rate: f64,
    },
}

#[derive(Debug)]
pub(crate) struct Actor {
    pub key: Option<String>,
    pub ips: Vec<IpAddr>,
    pub ua: &'static str,
    pub rng: SimRng,
    /// Active window `[from, to)` in log-time microseconds.
    pub from: i64,
    pub to: i64,
    /// Legitimate traffic is scaled to reach `target_lines`; attacks are not.
    pub legit: bool,
    /// Takes part in the flash crowd.
    pub flash: bool,
    /// The first request has been sent (every actor sends at least one, in its first active
    /// minute).
    pub started: bool,
    pub noise: f64,
    pub seq: u32,
    pub b: Behaviour,
}

impl Actor {
    pub fn new(b: Behaviour, rng: SimRng, from: i64, to: i64) -> Actor {
        Actor {
            key: None,
            ips: Vec::new(),
            ua: "",
            rng,
            from,
            to,
            legit: true,
            flash: false,
            started: false,
            noise: 0.0,
            seq: 0,
            b,
        }
    }

    /// Sub-intervals of `[lo, hi)` in which the actor is active.
    fn parts(&self, lo: i64, hi: i64, out: &mut Vec<(i64, i64)>) {
        out.clear();
        let (lo, hi) = (lo.max(self.from), hi.min(self.to));
        if lo >= hi {
            return;
        }
        match &self.b {
            Behaviour::Browser { sessions, .. } => {
                for &(s, e) in sessions {
                    let (a, b) = (s.max(lo), e.min(hi));
                    if a < b {
                        out.push((a, b));
                    }
                }
            }
            Behaviour::Batch { offset, burst, .. } => {
                let top = lo.div_euclid(HOUR_US) * HOUR_US;
                for h in [top - HOUR_US, top] {
                    let (a, b) = ((h + offset).max(lo), (h + offset + burst).min(hi));
                    if a < b {
                        out.push((a, b));
                    }
                }
            }
            _ => out.push((lo, hi)),
        }
    }

    /// Events (page views for browsers, requests otherwise) per minute at `t`, before the
    /// volume scale and the noise.
    fn rate_at(&self, t: i64, ctx: &Ctx) -> f64 {
        let base = match &self.b {
            Behaviour::Client {
                rate, amp, phase_h, ..
            } => {
                let hour = t.rem_euclid(DAY_US) as f64 / HOUR_US as f64;
                rate * (1.0 + amp * (TAU * (hour - phase_h) / 24.0).sin())
            }
            Behaviour::Browser { page_rate, .. } => *page_rate,
            Behaviour::Batch { rate, .. }
            | Behaviour::Scraper { rate, .. }
            | Behaviour::Stuffer { rate }
            | Behaviour::Enumerator { rate, .. }
            | Behaviour::Compromised { rate, .. }
            | Behaviour::Prober { rate, .. }
            | Behaviour::Flooder { rate } => *rate,
        };
        if self.flash {
            if let Some(f) = &ctx.flash {
                return base * (1.0 + (f.multiplier - 1.0) * f.ramp(t));
            }
        }
        base
    }

    fn lines_per_event(&self) -> f64 {
        match self.b {
            Behaviour::Browser { .. } => 1.0 + MEAN_STATIC,
            _ => 1.0,
        }
    }

    /// Expected log lines in `[lo, hi)` (one minute at most), before the volume scale.
    pub fn expected(&self, lo: i64, hi: i64, ctx: &Ctx, buf: &mut Vec<(i64, i64)>) -> f64 {
        self.parts(lo, hi, buf);
        let len: i64 = buf.iter().map(|(a, b)| b - a).sum();
        if len == 0 {
            return 0.0;
        }
        self.rate_at(lo + (hi - lo) / 2, ctx) * self.lines_per_event() * len as f64
            / MICROS_PER_MINUTE as f64
    }

    /// Draw this actor's request slots in `[lo, hi)`.
    #[allow(clippy::too_many_arguments)]
    pub fn emit(
        &mut self,
        idx: u32,
        lo: i64,
        hi: i64,
        ctx: &Ctx,
        scale: f64,
        buf: &mut Vec<(i64, i64)>,
        out: &mut Vec<Pending>,
    ) {
        self.parts(lo, hi, buf);
        let len: i64 = buf.iter().map(|(a, b)| b - a).sum();
        if len == 0 {
            return;
        }
        let mut factor = if self.legit { scale } else { 1.0 };
        if matches!(self.b, Behaviour::Client { .. }) {
            self.noise = NOISE_PHI * self.noise + NOISE_SIGMA * dist::normal(&mut self.rng);
            factor *= (self.noise - NOISE_VAR / 2.0).exp();
        }
        let mean =
            self.rate_at(lo + (hi - lo) / 2, ctx) * factor * len as f64 / MICROS_PER_MINUTE as f64;
        let mut n = dist::poisson(&mut self.rng, mean);
        if !self.started {
            n = n.max(1);
            self.started = true;
        }
        if n == 0 {
            return;
        }
        let mut times: Vec<(i64, i64)> = (0..n)
            .map(|_| {
                let mut x = self.rng.gen_range(0..len);
                for &(a, b) in buf.iter() {
                    if x < b - a {
                        return (a + x, b);
                    }
                    x -= b - a;
                }
                let (_, b) = buf[buf.len() - 1];
                (b - 1, b)
            })
            .collect();
        times.sort_unstable();
        let browser = matches!(self.b, Behaviour::Browser { .. });
        for (ts, part_end) in times {
            out.push(Pending {
                ts,
                actor: idx,
                seq: self.seq,
                asset: false,
            });
            self.seq += 1;
            if browser {
                let mut t = ts;
                for _ in 0..self.rng.gen_range(0..=3) {
                    t = (t + self.rng.gen_range(20_000..300_000)).min(part_end - 1);
                    out.push(Pending {
                        ts: t,
                        actor: idx,
                        seq: self.seq,
                        asset: true,
                    });
                    self.seq += 1;
                }
            }
        }
    }

    /// Fill in one request; called in time order for this actor.
    pub fn build(&mut self, p: &Pending, ctx: &Ctx) -> AccessRecord<'static> {
        let ramp = ctx.ramp(p.ts);
        let hot = ctx.flash.as_ref().map_or(1, |f| f.hot_product);
        let rng = &mut self.rng;
        let u = dist::unit(rng);
        let mut slow = 1.0;
        let (route, path, query, status): (RouteId, Cow<'static, str>, Option<String>, u16) =
            match &mut self.b {
                Behaviour::Client {
                    routes,
                    cum,
                    order_base,
                    user_base,
                    ..
                } => {
                    if self.flash && u < 0.6 * ramp {
                        let st = legit_status(RouteId::ProductGet, rng);
                        let path = format!("/v1/products/{hot}").into();
                        (RouteId::ProductGet, path, None, st)
                    } else {
                        let route = routes[dist::pick_weighted(rng, cum)];
                        let (path, query) = legit_target(route, rng, *order_base, *user_base);
                        (route, path, query, legit_status(route, rng))
                    }
                }
                Behaviour::Browser { crowd, .. } => {
                    if p.asset {
                        let asset = dist::pick(rng, catalog::STATIC_ASSETS);
                        let st = legit_status(RouteId::Static, rng);
                        (RouteId::Static, asset.into(), None, st)
                    } else {
                        let p_hot = if *crowd {
                            0.7
                        } else if self.flash {
                            0.7 * ramp
                        } else {
                            0.0
                        };
                        if u < p_hot {
                            let st = legit_status(RouteId::ProductGet, rng);
                            let path = format!("/v1/products/{hot}").into();
                            (RouteId::ProductGet, path, None, st)
                        } else {
                            const PAGES: [(RouteId, f64); 7] = [
                                (RouteId::Home, 0.15),
                                (RouteId::ProductGet, 0.60),
                                (RouteId::ProductList, 0.75),
                                (RouteId::Search, 0.90),
                                (RouteId::CartGet, 0.95),
                                (RouteId::CartAdd, 0.98),
                                (RouteId::Login, 1.0),
                            ];
                            let cum = PAGES.map(|p| p.1);
                            let route = PAGES[dist::pick_weighted(rng, &cum)].0;
                            let (path, query) = legit_target(route, rng, 0, 0);
                            (route, path, query, legit_status(route, rng))
                        }
                    }
                }
                Behaviour::Batch {
                    kind,
                    export,
                    order_base,
                    hour,
                    cursor,
                    ..
                } => {
                    let h = p.ts.div_euclid(HOUR_US);
                    let first = h != *hour;
                    if first {
                        *hour = h;
                        *cursor = 0;
                    }
                    if first && *export {
                        let (path, query) = legit_target(RouteId::Export, rng, 0, 0);
                        (RouteId::Export, path, query, 200)
                    } else {
                        *cursor += 1;
                        match kind {
                            BatchKind::Products => (
                                RouteId::ProductList,
                                "/v1/products".into(),
                                Some(format!("page={cursor}&limit=100")),
                                200,
                            ),
                            BatchKind::Orders => (
                                RouteId::OrderGet,
                                format!("/v1/orders/{}", *order_base + *cursor).into(),
                                None,
                                if u < 0.01 { 404 } else { 200 },
                            ),
                        }
                    }
                }
                Behaviour::Scraper { next, .. } => {
                    let id = *next;
                    *next += 1;
                    let status = if id % 16 == 0 { 404 } else { 200 };
                    let path = format!("/v1/products/{id}").into();
                    (RouteId::ProductGet, path, None, status)
                }
                Behaviour::Stuffer { .. } => {
                    let status = if u < 0.03 {
                        200
                    } else if u < 0.05 {
                        400
                    } else {
                        401
                    };
                    (RouteId::Login, "/v1/login".into(), None, status)
                }
                Behaviour::Enumerator { next, .. } => {
                    let id = *next;
                    *next += 1;
                    let status = if u < 0.55 {
                        404
                    } else if u < 0.85 {
                        403
                    } else {
                        200
                    };
                    let path = format!("/v1/users/{id}").into();
                    (RouteId::UserGet, path, None, status)
                }
                Behaviour::Compromised { next_user, .. } => {
                    let v = dist::unit(rng);
                    if u < 0.35 {
                        let (path, query) = legit_target(RouteId::Export, rng, 0, 0);
                        (RouteId::Export, path, query, 200)
                    } else if u < 0.65 {
                        let route = if u < 0.55 {
                            RouteId::AdminUsers
                        } else {
                            RouteId::AdminKeys
                        };
                        let st = if v < 0.6 { 403 } else { 200 };
                        (route, route.def().template.into(), None, st)
                    } else {
                        let id = *next_user;
                        *next_user += 1;
                        let st = if v < 0.2 { 404 } else { 200 };
                        (RouteId::UserGet, format!("/v1/users/{id}").into(), None, st)
                    }
                }
                Behaviour::Prober { i, .. } => {
                    let n = catalog::PROBE_PATHS.len();
                    let (method, path) = catalog::PROBE_PATHS[*i % n];
                    let prefix = catalog::PROBE_PREFIXES[(*i / n) % catalog::PROBE_PREFIXES.len()];
                    *i += 1;
                    let status = if u < 0.9 {
                        404
                    } else if u < 0.96 {
                        403
                    } else {
                        400
                    };
                    let rec = self.record(p.ts, RouteId::Unmatched, method, status, 1.0);
                    return AccessRecord {
                        path: format!("{prefix}{path}").into(),
                        ..rec
                    };
                }
                Behaviour::Flooder { .. } => {
                    slow = 3.0;
                    let word = dist::pick(rng, catalog::SEARCH_WORDS);
                    let page = rng.gen_range(1..=5);
                    let status = if u < 0.09 {
                        503
                    } else if u < 0.12 {
                        502
                    } else {
                        200
                    };
                    let query = Some(format!("q={word}&page={page}"));
                    (RouteId::Search, "/v1/search".into(), query, status)
                }
            };
        let rec = self.record(p.ts, route, route.def().method, status, slow);
        AccessRecord {
            path,
            query: query.map(Cow::Owned),
            ..rec
        }
    }

    /// A record for `route` with sizes and latencies drawn from its profile (path `/`).
    fn record(
        &mut self,
        ts: i64,
        route: RouteId,
        method: &'static str,
        status: u16,
        slow: f64,
    ) -> AccessRecord<'static> {
        let rng = &mut self.rng;
        let def = route.def();
        let ok = status < 400 && status != 304;
        let latency_ms = dist::lognormal(
            rng,
            def.latency_ms * if ok { slow } else { 0.3 },
            def.latency_sigma,
        );
        let latency_us = ((latency_ms * 1000.0) as u64).max(150);
        let overhead = rng.gen_range(100..600u64).min(latency_us - 50);
        let bytes_sent = if status == 304 {
            0
        } else if ok {
            dist::lognormal(rng, def.bytes, def.bytes_sigma) as u64
        } else {
            dist::lognormal(rng, 180.0, 0.2) as u64
        };
        let ip = match self.ips.len() {
            0 => None,
            1 => Some(self.ips[0]),
            n => Some(self.ips[rng.gen_range(0..n)]),
        };
        AccessRecord {
            ts: Timestamp(ts),
            api_key: self.key.clone().map(Cow::Owned),
            ip,
            method: Some(Cow::Borrowed(method)),
            host: Some(Cow::Borrowed(HOST)),
            path: Cow::Borrowed("/"),
            protocol: Some(Cow::Borrowed(PROTOCOL)),
            status,
            bytes_sent: Some(bytes_sent),
            bytes_received: Some(def.request_bytes + rng.gen_range(0..64)),
            latency_us: Some(latency_us),
            upstream_latency_us: (route != RouteId::Unmatched).then_some(latency_us - overhead),
            user_agent: Some(Cow::Borrowed(self.ua)),
            referer: matches!(self.b, Behaviour::Browser { .. })
                .then_some(Cow::Borrowed(BROWSER_REFERER)),
            ..AccessRecord::default()
        }
    }
}

/// Path and query of a legitimate request to `route`.
fn legit_target(
    route: RouteId,
    rng: &mut SimRng,
    order_base: u32,
    user_base: u32,
) -> (Cow<'static, str>, Option<String>) {
    match route {
        RouteId::ProductGet => (format!("/v1/products/{}", product_id(rng)).into(), None),
        RouteId::ProductList => {
            let page = 1 + (dist::exp1(rng) * 2.0) as u32;
            ("/v1/products".into(), Some(format!("page={page}&limit=20")))
        }
        RouteId::Search => {
            let word = dist::pick(rng, catalog::SEARCH_WORDS);
            ("/v1/search".into(), Some(format!("q={word}")))
        }
        RouteId::OrderGet => {
            let id = order_base + rng.gen_range(0..2_000);
            (format!("/v1/orders/{id}").into(), None)
        }
        RouteId::UserGet => {
            let id = user_base + rng.gen_range(0..50);
            (format!("/v1/users/{id}").into(), None)
        }
        RouteId::Export => (
            "/v1/export".into(),
            Some("format=csv&since=2026-03-01".to_owned()),
        ),
        other => (other.def().template.into(), None),
    }
}

/// Log-uniform over 1..=PRODUCTS: low ids are popular.
fn product_id(rng: &mut SimRng) -> u32 {
    ((f64::from(PRODUCTS)).powf(dist::unit(rng)) as u32).clamp(1, PRODUCTS)
}

/// Status of a legitimate request: mostly 2xx, a few expected 4xx, rare 5xx.
fn legit_status(route: RouteId, rng: &mut SimRng) -> u16 {
    let u = dist::unit(rng);
    if u < 0.001 {
        return [500, 502, 503][rng.gen_range(0..3)];
    }
    match route {
        RouteId::ProductGet if u < 0.016 => 404,
        RouteId::Search if u < 0.006 => 400,
        RouteId::CartAdd if u < 0.006 => 409,
        RouteId::CartAdd | RouteId::OrderCreate if u >= 0.021 => 201,
        RouteId::OrderCreate => 422,
        RouteId::OrderGet if u < 0.011 => 404,
        RouteId::Login if u < 0.081 => 401,
        RouteId::UserGet if u < 0.006 => 404,
        RouteId::Export if u < 0.011 => 504,
        RouteId::Static if u < 0.25 => 304,
        _ => 200,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flash_ramp_shape() {
        let m = MICROS_PER_MINUTE;
        let f = Flash {
            from: 0,
            to: 30 * m,
            multiplier: 4.0,
            hot_product: 1,
        };
        for (t, expect) in [
            (-1, 0.0),
            (0, 0.0),
            (m + m / 2, 0.5),
            (3 * m, 1.0),
            (20 * m, 1.0),
            (25 * m, 1.0),
            (27 * m + m / 2, 0.5),
            (30 * m, 0.0),
        ] {
            assert!((f.ramp(t) - expect).abs() < 1e-9, "{t}: {}", f.ramp(t));
        }
    }

    #[test]
    fn cart_add_status_is_mostly_created() {
        let mut rng = dist::rng_from(5);
        let created = (0..10_000)
            .filter(|_| legit_status(RouteId::CartAdd, &mut rng) == 201)
            .count();
        assert!(created > 9_600, "{created}");
    }
}
