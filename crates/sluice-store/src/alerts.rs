//! The database side of alert webhooks (`sluice-alerts`): which conditions are due (a
//! high-severity anomaly open, a suggestion pending too long, a gateway behind its policy too
//! long), recording a notification together with the things it covers (unique per thing, so each
//! is notified once, across restarts), and the delivery of each notification to each webhook with
//! its attempts, last error and back-off. Every time here is the database's wall clock (`now()`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};

use crate::error::Result;
use crate::metrics::{GATEWAY_SERVED_SQL, HIGH_SEVERITY_SCORE};

/// What an alert is about. The strings are the `kind` column's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// An open anomaly with a score at or above [`HIGH_SEVERITY_SCORE`] (the same notion as the
    /// gauge `sluice_anomalies_open_high_severity`).
    AnomalyHighSeverity,
    /// A limit suggestion pending for longer than the configured wait.
    SuggestionWaiting,
    /// A gateway behind the version its group is served, for longer than the configured lag.
    GatewayBehind,
}

impl AlertKind {
    pub const ALL: [AlertKind; 3] = [
        AlertKind::AnomalyHighSeverity,
        AlertKind::SuggestionWaiting,
        AlertKind::GatewayBehind,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::AnomalyHighSeverity => "anomaly_high_severity",
            AlertKind::SuggestionWaiting => "suggestion_waiting",
            AlertKind::GatewayBehind => "gateway_behind",
        }
    }

    /// `critical` for anomalies (someone may be abusing the API now), `warning` otherwise.
    pub fn severity(self) -> &'static str {
        match self {
            AlertKind::AnomalyHighSeverity => "critical",
            _ => "warning",
        }
    }
}

/// An open high-severity anomaly not yet notified. Detection times are log time.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct DueAnomaly {
    pub id: i64,
    pub client_kind: String,
    pub client: String,
    pub kind: String,
    /// Rounded to 4 decimals (stored as `real`; as JSON, `0.91` rather than `0.910000026`).
    pub score: f64,
    pub first_detected: DateTime<Utc>,
    pub last_flagged: DateTime<Utc>,
    pub campaign: Option<String>,
    pub member_count: i32,
}

impl DueAnomaly {
    pub fn subject(&self) -> String {
        format!("anomaly:{}", self.id)
    }
}

/// A suggestion pending since before the wait, not yet notified. `created_wall` is when it was
/// stored (wall clock): how long no administrator has decided it.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct DueSuggestion {
    pub id: i64,
    pub rule_id: String,
    pub client: Option<String>,
    pub abusive: bool,
    pub confidence: f64,
    pub created_wall: DateTime<Utc>,
    pub waited_seconds: f64,
}

impl DueSuggestion {
    pub fn subject(&self) -> String {
        format!("suggestion:{}", self.id)
    }
}

/// A gateway seen behind its policy since `observed_at` (wall clock, by the alerter) for at least
/// the lag, not yet notified for this stretch (the stretch is keyed by the version it applied).
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct DueGateway {
    pub gateway: String,
    pub group: String,
    /// None when it never reported an applied version.
    pub applied_version: Option<i64>,
    pub served_version: i64,
    pub observed_at: DateTime<Utc>,
    pub behind_seconds: f64,
    pub seconds_since_report: f64,
    pub last_error: Option<String>,
}

impl DueGateway {
    pub fn subject(&self) -> String {
        gateway_subject(&self.gateway, self.applied_version)
    }
}

fn gateway_subject(gateway: &str, applied: Option<i64>) -> String {
    match applied {
        Some(v) => format!("gateway:{gateway}@{v}"),
        None => format!("gateway:{gateway}@none"),
    }
}

/// One check of the alert conditions: a transaction holding an advisory lock, so two servers on
/// one database never raise the same alert twice. Read the due things, [`Raise::record`] the
/// notifications, then [`Raise::commit`].
pub struct Raise {
    tx: Transaction<'static, Postgres>,
}

/// Advisory lock key of the alert check (any constant unlikely to clash).
const ALERT_LOCK: i64 = 0x5110_CEA1_E475;

