//! Running the real `sluice` binary: locating (and building) it, and a clean environment.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `sluice` binary of this workspace, built by cargo for this test target (it belongs to the
/// `sluice` package), so it is never stale. `SLUICE_BIN` names another binary instead.
pub fn sluice_bin() -> PathBuf {
    std::env::var_os("SLUICE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_sluice")))
}

/// The repository's root (this test belongs to crates/sluice).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A `sluice` command with none of the caller's `SLUICE_*` or `DATABASE_URL` settings, so
/// only the flags a test gives count.
pub fn sluice() -> Command {
    let mut cmd = Command::new(sluice_bin());
    for (k, _) in std::env::vars_os() {
        if let Some(k) = k.to_str() {
            if k.starts_with("SLUICE_") || k == "DATABASE_URL" {
                cmd.env_remove(k);
            }
        }
    }
    cmd.env("SLUICE_LOG", "warn").env("NO_COLOR", "1");
    cmd
}

/// `sluice` on the test database, with a private data directory.
pub fn sluice_on(db_url: &str, data_dir: &Path) -> Command {
    let mut cmd = sluice();
    cmd.arg("--database-url")
        .arg(db_url)
        .arg("--data-dir")
        .arg(data_dir);
    cmd
}

/// Run to completion and insist on success.
#[track_caller]
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run sluice");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("utf-8 stderr")
}

/// The sample every ingest test uses: 10 000 Apache combined lines, one of them (8899) cut short.
/// Vendored gzipped with sluice-logs' tests and unpacked once per test process, under its
/// original name (tests check the source name derived from it).
pub fn elastic_sample() -> PathBuf {
    static SAMPLE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    SAMPLE
        .get_or_init(|| {
            use std::io::Read;
            let gz =
                repo_root().join("crates/sluice-logs/tests/data/elastic-apache-combined.log.gz");
            let file = std::fs::File::open(&gz)
                .unwrap_or_else(|e| panic!("sample log missing: {}: {e}", gz.display()));
            let mut data = Vec::new();
            flate2::read::GzDecoder::new(file)
                .read_to_end(&mut data)
                .expect("decompress the sample log");
            let dir = std::env::temp_dir().join(format!("sluice-tests-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("create the sample directory");
            let p = dir.join("elastic-apache-combined.log");
            std::fs::write(&p, data).expect("write the sample log");
            p
        })
        .clone()
}

/// A `postgres://` URL for the test database that the binary can parse.
///
/// `TestDb::url()` is not usable for the embedded test cluster: it reads `get_host()` (the
/// default host, not the Unix socket the options connect through) and writes
/// `postgres://user@/db?...`, which URL parsers reject ("empty host"). Built here from the
/// options instead; `host=/dir` in the query selects the socket directory.
pub fn db_url(db: &sluice_store::testing::TestDb) -> String {
    let o = &db.options;
    let name = o.get_database().expect("the test database has a name");
    match o.get_socket() {
        Some(dir) => format!(
            "postgres:///{name}?host={}&port={}&user={}",
            dir.display(),
            o.get_port(),
            o.get_username()
        ),
        None => db.url(),
    }
}

pub async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}
