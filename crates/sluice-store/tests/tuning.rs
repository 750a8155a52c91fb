//! The tuning store against a real Postgres: inputs read over log-time ranges, reputation state
//! and events, suggestions (supersession, expiry, reverts), the auto-approval config and the
//! cursor.

use sluice_core::approval::AutoApprovalConfig;
use sluice_core::policy::Rule;
use sluice_core::reputation::{
    AnomalySignal, MinuteCounters, Reputation, ReputationConfig, ReputationReason,
};
use sluice_core::{AccessRecord, AnomalyKind, AnomalyState, ClientId, ClientKind, Limit, Selector};
use sluice_core::{CostUnit, Timestamp};
use sluice_store::detection::{self, AnomalyRow};
use sluice_store::ingest::IngestWriter;
use sluice_store::testing::TestDb;
use sluice_store::tuning::{self, NewSuggestion, ReputationUpdate, StoredReputation};
use sluice_store::{BatchBuilder, StoreError};

const MIN: i64 = 60_000_000;

/// Log time `minute:second` after 2026-03-02T10:00:00Z (minutes may exceed 59).
fn t(minute: u32, second: u32) -> Timestamp {
    let base = Timestamp::from_civil(2026, 3, 2, 10, 0, 0, 0, 0).unwrap();
    Timestamp::from_micros(base.micros() + i64::from(minute) * MIN + i64::from(second) * 1_000_000)
}

fn rec(minute: u32, second: u32, client: &str, route: &str, status: u16) -> AccessRecord<'static> {
    AccessRecord {
        ts: t(minute, second),
        method: Some("GET".into()),
        path: route.to_owned().into(),
        route: Some(route.to_owned().into()),
        status,
        bytes_sent: Some(if route == "/export" { 10_000 } else { 100 }),
        latency_us: Some(if route == "/export" { 80_000 } else { 2_000 }),
        client: Some(ClientId {
            kind: ClientKind::ApiKey,
            value: client.to_owned().into(),
        }),
        ..Default::default()
    }
}

