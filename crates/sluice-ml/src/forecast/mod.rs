//! Forecasting of request-rate series with prediction intervals.
//!
//! Every series is cleaned (flagged anomalies, missing values and outages are replaced by
//! same-phase neighbours), then several candidate models are scored by a rolling-origin backtest
//! on its own recent history, in MASE and sMAPE relative to seasonal naive ([`SelectBy`]); the best
//! one, or the mean of the best few when that backtests better, produces the forecast. Seasonal
//! naive wins ties, so a model is chosen only when it beats it. Prediction intervals are empirical
//! quantiles of the chosen model's backtest errors around each step ahead.
//!
//! Candidates ([`ModelKind`]): seasonal naive (daily and weekly), Theta on the robustly seasonally
//! adjusted series (daily and weekly index), a local direct ridge regression on lags and Fourier
//! terms (raw and on logs), and a pooled direct ridge regression trained across all series of one
//! [`forecast_many`] call on level-normalised windows (ratios and log ratios). The pooled model
//! scored in the backtest is fitted without the backtest span of every series, so its backtest
//! error is out of sample like the others'. The regressions use a small exact
//! least-squares solver (normal equations and Cholesky, `linalg.rs`) rather than linfa: the
//! problems are a few hundred features by many streamed rows, where accumulating `XᵀX` is the
//! fastest exact method and needs no dense design matrix or extra dependency.

pub mod capacity;
mod clean;
mod io;
pub mod knee;
mod linalg;
mod models;
mod regress;

use std::fmt;
use std::str::FromStr;

pub use io::{
    read_m4_csv, read_series_csv, write_m4_csv, write_series_forecast_csv, SeriesCsv, TimeFormat,
};

use clean::{clean, CleanSpec};
use models::{seasonal_naive, seasonal_theta, snaive_scale};
use regress::{lag_set, local_ridge, PooledModel, PooledSpec};

/// Errors from configuration, input and forecasting.
#[derive(Debug, thiserror::Error)]
pub enum ForecastError {
    #[error("horizon must be at least 1")]
    ZeroHorizon,
    #[error("season must be at least 1")]
    ZeroSeason,
    #[error("weekly season {weekly} must be longer than the season {season}")]
    WeeklyNotLonger { weekly: usize, season: usize },
    #[error("interval level must be strictly between 0 and 1, got {0}")]
    IntervalLevel(f64),
    #[error("backtest origins must be at least 1")]
    ZeroOrigins,
    #[error("backtest step must be at least 1")]
    ZeroBacktestStep,
    #[error("no candidate models configured")]
    NoCandidates,
    #[error("history has {got} points, need at least {need} (two seasons plus the horizon)")]
    HistoryTooShort { got: usize, need: usize },
    #[error("flags have {flags} entries for {values} values")]
    FlagLength { flags: usize, values: usize },
    #[error("series {index}: {source}")]
    Series {
        index: usize,
        #[source]
        source: Box<ForecastError>,
    },
    #[error("unknown model {0:?}")]
    UnknownModel(String),
    #[error("line {line}: {message}")]
    Parse { line: usize, message: String },
    #[error("{0}")]
    Input(String),
    #[error("failed to read or write csv: {0}")]
    Io(#[from] std::io::Error),
}

/// A candidate forecasting model. `Display`/`FromStr` give the stable names stored with results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ModelKind {
    /// Repeats the last daily season.
    SeasonalNaive,
    /// Repeats the last weekly season.
    WeeklyNaive,
    /// Theta (SES with drift) on the series adjusted by a robust daily seasonal index.
    SeasonalTheta,
    /// Theta on the series adjusted by a robust weekly seasonal index.
    WeeklyTheta,
    /// Direct ridge regression of this series on its lags and daily/weekly Fourier terms.
    LocalRidge,
    /// [`ModelKind::LocalRidge`] on the logs of a positive series (multiplicative seasonality).
    LocalLogRidge,
    /// Direct ridge regression on normalised lag windows, trained across all series of a batch.
    PooledRidge,
    /// [`ModelKind::PooledRidge`] on log ratios to the level.
    PooledLogRidge,
}

