//! The storage engines under the store: sled (the default) and SQLite, behind one small
//! key-value interface.
//!
//! The store above thinks in named trees of byte keys and values: get, put, remove, ordered
//! ranges, multi-tree transactions, flush. [`Engine`] is that and nothing more, so every
//! record keeps one encoding whatever holds it, and a backup (a list of tree, key, value)
//! taken on one engine restores on the other. [`Db`] is what the store holds: an engine plus
//! the parts that are the same for both (chunked ranges, prefix scans, checked tree names).
//!
//! Durability is the caller's: a write is durable once [`Db::flush`] has returned. Neither
//! engine syncs on its own between flushes (sled's background flusher is off), so the
//! delivery semantics depend only on the flush points the store chooses.
//!
//! One process per data directory: an exclusive `flock` on `paperboy.lock` ([`lock`]), held
//! while the store is open, whatever the engine (sled takes a lock of its own as well).

mod sled;
mod sqlite;

use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock, RwLockReadGuard};

use serde::{Deserialize, Serialize};

use super::{Result, StoreError};

/// Held (flock) by the process that has the store open.
pub const LOCK_FILE: &str = "paperboy.lock";

/// How many entries a range reads at a time: iterations over every subscriber or every
/// delivery of an edition hold neither the whole list nor a lock of the engine.
const CHUNK: usize = 512;

/// A key-value pair as stored.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Which engine keeps the store (`store.engine`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    /// sled, in `data_dir/sled/`: the default.
    #[default]
    Sled,
    /// SQLite, in `data_dir/paperboy.sqlite`: smaller on disk, for the largest lists.
    Sqlite,
}

