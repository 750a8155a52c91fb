//! The forecast loop in log time, shared by `sluice serve` and `sluice replay`, next to detection.
//!
//! It walks log time one minute at a time behind detection (a minute is used only once detection
//! has scored it, so the anomalies of that minute are known). Every `refit_every` of log time it
//! reads the per-route minute series before that instant from the rollups (missing minutes are
//! zeros; requests of clients under an anomaly in that minute are subtracted), forecasts every
//! route with traffic and the total on the blocking pool (`sluice-ml` model selection by
//! rolling-origin backtest against seasonal naive), learns capacities from latency vs load unless
//! configured, and stores the chosen models and forecasts. At the end of every minute it updates
//! each route's capacity factor from the load planned over the rest of the forecast horizon (the
//! upper interval bound, and never less than the load just observed).
//!
//! Invariants: a forecast made at `t` uses only minutes before `t`; fitting never runs on the
//! async runtime; the factor of a route without a capacity is not stored (it is 1).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sluice_core::time::MICROS_PER_MINUTE;
use sluice_core::Timestamp;
use sluice_ml::forecast::capacity::{planned_rps, CapacityFactor, CapacityPolicy};
use sluice_ml::forecast::knee::{learn_capacity, KneeConfig, LoadSample};
use sluice_ml::forecast::{forecast_many, ForecastConfig, History};
use sluice_store::forecast::{
    self as store, CapacitySource, FactorRow, ModelRow, PointRow, Series, TOTAL,
};
use sluice_store::{PgPool, StoreError};

/// Settings of the forecast loop.
#[derive(Clone, Debug)]
pub struct ForecastOptions {
    /// Minutes ahead forecast at each refit.
    pub horizon: usize,
    /// Log time between refits.
    pub refit_every: Duration,
    /// History read at each refit.
    pub history: Duration,
    /// Nominal coverage of the prediction interval.
    pub interval_level: f64,
    /// Routes with fewer requests than this in the history are not forecast.
    pub min_route_requests: f64,
    /// At most this many routes (the busiest) are forecast, plus the total.
    pub max_routes: usize,
    /// Configured capacities (requests per second) per route; they override learned ones.
    pub capacities: BTreeMap<String, f64>,
    /// Learn capacities from the knee of latency vs load when not configured.
    pub learn_capacity: bool,
    pub knee: KneeConfig,
    pub policy: CapacityPolicy,
    /// Threads of one fit (0: all cores).
    pub threads: usize,
}

impl Default for ForecastOptions {
    fn default() -> Self {
        ForecastOptions {
            horizon: 60,
            refit_every: Duration::from_secs(3600),
            history: Duration::from_secs(14 * 86_400),
            interval_level: 0.9,
            min_route_requests: 100.0,
            max_routes: 200,
            capacities: BTreeMap::new(),
            learn_capacity: true,
            knee: KneeConfig::default(),
            policy: CapacityPolicy::default(),
            threads: 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ForecastLoopError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("forecast worker failed: {0}")]
    Worker(String),
}

/// One series fitted at one refit (the replay report lists them).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FitRecord {
    pub route: String,
    pub fitted_at: String,
    pub model: String,
    pub season_minutes: usize,
    pub backtest_origins: usize,
    pub mase: f64,
    pub smape: f64,
    pub seasonal_naive_mase: f64,
    pub excluded_requests: f64,
}

/// A capacity factor that changed (the first value of a route and every change after).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FactorRecord {
    pub route: String,
    pub minute: String,
    pub factor: f64,
    pub utilisation: Option<f64>,
}

/// Counters of the loop so far.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ForecastStats {
    pub minutes: u64,
    pub refits: u64,
    pub series_fitted: u64,
    pub factor_rows: u64,
    pub fit_seconds: f64,
}

/// The latest forecast of a series: minute `start + i` has `upper[i]`.
struct Current {
    start: Timestamp,
    upper: Vec<f64>,
}

/// The stateful loop. One per database.
pub struct ForecastLoop {
    opts: ForecastOptions,
    evaluated_until: Option<Timestamp>,
    last_refit: Option<Timestamp>,
    /// Oldest minute with data (histories start no earlier).
    data_from: Option<Timestamp>,
    current: BTreeMap<String, Current>,
    capacity: BTreeMap<String, (f64, CapacitySource)>,
    factors: BTreeMap<String, CapacityFactor>,
    fits: Vec<FitRecord>,
    factor_changes: Vec<FactorRecord>,
    stats: ForecastStats,
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn minute_index(t: Timestamp) -> i64 {
    t.micros().div_euclid(MICROS_PER_MINUTE)
}

impl ForecastLoop {
    fn with(opts: ForecastOptions, from: Option<Timestamp>, last_refit: Option<Timestamp>) -> Self {
        ForecastLoop {
            opts,
            evaluated_until: from.map(Timestamp::minute_floor),
            last_refit,
            data_from: None,
            current: BTreeMap::new(),
            capacity: BTreeMap::new(),
            factors: BTreeMap::new(),
            fits: Vec::new(),
            factor_changes: Vec::new(),
            stats: ForecastStats::default(),
        }
    }

