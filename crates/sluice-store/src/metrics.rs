//! The database side of `GET /metrics`: one read of the gauges that describe stored state (open
//! anomalies, suggestions by state, the policy in force per gateway group, each gateway's applied
//! version, model versions, the error of the last evaluated forecasts). The API's collector task
//! calls [`read_gauges`] every few seconds; nothing here is on a request path.

use sqlx::PgPool;

use crate::error::Result;

/// Every gauge read from the database, in one consistent snapshot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DbGauges {
    /// Open anomalies per kind.
    pub open_anomalies: Vec<(String, i64)>,
    /// Open anomalies with a score at or above [`HIGH_SEVERITY_SCORE`], per kind.
    pub open_high_severity: Vec<(String, i64)>,
    /// Limit suggestions per state (every state of `limit_suggestions`, zeros included).
    pub suggestions: Vec<(String, i64)>,
    /// Age in seconds (wall clock) of the oldest pending suggestion, or 0 when none waits.
    pub oldest_pending_suggestion_seconds: f64,
    /// The version served to each rollout group (`*` is every gateway without a pin).
    pub policy_rollout: Vec<(String, i64)>,
    /// The newest published version (0 before the first publish).
    pub policy_latest: i64,
    /// Per gateway: (id, group, applied version or -1, versions behind the one its group is
    /// served, seconds since it last reported).
    pub gateways: Vec<GatewayGauge>,
    /// Newest model version per kind.
    pub model_versions: Vec<(String, i64)>,
    /// Forecast error per series over the last evaluated minutes: (route, MAPE, sMAPE, minutes).
    pub forecast_error: Vec<ForecastError>,
}

/// One gateway's delivery state.
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayGauge {
    pub gateway: String,
    pub group: String,
    /// -1 when it never reported an applied version.
    pub applied_version: i64,
    /// How many versions it is behind what its group is served (0 when up to date).
    pub behind: i64,
    pub seconds_since_report: f64,
}

/// The error of a series' forecasts over the minutes evaluated last.
#[derive(Clone, Debug, PartialEq)]
pub struct ForecastError {
    pub route: String,
    /// Mean absolute percentage error over minutes with traffic, as a fraction.
    pub mape: f64,
    /// Symmetric MAPE in [0, 2], as a fraction.
    pub smape: f64,
    pub minutes: i64,
}

/// An anomaly at or above this score counts as high severity (alerts, `..._high_severity`).
pub const HIGH_SEVERITY_SCORE: f32 = 0.8;

/// Minutes (log time, before the forecast cursor) over which the forecast error is measured.
pub const FORECAST_ERROR_MINUTES: i64 = 60;

/// The states `limit_suggestions.state` may take (its CHECK constraint).
pub const SUGGESTION_STATES: [&str; 5] = [
    "pending",
    "approved",
    "rejected",
    "modified_approved",
    "expired",
];

/// Each gateway with the version its group is served (its pin, else `*`; NULL before the first
/// publish) and the seconds since its last report: `(gateway, grp, applied, served, since)`.
/// "Behind" means `served > applied` (or served with nothing applied); the gauges and the alert
/// webhooks (`crate::alerts`) share this one definition.
pub(crate) const GATEWAY_SERVED_SQL: &str = "SELECT g.id AS gateway, g.group_name AS grp,
        g.applied_version AS applied, COALESCE(p.version, a.version) AS served,
        EXTRACT(EPOCH FROM now() - g.reported_at)::float8 AS since
   FROM gateways g
   LEFT JOIN policy_rollout p ON p.group_name = g.group_name
   LEFT JOIN policy_rollout a ON a.group_name = '*'";

