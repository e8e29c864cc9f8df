//! paperboy's integration tests: the real binary against a real SMTP server (`smtp-sink`)
//! and an HTTP server serving pages shaped like Hugging Face Papers.

mod archive;
mod browser;
mod cadence;
mod cli;
mod digest;
mod dkim;
mod explain;
mod faults;
mod helpers;
mod layout;
mod mailcheck;
mod properties;
mod service;
mod sources;
mod web;
mod why;
