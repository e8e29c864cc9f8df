//! paperboy: trending research papers from Hugging Face Papers, mailed as a daily digest.
//!
//! The binary is a thin shell around [`cli::main`]; everything else is here so tests can
//! drive it directly.

pub mod admin;
pub mod app;
pub mod backup;
pub mod cli;
pub mod commands;
pub mod config;
pub mod delivery;
pub mod digest;
pub mod domain;
pub mod due;
pub mod edition;
pub mod mail;
pub mod metrics;
pub mod notices;
pub mod render;
pub mod schedule;
pub mod service;
pub mod smtp;
pub mod source;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tokens;
pub mod transfer;
pub mod watchdog;
pub mod web;