impl ModelKind {
    /// Every model, seasonal naive first (it wins ties).
    pub const ALL: [ModelKind; 8] = [
        ModelKind::SeasonalNaive,
        ModelKind::WeeklyNaive,
        ModelKind::SeasonalTheta,
        ModelKind::WeeklyTheta,
        ModelKind::LocalRidge,
        ModelKind::LocalLogRidge,
        ModelKind::PooledRidge,
        ModelKind::PooledLogRidge,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ModelKind::SeasonalNaive => "seasonal-naive",
            ModelKind::WeeklyNaive => "weekly-naive",
            ModelKind::SeasonalTheta => "seasonal-theta",
            ModelKind::WeeklyTheta => "weekly-theta",
            ModelKind::LocalRidge => "local-ridge",
            ModelKind::LocalLogRidge => "local-log-ridge",
            ModelKind::PooledRidge => "pooled-ridge",
            ModelKind::PooledLogRidge => "pooled-log-ridge",
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ModelKind {
    type Err = ForecastError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelKind::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| ForecastError::UnknownModel(s.to_string()))
    }
}

/// The model that produced a forecast: one candidate or the mean of several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Model {
    Single(ModelKind),
    Mean(Vec<ModelKind>),
}

impl Model {
    /// The candidates this model uses.
    pub fn members(&self) -> &[ModelKind] {
        match self {
            Model::Single(k) => std::slice::from_ref(k),
            Model::Mean(ks) => ks,
        }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Model::Single(k) => write!(f, "{k}"),
            Model::Mean(ks) => {
                f.write_str("mean(")?;
                for (i, k) in ks.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{k}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// How backtest errors rank the candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectBy {
    /// Mean MASE over the origins.
    Mase,
    /// MASE and sMAPE, each relative to seasonal naive's on the same origins, summed (the M4 OWA
    /// shape): favours models that are good in both absolute and relative terms.
    MaseAndSmape,
}

/// Settings of one forecast run.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastConfig {
    /// Steps ahead to forecast (5..=120 for per-minute rates, 48 for M4 Hourly).
    pub horizon: usize,
    /// Daily season in steps: 24 for hourly data, 1440 for per-minute data.
    pub season: usize,
    /// Weekly season in steps (168 hourly, 10080 per minute); `None` disables weekly models and
    /// terms. Used only when the histories are long enough.
    pub weekly_season: Option<usize>,
    /// Nominal coverage of the prediction interval, strictly between 0 and 1.
    pub interval_level: f64,
    /// Rolling-origin backtest origins; the last one leaves exactly `horizon` points to score.
    /// Fewer are used when the history is short.
    pub backtest_origins: usize,
    /// Steps between backtest origins; `None` means `min(horizon, season)`.
    pub backtest_step: Option<usize>,
    /// Models that may be selected.
    pub candidates: Vec<ModelKind>,
    /// How candidates are ranked; the chosen one must beat seasonal naive, which wins ties.
    pub select_by: SelectBy,
    /// The mean of the best `combine_top` candidates is one more candidate (below 2 disables).
    pub combine_top: usize,
    /// Ridge penalty of the pooled regression, relative to the mean feature energy.
    pub pooled_ridge: f64,
    /// Ridge penalty of the local regression, relative to the mean feature energy.
    pub local_ridge: f64,
    /// Longest contiguous lag window of the pooled regression; when a season is longer, it uses
    /// the recent hour plus the same-phase lag of each step instead.
    pub max_lag_window: usize,
    /// Runs of at least this many zeros where same-phase neighbours carry traffic are outages and
    /// are replaced before fitting (0 disables).
    pub outage_min_run: usize,
    /// Clip points further than this many robust deviations from their same-phase neighbours
    /// (`None` disables; flagged points are always replaced).
    pub winsorise: Option<f64>,
    /// Clamp forecasts and lower bounds at zero (request rates).
    pub nonnegative: bool,
    /// Worker threads for [`forecast_many`]; 0 means all available cores.
    pub threads: usize,
}

impl Default for ForecastConfig {
    /// Per-minute request rates, one hour ahead.
    fn default() -> Self {
        ForecastConfig::new(60, 1440)
    }
}

impl ForecastConfig {
    /// Defaults for `horizon` steps ahead with a daily `season`; the weekly season is `7·season`.
    pub fn new(horizon: usize, season: usize) -> Self {
        ForecastConfig {
            horizon,
            season,
            weekly_season: Some(7 * season),
            interval_level: 0.9,
            backtest_origins: 6,
            backtest_step: None,
            candidates: ModelKind::ALL.to_vec(),
            select_by: SelectBy::MaseAndSmape,
            combine_top: 4,
            pooled_ridge: 1e-3,
            local_ridge: 1e-2,
            max_lag_window: 336,
            outage_min_run: 3,
            winsorise: None,
            nonnegative: true,
            threads: 0,
        }
    }

