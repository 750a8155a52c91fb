//! The access-log shipper: one canonical NDJSON record per proxied request into a bounded
//! buffer, shipped in batches (by count, size or interval), gzipped, to `POST /v1/logs` with an
//! `Idempotency-Key` per batch.
//!
//! Invariants: recording never blocks a request (when the buffer is full the record is dropped
//! and counted in `dropped`); a batch, once formed, keeps its key and is retried (exponential
//! back-off with full jitter, `Retry-After` honoured on 429 and 503) until the control plane
//! accepts it, so a batch is never lost while the process runs and never stored twice (the
//! control plane skips a key it committed before). Only a 4xx other than 408 and 429 (the batch
//! itself is refused) gives up on a batch, counted in `failed_batches`.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::Full;
use sluice_core::AccessRecord;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::net::{self as h, HttpClient};

/// Shipper settings.
#[derive(Clone, Debug)]
pub struct ShipperConfig {
    pub control_plane: String,
    pub token: String,
    /// `source` of the shipped records (the gateway id).
    pub source: String,
    /// Ship when a batch has this many records...
    pub batch_records: usize,
    /// ...or this many bytes of NDJSON...
    pub batch_bytes: usize,
    /// ...or when the oldest record in it is this old.
    pub interval: Duration,
    /// Records that may wait in the buffer (beyond it they are dropped and counted).
    pub buffer_records: usize,
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// On shutdown, how long to keep retrying the last batches.
    pub drain_timeout: Duration,
}

