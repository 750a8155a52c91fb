-- Reputation per client (with the reason for every change), limit suggestions and their decisions,
-- the auto-approval rules, and the tuning cursor. Every instant named `*_at` without `wall` is log
-- time (the timestamps in the logs), so replayed and live traffic produce the same rows.

-- The current score of each client; `updated_at` is the log time it was last folded to.
CREATE TABLE client_reputation (
    client       text PRIMARY KEY,
    score        double precision NOT NULL CHECK (score >= 0 AND score <= 1),
    updated_at   timestamptz NOT NULL,
    first_seen   timestamptz NOT NULL,
    good_minutes bigint NOT NULL DEFAULT 0 CHECK (good_minutes >= 0),
    -- The rest of `sluice_core::reputation::Reputation`'s state (serde JSON), so a restart resumes
    -- the fold exactly where it stopped.
    state        jsonb NOT NULL
);

-- Every change of a score, with its reason (`sluice_core::reputation::ReputationReason`, JSON).
CREATE TABLE reputation_events (
    id          bigserial PRIMARY KEY,
    client      text NOT NULL,
    at          timestamptz NOT NULL,
    delta       double precision NOT NULL,
    score_after double precision NOT NULL CHECK (score_after >= 0 AND score_after <= 1),
    kind        text NOT NULL,
    reason      jsonb NOT NULL
);
CREATE INDEX reputation_events_client_at ON reputation_events (client, at DESC, id DESC);

-- Suggested limits. `rule` is the policy rule (`sluice_core::policy::Rule`, JSON) an approval
-- would publish; `current` the rule of the same id in force when it was suggested (NULL: none).
CREATE TABLE limit_suggestions (
    id              bigserial PRIMARY KEY,
    rule_id         text NOT NULL,
    client          text,
    state           text NOT NULL DEFAULT 'pending'
                    -- `sluice_core::approval::SuggestionState`; a pending suggestion replaced by a newer one for the
                    -- same rule is expired with a comment naming its successor.
                    CHECK (state IN ('pending', 'approved', 'rejected', 'modified_approved', 'expired')),
    rule            jsonb NOT NULL,
    current         jsonb,
    diff            jsonb NOT NULL,
    confidence      double precision NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
    reasons         jsonb NOT NULL DEFAULT '[]',
    evidence        jsonb NOT NULL,
    backtest        jsonb,
    abusive         boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    created_wall    timestamptz NOT NULL DEFAULT now(),
    -- The decision: who, when (wall clock), why, what was finally published (after a modify).
    decided_by      text,
    decided_wall    timestamptz,
    decision_comment text,
    decided_rule    jsonb,
    policy_version  bigint REFERENCES policy_versions (version),
    -- A temporary limit reverts by itself at this log time.
    temporary_until timestamptz,
    -- When (log time) the temporary limit was reverted, and the policy version that reverted it.
    reverted_at     timestamptz,
    reverted_version bigint REFERENCES policy_versions (version),
    CHECK (expires_at >= created_at)
);
CREATE INDEX limit_suggestions_state ON limit_suggestions (state, id DESC);
CREATE INDEX limit_suggestions_client ON limit_suggestions (client, id DESC);
-- At most one open suggestion per rule: a newer suggestion supersedes the pending one.
CREATE UNIQUE INDEX limit_suggestions_one_pending ON limit_suggestions (rule_id) WHERE state = 'pending';

-- The auto-approval rules (`sluice_core::approval::AutoApprovalConfig`, JSON): one row, changed
-- only by admins (audited). Absent row = the defaults (everything off).
CREATE TABLE auto_approval_config (
    id         boolean PRIMARY KEY DEFAULT true CHECK (id),
    config     jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL
);

-- How far in log time the tuning step has run (one row).
CREATE TABLE tuning_cursor (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    through     timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