impl EngineKind {
    pub const ALL: [EngineKind; 2] = [EngineKind::Sled, EngineKind::Sqlite];

    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Sled => "sled",
            EngineKind::Sqlite => "sqlite",
        }
    }

    /// Where this engine keeps a store in `data_dir`: a directory for sled, a file for SQLite.
    pub fn location(self, data_dir: &Path) -> PathBuf {
        match self {
            EngineKind::Sled => data_dir.join(sled::DIR),
            EngineKind::Sqlite => data_dir.join(sqlite::FILE),
        }
    }

    /// Whether `data_dir` holds a store of this engine.
    pub fn holds_store(self, data_dir: &Path) -> bool {
        match self {
            EngineKind::Sled => sled::holds_store(&self.location(data_dir)),
            EngineKind::Sqlite => self.location(data_dir).exists(),
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The key-value operations the store is built from; one implementation per engine.
///
/// Tree names reaching an engine have been [`checked`]: plain lower-case identifiers.
pub trait Engine: Send + Sync {
    fn kind(&self) -> EngineKind;
    /// Makes sure these trees exist.
    fn create_trees(&self, trees: &[&str]) -> Result<()>;
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>>;
    fn put(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<()>;
    /// Runs `f` in one write transaction over every tree: all its writes are committed
    /// together when it returns `Ok`, none when it returns `Err`. `f` may be run more than
    /// once (sled re-runs a transaction that met a conflicting write), so it must do nothing
    /// but read and write through the transaction.
    fn transaction(&self, f: &mut dyn FnMut(&dyn Txn) -> Result<()>) -> Result<()>;
    /// Up to `limit` entries with keys within the bounds, in key order.
    fn range_chunk(
        &self,
        tree: &str,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>>;
    /// Up to `n` entries with keys below `before` (all keys if none), newest key first.
    fn last_n_before(&self, tree: &str, before: Option<&[u8]>, n: usize) -> Result<Vec<Entry>>;
    /// The trees that exist, in name order.
    fn trees(&self) -> Result<Vec<String>>;
    fn drop_tree(&self, tree: &str) -> Result<()>;
    /// Writes entries into trees (created as needed), all in one transaction.
    fn load(&self, entries: &[(&str, &[u8], &[u8])]) -> Result<()>;
    /// Makes every write so far durable. Blocking.
    fn flush(&self) -> Result<()>;
    /// Bytes the store takes on disk.
    fn disk_bytes(&self) -> u64;
    /// For engines whose files keep space they no longer need: writes a compact copy of the
    /// store that the next open takes instead (see [`Db::compact`]); `false` for engines that
    /// reuse their free space themselves.
    fn write_compacted_copy(&self) -> Result<bool> {
        Ok(false)
    }
    /// A write and a read of one key, taking the same locks as the store's own writes: it
    /// answers only while the engine does (see `crate::daemon::watchdog`).
    fn ping(&self) -> Result<()> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        self.put(super::META, b"ping", &now.to_be_bytes())?;
        self.get(super::META, b"ping").map(drop)
    }
}

/// One write transaction's view of the trees (see [`Engine::transaction`]).
pub trait Txn {
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>>;
    fn put(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<()>;
    fn remove(&self, tree: &str, key: &[u8]) -> Result<bool>;
}

/// The lock file of a data directory, taken or refused.
pub fn lock(data_dir: &Path) -> Result<File> {
    let open_error = |e: std::io::Error| StoreError::Open {
        path: data_dir.to_path_buf(),
        reason: e.to_string(),
    };
    crate::files::private_dir(data_dir).map_err(open_error)?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(data_dir.join(LOCK_FILE))
        .map_err(open_error)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(data_dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(open_error(e)),
    }
}

/// Tree names are plain identifiers, so that a name read from a backup can never be
/// anything but a tree name on either engine (SQLite makes them table names).
pub fn checked(tree: &str) -> Result<&str> {
    let plain = !tree.is_empty()
        && tree.len() <= 64
        && tree
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !tree.starts_with("sqlite");
    if plain {
        Ok(tree)
    } else {
        Err(StoreError::Corrupt {
            tree: "backup",
            reason: format!("{tree:?} is not a tree name"),
        })
    }
}

/// An engine error as the store reports it: which engine, and what it said.
pub(super) fn failed(kind: EngineKind, e: impl std::fmt::Display) -> StoreError {
    StoreError::Engine {
        engine: kind.as_str(),
        reason: e.to_string(),
    }
}

/// The store's handle on its engine.
pub struct Db {
    /// Shared by every operation; taken alone only to swap in a compacted store.
    engine: RwLock<Box<dyn Engine>>,
    kind: EngineKind,
    data_dir: PathBuf,
    path: PathBuf,
    /// The store's size on disk when [`Db::compact_if_grown`] last looked at its records.
    looked_at: Mutex<u64>,
}

/// What a compaction did.
#[derive(Clone, Copy, Debug)]
pub struct Compacted {
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub took: std::time::Duration,
}

/// A store is compacted once its files take more than this many times the bytes of its
/// records (keys and values as stored, before the engine's compression).
const COMPACT_ABOVE: u64 = 2;
/// Below this, a store is never worth compacting.
const COMPACT_FLOOR: u64 = 4 * 1024 * 1024;

impl Db {
    /// Opens (or creates) the store of engine `kind` in `data_dir`, with these trees. The
    /// caller holds the data directory's [`lock`]; a store of the other engine in the
    /// directory is an error, never a silent switch.
    pub fn open(kind: EngineKind, data_dir: &Path, trees: &[&str]) -> Result<Self> {
        for other in EngineKind::ALL.into_iter().filter(|&k| k != kind) {
            if other.holds_store(data_dir) {
                return Err(StoreError::OtherEngine {
                    dir: data_dir.to_path_buf(),
                    found: other,
                    configured: kind,
                });
            }
        }
        let engine = open_engine(kind, data_dir)?;
        let trees = trees
            .iter()
            .map(|t| checked(t))
            .collect::<Result<Vec<_>>>()?;
        engine.create_trees(&trees)?;
        Ok(Self {
            engine: RwLock::new(engine),
            kind,
            data_dir: data_dir.to_path_buf(),
            path: kind.location(data_dir),
            looked_at: Mutex::new(0),
        })
    }

    fn engine(&self) -> RwLockReadGuard<'_, Box<dyn Engine>> {
        // An engine is swapped whole or not at all: a poisoned lock still holds a usable one.
        self.engine.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Rewrites the store compactly, for engines that need it (sled), holding it alone
    /// meanwhile: every other operation waits. `None` when the engine has nothing to do.
    pub fn compact(&self) -> Result<Option<Compacted>> {
        let started = std::time::Instant::now();
        let mut slot = self.engine.write().unwrap_or_else(|p| p.into_inner());
        let bytes_before = slot.disk_bytes();
        if !slot.write_compacted_copy()? {
            return Ok(None);
        }
        // Opening finishes the swap (the copy becomes the store, the old one is deleted);
        // the old engine is closed when replaced. If opening fails, the old engine's files
        // may already be gone: it must not take another write (it would be lost, and with
        // it a record of what was sent), so the store stays closed until paperboy restarts
        // and the next open finishes the swap.
        *slot = match open_engine(self.kind, &self.data_dir) {
            Ok(engine) => engine,
            Err(e) => {
                *slot = Box::new(Closed(self.kind));
                return Err(e);
            }
        };
        let bytes_after = slot.disk_bytes();
        *self.looked_at.lock().unwrap_or_else(|p| p.into_inner()) = bytes_after;
        Ok(Some(Compacted {
            bytes_before,
            bytes_after,
            took: started.elapsed(),
        }))
    }

    /// Compacts the store when its files have grown past [`COMPACT_ABOVE`] times its records.
    /// Cheap when they have not grown by a quarter since it last looked: then it only reads
    /// the size of the files.
    pub fn compact_if_grown(&self) -> Result<Option<Compacted>> {
        let disk = self.engine().disk_bytes();
        {
            let mut looked_at = self.looked_at.lock().unwrap_or_else(|p| p.into_inner());
            if disk < COMPACT_FLOOR || disk < *looked_at / 4 * 5 {
                return Ok(None);
            }
            *looked_at = disk;
        }
        let mut records = 0u64;
        for tree in self.trees()? {
            for entry in self.iter(&tree) {
                let (k, v) = entry?;
                records += (k.len() + v.len()) as u64;
            }
        }
        if disk <= COMPACT_ABOVE * records {
            return Ok(None);
        }
        self.compact()
    }

    pub fn kind(&self) -> EngineKind {
        self.kind
    }

    /// Bytes the store takes on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.engine().disk_bytes()
    }

    /// The store's directory (sled) or file (SQLite).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.engine().get(checked(tree)?, key)
    }

    pub fn put(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<()> {
        self.engine().put(checked(tree)?, key, value)
    }

    /// Runs `f` in one write transaction: everything it wrote is committed together when it
    /// returns `Ok`, and nothing when it returns `Err`. `f` may run more than once; it must
    /// have no effect but its reads and writes through the transaction.
    pub fn transaction<T>(&self, f: impl Fn(&dyn Txn) -> Result<T>) -> Result<T> {
        let mut out = None;
        self.engine().transaction(&mut |tx| {
            out = Some(f(tx)?);
            Ok(())
        })?;
        Ok(out.expect("a committed transaction ran its closure"))
    }

    /// Entries with keys in `range`, in key order, read a chunk at a time.
    pub fn range(&self, tree: &str, range: (Bound<Vec<u8>>, Bound<Vec<u8>>)) -> Range<'_> {
        Range {
            db: self,
            tree: tree.to_string(),
            from: range.0,
            to: range.1,
            buffer: Vec::new().into_iter(),
            done: false,
        }
    }

    /// Every entry whose key starts with `prefix`.
    pub fn scan_prefix(&self, tree: &str, prefix: &[u8]) -> Range<'_> {
        let to = prefix_end(prefix).map_or(Bound::Unbounded, Bound::Excluded);
        self.range(tree, (Bound::Included(prefix.to_vec()), to))
    }

    pub fn iter(&self, tree: &str) -> Range<'_> {
        self.range(tree, (Bound::Unbounded, Bound::Unbounded))
    }

    pub fn last(&self, tree: &str) -> Result<Option<Entry>> {
        Ok(self.last_n_before(tree, None, 1)?.pop())
    }

    /// Up to `n` entries with keys below `before` (all keys if none), newest key first: the
    /// end of a tree a page at a time, without reading it from the start.
    pub fn last_n_before(&self, tree: &str, before: Option<&[u8]>, n: usize) -> Result<Vec<Entry>> {
        self.engine().last_n_before(checked(tree)?, before, n)
    }

    pub fn is_empty(&self, tree: &str) -> Result<bool> {
        let first =
            self.engine()
                .range_chunk(checked(tree)?, Bound::Unbounded, Bound::Unbounded, 1)?;
        Ok(first.is_empty())
    }

    /// The trees that exist, the store's own and any a backup brought.
    pub fn trees(&self) -> Result<Vec<String>> {
        self.engine().trees()
    }

    pub fn drop_tree(&self, tree: &str) -> Result<()> {
        self.engine().drop_tree(checked(tree)?)
    }

    /// Writes entries into trees (created as needed), all in one transaction.
    pub fn load<'a>(
        &self,
        entries: impl IntoIterator<Item = (&'a str, &'a [u8], &'a [u8])>,
    ) -> Result<()> {
        let entries = entries
            .into_iter()
            .map(|(t, k, v)| Ok((checked(t)?, k, v)))
            .collect::<Result<Vec<_>>>()?;
        self.engine().load(&entries)
    }

    /// Makes every write so far durable. Blocking; see [`super::Store::flush`].
    pub fn flush(&self) -> Result<()> {
        self.engine().flush()
    }

    /// A round trip through the engine (see [`Engine::ping`]).
    pub fn ping(&self) -> Result<()> {
        self.engine().ping()
    }
}

