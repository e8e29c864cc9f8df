//! The storage engine under the store: SQLite, as a handful of key-value tables.
//!
//! Each of the store's trees is a `WITHOUT ROWID` table of `(k BLOB PRIMARY KEY, v BLOB)`,
//! so records keep the byte encodings they always had and a backup is the same list of
//! (tree, key, value) whatever the engine. SQLite was chosen over sled for its size on disk:
//! sled's log-structured files took five to seven times the bytes of the records they held,
//! SQLite's B-tree about one and a half.
//!
//! Durability: the database runs in WAL mode with `synchronous = NORMAL`, so a commit is
//! written but not synced; [`Db::flush`] checkpoints, which syncs the log and the database
//! file. Callers flush where the delivery semantics need it, as they did with sled.
//!
//! One process at a time: an exclusive `flock` on `paperboy.lock` in the data directory
//! ([`lock`]), held by the store while it is open and released as soon as it is dropped.

use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Result, StoreError};

/// The database file in the data directory.
pub const FILE: &str = "paperboy.sqlite";
/// Held (flock) by the process that has the store open.
pub const LOCK_FILE: &str = "paperboy.lock";

/// How many entries a range reads at a time: iterations over every subscriber or every
/// delivery of an edition hold neither the whole list nor the connection.
const CHUNK: usize = 512;

/// How large the write-ahead log may stay between flushes.
const WAL_KEEP: u64 = 1024 * 1024;

/// A key-value pair as stored.
pub type Entry = (Vec<u8>, Vec<u8>);

