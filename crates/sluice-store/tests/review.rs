//! The review side of tuning on a real Postgres (a fresh database per test): decisions through
//! the state machine (an approval publishes its policy version in the same transaction, a failed
//! publish leaves the suggestion pending, decided suggestions answer conflicts), keyset pages of
//! suggestions and audit entries, the auto-approval configuration and reputation reads.
//! Fixture suggestions and reputation rows are plain SQL inserts.

use sluice_core::approval::{AutoApprovalConfig, SuggestionState};
use sluice_core::policy::{Policy, Rule};
use sluice_core::time::Timestamp;
use sluice_store::policy::{self, Publish};
use sluice_store::review::{self, AuditFilter, DecideRequest, DecisionKind, SuggestionFilter};
use sluice_store::testing::TestDb;
use sluice_store::StoreError;

fn rule_json(id: &str, client: &str, rate: u64) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "selector": {"api_key": client},
        "limit": {"algorithm": "token_bucket", "rate": rate, "window_seconds": 60, "burst": 10},
        "reason": "learned from the baseline",
        "source": "tuner",
    })
}

fn rule(id: &str, client: &str, rate: u64) -> Rule {
    serde_json::from_value(rule_json(id, client, rate)).unwrap()
}

/// Publish a base policy (version 1) with one rule every key shares.
async fn base_policy(db: &TestDb) {
    let p = Policy::parse(
        br#"{"format":"sluice.policy/v1","rules":[
            {"id":"per-key","selector":{"api_key":"*"},"limit":{"algorithm":"token_bucket","rate":1000,"window_seconds":60,"burst":10}}
        ]}"#,
    )
    .unwrap();
    policy::publish(
        &db.pool,
        &p,
        &Publish {
            actor: "token:root",
            comment: Some("base"),
            group: None,
        },
    )
    .await
    .unwrap();
}

struct Fixture<'a> {
    rule_id: &'a str,
    client: &'a str,
    rate: u64,
    state: &'a str,
    abusive: bool,
    created_at: &'a str,
    expires_at: &'a str,
}

impl Default for Fixture<'_> {
    fn default() -> Self {
        Fixture {
            rule_id: "client:ak_1",
            client: "ak_1",
            rate: 100,
            state: "pending",
            abusive: false,
            created_at: "2026-03-02T04:00:00Z",
            expires_at: "2026-03-03T04:00:00Z",
        }
    }
}

async fn insert(db: &TestDb, f: Fixture<'_>) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO limit_suggestions
             (rule_id, client, state, rule, current, diff, confidence, reasons, evidence, abusive,
              created_at, expires_at)
         VALUES ($1, $2, $3, $4, NULL, $5, 0.9, $6, $7, $8, $9::timestamptz, $10::timestamptz)
         RETURNING id",
    )
    .bind(f.rule_id)
    .bind(f.client)
    .bind(f.state)
    .bind(rule_json(f.rule_id, f.client, f.rate))
    .bind(serde_json::json!({"change": "new", "summary": "new"}))
    .bind(serde_json::json!(["learned from 7 days"]))
    .bind(serde_json::json!({"reputation": 0.9}))
    .bind(f.abusive)
    .bind(f.created_at)
    .bind(f.expires_at)
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

fn req(id: i64, kind: DecisionKind, comment: Option<&str>) -> DecideRequest {
    DecideRequest {
        id,
        kind,
        actor: "token:alice".into(),
        comment: comment.map(str::to_owned),
        shadow: None,
        temporary_until: None,
    }
}

