//! The layered detector. Each closed minute goes through:
//! 1. **self-deviation** for clients with a baseline: robust z-scores of rate (after removing the
//!    population-wide rise), error share, distinct paths and routes, the share of requests on
//!    routes the client never used (routes many clients start using together are exempt), and
//!    for keyed identities new user agents, networks and IPs;
//! 2. the **population model** ([`PopulationModel`]) for clients too new to have a baseline;
//! 3. **campaigns**: weakly anomalous identities that share a user agent and route, or a /24 and
//!    route, in the same minute, reported together as one anomaly listing its members.
//!
//! All layers put their evidence on one scale (6 = flag); the score is `E^2 / (E^2 + 36)`, so 0.5
//! is the flagging point and scores stay in [0, 1). Kinds are read off the feature pattern.
//! A client's baseline does not learn while it has an open anomaly. Nothing here looks at labels.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use sluice_core::time::MICROS_PER_MINUTE;
use sluice_core::{ClientId, ClientKind, Timestamp};

use super::baseline::{population_factor, ClientBaseline, Feature, RouteBaselines, RouteSurge};
use super::features::{subnet, ClientMinute};
use super::population::{self, PopulationConfig, PopulationModel, DIM};

// The kinds, states and reasons are domain types shared with the store and the API.
pub use sluice_core::anomaly::{AnomalyKind, AnomalyState, Reason};

/// A detected anomaly: one client, or a campaign of identities acting together.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Anomaly {
    pub id: u64,
    /// The identity value without prefix (for a campaign: its first member).
    pub client: String,
    pub client_kind: ClientKind,
    pub kind: AnomalyKind,
    /// Highest score so far, in [0, 1].
    pub score: f64,
    /// End of the first minute that flagged it (log time): the score used data up to here.
    #[serde(serialize_with = "rfc3339")]
    pub first_detected: Timestamp,
    #[serde(serialize_with = "rfc3339")]
    pub last_flagged: Timestamp,
    pub reasons: Vec<Reason>,
    pub state: AnomalyState,
    /// Campaign members (empty for a single client).
    pub members: Vec<MemberRef>,
    /// What the campaign members share (`ua=... route=...` or `net=... route=...`).
    pub campaign: Option<String>,
}

pub(crate) fn rfc3339<S: serde::Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(ts)
}

/// A campaign member.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct MemberRef {
    pub kind: ClientKind,
    pub value: String,
}

impl Anomaly {
    /// Every identity the anomaly names (the client, or all campaign members).
    pub fn identities(&self) -> Vec<MemberRef> {
        if self.members.is_empty() {
            vec![MemberRef {
                kind: self.client_kind,
                value: self.client.clone(),
            }]
        } else {
            self.members.clone()
        }
    }
}

/// Detector settings; the defaults are general (not fitted to any scenario's labels).
#[derive(Clone, Debug, PartialEq)]
pub struct DetectorConfig {
    /// Log minutes from the first record during which everything is learned and nothing flagged.
    pub warmup_minutes: u32,
    /// Active minutes before a client's own baseline is trusted (before that, the population
    /// model speaks for it).
    pub min_history: u32,
    /// Evidence at which a client (or campaign) is flagged (score 0.5).
    pub flag_evidence: f64,
    /// Evidence a young client must reach in one minute when it has no earlier suspicious minute
    /// (the population model alone is noisier than a baseline).
    pub single_minute_evidence: f64,
    /// Smallest campaign.
    pub campaign_min_members: usize,
    /// Evidence at which an identity can be a campaign member.
    pub campaign_member_evidence: f64,
    /// Minutes without a flag after which an anomaly is resolved.
    pub resolve_after_minutes: u32,
    /// Refit the population model this often (log minutes).
    pub retrain_every_minutes: u32,
    /// Rows kept (reservoir sample) to fit the population model.
    pub train_rows: usize,
    /// Established clients needed to estimate the population-wide rise.
    pub surge_min_clients: usize,
    pub population: PopulationConfig,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            warmup_minutes: 30,
            min_history: 3,
            flag_evidence: 6.0,
            single_minute_evidence: 9.0,
            campaign_min_members: 5,
            campaign_member_evidence: 3.0,
            resolve_after_minutes: 10,
            retrain_every_minutes: 60,
            train_rows: 20_000,
            surge_min_clients: 10,
            population: PopulationConfig::default(),
        }
    }
}

