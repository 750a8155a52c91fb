//! The write side of detection: reading committed records back in log-time order, the detection
//! cursor, per-client minute features, anomalies with their members, and the model registry.
//!
//! Invariants: anomalies are keyed by (client kind, client, kind, first detected), so a replayed
//! or restarted detector updates what it found before instead of duplicating it; the cursor only
//! moves forward.

use std::borrow::Cow;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sluice_core::{AccessRecord, ClientId, ClientKind, Timestamp};
use sqlx::types::ipnetwork::IpNetwork;
use sqlx::PgPool;

use crate::error::Result;

pub(crate) fn to_chrono(t: Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.micros()).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

pub(crate) fn from_chrono(t: DateTime<Utc>) -> Timestamp {
    Timestamp::from_micros(t.timestamp_micros())
}

/// The newest log time committed by any source (the ingestion watermark), if anything was.
pub async fn global_watermark(pool: &PgPool) -> Result<Option<Timestamp>> {
    let row: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT max(max_ts) FROM ingest_watermarks")
            .fetch_one(pool)
            .await?;
    Ok(row.map(from_chrono))
}

/// The oldest log time of any committed batch (where live detection starts on a new database).
pub async fn oldest_batch_time(pool: &PgPool) -> Result<Option<Timestamp>> {
    let row: Option<DateTime<Utc>> = sqlx::query_scalar("SELECT min(min_ts) FROM ingest_batches")
        .fetch_one(pool)
        .await?;
    Ok(row.map(from_chrono))
}

/// The log-time span of the committed batches of these sources (`None` when there is none).
pub async fn batch_bounds(
    pool: &PgPool,
    sources: &[String],
) -> Result<Option<(Timestamp, Timestamp)>> {
    let row: (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT min(min_ts), max(max_ts) FROM ingest_batches WHERE source = ANY($1)",
    )
    .bind(sources)
    .fetch_one(pool)
    .await?;
    Ok(match row {
        (Some(a), Some(b)) => Some((from_chrono(a), from_chrono(b))),
        _ => None,
    })
}

/// The oldest and newest record time in `[from, to)` (both `None` when there is none).
pub async fn record_bounds(
    pool: &PgPool,
    from: Timestamp,
    to: Timestamp,
) -> Result<Option<(Timestamp, Timestamp)>> {
    let row: (Option<DateTime<Utc>>, Option<DateTime<Utc>>) =
        sqlx::query_as("SELECT min(ts), max(ts) FROM access_log WHERE ts >= $1 AND ts < $2")
            .bind(to_chrono(from))
            .bind(to_chrono(to))
            .fetch_one(pool)
            .await?;
    Ok(match row {
        (Some(a), Some(b)) => Some((from_chrono(a), from_chrono(b))),
        _ => None,
    })
}

/// Committed records with a client in `[from, to)`, oldest first, with the fields detection
/// reads (time, client, route, path, method, status, bytes, latency, IP, user agent).
pub async fn read_records(
    pool: &PgPool,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<AccessRecord<'static>>> {
    type Row = (
        i64,
        String,
        String,
        String,
        String,
        Option<String>,
        i16,
        Option<i64>,
        Option<i64>,
        Option<IpNetwork>,
        Option<String>,
    );
    let mut rows = sqlx::query_as::<_, Row>(
        "SELECT (extract(epoch FROM ts) * 1000000)::int8, client_kind, client, route, path, method, \
                status, bytes_sent, latency_us, ip, user_agent \
         FROM access_log WHERE ts >= $1 AND ts < $2 AND client IS NOT NULL ORDER BY ts",
    )
    .bind(to_chrono(from))
    .bind(to_chrono(to))
    .fetch(pool);
    let mut out = Vec::new();
    while let Some((ts, kind, client, route, path, method, status, bytes, latency, ip, ua)) =
        rows.try_next().await?
    {
        let Ok(kind) = kind.parse::<ClientKind>() else {
            continue;
        };
        out.push(AccessRecord {
            ts: Timestamp::from_micros(ts),
            client: Some(ClientId {
                kind,
                value: Cow::Owned(client),
            }),
            route: Some(Cow::Owned(route)),
            path: Cow::Owned(path),
            method: method.map(Cow::Owned),
            status: u16::try_from(status).unwrap_or(0),
            bytes_sent: bytes.and_then(|b| u64::try_from(b).ok()),
            latency_us: latency.and_then(|l| u64::try_from(l).ok()),
            ip: ip.map(|n| -> IpAddr { n.ip() }),
            user_agent: ua.map(Cow::Owned),
            ..AccessRecord::default()
        });
    }
    Ok(out)
}

/// Minutes before the returned instant are scored and final.
pub async fn cursor(pool: &PgPool) -> Result<Option<Timestamp>> {
    let row: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT scored_until FROM detection_cursor")
            .fetch_optional(pool)
            .await?;
    Ok(row.map(from_chrono))
}

