//! The detection loop end to end on a real Postgres: simulated logs with ground truth are
//! ingested through the ingest pipeline, read back in log time, scored, and stored; client
//! profiles are then extracted from the stored minutes.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sluice_core::Timestamp;
use sluice_engine::detection::{DetectionLoop, DetectionOptions};
use sluice_engine::ingest::{ingest_stream, FormatChoice, InputSource, StreamConfig};
#[cfg(feature = "profiles")]
use sluice_engine::profiles::{refresh_profiles, ProfileOptions};
use sluice_logs::FormatName;
use sluice_sim::{write_logs, AttackClass, AttackSpec, SimConfig, SimFormat};
use sluice_store::ingest::IngestWriter;
use sluice_store::testing::TestDb;

const MINUTE: i64 = 60_000_000;

fn scenario() -> SimConfig {
    SimConfig {
        legit_clients: 40,
        browsers: 20,
        batch_jobs: 2,
        attacks: vec![
            AttackSpec::new(AttackClass::Probing, 50 * 60, 12 * 60),
            AttackSpec::new(AttackClass::Flood, 75 * 60, 6 * 60),
        ],
        flash_crowd: None,
        target_lines: None,
        ..SimConfig::for_duration(11, 100 * 60)
    }
}

async fn ingest(db: &TestDb, dir: &std::path::Path) -> (sluice_sim::Labels, u64) {
    let path = dir.join("sim.ndjson");
    let file = std::fs::File::create(&path).unwrap();
    let labels = write_logs(
        &scenario(),
        SimFormat::Ndjson,
        std::io::BufWriter::new(file),
    )
    .unwrap();
    let writer = Arc::new(IngestWriter::new(db.pool.clone()));
    let cfg = StreamConfig {
        format: FormatChoice {
            name: FormatName::Ndjson,
            log_format: None,
        },
        ..StreamConfig::default()
    };
    let s = ingest_stream(writer, InputSource::File(path), cfg, |_| {})
        .await
        .unwrap();
    assert_eq!(s.rejected, 0);
    (labels, s.accepted)
}

