//! Mail that renders everywhere: the HTML of a digest made by the real binary (and of a
//! notice) must pass the Nu HTML checker and the email-client check of tools/mailcheck
//! (caniemail.com's data for Gmail, Outlook and Apple Mail), and look right in a browser at
//! phone and desktop widths, light and dark. `scripts/install-test-deps` installs the
//! checkers (`npm ci` in tools/mailcheck) and Java.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::browser::{Browser, SHOTS, check_shot, screenshots};
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
