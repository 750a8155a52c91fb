//! Policy versions and their delivery state: immutable, monotonically numbered versions
//! (`policy_versions`), which version each gateway group is served (`policy_rollout`: the row
//! `*` for everyone, a row per group pinned ahead, e.g. a canary), and what each gateway reports
//! (`gateways`).
//!
//! Every administrative change (publish, rollback, promote) is one transaction that also writes
//! its `audit_log` row and a `NOTIFY sluice_policy`, so API servers in other processes pick it up.
//! Version numbers come from `max + 1` under a transaction-scoped advisory lock: concurrent
//! publishes get consecutive, distinct versions. Publishing content identical to the newest
//! version is refused as unchanged (so every version is a real change and an ETag never repeats
//! with different content).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sluice_core::policy::{self, Policy, PolicyDiff};
use sqlx::PgPool;

use crate::error::{Result, StoreError};
use crate::tokens::audit_tx;

/// The rollout row that applies to every group without a pin of its own.
pub const ALL_GROUPS: &str = "*";
/// The group of a gateway that names none.
pub const DEFAULT_GROUP: &str = "default";
/// The channel `publish`, `rollback` and `promote` notify.
pub const NOTIFY_CHANNEL: &str = "sluice_policy";
/// Advisory lock key serialising version numbering (ASCII "sluicepv").
const PUBLISH_LOCK: i64 = 0x736c_7569_6365_7076;

/// A version without its rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct VersionInfo {
    pub version: i64,
    pub content_hash: String,
    pub rule_count: i32,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub comment: Option<String>,
    pub restored_from: Option<i64>,
    /// The group it was published to first (canary), or `None` for every gateway.
    pub published_to: Option<String>,
}

const INFO_COLUMNS: &str =
    "version, content_hash, rule_count, created_at, created_by, comment, restored_from, published_to";

/// One version with its policy.
#[derive(Clone, Debug)]
pub struct StoredPolicy {
    pub info: VersionInfo,
    pub policy: Policy,
}

/// Which group is served which version: `*` first, then pinned groups by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RolloutState {
    /// The version every group without a pin gets (`None` before the first publish to all).
    pub all: Option<i64>,
    /// Groups pinned ahead of `all`, by name.
    pub pinned: Vec<(String, i64)>,
}

impl RolloutState {
    /// The version a gateway of `group` is served.
    pub fn version_for(&self, group: &str) -> Option<i64> {
        self.pinned
            .iter()
            .find(|(g, _)| g == group)
            .map(|(_, v)| *v)
            .or(self.all)
    }
}

/// Options of a publish.
#[derive(Clone, Debug, Default)]
pub struct Publish<'a> {
    /// Who publishes (audit log `actor`).
    pub actor: &'a str,
    pub comment: Option<&'a str>,
    /// Publish to this group only (staged rollout); `None` publishes to every gateway.
    pub group: Option<&'a str>,
}

/// Check a gateway group name: 1 to 64 characters of `a-z 0-9 _ -`, not `*`.
pub fn check_group(group: &str) -> Result<()> {
    let ok = !group.is_empty()
        && group.len() <= 64
        && group
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "invalid gateway group {group:?}: use 1 to 64 characters of a-z 0-9 _ -"
        )))
    }
}

async fn lock(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PUBLISH_LOCK)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn notify(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, version: i64) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(NOTIFY_CHANNEL)
        .bind(version.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Insert `policy` as the next version (the lock must be held). Refuses content identical to the
/// newest version.
async fn insert_version(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    policy: &Policy,
    actor: &str,
    comment: Option<&str>,
    restored_from: Option<i64>,
    published_to: Option<&str>,
) -> Result<VersionInfo> {
    let latest: Option<(i64, String)> = sqlx::query_as(
        "SELECT version, content_hash FROM policy_versions ORDER BY version DESC LIMIT 1",
    )
    .fetch_optional(&mut **tx)
    .await?;
    if let Some((v, hash)) = &latest {
        if hash == policy.content_hash() {
            return Err(StoreError::StateConflict(format!(
                "policy unchanged: version {v} already has this content ({hash})"
            )));
        }
    }
    let version = latest.map_or(1, |(v, _)| v + 1);
    let document = String::from_utf8(policy.to_json(Some(version))).expect("JSON is UTF-8");
    let rule_count = i32::try_from(policy.rules().len())
        .map_err(|_| StoreError::Conflict("a policy may have at most 2^31 rules".into()))?;
    let info: VersionInfo = sqlx::query_as(&format!(
        "INSERT INTO policy_versions
             (version, content_hash, document, rule_count, created_by, comment, restored_from, published_to)
         VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8)
         RETURNING {INFO_COLUMNS}"
    ))
    .bind(version)
    .bind(policy.content_hash())
    .bind(document)
    .bind(rule_count)
    .bind(actor)
    .bind(comment)
    .bind(restored_from)
    .bind(published_to)
    .fetch_one(&mut **tx)
    .await?;
    Ok(info)
}

