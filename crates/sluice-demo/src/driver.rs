//! Plays the live part of the simulation through the gateway in real time: each record is sent
//! when the demo clock reaches its log time, as the client it came from (API key header, IP in
//! `X-Forwarded-For`, user agent), asking the upstream for the status and size the simulator
//! chose. Concurrency is bounded; a driver that falls behind sends late rather than skipping, and
//! reports how late it got.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use sluice_core::AccessRecord;
use tokio::sync::{mpsc, Semaphore};

use crate::clock::DemoClock;
use crate::score::{Classifier, Outcome, Score};
use crate::upstream::{BYTES_HEADER, MARK_HEADER, STATUS_HEADER};

#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// `http://host:port` of the gateway.
    pub gateway: String,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Stop sending after this much wall time.
    pub duration: Duration,
}

/// What the driver did, besides the score.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct DriverStats {
    pub sent: u64,
    /// Largest delay between a request's due time and its sending, in seconds.
    pub max_lag_s: f64,
    /// Requests sent more than a second late.
    pub late: u64,
}

/// Send every record of `records` (chunks in log-time order) until they run out or the
/// duration is over.
pub async fn drive(
    mut records: mpsc::Receiver<Vec<AccessRecord<'static>>>,
    clock: DemoClock,
    classifier: Arc<Classifier>,
    score: Arc<Mutex<Score>>,
    stats: Arc<Mutex<DriverStats>>,
    cfg: DriverConfig,
) {
    let client = match reqwest::Client::builder()
        .pool_max_idle_per_host(cfg.concurrency)
        .timeout(Duration::from_secs(30))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "could not build the driver's HTTP client");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let started = tokio::time::Instant::from_std(clock.started());
    'outer: while let Some(chunk) = records.recv().await {
        for rec in chunk {
            let due = clock.wall_at(rec.ts);
            if due >= cfg.duration {
                break 'outer;
            }
            tokio::time::sleep_until(started + due).await;
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break 'outer;
            };
            let now = started.elapsed();
            {
                let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
                s.sent += 1;
                let lag = now.saturating_sub(due).as_secs_f64();
                if lag > 1.0 {
                    s.late += 1;
                }
                s.max_lag_s = s.max_lag_s.max(lag);
            }
            let who = classifier.classify(&rec);
            let req = build(&client, &cfg.gateway, &rec);
            let score = score.clone();
            let sent = now.as_secs_f64();
            tokio::spawn(async move {
                let outcome = match req {
                    Some(r) => outcome(r.send().await).await,
                    None => Outcome::Failed,
                };
                drop(permit);
                score
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .record(who, sent, outcome);
            });
        }
    }
    // wait for the requests in flight
    let _ = permits.acquire_many(cfg.concurrency.max(1) as u32).await;
}

fn build(
    client: &reqwest::Client,
    gateway: &str,
    rec: &AccessRecord<'_>,
) -> Option<reqwest::RequestBuilder> {
    let mut url = format!("{gateway}{}", rec.path);
    if let Some(q) = &rec.query {
        url.push('?');
        url.push_str(q);
    }
    let method = reqwest::Method::from_bytes(rec.method.as_deref().unwrap_or("GET").as_bytes())
        .unwrap_or(reqwest::Method::GET);
    let mut h = HeaderMap::new();
    let mut put = |name: &'static str, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    if let Some(k) = &rec.api_key {
        put("x-api-key", k);
    }
    if let Some(ip) = rec.ip {
        put("x-forwarded-for", &ip.to_string());
    }
    if let Some(ua) = &rec.user_agent {
        put("user-agent", ua);
    }
    if let Some(r) = &rec.referer {
        put("referer", r);
    }
    put(STATUS_HEADER, &rec.status.to_string());
    put(BYTES_HEADER, &rec.bytes_sent.unwrap_or(64).to_string());
    Some(client.request(method, url).headers(h))
}

async fn outcome(res: reqwest::Result<reqwest::Response>) -> Outcome {
    let Ok(res) = res else {
        return Outcome::Failed;
    };
    if res.headers().contains_key(MARK_HEADER) {
        // drain the body so the connection is reused
        let _ = res.bytes().await;
        return Outcome::Admitted;
    }
    if res.status().as_u16() == 429 {
        let rule = res
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v.get("rule").and_then(|r| r.as_str()).map(str::to_owned));
        return Outcome::Rejected(rule);
    }
    let _ = res.bytes().await;
    Outcome::Failed
}
