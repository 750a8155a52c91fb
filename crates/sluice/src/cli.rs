//! Command-line interface: one typed configuration read from flags and environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

const AFTER_HELP: &str = "\
Getting started:
  sluice serve                       start the API on 127.0.0.1:8080 with an embedded Postgres in ./.sluice
  sluice ingest access.log           load a log file (format detected) and print what was accepted
  sluice token create --role gateway --name edge-1
                                     a token for a gateway to ship logs and fetch policy

Without DATABASE_URL, Sluice runs its own private Postgres cluster in --data-dir (it needs the
PostgreSQL server programs installed: initdb, pg_ctl, postgres). With DATABASE_URL it uses that
database instead. Every flag can also be set through the environment variable shown in its help.";

/// Sluice: learns how each API client normally behaves, detects abuse and turns it into tuned
/// rate limits that gateways fetch.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, long_about = None, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    /// How Sluice's own logs are written to stderr: `text` (human; colours on a terminal) or
    /// `json` (one object per line, for log collectors). Give it before the subcommand.
    #[arg(long = "log-format", env = "SLUICE_LOG_FORMAT", value_enum, default_value_t = LogOutput::Text)]
    pub log_output: LogOutput,

    /// Log filter in `tracing` syntax, e.g. `info`, `sluice=debug,sqlx=warn`.
    #[arg(
        long,
        env = "SLUICE_LOG",
        default_value = "info,sqlx=warn",
        global = true
    )]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogOutput {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Sluice's data directory: the embedded Postgres cluster and local state live here.
    #[arg(
        long,
        env = "SLUICE_DATA_DIR",
        default_value = "./.sluice",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Use this Postgres database instead of the embedded cluster
    /// (postgres://USER[:PASSWORD]@HOST[:PORT]/DB).
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<SecretString>,

    /// When Sluice runs as root, the unprivileged system user that runs the embedded Postgres
    /// (initdb and postgres refuse to run as root).
    #[arg(
        long,
        env = "SLUICE_PG_USER",
        default_value = "postgres",
        global = true
    )]
    pub pg_user: String,

    /// Directory holding initdb, pg_ctl and postgres, when they are neither on PATH nor under
    /// /usr/lib/postgresql/*/bin.
    #[arg(long, env = "SLUICE_PG_BIN_DIR", global = true)]
    pub pg_bin_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane's HTTP API (log ingestion, and everything else under /v1).
    Serve(ServeArgs),
    /// Load access logs from files (plain or gzip) or stdin into the database.
    Ingest(IngestArgs),
    /// Ingest log files, then run detection through them in log time and write a JSON report
    /// (lines read/accepted/rejected, anomalies with their explanations, models trained).
    #[command(after_help = REPLAY_AFTER_HELP)]
    Replay(ReplayArgs),
    /// List lines that could not be parsed, with their reasons.
    Rejects(RejectsArgs),
    /// List the model registry (population models refitted by detection), newest first.
    Models(ModelsArgs),
    /// Database maintenance.
    #[command(subcommand)]
    Db(DbCommand),
    /// Manage API tokens (roles: gateway, analyst, admin).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Rate-limit policy: check a file offline, publish it as a new version, show, list, diff,
    /// roll back or promote versions.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Suggested limits: list and show them, approve, reject or modify them (each decision is
    /// audited with the CLI user as actor; an approval publishes a new policy version).
    #[command(subcommand)]
    Suggestions(SuggestionsCommand),
    /// The auto-approval rules: show them, or replace them from a JSON file (audited).
    #[command(subcommand)]
    AutoApproval(AutoApprovalCommand),
    /// The audit log, newest first: who changed what, when and why.
    Audit(AuditArgs),
    /// Score a `timestamp,value` series for anomalies (causal; the score at t uses data up to t).
    Series(SeriesArgs),
    /// Forecast series: M4-style CSVs or one `timestamp,value` series.
    Forecast(ForecastArgs),
    /// Generate labelled synthetic access logs: API clients with daily rhythms, browsers, hourly
    /// batch jobs, a flash crowd, and one attack of each class, with a labels file (ground truth).
    #[command(after_help = SIM_AFTER_HELP)]
    Sim(SimArgs),
    /// The closed loop on this machine: embedded Postgres, the control plane, a small upstream
    /// API, the gateway in front of it, and simulated legitimate and attack traffic played
    /// through it in real time; prints a live summary, the UI address and the final figures.
    #[command(after_help = DEMO_AFTER_HELP)]
    Demo(DemoArgs),
    /// Run the reference gateway: a reverse proxy that enforces the control plane's rate-limit
    /// policy (long-polled, kept on disk) and ships its access logs back.
    Gateway(GatewayArgs),
}