/// Serve `version` to every gateway: the `*` row points at it and every pin is dropped (a pin is
/// never older than what everyone gets).
async fn serve_to_all(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, version: i64) -> Result<()> {
    sqlx::query("DELETE FROM policy_rollout WHERE group_name <> $1 AND version <= $2")
        .bind(ALL_GROUPS)
        .bind(version)
        .execute(&mut **tx)
        .await?;
    point_group(tx, ALL_GROUPS, version).await
}

/// Point `group` (or `*`, every gateway) at `version`.
async fn point_group(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    group: &str,
    version: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO policy_rollout (group_name, version) VALUES ($1, $2)
         ON CONFLICT (group_name) DO UPDATE SET version = EXCLUDED.version, updated_at = now()",
    )
    .bind(group)
    .bind(version)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The end of every rollout change: its audit row (rollout before, `after`) and the notification
/// of `version`, committed together with the change.
async fn commit_change(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    actor: &str,
    action: &str,
    version: i64,
    comment: Option<&str>,
    before: &RolloutState,
    after: serde_json::Value,
) -> Result<()> {
    audit_tx(
        &mut tx,
        actor,
        action,
        Some(&format!("policy:{version}")),
        comment,
        Some(serde_json::to_value(before).expect("rollout serialises")),
        Some(after),
    )
    .await?;
    notify(&mut tx, version).await?;
    tx.commit().await?;
    Ok(())
}

fn info_json(info: &VersionInfo) -> serde_json::Value {
    serde_json::json!({
        "version": info.version,
        "content_hash": info.content_hash,
        "rule_count": info.rule_count,
        "restored_from": info.restored_from,
        "published_to": info.published_to,
    })
}

/// Publish `policy` as a new version, atomically: the version row, the rollout pointer, the audit
/// row and the notification commit together or not at all.
pub async fn publish(pool: &PgPool, policy: &Policy, opts: &Publish<'_>) -> Result<VersionInfo> {
    if let Some(g) = opts.group {
        check_group(g)?;
    }
    let mut tx = pool.begin().await?;
    lock(&mut tx).await?;
    let before = rollout_in(&mut tx).await?;
    let info = insert_version(&mut tx, policy, opts.actor, opts.comment, None, opts.group).await?;
    match opts.group {
        None => serve_to_all(&mut tx, info.version).await?,
        Some(g) => point_group(&mut tx, g, info.version).await?,
    }
    let after = info_json(&info);
    commit_change(
        tx,
        opts.actor,
        "policy.publish",
        info.version,
        opts.comment,
        &before,
        after,
    )
    .await?;
    Ok(info)
}

/// A change to the rules every gateway is served, made inside the caller's transaction (so the
/// caller's own rows, e.g. a suggestion's decision, commit together with the new version).
#[derive(Clone, Debug)]
pub struct Edit<'a> {
    /// Who changes it (audit log `actor`), e.g. `admin:alice` or `sluice:auto-approval`.
    pub actor: &'a str,
    /// Audit log `action`, e.g. `suggestion.approve`.
    pub action: &'a str,
    pub comment: Option<&'a str>,
}

/// Publish an edit of the policy every gateway is served, inside `tx`: takes the publish lock,
/// reads the version served to everyone (an empty policy before the first publish), lets `edit`
/// change its rules, validates the result, and publishes it to every gateway with its audit row
/// and notification. Returns `Ok(None)` and writes nothing when the rules come back unchanged.
/// Content identical to the newest version (say, a canary) is refused as `StateConflict`, as
/// [`publish`] refuses it. The caller commits `tx`; nothing is visible (and no `NOTIFY` is
/// delivered) before that.
pub async fn publish_edit_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    opts: &Edit<'_>,
    edit: impl FnOnce(&mut Vec<policy::Rule>),
) -> Result<Option<VersionInfo>> {
    lock(tx).await?;
    let before = rollout_in(tx).await?;
    let mut rules = match before.all {
        Some(v) => get_in(tx, v).await?.policy.rules().to_vec(),
        None => Vec::new(),
    };
    // The stored rules carry their derived `RateLimit-Policy` values; drop them on both sides so
    // an edited limit gets its value derived again instead of failing validation.
    for r in &mut rules {
        r.ratelimit_policy = None;
    }
    let old = rules.clone();
    edit(&mut rules);
    for r in &mut rules {
        r.ratelimit_policy = None;
    }
    if rules == old {
        return Ok(None);
    }
    let policy = Policy::new(rules).map_err(|e| StoreError::Conflict(e.to_string()))?;
    let info = insert_version(tx, &policy, opts.actor, opts.comment, None, None).await?;
    serve_to_all(tx, info.version).await?;
    audit_tx(
        tx,
        opts.actor,
        opts.action,
        Some(&format!("policy:{}", info.version)),
        opts.comment,
        Some(serde_json::to_value(&before).expect("rollout serialises")),
        Some(info_json(&info)),
    )
    .await?;
    notify(tx, info.version).await?;
    Ok(Some(info))
}