    /// Start at `from` (replay): the first refit happens there.
    pub fn starting_at(opts: ForecastOptions, from: Timestamp) -> Self {
        ForecastLoop::with(opts, Some(from), None)
    }

    /// Continue where the stored cursor says (serve). The first step refits at once (the
    /// forecasts are not kept in memory across restarts), then keeps the schedule. Each route's
    /// capacity factor continues from its last stored value, so a restart never lifts a
    /// tightening by itself.
    pub async fn resume(pool: &PgPool, opts: ForecastOptions) -> Result<Self, ForecastLoopError> {
        Ok(match store::cursor(pool).await? {
            Some((until, _)) => {
                let mut l = ForecastLoop::with(opts, Some(until), None);
                for (route, minute, factor) in store::last_factors(pool, until).await? {
                    l.factors.insert(
                        route,
                        CapacityFactor::restored(factor, minute_index(minute)),
                    );
                }
                l
            }
            None => ForecastLoop::with(opts, None, None),
        })
    }

    /// The current capacity factor of `route` (1 when it has none).
    pub fn factor(&self, route: &str) -> f64 {
        self.factors.get(route).map_or(1.0, CapacityFactor::factor)
    }

    pub fn stats(&self) -> &ForecastStats {
        &self.stats
    }

    pub fn fits(&self) -> &[FitRecord] {
        &self.fits
    }

    pub fn factor_changes(&self) -> &[FactorRecord] {
        &self.factor_changes
    }

    /// The bound forecasting may reach: the detection cursor (minutes detection has scored).
    pub async fn live_bound(pool: &PgPool) -> Result<Option<Timestamp>, ForecastLoopError> {
        Ok(sluice_store::detection::cursor(pool).await?)
    }

    /// Evaluate every minute before `bound`, refitting on schedule.
    pub async fn run_until(
        &mut self,
        pool: &PgPool,
        bound: Timestamp,
    ) -> Result<(), ForecastLoopError> {
        let bound = bound.minute_floor();
        if self.data_from.is_none() {
            self.data_from = sluice_store::detection::oldest_batch_time(pool)
                .await?
                .map(Timestamp::minute_floor);
        }
        if self.evaluated_until.is_none() {
            self.evaluated_until = self.data_from;
        }
        let refit = micros(self.opts.refit_every).max(MICROS_PER_MINUTE);
        while let Some(t) = self.evaluated_until {
            if t >= bound {
                break;
            }
            let due = self
                .last_refit
                .is_none_or(|r| t.micros() >= r.micros() + refit);
            if due {
                self.refit(pool, t).await?;
                self.last_refit = Some(t);
            }
            let next_refit = self
                .last_refit
                .map_or(bound.micros(), |r| r.micros() + refit);
            let end = Timestamp::from_micros(
                next_refit
                    .min(bound.micros())
                    .max(t.micros() + MICROS_PER_MINUTE),
            );
            let series = store::read_series(pool, t, end).await?;
            let rows = self.evaluate(&series);
            store::write_factors(pool, &rows).await?;
            self.stats.factor_rows += rows.len() as u64;
            self.stats.minutes += series.minutes as u64;
            store::advance_cursor(pool, end, self.last_refit).await?;
            self.evaluated_until = Some(end);
        }
        Ok(())
    }

