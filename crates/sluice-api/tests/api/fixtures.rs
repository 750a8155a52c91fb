//! Detection fixtures written with SQL (the detection loop is not needed to test the read API):
//! anomalies with members, minute features and profiles, all in log time around
//! 2026-03-02T00:00:00Z.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{json, Value};

use crate::helpers::TestApp;

/// 2026-03-02T00:00:00Z plus `minutes`.
pub fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + TimeDelta::minutes(minutes)
}

/// [`at`] as the API writes it.
pub fn ts(minutes: i64) -> String {
    at(minutes).to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// An anomaly to insert; `members` become `anomaly_members` rows and `member_count`.
#[derive(Clone, Debug)]
pub struct Anomaly {
    pub client_kind: &'static str,
    pub client: String,
    pub kind: &'static str,
    pub score: f32,
    /// Minutes after 2026-03-02T00:00:00Z.
    pub first_detected: i64,
    pub last_flagged: i64,
    pub state: &'static str,
    pub reasons: Value,
    pub campaign: Option<&'static str>,
    pub members: Vec<(&'static str, String)>,
}

impl Anomaly {
    /// An open single-client scraping anomaly, 0.75, first detected at minute `minute`.
    pub fn new(client_kind: &'static str, client: &str, minute: i64) -> Anomaly {
        Anomaly {
            client_kind,
            client: client.to_owned(),
            kind: "scraping",
            score: 0.75,
            first_detected: minute,
            last_flagged: minute + 5,
            state: "open",
            reasons: json!([{"feature": "distinct_routes", "observed": 310.0, "expected": 4.0}]),
            campaign: None,
            members: Vec::new(),
        }
    }

    pub fn kind(mut self, kind: &'static str) -> Self {
        self.kind = kind;
        self
    }

    pub fn state(mut self, state: &'static str) -> Self {
        self.state = state;
        self
    }

    pub fn campaign(mut self, what: &'static str, members: &[(&'static str, &str)]) -> Self {
        self.campaign = Some(what);
        self.members = members.iter().map(|(k, c)| (*k, (*c).to_owned())).collect();
        self
    }

    /// Insert and return the id.
    pub async fn insert(&self, app: &TestApp) -> i64 {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO anomalies (client_kind, client, kind, score, first_detected, last_flagged,
                                    state, reasons, campaign, member_count)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(self.client_kind)
        .bind(&self.client)
        .bind(self.kind)
        .bind(self.score)
        .bind(at(self.first_detected))
        .bind(at(self.last_flagged))
        .bind(self.state)
        .bind(&self.reasons)
        .bind(self.campaign)
        .bind(self.members.len() as i32)
        .fetch_one(&app.db.pool)
        .await
        .expect("insert anomaly");
        for (kind, client) in &self.members {
            sqlx::query(
                "INSERT INTO anomaly_members (anomaly_id, client_kind, client) VALUES ($1, $2, $3)",
            )
            .bind(id)
            .bind(kind)
            .bind(client)
            .execute(&app.db.pool)
            .await
            .expect("insert anomaly member");
        }
        id
    }
}

/// One minute row per minute in `[from, to]` (minutes after the base) for a client: requests
/// `10 + (minutes since the epoch) % 7`, expected 12.5, score 0.25, and fixed distinct counts
/// (peak 4, routes 3, paths 5, IPs 1, user agents 2, error share 0.125).
pub async fn minutes(app: &TestApp, kind: &str, client: &str, from: i64, to: i64) {
    sqlx::query(
        "INSERT INTO client_minute_features (client_kind, client, minute, requests, peak_10s,
             distinct_routes, distinct_paths, distinct_ips, distinct_uas, route_entropy,
             error_share, status_401, status_403, status_404, status_429, status_5xx, bytes_sent,
             expected_requests, score)
         SELECT $1, $2, m, 10 + (extract(epoch FROM m)::int8 / 60) % 7, 4, 3, 5, 1, 2, 1.5,
                0.125, 0, 0, 1, 0, 0, 1000, 12.5, 0.25
         FROM generate_series($3::timestamptz, $4::timestamptz, interval '1 minute') AS m",
    )
    .bind(kind)
    .bind(client)
    .bind(at(from))
    .bind(at(to))
    .execute(&app.db.pool)
    .await
    .expect("insert minute features");
}

/// The JSON of one minute written by [`minutes`].
pub fn minute_json(minute: i64) -> Value {
    let epoch_minutes = at(minute).timestamp() / 60;
    json!({
        "minute": ts(minute),
        "requests": 10 + epoch_minutes % 7,
        "expected_requests": 12.5,
        "peak_10s": 4,
        "distinct_routes": 3,
        "distinct_paths": 5,
        "distinct_ips": 1,
        "distinct_uas": 2,
        "error_share": 0.125,
        "score": 0.25,
    })
}

/// The hour-of-day profile stored by [`profile`]: active in hours 8..=17 only.
pub fn hour_of_day() -> Value {
    Value::Array(
        (0..24)
            .map(|h| {
                if (8..=17).contains(&h) {
                    json!({"minutes": 600, "median": 11.5, "mad": 1.5})
                } else {
                    json!({"minutes": 0, "median": null, "mad": null})
                }
            })
            .collect(),
    )
}

/// A profile whose history ends with its `last_seen` at minute `last_seen`.
pub async fn profile(app: &TestApp, kind: &str, client: &str, last_seen: i64) {
    sqlx::query(
        "INSERT INTO client_profiles (client_kind, client, computed_at, history_from,
             active_minutes, first_seen, last_seen, requests_median, requests_mad, requests_p95,
             peak_10s_p95, distinct_routes_median, error_share_median, hour_of_day)
         VALUES ($1, $2, $3, $4, 6000, $5, $6, 11.5, 1.5, 16.0, 4.0, 3.0, 0.125, $7)",
    )
    .bind(kind)
    .bind(client)
    .bind(at(last_seen + 1))
    .bind(at(last_seen - 7 * 24 * 60))
    .bind(at(last_seen - 6 * 24 * 60))
    .bind(at(last_seen))
    .bind(hour_of_day())
    .execute(&app.db.pool)
    .await
    .expect("insert profile");
}

/// The JSON of the profile written by [`profile`].
pub fn profile_json(last_seen: i64) -> Value {
    json!({
        "computed_at": ts(last_seen + 1),
        "history_from": ts(last_seen - 7 * 24 * 60),
        "active_minutes": 6000,
        "first_seen": ts(last_seen - 6 * 24 * 60),
        "last_seen": ts(last_seen),
        "requests_median": 11.5,
        "requests_mad": 1.5,
        "requests_p95": 16.0,
        "peak_10s_p95": 4.0,
        "distinct_routes_median": 3.0,
        "error_share_median": 0.125,
        "hour_of_day": hour_of_day(),
    })
}
