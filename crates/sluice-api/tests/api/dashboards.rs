//! The Grafana dashboards in `dashboards/*.json` against a real database: every Postgres panel's
//! SQL, with Grafana's macros and template variables expanded the way Grafana expands them, runs
//! as the read-only role `sluice db grant-readonly` creates, on a migrated database filled with
//! fixture data (logs ingested through the router, detection, forecast, policy, suggestion and
//! alert rows), and must return rows with the columns its panel needs. Every Prometheus panel may
//! only query metrics `docs/metrics.md` documents.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sluice_core::policy::Policy;
use sluice_store::alerts::{AlertKind, Attempt, Raise};
use sluice_store::policy::{self, GatewayReport, Publish};
use sluice_store::roles;
use sqlx::{Column, ConnectOptions, Executor, PgConnection, TypeInfo};

use crate::fixtures::{self, at, Anomaly};
use crate::helpers::{combined_lines, TestApp};
use crate::promql;

/// The dashboards the issue asks for; a new file must be added here (and so gets checked).
const DASHBOARDS: [&str; 4] = [
    "sluice-anomalies.json",
    "sluice-client.json",
    "sluice-forecast.json",
    "sluice-policy-rollout.json",
];

/// What Grafana substitutes: the time range, `$__interval`, and template variable values.
#[derive(Clone, Debug)]
struct Context {
    from: String,
    to: String,
    interval_seconds: u64,
    vars: HashMap<String, String>,
}

impl Context {
    fn new(from: &str, to: &str) -> Context {
        Context {
            from: from.into(),
            to: to.into(),
            interval_seconds: 3600,
            vars: HashMap::new(),
        }
    }
}

/// `'5m'`, `5m`, `1h`, `30s` or `$__interval` in seconds.
fn interval_seconds(arg: &str, ctx: &Context) -> Result<u64, String> {
    let a = arg.trim().trim_matches('\'');
    if a == "$__interval" {
        return Ok(ctx.interval_seconds);
    }
    let (n, unit) = a.split_at(a.len().saturating_sub(1));
    let n: u64 = n.parse().map_err(|_| format!("bad interval {arg:?}"))?;
    match unit {
        "s" => Ok(n),
        "m" => Ok(n * 60),
        "h" => Ok(n * 3600),
        "d" => Ok(n * 86_400),
        _ => Err(format!("bad interval {arg:?}")),
    }
}

/// Split `a, f(b, c), d` at top-level commas.
fn split_args(s: &str) -> Vec<String> {
    let (mut depth, mut cur, mut out) = (0, String::new(), Vec::new());
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur).trim().to_owned());
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur.trim().to_owned());
    out
}

/// Expand Grafana's Postgres macros (as its SQL data source does) and template variables:
/// `$__timeFilter(c)` → `c BETWEEN 'from' AND 'to'`, `$__timeGroup(c, i)` →
/// `floor(extract(epoch from c)/s)*s`, `$__timeGroupAlias` adds `AS "time"`, `$__timeFrom()`,
/// `$__timeTo()`; `${v:sqlstring}` → a quoted literal, `${v}` and `$v` → the raw value.
fn expand(sql: &str, ctx: &Context) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(i) = rest.find("$__") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 3..];
        let name_len = after
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(after.len());
        let name = &after[..name_len];
        let tail = &after[name_len..];
        if name == "interval" {
            out.push_str(&format!("'{}s'", ctx.interval_seconds));
            rest = tail;
            continue;
        }
        let Some(body) = tail.strip_prefix('(') else {
            return Err(format!("macro $__{name} without arguments"));
        };
        let mut depth = 1;
        let close = body
            .char_indices()
            .find(|(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map(|(j, _)| j)
            .ok_or_else(|| format!("unclosed $__{name}("))?;
        let args = split_args(&body[..close]);
        let expanded = match (name, args.as_slice()) {
            ("timeFilter", [col]) => {
                format!("{col} BETWEEN '{}' AND '{}'", ctx.from, ctx.to)
            }
            ("timeFrom", [e]) if e.is_empty() => format!("'{}'", ctx.from),
            ("timeTo", [e]) if e.is_empty() => format!("'{}'", ctx.to),
            ("timeGroup", [col, iv]) | ("timeGroupAlias", [col, iv]) => {
                let s = interval_seconds(iv, ctx)?;
                let alias = if name == "timeGroupAlias" {
                    " AS \"time\""
                } else {
                    ""
                };
                format!("floor(extract(epoch from {col})/{s})*{s}{alias}")
            }
            _ => return Err(format!("unsupported macro $__{name}({})", args.join(", "))),
        };
        out.push_str(&expanded);
        rest = &body[close + 1..];
    }
    out.push_str(rest);
    // Template variables.
    let mut sql = out;
    let mut names: Vec<&String> = ctx.vars.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len())); // $client before $c
    for name in names {
        let v = &ctx.vars[name];
        sql = sql
            .replace(
                &format!("${{{name}:sqlstring}}"),
                &format!("'{}'", v.replace('\'', "''")),
            )
            .replace(&format!("${{{name}}}"), v)
            .replace(&format!("${name}"), v);
    }
    if let Some(i) = sql.find('$') {
        return Err(format!(
            "unexpanded {:?} in {sql}",
            &sql[i..(i + 20).min(sql.len())]
        ));
    }
    Ok(sql)
}

