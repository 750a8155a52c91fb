//! The analyst read API (`GET /v1/anomalies`, `GET /v1/anomalies/{id}`,
//! `GET /v1/clients/{client}`) over fixture rows: exact shapes, every filter, keyset pages, the
//! campaign membership lookup, the client view, and every 400/404 with its exact detail. The role
//! matrix in `auth.rs` covers who may call them.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::fixtures::{self, minute_json, profile_json, ts, Anomaly};
use crate::helpers::{Response, TestApp};

impl TestApp {
    /// GET as the analyst, asserting 200.
    async fn read(&self, uri: &str) -> Value {
        let res = self.get(uri, Some(&self.analyst)).await;
        assert_eq!(
            res.status,
            StatusCode::OK,
            "{uri}: {}",
            String::from_utf8_lossy(&res.body)
        );
        assert_eq!(
            res.header("content-type"),
            Some("application/json"),
            "{uri}"
        );
        res.json()
    }

    async fn read_err(&self, uri: &str) -> Response {
        self.get(uri, Some(&self.analyst)).await
    }
}

fn ids(page: &Value) -> Vec<i64> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {page}"))
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect()
}

/// Eight anomalies (ids 1..=8) covering every state, several kinds and client kinds, two
/// campaigns and a tie on `first_detected` (ids 7 and 8).
async fn eight_anomalies(app: &TestApp) {
    let net = "net=10.0.0.0/24 route=/login";
    let ua = "ua=curl/8 route=/v1/items";
    let fixtures = [
        Anomaly::new("api_key", "ak_1", 100),
        Anomaly::new("api_key", "ak_2", 200)
            .kind("probing")
            .state("resolved"),
        Anomaly::new("ip", "10.0.0.9", 300).kind("flood").campaign(
            net,
            &[("ip", "10.0.0.7"), ("ip", "10.0.0.8"), ("ip", "10.0.0.9")],
        ),
        Anomaly::new("consumer", "alice", 400).kind("enumeration"),
        Anomaly::new("user", "alice", 500)
            .kind("credential_stuffing")
            .state("resolved"),
        Anomaly::new("ip", "10.0.0.7", 600)
            .kind("rate_spike")
            .state("resolved"),
        Anomaly::new("api_key", "ak_3", 700)
            .kind("compromised_key")
            .campaign(ua, &[("api_key", "ak_3"), ("api_key", "ak_1")]),
        Anomaly::new("api_key", "ak_1", 700)
            .kind("unusual")
            .state("resolved"),
    ];
    for (i, f) in fixtures.iter().enumerate() {
        assert_eq!(f.insert(app).await, i as i64 + 1);
    }
}

