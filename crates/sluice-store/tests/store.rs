//! Store tests against a real Postgres: a fresh database per test.

use sluice_core::{AccessRecord, ClientId, ClientKind, Role, Timestamp};
use sluice_store::ingest::{IngestWriter, WriteOutcome};
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
