//! `GET /metrics`: who may scrape it, that the text is strictly valid Prometheus exposition
//! format, that ingesting and polling the policy through the real router move the counters, and
//! that `dashboards/alerts.yml` queries only metrics the server exports.
//!
//! The recorder is process-wide and other tests in this binary run concurrently: label sets
//! here are unique to these tests (a source name, a gateway id), and process-wide counters are
//! checked to have grown by at least what this test did.

use std::collections::{BTreeSet, HashMap};

use axum::body::Body;
use axum::http::{Method, StatusCode};
use sluice_api::ApiConfig;

use crate::helpers::{combined_lines, request, TestApp};
use crate::policy::doc;
use crate::promql::metric_names;

#[tokio::test]
async fn metrics_need_an_analyst_token_unless_public() {
    let app = TestApp::new().await;
    assert_eq!(
        app.get("/metrics", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let res = app.get("/metrics", Some(&app.gateway)).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    for token in [&app.analyst, &app.admin] {
        let res = app.get("/metrics", Some(token)).await;
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(
            res.header("content-type"),
            Some(sluice_api::metrics::CONTENT_TYPE)
        );
    }

    let public = TestApp::with_config(ApiConfig {
        metrics_public: true,
        ..ApiConfig::default()
    })
    .await;
    let res = public.get("/metrics", None).await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(String::from_utf8(res.body)
        .unwrap()
        .contains("# TYPE sluice_policy_polls_total counter"));
    // The rest of the API still needs a token.
    assert_eq!(
        public.get("/v1/whoami", None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// One scrape: the strict line check, then the samples by name and labels.
struct Scrape {
    text: String,
    samples: Vec<(String, HashMap<String, String>, f64)>,
    /// Every metric family with a `# TYPE` line, with its type.
    types: HashMap<String, String>,
}

impl Scrape {
    async fn take(app: &TestApp) -> Scrape {
        let res = app.get("/metrics", Some(&app.analyst)).await;
        assert_eq!(res.status, StatusCode::OK);
        let text = String::from_utf8(res.body).expect("UTF-8 exposition");
        let (samples, types) = strict_parse(&text);
        // A third-party parser reads the same families (it folds histogram series into one).
        let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .expect("prometheus-parse reads the scrape");
        let fold = |n: &'_ str| -> String {
            let f = family_of(n);
            if types.get(f).map(String::as_str) == Some("histogram") {
                f.to_owned()
            } else {
                n.to_owned()
            }
        };
        let theirs: BTreeSet<String> = parsed.samples.iter().map(|s| fold(&s.metric)).collect();
        let ours: BTreeSet<String> = samples.iter().map(|(n, _, _)| fold(n)).collect();
        assert_eq!(theirs, ours, "prometheus-parse disagrees on:\n{text}");
        Scrape {
            text,
            samples,
            types,
        }
    }

    /// The value of the sample `name` whose labels include `labels`; `None` if there is none.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let hits: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
            .collect();
        assert!(hits.len() <= 1, "{name} {labels:?} matches {hits:?}");
        hits.first().copied()
    }

    #[track_caller]
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in:\n{}", self.text))
    }

    /// Every name a PromQL expression may use: families and their histogram series.
    fn names(&self) -> BTreeSet<String> {
        self.samples.iter().map(|(n, _, _)| n.clone()).collect()
    }
}

fn family_of(sample: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| sample.strip_suffix(s))
        .unwrap_or(sample)
}

fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

/// Parse the text exposition format strictly: every line is a HELP, a TYPE or a sample with a
/// valid name, well-formed quoted labels and a float value; every sample belongs to a family
/// with a TYPE line declared before it; names follow the conventions (sluice_ prefix, counters
/// end in _total, histograms in _seconds).
#[allow(clippy::type_complexity)] // samples and TYPE lines, used by one caller
fn strict_parse(
    text: &str,
) -> (
    Vec<(String, HashMap<String, String>, f64)>,
    HashMap<String, String>,
) {
    let mut types = HashMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(is_name(name), "bad HELP line {line:?}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect("TYPE name type");
            assert!(is_name(name), "bad TYPE line {line:?}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&ty),
                "bad type in {line:?}"
            );
            assert!(
                name.starts_with("sluice_"),
                "{name} lacks the sluice_ prefix"
            );
            match ty {
                "counter" => assert!(name.ends_with("_total"), "counter {name}"),
                "histogram" => assert!(name.ends_with("_seconds"), "histogram {name}"),
                _ => {}
            }
            assert!(
                types.insert(name.to_owned(), ty.to_owned()).is_none(),
                "two TYPE lines for {name}"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line:?}");
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => panic!("no value in {line:?}"),
        };
        assert!(is_name(name), "bad metric name in {line:?}");
        let mut labels = HashMap::new();
        let value = if let Some(body) = rest.strip_prefix('{') {
            let used = parse_labels(body, line, &mut labels);
            body[used..]
                .strip_prefix(' ')
                .expect("space before the value")
        } else {
            rest.strip_prefix(' ').expect("space before the value")
        };
        let value = value.split(' ').next().unwrap();
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value {v:?} in {line:?}")),
        };
        let family = family_of(name);
        let ty = types
            .get(name)
            .or_else(|| types.get(family))
            .unwrap_or_else(|| panic!("sample {name} before its TYPE line"));
        if ty == "histogram" && name.ends_with("_bucket") {
            assert!(labels.contains_key("le"), "bucket without le: {line:?}");
        }
        samples.push((name.to_owned(), labels, v));
    }
    (samples, types)
}

