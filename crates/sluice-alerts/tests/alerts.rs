//! Alert webhooks end to end: a real Postgres (a fresh database per test, `TestDb`) and a real
//! HTTP receiver (axum on 127.0.0.1:0) that answers with scripted statuses and records every
//! request. Checks are driven by calling [`Alerter::check`]; retries are made due at once by a
//! zero back-off, and "time passing" is written into the rows, so nothing here waits on a clock.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;
use sluice_alerts::{AlertConfig, Alerter, CheckReport, RetryPolicy, Webhook};
use sluice_core::policy::Policy;
use sluice_store::alerts::deliveries;
use sluice_store::policy::{self, GatewayReport, Publish};
use sluice_store::testing::TestDb;

/// Every request a receiver got: its Idempotency-Key and body.
type Received = Arc<Mutex<Vec<(Option<String>, Value)>>>;

#[derive(Clone, Default)]
struct Receiver {
    /// Statuses to answer with, in order; 200 once they run out.
    script: Arc<Mutex<VecDeque<u16>>>,
    /// Every request: its Idempotency-Key and body.
    got: Received,
}

impl Receiver {
    /// Serve on 127.0.0.1:0; returns the receiver and its URL.
    async fn start(script: &[u16]) -> (Receiver, String) {
        let r = Receiver::default();
        r.script.lock().unwrap().extend(script);
        let app = Router::new()
            .route("/hook/secret-path", post(receive))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, format!("http://{addr}/hook/secret-path"))
    }

    fn bodies(&self) -> Vec<Value> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| b.clone())
            .collect()
    }

    fn keys(&self) -> Vec<Option<String>> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .map(|(k, _)| k.clone())
            .collect()
    }
}

async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, &'static str) {
    let key = headers
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap().to_owned());
    r.got.lock().unwrap().push((key, body));
    let status = r.script.lock().unwrap().pop_front().unwrap_or(200);
    (
        StatusCode::from_u16(status).unwrap(),
        if status == 200 {
            "ok"
        } else {
            "receiver says no"
        },
    )
}

fn config(urls: &[&str]) -> AlertConfig {
    let mut c = AlertConfig::new(urls.iter().map(|u| Webhook::parse(u).unwrap()).collect());
    // Retries are due at once: the test calls check() again instead of waiting.
    c.retry = RetryPolicy {
        max_attempts: 3,
        base: Duration::ZERO,
        max_delay: Duration::ZERO,
    };
    c.request_timeout = Duration::from_secs(5);
    c
}

async fn anomaly(db: &TestDb, client: &str, score: f32, state: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO anomalies (client_kind, client, kind, score, first_detected, last_flagged, state, reasons)
         VALUES ('ip', $1, 'scraping', $2, '2026-03-02T04:10:00Z', '2026-03-02T04:25:00Z', $3,
                 '[{\"feature\": \"distinct_routes\", \"observed\": 310.0, \"expected\": 4.0}]')
         RETURNING id",
    )
    .bind(client)
    .bind(score)
    .bind(state)
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_high_severity_anomaly_is_sent_once_retried_after_a_500_and_not_resent_after_restart() {
    let db = TestDb::new().await;
    let high = anomaly(&db, "203.0.113.7", 0.95, "open").await;
    anomaly(&db, "203.0.113.8", 0.3, "open").await; // low severity: no alert
    anomaly(&db, "203.0.113.9", 0.99, "resolved").await; // not open: no alert
    let (rx, url) = Receiver::start(&[500]).await;

    let alerter = Alerter::new(db.pool.clone(), config(&[&url])).unwrap();
    let first = alerter.check().await.unwrap();
    assert_eq!(
        first,
        CheckReport {
            raised: 1,
            delivered: 0,
            retrying: 1,
            given_up: 0
        }
    );
    let d = deliveries(&db.pool, 10).await.unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].subjects, vec![format!("anomaly:{high}")]);
    assert_eq!(d[0].attempts, 1);
    assert_eq!(
        d[0].last_error.as_deref(),
        Some("HTTP 500: receiver says no")
    );
    assert!(d[0].delivered_at.is_none());
    // The stored webhook names host and port, never the secret path.
    assert!(!d[0].webhook.contains("secret"), "{}", d[0].webhook);

    let second = alerter.check().await.unwrap();
    assert_eq!((second.raised, second.delivered), (0, 1));
    let d = deliveries(&db.pool, 10).await.unwrap();
    assert_eq!(d[0].attempts, 2);
    assert!(d[0].delivered_at.is_some());

    // Both attempts carried the same body and idempotency key.
    let bodies = rx.bodies();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0], bodies[1]);
    let keys = rx.keys();
    assert_eq!(keys[0], keys[1]);
    assert_eq!(
        keys[0],
        Some(format!("sluice-alert-{}", d[0].notification_id))
    );
    let b = &bodies[0];
    assert_eq!(b["schema"], "sluice.alert/v1");
    assert_eq!(b["kind"], "anomaly_high_severity");
    assert_eq!(b["severity"], "critical");
    assert_eq!(b["id"], d[0].notification_id);
    assert_eq!(b["items"][0]["id"], high);
    assert_eq!(b["items"][0]["client"], "203.0.113.7");
    assert_eq!(b["items"][0]["score"], 0.95);
    let text = b["text"].as_str().unwrap();
    assert!(
        text.starts_with("[critical] Sluice: high-severity scraping anomaly opened: anomaly ")
            && text.contains("client 203.0.113.7 (ip), score 0.95"),
        "{text}"
    );

    // A restarted alerter (a new one on the same database) sends nothing again.
    drop(alerter);
    let restarted = Alerter::new(db.pool.clone(), config(&[&url])).unwrap();
    assert_eq!(restarted.check().await.unwrap(), CheckReport::default());
    assert_eq!(rx.bodies().len(), 2);

    // A new anomaly is sent, once.
    let later = anomaly(&db, "198.51.100.4", 0.81, "open").await;
    assert_eq!(restarted.check().await.unwrap().delivered, 1);
    assert_eq!(restarted.check().await.unwrap(), CheckReport::default());
    let bodies = rx.bodies();
    assert_eq!(bodies.len(), 3);
    assert_eq!(bodies[2]["items"][0]["id"], later);
}