/// Restore version `to`: its rules are published as a new version (with `restored_from`) to every
/// gateway. Refused when the newest version already has that content.
pub async fn rollback(
    pool: &PgPool,
    to: i64,
    actor: &str,
    comment: Option<&str>,
) -> Result<VersionInfo> {
    let mut tx = pool.begin().await?;
    lock(&mut tx).await?;
    let before = rollout_in(&mut tx).await?;
    let old = get_in(&mut tx, to).await?;
    let info = insert_version(&mut tx, &old.policy, actor, comment, Some(to), None).await?;
    serve_to_all(&mut tx, info.version).await?;
    let after = info_json(&info);
    commit_change(
        tx,
        actor,
        "policy.rollback",
        info.version,
        comment,
        &before,
        after,
    )
    .await?;
    Ok(info)
}

/// Serve version `version` (typically one published to a canary group) to every gateway. It must
/// be newer than what everyone gets now; use [`rollback`] to go back.
pub async fn promote(
    pool: &PgPool,
    version: i64,
    actor: &str,
    comment: Option<&str>,
) -> Result<RolloutState> {
    let mut tx = pool.begin().await?;
    lock(&mut tx).await?;
    let before = rollout_in(&mut tx).await?;
    let exists: Option<i64> =
        sqlx::query_scalar("SELECT version FROM policy_versions WHERE version = $1")
            .bind(version)
            .fetch_optional(&mut *tx)
            .await?;
    if exists.is_none() {
        return Err(StoreError::NotFound(format!("policy version {version}")));
    }
    if let Some(all) = before.all {
        if version <= all {
            return Err(StoreError::StateConflict(format!(
                "version {version} is not newer than version {all}, which every gateway already gets; use rollback to restore an older version"
            )));
        }
    }
    serve_to_all(&mut tx, version).await?;
    let after = rollout_in(&mut tx).await?;
    let after_json = serde_json::to_value(&after).expect("rollout serialises");
    commit_change(
        tx,
        actor,
        "policy.promote",
        version,
        comment,
        &before,
        after_json,
    )
    .await?;
    Ok(after)
}

async fn rollout_in(tx: &mut sqlx::PgConnection) -> Result<RolloutState> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT group_name, version FROM policy_rollout ORDER BY group_name")
            .fetch_all(&mut *tx)
            .await?;
    let mut state = RolloutState::default();
    for (g, v) in rows {
        if g == ALL_GROUPS {
            state.all = Some(v);
        } else {
            state.pinned.push((g, v));
        }
    }
    Ok(state)
}

/// Which version each group is served (one small query; the API polls it).
pub async fn rollout(pool: &PgPool) -> Result<RolloutState> {
    let mut conn = pool.acquire().await?;
    rollout_in(&mut conn).await
}

async fn get_in(conn: &mut sqlx::PgConnection, version: i64) -> Result<StoredPolicy> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        info: VersionInfo,
        document: String,
    }
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {INFO_COLUMNS}, document::text AS document FROM policy_versions WHERE version = $1"
    ))
    .bind(version)
    .fetch_optional(&mut *conn)
    .await?;
    let row = row.ok_or_else(|| StoreError::NotFound(format!("policy version {version}")))?;
    let policy = Policy::parse(row.document.as_bytes()).map_err(|e| {
        StoreError::Corrupt(format!(
            "stored policy version {version} does not parse: {e}"
        ))
    })?;
    if policy.content_hash() != row.info.content_hash {
        return Err(StoreError::Corrupt(format!(
            "stored policy version {version} hashes to {}, not {}",
            policy.content_hash(),
            row.info.content_hash
        )));
    }
    Ok(StoredPolicy {
        info: row.info,
        policy,
    })
}

/// One version with its rules.
pub async fn get(pool: &PgPool, version: i64) -> Result<StoredPolicy> {
    let mut conn = pool.acquire().await?;
    get_in(&mut conn, version).await
}