#[tokio::test]
async fn anomalies_are_listed_newest_first_with_their_explanation() {
    let app = TestApp::new().await;
    assert_eq!(
        app.read("/v1/anomalies").await,
        json!({"items": [], "next_cursor": null})
    );
    eight_anomalies(&app).await;
    let page = app.read("/v1/anomalies").await;
    // first_detected DESC, then id DESC on the tie at minute 700.
    assert_eq!(ids(&page), [8, 7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(
        page["items"][5],
        json!({
            "id": 3,
            "client": "10.0.0.9",
            "client_kind": "ip",
            "kind": "flood",
            "score": 0.75,
            "first_detected": "2026-03-02T05:00:00Z",
            "last_flagged": "2026-03-02T05:05:00Z",
            "state": "open",
            "reasons": [{"feature": "distinct_routes", "observed": 310.0, "expected": 4.0}],
            "campaign": "net=10.0.0.0/24 route=/login",
            "member_count": 3,
        })
    );
    assert_eq!(
        page["items"][7],
        json!({
            "id": 1,
            "client": "ak_1",
            "client_kind": "api_key",
            "kind": "scraping",
            "score": 0.75,
            "first_detected": "2026-03-02T01:40:00Z",
            "last_flagged": "2026-03-02T01:45:00Z",
            "state": "open",
            "reasons": [{"feature": "distinct_routes", "observed": 310.0, "expected": 4.0}],
            "campaign": null,
            "member_count": 0,
        })
    );
}

#[tokio::test]
async fn each_filter_selects_exactly_its_anomalies() {
    let app = TestApp::new().await;
    eight_anomalies(&app).await;
    let cases: &[(&str, &[i64])] = &[
        ("", &[8, 7, 6, 5, 4, 3, 2, 1]),
        ("state=open", &[7, 4, 3, 1]),
        ("state=resolved", &[8, 6, 5, 2]),
        ("kind=scraping", &[1]),
        ("kind=flood", &[3]),
        ("kind=credential_stuffing", &[5]),
        // The anomaly's client, or a member of a campaign (7 names ak_1 as a member).
        ("client=ak_1", &[8, 7, 1]),
        // 6 names 10.0.0.7 as its client, 3 as a campaign member.
        ("client=10.0.0.7", &[6, 3]),
        ("client=10.0.0.8", &[3]),
        ("client=nobody", &[]),
        ("client=alice", &[5, 4]),
        ("client=alice&client_kind=user", &[5]),
        ("client=alice&client_kind=consumer", &[4]),
        ("client=ak_1&client_kind=ip", &[]),
        // Alone, client_kind is the kind of the anomaly's client.
        ("client_kind=ip", &[6, 3]),
        ("client_kind=api_key", &[8, 7, 2, 1]),
        ("client_kind=user", &[5]),
        // since is inclusive, until exclusive.
        ("since=2026-03-02T06:40:00Z", &[8, 7, 6, 5, 4]),
        ("until=2026-03-02T06:40:00Z", &[3, 2, 1]),
        (
            "since=2026-03-02T03:20:00Z&until=2026-03-02T10:00:00Z",
            &[5, 4, 3, 2],
        ),
        // Any offset is accepted (here +05:00, percent-encoded) and compared in UTC.
        ("since=2026-03-02T08:20:00%2B05:00", &[8, 7, 6, 5, 4, 3, 2]),
        ("state=open&client=ak_1", &[7, 1]),
        ("kind=unusual&state=resolved&client_kind=api_key", &[8]),
        ("state=resolved&kind=scraping", &[]),
    ];
    for (query, want) in cases {
        let page = app.read(&format!("/v1/anomalies?{query}")).await;
        assert_eq!(ids(&page), *want, "?{query}");
        assert_eq!(page["next_cursor"], Value::Null, "?{query}");
    }
}

/// Follow `next_cursor` from `first` until it is null; returns the ids and the page sizes.
async fn walk(app: &TestApp, first: &str) -> (Vec<i64>, Vec<usize>) {
    let (mut all, mut sizes) = (Vec::new(), Vec::new());
    let mut uri = first.to_owned();
    loop {
        let page = app.read(&uri).await;
        let got = ids(&page);
        sizes.push(got.len());
        all.extend(got);
        match page["next_cursor"].as_str() {
            Some(c) => uri = format!("{first}&cursor={c}"),
            None => return (all, sizes),
        }
        assert!(sizes.len() < 100, "runaway pagination");
    }
}

#[tokio::test]
async fn pages_follow_the_cursor_without_duplicates_or_gaps() {
    let app = TestApp::new().await;
    // 23 anomalies, first_detected in groups of three equal times, so pages split ties.
    let mut expected: Vec<(i64, i64)> = Vec::new();
    for i in 0..23i64 {
        let state = if i % 2 == 0 { "open" } else { "resolved" };
        let minute = (i / 3) * 10;
        let id = Anomaly::new("api_key", &format!("ak_{i}"), minute)
            .state(state)
            .insert(&app)
            .await;
        expected.push((minute, id));
    }
    expected.sort_by(|a, b| b.cmp(a));
    let expected: Vec<i64> = expected.into_iter().map(|(_, id)| id).collect();

    let (all, sizes) = walk(&app, "/v1/anomalies?limit=5").await;
    assert_eq!(sizes, [5, 5, 5, 5, 3]);
    assert_eq!(all, expected);

    // A last page that is exactly full has no next cursor: 12 open anomalies in pages of 4.
    let (open, sizes) = walk(&app, "/v1/anomalies?state=open&limit=4").await;
    assert_eq!(sizes, [4, 4, 4]);
    let open_expected: Vec<i64> = expected.iter().copied().filter(|id| id % 2 == 1).collect();
    assert_eq!(open, open_expected);

    // The default page holds 50, the largest 500.
    assert_eq!(ids(&app.read("/v1/anomalies").await).len(), 23);
    assert_eq!(ids(&app.read("/v1/anomalies?limit=500").await).len(), 23);

    // Anomalies detected while a reader pages do not shift its later pages.
    let page1 = app.read("/v1/anomalies?limit=10").await;
    assert_eq!(ids(&page1), expected[..10]);
    let newest = Anomaly::new("api_key", "ak_new", 10_000).insert(&app).await;
    let cursor = page1["next_cursor"].as_str().unwrap();
    let page2 = app
        .read(&format!("/v1/anomalies?limit=10&cursor={cursor}"))
        .await;
    assert_eq!(ids(&page2), expected[10..20]);
    assert_eq!(ids(&app.read("/v1/anomalies?limit=1").await), [newest]);
}

#[tokio::test]
async fn bad_query_parameters_answer_400_with_what_was_expected() {
    let app = TestApp::new().await;
    eight_anomalies(&app).await;
    let cursor = app.read("/v1/anomalies?limit=2").await["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    // Edit one character of a real cursor.
    let mut tampered = cursor.clone().into_bytes();
    tampered[5] = if tampered[5] == b'a' { b'b' } else { b'a' };
    let tampered = String::from_utf8(tampered).unwrap();
    let members_cursor = app.read("/v1/anomalies/3?members_limit=1").await["members_next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();

    let bad_cursor = "invalid cursor: pass the cursor of the previous answer unchanged";
    let cases: Vec<(String, String)> = vec![
        ("/v1/anomalies?state=closed".into(), "unknown anomaly state \"closed\" (expected open or resolved)".into()),
        ("/v1/anomalies?state=".into(), "unknown anomaly state \"\" (expected open or resolved)".into()),
        ("/v1/anomalies?kind=ddos".into(), "unknown anomaly kind \"ddos\" (expected one of scraping, credential_stuffing, enumeration, compromised_key, probing, flood, rate_spike, unusual)".into()),
        ("/v1/anomalies?client_kind=key".into(), "unknown client_kind \"key\" (expected one of api_key, consumer, user, ip)".into()),
        ("/v1/anomalies?client=".into(), "client must not be empty".into()),
        ("/v1/anomalies?since=yesterday".into(), "invalid since \"yesterday\": expected an RFC 3339 time such as 2026-03-02T04:10:00Z".into()),
        ("/v1/anomalies?until=2026-03-02".into(), "invalid until \"2026-03-02\": expected an RFC 3339 time such as 2026-03-02T04:10:00Z".into()),
        // An unencoded + arrives as a space.
        ("/v1/anomalies?since=2026-03-02T04:10:00+01:00".into(), "invalid since \"2026-03-02T04:10:00 01:00\": expected an RFC 3339 time such as 2026-03-02T04:10:00Z (write + as %2B in a query string)".into()),
        ("/v1/anomalies?since=2026-03-02T05:00:00Z&until=2026-03-02T05:00:00Z".into(), "since (2026-03-02T05:00:00Z) must be before until (2026-03-02T05:00:00Z)".into()),
        ("/v1/anomalies?limit=0".into(), "limit must be an integer from 1 to 500, got \"0\"".into()),
        ("/v1/anomalies?limit=501".into(), "limit must be an integer from 1 to 500, got \"501\"".into()),
        ("/v1/anomalies?limit=ten".into(), "limit must be an integer from 1 to 500, got \"ten\"".into()),
        ("/v1/anomalies?limit=-1".into(), "limit must be an integer from 1 to 500, got \"-1\"".into()),
        (format!("/v1/anomalies?cursor={tampered}"), bad_cursor.into()),
        (format!("/v1/anomalies?cursor={}", &cursor[..cursor.len() - 2]), bad_cursor.into()),
        ("/v1/anomalies?cursor=not-a-cursor".into(), bad_cursor.into()),
        (format!("/v1/anomalies?cursor={members_cursor}"), bad_cursor.into()),
        ("/v1/anomalies?stat=open".into(), "invalid query string: stat: unknown field `stat`, expected one of `state`, `kind`, `client`, `client_kind`, `since`, `until`, `limit`, `cursor`".into()),
        ("/v1/anomalies?state=open&state=resolved".into(), "invalid query string: duplicate field `state`".into()),
        ("/v1/anomalies/abc".into(), "invalid anomaly id \"abc\": expected a positive integer".into()),
        ("/v1/anomalies/0".into(), "invalid anomaly id \"0\": expected a positive integer".into()),
        ("/v1/anomalies/99999999999999999999".into(), "invalid anomaly id \"99999999999999999999\": expected a positive integer".into()),
        ("/v1/anomalies/3?members_limit=1001".into(), "members_limit must be an integer from 1 to 1000, got \"1001\"".into()),
        ("/v1/anomalies/3?members_cursor=00".into(), "invalid members_cursor: pass the cursor of the previous answer unchanged".into()),
        (format!("/v1/anomalies/3?members_cursor={cursor}"), "invalid members_cursor: pass the cursor of the previous answer unchanged".into()),
        ("/v1/anomalies/3?limit=5".into(), "invalid query string: limit: unknown field `limit`, expected `members_limit` or `members_cursor`".into()),
        ("/v1/clients/ak_1?kind=key".into(), "unknown kind \"key\" (expected one of api_key, consumer, user, ip)".into()),
        ("/v1/clients/ak_1?until=now".into(), "invalid until \"now\": expected an RFC 3339 time such as 2026-03-02T04:10:00Z".into()),
        ("/v1/clients/ak_1?window_minutes=0".into(), "window_minutes must be an integer from 1 to 10080, got \"0\"".into()),
        ("/v1/clients/ak_1?window_minutes=10081".into(), "window_minutes must be an integer from 1 to 10080, got \"10081\"".into()),
        ("/v1/clients/ak_1?anomalies_limit=501".into(), "anomalies_limit must be an integer from 1 to 500, got \"501\"".into()),
        // Parameters are checked before the client is looked up.
        ("/v1/clients/nobody?window_minutes=x".into(), "window_minutes must be an integer from 1 to 10080, got \"x\"".into()),
    ];
    for (uri, detail) in &cases {
        let res = app.read_err(uri).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{uri}");
        res.assert_problem(StatusCode::BAD_REQUEST, detail);
    }
}

#[tokio::test]
async fn unknown_anomalies_and_clients_are_404() {
    let app = TestApp::new().await;
    eight_anomalies(&app).await;
    for (uri, detail) in [
        ("/v1/anomalies/9", "anomaly 9 not found"),
        ("/v1/anomalies/123456789", "anomaly 123456789 not found"),
        ("/v1/clients/nobody", "client \"nobody\" not found"),
        // Known, but not under this kind.
        (
            "/v1/clients/ak_1?kind=ip",
            "client \"ak_1\" of kind ip not found",
        ),
        (
            "/v1/clients/alice?kind=api_key",
            "client \"alice\" of kind api_key not found",
        ),
    ] {
        app.read_err(uri)
            .await
            .assert_problem(StatusCode::NOT_FOUND, detail);
    }
}

#[tokio::test]
async fn an_anomaly_lists_its_members_in_pages() {
    let app = TestApp::new().await;
    let single = Anomaly::new("api_key", "ak_1", 100).insert(&app).await;
    let members = [
        ("ip", "10.0.0.2"),
        ("user", "bob"),
        ("api_key", "k2"),
        ("ip", "10.0.0.12"),
        ("consumer", "carol"),
        ("api_key", "k10"),
        ("ip", "10.0.0.1"),
    ];
    let campaign = Anomaly::new("ip", "10.0.0.1", 200)
        .kind("credential_stuffing")
        .campaign("net=10.0.0.0/24 route=/login", &members)
        .insert(&app)
        .await;

    assert_eq!(
        app.read(&format!("/v1/anomalies/{single}")).await,
        json!({
            "id": single,
            "client": "ak_1",
            "client_kind": "api_key",
            "kind": "scraping",
            "score": 0.75,
            "first_detected": "2026-03-02T01:40:00Z",
            "last_flagged": "2026-03-02T01:45:00Z",
            "state": "open",
            "reasons": [{"feature": "distinct_routes", "observed": 310.0, "expected": 4.0}],
            "campaign": null,
            "member_count": 0,
            "members": [],
            "members_total": 0,
            "members_next_cursor": null,
        })
    );

    // Members in (client_kind, client) byte order.
    let ordered = json!([
        {"client": "k10", "client_kind": "api_key"},
        {"client": "k2", "client_kind": "api_key"},
        {"client": "carol", "client_kind": "consumer"},
        {"client": "10.0.0.1", "client_kind": "ip"},
        {"client": "10.0.0.12", "client_kind": "ip"},
        {"client": "10.0.0.2", "client_kind": "ip"},
        {"client": "bob", "client_kind": "user"},
    ]);
    let all = app.read(&format!("/v1/anomalies/{campaign}")).await;
    assert_eq!(all["members"], ordered);
    assert_eq!(all["members_total"], 7);
    assert_eq!(all["member_count"], 7);
    assert_eq!(all["members_next_cursor"], Value::Null);
    assert_eq!(all["campaign"], "net=10.0.0.0/24 route=/login");
    assert_eq!(all["kind"], "credential_stuffing");

    let base = format!("/v1/anomalies/{campaign}?members_limit=3");
    let mut uri = base.clone();
    let mut pages = Vec::new();
    loop {
        let page = app.read(&uri).await;
        assert_eq!(page["members_total"], 7, "{uri}");
        assert_eq!(page["id"], campaign);
        pages.push(page["members"].as_array().unwrap().clone());
        match page["members_next_cursor"].as_str() {
            Some(c) => uri = format!("{base}&members_cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    assert_eq!(Value::Array(pages.concat()), ordered);
}

#[tokio::test]
async fn client_view_compares_recent_minutes_with_the_profile() {
    let app = TestApp::new().await;
    // Profile computed up to 09:50; minutes up to 10:00 (the newer of the two is last_seen).
    fixtures::profile(&app, "api_key", "ak_1", 590).await;
    fixtures::minutes(&app, "api_key", "ak_1", 0, 600).await;
    fixtures::minutes(&app, "api_key", "ak_2", 0, 600).await;
    let direct = Anomaly::new("api_key", "ak_1", 100).insert(&app).await;
    let campaign = Anomaly::new("api_key", "ak_9", 300)
        .kind("compromised_key")
        .state("resolved")
        .campaign(
            "ua=curl/8 route=/v1/items",
            &[("api_key", "ak_9"), ("api_key", "ak_1")],
        )
        .insert(&app)
        .await;
    Anomaly::new("api_key", "ak_2", 400).insert(&app).await;
    Anomaly::new("ip", "ak_1", 500).insert(&app).await; // same value, another kind

    // The history holds the list shape: the detail without its members.
    let strip = |mut v: Value| {
        let o = v.as_object_mut().unwrap();
        for k in ["members", "members_total", "members_next_cursor"] {
            o.remove(k).unwrap();
        }
        v
    };
    let direct_json = strip(app.read(&format!("/v1/anomalies/{direct}")).await);
    let campaign_json = strip(app.read(&format!("/v1/anomalies/{campaign}")).await);
    assert_eq!(campaign_json["member_count"], 2);

    let view = app.read("/v1/clients/ak_1?kind=api_key").await;
    let recent: Vec<Value> = (241..=600).map(minute_json).collect();
    assert_eq!(
        view,
        json!({
            "client": "ak_1",
            "client_kind": "api_key",
            "other_kinds": ["ip"],
            "last_seen": "2026-03-02T10:00:00Z",
            "window": {"since": "2026-03-02T04:00:00Z", "until": "2026-03-02T10:00:00Z", "minutes": 360},
            "profile": profile_json(590),
            "recent": recent,
            "anomalies": [campaign_json, direct_json],
            "anomalies_total": 2,
            "anomalies_next_cursor": null,
            "reputation": null,
        })
    );
    // Without ?kind the first kind in api_key, consumer, user, ip order is picked.
    assert_eq!(app.read("/v1/clients/ak_1").await, view);

    // An explicit window: the 30 minutes up to 02:00.
    let view = app
        .read("/v1/clients/ak_1?until=2026-03-02T02:00:00Z&window_minutes=30")
        .await;
    assert_eq!(
        view["window"],
        json!({"since": "2026-03-02T01:30:00Z", "until": "2026-03-02T02:00:00Z", "minutes": 30})
    );
    assert_eq!(
        view["recent"],
        Value::Array((91..=120).map(minute_json).collect())
    );
    assert_eq!(view["last_seen"], "2026-03-02T10:00:00Z");

    // The history is capped; its cursor continues in /v1/anomalies for the same identity.
    let view = app.read("/v1/clients/ak_1?anomalies_limit=1").await;
    assert_eq!(ids(&json!({"items": view["anomalies"]})), [campaign]);
    assert_eq!(view["anomalies_total"], 2);
    let cursor = view["anomalies_next_cursor"].as_str().unwrap();
    let rest = app
        .read(&format!(
            "/v1/anomalies?client=ak_1&client_kind=api_key&cursor={cursor}"
        ))
        .await;
    assert_eq!(ids(&rest), [direct]);
    assert_eq!(rest["next_cursor"], Value::Null);
}

#[tokio::test]
async fn client_view_without_a_profile() {
    let app = TestApp::new().await;
    // Only minute features: last_seen is the newest minute.
    fixtures::minutes(&app, "ip", "10.0.0.5", 0, 30).await;
    assert_eq!(
        app.read("/v1/clients/10.0.0.5").await,
        json!({
            "client": "10.0.0.5",
            "client_kind": "ip",
            "other_kinds": [],
            "last_seen": ts(30),
            "window": {"since": "2026-03-01T18:30:00Z", "until": "2026-03-02T00:30:00Z", "minutes": 360},
            "profile": null,
            "recent": Value::Array((0..=30).map(minute_json).collect()),
            "anomalies": [],
            "anomalies_total": 0,
            "anomalies_next_cursor": null,
            "reputation": null,
        })
    );

    // Known only as a campaign member: no minutes, so no window unless one is asked for.
    let campaign = Anomaly::new("ip", "10.0.0.9", 300)
        .kind("flood")
        .campaign(
            "net=10.0.0.0/24 route=/login",
            &[("ip", "10.0.0.8"), ("ip", "10.0.0.9")],
        )
        .insert(&app)
        .await;
    let view = app.read("/v1/clients/10.0.0.8").await;
    assert_eq!(
        (
            &view["client_kind"],
            &view["last_seen"],
            &view["window"],
            &view["profile"],
            &view["recent"],
            &view["anomalies_total"],
        ),
        (
            &json!("ip"),
            &Value::Null,
            &Value::Null,
            &Value::Null,
            &json!([]),
            &json!(1),
        )
    );
    assert_eq!(ids(&json!({"items": view["anomalies"]})), [campaign]);
    assert_eq!(view["anomalies"][0]["client"], "10.0.0.9");
    assert_eq!(view["anomalies"][0]["member_count"], 2);

    let view = app
        .read("/v1/clients/10.0.0.8?until=2026-03-02T06:00:00Z&window_minutes=60")
        .await;
    assert_eq!(
        view["window"],
        json!({"since": "2026-03-02T05:00:00Z", "until": "2026-03-02T06:00:00Z", "minutes": 60})
    );
    assert_eq!(view["recent"], json!([]));
}

#[tokio::test]
async fn a_value_known_under_several_kinds_picks_the_first_and_names_the_others() {
    let app = TestApp::new().await;
    fixtures::minutes(&app, "user", "alice", 0, 9).await;
    fixtures::profile(&app, "user", "alice", 9).await;
    fixtures::minutes(&app, "consumer", "alice", 0, 4).await;

    let view = app.read("/v1/clients/alice").await;
    assert_eq!(view["client_kind"], "consumer");
    assert_eq!(view["other_kinds"], json!(["user"]));
    assert_eq!(view["profile"], Value::Null);
    assert_eq!(view["last_seen"], ts(4));
    assert_eq!(view["recent"].as_array().unwrap().len(), 5);

    for uri in [
        "/v1/clients/alice?kind=user",
        "/v1/clients/alice?client_kind=user",
    ] {
        let view = app.read(uri).await;
        assert_eq!(view["client_kind"], "user", "{uri}");
        assert_eq!(view["other_kinds"], json!(["consumer"]), "{uri}");
        assert_eq!(view["profile"], profile_json(9), "{uri}");
        assert_eq!(view["recent"].as_array().unwrap().len(), 10, "{uri}");
    }

    // Values are path segments: percent-encoded characters (even '/') are decoded.
    fixtures::minutes(&app, "api_key", "ak/with space", 0, 0).await;
    let view = app.read("/v1/clients/ak%2Fwith%20space").await;
    assert_eq!(
        (&view["client"], &view["client_kind"]),
        (&json!("ak/with space"), &json!("api_key"))
    );
    fixtures::minutes(&app, "ip", "2001:db8::1", 0, 0).await;
    assert_eq!(
        app.read("/v1/clients/2001:db8::1").await["client_kind"],
        "ip"
    );
}
