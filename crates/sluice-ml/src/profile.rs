//! Per-client profiles over history, extracted in batch with polars: the baseline an analyst
//! compares a client's recent behaviour with (`client_profiles`, `GET /v1/clients/{client}`).
//!
//! Input is a batch of closed client minutes (the columns of `client_minute_features` that a
//! profile reads), collected into a [`ProfileHistory`]; [`extract`] builds a polars `DataFrame` from it
//! and computes everything with lazy `group_by` aggregations, per client and per (client, hour of
//! day UTC):
//!
//! - `active_minutes`, `first_seen`, `last_seen` (start of the first / last counted minute);
//! - requests per minute: median, MAD (median absolute deviation from the median, unscaled),
//!   95th percentile; `peak_10s` 95th percentile; `distinct_routes` and `error_share` medians;
//! - per hour of day (UTC): minutes, median and MAD of requests.
//!
//! Percentiles interpolate linearly between the two nearest ranks (numpy's default).
//!
//! **What a baseline learns from.** Minutes the detector flagged do not count: the detector
//! stores a score only for minutes in which the client (or a campaign naming it) was flagged,
//! and a row whose score is at or above [`ProfileConfig::exclude_score`] (default 0.5, the
//! detector's flagging point) is left out, so an attack does not teach the profile that the
//! attack is normal. A client all of whose minutes were flagged gets no profile at all.
//!
//! Pure and synchronous (callers run it on a blocking thread); polars runs its own thread pool.

use std::collections::HashMap;

use polars::prelude::*;
use sluice_core::time::{MICROS_PER_DAY, MICROS_PER_SEC};
use sluice_core::{ClientKind, Timestamp};

const MICROS_PER_HOUR: i64 = 3600 * MICROS_PER_SEC;

/// Settings of the extraction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProfileConfig {
    /// Minutes whose detector score is at least this are left out (the detector flags at 0.5).
    pub exclude_score: f32,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        ProfileConfig { exclude_score: 0.5 }
    }
}

/// One closed minute of one client, as much of `client_minute_features` as a profile reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MinuteRow {
    /// Start of the minute (log time).
    pub minute: Timestamp,
    pub requests: i32,
    pub peak_10s: i32,
    pub distinct_routes: i32,
    pub error_share: f32,
    /// The detector's score of the minute (`None`: not flagged).
    pub score: Option<f32>,
}

/// A batch of client minutes in columns, with clients interned to dense ids (polars groups on a
/// `u32` instead of two strings).
#[derive(Debug, Default)]
pub struct ProfileHistory {
    clients: Vec<(ClientKind, String)>,
    index: [HashMap<String, u32>; 4],
    cid: Vec<u32>,
    minute: Vec<i64>,
    requests: Vec<i32>,
    peak_10s: Vec<i32>,
    distinct_routes: Vec<i32>,
    error_share: Vec<f32>,
    score: Vec<Option<f32>>,
}

fn kind_index(k: ClientKind) -> usize {
    match k {
        ClientKind::ApiKey => 0,
        ClientKind::Consumer => 1,
        ClientKind::User => 2,
        ClientKind::Ip => 3,
    }
}

impl ProfileHistory {
    pub fn with_capacity(rows: usize) -> Self {
        ProfileHistory {
            cid: Vec::with_capacity(rows),
            minute: Vec::with_capacity(rows),
            requests: Vec::with_capacity(rows),
            peak_10s: Vec::with_capacity(rows),
            distinct_routes: Vec::with_capacity(rows),
            error_share: Vec::with_capacity(rows),
            score: Vec::with_capacity(rows),
            ..ProfileHistory::default()
        }
    }

    /// Add one client minute (rows may come in any order).
    pub fn push(&mut self, kind: ClientKind, client: &str, row: MinuteRow) {
        let map = &mut self.index[kind_index(kind)];
        let id = match map.get(client) {
            Some(&id) => id,
            None => {
                let id = u32::try_from(self.clients.len()).unwrap_or(u32::MAX);
                map.insert(client.to_owned(), id);
                self.clients.push((kind, client.to_owned()));
                id
            }
        };
        self.cid.push(id);
        self.minute.push(row.minute.micros());
        self.requests.push(row.requests);
        self.peak_10s.push(row.peak_10s);
        self.distinct_routes.push(row.distinct_routes);
        self.error_share.push(row.error_share);
        self.score.push(row.score);
    }

