//! Bounces and complaints after acceptance, through the binary: the VERP envelope sender
//! on digests and notices (over SMTP and in the file outbox), `paperboy bounce` on the
//! fixtures of tests/fixtures/bounces, on its own and through a running daemon, its exit
//! codes, and what operators see (`subscribers list`, export, `/metrics`). With `e2e`, a
//! private Postfix on loopback turns a refusal after acceptance into a real DSN and pipes
//! it into `paperboy bounce`.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::helpers::{
    EngineKind, KillOnDrop, PageServer, Received, Reply, Run, SmtpSink, TestApp, WaitBounded,
    fixture, is_locked, on_both_engines, start_serve, web_on_free_port,
};

const BOUNCE_ADDRESS: &str = "bounces@example.org";

/// A report from tests/fixtures/bounces with its placeholders filled in.
fn report(name: &str, rcpt: &str, verp: &str, message_id: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/bounces/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .replace("@@RCPT@@", rcpt)
        .replace("@@VERP@@", verp)
        .replace("@@MSGID@@", message_id)
        .into_bytes()
}

/// `paperboy bounce` with `raw` on its standard input, as an MTA runs it.
fn bounce(app: &TestApp, raw: &[u8], log: &str) -> Run {
    let mut cmd = app.command(&["bounce"]);
    cmd.env("RUST_LOG", log)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the binary runs");
    let mut stdin = child.stdin.take().unwrap();
    // A reader that stops early makes this fail with a broken pipe: the intake must read
    // everything it is handed.
    stdin
        .write_all(raw)
        .expect("the intake reads the whole message");
    drop(stdin);
    child.wait_with_output_bounded().into()
}

/// The digest the sink received for `rcpt`.
fn digest_to<'a>(messages: &'a [Received], rcpt: &str) -> &'a Received {
    messages
        .iter()
        .find(|m| m.recipients == [rcpt] && m.header("List-Id").is_some())
        .unwrap_or_else(|| panic!("no digest to {rcpt}"))
}

/// The app with bounces going to [`BOUNCE_ADDRESS`], and two readers with five papers a
/// digest (the page has more, so an active reader gets a digest the next day too).
fn app_with_readers(engine: EngineKind, pages: &PageServer, sink: &SmtpSink) -> TestApp {
    let app = TestApp::on(engine, &pages.url(), sink.port, "");
    app.set("mail.bounce_address", BOUNCE_ADDRESS);
    app.set("mail.bounce_transient_count", 2);
    for who in ["ann@example.org", "bob@example.org"] {
        app.add(who, &["--confirmed", "--max-items", "5"]);
    }
    app
}

/// [`app_with_readers`] after the edition of 2025-12-09: both readers' digests are in the
/// sink.
struct Sent {
    pages: PageServer,
    sink: SmtpSink,
    app: TestApp,
    messages: Vec<Received>,
}

async fn first_digests(engine: EngineKind) -> Sent {
    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-09.html"))).await;
    let sink = SmtpSink::start();
    let app = app_with_readers(engine, &pages, &sink);
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(r.ok(), "{}", r.stderr);
    let messages = sink.wait_for(2).await;
    Sent {
        pages,
        sink,
        app,
        messages,
    }
}

fn status_line<'a>(list: &'a str, rcpt: &str) -> &'a str {
    list.lines()
        .find(|l| l.starts_with(rcpt))
        .unwrap_or_else(|| panic!("{rcpt} not listed:\n{list}"))
}

