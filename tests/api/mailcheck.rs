//! Mail that renders everywhere: the HTML of a digest made by the real binary (and of a
//! notice) must pass the Nu HTML checker and the email-client check of tools/mailcheck
//! (caniemail.com's data for Gmail, Outlook and Apple Mail), and look right in a browser at
//! phone and desktop widths, light and dark. `scripts/install-test-deps` installs the
//! checkers (`npm ci` in tools/mailcheck) and Java.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use thirtyfour::cdp::domains::emulation::{MediaFeature, SetEmulatedMedia};

use crate::browser::{Browser, screenshots};
use crate::helpers::{PageServer, Reply, TestApp, WaitBounded, fixture};
use crate::web::spawn_web;

fn mailcheck_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/mailcheck")
}

/// The HTML part of a digest `run-once` writes into the file outbox, from the fixture page
/// of 2025-12-09 after that of 2025-12-08, for a subscriber whose minimum upvotes a paper
/// reached on the second day: every kind of card, the late bloomer's badge too.
async fn digest_html() -> String {
    let day1 = fixture("trending-2025-12-08.html");
    let day2 = fixture("trending-2025-12-09.html");
    let upvotes = |page: &str| -> std::collections::HashMap<String, u32> {
        paperboy::source::parse_listing(page)
            .unwrap()
            .papers
            .into_iter()
            .map(|p| (p.id.to_string(), p.upvotes))
            .collect()
    };
    let (before, after) = (upvotes(&day1), upvotes(&day2));
    let min = after
        .iter()
        .filter_map(|(id, &now)| (before.get(id)? < &now).then_some(now))
        .max()
        .expect("a paper that gained upvotes overnight");
    let pages = PageServer::start(Reply::Page(day1)).await;
    // The SMTP port is never used: the mail goes to the outbox.
    let app = TestApp::new(&pages.url(), 9, "");
    app.set("mail.transport", "file");
    app.add(
        "ann@example.org",
        &["--confirmed", "--min-upvotes", &min.to_string()],
    );
    let r = app.run(&["run-once", "--date", "2025-12-08"]);
    assert!(r.ok(), "{}", r.stderr);
    pages.set(Reply::Page(day2));
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(r.ok(), "{}", r.stderr);
    let outbox = app.dir.path().join("data/outbox");
    let late: Vec<String> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| html_part(&std::fs::read(e.unwrap().path()).unwrap()))
        .filter(|html| html.contains("class=\"late\""))
        .collect();
    assert_eq!(
        late.len(),
        1,
        "one digest with a late bloomer in {}",
        outbox.display()
    );
    late.into_iter().next().unwrap()
}

/// The HTML part of the confirmation mail a subscription through the web form sends.
async fn notice_html() -> String {
    let web = spawn_web("").await;
    assert!(web.subscribe("bob@example.org").await.status().is_success());
    let html = web.wait_for_mail(1).await[0].part("text/html");
    web.stop().await;
    html
}

fn html_part(raw: &[u8]) -> String {
    let parsed = mailparse::parse_mail(raw).expect("a MIME message");
    let part = parsed
        .subparts
        .iter()
        .find(|p| p.ctype.mimetype == "text/html")
        .expect("an HTML part");
    part.get_body().unwrap()
}

/// Where this module leaves its files: beside the browser test's screenshots.
fn out_dir() -> PathBuf {
    let dir = screenshots();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a checker to the end (at most 60 s) and returns whether it passed and all it said.
fn run_checker(cmd: &mut Command, what: &str) -> (bool, String) {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} does not start ({e}); run scripts/install-test-deps"));
    let out = child.wait_with_output_bounded();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

fn installed(path: &Path) -> &Path {
    assert!(
        path.exists(),
        "{} is missing; run scripts/install-test-deps",
        path.display()
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_and_notice_html_pass_the_html_and_mail_client_checks() {
    let digest = digest_html().await;
    let notice = notice_html().await;

    let dir = out_dir();
    let files = [
        (dir.join("mailcheck-digest.html"), digest),
        (dir.join("mailcheck-notice.html"), notice),
    ];
    for (path, html) in &files {
        std::fs::write(path, html).unwrap();
    }
    let paths: Vec<&Path> = files.iter().map(|(p, _)| p.as_path()).collect();

    let jar = mailcheck_dir().join("node_modules/vnu-jar/build/dist/vnu.jar");
    let (ok, said) = run_checker(
        Command::new("java")
            .arg("-jar")
            .arg(installed(&jar))
            .args(["--errors-only", "--format", "gnu"])
            .args(&paths),
        "java (the Nu HTML checker)",
    );
    assert!(ok, "the Nu HTML checker found errors:\n{said}");

    let script = mailcheck_dir().join("check.mjs");
    installed(&mailcheck_dir().join("node_modules/caniemail"));
    let (ok, said) = run_checker(
        Command::new("node").arg(installed(&script)).args(&paths),
        "node (the caniemail check)",
    );
    assert!(ok, "features the mail clients lack:\n{said}");
    // The check really looked: it names the clients and the dark-mode query it allows.
    assert!(
        said.contains("0 error(s) for gmail.desktop-webmail"),
        "{said}"
    );
    assert!(said.contains("@media (prefers-color-scheme)"), "{said}");
}

/// One screenshot: a viewport `width` CSS pixels wide, light or dark.
struct Shot {
    name: &'static str,
    width: u32,
    height: u32,
    dark: bool,
}

const SHOTS: [Shot; 4] = [
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

    async fn png(&self) -> Vec<u8> {
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

/// Takes the screenshot `shot` of the page open in `browser`, saves it as `{page}-{name}.png`
/// and checks it: the size asked for, light or dark as asked, nothing wider than the screen.
async fn check_shot(browser: &Browser, page: &str, shot: &Shot) {
    browser.emulate(shot).await;
    let bytes = browser.png().await;
    let path = out_dir().join(format!("{page}-{}.png", shot.name));
    std::fs::write(&path, &bytes).unwrap();
    println!("screenshot: {}", path.display());

    let image = Image::decode(&bytes);
    assert_eq!(
        (image.width, image.height),
        (shot.width, shot.height),
        "{}: the size asked for",
        path.display()
    );
    // The corner is the page background, outside every card.
    let corner = image.luminance(3, 3);
    let mean = image.mean_luminance();
    if shot.dark {
        assert!(
            corner < 0.1 && mean < 0.3,
            "{}: dark mode is not dark (corner {corner:.2}, mean {mean:.2})",
            path.display()
        );
    } else {
        assert!(
            corner > 0.85 && mean > 0.7,
            "{}: light mode is not light (corner {corner:.2}, mean {mean:.2})",
            path.display()
        );
    }
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

async fn open(browser: &Browser, name: &str, html: &str, shows: &str) {
    let file = out_dir().join(format!("mailcheck-{name}-shots.html"));
    std::fs::write(&file, html).unwrap();
    browser.goto(&format!("file://{}", file.display())).await;
    browser.wait_for_text(shows).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_and_notice_fit_a_phone_and_a_desktop_in_light_and_dark() {
    let digest = digest_html().await;
    let notice = notice_html().await;
    let browser = Browser::start().await;
    open(&browser, "digest", &digest, "Trending papers").await;
    for shot in &SHOTS {
        check_shot(&browser, "digest", shot).await;
    }
    // The notice has one column too; its long confirm link must wrap on a phone.
    open(&browser, "notice", &notice, "Confirm your subscription").await;
    for shot in SHOTS.iter().filter(|s| s.width < 600) {
        check_shot(&browser, "notice", shot).await;
    }
    browser.quit().await;
}
