//! paperboy: trending research papers from Hugging Face Papers, mailed as a daily digest.
//!
//! The binary is a thin shell around [`cli::main`]; everything else is here so tests can
//! drive it directly.

pub mod bounce;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod domain;
pub mod edition;
pub mod files;
pub mod mail;
pub mod parts;
pub mod render;
pub mod schedule;
pub mod source;
pub mod store;
pub mod telemetry;
pub mod tokens;
pub mod web;