/// A digest refused after acceptance: the DSN to its VERP sender marks that reader bounced
/// and no one else, they get no more digests, and list and export say why.
async fn a_dsn_to_the_verp_sender_bounces_its_reader(engine: EngineKind) {
    let Sent {
        pages: _pages,
        sink,
        app,
        messages,
    } = first_digests(engine).await;
    let (ann, bob) = (
        digest_to(&messages, "ann@example.org"),
        digest_to(&messages, "bob@example.org"),
    );
    for m in [ann, bob] {
        assert!(
            m.sender.starts_with("bounces+") && m.sender.ends_with("@example.org"),
            "envelope sender {}",
            m.sender
        );
        // The From header does not change.
        assert_eq!(m.header("From").unwrap(), "paperboy <digest@example.org>");
    }
    assert_ne!(ann.sender, bob.sender, "each digest has its own token");

    let dsn = report(
        "postfix-permanent.eml",
        "ann@example.org",
        &ann.sender,
        "unrelated@example.net",
    );
    let r = bounce(&app, &dsn, "warn");
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout
            .contains("ann@example.org: permanent (5.1.1 failed"),
        "{}",
        r.stdout
    );

    let list = app.run(&["subscribers", "list"]).stdout;
    let line = status_line(&list, "ann@example.org");
    assert!(line.contains("bounced"), "{line}");
    assert!(
        line.contains("permanent: 5.1.1 failed: 550 5.1.1"),
        "{line}"
    );
    assert!(status_line(&list, "bob@example.org").contains("active"));
    let export = app.run(&["subscribers", "export"]).stdout;
    let ann_record: serde_json::Value = export
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["email"] == "ann@example.org")
        .unwrap();
    assert_eq!(ann_record["status"], "bounced");
    assert!(
        ann_record["last_bounce"]
            .as_str()
            .unwrap()
            .contains("5.1.1"),
        "{ann_record}"
    );
    let csv = app
        .run(&["subscribers", "export", "--format", "csv"])
        .stdout;
    assert!(csv.lines().next().unwrap().ends_with(",last_bounce"));
    assert!(csv.contains("bounced") && csv.contains("5.1.1"), "{csv}");

    // The next day, bob gets the papers he was not sent yet; ann gets nothing.
    sink.clear();
    let r = app.run(&["run-once", "--date", "2025-12-10"]);
    assert!(r.ok(), "{}", r.stderr);
    let next = sink.wait_for(1).await;
    assert_eq!(next[0].recipients, ["bob@example.org"]);
}
on_both_engines!(a_dsn_to_the_verp_sender_bounces_its_reader);

/// Every fixture through the binary, each about a reader of its own: permanent failures
/// bounce, transient ones count (two different editions bounce here), complaints
/// unsubscribe, and an auto-reply or a not-spam report changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fixture_has_its_outcome() {
    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-09.html"))).await;
    let sink = SmtpSink::start();
    let app = TestApp::new(&pages.url(), sink.port, "");
    app.set("mail.bounce_address", BOUNCE_ADDRESS);
    app.set("mail.bounce_transient_count", 2);
    let cases: &[(&[&str], &str)] = &[
        (&["postfix-permanent.eml"], "bounced"),
        (&["exim-permanent.eml"], "bounced"),
        (&["gmail-permanent.eml"], "bounced"),
        (&["microsoft-permanent.eml"], "bounced"),
        (&["ses-permanent.eml"], "bounced"),
        (&["postfix-delayed.eml"], "active"),
        (&["postfix-delayed.eml", "exim-delayed.eml"], "bounced"),
        (&["microsoft-complaint.eml"], "unsubscribed"),
        (&["ses-complaint.eml"], "unsubscribed"),
        (&["arf-not-spam.eml"], "active"),
        (&["vacation.eml"], "active"),
    ];
    for i in 0..cases.len() {
        app.add(&format!("r{i}@example.org"), &["--confirmed"]);
    }
    // The tokens the digests of two editions would carry, signed with the app's key.
    let key = paperboy::tokens::TokenKey::load_or_create(&app.dir.path().join("data/secret.key"))
        .unwrap();
    let ids: Vec<_> = {
        let store = app.store();
        (0..cases.len())
            .map(|i| {
                let email =
                    paperboy::domain::SubscriberEmail::parse(&format!("r{i}@example.org")).unwrap();
                store.subscriber(&email).unwrap().unwrap().id
            })
            .collect()
    };
    for (i, (names, _)) in cases.iter().enumerate() {
        for (day, name) in names.iter().enumerate() {
            let date =
                paperboy::domain::EditionDate::parse(&format!("2025-12-0{}", day + 8)).unwrap();
            let verp = format!(
                "bounces+{}@example.org",
                key.sign_return(ids[i], Some(date))
            );
            let raw = report(name, &format!("r{i}@example.org"), &verp, "x@example.net");
            let r = bounce(&app, &raw, "warn");
            assert_eq!(r.code, Some(0), "{name}: {}", r.stderr);
        }
    }
    let list = app.run(&["subscribers", "list"]).stdout;
    for (i, (names, status)) in cases.iter().enumerate() {
        let line = status_line(&list, &format!("r{i}@example.org"));
        assert!(line.contains(&format!(" {status} ")), "{names:?}: {line}");
    }
}