/// The result of one minute.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MinuteOutcome {
    pub minute: Timestamp,
    /// Indices (into [`Detector::anomalies`]) of anomalies opened or flagged again this minute.
    pub flagged: Vec<usize>,
    pub route_surges: Vec<RouteSurge>,
    /// Median rise of established clients over their expectation (`ln` units), when known.
    pub population_factor: Option<f64>,
    /// Population models refitted at the start of this minute (for the model registry).
    pub retrained: Vec<Retrained>,
}

/// A population model refit: which peer group, on what, and how long it took.
#[derive(Clone, Debug, PartialEq)]
pub struct Retrained {
    /// `keyed` (API keys, consumers, users) or `ip`.
    pub group: &'static str,
    /// A client kind of the group, to fetch the model with [`Detector::population_model`].
    pub kind: ClientKind,
    pub rows: usize,
    pub training_ms: f64,
    /// Log-time window the training rows were sampled from.
    pub trained_from: Timestamp,
    pub trained_to: Timestamp,
}

/// Map evidence to a score in [0, 1): 0.5 at 6.
pub fn score(evidence: f64) -> f64 {
    let e = evidence.max(0.0);
    e * e / (e * e + 36.0)
}

#[derive(Clone, Debug, Default)]
struct ClientState {
    baseline: ClientBaseline,
    /// Minute (µs) of the last minute whose evidence reached `flag_evidence`.
    last_suspicious: Option<i64>,
}

/// Evaluation of one row.
#[derive(Debug, Default)]
struct Eval {
    evidence: f64,
    reasons: Vec<(f64, Reason)>,
    established: bool,
    identity_change: bool,
    rate_dev: bool,
    global_new_share: f64,
}

/// The stateful detector: feed it closed minutes in order.
#[derive(Clone, Debug)]
pub struct Detector {
    cfg: DetectorConfig,
    clients: HashMap<ClientId<'static>, ClientState>,
    routes: RouteBaselines,
    known_routes: HashSet<String>,
    /// One population model per peer group: keyed identities and IP identities.
    models: [Option<PopulationModel>; 2],
    last_train: Option<i64>,
    train: [Vec<[f64; DIM]>; 2],
    train_seen: [u64; 2],
    rng: u64,
    first_minute: Option<i64>,
    last_minute: Option<i64>,
    anomalies: Vec<Anomaly>,
    open_by_client: HashMap<ClientId<'static>, usize>,
    open_campaigns: HashMap<String, usize>,
    /// Members of each campaign anomaly, for constant-time membership checks.
    campaign_members: HashMap<usize, HashSet<MemberRef>>,
    /// Routes many established clients took up together, with the last minute they did.
    trending: HashMap<String, i64>,
}

impl Default for Detector {
    fn default() -> Self {
        Detector::new(DetectorConfig::default())
    }
}

impl Detector {
    pub fn new(cfg: DetectorConfig) -> Detector {
        Detector {
            cfg,
            clients: HashMap::new(),
            routes: RouteBaselines::default(),
            known_routes: HashSet::new(),
            models: [None, None],
            last_train: None,
            train: [Vec::new(), Vec::new()],
            train_seen: [0, 0],
            rng: 0x9e37_79b9_7f4a_7c15,
            first_minute: None,
            last_minute: None,
            anomalies: Vec::new(),
            open_by_client: HashMap::new(),
            open_campaigns: HashMap::new(),
            campaign_members: HashMap::new(),
            trending: HashMap::new(),
        }
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }

    /// Every anomaly so far, open and resolved, in order of first detection.
    pub fn anomalies(&self) -> &[Anomaly] {
        &self.anomalies
    }

    /// The population model of a peer group (keyed identities or IP identities).
    pub fn population_model(&self, kind: ClientKind) -> Option<&PopulationModel> {
        self.models[peer_group(kind)].as_ref()
    }

    pub fn baseline(&self, client: &ClientId<'_>) -> Option<&ClientBaseline> {
        let key = ClientId {
            kind: client.kind,
            value: client.value.clone().into_owned().into(),
        };
        self.clients.get(&key).map(|s| &s.baseline)
    }