const REPLAY_AFTER_HELP: &str = "\
Replay runs the same detection code as `sluice serve`, over the log-time range of the files: every
minute is scored with data up to that minute only. Anomalies, per-client minute features and the
model registry are stored in the database (the embedded cluster under --data-dir, or DATABASE_URL),
so `sluice serve` shows them afterwards.

Example (6 hours of simulated traffic, about a million lines, then the replay):
    sluice sim --format ndjson --output sim.ndjson
    sluice replay sim.ndjson --report report.json
    tools/score_replay.py report.json sim.labels.json      # compare with the ground truth
";

const SIM_AFTER_HELP: &str = "\
Attack classes: scraping, credential_stuffing (many IPs, low rate each, mostly 401), enumeration
(low and slow, below static limits), compromised_key (new IPs, agent and endpoints for a known key),
probing (mostly 404s on odd paths), flood (a short multi-IP burst).

Ingest the result with `sluice ingest --format <F> [--log-format '<STRING>']`; nginx-apikey, apache
and envoy use custom format strings, which --print-log-format shows.";

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Random seed; the same options give the same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Log time of the first request, RFC 3339.
    #[arg(long, default_value = "2026-03-02T00:00:00Z")]
    pub start: String,
    /// Simulated span: 90m, 6h, 1d, ...
    #[arg(long, default_value = "6h")]
    pub duration: String,
    /// Scale legitimate traffic to about N lines in total; 0 keeps the natural rates
    /// (about 19 requests/min per API client).
    #[arg(long, default_value_t = 1_000_000)]
    pub lines: u64,
    /// API clients (identified by key).
    #[arg(long, default_value_t = 220)]
    pub clients: usize,
    /// Anonymous browsers (identified by IP).
    #[arg(long, default_value_t = 100)]
    pub browsers: usize,
    /// Keys that burst at the top of every hour.
    #[arg(long, default_value_t = 8)]
    pub batch_jobs: usize,
    /// Attack classes to play, comma-separated, `all` or `none`.
    #[arg(long, default_value = "all")]
    pub attacks: String,
    /// Leave out the flash crowd.
    #[arg(long)]
    pub no_flash_crowd: bool,
    /// nginx, nginx-apikey, apache, envoy, envoy-json, kong, ndjson.
    #[arg(long, short = 'f', default_value = "nginx-apikey")]
    pub format: String,
    /// Log file; `-` for stdout.
    #[arg(long, short = 'o', default_value = "-")]
    pub output: PathBuf,
    /// Where to write the ground truth (JSON); default `<output>.labels.json` (none for stdout).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Print the `sluice ingest` flags that read --format, and exit.
    #[arg(long)]
    pub print_log_format: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Largest accepted request body in bytes (compressed size); larger bodies get 413.
    #[arg(long, env = "SLUICE_MAX_BODY_BYTES", default_value_t = 16 << 20)]
    pub max_body_bytes: usize,

    /// Batches that may wait for the database before POST /v1/logs answers 429 (back-pressure).
    #[arg(long, env = "SLUICE_INGEST_QUEUE", default_value_t = 64)]
    pub ingest_queue: usize,

    /// Concurrent ingest writers (database connections used for ingestion).
    #[arg(long, env = "SLUICE_INGEST_WRITERS", default_value_t = 2)]
    pub ingest_writers: usize,

    /// Seconds between detection steps (scoring what was ingested since the last one); 0 turns
    /// detection off.
    #[arg(long, env = "SLUICE_DETECT_EVERY", default_value_t = 5)]
    pub detect_every: u64,

    /// Seconds of log time detection stays behind the newest ingested record, so records that
    /// arrive a little late still count in their minute.
    #[arg(long, env = "SLUICE_DETECT_LATENESS", default_value_t = 120)]
    pub detect_lateness: u64,

    /// Where refitted models are exported; default: <data-dir>/models.
    #[arg(long, env = "SLUICE_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,

    /// Seconds between forecast steps (they follow detection in log time); 0 turns forecasting
    /// and capacity factors off.
    #[arg(long, env = "SLUICE_FORECAST_EVERY", default_value_t = 30)]
    pub forecast_every: u64,

    #[command(flatten)]
    pub forecast: ForecastLoopArgs,

    /// Seconds between client-profile refreshes (each recomputes every active client's baseline
    /// over the history before the detection cursor, when the cursor has moved); 0 turns them off.
    #[arg(long, env = "SLUICE_PROFILES_EVERY", default_value_t = 300)]
    pub profiles_every: u64,

    #[command(flatten)]
    pub profiles: ProfileArgs,

    /// Seconds between tuning steps (reputation, limit suggestions, expiry, reverts of temporary
    /// limits; they follow detection in log time); 0 turns tuning off.
    #[arg(long, env = "SLUICE_TUNE_EVERY", default_value_t = 60)]
    pub tune_every: u64,

    #[command(flatten)]
    pub tuning: TuningArgs,

    #[command(flatten)]
    pub enrich: EnrichArgs,

    #[command(flatten)]
    pub retention: RetentionArgs,

    #[command(flatten)]
    pub metrics: MetricsArgs,

    #[command(flatten)]
    pub alerts: AlertArgs,
}

