//! `sluice-bench policy`: policy delivery (issue 5).
//!
//! 1. Steady-state poll: `GET /v1/policy` with `If-None-Match` (answered 304) under `wrk
//!    --latency`, side by side with nginx serving the same JSON as a static file with its ETag
//!    (also 304), alternating which side goes first; requests/s, p99 and the ratio per run.
//! 2. Long poll fan-out: N gateways (one TCP connection each) wait with `?wait=60s`; a version is
//!    published through the API; the time from sending the publish to the last gateway having
//!    the new version.
//! 3. A large policy (100,000 rules): validation time, publish time through the API, response
//!    size raw and gzip, full fetch time and the 304 poll rate with it in place.
//!
//! The API server runs in this process on its own Tokio runtime (`--server-threads`), built by
//! `sluice_api::serve` exactly as `sluice serve` builds it; clients use raw HTTP/1.1 over TCP.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use sluice_api::{ApiConfig, AppState};
use sluice_core::Role;
use sluice_engine::ingest::Enrichment;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::server::Server;
use crate::{load_average, median, ServerArgs, WorkDir};

#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Measured runs of each part (the poll comparison alternates which side goes first).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Seconds of each wrk run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// wrk connections.
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 1)]
    pub wrk_threads: u32,
    /// Tokio worker threads of the API server (nginx gets as many worker processes).
    #[arg(long, default_value_t = 2)]
    pub server_threads: usize,
    /// Long-polling gateways.
    #[arg(long, default_value_t = 1000)]
    pub gateways: usize,
    /// Rules of the large policy.
    #[arg(long, default_value_t = 100_000)]
    pub big_rules: usize,
    /// Only these parts (comma-separated: poll, longpoll, big).
    #[arg(long, value_delimiter = ',', default_value = "poll,longpoll,big")]
    pub parts: Vec<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// A policy document with `n` rules whose content depends on `salt`.
pub fn policy_doc(n: usize, salt: u64) -> String {
    let mut out = String::with_capacity(n * 160 + 64);
    out.push_str("{\"format\":\"sluice.policy/v1\",\"rules\":[");
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        let rule = match i % 4 {
            0 => format!(
                r#"{{"id":"key-{i:06}","selector":{{"api_key":"ak_{i:06}"}},"limit":{{"algorithm":"token_bucket","rate":{},"window_seconds":60,"burst":{}}},"reason":"learned baseline p99 with headroom","source":"tuner"}}"#,
                600 + (i as u64 * 7 + salt) % 400,
                50 + i % 50
            ),
            1 => format!(
                r#"{{"id":"key-{i:06}","selector":{{"api_key":"ak_{i:06}","route":"/v1/export/{{id}}"}},"limit":{{"algorithm":"sliding_window_counter","rate":{},"window_seconds":60}},"cost":"cost_units","source":"tuner"}}"#,
                20 + (i as u64 + salt) % 30
            ),
            2 => format!(
                r#"{{"id":"ip-{i:06}","selector":{{"ip":"10.{}.{}.0/24"}},"limit":{{"algorithm":"fixed_window","rate":{},"window_seconds":1}},"shadow":true,"source":"suggestion:{i}"}}"#,
                (i / 256) % 256,
                i % 256,
                100 + salt % 10
            ),
            _ => format!(
                r#"{{"id":"user-{i:06}","selector":{{"user":"u{i}","method":"POST"}},"limit":{{"algorithm":"leaky_bucket","rate":{},"window_seconds":1,"queue":20}},"expires_at":"2030-01-01T00:00:00Z"}}"#,
                5 + salt % 5
            ),
        };
        out.push_str(&rule);
    }
    out.push_str("]}");
    out
}

/// One HTTP/1.1 exchange on a fresh connection (`Connection: close`): status, headers, body and
/// the time until the whole answer was read.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<Answer> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).await?;
    s.write_all(body).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    parse_answer(&raw)
}

