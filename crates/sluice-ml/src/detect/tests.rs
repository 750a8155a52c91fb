//! Tests of the detection layers on a small labelled simulated scenario (every layer, the flash
//! crowd, batch jobs, causality) and of the minute aggregator.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::OnceLock;

use sluice_core::time::{MICROS_PER_MINUTE, MICROS_PER_SEC};
use sluice_core::{
    AccessRecord, ClientId, ClientKeyPolicy, ClientKind, RouteNormalizer, Timestamp,
};
use sluice_sim::{
    generate, AttackClass, AttackSpec, FlashCrowdSpec, Labels, SimConfig, TrafficLabel,
};

use super::*;

const MIN: u64 = 60;

/// 100 minutes: warm-up, then one attack of each class, then a flash crowd.
fn config() -> SimConfig {
    let spec = |class, start: u64, len: u64, sources: Option<usize>| {
        let mut a = AttackSpec::new(class, start * MIN, len * MIN);
        if let Some(s) = sources {
            a.sources = s;
        }
        a
    };
    SimConfig {
        legit_clients: 15,
        browsers: 80,
        batch_jobs: 3,
        attacks: vec![
            spec(AttackClass::Scraping, 38, 8, None),
            spec(AttackClass::CredentialStuffing, 42, 15, Some(40)),
            spec(AttackClass::Enumeration, 46, 20, None),
            spec(AttackClass::CompromisedKey, 50, 10, None),
            spec(AttackClass::Probing, 55, 5, None),
            spec(AttackClass::Flood, 62, 3, Some(12)),
        ],
        flash_crowd: Some(FlashCrowdSpec {
            start_offset_secs: 72 * MIN,
            duration_secs: 20 * MIN,
            ..FlashCrowdSpec::default_for(100 * MIN)
        }),
        ..SimConfig::for_duration(11, 100 * MIN)
    }
}

struct Sample {
    records: Vec<AccessRecord<'static>>,
    labels: Labels,
    anomalies: Vec<Anomaly>,
}

fn enrich(mut rec: AccessRecord<'static>) -> AccessRecord<'static> {
    rec.client = ClientKeyPolicy::default()
        .resolve(&rec)
        .map(ClientId::into_owned);
    rec.route = Some(Cow::Owned(
        RouteNormalizer::default().normalize(&rec.path).into_owned(),
    ));
    rec
}

fn sample() -> &'static Sample {
    static S: OnceLock<Sample> = OnceLock::new();
    S.get_or_init(|| {
        let mut sim = generate(&config()).unwrap();
        let records: Vec<_> = sim.by_ref().map(enrich).collect();
        let labels = sim.into_labels();
        let mut p = Pipeline::default();
        for r in &records {
            p.push(r);
        }
        p.finish();
        Sample {
            records,
            labels,
            anomalies: p.anomalies().to_vec(),
        }
    })
}

fn attack_ids(labels: &Labels, class: AttackClass) -> HashSet<String> {
    labels
        .attacks
        .iter()
        .filter(|a| a.class == class)
        .flat_map(|a| a.identities.iter().map(|i| i.value.clone()))
        .collect()
}

/// Anomalies naming any identity of the class, after its start.
fn found(class: AttackClass) -> Vec<&'static Anomaly> {
    let s = sample();
    let ids = attack_ids(&s.labels, class);
    let start = s
        .labels
        .attacks
        .iter()
        .find(|a| a.class == class)
        .unwrap()
        .start;
    s.anomalies
        .iter()
        .filter(|a| a.first_detected >= start)
        .filter(|a| a.identities().iter().any(|m| ids.contains(&m.value)))
        .collect()
}

#[test]
fn every_layer_catches_its_attacks_quickly_with_the_right_kind() {
    let s = sample();
    // (class, expected kind, a reason feature that shows which layer spoke)
    let cases = [
        // layer 1: the stolen key deviates from its own baseline (new agent, new networks)
        (
            AttackClass::CompromisedKey,
            AnomalyKind::CompromisedKey,
            "new_user_agents",
        ),
        // layer 2: new identities unlike any normal group of their peers
        (AttackClass::Scraping, AnomalyKind::Scraping, ""),
        (AttackClass::Probing, AnomalyKind::Probing, ""),
        (AttackClass::Enumeration, AnomalyKind::Enumeration, ""),
        // layer 3: campaigns
        (
            AttackClass::CredentialStuffing,
            AnomalyKind::CredentialStuffing,
            "members",
        ),
        (AttackClass::Flood, AnomalyKind::Flood, "members"),
    ];
    for (class, kind, reason) in cases {
        let hits = found(class);
        assert!(!hits.is_empty(), "{class} not detected");
        let first = hits.iter().map(|a| a.first_detected).min().unwrap();
        let start = s
            .labels
            .attacks
            .iter()
            .find(|a| a.class == class)
            .unwrap()
            .start;
        assert!(
            first.micros() - start.micros() <= 2 * MICROS_PER_MINUTE,
            "{class} detected late at {first}"
        );
        assert!(hits.iter().any(|a| a.kind == kind), "{class}: {hits:#?}");
        if !reason.is_empty() {
            assert!(
                hits.iter()
                    .any(|a| a.reasons.iter().any(|r| r.feature == reason)),
                "{class}: {hits:#?}"
            );
        }
    }
}

