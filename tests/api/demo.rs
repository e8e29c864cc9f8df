//! `paperboy demo`, the real binary: a reader subscribes, confirms, gets the first sample
//! day's digest at once and the second day's on "next day", with nothing repeated; all of
//! it offline, in a directory of its own, with a banner on every page, and none of it
//! under `serve`. With `e2e`, the same walk in headless Chromium, shot at every step.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::helpers::{KillOnDrop, PageServer, Reply, SmtpSink, TestApp, fixture, free_port};

/// `paperboy demo` running, once it has printed its block.
pub(crate) struct DemoRun {
    pub process: KillOnDrop,
    /// The address it says to open, without the trailing slash.
    pub url: String,
    /// The data directory it says it uses.
    pub data: PathBuf,
    /// When the process was started.
    pub started: Instant,
    pub http: reqwest::Client,
}

impl DemoRun {
    /// Starts `cmd` (a `paperboy demo` command) and reads its block from stdout, within 30 s.
    pub(crate) fn start(mut cmd: Command) -> Self {
        let started = Instant::now();
        let child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .expect("paperboy demo starts");
        let mut process = KillOnDrop(child);
        let stdout = process.0.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut block = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no complete block within 30 s: {block:#?}"));
            let done = line.trim_start().starts_with("Stop");
            block.push(line);
            if done {
                break;
            }
        }
        // The rest of its output is not the test's.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        let field = |name: &str| {
            block
                .iter()
                .find_map(|l| l.trim_start().strip_prefix(name))
                .map(str::trim)
                .unwrap_or_else(|| panic!("no {name} line in {block:#?}"))
                .to_string()
        };
        let url = field("Open").trim_end_matches('/').to_string();
        let data = PathBuf::from(field("Data").split(" (").next().unwrap());
        assert!(
            field("Mail").contains(&data.join("outbox").display().to_string()),
            "{block:#?}"
        );
        assert!(field("Stop").contains("Ctrl-C"), "{block:#?}");
        Self {
            process,
            url,
            data,
            started,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    pub(crate) async fn post(&self, path: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .form(fields)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// The outbox page's messages, newest first: (path of its page, subject).
    pub(crate) async fn outbox(&self) -> Vec<(String, String)> {
        let (status, page) = self.get("/demo/outbox").await;
        assert_eq!(status, 200, "{page}");
        page.split("<li><a href=\"")
            .skip(1)
            .map(|item| {
                let (href, rest) = item.split_once("\">").unwrap();
                let subject = rest.split("</a>").next().unwrap();
                (href.to_string(), subject.to_string())
            })
            .collect()
    }

    /// Waits (bounded) until the outbox page lists `n` messages, and returns them.
    pub(crate) async fn wait_for_outbox(&self, n: usize) -> Vec<(String, String)> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let listed = self.outbox().await;
            if listed.len() >= n {
                assert_eq!(listed.len(), n, "{listed:?}");
                return listed;
            }
            assert!(
                Instant::now() < deadline,
                "the outbox never listed {n} messages: {listed:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops it as Ctrl-C would, and waits (bounded) for a clean exit.
    pub(crate) fn stop(&mut self) {
        let status = self.process.terminate(Duration::from_secs(20));
        assert!(status.success(), "the demo exited with {status}");
    }
}

/// The links of a page (or the text part on a message page) that start with `prefix`, in
/// order, each once.
pub(crate) fn links(page: &str, prefix: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    for piece in page.split("href=\"").skip(1) {
        let href = piece.split('"').next().unwrap().replace("&#38;", "&");
        if href.starts_with(prefix) && !found.contains(&href) {
            found.push(href);
        }
    }
    found
}

/// The papers a message page shows, by their Hugging Face links: each paper's own page, not
/// its discussion (`#community`).
pub(crate) fn papers(page: &str) -> Vec<String> {
    let mut papers = links(page, "https://huggingface.co/papers/");
    papers.retain(|l| !l.contains('#'));
    papers
}

/// The proof that a page is the demo's: its banner.
const BANNER: &str = "<aside class=\"demo\"";

/// Every entry under `dir` (itself included) with its size, times and kind, read with
/// `stat` alone: looking must not change the access times being watched.
fn stat_all(paths: &[PathBuf]) -> BTreeMap<PathBuf, (u64, SystemTime, SystemTime, bool)> {
    paths
        .iter()
        .map(|p| {
            let m = std::fs::symlink_metadata(p).unwrap();
            let times = (m.modified().unwrap(), m.accessed().unwrap());
            (p.clone(), (m.len(), times.0, times.1, m.is_dir()))
        })
        .collect()
}

/// Every path under `dir`, itself included, and the contents of each file.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    out.insert(dir.to_path_buf(), None);
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(tree(&path));
        } else {
            out.insert(path.clone(), Some(std::fs::read(&path).unwrap()));
        }
    }
    out
}