fn parse_answer(raw: &[u8]) -> anyhow::Result<Answer> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end])?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .context("bad status line")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body)?;
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("bad chunk")?;
        let size = usize::from_str_radix(std::str::from_utf8(&b[..eol])?.trim(), 16)?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// Requests/s and latency percentiles from one wrk run.
#[derive(Debug, Clone, Copy)]
struct WrkResult {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn wrk_duration_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * mult)
}

fn run_wrk(args: &PolicyArgs, url: &str, headers: &[String]) -> anyhow::Result<WrkResult> {
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{}", args.wrk_threads))
        .arg(format!("-c{}", args.connections))
        .arg(format!("-d{}s", args.duration))
        .arg("--latency");
    for h in headers {
        cmd.arg("-H").arg(h);
    }
    let out = cmd
        .arg(url)
        .output()
        .context("failed to run wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    if text.contains("Non-2xx or 3xx responses") {
        bail!("wrk saw error responses:\n{text}");
    }
    let field = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
    };
    let rps = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .context("no Requests/sec in wrk output")?;
    let p50 = field("50%")
        .and_then(wrk_duration_ms)
        .context("no 50% in wrk output")?;
    let p99 = field("99%")
        .and_then(wrk_duration_ms)
        .context("no 99% in wrk output")?;
    Ok(WrkResult {
        rps,
        p50_ms: p50,
        p99_ms: p99,
    })
}

/// nginx serving `file` at `/v1/policy` with `etag on`, `worker_processes` = `workers`.
struct Nginx {
    child: Child,
    addr: SocketAddr,
}

impl Nginx {
    fn start(dir: &Path, file: &Path, workers: usize) -> anyhow::Result<Nginx> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let conf = dir.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "worker_processes {workers};
daemon off;
user root;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    server {{
        listen {addr};
        location = /v1/policy {{
            alias {file};
            default_type application/json;
            etag on;
        }}
    }}
}}
",
                dir = dir.display(),
                file = file.display()
            ),
        )?;
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("failed to start nginx (apt-get install nginx)")?;
        for _ in 0..100 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return Ok(Nginx { child, addr });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("nginx did not start listening on {addr}")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The API server on its own runtime thread.
