//! The simulated scenario against its own ground truth: order, determinism, labels, the signature
//! of every attack class, batch bursts, the flash crowd and the volume target.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::OnceLock;

use sluice_core::time::{MICROS_PER_MINUTE, MICROS_PER_SEC};
use sluice_core::{AccessRecord, ClientKind};
use sluice_sim::{
    generate, write_logs, AttackClass, FlashCrowdSpec, IdentityRef, Labels, SimConfig, SimFormat,
    TimeScale, TrafficLabel,
};

/// Two hours (two tops of the hour), a small population, one attack of each class, and a flash
/// crowd at 0:45-1:10 (clear of the attacks around it).
fn config() -> SimConfig {
    SimConfig {
        legit_clients: 40,
        browsers: 20,
        batch_jobs: 3,
        flash_crowd: Some(FlashCrowdSpec {
            start_offset_secs: 45 * 60,
            duration_secs: 25 * 60,
            ..FlashCrowdSpec::default_for(7200)
        }),
        ..SimConfig::for_duration(42, 7200)
    }
}

struct Sample {
    cfg: SimConfig,
    records: Vec<AccessRecord<'static>>,
    labels: Labels,
}

fn sample() -> &'static Sample {
    static SAMPLE: OnceLock<Sample> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let cfg = config();
        let mut sim = generate(&cfg).unwrap();
        let records: Vec<_> = sim.by_ref().collect();
        Sample {
            cfg,
            records,
            labels: sim.into_labels(),
        }
    })
}

/// The identity the default client-key policy gives a record.
fn identity(r: &AccessRecord<'_>) -> IdentityRef {
    match (&r.api_key, r.ip) {
        (Some(k), _) => IdentityRef {
            kind: ClientKind::ApiKey,
            value: k.to_string(),
        },
        (None, Some(ip)) => IdentityRef {
            kind: ClientKind::Ip,
            value: ip.to_string(),
        },
        (None, None) => panic!("record without identity: {r:?}"),
    }
}

fn minute_of(s: &Sample, r: &AccessRecord<'_>) -> i64 {
    (r.ts.micros() - s.labels.start.micros()) / MICROS_PER_MINUTE
}

#[test]
fn records_are_in_time_order_within_the_span() {
    let s = sample();
    assert!(s.records.len() > 50_000, "{}", s.records.len());
    assert!(s.records.windows(2).all(|w| w[0].ts <= w[1].ts));
    assert_eq!(s.labels.start, s.cfg.start);
    assert_eq!(s.labels.end, s.cfg.end());
    assert!(s
        .records
        .iter()
        .all(|r| r.ts >= s.labels.start && r.ts < s.labels.end));
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let small = |seed| SimConfig {
        legit_clients: 15,
        browsers: 8,
        batch_jobs: 2,
        ..SimConfig::for_duration(seed, 1200)
    };
    let run = |cfg: &SimConfig| {
        let mut out = Vec::new();
        let labels = write_logs(cfg, SimFormat::Ndjson, &mut out).unwrap();
        (out, labels.to_json())
    };
    let (a, la) = run(&small(9));
    let (b, lb) = run(&small(9));
    let (c, lc) = run(&small(10));
    assert!(a == b && la == lb, "same seed must give identical output");
    assert!(a != c && la != lc, "another seed must give other output");
}

#[test]
fn every_record_has_a_labelled_identity_and_every_identity_appears() {
    let s = sample();
    let by = s.labels.by_identity();
    assert_eq!(by.len(), s.labels.identities.len(), "identities are unique");
    let mut seen = HashSet::new();
    for r in &s.records {
        let id = identity(r);
        assert!(by.contains_key(&id), "unlabelled {id:?}");
        seen.insert(id);
    }
    let missing: Vec<_> = by.keys().filter(|id| !seen.contains(*id)).collect();
    assert!(missing.is_empty(), "silent identities: {missing:?}");
}

