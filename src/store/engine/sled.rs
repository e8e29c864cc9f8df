//! sled as the engine: each tree a sled tree, in `data_dir/sled/`. The default.
//!
//! sled 0.34.7 (its last release) can hang under concurrent load (spacejam/sled#1412). What
//! it hangs on is one process-wide reader-writer lock (`concurrency_control`): every read
//! and write takes it shared, every transaction and batch exclusively, and its background
//! flusher holds it shared while it waits for buffers other threads are filling. Once a
//! transaction queues for the lock, new shared takers queue behind it, and a holder waiting
//! on one of them never wakes. paperboy drives sled so that this cannot happen:
//!
//! - no background flusher (`flush_every_ms(None)`): writes are made durable by explicit
//!   flushes only, at the points the store chooses, as with SQLite;
//! - every write, transaction and flush goes through one process-wide gate ([`WRITES`]),
//!   so there is one writer at a time, a transaction never waits on another writer, and a
//!   flush never races a transaction; reads take no gate and go on meanwhile.
//!
//! The benchmarks and the soak in `bench/` drive it the way the daemon does (planning,
//! group-committed sends, pruning, web reads alongside) and record that it finishes.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock};

use sled::Transactional;
use sled::transaction::{
    ConflictableTransactionError, TransactionError, TransactionalTree, UnabortableTransactionError,
};

use super::{Engine, EngineKind, Entry, Txn, disk_usage, failed};
use crate::store::{Result, StoreError};

/// The store's directory in the data directory.
pub const DIR: &str = "sled";

/// sled's own default tree: paperboy never writes to it, and backups leave it out.
const DEFAULT_TREE: &[u8] = b"__sled__default";

/// sled caches up to 1 GB by default, and its accounting counts far less than the memory
/// its cached pages take: a 100,000-subscriber run peaked at 308 MB with 32 MiB, 210 MB with
/// 8 MiB, 137 MB with 1 MiB (SQLite: 54 MB), for a run a few per cent slower. An edition
/// reads each record about once, so a small cache costs little.
const CACHE_BYTES: u64 = 1024 * 1024;

/// Entries per batch when a compaction copies a tree.
const COPY_BATCH: usize = 1024;

/// One writer at a time in the whole process: sled's lock is process-wide too.
static WRITES: Mutex<()> = Mutex::new(());

fn writing() -> MutexGuard<'static, ()> {
    // Nothing is left half-done by a panic while holding the gate: sled's own writes are
    // atomic. A poisoned gate is still a gate.
    WRITES.lock().unwrap_or_else(|p| p.into_inner())
}

fn err(e: impl std::fmt::Display) -> StoreError {
    failed(EngineKind::Sled, e)
}

pub struct SledEngine {
    db: sled::Db,
    /// Where it lives: `data_dir/sled`.
    dir: PathBuf,
    /// The trees opened so far, by name.
    trees: RwLock<BTreeMap<String, sled::Tree>>,
}

impl SledEngine {
    /// Opens the store in `dir`, finishing or undoing a compaction a crash interrupted. The
    /// caller holds the data directory's lock, so no other process has it open.
    pub fn open(dir: &Path) -> Result<Self> {
        recover_compaction(dir)?;
        let engine = Self {
            db: open_db(dir)?,
            dir: dir.to_path_buf(),
            trees: RwLock::new(BTreeMap::new()),
        };
        engine.open_every_tree()?;
        Ok(engine)
    }

    fn open_every_tree(&self) -> Result<()> {
        let names: Vec<String> = self
            .db
            .tree_names()
            .into_iter()
            .filter(|n| n.as_ref() != DEFAULT_TREE)
            .map(|n| String::from_utf8_lossy(&n).into_owned())
            .collect();
        for name in names {
            self.tree(&name)?;
        }
        Ok(())
    }

    /// The tree of this name, opened (and created) on first use.
    fn tree(&self, name: &str) -> Result<sled::Tree> {
        if let Some(t) = self.trees.read().expect("not poisoned").get(name) {
            return Ok(t.clone());
        }
        let _gate = writing();
        let mut trees = self.trees.write().expect("not poisoned");
        if let Some(t) = trees.get(name) {
            return Ok(t.clone());
        }
        let tree = self.db.open_tree(name).map_err(err)?;
        trees.insert(name.to_string(), tree.clone());
        Ok(tree)
    }

