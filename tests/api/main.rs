//! paperboy's integration tests: the real binary against an SMTP sink and an HTTP server
//! serving pages shaped like Hugging Face Papers.
//!
//! The sink is Postfix's `smtp-sink` with the `e2e` feature (`scripts/test`), else an SMTP
//! server inside this process, so that `cargo test` needs nothing but Rust.

mod archive;
mod browser;
mod cadence;
mod cli;
mod digest;
mod dkim;
mod explain;
mod faults;
mod helpers;
mod mailcheck;
mod properties;
mod service;
mod smtp_server;
mod sources;
mod web;
mod why;