#[test]
fn attack_identities_act_within_their_windows() {
    let s = sample();
    assert_eq!(s.labels.attacks.len(), AttackClass::ALL.len());
    for a in &s.labels.attacks {
        let ids: HashSet<&IdentityRef> = a.identities.iter().collect();
        let attack_ips: HashSet<IpAddr> = a.ips.iter().copied().collect();
        // the attack's own requests: for a stolen key, those from the attacker's IPs
        let recs: Vec<&AccessRecord<'_>> = s
            .records
            .iter()
            .filter(|r| {
                ids.contains(&identity(r))
                    && (a.class != AttackClass::CompromisedKey
                        || r.ip.is_some_and(|ip| attack_ips.contains(&ip)))
            })
            .collect();
        assert!(!recs.is_empty(), "{}", a.id);
        assert!(
            recs.iter().all(|r| r.ts >= a.start && r.ts < a.end),
            "{} leaves its window",
            a.id
        );
        let mut first: HashMap<IdentityRef, i64> = HashMap::new();
        for r in &recs {
            first.entry(identity(r)).or_insert(r.ts.micros());
        }
        assert_eq!(first.len(), ids.len(), "{}: every identity acts", a.id);
        for (id, ts) in first {
            assert!(
                ts < a.start.micros() + MICROS_PER_MINUTE,
                "{}: {id:?} starts late",
                a.id
            );
        }
        for id in &a.identities {
            let l = s.labels.identity(id.kind, &id.value).unwrap();
            assert_eq!(
                (l.label, l.attack_class, l.attack_id.as_deref()),
                (TrafficLabel::Attack, Some(a.class), Some(a.id.as_str()))
            );
        }
    }
}

/// What an attack's requests look like.
#[derive(Debug, Default)]
struct Stats {
    requests: usize,
    ips: HashSet<IpAddr>,
    nets: HashSet<[u8; 3]>,
    agents: HashSet<String>,
    paths: HashSet<String>,
    routes: BTreeSet<String>,
    statuses: HashMap<u16, usize>,
    /// Most requests of one identity in one minute.
    max_per_identity_minute: usize,
}

impl Stats {
    fn share(&self, statuses: &[u16]) -> f64 {
        statuses
            .iter()
            .map(|s| self.statuses.get(s).copied().unwrap_or(0))
            .sum::<usize>() as f64
            / self.requests as f64
    }
}

fn attack_stats(s: &Sample, class: AttackClass) -> Stats {
    let a = s.labels.attacks.iter().find(|a| a.class == class).unwrap();
    let ids: HashSet<&IdentityRef> = a.identities.iter().collect();
    let ips: HashSet<IpAddr> = a.ips.iter().copied().collect();
    let mut st = Stats::default();
    let mut per: HashMap<(IdentityRef, i64), usize> = HashMap::new();
    for r in &s.records {
        let id = identity(r);
        let ip = r.ip.unwrap();
        if !ids.contains(&id) || (class == AttackClass::CompromisedKey && !ips.contains(&ip)) {
            continue;
        }
        st.requests += 1;
        st.ips.insert(ip);
        if let IpAddr::V4(v4) = ip {
            let o = v4.octets();
            st.nets.insert([o[0], o[1], o[2]]);
        }
        st.agents
            .insert(r.user_agent.as_deref().unwrap().to_owned());
        st.paths.insert(r.path.to_string());
        let route = r.path.split('/').take(3).collect::<Vec<_>>().join("/");
        st.routes
            .insert(format!("{} {route}", r.method.as_deref().unwrap()));
        *st.statuses.entry(r.status).or_default() += 1;
        let n = per.entry((id, minute_of(s, r))).or_default();
        *n += 1;
        st.max_per_identity_minute = st.max_per_identity_minute.max(*n);
    }
    st
}