    /// Checks the settings that do not depend on the data.
    pub fn validate(&self) -> Result<(), ForecastError> {
        if self.horizon == 0 {
            return Err(ForecastError::ZeroHorizon);
        }
        if self.season == 0 {
            return Err(ForecastError::ZeroSeason);
        }
        if let Some(w) = self.weekly_season {
            if w <= self.season {
                return Err(ForecastError::WeeklyNotLonger {
                    weekly: w,
                    season: self.season,
                });
            }
        }
        if !(self.interval_level > 0.0 && self.interval_level < 1.0) {
            return Err(ForecastError::IntervalLevel(self.interval_level));
        }
        if self.backtest_origins == 0 {
            return Err(ForecastError::ZeroOrigins);
        }
        if self.backtest_step == Some(0) {
            return Err(ForecastError::ZeroBacktestStep);
        }
        if self.candidates.is_empty() {
            return Err(ForecastError::NoCandidates);
        }
        Ok(())
    }

    /// Shortest accepted history: two seasons plus the horizon (one backtest origin).
    pub fn min_history(&self) -> usize {
        2 * self.season + self.horizon
    }

    fn step(&self) -> usize {
        self.backtest_step
            .unwrap_or_else(|| self.horizon.min(self.season))
    }

    /// Backtest origins that fit a history of `n` points.
    fn origins_for(&self, n: usize) -> usize {
        let spare = n.saturating_sub(self.min_history());
        self.backtest_origins.min(spare / self.step() + 1)
    }

    /// Points at the end of a history that the backtest scores (and the pooled backtest model
    /// must not see).
    fn span(&self, origins: usize) -> usize {
        (origins.max(1) - 1) * self.step() + self.horizon
    }

    fn threads(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// One model's rolling-origin backtest error.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateScore {
    pub model: Model,
    /// Mean over origins of MASE (scaled by the in-sample seasonal-naive error before the origin).
    pub mase: f64,
    /// Mean over origins of sMAPE, in percent.
    pub smape: f64,
}

/// The rolling-origin backtest behind a forecast.
#[derive(Debug, Clone, PartialEq)]
pub struct Backtest {
    /// Origins scored, each followed by `horizon` points.
    pub origins: usize,
    /// MASE of the chosen model.
    pub mase: f64,
    /// sMAPE of the chosen model, in percent.
    pub smape: f64,
    /// MASE of seasonal naive on the same origins.
    pub seasonal_naive_mase: f64,
    /// Every candidate scored, best first.
    pub candidates: Vec<CandidateScore>,
}

/// A forecast of `horizon` steps with its prediction interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    pub point: Vec<f64>,
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
    pub model: Model,
    pub backtest: Backtest,
    /// History points replaced or clipped before fitting (flags, gaps, outages, winsorising).
    pub cleaned_points: usize,
}

/// One series to forecast: values at a fixed step, oldest first, and optional anomaly flags
/// (empty, or one per value; `true` marks a point that must not be learned from). NaN values are
/// treated as missing.
#[derive(Debug, Clone, Copy)]
pub struct History<'a> {
    pub values: &'a [f64],
    pub flagged: &'a [bool],
}

impl<'a> History<'a> {
    pub fn new(values: &'a [f64]) -> Self {
        History {
            values,
            flagged: &[],
        }
    }

    pub fn with_flags(values: &'a [f64], flagged: &'a [bool]) -> Self {
        History { values, flagged }
    }
}

/// Forecasts one series (the pooled model is then fitted on this series alone).
pub fn forecast(history: &[f64], cfg: &ForecastConfig) -> Result<Forecast, ForecastError> {
    forecast_flagged(history, &[], cfg)
}