    /// Score without learning or flagging: the evidence each row would get now (for the speed
    /// benchmark and for explaining a client's current behaviour).
    pub fn score_rows(&self, minute: Timestamp, rows: &[ClientMinute]) -> Vec<f64> {
        let g = 0.0;
        let trending = HashSet::new();
        rows.iter()
            .map(|r| {
                let st = self.clients.get(&r.client);
                score(self.evaluate(minute.micros(), r, st, g, &trending).evidence)
            })
            .collect()
    }

    /// Process one closed minute. Minutes must come in increasing order; a minute at or before
    /// the last one processed is ignored.
    pub fn observe(&mut self, minute: Timestamp, rows: &[ClientMinute]) -> MinuteOutcome {
        let t = minute.micros();
        let mut out = MinuteOutcome {
            minute,
            ..MinuteOutcome::default()
        };
        if self.last_minute.is_some_and(|l| t <= l) {
            return out;
        }
        self.last_minute = Some(t);
        let first = *self.first_minute.get_or_insert(t);
        let age = (t - first) / MICROS_PER_MINUTE;
        let warm = age < i64::from(self.cfg.warmup_minutes);
        if !warm
            && self.last_train.is_none_or(|l| {
                t - l >= i64::from(self.cfg.retrain_every_minutes) * MICROS_PER_MINUTE
            })
        {
            for g in 0..2 {
                let started = std::time::Instant::now();
                if let Ok(m) = PopulationModel::fit(&self.train[g], &self.cfg.population) {
                    out.retrained.push(Retrained {
                        group: ["keyed", "ip"][g],
                        kind: [ClientKind::ApiKey, ClientKind::Ip][g],
                        rows: m.trained_rows,
                        training_ms: started.elapsed().as_secs_f64() * 1e3,
                        trained_from: Timestamp::from_micros(first),
                        trained_to: minute,
                    });
                    self.models[g] = Some(m);
                }
            }
            self.last_train = Some(t);
        }

        // route totals and route surges
        let mut totals: HashMap<String, u32> = HashMap::new();
        for r in rows {
            for (route, c) in &r.route_counts {
                *totals.entry(route.clone()).or_default() += c;
            }
        }
        out.route_surges = self.routes.observe(minute, &totals, true);

        // population-wide rise and routes many established clients take up together
        let min_history = self.cfg.min_history;
        let mut residuals = Vec::new();
        let mut new_route_users: HashMap<&str, usize> = HashMap::new();
        let mut established_active = 0usize;
        for r in rows {
            let Some(st) = self.clients.get(&r.client) else {
                continue;
            };
            if st.baseline.active_minutes < min_history
                || self.open_by_client.contains_key(&r.client)
            {
                continue;
            }
            established_active += 1;
            residuals.push(Feature::LogRate.value(r) - st.baseline.expected_log_rate(t));
            for (route, _) in &r.route_counts {
                if !st.baseline.routes.contains_key(route) {
                    *new_route_users.entry(route.as_str()).or_default() += 1;
                }
            }
        }
        out.population_factor = population_factor(residuals, self.cfg.surge_min_clients);
        let g = out.population_factor.unwrap_or(0.0).max(0.0);
        let need = 3usize.max((established_active as f64 * 0.02).ceil() as usize);
        for (route, n) in new_route_users {
            if n >= need {
                self.trending.insert(route.to_owned(), t);
            }
        }
        // a route stays exempt for 30 minutes after the last minute it was taken up together
        self.trending
            .retain(|_, last| t - *last <= 30 * MICROS_PER_MINUTE);
        let trending: HashSet<String> = self.trending.keys().cloned().collect();

        let mut flagged_now: HashSet<usize> = HashSet::new();
        let mut suspicious: Vec<bool> = vec![false; rows.len()];
        if !warm {
            let evals = self.evaluate_all(t, rows, g, &trending);
            self.campaigns(t, rows, &evals, &mut flagged_now, &mut suspicious);
            for (i, (r, ev)) in rows.iter().zip(&evals).enumerate() {
                if suspicious[i] {
                    continue;
                }
                if ev.evidence < self.cfg.campaign_member_evidence {
                    continue;
                }
                let in_open = self.open_by_client.get(&r.client).copied();
                if let Some(idx) = in_open {
                    // an open anomaly keeps flagging while the client stays clearly off
                    if ev.evidence >= self.cfg.flag_evidence * 0.5 {
                        suspicious[i] = true;
                        self.reflag(idx, t, score(ev.evidence), &mut flagged_now);
                    }
                    continue;
                }
                if ev.evidence < self.cfg.flag_evidence {
                    continue;
                }
                let st = self.clients.entry(r.client.clone()).or_default();
                let confirmed = ev.established
                    || ev.evidence >= self.cfg.single_minute_evidence
                    || st
                        .last_suspicious
                        .is_some_and(|l| t - l <= 3 * MICROS_PER_MINUTE);
                st.last_suspicious = Some(t);
                suspicious[i] = true;
                if confirmed {
                    let kind = infer_kind(r, ev, 1);
                    let idx = self.open(r.client.clone(), kind, t, ev, None, Vec::new());
                    flagged_now.insert(idx);
                }
            }
        }

        // learn from everything that is not suspicious
        for (i, r) in rows.iter().enumerate() {
            if suspicious[i] || self.open_by_client.contains_key(&r.client) {
                continue;
            }
            let st = match self.clients.get_mut(&r.client) {
                Some(st) => st,
                None => self.clients.entry(r.client.clone()).or_default(),
            };
            st.baseline.learn(r);
            for (route, _) in &r.route_counts {
                if !self.known_routes.contains(route) {
                    self.known_routes.insert(route.clone());
                }
            }
            self.sample_for_training(peer_group(r.client.kind), population::features(r));
        }

        // resolve anomalies that have been quiet
        let quiet = i64::from(self.cfg.resolve_after_minutes) * MICROS_PER_MINUTE;
        let end = t + MICROS_PER_MINUTE;
        let mut resolved = Vec::new();
        for (i, a) in self.anomalies.iter_mut().enumerate() {
            if a.state == AnomalyState::Open && end - a.last_flagged.micros() >= quiet {
                a.state = AnomalyState::Resolved;
                resolved.push(i);
            }
        }
        if !resolved.is_empty() {
            self.open_by_client.retain(|_, i| !resolved.contains(i));
            self.open_campaigns.retain(|_, i| !resolved.contains(i));
            self.campaign_members.retain(|i, _| !resolved.contains(i));
        }
        let mut flagged: Vec<usize> = flagged_now.into_iter().collect();
        flagged.sort_unstable();
        out.flagged = flagged;
        out
    }

