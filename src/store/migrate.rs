//! Stores written by earlier versions lived in sled, in `data_dir/db`. The first start of
//! this version copies every tree, entry for entry, into the SQLite file (the encodings are
//! the same), then renames the sled directory `db.sled-migrated`: nothing is deleted, and an
//! operator can remove it once satisfied.
//!
//! The copy is written to a temporary file and renamed into place only when complete, so a
//! crash in the middle leaves the sled store as it was and the next start begins again.

use std::path::Path;

use super::db::{self, Db};
use super::{Result, StoreError};

/// sled's own default tree: paperboy never wrote to it.
pub const SLED_DEFAULT_TREE: &[u8] = b"__sled__default";

/// Where sled kept the store, relative to the data directory.
pub const SLED_DIR: &str = "db";
/// What the sled directory is renamed to once copied.
pub const SLED_RETIRED: &str = "db.sled-migrated";

/// Moves a sled store in `data_dir` over to SQLite, if there is one. The caller holds the
/// data directory's lock.
pub fn from_sled(data_dir: &Path) -> Result<()> {
    let old = data_dir.join(SLED_DIR);
    if !old.is_dir() {
        return Ok(());
    }
    let fail = |reason: String| StoreError::Migrate {
        path: old.clone(),
        reason,
    };
    let target = data_dir.join(db::FILE);
    let retired = data_dir.join(SLED_RETIRED);
    if target.exists() {
        // Copied by an earlier start that stopped before renaming the old directory.
        return std::fs::rename(&old, &retired).map_err(|e| fail(e.to_string()));
    }
    let partial = data_dir.join(format!("{}.partial", db::FILE));
    for stale in [
        &partial,
        &data_dir.join(format!("{}.partial-wal", db::FILE)),
    ] {
        if stale.exists() {
            std::fs::remove_file(stale).map_err(|e| fail(e.to_string()))?;
        }
    }
    let sled = sled::Config::new()
        .path(&old)
        .open()
        .map_err(|e| fail(e.to_string()))?;
    let mut entries = 0usize;
    {
        let copy = Db::open(&partial, &[])?;
        for name in sled.tree_names() {
            if name.as_ref() == SLED_DEFAULT_TREE {
                continue;
            }
            let tree = sled.open_tree(&name).map_err(|e| fail(e.to_string()))?;
            let name = String::from_utf8_lossy(&name).into_owned();
            // One tree in memory at a time.
            let rows = tree
                .iter()
                .map(|item| item.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| fail(e.to_string()))?;
            entries += rows.len();
            copy.load(
                rows.iter()
                    .map(|(k, v)| (name.as_str(), k.as_slice(), v.as_slice())),
            )?;
        }
        copy.flush()?;
    }
    drop(sled);
    std::fs::rename(&partial, &target).map_err(|e| fail(e.to_string()))?;
    std::fs::rename(&old, &retired).map_err(|e| fail(e.to_string()))?;
    tracing::info!(
        entries,
        from = %old.display(),
        to = %target.display(),
        "store moved from sled to SQLite; the old directory is kept as {SLED_RETIRED} and can be deleted"
    );
    Ok(())
}