/// Sets every path's access and change times days back: a read would then move the access
/// time (on a file system that keeps them, as relatime does), a write the other.
fn age(paths: &[PathBuf]) {
    let day = Duration::from_secs(24 * 3600);
    let times = std::fs::FileTimes::new()
        .set_accessed(SystemTime::now() - 3 * day)
        .set_modified(SystemTime::now() - 4 * day);
    // Children first: touching them never changes their directory's times, but listing
    // the directory would.
    for p in paths.iter().rev() {
        std::fs::File::open(p).unwrap().set_times(times).unwrap();
    }
}

/// The demo of a machine where paperboy is configured for real: a config file (named with
/// --config, in $PAPERBOY_CONFIG and as ./paperboy.toml) whose source and SMTP server
/// record every request, whose data directory (also in $PAPERBOY_DATA_DIR and
/// $STATE_DIRECTORY) holds a real store, and HTTP proxies that record every request. The
/// walk through the demo goes on as if none of it were there, and none of it is touched:
/// no request, no mail, the data directory's files unread and unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_sends_each_day_once_without_network_or_configured_state() {
    let source = PageServer::start(Reply::Page(fixture("trending-2025-12-08.html"))).await;
    let proxy = PageServer::start(Reply::Status(502)).await;
    let sink = SmtpSink::start();
    let app = TestApp::new(&source.url(), sink.port, "");
    app.add("real@example.org", &["--confirmed"]);
    let configured = app.dir.path().join("data");
    let cwd_before = tree(app.dir.path()).into_keys().collect::<Vec<_>>();
    let before = tree(&configured);
    let paths: Vec<PathBuf> = before.keys().cloned().collect();
    age(&paths);
    let times_before = stat_all(&paths);
    let temp = tempfile::tempdir().unwrap();

    let mut cmd = app.command(&["demo", "--listen", &format!("127.0.0.1:{}", free_port())]);
    cmd.env("PAPERBOY_CONFIG", &app.config)
        .env("PAPERBOY_DATA_DIR", &configured)
        .env("STATE_DIRECTORY", &configured)
        .env("TMPDIR", temp.path())
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
        cmd.env(var, proxy.url())
            .env(var.to_lowercase(), proxy.url());
    }
    let mut demo = DemoRun::start(cmd);
    assert!(
        demo.data.starts_with(temp.path()),
        "a temporary directory of its own: {}",
        demo.data.display()
    );

    let (status, start) = demo.get("/").await;
    assert_eq!(status, 200);
    assert!(start.contains(BANNER) && start.contains("action=\"/subscribe\""));
    // The start page's sample is the first sample day, read from the binary.
    assert!(start.contains("Leveraging Generative Models"), "{start}");
    let (status, _) = demo
        .post(
            "/subscribe",
            &[
                ("email", "visitor@example.org"),
                ("keywords", ""),
                ("min_upvotes", ""),
                ("max_items", ""),
            ],
        )
        .await;
    assert_eq!(status, 200);
    let listed = demo.wait_for_outbox(1).await;
    let (_, confirmation) = demo.get(&listed[0].0).await;
    let confirm = &links(&confirmation, &format!("{}/confirm?token=", demo.url))[0];
    let token = confirm.split("token=").nth(1).unwrap();
    let (status, page) = demo.post("/confirm", &[("token", token)]).await;
    assert!(
        status == 200 && page.contains("You are subscribed"),
        "{page}"
    );

    // The digest is there as the confirmation's answer arrives.
    let listed = demo.outbox().await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed[0].1.starts_with("Dec 8:"), "{listed:?}");
    let (_, first) = demo.get(&listed[0].0).await;
    let first = papers(&first);
    assert_eq!(first.len(), 10, "the default of 10 papers: {first:?}");
    let took = demo.started.elapsed();
    println!("demo: {took:.1?} from start to a subscribed reader's digest on the outbox page");
    assert!(took < Duration::from_secs(60), "{took:?}");

    let r = demo
        .http
        .post(format!("{}/demo/next-day", demo.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let listed = demo.outbox().await;
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed[0].1.starts_with("Dec 9:"), "{listed:?}");
    let (_, second) = demo.get(&listed[0].0).await;
    let second = papers(&second);
    assert_eq!(second.len(), 10, "{second:?}");
    let repeated: Vec<_> = second.iter().filter(|p| first.contains(p)).collect();
    assert!(repeated.is_empty(), "sent again: {repeated:?}");
    // The second day's page repeats most of the first's: a digest of the page alone would
    // have repeated some.
    let (_, day_two) = demo.get("/editions/2025-12-09").await;
    assert!(
        papers(&day_two).iter().any(|p| first.contains(p)),
        "the sample's second day shares papers with the first"
    );

    let data = demo.data.clone();
    assert!(data.join("outbox").is_dir());
    demo.stop();
    assert!(
        !data.exists(),
        "the temporary directory is deleted at the end"
    );
    assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 0);

    assert_eq!(source.hits(), 0, "the configured source was asked");
    assert_eq!(proxy.hits(), 0, "a proxy was asked");
    assert!(sink.messages().is_empty(), "mail reached the SMTP server");
    assert_eq!(
        stat_all(&paths),
        times_before,
        "the configured data directory was read or written"
    );
    assert_eq!(
        tree(&configured),
        before,
        "the configured data directory changed"
    );
    assert_eq!(
        tree(app.dir.path()).into_keys().collect::<Vec<_>>(),
        cwd_before,
        "the working directory changed"
    );
}

