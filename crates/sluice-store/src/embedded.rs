//! The embedded Postgres cluster: when no `DATABASE_URL` is given, Sluice creates a private
//! cluster from the system's `initdb`/`pg_ctl`, listening only on a Unix socket inside its data
//! directory, reuses it on the next start and stops it on exit.
//!
//! Architecture invariant: everything here is blocking (it runs external programs); async callers
//! go through `spawn_blocking`.

use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The superuser that `initdb` creates inside an embedded cluster.
pub const EMBEDDED_SUPERUSER: &str = "sluice";
/// Port number used only to name the socket file (`.s.PGSQL.5432`); TCP is switched off.
pub const EMBEDDED_PORT: u16 = 5432;
const INSTALL_HINT: &str = "install the PostgreSQL server (Debian/Ubuntu: `apt-get install postgresql`; \
Fedora: `dnf install postgresql-server`; macOS: `brew install postgresql@16`), put its bin directory on PATH \
or pass --pg-bin-dir DIR, or set DATABASE_URL=postgres://USER@HOST/DB to use a server you already run";

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("no PostgreSQL server programs (initdb, pg_ctl, postgres) found on PATH or under /usr/lib/postgresql/*/bin: {INSTALL_HINT}")]
    NotInstalled,
    #[error("--pg-bin-dir {0}: {1} is missing there")]
    BinDirIncomplete(PathBuf, &'static str),
    #[error("running as root, and initdb/postgres refuse to run as root; the system user {0:?} that would run them does not exist: create it (`useradd --system --user-group {0}`) or name another unprivileged user with --pg-user")]
    NoUnprivilegedUser(String),
    #[error("system user {user:?} (who runs the embedded postgres) cannot enter {dir}: give it search permission (chmod o+x on that directory) or choose a --data-dir it can reach, such as /var/lib/sluice, or set DATABASE_URL")]
    NotTraversable { user: String, dir: PathBuf },
    #[error("the socket path {0} is longer than the 107 bytes Unix sockets allow: choose a shorter --data-dir")]
    SocketPathTooLong(PathBuf),
    #[error(
        "data directory path {0} contains a quote or newline, which postgres options cannot carry"
    )]
    BadPath(PathBuf),
    #[error("failed to {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {output}")]
    Command {
        program: String,
        status: String,
        output: String,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EmbeddedError {
    let what = what.into();
    move |source| EmbeddedError::Io { what, source }
}

/// Where the PostgreSQL server programs live.
#[derive(Clone, Debug)]
pub struct PgBinaries {
    pub dir: PathBuf,
}

impl PgBinaries {
    /// Find `initdb`, `pg_ctl` and `postgres`: `explicit` if given, else on `PATH`, else the newest
    /// `/usr/lib/postgresql/*/bin` (Debian's layout, whose binaries are not on `PATH`).
    pub fn locate(explicit: Option<&Path>) -> Result<PgBinaries, EmbeddedError> {
        const PROGRAMS: [&str; 3] = ["initdb", "pg_ctl", "postgres"];
        if let Some(dir) = explicit {
            for p in PROGRAMS {
                if !dir.join(p).is_file() {
                    return Err(EmbeddedError::BinDirIncomplete(dir.to_owned(), p));
                }
            }
            return Ok(PgBinaries {
                dir: dir.to_owned(),
            });
        }
        let complete = |dir: &Path| PROGRAMS.iter().all(|p| dir.join(p).is_file());
        if let Some(path) = std::env::var_os("PATH") {
            if let Some(dir) = std::env::split_paths(&path).find(|d| complete(d)) {
                return Ok(PgBinaries { dir });
            }
        }
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let v: u32 = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
                let bin = e.path().join("bin");
                complete(&bin).then_some((v, bin))
            })
            .collect();
        versions.sort();
        versions
            .pop()
            .map(|(_, dir)| PgBinaries { dir })
            .ok_or(EmbeddedError::NotInstalled)
    }

    fn program(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The unprivileged system user that runs `initdb` and `postgres` when Sluice runs as root.
#[derive(Clone, Debug)]
struct RunAs {
    name: String,
    uid: u32,
    gid: u32,
}

fn decide_run_as(pg_user: Option<&str>) -> Result<Option<RunAs>, EmbeddedError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let name = pg_user.unwrap_or("postgres");
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) if !u.uid.is_root() => Ok(Some(RunAs {
            name: name.to_owned(),
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        })),
        _ => Err(EmbeddedError::NoUnprivilegedUser(name.to_owned())),
    }
}

