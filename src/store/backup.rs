//! The store's side of `paperboy backup` and `restore` (see `crate::commands::backup`): every entry
//! of every tree out, and back in, whatever the engine.

use super::{DELIVERIES, EDITIONS, PAPERS, RawEntry, Result, SUBSCRIBERS, Store};

impl Store {
    /// Every entry of every tree, for a backup.
    pub fn dump(&self) -> Result<Vec<RawEntry>> {
        let mut out = Vec::new();
        for tree in self.db.trees()? {
            for item in self.db.iter(&tree) {
                let (k, v) = item?;
                out.push((tree.clone(), k, v));
            }
        }
        Ok(out)
    }

    /// Whether nothing but the schema version is stored yet.
    pub fn is_empty(&self) -> Result<bool> {
        for tree in [SUBSCRIBERS, EDITIONS, PAPERS, DELIVERIES] {
            if !self.db.is_empty(tree)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Writes entries from a backup, all in one transaction.
    pub fn load(&self, entries: &[RawEntry]) -> Result<()> {
        self.db.load(
            entries
                .iter()
                // Backups written by earlier versions on sled list its (empty, unused)
                // default tree.
                .filter(|(tree, _, _)| tree != "__sled__default")
                .map(|(tree, k, v)| (tree.as_str(), k.as_slice(), v.as_slice())),
        )
    }
}