    fn sample_for_training(&mut self, g: usize, x: [f64; DIM]) {
        self.train_seen[g] += 1;
        let train = &mut self.train[g];
        if train.len() < self.cfg.train_rows {
            train.push(x);
            return;
        }
        // xorshift64*: deterministic reservoir sampling
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) % self.train_seen[g];
        if (r as usize) < train.len() {
            train[r as usize] = x;
        }
    }

    fn reflag(&mut self, idx: usize, t: i64, s: f64, flagged: &mut HashSet<usize>) {
        let a = &mut self.anomalies[idx];
        a.last_flagged = Timestamp(t + MICROS_PER_MINUTE);
        a.score = a.score.max(s);
        flagged.insert(idx);
    }

    fn open(
        &mut self,
        client: ClientId<'static>,
        kind: AnomalyKind,
        t: i64,
        ev: &Eval,
        campaign: Option<String>,
        members: Vec<MemberRef>,
    ) -> usize {
        let mut reasons: Vec<(f64, Reason)> = ev.reasons.clone();
        reasons.sort_by(|a, b| b.0.total_cmp(&a.0));
        let idx = self.anomalies.len();
        let at = Timestamp(t + MICROS_PER_MINUTE);
        self.anomalies.push(Anomaly {
            id: idx as u64 + 1,
            client: client.value.to_string(),
            client_kind: client.kind,
            kind,
            score: score(ev.evidence),
            first_detected: at,
            last_flagged: at,
            reasons: reasons.into_iter().take(4).map(|(_, r)| r).collect(),
            state: AnomalyState::Open,
            members,
            campaign: campaign.clone(),
        });
        if let Some(c) = campaign {
            self.open_campaigns.insert(c, idx);
        } else {
            self.open_by_client.insert(client, idx);
        }
        idx
    }

    /// Layer 3: group weakly anomalous identities by shared agent or network and route.
    fn campaigns(
        &mut self,
        t: i64,
        rows: &[ClientMinute],
        evals: &[Eval],
        flagged: &mut HashSet<usize>,
        suspicious: &mut [bool],
    ) {
        let member_e = self.cfg.campaign_member_evidence;
        let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, (r, ev)) in rows.iter().zip(evals).enumerate() {
            // too weak to join or stay in any campaign: skip before building keys
            if ev.evidence < member_e * 0.5 {
                continue;
            }
            let Some(route) = r.dominant_route() else {
                continue;
            };
            let keys = campaign_keys(r, route, ev.evidence >= self.cfg.flag_evidence);
            // an identity already in an open campaign stays in it while it stays off
            if let Some(&idx) = keys.iter().find_map(|k| self.open_campaigns.get(k)) {
                if ev.evidence >= member_e * 0.5 && !ev.established {
                    suspicious[i] = true;
                    self.add_member(idx, r, t, score(ev.evidence), flagged);
                }
                continue;
            }
            if ev.evidence < member_e || ev.established {
                continue;
            }
            for k in keys {
                groups.entry(k).or_default().push(i);
            }
        }
        // largest groups first; an identity joins one campaign
        let mut keys: Vec<(String, Vec<usize>)> = groups
            .into_iter()
            .filter(|(_, m)| m.len() >= self.cfg.campaign_min_members)
            .collect();
        keys.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
        let mut taken: HashSet<usize> = HashSet::new();
        for (key, members) in keys {
            let members: Vec<usize> = members.into_iter().filter(|i| !taken.contains(i)).collect();
            if members.len() < self.cfg.campaign_min_members {
                continue;
            }
            let mut es: Vec<f64> = members.iter().map(|&i| evals[i].evidence).collect();
            es.sort_by(f64::total_cmp);
            let median = es[es.len() / 2];
            let n = members.len() as f64;
            let e = median + 1.5 * (n / self.cfg.campaign_min_members as f64).ln_1p();
            if e < self.cfg.flag_evidence {
                continue;
            }
            let mut merged = ClientMinute::empty(rows[members[0]].client.clone(), rows[0].minute);
            merged.merge_all(members.iter().map(|&i| &rows[i]));
            for &i in &members {
                taken.insert(i);
                suspicious[i] = true;
            }
            let rep = &evals[members[0]];
            let ev = Eval {
                evidence: e,
                reasons: group_reasons(&merged, members.len(), rep),
                established: false,
                identity_change: false,
                rate_dev: rep.rate_dev,
                global_new_share: rep.global_new_share,
            };
            let kind = infer_kind(&merged, &ev, members.len());
            let refs: Vec<MemberRef> = members.iter().map(|&i| member(&rows[i])).collect();
            let idx = self.open(
                rows[members[0]].client.clone(),
                kind,
                t,
                &ev,
                Some(key),
                refs,
            );
            flagged.insert(idx);
        }
    }

    fn add_member(
        &mut self,
        idx: usize,
        r: &ClientMinute,
        t: i64,
        s: f64,
        flagged: &mut HashSet<usize>,
    ) {
        let m = member(r);
        let known = self
            .campaign_members
            .entry(idx)
            .or_insert_with(|| self.anomalies[idx].members.iter().cloned().collect());
        if known.insert(m.clone()) {
            self.anomalies[idx].members.push(m);
        }
        self.reflag(idx, t, s, flagged);
    }

    /// Layers 1 and 2 for every row; large minutes are split over the available cores (each
    /// row's evaluation reads shared state only, so the split does not change any result).
    fn evaluate_all(
        &self,
        t: i64,
        rows: &[ClientMinute],
        g: f64,
        trending: &HashSet<String>,
    ) -> Vec<Eval> {
        let eval_chunk = |chunk: &[ClientMinute]| -> Vec<Eval> {
            chunk
                .iter()
                .map(|r| self.evaluate(t, r, self.clients.get(&r.client), g, trending))
                .collect()
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        if threads < 2 || rows.len() < 4096 {
            return eval_chunk(rows);
        }
        let size = rows.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = rows
                .chunks(size)
                .map(|c| scope.spawn(move || eval_chunk(c)))
                .collect();
            let mut out = Vec::with_capacity(rows.len());
            for h in handles {
                match h.join() {
                    Ok(part) => out.extend(part),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            out
        })
    }

    /// Layers 1 and 2 for one row.
    fn evaluate(
        &self,
        t: i64,
        r: &ClientMinute,
        st: Option<&ClientState>,
        g: f64,
        trending: &HashSet<String>,
    ) -> Eval {
        let mut ev = Eval::default();
        let req = f64::from(r.requests.max(1));
        let global_new: u32 = r
            .route_counts
            .iter()
            .filter(|(route, _)| !self.known_routes.contains(route) && !trending.contains(route))
            .map(|(_, c)| c)
            .sum();
        ev.global_new_share = f64::from(global_new) / req;
        // evidence groups (max within a group): volume, errors, novelty, identity, population
        let mut parts = [0.0f64; 5];
        if global_new >= 3 {
            let e = 8.0 * ev.global_new_share;
            parts[2] = parts[2].max(e);
            ev.reasons.push((
                e,
                Reason {
                    feature: "never_seen_route_share_population".into(),
                    observed: ev.global_new_share,
                    expected: 0.0,
                },
            ));
        }
        let b = st.map(|s| &s.baseline);
        if let Some(b) = b.filter(|b| b.active_minutes >= self.cfg.min_history) {
            ev.established = true;
            // rate against the expectation lifted by the population-wide rise
            let expected = b.expected_log_rate(t) + g;
            let x = Feature::LogRate.value(r);
            let z = (x - expected) / b.stat(Feature::LogRate).sd().max(Feature::LogRate.floor());
            let excess = f64::from(r.requests) - (expected.exp() - 1.0);
            if z > 0.0 && excess >= 10.0 {
                ev.rate_dev = z >= 4.0;
                parts[0] = parts[0].max(z);
                ev.reasons.push((
                    z,
                    Reason {
                        feature: "requests_per_min".into(),
                        observed: f64::from(r.requests),
                        expected: expected.exp() - 1.0,
                    },
                ));
            }
            for f in [
                Feature::ErrorShare,
                Feature::LogDistinctPaths,
                Feature::DistinctRoutes,
            ] {
                let s = b.stat(f);
                let mut x = f.value(r);
                if f == Feature::LogDistinctPaths {
                    x -= g;
                }
                let z = s.z(x, f.floor());
                let enough = match f {
                    Feature::ErrorShare => r.status.client_errors() >= 5,
                    Feature::LogDistinctPaths => r.distinct_paths() >= 10,
                    _ => true,
                };
                if z > 2.0 && enough {
                    let g = if f == Feature::ErrorShare { 1 } else { 0 };
                    parts[g] = parts[g].max(z);
                    ev.reasons.push((
                        z,
                        Reason {
                            feature: f.name().into(),
                            observed: f.display(f.value(r)),
                            expected: f.display(s.level),
                        },
                    ));
                }
            }
            // routes this client never used (unless many clients take them up together)
            let new: u32 = r
                .route_counts
                .iter()
                .filter(|(route, _)| !b.routes.contains_key(route) && !trending.contains(route))
                .map(|(_, c)| c)
                .sum();
            if new >= 3 {
                let share = f64::from(new) / req;
                let e = b.novelty.z(share, 0.1).max(0.0);
                parts[2] = parts[2].max(e);
                ev.reasons.push((
                    e,
                    Reason {
                        feature: "never_seen_route_share".into(),
                        observed: share,
                        expected: b.novelty.level,
                    },
                ));
            }
            if r.client.kind != ClientKind::Ip {
                let new_ua = r
                    .user_agents
                    .iter()
                    .filter(|u| !b.user_agents.contains(*u))
                    .count();
                let new_ips: Vec<_> = r.ips.iter().filter(|ip| !b.ips.contains(ip)).collect();
                let new_nets: HashSet<String> = new_ips
                    .iter()
                    .map(|ip| subnet(ip))
                    .filter(|n| !b.subnets.contains(n))
                    .collect();
                let e = 4.0 * new_ua as f64
                    + 2.0 * new_nets.len().min(3) as f64
                    + 0.5 * new_ips.len().min(4) as f64;
                if e > 0.0 {
                    ev.identity_change = new_ua > 0 || !new_nets.is_empty();
                    parts[3] = parts[3].max(e);
                    ev.reasons.push((
                        e,
                        Reason {
                            feature: "new_user_agents".into(),
                            observed: new_ua as f64,
                            expected: 0.0,
                        },
                    ));
                    ev.reasons.push((
                        e - 0.1,
                        Reason {
                            feature: "new_ips".into(),
                            observed: new_ips.len() as f64,
                            expected: 0.0,
                        },
                    ));
                }
            }
        } else if let Some(m) = &self.models[peer_group(r.client.kind)] {
            let x = population::features(r);
            // one or two requests say little: damp the evidence of tiny minutes
            let n = f64::from(r.requests);
            let e = m.evidence(&x) * n / (n + 2.0);
            parts[4] = parts[4].max(e);
            for (j, obs, exp) in m.explain(&x, 3) {
                ev.reasons.push((
                    e,
                    Reason {
                        feature: population::FEATURE_NAMES[j].into(),
                        observed: obs,
                        expected: exp,
                    },
                ));
            }
        }
        parts.sort_by(|a, b| b.total_cmp(a));
        ev.evidence = parts[0] + 0.5 * parts[1];
        ev
    }
}