/// Labels `k="v",k2="v2"}` (after the `{`); returns the bytes consumed including `}`.
fn parse_labels(s: &str, line: &str, labels: &mut HashMap<String, String>) -> usize {
    let bytes = s.as_bytes();
    let mut i = 0;
    loop {
        if bytes.get(i) == Some(&b'}') {
            return i + 1;
        }
        let eq = s[i..].find('=').expect("label =") + i;
        let key = &s[i..eq];
        assert!(is_name(key), "bad label name {key:?} in {line:?}");
        assert_eq!(bytes.get(eq + 1), Some(&b'"'), "unquoted label in {line:?}");
        let mut val = String::new();
        i = eq + 2;
        loop {
            match bytes.get(i) {
                Some(b'\\') => {
                    match bytes.get(i + 1) {
                        Some(b'\\') => val.push('\\'),
                        Some(b'"') => val.push('"'),
                        Some(b'n') => val.push('\n'),
                        other => panic!("bad escape {other:?} in {line:?}"),
                    }
                    i += 2;
                }
                Some(b'"') => break,
                Some(_) => {
                    let ch = s[i..].chars().next().unwrap();
                    val.push(ch);
                    i += ch.len_utf8();
                }
                None => panic!("unterminated label value in {line:?}"),
            }
        }
        assert!(labels.insert(key.to_owned(), val).is_none(), "{line:?}");
        i += 1;
        match bytes.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => {}
            other => panic!("expected , or }} after a label, got {other:?} in {line:?}"),
        }
    }
}

async fn send(app: &TestApp, method: Method, uri: &str, token: &str, body: String) -> u16 {
    let req = request(method, uri, Some(token))
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    app.send(req).await.status.as_u16()
}

/// Refresh the database gauges the way the collector task does, then scrape.
async fn collect_and_scrape(app: &TestApp) -> Scrape {
    let mut collector = sluice_api::metrics::Collector::default();
    assert!(
        collector.refresh(&app.db.pool).await,
        "collector read failed"
    );
    Scrape::take(app).await
}