async fn version_count(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM policy_versions")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

async fn audit_rows(db: &TestDb) -> Vec<(String, String, Option<String>)> {
    sqlx::query_as(
        "SELECT actor, action, target FROM audit_log WHERE action LIKE 'suggestion.%' ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn approve_publishes_a_new_policy_version_in_the_same_transaction() {
    let db = TestDb::new().await;
    base_policy(&db).await;
    let id = insert(&db, Fixture::default()).await;
    let mut r = req(id, DecisionKind::Approve, Some("looks right"));
    r.shadow = Some(true);
    r.temporary_until = Some(Timestamp::from_chrono(
        "2026-03-02T06:00:00Z".parse().unwrap(),
    ));
    let d = review::decide(&db.pool, &r).await.unwrap();
    assert_eq!(d.policy_version, Some(2));
    let s = &d.suggestion;
    assert_eq!(s.state, SuggestionState::Approved);
    assert_eq!(s.decided_by.as_deref(), Some("token:alice"));
    assert_eq!(s.decision_comment.as_deref(), Some("looks right"));
    assert_eq!(s.policy_version, Some(2));
    assert_eq!(
        s.temporary_until.map(|t| t.to_rfc3339()),
        Some("2026-03-02T06:00:00+00:00".to_owned())
    );
    assert!(s.decided_wall.is_some());
    let published = s.decided_rule.clone().unwrap();
    assert!(published.shadow, "the shadow override is published");
    assert_eq!(
        published.source.as_deref(),
        Some(&*format!("suggestion:{id}"))
    );
    assert_eq!(published.limit, rule("client:ak_1", "ak_1", 100).limit);

    // Every gateway is served version 2: the base rule and the approved one.
    let cur = policy::current(&db.pool, "default").await.unwrap().unwrap();
    assert_eq!(cur.info.version, 2);
    assert_eq!(cur.info.created_by, "token:alice");
    let ids: Vec<&str> = cur.policy.rules().iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["client:ak_1", "per-key"]);
    let served = &cur.policy.rules()[0];
    assert!(served.shadow);
    assert_eq!(
        served.ratelimit_policy.as_deref().map(|v| v.is_empty()),
        Some(false)
    );

    // Read back equals what decide returned.
    assert_eq!(review::get(&db.pool, id).await.unwrap(), d.suggestion);

    // Audited twice in the same transaction: the policy version and the suggestion.
    let rows = audit_rows(&db).await;
    assert_eq!(
        rows,
        [
            (
                "token:alice".to_owned(),
                "suggestion.approve".to_owned(),
                Some("policy:2".to_owned())
            ),
            (
                "token:alice".to_owned(),
                "suggestion.approve".to_owned(),
                Some(format!("suggestion:{id}"))
            ),
        ]
    );
    let (reason, before, after): (Option<String>, serde_json::Value, serde_json::Value) =
        sqlx::query_as("SELECT reason, before, after FROM audit_log WHERE target = $1")
            .bind(format!("suggestion:{id}"))
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(reason.as_deref(), Some("looks right"));
    assert_eq!(before["state"], "pending");
    assert_eq!(after["state"], "approved");
    assert_eq!(after["policy_version"], 2);
    assert_eq!(after["decided_rule"]["shadow"], true);

    // A second decision is a state conflict and changes nothing.
    let err = review::decide(&db.pool, &req(id, DecisionKind::Approve, None))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::StateConflict(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "cannot approve a suggestion that is approved"
    );
    assert_eq!(version_count(&db).await, 2);
    assert_eq!(audit_rows(&db).await.len(), 2);
}

#[tokio::test]
async fn approving_a_rule_in_force_replaces_it() {
    let db = TestDb::new().await;
    base_policy(&db).await;
    let id = insert(
        &db,
        Fixture {
            rule_id: "per-key",
            client: "*",
            rate: 500,
            ..Fixture::default()
        },
    )
    .await;
    let d = review::decide(&db.pool, &req(id, DecisionKind::Approve, None))
        .await
        .unwrap();
    assert_eq!(d.policy_version, Some(2));
    let cur = policy::current(&db.pool, "default").await.unwrap().unwrap();
    assert_eq!(cur.policy.rules().len(), 1);
    assert_eq!(cur.policy.rules()[0].limit.rate(), 500);
    assert!(!cur.policy.rules()[0].shadow, "the rule's own flag is kept");
    // Without a comment the version names the suggestion.
    assert_eq!(
        cur.info.comment.as_deref(),
        Some(&*format!("suggestion {id} approved"))
    );
}

#[tokio::test]
async fn reject_records_the_decision_and_twice_is_a_conflict() {
    let db = TestDb::new().await;
    base_policy(&db).await;
    let id = insert(&db, Fixture::default()).await;
    // A rejection needs its comment; the refused one leaves the suggestion pending.
    let err = review::decide(&db.pool, &req(id, DecisionKind::Reject, Some("  ")))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(err.to_string(), "a comment is required to reject");
    assert_eq!(
        review::get(&db.pool, id).await.unwrap().state,
        SuggestionState::Pending
    );

    let d = review::decide(
        &db.pool,
        &req(id, DecisionKind::Reject, Some("the client is a partner")),
    )
    .await
    .unwrap();
    assert_eq!(d.policy_version, None);
    assert_eq!(d.suggestion.state, SuggestionState::Rejected);
    assert_eq!(d.suggestion.decided_rule, None);
    assert_eq!(
        d.suggestion.decision_comment.as_deref(),
        Some("the client is a partner")
    );
    assert_eq!(version_count(&db).await, 1, "a rejection publishes nothing");

    let err = review::decide(&db.pool, &req(id, DecisionKind::Reject, Some("again")))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::StateConflict(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "cannot reject a suggestion that is rejected"
    );
    assert_eq!(
        audit_rows(&db).await,
        [(
            "token:alice".to_owned(),
            "suggestion.reject".to_owned(),
            Some(format!("suggestion:{id}"))
        )]
    );
    let err = review::decide(&db.pool, &req(id + 100, DecisionKind::Reject, Some("x")))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::NotFound(w) if *w == format!("suggestion {}", id + 100)),
        "{err:?}"
    );
}

