//! One-shot commands: `ingest`, `rejects`, `token create`, `db status` and `db grant-readonly`.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;

use sluice_store::testing::TestDb;

use crate::support::{count, db_url, elastic_sample, run_ok, sluice, sluice_on, stderr, stdout};

/// Why line 8899 of the sample (its user agent lacks the closing quote) is rejected.
const LINE_8899_REASON: &str =
    "expected '\"' after $http_user_agent but the line ended (unterminated quoted field)";

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(stdout(out).trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {}", stdout(out)))
}

#[tokio::test]
async fn ingest_the_sample_list_its_reject_and_ingest_again_without_duplicates() {
    let db = TestDb::new().await;
    let url = db_url(&db);
    let data = tempfile::tempdir().unwrap();
    let sample = elastic_sample();

    let out = run_ok(
        sluice_on(&url, data.path())
            .args(["ingest", "--json", "--batch-lines", "3000"])
            .arg(&sample),
    );
    let r = json(&out);
    assert_eq!(
        (
            r["read"].as_u64(),
            r["accepted"].as_u64(),
            r["rejected"].as_u64()
        ),
        (Some(10_000), Some(9_999), Some(1)),
        "{r}"
    );
    assert_eq!(r["duplicate_batches"], 0);
    assert_eq!(r["files"][0]["batches"], 4);
    assert_eq!(r["files"][0]["format"], "nginx");
    assert_eq!(r["files"][0]["source"], "elastic-apache-combined.log");
    assert_eq!(
        r["files"][0]["detection"],
        "format combined (nginx/apache): every sampled line (200) matches combined (nginx/apache)"
    );
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM access_log").await,
        9_999
    );
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM ingest_batches").await,
        4
    );

    // `sluice rejects` names the file, the line and the reason, then the raw line.
    let out = run_ok(sluice_on(&url, data.path()).arg("rejects"));
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(format!("elastic-apache-combined.log:8899: {LINE_8899_REASON}").as_str())
    );
    let raw = lines.next().unwrap();
    assert!(raw.starts_with("    46.118.127.106 - - [20/May/2015:12:05:17 +0000] \"GET /scripts/grok-py-test/configlib.py"), "{raw}");
    assert_eq!(lines.next(), None);
    let out = run_ok(sluice_on(&url, data.path()).args(["rejects", "--json"]));
    let reject: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(reject["line_no"], 8899);
    assert_eq!(reject["reason"], LINE_8899_REASON);
    assert_eq!(reject["source"], "elastic-apache-combined.log");

    // The same file again: every batch is recognised, nothing is written twice.
    let out = run_ok(
        sluice_on(&url, data.path())
            .args(["ingest", "--json", "--batch-lines", "3000"])
            .arg(&sample),
    );
    let r = json(&out);
    assert_eq!(
        (
            r["read"].as_u64(),
            r["accepted"].as_u64(),
            r["rejected"].as_u64()
        ),
        (Some(10_000), Some(9_999), Some(1)),
        "{r}"
    );
    assert_eq!(
        (
            r["duplicate_batches"].as_u64(),
            r["duplicate_lines"].as_u64()
        ),
        (Some(4), Some(10_000))
    );
    // And the human summary says so.
    let out = run_ok(
        sluice_on(&url, data.path())
            .args(["ingest", "--batch-lines", "3000"])
            .arg(&sample),
    );
    let summary = stderr(&out);
    assert!(
        summary.contains("read 10000 lines: 9999 accepted, 1 rejected in "),
        "{summary}"
    );
    assert!(
        summary.contains("; 4 batches (10000 lines) were already ingested and skipped"),
        "{summary}"
    );
    assert!(
        summary.contains("list the rejected lines and their reasons with `sluice rejects`"),
        "{summary}"
    );
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM access_log").await,
        9_999
    );
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM ingest_batches").await,
        4
    );
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM ingest_rejects").await,
        1
    );
    assert_eq!(
        count(
            &db.pool,
            "SELECT sum(requests)::int8 FROM rollup_route_minute"
        )
        .await,
        9_999
    );
}

#[tokio::test]
async fn a_gzip_copy_ingests_the_same() {
    let db = TestDb::new().await;
    let url = db_url(&db);
    let data = tempfile::tempdir().unwrap();
    let gz = data.path().join("elastic-apache-combined.log.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(&std::fs::read(elastic_sample()).unwrap())
        .unwrap();
    enc.finish().unwrap();

    let out = run_ok(
        sluice_on(&url, data.path())
            .args(["ingest", "--json"])
            .arg(&gz),
    );
    let r = json(&out);
    assert_eq!(
        (
            r["read"].as_u64(),
            r["accepted"].as_u64(),
            r["rejected"].as_u64()
        ),
        (Some(10_000), Some(9_999), Some(1)),
        "{r}"
    );
    assert_eq!(r["files"][0]["source"], "elastic-apache-combined.log");
    assert_eq!(
        count(&db.pool, "SELECT count(*) FROM access_log").await,
        9_999
    );
    assert_eq!(
        count(&db.pool, "SELECT line_no FROM ingest_rejects").await,
        8899
    );

    // From standard input, too.
    let out = run_ok(
        sluice_on(&url, data.path())
            .args(["ingest", "--json", "--source", "piped", "-"])
            .stdin(std::fs::File::open(&gz).unwrap()),
    );
    let r = json(&out);
    assert_eq!(
        (r["read"].as_u64(), r["accepted"].as_u64()),
        (Some(10_000), Some(9_999)),
        "{r}"
    );
    assert_eq!(
        count(
            &db.pool,
            "SELECT count(*) FROM access_log WHERE source = 'piped'"
        )
        .await,
        9_999
    );
}

#[tokio::test]
async fn an_unknown_format_fails_before_touching_the_database() {
    let data = tempfile::tempdir().unwrap();
    // The database does not exist: the flag is checked first.
    let out = sluice_on("postgres://nobody@127.0.0.1:1/none", data.path())
        .args(["ingest", "--format", "bogus"])
        .arg(elastic_sample())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "");
    assert_eq!(
        stderr(&out),
        "error: unknown log format \"bogus\" (expected one of nginx, apache, envoy, envoy-json, kong, ndjson, auto)\n"
    );
}