    /// Update the factors of every route with a capacity, minute by minute over `series`.
    fn evaluate(&mut self, series: &Series) -> Vec<FactorRow> {
        let mut rows = Vec::new();
        for (route, &(cap, _)) in &self.capacity {
            let clean = series.routes.get(route).map(|s| s.clean());
            let current = self.current.get(route);
            let mut first = !self.factors.contains_key(route);
            let state = self.factors.entry(route.clone()).or_default();
            for i in 0..series.minutes {
                let minute =
                    Timestamp::from_micros(series.from.micros() + i as i64 * MICROS_PER_MINUTE);
                let observed = clean.as_ref().map_or(0.0, |c| c[i]);
                // The rest of the horizon after this minute.
                let upper: &[f64] = current.map_or(&[], |c| {
                    let k = minute_index(minute) + 1 - minute_index(c.start);
                    usize::try_from(k)
                        .ok()
                        .and_then(|k| c.upper.get(k..))
                        .unwrap_or(&[])
                });
                let planned = planned_rps(upper, Some(observed));
                let before = state.factor();
                let u = state.update(&self.opts.policy, minute_index(minute), planned, cap);
                if first || u.factor != before {
                    first = false;
                    self.factor_changes.push(FactorRecord {
                        route: route.clone(),
                        minute: minute.to_string(),
                        factor: u.factor,
                        utilisation: u.utilisation,
                    });
                }
                rows.push(FactorRow {
                    route: route.clone(),
                    minute,
                    factor: u.factor,
                    utilisation: u.utilisation,
                    planned_rps: planned.is_finite().then_some(planned),
                    capacity_rps: Some(cap),
                });
            }
        }
        rows
    }

    #[tracing::instrument(skip_all, fields(at = %at))]
    async fn refit(&mut self, pool: &PgPool, at: Timestamp) -> Result<(), ForecastLoopError> {
        let from = Timestamp::from_micros(at.micros().saturating_sub(micros(self.opts.history)));
        let from = self.data_from.map_or(from, |d| d.max(from));
        if from >= at {
            self.refresh_capacities(pool, None, at).await?;
            return Ok(());
        }
        let series = store::read_series(pool, from, at).await?;
        let opts = self.opts.clone();
        let span = tracing::Span::current();
        let (series, fitted) = tokio::task::spawn_blocking(move || {
            let _g = span.enter();
            let f = fit_blocking(&series, &opts, at);
            (series, f)
        })
        .await
        .map_err(|e| ForecastLoopError::Worker(e.to_string()))?;
        self.stats.refits += 1;
        if let Some(fitted) = fitted {
            self.stats.fit_seconds += fitted.seconds;
            metrics::histogram!("sluice_forecast_fit_seconds").record(fitted.seconds);
            for (row, points) in &fitted.series {
                store::write_fit(pool, row, points).await?;
                self.fits.push(FitRecord {
                    route: row.route.clone(),
                    fitted_at: at.to_string(),
                    model: row.model.clone(),
                    season_minutes: row.season_minutes as usize,
                    backtest_origins: row.backtest_origins as usize,
                    mase: row.mase,
                    smape: row.smape,
                    seasonal_naive_mase: row.seasonal_naive_mase,
                    excluded_requests: row.excluded_requests as f64,
                });
                self.current.insert(
                    row.route.clone(),
                    Current {
                        start: at,
                        upper: points.iter().map(|p| p.upper).collect(),
                    },
                );
                self.stats.series_fitted += 1;
            }
        }
        self.refresh_capacities(pool, Some(&series), at).await?;
        Ok(())
    }

