-- Policy versions (immutable, monotonically numbered), which version each gateway group is served
-- (staged rollout), and what each gateway reports it applied.

CREATE TABLE policy_versions (
    version       bigint PRIMARY KEY CHECK (version >= 1),
    content_hash  text NOT NULL CHECK (content_hash ~ '^sha256:[0-9a-f]{64}$'),
    document      jsonb NOT NULL,
    rule_count    integer NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL,
    comment       text,
    restored_from bigint REFERENCES policy_versions (version),
    -- The gateway group it was first published to (canary), or NULL for every gateway.
    published_to  text
);

CREATE FUNCTION policy_versions_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'policy_versions is immutable: publish a new version instead'
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER policy_versions_immutable
    BEFORE UPDATE OR DELETE ON policy_versions
    FOR EACH ROW EXECUTE FUNCTION policy_versions_are_immutable();

CREATE TRIGGER policy_versions_no_truncate
    BEFORE TRUNCATE ON policy_versions
    FOR EACH STATEMENT EXECUTE FUNCTION policy_versions_are_immutable();

-- Which version each group is served. The row '*' is every group without a row of its own; a
-- group row pins that group ahead (canary) until the version is promoted or a newer one is
-- published to everyone.
CREATE TABLE policy_rollout (
    group_name text PRIMARY KEY,
    version    bigint NOT NULL REFERENCES policy_versions (version),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE gateways (
    id              text PRIMARY KEY,
    group_name      text NOT NULL DEFAULT 'default',
    last_seen       timestamptz NOT NULL DEFAULT now(),
    applied_version bigint,
    last_error      text,
    reported_at     timestamptz NOT NULL DEFAULT now()
);