#[tokio::test]
async fn token_create_prints_the_secret_alone_on_the_last_line() {
    let db = TestDb::new().await;
    let url = db_url(&db);
    let data = tempfile::tempdir().unwrap();
    let out = run_ok(
        sluice_on(&url, data.path()).args(["token", "create", "--role", "gateway", "--name", "x"]),
    );
    let text = stdout(&out);
    let secret = text.lines().last().expect("a line on stdout");
    assert_eq!(secret.trim(), secret);
    assert!(!secret.contains(' '), "{secret:?}");
    let t = sluice_store::tokens::authenticate(&db.pool, secret)
        .await
        .unwrap()
        .expect("the printed secret authenticates");
    assert_eq!((t.name.as_str(), t.role), ("x", sluice_core::Role::Gateway));
    assert!(
        stderr(&out).contains("created gateway token \"x\""),
        "{}",
        stderr(&out)
    );

    // A second token of the same name is refused.
    let out = sluice_on(&url, data.path())
        .args(["token", "create", "--role", "admin", "--name", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out), "error: a token named \"x\" already exists\n");
}

/// Without `DATABASE_URL` Sluice runs a private cluster in `--data-dir`, and stops it on exit.
#[tokio::test]
async fn db_status_runs_the_embedded_cluster() {
    let data = tempfile::Builder::new()
        .prefix("sluice-bb-")
        .tempdir_in("/tmp")
        .unwrap();
    // As root, postgres runs as the `postgres` user, which must be able to reach the directory.
    std::fs::set_permissions(data.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run_ok(
        sluice()
            .arg("--data-dir")
            .arg(data.path())
            .args(["db", "migrate"]),
    );
    assert!(
        stdout(&out).starts_with("database is up to date ("),
        "{}",
        stdout(&out)
    );
    let out = run_ok(
        sluice()
            .arg("--data-dir")
            .arg(data.path())
            .args(["db", "status"]),
    );
    let text = stdout(&out);
    let pgdata = data.path().join("postgres/pgdata").canonicalize().unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(format!("embedded postgres in {}", pgdata.display()).as_str())
    );
    assert!(
        lines.next().unwrap().starts_with("VERSION  APPLIED AT"),
        "{text}"
    );
    let rows: Vec<&str> = lines.collect();
    assert!(rows.len() >= 2, "{text}");
    assert!(
        rows[0].starts_with("1 ") && rows[0].contains(" applied ") && rows[0].ends_with(" ingest"),
        "{text}"
    );
    assert!(
        rows[1].starts_with("2 ") && rows[1].contains(" applied ") && rows[1].ends_with(" auth"),
        "{text}"
    );
    assert!(pgdata.join("PG_VERSION").is_file());
    // The last process out stops the server.
    assert!(
        !pgdata.join("postmaster.pid").exists(),
        "the embedded server is still running"
    );
}

/// `sluice db grant-readonly` creates the role once, prints a generated password alone on the
/// last line, and a second run keeps the role and prints no password.
#[tokio::test]
async fn db_grant_readonly_creates_a_role_once_and_prints_its_password() {
    use sqlx::{ConnectOptions, Connection};
    let db = TestDb::new().await;
    let url = db_url(&db);
    let data = tempfile::tempdir().unwrap();
    let role = db.readonly_role_name();
    let out = run_ok(sluice_on(&url, data.path()).args(["db", "grant-readonly", "--role", &role]));
    let text = stdout(&out);
    let mut lines = text.lines();
    let summary = lines.next().unwrap();
    assert!(
        summary.starts_with(&format!("created role {role} may now read "))
            && summary.ends_with("api_tokens stays hidden"),
        "{text}"
    );
    let password = lines.next().expect("the password on the last line");
    assert_eq!(lines.next(), None);
    assert_eq!(password.len(), 32, "{password:?}");
    assert!(stderr(&out).contains("shown once"), "{}", stderr(&out));

    let mut ro = db
        .options
        .clone()
        .username(&role)
        .password(password)
        .connect()
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM policy_versions")
        .fetch_one(&mut ro)
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert!(sqlx::query("SELECT 1 FROM api_tokens")
        .execute(&mut ro)
        .await
        .is_err());
    ro.close().await.unwrap();

    let out = run_ok(sluice_on(&url, data.path()).args([
        "db",
        "grant-readonly",
        "--role",
        &role,
        "--json",
    ]));
    let v = json(&out);
    assert_eq!(v["created"], false);
    assert_eq!(v["password_set"], false);
    assert!(v["tables"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "anomalies"));
    assert!(!v["tables"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "api_tokens"));
}
