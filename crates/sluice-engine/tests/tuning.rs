//! The tuning step end to end on a real Postgres: simulated logs are ingested, detection and
//! profiles run over them, then `tune_step` folds reputations, suggests and backtests limits,
//! stores them without churn, expires them and reverts temporary limits, in log time.

use std::sync::Arc;
use std::time::Duration;

use sluice_core::policy::{Policy, Rule};
use sluice_core::time::MICROS_PER_MINUTE;
use sluice_core::tuning::Basis;
use sluice_core::{ClientKind, CostUnit, Limit, Selector, Timestamp};
use sluice_engine::detection::{DetectionLoop, DetectionOptions};
use sluice_engine::ingest::{ingest_stream, FormatChoice, InputSource, StreamConfig};
use sluice_engine::tuning::{
    differs_materially, policy_with_pending, route_rule_id_for, rule_id_for, tune_step,
    TuningSettings,
};
use sluice_logs::FormatName;
use sluice_sim::{write_logs, AttackClass, AttackSpec, Labels, SimConfig, SimFormat};
use sluice_store::ingest::IngestWriter;
use sluice_store::testing::TestDb;
use sluice_store::tuning as store;

const MINUTES: u64 = 100;

fn scenario() -> SimConfig {
    SimConfig {
        legit_clients: 25,
        // The scraper is a new IP: the IP population model judges it, and with only ten browsers
        // to learn from it does not flag a 240/min scraper within 20 minutes (a known detection
        // limit of small deployments); thirty give it a population to compare against.
        browsers: 30,
        batch_jobs: 1,
        // A scraper still running when the logs end: its anomaly is open.
        attacks: vec![AttackSpec::new(AttackClass::Scraping, 80 * 60, 20 * 60)],
        flash_crowd: None,
        target_lines: None,
        ..SimConfig::for_duration(5, MINUTES * 60)
    }
}

/// Ingest the scenario, run detection and profiles through it; returns the labels and the
/// detection cursor (the end of the logs).
async fn prepare(db: &TestDb, dir: &std::path::Path) -> (Labels, Timestamp) {
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
    let (from, to) = sluice_store::detection::batch_bounds(&db.pool, &["sim.ndjson".to_owned()])
        .await
        .unwrap()
        .unwrap();
    let mut opts = DetectionOptions {
        models_dir: Some(dir.join("models")),
        step: Duration::from_secs(10 * 60),
        ..DetectionOptions::default()
    };
    opts.detector.retrain_every_minutes = 30;
    let mut dl = DetectionLoop::starting_at(opts, from);
    dl.run_until(&db.pool, Timestamp::from_micros(to.micros() + 1), |_| {})
        .await
        .unwrap();
    dl.finish(&db.pool).await.unwrap();
    let cursor = sluice_store::detection::cursor(&db.pool)
        .await
        .unwrap()
        .unwrap();
    #[cfg(feature = "profiles")]
    sluice_engine::profiles::refresh_profiles(
        &db.pool,
        cursor,
        &sluice_engine::profiles::ProfileOptions::default(),
    )
    .await
    .unwrap()
    .unwrap();
    (labels, cursor)
}

fn settings() -> TuningSettings {
    let mut s = TuningSettings::default();
    // 100 minutes of history: a learned limit from 45 active minutes on.
    s.tuning.min_active_minutes = 45;
    s
}

fn scraper(labels: &Labels) -> String {
    labels.attacks[0].identities[0].value.clone()
}

/// One request of `client` on `route` (already normalised) at `ts`.
fn request(
    ts: Timestamp,
    method: &str,
    route: &str,
    status: u16,
    kind: ClientKind,
    client: &str,
) -> sluice_core::AccessRecord<'static> {
    sluice_core::AccessRecord {
        ts,
        method: Some(method.to_owned().into()),
        path: route.to_owned().into(),
        route: Some(route.to_owned().into()),
        status,
        client: Some(sluice_core::ClientId {
            kind,
            value: client.to_owned().into(),
        }),
        ..Default::default()
    }
}