#[tokio::test]
async fn modify_publishes_the_modified_rule() {
    let db = TestDb::new().await;
    base_policy(&db).await;
    let id = insert(&db, Fixture::default()).await;
    // Refused: no comment, the same limit, another rule id, an invalid limit.
    for (kind, comment, want) in [
        (
            DecisionKind::Modify(rule("client:ak_1", "ak_1", 80)),
            None,
            "a comment is required to modify".to_owned(),
        ),
        (
            DecisionKind::Modify(rule("client:ak_1", "ak_1", 100)),
            Some("same"),
            "modified limit is the same as the proposed one (approve it instead)".to_owned(),
        ),
        (
            DecisionKind::Modify(rule("client:other", "ak_1", 80)),
            Some("other id"),
            "the modified rule must keep the suggestion's rule id \"client:ak_1\", not \"client:other\"".to_owned(),
        ),
        (
            DecisionKind::Modify(rule("client:ak_1", "ak_1", 0)),
            Some("zero"),
            "modified limit: rate must be at least 1 (to block a client use a rate of 1 over a long window)".to_owned(),
        ),
    ] {
        let err = review::decide(&db.pool, &req(id, kind, comment))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        assert_eq!(err.to_string(), want);
    }
    assert_eq!(version_count(&db).await, 1);

    let d = review::decide(
        &db.pool,
        &req(
            id,
            DecisionKind::Modify(rule("client:ak_1", "ak_1", 80)),
            Some("tighter while we investigate"),
        ),
    )
    .await
    .unwrap();
    assert_eq!(d.suggestion.state, SuggestionState::ModifiedApproved);
    assert_eq!(d.policy_version, Some(2));
    assert_eq!(d.suggestion.rule.limit.rate(), 100, "the proposal is kept");
    assert_eq!(d.suggestion.decided_rule.as_ref().unwrap().limit.rate(), 80);
    let cur = policy::current(&db.pool, "default").await.unwrap().unwrap();
    let served = cur
        .policy
        .rules()
        .iter()
        .find(|r| r.id == "client:ak_1")
        .unwrap();
    assert_eq!(served.limit.rate(), 80);
    assert_eq!(audit_rows(&db).await.last().unwrap().1, "suggestion.modify");
}

#[tokio::test]
async fn a_failed_publish_leaves_the_suggestion_pending() {
    let db = TestDb::new().await;
    base_policy(&db).await;
    // The tuner stored a rule no policy may hold (rate 0): the approval passes the state
    // machine, then publishing fails validation; nothing of the decision may remain.
    let id = insert(
        &db,
        Fixture {
            rate: 0,
            ..Fixture::default()
        },
    )
    .await;
    let err = review::decide(&db.pool, &req(id, DecisionKind::Approve, Some("ok")))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("invalid policy: rules[1].limit.rate: must be at least 1"),
        "{err}"
    );
    let s = review::get(&db.pool, id).await.unwrap();
    assert_eq!(s.state, SuggestionState::Pending);
    assert_eq!(s.decided_by, None);
    assert_eq!(version_count(&db).await, 1);
    assert!(audit_rows(&db).await.is_empty());

    // Inside a caller's transaction: the caller drops it and nothing is visible.
    let good = insert(
        &db,
        Fixture {
            rule_id: "client:ak_2",
            client: "ak_2",
            ..Fixture::default()
        },
    )
    .await;
    let mut tx = db.pool.begin().await.unwrap();
    let d = review::decide_in(&mut tx, &req(good, DecisionKind::Approve, None))
        .await
        .unwrap();
    assert_eq!(d.policy_version, Some(2));
    drop(tx);
    assert_eq!(
        review::get(&db.pool, good).await.unwrap().state,
        SuggestionState::Pending
    );
    assert_eq!(version_count(&db).await, 1);
}