    /// Rows pushed.
    pub fn len(&self) -> usize {
        self.cid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cid.is_empty()
    }

    /// Distinct clients pushed.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// The rows as a polars `DataFrame` (`cid`, `minute` in µs, `requests`, `peak_10s`,
    /// `distinct_routes`, `error_share`, `score`).
    pub fn to_frame(&self) -> PolarsResult<DataFrame> {
        DataFrame::new(
            self.len(),
            vec![
                Column::new("cid".into(), &self.cid),
                Column::new("minute".into(), &self.minute),
                Column::new("requests".into(), &self.requests),
                Column::new("peak_10s".into(), &self.peak_10s),
                Column::new("distinct_routes".into(), &self.distinct_routes),
                Column::new("error_share".into(), &self.error_share),
                Column::new("score".into(), &self.score),
            ],
        )
    }
}

/// Requests per active minute in one hour of the day (UTC).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HourProfile {
    pub minutes: u32,
    /// `None` when `minutes` is 0.
    pub median: Option<f64>,
    pub mad: Option<f64>,
}

/// One client's profile over the history given.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientProfile {
    pub client_kind: ClientKind,
    pub client: String,
    pub active_minutes: u32,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub requests_median: f64,
    pub requests_mad: f64,
    pub requests_p95: f64,
    pub peak_10s_p95: f64,
    pub distinct_routes_median: f64,
    pub error_share_median: f64,
    /// Index = hour of day (UTC).
    pub hour_of_day: [HourProfile; 24],
}

/// Absolute deviation of requests from the median of their group (a window expression): its
/// grouped median is the MAD.
fn deviation(group: &[Expr]) -> PolarsResult<Expr> {
    Ok((col("requests") - col("requests").median().over(group)?).abs())
}

fn p95(name: &str) -> Expr {
    col(name).quantile(lit(0.95), QuantileMethod::Linear)
}

fn f64_col(df: &DataFrame, name: &str) -> PolarsResult<Float64Chunked> {
    Ok(df.column(name)?.cast(&DataType::Float64)?.f64()?.clone())
}

