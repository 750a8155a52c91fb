-- Ingestion: raw access records (partitioned by log-time day), batches, rejected lines, per-minute rollups.

CREATE TABLE ingest_batches (
    id              bigserial PRIMARY KEY,
    idempotency_key text UNIQUE,
    source          text NOT NULL,
    format          text NOT NULL,
    lines_read      bigint NOT NULL,
    lines_accepted  bigint NOT NULL,
    lines_rejected  bigint NOT NULL,
    min_ts          timestamptz,
    max_ts          timestamptz,
    committed_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ingest_batches_counts_add_up CHECK (lines_read = lines_accepted + lines_rejected)
);

CREATE TABLE access_log (
    ts                  timestamptz NOT NULL,
    source              text NOT NULL,
    client_kind         text,
    client              text,
    api_key             text,
    consumer            text,
    username            text,
    ip                  inet,
    method              text,
    host                text,
    path                text NOT NULL,
    route               text NOT NULL,
    query               text,
    protocol            text,
    status              smallint NOT NULL,
    bytes_sent          bigint,
    bytes_received      bigint,
    latency_us          bigint,
    upstream_latency_us bigint,
    user_agent          text,
    referer             text,
    request_id          text,
    extras              jsonb
) PARTITION BY RANGE (ts);

CREATE INDEX access_log_ts_brin ON access_log USING brin (ts);

CREATE TABLE ingest_rejects (
    id          bigserial PRIMARY KEY,
    batch_id    bigint NOT NULL REFERENCES ingest_batches (id) ON DELETE CASCADE,
    source      text NOT NULL,
    line_no     bigint NOT NULL,
    reason      text NOT NULL,
    raw         text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ingest_rejects_batch ON ingest_rejects (batch_id);

-- Per-minute rollups, maintained by every ingested batch, so detection never rescans access_log.
CREATE TABLE rollup_client_minute (
    client_kind      text NOT NULL,
    client           text NOT NULL,
    minute           timestamptz NOT NULL,
    requests         bigint NOT NULL,
    status_2xx       bigint NOT NULL,
    status_3xx       bigint NOT NULL,
    status_401       bigint NOT NULL,
    status_403       bigint NOT NULL,
    status_404       bigint NOT NULL,
    status_429       bigint NOT NULL,
    status_4xx_other bigint NOT NULL,
    status_5xx       bigint NOT NULL,
    method_get       bigint NOT NULL,
    method_post      bigint NOT NULL,
    method_other     bigint NOT NULL,
    bytes_sent       bigint NOT NULL,
    bytes_received   bigint NOT NULL,
    latency_sum_us   bigint NOT NULL,
    latency_count    bigint NOT NULL,
    latency_max_us   bigint NOT NULL,
    PRIMARY KEY (client_kind, client, minute)
);

CREATE INDEX rollup_client_minute_minute ON rollup_client_minute (minute);

CREATE TABLE rollup_route_minute (
    route            text NOT NULL,
    minute           timestamptz NOT NULL,
    requests         bigint NOT NULL,
    status_2xx       bigint NOT NULL,
    status_3xx       bigint NOT NULL,
    status_401       bigint NOT NULL,
    status_403       bigint NOT NULL,
    status_404       bigint NOT NULL,
    status_429       bigint NOT NULL,
    status_4xx_other bigint NOT NULL,
    status_5xx       bigint NOT NULL,
    method_get       bigint NOT NULL,
    method_post      bigint NOT NULL,
    method_other     bigint NOT NULL,
    bytes_sent       bigint NOT NULL,
    bytes_received   bigint NOT NULL,
    latency_sum_us   bigint NOT NULL,
    latency_count    bigint NOT NULL,
    latency_max_us   bigint NOT NULL,
    PRIMARY KEY (route, minute)
);

CREATE INDEX rollup_route_minute_minute ON rollup_route_minute (minute);

-- The newest log time seen, per source: the ingestion watermark that retention and detection key on.
CREATE TABLE ingest_watermarks (
    source     text PRIMARY KEY,
    max_ts     timestamptz NOT NULL
);