/// The result of one query: column names with their Postgres types, and the row count.
#[derive(Debug)]
struct Ran {
    columns: Vec<(String, String)>,
    rows: usize,
}

async fn run(conn: &mut PgConnection, sql: &str) -> Result<Ran, String> {
    let rows = sqlx::query(sql)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| format!("{e}"))?;
    let described = (&mut *conn)
        .describe(sql)
        .await
        .map_err(|e| e.to_string())?;
    let columns = described
        .columns()
        .iter()
        .map(|c| (c.name().to_owned(), c.type_info().name().to_owned()))
        .collect();
    Ok(Ran {
        columns,
        rows: rows.len(),
    })
}

fn is_number(ty: &str) -> bool {
    matches!(
        ty,
        "INT2" | "INT4" | "INT8" | "FLOAT4" | "FLOAT8" | "NUMERIC"
    )
}

/// What a panel needs from one query's columns, by the target's `format` and the panel type.
fn check_columns(panel_type: &str, format: &str, ran: &Ran) -> Result<(), String> {
    if ran.columns.is_empty() {
        return Err("returns no columns".into());
    }
    if format == "time_series" {
        let Some((_, ty)) = ran.columns.iter().find(|(n, _)| n == "time") else {
            return Err(format!(
                "a time series needs a column named time: {:?}",
                ran.columns
            ));
        };
        if !(ty.starts_with("TIMESTAMP") || is_number(ty)) {
            return Err(format!("its time column is {ty}, not a timestamp or epoch"));
        }
        let values: Vec<_> = ran
            .columns
            .iter()
            .filter(|(n, _)| n != "time" && n != "metric")
            .collect();
        if values.is_empty() || !values.iter().all(|(_, t)| is_number(t)) {
            return Err(format!(
                "a time series needs numeric value columns besides time (and metric): {:?}",
                ran.columns
            ));
        }
    } else if format != "table" {
        return Err(format!("unknown format {format:?}"));
    }
    if matches!(panel_type, "stat" | "gauge" | "bargauge")
        && !ran.columns.iter().any(|(_, t)| is_number(t))
    {
        return Err(format!(
            "a {panel_type} panel needs a numeric column: {:?}",
            ran.columns
        ));
    }
    Ok(())
}

/// The data source type of a target (its own, else its panel's).
fn source_type<'a>(panel: &'a Value, target: &'a Value) -> &'a str {
    target["datasource"]["type"]
        .as_str()
        .or_else(|| panel["datasource"]["type"].as_str())
        .unwrap_or("")
}

const POSTGRES: &str = "grafana-postgresql-datasource";

