//! API tokens (only their SHA-256 is stored) and the append-only audit log.

use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sluice_core::Role;
use sqlx::PgPool;
use subtle::ConstantTimeEq;

use crate::error::{Result, StoreError};

/// Every token starts with this, so leaked tokens are easy to grep for.
pub const TOKEN_PREFIX: &str = "slc_";

/// A token as listed (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub role: Role,
    /// The first characters of the secret, to recognise it.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

type TokenRow = (
    i64,
    String,
    String,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);
type TokenRowWithHash = (
    i64,
    String,
    String,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Vec<u8>,
);

fn to_info(r: TokenRow) -> Result<TokenInfo> {
    Ok(TokenInfo {
        id: r.0,
        name: r.1,
        role: r
            .2
            .parse()
            .map_err(|e: sluice_core::auth::UnknownRole| StoreError::Conflict(e.to_string()))?,
        prefix: r.3,
        created_at: r.4,
        revoked_at: r.5,
    })
}

pub fn hash_token(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn new_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", hex::encode(bytes))
}

/// Create a token; returns its info and the secret, which is shown once and never stored.
pub async fn create_token(
    pool: &PgPool,
    name: &str,
    role: Role,
    actor: &str,
) -> Result<(TokenInfo, String)> {
    let name = name.trim();
    if name.is_empty() {
        return Err(StoreError::Conflict("token name must not be empty".into()));
    }
    let secret = new_secret();
    let hash = hash_token(&secret);
    let prefix: String = secret.chars().take(TOKEN_PREFIX.len() + 6).collect();
    let mut tx = pool.begin().await?;
    let row: std::result::Result<TokenRow, sqlx::Error> = sqlx::query_as(
        "INSERT INTO api_tokens (name, role, token_hash, prefix) VALUES ($1, $2, $3, $4)
         RETURNING id, name, role, prefix, created_at, revoked_at",
    )
    .bind(name)
    .bind(role.as_str())
    .bind(&hash[..])
    .bind(&prefix)
    .fetch_one(&mut *tx)
    .await;
    let row = match row {
        Err(sqlx::Error::Database(d)) if d.constraint() == Some("api_tokens_name_key") => {
            return Err(StoreError::Conflict(format!(
                "a token named {name:?} already exists"
            )));
        }
        other => other?,
    };
    let info = to_info(row)?;
    audit_tx(
        &mut tx,
        actor,
        "token.create",
        Some(&format!("token:{}", info.name)),
        None,
        None,
        Some(serde_json::json!({"name": info.name, "role": info.role, "prefix": info.prefix})),
    )
    .await?;
    tx.commit().await?;
    Ok((info, secret))
}

pub async fn list_tokens(pool: &PgPool) -> Result<Vec<TokenInfo>> {
    let rows: Vec<TokenRow> = sqlx::query_as(
        "SELECT id, name, role, prefix, created_at, revoked_at FROM api_tokens ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(to_info).collect()
}

/// Revoke by name (or by `#id`). Revoking an already revoked token is not an error.
pub async fn revoke_token(pool: &PgPool, name_or_id: &str, actor: &str) -> Result<TokenInfo> {
    let id: Option<i64> = name_or_id.strip_prefix('#').and_then(|s| s.parse().ok());
    let mut tx = pool.begin().await?;
    let row: Option<TokenRow> = sqlx::query_as(
        "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, now())
         WHERE ($1::int8 IS NOT NULL AND id = $1) OR ($1::int8 IS NULL AND name = $2)
         RETURNING id, name, role, prefix, created_at, revoked_at",
    )
    .bind(id)
    .bind(name_or_id)
    .fetch_optional(&mut *tx)
    .await?;
    let info = to_info(row.ok_or_else(|| StoreError::NotFound(format!("token {name_or_id:?}")))?)?;
    audit_tx(
        &mut tx,
        actor,
        "token.revoke",
        Some(&format!("token:{}", info.name)),
        None,
        None,
        Some(serde_json::json!({"name": info.name, "revoked_at": info.revoked_at})),
    )
    .await?;
    tx.commit().await?;
    Ok(info)
}

/// The active token whose secret is `secret`, if any.
pub async fn authenticate(pool: &PgPool, secret: &str) -> Result<Option<TokenInfo>> {
    let hash = hash_token(secret);
    let row: Option<TokenRowWithHash> = sqlx::query_as(
        "SELECT id, name, role, prefix, created_at, revoked_at, token_hash FROM api_tokens
             WHERE token_hash = $1 AND revoked_at IS NULL",
    )
    .bind(&hash[..])
    .fetch_optional(pool)
    .await?;
    match row {
        Some(r) if bool::from(r.6.as_slice().ct_eq(&hash[..])) => {
            Ok(Some(to_info((r.0, r.1, r.2, r.3, r.4, r.5))?))
        }
        _ => Ok(None),
    }
}

/// Number of tokens that are not revoked.
pub async fn active_token_count(pool: &PgPool) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM api_tokens WHERE revoked_at IS NULL")
            .fetch_one(pool)
            .await?,
    )
}

/// One entry of the audit log.
#[derive(Clone, Debug, sqlx::FromRow, serde::Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub reason: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

pub async fn audit_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    actor: &str,
    action: &str,
    target: Option<&str>,
    reason: Option<&str>,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (actor, action, target, reason, before, after) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(actor)
    .bind(action)
    .bind(target)
    .bind(reason)
    .bind(before)
    .bind(after)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn list_audit(
    pool: &PgPool,
    limit: i64,
    before_id: Option<i64>,
) -> Result<Vec<AuditEntry>> {
    Ok(sqlx::query_as(
        "SELECT id, at, actor, action, target, reason, before, after FROM audit_log
         WHERE ($1::int8 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
    )
    .bind(before_id)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_prefixed() {
        let a = new_secret();
        let b = new_secret();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 48);
        assert_ne!(hash_token(&a), hash_token(&b));
    }
}
