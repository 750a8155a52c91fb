//! A read-only Postgres role for dashboards (`sluice db grant-readonly`): it may log in and
//! `SELECT` from Sluice's tables in Sluice's schema, now and in future migrations (default
//! privileges), and nothing else; it never sees API token hashes (`api_tokens` is left out).

use serde::Serialize;
use sqlx::PgPool;

use crate::error::{Result, StoreError};

/// Tables the read-only role gets no access to: the token hashes, and sqlx's migration
/// bookkeeping (not Sluice data).
pub const EXCLUDED_TABLES: [&str; 2] = ["api_tokens", "_sqlx_migrations"];

/// The default role name.
pub const DEFAULT_READONLY_ROLE: &str = "sluice_readonly";

/// What [`grant_readonly`] did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReadonlyGrant {
    pub role: String,
    /// The role did not exist and was created.
    pub created: bool,
    /// A password was set (given, or generated for a new role).
    pub password_set: bool,
    pub database: String,
    pub schema: String,
    /// Tables (and views) it may read, sorted.
    pub tables: Vec<String>,
}

/// A role name Postgres accepts unquoted: lowercase ASCII letters, digits and `_`, starting with
/// a letter or `_`, at most 63 bytes. Anything else is refused rather than quoted.
pub fn check_role_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.starts_with("pg_");
    if ok {
        Ok(())
    } else {
        Err(StoreError::Conflict(format!(
            "invalid role name {name:?}: use 1 to 63 characters of a-z 0-9 _, not starting with a digit or pg_"
        )))
    }
}

/// Whether a role of this name exists (in the whole cluster).
pub async fn role_exists(pool: &PgPool, role: &str) -> Result<bool> {
    Ok(
        sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(role)
            .fetch_one(pool)
            .await?,
    )
}

/// Create `role` if it does not exist (with `password`, which the caller generates for a new role
/// when none is given) and grant it read access to every Sluice table except
/// [`EXCLUDED_TABLES`], plus `SELECT` on tables the connected user creates later in this schema.
/// Running it again changes nothing but the password (when given) and grants on new tables. An
/// existing role that is a superuser or may create roles or databases is refused: it would not be
/// read-only whatever is granted to it.
///
/// The connected user needs `CREATEROLE` (or to be a superuser) and to own the tables.
pub async fn grant_readonly(
    pool: &PgPool,
    role: &str,
    password: Option<&str>,
) -> Result<ReadonlyGrant> {
    check_role_name(role)?;
    let mut tx = pool.begin().await?;
    let existing: Option<(bool, bool, bool, bool)> = sqlx::query_as(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles WHERE rolname = $1",
    )
    .bind(role)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((sup, createrole, createdb, bypass)) = existing {
        if sup || createrole || createdb || bypass {
            return Err(StoreError::StateConflict(format!(
                "role {role} exists and is a superuser or may create roles or databases or bypass row security: it cannot be made read-only, choose another name"
            )));
        }
    }
    let created = existing.is_none();
    // Identifiers and the password are quoted by the server (`format` with %I and %L), never by
    // string pasting here.
    let mut statements: Vec<String> = Vec::new();
    if created {
        statements.push(
            sqlx::query_scalar(
                "SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS', $1::text)",
            )
            .bind(role)
            .fetch_one(&mut *tx)
            .await?,
        );
    } else {
        statements.push(
            sqlx::query_scalar("SELECT format('ALTER ROLE %I LOGIN', $1::text)")
                .bind(role)
                .fetch_one(&mut *tx)
                .await?,
        );
    }
    if let Some(pw) = password {
        statements.push(
            sqlx::query_scalar("SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)")
                .bind(role)
                .bind(pw)
                .fetch_one(&mut *tx)
                .await?,
        );
    }
    let (database, schema): (String, String) =
        sqlx::query_as("SELECT current_database()::text, current_schema()::text")
            .fetch_one(&mut *tx)
            .await?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm')
            AND NOT c.relispartition AND c.relname <> ALL($1)
          ORDER BY c.relname",
    )
    .bind(EXCLUDED_TABLES.map(str::to_owned).to_vec())
    .fetch_all(&mut *tx)
    .await?;
    let grants: Vec<String> = sqlx::query_scalar(
        "SELECT unnest(ARRAY[
             format('ALTER ROLE %I SET default_transaction_read_only = on', $1::text),
             format('GRANT CONNECT ON DATABASE %I TO %I', $2::text, $1::text),
             format('GRANT USAGE ON SCHEMA %I TO %I', $3::text, $1::text),
             format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I', $3::text, $1::text),
             format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO %I', $3::text, $1::text)])",
    )
    .bind(role)
    .bind(&database)
    .bind(&schema)
    .fetch_all(&mut *tx)
    .await?;
    statements.extend(grants);
    if !tables.is_empty() {
        statements.push(
            sqlx::query_scalar(
                "SELECT format('GRANT SELECT ON %s TO %I',
                               (SELECT string_agg(format('%I.%I', $2::text, t), ', ') FROM unnest($3::text[]) t),
                               $1::text)",
            )
            .bind(role)
            .bind(&schema)
            .bind(&tables)
            .fetch_one(&mut *tx)
            .await?,
        );
    }
    for sql in &statements {
        // Simple protocol: nothing prepared or cached holds the password.
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(ReadonlyGrant {
        role: role.to_owned(),
        created,
        password_set: password.is_some(),
        database,
        schema,
        tables,
    })
}

/// A random password for a new role: 32 characters of `A-Za-z0-9`.
pub fn generate_password() -> String {
    use rand::distributions::Alphanumeric;
    use rand::Rng;
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names() {
        for ok in ["sluice_readonly", "_x", "grafana2"] {
            assert!(check_role_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Grafana",
            "1x",
            "a-b",
            "a\"b",
            "pg_read",
            &"x".repeat(64),
        ] {
            assert!(check_role_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_are_long_and_alphanumeric() {
        let p = generate_password();
        assert_eq!(p.len(), 32);
        assert!(p.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(p, generate_password());
    }
}
