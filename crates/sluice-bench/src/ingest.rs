//! `sluice-bench ingest`: the real ingest pipeline (`sluice_engine::ingest::ingest_stream`,
//! in-process: parse, enrich, binary COPY, rollups, watermark; one transaction per batch) against
//! `psql \copy` of the same rows as CSV into an identical table, in the same run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use sluice_core::time::MICROS_PER_DAY;
use sluice_core::Timestamp;
use sluice_engine::ingest::{ingest_stream, Enrichment, FormatChoice, InputSource, StreamConfig};
use sluice_logs::FormatName;
use sluice_store::encode::ACCESS_LOG_COLUMNS;
use sluice_store::ingest::{IngestWriter, PARTITION_DAYS_AHEAD};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};

use crate::server::Server;
use crate::{csv, generate, load_average, median, IngestArgs, WorkDir};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Psql,
    Sluice,
}

#[derive(Debug, Default)]
struct Run {
    psql_secs: f64,
    sluice_secs: f64,
    psql_first: bool,
    load: String,
}

pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let work = WorkDir::new(args.server.work_dir.as_ref())?;
    let server = Server::open(args.server.database_url.as_deref()).await?;
    let res = run_on(&args, &server, work.path()).await;
    server.stop();
    res
}

async fn run_on(args: &IngestArgs, server: &Server, dir: &Path) -> anyhow::Result<()> {
    let log = dir.join("access-combined.log");
    let csv_path = dir.join("access-combined.csv");
    let t = Instant::now();
    let log_bytes = generate::write_nginx_combined(&log, args.lines, 42)?;
    eprintln!(
        "generated {} lines ({:.1} MB) in {:.1} s",
        args.lines,
        log_bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let input = InputSource::File(log.clone());
    let source = input.default_source_name();
    let enrich = Arc::new(Enrichment::default());
    let t = Instant::now();
    let conv = csv::convert(&log, &csv_path, &source, &enrich)?;
    eprintln!(
        "converted to CSV: {} rows ({:.1} MB) in {:.1} s",
        conv.rows,
        conv.bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    println!(
        "sluice-bench ingest: {} nginx combined lines ({:.1} MB; CSV {:.1} MB)",
        args.lines,
        log_bytes as f64 / 1e6,
        conv.bytes as f64 / 1e6
    );
    println!("server: {}", server.description);
    println!("sluice side: in-process sluice_engine::ingest::ingest_stream (--format nginx, batch {} lines, default enrichment)", args.batch_lines);
    println!(
        "psql side:   {} -c \"\\copy ref_access_log (...) FROM '...csv' WITH (FORMAT csv)\"",
        crate::server::psql().display()
    );
    println!("load average at start: {}", load_average());
    println!();
    println!(
        "{:>3}  {:<12}  {:>9}  {:>9}  {:>12}  {:>12}  {:>6}  load",
        "run", "first", "psql s", "sluice s", "psql l/s", "sluice l/s", "ratio"
    );

    let days: Vec<i64> = conv.days.iter().copied().collect();
    let mut runs = Vec::new();
    for i in 0..args.runs {
        let name = format!("sluice_bench_{}_{i}", std::process::id());
        let db = server.create_db(&name).await?;
        create_reference_table(&db, &days).await?;
        let order = if i % 2 == 0 {
            [Side::Psql, Side::Sluice]
        } else {
            [Side::Sluice, Side::Psql]
        };
        let mut r = Run {
            psql_first: order[0] == Side::Psql,
            ..Default::default()
        };
        for side in order {
            server.checkpoint().await?;
            match side {
                Side::Psql => r.psql_secs = time_psql(server, &name, &csv_path, conv.rows).await?,
                Side::Sluice => {
                    r.sluice_secs = time_sluice(server, &db, &log, args, &enrich, conv.rows).await?
                }
            }
        }
        r.load = load_average();
        check_counts(&db, conv.rows).await?;
        if i == 0 && !args.no_verify {
            verify_identical(&db).await?;
        }
        server.drop_db(&name).await?;
        let n = args.lines as f64;
        println!(
            "{:>3}  {:<12}  {:>9.2}  {:>9.2}  {:>12.0}  {:>12.0}  {:>6.2}  {}",
            i + 1,
            if r.psql_first { "psql" } else { "sluice" },
            r.psql_secs,
            r.sluice_secs,
            n / r.psql_secs,
            n / r.sluice_secs,
            r.psql_secs / r.sluice_secs,
            r.load
        );
        runs.push(r);
    }
    let psql = median(&runs.iter().map(|r| r.psql_secs).collect::<Vec<_>>());
    let sluice = median(&runs.iter().map(|r| r.sluice_secs).collect::<Vec<_>>());
    let n = args.lines as f64;
    let ratio = psql / sluice;
    println!();
    println!(
        "median of {} runs      {:>10}  {:>12}",
        args.runs, "seconds", "lines/s"
    );
    println!(
        "psql \\copy (CSV)        {:>10.2}  {:>12.0}",
        psql,
        n / psql
    );
    println!(
        "sluice ingest           {:>10.2}  {:>12.0}",
        sluice,
        n / sluice
    );
    println!(
        "ratio sluice/psql (lines/s): {ratio:.2}  (target >= 0.80: {})",
        if ratio >= 0.8 { "met" } else { "NOT met" }
    );
    Ok(())
}

/// `ref_access_log`: `access_log`'s columns, defaults, constraints and indexes, partitioned the
/// same way, with the partitions the data needs (plus the look-ahead days Sluice creates).
async fn create_reference_table(db: &PgConnectOptions, days: &[i64]) -> anyhow::Result<()> {
    let mut conn = db.connect().await?;
    conn.execute(
        "CREATE TABLE ref_access_log (LIKE access_log INCLUDING ALL) PARTITION BY RANGE (ts)",
    )
    .await?;
    let mut all: Vec<i64> = days.to_vec();
    if let Some(&last) = days.last() {
        all.extend((1..=i64::from(PARTITION_DAYS_AHEAD)).map(|k| last + k * MICROS_PER_DAY));
    }
    for day in all {
        let name = format!("ref_{}", sluice_store::ingest::partition_name(day));
        let from = Timestamp(day).to_chrono().to_rfc3339();
        let to = Timestamp(day + MICROS_PER_DAY).to_chrono().to_rfc3339();
        conn.execute(
            format!("CREATE TABLE {name} PARTITION OF ref_access_log FOR VALUES FROM ('{from}') TO ('{to}')").as_str(),
        )
        .await?;
    }
    conn.close().await?;
    Ok(())
}

async fn time_psql(server: &Server, db: &str, csv_path: &Path, rows: u64) -> anyhow::Result<f64> {
    let cmd = format!(
        "\\copy ref_access_log ({ACCESS_LOG_COLUMNS}) FROM '{}' WITH (FORMAT csv)",
        csv_path.display()
    );
    let t = Instant::now();
    let out = tokio::process::Command::new(crate::server::psql())
        .args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &server.conninfo(db),
            "-c",
            &cmd,
        ])
        .output()
        .await
        .context("failed to run psql")?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("psql failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    if stdout.trim() != format!("COPY {rows}") {
        bail!("psql copied something else than {rows} rows: {stdout}");
    }
    Ok(secs)
}

