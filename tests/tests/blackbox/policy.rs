//! `sluice policy`: the offline checker's exact messages and exit status, and publish / versions
//! / diff / rollback / show against a real database.

use std::path::PathBuf;

use sluice_store::testing::TestDb;

use crate::support::{count, db_url, run_ok, sluice, sluice_on, stderr, stdout};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crates/sluice-core/tests/fixtures/policy")
}

#[test]
fn check_is_offline_and_exits_2_with_every_problem() {
    let dir = fixtures();
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        // No database flags and an unusable data dir: check must not open a database.
        let out = sluice()
            .args(["--data-dir", "/nonexistent/sluice", "policy", "check"])
            .arg(&path)
            .env_remove("DATABASE_URL")
            .output()
            .unwrap();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name.starts_with("valid") {
            assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
            assert!(
                stdout(&out).contains(": ok: ") && stdout(&out).contains(" rules, sha256:"),
                "{}",
                stdout(&out)
            );
        } else {
            let expect = std::fs::read_to_string(path.with_extension("err")).unwrap();
            assert_eq!(out.status.code(), Some(2), "{name}");
            assert_eq!(
                stderr(&out),
                format!("{}: {}", path.display(), expect),
                "{name}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 8);
    let out = sluice()
        .args(["policy", "check", "/nonexistent.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("failed to read /nonexistent.json"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn publish_show_diff_and_rollback() {
    let db = TestDb::new().await;
    let url = db_url(&db);
    let data = tempfile::tempdir().unwrap();
    let example = fixtures().join("valid-example.json");
    let out = run_ok(
        sluice_on(&url, data.path())
            .args(["policy", "publish", "--comment", "first"])
            .arg(&example),
    );
    assert!(
        stdout(&out).starts_with("published version 1 (5 rules, sha256:"),
        "{}",
        stdout(&out)
    );
    // The same content again is refused, and an invalid file is refused before publishing.
    let out = sluice_on(&url, data.path())
        .args(["policy", "publish"])
        .arg(&example)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("policy unchanged: version 1 already has this content"),
        "{}",
        stderr(&out)
    );
    let out = sluice_on(&url, data.path())
        .args(["policy", "publish"])
        .arg(fixtures().join("invalid-zero-rate.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    let empty = fixtures().join("valid-empty.json");
    run_ok(
        sluice_on(&url, data.path())
            .args(["policy", "publish"])
            .arg(&empty),
    );
    let out = run_ok(sluice_on(&url, data.path()).args(["policy", "diff", "1", "2"]));
    let d: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(d["removed"].as_array().unwrap().len(), 5);
    let out =
        run_ok(sluice_on(&url, data.path()).args(["policy", "rollback", "1", "--comment", "oops"]));
    assert!(
        stdout(&out).starts_with("published version 3 restoring version 1"),
        "{}",
        stdout(&out)
    );
    let out = run_ok(sluice_on(&url, data.path()).args(["policy", "show"]));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["version"], 3);
    assert_eq!(doc["rules"].as_array().unwrap().len(), 5);
    let out = run_ok(sluice_on(&url, data.path()).args(["policy", "versions"]));
    let text = stdout(&out);
    assert!(text.lines().nth(1).unwrap().starts_with("3 "), "{text}");
    assert!(text.contains("(restores 1) oops"), "{text}");
    assert_eq!(
        count(
            &db.pool,
            "SELECT count(*) FROM audit_log WHERE action LIKE 'policy.%' AND actor LIKE 'cli:%'"
        )
        .await,
        3
    );
}