/// Read every database gauge in one read-only transaction.
pub async fn read_gauges(pool: &PgPool) -> Result<DbGauges> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let open_anomalies = sqlx::query_as(
        "SELECT kind, count(*) FROM anomalies WHERE state = 'open' GROUP BY kind ORDER BY kind",
    )
    .fetch_all(&mut *tx)
    .await?;
    let open_high_severity = sqlx::query_as(
        "SELECT kind, count(*) FROM anomalies WHERE state = 'open' AND score >= $1
          GROUP BY kind ORDER BY kind",
    )
    .bind(HIGH_SEVERITY_SCORE)
    .fetch_all(&mut *tx)
    .await?;
    let suggestions = sqlx::query_as(
        "SELECT s.state, count(l.id)
           FROM unnest($1::text[]) AS s(state)
           LEFT JOIN limit_suggestions l ON l.state = s.state
          GROUP BY s.state ORDER BY s.state",
    )
    .bind(SUGGESTION_STATES.map(str::to_owned).to_vec())
    .fetch_all(&mut *tx)
    .await?;
    let oldest_pending_suggestion_seconds: f64 = sqlx::query_scalar(
        "SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(created_wall))::float8, 0)
           FROM limit_suggestions WHERE state = 'pending'",
    )
    .fetch_one(&mut *tx)
    .await?;
    let policy_rollout =
        sqlx::query_as("SELECT group_name, version FROM policy_rollout ORDER BY group_name")
            .fetch_all(&mut *tx)
            .await?;
    let policy_latest: i64 =
        sqlx::query_scalar("SELECT COALESCE(max(version), 0) FROM policy_versions")
            .fetch_one(&mut *tx)
            .await?;
    let gateways = sqlx::query_as::<_, (String, String, Option<i64>, Option<i64>, f64)>(&format!(
        "{GATEWAY_SERVED_SQL} ORDER BY g.id"
    ))
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|(gateway, group, applied, served, since)| GatewayGauge {
        gateway,
        group,
        applied_version: applied.unwrap_or(-1),
        behind: match (served, applied) {
            (Some(s), Some(a)) => (s - a).max(0),
            (Some(s), None) => s,
            (None, _) => 0,
        },
        seconds_since_report: since.max(0.0),
    })
    .collect();
    let model_versions = sqlx::query_as(
        "SELECT kind, max(version)::int8 FROM model_registry GROUP BY kind ORDER BY kind",
    )
    .fetch_all(&mut *tx)
    .await?;
    let forecast_error = sqlx::query_as::<_, (String, Option<f64>, Option<f64>, i64)>(
        "WITH c AS (SELECT evaluated_until AS t FROM forecast_cursor),
         actual AS (
             SELECT route, minute, requests::float8 AS y FROM rollup_route_minute, c
              WHERE minute >= c.t - make_interval(mins => $1::int) AND minute < c.t
             UNION ALL
             SELECT '*', minute, sum(requests)::float8 FROM rollup_route_minute, c
              WHERE minute >= c.t - make_interval(mins => $1::int) AND minute < c.t
              GROUP BY minute)
         SELECT f.route,
                avg(abs(f.forecast - a.y) / a.y) FILTER (WHERE a.y > 0),
                avg(CASE WHEN abs(f.forecast) + abs(a.y) = 0 THEN 0
                         ELSE 2 * abs(f.forecast - a.y) / (abs(f.forecast) + abs(a.y)) END),
                count(*)
           FROM forecast_points f
           JOIN actual a ON a.route = f.route AND a.minute = f.minute
          GROUP BY f.route ORDER BY f.route",
    )
    .bind(FORECAST_ERROR_MINUTES)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .map(|(route, mape, smape, minutes)| ForecastError {
        route,
        mape: mape.unwrap_or(0.0),
        smape: smape.unwrap_or(0.0),
        minutes,
    })
    .collect();
    tx.commit().await?;
    Ok(DbGauges {
        open_anomalies,
        open_high_severity,
        suggestions,
        oldest_pending_suggestion_seconds,
        policy_rollout,
        policy_latest,
        gateways,
        model_versions,
        forecast_error,
    })
}
