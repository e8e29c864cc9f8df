//! A real browser through the whole journey: headless Chromium, driven over the WebDriver
//! protocol by chromedriver. Screenshots of every page land in `target/tmp/screenshots/`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::helpers::free_port;
use crate::web::{link_in, spawn_web};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver on a loopback port and one browser session, both ended on drop.
pub(crate) struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub(crate) async fn start() -> Self {
        let port = free_port();
        // Its own process group, so the browsers it starts can be killed with it.
        let driver = Command::new("chromedriver")
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (install chromium-driver; scripts/install-test-deps does)");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium_binary(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--disable-background-networking", "--disable-component-update",
                    "--no-first-run", "--disable-sync", "--window-size=900,1300",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        }}});
        let mut b = Self {
            driver,
            base,
            session: String::new(),
            http,
            _profile: profile,
        };
        let v = b.call("POST", "/session", Some(caps)).await;
        b.session = v["sessionId"].as_str().expect("a session").to_string();
        b
    }

    pub(crate) async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        match self.try_call(method, path, body).await {
            Ok(v) => v,
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }

    /// One WebDriver command; a WebDriver error (no such element, stale element) is `Err`.
    async fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(body.unwrap_or(json!({})).to_string()),
        };
        let res = tokio::time::timeout(Duration::from_secs(60), req.send())
            .await
            .expect("webdriver answers in time")
            .expect("webdriver reachable");
        let v: Value = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
        if v["value"].get("error").is_some() {
            return Err(v);
        }
        Ok(v.get("value").cloned().unwrap_or(v))
    }

    pub(crate) fn s(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.call("POST", &self.s("/url"), Some(json!({"url": url})))
            .await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                "POST",
                &self.s("/element"),
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("find {css}: {v}"))
            .to_string()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call(
            "POST",
            &self.s(&format!("/element/{id}/value")),
            Some(json!({"text": text})),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.call("POST", &self.s(&format!("/element/{id}/click")), None)
            .await;
    }

    async fn try_text(&self) -> Result<String, Value> {
        let v = self
            .try_call(
                "POST",
                &self.s("/element"),
                Some(json!({"using": "css selector", "value": "body"})),
            )
            .await?;
        let id = v[ELEMENT].as_str().unwrap_or_default().to_string();
        let v = self
            .try_call("GET", &self.s(&format!("/element/{id}/text")), None)
            .await?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// Waits (bounded) until the page shows `needle`: a click that submits a form returns
    /// before the next page has loaded.
    pub(crate) async fn wait_for_text(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = self.try_text().await.unwrap_or_default();
            if text.contains(needle) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the page never showed {needle:?}; it shows: {text}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self, name: &str) {
        let v = self.call("GET", &self.s("/screenshot"), None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        let dir = screenshots();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn chromium_binary() -> &'static str {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .unwrap_or("/usr/bin/chromium")
}

pub(crate) fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_subscribes_confirms_reads_and_leaves_in_a_browser() {
    let w = spawn_web("").await;
    w.run_edition("2025-12-08").await; // so the start page has a sample of papers
    let browser = Browser::start().await;

    browser.goto(&format!("{}/", w.base)).await;
    browser.wait_for_text("Trending papers in your inbox").await;
    browser.screenshot("1-subscribe").await;
    browser.type_into("#email", "reader@example.org").await;
    browser
        .type_into("#keywords", "bottleneck, diffusion")
        .await;
    browser.type_into("#max_items", "3").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Check your inbox").await;
    browser.screenshot("2-check-inbox").await;

    let mail = w.wait_for_mail(1).await;
    browser.goto(&link_in(&mail[0], "/confirm?token=")).await;
    browser.wait_for_text("Confirm your subscription").await;
    browser.screenshot("3-confirm").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("You are subscribed").await;
    browser.screenshot("4-confirmed").await;

    w.pages.serve_fixture("trending-2025-12-09.html");
    w.run_edition("2025-12-09").await;
    let mail = w.wait_for_mail(2).await;
    let digest = mail
        .iter()
        .find(|m| m.header("List-Unsubscribe").is_some())
        .unwrap();
    let html = digest.part("text/html");
    let file = screenshots().join("digest.html");
    std::fs::create_dir_all(screenshots()).unwrap();
    std::fs::write(&file, &html).unwrap();
    browser.goto(&format!("file://{}", file.display())).await;
    browser.wait_for_text("Trending papers").await;
    browser.screenshot("5-digest").await;

    browser.goto(&link_in(digest, "/preferences?token=")).await;
    browser.wait_for_text("Your preferences").await;
    browser.screenshot("6-preferences").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Saved").await;

    browser.goto(&link_in(digest, "/unsubscribe?token=")).await;
    browser.screenshot("7-unsubscribe").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("You are unsubscribed").await;
    browser.screenshot("8-unsubscribed").await;
    assert_eq!(
        w.status_of("reader@example.org"),
        Some(paperboy::domain::Status::Unsubscribed)
    );
    browser.call("DELETE", &browser.s(""), None).await;
    w.stop().await;
}