/// What the store holds after a compaction whose reopening failed: every operation is
/// an error, so nothing is written where it would be lost. The watchdog's round trip fails
/// too, and systemd restarts paperboy.
struct Closed(EngineKind);

impl Closed {
    fn refuse<T>(&self) -> Result<T> {
        Err(failed(
            self.0,
            "the store could not be reopened after compacting it; restart paperboy",
        ))
    }
}

impl Engine for Closed {
    fn kind(&self) -> EngineKind {
        self.0
    }
    fn create_trees(&self, _: &[&str]) -> Result<()> {
        self.refuse()
    }
    fn get(&self, _: &str, _: &[u8]) -> Result<Option<Vec<u8>>> {
        self.refuse()
    }
    fn put(&self, _: &str, _: &[u8], _: &[u8]) -> Result<()> {
        self.refuse()
    }
    fn transaction(&self, _: &mut dyn FnMut(&dyn Txn) -> Result<()>) -> Result<()> {
        self.refuse()
    }
    fn range_chunk(
        &self,
        _: &str,
        _: Bound<&[u8]>,
        _: Bound<&[u8]>,
        _: usize,
    ) -> Result<Vec<Entry>> {
        self.refuse()
    }
    fn last_n_before(&self, _: &str, _: Option<&[u8]>, _: usize) -> Result<Vec<Entry>> {
        self.refuse()
    }
    fn trees(&self) -> Result<Vec<String>> {
        self.refuse()
    }
    fn drop_tree(&self, _: &str) -> Result<()> {
        self.refuse()
    }
    fn load(&self, _: &[(&str, &[u8], &[u8])]) -> Result<()> {
        self.refuse()
    }
    fn flush(&self) -> Result<()> {
        self.refuse()
    }
    fn disk_bytes(&self) -> u64 {
        0
    }
}

