//! The Postgres server a benchmark runs on: the one named by `--database-url`, or an ephemeral
//! embedded cluster. Every measured run gets a freshly created and migrated database.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Context;
use sluice_store::embedded::{
    EmbeddedOptions, EmbeddedPostgres, EMBEDDED_PORT, EMBEDDED_SUPERUSER,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgPool};

pub struct Server {
    admin: PgConnectOptions,
    pub description: String,
    embedded: Option<EmbeddedPostgres>,
}

impl Server {
    pub async fn open(url: Option<&str>) -> anyhow::Result<Server> {
        let (admin, embedded, kind) = match url {
            Some(url) => (
                PgConnectOptions::from_str(url).context("invalid --database-url")?,
                None,
                "external",
            ),
            None => {
                // The watchdog of an ephemeral cluster deletes its directory when we exit.
                let dir = tempfile::Builder::new()
                    .prefix("sluice-bench-pg-")
                    .tempdir_in("/tmp")?
                    .keep();
                let pg = tokio::task::spawn_blocking(move || {
                    EmbeddedPostgres::start(&EmbeddedOptions {
                        dir,
                        ephemeral: true,
                        ..Default::default()
                    })
                })
                .await??;
                let opts = PgConnectOptions::new()
                    .socket(pg.socket_dir())
                    .port(EMBEDDED_PORT)
                    .username(EMBEDDED_SUPERUSER)
                    .database("postgres");
                (opts, Some(pg), "embedded ephemeral")
            }
        };
        let mut conn = admin
            .connect()
            .await
            .context("failed to connect to the benchmark server")?;
        let version: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&mut conn)
            .await?;
        let mut settings = Vec::new();
        for s in [
            "fsync",
            "synchronous_commit",
            "full_page_writes",
            "shared_buffers",
            "max_wal_size",
        ] {
            let v: String = sqlx::query_scalar(&format!("SHOW {s}"))
                .fetch_one(&mut conn)
                .await?;
            settings.push(format!("{s}={v}"));
        }
        conn.close().await?;
        let description = format!(
            "{kind} postgres {version} at {}:{} ({})",
            admin
                .get_socket()
                .map_or_else(|| admin.get_host().to_owned(), |s| s.display().to_string()),
            admin.get_port(),
            settings.join(", ")
        );
        Ok(Server {
            admin,
            description,
            embedded,
        })
    }

    fn maintenance(&self) -> PgConnectOptions {
        self.admin
            .clone()
            .database(self.admin.get_database().unwrap_or("postgres"))
    }

    /// Create database `name` (dropping a leftover of that name) and apply Sluice's migrations.
    pub async fn create_db(&self, name: &str) -> anyhow::Result<PgConnectOptions> {
        let mut conn = self.maintenance().connect().await?;
        conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
            .await?;
        conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await?;
        conn.close().await?;
        let opts = self.admin.clone().database(name);
        let mut db = opts.connect().await?;
        sluice_store::db::MIGRATOR
            .run(&mut db)
            .await
            .context("failed to migrate")?;
        db.close().await?;
        Ok(opts)
    }

    pub async fn drop_db(&self, name: &str) -> anyhow::Result<()> {
        let mut conn = self.maintenance().connect().await?;
        conn.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
            .await?;
        conn.close().await?;
        Ok(())
    }

    /// Flush dirty buffers so that neither side pays for the other's checkpoint.
    pub async fn checkpoint(&self) -> anyhow::Result<()> {
        let mut conn = self.maintenance().connect().await?;
        conn.execute("CHECKPOINT").await?;
        conn.close().await?;
        Ok(())
    }

    pub async fn pool(&self, db: &PgConnectOptions) -> anyhow::Result<PgPool> {
        // The same pool size as `sluice ingest` (crates/sluice/src/commands/mod.rs).
        Ok(PgPoolOptions::new()
            .max_connections(16)
            .connect_with(db.clone())
            .await?)
    }

    /// Host name, or the Unix socket directory.
    fn host(&self) -> String {
        match self.admin.get_socket() {
            Some(dir) => dir.display().to_string(),
            None => self.admin.get_host().to_owned(),
        }
    }

    /// libpq connection string for `psql`.
    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            self.host(),
            self.admin.get_port(),
            self.admin.get_username(),
            db
        )
    }

    /// `postgres://` URL for the `sluice` binary.
    pub fn url(&self, db: &str) -> String {
        let host = self.host();
        let user = self.admin.get_username();
        let port = self.admin.get_port();
        if host.starts_with('/') {
            format!("postgres://{user}@/{db}?host={host}&port={port}")
        } else {
            format!("postgres://{user}@{host}:{port}/{db}")
        }
    }

    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }

    pub fn stop(mut self) {
        if let Some(mut pg) = self.embedded.take() {
            pg.stop();
        }
    }
}

pub fn psql() -> PathBuf {
    ["/usr/bin/psql", "/usr/local/bin/psql"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("psql"))
}
