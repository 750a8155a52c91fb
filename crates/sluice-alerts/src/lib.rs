//! Alert webhooks for `sluice serve`: every `check_every` the [`Alerter`] looks for three
//! conditions in the database, records a notification for each new one, and POSTs it as JSON to
//! every configured webhook, retrying failed deliveries with bounded exponential back-off.
//!
//! - a **high-severity anomaly opens**: state `open` and score at or above
//!   `sluice_store::metrics::HIGH_SEVERITY_SCORE` (what `sluice_anomalies_open_high_severity`
//!   counts);
//! - a **suggestion waits for approval** longer than `suggestion_wait`, measured on the wall clock
//!   from when it was stored (`created_wall`): the question is how long no person has acted, which
//!   log time cannot answer (a replay of last week's logs would make every suggestion "old");
//! - a **gateway falls behind** the version its group is served for longer than `gateway_lag`,
//!   measured on the wall clock from when the alerter first saw it behind at that applied version.
//!
//! Each thing (anomaly, suggestion, gateway at an applied version) is notified once: the
//! `alerts` table's unique key is written in the same transaction as the notification, so a
//! restart does not send again. More than [`DIGEST_OVER`] new things of one kind in one check go
//! out as one digest notification. Failures are logged and recorded per delivery (`attempts`,
//! `last_error`), never fatal. Details and the body format: `docs/alerts.md`.

mod payload;

use std::time::Duration;

use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use sluice_store::alerts::{self, AlertKind, Attempt, Raise};
use sluice_store::{PgPool, StoreError};

pub use payload::{anomaly_payload, gateway_payload, suggestion_payload, SCHEMA};

/// More new things than this of one kind in one check are sent as a single digest.
pub const DIGEST_OVER: usize = 5;

/// At most this many new things of one kind are raised per check (the rest wait for the next).
const RAISE_LIMIT: i64 = 200;