/// Truncated MIME, a forged token, a report about a stranger, a 10 MB message: each
/// exits 0 (a mail server must not bounce a bounce), changes nothing, and says why, on
/// standard output and in the log at info.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_changes_nothing_and_says_why() {
    let Sent {
        pages: _pages,
        sink: _sink,
        app,
        messages,
    } = first_digests(EngineKind::default()).await;
    let ann = digest_to(&messages, "ann@example.org");
    let message_id = ann.header("Message-ID").unwrap();
    let message_id = message_id.trim_matches(|c| c == '<' || c == '>');
    let good = report(
        "postfix-permanent.eml",
        "ann@example.org",
        &ann.sender,
        message_id,
    );
    let before = app.run(&["subscribers", "export"]).stdout;

    let mut forged = ann.sender.clone().into_bytes();
    let at = ann.sender.find('@').unwrap() - 1;
    forged[at] = if forged[at] == b'a' { b'b' } else { b'a' };
    let forged = String::from_utf8(forged).unwrap();
    let stranger = "bounces+aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.org";
    let mut big = good.clone();
    big.resize(10 * 1024 * 1024, b'x');
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            "the report is truncated",
        ),
        (
            "forged token",
            report(
                "postfix-permanent.eml",
                "ann@example.org",
                &forged,
                message_id,
            ),
            "not one paperboy signed",
        ),
        (
            "a token of nobody's",
            report(
                "postfix-permanent.eml",
                "ann@example.org",
                stranger,
                message_id,
            ),
            "not one paperboy signed",
        ),
        (
            "about a stranger",
            report(
                "postfix-permanent.eml",
                "stranger@example.net",
                "someone@example.net",
                "x@example.net",
            ),
            "cannot tell whose mail it was",
        ),
        (
            "our Message-ID, another address",
            report(
                "postfix-permanent.eml",
                "stranger@example.net",
                "someone@example.net",
                message_id,
            ),
            "about another address",
        ),
        ("10 MB", big, "more than any report"),
        (
            "an auto-reply",
            report("vacation.eml", "ann@example.org", &ann.sender, message_id),
            "an auto-reply",
        ),
    ];
    for (what, raw, why) in cases {
        let r = bounce(&app, &raw, "info");
        assert_eq!(r.code, Some(0), "{what}: {}", r.stderr);
        assert!(r.stdout.starts_with("ignored: "), "{what}: {}", r.stdout);
        assert!(r.stdout.contains(why), "{what}: {}", r.stdout);
        assert!(
            r.stderr.contains("bounce report ignored") && r.stderr.contains(why),
            "{what}: the log says why: {}",
            r.stderr
        );
    }
    assert_eq!(app.run(&["subscribers", "export"]).stdout, before);

    // And the good one, for contrast, does change something.
    let r = bounce(&app, &good, "warn");
    assert!(r.stdout.contains("permanent"), "{}", r.stdout);
    assert_ne!(app.run(&["subscribers", "export"]).stdout, before);
}

