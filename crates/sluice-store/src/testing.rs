//! Test support: a fresh, migrated database for each test, on the server named by
//! `DATABASE_URL` or, without it, on one throwaway embedded cluster per test process.
//!
//! The throwaway cluster is stopped and deleted by a watchdog when the test process exits, and
//! each test's database is dropped when its [`TestDb`] is dropped.

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor, PgPool};
use tokio::sync::OnceCell;

use crate::db::{embedded_connect_options, Database, MIGRATOR};
use crate::embedded::{EmbeddedOptions, EmbeddedPostgres};

struct Server {
    /// Options for the maintenance database of the server.
    admin: PgConnectOptions,
    /// Migrated database every test database is cloned from.
    template: String,
    _embedded: Option<std::sync::Mutex<EmbeddedPostgres>>,
}

static SERVER: OnceCell<Server> = OnceCell::const_new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn prefix() -> String {
    format!("sluice_t{}_", std::process::id())
}

async fn server() -> &'static Server {
    SERVER
        .get_or_init(|| async {
            let (admin, embedded) = match std::env::var("DATABASE_URL") {
                Ok(url) if !url.trim().is_empty() => {
                    let opts = PgConnectOptions::from_str(&url).unwrap_or_else(|e| {
                        panic!("DATABASE_URL is not a valid postgres url: {e}")
                    });
                    (opts, None)
                }
                _ => {
                    let dir = tempfile::Builder::new()
                        .prefix("sluice-test-pg-")
                        .tempdir_in("/tmp")
                        .expect("create a temporary directory for the test cluster")
                        .keep();
                    let pg = tokio::task::spawn_blocking(move || {
                        EmbeddedPostgres::start(&EmbeddedOptions {
                            dir,
                            ephemeral: true,
                            ..Default::default()
                        })
                    })
                    .await
                    .expect("embedded start panicked")
                    .unwrap_or_else(|e| panic!("cannot start the embedded test cluster: {e}"));
                    (embedded_connect_options(pg.socket_dir()), Some(pg))
                }
            };
            let mut conn = admin
                .connect()
                .await
                .unwrap_or_else(|e| panic!("cannot connect to the test database server: {e}"));
            collect_garbage(&mut conn).await;
            let template = format!("{}template", prefix());
            conn.execute(format!("CREATE DATABASE \"{template}\"").as_str())
                .await
                .expect("create template database");
            let mut tconn = admin
                .clone()
                .database(&template)
                .connect()
                .await
                .expect("connect to template database");
            MIGRATOR
                .run(&mut tconn)
                .await
                .expect("migrate the template database");
            tconn.close().await.ok();
            conn.close().await.ok();
            Server {
                admin,
                template,
                _embedded: embedded.map(std::sync::Mutex::new),
            }
        })
        .await
}

/// Drop databases left behind by earlier test processes that no longer run.
async fn collect_garbage(conn: &mut sqlx::PgConnection) {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE datname LIKE 'sluice\\_t%\\_%'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default();
    for name in names {
        let pid: Option<u32> = name
            .strip_prefix("sluice_t")
            .and_then(|r| r.split('_').next())
            .and_then(|p| p.parse().ok());
        if let Some(pid) = pid {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = conn
                    .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                    .await;
                let _ = conn
                    .execute(format!("DROP ROLE IF EXISTS \"{name}_ro\"").as_str())
                    .await;
            }
        }
    }
}

/// A fresh migrated database, dropped with this value.
#[derive(Debug)]
pub struct TestDb {
    pub pool: PgPool,
    pub name: String,
    pub options: PgConnectOptions,
    admin: PgConnectOptions,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let server = server().await;
        let name = format!("{}{}", prefix(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let mut conn = server
            .admin
            .connect()
            .await
            .expect("connect to test server");
        conn.execute(
            format!(
                "CREATE DATABASE \"{name}\" TEMPLATE \"{}\"",
                server.template
            )
            .as_str(),
        )
        .await
        .expect("create test database");
        conn.close().await.ok();
        let options = server.admin.clone().database(&name);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .connect_with(options.clone())
            .await
            .expect("connect to test database");
        TestDb {
            pool,
            name,
            options,
            admin: server.admin.clone(),
        }
    }

    /// A role name for this test alone (`sluice db grant-readonly` tests): roles belong to the
    /// whole cluster, so each test database has its own, dropped with the database.
    pub fn readonly_role_name(&self) -> String {
        format!("{}_ro", self.name)
    }

    /// A [`Database`] handle over this test database.
    pub fn database(&self) -> Database {
        Database::from_pool(self.pool.clone(), self.options.clone())
    }

    /// A `postgres://` URL for this database (for tests that run the binary).
    pub fn url(&self) -> String {
        let host = self.options.get_host();
        let user = self.options.get_username();
        // The embedded cluster is reached through its socket directory, which sqlx keeps apart
        // from the host name.
        let socket = self
            .options
            .get_socket()
            .map(|p| p.display().to_string())
            .or_else(|| host.starts_with('/').then(|| host.to_owned()));
        if let Some(dir) = socket {
            format!(
                "postgres://{user}@/{}?host={}&port={}",
                self.name,
                dir,
                self.options.get_port()
            )
        } else {
            format!(
                "postgres://{user}@{host}:{}/{}",
                self.options.get_port(),
                self.name
            )
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = std::mem::take(&mut self.name);
        // Drop runs inside the test's runtime; use a thread with its own runtime to finish.
        // FORCE terminates this test's pooled connections on the server side.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async move {
                    if let Ok(mut conn) = admin.connect().await {
                        let _ = conn
                            .execute(
                                format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str(),
                            )
                            .await;
                        // Its grants went with the database, so the role can go too.
                        let _ = conn
                            .execute(format!("DROP ROLE IF EXISTS \"{name}_ro\"").as_str())
                            .await;
                        let _ = conn.close().await;
                    }
                });
            }
        })
        .join();
    }
}
