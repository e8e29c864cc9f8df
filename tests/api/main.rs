//! paperboy's integration tests: the real binary against an SMTP sink and an HTTP server
//! serving pages shaped like Hugging Face Papers.
//!
//! `cargo test` needs nothing but Rust: the sink is an SMTP server inside this process. With
//! the `e2e` feature (`scripts/test`, which installs what it needs) the sink is Postfix's
//! `smtp-sink`, and the groups that drive programs of the system run too: see
//! `LEFT_OUT_WITHOUT_E2E` below.

mod archive;
mod bounces;
#[cfg(feature = "e2e")]
mod browser;
mod cadence;
mod cli;
mod demo;
mod digest;
mod dkim;
mod explain;
mod faults;
mod helpers;
mod layout;
mod logs;
#[cfg(feature = "e2e")]
mod mailcheck;
mod properties;
mod service;
mod smtp_server;
mod sources;
mod web;
mod why;

/// What a run without the `e2e` feature leaves out, and what each group needs.
#[cfg(not(feature = "e2e"))]
const LEFT_OUT_WITHOUT_E2E: &[&str] = &[
    "browser: the reader's journey in headless Chromium (chromium, chromedriver)",
    "mailcheck: the Nu HTML checker, the caniemail check and phone/desktop screenshots \
     of the mail (java, node with tools/mailcheck's packages, chromium, chromedriver)",
    "dkim: dkimpy verifying the signature of a digest from the binary, and the unit tests \
     of src/mail/dkim.rs that do the same (python3-dkim, python3-nacl)",
    "smtp_server: smtp-sink itself answering as the in-process server's table says, and \
     every other test sending to smtp-sink instead of the in-process server (postfix)",
    "bounces::postfix: a private Postfix on loopback turning a refusal after acceptance \
     into a DSN that its pipe service hands to `paperboy bounce` (postfix, run as root)",
    "the send_rate benchmark's check run, paperboy against smtp-source (postfix, time)",
];

/// Says, once per run without `e2e`, which groups were left out and how to run them all.
/// Written to stderr directly: the test harness would hide `eprintln!` of a passing test.
#[cfg(not(feature = "e2e"))]
#[test]
fn e2e_groups_left_out() {
    use std::io::Write;
    let mut text = String::from(
        "\nnote: without the `e2e` feature these tests were left out (they need programs \
         beyond Rust):\n",
    );
    for group in LEFT_OUT_WITHOUT_E2E {
        text.push_str(&format!("  - {group}\n"));
    }
    text.push_str(
        "run everything with `scripts/test` (installs them on Debian/Ubuntu, then runs \
         `cargo test --all-targets --features e2e`)\n\n",
    );
    let _ = std::io::stderr().write_all(text.as_bytes());
}