/// With `serve` running, the intake goes through the admin socket: bounces and complaints
/// are recorded by the daemon, counted in /metrics, and a bounced reader posting the form
/// is not subscribed again without a new confirmation (which carries a VERP sender too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_daemon_with_metrics_and_no_resubscription_by_a_form_post() {
    let Sent {
        pages: _pages,
        sink,
        app,
        messages,
    } = first_digests(EngineKind::default()).await;
    let ann = digest_to(&messages, "ann@example.org").sender.clone();
    let bob = digest_to(&messages, "bob@example.org").sender.clone();
    let base = web_on_free_port(&app);
    let (mut daemon, http) = start_serve(&app, &base).await;
    assert!(is_locked(&app.dir.path().join("data/paperboy.lock")));

    let r = bounce(
        &app,
        &report("gmail-permanent.eml", "ann@example.org", &ann, "x@y"),
        "warn",
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.contains("ann@example.org: permanent"),
        "{}",
        r.stdout
    );
    let r = bounce(
        &app,
        &report("ses-complaint.eml", "bob@example.org", &bob, "x@y"),
        "warn",
    );
    assert!(
        r.stdout.contains("bob@example.org: complaint"),
        "{}",
        r.stdout
    );
    let r = bounce(
        &app,
        &report("vacation.eml", "ann@example.org", &ann, "x@y"),
        "warn",
    );
    assert!(r.stdout.starts_with("ignored: "), "{}", r.stdout);

    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "paperboy_bounces_total{kind=\"permanent\"} 1",
        "paperboy_bounces_total{kind=\"transient\"} 0",
        "paperboy_complaints_total 1",
        "paperboy_bounce_reports_ignored_total 1",
        "paperboy_subscribers{status=\"bounced\"} 1",
        "paperboy_subscribers{status=\"unsubscribed\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }

    // A plain form post for each: a confirmation goes out, nothing else changes.
    sink.clear();
    for who in ["ann@example.org", "bob@example.org"] {
        let r = http
            .post(format!("{base}/subscribe"))
            .form(&[("email", who)])
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
    let notices = sink.wait_for(2).await;
    for n in &notices {
        assert!(n.sender.starts_with("bounces+"), "{}", n.sender);
        assert!(n.header("List-Id").is_none(), "a notice, not a digest");
    }
    let list = app.run(&["subscribers", "list"]).stdout;
    assert!(status_line(&list, "ann@example.org").contains(" bounced "));
    assert!(status_line(&list, "bob@example.org").contains(" unsubscribed "));
    assert!(daemon.terminate(Duration::from_secs(15)).success());
}

/// A mail server runs `paperboy bounce` as a user of its own, who can use neither the store
/// nor the secret files: with `mail.bounce_socket`, the report goes to the daemon on that
/// socket (open to every local user), which takes nothing but reports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bounce_socket_takes_reports_from_a_user_without_the_store() {
    use std::os::unix::fs::PermissionsExt;
    let Sent {
        pages: _pages,
        sink: _sink,
        app,
        messages,
    } = first_digests(EngineKind::default()).await;
    let ann = digest_to(&messages, "ann@example.org").sender.clone();
    let socket = app.dir.path().join("run/bounce.sock");
    std::fs::create_dir(socket.parent().unwrap()).unwrap();
    app.set("mail.bounce_socket", socket.to_str().unwrap());
    let base = web_on_free_port(&app);
    let (mut daemon, _http) = start_serve(&app, &base).await;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o666, "any local user may hand in a report");

    // The mail server's user, as far as paperboy can tell: no store, no secret files.
    let config = std::fs::read_to_string(&app.config).unwrap();
    app.set("data_dir", "/dev/null/store");
    app.set("mail.smtp.username", "paperboy");
    app.set("mail.smtp.password_file", "/dev/null/smtp-password");
    let gmail = report("gmail-permanent.eml", "ann@example.org", &ann, "x@y");
    let r = bounce(&app, &gmail, "warn");
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stdout.contains("ann@example.org: permanent"),
        "{}",
        r.stdout
    );

    // A request larger than any report (a well-formed one, with 6 MB of input) is cut off
    // unanswered: no local user makes the daemon hold more than one report's worth.
    let huge = {
        use std::io::Read;
        let command = paperboy::commands::Command::Bounce { recipient: None };
        let request = format!(
            "{{\"command\":{},\"input\":\"{}\"}}\n",
            serde_json::to_string(&command).unwrap(),
            "eHh4".repeat(2_000_000)
        );
        let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        // The daemon stops reading at its limit and hangs up: the write may fail.
        let _ = stream.write_all(request.as_bytes());
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        answer
    };
    assert!(huge.is_empty(), "{}", String::from_utf8_lossy(&huge));

    // Nothing but reports: another command is refused there and changes nothing.
    let asked =
        paperboy::commands::Command::Subscribers(paperboy::commands::SubscribersCommand::Remove {
            email: "bob@example.org".into(),
            forget: true,
        });
    let out = paperboy::commands::admin::request_at(&socket, &asked, None)
        .await
        .unwrap();
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("takes only"), "{}", out.stderr);

    std::fs::write(&app.config, &config).unwrap();
    let list = app.run(&["subscribers", "list"]).stdout;
    assert!(
        status_line(&list, "ann@example.org").contains(" bounced "),
        "{list}"
    );
    assert!(
        status_line(&list, "bob@example.org").contains(" active "),
        "{list}"
    );

    // With no daemon on the socket, the command works on the store itself, which needs
    // what that user lacks: the config's secret files first (exit 78, a set-up to fix).
    assert!(daemon.terminate(Duration::from_secs(15)).success());
    app.set("mail.smtp.username", "paperboy");
    app.set("mail.smtp.password_file", "/dev/null/smtp-password");
    let r = bounce(&app, &gmail, "warn");
    assert_eq!(r.code, Some(78), "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("mail.smtp.password_file"), "{}", r.stderr);
}