/// Move the cursor forward (never back).
pub async fn advance_cursor(pool: &PgPool, scored_until: Timestamp) -> Result<()> {
    sqlx::query(
        "INSERT INTO detection_cursor (id, scored_until) VALUES (true, $1) \
         ON CONFLICT (id) DO UPDATE SET scored_until = greatest(detection_cursor.scored_until, \
         EXCLUDED.scored_until), updated_at = now()",
    )
    .bind(to_chrono(scored_until))
    .execute(pool)
    .await?;
    Ok(())
}

/// One client's closed minute, as stored in `client_minute_features`.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureRow {
    pub client_kind: ClientKind,
    pub client: String,
    pub minute: Timestamp,
    pub requests: i32,
    pub peak_10s: i32,
    pub distinct_routes: i32,
    pub distinct_paths: i32,
    pub distinct_ips: i32,
    pub distinct_uas: i32,
    pub route_entropy: f32,
    pub error_share: f32,
    pub status_401: i32,
    pub status_403: i32,
    pub status_404: i32,
    pub status_429: i32,
    pub status_5xx: i32,
    pub bytes_sent: i64,
    pub latency_mean_us: Option<f32>,
    pub inter_arrival_cv: Option<f32>,
    pub expected_requests: Option<f32>,
    pub score: Option<f32>,
}