/// Options for [`EmbeddedPostgres::start`].
#[derive(Clone, Debug, Default)]
pub struct EmbeddedOptions {
    /// The cluster lives in `dir/pgdata`, its log in `dir/postgres.log`.
    pub dir: PathBuf,
    /// Unprivileged user to run postgres as when Sluice runs as root (default `postgres`).
    pub pg_user: Option<String>,
    /// Directory holding initdb/pg_ctl/postgres, when not found automatically.
    pub bin_dir: Option<PathBuf>,
    /// A throwaway cluster (tests, benchmarks): durability off, and a watchdog stops it and
    /// deletes `dir` when this process exits, however it exits.
    pub ephemeral: bool,
}

/// A running embedded cluster, stopped on [`EmbeddedPostgres::stop`] or drop when no other Sluice
/// process still uses it.
///
/// Every process that uses the cluster holds a shared `flock` on `DIR/sluice.lock`; the last one to
/// leave (the one that can upgrade to an exclusive lock) stops the server. So `sluice ingest` run
/// next to `sluice serve` leaves the server running, and a cluster left running by a killed process
/// is stopped by the next process that exits cleanly.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    bins: PgBinaries,
    pgdata: PathBuf,
    socket_dir: PathBuf,
    run_as: Option<RunAs>,
    lock: Option<std::fs::File>,
    ephemeral: bool,
}

impl EmbeddedPostgres {
    pub fn start(opts: &EmbeddedOptions) -> Result<EmbeddedPostgres, EmbeddedError> {
        let bins = PgBinaries::locate(opts.bin_dir.as_deref())?;
        let run_as = decide_run_as(opts.pg_user.as_deref())?;
        std::fs::create_dir_all(&opts.dir).map_err(io_err(format!(
            "create data directory {}",
            opts.dir.display()
        )))?;
        let dir = opts
            .dir
            .canonicalize()
            .map_err(io_err(format!("resolve {}", opts.dir.display())))?;
        let dir_str = dir.to_string_lossy();
        if dir_str.contains(['\'', '"', '\n']) {
            return Err(EmbeddedError::BadPath(dir));
        }
        let pgdata = dir.join("pgdata");
        let socket_dir = pgdata.clone();
        let socket = socket_dir.join(format!(".s.PGSQL.{EMBEDDED_PORT}"));
        if socket.as_os_str().len() > 107 {
            return Err(EmbeddedError::SocketPathTooLong(socket));
        }
        if let Some(r) = &run_as {
            check_traversable(&dir, r)?;
            tracing::info!(
                user = %r.name,
                "running as root: the embedded postgres runs as the unprivileged system user"
            );
            chown(&dir, r)?;
        } else {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io_err(format!("restrict permissions of {}", dir.display())))?;
        }