fn min(t: Timestamp, m: i64) -> Timestamp {
    Timestamp::from_micros(t.micros() + m * MICROS_PER_MINUTE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tune_step_folds_reputation_suggests_backtested_limits_without_churn() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (labels, end) = prepare(&db, dir.path()).await;
    let settings = settings();
    let scraper = scraper(&labels);

    let r = tune_step(&db.pool, &settings, end).await.unwrap();
    assert_eq!(r.from.as_deref(), Some(labels.start.to_string().as_str()));
    assert_eq!(r.through, end.to_string());
    assert!(r.suggested);
    assert_eq!(store::cursor(&db.pool).await.unwrap(), Some(end));

    // Reputation: every active client folded, with events; the scraper ends lowest.
    let clients: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT client) FROM rollup_client_minute")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(r.clients_folded as i64, clients);
    let reps = store::reputations(&db.pool).await.unwrap();
    assert_eq!(reps.len() as i64, clients);
    let scraper_score = reps[&scraper].reputation.score;
    let legit: Vec<&str> = labels
        .identities
        .iter()
        .filter(|i| i.label == sluice_sim::TrafficLabel::Legit)
        .map(|i| i.value.as_str())
        .collect();
    for c in &legit {
        let s = reps[*c].reputation.score;
        assert!(s > scraper_score, "{c}: {s} vs scraper {scraper_score}");
    }
    let events = store::reputation_events(&db.pool, &scraper, 50)
        .await
        .unwrap();
    assert!(
        events.iter().any(|e| e.kind == "anomaly"),
        "the scraper's anomaly is a reputation event: {events:?}"
    );

    // The scraper gets a limit that stops the abuse, sourced from its anomaly.
    let open: i64 = sqlx::query_scalar(
        "SELECT id FROM anomalies WHERE client = $1 AND state = 'open' ORDER BY score DESC LIMIT 1",
    )
    .bind(&scraper)
    .fetch_one(&db.pool)
    .await
    .expect("the scraper has an open anomaly at the end of the logs");
    let s = r
        .suggestions
        .iter()
        .find(|s| s.client == scraper)
        .unwrap_or_else(|| panic!("no suggestion for the scraper: {:#?}", r.suggestions));
    assert_eq!(s.basis, Basis::Abuse);
    assert_eq!(s.rule_id, rule_id_for(&scraper));
    assert_eq!(s.client_kind, ClientKind::Ip);
    assert!(
        s.backtest.anomalous_rejected > s.backtest.requests / 4,
        "the limit stops most of the abuse: {:?}",
        s.backtest
    );
    assert_eq!(s.backtest.normal_rejected, 0, "{:?}", s.backtest);
    let stored = store::suggestion(&db.pool, s.id).await.unwrap();
    assert_eq!(stored.state, "pending");
    assert!(stored.abusive);
    assert_eq!(stored.rule.source, Some(format!("anomaly:{open}")));
    assert_eq!(
        stored.rule.selector,
        Selector::client(ClientKind::Ip, &scraper).unwrap()
    );
    assert_eq!(stored.created_at, end);
    assert_eq!(stored.expires_at, min(end, 24 * 60));
    assert_eq!(stored.evidence["anomaly"]["anomaly_id"], open);
    assert!(stored.evidence["backtest"]["clients"].is_array());
    assert_eq!(stored.diff["change"], "new");

    // Legitimate API clients with enough history get learned limits their own traffic fits.
    #[cfg(feature = "profiles")]
    {
        let learned: Vec<_> = r
            .suggestions
            .iter()
            .filter(|s| s.basis == Basis::Learned)
            .collect();
        assert!(
            learned.len() >= legit.len() / 2,
            "{} learned of {} legit clients; {} tier default",
            learned.len(),
            legit.len(),
            r.tier_default
        );
        for s in &learned {
            assert!(legit.contains(&s.client.as_str()) || s.client_kind != ClientKind::Ip);
            assert!(
                s.backtest.rejected * 100 <= s.backtest.requests,
                "a learned limit rejects at most 1% of the client's own traffic: {s:?}"
            );
            assert!(s.confidence > 0.0 && s.confidence <= 1.0);
            assert!(!s.reason.is_empty());
        }
    }

    // Every suggestion is one pending row; the policy with all of them validates.
    let pending = store::pending(&db.pool).await.unwrap();
    assert_eq!(pending.len(), r.suggestions.len());
    let policy = policy_with_pending(&db.pool).await.unwrap();
    assert_eq!(policy.rules().len(), r.suggestions.len());

    // A step that does not advance changes nothing; the next suggestion round (15 minutes of log
    // time later, same traffic) stores nothing that is not a material change.
    let again = tune_step(&db.pool, &settings, end).await.unwrap();
    assert!(!again.suggested && again.suggestions.is_empty() && again.clients_folded == 0);
    let later = tune_step(&db.pool, &settings, min(end, 15)).await.unwrap();
    assert!(later.suggested);
    assert_eq!(
        later.unchanged + later.suggestions.len(),
        r.suggestions.len(),
        "every client of the first round was considered again"
    );
    assert!(
        later.suggestions.len() < r.suggestions.len() / 2,
        "no churn: {} of {} suggested again",
        later.suggestions.len(),
        r.suggestions.len()
    );
    for s in &later.suggestions {
        assert!(
            s.superseded.is_some(),
            "a newer suggestion replaces the pending one: {s:?}"
        );
    }
    assert_eq!(store::pending(&db.pool).await.unwrap().len(), pending.len());

    // After the deadline (24 h of log time) every pending suggestion expires.
    let expire = tune_step(&db.pool, &settings, min(end, 24 * 60 + 15))
        .await
        .unwrap();
    assert_eq!(expire.expired.len(), pending.len());
    assert!(store::pending(&db.pool).await.unwrap().is_empty());
}

fn rule(id: &str, rate: u64) -> Rule {
    Rule {
        id: id.into(),
        selector: Selector::client(ClientKind::ApiKey, "ak_x").unwrap(),
        limit: Limit::TokenBucket {
            rate,
            window_seconds: 60,
            burst: 10,
        },
        cost: CostUnit::Requests,
        shadow: false,
        expires_at: None,
        ratelimit_policy: None,
        reason: None,
        source: Some("manual".into()),
    }
}