/// Forecasts one series whose `flagged` points (e.g. detected attack traffic) must not be
/// learned from.
pub fn forecast_flagged(
    history: &[f64],
    flagged: &[bool],
    cfg: &ForecastConfig,
) -> Result<Forecast, ForecastError> {
    let mut out =
        forecast_many(&[History::with_flags(history, flagged)], cfg).map_err(|e| match e {
            ForecastError::Series { source, .. } => *source,
            other => other,
        })?;
    Ok(out.remove(0))
}

/// Forecasts a batch of series (e.g. every route and the total), training the pooled model across
/// all of them; series run in parallel on `cfg.threads` threads.
pub fn forecast_many(
    histories: &[History<'_>],
    cfg: &ForecastConfig,
) -> Result<Vec<Forecast>, ForecastError> {
    cfg.validate()?;
    for (index, h) in histories.iter().enumerate() {
        let fail = |source| ForecastError::Series {
            index,
            source: Box::new(source),
        };
        if !h.flagged.is_empty() && h.flagged.len() != h.values.len() {
            return Err(fail(ForecastError::FlagLength {
                flags: h.flagged.len(),
                values: h.values.len(),
            }));
        }
        if h.values.len() < cfg.min_history() {
            return Err(fail(ForecastError::HistoryTooShort {
                got: h.values.len(),
                need: cfg.min_history(),
            }));
        }
    }
    let threads = cfg.threads();
    let spec = CleanSpec {
        season: cfg.season,
        outage_min_run: cfg.outage_min_run,
        winsorise: cfg.winsorise,
    };
    let cleaned: Vec<(Vec<f64>, usize)> =
        par_map(histories, threads, |h| clean(h.values, h.flagged, spec));

    // Weekly terms only when every series holds two weeks before its earliest backtest origin.
    let weekly = cfg.weekly_season.filter(|&w| {
        cleaned.iter().all(|(y, _)| {
            let n = y.len();
            n >= 2 * w + cfg.span(cfg.origins_for(n))
        })
    });
    let periods: Vec<usize> = std::iter::once(cfg.season).chain(weekly).collect();

    let truncated: Vec<&[f64]> = cleaned
        .iter()
        .map(|(y, _)| &y[..y.len() - cfg.span(cfg.origins_for(y.len()))])
        .collect();
    let full: Vec<&[f64]> = cleaned.iter().map(|(y, _)| y.as_slice()).collect();
    let fit_pooled = |kind: ModelKind, log: bool| -> Option<(PooledModel, PooledModel)> {
        if !cfg.candidates.contains(&kind) {
            return None;
        }
        let lags = lag_set(
            cfg.horizon,
            &periods,
            cfg.max_lag_window,
            cfg.season.min(60),
        );
        let pspec = PooledSpec {
            horizon: cfg.horizon,
            level_window: cfg.season,
            lambda: cfg.pooled_ridge,
            max_windows_per_series: 4000,
            threads,
            log,
        };
        let bt = PooledModel::fit(&truncated, lags.clone(), pspec)?;
        let fin = PooledModel::fit(&full, lags, pspec)?;
        Some((bt, fin))
    };
    let pooled = fit_pooled(ModelKind::PooledRidge, false);
    let pooled_log = fit_pooled(ModelKind::PooledLogRidge, true);

    let ctx = Ctx {
        cfg,
        weekly,
        periods: periods.clone(),
        local_lags: lag_set(cfg.horizon, &periods, 0, cfg.season.min(24)),
        pooled: pooled.as_ref(),
        pooled_log: pooled_log.as_ref(),
    };
    let forecasts = par_map(&cleaned, threads, |(y, changed)| {
        let mut f = select_and_forecast(y, &ctx);
        f.cleaned_points = *changed;
        f
    });
    Ok(forecasts)
}

/// What the candidates need besides the series.
struct Ctx<'a> {
    cfg: &'a ForecastConfig,
    weekly: Option<usize>,
    periods: Vec<usize>,
    local_lags: Vec<usize>,
    /// Pooled models fitted without the backtest span and on everything.
    pooled: Option<&'a (PooledModel, PooledModel)>,
    pooled_log: Option<&'a (PooledModel, PooledModel)>,
}