        let mut pg = EmbeddedPostgres {
            bins,
            pgdata,
            socket_dir,
            run_as,
            lock: None,
            ephemeral: opts.ephemeral,
        };
        let lock_path = dir.join("sluice.lock");
        let lock = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(format!("open {}", lock_path.display())))?;
        lock.lock_shared()
            .map_err(io_err(format!("lock {}", lock_path.display())))?;
        pg.lock = Some(lock);
        if !pg.pgdata.join("PG_VERSION").exists() {
            tracing::info!(pgdata = %pg.pgdata.display(), "creating embedded postgres cluster");
            let mut args: Vec<OsString> = vec![
                "-D".into(),
                pg.pgdata.clone().into(),
                "-U".into(),
                EMBEDDED_SUPERUSER.into(),
                "--auth=trust".into(),
                "--encoding=UTF8".into(),
                "--no-locale".into(),
            ];
            if opts.ephemeral {
                args.push("--no-sync".into());
            }
            pg.run("initdb", &args, &dir)?;
        }
        if pg.is_running(&dir) {
            tracing::debug!(pgdata = %pg.pgdata.display(), "reusing the embedded postgres that is already running");
        } else {
            let mut settings = format!(
                "-c listen_addresses='' -k '{}' -p {EMBEDDED_PORT} -c unix_socket_permissions=0700",
                pg.socket_dir.display()
            );
            if opts.ephemeral {
                settings.push_str(
                    " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
                );
            }
            let log = dir.join("postgres.log");
            let args: Vec<OsString> = vec![
                "start".into(),
                "-D".into(),
                pg.pgdata.clone().into(),
                "-w".into(),
                "-t".into(),
                "120".into(),
                "-l".into(),
                log.into(),
                "-o".into(),
                settings.into(),
            ];
            tracing::debug!(pgdata = %pg.pgdata.display(), "starting embedded postgres");
            pg.run("pg_ctl", &args, &dir)?;
            if opts.ephemeral {
                pg.spawn_watchdog(&dir)?;
            }
        }
        Ok(pg)
    }

    /// Directory of the Unix socket to connect to.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub fn pgdata(&self) -> &Path {
        &self.pgdata
    }

    /// Stop the server (fast shutdown) unless another Sluice process still uses it. Ephemeral
    /// clusters are left to their watchdog.
    pub fn stop(&mut self) {
        let Some(lock) = self.lock.take() else {
            return;
        };
        if self.ephemeral {
            return;
        }
        if lock.try_lock().is_err() {
            tracing::debug!(
                "embedded postgres is still used by another sluice process; leaving it running"
            );
            return;
        }
        let cwd = self.pgdata.parent().unwrap_or(Path::new("/")).to_owned();
        let args: Vec<OsString> = vec![
            "stop".into(),
            "-D".into(),
            self.pgdata.clone().into(),
            "-m".into(),
            "fast".into(),
            "-w".into(),
        ];
        match self.run("pg_ctl", &args, &cwd) {
            Ok(()) => tracing::debug!("embedded postgres stopped"),
            Err(e) => tracing::warn!(error = %e, "failed to stop embedded postgres"),
        }
    }

    fn is_running(&self, cwd: &Path) -> bool {
        self.command("pg_ctl", cwd)
            .arg("status")
            .arg("-D")
            .arg(&self.pgdata)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn command(&self, program: &str, cwd: &Path) -> Command {
        let mut cmd = Command::new(self.bins.program(program));
        cmd.current_dir(cwd).env("LC_ALL", "C").env_remove("PGDATA");
        if let Some(r) = &self.run_as {
            cmd.uid(r.uid).gid(r.gid);
            cmd.env("HOME", cwd)
                .env("USER", &r.name)
                .env("LOGNAME", &r.name);
        }
        cmd
    }

    fn run(&self, program: &str, args: &[OsString], cwd: &Path) -> Result<(), EmbeddedError> {
        let out = self
            .command(program, cwd)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(io_err(format!(
                "run {}",
                self.bins.program(program).display()
            )))?;
        if out.status.success() {
            return Ok(());
        }
        let mut output = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if output.is_empty() {
            output = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        }
        if program == "pg_ctl" {
            if let Ok(log) = std::fs::read_to_string(cwd.join("postgres.log")) {
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                output.push_str(&format!("; server log: {}", tail.join(" | ")));
            }
        }
        Err(EmbeddedError::Command {
            program: program.to_owned(),
            status: out.status.to_string(),
            output,
        })
    }

    /// A detached shell that waits for this process to exit, then stops the cluster and deletes
    /// its directory, so test runs never leave servers or files behind.
    fn spawn_watchdog(&self, dir: &Path) -> Result<(), EmbeddedError> {
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 1; done; '{pg_ctl}' stop -D '{pgdata}' -m immediate >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            pg_ctl = self.bins.program("pg_ctl").display(),
            pgdata = self.pgdata.display(),
            dir = dir.display(),
        );
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(script)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        if let Some(r) = &self.run_as {
            cmd.uid(r.uid).gid(r.gid);
        }
        cmd.spawn().map_err(io_err("start the cluster watchdog"))?;
        Ok(())
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn chown(path: &Path, r: &RunAs) -> Result<(), EmbeddedError> {
    std::os::unix::fs::chown(path, Some(r.uid), Some(r.gid)).map_err(io_err(format!(
        "hand {} to user {}",
        path.display(),
        r.name
    )))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(io_err(format!(
        "restrict permissions of {}",
        path.display()
    )))
}

/// Every ancestor of `dir` must be searchable by `r`, or postgres cannot reach its data.
fn check_traversable(dir: &Path, r: &RunAs) -> Result<(), EmbeddedError> {
    for anc in dir.ancestors().skip(1) {
        let meta = std::fs::metadata(anc).map_err(io_err(format!("inspect {}", anc.display())))?;
        let mode = meta.mode();
        let ok = if meta.uid() == r.uid {
            mode & 0o100 != 0
        } else if meta.gid() == r.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !ok {
            return Err(EmbeddedError::NotTraversable {
                user: r.name.clone(),
                dir: anc.to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_bin_dir_must_be_complete() {
        let dir = tempfile::tempdir().unwrap();
        let err = PgBinaries::locate(Some(dir.path())).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "--pg-bin-dir {}: initdb is missing there",
                dir.path().display()
            )
        );
    }

    #[test]
    fn missing_binaries_error_says_how_to_install() {
        let msg = EmbeddedError::NotInstalled.to_string();
        assert!(msg.contains("apt-get install postgresql"), "{msg}");
        assert!(msg.contains("DATABASE_URL"), "{msg}");
    }

    #[test]
    fn socket_path_length_is_checked() {
        let long = std::env::temp_dir().join("x".repeat(120));
        let err = EmbeddedPostgres::start(&EmbeddedOptions {
            dir: long.clone(),
            ..Default::default()
        });
        match err {
            Err(EmbeddedError::SocketPathTooLong(p)) => assert!(p.starts_with(&long)),
            // No server binaries on this machine: the install hint is the right answer too.
            Err(EmbeddedError::NotInstalled) => {}
            other => panic!("unexpected {other:?}"),
        }
        let _ = std::fs::remove_dir_all(long);
    }
}