/// Check one panel: each Postgres target expands, runs, returns rows and the columns the panel
/// needs; each Prometheus target uses documented metrics only; field overrides by name refer to
/// a column some target returns. Returns how many targets were checked.
async fn check_panel(
    conn: &mut PgConnection,
    panel: &Value,
    ctx: &Context,
) -> Result<usize, String> {
    let ptype = panel["type"].as_str().unwrap_or("");
    let targets = panel["targets"].as_array().ok_or("panel without targets")?;
    if targets.is_empty() {
        return Err("panel without targets".into());
    }
    let mut columns: BTreeSet<String> = BTreeSet::new();
    let mut any_sql = false;
    for t in targets {
        let r = t["refId"].as_str().unwrap_or("?");
        match source_type(panel, t) {
            POSTGRES => {
                any_sql = true;
                let raw = t["rawSql"]
                    .as_str()
                    .ok_or(format!("target {r} has no rawSql"))?;
                let format = t["format"].as_str().unwrap_or("time_series");
                let sql = expand(raw, ctx).map_err(|e| format!("target {r}: {e}"))?;
                let ran = run(conn, &sql)
                    .await
                    .map_err(|e| format!("target {r} fails: {e}\n{sql}"))?;
                check_columns(ptype, format, &ran)
                    .map_err(|e| format!("target {r}: {e}\n{sql}"))?;
                if ran.rows == 0 {
                    return Err(format!(
                        "target {r} returns no rows with the fixture data\n{sql}"
                    ));
                }
                columns.extend(ran.columns.into_iter().map(|(n, _)| n));
            }
            "prometheus" => {
                let expr = t["expr"]
                    .as_str()
                    .ok_or(format!("target {r} has no expr"))?;
                promql::check_documented(expr).map_err(|e| format!("target {r}: {e}"))?;
            }
            other => return Err(format!("target {r}: unknown data source type {other:?}")),
        }
    }
    if any_sql {
        let overrides = panel["fieldConfig"]["overrides"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for o in overrides {
            if o["matcher"]["id"] == "byName" {
                let name = o["matcher"]["options"].as_str().unwrap_or("");
                if !columns.contains(name) {
                    return Err(format!(
                        "an override names column {name:?}, not among {columns:?}"
                    ));
                }
            }
        }
    }
    Ok(targets.len())
}

/// Resolve the dashboard's query variables in order (a variable may use earlier ones): run its
/// SQL and take the first value, as Grafana does for a fresh dashboard.
async fn resolve_variables(
    conn: &mut PgConnection,
    dash: &Value,
    base: &Context,
) -> Result<Context, String> {
    let mut ctx = base.clone();
    for v in dash["templating"]["list"]
        .as_array()
        .ok_or("no templating list")?
    {
        let name = v["name"].as_str().ok_or("variable without a name")?;
        match v["type"].as_str() {
            Some("datasource") => {
                let q = v["query"].as_str().unwrap_or("");
                if q != POSTGRES && q != "prometheus" {
                    return Err(format!("data source variable {name} of unknown type {q:?}"));
                }
            }
            Some("query") => {
                let sql = expand(
                    v["query"].as_str().ok_or("query variable without SQL")?,
                    &ctx,
                )
                .map_err(|e| format!("variable {name}: {e}"))?;
                let first: Option<String> = sqlx::query_scalar(&sql)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(|e| format!("variable {name} fails: {e}\n{sql}"))?;
                let first = first.ok_or(format!("variable {name} has no values\n{sql}"))?;
                ctx.vars.insert(name.to_owned(), first);
            }
            other => return Err(format!("variable {name} of unsupported type {other:?}")),
        }
    }
    Ok(ctx)
}

fn load(file: &str) -> Value {
    let path = format!("{}/../../dashboards/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

fn policy_doc(rate: u64) -> Policy {
    Policy::parse(
        format!(
            r#"{{"format":"sluice.policy/v1","rules":[
            {{"id":"per-key","selector":{{"api_key":"*"}},"limit":{{"algorithm":"token_bucket","rate":{rate},"window_seconds":60,"burst":10}}}}]}}"#
        )
        .as_bytes(),
    )
    .unwrap()
}