fn options(models: &std::path::Path) -> DetectionOptions {
    let mut o = DetectionOptions {
        models_dir: Some(models.to_path_buf()),
        step: Duration::from_secs(7 * 60),
        ..DetectionOptions::default()
    };
    o.detector.retrain_every_minutes = 30;
    o
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_finds_attacks_stores_them_once_and_resumes() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (labels, accepted) = ingest(&db, dir.path()).await;
    let models = dir.path().join("models");

    // Replay: everything from the first record on, then the end of input.
    let (from, to) = sluice_store::detection::batch_bounds(&db.pool, &["sim.ndjson".to_owned()])
        .await
        .unwrap()
        .expect("batches were committed");
    assert_eq!(from.minute_floor(), labels.start);
    let mut dl = DetectionLoop::starting_at(options(&models), from);
    let mut steps = 0;
    dl.run_until(&db.pool, Timestamp::from_micros(to.micros() + 1), |_| {
        steps += 1
    })
    .await
    .unwrap();
    dl.finish(&db.pool).await.unwrap();
    assert_eq!(steps, 15, "100 minutes in 7-minute steps");
    assert_eq!(dl.stats().records, accepted);
    assert_eq!(dl.stats().minutes, 100);

    // The flood is also a surge on the route it hits, seen by that route's own baseline, and
    // nothing else surges.
    let flood = labels
        .attacks
        .iter()
        .find(|a| a.class == AttackClass::Flood)
        .unwrap();
    let surges = dl.route_surges();
    assert!(!surges.is_empty(), "the flood shows as a route surge");
    assert_eq!(surges[0].minute, flood.start.minute_floor());
    for s in surges {
        assert!(
            s.minute >= flood.start.minute_floor() && s.minute < flood.end,
            "surge outside the flood: {s:?}"
        );
        assert!(s.observed > 10.0 * s.expected, "{s:?}");
    }

    // Both attacks found, within two minutes of their start; no legitimate API client flagged.
    let flagged: Vec<(String, String, Timestamp)> = dl
        .anomalies()
        .iter()
        .flat_map(|a| {
            a.identities()
                .into_iter()
                .map(move |m| (m.kind.as_str().to_owned(), m.value, a.first_detected))
        })
        .collect();
    for attack in &labels.attacks {
        let ids: HashSet<(String, String)> = attack
            .identities
            .iter()
            .map(|i| (i.kind.as_str().to_owned(), i.value.clone()))
            .collect();
        let first = flagged
            .iter()
            .filter(|(k, v, _)| ids.contains(&(k.clone(), v.clone())))
            .map(|(_, _, t)| *t)
            .min()
            .unwrap_or_else(|| panic!("{} not detected", attack.id));
        assert!(
            first.micros() - attack.start.micros() <= 2 * MINUTE,
            "{} detected at {first}, started {}",
            attack.id,
            attack.start
        );
    }
    let legit: HashSet<&str> = labels
        .identities
        .iter()
        .filter(|i| i.label == sluice_sim::TrafficLabel::Legit)
        .map(|i| i.value.as_str())
        .collect();
    let false_alarms: Vec<_> = flagged
        .iter()
        .filter(|(_, v, _)| legit.contains(v.as_str()))
        .collect();
    assert!(
        false_alarms.is_empty(),
        "legit clients flagged: {false_alarms:?}"
    );

    // Stored: one row per detector anomaly, members for every identity, features for every
    // client minute, the cursor at the end, and the registry with artefacts on disk.
    let n = dl.anomalies().len() as i64;
    assert!(n >= 2);
    assert_eq!(count(&db, "SELECT count(*) FROM anomalies").await, n);
    assert_eq!(
        count(&db, "SELECT count(*) FROM anomaly_members").await,
        flagged.len() as i64
    );
    for (i, _) in dl.anomalies().iter().enumerate() {
        assert!(dl.anomaly_id(i).is_some(), "anomaly {i} has a database id");
    }
    let features = count(&db, "SELECT count(*) FROM client_minute_features").await;
    assert_eq!(features as u64, dl.stats().feature_rows);
    assert_eq!(
        count(
            &db,
            "SELECT sum(requests)::int8 FROM client_minute_features"
        )
        .await as u64,
        accepted,
        "every record is in exactly one client minute"
    );
    assert!(
        count(
            &db,
            "SELECT count(*) FROM client_minute_features WHERE expected_requests IS NOT NULL"
        )
        .await
            > features / 2,
        "established clients carry their baseline's expectation"
    );
    let cursor = sluice_store::detection::cursor(&db.pool).await.unwrap();
    assert_eq!(
        cursor,
        Some(Timestamp::from_micros(labels.start.micros() + 100 * MINUTE))
    );
    let registered = sluice_store::detection::list_models(&db.pool, 100)
        .await
        .unwrap();
    assert_eq!(registered.len() as u64, dl.stats().models_registered);
    assert!(
        !registered.is_empty(),
        "population models were fitted and registered"
    );
    for m in &registered {
        let path = m.artefact.as_ref().expect("artefact path");
        let body: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(body["version"], m.version);
        assert!(!body["model"]["components"].as_array().unwrap().is_empty());
        assert_eq!(body["features"].as_array().unwrap().len(), m.features.len());
    }

    // The same replay again updates in place: no duplicate anomalies or features.
    let mut again = DetectionLoop::starting_at(options(&models), from);
    again
        .run_until(&db.pool, Timestamp::from_micros(to.micros() + 1), |_| {})
        .await
        .unwrap();
    again.finish(&db.pool).await.unwrap();
    assert_eq!(count(&db, "SELECT count(*) FROM anomalies").await, n);
    assert_eq!(
        count(&db, "SELECT count(*) FROM client_minute_features").await,
        features
    );

    // A restarted server resumes at the cursor: it re-reads history to rebuild baselines but
    // stores nothing before the cursor, and there is nothing after it.
    let mut resumed = DetectionLoop::resume(&db.pool, options(&models))
        .await
        .unwrap();
    let bound = resumed.live_bound(&db.pool).await.unwrap().unwrap();
    resumed.run_until(&db.pool, bound, |_| {}).await.unwrap();
    assert!(resumed.stats().records > 0, "history was re-read");
    assert_eq!(resumed.stats().feature_rows, 0);
    assert_eq!(resumed.stats().anomalies_written, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM anomalies").await, n);
}

#[tokio::test]
async fn an_empty_database_has_nothing_to_score() {
    let db = TestDb::new().await;
    let mut dl = DetectionLoop::resume(&db.pool, DetectionOptions::default())
        .await
        .unwrap();
    assert_eq!(dl.live_bound(&db.pool).await.unwrap(), None);
    dl.run_until(&db.pool, Timestamp::from_micros(i64::MAX / 2), |_| {})
        .await
        .unwrap();
    assert_eq!(dl.stats().records, 0);
    assert!(dl.anomalies().is_empty());
}

/// Profiles after detection: every client with an unflagged minute gets one, its statistics
/// agree with Postgres' own percentiles over the raw records, flagged minutes are left out, and
/// the analyst view shows it.
#[cfg(feature = "profiles")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_are_extracted_from_detected_history() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (labels, _) = ingest(&db, dir.path()).await;
    let (from, to) = sluice_store::detection::batch_bounds(&db.pool, &["sim.ndjson".to_owned()])
        .await
        .unwrap()
        .unwrap();
    let opts = ProfileOptions::default();
    // Nothing to profile before detection stored any minute.
    assert_eq!(refresh_profiles(&db.pool, to, &opts).await.unwrap(), None);
    let mut dl = DetectionLoop::starting_at(options(&dir.path().join("models")), from);
    dl.run_until(&db.pool, Timestamp::from_micros(to.micros() + 1), |_| {})
        .await
        .unwrap();
    dl.finish(&db.pool).await.unwrap();
    let cursor = sluice_store::detection::cursor(&db.pool)
        .await
        .unwrap()
        .unwrap();

    let r = refresh_profiles(&db.pool, cursor, &opts)
        .await
        .unwrap()
        .expect("history to profile");
    assert_eq!(
        r.rows as i64,
        count(&db, "SELECT count(*) FROM client_minute_features").await
    );
    assert_eq!(
        r.history_from,
        labels.start.to_string(),
        "bounded by the data"
    );
    assert_eq!(r.until, cursor.to_string());
    let unflagged_clients = count(
        &db,
        "SELECT count(DISTINCT (client_kind, client)) FROM client_minute_features \
         WHERE score IS NULL OR score < 0.5",
    )
    .await;
    assert!(unflagged_clients > 40);
    assert_eq!(r.profiles as i64, unflagged_clients);
    assert_eq!(
        count(&db, "SELECT count(*) FROM client_profiles").await,
        unflagged_clients
    );
    assert!(
        r.clients > r.profiles,
        "some attackers were flagged in every minute"
    );

    // The busiest legitimate API client (never flagged): its profile matches Postgres'
    // percentiles over its per-minute request counts from the raw records.
    let legit: Vec<String> = labels
        .identities
        .iter()
        .filter(|i| {
            i.label == sluice_sim::TrafficLabel::Legit && i.kind == sluice_core::ClientKind::ApiKey
        })
        .map(|i| i.value.clone())
        .collect();
    let (client, minutes, median, p95, lo, hi): (String, i64, f64, f64, i64, i64) = sqlx::query_as(
        "SELECT client, count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY n), \
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY n), min(n), max(n) \
             FROM (SELECT client, date_trunc('minute', ts) AS m, count(*) AS n FROM access_log \
                   WHERE client_kind = 'api_key' AND client = ANY($1) GROUP BY 1, 2) t \
             GROUP BY client ORDER BY sum(n) DESC, client LIMIT 1",
    )
    .bind(&legit)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let view = sluice_store::analyst::client_view(
        &db.pool,
        &client,
        &sluice_store::analyst::ClientViewOptions::default(),
    )
    .await
    .unwrap();
    let p = view.profile.expect("the analyst view shows the profile");
    assert_eq!(p.active_minutes as i64, minutes);
    assert!(
        (f64::from(p.requests_median) - median).abs() < 1e-3,
        "{p:?} vs {median}"
    );
    assert!(
        (f64::from(p.requests_p95) - p95).abs() < 1e-3,
        "{p:?} vs {p95}"
    );
    assert!(p.requests_median >= lo as f32 && p.requests_median <= hi as f32);
    assert!(p.requests_mad >= 0.0 && p.requests_mad <= (hi - lo) as f32);
    assert!(p.peak_10s_p95 >= 1.0 && p.peak_10s_p95 <= p.requests_p95);
    assert!(p.distinct_routes_median >= 1.0);
    assert_eq!(p.computed_at, cursor.to_chrono());
    assert_eq!(p.history_from, labels.start.to_chrono());
    assert_eq!(p.hour_of_day.0.len(), 24);
    assert_eq!(
        p.hour_of_day
            .0
            .iter()
            .map(|h| i64::from(h.minutes))
            .sum::<i64>(),
        minutes
    );
    for h in p.hour_of_day.0.iter() {
        assert_eq!(h.minutes == 0, h.median.is_none(), "{h:?}");
    }

    // An attacker's flagged minutes are not in its baseline.
    for attack in &labels.attacks {
        for id in &attack.identities {
            let clean: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM client_minute_features \
                 WHERE client_kind = $1 AND client = $2 AND (score IS NULL OR score < 0.5)",
            )
            .bind(id.kind.as_str())
            .bind(&id.value)
            .fetch_one(&db.pool)
            .await
            .unwrap();
            let stored: Option<i32> = sqlx::query_scalar(
                "SELECT active_minutes FROM client_profiles WHERE client_kind = $1 AND client = $2",
            )
            .bind(id.kind.as_str())
            .bind(&id.value)
            .fetch_optional(&db.pool)
            .await
            .unwrap();
            assert_eq!(
                stored.map(i64::from),
                (clean > 0).then_some(clean),
                "{}",
                id.value
            );
        }
    }
    let flagged_total = count(
        &db,
        "SELECT count(*) FROM client_minute_features WHERE score >= 0.5",
    )
    .await;
    assert!(flagged_total > 0, "the detector flagged minutes");
    assert_eq!(
        count(&db, "SELECT sum(active_minutes)::int8 FROM client_profiles").await,
        count(&db, "SELECT count(*) FROM client_minute_features").await - flagged_total,
        "every unflagged minute counts once, no flagged one does"
    );

    // A shorter history window reads only the minutes inside it and replaces the profiles of
    // the clients active in it.
    let short = ProfileOptions {
        history: Duration::from_secs(30 * 60),
        ..ProfileOptions::default()
    };
    let r2 = refresh_profiles(&db.pool, cursor, &short)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        r2.rows as i64,
        count(
            &db,
            "SELECT count(*) FROM client_minute_features \
             WHERE minute >= (SELECT scored_until FROM detection_cursor) - interval '30 minutes'"
        )
        .await
    );
    assert_eq!(
        count(
            &db,
            "SELECT max(active_minutes)::int8 FROM client_profiles \
             WHERE history_from = computed_at - interval '30 minutes'"
        )
        .await,
        30,
        "the busiest clients are active in every minute of the window"
    );
    assert!(count(&db, "SELECT count(*) FROM client_profiles").await >= unflagged_clients);
}