#[tokio::test]
async fn expiry_and_temporary_limits_follow_log_time() {
    let db = TestDb::new().await;
    base_policy(&db).await;
    let id = insert(&db, Fixture::default()).await;
    // Tuning has run past the suggestion's deadline: too late to approve it.
    sqlx::query("INSERT INTO tuning_cursor (through) VALUES ('2026-03-03T05:00:00Z')")
        .execute(&db.pool)
        .await
        .unwrap();
    let err = review::decide(&db.pool, &req(id, DecisionKind::Approve, None))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::StateConflict(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "cannot approve: the suggestion expired at 2026-03-03T04:00:00Z"
    );
    // A temporary limit must end after the decision's log time (the tuning cursor).
    sqlx::query("UPDATE tuning_cursor SET through = '2026-03-02T05:00:00Z'")
        .execute(&db.pool)
        .await
        .unwrap();
    let mut r = req(id, DecisionKind::Approve, None);
    r.temporary_until = Some(Timestamp::from_chrono(
        "2026-03-02T05:00:00Z".parse().unwrap(),
    ));
    let err = review::decide(&db.pool, &r).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "a temporary limit must end after 2026-03-02T05:00:00Z, not at 2026-03-02T05:00:00Z"
    );
    assert_eq!(
        review::get(&db.pool, id).await.unwrap().state,
        SuggestionState::Pending
    );
}