impl Raise {
    pub async fn begin(pool: &PgPool) -> Result<Raise> {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(ALERT_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(Raise { tx })
    }

    /// Open anomalies at or above [`HIGH_SEVERITY_SCORE`] without an alert, oldest first.
    pub async fn due_anomalies(&mut self, limit: i64) -> Result<Vec<DueAnomaly>> {
        Ok(sqlx::query_as(
            "SELECT a.id, a.client_kind, a.client, a.kind, round(a.score::numeric, 4)::float8 AS score,
                    a.first_detected,
                    a.last_flagged, a.campaign, a.member_count
               FROM anomalies a
              WHERE a.state = 'open' AND a.score >= $1
                AND NOT EXISTS (SELECT 1 FROM alerts x
                                 WHERE x.kind = 'anomaly_high_severity'
                                   AND x.subject = 'anomaly:' || a.id)
              ORDER BY a.id LIMIT $2",
        )
        .bind(HIGH_SEVERITY_SCORE)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    /// Suggestions pending since longer than `wait` (wall clock) without an alert, oldest first.
    pub async fn due_suggestions(
        &mut self,
        wait: Duration,
        limit: i64,
    ) -> Result<Vec<DueSuggestion>> {
        Ok(sqlx::query_as(
            "SELECT s.id, s.rule_id, s.client, s.abusive, s.confidence, s.created_wall,
                    EXTRACT(EPOCH FROM now() - s.created_wall)::float8 AS waited_seconds
               FROM limit_suggestions s
              WHERE s.state = 'pending'
                AND s.created_wall <= now() - make_interval(secs => $1)
                AND NOT EXISTS (SELECT 1 FROM alerts x
                                 WHERE x.kind = 'suggestion_waiting'
                                   AND x.subject = 'suggestion:' || s.id)
              ORDER BY s.id LIMIT $2",
        )
        .bind(wait.as_secs_f64())
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    /// Track lagging gateways and return those behind for at least `lag` without an alert.
    ///
    /// A gateway behind now gets an observation row (first time only); observations of gateways
    /// no longer behind at that applied version, and not notified, are deleted, so a gateway that
    /// catches up within the lag never alerts and its next stretch starts afresh.
    pub async fn due_gateways(&mut self, lag: Duration, limit: i64) -> Result<Vec<DueGateway>> {
        let behind: Vec<(String, Option<i64>)> = sqlx::query_as(&format!(
            "SELECT gateway, applied FROM ({GATEWAY_SERVED_SQL}) s
              WHERE served IS NOT NULL AND (applied IS NULL OR served > applied)"
        ))
        .fetch_all(&mut *self.tx)
        .await?;
        let subjects: Vec<String> = behind.iter().map(|(g, a)| gateway_subject(g, *a)).collect();
        sqlx::query(
            "DELETE FROM alerts WHERE kind = 'gateway_behind' AND notification_id IS NULL
                AND NOT (subject = ANY($1))",
        )
        .bind(&subjects)
        .execute(&mut *self.tx)
        .await?;
        sqlx::query(
            "INSERT INTO alerts (kind, subject)
             SELECT 'gateway_behind', s FROM unnest($1::text[]) AS s
             ON CONFLICT (kind, subject) DO NOTHING",
        )
        .bind(&subjects)
        .execute(&mut *self.tx)
        .await?;
        Ok(sqlx::query_as(&format!(
            "SELECT s.gateway, s.grp AS \"group\", s.applied AS applied_version,
                    s.served AS served_version, x.observed_at,
                    EXTRACT(EPOCH FROM now() - x.observed_at)::float8 AS behind_seconds,
                    greatest(s.since, 0) AS seconds_since_report, g.last_error
               FROM ({GATEWAY_SERVED_SQL}) s
               JOIN gateways g ON g.id = s.gateway
               JOIN alerts x ON x.kind = 'gateway_behind'
                AND x.subject = 'gateway:' || s.gateway || '@' || COALESCE(s.applied::text, 'none')
              WHERE s.served IS NOT NULL AND (s.applied IS NULL OR s.served > s.applied)
                AND x.notification_id IS NULL
                AND x.observed_at <= now() - make_interval(secs => $1)
              ORDER BY s.gateway LIMIT $2"
        ))
        .bind(lag.as_secs_f64())
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    /// Record one notification covering `subjects` (things of `kind`), with a delivery due now
    /// for each webhook. The stored payload gets the notification's `id` added. Returns the id.
    pub async fn record(
        &mut self,
        kind: AlertKind,
        subjects: &[String],
        payload: &serde_json::Value,
        webhooks: &[String],
    ) -> Result<i64> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO alert_notifications (kind, severity, payload)
             VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(kind.as_str())
        .bind(kind.severity())
        .bind(payload)
        .fetch_one(&mut *self.tx)
        .await?;
        sqlx::query(
            "UPDATE alert_notifications SET payload = payload || jsonb_build_object('id', id)
              WHERE id = $1",
        )
        .bind(id)
        .execute(&mut *self.tx)
        .await?;
        sqlx::query(
            "INSERT INTO alerts (kind, subject, notification_id)
             SELECT $1, s, $3 FROM unnest($2::text[]) AS s
             ON CONFLICT (kind, subject) DO UPDATE SET notification_id = EXCLUDED.notification_id
              WHERE alerts.notification_id IS NULL",
        )
        .bind(kind.as_str())
        .bind(subjects)
        .bind(id)
        .execute(&mut *self.tx)
        .await?;
        sqlx::query(
            "INSERT INTO alert_deliveries (notification_id, webhook)
             SELECT $1, w FROM unnest($2::text[]) AS w",
        )
        .bind(id)
        .bind(webhooks)
        .execute(&mut *self.tx)
        .await?;
        Ok(id)
    }

    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// A delivery whose attempt is due, claimed for this attempt.
#[derive(Clone, Debug, PartialEq)]
pub struct DueDelivery {
    pub notification_id: i64,
    pub webhook: String,
    /// Attempts made before this one.
    pub attempts: i32,
    pub payload: serde_json::Value,
}

/// Claim up to `limit` deliveries due now to one of `webhooks`: their next attempt moves `lease`
/// ahead, so another server (or a crashed attempt) does not post them again before then.
pub async fn claim_due(
    pool: &PgPool,
    webhooks: &[String],
    lease: Duration,
    limit: i64,
) -> Result<Vec<DueDelivery>> {
    let rows: Vec<(i64, String, i32, serde_json::Value)> = sqlx::query_as(
        "WITH due AS (
             SELECT notification_id, webhook FROM alert_deliveries
              WHERE delivered_at IS NULL AND gave_up_at IS NULL
                AND next_attempt_at <= now() AND webhook = ANY($1)
              ORDER BY next_attempt_at, notification_id
              LIMIT $3 FOR UPDATE SKIP LOCKED)
         UPDATE alert_deliveries d SET next_attempt_at = now() + make_interval(secs => $2)
           FROM due, alert_notifications n
          WHERE d.notification_id = due.notification_id AND d.webhook = due.webhook
            AND n.id = d.notification_id
         RETURNING d.notification_id, d.webhook, d.attempts, n.payload",
    )
    .bind(webhooks)
    .bind(lease.as_secs_f64())
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut out: Vec<DueDelivery> = rows
        .into_iter()
        .map(
            |(notification_id, webhook, attempts, payload)| DueDelivery {
                notification_id,
                webhook,
                attempts,
                payload,
            },
        )
        .collect();
    out.sort_by_key(|d| d.notification_id);
    Ok(out)
}

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Attempt {
    Delivered,
    /// Failed; try again after this long.
    Retry {
        error: String,
        after: Duration,
    },
    /// Failed for good (a permanent refusal, or the last attempt allowed).
    GiveUp {
        error: String,
    },
}

/// Record one attempt of a claimed delivery.
pub async fn record_attempt(
    pool: &PgPool,
    notification_id: i64,
    webhook: &str,
    attempt: &Attempt,
) -> Result<()> {
    let (error, retry_after, delivered, gave_up) = match attempt {
        Attempt::Delivered => (None, None, true, false),
        Attempt::Retry { error, after } => (
            Some(error.as_str()),
            Some(after.as_secs_f64()),
            false,
            false,
        ),
        Attempt::GiveUp { error } => (Some(error.as_str()), None, false, true),
    };
    sqlx::query(
        "UPDATE alert_deliveries SET
             attempts = attempts + 1,
             last_attempt_at = now(),
             last_error = COALESCE($3, last_error),
             next_attempt_at = CASE WHEN $4::float8 IS NULL THEN next_attempt_at
                                    ELSE now() + make_interval(secs => $4) END,
             delivered_at = CASE WHEN $5 THEN now() END,
             gave_up_at = CASE WHEN $6 THEN now() END
          WHERE notification_id = $1 AND webhook = $2",
    )
    .bind(notification_id)
    .bind(webhook)
    .bind(error)
    .bind(retry_after)
    .bind(delivered)
    .bind(gave_up)
    .execute(pool)
    .await?;
    Ok(())
}

/// A delivery as stored, for status views and tests.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct DeliveryStatus {
    pub notification_id: i64,
    pub kind: String,
    pub webhook: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub gave_up_at: Option<DateTime<Utc>>,
    /// The subjects the notification covers, sorted.
    pub subjects: Vec<String>,
}

/// Every delivery, newest notification first, at most `limit`.
pub async fn deliveries(pool: &PgPool, limit: i64) -> Result<Vec<DeliveryStatus>> {
    Ok(sqlx::query_as(
        "SELECT d.notification_id, n.kind, d.webhook, d.attempts, d.last_error,
                d.last_attempt_at, d.delivered_at, d.gave_up_at,
                ARRAY(SELECT subject FROM alerts x WHERE x.notification_id = n.id
                       ORDER BY subject) AS subjects
           FROM alert_deliveries d JOIN alert_notifications n ON n.id = d.notification_id
          ORDER BY d.notification_id DESC, d.webhook LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?)
}