/// Ctrl-C twice, the second while the first stop still waits for a request to finish:
/// the demo ends at once, and its temporary directory goes with it.
#[test]
fn a_second_ctrl_c_ends_the_demo_at_once_and_leaves_nothing() {
    use std::io::{Read, Write};
    let temp = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = crate::helpers::paperboy_command();
    cmd.args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .env("TMPDIR", temp.path())
        .env("RUST_LOG", "warn");
    let mut demo = DemoRun::start(cmd);
    assert!(demo.data.is_dir());

    // A form whose body never comes: a stop gives it 5 s to finish.
    let mut held = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    held.write_all(
        b"POST /subscribe HTTP/1.1\r\nHost: demo\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nemail=",
    )
    .unwrap();
    // Neither answered nor closed: the request is being handled.
    held.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let read = held.read(&mut [0; 64]);
    assert!(
        read.as_ref().is_err_and(|e| matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        )),
        "{read:?}"
    );

    let pid = rustix::process::Pid::from_child(&demo.process.0);
    let interrupt = || rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    interrupt();
    // The first stop has begun once the demo takes no more connections.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "still listening after Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    }
    interrupt();
    // Bounded generously: the exit code tells the second signal's exit (130) from the end
    // of a first stop that waited out its grace (0).
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = demo.process.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the second Ctrl-C did not end the demo at once"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130), "{status}");
    assert!(!demo.data.exists(), "{} is left", demo.data.display());
    assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 0);
}

