//! `POST /v1/logs` (gateways ship access logs) and `GET /v1/logs/rejects` (what could not be
//! parsed, and why).

use std::io::Read;
use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use sluice_core::Role;
use sluice_engine::ingest::{batch_from_body, FormatChoice, Pipeline};
use sluice_logs::FormatName;
use sluice_store::ingest::{StoredReject, WriteOutcome};
use sluice_store::StoreError;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct LogsQuery {
    /// nginx, apache, envoy, envoy-json, kong, ndjson or auto (default).
    pub format: Option<String>,
    /// nginx `log_format`, Apache `LogFormat` or Envoy format string.
    pub log_format: Option<String>,
    /// Source (gateway) name for records that carry none; default: the token's name.
    pub source: Option<String>,
}

/// The answer to a shipped batch: the same counts `sluice ingest --json` prints.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogsResponse {
    pub read: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub batch_id: i64,
    /// True when this Idempotency-Key was committed before: nothing was stored again.
    pub duplicate: bool,
    pub format: String,
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A malformed query string answers problem+json like every other error, not axum's plain text.
pub(crate) fn bad_query(e: QueryRejection) -> ApiError {
    let text = e.body_text();
    let why = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text);
    ApiError::BadRequest(format!("invalid query string: {why}"))
}

/// A job for the ingest writers: the batch and where to send the outcome.
pub(crate) type Job = (
    sluice_store::EncodedBatch,
    tokio::sync::oneshot::Sender<Result<WriteOutcome, StoreError>>,
);

pub async fn post_logs(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    q: Result<Query<LogsQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<LogsResponse>> {
    who.require(Role::Gateway, "ship logs")?;
    let Query(q) = q.map_err(bad_query)?;
    let limits = &state.config;
    let raw = to_bytes(body, limits.max_body_bytes)
        .await
        .map_err(|_| ApiError::TooLarge {
            limit: limits.max_body_bytes,
            what: "",
        })?;
    let body = match header_str(&headers, header::CONTENT_ENCODING.as_str()) {
        None | Some("identity") => raw.to_vec(),
        Some(enc) if enc.eq_ignore_ascii_case("gzip") || enc.eq_ignore_ascii_case("x-gzip") => {
            let mut out = Vec::new();
            let limit = limits.max_decompressed_bytes;
            let n = flate2::read::MultiGzDecoder::new(&raw[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| ApiError::BadRequest(format!("invalid gzip body: {e}")))?;
            if n > limit {
                return Err(ApiError::TooLarge {
                    limit,
                    what: " after gzip decompression",
                });
            }
            out
        }
        Some(other) => return Err(ApiError::UnsupportedEncoding(other.to_owned())),
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "request body is empty: send log lines, NDJSON or a JSON array".into(),
        ));
    }

    let format = q
        .format
        .as_deref()
        .or_else(|| header_str(&headers, "x-sluice-format"))
        .unwrap_or(state.config.default_format.as_str());
    let name: FormatName = format
        .parse()
        .map_err(|e: sluice_logs::UnknownFormat| ApiError::BadRequest(e.to_string()))?;
    let choice = FormatChoice {
        name,
        log_format: q
            .log_format
            .clone()
            .or_else(|| header_str(&headers, "x-sluice-log-format").map(str::to_owned)),
    };
    let source = q
        .source
        .clone()
        .or_else(|| header_str(&headers, "x-sluice-source").map(str::to_owned))
        .unwrap_or_else(|| who.name.clone());
    let key = header_str(&headers, "idempotency-key").map(|k| format!("http:{}:{k}", who.token_id));

    let enrich = state.enrich.clone();
    let batch = tokio::task::spawn_blocking(move || {
        let pipeline = Pipeline::resolve(&choice, &body, enrich)
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        Ok::<_, ApiError>(batch_from_body(&pipeline, &body, &source, key))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("parser task failed: {e}")))??;
    let format = batch.format.clone();
    let statuses = status_classes(&batch);
    let source = batch.source.clone();

    let (tx, rx) = tokio::sync::oneshot::channel();
    let queued = std::time::Instant::now();
    state
        .ingest_queue
        .try_send((batch, tx))
        .map_err(|e| match e {
            tokio::sync::mpsc::error::TrySendError::Full(_) => {
                metrics::counter!("sluice_ingest_batches_total", "outcome" => "queue_full")
                    .increment(1);
                ApiError::QueueFull {
                    capacity: state.config.queue_capacity,
                    retry_after_s: 1,
                }
            }
            tokio::sync::mpsc::error::TrySendError::Closed(_) => {
                ApiError::Internal("ingest writers stopped".into())
            }
        })?;
    let outcome = rx
        .await
        .map_err(|_| ApiError::Internal("ingest writer dropped the batch".into()))?
        .inspect_err(|_| {
            metrics::counter!("sluice_ingest_batches_total", "outcome" => "error").increment(1);
        })?;
    metrics::histogram!("sluice_ingest_batch_seconds").record(queued.elapsed());
    let (batch_id, duplicate) = match outcome {
        WriteOutcome::Committed { batch_id, .. } => (batch_id, false),
        WriteOutcome::Duplicate { batch_id, .. } => (batch_id, true),
    };
    let c = outcome.counts();
    record_batch(&format, &source, duplicate, c, &statuses);
    Ok(Json(LogsResponse {
        read: c.read,
        accepted: c.accepted,
        rejected: c.rejected,
        batch_id,
        duplicate,
        format,
    }))
}

