//! Building the cast from a configuration, and the streaming iterator that merges every actor's
//! requests into one time-ordered log, one minute at a time.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

use rand::Rng;
use sluice_core::time::{MICROS_PER_MINUTE, MICROS_PER_SEC};
use sluice_core::{AccessRecord, ClientKind, Timestamp};

use crate::actor::{Actor, BatchKind, Behaviour, Ctx, Flash, Pending, NOISE_VAR};
use crate::catalog::{self, RouteId};
use crate::config::{secs_us, AttackClass, SimConfig, SimConfigError};
use crate::dist::{self, SimRng};
use crate::labels::{
    AttackLabel, FlashCrowdLabel, IdentityLabel, IdentityRef, Labels, TrafficLabel,
};

/// A running simulation: an iterator over the records in time order (ties broken by identity,
/// so the order is total and reproducible), plus the ground truth.
///
/// Memory stays bounded by one minute of traffic, whatever the duration.
#[derive(Debug)]
pub struct Simulation {
    actors: Vec<Actor>,
    ctx: Ctx,
    start: i64,
    end: i64,
    next_minute: i64,
    pending: Vec<Pending>,
    pos: usize,
    buf: Vec<(i64, i64)>,
    scale: f64,
    expected_lines: f64,
    labels: Labels,
}

/// Set up a simulation. Nothing is generated until the iterator is advanced.
pub fn generate(cfg: &SimConfig) -> Result<Simulation, SimConfigError> {
    cfg.validate()?;
    let mut setup = Setup::new(cfg);
    setup.legit_clients();
    setup.browsers();
    setup.batch_jobs();
    setup.flash_crowd();
    setup.attacks();
    Ok(setup.finish())
}

impl Simulation {
    /// The ground truth, known before the first record is generated.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    pub fn into_labels(self) -> Labels {
        self.labels
    }

    /// Expected number of records (the generated count is within a few percent for large runs).
    pub fn expected_lines(&self) -> u64 {
        self.expected_lines.round() as u64
    }

    /// Factor applied to the natural legitimate rates to reach `target_lines` (1 without one).
    pub fn legit_scale(&self) -> f64 {
        self.scale
    }

    pub fn start(&self) -> Timestamp {
        Timestamp(self.start)
    }

    pub fn end(&self) -> Timestamp {
        Timestamp(self.end)
    }

    /// Pace the records for a real-time driver: each comes with its send time as an offset from
    /// the moment the driver starts, log time compressed by `time_scale` (60 plays an hour of
    /// logs in a minute). Sleep until each offset, then send.
    pub fn schedule(self, time_scale: TimeScale) -> Schedule {
        Schedule {
            start: self.start,
            scale: time_scale.0,
            sim: self,
        }
    }

    fn refill(&mut self) -> bool {
        self.pending.clear();
        self.pos = 0;
        while self.pending.is_empty() && self.next_minute < self.end {
            let lo = self.next_minute;
            let hi = (lo + MICROS_PER_MINUTE).min(self.end);
            for (i, a) in self.actors.iter_mut().enumerate() {
                if a.to > lo && a.from < hi {
                    a.emit(
                        i as u32,
                        lo,
                        hi,
                        &self.ctx,
                        self.scale,
                        &mut self.buf,
                        &mut self.pending,
                    );
                }
            }
            self.next_minute = hi;
        }
        self.pending
            .sort_unstable_by_key(|p| (p.ts, p.actor, p.seq));
        !self.pending.is_empty()
    }
}

impl Iterator for Simulation {
    type Item = AccessRecord<'static>;

    fn next(&mut self) -> Option<AccessRecord<'static>> {
        if self.pos == self.pending.len() && !self.refill() {
            return None;
        }
        let p = self.pending[self.pos];
        self.pos += 1;
        Some(self.actors[p.actor as usize].build(&p, &self.ctx))
    }
}

/// How much faster than log time a real-time driver plays the records (`1` = real time).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimeScale(f64);

impl TimeScale {
    pub const REAL_TIME: TimeScale = TimeScale(1.0);

