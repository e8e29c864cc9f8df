//! `backup` and `restore`: the whole store and the link-signing key in one file, so a
//! restored paperboy has every subscriber, ledger and delivery, and the links in mail
//! already sent keep working.
//!
//! The file is JSON Lines: a header with the key, then one line per stored entry (base64).
//! A backup is taken between editions (it waits for a running one to finish), so no
//! delivery is caught half-recorded.

use std::io::Write;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::store::Store;

const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Header {
    paperboy_backup: u32,
    created_at: chrono::DateTime<Utc>,
    secret_key: String,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    tree: String,
    key: String,
    value: String,
}

pub async fn backup(ctx: &super::Context) -> anyhow::Result<Vec<u8>> {
    let _between_editions = ctx.editions.between_editions().await;
    let key_path = ctx.secret_key.clone();
    let key = std::fs::read(&key_path)
        .with_context(|| format!("reading the signing key {}", key_path.display()))?;
    let mut out = Vec::new();
    serde_json::to_writer(
        &mut out,
        &Header {
            paperboy_backup: FORMAT,
            created_at: Utc::now(),
            secret_key: STANDARD.encode(key),
        },
    )?;
    out.push(b'\n');
    for (tree, k, v) in ctx.store.dump()? {
        serde_json::to_writer(
            &mut out,
            &Entry {
                tree,
                key: STANDARD.encode(k),
                value: STANDARD.encode(v),
            },
        )?;
        out.push(b'\n');
    }
    Ok(out)
}

/// Restores into the configured data directory, which must hold no data yet.
pub async fn restore(settings: &Settings, bytes: &[u8]) -> anyhow::Result<String> {
    let text = std::str::from_utf8(bytes).context("the backup is not UTF-8")?;
    let mut lines = text.lines().enumerate();
    let (_, first) = lines.next().context("the backup is empty")?;
    let header: Header =
        serde_json::from_str(first).context("line 1 is not a paperboy backup header")?;
    if header.paperboy_backup != FORMAT {
        bail!(
            "backup format {} is not one this paperboy reads",
            header.paperboy_backup
        );
    }
    let key = STANDARD
        .decode(&header.secret_key)
        .context("the key in the backup is damaged")?;
    let mut entries = Vec::new();
    for (i, line) in lines {
        let e: Entry = serde_json::from_str(line).with_context(|| format!("line {}", i + 1))?;
        let decode = |s: &str| {
            STANDARD
                .decode(s)
                .with_context(|| format!("line {}", i + 1))
        };
        entries.push((e.tree, decode(&e.key)?, decode(&e.value)?));
    }
    // Everything is read and checked before anything is written.
    std::fs::create_dir_all(&settings.data_dir)?;
    // The configured engine's store, empty: opening refuses a directory that holds the other
    // engine's store, before the key is written.
    let store = Store::open(&settings.data_dir, settings.store.engine)?;
    if !store.is_empty()? {
        bail!(
            "{} already holds data; restore into an empty data directory",
            settings.data_dir.display()
        );
    }
    let key_path = settings.secret_key_path();
    match std::fs::read(&key_path) {
        Ok(existing) if existing != key => bail!(
            "{} holds another signing key; restore into an empty data directory",
            key_path.display()
        ),
        Ok(_) => {}
        Err(_) => {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut f = options
                .open(&key_path)
                .with_context(|| format!("writing {}", key_path.display()))?;
            f.write_all(&key)?;
            f.sync_all()?;
        }
    }
    store.load(&entries)?;
    let subscribers = store
        .subscribers()
        .context("the restored store cannot be read")?
        .len();
    store.flush().await?;
    Ok(format!(
        "restored {} entries ({subscribers} subscribers) from a backup of {}",
        entries.len(),
        header.created_at.to_rfc3339()
    ))
}
