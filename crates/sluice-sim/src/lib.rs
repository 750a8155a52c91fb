//! Labelled traffic simulator: access logs of a small shop API with ground truth, for the
//! detection and forecasting tests, the replay and quality benchmarks and the closed-loop demo.
//!
//! ```
//! use sluice_sim::{generate, write_logs, SimConfig, SimFormat};
//!
//! let cfg = SimConfig { legit_clients: 20, browsers: 10, ..SimConfig::for_duration(7, 600) };
//! let sim = generate(&cfg).unwrap();
//! assert_eq!(sim.labels().attacks.len(), 6);
//! let records: Vec<_> = sim.collect();
//! assert!(records.windows(2).all(|w| w[0].ts <= w[1].ts));
//!
//! let mut log = Vec::new();
//! let labels = write_logs(&cfg, SimFormat::NginxApiKey, &mut log).unwrap();
//! assert_eq!(log.iter().filter(|&&b| b == b'\n').count(), records.len());
//! assert_eq!(labels.seed, 7);
//! ```
//!
//! The cast (see [`SimConfig`]):
//! - **API clients** (label `legit`), named by key (`ak_<24 hex>`): a tier (free, pro, enterprise:
//!   about 4, 20, 80 requests per minute), 1 to 3 stable cloud IPs, one SDK user agent, their own
//!   mix of 2 to 6 routes, a daily sinusoid with their own phase, slowly varying noise, Poisson
//!   arrivals. Mostly 2xx with the few 4xx real clients get.
//! - **Browsers** (`browser`), named by IP (12% IPv6): short sessions of page views, each pulling a
//!   few `/static/` assets; more sessions in the evening (UTC).
//! - **Batch jobs** (`batch_job`), named by key: a 1.5 to 3 minute burst of 150 to 400 requests per
//!   minute starting within 30 seconds of the top of every hour, nothing otherwise; half of them
//!   start each burst with one `/v1/export`.
//! - **A flash crowd**: most clients and browsers rising ×5 together for ~25 minutes, largely on one
//!   product page, plus new browsers (`flash_crowd`) that only exist during it.
//! - **Attacks** (`attack`), one of each [`AttackClass`] by default, at staggered times.
//!
//! Every random choice comes from the seed; the same configuration gives the same bytes. Records
//! are produced minute by minute (memory bounded by one minute of traffic) and merged in time
//! order. [`Labels`] names every identity that appears in the logs and every attack window.
//!
//! # `sluice sim` (wired in the binary)
//!
//! The help text the subcommand should show:
//!
//! ```text
//! Generate labelled synthetic access logs: API clients with daily rhythms, browsers, hourly batch
//! jobs, a flash crowd, and one attack of each class (scraping, credential stuffing, low-and-slow
//! enumeration, a compromised key, vulnerability probing, a multi-IP flood), with a labels file
//! giving the ground truth.
//!
//! Usage: sluice sim [OPTIONS]
//!
//! Options:
//!       --seed <N>            Random seed; the same options give the same bytes [default: 1]
//!       --start <TIME>        Log time of the first request, RFC 3339 [default: 2026-03-02T00:00:00Z]
//!       --duration <SPAN>     Simulated span: 90m, 6h, 1d, ... [default: 6h]
//!       --lines <N>           Scale legitimate traffic to about N lines in total; 0 keeps the
//!                             natural rates (~19 requests/min per API client) [default: 1000000]
//!       --clients <N>         API clients (identified by key) [default: 220]
//!       --browsers <N>        Anonymous browsers (identified by IP) [default: 100]
//!       --batch-jobs <N>      Keys that burst at the top of every hour [default: 8]
//!       --attacks <LIST>      Attack classes to play, comma-separated, or `none`: scraping,
//!                             credential_stuffing, enumeration, compromised_key, probing, flood
//!                             [default: all]
//!       --no-flash-crowd      Leave out the flash crowd
//!   -f, --format <FORMAT>     nginx, nginx-apikey, apache, envoy, envoy-json, kong, ndjson
//!                             [default: nginx-apikey]
//!   -o, --output <FILE>       Log file, `-` for stdout [default: -]
//!       --labels <FILE>       Write the ground truth (JSON) here [default: <output>.labels.json,
//!                             none for stdout]
//!       --print-log-format    Print the `sluice ingest` flags that read --format and exit
//!
//! Ingest the result with `sluice ingest --format <F> [--log-format '<STRING>']`; nginx-apikey,
//! apache and envoy use custom format strings (--print-log-format shows them).
//! ```
//!
//! Mapping: `--attacks` selects from [`AttackSpec::default_schedule`] for the duration,
//! `--lines 0` is `target_lines: None`, `--print-log-format` prints [`SimFormat::ingest_flags`].

mod actor;
mod catalog;
mod config;
mod dist;
mod format;
mod labels;
mod sim;

use std::io::Write;

pub use actor::HOST;
pub use catalog::{RouteDef, RouteId, PRODUCTS, ROUTES};
pub use config::{
    default_start, parse_duration_secs, AttackClass, AttackSpec, DurationError, FlashCrowdSpec,
    SimConfig, SimConfigError, UnknownAttackClass, DEFAULT_DURATION_SECS, MAX_SOURCES,
};
pub use format::{
    LineWriter, SimFormat, UnknownSimFormat, APACHE_SIM_LOG_FORMAT, ENVOY_SIM_FORMAT,
    ENVOY_SIM_JSON_FORMAT, NGINX_APIKEY_LOG_FORMAT,
};
pub use labels::{AttackLabel, FlashCrowdLabel, IdentityLabel, IdentityRef, Labels, TrafficLabel};
pub use sim::{generate, Schedule, Simulation, TimeScale, TimeScaleError};

/// Why a simulation could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Config(#[from] SimConfigError),
    #[error("failed to write the simulated log: {0}")]
    Io(#[from] std::io::Error),
}

/// Generate the scenario and write it to `out` in `format`, one record per line; returns the
/// labels (write them with [`Labels::to_json`]). Buffers internally: `out` may be unbuffered.
pub fn write_logs(
    cfg: &SimConfig,
    format: SimFormat,
    mut out: impl Write,
) -> Result<Labels, SimError> {
    let mut sim = generate(cfg)?;
    let mut writer = LineWriter::new(format);
    let mut buf = Vec::with_capacity(128 << 10);
    for rec in &mut sim {
        writer.write(&rec, &mut buf);
        if buf.len() >= 120 << 10 {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    out.flush()?;
    Ok(sim.into_labels())
}
