//! Everything paperboy remembers, in sled (`data_dir/sled/`, the default) or SQLite
//! (`data_dir/paperboy.sqlite`), as named trees of keys and values (see [`engine`]).
//!
//! Trees and their keys:
//! - `subscribers`: address → [`Subscriber`]; `subscriber_ids`: id → address.
//! - `papers`: paper id → its sequence number and the first and last edition it was seen in.
//! - `paper_seqs`: sequence number → paper id, and `meta/next_paper_seq`.
//! - `ledger`: subscriber id → [`ledger::Ledger`]: the editions planned for them and the
//!   papers those carried. Updated in the same transaction that plans a delivery, so no
//!   paper and no edition can be planned twice.
//! - `selections`: date ‖ number → a set of paper sequence numbers: the distinct selections
//!   of an edition's papers its deliveries carried, which ledgers point at.
//! - `editions`: date → the papers of that edition, frozen at the first fetch, so a retry of a
//!   delivery renders the same digest; kept for good, as the archive (see [`archive`]).
//! - `deliveries`: date ‖ subscriber id → [`Delivery`]: the outbox, one per subscriber per
//!   edition; once done, kept until the run of a later edition.
//!
//! Writes are durable only after a flush; callers flush at the points the delivery
//! semantics depend on (plans before the first send, each acceptance before its sender
//! moves on).
//!
//! [`Subscriber`]: crate::domain::Subscriber

mod archive;
mod backup;
mod codec;
mod editions;
pub mod engine;
mod group_commit;
mod history;
mod ledger;
mod meta;
mod outbox;
mod papers;
mod prune;
mod subscribers;
#[cfg(test)]
mod test_support;
mod upgrade;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use self::archive::EditionSummary;
pub use self::editions::EditionRecord;
use self::engine::Db;
pub use self::engine::{Compacted, EngineKind};
pub use self::group_commit::GroupCommit;
pub use self::outbox::{Delivery, DeliveryState, Planner, SentBefore};
pub use self::papers::PageIndex;
pub use self::prune::PruneReport;
use crate::domain::SubscriberEmail;