/// Bytes a file or directory takes on disk (allocated blocks, as `du` counts them); 0 when
/// it does not exist.
fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.blocks() * 512;
    }
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| disk_usage(&e.path())).sum())
        .unwrap_or(0)
}

fn open_engine(kind: EngineKind, data_dir: &Path) -> Result<Box<dyn Engine>> {
    let path = kind.location(data_dir);
    Ok(match kind {
        EngineKind::Sled => Box::new(sled::SledEngine::open(&path)?),
        EngineKind::Sqlite => Box::new(sqlite::SqliteEngine::open(&path)?),
    })
}

/// The smallest key greater than every key starting with `prefix` (none if the prefix is
/// all 0xff).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn as_ref_bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Entries of a key range, read [`CHUNK`] at a time: the engine is free between chunks, and
/// writes made meanwhile are seen or not depending on where they fall.
pub struct Range<'a> {
    db: &'a Db,
    tree: String,
    from: Bound<Vec<u8>>,
    to: Bound<Vec<u8>>,
    buffer: std::vec::IntoIter<Entry>,
    done: bool,
}

impl Range<'_> {
    fn fill(&mut self) -> Result<()> {
        let tree = checked(&self.tree)?;
        let rows = self.db.engine().range_chunk(
            tree,
            as_ref_bound(&self.from),
            as_ref_bound(&self.to),
            CHUNK,
        )?;
        if rows.len() < CHUNK {
            self.done = true;
        }
        if let Some((last, _)) = rows.last() {
            self.from = Bound::Excluded(last.clone());
        }
        self.buffer = rows.into_iter();
        Ok(())
    }
}