    /// Runs `f` in one sled transaction over `trees` (names and trees in the same order).
    fn transact(
        &self,
        names: &[String],
        trees: &[sled::Tree],
        f: &mut dyn FnMut(&dyn Txn) -> Result<()>,
    ) -> Result<()> {
        // sled wants a closure it may call again; ours is called through a cell. With the
        // gate held nothing else writes, so sled has no conflict to retry, but a retry
        // would be harmless: the closure only reads and writes through the transaction.
        let f = std::cell::RefCell::new(f);
        let _gate = writing();
        let result = trees.transaction(|views: &Vec<TransactionalTree>| {
            let txn = SledTxn {
                names,
                views,
                conflict: std::cell::Cell::new(false),
            };
            match (f.borrow_mut())(&txn) {
                Ok(()) => Ok(()),
                Err(_) if txn.conflict.get() => Err(ConflictableTransactionError::Conflict),
                Err(e) => Err(ConflictableTransactionError::Abort(e)),
            }
        });
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(err(e)),
        }
    }
}

/// Opens (or creates) a sled database in `dir` with paperboy's settings.
fn open_db(dir: &Path) -> Result<sled::Db> {
    // Compressed (zstd, level 3): records are JSON, and compressed they take about a third
    // of the bytes. Both settings are fixed when a store is created (sled refuses to open it
    // with others). No background flusher: see the module's doc.
    let config = sled::Config::new()
        .path(dir)
        .cache_capacity(CACHE_BYTES)
        .mode(sled::Mode::LowSpace)
        .use_compression(true)
        .compression_factor(3)
        .flush_every_ms(None);
    // sled locks its own directory too, and the file holding that lock can outlive the last
    // handle of a store closed in this process (a compaction, a test reopening a store):
    // sled frees its structures through epoch-based reclamation, so the file is closed only
    // once the epoch moves on and someone collects. With the data directory's lock held,
    // the holder can only be that: collect and wait a little, never for another process.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            // sled reports its lock as a plain I/O error with this text.
            Err(sled::Error::Io(e))
                if e.to_string().starts_with("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                for _ in 0..3 {
                    sled::crossbeam_pin().flush();
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => {
                return Err(StoreError::Open {
                    path: dir.to_path_buf(),
                    reason: e.to_string(),
                });
            }
        }
    }
}

/// Where a compaction writes the new store, and where the old one waits to be deleted.
fn beside(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Present once a compaction's copy is complete and durable: from then on the copy is the
/// store, and a start after a crash finishes the swap instead of deleting the copy.
fn marker(dir: &Path) -> PathBuf {
    beside(dir, ".compacted")
}

/// Whether `data_dir/sled` is, or is about to become again, a sled store: a crash in the
/// middle of a compaction's swap leaves it under `sled.old` or `sled.compacting` for a moment.
pub fn holds_store(dir: &Path) -> bool {
    dir.exists() || beside(dir, ".old").exists() || marker(dir).exists()
}

fn io_error(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Open {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Syncs a directory, so that the renames and creations in it are durable.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))
}

/// Puts a compaction a crash interrupted right: before its marker the copy is incomplete
/// and goes; after it the copy is the store, and the swap is finished.
fn recover_compaction(dir: &Path) -> Result<()> {
    let (copy, old, done) = (beside(dir, ".compacting"), beside(dir, ".old"), marker(dir));
    let parent = dir.parent().unwrap_or(Path::new("."));
    if !done.exists() {
        if copy.exists() {
            std::fs::remove_dir_all(&copy).map_err(|e| io_error(&copy, e))?;
        }
        return Ok(());
    }
    if copy.exists() {
        if dir.exists() {
            std::fs::rename(dir, &old).map_err(|e| io_error(dir, e))?;
        }
        std::fs::rename(&copy, dir).map_err(|e| io_error(&copy, e))?;
        sync_dir(parent)?;
    }
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| io_error(&old, e))?;
    }
    std::fs::remove_file(&done).map_err(|e| io_error(&done, e))?;
    sync_dir(parent)
}

impl Drop for SledEngine {
    fn drop(&mut self) {
        // Written but not flushed is lost on purpose only by a crash: a store closed in order
        // keeps everything, and sled's threads have nothing left to write once it returns.
        let _gate = writing();
        if let Err(e) = self.db.flush() {
            tracing::warn!(error = %e, "flushing the sled store on close failed");
        }
    }
}

