//! The JSON body of a notification: a top-level `text` that Slack-compatible receivers (Slack,
//! Mattermost, Rocket.Chat, Teams' Slack-compatible connectors) show as the message, and
//! structured fields for generic receivers: `schema`, `kind`, `severity`, `title`, `count` and
//! `items` (one object per thing, the database row as JSON). The store adds `id`.

use std::time::Duration;

use chrono::SecondsFormat;
use serde_json::{json, Value};
use sluice_store::alerts::{AlertKind, DueAnomaly, DueGateway, DueSuggestion};

/// The `schema` field of every body.
pub const SCHEMA: &str = "sluice.alert/v1";

/// Lines of a digest's `text` that name things; the rest are counted.
const TEXT_ITEMS: usize = 5;

fn body(kind: AlertKind, title: &str, lines: &[String], items: Vec<Value>) -> Value {
    let n = lines.len();
    let mut text = format!("[{}] Sluice: {title}", kind.severity());
    if n == 1 {
        text.push_str(": ");
        text.push_str(&lines[0]);
    } else {
        for l in lines.iter().take(TEXT_ITEMS) {
            text.push_str("\n- ");
            text.push_str(l);
        }
        if n > TEXT_ITEMS {
            text.push_str(&format!("\n- and {} more", n - TEXT_ITEMS));
        }
    }
    json!({
        "text": text,
        "schema": SCHEMA,
        "kind": kind.as_str(),
        "severity": kind.severity(),
        "title": title,
        "count": n,
        "items": items,
    })
}

fn rfc3339(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `1h 5m`, `6m 30s`, `45s`.
fn human(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "m"), (s, "s")]
        .iter()
        .filter(|(v, _)| *v > 0)
        .map(|(v, u)| format!("{v}{u}"))
        .take(2)
        .collect();
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.join(" ")
    }
}

fn with_subject(mut item: Value, subject: String) -> Value {
    if let Some(o) = item.as_object_mut() {
        o.insert("subject".into(), Value::String(subject));
    }
    item
}

/// High-severity anomalies opened (detection times are log time).
pub fn anomaly_payload(items: &[DueAnomaly]) -> Value {
    let title = if items.len() == 1 {
        format!("high-severity {} anomaly opened", items[0].kind)
    } else {
        format!("{} high-severity anomalies opened", items.len())
    };
    let lines: Vec<String> = items
        .iter()
        .map(|a| {
            let who = match &a.campaign {
                Some(c) => format!("campaign {c} ({} members)", a.member_count),
                None => format!("client {} ({})", a.client, a.client_kind),
            };
            format!(
                "anomaly {} ({}) {who}, score {:.2}, first detected {} (log time)",
                a.id,
                a.kind,
                a.score,
                rfc3339(&a.first_detected)
            )
        })
        .collect();
    let json_items = items
        .iter()
        .map(|a| with_subject(json!(a), a.subject()))
        .collect();
    body(AlertKind::AnomalyHighSeverity, &title, &lines, json_items)
}

/// Suggestions pending for longer than `wait` (wall clock since they were stored).
pub fn suggestion_payload(items: &[DueSuggestion], wait: Duration) -> Value {
    let title = if items.len() == 1 {
        format!(
            "a limit suggestion has waited for approval over {}",
            human(wait.as_secs_f64())
        )
    } else {
        format!(
            "{} limit suggestions have waited for approval over {}",
            items.len(),
            human(wait.as_secs_f64())
        )
    };
    let lines: Vec<String> = items
        .iter()
        .map(|s| {
            format!(
                "suggestion {} for {} (rule {}{}) pending for {}, since {}",
                s.id,
                s.client.as_deref().unwrap_or("every client"),
                s.rule_id,
                if s.abusive { ", abusive client" } else { "" },
                human(s.waited_seconds),
                rfc3339(&s.created_wall)
            )
        })
        .collect();
    let json_items = items
        .iter()
        .map(|s| with_subject(json!(s), s.subject()))
        .collect();
    body(AlertKind::SuggestionWaiting, &title, &lines, json_items)
}