#[test]
fn campaigns_list_their_members() {
    let s = sample();
    for class in [AttackClass::CredentialStuffing, AttackClass::Flood] {
        let ids = attack_ids(&s.labels, class);
        let named: HashSet<String> = found(class)
            .iter()
            .filter(|a| a.campaign.is_some())
            .flat_map(|a| a.members.iter().map(|m| m.value.clone()))
            .collect();
        let covered = ids.iter().filter(|i| named.contains(*i)).count();
        assert!(
            covered * 10 >= ids.len() * 9,
            "{class}: {covered} of {} members named",
            ids.len()
        );
    }
}

#[test]
fn legitimate_traffic_is_not_flagged() {
    let s = sample();
    let by = s.labels.by_identity();
    let mut flagged = Vec::new();
    let mut legit_total = 0;
    for l in &s.labels.identities {
        if !l.label.is_attack() {
            legit_total += 1;
        }
    }
    for a in &s.anomalies {
        for m in a.identities() {
            let key = sluice_sim::IdentityRef {
                kind: m.kind,
                value: m.value.clone(),
            };
            let label = by.get(&key).map(|l| l.label);
            assert_ne!(
                label,
                Some(TrafficLabel::BatchJob),
                "batch job flagged: {a:#?}"
            );
            assert_ne!(
                label,
                Some(TrafficLabel::FlashCrowd),
                "crowd flagged: {a:#?}"
            );
            if label.is_some_and(|l| !l.is_attack()) {
                flagged.push(m.value.clone());
            }
        }
    }
    // at most 1% of legitimate identities (rounded up: 1 of ~100)
    assert!(
        flagged.len() * 100 <= legit_total.max(100),
        "{} of {legit_total} legitimate identities flagged: {flagged:?}",
        flagged.len()
    );
    // and nobody legitimate during the flash crowd
    let crowd = &s.labels.flash_crowds[0];
    for a in &s.anomalies {
        if a.first_detected >= crowd.start && a.first_detected <= crowd.end {
            for m in a.identities() {
                let key = sluice_sim::IdentityRef {
                    kind: m.kind,
                    value: m.value.clone(),
                };
                assert!(
                    by.get(&key).is_none_or(|l| l.label.is_attack()),
                    "flagged during the flash crowd: {a:#?}"
                );
            }
        }
    }
}

#[test]
fn scores_are_in_unit_interval() {
    for a in &sample().anomalies {
        assert!((0.0..=1.0).contains(&a.score), "{a:#?}");
        assert!(!a.reasons.is_empty());
    }
    for e in [0.0, 1.0, 6.0, 1e9, -3.0] {
        assert!((0.0..=1.0).contains(&score(e)));
    }
    assert_eq!(score(6.0), 0.5);
}

#[test]
fn appending_future_records_never_changes_earlier_anomalies() {
    let s = sample();
    let cut = s.labels.start.micros() + 58 * MICROS_PER_MINUTE;
    let mut p = Pipeline::default();
    for r in s.records.iter().filter(|r| r.ts.micros() < cut) {
        p.push(r);
    }
    // without finish(): only minutes the watermark closed have been scored
    let prefix = p.anomalies().to_vec();
    assert!(!prefix.is_empty());
    let key = |a: &Anomaly| {
        (
            a.id,
            a.client.clone(),
            a.kind,
            a.first_detected,
            a.reasons.clone(),
        )
    };
    for (a, b) in prefix.iter().zip(&s.anomalies) {
        assert_eq!(key(a), key(b));
    }
    let horizon = prefix.iter().map(|a| a.first_detected).max().unwrap();
    let later_in_full = s
        .anomalies
        .iter()
        .skip(prefix.len())
        .filter(|a| a.first_detected <= horizon)
        .count();
    assert_eq!(later_in_full, 0);
}