/// Alert webhooks of `sluice serve` (docs/alerts.md).
#[derive(Debug, Clone, Args)]
pub struct AlertArgs {
    /// POST a JSON notification to this URL (repeatable; Slack-compatible `text` plus structured
    /// fields) once per high-severity anomaly opened (score >= 0.8, as
    /// sluice_anomalies_open_high_severity), per suggestion waiting longer than
    /// --alert-suggestion-wait and per gateway behind its policy longer than --alert-gateway-lag.
    /// Failed deliveries are retried with back-off (12 attempts over about an hour). No webhook:
    /// no alerting.
    #[arg(
        long = "alert-webhook",
        env = "SLUICE_ALERT_WEBHOOKS",
        value_delimiter = ',',
        hide_env_values = true,
        value_name = "URL"
    )]
    pub webhooks: Vec<String>,

    /// Alert when a limit suggestion has been pending this long (wall clock since it was made:
    /// how long nobody decided it), e.g. 90s, 30m, 1h, 1h30m.
    #[arg(
        long = "alert-suggestion-wait",
        env = "SLUICE_ALERT_SUGGESTION_WAIT",
        default_value = "1h",
        value_name = "DURATION"
    )]
    pub suggestion_wait: String,

    /// Alert when a gateway has applied an older version than its group is served for this long
    /// (wall clock, from when serve first saw it behind at that version).
    #[arg(
        long = "alert-gateway-lag",
        env = "SLUICE_ALERT_GATEWAY_LAG",
        default_value = "5m",
        value_name = "DURATION"
    )]
    pub gateway_lag: String,

    /// Seconds between alert checks (conditions and due retries).
    #[arg(
        long = "alert-check-every",
        env = "SLUICE_ALERT_CHECK_EVERY",
        default_value_t = 15
    )]
    pub check_every: u64,
}

impl AlertArgs {
    /// The alerter's configuration, or None when no webhook is configured.
    pub fn config(&self) -> anyhow::Result<Option<sluice_alerts::AlertConfig>> {
        let suggestion_wait = sluice_alerts::parse_duration(&self.suggestion_wait)?;
        let gateway_lag = sluice_alerts::parse_duration(&self.gateway_lag)?;
        let webhooks = self
            .webhooks
            .iter()
            .filter(|w| !w.trim().is_empty())
            .map(|w| sluice_alerts::Webhook::parse(w))
            .collect::<Result<Vec<_>, _>>()?;
        if webhooks.is_empty() {
            return Ok(None);
        }
        let mut c = sluice_alerts::AlertConfig::new(webhooks);
        c.suggestion_wait = suggestion_wait;
        c.gateway_lag = gateway_lag;
        c.check_every = std::time::Duration::from_secs(self.check_every.max(1));
        Ok(Some(c))
    }
}

