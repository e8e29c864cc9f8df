//! A real browser through the whole journey: headless Chromium, driven by chromedriver over
//! the WebDriver protocol (the thirtyfour client). Every page is screenshot as a phone and a
//! desktop show it, light and dark, into `target/tmp/screenshots/`, and each screenshot is
//! checked: the size asked for, light or dark as asked, nothing wider than the screen. The
//! mail's screenshots (mailcheck.rs) are taken and checked the same way.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use thirtyfour::cdp::domains::emulation::{MediaFeature, SetEmulatedMedia};
use thirtyfour::prelude::*;

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

    pub(crate) async fn find(&self, css: &str) -> WebElement {
        self.driver()
            .find(By::Css(css))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"))
    }

    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        self.find(css)
            .await
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    pub(crate) async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Waits (bounded) until the page shows `needle`: a click that submits a form returns
    /// before the next page has loaded. Every error while the page changes (a body gone
    /// stale between finding it and reading its text, a navigation in progress) counts as
    /// not yet. thirtyfour's own query is not used for this: its `ignore_errors` does not
    /// cover the find itself, nor a text filter added before it, so a stale body ended
    /// the wait at once.
    pub(crate) async fn wait_for_text(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let shown = match self.driver().find(By::Css("body")).await {
                Ok(body) => match body.text().await {
                    Ok(text) if text.contains(needle) => return,
                    Ok(text) => text,
                    Err(e) => format!("(body unreadable: {e})"),
                },
                Err(e) => format!("(no body: {e})"),
            };
            if Instant::now() >= deadline {
                panic!("the page never showed {needle:?}; it shows: {shown}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Screenshots of the page open as a phone and a desktop show it, light and dark, each
    /// checked by [`check_shot`].
    pub(crate) async fn check_shots(&self, page: &str) {
        for shot in &SHOTS {
            check_shot(self, page, shot).await;
        }
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

/// One screenshot: a viewport `width` CSS pixels wide, light or dark.
pub(crate) struct Shot {
    name: &'static str,
    pub(crate) width: u32,
    height: u32,
    dark: bool,
}

pub(crate) const SHOTS: [Shot; 4] = [
    Shot {
        name: "phone-light",
        width: 375,
        height: 812,
        dark: false,
    },
    Shot {
        name: "phone-dark",
        width: 375,
        height: 812,
        dark: true,
    },
    Shot {
        name: "desktop-light",
        width: 1200,
        height: 900,
        dark: false,
    },
    Shot {
        name: "desktop-dark",
        width: 1200,
        height: 900,
        dark: true,
    },
];

impl Browser {
    /// Emulates a screen `width` × `height` at one device pixel per CSS pixel (a phone
    /// below 600), in light or dark mode, through Chrome DevTools commands.
    async fn emulate(&self, shot: &Shot) {
        let cdp = self.driver().cdp();
        cdp.emulation()
            .set_device_metrics_override(shot.width, shot.height, 1.0, shot.width < 600)
            .await
            .expect("Emulation.setDeviceMetricsOverride");
        let scheme = if shot.dark { "dark" } else { "light" };
        cdp.send(SetEmulatedMedia {
            media: None,
            features: Some(vec![MediaFeature {
                name: "prefers-color-scheme".into(),
                value: scheme.into(),
            }]),
        })
        .await
        .expect("Emulation.setEmulatedMedia");
    }

    pub(crate) async fn png(&self) -> Vec<u8> {
        self.driver()
            .screenshot_as_png()
            .await
            .expect("a screenshot")
    }

    async fn script(&self, js: &str) -> serde_json::Value {
        self.driver()
            .execute(js, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("{js}: {e}"))
            .json()
            .clone()
    }
}

/// A decoded screenshot, as 8-bit RGB(A) rows.
struct Image {
    width: u32,
    height: u32,
    channels: usize,
    pixels: Vec<u8>,
}

impl Image {
    fn decode(png_bytes: &[u8]) -> Self {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().expect("a PNG");
        let mut pixels = vec![0; reader.output_buffer_size().expect("a sane size")];
        let info = reader.next_frame(&mut pixels).expect("a PNG frame");
        pixels.truncate(info.buffer_size());
        let channels = match info.color_type {
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            other => panic!("a colour screenshot, not {other:?}"),
        };
        Self {
            width: info.width,
            height: info.height,
            channels,
            pixels,
        }
    }

    /// Relative luminance (0 black, 1 white) of the pixel at `x`, `y`, roughly.
    fn luminance(&self, x: u32, y: u32) -> f64 {
        let at = (y as usize * self.width as usize + x as usize) * self.channels;
        let [r, g, b] = [0, 1, 2].map(|i| f64::from(self.pixels[at + i]) / 255.0);
        0.2126 * r + 0.7152 * g + 0.0722 * b
    }

    /// The mean luminance of every pixel: how light the page is as a whole.
    fn mean_luminance(&self) -> f64 {
        let mut sum = 0.0;
        for y in 0..self.height {
            for x in 0..self.width {
                sum += self.luminance(x, y);
            }
        }
        sum / f64::from(self.width * self.height)
    }
}

/// Whether `image` is as dark (or light) as a page in that colour scheme: its corner, the
/// page background outside every card, and its whole.
fn scheme_shows(image: &Image, dark: bool) -> bool {
    let (corner, mean) = (image.luminance(3, 3), image.mean_luminance());
    if dark {
        corner < 0.1 && mean < 0.3
    } else {
        corner > 0.85 && mean > 0.7
    }
}

/// Takes the screenshot `shot` of the page open in `browser`, saves it as `{page}-{name}.png`
/// and checks it: the size asked for, light or dark as asked, nothing wider than the screen.
pub(crate) async fn check_shot(browser: &Browser, page: &str, shot: &Shot) {
    browser.emulate(shot).await;
    // A framed document (a mail shown in the demo's outbox) takes the new colour scheme a
    // moment after its page: shoot again until the shot is as light or dark as asked, or
    // 15 s have passed, and check the last one.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut bytes = browser.png().await;
    loop {
        let image = Image::decode(&bytes);
        if scheme_shows(&image, shot.dark) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        bytes = browser.png().await;
    }
    let dir = screenshots();
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{page}-{}.png", shot.name));
    std::fs::write(&path, &bytes).unwrap();
    println!("screenshot: {}", path.display());

    let image = Image::decode(&bytes);
    assert_eq!(
        (image.width, image.height),
        (shot.width, shot.height),
        "{}: the size asked for",
        path.display()
    );
    let corner = image.luminance(3, 3);
    let mean = image.mean_luminance();
    assert!(
        scheme_shows(&image, shot.dark),
        "{}: {} mode is not {} (corner {corner:.2}, mean {mean:.2})",
        path.display(),
        if shot.dark { "dark" } else { "light" },
        if shot.dark { "dark" } else { "light" },
    );
    let scroll_width = browser
        .script("return document.documentElement.scrollWidth")
        .await;
    assert!(
        scroll_width
            .as_u64()
            .is_some_and(|w| w <= u64::from(shot.width)),
        "{}: the page is {scroll_width} px wide, wider than the screen",
        path.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_subscribes_confirms_reads_and_leaves_in_a_browser() {
    let w = spawn_web("").await;
    w.run_edition("2025-12-08").await; // so the start page has a sample of papers
    let browser = Browser::start().await;

    browser.goto(&format!("{}/", w.base)).await;
    browser.wait_for_text("Trending papers in your inbox").await;
    browser.check_shots("1-subscribe").await;
    browser.type_into("#email", "reader@example.org").await;
    browser
        .type_into("#keywords", "bottleneck, diffusion")
        .await;
    browser.type_into("#max_items", "3").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Check your inbox").await;
    browser.check_shots("2-check-inbox").await;

    let mail = w.wait_for_mail(1).await;
    browser.goto(&link_in(&mail[0], "/confirm?token=")).await;
    browser.wait_for_text("Confirm your subscription").await;
    browser.check_shots("3-confirm").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("You are subscribed").await;
    browser.check_shots("4-confirmed").await;

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
    browser.check_shots("5-digest").await;

    browser.goto(&link_in(digest, "/preferences?token=")).await;
    browser.wait_for_text("Your preferences").await;
    browser.check_shots("6-preferences").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Saved").await;

    browser.goto(&link_in(digest, "/unsubscribe?token=")).await;
    browser.check_shots("7-unsubscribe").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("You are unsubscribed").await;
    browser.check_shots("8-unsubscribed").await;
    assert_eq!(
        w.status_of("reader@example.org"),
        Some(paperboy::domain::Status::Unsubscribed)
    );
    browser.quit().await;
    w.stop().await;
}