/// Store minute features (replacing rows of the same client and minute), in one statement.
pub async fn write_features(pool: &PgPool, rows: &[FeatureRow]) -> Result<()> {
    for chunk in rows.chunks(20_000) {
        macro_rules! col {
            ($f:expr) => {
                chunk.iter().map($f).collect::<Vec<_>>()
            };
        }
        sqlx::query(
            "INSERT INTO client_minute_features (client_kind, client, minute, requests, peak_10s, \
                 distinct_routes, distinct_paths, distinct_ips, distinct_uas, route_entropy, \
                 error_share, status_401, status_403, status_404, status_429, status_5xx, \
                 bytes_sent, latency_mean_us, inter_arrival_cv, expected_requests, score) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], $4::int4[], \
                 $5::int4[], $6::int4[], $7::int4[], $8::int4[], $9::int4[], $10::float4[], \
                 $11::float4[], $12::int4[], $13::int4[], $14::int4[], $15::int4[], $16::int4[], \
                 $17::int8[], $18::float4[], $19::float4[], $20::float4[], $21::float4[]) \
             ON CONFLICT (client_kind, client, minute) DO UPDATE SET \
                 requests = EXCLUDED.requests, peak_10s = EXCLUDED.peak_10s, \
                 distinct_routes = EXCLUDED.distinct_routes, \
                 distinct_paths = EXCLUDED.distinct_paths, distinct_ips = EXCLUDED.distinct_ips, \
                 distinct_uas = EXCLUDED.distinct_uas, route_entropy = EXCLUDED.route_entropy, \
                 error_share = EXCLUDED.error_share, status_401 = EXCLUDED.status_401, \
                 status_403 = EXCLUDED.status_403, status_404 = EXCLUDED.status_404, \
                 status_429 = EXCLUDED.status_429, status_5xx = EXCLUDED.status_5xx, \
                 bytes_sent = EXCLUDED.bytes_sent, latency_mean_us = EXCLUDED.latency_mean_us, \
                 inter_arrival_cv = EXCLUDED.inter_arrival_cv, \
                 expected_requests = EXCLUDED.expected_requests, score = EXCLUDED.score",
        )
        .bind(col!(|r| r.client_kind.as_str()))
        .bind(col!(|r| r.client.as_str()))
        .bind(col!(|r| to_chrono(r.minute)))
        .bind(col!(|r| r.requests))
        .bind(col!(|r| r.peak_10s))
        .bind(col!(|r| r.distinct_routes))
        .bind(col!(|r| r.distinct_paths))
        .bind(col!(|r| r.distinct_ips))
        .bind(col!(|r| r.distinct_uas))
        .bind(col!(|r| r.route_entropy))
        .bind(col!(|r| r.error_share))
        .bind(col!(|r| r.status_401))
        .bind(col!(|r| r.status_403))
        .bind(col!(|r| r.status_404))
        .bind(col!(|r| r.status_429))
        .bind(col!(|r| r.status_5xx))
        .bind(col!(|r| r.bytes_sent))
        .bind(col!(|r| r.latency_mean_us))
        .bind(col!(|r| r.inter_arrival_cv))
        .bind(col!(|r| r.expected_requests))
        .bind(col!(|r| r.score))
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// An anomaly as stored; `reasons` is the JSON array of `{feature, observed, expected}`.
#[derive(Clone, Debug, PartialEq)]
pub struct AnomalyRow {
    pub client_kind: ClientKind,
    pub client: String,
    pub kind: String,
    pub score: f32,
    pub first_detected: Timestamp,
    pub last_flagged: Timestamp,
    pub open: bool,
    pub reasons: serde_json::Value,
    pub campaign: Option<String>,
    /// Every identity the anomaly names (the client itself, or all campaign members): what
    /// lookups by client search.
    pub members: Vec<(ClientKind, String)>,
    /// Campaign members (0 for a single client).
    pub member_count: usize,
    pub model_version: Option<i64>,
}

/// Insert or update an anomaly (keyed by client, kind and first detection) and its members, in
/// one transaction; returns its id.
pub async fn upsert_anomaly(pool: &PgPool, a: &AnomalyRow) -> Result<i64> {
    let mut tx = pool.begin().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO anomalies (client_kind, client, kind, score, first_detected, last_flagged, \
             state, reasons, campaign, member_count, model_version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (client_kind, client, kind, first_detected) DO UPDATE SET \
             score = greatest(anomalies.score, EXCLUDED.score), \
             last_flagged = greatest(anomalies.last_flagged, EXCLUDED.last_flagged), \
             state = EXCLUDED.state, reasons = EXCLUDED.reasons, campaign = EXCLUDED.campaign, \
             member_count = greatest(anomalies.member_count, EXCLUDED.member_count), \
             model_version = coalesce(EXCLUDED.model_version, anomalies.model_version) \
         RETURNING id",
    )
    .bind(a.client_kind.as_str())
    .bind(&a.client)
    .bind(&a.kind)
    .bind(a.score.clamp(0.0, 1.0))
    .bind(to_chrono(a.first_detected))
    .bind(to_chrono(a.last_flagged))
    .bind(if a.open { "open" } else { "resolved" })
    .bind(&a.reasons)
    .bind(&a.campaign)
    .bind(i32::try_from(a.member_count).unwrap_or(i32::MAX))
    .bind(a.model_version)
    .fetch_one(&mut *tx)
    .await?;
    if !a.members.is_empty() {
        let kinds: Vec<&str> = a.members.iter().map(|(k, _)| k.as_str()).collect();
        let values: Vec<&str> = a.members.iter().map(|(_, v)| v.as_str()).collect();
        sqlx::query(
            "INSERT INTO anomaly_members (anomaly_id, client_kind, client) \
             SELECT $1, k, v FROM UNNEST($2::text[], $3::text[]) AS m(k, v) \
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(&kinds)
        .bind(&values)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(id)
}

/// A trained model to record in the registry.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelEntry {
    pub kind: String,
    pub trained_from: Timestamp,
    pub trained_to: Timestamp,
    pub features: Vec<String>,
    pub config: serde_json::Value,
    pub metrics: serde_json::Value,
    pub training_ms: f64,
}

/// Record a model under the next version of its kind. `artefact` names the exported file, given
/// the version (the caller writes the file). Returns the version.
pub async fn register_model(
    pool: &PgPool,
    m: &ModelEntry,
    artefact: impl FnOnce(i32) -> Option<String>,
) -> Result<i32> {
    let mut tx = pool.begin().await?;
    // Serialise versioning per kind.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('model_registry:' || $1))")
        .bind(&m.kind)
        .execute(&mut *tx)
        .await?;
    let version: i32 = sqlx::query_scalar(
        "SELECT coalesce(max(version), 0) + 1 FROM model_registry WHERE kind = $1",
    )
    .bind(&m.kind)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO model_registry (kind, version, trained_from, trained_to, features, config, \
             metrics, artefact, training_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&m.kind)
    .bind(version)
    .bind(to_chrono(m.trained_from))
    .bind(to_chrono(m.trained_to))
    .bind(&m.features)
    .bind(&m.config)
    .bind(&m.metrics)
    .bind(artefact(version))
    .bind(m.training_ms)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(version)
}

/// A registry entry as listed by `sluice models`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RegisteredModel {
    pub kind: String,
    pub version: i32,
    pub trained_from: DateTime<Utc>,
    pub trained_to: DateTime<Utc>,
    pub features: Vec<String>,
    pub metrics: serde_json::Value,
    pub artefact: Option<String>,
    pub training_ms: f64,
}

/// The newest `limit` registry entries, newest first.
pub async fn list_models(pool: &PgPool, limit: i64) -> Result<Vec<RegisteredModel>> {
    type Row = (
        String,
        i32,
        DateTime<Utc>,
        DateTime<Utc>,
        Vec<String>,
        serde_json::Value,
        Option<String>,
        f64,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT kind, version, trained_from, trained_to, features, metrics, artefact, training_ms \
         FROM model_registry ORDER BY created_at DESC, id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(
                kind,
                version,
                trained_from,
                trained_to,
                features,
                metrics,
                artefact,
                training_ms,
            )| {
                RegisteredModel {
                    kind,
                    version,
                    trained_from,
                    trained_to,
                    features,
                    metrics,
                    artefact,
                    training_ms,
                }
            },
        )
        .collect())
}