#[tokio::test]
async fn counters_move_after_ingest_and_policy_polls_and_alert_rules_use_exported_names() {
    let app = TestApp::new().await;
    let before = Scrape::take(&app).await;
    let polls_before = before.get("sluice_policy_polls_total", &[]);
    let not_modified_before = before.get("sluice_policy_not_modified_total", &[]);
    let publishes_before = before
        .value("sluice_policy_publishes_total", &[("action", "publish")])
        .unwrap_or(0.0);

    // A batch of 40 good lines, one 429 among them, and one line that does not parse.
    let mut body = combined_lines(40).replacen("\" 200 ", "\" 429 ", 1);
    body.push_str("\nthis is not an access log line\n");
    let r = app
        .post_logs_with(
            "/v1/logs?format=nginx&source=metrics-test-src",
            &app.gateway,
            &[],
            body,
        )
        .await
        .ingested();
    assert_eq!((r.accepted, r.rejected), (40, 1));

    // Publish, poll (200), poll again with the ETag (304), a gateway reports an older version.
    assert_eq!(
        send(
            &app,
            Method::POST,
            "/v1/policy/versions",
            &app.admin,
            doc(100)
        )
        .await,
        201
    );
    assert_eq!(
        send(
            &app,
            Method::POST,
            "/v1/policy/versions",
            &app.admin,
            doc(120)
        )
        .await,
        201
    );
    let res = app.get("/v1/policy", Some(&app.gateway)).await;
    assert_eq!(res.status, StatusCode::OK);
    let etag = res.header("etag").unwrap().to_owned();
    let req = request(Method::GET, "/v1/policy", Some(&app.gateway))
        .header("if-none-match", etag)
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(req).await.status, StatusCode::NOT_MODIFIED);
    assert_eq!(
        send(
            &app,
            Method::POST,
            "/v1/gateways/metrics-gw-1/status",
            &app.gateway,
            r#"{"applied_version": 1}"#.into()
        )
        .await,
        200
    );

    // One open high-severity anomaly and one low one, as the detector writes them.
    for (client, score) in [("198.51.100.7", 0.95_f32), ("198.51.100.8", 0.3)] {
        sqlx::query(
            "INSERT INTO anomalies (client_kind, client, kind, score, first_detected, last_flagged, state, reasons)
             VALUES ('ip', $1, 'metrics_test_kind', $2, now(), now(), 'open', '[]')",
        )
        .bind(client)
        .bind(score)
        .execute(&app.db.pool)
        .await
        .unwrap();
    }

    let after = collect_and_scrape(&app).await;
    let kind = [("kind", "metrics_test_kind")];
    assert_eq!(after.get("sluice_anomalies_open", &kind), 2.0);
    assert_eq!(after.get("sluice_anomalies_open_high_severity", &kind), 1.0);
    let src = [("source", "metrics-test-src"), ("format", "nginx")];
    assert_eq!(after.get("sluice_ingest_lines_accepted_total", &src), 40.0);
    assert_eq!(after.get("sluice_ingest_lines_rejected_total", &src), 1.0);
    let by_status = |s: &str| {
        after.get(
            "sluice_ingested_requests_total",
            &[("source", "metrics-test-src"), ("status", s)],
        )
    };
    assert_eq!(by_status("2xx"), 39.0);
    assert_eq!(by_status("429"), 1.0);
    assert!(after.get("sluice_ingest_batch_seconds_count", &[]) >= 1.0);
    assert!(after.get("sluice_ingest_batches_total", &[("outcome", "committed")]) >= 1.0);
    assert_eq!(after.get("sluice_ingest_queue_capacity", &[]), 64.0);
    assert!(after.value("sluice_ingest_queue_depth", &[]).is_some());
    assert!(after.get("sluice_policy_polls_total", &[]) >= polls_before + 2.0);
    assert!(after.get("sluice_policy_not_modified_total", &[]) >= not_modified_before + 1.0);
    assert!(
        after.get("sluice_policy_publishes_total", &[("action", "publish")])
            >= publishes_before + 2.0
    );
    // Gauges from the database (this test is the only one that runs the collector).
    assert_eq!(after.get("sluice_policy_latest_version", &[]), 2.0);
    assert_eq!(after.get("sluice_policy_version", &[("group", "*")]), 2.0);
    let gw = [("gateway", "metrics-gw-1"), ("group", "default")];
    assert_eq!(after.get("sluice_gateway_applied_version", &gw), 1.0);
    assert_eq!(after.get("sluice_gateway_versions_behind", &gw), 1.0);
    for state in sluice_store::metrics::SUGGESTION_STATES {
        assert_eq!(after.get("sluice_suggestions", &[("state", state)]), 0.0);
    }
    assert_eq!(
        after.get("sluice_suggestion_oldest_pending_seconds", &[]),
        0.0
    );
    assert_eq!(after.types["sluice_ingest_batch_seconds"], "histogram");

    // Every metric an alerting rule queries is exported.
    let rules: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../dashboards/alerts.yml"
        ))
        .expect("dashboards/alerts.yml"),
    )
    .expect("alerts.yml is YAML");
    let exported = after.names();
    let mut checked = 0;
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("alert name");
            let expr = rule["expr"].as_str().expect("expr");
            let used = metric_names(expr);
            assert!(!used.is_empty(), "{name} queries no sluice metric");
            if let Err(e) = crate::promql::check_documented(expr) {
                panic!("alert {name}: {e}");
            }
            for m in used {
                assert!(
                    exported.contains(&m),
                    "{name} queries {m}, which /metrics does not export"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} rules");
}
