//! Writing encoded batches: one transaction per batch (batch record, `COPY` of the raw records,
//! rejected lines, rollup upserts, watermark), daily partitions created ahead, retention by
//! dropping whole partitions.
//!
//! Architecture invariant: a batch is either committed whole or not at all, and a batch whose
//! idempotency key was already committed is never written twice.

use std::collections::HashSet;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use sluice_core::time::MICROS_PER_DAY;
use sluice_core::Timestamp;
use sqlx::{PgPool, Postgres, Transaction};

use crate::encode::{
    Counters, EncodedBatch, IngestCounts, ACCESS_LOG_COLUMNS, COUNTER_COLUMNS, COUNTER_MAX_INDEX,
};
use crate::error::{Result, StoreError};

/// Partitions are created this many days past the newest day seen.
pub const PARTITION_DAYS_AHEAD: u32 = 2;

/// What happened to a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Stored now.
    Committed { batch_id: i64, counts: IngestCounts },
    /// Its idempotency key was committed before; nothing was written. Counts are the original ones.
    Duplicate { batch_id: i64, counts: IngestCounts },
}

impl WriteOutcome {
    pub fn counts(&self) -> IngestCounts {
        match self {
            WriteOutcome::Committed { counts, .. } | WriteOutcome::Duplicate { counts, .. } => {
                *counts
            }
        }
    }

    pub fn is_duplicate(&self) -> bool {
        matches!(self, WriteOutcome::Duplicate { .. })
    }
}

/// Hand-off between consecutive batches of one stream written concurrently on separate
/// connections ([`IngestWriter::write_in_turn`]): batch N+1 opens its transaction only after batch
/// N has created its partitions, streams its rows meanwhile, and takes rollup row locks and
/// commits only after batch N committed. So commits stay in stream order, a failure leaves a
/// committed prefix, and no batch ever waits for a later one (no deadlock).
#[derive(Debug, Default)]
pub struct BatchTurn {
    /// Fires when the previous batch has opened its transaction (or ended, when dropped).
    pub prev_started: Option<tokio::sync::oneshot::Receiver<()>>,
    /// `true` once the previous batch (and every one before it) committed or was a duplicate.
    pub prev_done: Option<tokio::sync::oneshot::Receiver<bool>>,
    /// Fired by this batch when it opens its transaction.
    pub started: Option<tokio::sync::oneshot::Sender<()>>,
    /// Set by this batch: `true` when it and every batch before it are committed.
    pub done: Option<tokio::sync::oneshot::Sender<bool>>,
}

async fn earlier_ok(prev_done: &mut Option<tokio::sync::oneshot::Receiver<bool>>) -> bool {
    match prev_done.take() {
        Some(rx) => rx.await.unwrap_or(false),
        None => true,
    }
}

fn earlier_failed() -> StoreError {
    StoreError::Conflict(
        "an earlier batch of the same stream failed; this one was rolled back".into(),
    )
}

/// Writes batches into Postgres. Cheap to clone-share behind an `Arc`.
#[derive(Debug)]
pub struct IngestWriter {
    pool: PgPool,
    known_partitions: Mutex<HashSet<i64>>,
}

fn ts(t: Timestamp) -> DateTime<Utc> {
    t.to_chrono()
}

pub fn partition_name(day_start_us: i64) -> String {
    let d = Timestamp(day_start_us).to_chrono();
    format!("access_log_p{}", d.format("%Y%m%d"))
}

impl IngestWriter {
    pub fn new(pool: PgPool) -> Self {
        IngestWriter {
            pool,
            known_partitions: Mutex::new(HashSet::new()),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Create the daily partitions of `access_log` for `days` (UTC day starts, µs) if missing.
    pub async fn ensure_partitions(&self, days: &[i64]) -> Result<()> {
        let missing: Vec<i64> = {
            let known = self
                .known_partitions
                .lock()
                .expect("partition cache poisoned");
            days.iter()
                .copied()
                .filter(|d| !known.contains(d))
                .collect()
        };
        for day in missing {
            let name = partition_name(day);
            let from = ts(Timestamp(day));
            let to = ts(Timestamp(day + MICROS_PER_DAY));
            let sql = format!(
                "CREATE TABLE IF NOT EXISTS {name} PARTITION OF access_log FOR VALUES FROM ('{}') TO ('{}')",
                from.to_rfc3339(),
                to.to_rfc3339()
            );
            if let Err(e) = sqlx::query(&sql).execute(&self.pool).await {
                // Two writers may race to create the same partition; the loser sees 42P07.
                let dup =
                    matches!(&e, sqlx::Error::Database(d) if d.code().as_deref() == Some("42P07"));
                if !dup {
                    return Err(e.into());
                }
            }
            self.known_partitions
                .lock()
                .expect("partition cache poisoned")
                .insert(day);
        }
        Ok(())
    }

    /// Look up a committed batch by idempotency key.
    pub async fn find_batch(&self, key: &str) -> Result<Option<(i64, IngestCounts)>> {
        let row: Option<(i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT id, lines_read, lines_accepted, lines_rejected FROM ingest_batches WHERE idempotency_key = $1",
        )
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(id, r, a, j)| {
            (
                id,
                IngestCounts {
                    read: r as u64,
                    accepted: a as u64,
                    rejected: j as u64,
                },
            )
        }))
    }

