//! A real browser through the whole journey: headless Chromium, driven by chromedriver over
//! the WebDriver protocol (the thirtyfour client). Screenshots of every page land in
//! `target/tmp/screenshots/`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use thirtyfour::prelude::*;
use thirtyfour::stringmatch::StringMatch;

use crate::helpers::free_port;
use crate::web::{link_in, spawn_web};

/// chromedriver on a loopback port and one browser session through thirtyfour, both ended
/// on drop.
pub(crate) struct Browser {
    driver: Option<WebDriver>,
    chromedriver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub(crate) async fn start() -> Self {
        let port = free_port();
        // Its own process group, so the browsers it starts can be killed with it.
        let chromedriver = Command::new("chromedriver")
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (install chromium-driver; scripts/install-test-deps does)");
        let base = format!("http://127.0.0.1:{port}");
        let profile = tempfile::tempdir().unwrap();
        let profile_arg = format!("--user-data-dir={}", profile.path().display());
        // Made before the session is asked for, so that a failure from here on still ends
        // chromedriver (on drop).
        let mut browser = Self {
            driver: None,
            chromedriver,
            _profile: profile,
        };
        let mut caps = DesiredCapabilities::chrome();
        caps.set_binary(chromium_binary()).unwrap();
        for arg in [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            "--disable-sync",
            "--window-size=900,1300",
            &profile_arg,
        ] {
            caps.add_arg(arg).unwrap();
        }
        // chromedriver answers once it listens: until then a session cannot be asked for.
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let driver = WebDriver::builder(base, caps)
            // Each command answers in time, or the test fails instead of hanging.
            .request_timeout(Duration::from_secs(60))
            .await
            .expect("a browser session");
        browser.driver = Some(driver);
        browser
    }

    pub(crate) fn driver(&self) -> &WebDriver {
        self.driver.as_ref().expect("a session")
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.driver()
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    async fn find(&self, css: &str) -> WebElement {
        self.driver()
            .find(By::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"))
    }

    async fn type_into(&self, css: &str, text: &str) {
        self.find(css)
            .await
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Waits (bounded) until the page shows `needle`: a click that submits a form returns
    /// before the next page has loaded. Errors while the page changes (a stale body) count
    /// as not yet.
    pub(crate) async fn wait_for_text(&self, needle: &str) {
        let shown = self
            .driver()
            .query(By::Css("body"))
            .with_text(StringMatch::from(needle).partial())
            .ignore_errors(true)
            .wait(Duration::from_secs(15), Duration::from_millis(100))
            .first()
            .await;
        if shown.is_err() {
            let text = match self.driver().find(By::Css("body")).await {
                Ok(body) => body.text().await.unwrap_or_default(),
                Err(e) => format!("(no body: {e})"),
            };
            panic!("the page never showed {needle:?}; it shows: {text}");
        }
    }

    async fn screenshot(&self, name: &str) {
        let png = self
            .driver()
            .screenshot_as_png()
            .await
            .unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
        let dir = screenshots();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Ends the session politely; drop ends chromedriver and its browsers.
    pub(crate) async fn quit(mut self) {
        if let Some(driver) = self.driver.take() {
            driver.quit().await.expect("the session ends");
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A session not ended by quit (a failed test) dies with the browser below: tell
        // thirtyfour not to end it itself, which it would do blocking this thread.
        if let Some(driver) = self.driver.take() {
            let _ = driver.leak();
        }
        let group = rustix::process::Pid::from_child(&self.chromedriver);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.chromedriver.kill();
        let _ = self.chromedriver.wait();
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
    browser.quit().await;
    w.stop().await;
}