#[tokio::test]
async fn deliveries_give_up_after_the_last_attempt_or_a_refusal_and_never_fail_the_check() {
    let db = TestDb::new().await;
    anomaly(&db, "203.0.113.7", 0.95, "open").await;
    let (down, down_url) = Receiver::start(&[503, 503, 503, 503]).await;
    let (refusing, refusing_url) = Receiver::start(&[404]).await;
    // Nothing listens on a port the OS just handed out and took back.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let closed_url = format!("http://{closed}/hook");
    let alerter = Alerter::new(
        db.pool.clone(),
        config(&[&down_url, &refusing_url, &closed_url]),
    )
    .unwrap();

    let mut given_up = 0;
    for _ in 0..5 {
        given_up += alerter.check().await.unwrap().given_up;
    }
    assert_eq!(given_up, 3);
    assert_eq!(down.bodies().len(), 3, "max_attempts is 3");
    assert_eq!(refusing.bodies().len(), 1, "a 404 is not retried");
    let d = deliveries(&db.pool, 10).await.unwrap();
    assert_eq!(d.len(), 3);
    for x in &d {
        assert!(x.gave_up_at.is_some() && x.delivered_at.is_none(), "{x:?}");
        assert!(x.last_error.is_some());
    }
    let by_attempts: Vec<i32> = {
        let mut v: Vec<i32> = d.iter().map(|x| x.attempts).collect();
        v.sort();
        v
    };
    assert_eq!(by_attempts, vec![1, 3, 3]);
    let refused = d.iter().find(|x| x.attempts == 1).unwrap();
    assert_eq!(
        refused.last_error.as_deref(),
        Some("HTTP 404: receiver says no")
    );
    // The connection error names no URL (it may hold a secret).
    for x in &d {
        assert!(!x.last_error.as_deref().unwrap().contains("/hook"), "{x:?}");
    }
}

fn doc(rate: u64) -> Policy {
    Policy::parse(
        format!(
            r#"{{"format":"sluice.policy/v1","rules":[
            {{"id":"per-key","selector":{{"api_key":"*"}},"limit":{{"algorithm":"token_bucket","rate":{rate},"window_seconds":60,"burst":10}}}}]}}"#
        )
        .as_bytes(),
    )
    .unwrap()
}