fn bound(b: Bound<&[u8]>) -> Bound<sled::IVec> {
    match b {
        Bound::Included(k) => Bound::Included(k.into()),
        Bound::Excluded(k) => Bound::Excluded(k.into()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Entries read from sled, as the store takes them.
fn entries(
    items: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
) -> Result<Vec<Entry>> {
    items
        .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(err))
        .collect()
}

impl Engine for SledEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Sled
    }

    fn create_trees(&self, trees: &[&str]) -> Result<()> {
        for name in trees {
            self.tree(name)?;
        }
        Ok(())
    }

    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let value = self.tree(tree)?.get(key).map_err(err)?;
        Ok(value.map(|v| v.to_vec()))
    }

    fn put(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let tree = self.tree(tree)?;
        let _gate = writing();
        tree.insert(key, value).map_err(err)?;
        Ok(())
    }

    fn transaction(&self, f: &mut dyn FnMut(&dyn Txn) -> Result<()>) -> Result<()> {
        let (names, trees): (Vec<String>, Vec<sled::Tree>) = self
            .trees
            .read()
            .expect("not poisoned")
            .iter()
            .map(|(n, t)| (n.clone(), t.clone()))
            .unzip();
        self.transact(&names, &trees, f)
    }

    fn range_chunk(
        &self,
        tree: &str,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        entries(
            self.tree(tree)?
                .range::<sled::IVec, _>((bound(from), bound(to)))
                .take(limit),
        )
    }

    fn last_n_before(&self, tree: &str, before: Option<&[u8]>, n: usize) -> Result<Vec<Entry>> {
        let to: Bound<sled::IVec> = before.map_or(Bound::Unbounded, |k| Bound::Excluded(k.into()));
        entries(
            self.tree(tree)?
                .range::<sled::IVec, _>((Bound::Unbounded, to))
                .rev()
                .take(n),
        )
    }

    fn trees(&self) -> Result<Vec<String>> {
        Ok(self
            .trees
            .read()
            .expect("not poisoned")
            .keys()
            .cloned()
            .collect())
    }

    fn drop_tree(&self, tree: &str) -> Result<()> {
        let _gate = writing();
        self.trees.write().expect("not poisoned").remove(tree);
        self.db.drop_tree(tree).map_err(err)?;
        Ok(())
    }

    fn load(&self, entries: &[(&str, &[u8], &[u8])]) -> Result<()> {
        let mut names: Vec<String> = entries.iter().map(|(t, _, _)| t.to_string()).collect();
        names.sort();
        names.dedup();
        let trees = names
            .iter()
            .map(|n| self.tree(n))
            .collect::<Result<Vec<_>>>()?;
        self.transact(&names, &trees, &mut |tx| {
            for &(tree, k, v) in entries {
                tx.put(tree, k, v)?;
            }
            Ok(())
        })
    }

    fn flush(&self) -> Result<()> {
        let _gate = writing();
        self.db.flush().map_err(err)?;
        Ok(())
    }

    fn disk_bytes(&self) -> u64 {
        disk_usage(&self.dir)
    }

    /// Copies every tree, entry for entry, into a new sled store beside this one, makes it
    /// durable, then marks it complete: the next [`SledEngine::open`] swaps it in. sled
    /// frees the space of rewritten pages only as it cleans segments, which its background
    /// flusher does and paperboy runs without; a copy holds each record once.
    fn write_compacted_copy(&self) -> Result<bool> {
        let copy = beside(&self.dir, ".compacting");
        let parent = self.dir.parent().unwrap_or(Path::new("."));
        {
            let _gate = writing();
            self.db.flush().map_err(err)?;
            if copy.exists() {
                std::fs::remove_dir_all(&copy).map_err(|e| io_error(&copy, e))?;
            }
            let new = open_db(&copy)?;
            for (name, tree) in self.trees.read().expect("not poisoned").iter() {
                let target = new.open_tree(name).map_err(err)?;
                let mut batch = sled::Batch::default();
                let mut pending = 0;
                for item in tree.iter() {
                    let (k, v) = item.map_err(err)?;
                    batch.insert(k, v);
                    pending += 1;
                    if pending == COPY_BATCH {
                        target
                            .apply_batch(std::mem::take(&mut batch))
                            .map_err(err)?;
                        pending = 0;
                    }
                }
                target.apply_batch(batch).map_err(err)?;
            }
            new.flush().map_err(err)?;
        }
        let done = marker(&self.dir);
        std::fs::File::create(&done)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_error(&done, e))?;
        sync_dir(parent)?;
        Ok(true)
    }
}

/// A sled transaction over the trees, looked up by name.
struct SledTxn<'a> {
    names: &'a [String],
    views: &'a [TransactionalTree],
    /// Set when sled reported a conflict, so the transaction is retried, not aborted.
    conflict: std::cell::Cell<bool>,
}

impl SledTxn<'_> {
    fn view(&self, tree: &str) -> Result<&TransactionalTree> {
        self.names
            .binary_search_by(|n| n.as_str().cmp(tree))
            .map(|i| &self.views[i])
            .map_err(|_| err(format!("no tree {tree:?} in this transaction")))
    }

    fn fail(&self, e: UnabortableTransactionError) -> StoreError {
        if matches!(e, UnabortableTransactionError::Conflict) {
            self.conflict.set(true);
        }
        err(e)
    }
}

impl Txn for SledTxn<'_> {
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let value = self.view(tree)?.get(key).map_err(|e| self.fail(e))?;
        Ok(value.map(|v| v.to_vec()))
    }

    fn put(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<()> {
        self.view(tree)?
            .insert(key, value)
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    fn remove(&self, tree: &str, key: &[u8]) -> Result<bool> {
        let old = self.view(tree)?.remove(key).map_err(|e| self.fail(e))?;
        Ok(old.is_some())
    }
}