/// A store held by another run (no daemon to ask) makes the intake exit 75, so the mail
/// server keeps the report and tries again; a config that cannot be read exits 78.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_store_asks_the_mail_server_to_retry() {
    let Sent {
        pages,
        sink: _sink,
        app,
        messages,
    } = first_digests(EngineKind::default()).await;
    let ann = digest_to(&messages, "ann@example.org").sender.clone();
    let dsn = report("postfix-permanent.eml", "ann@example.org", &ann, "x@y");

    // A run that holds the store while it waits for a slow page.
    pages.set(Reply::Slow(
        Duration::from_secs(20),
        fixture("trending-2025-12-09.html"),
    ));
    let mut run = app.command(&["run-once", "--date", "2025-12-10"]);
    run.stdout(Stdio::null()).stderr(Stdio::null());
    let _run = KillOnDrop(run.spawn().unwrap());
    let lock = app.dir.path().join("data/paperboy.lock");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !is_locked(&lock) {
        assert!(Instant::now() < deadline, "the run never took the store");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = bounce(&app, &dsn, "warn");
    assert_eq!(r.code, Some(75), "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("error:"), "{}", r.stderr);
    drop(_run);

    std::fs::write(&app.config, "[mail]\nbounce_address = 7\n").unwrap();
    let r = bounce(&app, &dsn, "warn");
    assert_eq!(r.code, Some(78), "{}", r.stderr);
}

/// The file outbox records the envelope sender as Return-Path: the VERP address with
/// `mail.bounce_address`, the From address without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_outbox_records_the_envelope_sender() {
    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-09.html"))).await;
    for (bounce_address, expected) in [
        (Some(BOUNCE_ADDRESS), "Return-Path: <bounces+"),
        (None, "Return-Path: <digest@example.org>\r\n"),
    ] {
        let app = TestApp::new(&pages.url(), 25, "");
        app.set("mail.transport", "file");
        if let Some(a) = bounce_address {
            app.set("mail.bounce_address", a);
        }
        app.add("ann@example.org", &["--confirmed"]);
        let r = app.run(&["run-once", "--date", "2025-12-09"]);
        assert!(r.ok(), "{}", r.stderr);
        let outbox = app.dir.path().join("data/outbox");
        let files: Vec<_> = std::fs::read_dir(&outbox)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        assert_eq!(files.len(), 1);
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(text.starts_with(expected), "{}", &text[..200]);
        if bounce_address.is_some() {
            let first = text.lines().next().unwrap();
            assert!(first.ends_with("@example.org>"), "{first}");
        }
    }
}

