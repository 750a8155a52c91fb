//! Scoring the run against the ground truth: every request the driver sent is legitimate or
//! belongs to one attack (from the simulator's labels), and was admitted (it reached the
//! upstream), rejected by the gateway (429) or failed. An attack counts as enforced from the
//! first of its requests the gateway rejected: shadow-mode rules never reject, so that is the
//! moment a limit matching it was in force.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use serde::Serialize;
use sluice_core::{AccessRecord, ClientKind, Timestamp};
use sluice_sim::{AttackClass, Labels, TrafficLabel};

/// The targets of issue 7.
pub const TARGET_TIME_TO_ENFORCE_S: f64 = 60.0;
pub const TARGET_ADMITTED_AFTER_ENFORCE: f64 = 0.01;
pub const TARGET_LEGIT_REJECTED: f64 = 0.001;

/// Whose request it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    Legit(TrafficLabel),
    /// Index into [`Classifier::attacks`].
    Attack(usize),
}

#[derive(Debug)]
pub struct AttackInfo {
    pub id: String,
    pub class: AttackClass,
    pub start: Timestamp,
    pub end: Timestamp,
    /// A stolen key: only requests from these IPs inside the window are the attacker's.
    pub compromised: Option<HashSet<IpAddr>>,
}

/// Tells who sent a record, from the labels.
#[derive(Debug)]
pub struct Classifier {
    identities: HashMap<(ClientKind, String), (TrafficLabel, Option<usize>)>,
    pub attacks: Vec<AttackInfo>,
}

impl Classifier {
    pub fn new(labels: &Labels) -> Classifier {
        let attacks: Vec<AttackInfo> = labels
            .attacks
            .iter()
            .map(|a| AttackInfo {
                id: a.id.clone(),
                class: a.class,
                start: a.start,
                end: a.end,
                compromised: (a.class == AttackClass::CompromisedKey)
                    .then(|| a.ips.iter().copied().collect()),
            })
            .collect();
        let index: HashMap<&str, usize> = attacks
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.as_str(), i))
            .collect();
        let identities = labels
            .identities
            .iter()
            .map(|l| {
                let attack = l.attack_id.as_deref().and_then(|id| index.get(id).copied());
                ((l.kind, l.value.clone()), (l.label, attack))
            })
            .collect();
        Classifier {
            identities,
            attacks,
        }
    }

    /// Identities are named as the default client-key policy does: the API key if there is
    /// one, else the IP.
    pub fn classify(&self, rec: &AccessRecord<'_>) -> Who {
        let key = match (&rec.api_key, rec.ip) {
            (Some(k), _) if !k.is_empty() => (ClientKind::ApiKey, k.to_string()),
            (_, Some(ip)) => (ClientKind::Ip, ip.to_string()),
            _ => return Who::Legit(TrafficLabel::Legit),
        };
        match self.identities.get(&key) {
            Some((TrafficLabel::Attack, Some(i))) => {
                let a = &self.attacks[*i];
                match &a.compromised {
                    Some(ips) => {
                        let theirs = rec.ip.is_some_and(|ip| ips.contains(&ip))
                            && rec.ts >= a.start
                            && rec.ts < a.end;
                        if theirs {
                            Who::Attack(*i)
                        } else {
                            // the key's owner, going on as usual
                            Who::Legit(TrafficLabel::Legit)
                        }
                    }
                    None => Who::Attack(*i),
                }
            }
            Some((label, _)) => Who::Legit(*label),
            None => Who::Legit(TrafficLabel::Legit),
        }
    }
}

/// What happened to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Reached the upstream.
    Admitted,
    /// Answered 429 by the gateway, with the rule it named.
    Rejected(Option<String>),
    /// Anything else: the gateway could not reach the upstream, had no policy, or the request
    /// failed.
    Failed,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    pub requests: u64,
    pub admitted: u64,
    pub rejected: u64,
    pub failed: u64,
}

impl Counts {
    fn add(&mut self, o: &Outcome) {
        self.requests += 1;
        match o {
            Outcome::Admitted => self.admitted += 1,
            Outcome::Rejected(_) => self.rejected += 1,
            Outcome::Failed => self.failed += 1,
        }
    }
}

#[derive(Debug, Default)]
struct AttackLog {
    counts: Counts,
    /// (wall seconds when sent, admitted), in completion order.
    sends: Vec<(f64, bool)>,
    first_request: Option<f64>,
    enforced_at: Option<f64>,
    rules: BTreeMap<String, u64>,
}

/// Running tally of the driver's requests.
#[derive(Debug)]
pub struct Score {
    legit: BTreeMap<&'static str, Counts>,
    attacks: Vec<AttackLog>,
    ids: Vec<(String, AttackClass)>,
}