pub struct Db {
    conn: Mutex<Connection>,
    path: PathBuf,
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

/// Tree names become table names: only plain identifiers, so that a name read from a backup
/// can never be anything but a table name.
fn checked(tree: &str) -> Result<&str> {
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

fn create_sql(tree: &str) -> String {
    format!("CREATE TABLE IF NOT EXISTS {tree} (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")
}

impl Db {
    /// Opens (or creates) the database in `path`, with these trees. The caller holds the
    /// data directory's [`lock`].
    pub fn open(path: &Path, trees: &[&str]) -> Result<Self> {
        let path = path.to_path_buf();
        let conn = Connection::open(&path).map_err(|e| StoreError::Open {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        // Pages freed by pruning stay in the file and take the next day's records. The page
        // cache is 32 MiB (SQLite's default is 2): a run reads every subscriber's records
        // once, and a bigger cache keeps the B-tree's inner pages of a large store in memory.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA cache_size = -32768;
             PRAGMA locking_mode = EXCLUSIVE;
             PRAGMA foreign_keys = OFF;",
        )?;
        for tree in trees {
            conn.execute_batch(&create_sql(checked(tree)?))?;
        }
        Ok(Self {
            conn: Mutex::new(conn),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the connection leaves SQLite consistent (the transaction,
        // if any, is rolled back when dropped), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        get(&self.conn(), tree, key)
    }

    pub fn put(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<()> {
        put(&self.conn(), tree, key, value)
    }

    /// Runs `f` in one write transaction: everything it wrote is committed together when it
    /// returns `Ok`, and nothing when it returns `Err`.
    pub fn transaction<T>(&self, f: impl FnOnce(&Txn<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&Txn(&tx))?;
        tx.commit()?;
        Ok(out)
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
        let conn = self.conn();
        let sql = format!(
            "SELECT k, v FROM {} ORDER BY k DESC LIMIT 1",
            checked(tree)?
        );
        Ok(conn
            .prepare_cached(&sql)?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// Up to `n` entries with keys below `before` (all keys if none), newest key first: the
    /// end of a tree a page at a time, without reading it from the start.
    pub fn last_n_before(&self, tree: &str, before: Option<&[u8]>, n: usize) -> Result<Vec<Entry>> {
        let conn = self.conn();
        let sql = format!(
            "SELECT k, v FROM {} WHERE ?1 IS NULL OR k < ?1 ORDER BY k DESC LIMIT ?2",
            checked(tree)?
        );
        let limit = i64::try_from(n).unwrap_or(i64::MAX);
        let rows = conn
            .prepare_cached(&sql)?
            .query_map(params![before, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<Entry>>>()?;
        Ok(rows)
    }

    pub fn is_empty(&self, tree: &str) -> Result<bool> {
        let conn = self.conn();
        let sql = format!("SELECT NOT EXISTS (SELECT 1 FROM {})", checked(tree)?);
        Ok(conn.prepare_cached(&sql)?.query_row([], |r| r.get(0))?)
    }

    /// The trees that exist, the store's own and any a backup brought.
    pub fn trees(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?;
        let names = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(names)
    }

    pub fn drop_tree(&self, tree: &str) -> Result<()> {
        let sql = format!("DROP TABLE IF EXISTS {}", checked(tree)?);
        self.conn().execute_batch(&sql)?;
        Ok(())
    }

    /// Writes entries into trees (created as needed), all in one transaction.
    pub fn load<'a>(
        &self,
        entries: impl IntoIterator<Item = (&'a str, &'a [u8], &'a [u8])>,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut created = std::collections::HashSet::new();
        for (tree, k, v) in entries {
            if created.insert(tree) {
                tx.execute_batch(&create_sql(checked(tree)?))?;
            }
            put(&tx, tree, k, v)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Makes every commit so far durable. Blocking; see [`super::Store::flush`].
    ///
    /// With `synchronous = NORMAL` a commit is written to the log but not synced; syncing
    /// the log file does for all commits so far what `synchronous = FULL` would do at each
    /// one, and needs no hold on the connection, so the other workers go on meanwhile.
    /// SQLite's own checkpoints (every thousand pages) sync the log and the database file
    /// before they reuse the log.
    pub fn flush(&self) -> Result<()> {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let grown = std::fs::metadata(&wal).is_ok_and(|m| m.len() > WAL_KEEP);
        if grown {
            // The log keeps the size of the largest batch written between checkpoints (a
            // whole edition's plans): past WAL_KEEP, checkpoint (which syncs everything)
            // and cut it back to nothing.
            let conn = self.conn();
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            return Ok(());
        }
        match File::open(&wal) {
            Ok(log) => log.sync_data()?,
            // No log: nothing written since the last checkpoint emptied it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }
}

/// One write transaction's view of the trees (see [`Db::transaction`]).
pub struct Txn<'a>(&'a rusqlite::Transaction<'a>);

impl Txn<'_> {
    pub fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        get(self.0, tree, key)
    }

    pub fn put(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<()> {
        put(self.0, tree, key, value)
    }

    pub fn remove(&self, tree: &str, key: &[u8]) -> Result<bool> {
        remove(self.0, tree, key)
    }
}

fn get(conn: &Connection, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
    let sql = format!("SELECT v FROM {} WHERE k = ?1", checked(tree)?);
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![key], |r| r.get(0))
        .optional()?)
}

fn put(conn: &Connection, tree: &str, key: &[u8], value: &[u8]) -> Result<()> {
    let sql = format!(
        "INSERT OR REPLACE INTO {} (k, v) VALUES (?1, ?2)",
        checked(tree)?
    );
    conn.prepare_cached(&sql)?.execute(params![key, value])?;
    Ok(())
}

fn remove(conn: &Connection, tree: &str, key: &[u8]) -> Result<bool> {
    let sql = format!("DELETE FROM {} WHERE k = ?1", checked(tree)?);
    Ok(conn.prepare_cached(&sql)?.execute(params![key])? > 0)
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

/// Entries of a key range, read [`CHUNK`] at a time, each chunk in its own statement: the
/// connection is free between chunks, and writes made meanwhile are seen or not depending
/// on where they fall.
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
        let (lower, low) = match &self.from {
            Bound::Included(k) => ("k >= ?1", Some(k.clone())),
            Bound::Excluded(k) => ("k > ?1", Some(k.clone())),
            Bound::Unbounded => ("?1 IS NULL", None),
        };
        let (upper, high) = match &self.to {
            Bound::Included(k) => ("k <= ?2", Some(k.clone())),
            Bound::Excluded(k) => ("k < ?2", Some(k.clone())),
            Bound::Unbounded => ("?2 IS NULL", None),
        };
        let sql =
            format!("SELECT k, v FROM {tree} WHERE {lower} AND {upper} ORDER BY k LIMIT {CHUNK}");
        let conn = self.db.conn();
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt
            .query_map(params![low, high], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<Entry>>>()?;
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

    fn db(dir: &Path) -> Db {
        Db::open(&dir.join(FILE), &["t"]).unwrap()
    }

    #[test]
    fn ranges_cross_chunks_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path());
        let n = CHUNK as u32 * 2 + 7;
        db.load((0..n).rev().map(|i| {
            let k: &'static [u8] = Box::leak(Box::new(i.to_be_bytes()));
            ("t", k, &b"v"[..])
        }))
        .unwrap();
        let keys: Vec<u32> = db
            .iter("t")
            .map(|e| u32::from_be_bytes(e.unwrap().0.try_into().unwrap()))
            .collect();
        assert_eq!(keys, (0..n).collect::<Vec<_>>());
        let from = 5u32.to_be_bytes().to_vec();
        let to = (CHUNK as u32 + 10).to_be_bytes().to_vec();
        let some = db
            .range("t", (Bound::Excluded(from), Bound::Included(to)))
            .count();
        assert_eq!(some, CHUNK + 5);
        assert_eq!(db.scan_prefix("t", &[0, 0, 0]).count(), 256);
        assert_eq!(db.last("t").unwrap().unwrap().0, (n - 1).to_be_bytes());
        let key = |e: &Entry| u32::from_be_bytes(e.0.clone().try_into().unwrap());
        let newest: Vec<u32> = db
            .last_n_before("t", None, 3)
            .unwrap()
            .iter()
            .map(key)
            .collect();
        assert_eq!(newest, [n - 1, n - 2, n - 3]);
        let older: Vec<u32> = db
            .last_n_before("t", Some(&2u32.to_be_bytes()), 5)
            .unwrap()
            .iter()
            .map(key)
            .collect();
        assert_eq!(older, [1, 0]);
    }

    #[test]
    fn a_failed_transaction_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path());
        let r: Result<()> = db.transaction(|tx| {
            tx.put("t", b"a", b"1")?;
            Err(StoreError::Corrupt {
                tree: "t",
                reason: "test".into(),
            })
        });
        assert!(r.is_err());
        assert_eq!(db.get("t", b"a").unwrap(), None);
        db.transaction(|tx| tx.put("t", b"a", b"2")).unwrap();
        assert_eq!(db.get("t", b"a").unwrap(), Some(b"2".to_vec()));
    }

    #[test]
    fn names_from_a_backup_are_only_table_names() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path());
        for bad in ["", "t; DROP TABLE t", "sqlite_master", "T", "a-b"] {
            assert!(db.load([(bad, &b"k"[..], &b"v"[..])]).is_err(), "{bad:?}");
        }
        db.load([("sent", &b"k"[..], &b"v"[..])]).unwrap();
        assert!(db.trees().unwrap().contains(&"sent".to_string()));
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 255]), Some(vec![2]));
        assert_eq!(prefix_end(&[255, 255]), None);
    }
}