/// Gateways behind their group's policy version for longer than `lag`.
pub fn gateway_payload(items: &[DueGateway], lag: Duration) -> Value {
    let title = if items.len() == 1 {
        format!(
            "a gateway has been behind the published policy over {}",
            human(lag.as_secs_f64())
        )
    } else {
        format!(
            "{} gateways have been behind the published policy over {}",
            items.len(),
            human(lag.as_secs_f64())
        )
    };
    let lines: Vec<String> = items
        .iter()
        .map(|g| {
            let applied = g
                .applied_version
                .map(|v| format!("v{v}"))
                .unwrap_or_else(|| "none".into());
            let mut l = format!(
                "gateway {} (group {}) applied {applied}, served v{}, behind for {} (last report {} ago)",
                g.gateway,
                g.group,
                g.served_version,
                human(g.behind_seconds),
                human(g.seconds_since_report)
            );
            if let Some(e) = &g.last_error {
                l.push_str(&format!(", last error: {e}"));
            }
            l
        })
        .collect();
    let json_items = items
        .iter()
        .map(|g| with_subject(json!(g), g.subject()))
        .collect();
    body(AlertKind::GatewayBehind, &title, &lines, json_items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn anomaly(id: i64) -> DueAnomaly {
        DueAnomaly {
            id,
            client_kind: "ip".into(),
            client: "203.0.113.7".into(),
            kind: "scraping".into(),
            score: 0.97,
            first_detected: Utc.with_ymd_and_hms(2026, 3, 2, 4, 10, 0).unwrap(),
            last_flagged: Utc.with_ymd_and_hms(2026, 3, 2, 4, 25, 0).unwrap(),
            campaign: None,
            member_count: 0,
        }
    }

    #[test]
    fn one_anomaly_has_slack_text_and_structured_fields() {
        let v = anomaly_payload(&[anomaly(42)]);
        assert_eq!(
            v["text"],
            "[critical] Sluice: high-severity scraping anomaly opened: anomaly 42 (scraping) client 203.0.113.7 (ip), score 0.97, first detected 2026-03-02T04:10:00Z (log time)"
        );
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["kind"], "anomaly_high_severity");
        assert_eq!(v["severity"], "critical");
        assert_eq!(v["count"], 1);
        assert_eq!(v["items"][0]["subject"], "anomaly:42");
        assert_eq!(v["items"][0]["client"], "203.0.113.7");
        assert_eq!(v["items"][0]["first_detected"], "2026-03-02T04:10:00Z");
        assert_eq!(v["items"][0]["score"], 0.97);
    }

    #[test]
    fn a_digest_names_five_and_counts_the_rest() {
        let items: Vec<DueAnomaly> = (1..=8).map(anomaly).collect();
        let v = anomaly_payload(&items);
        let text = v["text"].as_str().unwrap();
        assert!(
            text.starts_with("[critical] Sluice: 8 high-severity anomalies opened\n- anomaly 1 "),
            "{text}"
        );
        assert_eq!(text.lines().count(), 7, "{text}");
        assert!(text.ends_with("\n- and 3 more"), "{text}");
        assert_eq!(v["items"].as_array().unwrap().len(), 8);
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human(3600.0), "1h");
        assert_eq!(human(3900.4), "1h 5m");
        assert_eq!(human(390.0), "6m 30s");
        assert_eq!(human(0.2), "0s");
        assert_eq!(human(90_061.0), "1d 1h");
    }

    #[test]
    fn gateway_lines_name_versions_and_errors() {
        let g = DueGateway {
            gateway: "edge-1".into(),
            group: "default".into(),
            applied_version: Some(3),
            served_version: 5,
            observed_at: Utc.with_ymd_and_hms(2026, 3, 2, 4, 0, 0).unwrap(),
            behind_seconds: 400.0,
            seconds_since_report: 12.0,
            last_error: Some("policy rejected".into()),
        };
        let v = gateway_payload(&[g], Duration::from_secs(300));
        assert_eq!(
            v["text"],
            "[warning] Sluice: a gateway has been behind the published policy over 5m: gateway edge-1 (group default) applied v3, served v5, behind for 6m 40s (last report 12s ago), last error: policy rejected"
        );
        assert_eq!(v["items"][0]["subject"], "gateway:edge-1@3");
    }
}
