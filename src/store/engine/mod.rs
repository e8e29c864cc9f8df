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
        self.location(data_dir).exists()
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
    /// A write and a read of one key, taking the same locks as the store's own writes: it
    /// answers only while the engine does (see `crate::watchdog`).
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
    std::fs::create_dir_all(data_dir).map_err(open_error)?;
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
    engine: Box<dyn Engine>,
    path: PathBuf,
}

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
        let path = kind.location(data_dir);
        let engine: Box<dyn Engine> = match kind {
            EngineKind::Sled => Box::new(sled::SledEngine::open(&path)?),
            EngineKind::Sqlite => Box::new(sqlite::SqliteEngine::open(&path)?),
        };
        let trees = trees
            .iter()
            .map(|t| checked(t))
            .collect::<Result<Vec<_>>>()?;
        engine.create_trees(&trees)?;
        Ok(Self { engine, path })
    }

    pub fn kind(&self) -> EngineKind {
        self.engine.kind()
    }

    /// The store's directory (sled) or file (SQLite).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.engine.get(checked(tree)?, key)
    }

    pub fn put(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<()> {
        self.engine.put(checked(tree)?, key, value)
    }

    /// Runs `f` in one write transaction: everything it wrote is committed together when it
    /// returns `Ok`, and nothing when it returns `Err`. `f` may run more than once; it must
    /// have no effect but its reads and writes through the transaction.
    pub fn transaction<T>(&self, f: impl Fn(&dyn Txn) -> Result<T>) -> Result<T> {
        let mut out = None;
        self.engine.transaction(&mut |tx| {
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
        self.engine.last_n_before(checked(tree)?, before, n)
    }

    pub fn is_empty(&self, tree: &str) -> Result<bool> {
        let first =
            self.engine
                .range_chunk(checked(tree)?, Bound::Unbounded, Bound::Unbounded, 1)?;
        Ok(first.is_empty())
    }

    /// The trees that exist, the store's own and any a backup brought.
    pub fn trees(&self) -> Result<Vec<String>> {
        self.engine.trees()
    }

    pub fn drop_tree(&self, tree: &str) -> Result<()> {
        self.engine.drop_tree(checked(tree)?)
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
        self.engine.load(&entries)
    }

    /// Makes every write so far durable. Blocking; see [`super::Store::flush`].
    pub fn flush(&self) -> Result<()> {
        self.engine.flush()
    }

    /// A round trip through the engine (see [`Engine::ping`]).
    pub fn ping(&self) -> Result<()> {
        self.engine.ping()
    }
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
        let rows = self.db.engine.range_chunk(
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
    fn prefix_ends() {
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 255]), Some(vec![2]));
        assert_eq!(prefix_end(&[255, 255]), None);
    }
}