/// The client the drill-down's variable picks first (most requests, then by name).
const CLIENT: &str = "203.0.113.0";
/// The minute the ingested combined lines fall in.
fn log_minute() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2015-05-17T10:05:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// Everything the panels read, written the way Sluice writes it where a public function does
/// (ingest through the router, policy publishes and gateway reports, alert notifications), and
/// with SQL where only a background loop would (detection, forecasts, tuning).
async fn fill(app: &TestApp) {
    // 300 lines: 203.0.113.0..49 send two requests each, the others one.
    let r = app
        .post_logs(&app.gateway, combined_lines(300))
        .await
        .ingested();
    assert_eq!(r.accepted, 300);

    Anomaly::new("ip", CLIENT, 10).insert(app).await;
    let mut high = Anomaly::new("ip", "198.51.100.9", 20);
    high.score = 0.93;
    let high_id = high.insert(app).await;
    Anomaly::new("ip", "198.51.100.10", 30)
        .campaign(
            "net=198.51.100.0/24 route=/login",
            &[("ip", "198.51.100.10"), ("ip", CLIENT)],
        )
        .insert(app)
        .await;
    fixtures::minutes(app, "ip", CLIENT, 0, 30).await;
    fixtures::profile(app, "ip", CLIENT, 30).await;
    sqlx::query(
        "INSERT INTO reputation_events (client, at, delta, score_after, kind, reason)
         VALUES ($1, $2, -0.2, 0.6, 'anomaly', '{}'), ($1, $3, 0.05, 0.65, 'recovery', '{}')",
    )
    .bind(CLIENT)
    .bind(at(12))
    .bind(at(40))
    .execute(&app.db.pool)
    .await
    .unwrap();

    // Forecasts for the total (route *) and the one route, around the logged minute.
    let m = log_minute();
    for route in ["*", "/items/{id}"] {
        sqlx::query(
            "INSERT INTO forecast_models (route, fitted_at, history_from, season_minutes,
                 horizon_minutes, model, backtest_origins, mase, smape, seasonal_naive_mase,
                 candidates, cleaned_points, zero_minutes, excluded_requests, fit_ms)
             VALUES ($1, $2, $2 - interval '7 days', 1440, 60, 'ets', 4, 0.8, 0.2, 1.0, '[]',
                     0, 0, 0, 12.5)",
        )
        .bind(route)
        .bind(m)
        .execute(&app.db.pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO forecast_points (route, minute, fitted_at, forecast, lower, upper)
             SELECT $1, g, $2, 280, 200, 360
               FROM generate_series($2 - interval '2 minutes', $2 + interval '2 minutes', interval '1 minute') g",
        )
        .bind(route)
        .bind(m)
        .execute(&app.db.pool)
        .await
        .unwrap();
    }
    for sql in [
        "INSERT INTO route_capacity (route, capacity_rps, source, computed_at)
         VALUES ('/items/{id}', 50, 'learned', now())",
        "INSERT INTO capacity_factors (route, minute, factor, utilisation, planned_rps, capacity_rps)
         VALUES ('/items/{id}', '2015-05-17T10:05:00Z', 0.9, 0.95, 47.5, 50)",
    ] {
        sqlx::query(sql).execute(&app.db.pool).await.unwrap();
    }

    // Two versions, a gateway one behind, suggestions pending and decided.
    let publish = Publish {
        actor: "test",
        comment: Some("fixture"),
        group: None,
    };
    let v1 = policy::publish(&app.db.pool, &policy_doc(100), &publish)
        .await
        .unwrap();
    policy::publish(&app.db.pool, &policy_doc(120), &publish)
        .await
        .unwrap();
    policy::report_gateway(
        &app.db.pool,
        "edge-7",
        &GatewayReport {
            group: None,
            applied_version: Some(v1.version),
            error: None,
        },
    )
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO limit_suggestions (rule_id, client, state, rule, diff, confidence, evidence,
                                        created_at, expires_at, created_wall, decided_by,
                                        decided_wall)
         VALUES ('client:' || $1, $1, 'pending', '{\"limit\": {\"rate\": 40}}', '{}', 0.9, '{}',
                 $2, $2 + interval '1 day', now() - interval '2 hours', NULL, NULL),
                ('client:198.51.100.9', '198.51.100.9', 'approved', '{}', '{}', 0.95, '{}',
                 $2, $2 + interval '1 day', now() - interval '3 hours', 'token:root', now())",
    )
    .bind(CLIENT)
    .bind(at(30))
    .execute(&app.db.pool)
    .await
    .unwrap();

    // An alert notification, delivered, as the alerter records it.
    let mut raise = Raise::begin(&app.db.pool).await.unwrap();
    let id = raise
        .record(
            AlertKind::AnomalyHighSeverity,
            &[format!("anomaly:{high_id}")],
            &json!({"text": "[critical] Sluice: high-severity scraping anomaly opened", "count": 1}),
            &["http://127.0.0.1:9/#abcdef".to_owned()],
        )
        .await
        .unwrap();
    raise.commit().await.unwrap();
    sluice_store::alerts::record_attempt(
        &app.db.pool,
        id,
        "http://127.0.0.1:9/#abcdef",
        &Attempt::Delivered,
    )
    .await
    .unwrap();
}