fn predict(kind: ModelKind, y: &[f64], ctx: &Ctx<'_>, final_fit: bool) -> Option<Vec<f64>> {
    let h = ctx.cfg.horizon;
    let s = ctx.cfg.season;
    match kind {
        ModelKind::SeasonalNaive => seasonal_naive(y, s, h),
        ModelKind::WeeklyNaive => seasonal_naive(y, ctx.weekly?, h),
        ModelKind::SeasonalTheta => seasonal_theta(y, s, h),
        ModelKind::WeeklyTheta => seasonal_theta(y, ctx.weekly?, h),
        ModelKind::LocalRidge | ModelKind::LocalLogRidge => local_ridge(
            y,
            &ctx.local_lags,
            &ctx.periods,
            h,
            ctx.cfg.local_ridge,
            kind == ModelKind::LocalLogRidge,
        ),
        ModelKind::PooledRidge | ModelKind::PooledLogRidge => {
            let (bt, fin) = if kind == ModelKind::PooledRidge {
                ctx.pooled?
            } else {
                ctx.pooled_log?
            };
            if final_fit {
                fin.predict(y)
            } else {
                bt.predict(y)
            }
        }
    }
}

struct Scored {
    model: Model,
    /// Forecasts per origin (latest origin first).
    preds: Vec<Vec<f64>>,
    mase: f64,
    smape: f64,
}

fn select_and_forecast(y: &[f64], ctx: &Ctx<'_>) -> Forecast {
    let cfg = ctx.cfg;
    let n = y.len();
    let h = cfg.horizon;
    let origins: Vec<usize> = (0..cfg.origins_for(n))
        .map(|j| n - h - j * cfg.step())
        .collect();
    let level = y.iter().map(|v| v.abs()).sum::<f64>() / n as f64;
    let floor = 1e-9 * level + 1e-12;
    let scales: Vec<f64> = origins
        .iter()
        .map(|&o| snaive_scale(&y[..o], cfg.season).max(floor))
        .collect();
    let score = |preds: &[Vec<f64>]| -> (f64, f64) {
        let (mut mase, mut smape) = (0.0, 0.0);
        for ((&o, f), scale) in origins.iter().zip(preds).zip(&scales) {
            let (m, s) = errors(&y[o..o + h], f, cfg.nonnegative);
            mase += m / scale;
            smape += s;
        }
        let k = origins.len() as f64;
        (mase / k, smape / k)
    };

    let mut kinds = cfg.candidates.clone();
    if !kinds.contains(&ModelKind::SeasonalNaive) {
        kinds.insert(0, ModelKind::SeasonalNaive);
    }
    let mut scored: Vec<Scored> = Vec::new();
    for &kind in &kinds {
        let preds: Option<Vec<Vec<f64>>> = origins
            .iter()
            .map(|&o| {
                predict(kind, &y[..o], ctx, false).filter(|f| f.iter().all(|v| v.is_finite()))
            })
            .collect();
        if let Some(preds) = preds {
            let (mase, smape) = score(&preds);
            scored.push(Scored {
                model: Model::Single(kind),
                preds,
                mase,
                smape,
            });
        }
    }
    let snaive_mase = scored
        .iter()
        .find(|s| s.model == Model::Single(ModelKind::SeasonalNaive))
        .map_or(f64::NAN, |s| s.mase);
    let snaive_smape = scored
        .iter()
        .find(|s| s.model == Model::Single(ModelKind::SeasonalNaive))
        .map_or(f64::NAN, |s| s.smape);
    let key = |s: &Scored| -> f64 {
        match cfg.select_by {
            SelectBy::Mase => s.mase,
            SelectBy::MaseAndSmape => {
                s.mase / snaive_mase.max(1e-12) + s.smape / snaive_smape.max(1e-12)
            }
        }
    };
    // Stable sort keeps the configured order (seasonal naive first) among ties.
    scored.sort_by(|a, b| key(a).total_cmp(&key(b)));
    if cfg.combine_top >= 2 && scored.len() >= 2 {
        let top = &scored[..cfg.combine_top.min(scored.len())];
        let preds: Vec<Vec<f64>> = (0..origins.len())
            .map(|j| mean_of(top.iter().map(|s| s.preds[j].as_slice())))
            .collect();
        let (mase, smape) = score(&preds);
        let mut members: Vec<ModelKind> = top
            .iter()
            .flat_map(|s| s.model.members().to_vec())
            .collect();
        members.sort();
        let combo = Scored {
            model: Model::Mean(members),
            preds,
            mase,
            smape,
        };
        let at = scored.partition_point(|s| key(s) <= key(&combo));
        scored.insert(at, combo);
    }

    let best = &scored[0];
    let point_of = |model: &Model| -> Option<Vec<f64>> {
        let fs: Option<Vec<Vec<f64>>> = model
            .members()
            .iter()
            .map(|&k| predict(k, y, ctx, true))
            .collect();
        fs.map(|fs| mean_of(fs.iter().map(|f| f.as_slice())))
    };
    let (chosen, mut point) = match point_of(&best.model) {
        Some(p) => (best, p),
        None => {
            let sn = scored
                .iter()
                .find(|s| s.model == Model::Single(ModelKind::SeasonalNaive))
                .expect("seasonal naive always fits the minimum history");
            (
                sn,
                seasonal_naive(y, cfg.season, h).expect("history covers a season"),
            )
        }
    };

    // Empirical interval: residual quantiles of the chosen model, pooled over nearby steps.
    let residuals: Vec<Vec<f64>> = origins
        .iter()
        .zip(&chosen.preds)
        .map(|(&o, f)| y[o..o + h].iter().zip(f).map(|(a, b)| a - b).collect())
        .collect();
    let width = (h / 8).max(2);
    let (qlo, qhi) = (
        (1.0 - cfg.interval_level) / 2.0,
        (1.0 + cfg.interval_level) / 2.0,
    );
    let mut lower = Vec::with_capacity(h);
    let mut upper = Vec::with_capacity(h);
    for (step, &p) in point.iter().enumerate() {
        let lo = step.saturating_sub(width);
        let hi = (step + width).min(h - 1);
        let mut e: Vec<f64> = residuals
            .iter()
            .flat_map(|r| r[lo..=hi].iter().copied())
            .collect();
        e.sort_by(f64::total_cmp);
        lower.push(p + quantile(&e, qlo).min(0.0));
        upper.push(p + quantile(&e, qhi).max(0.0));
    }
    if cfg.nonnegative {
        for v in point
            .iter_mut()
            .chain(lower.iter_mut())
            .chain(upper.iter_mut())
        {
            *v = v.max(0.0);
        }
    }
    Forecast {
        point,
        lower,
        upper,
        model: chosen.model.clone(),
        backtest: Backtest {
            origins: origins.len(),
            mase: chosen.mase,
            smape: chosen.smape,
            seasonal_naive_mase: snaive_mase,
            candidates: scored
                .iter()
                .map(|s| CandidateScore {
                    model: s.model.clone(),
                    mase: s.mase,
                    smape: s.smape,
                })
                .collect(),
        },
        cleaned_points: 0,
    }
}

