//! Policy versions on a real Postgres (a fresh database per test): atomic numbered publishes,
//! immutability, unchanged content, rollback, diff, staged rollout and gateway reports, and the
//! audit rows every change writes.

use sluice_core::policy::Policy;
use sluice_store::policy::{self, GatewayReport, Publish, RolloutState};
use sluice_store::testing::TestDb;
use sluice_store::StoreError;

fn policy(rate: u64, extra: &str) -> Policy {
    Policy::parse(
        format!(
            r#"{{"format":"sluice.policy/v1","rules":[
            {{"id":"per-key","selector":{{"api_key":"*"}},"limit":{{"algorithm":"token_bucket","rate":{rate},"window_seconds":60,"burst":10}}}}{extra}
        ]}}"#
        )
        .as_bytes(),
    )
    .unwrap()
}

fn admin() -> Publish<'static> {
    Publish {
        actor: "token:root",
        comment: Some("test"),
        group: None,
    }
}

async fn audit_actions(db: &TestDb) -> Vec<(String, Option<String>)> {
    sqlx::query_as("SELECT action, target FROM audit_log WHERE action LIKE 'policy.%' ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn publish_numbers_versions_and_refuses_unchanged_content() {
    let db = TestDb::new().await;
    assert!(policy::current(&db.pool, "default")
        .await
        .unwrap()
        .is_none());
    let v1 = policy::publish(&db.pool, &policy(100, ""), &admin())
        .await
        .unwrap();
    assert_eq!(v1.version, 1);
    assert_eq!(v1.rule_count, 1);
    assert_eq!(v1.created_by, "token:root");
    let err = policy::publish(&db.pool, &policy(100, ""), &admin())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::StateConflict(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "policy unchanged: version 1 already has this content ({})",
            v1.content_hash
        )
    );
    let v2 = policy::publish(&db.pool, &policy(200, ""), &admin())
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    let cur = policy::current(&db.pool, "default").await.unwrap().unwrap();
    assert_eq!(cur.info, v2);
    assert_eq!(cur.policy, policy(200, ""));
    let listed = policy::list(&db.pool, 10, None).await.unwrap();
    assert_eq!(listed.iter().map(|v| v.version).collect::<Vec<_>>(), [2, 1]);
    assert_eq!(
        policy::list(&db.pool, 10, Some(2)).await.unwrap(),
        std::slice::from_ref(&v1)
    );
    // The refused publish left no trace; the two real ones are audited.
    assert_eq!(
        audit_actions(&db).await,
        [
            ("policy.publish".to_owned(), Some("policy:1".to_owned())),
            ("policy.publish".to_owned(), Some("policy:2".to_owned())),
        ]
    );
    assert!(matches!(
        policy::get(&db.pool, 9).await.unwrap_err(),
        StoreError::NotFound(w) if w == "policy version 9"
    ));
}

#[tokio::test]
async fn versions_are_immutable() {
    let db = TestDb::new().await;
    policy::publish(&db.pool, &policy(100, ""), &admin())
        .await
        .unwrap();
    for sql in [
        "UPDATE policy_versions SET comment = 'x'",
        "DELETE FROM policy_versions",
        "TRUNCATE policy_versions CASCADE",
    ] {
        let err = sqlx::query(sql).execute(&db.pool).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("policy_versions is immutable: publish a new version instead"),
            "{sql}: {err}"
        );
    }
}