/// Every page a demo serves as HTML carries the banner (its own pages, `serve`'s pages,
/// the error pages), but for a message's own HTML, which is shown in a sandbox as a mail
/// program would; `serve` has none of the demo's pages and no banner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_demo_page_has_the_banner_and_serve_has_no_demo_pages() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo-data");
    let mut cmd = crate::helpers::paperboy_command();
    cmd.args(["demo", "--listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--data")
        .arg(&data)
        .env("RUST_LOG", "warn");
    let mut demo = DemoRun::start(cmd);
    assert_eq!(demo.data, data.canonicalize().unwrap());

    demo.post(
        "/subscribe",
        &[
            ("email", "visitor@example.org"),
            ("keywords", ""),
            ("min_upvotes", ""),
            ("max_items", "3"),
        ],
    )
    .await;
    let listed = demo.wait_for_outbox(1).await;
    let (_, confirmation) = demo.get(&listed[0].0).await;
    let confirm = links(&confirmation, &format!("{}/confirm?token=", demo.url))[0].clone();
    let confirm_path = confirm.strip_prefix(&demo.url).unwrap().to_string();
    let token = confirm.split("token=").nth(1).unwrap().to_string();
    let (_, subscribed) = demo.post("/confirm", &[("token", &token)]).await;
    let listed = demo.outbox().await;
    let (_, digest) = demo.get(&listed[0].0).await;
    let preferences = links(&digest, &format!("{}/preferences?token=", demo.url))[0].clone();
    let preferences = preferences.strip_prefix(&demo.url).unwrap().to_string();

    let mut pages = vec![
        ("/".to_string(), 200),
        ("/editions".into(), 200),
        ("/editions/2025-12-08".into(), 200),
        ("/editions/2031-01-01".into(), 404),
        ("/nothing-here".into(), 404),
        ("/demo/outbox".into(), 200),
        ("/demo/outbox/not-a-message".into(), 404),
        (confirm_path, 200),
        (preferences, 200),
    ];
    pages.extend(listed.iter().map(|(path, _)| (path.clone(), 200)));
    for (path, status) in &pages {
        let (got, body) = demo.get(path).await;
        assert_eq!(got, *status, "{path}");
        assert_eq!(body.matches(BANNER).count(), 1, "{path}: {body}");
    }
    assert!(subscribed.contains(BANNER));

    // The HTML part: the mail as sent, framed by the message page only, in a sandbox.
    let part = demo
        .http
        .get(format!("{}{}/html", demo.url, listed[0].0))
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 200);
    let csp = part.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.starts_with("sandbox ") && csp.contains("frame-ancestors 'self'"));
    let part = part.text().await.unwrap();
    assert!(
        !part.contains(BANNER) && !papers(&part).is_empty(),
        "{part}"
    );
    assert!(digest.contains(&format!("src=\"{}/html\"", listed[0].0)));
    // Not HTML: untouched.
    let (_, feed) = demo.get("/feed.xml").await;
    assert!(feed.starts_with("<?xml") && !feed.contains(BANNER));

    // Kept: a second run on the same directory finds its mail.
    demo.stop();
    assert!(data.join("outbox").is_dir());
    let mut cmd = crate::helpers::paperboy_command();
    cmd.args(["demo", "--listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--data")
        .arg(&data);
    let mut again = DemoRun::start(cmd);
    assert_eq!(again.outbox().await.len(), listed.len());
    again.stop();

    // A directory that is not a demo's is refused, and left alone.
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("secret.key"), "k").unwrap();
    let out = crate::helpers::paperboy_command()
        .args(["demo", "--data"])
        .arg(&real)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not made by paperboy demo"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_dir(&real).unwrap().count(), 1);

    // serve: the same pages without any of the demo's.
    let w = crate::web::spawn_web("").await;
    let start = w.get("/").await.text().await.unwrap();
    assert!(!start.contains(BANNER) && !start.contains("/demo/"));
    for path in ["/demo/outbox", "/demo/outbox/x", "/demo/outbox/x/html"] {
        assert_eq!(w.get(path).await.status(), 404, "{path}");
    }
    assert_eq!(w.post_form("/demo/next-day", &[]).await.status(), 404);
    w.stop().await;
}

/// The README's picture of a digest: written by the walkthrough below into the
/// screenshots, and over `docs/digest.png` when this variable is set.
#[cfg(feature = "e2e")]
const UPDATE_PICTURE: &str = "UPDATE_README_PICTURE";