#[derive(Debug, Args, Clone)]
pub struct EnrichArgs {
    /// Which fields identify a client, in order of preference: the first one present wins.
    #[arg(
        long,
        env = "SLUICE_CLIENT_KEY",
        default_value = "api_key,consumer,user,ip"
    )]
    pub client_key: String,

    /// Route template (repeatable), e.g. `/v1/users/{user}/files/*` or `/static/**`; paths that
    /// match normalise to the template. Others get numeric, UUID and hex segments replaced by {id}.
    #[arg(
        long = "route-pattern",
        env = "SLUICE_ROUTE_PATTERNS",
        value_delimiter = ','
    )]
    pub route_patterns: Vec<String>,
}

#[derive(Debug, Args, Clone)]
pub struct RetentionArgs {
    /// Days of raw access records to keep, counted back from the newest log time ingested
    /// (whole daily partitions are dropped). 0 keeps everything.
    #[arg(long, env = "SLUICE_RETENTION_DAYS", default_value_t = 14)]
    pub retention_days: u32,

    /// Days of per-minute rollups to keep (baselines learn from these). 0 keeps everything.
    #[arg(long, env = "SLUICE_ROLLUP_RETENTION_DAYS", default_value_t = 90)]
    pub rollup_retention_days: u32,
}

/// What to read and how to parse it: shared by `sluice ingest` and `sluice replay`.
#[derive(Debug, Args)]
pub struct InputArgs {
    /// Files to read (plain or gzip, detected by content); `-` reads standard input.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Log format: nginx, apache, envoy, envoy-json, kong, ndjson, or auto (detect from the first
    /// lines and say which was picked).
    #[arg(long, short = 'f', env = "SLUICE_FORMAT", default_value = "auto")]
    pub format: String,

    /// The format string: an nginx `log_format` (default `combined`), an Apache `LogFormat`
    /// (`common`, `combined` or `%h %l ...`) or an Envoy format.
    #[arg(long = "log-format", env = "SLUICE_LOG_FORMAT_STRING")]
    pub log_format: Option<String>,

    /// Source (gateway) name stored with records that carry none; default: the file name.
    #[arg(long, env = "SLUICE_SOURCE")]
    pub source: Option<String>,

    /// Lines per batch; each batch is one transaction. Batches are keyed by file and byte range,
    /// so re-running the same file with the same value skips what was committed.
    #[arg(long, default_value_t = sluice_engine::ingest::DEFAULT_BATCH_LINES)]
    pub batch_lines: usize,

    #[command(flatten)]
    pub enrich: EnrichArgs,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    #[command(flatten)]
    pub input: InputArgs,

    /// Print one JSON object with the counts on stdout instead of a human summary.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub retention: RetentionArgs,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub input: InputArgs,

    /// Where to write the JSON report (lines, anomalies, models).
    #[arg(long, value_name = "FILE.json")]
    pub report: PathBuf,

    /// Log minutes from the first record during which the detector only learns.
    #[arg(long, default_value_t = 30)]
    pub warmup_minutes: u32,

    /// Where refitted models are exported; default: <data-dir>/models.
    #[arg(long, env = "SLUICE_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,

    /// Print the report on stdout too (the human summary still goes to stderr).
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub forecast: ForecastLoopArgs,

    #[command(flatten)]
    pub profiles: ProfileArgs,

    #[command(flatten)]
    pub tuning: TuningArgs,

    /// Publish the policy the report proposes (every suggestion approved) as a new version;
    /// without it the policy is only validated and written to the report.
    #[arg(long)]
    pub publish: bool,
}

/// Limit tuning: shared by `sluice serve` and `sluice replay`.
#[derive(Debug, Args, Clone)]
pub struct TuningArgs {
    /// Tuning settings, TOML (or JSON when the name ends in .json): `tuning`, `reputation`,
    /// `default_tier`, `tiers`, `client_tiers`, `suggestion_ttl_hours`, `backtest_hours`,
    /// `suggest_every_minutes`, `min_change`, `fair_share`, `route_priority`, `cost_units`,
    /// `campaign_subnets` (docs/tuning.md); every field is optional.
    #[arg(long, env = "SLUICE_TUNING_CONFIG", value_name = "FILE")]
    pub tuning_config: Option<PathBuf>,
}