/// Mean absolute error and sMAPE (percent) of one forecast.
fn errors(actual: &[f64], forecast: &[f64], nonnegative: bool) -> (f64, f64) {
    let h = actual.len() as f64;
    let (mut mae, mut smape) = (0.0, 0.0);
    for (&a, &f) in actual.iter().zip(forecast) {
        let f = if nonnegative { f.max(0.0) } else { f };
        mae += (a - f).abs();
        let d = a.abs() + f.abs();
        if d > 0.0 {
            smape += 200.0 * (a - f).abs() / d;
        }
    }
    (mae / h, smape / h)
}

fn mean_of<'a>(fs: impl Iterator<Item = &'a [f64]>) -> Vec<f64> {
    let mut sum: Vec<f64> = Vec::new();
    let mut k = 0.0;
    for f in fs {
        if sum.is_empty() {
            sum = vec![0.0; f.len()];
        }
        for (s, v) in sum.iter_mut().zip(f) {
            *s += v;
        }
        k += 1.0;
    }
    sum.iter_mut().for_each(|s| *s /= k);
    sum
}

/// Linear-interpolated quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let i = pos.floor() as usize;
    let j = (i + 1).min(sorted.len() - 1);
    let w = pos - i as f64;
    sorted[i] * (1.0 - w) + sorted[j] * w
}

/// Maps `f` over `items` on up to `threads` scoped threads, keeping the order.
fn par_map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = threads.max(1).min(items.len().max(1));
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut parts: Vec<(usize, R)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= items.len() {
                            break;
                        }
                        out.push((i, f(&items[i])));
                    }
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("forecast worker panicked"))
            .collect()
    });
    parts.sort_by_key(|(i, _)| *i);
    parts.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests;
