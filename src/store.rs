//! Everything paperboy remembers, in sled under `data_dir/db`.
//!
//! Trees and their keys:
//! - `subscribers`: address → [`Subscriber`]; `subscriber_ids`: id → address.
//! - `papers`: paper id → the latest snapshot, with the first and last edition it was seen in.
//! - `sent`: subscriber id ‖ paper id → edition date. A paper is entered here in the same
//!   transaction that plans the delivery carrying it, so it can never be planned twice.
//! - `editions`: date → the papers of that edition, frozen at the first fetch, so a retry of a
//!   delivery renders the same digest.
//! - `deliveries`: date ‖ subscriber id → [`Delivery`]: one per subscriber per edition.
//!
//! sled writes are durable only after a flush; callers flush at the points the delivery
//! semantics depend on (before a send starts, and right after the server accepts it).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::domain::{
    EditionDate, Paper, PaperId, Status, Subscriber, SubscriberEmail, SubscriberId,
};

const SCHEMA_VERSION: u64 = 1;

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
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Planned and durable; not handed to the server yet (or handed and refused for now).
    Pending,
    /// Being handed to the server. A crash here may mean the server has it: the next run
    /// sends it again with the same Message-ID (at-least-once).
    Sending,
    /// Refused for now (4xx, connection errors): tried again at the next run.
    Retry,
    /// The server accepted it.
    Sent,
    /// Refused permanently (5xx), or still refused after `give_up_after_hours`; not retried.
    Failed,
}

impl DeliveryState {
    /// Whether a run should (still) try to send it.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Sending | Self::Retry)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub date: EditionDate,
    pub subscriber: SubscriberId,
    pub papers: Vec<PaperId>,
    pub message_id: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
    /// When it was planned; a delivery still not accepted long after is given up.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EditionRecord {
    pub date: EditionDate,
    pub created_at: DateTime<Utc>,
    pub papers: Vec<Paper>,
}

impl EditionRecord {
    pub fn new(date: EditionDate) -> Self {
        Self {
            date,
            created_at: Utc::now(),
            papers: Vec::new(),
        }
    }

    pub fn paper(&self, id: &PaperId) -> Option<&Paper> {
        self.papers.iter().find(|p| &p.id == id)
    }

    /// Adds the papers new to this edition; papers already in it keep their first snapshot.
    /// Returns how many were added.
    pub fn merge(&mut self, fresh: &[Paper]) -> usize {
        let before = self.papers.len();
        for p in fresh {
            if self.paper(&p.id).is_none() {
                self.papers.push(p.clone());
            }
        }
        self.papers.len() - before
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredPaper {
    paper: Paper,
    first_seen: EditionDate,
    last_seen: EditionDate,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub papers: usize,
    pub ledger: usize,
    pub editions: usize,
    pub deliveries: usize,
}

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    subscribers: sled::Tree,
    subscriber_ids: sled::Tree,
    papers: sled::Tree,
    sent: sled::Tree,
    editions: sled::Tree,
    deliveries: sled::Tree,
    meta: sled::Tree,
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialise")
}

fn decode<T: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        tree,
        reason: e.to_string(),
    })
}

fn sent_key(subscriber: SubscriberId, paper: &PaperId) -> Vec<u8> {
    let mut k = subscriber.to_bytes().to_vec();
    k.extend_from_slice(paper.as_str().as_bytes());
    k
}

fn delivery_key(date: EditionDate, subscriber: SubscriberId) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&date.key_bytes());
    k[4..].copy_from_slice(&subscriber.to_bytes());
    k
}