impl TuningArgs {
    /// The settings from `--tuning-config`, or the defaults.
    pub fn settings(&self) -> anyhow::Result<sluice_engine::tuning::TuningSettings> {
        use anyhow::Context;
        let Some(path) = &self.tuning_config else {
            return Ok(Default::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read the tuning settings {}", path.display()))?;
        let settings: sluice_engine::tuning::TuningSettings =
            if path.extension().is_some_and(|e| e == "json") {
                serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{e}"))
            } else {
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("{e}"))
            }
            .with_context(|| format!("invalid tuning settings in {}", path.display()))?;
        settings
            .check()
            .map_err(|e| anyhow::anyhow!("invalid tuning settings in {}: {e}", path.display()))?;
        Ok(settings)
    }
}

/// Client profiles (`GET /v1/clients/{client}` baselines): shared by `sluice serve` and
/// `sluice replay`.
#[derive(Debug, Args, Clone)]
pub struct ProfileArgs {
    /// Days of log time (before the detection cursor) a client profile is computed over; minutes
    /// the detector flagged are left out.
    #[arg(long, env = "SLUICE_PROFILES_HISTORY_DAYS", default_value_t = 7,
          value_parser = clap::value_parser!(u32).range(1..=365))]
    pub profiles_history_days: u32,
}

impl ProfileArgs {
    pub fn options(&self) -> sluice_engine::profiles::ProfileOptions {
        sluice_engine::profiles::ProfileOptions {
            history: std::time::Duration::from_secs(u64::from(self.profiles_history_days) * 86_400),
            ..Default::default()
        }
    }
}

/// Load forecasting and capacity: shared by `sluice serve` and `sluice replay`.
#[derive(Debug, Args, Clone)]
pub struct ForecastLoopArgs {
    /// Capacity of a route in requests per second, `ROUTE=RPS` (repeatable, e.g.
    /// `--route-capacity /v1/search=50`); overrides the capacity learned from latency vs load.
    #[arg(
        long = "route-capacity",
        env = "SLUICE_ROUTE_CAPACITY",
        value_delimiter = ',',
        value_name = "ROUTE=RPS",
        value_parser = parse_route_capacity
    )]
    pub route_capacity: Vec<(String, f64)>,

    /// Minutes ahead forecast per route and in total (5 to 120).
    #[arg(long, env = "SLUICE_FORECAST_HORIZON", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(5..=120))]
    pub forecast_horizon: u32,

    /// Log minutes between refits of the forecast models.
    #[arg(long, env = "SLUICE_FORECAST_REFIT_MINUTES", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..=10080))]
    pub forecast_refit_minutes: u32,

    /// Learn the capacity of routes without a configured one from the knee of latency vs load.
    #[arg(long, env = "SLUICE_LEARN_CAPACITY", default_value_t = true,
          action = clap::ArgAction::Set, value_name = "BOOL")]
    pub learn_capacity: bool,
}

impl ForecastLoopArgs {
    pub fn options(&self) -> sluice_engine::forecast::ForecastOptions {
        sluice_engine::forecast::ForecastOptions {
            horizon: self.forecast_horizon as usize,
            refit_every: std::time::Duration::from_secs(
                60 * u64::from(self.forecast_refit_minutes),
            ),
            capacities: self.route_capacity.iter().cloned().collect(),
            learn_capacity: self.learn_capacity,
            ..Default::default()
        }
    }
}

/// `ROUTE=RPS` with a route starting with `/` and a positive, finite rate.
pub fn parse_route_capacity(s: &str) -> Result<(String, f64), String> {
    let (route, rps) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("expected ROUTE=RPS (e.g. /v1/search=50), got {s:?}"))?;
    let route = route.trim();
    if !route.starts_with('/') {
        return Err(format!("route {route:?} must start with /"));
    }
    let rps: f64 = rps
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
        .ok_or_else(|| {
            format!(
                "capacity of {route} must be a positive number of requests per second, got {:?}",
                rps.trim()
            )
        })?;
    Ok((route.to_owned(), rps))
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// How many to show.
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RejectsArgs {
    /// Only rejects of this source.
    #[arg(long)]
    pub source: Option<String>,
    /// How many to show (newest first).
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply pending migrations (serve and ingest also do this at start).
    Migrate,
    /// Show each migration and whether it is applied.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Create (or update) a read-only login role for dashboards such as Grafana: SELECT on every
    /// Sluice table except api_tokens (token hashes), also on tables later migrations add. Safe to
    /// run again. Without a password a new role gets a generated one, printed once, alone on the
    /// last line of stdout; an existing role keeps its password. Needs CREATEROLE.
    GrantReadonly(GrantReadonlyArgs),
}