/// 2: the per-subscriber `ledger` replaced one `sent` entry per paper (migrated on open).
/// 3: editions' `selections`, which ledgers point at (a schema 2 ledger reads as it is).
const SCHEMA_VERSION: u64 = 3;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the data directory {0} is in use by another paperboy process; only one may open it at a time"
    )]
    Locked(PathBuf),
    #[error("cannot open the store in {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error(
        "the store in {path} was written by a newer paperboy (schema {found}, this one reads {SCHEMA_VERSION})"
    )]
    Schema { path: PathBuf, found: u64 },
    #[error(
        "the data directory {dir} holds a {found} store, but store.engine is \"{configured}\"; \
         paperboy never switches engines on its own. Set store.engine = \"{found}\" to keep \
         using it, or move it over: run `paperboy backup FILE` with store.engine = \"{found}\", \
         then `paperboy restore FILE` with store.engine = \"{configured}\" into a data directory \
         without the {found} store"
    )]
    OtherEngine {
        dir: PathBuf,
        found: EngineKind,
        configured: EngineKind,
    },
    #[error("storage error ({engine}): {reason}")]
    Engine {
        engine: &'static str,
        reason: String,
    },
    #[error("storage I/O error")]
    Io(#[from] std::io::Error),
    #[error("a record in `{tree}` cannot be read: {reason}")]
    Corrupt { tree: &'static str, reason: String },
    #[error("{0} is already a subscriber")]
    Duplicate(SubscriberEmail),
    #[error("{0} is not a subscriber")]
    Unknown(SubscriberEmail),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One stored entry as a backup holds it: tree name, key, value.
pub type RawEntry = (String, Vec<u8>, Vec<u8>);

/// The store's trees, each a table of the database.
const SUBSCRIBERS: &str = "subscribers";
const SUBSCRIBER_IDS: &str = "subscriber_ids";
const PAPERS: &str = "papers";
const PAPER_SEQS: &str = "paper_seqs";
const LEDGER: &str = "ledger";
const EDITIONS: &str = "editions";
const DELIVERIES: &str = "deliveries";
const META: &str = "meta";
const SELECTIONS: &str = "selections";
const TREES: [&str; 9] = [
    SUBSCRIBERS,
    SUBSCRIBER_IDS,
    PAPERS,
    PAPER_SEQS,
    LEDGER,
    SELECTIONS,
    EDITIONS,
    DELIVERIES,
    META,
];

#[derive(Clone)]
pub struct Store {
    db: Arc<Db>,
    /// The data directory's lock, held while any clone of the store lives.
    _lock: Arc<std::fs::File>,
}

impl Store {
    /// Opens (or creates) the store that `engine` keeps in `data_dir`. A data directory
    /// holding the other engine's store is an error ([`StoreError::OtherEngine`]).
    pub fn open(data_dir: &Path, engine: EngineKind) -> Result<Self> {
        let lock = engine::lock(data_dir)?;
        let db = Db::open(engine, data_dir, &TREES)?;
        let found = match db.get(META, b"schema_version")? {
            None => SCHEMA_VERSION,
            Some(v) => <[u8; 8]>::try_from(v.as_slice())
                .map(u64::from_be_bytes)
                .unwrap_or(u64::MAX),
        };
        if found > SCHEMA_VERSION {
            return Err(StoreError::Schema {
                path: db.path().to_path_buf(),
                found,
            });
        }
        let store = Self {
            db: Arc::new(db),
            _lock: Arc::new(lock),
        };
        if found < 2 {
            store.migrate_sent_to_ledger()?;
        }
        store
            .db
            .put(META, b"schema_version", &SCHEMA_VERSION.to_be_bytes())?;
        store.db.flush()?;
        Ok(store)
    }

    /// A write and a read through the engine: answers only while the store does. Blocking.
    pub fn ping(&self) -> Result<()> {
        self.db.ping()
    }

    /// Holds the store's write path until `until` hears something (or hangs up): what a
    /// hung engine looks like from above, for the watchdog's tests.
    #[cfg(test)]
    pub(crate) fn stall_writes(&self, until: std::sync::mpsc::Receiver<()>) {
        let until = std::sync::Mutex::new(until);
        self.db
            .transaction(|_| {
                let _ = until.lock().expect("one holder").recv();
                Ok(())
            })
            .expect("an empty transaction commits");
    }

    /// The engine that keeps the store.
    pub fn engine(&self) -> EngineKind {
        self.db.kind()
    }

    /// Bytes the store takes on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.db.disk_bytes()
    }

    /// Rewrites the store compactly (sled; SQLite reuses its free pages and has nothing to
    /// do). Every other use of the store waits meanwhile: seconds for tens of thousands of
    /// subscribers. Blocking.
    pub fn compact(&self) -> Result<Option<Compacted>> {
        self.db.compact()
    }

    /// [`Store::compact`], when the files have grown well past the records they hold; what
    /// each edition's run does after pruning. Blocking.
    pub fn compact_if_grown(&self) -> Result<Option<Compacted>> {
        self.db.compact_if_grown()
    }

    /// Makes every write so far durable.
    pub async fn flush(&self) -> Result<()> {
        // The checkpoint syncs files: blocking work, on tokio's blocking pool.
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .expect("flush does not panic")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_process_is_refused() {
        for kind in EngineKind::ALL {
            let dir = tempfile::tempdir().unwrap();
            let first = Store::open(dir.path(), kind).unwrap();
            // The lock is an flock, per open file: probe it from a child process.
            let status = std::process::Command::new("flock")
                .args(["-n", "-E", "42"])
                .arg(dir.path().join(engine::LOCK_FILE))
                .arg("true")
                .status()
                .expect("flock (util-linux) runs");
            assert_eq!(status.code(), Some(42), "the {kind} store is not locked");
            assert!(matches!(
                Store::open(dir.path(), kind),
                Err(StoreError::Locked(_))
            ));
            drop(first);
            // Released as soon as the store is dropped.
            Store::open(dir.path(), kind).unwrap();
        }
    }
}