    /// Store one batch atomically. Acknowledge to the sender only after this returns `Ok`.
    pub async fn write(&self, batch: EncodedBatch) -> Result<WriteOutcome> {
        self.write_in_turn(batch, BatchTurn::default()).await
    }

    /// [`IngestWriter::write`] for one of several consecutive batches of a stream written
    /// concurrently: waits for its turn as described at [`BatchTurn`]. When an earlier batch
    /// failed, this one is rolled back and an error returned.
    #[tracing::instrument(skip_all, fields(source = %batch.source, lines = batch.counts.read))]
    pub async fn write_in_turn(
        &self,
        batch: EncodedBatch,
        turn: BatchTurn,
    ) -> Result<WriteOutcome> {
        let BatchTurn {
            prev_started,
            mut prev_done,
            started,
            done,
        } = turn;
        if let Some(rx) = prev_started {
            let _ = rx.await;
        }
        let res = self.write_inner(batch, started, &mut prev_done).await;
        if let Some(done) = done {
            // Ok implies every earlier batch is committed (`write_inner` waited for them).
            let _ = done.send(res.is_ok());
        }
        res
    }

    async fn write_inner(
        &self,
        batch: EncodedBatch,
        started: Option<tokio::sync::oneshot::Sender<()>>,
        prev_done: &mut Option<tokio::sync::oneshot::Receiver<bool>>,
    ) -> Result<WriteOutcome> {
        if let Some(key) = &batch.idempotency_key {
            if let Some((batch_id, counts)) = self.find_batch(key).await? {
                if !earlier_ok(prev_done).await {
                    return Err(earlier_failed());
                }
                return Ok(WriteOutcome::Duplicate { batch_id, counts });
            }
        }
        self.ensure_partitions(&batch.days_with_lookahead(PARTITION_DAYS_AHEAD))
            .await?;

        let mut tx = self.pool.begin().await?;
        if let Some(started) = started {
            let _ = started.send(());
        }
        let batch_id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO ingest_batches (idempotency_key, source, format, lines_read, lines_accepted, lines_rejected, min_ts, max_ts)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (idempotency_key) DO NOTHING
             RETURNING id",
        )
        .bind(&batch.idempotency_key)
        .bind(&batch.source)
        .bind(&batch.format)
        .bind(batch.counts.read as i64)
        .bind(batch.counts.accepted as i64)
        .bind(batch.counts.rejected as i64)
        .bind(batch.min_ts.map(ts))
        .bind(batch.max_ts.map(ts))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(batch_id) = batch_id else {
            // A concurrent sender committed the same key while we were preparing.
            tx.rollback().await?;
            let key = batch.idempotency_key.as_deref().unwrap_or_default();
            let (batch_id, counts) = self.find_batch(key).await?.unwrap_or_default();
            if !earlier_ok(prev_done).await {
                return Err(earlier_failed());
            }
            return Ok(WriteOutcome::Duplicate { batch_id, counts });
        };

        let t_copy = std::time::Instant::now();
        if batch.counts.accepted > 0 {
            let mut copy = tx
                .copy_in_raw(&format!(
                    "COPY access_log ({ACCESS_LOG_COLUMNS}) FROM STDIN WITH (FORMAT binary)"
                ))
                .await?;
            for chunk in batch.copy_data.chunks(1 << 20) {
                copy.send(chunk).await?;
            }
            copy.finish().await?;
        }

        if !batch.rejects.is_empty() {
            let line_nos: Vec<i64> = batch.rejects.iter().map(|r| r.line_no as i64).collect();
            let reasons: Vec<&str> = batch.rejects.iter().map(|r| r.reason.as_str()).collect();
            let raws: Vec<&str> = batch.rejects.iter().map(|r| r.raw.as_str()).collect();
            sqlx::query(
                "INSERT INTO ingest_rejects (batch_id, source, line_no, reason, raw)
                 SELECT $1, $2, * FROM UNNEST($3::int8[], $4::text[], $5::text[])",
            )
            .bind(batch_id)
            .bind(&batch.source)
            .bind(&line_nos)
            .bind(&reasons)
            .bind(&raws)
            .execute(&mut *tx)
            .await?;
        }