impl Store {
    /// Opens (or creates) the store in `data_dir/db`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let path = data_dir.join("db");
        let db = sled::Config::new()
            .path(&path)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io)
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.to_string().contains("lock") =>
                {
                    StoreError::Locked(data_dir.to_path_buf())
                }
                other => StoreError::Open {
                    path: path.clone(),
                    reason: other.to_string(),
                },
            })?;
        let meta = db.open_tree("meta")?;
        match meta.get("schema_version")? {
            None => {
                meta.insert("schema_version", &SCHEMA_VERSION.to_be_bytes())?;
            }
            Some(v) => {
                let found = v
                    .as_ref()
                    .try_into()
                    .map(u64::from_be_bytes)
                    .unwrap_or(u64::MAX);
                if found > SCHEMA_VERSION {
                    return Err(StoreError::Schema { path, found });
                }
            }
        }
        Ok(Self {
            subscribers: db.open_tree("subscribers")?,
            subscriber_ids: db.open_tree("subscriber_ids")?,
            papers: db.open_tree("papers")?,
            sent: db.open_tree("sent")?,
            editions: db.open_tree("editions")?,
            deliveries: db.open_tree("deliveries")?,
            meta,
            db,
        })
    }

    /// Makes every write so far durable.
    pub async fn flush(&self) -> Result<()> {
        self.db.flush_async().await?;
        Ok(())
    }

    // --- subscribers ---------------------------------------------------------------------

    /// Adds a new subscriber; an address that is already known is an error and changes nothing.
    pub fn add_subscriber(&self, s: &Subscriber) -> Result<()> {
        let result = (&self.subscribers, &self.subscriber_ids).transaction(|(subs, ids)| {
            if subs.get(s.email.as_str())?.is_some() {
                return Err(ConflictableTransactionError::Abort(()));
            }
            subs.insert(s.email.as_str(), encode(s))?;
            ids.insert(&s.id.to_bytes(), s.email.as_str())?;
            Ok(())
        });
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(())) => Err(StoreError::Duplicate(s.email.clone())),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    /// Replaces the record of an existing subscriber (same id and address).
    pub fn update_subscriber(&self, s: &Subscriber) -> Result<()> {
        self.subscribers.insert(s.email.as_str(), encode(s))?;
        Ok(())
    }

    pub fn subscriber(&self, email: &SubscriberEmail) -> Result<Option<Subscriber>> {
        self.subscribers
            .get(email.as_str())?
            .map(|v| decode("subscribers", &v))
            .transpose()
    }

    pub fn subscriber_by_id(&self, id: SubscriberId) -> Result<Option<Subscriber>> {
        let Some(email) = self.subscriber_ids.get(id.to_bytes())? else {
            return Ok(None);
        };
        self.subscribers
            .get(email)?
            .map(|v| decode("subscribers", &v))
            .transpose()
    }

    /// Every subscriber, in address order.
    pub fn subscribers(&self) -> Result<Vec<Subscriber>> {
        self.subscribers
            .iter()
            .values()
            .map(|v| decode("subscribers", &v?))
            .collect()
    }

    /// Deletes a subscriber and everything recorded about them: their ledger of sent papers
    /// and their deliveries. Nothing of the address is left in the store.
    pub fn remove_subscriber(&self, email: &SubscriberEmail) -> Result<Subscriber> {
        let s = self
            .subscriber(email)?
            .ok_or_else(|| StoreError::Unknown(email.clone()))?;
        for key in self.sent.scan_prefix(s.id.to_bytes()).keys() {
            self.sent.remove(key?)?;
        }
        for key in self.deliveries.iter().keys() {
            let key = key?;
            if key.len() == 12 && key[4..] == s.id.to_bytes() {
                self.deliveries.remove(key)?;
            }
        }
        self.subscriber_ids.remove(s.id.to_bytes())?;
        self.subscribers.remove(email.as_str())?;
        Ok(s)
    }

    // --- papers and editions -------------------------------------------------------------

    /// Remembers the latest snapshot of each paper and when it was last seen; the "last
    /// seen" date is what the retention window counts from.
    pub fn record_papers(&self, date: EditionDate, papers: &[Paper]) -> Result<()> {
        let mut batch = sled::Batch::default();
        for p in papers {
            let (first_seen, last_seen) = match self.papers.get(p.id.as_str())? {
                Some(v) => {
                    let old: StoredPaper = decode("papers", &v)?;
                    (old.first_seen.min(date), old.last_seen.max(date))
                }
                None => (date, date),
            };
            let stored = StoredPaper {
                paper: p.clone(),
                first_seen,
                last_seen,
            };
            batch.insert(p.id.as_str(), encode(&stored));
        }
        self.papers.apply_batch(batch)?;
        Ok(())
    }

    /// Freezes the papers of an edition: papers already frozen keep their first snapshot,
    /// papers new to this edition are added. Returns the whole frozen edition.
    pub fn freeze_edition(&self, date: EditionDate, fresh: &[Paper]) -> Result<EditionRecord> {
        let stored = self.edition(date)?;
        let is_new = stored.is_none();
        let mut record = stored.unwrap_or_else(|| EditionRecord::new(date));
        if record.merge(fresh) > 0 || is_new {
            self.editions.insert(date.key_bytes(), encode(&record))?;
        }
        Ok(record)
    }

    pub fn edition(&self, date: EditionDate) -> Result<Option<EditionRecord>> {
        self.editions
            .get(date.key_bytes())?
            .map(|v| decode("editions", &v))
            .transpose()
    }

    // --- the ledger and deliveries -------------------------------------------------------

    /// The papers this subscriber has been sent (or has a delivery planned with).
    pub fn sent_papers(&self, subscriber: SubscriberId) -> Result<HashSet<PaperId>> {
        let prefix = subscriber.to_bytes();
        let mut out = HashSet::new();
        for key in self.sent.scan_prefix(prefix).keys() {
            let key = key?;
            let id = std::str::from_utf8(&key[8..])
                .ok()
                .and_then(|s| PaperId::parse(s).ok())
                .ok_or_else(|| StoreError::Corrupt {
                    tree: "sent",
                    reason: "a key is not a paper id".into(),
                })?;
            out.insert(id);
        }
        Ok(out)
    }

    pub fn delivery(
        &self,
        date: EditionDate,
        subscriber: SubscriberId,
    ) -> Result<Option<Delivery>> {
        self.deliveries
            .get(delivery_key(date, subscriber))?
            .map(|v| decode("deliveries", &v))
            .transpose()
    }

    /// Every delivery of an edition.
    pub fn deliveries(&self, date: EditionDate) -> Result<Vec<Delivery>> {
        self.deliveries
            .scan_prefix(date.key_bytes())
            .values()
            .map(|v| decode("deliveries", &v?))
            .collect()
    }

    /// Plans a delivery and enters its papers in the subscriber's ledger, atomically.
    /// Returns false (and changes nothing) when the subscriber already has a delivery for
    /// this edition: one digest per subscriber per edition, however often a run repeats.
    pub fn plan_delivery(&self, d: &Delivery) -> Result<bool> {
        let key = delivery_key(d.date, d.subscriber);
        let date = d.date.key_bytes();
        let result = (&self.deliveries, &self.sent).transaction(|(deliveries, sent)| {
            if deliveries.get(key)?.is_some() {
                return Err(ConflictableTransactionError::Abort(()));
            }
            deliveries.insert(&key, encode(d))?;
            for p in &d.papers {
                sent.insert(sent_key(d.subscriber, p), &date)?;
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(true),
            Err(TransactionError::Abort(())) => Ok(false),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    pub fn update_delivery(&self, d: &Delivery) -> Result<()> {
        self.deliveries
            .insert(delivery_key(d.date, d.subscriber), encode(d))?;
        Ok(())
    }

    /// The newest edition on record: what the subscribe page shows as a sample.
    pub fn latest_edition(&self) -> Result<Option<EditionRecord>> {
        self.editions
            .last()?
            .map(|(_, v)| decode("editions", &v))
            .transpose()
    }

    fn meta_time(&self, key: &str) -> Result<Option<DateTime<Utc>>> {
        Ok(self
            .meta
            .get(key)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .and_then(|b| DateTime::from_timestamp(i64::from_be_bytes(b), 0)))
    }

    fn set_meta_time(&self, key: &str, at: DateTime<Utc>) -> Result<()> {
        self.meta.insert(key, &at.timestamp().to_be_bytes())?;
        Ok(())
    }

    /// When the source was last fetched successfully, for `/healthz` across restarts.
    pub fn last_fetch_ok(&self) -> Result<Option<DateTime<Utc>>> {
        self.meta_time("last_fetch_ok")
    }

    pub fn set_last_fetch_ok(&self, at: DateTime<Utc>) -> Result<()> {
        self.set_meta_time("last_fetch_ok", at)
    }

    /// Up to when the scheduler has dealt with every scheduled time: what `serve` compares
    /// with the schedule after downtime to find a missed edition.
    pub fn schedule_handled_until(&self) -> Result<Option<DateTime<Utc>>> {
        self.meta_time("schedule_handled_until")
    }

    pub fn set_schedule_handled_until(&self, at: DateTime<Utc>) -> Result<()> {
        self.set_meta_time("schedule_handled_until", at)
    }

    /// Subscriber counts by status, for metrics.
    pub fn count_by_status(&self) -> Result<Vec<(&'static str, usize)>> {
        let mut counts = [0usize; 4];
        let all = [
            Status::Pending,
            Status::Active,
            Status::Unsubscribed,
            Status::Bounced,
        ];
        for s in self.subscribers()? {
            counts[all
                .iter()
                .position(|x| *x == s.status)
                .expect("every status")] += 1;
        }
        Ok(all.iter().map(|s| s.as_str()).zip(counts).collect())
    }

    // --- backup ---------------------------------------------------------------------------

    /// Every entry of every tree, for a backup.
    pub fn dump(&self) -> Result<Vec<RawEntry>> {
        let mut out = Vec::new();
        for name in self.db.tree_names() {
            let tree = self.db.open_tree(&name)?;
            let name = String::from_utf8_lossy(&name).into_owned();
            for item in tree.iter() {
                let (k, v) = item?;
                out.push((name.clone(), k.to_vec(), v.to_vec()));
            }
        }
        Ok(out)
    }

    /// Whether nothing but the schema version is stored yet.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.subscribers.is_empty()
            && self.editions.is_empty()
            && self.papers.is_empty()
            && self.deliveries.is_empty())
    }

    /// Writes entries from a backup, in one batch per tree.
    pub fn load(&self, entries: &[RawEntry]) -> Result<()> {
        let mut batches: std::collections::BTreeMap<&str, sled::Batch> = Default::default();
        for (tree, k, v) in entries {
            batches
                .entry(tree)
                .or_default()
                .insert(k.as_slice(), v.as_slice());
        }
        for (tree, batch) in batches {
            self.db.open_tree(tree)?.apply_batch(batch)?;
        }
        Ok(())
    }

    // --- retention -----------------------------------------------------------------------

    /// Forgets what can no longer matter: papers not seen on the source for `retention_days`,
    /// ledger entries for those papers, and editions and deliveries older than the window.
    /// A ledger entry lives as long as its paper is still being seen, so a paper that keeps
    /// trending is never sent again however old the entry.
    pub fn prune(&self, today: EditionDate, retention_days: u32) -> Result<PruneReport> {
        let cutoff = today.minus_days(retention_days);
        let mut report = PruneReport::default();
        for item in self.papers.iter() {
            let (key, value) = item?;
            let stored: StoredPaper = decode("papers", &value)?;
            if stored.last_seen < cutoff {
                self.papers.remove(key)?;
                report.papers += 1;
            }
        }
        for item in self.sent.iter() {
            let (key, value) = item?;
            let sent_on = <[u8; 4]>::try_from(value.as_ref())
                .ok()
                .and_then(EditionDate::from_key_bytes);
            let paper_known = self.papers.contains_key(&key[8..])?;
            if !paper_known && sent_on.is_none_or(|d| d < cutoff) {
                self.sent.remove(key)?;
                report.ledger += 1;
            }
        }
        let cutoff_key = cutoff.key_bytes();
        for key in self.editions.range(..cutoff_key).keys() {
            self.editions.remove(key?)?;
            report.editions += 1;
        }
        for key in self.deliveries.range(..cutoff_key.to_vec()).keys() {
            self.deliveries.remove(key?)?;
            report.deliveries += 1;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Preferences;

    fn paper(id: &str, upvotes: u32) -> Paper {
        Paper::new(PaperId::parse(id).unwrap(), format!("Paper {id}"), upvotes)
    }

    fn date(s: &str) -> EditionDate {
        EditionDate::parse(s).unwrap()
    }

    fn subscriber(email: &str) -> Subscriber {
        Subscriber::new(
            SubscriberEmail::parse(email).unwrap(),
            Preferences::default(),
            true,
        )
    }

    fn delivery(d: EditionDate, s: &Subscriber, papers: &[&str]) -> Delivery {
        Delivery {
            date: d,
            subscriber: s.id,
            papers: papers.iter().map(|p| PaperId::parse(p).unwrap()).collect(),
            message_id: "<x@y>".into(),
            state: DeliveryState::Pending,
            attempts: 0,
            last_error: None,
            updated_at: Utc::now(),
            created_at: Some(Utc::now()),
        }
    }

    #[test]
    fn subscribers_are_unique_and_removable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let s = subscriber("ann@example.org");
        store.add_subscriber(&s).unwrap();
        assert!(matches!(
            store.add_subscriber(&subscriber("ANN@example.org")),
            Err(StoreError::Duplicate(_))
        ));
        assert_eq!(
            store.subscriber_by_id(s.id).unwrap().unwrap().email,
            s.email
        );
        let d = date("2025-12-08");
        assert!(
            store
                .plan_delivery(&delivery(d, &s, &["2501.00001"]))
                .unwrap()
        );
        store.remove_subscriber(&s.email).unwrap();
        assert!(store.subscriber(&s.email).unwrap().is_none());
        assert!(store.subscriber_by_id(s.id).unwrap().is_none());
        assert!(store.sent_papers(s.id).unwrap().is_empty());
        assert!(store.deliveries(d).unwrap().is_empty());
        assert!(matches!(
            store.remove_subscriber(&s.email),
            Err(StoreError::Unknown(_))
        ));
    }

    #[test]
    fn one_delivery_per_subscriber_per_edition() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let s = subscriber("ann@example.org");
        store.add_subscriber(&s).unwrap();
        let d = date("2025-12-08");
        assert!(
            store
                .plan_delivery(&delivery(d, &s, &["2501.00001"]))
                .unwrap()
        );
        assert!(
            !store
                .plan_delivery(&delivery(d, &s, &["2501.00002"]))
                .unwrap()
        );
        let sent = store.sent_papers(s.id).unwrap();
        assert_eq!(sent.len(), 1, "the refused plan must leave no ledger entry");
        assert_eq!(store.deliveries(d).unwrap().len(), 1);
        assert_eq!(store.subscribers().unwrap()[0].status, Status::Active);
    }

    #[test]
    fn a_second_process_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        // sled's lock is per process (flock), so probe it from a child process.
        let status = std::process::Command::new("flock")
            .args(["-n", "-E", "42"])
            .arg(dir.path().join("db/db"))
            .arg("true")
            .status()
            .expect("flock (util-linux) runs");
        assert_eq!(status.code(), Some(42), "the store is not locked");
    }

    #[test]
    fn frozen_editions_keep_their_first_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = date("2025-12-08");
        store.freeze_edition(d, &[paper("2501.00001", 5)]).unwrap();
        let e = store
            .freeze_edition(d, &[paper("2501.00001", 50), paper("2501.00002", 7)])
            .unwrap();
        assert_eq!(e.papers.len(), 2);
        assert_eq!(e.papers[0].upvotes, 5);
    }

    #[test]
    fn prune_forgets_only_what_cannot_matter() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let s = subscriber("ann@example.org");
        store.add_subscriber(&s).unwrap();
        let old = date("2025-01-01");
        let today = date("2025-12-08");
        store
            .record_papers(old, &[paper("2501.00001", 1), paper("2501.00002", 1)])
            .unwrap();
        store
            .freeze_edition(old, &[paper("2501.00001", 1)])
            .unwrap();
        store
            .plan_delivery(&delivery(old, &s, &["2501.00001", "2501.00002"]))
            .unwrap();
        // One of the two papers is still trending today: its ledger entry must stay.
        store
            .record_papers(today, &[paper("2501.00002", 9)])
            .unwrap();
        let report = store.prune(today, 180).unwrap();
        assert_eq!(
            report,
            PruneReport {
                papers: 1,
                ledger: 1,
                editions: 1,
                deliveries: 1
            }
        );
        let sent = store.sent_papers(s.id).unwrap();
        assert!(sent.contains(&PaperId::parse("2501.00002").unwrap()));
        assert_eq!(sent.len(), 1);
    }
}