/// The version a gateway of `group` is served, if any.
pub async fn current(pool: &PgPool, group: &str) -> Result<Option<StoredPolicy>> {
    let state = rollout(pool).await?;
    match state.version_for(group) {
        Some(v) => Ok(Some(get(pool, v).await?)),
        None => Ok(None),
    }
}

/// Versions, newest first: at most `limit`, older than `before` when given.
pub async fn list(pool: &PgPool, limit: i64, before: Option<i64>) -> Result<Vec<VersionInfo>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {INFO_COLUMNS} FROM policy_versions
         WHERE ($1::int8 IS NULL OR version < $1) ORDER BY version DESC LIMIT $2"
    ))
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Rules added, removed and changed from version `from` to version `to`.
pub async fn diff(pool: &PgPool, from: i64, to: i64) -> Result<PolicyDiff> {
    let a = get(pool, from).await?;
    let b = get(pool, to).await?;
    Ok(policy::diff(&a.policy, &b.policy))
}

/// What a gateway reported.
#[derive(Clone, Debug, Default)]
pub struct GatewayReport<'a> {
    /// The group it belongs to (default: keep its group, or `default` for a new gateway).
    pub group: Option<&'a str>,
    /// The version it applied.
    pub applied_version: Option<i64>,
    /// The error it hit applying a version (it keeps its last good policy).
    pub error: Option<&'a str>,
}

/// A gateway and where it is in the rollout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct GatewayStatus {
    pub id: String,
    pub group: String,
    pub last_seen: DateTime<Utc>,
    pub applied_version: Option<i64>,
    pub last_error: Option<String>,
    pub reported_at: DateTime<Utc>,
    /// The version its group is served now.
    pub desired_version: Option<i64>,
    /// `current`, `behind`, `error` or `unknown` (never applied anything).
    #[sqlx(skip)]
    pub state: &'static str,
}

fn with_state(mut g: GatewayStatus) -> GatewayStatus {
    g.state = match (&g.last_error, g.applied_version, g.desired_version) {
        (Some(_), _, _) => "error",
        (None, None, _) => "unknown",
        (None, Some(a), Some(d)) if a >= d => "current",
        (None, Some(_), None) => "current",
        (None, Some(_), Some(_)) => "behind",
    };
    g
}

const GATEWAY_SELECT: &str = "SELECT g.id, g.group_name AS group, g.last_seen, g.applied_version,
        g.last_error, g.reported_at,
        COALESCE(p.version, a.version) AS desired_version
     FROM gateways g
     LEFT JOIN policy_rollout p ON p.group_name = g.group_name
     LEFT JOIN policy_rollout a ON a.group_name = '*'";

/// Record a gateway's report. A report of an applied version clears its last error; a report of
/// an error keeps the version it applied before.
pub async fn report_gateway(
    pool: &PgPool,
    id: &str,
    report: &GatewayReport<'_>,
) -> Result<GatewayStatus> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
    {
        return Err(StoreError::Conflict(format!(
            "invalid gateway id {id:?}: use 1 to 128 characters of A-Z a-z 0-9 . _ : -"
        )));
    }
    if let Some(g) = report.group {
        check_group(g)?;
    }
    if let Some(v) = report.applied_version {
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT version FROM policy_versions WHERE version = $1")
                .bind(v)
                .fetch_optional(pool)
                .await?;
        if exists.is_none() {
            return Err(StoreError::Conflict(format!(
                "applied_version {v} is not a published policy version"
            )));
        }
    }
    sqlx::query(
        "INSERT INTO gateways (id, group_name, applied_version, last_error)
         VALUES ($1, COALESCE($2, 'default'), $3, $4)
         ON CONFLICT (id) DO UPDATE SET
             group_name = COALESCE($2, gateways.group_name),
             applied_version = COALESCE($3, gateways.applied_version),
             last_error = $4,
             last_seen = now(),
             reported_at = now()",
    )
    .bind(id)
    .bind(report.group)
    .bind(report.applied_version)
    .bind(report.error)
    .execute(pool)
    .await?;
    let g: GatewayStatus = sqlx::query_as(&format!("{GATEWAY_SELECT} WHERE g.id = $1"))
        .bind(id)
        .fetch_one(pool)
        .await?;
    Ok(with_state(g))
}

/// Every gateway with its rollout state, by group then id.
pub async fn list_gateways(pool: &PgPool) -> Result<Vec<GatewayStatus>> {
    let rows: Vec<GatewayStatus> =
        sqlx::query_as(&format!("{GATEWAY_SELECT} ORDER BY g.group_name, g.id"))
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(with_state).collect())
}