#[derive(Debug, Args)]
pub struct GrantReadonlyArgs {
    /// Role name (a-z, 0-9, _).
    #[arg(long, env = "SLUICE_READONLY_ROLE", default_value = sluice_store::roles::DEFAULT_READONLY_ROLE)]
    pub role: String,

    /// Password to set (also on an existing role). Default: generated for a new role.
    #[arg(long, env = "SLUICE_READONLY_PASSWORD", hide_env_values = true)]
    pub password: Option<secrecy::SecretString>,

    /// Print what was granted as JSON (the generated password, if any, is still the last line).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; the secret is printed once, alone on the last line of stdout.
    Create {
        /// gateway (ship logs, fetch policy), analyst (read) or admin (everything).
        #[arg(long)]
        role: String,
        /// A unique name, e.g. the gateway's host name or the person's name.
        #[arg(long)]
        name: String,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by name (or `#ID`).
    Revoke { name: String },
}

const POLICY_AFTER_HELP: &str = "\
A policy is a JSON document in the format sluice.policy/v1 (docs/policy-format.md, JSON Schema in
docs/policy.schema.json). Every published version is immutable and numbered; gateways fetch the
version their group is served from GET /v1/policy. Every change is written to the audit log with
the CLI user as actor (cli:$USER).

Examples:
    sluice policy check policy.json               # offline; exit 2 and every problem if invalid
    sluice policy publish policy.json --comment \"tighten scrapers\"
    sluice policy publish policy.json --group canary   # canary gateways first ...
    sluice policy promote 7                       # ... then everyone
    sluice policy show                            # what default gateways get now
    sluice policy diff 6 7
    sluice policy rollback 5 --comment \"7 rejected good clients\"";