/// A connection as the read-only role, created by the same code as `sluice db grant-readonly`.
async fn readonly(app: &TestApp) -> PgConnection {
    let role = app.db.readonly_role_name();
    roles::grant_readonly(&app.db.pool, &role, Some("grafana-test"))
        .await
        .unwrap();
    app.db
        .options
        .clone()
        .username(&role)
        .password("grafana-test")
        .connect()
        .await
        .expect("connect as the read-only role")
}

/// The whole range of the fixtures: the 2015 log lines, the 2026 detection rows and the wall
/// clock rows written now.
fn range() -> Context {
    let to = (Utc::now() + chrono::TimeDelta::days(1))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    Context::new("2015-01-01T00:00:00Z", &to)
}

#[tokio::test]
async fn every_dashboard_panel_runs_as_the_readonly_role_and_returns_the_columns_it_needs() {
    let app = TestApp::new().await;
    fill(&app).await;
    let mut ro = readonly(&app).await;

    let on_disk: BTreeSet<String> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../dashboards"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
    assert_eq!(on_disk, DASHBOARDS.iter().map(|s| s.to_string()).collect());

    let (mut sql_targets, mut prom_targets) = (0, 0);
    let mut uids = BTreeSet::new();
    for file in DASHBOARDS {
        let dash = load(file);
        assert!(
            dash["schemaVersion"].as_u64().unwrap_or(0) >= 39,
            "{file}: schemaVersion below 39"
        );
        assert!(
            uids.insert(dash["uid"].as_str().unwrap().to_owned()),
            "{file}: duplicate uid"
        );
        let ctx = resolve_variables(&mut ro, &dash, &range())
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        if file == "sluice-client.json" {
            assert_eq!(
                ctx.vars["client"], CLIENT,
                "the client variable's first value"
            );
        }
        let mut ids = BTreeSet::new();
        for panel in dash["panels"].as_array().unwrap() {
            let title = panel["title"].as_str().unwrap_or("?");
            assert!(
                ids.insert(panel["id"].as_u64().unwrap()),
                "{file}: duplicate panel id"
            );
            check_panel(&mut ro, panel, &ctx)
                .await
                .unwrap_or_else(|e| panic!("{file}, panel {title:?}: {e}"));
            for t in panel["targets"].as_array().unwrap() {
                match source_type(panel, t) {
                    POSTGRES => sql_targets += 1,
                    _ => prom_targets += 1,
                }
            }
        }
    }
    assert!(sql_targets >= 25, "only {sql_targets} SQL targets");
    assert!(prom_targets >= 10, "only {prom_targets} Prometheus targets");
}

/// The checker itself fails on the mistakes it exists to catch.
#[tokio::test]
async fn panels_reading_token_hashes_missing_columns_or_undocumented_metrics_fail() {
    let app = TestApp::new().await;
    fill(&app).await;
    let mut ro = readonly(&app).await;
    let ctx = range();
    let panel =
        |ptype: &str, target: Value| json!({"type": ptype, "title": "t", "targets": [target]});
    let sql = |raw: &str, format: &str| json!({"refId": "A", "datasource": {"type": POSTGRES, "uid": "${postgres}"}, "format": format, "rawSql": raw});
    let cases = [
        (
            panel("table", sql("SELECT name, token_hash FROM api_tokens", "table")),
            "permission denied",
        ),
        (
            panel("timeseries", sql("SELECT minute AS \"time\", no_such_column FROM rollup_client_minute WHERE $__timeFilter(minute)", "time_series")),
            "no_such_column",
        ),
        (
            panel("timeseries", sql("SELECT minute, requests FROM rollup_client_minute WHERE $__timeFilter(minute)", "time_series")),
            "needs a column named time",
        ),
        (
            panel("timeseries", sql("SELECT minute AS \"time\", client FROM rollup_client_minute WHERE $__timeFilter(minute)", "time_series")),
            "numeric value columns",
        ),
        (
            panel("table", sql("SELECT id FROM anomalies WHERE client = ${nobody:sqlstring}", "table")),
            "unexpanded",
        ),
        (
            panel("table", sql("SELECT id FROM anomalies WHERE kind = 'no such kind'", "table")),
            "no rows",
        ),
        (
            panel("table", sql("DELETE FROM anomalies RETURNING id", "table")),
            "read-only transaction",
        ),
        (
            panel("timeseries", json!({"refId": "A", "datasource": {"type": "prometheus"}, "expr": "rate(sluice_made_up_total[5m])"})),
            "sluice_made_up_total",
        ),
    ];
    for (p, expect) in cases {
        let e = check_panel(&mut ro, &p, &ctx).await.unwrap_err();
        assert!(e.contains(expect), "expected {expect:?} in: {e}");
    }
    // An override naming a column no query returns.
    let mut p = panel("table", sql("SELECT id, score FROM anomalies", "table"));
    p["fieldConfig"] =
        json!({"overrides": [{"matcher": {"id": "byName", "options": "scoer"}, "properties": []}]});
    let e = check_panel(&mut ro, &p, &ctx).await.unwrap_err();
    assert!(e.contains("\"scoer\""), "{e}");
}

