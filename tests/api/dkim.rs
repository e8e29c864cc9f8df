//! DKIM through the real binary: a digest read back from the SMTP sink carries a signature
//! over the unsubscribe headers, which an independent verifier (dkimpy, with the `e2e`
//! feature) accepts, and a key that cannot sign stops paperboy at start, before anything is
//! sent.

use std::path::{Path, PathBuf};

use crate::helpers::{PageServer, Received, Reply, SmtpSink, TestApp, fixture};

fn key(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dkim")
        .join(name)
}

/// dkimpy's verdict on `message`, with `record` as the DNS answer for
/// `pb._domainkey.example.org`, and the signature's `h=` list.
#[cfg(feature = "e2e")]
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

/// The one digest a signing paperboy sends, read back from the sink; on the way,
/// `check-config` names the key without printing it.
async fn signed_digest() -> Received {
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
    let mut messages = sink.messages();
    assert_eq!(messages.len(), 1);
    messages.remove(0)
}

/// The signature's tags as the digest carries them: the key named, and `h=` covering the
/// unsubscribe headers as RFC 8058 asks. (Whether it verifies is dkimpy's to say, below.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_from_the_sink_is_signed_over_the_unsubscribe_headers() {
    let digest = signed_digest().await;
    let signature = digest
        .header("DKIM-Signature")
        .expect("a DKIM-Signature header");
    let tags: Vec<(String, String)> = signature
        .split(';')
        .filter_map(|tag| tag.split_once('='))
        .map(|(name, value)| {
            let value: String = value.split_whitespace().collect();
            (name.trim().to_string(), value)
        })
        .collect();
    let tag = |name: &str| {
        tags.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no {name}= in {signature}"))
    };
    assert_eq!(tag("a"), "rsa-sha256");
    assert_eq!(tag("d"), "example.org");
    assert_eq!(tag("s"), "pb");
    let signed: Vec<String> = tag("h").split(':').map(str::to_lowercase).collect();
    for header in [
        "from",
        "subject",
        "list-unsubscribe",
        "list-unsubscribe-post",
    ] {
        assert!(
            signed.iter().any(|h| h == header),
            "h= lacks {header}: {signature}"
        );
    }
}

#[cfg(feature = "e2e")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_from_smtp_sink_carries_a_valid_signature() {
    let digest = signed_digest().await;
    let (ok, h) = verify(&digest.raw, "rsa.txt");
    assert!(
        ok,
        "the digest as received does not verify:\n{}",
        String::from_utf8_lossy(&digest.raw)
    );
    let signed: Vec<&str> = h.split(':').collect();
    assert!(
        signed.contains(&"list-unsubscribe") && signed.contains(&"list-unsubscribe-post"),
        "h={h}"
    );
    // Another key's record does not verify it: the check can fail.
    assert!(!verify(&digest.raw, "ed25519.txt").0);
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

/// A confirmation notice, as the web form sends it through a signing paperboy: a
/// Message-ID of its own (so no relay adds one under the signature), marked as made by a
/// program, and with dkimpy, a signature that still verifies after a relay has put its
/// usual headers on top.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_has_its_own_message_id_and_survives_a_relay() {
    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-09.html"))).await;
    let sink = SmtpSink::start();
    let app = signing_app(&pages, &sink, &key("rsa-pkcs8.pem"));
    let base = crate::helpers::web_on_free_port(&app);
    let (_daemon, http) = crate::helpers::start_serve(&app, &base).await;
    let r = http
        .post(format!("{base}/subscribe"))
        .form(&[("email", "ann@example.org")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let notice = sink.wait_for(1).await.pop().unwrap();

    let id = notice.header("Message-ID").expect("a Message-ID");
    let inner = id
        .strip_prefix("<notice.confirm.")
        .and_then(|s| s.strip_suffix("@example.org>"))
        .unwrap_or_else(|| panic!("{id}"));
    assert!(
        inner.len() == 16 && inner.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    assert_eq!(
        notice.header("Auto-Submitted").as_deref(),
        Some("auto-generated")
    );

    #[cfg(feature = "e2e")]
    {
        let (ok, h) = verify(&notice.raw, "rsa.txt");
        assert!(ok, "{}", String::from_utf8_lossy(&notice.raw));
        assert!(h.split(':').any(|h| h == "message-id"), "h={h}");
        // What Postfix puts on top on the way; the signature does not cover it.
        let eol = if notice.raw.windows(2).any(|w| w == b"\r\n") {
            "\r\n"
        } else {
            "\n"
        };
        let on_top = [
            "Return-Path: <digest@example.org>",
            "Received: from papers.example.org (papers.example.org [192.0.2.10])",
            "\tby mx.example.net (Postfix) with ESMTPS id 4XyZ1;",
            "\tMon, 8 Dec 2025 08:00:01 +0000 (UTC)",
        ];
        let mut relayed = on_top.map(|l| format!("{l}{eol}")).concat().into_bytes();
        relayed.extend_from_slice(&notice.raw);
        assert!(
            verify(&relayed, "rsa.txt").0,
            "relayed notice does not verify"
        );
    }
}