/// Status classes of `sluice_ingested_requests_total`, in the order of the rollup counters
/// (slots 1 to 8 of `Counters`).
const STATUS_CLASSES: [&str; 8] = ["2xx", "3xx", "401", "403", "404", "429", "4xx", "5xx"];

/// Requests per status class in a batch (from its route rollups), with "other" last.
fn status_classes(batch: &sluice_store::EncodedBatch) -> [u64; 9] {
    let mut out = [0u64; 9];
    for (_, c) in &batch.routes {
        let total = c.0[0].max(0) as u64;
        let mut classified = 0;
        for (i, slot) in out.iter_mut().take(8).enumerate() {
            let n = c.0[i + 1].max(0) as u64;
            *slot += n;
            classified += n;
        }
        out[8] += total.saturating_sub(classified);
    }
    out
}

/// Count a committed batch's lines and requests (a duplicate stored nothing new).
fn record_batch(
    format: &str,
    source: &str,
    duplicate: bool,
    c: sluice_store::IngestCounts,
    statuses: &[u64; 9],
) {
    if duplicate {
        metrics::counter!("sluice_ingest_batches_total", "outcome" => "duplicate").increment(1);
        return;
    }
    metrics::counter!("sluice_ingest_batches_total", "outcome" => "committed").increment(1);
    let labels = [("format", format.to_owned()), ("source", source.to_owned())];
    metrics::counter!("sluice_ingest_lines_accepted_total", &labels).increment(c.accepted);
    metrics::counter!("sluice_ingest_lines_rejected_total", &labels).increment(c.rejected);
    for (class, n) in STATUS_CLASSES.iter().chain(["other"].iter()).zip(statuses) {
        if *n > 0 || *class == "429" || *class == "2xx" {
            metrics::counter!("sluice_ingested_requests_total",
                "source" => source.to_owned(), "status" => *class)
            .increment(*n);
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct RejectsQuery {
    pub source: Option<String>,
    pub limit: Option<i64>,
    /// Cursor: only rejects with a smaller id (from the previous page's `next_before`).
    pub before: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct RejectsPage {
    pub items: Vec<StoredReject>,
    pub next_before: Option<i64>,
}

pub async fn get_rejects(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    q: Result<Query<RejectsQuery>, QueryRejection>,
) -> ApiResult<Json<RejectsPage>> {
    who.require(Role::Analyst, "read rejected lines")?;
    let Query(q) = q.map_err(bad_query)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let items = state
        .writer
        .list_rejects(q.source.as_deref(), limit, q.before)
        .await?;
    let next_before = (items.len() as i64 == limit)
        .then(|| items.last().map(|r| r.id))
        .flatten();
    Ok(Json(RejectsPage { items, next_before }))
}
