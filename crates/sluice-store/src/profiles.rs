//! Client profiles: the minute-feature history they are extracted from (read in one streamed
//! query) and the profiles themselves (`client_profiles`, upserted in one transaction).
//!
//! Invariant: a stored profile is never replaced by one computed at an earlier log time, so a
//! replay of older logs cannot roll a live profile back.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sluice_core::{ClientKind, Timestamp};
use sqlx::{PgPool, Row};

use crate::analyst::HourStat;
use crate::detection::{from_chrono, to_chrono};
use crate::error::Result;

/// One closed client minute, the columns of `client_minute_features` a profile reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HistoryMinute {
    pub minute: Timestamp,
    pub requests: i32,
    pub peak_10s: i32,
    pub distinct_routes: i32,
    pub error_share: f32,
    pub score: Option<f32>,
}

/// The oldest and newest minute in `client_minute_features` (`None` when empty).
pub async fn feature_bounds(pool: &PgPool) -> Result<Option<(Timestamp, Timestamp)>> {
    let row: (Option<DateTime<Utc>>, Option<DateTime<Utc>>) =
        sqlx::query_as("SELECT min(minute), max(minute) FROM client_minute_features")
            .fetch_one(pool)
            .await?;
    Ok(match row {
        (Some(a), Some(b)) => Some((from_chrono(a), from_chrono(b))),
        _ => None,
    })
}

/// Stream every client minute in `[from, to)` to `each` (in no particular order, one query,
/// rows decoded without copying the client string); returns the number of rows.
pub async fn read_history(
    pool: &PgPool,
    from: Timestamp,
    to: Timestamp,
    mut each: impl FnMut(ClientKind, &str, HistoryMinute),
) -> Result<u64> {
    let mut rows = sqlx::query(
        "SELECT client_kind, client, minute, requests, peak_10s, distinct_routes, error_share, \
                score \
         FROM client_minute_features WHERE minute >= $1 AND minute < $2",
    )
    .bind(to_chrono(from))
    .bind(to_chrono(to))
    .fetch(pool);
    let mut n = 0;
    while let Some(row) = rows.try_next().await? {
        let Ok(kind) = row.try_get::<&str, _>(0)?.parse::<ClientKind>() else {
            continue;
        };
        let minute: DateTime<Utc> = row.try_get(2)?;
        each(
            kind,
            row.try_get(1)?,
            HistoryMinute {
                minute: from_chrono(minute),
                requests: row.try_get(3)?,
                peak_10s: row.try_get(4)?,
                distinct_routes: row.try_get(5)?,
                error_share: row.try_get(6)?,
                score: row.try_get(7)?,
            },
        );
        n += 1;
    }
    Ok(n)
}

/// A client's profile to store.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileRow {
    pub client_kind: ClientKind,
    pub client: String,
    pub active_minutes: i32,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub requests_median: f32,
    pub requests_mad: f32,
    pub requests_p95: f32,
    pub peak_10s_p95: f32,
    pub distinct_routes_median: f32,
    pub error_share_median: f32,
    /// 24 entries, index = hour of day (UTC).
    pub hour_of_day: Vec<HourStat>,
}

/// Insert or replace the profiles (computed at log time `computed_at` over history from
/// `history_from`) in one transaction. A stored profile computed at a later log time is kept.
/// Returns the number of rows inserted or updated.
pub async fn write_profiles(
    pool: &PgPool,
    computed_at: Timestamp,
    history_from: Timestamp,
    rows: &[ProfileRow],
) -> Result<u64> {
    let mut tx = pool.begin().await?;
    let mut written = 0;
    for chunk in rows.chunks(10_000) {
        macro_rules! col {
            ($f:expr) => {
                chunk.iter().map($f).collect::<Vec<_>>()
            };
        }
        let hours = col!(|r| serde_json::to_string(&r.hour_of_day).unwrap_or_default());
        let done = sqlx::query(
            "INSERT INTO client_profiles (client_kind, client, computed_at, history_from, \
                 active_minutes, first_seen, last_seen, requests_median, requests_mad, \
                 requests_p95, peak_10s_p95, distinct_routes_median, error_share_median, \
                 hour_of_day) \
             SELECT k, c, $3, $4, n, f, l, med, mad, p95, pk, dr, es, h::jsonb \
             FROM UNNEST($1::text[], $2::text[], $5::int4[], $6::timestamptz[], \
                 $7::timestamptz[], $8::float4[], $9::float4[], $10::float4[], $11::float4[], \
                 $12::float4[], $13::float4[], $14::text[]) \
                 AS t(k, c, n, f, l, med, mad, p95, pk, dr, es, h) \
             ON CONFLICT (client_kind, client) DO UPDATE SET \
                 computed_at = EXCLUDED.computed_at, history_from = EXCLUDED.history_from, \
                 active_minutes = EXCLUDED.active_minutes, first_seen = EXCLUDED.first_seen, \
                 last_seen = EXCLUDED.last_seen, requests_median = EXCLUDED.requests_median, \
                 requests_mad = EXCLUDED.requests_mad, requests_p95 = EXCLUDED.requests_p95, \
                 peak_10s_p95 = EXCLUDED.peak_10s_p95, \
                 distinct_routes_median = EXCLUDED.distinct_routes_median, \
                 error_share_median = EXCLUDED.error_share_median, \
                 hour_of_day = EXCLUDED.hour_of_day \
             WHERE client_profiles.computed_at <= EXCLUDED.computed_at",
        )
        .bind(col!(|r| r.client_kind.as_str()))
        .bind(col!(|r| r.client.as_str()))
        .bind(to_chrono(computed_at))
        .bind(to_chrono(history_from))
        .bind(col!(|r| r.active_minutes))
        .bind(col!(|r| to_chrono(r.first_seen)))
        .bind(col!(|r| to_chrono(r.last_seen)))
        .bind(col!(|r| r.requests_median))
        .bind(col!(|r| r.requests_mad))
        .bind(col!(|r| r.requests_p95))
        .bind(col!(|r| r.peak_10s_p95))
        .bind(col!(|r| r.distinct_routes_median))
        .bind(col!(|r| r.error_share_median))
        .bind(hours)
        .execute(&mut *tx)
        .await?;
        written += done.rows_affected();
    }
    tx.commit().await?;
    Ok(written)
}