async fn suggestion(db: &TestDb, client: &str, waited: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO limit_suggestions (rule_id, client, rule, diff, confidence, evidence,
                                        created_at, expires_at, created_wall)
         VALUES ('client:' || $1, $1, '{}', '{}', 0.9, '{}', '2026-03-02T04:00:00Z',
                 '2026-03-03T04:00:00Z', now() - $2::interval)
         RETURNING id",
    )
    .bind(client)
    .bind(waited)
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn waiting_suggestions_and_lagging_gateways_alert_once_after_their_thresholds() {
    let db = TestDb::new().await;
    let old = suggestion(&db, "ak_old", "2 hours").await;
    suggestion(&db, "ak_new", "10 minutes").await; // within the 1 h default wait
    let publish = Publish {
        actor: "test",
        comment: None,
        group: None,
    };
    policy::publish(&db.pool, &doc(100), &publish)
        .await
        .unwrap();
    policy::publish(&db.pool, &doc(120), &publish)
        .await
        .unwrap();
    let report = |applied| GatewayReport {
        group: None,
        applied_version: Some(applied),
        error: None,
    };
    policy::report_gateway(&db.pool, "edge-1", &report(1))
        .await
        .unwrap();
    policy::report_gateway(&db.pool, "edge-2", &report(1))
        .await
        .unwrap();
    policy::report_gateway(&db.pool, "edge-3", &report(2))
        .await
        .unwrap(); // up to date

    let (rx, url) = Receiver::start(&[]).await;
    let alerter = Alerter::new(db.pool.clone(), config(&[&url])).unwrap();
    // The suggestion is due; the gateways are only seen behind for the first time.
    assert_eq!(alerter.check().await.unwrap().delivered, 1);
    let b = rx.bodies();
    assert_eq!(b[0]["kind"], "suggestion_waiting");
    assert_eq!(b[0]["items"][0]["id"], old);
    assert!(
        b[0]["text"].as_str().unwrap().starts_with(
            "[warning] Sluice: a limit suggestion has waited for approval over 1h: suggestion "
        ),
        "{}",
        b[0]["text"]
    );
    assert_eq!(alerter.check().await.unwrap(), CheckReport::default());

    // edge-2 catches up within the lag: its observation goes, it never alerts.
    policy::report_gateway(&db.pool, "edge-2", &report(2))
        .await
        .unwrap();
    assert_eq!(alerter.check().await.unwrap(), CheckReport::default());
    let observed: Vec<String> = sqlx::query_scalar(
        "SELECT subject FROM alerts WHERE kind = 'gateway_behind' ORDER BY subject",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(observed, vec!["gateway:edge-1@1"]);

    // Six minutes pass for edge-1 (written into its observation instead of waited for).
    sqlx::query("UPDATE alerts SET observed_at = now() - interval '6 minutes' WHERE kind = 'gateway_behind'")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(alerter.check().await.unwrap().delivered, 1);
    let b = rx.bodies();
    assert_eq!(b.len(), 2);
    assert_eq!(b[1]["kind"], "gateway_behind");
    assert_eq!(b[1]["items"][0]["gateway"], "edge-1");
    assert_eq!(b[1]["items"][0]["applied_version"], 1);
    assert_eq!(b[1]["items"][0]["served_version"], 2);
    assert_eq!(b[1]["items"][0]["subject"], "gateway:edge-1@1");
    assert_eq!(alerter.check().await.unwrap(), CheckReport::default());

    // A restart does not resend; edge-1 catching up and falling behind again is a new stretch.
    let restarted = Alerter::new(db.pool.clone(), config(&[&url])).unwrap();
    assert_eq!(restarted.check().await.unwrap(), CheckReport::default());
    policy::report_gateway(&db.pool, "edge-1", &report(2))
        .await
        .unwrap();
    policy::publish(&db.pool, &doc(140), &publish)
        .await
        .unwrap();
    let mut lag0 = config(&[&url]);
    lag0.gateway_lag = Duration::ZERO;
    let impatient = Alerter::new(db.pool.clone(), lag0).unwrap();
    let r = impatient.check().await.unwrap();
    // edge-1, edge-2 and edge-3 are all behind v3 now, each alerted once.
    assert_eq!(r.raised, 3);
    let subjects: Vec<String> = rx
        .bodies()
        .iter()
        .skip(2)
        .map(|b| b["items"][0]["subject"].as_str().unwrap().to_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        subjects,
        vec!["gateway:edge-1@2", "gateway:edge-2@2", "gateway:edge-3@2"]
    );
    assert_eq!(impatient.check().await.unwrap(), CheckReport::default());
}

#[tokio::test]
async fn many_new_things_of_a_kind_go_out_as_one_digest_and_no_webhook_means_no_alerting() {
    let db = TestDb::new().await;
    for i in 0..8 {
        anomaly(&db, &format!("192.0.2.{i}"), 0.9, "open").await;
    }
    // Without webhooks nothing is recorded (and nothing is marked as sent).
    let silent = Alerter::new(db.pool.clone(), config(&[])).unwrap();
    assert_eq!(silent.check().await.unwrap(), CheckReport::default());
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM alerts")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);

    let (a, url_a) = Receiver::start(&[]).await;
    let (b, url_b) = Receiver::start(&[]).await;
    let alerter = Alerter::new(db.pool.clone(), config(&[&url_a, &url_b])).unwrap();
    let r = alerter.check().await.unwrap();
    assert_eq!((r.raised, r.delivered), (1, 2));
    for rx in [&a, &b] {
        let bodies = rx.bodies();
        assert_eq!(bodies.len(), 1);
        assert_eq!(bodies[0]["count"], 8);
        assert_eq!(bodies[0]["items"].as_array().unwrap().len(), 8);
        let text = bodies[0]["text"].as_str().unwrap();
        assert!(
            text.starts_with("[critical] Sluice: 8 high-severity anomalies opened\n"),
            "{text}"
        );
        assert!(text.ends_with("- and 3 more"), "{text}");
    }
    let subjects = &deliveries(&db.pool, 10).await.unwrap()[0].subjects;
    assert_eq!(subjects.len(), 8);
}