#[test]
fn macros_expand_like_grafana() {
    let mut ctx = Context::new("2026-03-02T00:00:00Z", "2026-03-02T06:00:00Z");
    ctx.interval_seconds = 300;
    ctx.vars.insert("client".into(), "o'brien".into());
    ctx.vars.insert("c".into(), "x".into());
    assert_eq!(
        expand(
            "SELECT $__timeGroupAlias(minute, $__interval), sum(requests) FROM t WHERE $__timeFilter(minute) AND client = ${client:sqlstring} AND k = '$c' GROUP BY $__timeGroup(minute, '1h')",
            &ctx
        )
        .unwrap(),
        "SELECT floor(extract(epoch from minute)/300)*300 AS \"time\", sum(requests) FROM t WHERE minute BETWEEN '2026-03-02T00:00:00Z' AND '2026-03-02T06:00:00Z' AND client = 'o''brien' AND k = 'x' GROUP BY floor(extract(epoch from minute)/3600)*3600"
    );
    assert_eq!(
        expand("$__timeFrom() < t AND t < $__timeTo()", &ctx).unwrap(),
        "'2026-03-02T00:00:00Z' < t AND t < '2026-03-02T06:00:00Z'"
    );
    assert!(expand("$__unixEpochFilter(t)", &ctx)
        .unwrap_err()
        .contains("unsupported"));
    assert!(expand("client = $missing", &ctx)
        .unwrap_err()
        .contains("unexpanded"));
}

/// The same checks on a database Sluice filled itself, not fixtures: `SLUICE_DASHBOARD_DB` names
/// one (for example the database `sluice demo --database-url URL` leaves behind, or one
/// `sluice replay` filled). Every SQL target must run as the read-only role and return the columns
/// its panel needs; panels without rows are listed (a quiet deployment has no alerts, say).
#[tokio::test]
#[ignore = "needs SLUICE_DASHBOARD_DB, a database filled by `sluice demo --database-url` or `sluice replay` (dashboards/README.md)"]
async fn every_dashboard_panel_runs_on_a_database_sluice_filled() {
    use std::str::FromStr;
    let url = std::env::var("SLUICE_DASHBOARD_DB")
        .expect("SLUICE_DASHBOARD_DB names the database to check");
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    let role = "sluice_dashboard_check";
    roles::grant_readonly(&pool, role, Some("dashboard-check"))
        .await
        .expect("create the read-only role");
    let mut ro = sqlx::postgres::PgConnectOptions::from_str(&url)
        .unwrap()
        .username(role)
        .password("dashboard-check")
        .connect()
        .await
        .expect("connect as the read-only role");
    let (mut with_rows, mut empty, mut failed) = (0, Vec::new(), Vec::new());
    for file in DASHBOARDS {
        let dash = load(file);
        let ctx = match resolve_variables(&mut ro, &dash, &range()).await {
            Ok(c) => c,
            Err(e) => {
                failed.push(format!("{file}: {e}"));
                continue;
            }
        };
        for panel in dash["panels"].as_array().unwrap() {
            let title = panel["title"].as_str().unwrap_or("?");
            match check_panel(&mut ro, panel, &ctx).await {
                Ok(_) => with_rows += 1,
                Err(e) if e.contains("returns no rows") => empty.push(format!("{file}: {title}")),
                Err(e) => failed.push(format!("{file}, panel {title:?}: {e}")),
            }
        }
    }
    eprintln!(
        "{with_rows} panels with data; {} without rows: {empty:#?}",
        empty.len()
    );
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(with_rows > 0, "no panel has data: is the database filled?");
}