#[derive(Debug, Subcommand)]
#[command(after_help = POLICY_AFTER_HELP)]
pub enum PolicyCommand {
    /// Validate a policy file without touching the database: prints the rule count and content
    /// hash, or every problem with its path (`rules[2].limit.rate: ...`) and exits with status 2.
    Check {
        /// The policy file (`-` for stdin).
        file: PathBuf,
    },
    /// Validate FILE and publish it as the next version (refused if it equals the newest one).
    Publish {
        /// The policy file (`-` for stdin).
        file: PathBuf,
        /// Why; stored with the version and in the audit log.
        #[arg(long)]
        comment: Option<String>,
        /// Serve it to this gateway group only (e.g. canary) until `sluice policy promote`.
        #[arg(long)]
        group: Option<String>,
    },
    /// Print a version's document (default: the one served to --group).
    Show {
        /// The version to print.
        #[arg(long)]
        version: Option<i64>,
        /// The gateway group whose current version to print.
        #[arg(long, default_value = "default")]
        group: String,
    },
    /// List versions, newest first, and which version each gateway group is served.
    Versions {
        /// At most this many versions.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Rules added, removed and changed from version FROM to version TO (JSON).
    Diff { from: i64, to: i64 },
    /// Restore version N: its rules are published as a new version for every gateway.
    Rollback {
        /// The version to restore.
        version: i64,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Serve version N (e.g. one published with --group canary) to every gateway.
    Promote {
        version: i64,
        #[arg(long)]
        comment: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct SeriesArgs {
    /// CSV with a header and `timestamp` and `value` columns.
    pub input: PathBuf,
    /// Where to write `timestamp,value,anomaly_score`; `-` for stdout.
    #[arg(long, short = 'o', default_value = "-")]
    pub output: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ForecastInput {
    /// M4 competition layout: `id,V1,V2,...` one series per row; writes `id,F1..FH`.
    M4,
    /// One `timestamp,value` series; writes `timestamp,value,lower,upper`, one row per step ahead.
    Series,
}

#[derive(Debug, Args)]
pub struct ForecastArgs {
    /// Input CSV.
    pub input: PathBuf,
    #[arg(long, value_enum, default_value_t = ForecastInput::Series)]
    pub input_format: ForecastInput,
    /// Steps ahead to forecast.
    #[arg(long, default_value_t = 60)]
    pub horizon: usize,
    /// Season length in steps (24 for hourly data with a daily cycle, 1440 for per-minute).
    #[arg(long, default_value_t = 1440)]
    pub season: usize,
    /// Prediction interval level, e.g. 0.9.
    #[arg(long, default_value_t = 0.9)]
    pub interval: f64,
    /// Output CSV; `-` for stdout.
    #[arg(long, short = 'o', default_value = "-")]
    pub output: PathBuf,
}

/// `GET /metrics` (Prometheus) of `sluice serve`.
#[derive(Debug, Clone, Args)]
pub struct MetricsArgs {
    /// Serve `GET /metrics` without a token, for a Prometheus behind a firewall. Off by default:
    /// scrapers then send an analyst token (`authorization: Bearer ...`).
    #[arg(long, env = "SLUICE_METRICS_PUBLIC")]
    pub metrics_public: bool,

    /// Seconds between reads of the gauges that come from the database (open anomalies,
    /// suggestions, rollout, gateways, forecast error).
    #[arg(long, env = "SLUICE_METRICS_REFRESH", default_value_t = 15)]
    pub metrics_refresh: u64,
}

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Address the gateway listens on.
    #[arg(long, env = "SLUICE_GATEWAY_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,

    /// Upstream base URL the gateway forwards to (http://host:port).
    #[arg(long, env = "SLUICE_GATEWAY_UPSTREAM")]
    pub upstream: String,

    /// Control plane base URL (`sluice serve`), e.g. http://127.0.0.1:8080.
    #[arg(long, env = "SLUICE_CONTROL_PLANE")]
    pub control_plane: String,

    /// Token with the gateway role (`sluice token create --role gateway NAME`).
    #[arg(long, env = "SLUICE_GATEWAY_TOKEN", hide_env_values = true)]
    pub token: SecretString,

    /// This gateway's id (reported to POST /v1/gateways/{id}/status, `source` of its logs).
    #[arg(long, env = "SLUICE_GATEWAY_ID")]
    pub gateway_id: String,

    /// Gateway group for staged rollouts (policy published with --group).
    #[arg(long, env = "SLUICE_GATEWAY_GROUP")]
    pub group: Option<String>,

    /// Where the last good policy is kept (loaded at start, enforced while the control plane is
    /// unreachable).
    #[arg(long, env = "SLUICE_GATEWAY_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Also send X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset.
    #[arg(long, env = "SLUICE_GATEWAY_LEGACY_HEADERS")]
    pub legacy_headers: bool,

    /// What to enforce while no policy was ever received: allow, deny (503), or a limit per
    /// client IP such as 100/60s.
    #[arg(long, env = "SLUICE_GATEWAY_FALLBACK", default_value = "allow")]
    pub fallback: String,

    /// Take the client address from X-Forwarded-For (only behind a trusted proxy).
    #[arg(long, env = "SLUICE_GATEWAY_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,

    /// Do not ship access logs to the control plane.
    #[arg(long, env = "SLUICE_GATEWAY_NO_LOGS")]
    pub no_logs: bool,
}

const SUGGESTIONS_AFTER_HELP: &str = "\
The tuning step suggests limits; an administrator decides each one. Times given to --until are
RFC 3339 in log time (the time of the logs). Decisions are recorded with the CLI user as actor
(cli:$USER) in the suggestion and the audit log.

Examples:
    sluice suggestions list --state pending
    sluice suggestions show 42
    sluice suggestions approve 42 --shadow --comment \"shadow first\"
    sluice suggestions approve 43 --until 2026-03-02T18:00:00Z      # a temporary limit
    sluice suggestions reject 44 --comment \"partner integration\"
    sluice suggestions modify 45 --comment \"more headroom\" \\
        --limit '{\"algorithm\":\"token_bucket\",\"rate\":120,\"window_seconds\":60,\"burst\":20}'";

#[derive(Debug, Subcommand)]
#[command(after_help = SUGGESTIONS_AFTER_HELP)]
pub enum SuggestionsCommand {
    /// List suggestions, newest first.
    List {
        /// pending, approved, rejected, modified_approved or expired.
        #[arg(long)]
        state: Option<String>,
        /// Only this client's suggestions.
        #[arg(long)]
        client: Option<String>,
        /// Only suggestions for abusive clients.
        #[arg(long)]
        abusive: bool,
        /// At most this many (1 to 500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON (one page: items and next_before_id) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print one suggestion with its evidence and decision (JSON).
    Show { id: i64 },
    /// Approve: publish the suggested rule as a new policy version.
    Approve {
        id: i64,
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        how: DecisionArgs,
    },
    /// Reject; publishes nothing.
    Reject {
        id: i64,
        /// Why (required).
        #[arg(long)]
        comment: String,
    },
    /// Approve a different limit (--limit JSON) or a whole rule (--rule FILE, same rule id).
    Modify {
        id: i64,
        /// Why (required).
        #[arg(long)]
        comment: String,
        /// A limit as JSON that replaces the suggested rule's limit.
        #[arg(long, conflicts_with = "rule", required_unless_present = "rule")]
        limit: Option<String>,
        /// A file with a whole rule as JSON (`-` for stdin).
        #[arg(long)]
        rule: Option<PathBuf>,
        #[command(flatten)]
        how: DecisionArgs,
    },
}

/// How an approved limit goes into force.
#[derive(Debug, Args)]
pub struct DecisionArgs {
    /// Publish in shadow mode (evaluated and reported, never rejecting).
    #[arg(long, conflicts_with = "enforce")]
    pub shadow: bool,
    /// Publish enforcing, even if the suggestion was in shadow mode.
    #[arg(long)]
    pub enforce: bool,
    /// Make the limit temporary: it reverts at this RFC 3339 instant (log time).
    #[arg(long)]
    pub until: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AutoApprovalCommand {
    /// Print the rules in force (JSON; the defaults, everything off, until set).
    Show,
    /// Replace the rules with FILE (JSON `{loosen, tighten_abusive, enforce}`; fields left out
    /// take their defaults, see docs/tuning.md).
    Set {
        /// The configuration file (`-` for stdin).
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only entries by this actor (e.g. `token:alice`, `cli:root`).
    #[arg(long)]
    pub actor: Option<String>,
    /// Only this action (`suggestion.approve`) or prefix (`suggestion.*`).
    #[arg(long)]
    pub action: Option<String>,
    /// Only entries at or after this RFC 3339 instant.
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many (1 to 500).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
}

const DEMO_AFTER_HELP: &str = "\
The demo ingests a few hours of simulated history (so baselines exist), then plays the live part at
--time-scale (30: one log minute every 2 s) through the gateway: API clients, browsers, batch jobs, a
flash crowd, and one attack of each class. Detection, tuning and auto-approval (shadow first, then
enforce), load forecasts and client profiles run on log time; the gateway enforces what the control
plane publishes. The data lives in a fresh embedded cluster under DATA_DIR/demo-<time> (deleted at
the end unless --keep-data), or in a fresh database on DATABASE_URL's server (kept: drop it when
done).

With --json the last line of stdout is one JSON object: attack_time_to_enforce_s (median over
attacks), attack_admitted_after_enforce_ratio, legit_rejected_ratio, legit_requests,
attack_requests, the per-attack table and the targets.";

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Wall seconds of traffic.
    #[arg(long, default_value_t = 180)]
    pub duration: u64,
    /// Log seconds per wall second.
    #[arg(long, default_value_t = 30.0)]
    pub time_scale: f64,
    /// Print the live summary on stderr and one JSON object as the last line of stdout.
    #[arg(long)]
    pub json: bool,
    /// No auto-approval: suggestions wait for an administrator in the UI.
    #[arg(long)]
    pub manual: bool,
    /// Address of the control plane (API and UI); port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// Seed of the simulation.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Simulated API clients (browsers are as many).
    #[arg(long, default_value_t = 30)]
    pub clients: usize,
    /// Hours of simulated history ingested before the live part.
    #[arg(long, default_value_t = 3.0)]
    pub history_hours: f64,
    /// Log minutes an auto-approved tightening stays in shadow mode before it is enforced.
    #[arg(long, default_value_t = 5.0)]
    pub shadow_minutes: f64,
    /// Keep the demo's data directory (or database) afterwards.
    #[arg(long)]
    pub keep_data: bool,
}