#[test]
fn each_attack_class_has_its_signature() {
    let s = sample();
    type Check = fn(&Stats, &Sample) -> Result<(), String>;
    let cases: [(AttackClass, Check); 6] = [
        (AttackClass::Scraping, |st, _| {
            let all = [
                st.ips.len() == 1,
                st.paths.len() as f64 >= 0.95 * st.requests as f64,
                st.paths.len() >= 1000,
                st.routes.len() == 1,
                st.max_per_identity_minute >= 150,
            ];
            check(
                all.iter().all(|c| *c),
                "one ip, >=1000 distinct product paths, >=150/min",
            )
        }),
        (AttackClass::CredentialStuffing, |st, _| {
            let all = [
                st.share(&[401]) >= 0.8,
                st.ips.len() >= 100,
                st.nets.len() <= 5,
                st.agents.len() == 1,
                st.routes.iter().eq(["POST /v1/login"].iter()),
                st.max_per_identity_minute <= 12,
            ];
            check(
                all.iter().all(|c| *c),
                ">=80% 401 from >=100 ips in <=5 /24s, one agent, low rate each",
            )
        }),
        (AttackClass::Enumeration, |st, _| {
            let all = [
                st.ips.len() == 1,
                st.share(&[403, 404]) >= 0.7,
                st.paths.len() == st.requests,
                st.max_per_identity_minute < 30,
                st.routes.iter().eq(["GET /v1/users"].iter()),
            ];
            check(
                all.iter().all(|c| *c),
                "one key, distinct /v1/users ids, >=70% 403/404, <30/min",
            )
        }),
        (AttackClass::CompromisedKey, |st, s| {
            let a = s
                .labels
                .attacks
                .iter()
                .find(|a| a.class == AttackClass::CompromisedKey)
                .unwrap();
            let key = &a.identities[0].value;
            let before: Vec<_> = s
                .records
                .iter()
                .filter(|r| r.api_key.as_deref() == Some(key.as_str()) && r.ts < a.start)
                .collect();
            let old_ips: HashSet<IpAddr> = before.iter().filter_map(|r| r.ip).collect();
            let old_agents: HashSet<&str> = before
                .iter()
                .filter_map(|r| r.user_agent.as_deref())
                .collect();
            let all = [
                !before.is_empty(),
                st.ips.is_disjoint(&old_ips),
                st.agents.iter().all(|a| !old_agents.contains(a.as_str())),
                st.routes.contains("GET /v1/admin"),
                !before.iter().any(|r| r.path.starts_with("/v1/admin")),
                st.share(&[200]) > 0.5,
            ];
            check(
                all.iter().all(|c| *c),
                "known key, new ips and agent, admin routes never used before",
            )
        }),
        (AttackClass::Probing, |st, _| {
            let known = sluice_sim::ROUTES
                .iter()
                .filter(|r| !r.template.contains("**"))
                .map(|r| r.template.split('{').next().unwrap().to_owned())
                .collect::<Vec<_>>();
            let odd = st.paths.iter().all(|p| {
                !known
                    .iter()
                    .any(|k| k.len() > 1 && p.starts_with(k.as_str()))
            });
            let all = [
                st.ips.len() == 1,
                st.share(&[404]) >= 0.8,
                st.paths.len() >= 20,
                odd,
            ];
            check(
                all.iter().all(|c| *c),
                "one ip, >=80% 404 on >=20 paths outside the api",
            )
        }),
        (AttackClass::Flood, |st, _| {
            let all = [
                (50..=100).contains(&st.ips.len()),
                st.routes.iter().eq(["GET /v1/search"].iter()),
                st.max_per_identity_minute >= 100,
            ];
            check(
                all.iter().all(|c| *c),
                "50-100 ips hammering one route at >=100/min each",
            )
        }),
    ];
    for (class, check) in cases {
        let st = attack_stats(s, class);
        if let Err(what) = check(&st, s) {
            panic!(
                "{class}: expected {what}; got {} requests, {} ips, {} nets, {} agents, {} paths, routes {:?}, statuses {:?}, max {}/min",
                st.requests, st.ips.len(), st.nets.len(), st.agents.len(), st.paths.len(),
                st.routes, st.statuses, st.max_per_identity_minute
            );
        }
    }
}

fn check(cond: bool, what: &str) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what.to_owned())
    }
}

#[test]
fn batch_jobs_burst_at_the_top_of_every_hour() {
    let s = sample();
    let jobs: HashSet<&str> = s
        .labels
        .identities
        .iter()
        .filter(|l| l.label == TrafficLabel::BatchJob)
        .map(|l| l.value.as_str())
        .collect();
    assert_eq!(jobs.len(), 3);
    let mut bursts: HashMap<&str, BTreeSet<i64>> = HashMap::new();
    let (mut inside, mut total) = (0, 0);
    for r in &s.records {
        let Some(key) = r.api_key.as_deref().filter(|k| jobs.contains(k)) else {
            continue;
        };
        total += 1;
        let into_hour = r.ts.micros().rem_euclid(3600 * MICROS_PER_SEC);
        if into_hour < 4 * MICROS_PER_MINUTE {
            inside += 1;
        }
        bursts
            .entry(jobs.get(key).unwrap())
            .or_default()
            .insert(r.ts.micros() / (3600 * MICROS_PER_SEC));
    }
    assert_eq!(
        inside, total,
        "every batch request falls in minutes 0-3 of an hour"
    );
    assert!(total > 1000, "{total}");
    for (job, hours) in bursts {
        assert_eq!(hours.len(), 2, "{job} bursts every hour");
    }
}