        // Rollup rows and the watermark are shared with the batch before: lock them only once
        // it has committed.
        let t_wait = std::time::Instant::now();
        if !earlier_ok(prev_done).await {
            tx.rollback().await?;
            return Err(earlier_failed());
        }
        let t_clients = std::time::Instant::now();
        upsert_client_rollups(&mut tx, &batch).await?;
        let t_routes = std::time::Instant::now();
        upsert_route_rollups(&mut tx, &batch).await?;
        let t_watermark = std::time::Instant::now();

        if let Some(max) = batch.max_ts {
            sqlx::query(
                "INSERT INTO ingest_watermarks (source, max_ts) VALUES ($1, $2)
                 ON CONFLICT (source) DO UPDATE SET max_ts = GREATEST(ingest_watermarks.max_ts, EXCLUDED.max_ts)",
            )
            .bind(&batch.source)
            .bind(ts(max))
            .execute(&mut *tx)
            .await?;
        }
        let t_commit = std::time::Instant::now();
        tx.commit().await?;
        tracing::debug!(
            batch_id,
            copy_ms = (t_wait - t_copy).as_secs_f64() * 1e3,
            wait_ms = (t_clients - t_wait).as_secs_f64() * 1e3,
            client_rollups = batch.clients.len(),
            client_rollups_ms = (t_routes - t_clients).as_secs_f64() * 1e3,
            route_rollups = batch.routes.len(),
            route_rollups_ms = (t_watermark - t_routes).as_secs_f64() * 1e3,
            commit_ms = t_commit.elapsed().as_secs_f64() * 1e3,
            "batch written"
        );
        Ok(WriteOutcome::Committed {
            batch_id,
            counts: batch.counts,
        })
    }

    /// Drop raw partitions older than `raw_days` and rollup rows older than `rollup_days`, both
    /// measured back from the newest log time ingested (log time, not wall time, so replaying old
    /// logs does not delete them on arrival). Returns the dropped partition names.
    pub async fn apply_retention(&self, raw_days: u32, rollup_days: u32) -> Result<Vec<String>> {
        let newest: Option<DateTime<Utc>> =
            sqlx::query_scalar("SELECT max(max_ts) FROM ingest_watermarks")
                .fetch_one(&self.pool)
                .await?;
        let Some(newest) = newest else {
            return Ok(Vec::new());
        };
        let newest_day = Timestamp::from_chrono(newest).day_floor().micros();
        let raw_cutoff = newest_day - i64::from(raw_days) * MICROS_PER_DAY;
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_class p ON p.oid = i.inhparent
             WHERE p.relname = 'access_log' ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut dropped = Vec::new();
        for name in names {
            let Some(day) = parse_partition_day(&name) else {
                continue;
            };
            if day + MICROS_PER_DAY <= raw_cutoff {
                sqlx::query(&format!("DROP TABLE IF EXISTS {name}"))
                    .execute(&self.pool)
                    .await?;
                self.known_partitions
                    .lock()
                    .expect("partition cache poisoned")
                    .remove(&day);
                dropped.push(name);
            }
        }
        let rollup_cutoff = ts(Timestamp(
            newest_day - i64::from(rollup_days) * MICROS_PER_DAY,
        ));
        for table in ["rollup_client_minute", "rollup_route_minute"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE minute < $1"))
                .bind(rollup_cutoff)
                .execute(&self.pool)
                .await?;
        }
        Ok(dropped)
    }

    /// Rejected lines, newest first, optionally of one source.
    pub async fn list_rejects(
        &self,
        source: Option<&str>,
        limit: i64,
        before_id: Option<i64>,
    ) -> Result<Vec<StoredReject>> {
        let rows = sqlx::query_as::<_, StoredReject>(
            "SELECT id, batch_id, source, line_no, reason, raw, received_at FROM ingest_rejects
             WHERE ($1::text IS NULL OR source = $1) AND ($2::int8 IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3",
        )
        .bind(source)
        .bind(before_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }
}

/// A rejected line as stored.
#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize)]
pub struct StoredReject {
    pub id: i64,
    pub batch_id: i64,
    pub source: String,
    pub line_no: i64,
    pub reason: String,
    pub raw: String,
    pub received_at: DateTime<Utc>,
}

fn parse_partition_day(name: &str) -> Option<i64> {
    let d = name.strip_prefix("access_log_p")?;
    let date = chrono::NaiveDate::parse_from_str(d, "%Y%m%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros())
}

fn rollup_upsert_sql(table: &str, key_cols: &[(&str, &str)]) -> String {
    let mut cols: Vec<String> = key_cols.iter().map(|(c, _)| (*c).to_owned()).collect();
    cols.extend(COUNTER_COLUMNS.iter().map(|c| (*c).to_owned()));
    let mut casts: Vec<String> = key_cols
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| format!("${}::{ty}[]", i + 1))
        .collect();
    casts
        .extend((0..COUNTER_COLUMNS.len()).map(|i| format!("${}::int8[]", key_cols.len() + i + 1)));
    let keys: Vec<&str> = key_cols.iter().map(|(c, _)| *c).collect();
    let updates: Vec<String> = COUNTER_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if i == COUNTER_MAX_INDEX {
                format!("{c} = GREATEST({table}.{c}, EXCLUDED.{c})")
            } else {
                format!("{c} = {table}.{c} + EXCLUDED.{c}")
            }
        })
        .collect();
    format!(
        "INSERT INTO {table} ({}) SELECT * FROM UNNEST({}) ON CONFLICT ({}) DO UPDATE SET {}",
        cols.join(", "),
        casts.join(", "),
        keys.join(", "),
        updates.join(", ")
    )
}