/// The walk a newcomer takes, in headless Chromium against the real `paperboy demo`:
/// subscribe, find the confirmation in the outbox, confirm with its button, read the digest
/// there (its HTML part in the frame, its text part beside it), "next day", and read a
/// second digest with none of the first one's papers. Every step is shot as a phone and a
/// desktop show it, light and dark (`target/tmp/screenshots/demo-*.png`), and checked as
/// the other pages' shots are.
#[cfg(feature = "e2e")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_walks_the_demo_in_a_browser() {
    use crate::browser::{Browser, screenshots};

    let temp = tempfile::tempdir().unwrap();
    let mut cmd = crate::helpers::paperboy_command();
    cmd.args(["demo", "--listen", &format!("127.0.0.1:{}", free_port())])
        .env("TMPDIR", temp.path());
    let mut demo = DemoRun::start(cmd);
    let browser = Browser::start().await;

    browser.goto(&format!("{}/", demo.url)).await;
    browser.wait_for_text("paperboy demo").await;
    browser.wait_for_text("Trending papers in your inbox").await;
    browser.check_shots("demo-1-start").await;
    browser.type_into("#email", "visitor@example.org").await;
    browser
        .click("form[action='/subscribe'] button[type=submit]")
        .await;
    browser.wait_for_text("Check your inbox").await;
    browser.check_shots("demo-2-check-inbox").await;

    // The confirmation is written in the background; the outbox page lists it once it is.
    demo.wait_for_outbox(1).await;
    browser.click("aside.demo a[href='/demo/outbox']").await;
    browser
        .wait_for_text("Confirm your subscription to trending papers")
        .await;
    browser.check_shots("demo-3-outbox").await;
    browser.click("ol.outbox li a").await;
    browser.wait_for_text("Text part").await;
    wait_in_frame(&browser, "Confirm subscription").await;
    browser.check_shots("demo-4-confirmation-mail").await;

    // The button of the mail's HTML part, in its sandboxed frame, opens the page in the
    // demo's window, as a mail program opens it in the browser.
    browser.driver().enter_frame(0).await.unwrap();
    browser.click("a[href*='/confirm?token=']").await;
    browser.driver().enter_default_frame().await.unwrap();
    browser.wait_for_text("One click and trending papers").await;
    browser.check_shots("demo-5-confirm").await;
    browser.click("main button[type=submit]").await;
    browser.wait_for_text("You are subscribed").await;
    browser.check_shots("demo-6-subscribed").await;

    browser.click("aside.demo a[href='/demo/outbox']").await;
    browser.wait_for_text("Dec 8:").await;
    browser.click("ol.outbox li a").await;
    browser.wait_for_text("Text part").await;
    let first = shown_papers(&browser).await;
    let took = demo.started.elapsed();
    println!("demo: {took:.1?} from start to a subscribed reader's digest on the outbox page");
    assert_eq!(first.len(), 10, "{first:?}");
    let first_heading = first_title(&browser).await;
    wait_in_frame(&browser, &first_heading).await;
    let first_digest = browser.driver().current_url().await.unwrap().to_string();
    browser.check_shots("demo-7-digest").await;

    browser.click("aside.demo button[type=submit]").await;
    browser.wait_for_text("Dec 9:").await;
    browser.check_shots("demo-8-next-day").await;
    browser.click("ol.outbox li a").await;
    browser.wait_for_text("Text part").await;
    let second = shown_papers(&browser).await;
    assert_eq!(second.len(), 10, "{second:?}");
    let repeated: Vec<_> = second.iter().filter(|p| first.contains(p)).collect();
    assert!(repeated.is_empty(), "sent again: {repeated:?}");
    wait_in_frame(&browser, &first_title(&browser).await).await;
    browser.check_shots("demo-9-second-digest").await;

    // The README's picture: the first digest as a phone shows it.
    browser.goto(&format!("{first_digest}/html")).await;
    browser.wait_for_text(&first_heading).await;
    let png = phone_picture(&browser).await;
    let path = screenshots().join("demo-readme-digest.png");
    std::fs::write(&path, &png).unwrap();
    println!("screenshot: {}", path.display());
    if std::env::var_os(UPDATE_PICTURE).is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/digest.png");
        std::fs::write(&docs, &png).unwrap();
        println!("wrote {}", docs.display());
    }

    browser.quit().await;
    demo.stop();
}

/// The papers of the message page open in the browser, by the links of its text part.
#[cfg(feature = "e2e")]
async fn shown_papers(browser: &crate::browser::Browser) -> Vec<String> {
    use thirtyfour::prelude::*;
    let mut found = Vec::new();
    let links = browser
        .driver()
        .find_all(By::Css(
            "pre.text a[href^='https://huggingface.co/papers/']",
        ))
        .await
        .unwrap();
    for a in links {
        let href = a.attr("href").await.unwrap().unwrap();
        // The paper's page, not its discussion.
        if !href.contains('#') && !found.contains(&href) {
            found.push(href);
        }
    }
    found
}

/// The first line of the first paper's title in the text part of the message page open.
#[cfg(feature = "e2e")]
async fn first_title(browser: &crate::browser::Browser) -> String {
    let text = browser.find("pre.text").await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("1. "))
        .unwrap_or_else(|| panic!("no first paper in {text}"))
        .trim()
        .to_string()
}

/// Waits (bounded) until the message frame of the page open shows `needle`.
#[cfg(feature = "e2e")]
async fn wait_in_frame(browser: &crate::browser::Browser, needle: &str) {
    use thirtyfour::prelude::*;
    let driver = browser.driver();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut shown = String::new();
    while Instant::now() < deadline {
        if driver.enter_frame(0).await.is_ok() {
            if let Ok(body) = driver.find(By::Css("body")).await {
                shown = body.text().await.unwrap_or_default();
            }
            driver.enter_default_frame().await.unwrap();
            if shown.contains(needle) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the message frame never showed {needle:?}; it shows: {shown}");
}

/// The page open as a 390 px phone screen shows it, light, at two device pixels per CSS
/// pixel (sharp at half size in the README).
#[cfg(feature = "e2e")]
async fn phone_picture(browser: &crate::browser::Browser) -> Vec<u8> {
    use thirtyfour::cdp::domains::emulation::{MediaFeature, SetEmulatedMedia};
    let cdp = browser.driver().cdp();
    cdp.emulation()
        .set_device_metrics_override(390, 760, 2.0, true)
        .await
        .unwrap();
    cdp.send(SetEmulatedMedia {
        media: None,
        features: Some(vec![MediaFeature {
            name: "prefers-color-scheme".into(),
            value: "light".into(),
        }]),
    })
    .await
    .unwrap();
    browser.png().await
}