    pub fn new(factor: f64) -> Result<TimeScale, TimeScaleError> {
        if factor.is_finite() && factor > 0.0 {
            Ok(TimeScale(factor))
        } else {
            Err(TimeScaleError(factor.to_string()))
        }
    }

    pub fn factor(self) -> f64 {
        self.0
    }
}

impl FromStr for TimeScale {
    type Err = TimeScaleError;
    /// `60`, `60x` or `0.5`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let t = t.strip_suffix('x').unwrap_or(t);
        t.parse::<f64>()
            .ok()
            .and_then(|f| TimeScale::new(f).ok())
            .ok_or_else(|| TimeScaleError(s.to_owned()))
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid time scale {0:?} (expected a positive factor such as 60 or 60x)")]
pub struct TimeScaleError(pub String);

/// Records with their send offsets; see [`Simulation::schedule`].
#[derive(Debug)]
pub struct Schedule {
    sim: Simulation,
    start: i64,
    scale: f64,
}

impl Schedule {
    pub fn labels(&self) -> &Labels {
        self.sim.labels()
    }
}

impl Iterator for Schedule {
    type Item = (Duration, AccessRecord<'static>);

    fn next(&mut self) -> Option<Self::Item> {
        let rec = self.sim.next()?;
        let offset_us = (rec.ts.micros() - self.start).max(0) as f64 / self.scale;
        Some((Duration::from_micros(offset_us as u64), rec))
    }
}

/// Draws the cast from the master random stream in a fixed order; every actor gets its own
/// stream seeded from it, so adding an attack does not change legitimate traffic (unless a
/// `target_lines` scale has to absorb it).
struct Setup<'c> {
    cfg: &'c SimConfig,
    rng: SimRng,
    start: i64,
    end: i64,
    ips: HashSet<IpAddr>,
    keys: HashSet<String>,
    actors: Vec<Actor>,
    identities: Vec<IdentityLabel>,
    attacks: Vec<AttackLabel>,
    /// Index of each legit client's actor, with its tier, for picking a compromised key.
    clients: Vec<(usize, Tier)>,
    ctx: Ctx,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tier {
    Free,
    Pro,
    Enterprise,
}

/// First octets of cloud providers (API clients), homes (browsers), hosting (attackers) and a
/// scattered botnet (floods).
const CLOUD: &[u8] = &[3, 13, 18, 34, 35, 52, 54, 104, 130, 146];
const RESIDENTIAL: &[u8] = &[24, 67, 68, 73, 76, 81, 86, 90, 92, 98, 109, 176, 188];
const HOSTING: &[u8] = &[5, 45, 139, 159, 167, 178, 185, 193, 194];
const BOTNET: &[u8] = &[
    27, 36, 39, 42, 49, 58, 59, 60, 61, 101, 103, 110, 111, 112, 113, 114, 115, 116, 117, 118, 119,
    120, 121, 122, 123, 124, 125, 177, 179, 181, 186, 187, 189, 190, 191, 200, 201,
];
/// Candidate routes of an API client's mix (export is added for some paid clients).
const CLIENT_ROUTES: &[RouteId] = &[
    RouteId::ProductGet,
    RouteId::ProductList,
    RouteId::Search,
    RouteId::CartGet,
    RouteId::CartAdd,
    RouteId::OrderGet,
    RouteId::OrderCreate,
    RouteId::UserGet,
    RouteId::Health,
];

impl<'c> Setup<'c> {
    fn new(cfg: &'c SimConfig) -> Setup<'c> {
        let start = cfg.start.micros();
        let ctx = Ctx {
            flash: cfg.flash_crowd.as_ref().map(|f| Flash {
                from: start + secs_us(f.start_offset_secs),
                to: start + secs_us(f.start_offset_secs + f.duration_secs),
                multiplier: f.multiplier,
                hot_product: f.hot_product,
            }),
        };
        Setup {
            cfg,
            rng: dist::rng_from(cfg.seed),
            start,
            end: cfg.end().micros(),
            ips: HashSet::new(),
            keys: HashSet::new(),
            actors: Vec::new(),
            identities: Vec::new(),
            attacks: Vec::new(),
            clients: Vec::new(),
            ctx,
        }
    }

    fn actor_rng(&mut self) -> SimRng {
        dist::rng_from(self.rng.gen())
    }

    fn new_key(&mut self) -> String {
        loop {
            let k = format!("ak_{:024x}", self.rng.gen::<u128>() >> 32);
            if self.keys.insert(k.clone()) {
                return k;
            }
        }
    }

    fn new_v4(&mut self, firsts: &[u8]) -> IpAddr {
        loop {
            let a = dist::pick(&mut self.rng, firsts);
            let ip = IpAddr::V4(Ipv4Addr::new(
                a,
                self.rng.gen(),
                self.rng.gen(),
                self.rng.gen_range(1..255),
            ));
            if self.ips.insert(ip) {
                return ip;
            }
        }
    }

    /// `n` distinct addresses in `n.div_ceil(per_net)` fresh /24 networks.
    fn new_v4_nets(&mut self, n: usize, per_net: usize) -> Vec<IpAddr> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let net = loop {
                let net = [
                    dist::pick(&mut self.rng, HOSTING),
                    self.rng.gen(),
                    self.rng.gen(),
                ];
                let taken = (1..255).any(|h| {
                    self.ips
                        .contains(&IpAddr::V4(Ipv4Addr::new(net[0], net[1], net[2], h)))
                });
                if !taken {
                    break net;
                }
            };
            let want = per_net.min(n - out.len()).min(254);
            let mut hosts: Vec<u8> = (1..255).collect();
            for i in 0..want {
                let j = self.rng.gen_range(i..hosts.len());
                hosts.swap(i, j);
                let ip = IpAddr::V4(Ipv4Addr::new(net[0], net[1], net[2], hosts[i]));
                self.ips.insert(ip);
                out.push(ip);
            }
        }
        out
    }

