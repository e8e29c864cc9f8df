//! Logging: human-readable lines on stderr, levels from `RUST_LOG` (default `info`); JSON
//! lines when `PAPERBOY_LOG_FORMAT=json`, or under journald (`$JOURNAL_STREAM`) unless
//! `PAPERBOY_LOG_FORMAT=text`.
//!
//! Subscribers' addresses never reach a log line in full; code logs their domain only.

pub mod metrics;
pub mod systemd;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// An error and its causes as `a: b: c` on one line: what logs and the CLI's `error:` line
/// show. Each error's message says only its own part, so nothing is repeated.
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        parts.push(err.to_string().replace(['\r', '\n'], " "));
        cur = err.source();
    }
    parts.join(": ")
}

/// A library's error whose message already quotes its cause, as lettre's, askama's and
/// css-inline's do: held as the source of one of ours, it ends the chain, so that
/// [`one_line`] prints that cause once. The error itself stays at hand in `.0`.
#[derive(Debug, Clone)]
pub struct Flat<E>(pub E);

impl<E: std::fmt::Display> std::fmt::Display for Flat<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for Flat<E> {}

pub fn init() {
    init_at("info")
}

/// [`init`], logging at `default` when `RUST_LOG` does not say.
pub fn init_at(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let format = std::env::var("PAPERBOY_LOG_FORMAT").unwrap_or_default();
    let json =
        format == "json" || (format != "text" && std::env::var_os("JOURNAL_STREAM").is_some());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
}
