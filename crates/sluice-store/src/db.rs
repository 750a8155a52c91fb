//! Opening the database: `DATABASE_URL` when given, otherwise the embedded cluster; migrations.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use crate::embedded::{EmbeddedOptions, EmbeddedPostgres, EMBEDDED_PORT, EMBEDDED_SUPERUSER};
use crate::error::{Result, StoreError};

/// The migrations under the repository's `migrations/`, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Name of the database Sluice uses inside its embedded cluster.
pub const EMBEDDED_DATABASE: &str = "sluice";

/// Where the data lives.
#[derive(Clone, Debug, Default)]
pub struct DatabaseConfig {
    /// `postgres://...`; when `None`, the embedded cluster under `data_dir` is used.
    pub url: Option<String>,
    /// Sluice's data directory; the embedded cluster lives in `data_dir/postgres`.
    pub data_dir: PathBuf,
    pub pg_user: Option<String>,
    pub pg_bin_dir: Option<PathBuf>,
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before the database counts as down.
    pub acquire_timeout: Duration,
}

impl DatabaseConfig {
    pub fn embedded_options(&self) -> EmbeddedOptions {
        EmbeddedOptions {
            dir: self.data_dir.join("postgres"),
            pg_user: self.pg_user.clone(),
            bin_dir: self.pg_bin_dir.clone(),
            ephemeral: false,
        }
    }
}

/// An open database: the pool, plus the embedded server when this process started one.
#[derive(Debug)]
pub struct Database {
    pool: PgPool,
    connect: PgConnectOptions,
    embedded: Option<EmbeddedPostgres>,
    description: String,
}

impl Database {
    /// Connect to `DATABASE_URL`, or start (or reuse) the embedded cluster.
    pub async fn open(cfg: &DatabaseConfig) -> Result<Database> {
        let (connect, embedded, description) = match &cfg.url {
            Some(url) => {
                let opts = PgConnectOptions::from_str(url)
                    .map_err(|e| StoreError::BadUrl(e.to_string()))?;
                let desc = format!(
                    "postgres at {}:{}/{}",
                    opts.get_host(),
                    opts.get_port(),
                    opts.get_database().unwrap_or("(default)")
                );
                (opts, None, desc)
            }
            None => {
                let eopts = cfg.embedded_options();
                let pg = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&eopts))
                    .await
                    .map_err(|e| {
                        StoreError::Unavailable(format!("embedded start panicked: {e}"))
                    })??;
                let base = embedded_connect_options(pg.socket_dir());
                ensure_database(&base, EMBEDDED_DATABASE).await?;
                let desc = format!("embedded postgres in {}", pg.pgdata().display());
                (base.database(EMBEDDED_DATABASE), Some(pg), desc)
            }
        };
        let pool = pool_for(&connect, cfg).await?;
        Ok(Database {
            pool,
            connect,
            embedded,
            description,
        })
    }

    /// Like [`Database::open`], but on a database of its own: with a URL, the database `name` is
    /// created on that server (it must not exist yet); the embedded cluster is used as is (give
    /// it a fresh `data_dir`). The demo runs on one so it never touches existing data.
    pub async fn open_fresh(cfg: &DatabaseConfig, name: &str) -> Result<Database> {
        let Some(url) = &cfg.url else {
            return Database::open(cfg).await;
        };
        let base =
            PgConnectOptions::from_str(url).map_err(|e| StoreError::BadUrl(e.to_string()))?;
        let mut conn = base.clone().database("postgres").connect().await?;
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        sqlx::query(&sql).execute(&mut conn).await?;
        conn.close().await?;
        let connect = base.database(name);
        let pool = pool_for(&connect, cfg).await?;
        Ok(Database {
            description: format!(
                "postgres at {}:{}/{name}",
                connect.get_host(),
                connect.get_port()
            ),
            pool,
            connect,
            embedded: None,
        })
    }

    /// Wrap an existing pool (tests).
    pub fn from_pool(pool: PgPool, connect: PgConnectOptions) -> Database {
        Database {
            pool,
            connect,
            embedded: None,
            description: "test database".into(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn connect_options(&self) -> &PgConnectOptions {
        &self.connect
    }

    /// Human description for logs (`embedded postgres in ./.sluice/postgres/pgdata`).
    pub fn description(&self) -> &str {
        &self.description
    }

    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Every known migration with whether (and when) it was applied.
    pub async fn migration_status(&self) -> Result<Vec<MigrationState>> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&self.pool)
            .await?;
        let applied: Vec<(i64, chrono::DateTime<chrono::Utc>, bool, Vec<u8>)> = if exists {
            sqlx::query_as(
                "SELECT version, installed_on, success, checksum FROM _sqlx_migrations ORDER BY version",
            )
            .fetch_all(&self.pool)
            .await?
        } else {
            Vec::new()
        };
        let mut out: Vec<MigrationState> = MIGRATOR
            .iter()
            .map(|m| {
                let a = applied.iter().find(|a| a.0 == m.version);
                MigrationState {
                    version: m.version,
                    description: m.description.to_string(),
                    applied_at: a.map(|a| a.1),
                    success: a.map(|a| a.2),
                    checksum_matches: a.map(|a| a.3 == *m.checksum),
                }
            })
            .collect();
        for a in &applied {
            if !out.iter().any(|m| m.version == a.0) {
                out.push(MigrationState {
                    version: a.0,
                    description: "(applied, but unknown to this binary: a newer Sluice migrated this database)".into(),
                    applied_at: Some(a.1),
                    success: Some(a.2),
                    checksum_matches: None,
                });
            }
        }
        Ok(out)
    }

    /// Close the pool and stop the embedded server if this process started it.
    pub async fn close(mut self) {
        self.pool.close().await;
        if let Some(mut pg) = self.embedded.take() {
            let _ = tokio::task::spawn_blocking(move || pg.stop()).await;
        }
    }
}

/// One migration as `sluice db status` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct MigrationState {
    pub version: i64,
    pub description: String,
    pub applied_at: Option<chrono::DateTime<chrono::Utc>>,
    pub success: Option<bool>,
    pub checksum_matches: Option<bool>,
}

pub(crate) fn embedded_connect_options(socket_dir: &std::path::Path) -> PgConnectOptions {
    PgConnectOptions::new()
        .socket(socket_dir)
        .port(EMBEDDED_PORT)
        .username(EMBEDDED_SUPERUSER)
        .database("postgres")
        .application_name("sluice")
}

pub(crate) async fn ensure_database(base: &PgConnectOptions, name: &str) -> Result<()> {
    let mut conn = base.clone().database("postgres").connect().await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        if let Err(e) = sqlx::query(&sql).execute(&mut conn).await {
            // Another process may have created it at the same moment.
            let dup =
                matches!(&e, sqlx::Error::Database(d) if d.code().as_deref() == Some("42P04"));
            if !dup {
                return Err(e.into());
            }
        }
    }
    conn.close().await?;
    Ok(())
}

pub(crate) async fn pool_for(connect: &PgConnectOptions, cfg: &DatabaseConfig) -> Result<PgPool> {
    let max = if cfg.max_connections == 0 {
        10
    } else {
        cfg.max_connections
    };
    let acquire = if cfg.acquire_timeout.is_zero() {
        Duration::from_secs(5)
    } else {
        cfg.acquire_timeout
    };
    let connect = connect.clone();
    let pool = PgPoolOptions::new()
        .max_connections(max)
        .min_connections(0)
        .acquire_timeout(acquire)
        .connect_with(connect)
        .await?;
    Ok(pool)
}
