//! `sluice serve`: start on an ephemeral port, answer, and stop on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use sluice_store::testing::TestDb;

use crate::support::{count, db_url, elastic_sample, run_ok, sluice_on, stdout};

/// A minimal HTTP/1.1 exchange (`Connection: close`); returns the status and the body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    // The API answers with Content-Length, so the body is not chunked.
    (status, body.to_owned())
}

/// The server process, killed if the test fails before it stops it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[tokio::test]
async fn serve_answers_and_stops_on_sigterm() {
    let db = TestDb::new().await;
    let url = db_url(&db);
    let data = tempfile::tempdir().unwrap();
    let out = run_ok(
        sluice_on(&url, data.path())
            .args(["token", "create", "--role", "gateway", "--name", "edge-1"]),
    );
    let token = stdout(&out).lines().last().unwrap().to_owned();

    let mut child = KillOnDrop(
        sluice_on(&url, data.path())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Read stderr on a thread for the whole run (so the pipe never fills) and pass the lines on.
    let (tx, rx) = mpsc::channel::<String>();
    let reader = BufReader::new(child.0.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let addr: SocketAddr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("sluice serve prints its address on stderr");
        if let Some(rest) = line.strip_prefix("sluice listening on http://") {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    // A token existed, so no admin token was bootstrapped.
    assert!(!data.path().join("admin.token").exists());

    assert_eq!(http(addr, "GET", "/healthz", None, b""), (200, "ok".into()));
    assert_eq!(
        http(addr, "GET", "/readyz", None, b""),
        (200, "ready".into())
    );
    let (status, body) = http(addr, "GET", "/v1/whoami", Some(&token), b"");
    assert_eq!(
        (
            status,
            serde_json::from_str::<serde_json::Value>(&body).unwrap()
        ),
        (
            200,
            serde_json::json!({"name": "edge-1", "role": "gateway"})
        )
    );

    let sample = std::fs::read(elastic_sample()).unwrap();
    let (status, body) = http(addr, "POST", "/v1/logs", Some(&token), &sample);
    assert_eq!(status, 200, "{body}");
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            r["read"].as_u64(),
            r["accepted"].as_u64(),
            r["rejected"].as_u64()
        ),
        (Some(10_000), Some(9_999), Some(1)),
        "{r}"
    );
    assert_eq!(r["format"], "nginx");
    assert_eq!(
        count(
            &db.pool,
            "SELECT count(*) FROM access_log WHERE source = 'edge-1'"
        )
        .await,
        9_999
    );
    // (A small body: the server answers 401 without reading a large one.)
    let (status, body) = http(addr, "POST", "/v1/logs", None, &sample[..200]);
    assert_eq!(status, 401, "{body}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sluice serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert!(
        TcpStream::connect(addr).is_err(),
        "the port is closed after shutdown"
    );
}
