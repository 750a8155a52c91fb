//! `POST /v1/logs` and `GET /v1/logs/rejects`: every body shape gateways and shippers send, the
//! answer only after the commit, idempotency, and every client error with its exact detail.

use axum::http::StatusCode;
use serde_json::json;
use sluice_api::ApiConfig;
use sluice_core::Role;

use crate::helpers::{combined, combined_lines, gzip, TestApp};

const BAD_LINE: &str = "this is not an access log line";

fn kong_record(i: usize) -> String {
    format!(
        r#"{{"started_at":{},"client_ip":"83.149.9.{i}","request":{{"method":"GET","uri":"/v1/products/{i}?page=2","url":"https://api.example.com:443/v1/products/{i}?page=2","size":"512","headers":{{"host":"api.example.com","user-agent":"curl/8","x-api-key":"ak_live_{i}"}}}},"upstream_uri":"/v1/products/{i}","response":{{"status":200,"size":2326}},"latencies":{{"request":123,"proxy":100,"kong":23}},"consumer":{{"id":"c-{i}","username":"alice"}},"route":{{"name":"products"}},"service":{{"name":"catalog"}}}}"#,
        1_431_857_103_000u64 + i as u64 * 1000
    )
}

#[tokio::test]
async fn plain_lines_are_committed_before_the_answer() {
    let app = TestApp::new().await;
    // Auto-detection tolerates one unrecognised line in ten.
    let body = format!("{}\n{BAD_LINE}\n\n{}\n", combined_lines(10), combined(19));
    let res = app.post_logs(&app.gateway, body).await;
    let r = res.ingested();
    assert_eq!((r.read, r.accepted, r.rejected), (12, 11, 1));
    assert_eq!((r.duplicate, r.format.as_str()), (false, "nginx"));
    assert_eq!(res.header("content-type"), Some("application/json"));
    // The rows are there as soon as the answer is.
    assert_eq!(app.access_rows().await, 11);
    assert_eq!(
        app.count("SELECT count(*) FROM access_log WHERE source = 'edge-1' AND path LIKE '/items/%' AND query = 'page=2'").await,
        11
    );
    let batch: (i64, String, String, i64, i64, i64) = sqlx::query_as(
        "SELECT id, source, format, lines_read, lines_accepted, lines_rejected FROM ingest_batches",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(
        batch,
        (r.batch_id, "edge-1".into(), "nginx".into(), 12, 11, 1)
    );
    assert_eq!(
        app.count("SELECT sum(requests)::int8 FROM rollup_route_minute")
            .await,
        11
    );
}

#[tokio::test]
async fn a_bad_line_is_listed_with_its_reason_and_does_not_sink_the_batch() {
    let app = TestApp::new().await;
    let body = format!(
        "{}\n{}\n{BAD_LINE}\n{}",
        combined(1),
        combined(2),
        combined(3)
    );
    let r = app
        .post_logs_with("/v1/logs?format=nginx", &app.gateway, &[], body)
        .await
        .ingested();
    assert_eq!((r.read, r.accepted, r.rejected), (4, 3, 1));
    assert_eq!(app.access_rows().await, 3);

    let res = app.get("/v1/logs/rejects", Some(&app.analyst)).await;
    assert_eq!(res.status, StatusCode::OK);
    let page = res.json();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    let item = &items[0];
    assert_eq!(item["batch_id"], r.batch_id);
    assert_eq!(item["line_no"], 3);
    assert_eq!(item["source"], "edge-1");
    assert_eq!(item["raw"], BAD_LINE);
    assert_eq!(item["reason"], REJECT_REASON);
    assert_eq!(page["next_before"], serde_json::Value::Null);
}

/// Why the nginx `combined` parser rejects [`BAD_LINE`].
const REJECT_REASON: &str =
    r#"expected " - " after $remote_addr but found " is not an access log li...""#;

#[tokio::test]
async fn rejects_are_paged_newest_first_and_filtered_by_source() {
    let app = TestApp::new().await;
    let body = format!(
        "{BAD_LINE} 1\n{}\n{BAD_LINE} 2\n{BAD_LINE} 3\n",
        combined(1)
    );
    app.post_logs_with("/v1/logs?format=nginx", &app.gateway, &[], body)
        .await
        .ingested();
    app.post_logs_with(
        "/v1/logs?format=nginx&source=other",
        &app.gateway,
        &[],
        format!("{BAD_LINE} 4"),
    )
    .await
    .ingested();

    let page = app
        .get("/v1/logs/rejects?limit=2&source=edge-1", Some(&app.admin))
        .await
        .json();
    let lines: Vec<i64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["line_no"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, [4, 3]);
    let before = page["next_before"]
        .as_i64()
        .expect("a full page has a cursor");
    let page = app
        .get(
            &format!("/v1/logs/rejects?limit=2&source=edge-1&before={before}"),
            Some(&app.admin),
        )
        .await
        .json();
    let lines: Vec<i64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["line_no"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, [1]);
    assert_eq!(page["next_before"], serde_json::Value::Null);

    let page = app
        .get("/v1/logs/rejects?source=other", Some(&app.admin))
        .await
        .json();
    assert_eq!(page["items"][0]["raw"], format!("{BAD_LINE} 4"));
    assert_eq!(page["items"].as_array().unwrap().len(), 1);

    app.get("/v1/logs/rejects?limit=many", Some(&app.admin))
        .await
        .assert_problem(
            StatusCode::BAD_REQUEST,
            "invalid query string: limit: invalid digit found in string",
        );
}

#[tokio::test]
async fn idempotency_key_is_per_token() {
    let app = TestApp::new().await;
    let body = combined_lines(4);
    let key = [("idempotency-key", "batch-0001")];
    let first = app
        .post_logs_with("/v1/logs", &app.gateway, &key, body.clone())
        .await
        .ingested();
    assert!(!first.duplicate);
    let again = app
        .post_logs_with("/v1/logs", &app.gateway, &key, body.clone())
        .await
        .ingested();
    assert!(again.duplicate);
    assert_eq!(again.batch_id, first.batch_id);
    assert_eq!((again.read, again.accepted, again.rejected), (4, 4, 0));
    assert_eq!(app.access_rows().await, 4);
    assert_eq!(app.count("SELECT count(*) FROM ingest_batches").await, 1);

    // The same key from another gateway names another batch.
    let other = app.token("edge-2", Role::Gateway).await;
    let theirs = app
        .post_logs_with("/v1/logs", &other, &key, body.clone())
        .await
        .ingested();
    assert!(!theirs.duplicate);
    assert_ne!(theirs.batch_id, first.batch_id);
    assert_eq!(app.access_rows().await, 8);

    // Without a key nothing is deduplicated.
    let plain = app.post_logs(&app.gateway, body).await.ingested();
    assert!(!plain.duplicate);
    assert_eq!(app.access_rows().await, 12);
    assert_eq!(app.count("SELECT count(*) FROM ingest_batches").await, 3);
}

#[tokio::test]
async fn gzip_bodies_ingest_like_plain_ones() {
    let app = TestApp::new().await;
    let body = format!("{}\n{BAD_LINE}\n", combined_lines(50));
    for enc in ["gzip", "x-gzip", "GZIP"] {
        let r = app
            .post_logs_with(
                "/v1/logs",
                &app.gateway,
                &[("content-encoding", enc)],
                gzip(body.as_bytes()),
            )
            .await
            .ingested();
        assert_eq!(
            (r.read, r.accepted, r.rejected, r.format.as_str()),
            (51, 50, 1, "nginx"),
            "{enc}"
        );
    }
    // Concatenated gzip members are one body.
    let mut two = gzip(combined(1).as_bytes());
    two.extend(gzip(format!("\n{}", combined(2)).as_bytes()));
    let r = app
        .post_logs_with(
            "/v1/logs",
            &app.gateway,
            &[("content-encoding", "gzip")],
            two,
        )
        .await
        .ingested();
    assert_eq!((r.read, r.accepted), (2, 2));
    assert_eq!(app.access_rows().await, 152);
}

#[tokio::test]
async fn vector_envelopes_as_array_and_ndjson() {
    let app = TestApp::new().await;
    let events: Vec<serde_json::Value> = (0..10)
        .map(|i| json!({"message": combined(i), "host": "edge-7", "timestamp": "2015-05-17T10:05:03.123Z", "source_type": "file"}))
        .collect();
    let array = serde_json::to_string(&events).unwrap();
    let r = app.post_logs(&app.gateway, array).await.ingested();
    assert_eq!(
        (r.read, r.accepted, r.rejected, r.format.as_str()),
        (10, 10, 0, "nginx")
    );

    let mut ndjson: String = events.iter().map(|e| format!("{e}\n")).collect();
    ndjson.push_str(&json!({"message": BAD_LINE, "host": "edge-7"}).to_string());
    let r = app.post_logs(&app.gateway, ndjson).await.ingested();
    assert_eq!(
        (r.read, r.accepted, r.rejected, r.format.as_str()),
        (11, 10, 1, "nginx")
    );
    assert_eq!(app.access_rows().await, 20);
    let page = app.get("/v1/logs/rejects", Some(&app.analyst)).await.json();
    assert_eq!(page["items"][0]["line_no"], 11);
    assert_eq!(page["items"][0]["reason"], REJECT_REASON);
}

#[tokio::test]
async fn fluent_bit_batches() {
    let app = TestApp::new().await;
    let records: Vec<serde_json::Value> = (0..4)
        .map(|i| json!({"date": 1.7e9 + i as f64, "log": format!("{}\n", combined(i))}))
        .collect();
    let body = serde_json::to_string_pretty(&records).unwrap();
    let r = app.post_logs(&app.gateway, body).await.ingested();
    assert_eq!(
        (r.read, r.accepted, r.rejected, r.format.as_str()),
        (4, 4, 0, "nginx")
    );
    assert_eq!(
        app.count("SELECT count(DISTINCT path) FROM access_log")
            .await,
        4
    );
}

#[tokio::test]
async fn kong_batches() {
    let app = TestApp::new().await;
    let body = format!(
        "[{}]",
        (1..=5).map(kong_record).collect::<Vec<_>>().join(",")
    );
    let r = app.post_logs(&app.gateway, body).await.ingested();
    assert_eq!(
        (r.read, r.accepted, r.rejected, r.format.as_str()),
        (5, 5, 0, "kong")
    );
    assert_eq!(
        app.count("SELECT count(*) FROM access_log WHERE api_key LIKE 'ak_live_%' AND consumer LIKE 'c-%' AND host = 'api.example.com'").await,
        5
    );
    // One batch array per line, as Kong's http-log plugin sends them over a connection.
    let body = format!("[{}]\n[{}]\n", kong_record(6), kong_record(7));
    let r = app.post_logs(&app.gateway, body).await.ingested();
    assert_eq!((r.read, r.accepted, r.format.as_str()), (2, 2, "kong"));
}

#[tokio::test]
async fn canonical_ndjson_and_the_source() {
    let app = TestApp::new().await;
    let mut lines: Vec<String> = (0..8)
        .map(|i| format!(r#"{{"ts":"2015-05-17T10:05:0{i}Z","path":"/a/{i}","status":200,"ip":"83.149.9.216","api_key":"k1"}}"#))
        .collect();
    lines
        .push(r#"{"ts":"2015-05-17T10:05:09Z","path":"/b","status":429,"source":"edge-9"}"#.into());
    lines.push(r#"{"ts":"2015-05-17T10:05:09Z","status":200}"#.into());
    let body = lines.join("\n");
    let r = app
        .post_logs_with(
            "/v1/logs",
            &app.gateway,
            &[("x-sluice-source", "from-header")],
            body.clone(),
        )
        .await
        .ingested();
    assert_eq!(
        (r.read, r.accepted, r.rejected, r.format.as_str()),
        (10, 9, 1, "ndjson")
    );
    let sources: Vec<(String, i64)> =
        sqlx::query_as("SELECT source, count(*) FROM access_log WHERE api_key IS NOT DISTINCT FROM $1 GROUP BY 1 ORDER BY 1")
            .bind(None::<String>)
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(sources, [("edge-9".into(), 1)]);
    assert_eq!(
        app.count("SELECT count(*) FROM access_log WHERE source = 'from-header' AND api_key = 'k1' AND ip = '83.149.9.216'").await,
        8
    );
    let page = app.get("/v1/logs/rejects", Some(&app.analyst)).await.json();
    assert_eq!(
        page["items"][0]["reason"],
        r#"missing required field "path""#
    );
    assert_eq!(page["items"][0]["source"], "from-header");

    // ?source= wins over the header.
    app.post_logs_with(
        "/v1/logs?source=from-query",
        &app.gateway,
        &[("x-sluice-source", "from-header")],
        body,
    )
    .await
    .ingested();
    assert_eq!(
        app.count("SELECT count(*) FROM access_log WHERE source = 'from-query'")
            .await,
        8
    );
}

#[tokio::test]
async fn format_and_log_format_can_be_named() {
    let app = TestApp::new().await;
    // Named by header: nginx lines read as NDJSON are all rejected, but counted.
    let r = app
        .post_logs_with(
            "/v1/logs",
            &app.gateway,
            &[("x-sluice-format", "ndjson")],
            combined_lines(3),
        )
        .await
        .ingested();
    assert_eq!(
        (r.read, r.accepted, r.rejected, r.format.as_str()),
        (3, 0, 3, "ndjson")
    );
    // ?format= wins over the header.
    let r = app
        .post_logs_with(
            "/v1/logs?format=nginx",
            &app.gateway,
            &[("x-sluice-format", "ndjson")],
            combined_lines(3),
        )
        .await
        .ingested();
    assert_eq!((r.accepted, r.format.as_str()), (3, "nginx"));
    // A custom nginx log_format, by query and by header.
    let custom = "$remote_addr [$time_local] \"$request\" $status $request_time";
    let line = r#"10.1.2.3 [17/May/2015:10:05:03 +0000] "POST /login HTTP/1.1" 401 0.250"#;
    let uri = format!("/v1/logs?format=nginx&log_format={}", urlencode(custom));
    let r = app
        .post_logs_with(&uri, &app.gateway, &[], line)
        .await
        .ingested();
    assert_eq!((r.read, r.accepted), (1, 1));
    let r = app
        .post_logs_with(
            "/v1/logs",
            &app.gateway,
            &[
                ("x-sluice-format", "nginx"),
                ("x-sluice-log-format", custom),
            ],
            line,
        )
        .await
        .ingested();
    assert_eq!((r.read, r.accepted), (1, 1));
    assert_eq!(
        app.count("SELECT count(*) FROM access_log WHERE status = 401 AND latency_us = 250000 AND method = 'POST'").await,
        2
    );
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn client_errors_say_what_was_wrong() {
    let app = TestApp::with_config(ApiConfig {
        max_body_bytes: 4096,
        max_decompressed_bytes: 8192,
        ..ApiConfig::default()
    })
    .await;
    let gw = app.gateway.as_str();
    /// URI, headers, body, and the expected status and detail.
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, &'a str)>,
        Vec<u8>,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "/v1/logs?format=bogus",
            vec![],
            combined(1).into_bytes(),
            StatusCode::BAD_REQUEST,
            r#"unknown log format "bogus" (expected one of nginx, apache, envoy, envoy-json, kong, ndjson, auto)"#,
        ),
        (
            "/v1/logs",
            vec![("x-sluice-format", "syslog")],
            combined(1).into_bytes(),
            StatusCode::BAD_REQUEST,
            r#"unknown log format "syslog" (expected one of nginx, apache, envoy, envoy-json, kong, ndjson, auto)"#,
        ),
        (
            "/v1/logs?format=kong&log_format=%25h",
            vec![],
            combined(1).into_bytes(),
            StatusCode::BAD_REQUEST,
            "--log-format applies to the nginx, apache and envoy formats, not kong",
        ),
        (
            "/v1/logs",
            vec![],
            b"hello world\nsecond line\n".to_vec(),
            StatusCode::BAD_REQUEST,
            r#"cannot detect the log format: no known format matches the sampled lines (2 match no known format, first: "hello world"); name the format explicitly (--format, or ?format= / X-Sluice-Format over HTTP); the formats are nginx, apache, envoy, envoy-json, kong and ndjson"#,
        ),
        (
            "/v1/logs",
            vec![],
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "request body is empty: send log lines, NDJSON or a JSON array",
        ),
        (
            "/v1/logs",
            vec![],
            b" \n\r\n\t".to_vec(),
            StatusCode::BAD_REQUEST,
            "request body is empty: send log lines, NDJSON or a JSON array",
        ),
        (
            "/v1/logs",
            vec![("content-encoding", "gzip")],
            gzip(b""),
            StatusCode::BAD_REQUEST,
            "request body is empty: send log lines, NDJSON or a JSON array",
        ),
        (
            "/v1/logs",
            vec![],
            b"[]".to_vec(),
            StatusCode::BAD_REQUEST,
            "the input is empty: nothing to detect a format from",
        ),
        (
            "/v1/logs",
            vec![("content-encoding", "gzip")],
            b"this is not gzip".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid gzip body: invalid gzip header",
        ),
        (
            "/v1/logs",
            vec![("content-encoding", "br")],
            combined(1).into_bytes(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            r#"unsupported content encoding "br": send identity or gzip"#,
        ),
        (
            "/v1/logs",
            vec![],
            combined_lines(40).into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body is larger than the limit of 4096 bytes",
        ),
        (
            "/v1/logs",
            vec![("content-encoding", "gzip")],
            gzip(combined_lines(80).as_bytes()),
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body is larger than the limit of 8192 bytes after gzip decompression",
        ),
    ];
    for (uri, headers, body, status, detail) in cases {
        assert!(body.len() <= 4096 || status == StatusCode::PAYLOAD_TOO_LARGE);
        app.post_logs_with(uri, gw, &headers, body)
            .await
            .assert_problem(status, detail);
    }
    // Nothing of it was stored.
    assert_eq!(app.count("SELECT count(*) FROM ingest_batches").await, 0);

    // Just under the limits is fine.
    let fits = combined_lines(40);
    let fits = &fits[..fits[..4096].rfind('\n').unwrap()];
    assert!(app.post_logs(gw, fits.to_owned()).await.ingested().accepted > 0);
}