struct Api {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Api {
    fn start(db: sqlx::postgres::PgConnectOptions, threads: usize) -> anyhow::Result<Api> {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<anyhow::Result<SocketAddr>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = addr_tx.send(Err(e.into()));
                    return;
                }
            };
            rt.block_on(async move {
                let pool = match sqlx::postgres::PgPoolOptions::new()
                    .max_connections(16)
                    .connect_with(db)
                    .await
                {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = addr_tx.send(Err(e.into()));
                        return;
                    }
                };
                let state =
                    AppState::new(pool, Arc::new(Enrichment::default()), ApiConfig::default());
                let tx = addr_tx.clone();
                let res = sluice_api::serve(
                    "127.0.0.1:0".parse().expect("an address"),
                    state,
                    async move {
                        let _ = stop_rx.await;
                    },
                    move |a| {
                        let _ = tx.send(Ok(a));
                    },
                )
                .await;
                if let Err(e) = res {
                    let _ = addr_tx.send(Err(e.into()));
                }
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(30))
            .context("the API server did not start")??;
        Ok(Api {
            addr,
            shutdown: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn publish(
    addr: SocketAddr,
    admin: &str,
    doc: &[u8],
) -> anyhow::Result<(serde_json::Value, Duration)> {
    let auth = format!("Bearer {admin}");
    let t = Instant::now();
    let a = http(
        addr,
        "POST",
        "/v1/policy/versions?comment=bench",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        doc,
    )
    .await?;
    let took = t.elapsed();
    if a.status != 201 {
        bail!(
            "publish answered {}: {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        );
    }
    Ok((serde_json::from_slice(&a.body)?, took))
}

async fn current_etag(addr: SocketAddr, token: &str) -> anyhow::Result<(String, Answer)> {
    let auth = format!("Bearer {token}");
    let a = http(addr, "GET", "/v1/policy", &[("Authorization", &auth)], b"").await?;
    if a.status != 200 {
        bail!("GET /v1/policy answered {}", a.status);
    }
    let etag = a.header("etag").context("no etag")?.to_owned();
    Ok((etag, a))
}

pub async fn run(args: PolicyArgs) -> anyhow::Result<()> {
    let server = Server::open(args.server.database_url.as_deref()).await?;
    println!("postgres: {}", server.description);
    let work = WorkDir::new(args.server.work_dir.as_ref())?;
    let name = "sluice_bench_policy";
    let opts = server.create_db(name).await?;
    let pool = server.pool(&opts).await?;
    let (_, gateway) =
        sluice_store::tokens::create_token(&pool, "bench-gw", Role::Gateway, "bench").await?;
    let (_, admin) =
        sluice_store::tokens::create_token(&pool, "bench-admin", Role::Admin, "bench").await?;
    pool.close().await;
    let api = Api::start(opts.clone(), args.server_threads)?;
    let addr = api.addr;
    println!(
        "api: http://{addr} ({} runtime threads)",
        args.server_threads
    );
    let want = |p: &str| args.parts.iter().any(|x| x == p);

    // A realistic everyday policy: 200 rules.
    let doc = policy_doc(200, 0);
    publish(addr, &admin, doc.as_bytes()).await?;

    if want("poll") {
        let (etag, a) = current_etag(addr, &gateway).await?;
        let file = work.path().join("policy.json");
        std::fs::write(&file, &a.body)?;
        let nginx = Nginx::start(work.path(), &file, args.server_threads)?;
        let na = http(nginx.addr, "GET", "/v1/policy", &[], b"").await?;
        let nginx_etag = na.header("etag").context("nginx sent no etag")?.to_owned();
        if na.body != a.body {
            bail!("nginx serves different bytes");
        }
        let check = http(
            nginx.addr,
            "GET",
            "/v1/policy",
            &[("If-None-Match", &nginx_etag)],
            b"",
        )
        .await?;
        let check2 = http(
            addr,
            "GET",
            "/v1/policy",
            &[
                ("If-None-Match", &etag),
                ("Authorization", &format!("Bearer {gateway}")),
            ],
            b"",
        )
        .await?;
        if check.status != 304 || check2.status != 304 {
            bail!(
                "expected 304 from both, got nginx {} sluice {}",
                check.status,
                check2.status
            );
        }
        println!(
            "\n## 1. steady-state poll: GET /v1/policy with If-None-Match -> 304 ({} bytes policy, 200 rules)",
            a.body.len()
        );
        println!(
            "wrk -t{} -c{} -d{}s --latency -H 'If-None-Match: <etag>' [-H 'Authorization: Bearer <token>']",
            args.wrk_threads, args.connections, args.duration
        );
        let auth_h = format!("Authorization: Bearer {gateway}");
        let sluice_headers = vec![format!("If-None-Match: {etag}"), auth_h.clone()];
        // nginx gets the same Authorization header (it ignores it) so the requests are the same size.
        let nginx_headers = vec![format!("If-None-Match: {nginx_etag}"), auth_h];
        let sluice_url = format!("http://{addr}/v1/policy");
        let nginx_url = format!("http://{}/v1/policy", nginx.addr);
        let mut ratios = Vec::new();
        let mut s_rps = Vec::new();
        let mut n_rps = Vec::new();
        let mut s_p99 = Vec::new();
        let mut n_p99 = Vec::new();
        for run in 0..args.runs {
            let load = load_average();
            let (s, n) = if run % 2 == 0 {
                let s = run_wrk(&args, &sluice_url, &sluice_headers)?;
                let n = run_wrk(&args, &nginx_url, &nginx_headers)?;
                (s, n)
            } else {
                let n = run_wrk(&args, &nginx_url, &nginx_headers)?;
                let s = run_wrk(&args, &sluice_url, &sluice_headers)?;
                (s, n)
            };
            println!(
                "run {}: sluice {:.0} req/s p50 {:.3} ms p99 {:.3} ms | nginx {:.0} req/s p50 {:.3} ms p99 {:.3} ms | ratio {:.2} | load {load}",
                run + 1,
                s.rps,
                s.p50_ms,
                s.p99_ms,
                n.rps,
                n.p50_ms,
                n.p99_ms,
                s.rps / n.rps
            );
            ratios.push(s.rps / n.rps);
            s_rps.push(s.rps);
            n_rps.push(n.rps);
            s_p99.push(s.p99_ms);
            n_p99.push(n.p99_ms);
        }
        println!(
            "median: sluice {:.0} req/s p99 {:.3} ms | nginx {:.0} req/s p99 {:.3} ms | ratio {:.2} (target >= 0.8, p99 < 2 ms)",
            median(&s_rps),
            median(&s_p99),
            median(&n_rps),
            median(&n_p99),
            median(&ratios)
        );
        drop(nginx);
    }

    if want("longpoll") {
        println!(
            "\n## 2. long poll: {} gateways wait with ?wait=60s; a version is published through the API",
            args.gateways
        );
        let mut lasts = Vec::new();
        for run in 0..args.runs {
            let (etag, _) = current_etag(addr, &gateway).await?;
            let auth = format!("Bearer {gateway}");
            let mut tasks = Vec::with_capacity(args.gateways);
            let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(args.gateways);
            for _ in 0..args.gateways {
                let etag = etag.clone();
                let auth = auth.clone();
                let ready = ready_tx.clone();
                tasks.push(tokio::spawn(async move {
                    let mut s = TcpStream::connect(addr).await?;
                    s.set_nodelay(true)?;
                    let req = format!(
                        "GET /v1/policy?wait=60s HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: {auth}\r\nIf-None-Match: {etag}\r\nAccept-Encoding: gzip\r\n\r\n"
                    );
                    s.write_all(req.as_bytes()).await?;
                    let _ = ready.send(()).await;
                    let mut raw = Vec::new();
                    s.read_to_end(&mut raw).await?;
                    let at = Instant::now();
                    let a = parse_answer(&raw)?;
                    anyhow::Ok((a.status, at))
                }));
            }
            drop(ready_tx);
            for _ in 0..args.gateways {
                ready_rx
                    .recv()
                    .await
                    .context("a gateway failed to connect")?;
            }
            // Let every request reach its wait (auth lookups, parsing).
            tokio::time::sleep(Duration::from_secs(2)).await;
            let load = load_average();
            let doc = policy_doc(200, 1000 + run as u64);
            let t0 = Instant::now();
            let (info, publish_took) = publish(addr, &admin, doc.as_bytes()).await?;
            let mut delays = Vec::with_capacity(args.gateways);
            let mut ok = 0;
            for t in tasks {
                let (status, at) = t.await??;
                if status == 200 {
                    ok += 1;
                }
                delays.push(at.duration_since(t0).as_secs_f64() * 1000.0);
            }
            delays.sort_by(f64::total_cmp);
            let last = *delays.last().unwrap_or(&f64::NAN);
            println!(
                "run {}: version {} | publish answered in {:.1} ms | {ok}/{} gateways got it | after publish sent: first {:.1} ms, p50 {:.1} ms, p99 {:.1} ms, last {:.1} ms | load {load}",
                run + 1,
                info["version"],
                publish_took.as_secs_f64() * 1000.0,
                args.gateways,
                delays.first().copied().unwrap_or(f64::NAN),
                percentile(&delays, 0.5),
                percentile(&delays, 0.99),
                last
            );
            if ok != args.gateways {
                bail!(
                    "only {ok} of {} gateways received the new version",
                    args.gateways
                );
            }
            lasts.push(last);
        }
        println!(
            "median time from publish to the last gateway: {:.1} ms (target < 100 ms)",
            median(&lasts)
        );
    }

    if want("big") {
        println!("\n## 3. a {}-rule policy", args.big_rules);
        let mut parse = Vec::new();
        let mut publishes = Vec::new();
        let mut fetch_gzip = Vec::new();
        let mut fetch_raw = Vec::new();
        let mut sizes = (0, 0, 0);
        for run in 0..args.runs {
            let doc = policy_doc(args.big_rules, 7 + run as u64);
            let d = doc.clone();
            let t = Instant::now();
            let p = tokio::task::spawn_blocking(move || {
                sluice_core::policy::Policy::parse(d.as_bytes())
            })
            .await??;
            parse.push(t.elapsed().as_secs_f64() * 1000.0);
            drop(p);
            let (info, took) = publish(addr, &admin, doc.as_bytes()).await?;
            publishes.push(took.as_secs_f64() * 1000.0);
            let auth = format!("Bearer {gateway}");
            let t = Instant::now();
            let g = http(
                addr,
                "GET",
                "/v1/policy",
                &[("Authorization", &auth), ("Accept-Encoding", "gzip")],
                b"",
            )
            .await?;
            fetch_gzip.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            let r = http(addr, "GET", "/v1/policy", &[("Authorization", &auth)], b"").await?;
            fetch_raw.push(t.elapsed().as_secs_f64() * 1000.0);
            if g.header("content-encoding") != Some("gzip") || r.status != 200 {
                bail!("unexpected answers to the full fetch");
            }
            sizes = (doc.len(), r.body.len(), g.body.len());
            println!(
                "run {}: version {} | validate {:.0} ms | publish through the API {:.0} ms | full fetch gzip {:.0} ms, raw {:.0} ms | load {}",
                run + 1,
                info["version"],
                parse.last().unwrap(),
                publishes.last().unwrap(),
                fetch_gzip.last().unwrap(),
                fetch_raw.last().unwrap(),
                load_average()
            );
        }
        println!(
            "sizes: submitted {} bytes, served {} bytes raw, {} bytes gzip ({:.1}x)",
            sizes.0,
            sizes.1,
            sizes.2,
            sizes.1 as f64 / sizes.2 as f64
        );
        println!(
            "median: validate {:.0} ms, publish {:.0} ms, full fetch gzip {:.0} ms, raw {:.0} ms",
            median(&parse),
            median(&publishes),
            median(&fetch_gzip),
            median(&fetch_raw)
        );
        let (etag, _) = current_etag(addr, &gateway).await?;
        let r = run_wrk(
            &args,
            &format!("http://{addr}/v1/policy"),
            &[
                format!("If-None-Match: {etag}"),
                format!("Authorization: Bearer {gateway}"),
            ],
        )?;
        println!(
            "304 poll with the {}-rule policy in place: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms",
            args.big_rules, r.rps, r.p50_ms, r.p99_ms
        );
    }

    drop(api);
    server.drop_db(name).await?;
    server.stop();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_policies_are_valid_and_differ_by_salt() {
        let a = sluice_core::policy::Policy::parse(policy_doc(40, 1).as_bytes()).unwrap();
        let b = sluice_core::policy::Policy::parse(policy_doc(40, 2).as_bytes()).unwrap();
        assert_eq!(a.rules().len(), 40);
        assert_ne!(a.content_hash(), b.content_hash());
    }

    #[test]
    fn wrk_durations() {
        assert_eq!(wrk_duration_ms("512.00us"), Some(0.512));
        assert_eq!(wrk_duration_ms("1.25ms"), Some(1.25));
        assert_eq!(wrk_duration_ms("2.00s"), Some(2000.0));
        assert_eq!(wrk_duration_ms("x"), None);
    }

    #[test]
    fn answers_parse_with_and_without_chunks() {
        let a = parse_answer(b"HTTP/1.1 304 Not Modified\r\nETag: \"v1-x\"\r\n\r\n").unwrap();
        assert_eq!((a.status, a.header("etag")), (304, Some("\"v1-x\"")));
        let b = parse_answer(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(b.body, b"abcde");
    }
}
