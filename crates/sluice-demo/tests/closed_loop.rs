//! The closed loop end to end, shortened: history, control plane, gateway, upstream and the
//! simulator's traffic for 60 wall seconds. Checks the outcome (the loop closed on at least one
//! attack, legitimate traffic was left alone, the report adds up), not how fast it was: the
//! timed figures are the demo's own report (docs/BENCHMARKS.md).

use std::sync::Arc;
use std::time::Duration;

use sluice_demo::run::{render_report, run, DemoConfig};
use sluice_store::testing::TestDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_demo_closes_the_loop() {
    let db = TestDb::new().await;
    let dir = tempfile_dir();
    let cfg = DemoConfig {
        duration: Duration::from_secs(60),
        clients: 12,
        history_hours: 1.5,
        work_dir: dir.clone(),
        ..DemoConfig::default()
    };
    let report = run(&db.database(), &cfg, Arc::new(|l: &str| eprintln!("{l}")))
        .await
        .expect("the demo runs");
    eprintln!("{}", render_report(&report));
    let s = &report.summary;

    // the report adds up
    assert!(s.legit_requests > 1_000, "{}", s.legit_requests);
    assert!(s.attack_requests > 100, "{}", s.attack_requests);
    assert_eq!(
        s.attacks.iter().map(|a| a.requests).sum::<u64>(),
        s.attack_requests
    );
    let legit: u64 = s.legit_by_label.values().map(|c| c.requests).sum();
    assert_eq!(legit, s.legit_requests);
    assert!(report.requests_sent >= s.legit_requests + s.attack_requests);
    for a in &s.attacks {
        assert_eq!(a.admitted + a.rejected + a.failed, a.requests, "{}", a.id);
        assert!(a.admitted_after_enforce <= a.requests_after_enforce);
    }

    // the loop closed: something was detected, a limit was published and enforced on an attack
    assert!(report.anomalies_detected > 0);
    assert!(report.policy_versions_published > 0);
    assert!(s.attacks_enforced >= 1, "no attack was ever rejected");
    // legitimate traffic was left alone
    assert!(
        s.legit_rejected_ratio <= sluice_demo::score::TARGET_LEGIT_REJECTED,
        "{} of {} legitimate requests rejected",
        s.legit_rejected,
        s.legit_requests
    );
    assert_eq!(s.legit_failed, 0, "legitimate requests failed");
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sluice-demo-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("create the work dir");
    d
}
