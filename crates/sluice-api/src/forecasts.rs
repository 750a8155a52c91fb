//! `GET /v1/forecasts`: per-route and total load forecasts with their intervals, the chosen
//! model and its backtest error against seasonal naive, the capacity (configured, or learned with
//! its evidence) and the capacity factor. Analyst or admin.
//!
//! Without `route`, the list of forecast series (the total first, under `*`); with
//! `route=/v1/search` (or `route=*` for the total), one series over a window of minutes.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use sluice_core::time::MICROS_PER_MINUTE;
use sluice_core::{Role, Timestamp};
use sluice_store::forecast::{self, RouteSummary, TOTAL};

use crate::analyst::{bounded, time};
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::logs::bad_query;
use crate::AppState;

const READ_FORECASTS: &str = "read forecasts";
pub const DEFAULT_WINDOW_MINUTES: u32 = 180;
pub const MAX_WINDOW_MINUTES: u32 = 10_080;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForecastQuery {
    /// A route (`/v1/search`), or `*` (or `total`) for the total; absent: the list.
    pub route: Option<String>,
    /// RFC 3339 end of the window (exclusive); default: one minute after the newest minute with an
    /// actual or a forecast.
    pub until: Option<String>,
    /// 1..=10080, default 180.
    pub window_minutes: Option<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct ForecastList {
    pub total: Option<RouteSummary>,
    pub routes: Vec<RouteSummary>,
}

/// The series a `route` parameter names.
fn series_name(route: &str) -> ApiResult<&str> {
    match route {
        "" => Err(ApiError::BadRequest("route must not be empty".into())),
        "*" | "total" => Ok(TOTAL),
        r if r.starts_with('/') => Ok(r),
        r => Err(ApiError::BadRequest(format!(
            "invalid route {r:?}: expected a route such as /v1/search, or * for the total"
        ))),
    }
}

pub async fn get_forecasts(
    State(state): State<Arc<AppState>>,
    Extension(who): Extension<Principal>,
    q: Result<Query<ForecastQuery>, QueryRejection>,
) -> ApiResult<Response> {
    who.require(Role::Analyst, READ_FORECASTS)?;
    let Query(q) = q.map_err(bad_query)?;
    let Some(route) = q.route.as_deref() else {
        if q.until.is_some() || q.window_minutes.is_some() {
            return Err(ApiError::BadRequest(
                "until and window_minutes need a route".into(),
            ));
        }
        let mut all = forecast::list_routes(&state.pool).await?;
        let total = all
            .iter()
            .position(|r| r.route == TOTAL)
            .map(|i| all.remove(i));
        return Ok(Json(ForecastList { total, routes: all }).into_response());
    };
    let name = series_name(route)?;
    let window = bounded(
        q.window_minutes.as_deref(),
        "window_minutes",
        DEFAULT_WINDOW_MINUTES,
        MAX_WINDOW_MINUTES,
    )?;
    let until = match time(q.until.as_deref(), "until")? {
        Some(t) => Timestamp::from_chrono(t),
        None => forecast::newest_minute(&state.pool)
            .await?
            .map_or(Timestamp::from_micros(0), |t| {
                Timestamp::from_micros(t.micros() + MICROS_PER_MINUTE)
            }),
    }
    .minute_floor();
    let since = Timestamp::from_micros(until.micros() - i64::from(window) * MICROS_PER_MINUTE);
    match forecast::route_forecast(&state.pool, name, since, until).await? {
        Some(f) => Ok(Json(f).into_response()),
        None => Err(ApiError::NotFound(format!("route {route:?}"))),
    }
}