/// Deliveries attempted per check.
const DELIVER_LIMIT: i64 = 50;

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("invalid alert webhook {0}: {1}")]
    BadWebhook(String, String),
    #[error("invalid duration {0:?}: {1}")]
    BadDuration(String, &'static str),
    #[error("failed to build the webhook HTTP client: {0}")]
    Client(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A webhook URL. Its [`Webhook::id`] (scheme, host, port and a hash of the whole URL) is what
/// the database stores and logs show: receivers like Slack put the secret in the path.
#[derive(Clone)]
pub struct Webhook {
    url: reqwest::Url,
    id: String,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Webhook").field(&self.id).finish()
    }
}

impl Webhook {
    pub fn parse(s: &str) -> Result<Webhook, AlertError> {
        let redacted = || {
            s.split_once("://")
                .map(|(scheme, rest)| {
                    format!("{scheme}://{}/...", rest.split('/').next().unwrap_or(""))
                })
                .unwrap_or_else(|| "(not a URL)".into())
        };
        let url = reqwest::Url::parse(s.trim())
            .map_err(|e| AlertError::BadWebhook(redacted(), e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(AlertError::BadWebhook(
                redacted(),
                "only http and https URLs are supported".into(),
            ));
        }
        let Some(host) = url.host_str() else {
            return Err(AlertError::BadWebhook(redacted(), "no host".into()));
        };
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        let hash = hex::encode(&Sha256::digest(url.as_str().as_bytes())[..6]);
        let id = format!("{}://{host}{port}/#{hash}", url.scheme());
        Ok(Webhook { url, id })
    }

    /// What is stored and logged instead of the URL.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Bounded exponential back-off with jitter: attempt `n` (1-based) failed, the next comes after
/// `min(base * 2^(n-1), max_delay)` scaled by a random factor in [0.5, 1). After `max_attempts`
/// attempts the delivery is given up (and recorded as such).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 12 attempts, 5 s doubling to at most 15 min: about an hour of retries in all.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 12,
            base: Duration::from_secs(5),
            max_delay: Duration::from_secs(15 * 60),
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt `attempt` (1-based), with `jitter` in [0, 1).
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        let full = self.base.saturating_mul(1u32 << exp).min(self.max_delay);
        full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }
}

/// What the alerter watches and where it sends.
#[derive(Clone, Debug)]
pub struct AlertConfig {
    pub webhooks: Vec<Webhook>,
    pub suggestion_wait: Duration,
    pub gateway_lag: Duration,
    pub check_every: Duration,
    pub retry: RetryPolicy,
    /// Per request (connect + answer).
    pub request_timeout: Duration,
}

impl AlertConfig {
    /// The defaults of `sluice serve`: wait 1 h, lag 5 min, check every 15 s.
    pub fn new(webhooks: Vec<Webhook>) -> AlertConfig {
        AlertConfig {
            webhooks,
            suggestion_wait: Duration::from_secs(3600),
            gateway_lag: Duration::from_secs(300),
            check_every: Duration::from_secs(15),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// `90`, `90s`, `5m`, `1h`, `1h30m`, `2d`: a number of seconds, or numbers with units s, m, h, d.
pub fn parse_duration(s: &str) -> Result<Duration, AlertError> {
    let bad = |why| AlertError::BadDuration(s.to_owned(), why);
    let t = s.trim();
    if t.is_empty() {
        return Err(bad("empty"));
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => {
                return Err(bad(
                    "use a number with a unit s, m, h or d, e.g. 90s, 5m, 1h30m",
                ))
            }
        };
        let n: u64 = num.parse().map_err(|_| bad("a unit without a number"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| bad("too long"))?;
        num.clear();
    }
    if !num.is_empty() {
        return Err(bad("a number without a unit after another unit"));
    }
    Ok(Duration::from_secs(total))
}

/// What one check did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Notifications recorded.
    pub raised: usize,
    pub delivered: usize,
    pub retrying: usize,
    pub given_up: usize,
}

/// The alert loop's state: the pool, the configuration and one HTTP client.
#[derive(Debug)]
pub struct Alerter {
    pool: PgPool,
    config: AlertConfig,
    ids: Vec<String>,
    client: reqwest::Client,
}

impl Alerter {
    pub fn new(pool: PgPool, config: AlertConfig) -> Result<Alerter, AlertError> {
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AlertError::Client(e.to_string()))?;
        let ids = config.webhooks.iter().map(|w| w.id.clone()).collect();
        Ok(Alerter {
            pool,
            config,
            ids,
            client,
        })
    }

    /// One check: raise what is due, then attempt the deliveries that are due.
    pub async fn check(&self) -> Result<CheckReport, AlertError> {
        let raised = self.raise().await?;
        let mut report = self.deliver().await?;
        report.raised = raised;
        Ok(report)
    }

    /// Record a notification (with a delivery per webhook) for every new due thing; returns how
    /// many notifications were recorded.
    pub async fn raise(&self) -> Result<usize, AlertError> {
        if self.ids.is_empty() {
            return Ok(0);
        }
        let mut raise = Raise::begin(&self.pool).await?;
        let mut raised = 0;

        let anomalies = raise.due_anomalies(RAISE_LIMIT).await?;
        for (subjects, body) in group(&anomalies, |a| a.subject(), anomaly_payload) {
            raise
                .record(AlertKind::AnomalyHighSeverity, &subjects, &body, &self.ids)
                .await?;
            raised += 1;
        }
        let suggestions = raise
            .due_suggestions(self.config.suggestion_wait, RAISE_LIMIT)
            .await?;
        for (subjects, body) in group(
            &suggestions,
            |s| s.subject(),
            |s| suggestion_payload(s, self.config.suggestion_wait),
        ) {
            raise
                .record(AlertKind::SuggestionWaiting, &subjects, &body, &self.ids)
                .await?;
            raised += 1;
        }
        let gateways = raise
            .due_gateways(self.config.gateway_lag, RAISE_LIMIT)
            .await?;
        for (subjects, body) in group(
            &gateways,
            |g| g.subject(),
            |g| gateway_payload(g, self.config.gateway_lag),
        ) {
            raise
                .record(AlertKind::GatewayBehind, &subjects, &body, &self.ids)
                .await?;
            raised += 1;
        }
        raise.commit().await?;
        if raised > 0 {
            tracing::info!(
                notifications = raised,
                anomalies = anomalies.len(),
                suggestions = suggestions.len(),
                gateways = gateways.len(),
                "alerts raised"
            );
        }
        Ok(raised)
    }

    /// Attempt every delivery that is due (to a webhook still configured).
    pub async fn deliver(&self) -> Result<CheckReport, AlertError> {
        let mut report = CheckReport::default();
        if self.ids.is_empty() {
            return Ok(report);
        }
        // The lease outlasts one request, so a slow receiver is not posted to twice.
        let lease = self.config.request_timeout + Duration::from_secs(30);
        let due = alerts::claim_due(&self.pool, &self.ids, lease, DELIVER_LIMIT).await?;
        for d in due {
            let Some(hook) = self.config.webhooks.iter().find(|w| w.id == d.webhook) else {
                continue;
            };
            let attempt_no = u32::try_from(d.attempts).unwrap_or(0).saturating_add(1);
            let outcome = self.post(hook, d.notification_id, &d.payload).await;
            let attempt = match outcome {
                Ok(()) => Attempt::Delivered,
                Err(Failure { error, permanent }) => {
                    if permanent || attempt_no >= self.config.retry.max_attempts {
                        Attempt::GiveUp { error }
                    } else {
                        let after = self.config.retry.delay(attempt_no, rand::random());
                        Attempt::Retry { error, after }
                    }
                }
            };
            match &attempt {
                Attempt::Delivered => {
                    report.delivered += 1;
                    tracing::info!(notification = d.notification_id, webhook = %hook.id, attempt = attempt_no, "alert delivered");
                }
                Attempt::Retry { error, after } => {
                    report.retrying += 1;
                    tracing::warn!(notification = d.notification_id, webhook = %hook.id, attempt = attempt_no, %error, retry_in_seconds = after.as_secs_f64(), "alert delivery failed, will retry");
                }
                Attempt::GiveUp { error } => {
                    report.given_up += 1;
                    tracing::error!(notification = d.notification_id, webhook = %hook.id, attempt = attempt_no, %error, "alert delivery failed, giving up");
                }
            }
            alerts::record_attempt(&self.pool, d.notification_id, &d.webhook, &attempt).await?;
        }
        Ok(report)
    }

    async fn post(&self, hook: &Webhook, id: i64, body: &serde_json::Value) -> Result<(), Failure> {
        let res = self
            .client
            .post(hook.url.clone())
            .header("idempotency-key", format!("sluice-alert-{id}"))
            .json(body)
            .send()
            .await
            .map_err(|e| Failure {
                // The URL may hold the webhook's secret: never in an error message.
                error: e.without_url().to_string(),
                permanent: false,
            })?;
        let status = res.status();
        if status.is_success() {
            return Ok(());
        }
        let text = res.text().await.unwrap_or_default();
        let snippet: String = text.chars().take(200).collect();
        Err(Failure {
            error: format!("HTTP {}: {}", status.as_u16(), snippet.trim()),
            // A receiver that refuses the request itself (bad URL or token, 4xx) will refuse it
            // again; timeouts, throttling and server errors are worth another try.
            permanent: status.is_client_error()
                && status != StatusCode::REQUEST_TIMEOUT
                && status != StatusCode::TOO_MANY_REQUESTS,
        })
    }
}

struct Failure {
    error: String,
    permanent: bool,
}

/// One notification per thing, or one digest when there are more than [`DIGEST_OVER`].
fn group<T>(
    items: &[T],
    subject: impl Fn(&T) -> String,
    payload: impl Fn(&[T]) -> serde_json::Value,
) -> Vec<(Vec<String>, serde_json::Value)> {
    if items.is_empty() {
        return Vec::new();
    }
    if items.len() > DIGEST_OVER {
        return vec![(items.iter().map(&subject).collect(), payload(items))];
    }
    items
        .iter()
        .enumerate()
        .map(|(i, it)| (vec![subject(it)], payload(&items[i..=i])))
        .collect()
}

/// Run [`Alerter::check`] every `check_every` until aborted; errors are logged, never fatal.
pub fn spawn(alerter: Alerter) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(alerter.config.check_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = alerter.check().await {
                tracing::warn!(error = %e, "alert check failed");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (s, secs) in [
            ("90", 90),
            ("90s", 90),
            ("5m", 300),
            ("1h", 3600),
            ("1h30m", 5400),
            ("2d", 172_800),
            (" 0s ", 0),
        ] {
            assert_eq!(parse_duration(s).unwrap(), Duration::from_secs(secs), "{s}");
        }
        for bad in ["", "h", "1x", "1h30", "-5m", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn back_off_doubles_is_capped_and_jittered_within_half() {
        let p = RetryPolicy {
            max_attempts: 12,
            base: Duration::from_secs(5),
            max_delay: Duration::from_secs(60),
        };
        assert_eq!(p.delay(1, 1.0), Duration::from_secs(5));
        assert_eq!(p.delay(1, 0.0), Duration::from_millis(2500));
        assert_eq!(p.delay(3, 1.0), Duration::from_secs(20));
        assert_eq!(p.delay(10, 1.0), Duration::from_secs(60));
        assert_eq!(p.delay(64, 0.0), Duration::from_secs(30));
        let total: f64 = (1..p.max_attempts)
            .map(|a| p.delay(a, 1.0).as_secs_f64())
            .sum();
        assert!(total <= 60.0 * 12.0);
    }

    #[test]
    fn webhook_ids_hide_the_path() {
        let w = Webhook::parse("https://hooks.slack.com/services/T000/B000/SECRETSECRET").unwrap();
        assert!(
            w.id().starts_with("https://hooks.slack.com/#"),
            "{}",
            w.id()
        );
        assert!(!w.id().contains("SECRET"));
        assert!(!format!("{w:?}").contains("SECRET"));
        let local = Webhook::parse("http://127.0.0.1:9000/hook").unwrap();
        assert!(local.id().starts_with("http://127.0.0.1:9000/#"));
        assert_ne!(
            w.id(),
            Webhook::parse("https://hooks.slack.com/services/T000/B000/OTHER")
                .unwrap()
                .id()
        );
        let e = Webhook::parse("ftp://example.com/SECRET")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("only http and https") && !e.contains("SECRET"),
            "{e}"
        );
        assert!(Webhook::parse("not a url").is_err());
    }

    #[test]
    fn more_than_five_things_make_one_digest() {
        let few: Vec<u32> = (0..5).collect();
        let g = group(&few, |i| format!("t:{i}"), |s| serde_json::json!(s.len()));
        assert_eq!(g.len(), 5);
        assert_eq!(g[2], (vec!["t:2".to_owned()], serde_json::json!(1)));
        let many: Vec<u32> = (0..6).collect();
        let g = group(&many, |i| format!("t:{i}"), |s| serde_json::json!(s.len()));
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].0.len(), 6);
        assert_eq!(g[0].1, serde_json::json!(6));
    }
}