async fn time_sluice(
    server: &Server,
    db: &PgConnectOptions,
    log: &Path,
    args: &IngestArgs,
    enrich: &Arc<Enrichment>,
    rows: u64,
) -> anyhow::Result<f64> {
    // Like `sluice ingest`: the pool is open before the clock starts.
    let pool = server.pool(db).await?;
    let writer = Arc::new(IngestWriter::new(pool.clone()));
    let cfg = StreamConfig {
        format: FormatChoice {
            name: FormatName::Nginx,
            log_format: None,
        },
        enrich: enrich.clone(),
        batch_lines: args.batch_lines,
        ..StreamConfig::default()
    };
    let t = Instant::now();
    let summary = ingest_stream(writer, InputSource::File(PathBuf::from(log)), cfg, |_| {}).await?;
    let secs = t.elapsed().as_secs_f64();
    pool.close().await;
    if summary.accepted != rows || summary.rejected != 0 {
        bail!(
            "sluice accepted {} and rejected {} lines, expected {rows} and 0",
            summary.accepted,
            summary.rejected
        );
    }
    Ok(secs)
}

async fn check_counts(db: &PgConnectOptions, rows: u64) -> anyhow::Result<()> {
    let mut conn = db.connect().await?;
    for table in ["access_log", "ref_access_log"] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut conn)
            .await?;
        if n as u64 != rows {
            bail!("{table} holds {n} rows, expected {rows}");
        }
    }
    conn.close().await?;
    Ok(())
}

/// Both tables hold exactly the same rows (as multisets), and the same indexes.
async fn verify_identical(db: &PgConnectOptions) -> anyhow::Result<()> {
    let mut conn = db.connect().await?;
    let t = Instant::now();
    let (a, b): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM (TABLE access_log EXCEPT ALL TABLE ref_access_log) x),
                (SELECT count(*) FROM (TABLE ref_access_log EXCEPT ALL TABLE access_log) y)",
    )
    .fetch_one(&mut conn)
    .await?;
    let idx: Vec<(String, String)> = sqlx::query_as(
        "SELECT tablename::text, regexp_replace(indexdef, '^.* USING ', '') FROM pg_indexes
         WHERE tablename IN ('access_log', 'ref_access_log') ORDER BY 1, 2",
    )
    .fetch_all(&mut conn)
    .await?;
    let (rollup_clients, rollup_routes): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM rollup_client_minute), (SELECT count(*) FROM rollup_route_minute)",
    )
    .fetch_one(&mut conn)
    .await?;
    // The rollups agree with the raw rows (batches written concurrently merged correctly).
    let (bad_clients, bad_routes): (i64, i64) = sqlx::query_as(
        "SELECT
           (SELECT count(*) FROM (SELECT client_kind, client, date_trunc('minute', ts) AS minute, count(*) AS n,
                   sum(bytes_sent) AS b FROM access_log GROUP BY 1, 2, 3) raw
            FULL JOIN rollup_client_minute r USING (client_kind, client, minute)
            WHERE raw.n IS DISTINCT FROM r.requests OR raw.b IS DISTINCT FROM r.bytes_sent),
           (SELECT count(*) FROM (SELECT route, date_trunc('minute', ts) AS minute, count(*) AS n
                   FROM access_log GROUP BY 1, 2) raw
            FULL JOIN rollup_route_minute r USING (route, minute)
            WHERE raw.n IS DISTINCT FROM r.requests)",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    if bad_clients != 0 || bad_routes != 0 {
        bail!("rollups disagree with access_log: {bad_clients} client-minutes, {bad_routes} route-minutes");
    }
    if a != 0 || b != 0 {
        bail!("the tables differ: {a} rows only in access_log, {b} only in ref_access_log");
    }
    let idx: Vec<String> = idx.into_iter().map(|(t, d)| format!("{t}: {d}")).collect();
    eprintln!(
        "verified in {:.1} s: access_log and ref_access_log hold identical rows; indexes [{}]; rollups ({rollup_clients} client-minutes, {rollup_routes} route-minutes) match access_log",
        t.elapsed().as_secs_f64(),
        idx.join("; ")
    );
    Ok(())
}
