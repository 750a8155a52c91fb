//! `sluice suggestions`, `sluice auto-approval` and `sluice audit` against a real database:
//! suggestions inserted with SQL, decided through the binary, checked through its output, its
//! exit status and SQL.

use std::path::Path;
use std::process::Command;

use sluice_store::testing::TestDb;

use crate::support::{count, db_url, run_ok, sluice_on, stderr, stdout};

async fn suggest(db: &TestDb, client: &str, rate: u64) -> i64 {
    let rule_id = format!("client:{client}");
    sqlx::query_scalar(
        "INSERT INTO limit_suggestions
             (rule_id, client, rule, diff, confidence, evidence, created_at, expires_at)
         VALUES ($1, $2, $3, $4, 0.8, '{}', '2026-03-02T04:00:00Z', '2026-03-03T04:00:00Z')
         RETURNING id",
    )
    .bind(&rule_id)
    .bind(client)
    .bind(serde_json::json!({
        "id": rule_id,
        "selector": {"api_key": client},
        "limit": {"algorithm": "token_bucket", "rate": rate, "window_seconds": 60, "burst": 10},
    }))
    .bind(serde_json::json!({"change": "new", "summary": format!("new: token_bucket {rate}/60s burst 10")}))
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

fn cli(url: &str, data: &Path) -> Command {
    let mut cmd = sluice_on(url, data);
    cmd.env("USER", "tester");
    cmd
}

#[tokio::test]
async fn suggestions_are_decided_from_the_command_line() {
    let db = TestDb::new().await;
    let url = db_url(&db);
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let a = suggest(&db, "ak_a", 100).await;
    let b = suggest(&db, "ak_b", 50).await;
    let c = suggest(&db, "ak_c", 70).await;

    let out = run_ok(cli(&url, d).args(["suggestions", "list", "--state", "pending"]));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("ID "), "{text}");
    assert!(lines[1].starts_with(&format!("{c} ")), "{text}");
    assert!(
        lines[3].contains("client:ak_a") && lines[3].contains("new: token_bucket 100/60s burst 10"),
        "{text}"
    );
    let out = run_ok(cli(&url, d).args(["suggestions", "list", "--client", "ak_b", "--json"]));
    let page: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["id"], b);
    let out = run_ok(cli(&url, d).args(["suggestions", "show", &a.to_string()]));
    let shown: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(shown["rule"]["limit"]["rate"], 100);

    // Approve in shadow mode: policy version 1 holds the rule.
    let out = run_ok(cli(&url, d).args([
        "suggestions",
        "approve",
        &a.to_string(),
        "--shadow",
        "--comment",
        "shadow first",
    ]));
    assert_eq!(
        stdout(&out),
        format!(
            "suggestion {a} approved: published policy version 1 with rule client:ak_a (token_bucket 100/60s burst 10, shadow)\n"
        )
    );
    let out = run_ok(cli(&url, d).args(["policy", "show"]));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["rules"][0]["id"], "client:ak_a");
    assert_eq!(doc["rules"][0]["shadow"], true);

    // Reject needs --comment (a usage error, status 2); a second rejection fails with status 1.
    let out = cli(&url, d)
        .args(["suggestions", "reject", &b.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--comment <COMMENT>"),
        "{}",
        stderr(&out)
    );
    let out = run_ok(cli(&url, d).args([
        "suggestions",
        "reject",
        &b.to_string(),
        "--comment",
        "partner",
    ]));
    assert_eq!(stdout(&out), format!("suggestion {b} rejected\n"));
    let out = cli(&url, d)
        .args([
            "suggestions",
            "reject",
            &b.to_string(),
            "--comment",
            "again",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "error: failed to reject suggestion {b}: cannot reject a suggestion that is rejected\n"
        )
    );

    // Modify with a limit (a bad one is refused before the database is opened).
    let out = cli(&url, d)
        .args([
            "suggestions",
            "modify",
            &c.to_string(),
            "--comment",
            "x",
            "--limit",
            r#"{"algorithm":"token_bucket","rate":60}"#,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "error: invalid --limit: missing field `window_seconds`\n"
    );
    let out = run_ok(cli(&url, d).args([
        "suggestions",
        "modify",
        &c.to_string(),
        "--comment",
        "more headroom",
        "--limit",
        r#"{"algorithm":"token_bucket","rate":90,"window_seconds":60,"burst":20}"#,
        "--until",
        "2026-03-02T18:00:00Z",
    ]));
    assert_eq!(
        stdout(&out),
        format!(
            "suggestion {c} modified_approved: published policy version 2 with rule client:ak_c (token_bucket 90/60s burst 20)\n"
        )
    );
    assert_eq!(
        count(
            &db.pool,
            "SELECT count(*) FROM limit_suggestions
             WHERE state = 'modified_approved' AND temporary_until = '2026-03-02T18:00:00Z'
               AND decided_by = 'cli:tester' AND policy_version = 2"
        )
        .await,
        1
    );

    // Auto-approval: defaults, then a file.
    let out = run_ok(cli(&url, d).args(["auto-approval", "show"]));
    let cfg: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(cfg["config"]["enforce"], false);
    assert_eq!(cfg["updated_by"], serde_json::Value::Null);
    let file = d.join("auto.json");
    std::fs::write(&file, r#"{"loosen": {"enabled": true}}"#).unwrap();
    let out = run_ok(cli(&url, d).args(["auto-approval", "set"]).arg(&file));
    let cfg: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(cfg["config"]["loosen"]["enabled"], true);
    assert_eq!(cfg["updated_by"], "cli:tester");
    std::fs::write(&file, r#"{"loosen": {"enabled": "yes"}}"#).unwrap();
    let out = cli(&url, d)
        .args(["auto-approval", "set"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with(
            "error: invalid auto-approval configuration: loosen.enabled: invalid type: string \"yes\", expected a boolean"
        ),
        "{}",
        stderr(&out)
    );

    // The audit log: every decision by cli:tester, newest first.
    let out = run_ok(cli(&url, d).args([
        "audit",
        "--actor",
        "cli:tester",
        "--action",
        "suggestion.*",
        "--json",
    ]));
    let actions: Vec<(String, String)> = stdout(&out)
        .lines()
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                e["action"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("suggestion.modify".to_owned(), format!("suggestion:{c}")),
            ("suggestion.modify".to_owned(), "policy:2".to_owned()),
            ("suggestion.reject".to_owned(), format!("suggestion:{b}")),
            ("suggestion.approve".to_owned(), format!("suggestion:{a}")),
            ("suggestion.approve".to_owned(), "policy:1".to_owned()),
        ]
    );
    let out = run_ok(cli(&url, d).args(["audit", "--limit", "1"]));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains("auto_approval.set"), "{text}");
}