#[test]
fn flash_crowd_raises_legitimate_traffic_three_times() {
    let s = sample();
    let f = &s.labels.flash_crowds[0];
    let by = s.labels.by_identity();
    let minute = |m: i64| f.start.micros() + m * MICROS_PER_MINUTE;
    // plateau: after the 3-minute ramp up, before the 5-minute ramp down
    let (plateau_lo, plateau_hi) = (minute(3), f.end.micros() - 5 * MICROS_PER_MINUTE);
    let (base_lo, base_hi) = (minute(-15), minute(0));
    let (mut base, mut plateau, mut hot) = (0usize, 0usize, 0usize);
    for r in &s.records {
        if by[&identity(r)].label.is_attack() {
            continue;
        }
        let t = r.ts.micros();
        if (base_lo..base_hi).contains(&t) {
            base += 1;
        } else if (plateau_lo..plateau_hi).contains(&t) {
            plateau += 1;
            hot += usize::from(r.path == f.path);
        }
    }
    let per_min =
        |n: usize, lo: i64, hi: i64| n as f64 * MICROS_PER_MINUTE as f64 / (hi - lo) as f64;
    let ratio = per_min(plateau, plateau_lo, plateau_hi) / per_min(base, base_lo, base_hi);
    assert!(ratio >= 3.0, "flash crowd ratio {ratio:.2}");
    assert!(
        hot as f64 >= 0.3 * plateau as f64,
        "{hot} of {plateau} on {}",
        f.path
    );
    let new = s
        .labels
        .identities
        .iter()
        .filter(|l| l.label == TrafficLabel::FlashCrowd)
        .count();
    assert_eq!(new, FlashCrowdSpec::default_for(7200).new_browsers);
}

#[test]
fn target_lines_is_reached_within_ten_percent() {
    for (secs, clients, target) in [
        (1800, 30, 40_000u64),
        (3600, 80, 120_000),
        (3600, 5, 20_000),
    ] {
        let cfg = SimConfig {
            legit_clients: clients,
            target_lines: Some(target),
            ..SimConfig::for_duration(5, secs)
        };
        let sim = generate(&cfg).unwrap();
        let expected = sim.expected_lines();
        let got = sim.count() as f64;
        let err = (got - target as f64).abs() / target as f64;
        assert!(
            err <= 0.10,
            "{secs}s/{clients}: {got} lines for a target of {target} (expected {expected})"
        );
    }
}

#[test]
fn labels_file_round_trips() {
    let s = sample();
    let text = s.labels.to_json();
    assert!(
        text.contains("\"start\": \"2026-03-02T00:00:00Z\""),
        "{}",
        &text[..200]
    );
    assert!(text.contains("\"label\": \"batch_job\""));
    assert!(text.contains("\"attack_class\": \"credential_stuffing\""));
    assert_eq!(Labels::from_json(&text).unwrap(), s.labels);
}

#[test]
fn schedule_compresses_log_time() {
    let cfg = SimConfig {
        legit_clients: 5,
        browsers: 2,
        batch_jobs: 1,
        ..SimConfig::for_duration(3, 600)
    };
    let start = cfg.start.micros();
    let sim = generate(&cfg).unwrap();
    let sched = sim.schedule(TimeScale::new(60.0).unwrap());
    let mut last = std::time::Duration::ZERO;
    let mut n = 0;
    for (offset, rec) in sched {
        assert!(offset >= last);
        let want = (rec.ts.micros() - start) as f64 / 60.0;
        assert!((offset.as_micros() as f64 - want).abs() <= 1.0);
        last = offset;
        n += 1;
    }
    assert!(
        n > 100 && last <= std::time::Duration::from_secs(10),
        "{n} {last:?}"
    );
}

#[test]
fn invalid_configurations_are_refused_before_writing() {
    let cfg = SimConfig {
        duration_secs: 10,
        ..SimConfig::for_duration(1, 3600)
    };
    let mut out = Vec::new();
    let err = write_logs(&cfg, SimFormat::Nginx, &mut out).unwrap_err();
    assert_eq!(err.to_string(), "duration must be at least 60s, not 10s");
    assert!(out.is_empty());
}
