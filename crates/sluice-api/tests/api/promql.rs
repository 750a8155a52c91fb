//! Metric names in PromQL, and the names `docs/metrics.md` documents: shared by the checks of
//! `dashboards/alerts.yml` (metrics.rs) and of the Grafana dashboards' Prometheus panels
//! (dashboards.rs), so both hold every expression to the same list.

use std::collections::BTreeSet;

/// The `sluice_*` metric names in a PromQL expression.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("sluice_"))
        .map(str::to_owned)
        .collect()
}

/// Every name a query may use according to `docs/metrics.md`: the first column of its table, and
/// for histograms their `_bucket`, `_sum` and `_count` series.
pub fn documented_metrics() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/metrics.md"
    ))
    .expect("docs/metrics.md");
    let mut names = BTreeSet::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | `name` | type | labels | meaning |
        let (Some(name), Some(ty)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        let Some(name) = name.strip_prefix('`').and_then(|n| n.strip_suffix('`')) else {
            continue;
        };
        if !name.starts_with("sluice_") {
            continue;
        }
        if ty.starts_with("histogram") {
            for s in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{s}"));
            }
        }
        names.insert(name.to_owned());
    }
    assert!(names.len() >= 20, "docs/metrics.md lists only {names:?}");
    names
}

/// Ok when the expression uses at least one metric and only documented ones.
pub fn check_documented(expr: &str) -> Result<(), String> {
    let used = metric_names(expr);
    if used.is_empty() {
        return Err(format!("{expr:?} queries no sluice metric"));
    }
    let documented = documented_metrics();
    let missing: Vec<&String> = used.iter().filter(|m| !documented.contains(*m)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{expr:?} uses {missing:?}, not listed in docs/metrics.md"
        ))
    }
}

#[test]
fn metric_names_are_found_in_promql() {
    let got = metric_names(r#"sum(rate(sluice_a_total{status="429"}[5m])) / sluice_b offset 1h"#);
    assert_eq!(got, ["sluice_a_total", "sluice_b"].map(String::from).into());
}

#[test]
fn histogram_series_are_documented_through_their_family() {
    let names = documented_metrics();
    assert!(names.contains("sluice_detection_latency_seconds_bucket"));
    assert!(names.contains("sluice_anomalies_open_high_severity"));
    assert!(check_documented("rate(sluice_ingest_batch_seconds_count[5m])").is_ok());
    let e =
        check_documented("sum(sluice_not_a_metric) + sluice_policy_latest_version").unwrap_err();
    assert!(
        e.ends_with(r#"uses ["sluice_not_a_metric"], not listed in docs/metrics.md"#),
        "{e}"
    );
    assert!(check_documented("up").is_err());
}