    fn new_browser_ip(&mut self) -> IpAddr {
        if self.rng.gen_bool(0.12) {
            loop {
                let ip = IpAddr::V6(Ipv6Addr::new(
                    0x2a01 + self.rng.gen_range(0..8),
                    self.rng.gen(),
                    self.rng.gen(),
                    self.rng.gen(),
                    0,
                    0,
                    0,
                    self.rng.gen_range(1..0xffff),
                ));
                if self.ips.insert(ip) {
                    return ip;
                }
            }
        }
        self.new_v4(RESIDENTIAL)
    }

    fn push(&mut self, actor: Actor, id: IdentityRef, label: TrafficLabel) {
        self.actors.push(actor);
        self.identities.push(IdentityLabel {
            kind: id.kind,
            value: id.value,
            label,
            attack_class: None,
            attack_id: None,
        });
    }

    fn flash_member(&mut self) -> bool {
        match &self.cfg.flash_crowd {
            Some(f) => self.rng.gen_bool(f.participation),
            None => false,
        }
    }

    fn legit_clients(&mut self) {
        for _ in 0..self.cfg.legit_clients {
            let rng = self.actor_rng();
            let u = dist::unit(&mut self.rng);
            let (tier, base) = if u < 0.6 {
                (Tier::Free, 4.0)
            } else if u < 0.9 {
                (Tier::Pro, 20.0)
            } else {
                (Tier::Enterprise, 80.0)
            };
            // Dirichlet(1)-like weights over a random subset of the routes
            let mut pool = CLIENT_ROUTES.to_vec();
            let k = self.rng.gen_range(2..=6);
            let mut routes = Vec::with_capacity(k + 1);
            let mut weights = Vec::with_capacity(k + 1);
            for _ in 0..k {
                let i = self.rng.gen_range(0..pool.len());
                routes.push(pool.swap_remove(i));
                weights.push(dist::exp1(&mut self.rng) + 0.05);
            }
            if tier != Tier::Free && self.rng.gen_bool(0.25) {
                routes.push(RouteId::Export);
                weights.push(0.01 * weights.iter().sum::<f64>());
            }
            let cum = weights
                .iter()
                .scan(0.0, |acc, w| {
                    *acc += w;
                    Some(*acc)
                })
                .collect();
            let b = Behaviour::Client {
                rate: base * dist::lognormal(&mut self.rng, 1.0, 0.5),
                amp: dist::between(&mut self.rng, 0.3, 0.7),
                phase_h: dist::between(&mut self.rng, 0.0, 24.0),
                routes,
                cum,
                order_base: self.rng.gen_range(1..900) * 10_000,
                user_base: self.rng.gen_range(1..9_000) * 100,
            };
            let mut a = Actor::new(b, rng, self.start, self.end);
            let key = self.new_key();
            a.key = Some(key.clone());
            let n_ips = self.rng.gen_range(1..=3);
            a.ips = (0..n_ips).map(|_| self.new_v4(CLOUD)).collect();
            a.ua = dist::pick(&mut self.rng, catalog::SDK_AGENTS);
            a.noise = dist::normal(&mut self.rng) * NOISE_VAR.sqrt();
            a.flash = self.flash_member();
            self.clients.push((self.actors.len(), tier));
            self.push(a, api_key(key), TrafficLabel::Legit);
        }
    }

