//! Store tests against a real Postgres: a fresh database per test.

use chrono::{DateTime, Utc};
use sluice_core::{AccessRecord, ClientId, ClientKind, Role, Timestamp};
use sluice_store::analyst::{self, ClientViewOptions, HourStat};
use sluice_store::detection::{self, FeatureRow};
use sluice_store::ingest::{IngestWriter, WriteOutcome};
use sluice_store::profiles::{self, HistoryMinute, ProfileRow};
use sluice_store::testing::TestDb;
use sluice_store::{tokens, BatchBuilder, IngestCounts};

fn rec(day: u32, minute: u32, client: &str, path: &str, status: u16) -> AccessRecord<'static> {
    AccessRecord {
        ts: Timestamp::from_civil(2015, 5, day, 10, minute, 3, 0, 0).unwrap(),
        ip: Some("83.149.9.216".parse().unwrap()),
        method: Some("GET".into()),
        path: path.to_owned().into(),
        route: Some(path.to_owned().into()),
        status,
        bytes_sent: Some(100),
        latency_us: Some(2_000),
        user_agent: Some("curl/8".into()),
        client: Some(ClientId {
            kind: ClientKind::ApiKey,
            value: client.to_owned().into(),
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn batch_is_copied_with_rollups_rejects_and_partitions() {
    let db = TestDb::new().await;
    let w = IngestWriter::new(db.pool.clone());
    let mut b = BatchBuilder::new("edge-1");
    b.push(&rec(17, 5, "ak_1", "/a", 200));
    b.push(&rec(17, 5, "ak_1", "/a", 404));
    b.push(&rec(18, 0, "ak_2", "/b", 500));
    b.reject(4, "invalid $status \"2x0\": not a number", b"bad line");
    let out = w.write(b.finish(Some("k1".into()), "nginx")).await.unwrap();
    let counts = IngestCounts {
        read: 4,
        accepted: 3,
        rejected: 1,
    };
    assert!(matches!(out, WriteOutcome::Committed { counts: c, .. } if c == counts));

    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM access_log")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 3);
    let (ip, source): (String, String) =
        sqlx::query_as("SELECT host(ip), source FROM access_log WHERE status = 500")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((ip.as_str(), source.as_str()), ("83.149.9.216", "edge-1"));
    let parts: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'access_log'::regclass ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        parts,
        [
            "access_log_p20150517",
            "access_log_p20150518",
            "access_log_p20150519",
            "access_log_p20150520"
        ]
    );
    let (requests, s404): (i64, i64) = sqlx::query_as(
        "SELECT requests, status_404 FROM rollup_client_minute WHERE client = 'ak_1'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((requests, s404), (2, 1));
    let rejects = w.list_rejects(Some("edge-1"), 10, None).await.unwrap();
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0].line_no, 4);
    assert_eq!(rejects[0].reason, "invalid $status \"2x0\": not a number");

    // The same idempotency key again: nothing is written twice, original counts come back.
    let mut b = BatchBuilder::new("edge-1");
    b.push(&rec(17, 5, "ak_1", "/a", 200));
    let again = w.write(b.finish(Some("k1".into()), "nginx")).await.unwrap();
    assert!(again.is_duplicate());
    assert_eq!(again.counts(), counts);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM access_log")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 3);

    // A second batch merges into the same rollup rows.
    let mut b = BatchBuilder::new("edge-1");
    b.push(&rec(17, 5, "ak_1", "/a", 200));
    w.write(b.finish(None, "nginx")).await.unwrap();
    let requests: i64 =
        sqlx::query_scalar("SELECT requests FROM rollup_route_minute WHERE route = '/a'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(requests, 3);
}

#[tokio::test]
async fn retention_drops_whole_partitions_in_log_time() {
    let db = TestDb::new().await;
    let w = IngestWriter::new(db.pool.clone());
    for day in [1, 10, 20] {
        let mut b = BatchBuilder::new("s");
        b.push(&rec(day, 0, "ak", "/x", 200));
        w.write(b.finish(None, "ndjson")).await.unwrap();
    }
    // Newest log day is May 20; keeping 5 days of raw data drops May 1 and May 10 (and the
    // look-ahead partitions after them), keeps May 20.
    let dropped = w.apply_retention(5, 15).await.unwrap();
    assert!(
        dropped.contains(&"access_log_p20150501".to_string()),
        "{dropped:?}"
    );
    assert!(
        dropped.contains(&"access_log_p20150510".to_string()),
        "{dropped:?}"
    );
    assert!(
        !dropped.contains(&"access_log_p20150520".to_string()),
        "{dropped:?}"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM access_log")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    let rollup_minutes: i64 = sqlx::query_scalar("SELECT count(*) FROM rollup_client_minute")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(rollup_minutes, 2, "rollups of May 1 are older than 15 days");
    // Ingesting into a dropped day recreates its partition.
    let mut b = BatchBuilder::new("s");
    b.push(&rec(10, 0, "ak", "/x", 200));
    w.write(b.finish(None, "ndjson")).await.unwrap();
}

#[tokio::test]
async fn tokens_are_hashed_revocable_and_audited() {
    let db = TestDb::new().await;
    let (info, secret) = tokens::create_token(&db.pool, "edge", Role::Gateway, "cli")
        .await
        .unwrap();
    assert_eq!(info.role, Role::Gateway);
    let stored: Vec<u8> = sqlx::query_scalar("SELECT token_hash FROM api_tokens")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(stored, tokens::hash_token(&secret).to_vec());
    assert_ne!(stored, secret.as_bytes());
    assert_eq!(
        tokens::authenticate(&db.pool, &secret)
            .await
            .unwrap()
            .unwrap()
            .name,
        "edge"
    );
    assert!(tokens::authenticate(&db.pool, "slc_wrong")
        .await
        .unwrap()
        .is_none());
    let dup = tokens::create_token(&db.pool, "edge", Role::Admin, "cli")
        .await
        .unwrap_err();
    assert_eq!(dup.to_string(), "a token named \"edge\" already exists");
    tokens::revoke_token(&db.pool, "edge", "cli").await.unwrap();
    assert!(tokens::authenticate(&db.pool, &secret)
        .await
        .unwrap()
        .is_none());
    let missing = tokens::revoke_token(&db.pool, "nope", "cli")
        .await
        .unwrap_err();
    assert_eq!(missing.to_string(), "token \"nope\" not found");
    let audit = tokens::list_audit(&db.pool, 10, None).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["token.revoke", "token.create"]);
    // The audit log is append-only.
    let err = sqlx::query("DELETE FROM audit_log")
        .execute(&db.pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let err = sqlx::query("TRUNCATE audit_log")
        .execute(&db.pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
}

#[tokio::test]
async fn migration_status_lists_applied_migrations() {
    let db = TestDb::new().await;
    let status = db.database().migration_status().await.unwrap();
    assert!(status.len() >= 2);
    assert!(status
        .iter()
        .all(|m| m.success == Some(true) && m.checksum_matches == Some(true)));
}

/// Records of a flagged client are excluded from the forecast series exactly over the minutes the
/// detector flagged: `first_detected` and `last_flagged` are minute *ends*, so an anomaly
/// detected at 10:06 and last flagged at 10:08 covers the records of 10:05..10:08.
#[tokio::test]
async fn forecast_series_excludes_exactly_the_flagged_minutes() {
    use sluice_store::detection::{upsert_anomaly, AnomalyRow};
    use sluice_store::forecast::{read_series, TOTAL};

    let db = TestDb::new().await;
    let w = IngestWriter::new(db.pool.clone());
    let mut b = BatchBuilder::new("edge-1");
    for minute in 3..10 {
        b.push(&rec(17, minute, "ak_bad", "/a", 200));
        b.push(&rec(17, minute, "ak_good", "/a", 200));
    }
    w.write(b.finish(None, "nginx")).await.unwrap();
    let at = |m: u32| Timestamp::from_civil(2015, 5, 17, 10, m, 0, 0, 0).unwrap();
    upsert_anomaly(
        &db.pool,
        &AnomalyRow {
            client_kind: ClientKind::ApiKey,
            client: "ak_bad".into(),
            kind: "flood".into(),
            score: 0.9,
            first_detected: at(6),
            last_flagged: at(8),
            open: false,
            reasons: serde_json::json!([]),
            campaign: None,
            members: vec![(ClientKind::ApiKey, "ak_bad".into())],
            member_count: 0,
            model_version: None,
        },
    )
    .await
    .unwrap();

    let s = read_series(&db.pool, at(3), at(10)).await.unwrap();
    let route = &s.routes["/a"];
    assert_eq!(route.requests, vec![2.0; 7]);
    // Minutes 10:03..10:09; flagged records are those of 10:05, 10:06 and 10:07.
    assert_eq!(route.excluded, vec![0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
    assert_eq!(s.routes[TOTAL].excluded, route.excluded);
}

fn feature(client: &str, minute: i64, requests: i32, score: Option<f32>) -> FeatureRow {
    FeatureRow {
        client_kind: ClientKind::ApiKey,
        client: client.to_owned(),
        minute: Timestamp::from_micros(minute),
        requests,
        peak_10s: requests / 3,
        distinct_routes: 2,
        distinct_paths: 2,
        distinct_ips: 1,
        distinct_uas: 1,
        route_entropy: 1.0,
        error_share: 0.5,
        status_401: 0,
        status_403: 0,
        status_404: 0,
        status_429: 0,
        status_5xx: 0,
        bytes_sent: 100,
        latency_mean_us: None,
        inter_arrival_cv: None,
        expected_requests: None,
        score,
    }
}

fn profile(client: &str, median: f32, last_seen: Timestamp) -> ProfileRow {
    ProfileRow {
        client_kind: ClientKind::ApiKey,
        client: client.to_owned(),
        active_minutes: 3,
        first_seen: Timestamp::from_micros(last_seen.micros() - 2 * MINUTE),
        last_seen,
        requests_median: median,
        requests_mad: 1.5,
        requests_p95: 12.25,
        peak_10s_p95: 4.0,
        distinct_routes_median: 2.0,
        error_share_median: 0.125,
        hour_of_day: (0..24)
            .map(|h| {
                if h == 10 {
                    HourStat {
                        minutes: 3,
                        median: Some(median),
                        mad: Some(1.5),
                    }
                } else {
                    HourStat::default()
                }
            })
            .collect(),
    }
}

const MINUTE: i64 = 60_000_000;

#[tokio::test]
async fn profile_history_is_read_by_range_and_profiles_upsert_forward_in_log_time() {
    let db = TestDb::new().await;
    let t0 = Timestamp::from_civil(2026, 3, 2, 10, 0, 0, 0, 0)
        .unwrap()
        .micros();
    assert_eq!(profiles::feature_bounds(&db.pool).await.unwrap(), None);
    let rows: Vec<FeatureRow> = (0..5)
        .map(|i| feature("k1", t0 + i * MINUTE, 10 + i as i32, None))
        .chain([
            feature("k1", t0 + 5 * MINUTE, 900, Some(0.9)),
            feature("k2", t0 + 2 * MINUTE, 7, None),
        ])
        .collect();
    detection::write_features(&db.pool, &rows).await.unwrap();
    assert_eq!(
        profiles::feature_bounds(&db.pool).await.unwrap(),
        Some((
            Timestamp::from_micros(t0),
            Timestamp::from_micros(t0 + 5 * MINUTE)
        ))
    );

    // [t0 + 1 min, t0 + 5 min): minutes 1..=4 of k1 and k2's minute, every column intact.
    let mut read = Vec::new();
    let n = profiles::read_history(
        &db.pool,
        Timestamp::from_micros(t0 + MINUTE),
        Timestamp::from_micros(t0 + 5 * MINUTE),
        |k, c, m| read.push((k, c.to_owned(), m)),
    )
    .await
    .unwrap();
    assert_eq!(n, 5);
    read.sort_by_key(|(_, c, m)| (c.clone(), m.minute));
    let expect: Vec<_> = rows[1..5]
        .iter()
        .chain(&rows[6..])
        .map(|r| {
            (
                r.client_kind,
                r.client.clone(),
                HistoryMinute {
                    minute: r.minute,
                    requests: r.requests,
                    peak_10s: r.peak_10s,
                    distinct_routes: r.distinct_routes,
                    error_share: r.error_share,
                    score: r.score,
                },
            )
        })
        .collect();
    assert_eq!(read, expect);
    let mut flagged = Vec::new();
    profiles::read_history(
        &db.pool,
        Timestamp::from_micros(t0),
        Timestamp::from_micros(t0 + 60 * MINUTE),
        |_, _, m| flagged.extend(m.score),
    )
    .await
    .unwrap();
    assert_eq!(flagged, vec![0.9], "the score column comes back");

    // Write two profiles; the analyst view reads them back exactly.
    let computed = Timestamp::from_micros(t0 + 6 * MINUTE);
    let from = Timestamp::from_micros(t0);
    let last = Timestamp::from_micros(t0 + 4 * MINUTE);
    let first = vec![profile("k1", 11.5, last), profile("k2", 7.0, last)];
    assert_eq!(
        profiles::write_profiles(&db.pool, computed, from, &first)
            .await
            .unwrap(),
        2
    );
    let view = analyst::client_view(&db.pool, "k1", &ClientViewOptions::default())
        .await
        .unwrap();
    let p = view.profile.expect("profile stored");
    assert_eq!(p.computed_at, computed.to_chrono());
    assert_eq!(p.history_from, from.to_chrono());
    assert_eq!(p.active_minutes, 3);
    assert_eq!(
        p.first_seen,
        Timestamp::from_micros(t0 + 2 * MINUTE).to_chrono()
    );
    assert_eq!(p.last_seen, last.to_chrono());
    assert_eq!(
        (
            p.requests_median,
            p.requests_mad,
            p.requests_p95,
            p.peak_10s_p95,
            p.distinct_routes_median,
            p.error_share_median
        ),
        (11.5, 1.5, 12.25, 4.0, 2.0, 0.125)
    );
    assert_eq!(p.hour_of_day.0, first[0].hour_of_day);
    let stored: serde_json::Value =
        sqlx::query_scalar("SELECT hour_of_day -> 10 FROM client_profiles WHERE client = 'k1'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        stored,
        serde_json::json!({"minutes": 3, "median": 11.5, "mad": 1.5}),
        "the documented jsonb shape"
    );

    // An older computation does not replace it; a newer one does, and adds a third client.
    let older = Timestamp::from_micros(computed.micros() - MINUTE);
    assert_eq!(
        profiles::write_profiles(&db.pool, older, from, &[profile("k1", 99.0, last)])
            .await
            .unwrap(),
        0
    );
    let newer = Timestamp::from_micros(computed.micros() + MINUTE);
    let second = vec![profile("k1", 12.0, last), profile("k3", 1.0, last)];
    assert_eq!(
        profiles::write_profiles(&db.pool, newer, from, &second)
            .await
            .unwrap(),
        2
    );
    let medians: Vec<(String, f32, DateTime<Utc>)> = sqlx::query_as(
        "SELECT client, requests_median, computed_at FROM client_profiles ORDER BY client",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        medians,
        vec![
            ("k1".to_owned(), 12.0, newer.to_chrono()),
            ("k2".to_owned(), 7.0, computed.to_chrono()),
            ("k3".to_owned(), 1.0, newer.to_chrono()),
        ]
    );
}