#[tokio::test]
async fn concurrent_publishes_get_distinct_consecutive_versions() {
    let db = TestDb::new().await;
    let mut tasks = Vec::new();
    for i in 0..16u64 {
        let pool = db.pool.clone();
        tasks.push(tokio::spawn(async move {
            policy::publish(&pool, &policy(1000 + i, ""), &admin())
                .await
                .unwrap()
                .version
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap());
    }
    versions.sort();
    assert_eq!(versions, (1..=16).collect::<Vec<i64>>());
    let state = policy::rollout(&db.pool).await.unwrap();
    assert_eq!(state.all, Some(16));
    assert_eq!(audit_actions(&db).await.len(), 16);
}

#[tokio::test]
async fn rollback_publishes_a_copy_and_diff_lists_rule_changes() {
    let db = TestDb::new().await;
    let extra = r#",{"id":"login","selector":{"route":"/login"},"limit":{"algorithm":"fixed_window","rate":5,"window_seconds":60}}"#;
    policy::publish(&db.pool, &policy(100, ""), &admin())
        .await
        .unwrap();
    policy::publish(&db.pool, &policy(50, extra), &admin())
        .await
        .unwrap();
    let d = policy::diff(&db.pool, 1, 2).await.unwrap();
    assert_eq!(d.added.len(), 1);
    assert_eq!(d.added[0].id, "login");
    assert_eq!(d.changed.len(), 1);
    assert_eq!(d.changed[0].fields, ["limit", "ratelimit_policy"]);
    assert!(d.removed.is_empty());
    let back = policy::diff(&db.pool, 2, 1).await.unwrap();
    assert_eq!(back.removed[0].id, "login");

    let v3 = policy::rollback(&db.pool, 1, "token:root", Some("too strict"))
        .await
        .unwrap();
    assert_eq!((v3.version, v3.restored_from), (3, Some(1)));
    let one = policy::get(&db.pool, 1).await.unwrap();
    let three = policy::current(&db.pool, "default").await.unwrap().unwrap();
    assert_eq!(three.policy, one.policy);
    assert_eq!(three.info.content_hash, one.info.content_hash);
    assert!(policy::diff(&db.pool, 1, 3).await.unwrap().is_empty());
    // Rolling back to what is already newest is refused as unchanged.
    let err = policy::rollback(&db.pool, 1, "token:root", None)
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with("policy unchanged: version 3"),
        "{err}"
    );
    assert!(matches!(
        policy::rollback(&db.pool, 42, "token:root", None)
            .await
            .unwrap_err(),
        StoreError::NotFound(_)
    ));
    let (reason, before, after): (Option<String>, serde_json::Value, serde_json::Value) =
        sqlx::query_as(
            "SELECT reason, before, after FROM audit_log WHERE action = 'policy.rollback'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(reason.as_deref(), Some("too strict"));
    assert_eq!(before["all"], 2);
    assert_eq!(after["version"], 3);
    assert_eq!(after["restored_from"], 1);
}

#[tokio::test]
async fn canary_group_gets_a_version_first_then_everyone_after_promotion() {
    let db = TestDb::new().await;
    policy::publish(&db.pool, &policy(100, ""), &admin())
        .await
        .unwrap();
    let canary = Publish {
        group: Some("canary"),
        ..admin()
    };
    let v2 = policy::publish(&db.pool, &policy(80, ""), &canary)
        .await
        .unwrap();
    assert_eq!(v2.published_to.as_deref(), Some("canary"));
    let state = policy::rollout(&db.pool).await.unwrap();
    assert_eq!(
        state,
        RolloutState {
            all: Some(1),
            pinned: vec![("canary".into(), 2)]
        }
    );
    assert_eq!(state.version_for("canary"), Some(2));
    assert_eq!(state.version_for("default"), Some(1));
    assert_eq!(
        policy::current(&db.pool, "default")
            .await
            .unwrap()
            .unwrap()
            .info
            .version,
        1
    );
    // Promotion must move forward.
    let err = policy::promote(&db.pool, 1, "token:root", None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::StateConflict(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "version 1 is not newer than version 1, which every gateway already gets; use rollback to restore an older version"
    );
    let after = policy::promote(&db.pool, 2, "token:root", Some("canary healthy"))
        .await
        .unwrap();
    assert_eq!(
        after,
        RolloutState {
            all: Some(2),
            pinned: vec![]
        }
    );
    // A publish to everyone also overrides an older pin.
    policy::publish(&db.pool, &policy(70, ""), &canary)
        .await
        .unwrap();
    policy::publish(&db.pool, &policy(60, ""), &admin())
        .await
        .unwrap();
    assert_eq!(
        policy::rollout(&db.pool).await.unwrap(),
        RolloutState {
            all: Some(4),
            pinned: vec![]
        }
    );
    let err = policy::publish(
        &db.pool,
        &policy(61, ""),
        &Publish {
            group: Some("Canary!"),
            ..admin()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid gateway group \"Canary!\": use 1 to 64 characters of a-z 0-9 _ -"
    );
    let actions: Vec<String> = audit_actions(&db).await.into_iter().map(|a| a.0).collect();
    assert_eq!(
        actions,
        [
            "policy.publish",
            "policy.publish",
            "policy.promote",
            "policy.publish",
            "policy.publish"
        ]
    );
}

#[tokio::test]
async fn gateways_report_their_applied_version_and_errors() {
    let db = TestDb::new().await;
    policy::publish(&db.pool, &policy(100, ""), &admin())
        .await
        .unwrap();
    let g = policy::report_gateway(
        &db.pool,
        "edge-1",
        &GatewayReport {
            applied_version: Some(1),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (
            g.group.as_str(),
            g.applied_version,
            g.desired_version,
            g.state
        ),
        ("default", Some(1), Some(1), "current")
    );
    policy::publish(&db.pool, &policy(90, ""), &admin())
        .await
        .unwrap();
    let g = policy::report_gateway(
        &db.pool,
        "edge-1",
        &GatewayReport {
            error: Some("rule per-key: unsupported algorithm"),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (g.applied_version, g.desired_version, g.state),
        (Some(1), Some(2), "error")
    );
    assert_eq!(
        g.last_error.as_deref(),
        Some("rule per-key: unsupported algorithm")
    );
    policy::report_gateway(
        &db.pool,
        "edge-9",
        &GatewayReport {
            group: Some("canary"),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let all = policy::list_gateways(&db.pool).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|g| (g.id.as_str(), g.group.as_str(), g.state))
            .collect::<Vec<_>>(),
        [
            ("edge-9", "canary", "unknown"),
            ("edge-1", "default", "error")
        ]
    );
    let err = policy::report_gateway(
        &db.pool,
        "edge-1",
        &GatewayReport {
            applied_version: Some(7),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "applied_version 7 is not a published policy version"
    );
    let err = policy::report_gateway(&db.pool, "bad id", &GatewayReport::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid gateway id \"bad id\": use 1 to 128 characters of A-Z a-z 0-9 . _ : -"
    );
}

#[tokio::test]
async fn an_edit_publishes_inside_the_callers_transaction() {
    let db = TestDb::new().await;
    let edit = policy::Edit {
        actor: "admin:alice",
        action: "suggestion.approve",
        comment: Some("limit the scraper"),
    };
    let extra = policy(7, "").rules()[0].clone();

    // Before any publish the edit starts from an empty policy; nothing is visible before commit,
    // and a rolled-back transaction leaves no version and no audit row behind.
    let mut tx = db.pool.begin().await.unwrap();
    let info = policy::publish_edit_in(&mut tx, &edit, |rules| rules.push(extra.clone()))
        .await
        .unwrap()
        .expect("a change publishes");
    assert_eq!(info.version, 1);
    assert!(policy::current(&db.pool, "default")
        .await
        .unwrap()
        .is_none());
    tx.rollback().await.unwrap();
    assert!(policy::list(&db.pool, 10, None).await.unwrap().is_empty());
    assert!(audit_actions(&db).await.is_empty());

    let base = policy::publish(&db.pool, &policy(100, ""), &admin())
        .await
        .unwrap();
    let mut tx = db.pool.begin().await.unwrap();
    let unchanged = policy::publish_edit_in(&mut tx, &edit, |_| {})
        .await
        .unwrap();
    assert!(unchanged.is_none());
    let info = policy::publish_edit_in(&mut tx, &edit, |rules| {
        rules[0].limit = extra.limit;
    })
    .await
    .unwrap()
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(info.version, base.version + 1);
    let served = policy::current(&db.pool, "default").await.unwrap().unwrap();
    assert_eq!(served.info.version, info.version);
    assert_eq!(served.policy.rules()[0].limit, extra.limit);
    let audit: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT action, actor, reason FROM audit_log WHERE target = 'policy:2'")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        audit,
        vec![(
            "suggestion.approve".into(),
            "admin:alice".into(),
            Some("limit the scraper".into())
        )]
    );
}