impl ShipperConfig {
    pub fn new(control_plane: &str, token: &str, source: &str) -> ShipperConfig {
        ShipperConfig {
            control_plane: control_plane.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            source: source.to_owned(),
            batch_records: 5_000,
            batch_bytes: 4 << 20,
            interval: Duration::from_secs(1),
            buffer_records: 100_000,
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// What the shipper has done.
#[derive(Debug, Default)]
pub struct ShipperStats {
    /// Records accepted into the buffer.
    pub records: AtomicU64,
    /// Records dropped because the buffer was full.
    pub dropped: AtomicU64,
    /// Batches the control plane acknowledged.
    pub batches: AtomicU64,
    /// Records in acknowledged batches.
    pub shipped: AtomicU64,
    /// Attempts that failed and were retried.
    pub retries: AtomicU64,
    /// Batches given up on (refused with a 4xx that retrying cannot fix).
    pub failed_batches: AtomicU64,
}

/// The sending side, cheap to clone into every request handler.
#[derive(Clone, Debug)]
pub struct LogSink {
    tx: mpsc::Sender<Vec<u8>>,
    stats: Arc<ShipperStats>,
}

impl LogSink {
    /// Buffer one record (canonical NDJSON). Never waits.
    pub fn record(&self, rec: &AccessRecord<'_>) {
        let mut line = Vec::with_capacity(256);
        sluice_logs::to_ndjson(rec, &mut line);
        if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
        match self.tx.try_send(line) {
            Ok(()) => {
                self.stats.records.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn stats(&self) -> &Arc<ShipperStats> {
        &self.stats
    }
}

/// The running shipper.
#[derive(Debug)]
pub struct Shipper {
    sink: LogSink,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Shipper {
    /// Start the shipping task.
    pub fn spawn(cfg: ShipperConfig) -> Shipper {
        let (tx, rx) = mpsc::channel(cfg.buffer_records.max(1));
        let stats = Arc::new(ShipperStats::default());
        let (stop, stop_rx) = watch::channel(false);
        let worker = Worker {
            http: h::client(),
            cfg,
            stats: stats.clone(),
            stop: stop_rx,
        };
        let task = tokio::spawn(worker.run(rx));
        Shipper {
            sink: LogSink { tx, stats },
            stop,
            task,
        }
    }

    pub fn sink(&self) -> LogSink {
        self.sink.clone()
    }

    pub fn stats(&self) -> &Arc<ShipperStats> {
        &self.sink.stats
    }

    /// Ship what is buffered (retrying for up to the drain timeout) and stop.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        drop(self.sink);
        let _ = self.task.await;
    }
}

struct Worker {
    http: HttpClient,
    cfg: ShipperConfig,
    stats: Arc<ShipperStats>,
    stop: watch::Receiver<bool>,
}

struct Batch {
    key: String,
    records: u64,
    gzip: Bytes,
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<Vec<u8>>) {
        let mut buf: Vec<u8> = Vec::new();
        let mut n = 0usize;
        let mut tick = tokio::time::interval(self.cfg.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop = self.stop.clone();
        loop {
            let full = n >= self.cfg.batch_records || buf.len() >= self.cfg.batch_bytes;
            if full {
                self.ship(std::mem::take(&mut buf), &mut n, None).await;
                continue;
            }
            tokio::select! {
                line = rx.recv() => match line {
                    Some(l) => {
                        buf.extend_from_slice(&l);
                        n += 1;
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    if n > 0 {
                        self.ship(std::mem::take(&mut buf), &mut n, None).await;
                    }
                }
                _ = stop.changed() => break,
            }
        }
        // Drain: everything already buffered, then ship with a deadline.
        let deadline = tokio::time::Instant::now() + self.cfg.drain_timeout;
        rx.close();
        while let Ok(l) = rx.try_recv() {
            buf.extend_from_slice(&l);
            n += 1;
            if n >= self.cfg.batch_records || buf.len() >= self.cfg.batch_bytes {
                self.ship(std::mem::take(&mut buf), &mut n, Some(deadline))
                    .await;
            }
        }
        if n > 0 {
            self.ship(buf, &mut n, Some(deadline)).await;
        }
    }

    async fn ship(&self, ndjson: Vec<u8>, n: &mut usize, deadline: Option<tokio::time::Instant>) {
        let mut enc = flate2::write::GzEncoder::new(
            Vec::with_capacity(ndjson.len() / 6),
            flate2::Compression::fast(),
        );
        enc.write_all(&ndjson)
            .expect("writing to a Vec cannot fail");
        let batch = Batch {
            key: uuid::Uuid::new_v4().to_string(),
            records: *n as u64,
            gzip: Bytes::from(enc.finish().expect("writing to a Vec cannot fail")),
        };
        *n = 0;
        self.send_until_done(&batch, deadline).await;
    }

    /// Send `batch` until the control plane acknowledges it (or refuses it for good, or the
    /// drain deadline passes).
    async fn send_until_done(&self, batch: &Batch, deadline: Option<tokio::time::Instant>) {
        let mut attempt = 0u32;
        loop {
            let req = Request::builder()
                .method(Method::POST)
                .uri(format!(
                    "{}/v1/logs?format=ndjson&source={}",
                    self.cfg.control_plane,
                    encode_query(&self.cfg.source)
                ))
                .header(header::AUTHORIZATION, format!("Bearer {}", self.cfg.token))
                .header(header::CONTENT_TYPE, "application/x-ndjson")
                .header(header::CONTENT_ENCODING, "gzip")
                .header("idempotency-key", &batch.key)
                .body(Full::new(batch.gzip.clone()))
                .expect("a request of valid parts");
            let (wait_at_least, why) = match h::send(&self.http, req, Duration::from_secs(60)).await
            {
                Ok(res) if res.status().is_success() => {
                    self.stats.batches.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .shipped
                        .fetch_add(batch.records, Ordering::Relaxed);
                    return;
                }
                Ok(res) => {
                    let s = res.status();
                    let retryable = s.is_server_error()
                        || s == StatusCode::TOO_MANY_REQUESTS
                        || s == StatusCode::REQUEST_TIMEOUT
                        || s == StatusCode::UNAUTHORIZED;
                    let body = String::from_utf8_lossy(res.body())
                        .chars()
                        .take(300)
                        .collect::<String>();
                    if !retryable {
                        tracing::error!(status = %s, %body, key = %batch.key, records = batch.records, "log batch refused; dropping it");
                        self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    let ra = if s == StatusCode::TOO_MANY_REQUESTS
                        || s == StatusCode::SERVICE_UNAVAILABLE
                    {
                        h::retry_after(res.headers())
                    } else {
                        None
                    };
                    (ra, format!("{s}: {body}"))
                }
                Err(e) => (None, e),
            };
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            attempt = attempt.saturating_add(1);
            let wait = h::backoff(attempt, self.cfg.retry_min, self.cfg.retry_max)
                .max(wait_at_least.unwrap_or_default());
            tracing::warn!(error = %why, key = %batch.key, attempt, wait_ms = wait.as_millis() as u64, "log batch not shipped; retrying");
            if let Some(d) = deadline {
                if tokio::time::Instant::now() + wait > d {
                    tracing::error!(key = %batch.key, records = batch.records, "shutting down with a log batch unshipped");
                    self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
            tokio::time::sleep(wait).await;
        }
    }
}

/// Percent-encode a query value (everything but unreserved characters).
fn encode_query(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_encoded() {
        assert_eq!(super::encode_query("edge 1/a"), "edge%201%2Fa");
    }
}
