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

/// Every digest `run-once` writes into the file outbox, raw, from the fixture page of
/// 2025-12-09 after that of 2025-12-08: a daily reader whose minimum upvotes a paper reached
/// on the second day (so every kind of card, the late bloomer's badge too), a reader on
/// the defaults (a digest each day) and a weekly reader whose day is the second. With
/// `thumbnails`, the cards show the papers' images (`digest.thumbnails`).
async fn two_days_of_digests(thumbnails: bool) -> Vec<Vec<u8>> {
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
    app.set("digest.thumbnails", thumbnails);
    // Her keywords match every paper she gets, in the title or deeper, so her cards say so.
    app.add(
        "ann@example.org",
        &[
            "--confirmed",
            "--min-upvotes",
            &min.to_string(),
            "--keywords",
            "scaling, memory",
        ],
    );
    app.add("dan@example.org", &["--confirmed"]);
    app.add("wes@example.org", &["--confirmed", "--weekly", "tue"]);
    let r = app.run(&["run-once", "--date", "2025-12-08"]);
    assert!(r.ok(), "{}", r.stderr);
    pages.set(Reply::Page(day2));
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(r.ok(), "{}", r.stderr);
    let outbox = app.dir.path().join("data/outbox");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        4,
        "three dailies and a weekly in {}",
        outbox.display()
    );
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

