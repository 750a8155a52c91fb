-- Forecasting and capacity: per-route (and total) models chosen by backtest, their forecasts with
-- intervals, route capacities (configured or learned), and the capacity factor per minute. Written
-- by the forecast loop in log time; the API only reads. The total over all routes is stored under
-- the route name '*'.

-- The model chosen at the latest refit of each series.
CREATE TABLE forecast_models (
    route              text PRIMARY KEY,
    -- Log time of the refit: the forecast starts at this minute, from history before it.
    fitted_at          timestamptz NOT NULL,
    history_from       timestamptz NOT NULL,
    season_minutes     integer NOT NULL,
    horizon_minutes    integer NOT NULL,
    model              text NOT NULL,
    backtest_origins   integer NOT NULL,
    mase               double precision NOT NULL,
    smape              double precision NOT NULL,
    -- Seasonal naive on the same backtest origins.
    seasonal_naive_mase double precision NOT NULL,
    -- Every candidate with its backtest error, best first: [{"model", "mase", "smape"}].
    candidates         jsonb NOT NULL,
    -- History points replaced before fitting (outages, missing values).
    cleaned_points     integer NOT NULL,
    -- Minutes without any request in the history window (outages or idle).
    zero_minutes       integer NOT NULL,
    -- Requests of clients under an open anomaly subtracted from the history.
    excluded_requests  bigint NOT NULL,
    fit_ms             double precision NOT NULL
);

-- Forecast per series and minute: the most recent forecast made before that minute.
CREATE TABLE forecast_points (
    route     text NOT NULL,
    minute    timestamptz NOT NULL,
    fitted_at timestamptz NOT NULL,
    forecast  double precision NOT NULL,
    lower     double precision NOT NULL,
    upper     double precision NOT NULL,
    PRIMARY KEY (route, minute)
);

-- Capacity per route in requests per second: configured, or learned (the knee of latency vs load)
-- with its evidence (buckets and fit).
CREATE TABLE route_capacity (
    route        text PRIMARY KEY,
    capacity_rps double precision NOT NULL CHECK (capacity_rps > 0),
    source       text NOT NULL CHECK (source IN ('configured', 'learned')),
    evidence     jsonb,
    computed_at  timestamptz NOT NULL
);

-- The capacity factor of a route at the end of each log minute, in (0, 1].
CREATE TABLE capacity_factors (
    route          text NOT NULL,
    minute         timestamptz NOT NULL,
    factor         double precision NOT NULL CHECK (factor > 0 AND factor <= 1),
    -- Planned load (requests/s) over capacity; null when either is unknown.
    utilisation    double precision,
    planned_rps    double precision,
    capacity_rps   double precision,
    PRIMARY KEY (route, minute)
);

-- How far (log time) the forecast loop has evaluated: minutes before it are final.
CREATE TABLE forecast_cursor (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    evaluated_until timestamptz NOT NULL,
    last_refit  timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
