//! `sluice replay`: simulated logs with ground truth in, a JSON report out.

use sluice_store::testing::TestDb;

use crate::support::{count, db_url, run_ok, sluice, sluice_on, stderr};

#[tokio::test]
async fn replay_reports_lines_and_explained_anomalies() {
    let db = TestDb::new().await;
    let url = db_url(&db);
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("sim.ndjson");
    run_ok(
        sluice()
            .args([
                "sim",
                "--duration",
                "90m",
                "--lines",
                "0",
                "--clients",
                "30",
                "--browsers",
                "10",
                "--batch-jobs",
                "1",
                "--attacks",
                "probing",
                "--no-flash-crowd",
                "--format",
                "ndjson",
                "--output",
            ])
            .arg(&log),
    );
    let lines = std::fs::read_to_string(&log).unwrap().lines().count() as u64;
    let labels: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.path().join("sim.labels.json")).unwrap())
            .unwrap();
    let prober = labels["attacks"][0]["identities"][0]["value"]
        .as_str()
        .unwrap()
        .to_owned();

    let report_path = data.path().join("report.json");
    let out = run_ok(
        sluice_on(&url, data.path())
            .args(["replay", "--report"])
            .arg(&report_path)
            .arg(&log),
    );
    let err = stderr(&out);
    assert!(err.contains("replayed "), "human summary on stderr: {err}");
    assert!(err.contains("report: "), "{err}");

    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(r["lines"]["read"].as_u64(), Some(lines));
    assert_eq!(r["lines"]["accepted"].as_u64(), Some(lines));
    assert_eq!(r["lines"]["rejected"].as_u64(), Some(0));
    assert_eq!(r["detection"]["minutes"].as_u64(), Some(90));
    let anomalies = r["anomalies"].as_array().unwrap();
    let found = anomalies
        .iter()
        .find(|a| a["client"] == prober.as_str())
        .unwrap_or_else(|| panic!("the prober {prober} is reported: {anomalies:#?}"));
    assert_eq!(found["client_kind"], "ip");
    assert_eq!(found["kind"], "probing");
    for a in anomalies {
        let score = a["score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score), "{a}");
        let t = a["first_detected"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(t).is_ok(),
            "RFC 3339 log time: {t}"
        );
        let reasons = a["reasons"].as_array().unwrap();
        assert!(!reasons.is_empty(), "every anomaly explains itself: {a}");
        for reason in reasons {
            assert!(reason["feature"].is_string());
            assert!(reason["observed"].is_number() && reason["expected"].is_number());
        }
        assert!(a["id"].is_i64(), "the database id is reported: {a}");
    }
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM anomalies").await,
        anomalies.len() as i64
    );
    let models = r["models"].as_array().unwrap();
    assert!(!models.is_empty(), "population models were refitted: {r}");
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM model_registry").await,
        models.len() as i64
    );
    // Client profiles over the replayed span: the report counts what the table holds, and every
    // legitimate API client has one.
    assert!(err.contains(" client profiles; "), "{err}");
    let profiles = r["profiles"]["profiles"]
        .as_i64()
        .expect("a profiles section");
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM client_profiles").await,
        profiles
    );
    let legit_keys = labels["identities"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["label"] == "legit" && i["kind"] == "api_key")
        .count() as i64;
    assert!(legit_keys >= 30, "{legit_keys}");
    assert!(profiles >= legit_keys, "{}", r["profiles"]);
    // The history is the replayed span: from the first minute up to the detection cursor.
    let start = chrono::DateTime::parse_from_rfc3339(labels["start"].as_str().unwrap()).unwrap();
    let end = (start + chrono::TimeDelta::minutes(90)).to_utc();
    assert_eq!(r["profiles"]["history_from"], labels["start"]);
    assert_eq!(
        r["profiles"]["until"].as_str(),
        Some(end.format("%Y-%m-%dT%H:%M:%SZ").to_string().as_str())
    );

    // `sluice models` lists the registry, newest first, each artefact on disk.
    let out = run_ok(sluice_on(&url, data.path()).args(["models", "--json"]));
    let listed: Vec<serde_json::Value> = crate::support::stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), models.len());
    assert_eq!(listed[0]["version"], models.last().unwrap()["version"]);
    for m in &listed {
        let path = m["artefact"].as_str().unwrap();
        assert!(std::path::Path::new(path).is_file(), "artefact {path}");
    }

    // Tuning ran through the end of the logs: every suggestion is reported with its rule id,
    // limit, reason, confidence and backtest, and stored as pending.
    assert!(err.contains(" limit suggestions; "), "{err}");
    assert_eq!(r["tuning"]["through"], r["profiles"]["until"]);
    let suggestions = r["suggestions"].as_array().expect("a suggestions array");
    assert!(!suggestions.is_empty(), "{}", r["tuning"]);
    assert_eq!(
        count(
            &db.pool,
            "SELECT count(*) FROM limit_suggestions WHERE state = 'pending'"
        )
        .await,
        suggestions.len() as i64
    );
    for s in suggestions {
        let client = s["client"].as_str().unwrap();
        assert!(s["rule_id"].as_str().unwrap().starts_with("client:"), "{s}");
        assert!(s["limit"]["rate"].as_u64().unwrap() >= 1, "{s}");
        assert!(!s["reason"].as_str().unwrap().is_empty(), "{s}");
        let c = s["confidence"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&c), "{s}");
        let b = &s["backtest"];
        assert!(
            b["rejected"].as_u64().unwrap() <= b["requests"].as_u64().unwrap(),
            "{s}"
        );
        assert_eq!(
            b["rejected"].as_u64().unwrap(),
            b["normal_rejected"].as_u64().unwrap() + b["anomalous_rejected"].as_u64().unwrap()
        );
        assert!(!client.is_empty());
    }
    // The proposed policy: every suggestion's rule, valid, not published without --publish.
    let policy = &r["policy"];
    assert_eq!(policy["format"], "sluice.policy/v1");
    let rules = policy["rules"].as_array().unwrap();
    assert_eq!(rules.len(), suggestions.len());
    let parsed =
        sluice_core::policy::Policy::parse(serde_json::to_string(policy).unwrap().as_bytes())
            .expect("the proposed policy validates");
    assert_eq!(policy["content_hash"], parsed.content_hash());
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM policy_versions").await,
        0
    );

    // With --publish the same policy becomes version 1 (the files were ingested already, so
    // nothing new is suggested).
    let out = run_ok(
        sluice_on(&url, data.path())
            .args(["replay", "--publish", "--report"])
            .arg(&report_path)
            .arg(&log),
    );
    assert!(
        stderr(&out).contains("(published as policy version 1)"),
        "{}",
        stderr(&out)
    );
    let again: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    assert_eq!(again["tuning"]["published_version"], 1);
    assert_eq!(again["policy"]["content_hash"], policy["content_hash"]);
    let served: String =
        sqlx::query_scalar("SELECT content_hash FROM policy_versions WHERE version = 1")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(Some(served.as_str()), policy["content_hash"].as_str());
}

#[test]
fn replay_says_when_the_report_cannot_be_written() {
    let data = tempfile::tempdir().unwrap();
    let out = sluice()
        .args(["--data-dir"])
        .arg(data.path())
        .args([
            "replay",
            "--report",
            "/nonexistent-dir/r.json",
            "whatever.log",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cannot write the report to /nonexistent-dir/r.json: /nonexistent-dir is not a directory"),
        "{err}"
    );
    assert!(
        !data.path().join("postgres").exists(),
        "no database was started for a command that cannot succeed"
    );
}