fn counter_columns<'a>(rows: impl Iterator<Item = &'a Counters> + Clone) -> Vec<Vec<i64>> {
    (0..COUNTER_COLUMNS.len())
        .map(|i| rows.clone().map(|c| c.values()[i]).collect())
        .collect()
}

async fn upsert_client_rollups(
    tx: &mut Transaction<'_, Postgres>,
    batch: &EncodedBatch,
) -> Result<()> {
    if batch.clients.is_empty() {
        return Ok(());
    }
    let sql = rollup_upsert_sql(
        "rollup_client_minute",
        &[
            ("client_kind", "text"),
            ("client", "text"),
            ("minute", "timestamptz"),
        ],
    );
    let kinds: Vec<&str> = batch.clients.iter().map(|(k, _)| k.kind.as_str()).collect();
    let clients: Vec<&str> = batch
        .clients
        .iter()
        .map(|(k, _)| k.client.as_str())
        .collect();
    let minutes: Vec<DateTime<Utc>> = batch
        .clients
        .iter()
        .map(|(k, _)| ts(Timestamp(k.minute)))
        .collect();
    let mut q = sqlx::query(&sql).bind(kinds).bind(clients).bind(minutes);
    for col in counter_columns(batch.clients.iter().map(|(_, c)| c)) {
        q = q.bind(col);
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

async fn upsert_route_rollups(
    tx: &mut Transaction<'_, Postgres>,
    batch: &EncodedBatch,
) -> Result<()> {
    if batch.routes.is_empty() {
        return Ok(());
    }
    let sql = rollup_upsert_sql(
        "rollup_route_minute",
        &[("route", "text"), ("minute", "timestamptz")],
    );
    let routes: Vec<&str> = batch.routes.iter().map(|(k, _)| k.route.as_str()).collect();
    let minutes: Vec<DateTime<Utc>> = batch
        .routes
        .iter()
        .map(|(k, _)| ts(Timestamp(k.minute)))
        .collect();
    let mut q = sqlx::query(&sql).bind(routes).bind(minutes);
    for col in counter_columns(batch.routes.iter().map(|(_, c)| c)) {
        q = q.bind(col);
    }
    q.execute(&mut **tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_round_trip() {
        let day = Timestamp::from_civil(2015, 5, 17, 0, 0, 0, 0, 0)
            .unwrap()
            .micros();
        assert_eq!(partition_name(day), "access_log_p20150517");
        assert_eq!(parse_partition_day("access_log_p20150517"), Some(day));
        assert_eq!(parse_partition_day("access_log_default"), None);
    }

    #[test]
    fn upsert_sql_merges_counters() {
        let sql = rollup_upsert_sql(
            "rollup_route_minute",
            &[("route", "text"), ("minute", "timestamptz")],
        );
        assert!(sql.starts_with("INSERT INTO rollup_route_minute (route, minute, requests,"));
        assert!(sql.contains("UNNEST($1::text[], $2::timestamptz[], $3::int8[]"));
        assert!(sql.contains("ON CONFLICT (route, minute)"));
        assert!(sql.contains("requests = rollup_route_minute.requests + EXCLUDED.requests"));
        assert!(sql.contains("latency_max_us = GREATEST(rollup_route_minute.latency_max_us, EXCLUDED.latency_max_us)"));
    }
}