/// The whole way round with a real MTA: paperboy hands a digest to a private Postfix on
/// loopback, which accepts it; the next hop (smtp-sink) refuses the recipient with 550;
/// Postfix mails a DSN to the VERP sender, whose domain its transport map sends to a
/// `pipe` service running `paperboy bounce`, which marks the reader bounced.
///
/// Set up as the README says for a packaged service: `serve` runs as its own user (root
/// here) with a data directory no one else can open, and Postfix's `pipe` runs `paperboy
/// bounce` as `nobody` (it never runs commands as root), which hands the report to the
/// daemon on `mail.bounce_socket`. The binary is copied where `nobody` can run it.
#[cfg(feature = "e2e")]
mod postfix {
    use std::os::unix::process::CommandExt;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::{Duration, Instant};

    use std::os::unix::fs::PermissionsExt;

    use crate::helpers::{
        PageServer, Reply, Run, SmtpSink, TestApp, clean_env, fixture, free_port, start_serve,
        web_on_free_port,
    };

    const BOUNCE_DOMAIN: &str = "bounce.paperboy.test";

    /// uid and gid of a user, from /etc/passwd.
    fn user(name: &str) -> (u32, u32) {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&name) && f.len() > 3)
            .map(|f| (f[2].parse().unwrap(), f[3].parse().unwrap()))
            .unwrap_or_else(|| panic!("no user {name} in /etc/passwd"))
    }

    fn chown_all(path: &Path, (uid, gid): (u32, u32)) {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
        if path.is_dir() {
            for e in std::fs::read_dir(path).unwrap() {
                chown_all(&e.unwrap().path(), (uid, gid));
            }
        }
    }

    fn postconf_default(name: &str) -> String {
        let out = Command::new("postconf")
            .args(["-d", "-h", name])
            .output()
            .expect("postconf runs (install postfix; scripts/install-test-deps does)");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// A Postfix instance of its own: configuration, queue and data directories under
    /// `root`, listening on a loopback port, relaying everything to `relay_port` but mail
    /// for the bounce domain, which goes to `paperboy bounce`. Stopped when dropped.
    struct Postfix {
        root: PathBuf,
        port: u16,
    }

    impl Postfix {
        fn start(root: &Path, relay_port: u16, bounce_command: &str) -> Self {
            let port = free_port();
            let (etc, queue, data) = (root.join("etc"), root.join("queue"), root.join("data"));
            for d in [&etc, &queue, &data] {
                std::fs::create_dir_all(d).unwrap();
            }
            // Postfix insists that its data directory is its own.
            chown_all(&data, user(&postconf_default("mail_owner")));
            let main_cf = format!(
                "compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
command_directory = {command}
daemon_directory = {daemon}
meta_directory = {meta}
shlib_directory = {shlib}
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
myhostname = relay.paperboy.test
mydomain = paperboy.test
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:{relay_port}
smtp_dns_support_level = disabled
smtp_host_lookup = native
transport_maps = inline:{{{BOUNCE_DOMAIN}=paperboy:}}
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtputf8_enable = no
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
",
                queue = queue.display(),
                data = data.display(),
                root = root.display(),
                command = postconf_default("command_directory"),
                daemon = postconf_default("daemon_directory"),
                meta = postconf_default("meta_directory"),
                shlib = postconf_default("shlib_directory"),
            );
            std::fs::write(etc.join("main.cf"), main_cf).unwrap();
            let master_cf = format!(
                "127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
local     unix  - n n - - local
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
paperboy  unix  - n n - - pipe
  user=nobody argv={bounce_command} --recipient ${{original_recipient}}
"
            );
            std::fs::write(etc.join("master.cf"), master_cf).unwrap();
            let status = Command::new("postfix")
                .arg("-c")
                .arg(&etc)
                .arg("start")
                .status()
                .expect("postfix runs (install postfix; scripts/install-test-deps does)");
            let postfix = Self {
                root: root.to_path_buf(),
                port,
            };
            assert!(
                status.success(),
                "postfix did not start; its log:\n{}",
                postfix.log()
            );
            let deadline = Instant::now() + Duration::from_secs(15);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "postfix does not listen; its log:\n{}",
                    postfix.log()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            postfix
        }

        fn log(&self) -> String {
            std::fs::read_to_string(self.root.join("maillog")).unwrap_or_default()
        }
    }

    impl Drop for Postfix {
        fn drop(&mut self) {
            let master = std::fs::read_to_string(self.root.join("queue/pid/master.pid"))
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok());
            let _ = Command::new("postfix")
                .arg("-c")
                .arg(self.root.join("etc"))
                .arg("stop")
                .status();
            // Its directories go with the test's: wait (bounded) for its master to be gone.
            if let Some(pid) = master {
                let deadline = Instant::now() + Duration::from_secs(15);
                while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postfix_turns_a_refusal_after_acceptance_into_a_bounce() {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test starts Postfix and runs paperboy as nobody: run it as root (CI does)"
        );
        let nobody = user("nobody");
        let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-09.html"))).await;
        // The next hop: accepts the connection, refuses every recipient with a 5xx.
        let sink = SmtpSink::start_with(&["-f", "RCPT"]);

        let root = tempfile::Builder::new()
            .prefix("paperboy-postfix")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(root.path(), PermissionsExt::from_mode(0o755)).unwrap();
        let bin = root.path().join("paperboy");
        std::fs::copy(env!("CARGO_BIN_EXE_paperboy"), &bin).unwrap();

        // paperboy's side: its config readable by all, its data directory by root alone.
        let app = TestApp::new(&pages.url(), 1, "");
        app.set("mail.bounce_address", format!("bounces@{BOUNCE_DOMAIN}"));
        let run_dir = root.path().join("run");
        std::fs::create_dir(&run_dir).unwrap();
        std::fs::set_permissions(&run_dir, PermissionsExt::from_mode(0o755)).unwrap();
        app.set(
            "mail.bounce_socket",
            run_dir.join("bounce.sock").to_str().unwrap(),
        );
        let bounce_command = format!("{} --config {} bounce", bin.display(), app.config.display());
        let postfix = Postfix::start(&root.path().join("postfix"), sink.port, &bounce_command);
        app.set("mail.smtp.port", i64::from(postfix.port));
        std::fs::set_permissions(app.dir.path(), PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&app.config, PermissionsExt::from_mode(0o644)).unwrap();
        let base = web_on_free_port(&app);
        let (mut daemon, _http) = start_serve(&app, &base).await;

        // What nobody cannot do: open the store, or use the admin socket.
        let mut as_nobody = Command::new(&bin);
        clean_env(&mut as_nobody);
        as_nobody
            .arg("--config")
            .arg(&app.config)
            .args(["subscribers", "list"])
            .current_dir(root.path())
            .uid(nobody.0)
            .gid(nobody.1);
        let r: Run = as_nobody.output().expect("the binary runs").into();
        assert!(!r.ok(), "nobody listed the subscribers: {}", r.stdout);

        let run = |args: &[&str]| -> Run { app.run(args) };
        let r = run(&["subscribers", "add", "ann@example.org", "--confirmed"]);
        assert!(r.ok(), "{}", r.stderr);
        // Postfix accepts the digest: as far as paperboy can see, it was sent.
        let r = run(&["run-once", "--date", "2025-12-09"]);
        assert!(r.ok(), "{}", r.stderr);
        assert!(r.stdout.contains("1 sent"), "{}", r.stdout);

        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let list = run(&["subscribers", "list"]).stdout;
            let ann = list.lines().find(|l| l.starts_with("ann@example.org"));
            if ann.is_some_and(|l| l.contains(" bounced ")) {
                let line = ann.unwrap();
                // The reason is the one the refusing server gave, carried by the DSN.
                assert!(line.contains("permanent: 5."), "{line}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "ann was not marked bounced within 60 s:\n{list}\npostfix's log:\n{}",
                postfix.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Postfix logs the pipe's delivery once `paperboy bounce` has exited, which is after
        // the daemon recorded the report it handed over.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = postfix.log();
            let piped = log
                .lines()
                .any(|l| l.contains("relay=paperboy") && l.contains("status=sent"));
            if piped {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the DSN did not go through the pipe service:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(sink.messages().is_empty(), "the next hop refused it");
        assert!(daemon.terminate(Duration::from_secs(15)).success());
    }
}