    /// Configured capacities, then learned ones for the other routes.
    async fn refresh_capacities(
        &mut self,
        pool: &PgPool,
        series: Option<&Series>,
        at: Timestamp,
    ) -> Result<(), ForecastLoopError> {
        for (route, &cap) in &self.opts.capacities {
            if self.capacity.get(route) != Some(&(cap, CapacitySource::Configured)) {
                store::upsert_capacity(pool, route, cap, CapacitySource::Configured, None, at)
                    .await?;
                self.capacity
                    .insert(route.clone(), (cap, CapacitySource::Configured));
            }
        }
        let (Some(series), true) = (series, self.opts.learn_capacity) else {
            return Ok(());
        };
        for (route, s) in &series.routes {
            if route == TOTAL || self.opts.capacities.contains_key(route) {
                continue;
            }
            let samples: Vec<LoadSample> = s
                .requests
                .iter()
                .zip(s.latency_sum_us.iter().zip(&s.latency_count))
                .filter(|(_, (_, &c))| c > 0.0)
                .map(|(&r, (&sum, &c))| LoadSample {
                    rps: r / 60.0,
                    latency_ms: sum / c / 1000.0,
                })
                .collect();
            match learn_capacity(&samples, &self.opts.knee) {
                Some(k) => {
                    let evidence = serde_json::to_value(&k).ok();
                    store::upsert_capacity(
                        pool,
                        route,
                        k.capacity_rps,
                        CapacitySource::Learned,
                        evidence.as_ref(),
                        at,
                    )
                    .await?;
                    self.capacity
                        .insert(route.clone(), (k.capacity_rps, CapacitySource::Learned));
                }
                None => {
                    if self.capacity.remove(route).is_some() {
                        store::drop_learned_capacity(pool, route).await?;
                    }
                }
            }
        }
        Ok(())
    }
}

struct Fitted {
    series: Vec<(ModelRow, Vec<PointRow>)>,
    seconds: f64,
}

/// The forecast configuration for a history of `n` minutes: a daily season when two days fit,
/// else an hourly one (short replays), else none.
pub fn config_for(n: usize, opts: &ForecastOptions) -> Option<ForecastConfig> {
    let h = opts.horizon.max(1);
    let (season, weekly) = if n >= 2 * 1440 + h {
        (1440, Some(10080))
    } else if n >= 2 * 60 + h {
        (60, Some(1440))
    } else {
        return None;
    };
    Some(ForecastConfig {
        weekly_season: weekly,
        interval_level: opts.interval_level,
        threads: opts.threads,
        ..ForecastConfig::new(h, season)
    })
}

fn fit_blocking(series: &Series, opts: &ForecastOptions, at: Timestamp) -> Option<Fitted> {
    let started = Instant::now();
    let cfg = config_for(series.minutes, opts)?;
    let mut chosen: Vec<(&String, Vec<f64>, f64, usize)> = series
        .routes
        .iter()
        .map(|(r, s)| {
            let clean = s.clean();
            let excluded = s.excluded.iter().sum::<f64>();
            let zeros = s.requests.iter().filter(|v| **v == 0.0).count();
            (r, clean, excluded, zeros)
        })
        .filter(|(r, c, _, _)| {
            r.as_str() == TOTAL || c.iter().sum::<f64>() >= opts.min_route_requests
        })
        .collect();
    chosen.sort_by(|a, b| {
        (b.0 == TOTAL)
            .cmp(&(a.0 == TOTAL))
            .then(b.1.iter().sum::<f64>().total_cmp(&a.1.iter().sum::<f64>()))
    });
    chosen.truncate(opts.max_routes + 1);
    let histories: Vec<History<'_>> = chosen.iter().map(|c| History::new(&c.1)).collect();
    let forecasts = match forecast_many(&histories, &cfg) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "forecast refit failed");
            return None;
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let out = chosen
        .iter()
        .zip(forecasts)
        .map(|((route, _, excluded, zeros), f)| {
            let candidates = serde_json::Value::Array(
                f.backtest
                    .candidates
                    .iter()
                    .map(|c| {
                        serde_json::json!({"model": c.model.to_string(), "mase": c.mase, "smape": c.smape})
                    })
                    .collect(),
            );
            let row = ModelRow {
                route: (*route).clone(),
                fitted_at: at,
                history_from: series.from,
                season_minutes: cfg.season as i32,
                horizon_minutes: cfg.horizon as i32,
                model: f.model.to_string(),
                backtest_origins: f.backtest.origins as i32,
                mase: f.backtest.mase,
                smape: f.backtest.smape,
                seasonal_naive_mase: f.backtest.seasonal_naive_mase,
                candidates,
                cleaned_points: i32::try_from(f.cleaned_points).unwrap_or(i32::MAX),
                zero_minutes: i32::try_from(*zeros).unwrap_or(i32::MAX),
                excluded_requests: *excluded as i64,
                fit_ms: seconds * 1000.0,
            };
            let points = (0..f.point.len())
                .map(|i| PointRow {
                    minute: Timestamp::from_micros(at.micros() + i as i64 * MICROS_PER_MINUTE),
                    forecast: f.point[i],
                    lower: f.lower[i],
                    upper: f.upper[i],
                })
                .collect();
            (row, points)
        })
        .collect();
    Some(Fitted {
        series: out,
        seconds,
    })
}

/// Run the forecast loop behind live detection until the task is aborted: every `every`,
/// evaluate up to the detection cursor. A failed step is logged and retried from the stored
/// cursor on the next tick.
pub fn spawn_live(
    pool: PgPool,
    opts: ForecastOptions,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut fl: Option<ForecastLoop> = None;
        loop {
            tick.tick().await;
            if fl.is_none() {
                match ForecastLoop::resume(&pool, opts.clone()).await {
                    Ok(l) => fl = Some(l),
                    Err(e) => {
                        tracing::warn!(error = %e, "forecasting could not start; retrying");
                        continue;
                    }
                }
            }
            let Some(l) = fl.as_mut() else { continue };
            let res = async {
                let Some(bound) = ForecastLoop::live_bound(&pool).await? else {
                    return Ok(());
                };
                l.run_until(&pool, bound).await
            }
            .await;
            if let Err(e) = res {
                tracing::warn!(error = %e, "forecast step failed; resuming from the stored cursor");
                fl = None;
            }
        }
    })
}