/// Peer group of an identity kind: IP identities (anonymous traffic) are compared with each
/// other, keyed identities (API keys, consumers, users) with each other.
fn peer_group(kind: ClientKind) -> usize {
    usize::from(kind == ClientKind::Ip)
}

fn member(r: &ClientMinute) -> MemberRef {
    MemberRef {
        kind: r.client.kind,
        value: r.client.value.to_string(),
    }
}

fn campaign_keys(r: &ClientMinute, route: &str, strong: bool) -> Vec<String> {
    let mut keys = Vec::with_capacity(3);
    if strong {
        // individually anomalous new identities on one route in the same minute
        keys.push(format!("route={route}"));
    }
    if let Some(ua) = r.user_agents.first() {
        keys.push(format!("ua={ua} route={route}"));
    }
    if let Some(ip) = r.ips.first() {
        keys.push(format!("net={} route={route}", subnet(ip)));
    }
    keys
}

fn group_reasons(merged: &ClientMinute, members: usize, rep: &Eval) -> Vec<(f64, Reason)> {
    let n = members as f64;
    let mut out = vec![
        (
            100.0,
            Reason {
                feature: "members".into(),
                observed: n,
                expected: 0.0,
            },
        ),
        (
            99.0,
            Reason {
                feature: "requests_per_min_per_member".into(),
                observed: f64::from(merged.requests) / n,
                expected: 0.0,
            },
        ),
    ];
    out.extend(rep.reasons.iter().cloned());
    out
}

/// Read the kind off the pattern of a (possibly merged) minute.
fn infer_kind(r: &ClientMinute, ev: &Eval, members: usize) -> AnomalyKind {
    let st = &r.status;
    let s401 = r.share(st.s401);
    let denied = r.share(st.s403 + st.s404);
    let post = r.share(r.post);
    let per_member = f64::from(r.requests) / members.max(1) as f64;
    let path_ratio = r.distinct_paths() as f64 / f64::from(r.requests.max(1));
    if s401 >= 0.4 && post >= 0.5 {
        AnomalyKind::CredentialStuffing
    } else if ev.established && ev.identity_change {
        AnomalyKind::CompromisedKey
    } else if denied >= 0.4 {
        if ev.global_new_share >= 0.3 || r.distinct_routes() >= 4 {
            AnomalyKind::Probing
        } else {
            AnomalyKind::Enumeration
        }
    } else if members >= 5 && per_member >= 30.0 {
        AnomalyKind::Flood
    } else if path_ratio >= 0.6 && per_member >= 60.0 {
        AnomalyKind::Scraping
    } else if ev.rate_dev || per_member >= 60.0 {
        AnomalyKind::RateSpike
    } else {
        AnomalyKind::Unusual
    }
}