impl Iterator for Range<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(entry) = self.buffer.next() {
            return Some(Ok(entry));
        }
        if self.done {
            return None;
        }
        if let Err(e) = self.fill() {
            self.done = true;
            return Some(Err(e));
        }
        self.buffer.next().map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(kind: EngineKind, dir: &Path) -> Db {
        Db::open(kind, dir, &["t", "meta"]).unwrap()
    }

    fn key(e: &Entry) -> u32 {
        u32::from_be_bytes(e.0.clone().try_into().unwrap())
    }

    #[test]
    fn ranges_cross_chunks_in_key_order() {
        for kind in EngineKind::ALL {
            let dir = tempfile::tempdir().unwrap();
            let db = db(kind, dir.path());
            let n = CHUNK as u32 * 2 + 7;
            let keys: Vec<[u8; 4]> = (0..n).rev().map(u32::to_be_bytes).collect();
            db.load(keys.iter().map(|k| ("t", &k[..], &b"v"[..])))
                .unwrap();
            let all: Vec<u32> = db.iter("t").map(|e| key(&e.unwrap())).collect();
            assert_eq!(all, (0..n).collect::<Vec<_>>(), "{kind}");
            let from = 5u32.to_be_bytes().to_vec();
            let to = (CHUNK as u32 + 10).to_be_bytes().to_vec();
            let some = db
                .range("t", (Bound::Excluded(from), Bound::Included(to)))
                .count();
            assert_eq!(some, CHUNK + 5, "{kind}");
            assert_eq!(db.scan_prefix("t", &[0, 0, 0]).count(), 256, "{kind}");
            assert_eq!(key(&db.last("t").unwrap().unwrap()), n - 1, "{kind}");
            let newest: Vec<u32> = db
                .last_n_before("t", None, 3)
                .unwrap()
                .iter()
                .map(key)
                .collect();
            assert_eq!(newest, [n - 1, n - 2, n - 3], "{kind}");
            let older: Vec<u32> = db
                .last_n_before("t", Some(&2u32.to_be_bytes()), 5)
                .unwrap()
                .iter()
                .map(key)
                .collect();
            assert_eq!(older, [1, 0], "{kind}");
            assert!(!db.is_empty("t").unwrap());
            assert!(db.is_empty("meta").unwrap());
        }
    }

    #[test]
    fn a_failed_transaction_writes_nothing() {
        for kind in EngineKind::ALL {
            let dir = tempfile::tempdir().unwrap();
            let db = db(kind, dir.path());
            let r: Result<()> = db.transaction(|tx| {
                tx.put("t", b"a", b"1")?;
                tx.put("meta", b"b", b"1")?;
                Err(StoreError::Corrupt {
                    tree: "t",
                    reason: "test".into(),
                })
            });
            assert!(r.is_err());
            assert_eq!(db.get("t", b"a").unwrap(), None, "{kind}");
            assert_eq!(db.get("meta", b"b").unwrap(), None, "{kind}");
            db.transaction(|tx| {
                tx.put("t", b"a", b"2")?;
                assert_eq!(tx.get("t", b"a")?, Some(b"2".to_vec()));
                tx.put("meta", b"b", b"2")
            })
            .unwrap();
            assert_eq!(db.get("t", b"a").unwrap(), Some(b"2".to_vec()), "{kind}");
            assert_eq!(db.get("meta", b"b").unwrap(), Some(b"2".to_vec()), "{kind}");
            let removed = db.transaction(|tx| tx.remove("t", b"a")).unwrap();
            assert!(removed);
            assert!(!db.transaction(|tx| tx.remove("t", b"a")).unwrap());
            db.flush().unwrap();
            db.ping().unwrap();
        }
    }

    /// A transaction that reads a value and writes what it makes of it loses no update to
    /// another made meanwhile: what every change of a subscriber's record relies on (a
    /// bounce, an unsubscribe, a send's outcome, all at once). Without isolation, threads
    /// adding one each would lose some of their additions.
    #[test]
    fn concurrent_read_and_write_transactions_lose_no_update() {
        const THREADS: u64 = 4;
        const EACH: u64 = 150;
        for kind in EngineKind::ALL {
            let dir = tempfile::tempdir().unwrap();
            let db = db(kind, dir.path());
            std::thread::scope(|scope| {
                for _ in 0..THREADS {
                    scope.spawn(|| {
                        for _ in 0..EACH {
                            db.transaction(|tx| {
                                let n = tx
                                    .get("t", b"n")?
                                    .map_or(0, |v| u64::from_be_bytes(v.try_into().unwrap()));
                                tx.put("t", b"n", &(n + 1).to_be_bytes())
                            })
                            .unwrap();
                        }
                    });
                }
            });
            let n = db.get("t", b"n").unwrap().unwrap();
            assert_eq!(
                u64::from_be_bytes(n.try_into().unwrap()),
                THREADS * EACH,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn names_from_a_backup_are_only_tree_names() {
        for kind in EngineKind::ALL {
            let dir = tempfile::tempdir().unwrap();
            let db = db(kind, dir.path());
            for bad in ["", "t; DROP TABLE t", "sqlite_master", "T", "a-b"] {
                assert!(db.load([(bad, &b"k"[..], &b"v"[..])]).is_err(), "{bad:?}");
            }
            db.load([("sent", &b"k"[..], &b"v"[..])]).unwrap();
            assert_eq!(db.trees().unwrap(), ["meta", "sent", "t"], "{kind}");
            db.drop_tree("sent").unwrap();
            assert_eq!(db.trees().unwrap(), ["meta", "t"], "{kind}");
        }
    }

    #[test]
    fn a_directory_of_the_other_engine_is_refused() {
        for kind in EngineKind::ALL {
            let dir = tempfile::tempdir().unwrap();
            drop(db(kind, dir.path()));
            let other = EngineKind::ALL.into_iter().find(|&k| k != kind).unwrap();
            let err = Db::open(other, dir.path(), &["t"]).err().unwrap();
            let text = err.to_string();
            assert!(
                text.contains(kind.as_str()) && text.contains(other.as_str()),
                "{text}"
            );
            assert!(
                text.contains("backup") && text.contains("restore"),
                "{text}"
            );
            assert!(
                !other.holds_store(dir.path()),
                "nothing of {other} was made"
            );
        }
    }

    #[test]
    fn compaction_keeps_every_entry_and_gives_back_the_space() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(EngineKind::Sled, dir.path());
        // The same keys rewritten again and again leave old copies in sled's log. The values
        // are noise, so that compression does not hide the copies.
        let mut seed = 1u64;
        for _ in 0..20 {
            let values: Vec<Vec<u8>> = (0..500)
                .map(|_| {
                    (0..1000)
                        .map(|_| {
                            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                            (seed >> 56) as u8
                        })
                        .collect()
                })
                .collect();
            let keys: Vec<[u8; 4]> = (0..500u32).map(u32::to_be_bytes).collect();
            db.load(
                keys.iter()
                    .zip(&values)
                    .map(|(k, v)| ("t", &k[..], v.as_slice())),
            )
            .unwrap();
            db.flush().unwrap();
        }
        db.put("meta", b"m", b"1").unwrap();
        let before: Vec<Entry> = db.iter("t").map(Result::unwrap).collect();
        let done = db.compact().unwrap().expect("sled compacts");
        assert!(
            done.bytes_after < done.bytes_before,
            "{} -> {}",
            done.bytes_after,
            done.bytes_before
        );
        let after: Vec<Entry> = db.iter("t").map(Result::unwrap).collect();
        assert_eq!(after, before);
        assert_eq!(db.get("meta", b"m").unwrap(), Some(b"1".to_vec()));
        // Still a working store, and nothing left beside it.
        db.put("t", b"new", b"v").unwrap();
        db.flush().unwrap();
        drop(db);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.starts_with("sled.")), "{names:?}");
        let db = Db::open(EngineKind::Sled, dir.path(), &["t", "meta"]).unwrap();
        assert_eq!(db.get("t", b"new").unwrap(), Some(b"v".to_vec()));
        assert_eq!(db.iter("t").count(), 501);
        // SQLite reuses its free pages: nothing to do.
        let other = tempfile::tempdir().unwrap();
        assert!(
            Db::open(EngineKind::Sqlite, other.path(), &["t"])
                .unwrap()
                .compact()
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_compaction_cut_short_is_undone_or_finished_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join(sled::DIR);
        let copy = dir.path().join("sled.compacting");
        let old = dir.path().join("sled.old");
        let done = dir.path().join("sled.compacted");
        {
            let db = db(EngineKind::Sled, dir.path());
            db.put("t", b"k", b"old").unwrap();
            db.flush().unwrap();
        }
        // Killed while copying: the copy has no marker and goes; the store is as it was.
        std::fs::create_dir(&copy).unwrap();
        std::fs::write(copy.join("partial"), b"x").unwrap();
        let open = || db(EngineKind::Sled, dir.path());
        let store_db = open();
        assert!(!copy.exists());
        assert_eq!(store_db.get("t", b"k").unwrap(), Some(b"old".to_vec()));
        // Killed once the copy was complete, before the swap: the next open swaps it in.
        assert!(store_db.engine().write_compacted_copy().unwrap());
        assert!(done.exists() && copy.exists());
        drop(store_db);
        drop(open());
        assert!(!done.exists() && !copy.exists() && !old.exists());
        // Killed in the middle of the swap, the old store moved aside and the copy not yet
        // in its place: the copy (which holds "new") becomes the store.
        let store_db = open();
        store_db.put("t", b"k", b"new").unwrap();
        assert!(store_db.engine().write_compacted_copy().unwrap());
        drop(store_db);
        std::fs::rename(&store, &old).unwrap();
        assert!(EngineKind::Sled.holds_store(dir.path()));
        assert!(matches!(
            Db::open(EngineKind::Sqlite, dir.path(), &["t"]),
            Err(StoreError::OtherEngine { .. })
        ));
        let store_db = open();
        assert_eq!(store_db.get("t", b"k").unwrap(), Some(b"new".to_vec()));
        assert!(!done.exists() && !copy.exists() && !old.exists());
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 255]), Some(vec![2]));
        assert_eq!(prefix_end(&[255, 255]), None);
    }
}
