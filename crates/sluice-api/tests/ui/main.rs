//! Browser tests of the web UI: a real headless Chromium (WebDriver, see `browser.rs`) against
//! the real router on 127.0.0.1 over a real database filled with fixture data. Each page is
//! checked for its charts and their data points, and saved as a screenshot in
//! `$CARGO_TARGET_TMPDIR/ui-screenshots/`.

mod browser;
mod fixtures;

use std::sync::Arc;

use sluice_api::{ApiConfig, AppState};
use sluice_core::Role;
use sluice_engine::ingest::Enrichment;
use sluice_store::testing::TestDb;

use browser::Browser;
use fixtures::ABUSER;

struct App {
    db: TestDb,
    browser: Browser,
    analyst: String,
    admin: String,
    suggestion: i64,
}

async fn app() -> App {
    let db = TestDb::new().await;
    let suggestion = fixtures::seed(&db.pool).await;
    let state = AppState::new(
        db.pool.clone(),
        Arc::new(Enrichment::default()),
        ApiConfig::default(),
    );
    let addr = sluice_api::spawn_test_server(state).await.expect("server");
    let token = |name: &'static str, role| {
        let pool = db.pool.clone();
        async move {
            sluice_store::tokens::create_token(&pool, name, role, "ui test")
                .await
                .expect("token")
                .1
        }
    };
    let analyst = token("alice", Role::Analyst).await;
    let admin = token("root", Role::Admin).await;
    let browser = Browser::start(&format!("http://{addr}")).await;
    App {
        db,
        browser,
        analyst,
        admin,
        suggestion,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_a_token_and_out_again() {
    let app = app().await;
    let b = &app.browser;
    b.client
        .goto(&format!("{}/ui", b.base))
        .await
        .expect("open /ui");
    b.wait_ready("signin").await;
    // A wrong token is refused with a message, and the nav stays hidden.
    b.client
        .find(fantoccini::Locator::Id("token"))
        .await
        .unwrap()
        .send_keys("not-a-token")
        .await
        .unwrap();
    b.click("#signin button[type=submit]").await;
    b.client
        .wait()
        .for_element(fantoccini::Locator::Css("#signin .error"))
        .await
        .expect("an error for a wrong token");
    assert_eq!(
        b.text("#signin .error").await,
        "That token is not valid (unknown or revoked)."
    );
    assert_eq!(
        b.js("return document.getElementById('nav').hidden").await,
        true
    );

    b.sign_in(&app.analyst).await;
    assert_eq!(b.text("#who").await, "alice (analyst)");
    assert_eq!(b.js("return document.body.dataset.role").await, "analyst");
    // The token lives in this tab's sessionStorage only.
    let stored = b
        .js("return JSON.parse(sessionStorage.getItem('sluice.session')).token")
        .await;
    assert_eq!(stored, app.analyst.as_str());
    assert_eq!(b.js("return localStorage.length").await, 0);

    b.click("#signout").await;
    b.wait_ready("signin").await;
    assert_eq!(
        b.js("return sessionStorage.getItem('sluice.session')")
            .await,
        serde_json::Value::Null
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_renders_its_charts_with_data() {
    let app = app().await;
    let b = &app.browser;
    b.sign_in(&app.analyst).await;

    // Overview: traffic vs forecast with its band, 429s, open anomalies; policy and gateways.
    for id in ["chart-traffic", "chart-limited", "chart-anomalies"] {
        let (points, drawn) = b.chart(id).await;
        assert!(drawn && points > 0, "overview {id}: {points} points");
    }
    // 6 h of minutes: actual, forecast, upper and lower for each.
    assert_eq!(
        b.chart("chart-traffic").await.0,
        4 * fixtures::MINUTES as u64
    );
    assert_eq!(b.text("#stat-anomalies .v").await, "2");
    assert_eq!(b.text("#stat-policy .v").await, "v2");
    assert_eq!(b.text("#stat-gateways .v").await, "2 of 3");
    assert_eq!(b.text("#stat-429 .v").await, "4,800"); // 60 minutes × 2 routes × 40
    b.screenshot("overview").await;

    // Anomalies: server-side pages of 1 walk all three.
    b.open("/anomalies?limit=25", "anomalies").await;
    assert_eq!(
        b.count("#anomaly-list table.anomalies tr[data-id]").await,
        3
    );
    b.screenshot("anomalies").await;
    b.open("/anomalies?state=open&kind=scraping", "anomalies")
        .await;
    assert_eq!(b.count("#anomaly-list tr[data-id]").await, 1);

    // Anomaly detail: features observed vs baseline, the client's traffic, the suggestion.
    let id = b
        .js("return document.querySelector('#anomaly-list tr[data-id]').dataset.id")
        .await;
    let id = id.as_str().unwrap_or_default().to_owned();
    b.open(&format!("/anomalies/{id}"), "anomalies").await;
    let (points, drawn) = b.chart("chart-features").await;
    assert!(drawn, "feature chart drawn");
    assert_eq!(points, 6, "three features, observed and baseline each");
    let (points, drawn) = b.chart("chart-client-traffic").await;
    assert!(drawn && points > 0, "client traffic around the anomaly");
    assert!(
        b.text("#suggestion")
            .await
            .contains("token_bucket 60/60s burst 10"),
        "{}",
        b.text("#suggestion").await
    );
    b.screenshot("anomaly").await;

    // Client page: traffic vs baseline, daily rhythm, 429s, reputation, limits in force.
    b.open(&format!("/clients/{ABUSER}"), "clients").await;
    for id in [
        "chart-client-traffic",
        "chart-rhythm",
        "chart-client-limited",
        "chart-reputation",
    ] {
        let (points, drawn) = b.chart(id).await;
        assert!(drawn && points > 0, "client {id}: {points} points");
    }
    let limits = b.text("#limits").await;
    assert!(limits.contains("client-key-abuser"), "{limits}");
    assert!(limits.contains("token_bucket 240/60s burst 20"), "{limits}");
    b.screenshot("client").await;

    // Suggestions: the queue with evidence and backtest; an analyst sees no decision buttons.
    b.open("/suggestions", "suggestions").await;
    assert_eq!(b.count(".suggestion").await, 2);
    let card = b
        .text(&format!(".suggestion[data-id='{}']", app.suggestion))
        .await;
    assert!(card.contains("token_bucket 240/60s burst 20"), "{card}");
    assert!(
        card.contains("14,400"),
        "backtest rejected requests: {card}"
    );
    b.screenshot("suggestions").await;

    // Policy: versions, the diff between them, and the rollout per gateway.
    b.open("/policy", "policy").await;
    assert_eq!(b.count("#versions tr[data-version]").await, 2);
    b.client
        .wait()
        .for_element(fantoccini::Locator::Css("#diff table.diff"))
        .await
        .expect("a diff");
    let diff = b.text("#diff").await;
    assert!(
        diff.contains("v1 → v2: 0 added, 0 removed, 1 changed"),
        "{diff}"
    );
    assert!(
        diff.contains("token_bucket 300/60s burst 20 → token_bucket 240/60s burst 20"),
        "{diff}"
    );
    assert_eq!(b.count("#gateways tr").await, 4);
    assert_eq!(b.count("#gateways .pill.behind").await, 1);
    // Analysts get no rollback buttons.
    assert_eq!(b.count("button.rollback").await, 0);
    b.screenshot("policy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_approves_a_suggestion_and_a_new_policy_version_appears() {
    let app = app().await;
    let b = &app.browser;
    b.sign_in(&app.admin).await;
    b.open("/suggestions", "suggestions").await;
    let card = format!(".suggestion[data-id='{}']", app.suggestion);
    b.client
        .find(fantoccini::Locator::Css(&format!(
            "{card} textarea[name=comment]"
        )))
        .await
        .expect("comment box for admins")
        .send_keys("scraping confirmed; tighten in shadow first")
        .await
        .unwrap();
    b.click(&format!("{card} button.approve")).await;
    b.client
        .wait()
        .for_element(fantoccini::Locator::Css(&format!("{card} .notice")))
        .await
        .expect("the approval is confirmed");
    let notice = b.text(&format!("{card} .notice")).await;
    assert!(notice.contains("policy version 3"), "{notice}");

    let (state, decided_by, version): (String, Option<String>, Option<i64>) = sqlx::query_as(
        "SELECT state, decided_by, policy_version FROM limit_suggestions WHERE id = $1",
    )
    .bind(app.suggestion)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(state, "approved");
    assert_eq!(decided_by.as_deref(), Some("token:root"));
    assert_eq!(version, Some(3));
    let shadow: bool = sqlx::query_scalar(
        "SELECT r->>'shadow' = 'true' FROM policy_versions, jsonb_array_elements(document->'rules') r
         WHERE version = 3 AND r->>'id' = 'client-key-abuser'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert!(shadow, "approved shadow-first");

    b.open("/policy", "policy").await;
    assert_eq!(b.count("#versions tr[data-version]").await, 3);
    assert!(b
        .text("#versions tr[data-version='3']")
        .await
        .contains("current"));
    // Admins may roll back: a button on every version not in force.
    assert_eq!(b.count("button.rollback").await, 2);
    b.screenshot("policy-after-approval").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyst_cannot_approve() {
    let app = app().await;
    let b = &app.browser;
    b.sign_in(&app.analyst).await;
    b.open("/suggestions", "suggestions").await;
    assert_eq!(b.count(".suggestion").await, 2);
    assert_eq!(
        b.count("button.approve, button.reject, button.modify")
            .await,
        0
    );
    assert_eq!(b.count("textarea[name=comment]").await, 0);
    // Forcing the request from the page with the analyst's token: the server refuses it.
    let answer = b
        .client
        .execute_async(
            &format!(
                "const done = arguments[arguments.length - 1];
                 const t = JSON.parse(sessionStorage.getItem('sluice.session')).token;
                 fetch('/v1/suggestions/{}/approve', {{method: 'POST',
                     headers: {{'Authorization': 'Bearer ' + t, 'Content-Type': 'application/json'}},
                     body: JSON.stringify({{comment: 'forced'}})}})
                   .then(async r => done([r.status, (await r.json()).detail]));",
                app.suggestion
            ),
            vec![],
        )
        .await
        .expect("forced POST");
    assert_eq!(answer[0], 403, "{answer}");
    let state: String = sqlx::query_scalar("SELECT state FROM limit_suggestions WHERE id = $1")
        .bind(app.suggestion)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(state, "pending");
}