#[tokio::test]
async fn suggestions_list_in_keyset_pages_with_filters() {
    let db = TestDb::new().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let rule_id = format!("client:ak_{i}");
        let client = if i % 2 == 0 { "ak_even" } else { "ak_odd" };
        let state = if i < 5 { "pending" } else { "rejected" };
        ids.push(
            insert(
                &db,
                Fixture {
                    rule_id: &rule_id,
                    client,
                    state,
                    abusive: i % 3 == 0,
                    ..Fixture::default()
                },
            )
            .await,
        );
    }
    let newest_first: Vec<i64> = ids.iter().rev().copied().collect();
    let mut seen = Vec::new();
    let mut filter = SuggestionFilter {
        limit: 3,
        ..SuggestionFilter::default()
    };
    let mut pages = 0;
    loop {
        let page = review::list(&db.pool, &filter).await.unwrap();
        pages += 1;
        seen.extend(page.items.iter().map(|s| s.id));
        match page.next_before_id {
            Some(b) => filter.before_id = Some(b),
            None => break,
        }
    }
    assert_eq!(seen, newest_first);
    assert_eq!(pages, 3);

    let ids_of = |f: SuggestionFilter| {
        let pool = db.pool.clone();
        async move {
            review::list(&pool, &f)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|s| s.id)
                .collect::<Vec<_>>()
        }
    };
    let pending = ids_of(SuggestionFilter {
        state: Some(SuggestionState::Pending),
        ..Default::default()
    })
    .await;
    assert_eq!(pending, newest_first[2..]);
    let even = ids_of(SuggestionFilter {
        client: Some("ak_even".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(even, [ids[6], ids[4], ids[2], ids[0]]);
    let abusive_pending = ids_of(SuggestionFilter {
        state: Some(SuggestionState::Pending),
        abusive: Some(true),
        ..Default::default()
    })
    .await;
    assert_eq!(abusive_pending, [ids[3], ids[0]]);
    let one = review::list(
        &db.pool,
        &SuggestionFilter {
            limit: 1,
            before_id: Some(ids[1]),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(one.items.len(), 1);
    assert_eq!(one.items[0].id, ids[0]);
    assert_eq!(one.next_before_id, None, "the last page has no cursor");
    let s = &one.items[0];
    assert_eq!(s.rule, rule("client:ak_0", "ak_even", 100));
    assert_eq!(s.reasons, serde_json::json!(["learned from 7 days"]));
    // Times serialise as RFC 3339 with a Z.
    let json = serde_json::to_value(s).unwrap();
    assert_eq!(json["created_at"], "2026-03-02T04:00:00Z");
    assert_eq!(json["state"], "pending");
    assert_eq!(json["decided_wall"], serde_json::Value::Null);
    assert!(matches!(
        review::get(&db.pool, 999).await.unwrap_err(),
        StoreError::NotFound(w) if w == "suggestion 999"
    ));
}

#[tokio::test]
async fn auto_approval_defaults_then_audited_changes() {
    let db = TestDb::new().await;
    let a = review::get_auto_approval(&db.pool).await.unwrap();
    assert_eq!(a.config, AutoApprovalConfig::default());
    assert_eq!((a.updated_at, a.updated_by), (None, None));

    let mut cfg = AutoApprovalConfig::default();
    cfg.loosen.enabled = true;
    cfg.loosen.max_increase = 0.1;
    let set = review::set_auto_approval(&db.pool, &cfg, "token:root")
        .await
        .unwrap();
    assert_eq!(set.config, cfg);
    assert_eq!(set.updated_by.as_deref(), Some("token:root"));
    assert_eq!(review::get_auto_approval(&db.pool).await.unwrap(), set);

    let mut cfg2 = cfg.clone();
    cfg2.enforce = true;
    review::set_auto_approval(&db.pool, &cfg2, "cli:ops")
        .await
        .unwrap();
    let mut bad = cfg2.clone();
    bad.loosen.min_reputation = 1.5;
    bad.tighten_abusive.shadow_hours = -1.0;
    let err = review::set_auto_approval(&db.pool, &bad, "token:root")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "invalid auto-approval configuration: loosen.min_reputation must be between 0 and 1, got 1.5; tighten_abusive.shadow_hours must be a number of at least 0, got -1"
    );
    assert_eq!(
        review::get_auto_approval(&db.pool).await.unwrap().config,
        cfg2
    );

    // Two audited changes, newest first, with before and after.
    let page = review::audit(
        &db.pool,
        &AuditFilter {
            action: Some("auto_approval.*".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(page.items.len(), 2);
    let newest = &page.items[0];
    assert_eq!(newest.actor, "cli:ops");
    assert_eq!(newest.action, "auto_approval.set");
    assert_eq!(newest.before.as_ref().unwrap()["enforce"], false);
    assert_eq!(newest.after.as_ref().unwrap()["enforce"], true);
    assert_eq!(
        page.items[1].before.as_ref().unwrap()["loosen"]["enabled"],
        false
    );
}

#[tokio::test]
async fn audit_lists_in_keyset_pages_with_filters() {
    let db = TestDb::new().await;
    base_policy(&db).await; // one policy.publish by token:root
    let mut cfg = AutoApprovalConfig::default();
    for i in 0..5 {
        cfg.loosen.max_increase = 0.1 + f64::from(i) / 100.0;
        let actor = if i % 2 == 0 { "token:a" } else { "token:b" };
        review::set_auto_approval(&db.pool, &cfg, actor)
            .await
            .unwrap();
    }
    let mut filter = AuditFilter {
        limit: 2,
        ..Default::default()
    };
    let mut all = Vec::new();
    loop {
        let page = review::audit(&db.pool, &filter).await.unwrap();
        all.extend(page.items.iter().map(|e| (e.id, e.actor.clone())));
        match page.next_before_id {
            Some(b) => filter.before_id = Some(b),
            None => break,
        }
    }
    assert_eq!(all.len(), 6);
    assert!(all.windows(2).all(|w| w[0].0 > w[1].0), "newest first");
    assert_eq!(all.last().unwrap().1, "token:root");

    let by_b = review::audit(
        &db.pool,
        &AuditFilter {
            actor: Some("token:b".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(by_b.items.len(), 2);
    let publishes = review::audit(
        &db.pool,
        &AuditFilter {
            action: Some("policy.publish".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(publishes.items.len(), 1);
    // `policy.*` is a prefix, `policy` alone an exact action (none).
    for (action, n) in [("policy.*", 1), ("policy", 0), ("auto_approval.*", 5)] {
        let page = review::audit(
            &db.pool,
            &AuditFilter {
                action: Some(action.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(page.items.len(), n, "{action}");
    }
    let future = review::audit(
        &db.pool,
        &AuditFilter {
            since: Some(chrono::Utc::now() + chrono::TimeDelta::hours(1)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(future.items.is_empty());
}

#[tokio::test]
async fn reputation_reads_the_score_and_its_latest_changes() {
    let db = TestDb::new().await;
    assert_eq!(
        review::reputation(&db.pool, "ak_1", 10).await.unwrap(),
        None
    );
    sqlx::query(
        "INSERT INTO client_reputation (client, score, updated_at, first_seen, good_minutes, state)
         VALUES ('ak_1', 0.4, '2026-03-02T05:00:00Z', '2026-03-01T00:00:00Z', 30, '{}')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    for (at, delta, after, kind) in [
        ("2026-03-02T03:00:00Z", 0.01, 0.81, "good_minute"),
        ("2026-03-02T04:00:00Z", -0.41, 0.4, "anomaly"),
        ("2026-03-02T03:30:00Z", -0.01, 0.8, "rejected"),
    ] {
        sqlx::query(
            "INSERT INTO reputation_events (client, at, delta, score_after, kind, reason)
             VALUES ('ak_1', $1::timestamptz, $2, $3, $4, $5)",
        )
        .bind(at)
        .bind(delta)
        .bind(after)
        .bind(kind)
        .bind(serde_json::json!({"kind": kind}))
        .execute(&db.pool)
        .await
        .unwrap();
    }
    let r = review::reputation(&db.pool, "ak_1", 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.score, 0.4);
    assert_eq!(r.good_minutes, 30);
    let kinds: Vec<&str> = r.history.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["anomaly", "rejected"], "newest first, at most 2");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["first_seen"], "2026-03-01T00:00:00Z");
    assert_eq!(json["history"][0]["reason"]["kind"], "anomaly");
}

#[tokio::test]
async fn a_batch_of_approvals_publishes_one_version_and_a_failing_one_stays_alone() {
    let db = TestDb::new().await;
    base_policy(&db).await;
    let a = insert(
        &db,
        Fixture {
            rule_id: "client:ak_a",
            client: "ak_a",
            rate: 30,
            ..Fixture::default()
        },
    )
    .await;
    let b = insert(
        &db,
        Fixture {
            rule_id: "client:ak_b",
            client: "ak_b",
            rate: 40,
            ..Fixture::default()
        },
    )
    .await;
    // Already rejected: its approval in the batch fails and must not sink the others.
    let c = insert(
        &db,
        Fixture {
            rule_id: "client:ak_c",
            client: "ak_c",
            rate: 50,
            state: "rejected",
            ..Fixture::default()
        },
    )
    .await;
    let before = version_count(&db).await;
    let mut approve_a = req(a, DecisionKind::Approve, Some("abusive"));
    approve_a.shadow = Some(true);
    let reqs = vec![
        approve_a,
        req(c, DecisionKind::Approve, None),
        req(b, DecisionKind::Approve, None),
    ];
    let batch = review::decide_batch(&db.pool, &reqs, "auto-approval:test", "batch of 3")
        .await
        .unwrap();

    assert_eq!(
        version_count(&db).await,
        before + 1,
        "one version for the batch"
    );
    let v = batch.policy_version.expect("a version was published");
    assert!(
        matches!(batch.decided[1], Err(StoreError::StateConflict(_))),
        "{:?}",
        batch.decided[1]
    );
    for (i, id) in [(0, a), (2, b)] {
        let d = batch.decided[i].as_ref().unwrap();
        assert_eq!(d.suggestion.id, id);
        assert_eq!(d.policy_version, Some(v));
        let stored = review::get(&db.pool, id).await.unwrap();
        assert_eq!(stored.state, SuggestionState::Approved);
        assert_eq!(stored.policy_version, Some(v));
    }
    assert_eq!(
        review::get(&db.pool, c).await.unwrap().state,
        SuggestionState::Rejected
    );
    let served = policy::current(&db.pool, policy::ALL_GROUPS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(served.info.version, v);
    let rules = served.policy.rules();
    let ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["client:ak_a", "client:ak_b", "per-key"]);
    assert!(rules[0].shadow, "the shadow override is kept");
    assert!(!rules[1].shadow);
    // Each decision is audited under its own actor; the version under the batch's.
    let (by, comment): (String, Option<String>) =
        sqlx::query_as("SELECT created_by, comment FROM policy_versions WHERE version = $1")
            .bind(v)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(by, "auto-approval:test");
    assert_eq!(comment.as_deref(), Some("batch of 3"));
    assert_eq!(
        audit_rows(&db)
            .await
            .iter()
            .filter(|(_, action, _)| action == "suggestion.approve")
            .count(),
        3,
        "two decisions and the version's publish"
    );

    // Nothing to approve: no version.
    let none = review::decide_batch(&db.pool, &[req(c, DecisionKind::Approve, None)], "x", "y")
        .await
        .unwrap();
    assert_eq!(none.policy_version, None);
    assert_eq!(version_count(&db).await, before + 1);
}