/// The HTML part of the digest with a late bloomer, of [`two_days_of_digests`]: the one
/// with every kind of line a card can have.
async fn digest_html(thumbnails: bool) -> String {
    let late: Vec<String> = two_days_of_digests(thumbnails)
        .await
        .iter()
        .map(|raw| html_part(raw))
        .filter(|html| html.contains("class=\"late\""))
        .collect();
    assert_eq!(late.len(), 1, "one digest with a late bloomer");
    assert!(late[0].contains("class=\"reason\""), "a card says why");
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
    let digest = digest_html(false).await;
    let with_thumbnails = digest_html(true).await;
    let notice = notice_html().await;
    assert!(!digest.contains("<img"));
    assert!(with_thumbnails.matches("<img ").count() >= 3);
    // Gmail clips a message whose HTML is over about 102 KB.
    assert!(
        with_thumbnails.len() < 102 * 1024,
        "{}",
        with_thumbnails.len()
    );

    let dir = out_dir();
    let files = [
        (dir.join("mailcheck-digest.html"), digest),
        (
            dir.join("mailcheck-digest-thumbnails.html"),
            with_thumbnails,
        ),
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

/// The digest with each thumbnail's address on Hugging Face's CDN replaced by a local
/// picture: the browser stays off the network, and the shots show images of the real size.
fn local_thumbnails(html: &str) -> String {
    let picture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/thumbnail.png");
    let mut out = String::new();
    let mut rest = html;
    let cdn = "src=\"https://cdn-thumbnails.huggingface.co/";
    while let Some(at) = rest.find(cdn) {
        out.push_str(&rest[..at]);
        out.push_str(&format!("src=\"file://{}", picture.display()));
        let after = &rest[at + cdn.len()..];
        rest = &after[after.find('"').expect("the end of the address")..];
    }
    out.push_str(rest);
    assert!(out.contains("thumbnail.png"), "the digest has thumbnails");
    out
}

async fn open(browser: &Browser, name: &str, html: &str, shows: &str) {
    let file = out_dir().join(format!("mailcheck-{name}-shots.html"));
    std::fs::write(&file, html).unwrap();
    browser.goto(&format!("file://{}", file.display())).await;
    browser.wait_for_text(shows).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_and_notice_fit_a_phone_and_a_desktop_in_light_and_dark() {
    let digest = digest_html(false).await;
    let with_thumbnails = local_thumbnails(&digest_html(true).await);
    let notice = notice_html().await;
    let browser = Browser::start().await;
    open(&browser, "digest", &digest, "Trending papers").await;
    for shot in &SHOTS {
        check_shot(&browser, "digest", shot).await;
    }
    open(
        &browser,
        "digest-thumbnails",
        &with_thumbnails,
        "Trending papers",
    )
    .await;
    for shot in &SHOTS {
        check_shot(&browser, "digest-thumbnails", shot).await;
    }
    // The notice has one column too; its long confirm link must wrap on a phone.
    open(&browser, "notice", &notice, "Confirm your subscription").await;
    for shot in SHOTS.iter().filter(|s| s.width < 600) {
        check_shot(&browser, "notice", shot).await;
    }
    browser.quit().await;
}

/// What SpamAssassin said of one message: its rules hit, each with its points.
struct Verdict {
    rules: Vec<(String, f64)>,
}

/// Runs `spamassassin -t -L` (local rules only: no network, no DNS lists) on `raw` and
/// reads the rules it hit from the report it appends.
fn spamassassin(file: &Path) -> Verdict {
    let input = std::fs::File::open(file).unwrap();
    let (ok, said) = run_checker(
        Command::new("spamassassin")
            .args(["-t", "-L", "--cf=use_bayes 0"])
            .stdin(Stdio::from(input)),
        "spamassassin",
    );
    assert!(ok, "spamassassin failed on {}:\n{said}", file.display());
    // The report's table: " pts rule name              description", then one rule a line
    // (" 0.1 MISSING_MID  Missing Message-Id: header"), up to the first line of another shape.
    let table = said
        .split_once("pts rule name")
        .unwrap_or_else(|| panic!("no report from spamassassin:\n{said}"))
        .1;
    let rules = table
        .lines()
        .skip(2)
        .map_while(|line| {
            let mut words = line.split_whitespace();
            let points: f64 = words.next()?.parse().ok()?;
            let rule = words.next()?;
            rule.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                .then(|| (rule.to_string(), points))
        })
        .collect::<Vec<_>>();
    // Every message hits some rule (HTML_MESSAGE, NO_RELAYS, …): an empty list means the
    // table was not read, and a score of nothing would pass for zero.
    assert!(!rules.is_empty(), "no rules read from the report:\n{said}");
    Verdict { rules }
}

/// Rules that describe how the test hands the message over, not the message: a mail read
/// from a file has no `Received:` header (every real delivery adds one), and the test's
/// web server listens on a loopback port, which the links then name. Each scores nothing
/// here; naming them keeps a change in their points from failing the test for the set-up.
const SET_UP_RULES: &[&str] = &["NO_RECEIVED", "NO_RELAYS", "WEIRD_PORT"];

/// The most points a message may collect from its content.
const MAX_SCORE: f64 = 0.5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_paperboy_makes_scores_zero_with_spamassassin() {
    let mut messages: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, raw) in two_days_of_digests(false).await.into_iter().enumerate() {
        let html = html_part(&raw);
        let name = if html.contains("Your week in papers") {
            "weekly".to_string()
        } else if html.contains("class=\"late\"") {
            "daily-late-bloomer".to_string()
        } else {
            format!("daily-{i}")
        };
        messages.push((name, raw));
    }
    let web = spawn_web("").await;
    let mut active = paperboy::domain::Subscriber::new(
        paperboy::domain::SubscriberEmail::parse("active@example.org").unwrap(),
        Default::default(),
        false,
    );
    active.status = paperboy::domain::Status::Active;
    web.store.add_subscriber(&active).unwrap();
    for email in ["new@example.org", "active@example.org"] {
        assert!(web.subscribe(email).await.status().is_success());
    }
    for m in web.wait_for_mail(2).await {
        let name = if m.recipients == ["active@example.org"] {
            "notice-already-subscribed"
        } else {
            "notice-confirm"
        };
        messages.push((name.into(), m.raw));
    }
    web.stop().await;
    messages.sort();
    let names: Vec<&str> = messages
        .iter()
        .map(|(n, _)| n.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-'))
        .collect();
    assert_eq!(
        names,
        [
            "daily",
            "daily",
            "daily-late-bloomer",
            "notice-already-subscribed",
            "notice-confirm",
            "weekly"
        ]
    );

    let mut failures = Vec::new();
    let mut report = String::new();
    for (name, raw) in &messages {
        let file = out_dir().join(format!("spamassassin-{name}.eml"));
        std::fs::write(&file, raw).unwrap();
        let verdict = spamassassin(&file);
        let counted: Vec<&(String, f64)> = verdict
            .rules
            .iter()
            .filter(|(rule, _)| !SET_UP_RULES.contains(&rule.as_str()))
            .collect();
        let score: f64 = counted.iter().map(|(_, p)| p).sum();
        let line = format!(
            "{name}: {score:.1} from {counted:?} (all hits: {:?})",
            verdict.rules
        );
        report.push_str(&line);
        report.push('\n');
        if score > MAX_SCORE {
            failures.push(line);
        }
    }
    assert!(
        failures.is_empty(),
        "SpamAssassin scores above {MAX_SCORE}:\n{}",
        failures.join("\n")
    );
    eprintln!("{report}");
}
