//! `sluice policy`: the offline checker's exact messages and exit status, and publish / versions
//! / diff / rollback / show against a real database.

use std::path::PathBuf;

use sluice_store::testing::TestDb;

use crate::support::{count, db_url, run_ok, sluice, sluice_on, stderr, stdout};

fn fixtures() -> PathBuf {
    crate::support::repo_root().join("crates/sluice-core/tests/fixtures/policy")
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

/// One HTTP/1.1 exchange with extra headers (`Connection: close`): status, ETag, body.
fn http(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(90)))
        .unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .map(str::to_owned);
    (status, etag, body.to_owned())
}

/// A gateway long-polls the real server; `sluice policy publish` (another process) publishes;
/// the poll returns the new version (via NOTIFY), and SIGTERM ends a waiting poll at once.
#[tokio::test]
async fn a_cli_publish_reaches_a_long_polling_gateway_of_the_running_server() {
    use std::io::BufRead;
    use std::time::{Duration, Instant};

    let db = TestDb::new().await;
    let url = db_url(&db);
    let data = tempfile::tempdir().unwrap();
    let out = run_ok(
        sluice_on(&url, data.path()).args(["token", "create", "--role", "gateway", "--name", "gw"]),
    );
    let token = stdout(&out).lines().last().unwrap().to_owned();
    let auth = format!("Bearer {token}");
    run_ok(
        sluice_on(&url, data.path())
            .args(["policy", "publish"])
            .arg(fixtures().join("valid-empty.json")),
    );
    let mut child = sluice_on(&url, data.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--detect-every", "0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut child = Kill(child);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let addr: std::net::SocketAddr = loop {
        let line = rx.recv_timeout(Duration::from_secs(120)).unwrap();
        if let Some(rest) = line.strip_prefix("sluice listening on http://") {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    let (status, etag, body) = http(addr, "/v1/policy", &[("Authorization", &auth)]);
    assert_eq!(status, 200, "{body}");
    let etag = etag.unwrap();
    assert!(etag.starts_with("\"v1-"), "{etag}");

    let (a, e) = (auth.clone(), etag.clone());
    let poll = std::thread::spawn(move || {
        let t = Instant::now();
        let r = http(
            addr,
            "/v1/policy?wait=60s",
            &[("Authorization", &a), ("If-None-Match", &e)],
        );
        (r, t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    run_ok(
        sluice_on(&url, data.path())
            .args(["policy", "publish", "--comment", "from the cli"])
            .arg(fixtures().join("valid-example.json")),
    );
    let ((status, etag2, body), took) = poll.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(took < Duration::from_secs(30), "{took:?}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["version"], 2);
    assert!(etag2.unwrap().starts_with("\"v2-"));

    // A poll still waiting at shutdown answers 304 at once instead of holding the shutdown.
    let (a, e) = (
        auth.clone(),
        format!("\"v2-{}\"", &doc["content_hash"].as_str().unwrap()[7..23]),
    );
    let poll = std::thread::spawn(move || {
        http(
            addr,
            "/v1/policy?wait=60s",
            &[("Authorization", &a), ("If-None-Match", &e)],
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let (status, _, _) = poll.join().unwrap();
    assert_eq!(status, 304);
    let exit = child.0.wait().unwrap();
    assert!(exit.success(), "{exit}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
}
