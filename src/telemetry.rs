//! Logging: human-readable lines on stderr, levels from `RUST_LOG` (default `info`); JSON
//! lines when `PAPERBOY_LOG_FORMAT=json`, or under journald (`$JOURNAL_STREAM`) unless
//! `PAPERBOY_LOG_FORMAT=text`.
//!
//! Subscribers' addresses never reach a log line in full; code logs their domain only.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
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