#[tokio::test]
async fn due_temporary_limits_are_reverted_in_log_time() {
    let db = TestDb::new().await;
    let t0 = Timestamp::from_civil(2026, 3, 2, 10, 0, 0, 0, 0).unwrap();
    // In force: ak_x at 100/min (restored later) and a rule for ak_y that a temporary limit adds.
    let before = rule("client:ak_x", 100);
    let policy = Policy::new(vec![before.clone(), rule("other", 7)]).unwrap();
    sluice_store::policy::publish(
        &db.pool,
        &policy,
        &sluice_store::policy::Publish {
            actor: "admin:ana",
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let suggest = |id: &str, rate, current: Option<Rule>| store::NewSuggestion {
        rule_id: id.into(),
        client: Some(id.trim_start_matches("client:").into()),
        rule: rule(id, rate),
        current,
        diff: serde_json::json!({}),
        confidence: 0.9,
        reasons: vec![],
        evidence: serde_json::json!({}),
        backtest: None,
        abusive: true,
        created_at: t0,
        expires_at: min(t0, 60),
    };
    let x = store::insert_suggestion(&db.pool, &suggest("client:ak_x", 5, Some(before.clone())))
        .await
        .unwrap();
    let y = store::insert_suggestion(&db.pool, &suggest("client:ak_y", 5, None))
        .await
        .unwrap();
    // Approved as temporary limits and published (what the review store does).
    let approved = Policy::new(vec![
        rule("client:ak_x", 5),
        rule("client:ak_y", 5),
        rule("other", 7),
    ])
    .unwrap();
    let v = sluice_store::policy::publish(
        &db.pool,
        &approved,
        &sluice_store::policy::Publish {
            actor: "admin:ana",
            ..Default::default()
        },
    )
    .await
    .unwrap();
    sqlx::query(
        "UPDATE limit_suggestions SET state = 'approved', policy_version = $1, \
             temporary_until = $2 WHERE id = ANY($3)",
    )
    .bind(v.version)
    .bind(min(t0, 30).to_chrono())
    .bind(vec![x.id, y.id])
    .execute(&db.pool)
    .await
    .unwrap();

    let settings = TuningSettings::default();
    let r = tune_step(&db.pool, &settings, min(t0, 29)).await.unwrap();
    assert!(r.reverted.is_empty());
    let r = tune_step(&db.pool, &settings, min(t0, 31)).await.unwrap();
    let mut reverted = r.reverted.clone();
    reverted.sort();
    assert_eq!(reverted, vec![x.id, y.id]);
    let served = sluice_store::policy::current(&db.pool, "*")
        .await
        .unwrap()
        .unwrap();
    let ids: Vec<(&str, u64)> = served
        .policy
        .rules()
        .iter()
        .map(|r| (r.id.as_str(), r.limit.rate()))
        .collect();
    assert_eq!(ids, vec![("client:ak_x", 100), ("other", 7)]);
    for id in [x.id, y.id] {
        let s = store::suggestion(&db.pool, id).await.unwrap();
        assert_eq!(s.reverted_at, Some(min(t0, 31)));
        assert!(s.reverted_version.is_some());
    }
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'suggestion.revert' AND actor = $1",
    )
    .bind(store::TUNER_ACTOR)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(audited, 2);
    // Nothing is reverted twice.
    let r = tune_step(&db.pool, &settings, min(t0, 40)).await.unwrap();
    assert!(r.reverted.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_units_and_fair_share_under_predicted_overload() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (_, end) = prepare(&db, dir.path()).await;
    // Predicted overload: the total's capacity factor below 1 at the end, 2 requests/s capacity
    // (far below what the clients' limits add up to).
    sqlx::query(
        "INSERT INTO capacity_factors (route, minute, factor, utilisation, planned_rps, capacity_rps) \
         VALUES ('*', $1, 0.5, 2.0, 4.0, 2.0)",
    )
    .bind(min(end, -1).to_chrono())
    .execute(&db.pool)
    .await
    .unwrap();
    let mut s = settings();
    s.fair_share = Some(Default::default());
    s.cost_units = Some(Default::default());
    let r = tune_step(&db.pool, &s, end).await.unwrap();
    assert!(!r.cost_weights.is_empty());
    assert!(r
        .cost_weights
        .iter()
        .all(|w| w.weight >= 0.25 && w.weight <= 10.0));
    assert!(!r.suggestions.is_empty());
    let fs = r
        .fair_share
        .as_ref()
        .expect("fair share ran under overload");
    assert_eq!(fs.capacity_per_minute, Some(2.0 * 60.0));
    assert!(fs.demand_per_minute > 2.0 * 60.0, "{fs:?}");
    assert!(fs.cut > 0, "{fs:?}");
    // The routes were granted at most the total together (no route has its own capacity here).
    let granted: f64 = fs.routes.iter().filter_map(|r| r.granted_per_minute).sum();
    assert!(granted <= 2.0 * 60.0 + 1e-6, "{fs:?}");
    assert!(fs
        .routes
        .iter()
        .all(|r| r.capacity_per_minute.is_none() && r.shared_per_minute == r.granted_per_minute));
    // The clients' own limits count cost units; every cut is a rule for the client on one route,
    // counting requests (a route's capacity is in requests), with the fair-share reason.
    let (routed, own): (Vec<_>, Vec<_>) = r.suggestions.iter().partition(|s| s.route.is_some());
    assert!(!own.is_empty());
    assert!(own.iter().all(|s| s.cost == CostUnit::CostUnits));
    assert!(!routed.is_empty());
    for s in &routed {
        let route = s.route.as_deref().unwrap();
        assert_eq!(s.basis, Basis::FairShare);
        assert_eq!(s.cost, CostUnit::Requests);
        assert_eq!(s.rule_id, route_rule_id_for(&s.client, route));
        assert!(
            s.reason
                .starts_with(&format!("predicted overload on {route} (capacity ")),
            "{}",
            s.reason
        );
        let stored = store::suggestion(&db.pool, s.id).await.unwrap();
        assert_eq!(
            stored.rule.selector,
            Selector::client(s.client_kind, &s.client)
                .unwrap()
                .on_route(route)
        );
    }
    // Cut rules are rounded down (at least 1 each), so a route's rules fit what it shared.
    for route in &fs.routes {
        let rules: Vec<_> = routed
            .iter()
            .filter(|s| s.route.as_deref() == Some(route.route.as_str()))
            .collect();
        let sum: f64 = rules.iter().map(|s| s.limit.per_minute()).sum();
        let shared = route.shared_per_minute.unwrap();
        assert!(
            sum <= shared + rules.len() as f64,
            "{sum} > {shared}: {route:?}"
        );
    }
    // Under pressure, smooth clients get a leaky bucket rather than a token bucket.
    #[cfg(feature = "profiles")]
    assert!(own
        .iter()
        .any(|s| matches!(s.limit, Limit::LeakyBucket { .. })));
}

/// Insert a capacity factor for `route` at `minute` (capacity in requests per second).
async fn capacity(db: &TestDb, route: &str, minute: Timestamp, factor: f64, capacity_rps: f64) {
    sqlx::query(
        "INSERT INTO capacity_factors (route, minute, factor, utilisation, planned_rps, capacity_rps) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(route)
    .bind(minute.to_chrono())
    .bind(factor)
    .bind(1.0 / factor)
    .bind(capacity_rps / factor)
    .bind(capacity_rps)
    .execute(&db.pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn fair_share_per_route_keeps_critical_routes_and_cuts_low_reputation_clients_first() {
    use sluice_core::reputation::Reputation;
    use sluice_core::tuning::fairshare::PriorityClass;
    use sluice_store::BatchBuilder;

    let db = TestDb::new().await;
    let t0 = Timestamp::from_civil(2026, 3, 2, 10, 0, 0, 0, 0).unwrap();
    let end = min(t0, 60);
    // An hour of traffic: ak_good and ak_bad each send 30 requests a minute (one every 2 s) to
    // /v1/payments and to /v1/reports.
    let mut batch = BatchBuilder::new("edge-1");
    for m in 0..60 {
        for client in ["ak_good", "ak_bad"] {
            for route in ["/v1/payments", "/v1/reports"] {
                for i in 0..30 {
                    let ts = Timestamp::from_micros(min(t0, m).micros() + i * 2_000_000);
                    batch.push(&request(ts, "POST", route, 200, ClientKind::ApiKey, client));
                }
            }
        }
    }
    IngestWriter::new(db.pool.clone())
        .write(batch.finish(None, "ndjson"))
        .await
        .unwrap();
    // Their standing: ak_good trusted (0.95), ak_bad not (0.1: its weight is the minimum 0.05).
    let cfg = sluice_core::reputation::ReputationConfig::default();
    let standing = |score| store::StoredReputation {
        client_kind: ClientKind::ApiKey,
        reputation: Reputation {
            score,
            ..Reputation::new(t0, &cfg)
        },
    };
    let updates: Vec<store::ReputationUpdate> = [("ak_good", 0.95), ("ak_bad", 0.1)]
        .into_iter()
        .map(|(client, score)| store::ReputationUpdate {
            client: client.into(),
            state: standing(score),
            events: Vec::new(),
        })
        .collect();
    store::save_reputations(&db.pool, &updates).await.unwrap();

    let s = TuningSettings {
        fair_share: Some(Default::default()),
        route_priority: [
            ("/v1/payments".to_owned(), PriorityClass::Critical),
            ("/v1/reports".to_owned(), PriorityClass::BestEffort),
        ]
        .into(),
        ..TuningSettings::default()
    };

    // No predicted overload: nobody is squeezed.
    let r = tune_step(&db.pool, &s, end).await.unwrap();
    assert!(r.suggested);
    assert!(r.fair_share.is_none(), "{:?}", r.fair_share);
    assert!(r.suggestions.is_empty(), "{:#?}", r.suggestions);
    assert_eq!(
        r.tier_default, 2,
        "too little history for limits of their own"
    );

    // Predicted overload: in all 105/min for 120/min of demand; payments (critical) could take
    // 90/min, reports (best effort) 60/min.
    let at = min(end, 10);
    capacity(&db, "*", at, 0.8, 1.75).await;
    capacity(&db, "/v1/payments", at, 0.9, 1.5).await;
    capacity(&db, "/v1/reports", at, 0.5, 1.0).await;
    let r = tune_step(&db.pool, &s, min(end, 15)).await.unwrap();
    assert!(r.suggested);
    let fs = r.fair_share.as_ref().expect("fair share ran");
    assert_eq!(fs.capacity_per_minute, Some(105.0));
    assert_eq!(fs.demand_per_minute, 120.0);
    assert_eq!(fs.cut, 1, "{fs:#?}");
    let summary: Vec<_> = fs
        .routes
        .iter()
        .map(|r| {
            (
                r.route.as_str(),
                r.priority,
                r.demand_per_minute,
                r.capacity_per_minute,
                r.granted_per_minute,
                r.shared_per_minute,
                r.clients,
                r.cut,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            // The critical route keeps all it needs; the best-effort route gets what is left
            // (45/min, below its own 60) ...
            (
                "/v1/payments",
                PriorityClass::Critical,
                60.0,
                Some(90.0),
                Some(60.0),
                Some(60.0),
                2,
                0
            ),
            (
                "/v1/reports",
                PriorityClass::BestEffort,
                60.0,
                Some(60.0),
                Some(45.0),
                Some(45.0),
                2,
                1
            ),
        ]
    );
    // ... and there the low-reputation client gives up the missing 15/min: ak_good keeps its 30,
    // ak_bad gets 15. One rule, for ak_bad on /v1/reports only.
    assert_eq!(r.suggestions.len(), 1, "{:#?}", r.suggestions);
    let sug = &r.suggestions[0];
    assert_eq!(sug.client, "ak_bad");
    assert_eq!(sug.route.as_deref(), Some("/v1/reports"));
    assert_eq!(sug.basis, Basis::FairShare);
    assert_eq!(sug.rule_id, route_rule_id_for("ak_bad", "/v1/reports"));
    // The tier default's shape at the share.
    assert_eq!(
        sug.limit,
        Limit::TokenBucket {
            rate: 15,
            window_seconds: 60,
            burst: 15
        }
    );
    assert!(
        sug.reason.starts_with(
            "predicted overload on /v1/reports (capacity 45/min shared among its clients): \
             best_effort class under overload: fair share 15.0 of 30.0/min (weight 0.05"
        ),
        "{}",
        sug.reason
    );
    // Backtested on ak_bad's traffic on the route: 30 a minute against 15 a minute.
    assert_eq!(sug.backtest.requests, 60 * 30);
    assert!(
        sug.backtest.rejected >= 60 * 14 && sug.backtest.rejected <= 60 * 15 + 15,
        "{:?}",
        sug.backtest
    );
    let stored = store::suggestion(&db.pool, sug.id).await.unwrap();
    assert_eq!(stored.state, "pending");
    assert!(!stored.abusive);
    assert_eq!(stored.client.as_deref(), Some("ak_bad"));
    assert_eq!(
        stored.rule.selector,
        Selector::client(ClientKind::ApiKey, "ak_bad")
            .unwrap()
            .on_route("/v1/reports")
    );
    assert_eq!(stored.rule.cost, CostUnit::Requests);
    let policy = policy_with_pending(&db.pool).await.unwrap();
    assert_eq!(policy.rules().len(), 1);

    // Same traffic and capacity on the next round: no churn.
    let r = tune_step(&db.pool, &s, min(end, 30)).await.unwrap();
    assert!(r.suggested);
    assert!(r.suggestions.is_empty(), "{:#?}", r.suggestions);
    assert_eq!(r.unchanged, 1);
    assert_eq!(store::pending(&db.pool).await.unwrap().len(), 1);
}

#[test]
fn rule_ids_and_material_changes() {
    // (client, rule id)
    let cases: &[(&str, &str)] = &[
        ("ak_live_1", "client:ak_live_1"),
        ("10.0.0.1", "client:10.0.0.1"),
        ("2001:db8::1", "client:2001:db8::1"),
        ("user name", "client:h"),
        ("é", "client:h"),
    ];
    for (client, want) in cases {
        let id = rule_id_for(client);
        if want.ends_with(":h") {
            assert_eq!(id.len(), "client:h".len() + 16, "{client}: {id}");
            assert!(id.starts_with(want), "{client}: {id}");
            assert_ne!(id, rule_id_for("other"), "hashes differ");
        } else {
            assert_eq!(&id, want);
        }
    }
    let long = "k".repeat(200);
    assert!(rule_id_for(&long).starts_with("client:h"));

    // Fair-share rules: the client's id, then the route (hashed: a route has slashes).
    let id = route_rule_id_for("ak_1", "/v1/reports");
    assert!(id.starts_with("client:ak_1:route:h"), "{id}");
    assert_eq!(id.len(), "client:ak_1:route:h".len() + 16);
    assert_eq!(
        id,
        route_rule_id_for("ak_1", "/v1/reports"),
        "deterministic"
    );
    assert_ne!(id, route_rule_id_for("ak_1", "/v1/payments"));
    assert_ne!(id, route_rule_id_for("ak_2", "/v1/reports"));
    let id = route_rule_id_for("user name", "/v1/reports");
    assert!(
        id.starts_with("client:h") && id.contains(":route:h"),
        "{id}"
    );
    let id = route_rule_id_for(&"k".repeat(120), "/v1/reports");
    assert!(id.len() <= sluice_core::policy::MAX_RULE_ID_LEN, "{id}");
    for id in [
        route_rule_id_for("ak_1", "/v1/items/{id}"),
        route_rule_id_for("10.0.0.1", "/"),
    ] {
        let mut r = rule(&id, 10);
        r.selector = r.selector.on_route("/v1/items/{id}");
        Policy::new(vec![r]).unwrap();
    }

    // (rate a, rate b, min_change, differs)
    let cases: &[(u64, u64, f64, bool)] = &[
        (100, 100, 0.1, false),
        (109, 100, 0.1, false),
        (111, 100, 0.1, true),
        (90, 100, 0.1, false),
        (89, 100, 0.1, true),
        (101, 100, 0.0, true),
    ];
    for &(a, b, m, want) in cases {
        assert_eq!(
            differs_materially(&rule("r", a), &rule("r", b), m),
            want,
            "{a} vs {b} at {m}"
        );
    }
    let mut shadow = rule("r", 100);
    shadow.shadow = true;
    assert!(differs_materially(&shadow, &rule("r", 100), 0.1));
    let mut leaky = rule("r", 100);
    leaky.limit = Limit::LeakyBucket {
        rate: 100,
        window_seconds: 60,
        queue: 10,
    };
    assert!(differs_materially(&leaky, &rule("r", 100), 0.1));
}

#[test]
fn settings_are_checked() {
    let mut s = TuningSettings::default();
    assert_eq!(s.check(), Ok(()));
    s.client_tiers.insert("ak_1".into(), "gold".into());
    assert_eq!(
        s.check(),
        Err("client_tiers: client \"ak_1\" names tier \"gold\", which is not in tiers".into())
    );
    let s = TuningSettings {
        backtest_hours: 0.0,
        ..TuningSettings::default()
    };
    assert_eq!(s.check(), Err("backtest_hours must be above 0".into()));
    let json =
        r#"{"tuning": {"min_active_minutes": 30}, "fair_share": {}, "suggestion_ttl_hours": 2}"#;
    let s: TuningSettings = serde_json::from_str(json).unwrap();
    assert_eq!(s.tuning.min_active_minutes, 30);
    assert_eq!(s.suggestion_ttl_hours, 2.0);
    assert!(s.fair_share.is_some() && s.cost_units.is_none());
    let json = r#"{"fair_share": {}, "route_priority": {"/v1/payments": "critical", "/v1/reports": "best_effort"}}"#;
    let s: TuningSettings = serde_json::from_str(json).unwrap();
    assert_eq!(s.check(), Ok(()));
    assert_eq!(
        s.route_priority.get("/v1/reports"),
        Some(&sluice_core::tuning::fairshare::PriorityClass::BestEffort)
    );
    let mut s = TuningSettings::default();
    s.route_priority.insert(
        "v1/payments".into(),
        sluice_core::tuning::fairshare::PriorityClass::Critical,
    );
    assert_eq!(
        s.check(),
        Err("route_priority: \"v1/payments\" is not a normalised route (expected a path starting with /)".into())
    );
    let bad = serde_json::from_str::<TuningSettings>(r#"{"ttl": 1}"#).unwrap_err();
    assert!(bad.to_string().contains("unknown field `ttl`"), "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_approval_shadows_the_abusive_limit_then_enforces_it() {
    use sluice_core::approval::{AutoApprovalConfig, TightenAbusiveRule};
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let (labels, end) = prepare(&db, dir.path()).await;
    let scraper = scraper(&labels);

    // Off by default: nothing is approved.
    let r = tune_step(&db.pool, &settings(), end).await.unwrap();
    assert!(r.auto_approved.is_empty(), "{:?}", r.auto_approved);
    sqlx::query("DELETE FROM limit_suggestions")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM tuning_cursor")
        .execute(&db.pool)
        .await
        .unwrap();

    let cfg = AutoApprovalConfig {
        tighten_abusive: TightenAbusiveRule {
            enabled: true,
            min_confidence: 0.5,
            max_reputation: 0.5,
            max_normal_rejections: 0,
            shadow_hours: 0.25,
        },
        enforce: true,
        ..AutoApprovalConfig::default()
    };
    sluice_store::review::set_auto_approval(&db.pool, &cfg, "test")
        .await
        .unwrap();
    let r = tune_step(&db.pool, &settings(), end).await.unwrap();
    let s = r
        .suggestions
        .iter()
        .find(|s| s.client == scraper)
        .expect("a suggestion for the scraper");
    let a = r
        .auto_approved
        .iter()
        .find(|a| a.id == s.id)
        .unwrap_or_else(|| {
            panic!(
                "the scraper's limit is auto-approved: {:?} / {s:?}",
                r.auto_approved
            )
        });
    assert_eq!(a.rule, "tighten_abusive");
    assert!(a.shadow, "tightening starts in shadow mode");
    // Only the abusive client's limit: learned limits of good clients are not tightenings of abuse.
    assert!(r.auto_approved.iter().all(|a| r
        .suggestions
        .iter()
        .any(|s| s.id == a.id && s.basis == Basis::Abuse)));
    let served = sluice_store::policy::current(&db.pool, sluice_store::policy::ALL_GROUPS)
        .await
        .unwrap()
        .expect("a published policy");
    let rule = served
        .policy
        .rules()
        .iter()
        .find(|r| r.id == s.rule_id)
        .expect("the rule is served");
    assert!(rule.shadow);

    // Before the shadow time has passed nothing changes; after it, the rule is enforced.
    let r = tune_step(&db.pool, &settings(), min(end, 10))
        .await
        .unwrap();
    assert!(r.enforced_after_shadow.is_empty());
    let r = tune_step(&db.pool, &settings(), min(end, 16))
        .await
        .unwrap();
    assert_eq!(r.enforced_after_shadow, vec![s.id]);
    let served = sluice_store::policy::current(&db.pool, sluice_store::policy::ALL_GROUPS)
        .await
        .unwrap()
        .unwrap();
    let rule = served
        .policy
        .rules()
        .iter()
        .find(|r| r.id == s.rule_id)
        .unwrap();
    assert!(!rule.shadow, "enforced after the shadow time");
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'suggestion.enforce_after_shadow'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(audited, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_network_gets_one_shared_limit_unless_an_established_client_lives_there() {
    use sluice_core::limit::{Cidr, IpMatch};
    use sluice_store::detection::{upsert_anomaly, AnomalyRow};
    use sluice_store::profiles::{write_profiles, ProfileRow};
    use sluice_store::BatchBuilder;

    let db = TestDb::new().await;
    let t0 = Timestamp::from_civil(2026, 3, 2, 10, 0, 0, 0, 0).unwrap();
    let end = min(t0, 90);
    let mut batch = BatchBuilder::new("edge-1");
    let mut send = |ip: &str, from: i64, per_minute: i64, status: u16| {
        for m in from..90 {
            for i in 0..per_minute {
                let ts =
                    Timestamp::from_micros(min(t0, m).micros() + i * (60_000_000 / per_minute));
                batch.push(&request(
                    ts,
                    "POST",
                    "/v1/login",
                    status,
                    ClientKind::Ip,
                    ip,
                ));
            }
        }
    };
    // An established client (90 minutes of normal use) in 198.51.100.0/24.
    send("198.51.100.10", 0, 5, 200);
    // The campaign from minute 60: five flagged addresses in 203.0.113.0/24, three in
    // 198.51.100.0/24, one in 192.0.2.0/24; an unflagged new address in 203.0.113.0/24.
    let flagged = [
        "203.0.113.1",
        "203.0.113.2",
        "203.0.113.3",
        "203.0.113.4",
        "203.0.113.5",
        "198.51.100.21",
        "198.51.100.22",
        "198.51.100.23",
        "192.0.2.9",
    ];
    for ip in flagged {
        send(ip, 60, 3, 401);
    }
    send("203.0.113.99", 70, 2, 401);
    IngestWriter::new(db.pool.clone())
        .write(batch.finish(None, "ndjson"))
        .await
        .unwrap();
    write_profiles(
        &db.pool,
        end,
        t0,
        &[ProfileRow {
            client_kind: ClientKind::Ip,
            client: "198.51.100.10".into(),
            active_minutes: 90,
            first_seen: t0,
            last_seen: end,
            requests_median: 5.0,
            requests_mad: 0.0,
            requests_p95: 5.0,
            peak_10s_p95: 1.0,
            distinct_routes_median: 1.0,
            error_share_median: 0.0,
            hour_of_day: Vec::new(),
        }],
    )
    .await
    .unwrap();
    let anomaly = upsert_anomaly(
        &db.pool,
        &AnomalyRow {
            client_kind: ClientKind::Ip,
            client: "203.0.113.1".into(),
            kind: "credential_stuffing".into(),
            score: 0.95,
            first_detected: min(t0, 61),
            last_flagged: min(t0, 89),
            open: true,
            reasons: serde_json::json!([]),
            campaign: Some("login 401 from new addresses".into()),
            members: flagged
                .iter()
                .map(|ip| (ClientKind::Ip, (*ip).to_owned()))
                .collect(),
            member_count: flagged.len(),
            model_version: None,
        },
    )
    .await
    .unwrap();

    // The tighten rule approves every abusive limit of the step, in shadow mode.
    let auto = sluice_core::approval::AutoApprovalConfig {
        tighten_abusive: sluice_core::approval::TightenAbusiveRule {
            enabled: true,
            ..Default::default()
        },
        ..Default::default()
    };
    sluice_store::review::set_auto_approval(&db.pool, &auto, "admin:ana")
        .await
        .unwrap();
    let r = tune_step(&db.pool, &TuningSettings::default(), end)
        .await
        .unwrap();
    // All of the step's approvals (the members' limits and the network's) are one version.
    assert!(r.auto_approved.len() >= 2, "{:?}", r.auto_approved);
    let versions: std::collections::BTreeSet<_> =
        r.auto_approved.iter().map(|a| a.policy_version).collect();
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert!(versions.iter().all(Option::is_some));
    let published: i64 = sqlx::query_scalar("SELECT count(*) FROM policy_versions")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(published, 1, "one version for the whole step");
    // 203.0.113.0/24: one shared counter for the whole network, the unflagged address included.
    let net: Cidr = "203.0.113.0/24".parse().unwrap();
    let s = r
        .suggestions
        .iter()
        .find(|s| s.rule_id == "subnet:203.0.113.0-24")
        .unwrap_or_else(|| panic!("no network limit: {:#?}", r.suggestions));
    assert_eq!(s.basis, Basis::Abuse);
    assert_eq!(s.client, "203.0.113.0/24");
    assert_eq!(
        s.limit,
        Limit::SlidingWindowLog {
            rate: 1,
            window_seconds: 600
        }
    );
    assert!(s.reason.contains(&format!(
        "campaign anomaly {anomaly}: 5 of its flagged addresses in 203.0.113.0/24 (1 other new addresses"
    )));
    // 5 addresses x 3/min x 30 min + 2/min x 20 min, all but one per 10 minutes rejected.
    assert_eq!(s.backtest.requests, 5 * 3 * 30 + 2 * 20);
    assert!(
        s.backtest.rejected >= s.backtest.requests - 4,
        "{:?}",
        s.backtest
    );
    assert_eq!(s.backtest.normal_rejected, 0);
    let stored = store::suggestion(&db.pool, s.id).await.unwrap();
    assert_eq!(stored.rule.selector.ip, Some(IpMatch::Net(net)));
    assert!(stored.abusive);
    assert_eq!(stored.rule.source, Some(format!("anomaly:{anomaly}")));
    let clients = stored.backtest.as_ref().unwrap()["clients"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(clients, 6, "the five members and the new address");

    // 198.51.100.0/24 holds an established client: spared, and said so.
    assert!(!r
        .suggestions
        .iter()
        .any(|s| s.rule_id.starts_with("subnet:198.51.100")));
    assert_eq!(
        r.campaign_nets_spared,
        vec![(
            anomaly,
            "198.51.100.0/24".to_owned(),
            "198.51.100.10".to_owned()
        )]
    );
    // One member alone in 192.0.2.0/24 is no network campaign.
    assert!(!r
        .suggestions
        .iter()
        .any(|s| s.rule_id.starts_with("subnet:192.0.2")));
    // The flagged addresses keep their own limits.
    assert!(r
        .suggestions
        .iter()
        .any(|s| s.rule_id == "client:192.0.2.9"));

    // Settings: 0 members turns network limits off; prefixes are checked.
    let off = TuningSettings {
        campaign_subnets: sluice_core::tuning::campaign::SubnetConfig {
            min_members: 0,
            ..Default::default()
        },
        ..TuningSettings::default()
    };
    assert!(off.check().is_ok());
    let bad = TuningSettings {
        campaign_subnets: sluice_core::tuning::campaign::SubnetConfig {
            prefix_v4: 33,
            ..Default::default()
        },
        ..TuningSettings::default()
    };
    assert_eq!(
        bad.check(),
        Err("campaign_subnets.prefix_v4 must be 1 to 32, not 33".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_abusive_limit_is_auto_approved_once_the_evidence_is_strong_enough() {
    use sluice_core::approval::{AutoApprovalConfig, TightenAbusiveRule};
    use sluice_store::detection::{upsert_anomaly, AnomalyRow};
    use sluice_store::BatchBuilder;

    let db = TestDb::new().await;
    let t0 = Timestamp::from_civil(2026, 3, 2, 10, 0, 0, 0, 0).unwrap();
    let attacker = "203.0.113.50";
    let mut batch = BatchBuilder::new("edge-1");
    for m in 0..90 {
        // a steady API client for the whole span, the attacker from minute 60 on
        let mut who = vec![(ClientKind::ApiKey, "ak_steady", 10)];
        if m >= 60 {
            who.push((ClientKind::Ip, attacker, 100));
        }
        for (kind, value, per_minute) in who {
            for i in 0..per_minute {
                let ts =
                    Timestamp::from_micros(min(t0, m).micros() + i * (60_000_000 / per_minute));
                batch.push(&request(ts, "GET", "/v1/items", 200, kind, value));
            }
        }
    }
    IngestWriter::new(db.pool.clone())
        .write(batch.finish(None, "ndjson"))
        .await
        .unwrap();
    let anomaly = |score: f32| AnomalyRow {
        client_kind: ClientKind::Ip,
        client: attacker.into(),
        kind: "flood".into(),
        score,
        first_detected: min(t0, 61),
        last_flagged: min(t0, 74),
        open: true,
        reasons: serde_json::json!([]),
        campaign: None,
        members: vec![(ClientKind::Ip, attacker.to_owned())],
        member_count: 0,
        model_version: None,
    };
    // A weak signal first: abusive (score 0.85 >= 0.8) but below the rule's confidence (0.9).
    let id = upsert_anomaly(&db.pool, &anomaly(0.85)).await.unwrap();
    let auto = AutoApprovalConfig {
        tighten_abusive: TightenAbusiveRule {
            enabled: true,
            ..TightenAbusiveRule::default()
        },
        ..AutoApprovalConfig::default()
    };
    sluice_store::review::set_auto_approval(&db.pool, &auto, "admin:ana")
        .await
        .unwrap();
    let settings = TuningSettings::default();

    let r = tune_step(&db.pool, &settings, min(t0, 75)).await.unwrap();
    let first = r
        .suggestions
        .iter()
        .find(|s| s.client == attacker)
        .unwrap_or_else(|| panic!("{:#?}", r.suggestions));
    assert_eq!(first.basis, Basis::Abuse);
    assert!(r.auto_approved.is_empty(), "{:?}", r.auto_approved);
    let first_id = first.id;

    // Same evidence a round later: nothing new, nothing stored.
    let r = tune_step(&db.pool, &settings, min(t0, 76)).await.unwrap();
    assert!(!r.suggested);
    let r = tune_step(&db.pool, &settings, min(t0, 90)).await.unwrap();
    assert!(r.suggested);
    assert!(!r.suggestions.iter().any(|s| s.client == attacker));
    assert!(r.auto_approved.is_empty());

    // The detector grows surer (0.95): the same limit is stored again and approved, in shadow.
    assert_eq!(upsert_anomaly(&db.pool, &anomaly(0.95)).await.unwrap(), id);
    let r = tune_step(&db.pool, &settings, min(t0, 105)).await.unwrap();
    let again = r
        .suggestions
        .iter()
        .find(|s| s.client == attacker)
        .unwrap_or_else(|| panic!("{:#?}", r.suggestions));
    assert_eq!(again.superseded, Some(first_id));
    assert_eq!(again.limit, first_limit(&db, first_id).await);
    let approved = r
        .auto_approved
        .iter()
        .find(|a| a.id == again.id)
        .unwrap_or_else(|| panic!("{:?}", r.auto_approved));
    assert_eq!(approved.rule, "tighten_abusive");
    assert!(approved.shadow);
    assert_eq!(
        store::suggestion(&db.pool, first_id).await.unwrap().state,
        "expired"
    );
}

async fn first_limit(db: &TestDb, id: i64) -> Limit {
    store::suggestion(&db.pool, id).await.unwrap().rule.limit
}
