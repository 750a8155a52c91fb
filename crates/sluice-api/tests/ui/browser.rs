//! A real headless Chromium driven over WebDriver: the test starts the system's `chromedriver`
//! on a free loopback port (`/usr/bin/chromium` and `/usr/bin/chromedriver`, Debian's
//! `chromium` and `chromium-driver`; `SLUICE_CHROMIUM` / `SLUICE_CHROMEDRIVER` override them)
//! and talks to it with fantoccini. Without them the tests fail and say what to install: CI
//! installs them, so a silent pass would hide a broken UI.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// How long a page may take to finish loading in the test (an upper bound, not an assertion on
/// speed: a loaded 2-core machine is slow).
const PAGE_TIMEOUT: Duration = Duration::from_secs(60);

fn program(var: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.is_file(),
        "the UI browser tests need {} (set {var} to use another path): install Debian's \
         Chromium and its WebDriver with `apt-get install -y chromium chromium-driver` \
         (.ci/run does this)",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The driver process and the browser session; both end on drop.
pub struct Browser {
    pub client: Client,
    driver: Child,
    pub base: String,
    /// Chromium's profile directory, unique to this browser: it names its processes.
    profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // A killed chromedriver leaves its browser running (reparented to init): end every
        // process whose command line names this browser's own profile directory.
        let marker = format!("--user-data-dir={}", self.profile.path().display());
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        let pids: Vec<String> = dir
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    String::from_utf8_lossy(&c)
                        .split('\0')
                        .any(|arg| arg == marker)
                })
            })
            .collect();
        if !pids.is_empty() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(&pids)
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Browser {
    /// Start chromedriver and a headless Chromium session; `base` is the server's URL.
    pub async fn start(base: &str) -> Browser {
        let chromium = program("SLUICE_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = program("SLUICE_CHROMEDRIVER", "/usr/bin/chromedriver");
        let profile = tempfile::tempdir().expect("a profile directory for Chromium");
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {}: {e}", chromedriver.display()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                // --no-sandbox: tests run as root in CI, where Chromium's sandbox refuses to start.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1400,1100", "--force-device-scale-factor=1",
                         format!("--user-data-dir={}", profile.path().display())]
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last_err = String::new();
        // chromedriver needs a moment to listen; a bounded number of tries.
        for _ in 0..100 {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Browser {
                        client,
                        driver,
                        base: base.to_owned(),
                        profile,
                    }
                }
                Err(e) => last_err = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("chromedriver on port {port} gave no browser session: {last_err}");
    }

    /// Open `/ui#{route}` and wait until the page says it is done (`body[data-ready=page]`).
    pub async fn open(&self, route: &str, page: &str) {
        self.client
            .goto(&format!("{}/ui#{route}", self.base))
            .await
            .expect("navigate");
        self.wait_ready(page).await;
    }

    pub async fn wait_ready(&self, page: &str) {
        self.client
            .wait()
            .at_most(PAGE_TIMEOUT)
            .for_element(Locator::Css(&format!("body[data-ready='{page}']")))
            .await
            .unwrap_or_else(|e| panic!("page {page} never finished loading: {e}"));
    }

    /// Sign in through the sign-in page with `token`, and wait for the overview.
    pub async fn sign_in(&self, token: &str) {
        self.client
            .goto(&format!("{}/ui#/overview", self.base))
            .await
            .expect("open /ui");
        self.wait_ready("signin").await;
        self.client
            .find(Locator::Id("token"))
            .await
            .expect("token field")
            .send_keys(token)
            .await
            .expect("type token");
        self.click("#signin button[type=submit]").await;
        self.wait_ready("overview").await;
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    pub async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
            .text()
            .await
            .expect("text")
    }

    pub async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .expect("find_all")
            .len()
    }

    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// The chart with this id: how many data points it drew, and whether it has a canvas or svg.
    pub async fn chart(&self, id: &str) -> (u64, bool) {
        let v = self
            .js(&format!(
                "const el = document.getElementById('{id}');
                 return el ? [Number(el.dataset.points || 0), !!el.querySelector('canvas, svg')] : [0, false];"
            ))
            .await;
        (v[0].as_u64().unwrap_or(0), v[1].as_bool().unwrap_or(false))
    }

    /// Save a PNG of the window to `$CARGO_TARGET_TMPDIR/ui-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        // The whole page, not only the first screen (bounded for very long pages).
        let height = self
            .js("return document.documentElement.scrollHeight;")
            .await
            .as_u64()
            .unwrap_or(1100)
            .clamp(600, 4000);
        let _ = self.client.set_window_size(1400, height as u32 + 120).await;
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}