/// Profiles of every client with at least one counted minute, in the order clients were first
/// pushed.
pub fn extract(history: &ProfileHistory, cfg: &ProfileConfig) -> PolarsResult<Vec<ClientProfile>> {
    if history.is_empty() {
        return Ok(Vec::new());
    }
    // One pass over the rows: drop flagged minutes, add the hour of day and each row's absolute
    // deviation from its client's median (and its client-hour's median) as window expressions,
    // so the MADs below are plain grouped medians.
    let counted = history
        .to_frame()?
        .lazy()
        .filter(
            col("score")
                .is_null()
                .or(col("score").lt(lit(cfg.exclude_score))),
        )
        .with_column(
            // Hour of the UTC day; the double modulo keeps times before 1970 in 0..24 too.
            (((col("minute") % lit(MICROS_PER_DAY)) + lit(MICROS_PER_DAY)) % lit(MICROS_PER_DAY)
                / lit(MICROS_PER_HOUR))
            .cast(DataType::UInt32)
            .alias("hour"),
        )
        .with_columns([
            deviation(&[col("cid")])?.alias("dev"),
            deviation(&[col("cid"), col("hour")])?.alias("hour_dev"),
        ])
        .collect()?;

    let per_client = counted
        .clone()
        .lazy()
        .group_by([col("cid")])
        .agg([
            len().cast(DataType::UInt32).alias("active_minutes"),
            col("minute").min().alias("first_seen"),
            col("minute").max().alias("last_seen"),
            col("requests").median().alias("requests_median"),
            col("dev").median().alias("requests_mad"),
            p95("requests").alias("requests_p95"),
            p95("peak_10s").alias("peak_10s_p95"),
            col("distinct_routes")
                .median()
                .alias("distinct_routes_median"),
            col("error_share").median().alias("error_share_median"),
        ])
        .sort(["cid"], SortMultipleOptions::default())
        .collect()?;

    let per_hour = counted
        .lazy()
        .group_by([col("cid"), col("hour")])
        .agg([
            len().cast(DataType::UInt32).alias("minutes"),
            col("requests").median().alias("median"),
            col("hour_dev").median().alias("mad"),
        ])
        .sort(["cid", "hour"], SortMultipleOptions::default())
        .collect()?;

    // Assemble: both frames are sorted by client id, so one pass pairs them.
    let cid = per_client.column("cid")?.u32()?.clone();
    let active = per_client.column("active_minutes")?.u32()?.clone();
    let first = per_client.column("first_seen")?.i64()?.clone();
    let last = per_client.column("last_seen")?.i64()?.clone();
    let stats = [
        "requests_median",
        "requests_mad",
        "requests_p95",
        "peak_10s_p95",
        "distinct_routes_median",
        "error_share_median",
    ]
    .map(|n| f64_col(&per_client, n));
    let [med, mad_, p95r, p95p, routes, errors] = stats;
    let (med, mad_, p95r, p95p, routes, errors) = (med?, mad_?, p95r?, p95p?, routes?, errors?);

    let h_cid = per_hour.column("cid")?.u32()?.clone();
    let h_hour = per_hour.column("hour")?.u32()?.clone();
    let h_minutes = per_hour.column("minutes")?.u32()?.clone();
    let h_median = f64_col(&per_hour, "median")?;
    let h_mad = f64_col(&per_hour, "mad")?;

    let missing = || PolarsError::ComputeError("unexpected null in a profile aggregate".into());
    let mut out = Vec::with_capacity(per_client.height());
    let mut h = 0;
    for i in 0..per_client.height() {
        let id = cid.get(i).ok_or_else(missing)?;
        let mut hours = [HourProfile::default(); 24];
        while h < per_hour.height() && h_cid.get(h).is_some_and(|c| c < id) {
            h += 1;
        }
        while h < per_hour.height() && h_cid.get(h) == Some(id) {
            let hour = h_hour.get(h).ok_or_else(missing)? as usize;
            if let Some(slot) = hours.get_mut(hour) {
                *slot = HourProfile {
                    minutes: h_minutes.get(h).unwrap_or(0),
                    median: h_median.get(h),
                    mad: h_mad.get(h),
                };
            }
            h += 1;
        }
        let (kind, client) = &history.clients[id as usize];
        out.push(ClientProfile {
            client_kind: *kind,
            client: client.clone(),
            active_minutes: active.get(i).ok_or_else(missing)?,
            first_seen: Timestamp::from_micros(first.get(i).ok_or_else(missing)?),
            last_seen: Timestamp::from_micros(last.get(i).ok_or_else(missing)?),
            requests_median: med.get(i).ok_or_else(missing)?,
            requests_mad: mad_.get(i).ok_or_else(missing)?,
            requests_p95: p95r.get(i).ok_or_else(missing)?,
            peak_10s_p95: p95p.get(i).ok_or_else(missing)?,
            distinct_routes_median: routes.get(i).ok_or_else(missing)?,
            error_share_median: errors.get(i).ok_or_else(missing)?,
            hour_of_day: hours,
        });
    }
    Ok(out)
}

