//! DKIM through the real binary: a digest read back from `smtp-sink` carries a signature
//! that an independent verifier (dkimpy) accepts, and a key that cannot sign stops paperboy
//! at start, before anything is sent.

use std::path::{Path, PathBuf};

use crate::helpers::{PageServer, Reply, SmtpSink, TestApp, fixture};

fn key(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dkim")
        .join(name)
}

/// dkimpy's verdict on `message`, with `record` as the DNS answer for
/// `pb._domainkey.example.org`, and the signature's `h=` list.
fn verify(message: &[u8], record: &str) -> (bool, String) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), message).unwrap();
    let out = std::process::Command::new("/usr/bin/python3")
        .arg(key("verify.py"))
        .arg(file.path())
        .arg(key(record))
        .arg("pb._domainkey.example.org")
        .output()
        .expect("python3 runs (scripts/install-test-deps installs python3-dkim)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("ModuleNotFoundError"), "{stderr}");
    let h = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success(), h)
}

fn signing_app(pages: &PageServer, sink: &SmtpSink, key_file: &Path) -> TestApp {
    let app = TestApp::new(&pages.url(), sink.port, "");
    app.set("mail.dkim.selector", "pb");
    app.set("mail.dkim.domain", "example.org");
    app.set("mail.dkim.key_file", key_file.display().to_string());
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_from_smtp_sink_carries_a_valid_signature() {
    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-09.html"))).await;
    let sink = SmtpSink::start();
    let app = signing_app(&pages, &sink, &key("rsa-pkcs8.pem"));
    app.add("ann@example.org", &["--confirmed", "--max-items", "3"]);

    let r = app.run(&["check-config"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(
        r.stdout.contains("# mail.dkim key: ******** (from "),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("BEGIN"), "the key is never printed");

    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(r.ok(), "{}", r.stderr);
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    let (ok, h) = verify(&messages[0].raw, "rsa.txt");
    assert!(
        ok,
        "the digest as received does not verify:\n{}",
        String::from_utf8_lossy(&messages[0].raw)
    );
    let signed: Vec<&str> = h.split(':').collect();
    assert!(
        signed.contains(&"list-unsubscribe") && signed.contains(&"list-unsubscribe-post"),
        "h={h}"
    );
    // Another key's record does not verify it: the check can fail.
    assert!(!verify(&messages[0].raw, "ed25519.txt").0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_cannot_sign_stops_paperboy_before_sending() {
    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-09.html"))).await;
    let sink = SmtpSink::start();
    let app = signing_app(&pages, &sink, &key("rsa-768.pem"));
    // Straight into the store: with this key no command gets as far as adding one.
    app.seed(1, |_| Default::default()).await;
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(!r.ok());
    assert!(
        r.stderr.contains("mail.dkim.key_file") && r.stderr.contains("768 bits"),
        "{}",
        r.stderr
    );
    let missing = app.dir.path().join("no-such.pem");
    app.set("mail.dkim.key_file", missing.display().to_string());
    let r = app.run(&["check-config"]);
    assert!(!r.ok());
    assert!(
        r.stderr.contains("mail.dkim.key_file") && r.stderr.contains("no-such.pem"),
        "{}",
        r.stderr
    );
    assert!(sink.messages().is_empty());
}