async fn ingest(db: &TestDb, records: &[AccessRecord<'static>]) {
    let w = IngestWriter::new(db.pool.clone());
    let mut b = BatchBuilder::new("edge-1");
    for r in records {
        b.push(r);
    }
    w.write(b.finish(None, "ndjson")).await.unwrap();
}

#[tokio::test]
async fn inputs_are_read_over_a_log_time_range() {
    let db = TestDb::new().await;
    let mut records = Vec::new();
    // ak_a: minute 0 three 200s, minute 1 one 401, one 403, two 404, one 429.
    for s in 0..3 {
        records.push(rec(0, s, "ak_a", "/items", 200));
    }
    for status in [401, 403, 404, 404, 429] {
        records.push(rec(1, 10, "ak_a", "/items", status));
    }
    // ak_b: minute 1 and minute 3 (outside [0, 2 min)).
    records.push(rec(1, 5, "ak_b", "/export", 200));
    records.push(rec(3, 5, "ak_b", "/export", 200));
    ingest(&db, &records).await;

    let minutes = tuning::client_minutes(&db.pool, t(0, 0), t(2, 0))
        .await
        .unwrap();
    let got: Vec<(&str, MinuteCounters)> = minutes
        .iter()
        .map(|m| (m.client.as_str(), m.counters))
        .collect();
    let c = |minute, requests, s401, s403, s404, s429| MinuteCounters {
        minute: t(minute, 0),
        requests,
        status_401: s401,
        status_403: s403,
        status_404: s404,
        status_429: s429,
    };
    assert_eq!(
        got,
        vec![
            ("ak_a", c(0, 3, 0, 0, 0, 0)),
            ("ak_a", c(1, 5, 1, 1, 2, 1)),
            ("ak_b", c(1, 1, 0, 0, 0, 0)),
        ]
    );
    assert!(minutes.iter().all(|m| m.client_kind == ClientKind::ApiKey));

    let stats = tuning::route_cost_stats(&db.pool, t(0, 0), t(4, 0))
        .await
        .unwrap();
    let export = stats.iter().find(|s| s.route == "/export").unwrap();
    assert_eq!(export.requests, 2);
    assert_eq!(export.latency_mean_us, 80_000.0);
    assert_eq!(export.bytes_mean, 10_000.0);
    let items = stats.iter().find(|s| s.route == "/items").unwrap();
    assert_eq!(items.requests, 8);
    assert_eq!(items.latency_mean_us, 2_000.0);

    let per_route = tuning::client_route_requests(&db.pool, t(0, 0), t(2, 0))
        .await
        .unwrap();
    assert_eq!(
        per_route,
        vec![
            ("ak_a".to_owned(), "/items".to_owned(), 8),
            ("ak_b".to_owned(), "/export".to_owned(), 1)
        ]
    );
    let per_minute = tuning::client_route_minutes(&db.pool, t(0, 0), t(2, 0))
        .await
        .unwrap();
    let got: Vec<(&str, &str, Timestamp, u32)> = per_minute
        .iter()
        .map(|m| (m.client.as_str(), m.route.as_str(), m.minute, m.requests))
        .collect();
    assert_eq!(
        got,
        vec![
            ("ak_a", "/items", t(0, 0), 3),
            ("ak_a", "/items", t(1, 0), 5),
            ("ak_b", "/export", t(1, 0), 1)
        ]
    );
}

fn anomaly(client: &str, kind: &str, first: Timestamp, open: bool, members: &[&str]) -> AnomalyRow {
    let mut all = vec![(ClientKind::Ip, client.to_owned())];
    all.extend(members.iter().map(|m| (ClientKind::Ip, (*m).to_owned())));
    AnomalyRow {
        client_kind: ClientKind::Ip,
        client: client.to_owned(),
        kind: kind.to_owned(),
        score: 0.9,
        first_detected: first,
        last_flagged: Timestamp::from_micros(first.micros() + 5 * MIN),
        open,
        reasons: serde_json::json!([]),
        campaign: (!members.is_empty()).then(|| "c1".to_owned()),
        members: all,
        member_count: members.len(),
        model_version: None,
    }
}

#[tokio::test]
async fn anomalies_open_or_new_in_the_span_name_every_member() {
    let db = TestDb::new().await;
    let old_open =
        detection::upsert_anomaly(&db.pool, &anomaly("10.0.0.1", "flood", t(0, 0), true, &[]))
            .await
            .unwrap();
    // Resolved before the span: not needed.
    detection::upsert_anomaly(
        &db.pool,
        &anomaly("10.0.0.2", "probing", t(1, 0), false, &[]),
    )
    .await
    .unwrap();
    // Resolved, detected inside the span, a campaign of two members.
    let campaign = detection::upsert_anomaly(
        &db.pool,
        &anomaly("10.0.0.3", "scraping", t(20, 0), false, &["10.0.0.4"]),
    )
    .await
    .unwrap();
    // Detected after the span's end: not yet.
    detection::upsert_anomaly(&db.pool, &anomaly("10.0.0.5", "flood", t(40, 0), true, &[]))
        .await
        .unwrap();

    let got = tuning::client_anomalies(&db.pool, t(10, 0), t(30, 0))
        .await
        .unwrap();
    let ids: Vec<(&str, i64, AnomalyState)> = got
        .iter()
        .map(|a| (a.client.as_str(), a.signal.id, a.signal.state))
        .collect();
    assert_eq!(
        ids,
        vec![
            ("10.0.0.1", old_open, AnomalyState::Open),
            ("10.0.0.3", campaign, AnomalyState::Resolved),
            ("10.0.0.4", campaign, AnomalyState::Resolved),
        ]
    );
    assert_eq!(got[0].signal.kind, AnomalyKind::Flood);
    assert!((got[0].signal.score - 0.9).abs() < 1e-6);
    assert_eq!(got[1].last_flagged, t(25, 0));
}

#[tokio::test]
async fn reputation_round_trips_with_events_and_never_goes_back_in_log_time() {
    let db = TestDb::new().await;
    let cfg = ReputationConfig::default();
    let mut rep = Reputation::new(t(0, 0), &cfg);
    let minutes: Vec<MinuteCounters> = (0..30)
        .map(|m| MinuteCounters {
            minute: Timestamp::from_micros(t(0, 0).micros() + m * MIN),
            requests: 10,
            status_429: if m == 5 { 10 } else { 0 },
            ..Default::default()
        })
        .collect();
    let signal = AnomalySignal {
        id: 7,
        kind: AnomalyKind::Flood,
        score: 0.5,
        first_detected: t(10, 0),
        state: AnomalyState::Resolved,
    };
    let events = rep.update(t(30, 0), &minutes, &[signal], &cfg);
    assert!(events.len() >= 2, "{events:?}");
    let update = ReputationUpdate {
        client: "ak_a".into(),
        state: StoredReputation {
            client_kind: ClientKind::ApiKey,
            reputation: rep.clone(),
        },
        events: events.clone(),
    };
    tuning::save_reputations(&db.pool, std::slice::from_ref(&update))
        .await
        .unwrap();
    let stored = tuning::reputations(&db.pool).await.unwrap();
    assert_eq!(stored["ak_a"], update.state);
    let score: f64 =
        sqlx::query_scalar("SELECT score FROM client_reputation WHERE client = 'ak_a'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(score, rep.score);

    // Events, newest first; the last has the final score, and each score_after follows from the
    // one before by its delta.
    let stored_events = tuning::reputation_events(&db.pool, "ak_a", 100)
        .await
        .unwrap();
    assert_eq!(stored_events.len(), events.len());
    assert!((stored_events[0].score_after - rep.score).abs() < 1e-12);
    for w in stored_events.windows(2) {
        assert!((w[1].score_after + w[0].delta - w[0].score_after).abs() < 1e-9);
    }
    let anomaly_event = stored_events
        .iter()
        .find(|e| e.kind == "anomaly")
        .expect("the anomaly penalty is an event");
    assert_eq!(anomaly_event.at, t(10, 0));
    assert!(anomaly_event.delta < 0.0);
    assert_eq!(anomaly_event.reason["anomaly_id"], 7);
    assert_eq!(
        anomaly_event.reason["text"].as_str().unwrap(),
        ReputationReason::Anomaly {
            anomaly_id: 7,
            anomaly: AnomalyKind::Flood,
            score: 0.5
        }
        .to_string()
    );
    assert!(stored_events.iter().any(|e| e.kind == "limit_violations"));

    // An update computed at an earlier log time (a replay of older logs) is not stored.
    let mut older = Reputation::new(t(0, 0), &cfg);
    let ev = older.update(t(20, 0), &minutes, &[], &cfg);
    tuning::save_reputations(
        &db.pool,
        &[ReputationUpdate {
            client: "ak_a".into(),
            state: StoredReputation {
                client_kind: ClientKind::ApiKey,
                reputation: older,
            },
            events: ev,
        }],
    )
    .await
    .unwrap();
    assert_eq!(
        tuning::reputations(&db.pool).await.unwrap()["ak_a"],
        update.state
    );
    assert_eq!(
        tuning::reputation_events(&db.pool, "ak_a", 100)
            .await
            .unwrap()
            .len(),
        events.len()
    );
}

fn rule(id: &str, rate: u64) -> Rule {
    Rule {
        id: id.into(),
        selector: Selector::client(ClientKind::ApiKey, "ak_a").unwrap(),
        limit: Limit::TokenBucket {
            rate,
            window_seconds: 60,
            burst: 10,
        },
        cost: CostUnit::Requests,
        shadow: false,
        expires_at: None,
        ratelimit_policy: None,
        reason: Some("learned".into()),
        source: Some("tuner".into()),
    }
}

fn suggestion(id: &str, rate: u64, at: Timestamp) -> NewSuggestion {
    NewSuggestion {
        rule_id: id.into(),
        client: Some("ak_a".into()),
        rule: rule(id, rate),
        current: None,
        diff: serde_json::json!({"change": "new"}),
        confidence: 0.8,
        reasons: vec!["learned from 2 days".into()],
        evidence: serde_json::json!({"reputation": 0.9}),
        backtest: Some(serde_json::json!({"normal": {"rejected": 0}})),
        abusive: false,
        created_at: at,
        expires_at: Timestamp::from_micros(at.micros() + 60 * MIN),
    }
}

#[tokio::test]
async fn a_newer_suggestion_supersedes_the_pending_one_and_due_ones_expire_in_log_time() {
    let db = TestDb::new().await;
    let first = tuning::insert_suggestion(&db.pool, &suggestion("client:ak_a", 100, t(0, 0)))
        .await
        .unwrap();
    assert_eq!(first.superseded, None);
    let other = tuning::insert_suggestion(&db.pool, &suggestion("client:ak_b", 50, t(0, 0)))
        .await
        .unwrap();
    let second = tuning::insert_suggestion(&db.pool, &suggestion("client:ak_a", 120, t(5, 0)))
        .await
        .unwrap();
    assert_eq!(second.superseded, Some(first.id));
    let old = tuning::suggestion(&db.pool, first.id).await.unwrap();
    assert_eq!(old.state, "expired");
    assert_eq!(
        old.decision_comment.as_deref(),
        Some(format!("superseded by suggestion {}", second.id).as_str())
    );
    let pending = tuning::pending(&db.pool).await.unwrap();
    assert_eq!(pending.len(), 2);
    let p = &pending["client:ak_a"];
    assert_eq!(p.id, second.id);
    assert_eq!(p.rule, rule("client:ak_a", 120));
    assert_eq!(p.reasons, vec!["learned from 2 days".to_owned()]);
    assert_eq!(p.expires_at.micros(), t(5, 0).micros() + 60 * MIN);

    // A deadline before creation is refused.
    let mut bad = suggestion("client:ak_c", 1, t(10, 0));
    bad.expires_at = t(9, 0);
    assert!(matches!(
        tuning::insert_suggestion(&db.pool, &bad).await,
        Err(StoreError::Conflict(_))
    ));

    // Log time 59:59 expires nothing; 60:00 expires the first suggestion of ak_b only.
    assert!(tuning::expire_due(&db.pool, t(59, 59))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        tuning::expire_due(&db.pool, t(60, 0)).await.unwrap(),
        vec![other.id]
    );
    let expired = tuning::suggestion(&db.pool, other.id).await.unwrap();
    assert_eq!(expired.state, "expired");
    assert_eq!(
        expired.decision_comment.as_deref(),
        Some("expired at 2026-03-02T11:00:00Z without a decision")
    );
    assert_eq!(expired.decided_by.as_deref(), Some(tuning::TUNER_ACTOR));
    assert_eq!(tuning::pending(&db.pool).await.unwrap().len(), 1);
    assert_eq!(
        tuning::suggestions_since(&db.pool, t(1, 0))
            .await
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect::<Vec<_>>(),
        vec![second.id]
    );
}

#[tokio::test]
async fn approved_temporary_limits_are_due_to_revert_once() {
    let db = TestDb::new().await;
    let a = tuning::insert_suggestion(&db.pool, &suggestion("client:ak_a", 100, t(0, 0)))
        .await
        .unwrap();
    let b = tuning::insert_suggestion(&db.pool, &suggestion("client:ak_b", 100, t(0, 0)))
        .await
        .unwrap();
    // Both approved (as the review store would); only `a` is temporary.
    sqlx::query(
        "UPDATE limit_suggestions SET state = 'approved', decided_by = 'admin:ana', \
             temporary_until = CASE WHEN id = $1 THEN $2 ELSE NULL END",
    )
    .bind(a.id)
    .bind(t(30, 0).to_chrono())
    .execute(&db.pool)
    .await
    .unwrap();
    assert!(tuning::due_reverts(&db.pool, t(29, 0))
        .await
        .unwrap()
        .is_empty());
    let due = tuning::due_reverts(&db.pool, t(30, 0)).await.unwrap();
    assert_eq!(due.iter().map(|s| s.id).collect::<Vec<_>>(), vec![a.id]);
    let _ = b;

    let mut tx = db.pool.begin().await.unwrap();
    tuning::mark_reverted_in(&mut tx, a.id, t(31, 0), None)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(tuning::due_reverts(&db.pool, t(40, 0))
        .await
        .unwrap()
        .is_empty());
    let s = tuning::suggestion(&db.pool, a.id).await.unwrap();
    assert_eq!(s.reverted_at, Some(t(31, 0)));
    let mut tx = db.pool.begin().await.unwrap();
    assert!(matches!(
        tuning::mark_reverted_in(&mut tx, a.id, t(32, 0), None).await,
        Err(StoreError::StateConflict(_))
    ));
}

#[tokio::test]
async fn auto_approval_defaults_to_off() {
    let db = TestDb::new().await;
    assert_eq!(
        tuning::auto_approval_config(&db.pool).await.unwrap(),
        AutoApprovalConfig::default()
    );
    let mut cfg = AutoApprovalConfig::default();
    cfg.tighten_abusive.enabled = true;
    sqlx::query("INSERT INTO auto_approval_config (config, updated_by) VALUES ($1, 'admin:ana')")
        .bind(serde_json::to_value(&cfg).unwrap())
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(tuning::auto_approval_config(&db.pool).await.unwrap(), cfg);
}

#[tokio::test]
async fn the_cursor_only_moves_forward() {
    let db = TestDb::new().await;
    assert_eq!(tuning::cursor(&db.pool).await.unwrap(), None);
    tuning::advance_cursor(&db.pool, t(10, 0)).await.unwrap();
    tuning::advance_cursor(&db.pool, t(5, 0)).await.unwrap();
    assert_eq!(tuning::cursor(&db.pool).await.unwrap(), Some(t(10, 0)));
    tuning::advance_cursor(&db.pool, t(11, 0)).await.unwrap();
    assert_eq!(tuning::cursor(&db.pool).await.unwrap(), Some(t(11, 0)));
}

#[tokio::test]
async fn latest_capacity_factors_and_forecasts_at_a_log_time() {
    let db = TestDb::new().await;
    for (route, minute, factor) in [
        ("/a", 0, 1.0),
        ("/a", 5, 0.6),
        ("/a", 9, 0.4),
        ("*", 3, 0.9),
    ] {
        sqlx::query(
            "INSERT INTO capacity_factors (route, minute, factor, planned_rps, capacity_rps) \
             VALUES ($1, $2, $3, 10.0, 20.0)",
        )
        .bind(route)
        .bind(t(minute, 0).to_chrono())
        .bind(factor)
        .execute(&db.pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO forecast_points (route, minute, fitted_at, forecast, lower, upper) \
             VALUES ($1, $2, $2, $3, 0, 100)",
        )
        .bind(route)
        .bind(t(minute, 0).to_chrono())
        .bind(factor * 100.0)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    let f = tuning::capacity_factors(&db.pool, t(6, 0)).await.unwrap();
    let got: Vec<(&str, Timestamp, f64)> = f
        .iter()
        .map(|f| (f.route.as_str(), f.minute, f.factor))
        .collect();
    assert_eq!(got, vec![("*", t(3, 0), 0.9), ("/a", t(5, 0), 0.6)]);
    assert_eq!(f[0].capacity_rps, Some(20.0));
    let fc = tuning::forecasts_at(&db.pool, t(6, 0)).await.unwrap();
    assert_eq!(fc["/a"], 60.0);
    assert_eq!(fc["*"], 90.0);
    assert!(tuning::capacity_factors(&db.pool, t(0, 0))
        .await
        .unwrap()
        .iter()
        .all(|f| f.route == "/a" && f.factor == 1.0));
}