/// The same statistics computed directly (sort and pick per group), without polars: the
/// reference the tests and the benchmark compare [`extract`] with.
pub fn extract_plain(history: &ProfileHistory, cfg: &ProfileConfig) -> Vec<ClientProfile> {
    let n = history.clients.len();
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 0..history.len() {
        if history.score[i].is_some_and(|s| s >= cfg.exclude_score) {
            continue;
        }
        rows[history.cid[i] as usize].push(i);
    }
    let mut out = Vec::new();
    for (id, idx) in rows.iter().enumerate() {
        if idx.is_empty() {
            continue;
        }
        let pick = |f: &dyn Fn(usize) -> f64| -> Vec<f64> {
            let mut v: Vec<f64> = idx.iter().map(|&i| f(i)).collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let req = pick(&|i| f64::from(history.requests[i]));
        let mut hours = [HourProfile::default(); 24];
        let mut by_hour: [Vec<f64>; 24] = Default::default();
        for &i in idx {
            let hour = history.minute[i].div_euclid(MICROS_PER_HOUR).rem_euclid(24) as usize;
            by_hour[hour].push(f64::from(history.requests[i]));
        }
        for (slot, mut v) in hours.iter_mut().zip(by_hour) {
            if v.is_empty() {
                continue;
            }
            v.sort_by(f64::total_cmp);
            *slot = HourProfile {
                minutes: v.len() as u32,
                median: Some(quantile_sorted(&v, 0.5)),
                mad: Some(mad_sorted(&v)),
            };
        }
        let (kind, client) = &history.clients[id];
        out.push(ClientProfile {
            client_kind: *kind,
            client: client.clone(),
            active_minutes: idx.len() as u32,
            first_seen: Timestamp::from_micros(
                idx.iter().map(|&i| history.minute[i]).min().unwrap_or(0),
            ),
            last_seen: Timestamp::from_micros(
                idx.iter().map(|&i| history.minute[i]).max().unwrap_or(0),
            ),
            requests_median: quantile_sorted(&req, 0.5),
            requests_mad: mad_sorted(&req),
            requests_p95: quantile_sorted(&req, 0.95),
            peak_10s_p95: quantile_sorted(&pick(&|i| f64::from(history.peak_10s[i])), 0.95),
            distinct_routes_median: quantile_sorted(
                &pick(&|i| f64::from(history.distinct_routes[i])),
                0.5,
            ),
            error_share_median: quantile_sorted(&pick(&|i| f64::from(history.error_share[i])), 0.5),
            hour_of_day: hours,
        });
    }
    out
}

/// Linear-interpolated quantile of sorted, non-empty values.
fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

fn mad_sorted(v: &[f64]) -> f64 {
    let m = quantile_sorted(v, 0.5);
    let mut d: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
    d.sort_by(f64::total_cmp);
    quantile_sorted(&d, 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60 * MICROS_PER_SEC;
    /// 2026-03-02T00:00:00Z
    const DAY: i64 = 1_772_409_600 * MICROS_PER_SEC;

    fn row(minute: i64, requests: i32) -> MinuteRow {
        MinuteRow {
            minute: Timestamp::from_micros(minute),
            requests,
            peak_10s: requests / 2,
            distinct_routes: 1,
            error_share: 0.0,
            score: None,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn empty_history_has_no_profiles() {
        let h = ProfileHistory::default();
        assert!(extract(&h, &ProfileConfig::default()).unwrap().is_empty());
        assert!(extract_plain(&h, &ProfileConfig::default()).is_empty());
    }

    #[test]
    fn one_minute_client() {
        let mut h = ProfileHistory::default();
        h.push(
            ClientKind::Ip,
            "10.0.0.1",
            MinuteRow {
                peak_10s: 3,
                distinct_routes: 2,
                error_share: 0.25,
                ..row(DAY + 5 * 60 * MIN + 7 * MIN, 9)
            },
        );
        let p = extract(&h, &ProfileConfig::default()).unwrap();
        assert_eq!(p.len(), 1);
        let p = &p[0];
        assert_eq!(
            (p.client_kind, p.client.as_str()),
            (ClientKind::Ip, "10.0.0.1")
        );
        assert_eq!(p.active_minutes, 1);
        assert_eq!(p.first_seen, p.last_seen);
        assert_eq!(p.first_seen.micros(), DAY + 307 * MIN);
        assert_eq!(
            (
                p.requests_median,
                p.requests_mad,
                p.requests_p95,
                p.peak_10s_p95
            ),
            (9.0, 0.0, 9.0, 3.0)
        );
        assert_eq!(p.distinct_routes_median, 2.0);
        assert!(close(p.error_share_median, 0.25));
        for (hour, s) in p.hour_of_day.iter().enumerate() {
            if hour == 5 {
                assert_eq!(
                    *s,
                    HourProfile {
                        minutes: 1,
                        median: Some(9.0),
                        mad: Some(0.0)
                    }
                );
            } else {
                assert_eq!(*s, HourProfile::default(), "hour {hour}");
            }
        }
    }

    /// Hand-computed statistics of small series (requests per minute, one client each).
    #[test]
    fn statistics_match_hand_computed_values() {
        struct Case {
            requests: &'static [i32],
            median: f64,
            mad: f64,
            p95: f64,
        }
        let cases = [
            // sorted 1 2 3 4 100: median 3; |x-3| = 2 1 0 1 97 → sorted 0 1 1 2 97 → 1;
            // p95: pos 0.95*4 = 3.8 → 4 + 0.8*(100-4) = 80.8
            Case {
                requests: &[3, 1, 100, 2, 4],
                median: 3.0,
                mad: 1.0,
                p95: 80.8,
            },
            // sorted 10 10 20 30: median 15; |x-15| = 5 5 5 15 → 5; p95: pos 2.85 → 20+0.85*10
            Case {
                requests: &[10, 30, 20, 10],
                median: 15.0,
                mad: 5.0,
                p95: 28.5,
            },
            // constant series: no spread
            Case {
                requests: &[7, 7, 7],
                median: 7.0,
                mad: 0.0,
                p95: 7.0,
            },
            // 1..=20: median 10.5; deviations 0.5..9.5 twice → median 5; p95: pos 18.05 → 19.05
            Case {
                requests: &[
                    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
                ],
                median: 10.5,
                mad: 5.0,
                p95: 19.05,
            },
        ];
        let mut h = ProfileHistory::default();
        for (c, case) in cases.iter().enumerate() {
            for (i, &r) in case.requests.iter().enumerate() {
                h.push(
                    ClientKind::ApiKey,
                    &format!("k{c}"),
                    row(DAY + i as i64 * MIN, r),
                );
            }
        }
        let profiles = extract(&h, &ProfileConfig::default()).unwrap();
        assert_eq!(profiles.len(), cases.len());
        for (c, (case, p)) in cases.iter().zip(&profiles).enumerate() {
            assert_eq!(p.client, format!("k{c}"));
            assert_eq!(p.active_minutes as usize, case.requests.len());
            assert!(
                close(p.requests_median, case.median),
                "case {c}: median {}",
                p.requests_median
            );
            assert!(
                close(p.requests_mad, case.mad),
                "case {c}: mad {}",
                p.requests_mad
            );
            assert!(
                close(p.requests_p95, case.p95),
                "case {c}: p95 {}",
                p.requests_p95
            );
            assert_eq!(p.first_seen.micros(), DAY);
            assert_eq!(
                p.last_seen.micros(),
                DAY + (case.requests.len() as i64 - 1) * MIN
            );
            // Every minute is in hour 0.
            assert_eq!(p.hour_of_day[0].minutes as usize, case.requests.len());
            assert_eq!(p.hour_of_day[0].median, Some(p.requests_median));
        }
        assert_eq!(profiles, extract_plain(&h, &ProfileConfig::default()));
    }

    #[test]
    fn hours_of_day_bucket_by_utc_hour_across_days() {
        let mut h = ProfileHistory::default();
        // Hour 9 on two days: 10, 12, 20 → median 12, MAD 2; hour 23: 1, 3 → median 2, MAD 1;
        // the minute at 23:59 belongs to hour 23, the one at 00:00 next day to hour 0.
        for (t, r) in [
            (DAY + 9 * 60 * MIN, 10),
            (DAY + 9 * 60 * MIN + 59 * MIN, 12),
            (DAY + 24 * 60 * MIN + 9 * 60 * MIN + 30 * MIN, 20),
            (DAY + 23 * 60 * MIN, 1),
            (DAY + 23 * 60 * MIN + 59 * MIN, 3),
            (DAY + 24 * 60 * MIN, 50),
        ] {
            h.push(ClientKind::User, "u", row(t, r));
        }
        let p = &extract(&h, &ProfileConfig::default()).unwrap()[0];
        let expect = |hour: usize| match hour {
            0 => HourProfile {
                minutes: 1,
                median: Some(50.0),
                mad: Some(0.0),
            },
            9 => HourProfile {
                minutes: 3,
                median: Some(12.0),
                mad: Some(2.0),
            },
            23 => HourProfile {
                minutes: 2,
                median: Some(2.0),
                mad: Some(1.0),
            },
            _ => HourProfile::default(),
        };
        for hour in 0..24 {
            assert_eq!(p.hour_of_day[hour], expect(hour), "hour {hour}");
        }
        assert_eq!(p.active_minutes, 6);
        assert_eq!(
            p.last_seen.micros(),
            DAY + 24 * 60 * MIN + 9 * 60 * MIN + 30 * MIN
        );
    }

    #[test]
    fn hours_before_1970_are_still_hours_of_the_day() {
        // 1969-12-31T23:10:00Z and 1969-12-31T01:00:00Z.
        let mut h = ProfileHistory::default();
        h.push(ClientKind::Ip, "old", row(-50 * MIN, 4));
        h.push(ClientKind::Ip, "old", row(-23 * 60 * MIN, 6));
        let p = &extract(&h, &ProfileConfig::default()).unwrap()[0];
        assert_eq!(p.hour_of_day[23].minutes, 1);
        assert_eq!(p.hour_of_day[23].median, Some(4.0));
        assert_eq!(p.hour_of_day[1].minutes, 1);
        assert_eq!(p.first_seen.micros(), -23 * 60 * MIN);
        assert_eq!(*p, extract_plain(&h, &ProfileConfig::default())[0]);
    }

    #[test]
    fn flagged_minutes_do_not_teach_the_baseline() {
        let mut h = ProfileHistory::default();
        for i in 0..10 {
            h.push(ClientKind::ApiKey, "steady", row(DAY + i * MIN, 5));
        }
        // An attack burst, flagged by the detector, and one minute scored below the flag point.
        for i in 10..15 {
            h.push(
                ClientKind::ApiKey,
                "steady",
                MinuteRow {
                    score: Some(0.9),
                    ..row(DAY + i * MIN, 500)
                },
            );
        }
        h.push(
            ClientKind::ApiKey,
            "steady",
            MinuteRow {
                score: Some(0.2),
                ..row(DAY + 15 * MIN, 6)
            },
        );
        // A client whose every minute was flagged gets no profile.
        h.push(
            ClientKind::Ip,
            "attacker",
            MinuteRow {
                score: Some(0.5),
                ..row(DAY, 900)
            },
        );
        let cfg = ProfileConfig::default();
        let p = extract(&h, &cfg).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].client, "steady");
        assert_eq!(p[0].active_minutes, 11);
        assert_eq!(p[0].requests_p95, 5.5);
        assert_eq!(p[0].last_seen.micros(), DAY + 15 * MIN);
        assert_eq!(p, extract_plain(&h, &cfg));

        // With no exclusion the burst is in.
        let all = ProfileConfig {
            exclude_score: f32::INFINITY,
        };
        let p = extract(&h, &all).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].active_minutes, 16);
        assert!(p[0].requests_p95 > 400.0);
    }

    #[test]
    fn same_value_under_two_kinds_are_two_clients() {
        let mut h = ProfileHistory::default();
        h.push(ClientKind::ApiKey, "x", row(DAY, 1));
        h.push(ClientKind::User, "x", row(DAY, 3));
        h.push(ClientKind::ApiKey, "x", row(DAY + MIN, 3));
        assert_eq!(h.clients(), 2);
        let p = extract(&h, &ProfileConfig::default()).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].client_kind, p[0].active_minutes, p[0].requests_median),
            (ClientKind::ApiKey, 2, 2.0)
        );
        assert_eq!(
            (p[1].client_kind, p[1].active_minutes, p[1].requests_median),
            (ClientKind::User, 1, 3.0)
        );
    }

    #[test]
    fn polars_agrees_with_the_plain_implementation_on_random_data() {
        // A small deterministic generator (xorshift) over 50 clients and 3 days of minutes.
        let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mut h = ProfileHistory::default();
        for m in 0..3 * 24 * 60 {
            for c in 0..50 {
                let r = next();
                if r.is_multiple_of(3) {
                    continue;
                }
                h.push(
                    if c % 5 == 0 {
                        ClientKind::Ip
                    } else {
                        ClientKind::ApiKey
                    },
                    &format!("c{c}"),
                    MinuteRow {
                        minute: Timestamp::from_micros(DAY + m * MIN),
                        requests: (r >> 8) as i32 % (10 + c),
                        peak_10s: (r >> 20) as i32 % 7,
                        distinct_routes: (r >> 30) as i32 % 5,
                        error_share: ((r >> 40) % 100) as f32 / 100.0,
                        score: r.is_multiple_of(97).then_some(0.8),
                    },
                );
            }
        }
        let cfg = ProfileConfig::default();
        let a = extract(&h, &cfg).unwrap();
        let b = extract_plain(&h, &cfg);
        assert_eq!(a.len(), 50);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(
                (&x.client, x.active_minutes, x.first_seen, x.last_seen),
                (&y.client, y.active_minutes, y.first_seen, y.last_seen)
            );
            for (u, v) in [
                (x.requests_median, y.requests_median),
                (x.requests_mad, y.requests_mad),
                (x.requests_p95, y.requests_p95),
                (x.peak_10s_p95, y.peak_10s_p95),
                (x.distinct_routes_median, y.distinct_routes_median),
            ] {
                assert!(close(u, v), "{}: {u} vs {v}", x.client);
            }
            assert!((x.error_share_median - y.error_share_median).abs() < 1e-6);
            assert_eq!(x.hour_of_day, y.hour_of_day);
        }
    }
}
