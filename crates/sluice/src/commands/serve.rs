//! `sluice serve`: the HTTP API on the embedded or external database.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use sluice_api::{ApiConfig, AppState};
use sluice_store::ingest::IngestWriter;
use sluice_store::tokens;

use super::{enrichment, open_db, shutdown_signal};
use crate::cli::{GlobalArgs, ServeArgs};

pub async fn run(g: &GlobalArgs, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let enrich = enrichment(&args.enrich)?;
    let tuning_settings = args.tuning.settings()?;
    let alert_config = args
        .alerts
        .config()
        .context("invalid alert configuration")?;
    let db = open_db(g).await?;
    bootstrap_admin_token(g, db.pool()).await?;

    let config = ApiConfig {
        max_body_bytes: args.max_body_bytes,
        queue_capacity: args.ingest_queue,
        writers: args.ingest_writers,
        metrics_public: args.metrics.metrics_public,
        ..ApiConfig::default()
    };
    let state = AppState::new(db.pool().clone(), enrich, config);
    let retention = spawn_retention(
        db.pool().clone(),
        args.retention.retention_days,
        args.retention.rollup_retention_days,
    );

    let detection = (args.detect_every > 0).then(|| {
        let opts = sluice_engine::detection::DetectionOptions {
            lateness: Duration::from_secs(args.detect_lateness),
            models_dir: Some(
                args.models_dir
                    .clone()
                    .unwrap_or_else(|| g.data_dir.join("models")),
            ),
            ..Default::default()
        };
        sluice_engine::detection::spawn_live(
            db.pool().clone(),
            opts,
            Duration::from_secs(args.detect_every),
        )
    });

    // Forecasting follows detection in log time (it reads up to the detection cursor).
    let forecasting = (args.detect_every > 0 && args.forecast_every > 0).then(|| {
        sluice_engine::forecast::spawn_live(
            db.pool().clone(),
            args.forecast.options(),
            Duration::from_secs(args.forecast_every),
        )
    });

    // Profiles are recomputed behind the detection cursor (log time).
    let profiles = (args.detect_every > 0 && args.profiles_every > 0).then(|| {
        sluice_engine::profiles::spawn_live(
            db.pool().clone(),
            args.profiles.options(),
            Duration::from_secs(args.profiles_every),
        )
    });

    // Tuning (reputation, suggestions, expiry, reverts) follows the detection cursor (log time).
    let tuning = (args.detect_every > 0 && args.tune_every > 0).then(|| {
        sluice_engine::tuning::spawn_live(
            db.pool().clone(),
            tuning_settings,
            Duration::from_secs(args.tune_every),
        )
    });
    let metrics_collector = sluice_api::metrics::spawn_collector(
        db.pool().clone(),
        Duration::from_secs(args.metrics.metrics_refresh),
    );

    let alerting = match alert_config {
        Some(c) => {
            tracing::info!(
                webhooks = ?c.webhooks.iter().map(|w| w.id()).collect::<Vec<_>>(),
                suggestion_wait_seconds = c.suggestion_wait.as_secs(),
                gateway_lag_seconds = c.gateway_lag.as_secs(),
                "alert webhooks on"
            );
            let alerter = sluice_alerts::Alerter::new(db.pool().clone(), c)?;
            Some(sluice_alerts::spawn(alerter))
        }
        None => None,
    };

    let res = sluice_api::serve(args.listen, state, shutdown_signal(), |addr| {
        tracing::info!(%addr, "sluice is listening");
        eprintln!("sluice listening on http://{addr} (Ctrl-C stops it)");
    })
    .await
    .with_context(|| format!("failed to serve on {}", args.listen));
    retention.abort();
    metrics_collector.abort();
    if let Some(d) = detection {
        d.abort();
    }
    if let Some(f) = forecasting {
        f.abort();
    }
    if let Some(p) = profiles {
        p.abort();
    }
    if let Some(t) = tuning {
        t.abort();
    }
    if let Some(a) = alerting {
        a.abort();
    }
    db.close().await;
    res?;
    Ok(ExitCode::SUCCESS)
}

/// On a database with no active token, create an admin token so the first user can get in; its
/// secret goes to `DATA_DIR/admin.token` (mode 0600) and stderr, once.
async fn bootstrap_admin_token(g: &GlobalArgs, pool: &sluice_store::PgPool) -> anyhow::Result<()> {
    if tokens::active_token_count(pool).await? > 0 {
        return Ok(());
    }
    let name = format!("bootstrap-admin-{}", chrono_now_compact());
    let (_, secret) =
        tokens::create_token(pool, &name, sluice_core::Role::Admin, "sluice-serve").await?;
    let path = g.data_dir.join("admin.token");
    std::fs::create_dir_all(&g.data_dir).ok();
    write_private(&path, &secret).with_context(|| format!("failed to write {}", path.display()))?;
    eprintln!(
        "no API tokens existed: created admin token {name:?}, saved in {} (create more with `sluice token create`)",
        path.display()
    );
    Ok(())
}

fn chrono_now_compact() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs().to_string())
        .unwrap_or_default()
}

fn write_private(path: &std::path::Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{secret}")
}

fn spawn_retention(
    pool: sluice_store::PgPool,
    raw_days: u32,
    rollup_days: u32,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if raw_days == 0 && rollup_days == 0 {
            return;
        }
        let writer = IngestWriter::new(pool);
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tick.tick().await;
            let raw = if raw_days == 0 {
                u32::MAX / 2
            } else {
                raw_days
            };
            let rollup = if rollup_days == 0 {
                u32::MAX / 2
            } else {
                rollup_days
            };
            match writer.apply_retention(raw, rollup).await {
                Ok(dropped) if !dropped.is_empty() => {
                    tracing::info!(?dropped, "retention dropped partitions")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention failed"),
            }
        }
    })
}