    fn browsers(&mut self) {
        let mean_gap = 45.0 * MICROS_PER_MINUTE as f64;
        for _ in 0..self.cfg.browsers {
            let rng = self.actor_rng();
            // session starts: a Poisson process thinned by a diurnal curve peaking at 20:00 UTC
            let mut sessions = Vec::new();
            let mut t = self.start as f64;
            loop {
                t += dist::exp1(&mut self.rng) * mean_gap;
                if t >= self.end as f64 {
                    break;
                }
                let hour = (t as i64).rem_euclid(24 * 3600 * MICROS_PER_SEC) as f64
                    / (3600 * MICROS_PER_SEC) as f64;
                let rhythm = 1.0 + 0.6 * (std::f64::consts::TAU * (hour - 14.0) / 24.0).sin();
                let len = dist::between(&mut self.rng, 2.0, 12.0) * MICROS_PER_MINUTE as f64;
                if dist::unit(&mut self.rng) * 1.6 < rhythm {
                    sessions.push((t as i64, ((t + len) as i64).min(self.end)));
                    t += len;
                }
            }
            if sessions.is_empty() {
                let span = (self.end - self.start - MICROS_PER_MINUTE).max(1);
                let s = self.start + self.rng.gen_range(0..span);
                sessions.push((s, (s + 5 * MICROS_PER_MINUTE).min(self.end)));
            }
            let b = Behaviour::Browser {
                sessions,
                page_rate: dist::between(&mut self.rng, 1.5, 4.0),
                crowd: false,
            };
            let mut a = Actor::new(b, rng, self.start, self.end);
            let ip = self.new_browser_ip();
            a.ips = vec![ip];
            a.ua = dist::pick(&mut self.rng, catalog::BROWSER_AGENTS);
            a.flash = self.flash_member();
            self.push(a, ip_ref(ip), TrafficLabel::Browser);
        }
    }

    fn batch_jobs(&mut self) {
        for i in 0..self.cfg.batch_jobs {
            let rng = self.actor_rng();
            let b = Behaviour::Batch {
                offset: self.rng.gen_range(0..30 * MICROS_PER_SEC),
                burst: self
                    .rng
                    .gen_range(90 * MICROS_PER_SEC..180 * MICROS_PER_SEC),
                rate: dist::between(&mut self.rng, 150.0, 400.0),
                kind: if i % 2 == 0 {
                    BatchKind::Products
                } else {
                    BatchKind::Orders
                },
                export: self.rng.gen_bool(0.5),
                order_base: self.rng.gen_range(1..900) * 10_000,
                hour: i64::MIN,
                cursor: 0,
            };
            let mut a = Actor::new(b, rng, self.start, self.end);
            let key = self.new_key();
            a.key = Some(key.clone());
            a.ips = vec![self.new_v4(CLOUD)];
            a.ua = dist::pick(&mut self.rng, catalog::BATCH_AGENTS);
            self.push(a, api_key(key), TrafficLabel::BatchJob);
        }
    }

