//! Back-pressure and outages: a full ingest queue answers 429 with `Retry-After` and the IETF
//! `RateLimit` headers; an unreachable database answers 503 with `Retry-After`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, StatusCode};
use sluice_api::{ApiConfig, AppState};
use sluice_engine::ingest::Enrichment;

use crate::helpers::{combined_lines, request, send, TestApp};

const UNAVAILABLE: &str = "database unavailable; retry later";

/// Poll `check` until it holds, failing after a generous deadline.
async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_and_queued_batches_still_commit() {
    let app = Arc::new(
        TestApp::with_config(ApiConfig {
            queue_capacity: 1,
            writers: 1,
            ..ApiConfig::default()
        })
        .await,
    );
    // Another session holds ingest_batches, so the only writer blocks inside its transaction.
    let mut locker = app.db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE ingest_batches IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *locker)
        .await
        .unwrap();

    let post = |i: usize| {
        let app = app.clone();
        tokio::spawn(async move {
            let key = format!("k{i}");
            app.post_logs_with(
                "/v1/logs",
                &app.gateway,
                &[("idempotency-key", &key)],
                combined_lines(5),
            )
            .await
        })
    };
    let first = post(0);
    let pool = app.db.pool.clone();
    wait_for("the writer to wait for the table lock", || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_locks WHERE relation = 'ingest_batches'::regclass AND NOT granted",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
                > 0
        }
    })
    .await;

    // The writer is busy with the first batch; the queue holds one more; the rest are refused.
    let mut rest = tokio::task::JoinSet::new();
    for i in 1..=4 {
        let h = post(i);
        rest.spawn(async move { h.await.unwrap() });
    }
    let mut refused = 0;
    while refused < 3 {
        let res = tokio::time::timeout(Duration::from_secs(30), rest.join_next())
            .await
            .expect("three requests are refused at once")
            .unwrap()
            .unwrap();
        res.assert_problem(
            StatusCode::TOO_MANY_REQUESTS,
            "ingest queue is full (it holds 1 batches); retry after 1 s",
        );
        assert_eq!(res.header("retry-after"), Some("1"));
        assert_eq!(res.header("ratelimit"), Some("\"ingest\";r=0;t=1"));
        assert_eq!(res.header("ratelimit-policy"), Some("\"ingest\";q=1;w=1"));
        refused += 1;
    }
    assert!(
        !first.is_finished(),
        "nothing can commit while the table is locked"
    );

    locker.commit().await.unwrap();
    let first = first.await.unwrap().ingested();
    let queued = rest.join_next().await.unwrap().unwrap().ingested();
    assert!(rest.is_empty());
    assert!(!first.duplicate && !queued.duplicate);
    assert_ne!(first.batch_id, queued.batch_id);
    assert_eq!(app.access_rows().await, 10);
    assert_eq!(app.count("SELECT count(*) FROM ingest_batches").await, 2);
}

#[tokio::test]
async fn postgres_down_answers_503_with_retry_after() {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(300))
        .connect_lazy("postgres://nobody@127.0.0.1:1/none")
        .unwrap();
    let state = AppState::new(pool, Arc::new(Enrichment::default()), ApiConfig::default());
    let router = sluice_api::router(state);

    // Authentication itself needs the database: the token cannot be checked, so 503, not 401.
    let req = request(Method::POST, "/v1/logs", Some("sluice_0123456789abcdef"))
        .body(Body::from(combined_lines(2)))
        .unwrap();
    let res = send(&router, req).await;
    res.assert_problem(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE);
    assert_eq!(res.header("retry-after"), Some("5"));

    let res = send(
        &router,
        request(Method::GET, "/readyz", None)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    res.assert_problem(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE);
    assert_eq!(res.header("retry-after"), Some("5"));

    // Liveness does not depend on the database.
    let res = send(
        &router,
        request(Method::GET, "/healthz", None)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(res.status, StatusCode::OK);
}

#[tokio::test]
async fn postgres_lost_after_authentication_answers_503_and_stores_nothing() {
    let app = TestApp::new().await;
    // The token is now cached, so the request gets past authentication without the database.
    assert_eq!(
        app.get("/v1/whoami", Some(&app.gateway)).await.status,
        StatusCode::OK
    );
    app.state.pool.close().await;
    let res = app.post_logs(&app.gateway, combined_lines(3)).await;
    res.assert_problem(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE);
    assert_eq!(res.header("retry-after"), Some("5"));

    let fresh = sqlx::PgPool::connect_with(app.db.options.clone())
        .await
        .unwrap();
    let batches: i64 = sqlx::query_scalar("SELECT count(*) FROM ingest_batches")
        .fetch_one(&fresh)
        .await
        .unwrap();
    assert_eq!(batches, 0);
    fresh.close().await;
}
