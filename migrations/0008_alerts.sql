-- Alert webhooks: what `sluice serve --alert-webhook` raised and delivered. Every time here is wall
-- clock (now()): alerts are about how long people and gateways have not acted, not about log time.

-- One notification is one JSON body POSTed to every configured webhook. It covers one alert, or a
-- digest of several of the same kind raised in the same check.
CREATE TABLE alert_notifications (
    id         bigserial PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('anomaly_high_severity', 'suggestion_waiting', 'gateway_behind')),
    severity   text NOT NULL CHECK (severity IN ('critical', 'warning')),
    created_at timestamptz NOT NULL DEFAULT now(),
    -- The body sent, exactly (it names no webhook URL).
    payload    jsonb NOT NULL
);

-- One row per thing an alert is about ('anomaly:42', 'suggestion:17', 'gateway:edge-1@3'): the
-- unique key is what makes every condition notify once, across restarts. A lagging gateway gets
-- its row when the alerter first sees it behind (notification_id NULL); the row is deleted if it
-- catches up before --alert-gateway-lag, and notified once that long has passed.
CREATE TABLE alerts (
    id              bigserial PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('anomaly_high_severity', 'suggestion_waiting', 'gateway_behind')),
    subject         text NOT NULL,
    observed_at     timestamptz NOT NULL DEFAULT now(),
    notification_id bigint REFERENCES alert_notifications (id) ON DELETE CASCADE,
    UNIQUE (kind, subject)
);

CREATE INDEX alerts_notification ON alerts (notification_id);

-- One delivery per notification and webhook. `webhook` identifies the URL without its secret
-- parts (scheme, host and a hash of the whole URL: Slack puts the secret in the path).
CREATE TABLE alert_deliveries (
    notification_id bigint NOT NULL REFERENCES alert_notifications (id) ON DELETE CASCADE,
    webhook         text NOT NULL,
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error      text,
    last_attempt_at timestamptz,
    -- When the next attempt is due (while neither delivered nor given up); also a short lease
    -- while an attempt is in flight, so two servers never post the same delivery at once.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    gave_up_at      timestamptz,
    PRIMARY KEY (notification_id, webhook)
);

CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND gave_up_at IS NULL;