    fn flash_crowd(&mut self) {
        let Some(f) = self.cfg.flash_crowd.clone() else {
            return;
        };
        let from = self.start + secs_us(f.start_offset_secs);
        let to = from + secs_us(f.duration_secs);
        for _ in 0..f.new_browsers {
            let rng = self.actor_rng();
            let len = (to - from) as f64;
            let arrive = from + (dist::unit(&mut self.rng) * 0.6 * len) as i64;
            let stay = (dist::between(&mut self.rng, 5.0, 15.0) * MICROS_PER_MINUTE as f64) as i64;
            let b = Behaviour::Browser {
                sessions: vec![(arrive, (arrive + stay).min(to))],
                page_rate: dist::between(&mut self.rng, 2.0, 5.0),
                crowd: true,
            };
            let mut a = Actor::new(b, rng, from, to);
            let ip = self.new_browser_ip();
            a.ips = vec![ip];
            a.ua = dist::pick(&mut self.rng, catalog::BROWSER_AGENTS);
            self.push(a, ip_ref(ip), TrafficLabel::FlashCrowd);
        }
    }

    fn attacks(&mut self) {
        let mut counts = [0usize; AttackClass::ALL.len()];
        for spec in self.cfg.attacks.clone() {
            let n = &mut counts[spec.class as usize];
            *n += 1;
            let id = format!("{}-{n}", spec.class);
            let from = self.start + secs_us(spec.start_offset_secs);
            let to = from + secs_us(spec.duration_secs);
            let first = self.identities.len();
            let mut ips = Vec::new();
            let mut identities = Vec::new();
            let rate = spec.rate_per_min;
            match spec.class {
                AttackClass::Scraping => {
                    let next = self.rng.gen_range(1..1_000);
                    let ip = self.new_v4(HOSTING);
                    let b = Behaviour::Scraper { rate, next };
                    self.attacker(b, from, to, None, vec![ip], catalog::SCRAPER_AGENT);
                    ips.push(ip);
                    identities.push(ip_ref(ip));
                }
                AttackClass::CredentialStuffing => {
                    for ip in self.new_v4_nets(spec.sources, 50) {
                        let r = rate * dist::between(&mut self.rng, 0.5, 1.5);
                        let b = Behaviour::Stuffer { rate: r };
                        self.attacker(b, from, to, None, vec![ip], catalog::STUFFING_AGENT);
                        ips.push(ip);
                        identities.push(ip_ref(ip));
                    }
                }
                AttackClass::Enumeration => {
                    let next = self.rng.gen_range(1..5_000) * 10;
                    let key = self.new_key();
                    let ip = self.new_v4(HOSTING);
                    let b = Behaviour::Enumerator { rate, next };
                    let agent = catalog::ENUMERATION_AGENT;
                    self.attacker(b, from, to, Some(key.clone()), vec![ip], agent);
                    ips.push(ip);
                    identities.push(api_key(key));
                }
                AttackClass::CompromisedKey => {
                    let paid: Vec<usize> = self
                        .clients
                        .iter()
                        .filter(|(_, t)| *t != Tier::Free)
                        .map(|(i, _)| *i)
                        .collect();
                    let pool: Vec<usize> = if paid.is_empty() {
                        self.clients.iter().map(|(i, _)| *i).collect()
                    } else {
                        paid
                    };
                    let victim = dist::pick(&mut self.rng, &pool);
                    let key = self.actors[victim].key.clone().unwrap_or_default();
                    let new_ips = self.new_v4_nets(spec.sources, 254);
                    let next_user = self.rng.gen_range(1..9_000) * 100;
                    let b = Behaviour::Compromised { rate, next_user };
                    let agent = catalog::COMPROMISED_AGENT;
                    self.attacker(b, from, to, Some(key.clone()), new_ips.clone(), agent);
                    ips = new_ips;
                    let label = &mut self.identities[victim];
                    label.label = TrafficLabel::Attack;
                    label.attack_class = Some(spec.class);
                    label.attack_id = Some(id.clone());
                    identities.push(api_key(key));
                }
                AttackClass::Probing => {
                    let ip = self.new_v4(HOSTING);
                    let b = Behaviour::Prober { rate, i: 0 };
                    self.attacker(b, from, to, None, vec![ip], catalog::PROBE_AGENT);
                    ips.push(ip);
                    identities.push(ip_ref(ip));
                }
                AttackClass::Flood => {
                    for _ in 0..spec.sources {
                        let ip = self.new_v4(BOTNET);
                        let r = rate * dist::between(&mut self.rng, 0.7, 1.3);
                        let agent = dist::pick(&mut self.rng, catalog::FLOOD_AGENTS);
                        self.attacker(
                            Behaviour::Flooder { rate: r },
                            from,
                            to,
                            None,
                            vec![ip],
                            agent,
                        );
                        ips.push(ip);
                        identities.push(ip_ref(ip));
                    }
                }
            }
            for label in &mut self.identities[first..] {
                label.attack_class = Some(spec.class);
                label.attack_id = Some(id.clone());
            }
            self.attacks.push(AttackLabel {
                id,
                class: spec.class,
                start: Timestamp(from),
                end: Timestamp(to),
                identities,
                ips,
            });
        }
    }