fn rec(
    sec: i64,
    client: &str,
    path: &str,
    status: u16,
    ip: &str,
    ua: &str,
) -> AccessRecord<'static> {
    enrich(AccessRecord {
        ts: Timestamp(sec * MICROS_PER_SEC),
        api_key: Some(client.to_owned().into()),
        ip: Some(ip.parse().unwrap()),
        method: Some("GET".into()),
        path: path.to_owned().into(),
        status,
        bytes_sent: Some(100),
        latency_us: Some(2000),
        user_agent: Some(ua.to_owned().into()),
        ..AccessRecord::default()
    })
}

#[test]
fn aggregator_builds_minutes_behind_the_watermark() {
    let mut agg = Aggregator::new(MICROS_PER_MINUTE);
    let mut closed = Vec::new();
    let input = [
        rec(0, "k1", "/v1/products/1", 200, "10.0.0.1", "a"),
        rec(2, "k1", "/v1/products/2", 404, "10.0.0.2", "a"),
        rec(4, "k1", "/v1/login", 401, "10.0.0.1", "b"),
        rec(30, "k2", "/v1/search", 503, "10.0.1.1", "c"),
        rec(70, "k1", "/v1/search", 200, "10.0.0.1", "a"),
        // watermark now 10 s: nothing closed yet; this one is 59 s late and still counts
        rec(11, "k1", "/v1/products/1", 403, "10.0.0.1", "a"),
        rec(121, "k1", "/v1/search", 200, "10.0.0.1", "a"),
        // watermark 61 s: minute 0 closed; a record for minute 0 is now too late
        rec(50, "k1", "/v1/x", 200, "10.0.0.1", "a"),
    ];
    for r in &input {
        closed.extend(agg.push(r));
    }
    assert_eq!(agg.late_dropped(), 1);
    assert_eq!(closed.len(), 1);
    let m0 = &closed[0];
    assert_eq!(m0.minute, Timestamp(0));
    assert_eq!(m0.rows.len(), 2);
    let k1 = &m0.rows[0];
    assert_eq!(k1.client.value, "k1");
    // (field, observed, expected)
    let checks: [(&str, f64, f64); 10] = [
        ("requests", f64::from(k1.requests), 4.0),
        ("peak_10s", f64::from(k1.peak_10s()), 3.0),
        ("s401", f64::from(k1.status.s401), 1.0),
        ("s403", f64::from(k1.status.s403), 1.0),
        ("s404", f64::from(k1.status.s404), 1.0),
        ("distinct_routes", k1.distinct_routes() as f64, 2.0),
        ("distinct_paths", k1.distinct_paths() as f64, 3.0),
        ("ips", k1.ips.len() as f64, 2.0),
        ("user_agents", k1.user_agents.len() as f64, 2.0),
        ("gaps", f64::from(k1.gap_count), 3.0),
    ];
    for (name, got, want) in checks {
        assert_eq!(got, want, "{name}");
    }
    assert_eq!(m0.rows[1].status.s5xx, 1);
    let rest = agg.flush();
    assert_eq!(
        rest.iter()
            .map(|m| m.minute.micros() / MICROS_PER_MINUTE)
            .collect::<Vec<_>>(),
        [1, 2]
    );
}

#[test]
fn merge_adds_counters_and_unions_sets() {
    let mut agg = Aggregator::new(0);
    let mut rows = Vec::new();
    for r in [
        rec(1, "k", "/a/1", 200, "10.0.0.1", "x"),
        rec(61, "k", "/a/2", 404, "10.0.0.2", "x"),
        rec(200, "k", "/a/3", 200, "10.0.0.2", "x"),
    ] {
        rows.extend(agg.push(&r).into_iter().flat_map(|m| m.rows));
    }
    assert_eq!(rows.len(), 2);
    let mut a = rows[0].clone();
    a.merge(&rows[1]);
    assert_eq!(a.requests, 2);
    assert_eq!(a.status.s404, 1);
    assert_eq!(a.route_counts, vec![("/a/{id}".to_owned(), 2)]);
    assert_eq!(a.distinct_paths(), 2);
    assert_eq!(a.ips.len(), 2);
    assert_eq!(a.user_agents.len(), 1);
    let id = ClientMinute::empty(a.client.clone(), a.minute);
    let mut b = a.clone();
    b.merge(&id);
    assert_eq!(a, b);
    assert_eq!(a.client.kind, ClientKind::ApiKey);
}
