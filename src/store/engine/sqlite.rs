//! SQLite as the engine: each tree a `WITHOUT ROWID` table of `(k BLOB PRIMARY KEY, v BLOB)`.
//!
//! Picked by operators with the largest lists: its B-tree holds the records in about 1.1
//! times their size, where sled's log-structured files take several times theirs.
//!
//! Durability: the database runs in WAL mode with `synchronous = NORMAL`, so a commit is
//! written but not synced; [`SqliteEngine::flush`] syncs the log (or checkpoints, which syncs
//! the log and the database file, once the log has grown).

use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Engine, EngineKind, Entry, Txn, disk_usage, failed};
use crate::store::Result;

/// The database file in the data directory.
pub const FILE: &str = "paperboy.sqlite";

/// How large the write-ahead log may stay between flushes.
const WAL_KEEP: u64 = 1024 * 1024;

pub struct SqliteEngine {
    conn: Mutex<Connection>,
    path: PathBuf,
}

fn err(e: impl std::fmt::Display) -> crate::store::StoreError {
    failed(EngineKind::Sqlite, e)
}

fn create_sql(tree: &str) -> String {
    format!("CREATE TABLE IF NOT EXISTS {tree} (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")
}

impl SqliteEngine {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(|e| crate::store::StoreError::Open {
            path: path.to_path_buf(),
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
        )
        .map_err(err)?;
        Ok(Self {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    /// The write-ahead log beside the database file.
    fn wal_path(&self) -> PathBuf {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        PathBuf::from(wal)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the connection leaves SQLite consistent (the transaction,
        // if any, is rolled back when dropped), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Engine for SqliteEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Sqlite
    }

    fn create_trees(&self, trees: &[&str]) -> Result<()> {
        let conn = self.conn();
        for tree in trees {
            conn.execute_batch(&create_sql(tree)).map_err(err)?;
        }
        Ok(())
    }

    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        get(&self.conn(), tree, key)
    }

    fn put(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<()> {
        put(&self.conn(), tree, key, value)
    }

    fn transaction(&self, f: &mut dyn FnMut(&dyn Txn) -> Result<()>) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        f(&SqliteTxn(&tx))?;
        tx.commit().map_err(err)
    }

    fn range_chunk(
        &self,
        tree: &str,
        from: Bound<&[u8]>,
        to: Bound<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        let (lower, low) = match from {
            Bound::Included(k) => ("k >= ?1", Some(k)),
            Bound::Excluded(k) => ("k > ?1", Some(k)),
            Bound::Unbounded => ("?1 IS NULL", None),
        };
        let (upper, high) = match to {
            Bound::Included(k) => ("k <= ?2", Some(k)),
            Bound::Excluded(k) => ("k < ?2", Some(k)),
            Bound::Unbounded => ("?2 IS NULL", None),
        };
        let sql =
            format!("SELECT k, v FROM {tree} WHERE {lower} AND {upper} ORDER BY k LIMIT {limit}");
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&sql).map_err(err)?;
        let rows = stmt
            .query_map(params![low, high], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(err)?
            .collect::<rusqlite::Result<Vec<Entry>>>()
            .map_err(err)?;
        Ok(rows)
    }

    fn last_n_before(&self, tree: &str, before: Option<&[u8]>, n: usize) -> Result<Vec<Entry>> {
        let conn = self.conn();
        let sql =
            format!("SELECT k, v FROM {tree} WHERE ?1 IS NULL OR k < ?1 ORDER BY k DESC LIMIT ?2");
        let limit = i64::try_from(n).unwrap_or(i64::MAX);
        let rows = conn
            .prepare_cached(&sql)
            .map_err(err)?
            .query_map(params![before, limit], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(err)?
            .collect::<rusqlite::Result<Vec<Entry>>>()
            .map_err(err)?;
        Ok(rows)
    }

    fn trees(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .map_err(err)?;
        let names = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(err)?;
        Ok(names)
    }

    fn drop_tree(&self, tree: &str) -> Result<()> {
        self.conn()
            .execute_batch(&format!("DROP TABLE IF EXISTS {tree}"))
            .map_err(err)
    }

    fn load(&self, entries: &[(&str, &[u8], &[u8])]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let mut created = std::collections::HashSet::new();
        for &(tree, k, v) in entries {
            if created.insert(tree) {
                tx.execute_batch(&create_sql(tree)).map_err(err)?;
            }
            put(&tx, tree, k, v)?;
        }
        tx.commit().map_err(err)
    }

    fn disk_bytes(&self) -> u64 {
        disk_usage(&self.path) + disk_usage(&self.wal_path())
    }

    /// With `synchronous = NORMAL` a commit is written to the log but not synced; syncing
    /// the log file does for all commits so far what `synchronous = FULL` would do at each
    /// one, and needs no hold on the connection, so the other workers go on meanwhile.
    /// SQLite's own checkpoints (every thousand pages) sync the log and the database file
    /// before they reuse the log.
    fn flush(&self) -> Result<()> {
        let wal = self.wal_path();
        let grown = std::fs::metadata(&wal).is_ok_and(|m| m.len() > WAL_KEEP);
        if grown {
            // The log keeps the size of the largest batch written between checkpoints (a
            // whole edition's plans): past WAL_KEEP, checkpoint (which syncs everything)
            // and cut it back to nothing.
            let conn = self.conn();
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .map_err(err)?;
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

struct SqliteTxn<'a>(&'a rusqlite::Transaction<'a>);

impl Txn for SqliteTxn<'_> {
    fn get(&self, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        get(self.0, tree, key)
    }

    fn put(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<()> {
        put(self.0, tree, key, value)
    }

    fn remove(&self, tree: &str, key: &[u8]) -> Result<bool> {
        let sql = format!("DELETE FROM {} WHERE k = ?1", super::checked(tree)?);
        let n = self
            .0
            .prepare_cached(&sql)
            .and_then(|mut s| s.execute(params![key]))
            .map_err(err)?;
        Ok(n > 0)
    }
}

fn get(conn: &Connection, tree: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
    let sql = format!("SELECT v FROM {} WHERE k = ?1", super::checked(tree)?);
    conn.prepare_cached(&sql)
        .and_then(|mut s| s.query_row(params![key], |r| r.get(0)).optional())
        .map_err(err)
}

fn put(conn: &Connection, tree: &str, key: &[u8], value: &[u8]) -> Result<()> {
    let sql = format!(
        "INSERT OR REPLACE INTO {} (k, v) VALUES (?1, ?2)",
        super::checked(tree)?
    );
    conn.prepare_cached(&sql)
        .and_then(|mut s| s.execute(params![key, value]))
        .map_err(err)?;
    Ok(())
}
