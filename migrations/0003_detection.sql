-- Detection: per-client minute features (the rollup extension detection needs), anomalies with
-- their explanations and campaign members, the detection cursor (log time), and the model registry.

-- One row per client per closed log-time minute, written by the detection loop once the
-- watermark has passed the minute, so distinct counts are exact (rollup_client_minute merges
-- sums across batches; distinct counts cannot be merged that way).
CREATE TABLE client_minute_features (
    client_kind      text NOT NULL,
    client           text NOT NULL,
    minute           timestamptz NOT NULL,
    requests         integer NOT NULL,
    peak_10s         integer NOT NULL,
    distinct_routes  integer NOT NULL,
    distinct_paths   integer NOT NULL,
    distinct_ips     integer NOT NULL,
    distinct_uas     integer NOT NULL,
    route_entropy    real NOT NULL,
    error_share      real NOT NULL,
    status_401       integer NOT NULL,
    status_403       integer NOT NULL,
    status_404       integer NOT NULL,
    status_429       integer NOT NULL,
    status_5xx       integer NOT NULL,
    bytes_sent       bigint NOT NULL,
    latency_mean_us  real,
    inter_arrival_cv real,
    -- What the client's own baseline expected this minute (null while it has none) and the
    -- detector's score of the minute in [0, 1].
    expected_requests real,
    score            real,
    PRIMARY KEY (client_kind, client, minute)
);

CREATE INDEX client_minute_features_minute ON client_minute_features (minute);

-- Per-client profile over history (log time), extracted in batch from client_minute_features:
-- the baseline an analyst compares recent behaviour with.
CREATE TABLE client_profiles (
    client_kind            text NOT NULL,
    client                 text NOT NULL,
    computed_at            timestamptz NOT NULL,
    history_from           timestamptz NOT NULL,
    active_minutes         integer NOT NULL,
    first_seen             timestamptz NOT NULL,
    last_seen              timestamptz NOT NULL,
    requests_median        real NOT NULL,
    requests_mad           real NOT NULL,
    requests_p95           real NOT NULL,
    peak_10s_p95           real NOT NULL,
    distinct_routes_median real NOT NULL,
    error_share_median     real NOT NULL,
    -- 24 entries, hour of day (UTC): {"minutes": n, "median": x, "mad": y}
    hour_of_day            jsonb NOT NULL,
    PRIMARY KEY (client_kind, client)
);

CREATE TABLE anomalies (
    id              bigserial PRIMARY KEY,
    client_kind     text NOT NULL,
    client          text NOT NULL,
    kind            text NOT NULL,
    score           real NOT NULL CHECK (score >= 0 AND score <= 1),
    first_detected  timestamptz NOT NULL,
    last_flagged    timestamptz NOT NULL,
    state           text NOT NULL CHECK (state IN ('open', 'resolved')),
    reasons         jsonb NOT NULL,
    campaign        text,
    member_count    integer NOT NULL DEFAULT 0,
    model_version   bigint,
    -- A replayed or restarted detector finds the same anomaly again: it updates, never duplicates.
    UNIQUE (client_kind, client, kind, first_detected)
);

CREATE INDEX anomalies_first_detected ON anomalies (first_detected DESC);
CREATE INDEX anomalies_state_kind ON anomalies (state, kind);

CREATE TABLE anomaly_members (
    anomaly_id  bigint NOT NULL REFERENCES anomalies (id) ON DELETE CASCADE,
    client_kind text NOT NULL,
    client      text NOT NULL,
    PRIMARY KEY (anomaly_id, client_kind, client)
);

-- Every identity an anomaly names (the client itself, or all campaign members), for lookups by client.
CREATE INDEX anomaly_members_client ON anomaly_members (client, client_kind);

-- How far (log time) the detection loop has scored: minutes before `scored_until` are final.
CREATE TABLE detection_cursor (
    id           boolean PRIMARY KEY DEFAULT true CHECK (id),
    scored_until timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE model_registry (
    id              bigserial PRIMARY KEY,
    kind            text NOT NULL,
    version         integer NOT NULL,
    trained_from    timestamptz NOT NULL,
    trained_to      timestamptz NOT NULL,
    features        text[] NOT NULL,
    config          jsonb NOT NULL,
    metrics         jsonb NOT NULL,
    artefact        text,
    training_ms     double precision NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, version)
);
