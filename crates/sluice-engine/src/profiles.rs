//! Client profiles in log time, shared by `sluice serve` (every `--profiles-every` seconds, behind
//! the detection cursor) and `sluice replay` (once, over the replayed span).
//!
//! A refresh reads the last `history` of closed client minutes before `until` (bounded by the
//! oldest stored minute) from `client_minute_features` in one query, extracts every client's
//! profile with polars (`sluice_ml::profile`) on the blocking pool, and upserts the profiles in
//! one transaction. Minutes the detector flagged are left out of the baseline.
//!
//! Invariants: a profile computed at `until` uses only minutes before `until`, and `until` is at
//! most the detection cursor, so every minute it reads is final; the extraction never runs on the
//! async runtime.

use std::time::{Duration, Instant};

use sluice_core::Timestamp;
use sluice_ml::profile::{self, ClientProfile, MinuteRow, ProfileConfig, ProfileHistory};
use sluice_store::analyst::HourStat;
use sluice_store::profiles::{self as store, ProfileRow};
use sluice_store::{PgPool, StoreError};

/// Settings of a profile refresh.
#[derive(Clone, Debug)]
pub struct ProfileOptions {
    /// Log time of history read before `until`.
    pub history: Duration,
    pub config: ProfileConfig,
}

impl Default for ProfileOptions {
    fn default() -> Self {
        ProfileOptions {
            history: Duration::from_secs(7 * 86_400),
            config: ProfileConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("profile extraction failed: {0}")]
    Extract(String),
    #[error("profile worker failed: {0}")]
    Worker(String),
}

/// What one refresh did.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ProfileRefresh {
    /// The history read: `[history_from, until)`, log time.
    pub history_from: String,
    pub until: String,
    /// Client minutes read.
    pub rows: u64,
    /// Distinct clients in them.
    pub clients: usize,
    /// Profiles extracted (clients with at least one unflagged minute) and written.
    pub profiles: usize,
    pub profiles_written: u64,
    pub read_seconds: f64,
    pub extract_seconds: f64,
    pub write_seconds: f64,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Recompute the profile of every client active in the last `opts.history` before `until` and
/// store them. `None` when no client minute is stored before `until`.
#[tracing::instrument(skip_all, fields(until = %until))]
pub async fn refresh_profiles(
    pool: &PgPool,
    until: Timestamp,
    opts: &ProfileOptions,
) -> Result<Option<ProfileRefresh>, ProfileError> {
    let Some((oldest, _)) = store::feature_bounds(pool).await? else {
        return Ok(None);
    };
    if oldest >= until {
        return Ok(None);
    }
    let from = Timestamp::from_micros(until.micros().saturating_sub(micros(opts.history)))
        .max(oldest)
        .minute_floor();

    let started = Instant::now();
    let mut history = ProfileHistory::default();
    let rows = store::read_history(pool, from, until, |kind, client, m| {
        history.push(
            kind,
            client,
            MinuteRow {
                minute: m.minute,
                requests: m.requests,
                peak_10s: m.peak_10s,
                distinct_routes: m.distinct_routes,
                error_share: m.error_share,
                score: m.score,
            },
        )
    })
    .await?;
    let read_seconds = started.elapsed().as_secs_f64();
    let clients = history.clients();

    let started = Instant::now();
    let config = opts.config;
    let span = tracing::Span::current();
    let profiles = tokio::task::spawn_blocking(move || {
        span.in_scope(|| profile::extract(&history, &config))
            .map(|ps| ps.iter().map(to_row).collect::<Vec<_>>())
    })
    .await
    .map_err(|e| ProfileError::Worker(e.to_string()))?
    .map_err(|e| ProfileError::Extract(e.to_string()))?;
    let extract_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let written = store::write_profiles(pool, until, from, &profiles).await?;
    let refresh = ProfileRefresh {
        history_from: from.to_string(),
        until: until.to_string(),
        rows,
        clients,
        profiles: profiles.len(),
        profiles_written: written,
        read_seconds,
        extract_seconds,
        write_seconds: started.elapsed().as_secs_f64(),
    };
    tracing::debug!(
        rows,
        clients,
        profiles = refresh.profiles,
        read_s = read_seconds,
        extract_s = extract_seconds,
        write_s = refresh.write_seconds,
        "profiles refreshed"
    );
    Ok(Some(refresh))
}

fn to_row(p: &ClientProfile) -> ProfileRow {
    ProfileRow {
        client_kind: p.client_kind,
        client: p.client.clone(),
        active_minutes: i32::try_from(p.active_minutes).unwrap_or(i32::MAX),
        first_seen: p.first_seen,
        last_seen: p.last_seen,
        requests_median: p.requests_median as f32,
        requests_mad: p.requests_mad as f32,
        requests_p95: p.requests_p95 as f32,
        peak_10s_p95: p.peak_10s_p95 as f32,
        distinct_routes_median: p.distinct_routes_median as f32,
        error_share_median: p.error_share_median as f32,
        hour_of_day: p
            .hour_of_day
            .iter()
            .map(|h| HourStat {
                minutes: h.minutes,
                median: h.median.map(|v| v as f32),
                mad: h.mad.map(|v| v as f32),
            })
            .collect(),
    }
}

/// Refresh profiles behind live detection until the task is aborted: every `every`, if the
/// detection cursor moved since the last refresh, recompute profiles up to it. A failed refresh
/// is logged and retried on the next tick.
pub fn spawn_live(
    pool: PgPool,
    opts: ProfileOptions,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut done_until: Option<Timestamp> = None;
        loop {
            tick.tick().await;
            let res = async {
                let Some(cursor) = sluice_store::detection::cursor(&pool).await? else {
                    return Ok(None);
                };
                if done_until == Some(cursor) {
                    return Ok(None);
                }
                let r = refresh_profiles(&pool, cursor, &opts).await?;
                done_until = Some(cursor);
                Ok::<_, ProfileError>(r)
            }
            .await;
            match res {
                Ok(Some(r)) => tracing::info!(
                    until = %r.until,
                    profiles = r.profiles,
                    rows = r.rows,
                    "client profiles refreshed"
                ),
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "profile refresh failed; retrying"),
            }
        }
    })
}