    fn attacker(
        &mut self,
        b: Behaviour,
        from: i64,
        to: i64,
        key: Option<String>,
        ips: Vec<IpAddr>,
        ua: &'static str,
    ) {
        let rng = self.actor_rng();
        let mut a = Actor::new(b, rng, from, to);
        a.legit = false;
        a.ips = ips;
        a.ua = ua;
        let id = match &key {
            Some(k) => api_key(k.clone()),
            None => ip_ref(a.ips[0]),
        };
        a.key = key;
        // a stolen key is already listed (as its victim); the attack actor adds no identity
        if matches!(a.b, Behaviour::Compromised { .. }) {
            self.actors.push(a);
        } else {
            self.push(a, id, TrafficLabel::Attack);
        }
    }

    fn finish(self) -> Simulation {
        let mut buf = Vec::new();
        let (mut legit, mut fixed) = (0.0, 0.0);
        for a in &self.actors {
            let mut lo = self.start.max(a.from);
            lo = self.start + (lo - self.start).div_euclid(MICROS_PER_MINUTE) * MICROS_PER_MINUTE;
            while lo < a.to.min(self.end) {
                let hi = (lo + MICROS_PER_MINUTE).min(self.end);
                let e = a.expected(lo, hi, &self.ctx, &mut buf);
                if a.legit {
                    legit += e;
                } else {
                    fixed += e;
                }
                lo = hi;
            }
        }
        let scale = match self.cfg.target_lines {
            Some(t) if legit > 0.0 => ((t as f64 - fixed) / legit).max(0.01),
            _ => 1.0,
        };
        let flash_crowds = self
            .cfg
            .flash_crowd
            .iter()
            .map(|f| FlashCrowdLabel {
                start: Timestamp(self.start + secs_us(f.start_offset_secs)),
                end: Timestamp(self.start + secs_us(f.start_offset_secs + f.duration_secs)),
                route: RouteId::ProductGet.def().template.to_owned(),
                path: format!("/v1/products/{}", f.hot_product),
                multiplier: f.multiplier,
            })
            .collect();
        Simulation {
            labels: Labels {
                seed: self.cfg.seed,
                start: Timestamp(self.start),
                end: Timestamp(self.end),
                identities: self.identities,
                attacks: self.attacks,
                flash_crowds,
            },
            actors: self.actors,
            ctx: self.ctx,
            start: self.start,
            end: self.end,
            next_minute: self.start,
            pending: Vec::new(),
            pos: 0,
            buf,
            scale,
            expected_lines: legit * scale + fixed,
        }
    }
}

fn api_key(value: String) -> IdentityRef {
    IdentityRef {
        kind: ClientKind::ApiKey,
        value,
    }
}

fn ip_ref(ip: IpAddr) -> IdentityRef {
    IdentityRef {
        kind: ClientKind::Ip,
        value: ip.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_scales() {
        assert_eq!("60x".parse::<TimeScale>().unwrap().factor(), 60.0);
        assert_eq!("0.5".parse::<TimeScale>().unwrap().factor(), 0.5);
        for bad in ["0", "-2", "fast", "inf", "NaN"] {
            assert_eq!(
                bad.parse::<TimeScale>().unwrap_err().to_string(),
                format!(
                    "invalid time scale {bad:?} (expected a positive factor such as 60 or 60x)"
                )
            );
        }
    }
}