fn label_name(l: TrafficLabel) -> &'static str {
    match l {
        TrafficLabel::Legit => "api_client",
        TrafficLabel::Browser => "browser",
        TrafficLabel::BatchJob => "batch_job",
        TrafficLabel::FlashCrowd => "flash_crowd",
        TrafficLabel::Attack => "attack",
    }
}

/// One attack in the report.
#[derive(Clone, Debug, Serialize)]
pub struct AttackReport {
    pub id: String,
    pub class: AttackClass,
    pub requests: u64,
    pub admitted: u64,
    pub rejected: u64,
    pub failed: u64,
    /// Wall seconds from the demo start to the attack's first request.
    pub first_request_s: Option<f64>,
    /// Wall seconds from its first request to its first rejected request; `None`: never.
    pub time_to_enforce_s: Option<f64>,
    pub requests_after_enforce: u64,
    pub admitted_after_enforce: u64,
    /// Rules that rejected its requests, with counts.
    pub rules: BTreeMap<String, u64>,
}

/// The figures of a run (the JSON the demo prints last).
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Median over attacks (never enforced counts as infinitely late); `None` if that median is
    /// never.
    pub attack_time_to_enforce_s: Option<f64>,
    /// Admitted share of attack requests sent after their attack was enforced; `None` if no
    /// attack was.
    pub attack_admitted_after_enforce_ratio: Option<f64>,
    pub legit_rejected_ratio: f64,
    pub legit_requests: u64,
    pub attack_requests: u64,
    pub legit_rejected: u64,
    pub legit_failed: u64,
    pub attack_failed: u64,
    pub attacks_enforced: usize,
    pub legit_by_label: BTreeMap<&'static str, Counts>,
    pub attacks: Vec<AttackReport>,
}

impl Score {
    pub fn new(c: &Classifier) -> Score {
        Score {
            legit: BTreeMap::new(),
            attacks: c.attacks.iter().map(|_| AttackLog::default()).collect(),
            ids: c.attacks.iter().map(|a| (a.id.clone(), a.class)).collect(),
        }
    }

    /// Record one request sent `sent` wall seconds after the start.
    pub fn record(&mut self, who: Who, sent: f64, outcome: Outcome) {
        match who {
            Who::Legit(l) => self.legit.entry(label_name(l)).or_default().add(&outcome),
            Who::Attack(i) => {
                let Some(a) = self.attacks.get_mut(i) else {
                    return;
                };
                a.counts.add(&outcome);
                a.first_request = Some(a.first_request.map_or(sent, |f| f.min(sent)));
                if let Outcome::Rejected(rule) = &outcome {
                    a.enforced_at = Some(a.enforced_at.map_or(sent, |e| e.min(sent)));
                    *a.rules
                        .entry(rule.clone().unwrap_or_else(|| "(unnamed)".into()))
                        .or_default() += 1;
                }
                a.sends.push((sent, outcome == Outcome::Admitted));
            }
        }
    }

    pub fn summary(&self) -> Summary {
        let mut legit = Counts::default();
        for c in self.legit.values() {
            legit.requests += c.requests;
            legit.admitted += c.admitted;
            legit.rejected += c.rejected;
            legit.failed += c.failed;
        }
        let mut attacks = Vec::new();
        let (mut after, mut admitted_after, mut attack_requests, mut attack_failed) = (0, 0, 0, 0);
        let mut times = Vec::new();
        for (a, (id, class)) in self.attacks.iter().zip(&self.ids) {
            let tte = match (a.first_request, a.enforced_at) {
                (Some(f), Some(e)) => Some(round2(e - f)),
                _ => None,
            };
            let (mut n, mut adm) = (0, 0);
            if let Some(e) = a.enforced_at {
                for &(t, ok) in &a.sends {
                    if t >= e {
                        n += 1;
                        adm += u64::from(ok);
                    }
                }
            }
            after += n;
            admitted_after += adm;
            attack_requests += a.counts.requests;
            attack_failed += a.counts.failed;
            if a.counts.requests > 0 {
                times.push(tte.unwrap_or(f64::INFINITY));
            }
            attacks.push(AttackReport {
                id: id.clone(),
                class: *class,
                requests: a.counts.requests,
                admitted: a.counts.admitted,
                rejected: a.counts.rejected,
                failed: a.counts.failed,
                first_request_s: a.first_request.map(round2),
                time_to_enforce_s: tte,
                requests_after_enforce: n,
                admitted_after_enforce: adm,
                rules: a.rules.clone(),
            });
        }
        Summary {
            attack_time_to_enforce_s: median(&mut times).filter(|m| m.is_finite()).map(round2),
            attack_admitted_after_enforce_ratio: (after > 0)
                .then(|| admitted_after as f64 / after as f64),
            legit_rejected_ratio: ratio(legit.rejected, legit.requests),
            legit_requests: legit.requests,
            attack_requests,
            legit_rejected: legit.rejected,
            legit_failed: legit.failed,
            attack_failed,
            attacks_enforced: attacks
                .iter()
                .filter(|a| a.time_to_enforce_s.is_some())
                .count(),
            legit_by_label: self.legit.clone(),
            attacks,
        }
    }
}

impl Summary {
    /// Whether each target is met: (time to enforce, admitted after enforcement, legit
    /// rejected).
    pub fn targets_met(&self) -> (bool, bool, bool) {
        (
            self.attack_time_to_enforce_s
                .is_some_and(|t| t < TARGET_TIME_TO_ENFORCE_S),
            self.attack_admitted_after_enforce_ratio
                .is_some_and(|r| r <= TARGET_ADMITTED_AFTER_ENFORCE),
            self.legit_rejected_ratio <= TARGET_LEGIT_REJECTED,
        )
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Median (mean of the middle two for an even count); `None` when empty.
pub fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_sim::{generate, SimConfig};

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(
            median(&mut [1.0, f64::INFINITY, f64::INFINITY]),
            Some(f64::INFINITY)
        );
    }

    #[test]
    fn classifies_every_simulated_record_as_its_labels_say() {
        let cfg = SimConfig {
            legit_clients: 20,
            browsers: 10,
            ..SimConfig::for_duration(3, 3600)
        };
        let sim = generate(&cfg).unwrap();
        let c = Classifier::new(sim.labels());
        let mut per_attack = vec![0u64; c.attacks.len()];
        let mut legit = 0u64;
        for rec in sim {
            match c.classify(&rec) {
                Who::Attack(i) => {
                    let a = &c.attacks[i];
                    assert!(
                        rec.ts >= a.start && rec.ts < a.end,
                        "{} at {}",
                        a.id,
                        rec.ts
                    );
                    per_attack[i] += 1;
                }
                Who::Legit(l) => {
                    assert_ne!(l, TrafficLabel::Attack);
                    legit += 1;
                }
            }
        }
        assert!(legit > 0);
        assert!(per_attack.iter().all(|&n| n > 0), "{per_attack:?}");
    }

    #[test]
    fn enforcement_time_and_ratios() {
        let c = Classifier {
            identities: HashMap::new(),
            attacks: vec![
                AttackInfo {
                    id: "scraping-1".into(),
                    class: AttackClass::Scraping,
                    start: Timestamp::from_micros(0),
                    end: Timestamp::from_micros(1),
                    compromised: None,
                },
                AttackInfo {
                    id: "probing-1".into(),
                    class: AttackClass::Probing,
                    start: Timestamp::from_micros(0),
                    end: Timestamp::from_micros(1),
                    compromised: None,
                },
            ],
        };
        let mut s = Score::new(&c);
        let lg = Who::Legit(TrafficLabel::Legit);
        for i in 0..999 {
            s.record(lg, i as f64, Outcome::Admitted);
        }
        s.record(lg, 5.0, Outcome::Rejected(Some("r".into())));
        s.record(Who::Attack(0), 10.0, Outcome::Admitted);
        s.record(Who::Attack(0), 20.0, Outcome::Admitted);
        s.record(
            Who::Attack(0),
            40.0,
            Outcome::Rejected(Some("abuse".into())),
        );
        s.record(Who::Attack(0), 41.0, Outcome::Admitted);
        s.record(Who::Attack(0), 39.0, Outcome::Admitted);
        for t in 42..50 {
            s.record(
                Who::Attack(0),
                t as f64,
                Outcome::Rejected(Some("abuse".into())),
            );
        }
        s.record(Who::Attack(1), 30.0, Outcome::Admitted);
        let m = s.summary();
        assert_eq!(m.legit_requests, 1000);
        assert_eq!(m.legit_rejected_ratio, 0.001);
        assert_eq!(m.attack_requests, 14);
        assert_eq!(m.attacks[0].time_to_enforce_s, Some(30.0));
        assert_eq!(m.attacks[0].requests_after_enforce, 10);
        assert_eq!(m.attacks[0].admitted_after_enforce, 1);
        assert_eq!(m.attacks[1].time_to_enforce_s, None);
        // two attacks, one never enforced: the median is never
        assert_eq!(m.attack_time_to_enforce_s, None);
        assert_eq!(m.attack_admitted_after_enforce_ratio, Some(0.1));
        assert_eq!(m.attacks_enforced, 1);
        assert_eq!(m.targets_met(), (false, false, true));
    }
}
