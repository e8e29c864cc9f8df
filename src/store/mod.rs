//! Everything paperboy remembers, in sled under `data_dir/db`.
//!
//! Trees and their keys:
//! - `subscribers`: address → [`Subscriber`]; `subscriber_ids`: id → address.
//! - `papers`: paper id → its sequence number and the first and last edition it was seen in.
//! - `paper_seqs`: sequence number → paper id, and `meta/next_paper_seq`.
//! - `ledger`: subscriber id → [`ledger::Ledger`]: the editions planned for them and the
//!   papers those carried. Updated in the same transaction that plans a delivery, so no
//!   paper and no edition can be planned twice.
//! - `editions`: date → the papers of that edition, frozen at the first fetch, so a retry of a
//!   delivery renders the same digest.
//! - `deliveries`: date ‖ subscriber id → [`Delivery`]: the outbox, one per subscriber per
//!   edition; once done, kept until the run of a later edition.
//!
//! sled writes are durable only after a flush; callers flush at the points the delivery
//! semantics depend on (plans before the first send, each acceptance before its sender
//! moves on).

mod ledger;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use self::ledger::Ledger;
use crate::domain::{
    EditionDate, Paper, PaperId, Status, Subscriber, SubscriberEmail, SubscriberId,
};

/// 2: the per-subscriber `ledger` replaced one `sent` entry per paper (migrated on open).
const SCHEMA_VERSION: u64 = 2;

/// sled's page cache.
const CACHE_BYTES: u64 = 32 * 1024 * 1024;

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
    /// Being handed to the server: written by earlier versions before each send, read as
    /// open (a crash then may mean the server has it, and the next run sends it again with
    /// the same Message-ID). Sends now leave the record as it was until their outcome.
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

/// What is remembered of a paper between editions (its text lives in the editions).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredPaper {
    /// Its number in the ledgers; given when first seen, counting up.
    #[serde(default)]
    seq: Option<u32>,
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

/// The papers and editions planned for one subscriber, as the ledger holds them.
pub struct SentBefore(Ledger);

impl SentBefore {
    /// Which of these papers (with their numbers) are among them.
    pub fn among(&self, papers: &[(PaperId, u32)]) -> HashSet<PaperId> {
        papers
            .iter()
            .filter(|(_, seq)| self.0.papers.contains(seq))
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub fn has_edition(&self, date: EditionDate) -> bool {
        self.0.days.contains(&date.day_number())
    }
}

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    subscribers: sled::Tree,
    subscriber_ids: sled::Tree,
    papers: sled::Tree,
    paper_seqs: sled::Tree,
    ledger: sled::Tree,
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

/// Marks an edition stored deflated. Editions written before were plain JSON, which starts
/// with `{`, so both read back.
const DEFLATED: u8 = 1;

/// Editions are the bulk of the store's text (abstracts, author lists: ~80 KB a day);
/// deflated they take a third of that.
fn encode_edition(record: &EditionRecord) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::DeflateEncoder::new(vec![DEFLATED], flate2::Compression::default());
    z.write_all(&encode(record)).expect("writing to memory");
    z.finish().expect("writing to memory")
}

fn decode_edition(bytes: &[u8]) -> Result<EditionRecord> {
    use std::io::Read;
    match bytes.split_first() {
        Some((&DEFLATED, deflated)) => {
            let mut json = Vec::new();
            flate2::read::DeflateDecoder::new(deflated)
                .read_to_end(&mut json)
                .map_err(|e| StoreError::Corrupt {
                    tree: "editions",
                    reason: e.to_string(),
                })?;
            decode("editions", &json)
        }
        _ => decode("editions", bytes),
    }
}

fn decode_ledger(bytes: &[u8]) -> Result<Ledger> {
    Ledger::decode(bytes).map_err(|reason| StoreError::Corrupt {
        tree: "ledger",
        reason,
    })
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
            // sled caches up to 1 GB by default; an edition reads each record about once,
            // so a small cache costs little and keeps a 100,000-subscriber run lean.
            .cache_capacity(CACHE_BYTES)
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
        let found = match meta.get("schema_version")? {
            None => SCHEMA_VERSION,
            Some(v) => v
                .as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .unwrap_or(u64::MAX),
        };
        if found > SCHEMA_VERSION {
            return Err(StoreError::Schema { path, found });
        }
        let store = Self {
            subscribers: db.open_tree("subscribers")?,
            subscriber_ids: db.open_tree("subscriber_ids")?,
            papers: db.open_tree("papers")?,
            paper_seqs: db.open_tree("paper_seqs")?,
            ledger: db.open_tree("ledger")?,
            editions: db.open_tree("editions")?,
            deliveries: db.open_tree("deliveries")?,
            meta,
            db,
        };
        if found < 2 {
            store.migrate_sent_to_ledger()?;
        }
        store
            .meta
            .insert("schema_version", &SCHEMA_VERSION.to_be_bytes())?;
        store.db.flush()?;
        Ok(store)
    }

    /// Schema 1 kept one `sent` entry (subscriber ‖ paper → date) per paper: folds them into
    /// ledgers, with the editions of the deliveries on record, then drops the old tree.
    fn migrate_sent_to_ledger(&self) -> Result<()> {
        let sent = self.db.open_tree("sent")?;
        let mut entries = Vec::new();
        for item in sent.iter() {
            let (key, value) = item?;
            let subscriber = key.get(..8).and_then(|k| <[u8; 8]>::try_from(k).ok());
            let paper = key
                .get(8..)
                .and_then(|k| std::str::from_utf8(k).ok())
                .and_then(|s| PaperId::parse(s).ok());
            let day = <[u8; 4]>::try_from(value.as_ref())
                .ok()
                .and_then(EditionDate::from_key_bytes);
            if let (Some(subscriber), Some(paper)) = (subscriber, paper) {
                entries.push((subscriber, paper, day));
            }
        }
        let ids: Vec<PaperId> = entries.iter().map(|(_, p, _)| p.clone()).collect();
        let seqs = self.assign_seqs(&ids, None)?;
        let mut ledgers: std::collections::BTreeMap<[u8; 8], Ledger> = Default::default();
        for (subscriber, paper, day) in entries {
            let ledger = ledgers.entry(subscriber).or_default();
            ledger.papers.extend(seqs.get(&paper));
            ledger.days.extend(day.map(|d| d.day_number()));
        }
        for key in self.deliveries.iter().keys() {
            let key = key?;
            let day = key
                .get(..4)
                .and_then(|k| <[u8; 4]>::try_from(k).ok())
                .and_then(EditionDate::from_key_bytes);
            let subscriber = key.get(4..).and_then(|k| <[u8; 8]>::try_from(k).ok());
            if let (Some(day), Some(subscriber)) = (day, subscriber) {
                ledgers
                    .entry(subscriber)
                    .or_default()
                    .days
                    .insert(day.day_number());
            }
        }
        let mut batch = sled::Batch::default();
        for (subscriber, ledger) in &ledgers {
            batch.insert(subscriber.as_slice(), ledger.encode());
        }
        self.ledger.apply_batch(batch)?;
        self.db.flush()?;
        self.db.drop_tree("sent")?;
        tracing::info!(
            subscribers = ledgers.len(),
            "store upgraded to schema 2: one ledger record per subscriber"
        );
        Ok(())
    }

    /// The sequence number of each paper, numbering those that have none yet. `seen`, when
    /// given, also records the papers as seen on that edition date.
    fn assign_seqs(
        &self,
        ids: &[PaperId],
        seen: Option<EditionDate>,
    ) -> Result<std::collections::HashMap<PaperId, u32>> {
        let result = (&self.papers, &self.paper_seqs, &self.meta).transaction(
            |(papers, paper_seqs, meta)| {
                let mut next = meta
                    .get("next_paper_seq")?
                    .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
                    .map(u32::from_be_bytes)
                    .unwrap_or(0);
                let mut out = std::collections::HashMap::new();
                for id in ids {
                    let stored: Option<StoredPaper> = match papers.get(id.as_str())? {
                        Some(v) => Some(
                            decode("papers", &v).map_err(ConflictableTransactionError::Abort)?,
                        ),
                        None => None,
                    };
                    // Numbered without being seen (planned from papers not recorded first):
                    // seen on the earliest day, so the first real sighting sets both dates.
                    let day = seen.unwrap_or(EditionDate::from_day_number(0).expect("day 0"));
                    let mut stored = stored.unwrap_or(StoredPaper {
                        seq: None,
                        first_seen: day,
                        last_seen: day,
                    });
                    let seq = match stored.seq {
                        Some(seq) => seq,
                        None => {
                            let seq = next;
                            next += 1;
                            paper_seqs.insert(&seq.to_be_bytes(), id.as_str())?;
                            seq
                        }
                    };
                    stored.seq = Some(seq);
                    if let Some(date) = seen {
                        stored.first_seen = stored.first_seen.min(date);
                        stored.last_seen = stored.last_seen.max(date);
                    }
                    papers.insert(id.as_str(), encode(&stored))?;
                    out.insert(id.clone(), seq);
                }
                meta.insert("next_paper_seq", &next.to_be_bytes())?;
                Ok(out)
            },
        );
        match result {
            Ok(out) => Ok(out),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    /// Makes every write so far durable.
    pub async fn flush(&self) -> Result<()> {
        // sled's own `flush_async` finishes on sled's thread pool, which can keep the
        // database alive a moment after the last handle is dropped; a blocking flush on
        // tokio's pool is done when it returns.
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .expect("flush does not panic")?;
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
        self.subscribers_iter().collect()
    }

    /// Every subscriber, in address order, read one at a time: what planning walks, so that
    /// a run does not hold the whole list in memory.
    pub fn subscribers_iter(&self) -> impl Iterator<Item = Result<Subscriber>> + use<> {
        self.subscribers
            .iter()
            .values()
            .map(|v| decode("subscribers", &v?))
    }

    /// Deletes a subscriber and everything recorded about them: their ledger and their
    /// deliveries. Nothing of the address is left in the store.
    pub fn remove_subscriber(&self, email: &SubscriberEmail) -> Result<Subscriber> {
        let s = self
            .subscriber(email)?
            .ok_or_else(|| StoreError::Unknown(email.clone()))?;
        self.ledger.remove(s.id.to_bytes())?;
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

    /// Remembers when each paper was last seen (what the retention window counts from) and
    /// gives papers seen for the first time their sequence number.
    pub fn record_papers(&self, date: EditionDate, papers: &[Paper]) -> Result<()> {
        let ids: Vec<PaperId> = papers.iter().map(|p| p.id.clone()).collect();
        self.assign_seqs(&ids, Some(date))?;
        Ok(())
    }

    /// Freezes the papers of an edition: papers already frozen keep their first snapshot,
    /// papers new to this edition are added. Returns the whole frozen edition.
    pub fn freeze_edition(&self, date: EditionDate, fresh: &[Paper]) -> Result<EditionRecord> {
        let stored = self.edition(date)?;
        let is_new = stored.is_none();
        let mut record = stored.unwrap_or_else(|| EditionRecord::new(date));
        if record.merge(fresh) > 0 || is_new {
            self.editions
                .insert(date.key_bytes(), encode_edition(&record))?;
        }
        Ok(record)
    }

    pub fn edition(&self, date: EditionDate) -> Result<Option<EditionRecord>> {
        self.editions
            .get(date.key_bytes())?
            .map(|v| decode_edition(&v))
            .transpose()
    }

    // --- the ledger and deliveries -------------------------------------------------------

    fn ledger_of(&self, subscriber: SubscriberId) -> Result<Ledger> {
        self.ledger
            .get(subscriber.to_bytes())?
            .map(|v| decode_ledger(&v))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// The sequence numbers of those of these papers that have one (papers never recorded
    /// have none, and so cannot be in any ledger). Read once per edition.
    pub fn seqs_of(&self, ids: &[PaperId]) -> Result<Vec<(PaperId, u32)>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let stored = self
                .papers
                .get(id.as_str())?
                .map(|v| decode::<StoredPaper>("papers", &v))
                .transpose()?;
            if let Some(seq) = stored.and_then(|p| p.seq) {
                out.push((id.clone(), seq));
            }
        }
        Ok(out)
    }

    /// What the subscriber has been planned so far (within the retention window): read once
    /// per subscriber when planning.
    pub fn sent_before(&self, subscriber: SubscriberId) -> Result<SentBefore> {
        self.ledger_of(subscriber).map(SentBefore)
    }

    /// Which of these papers (with their numbers, from [`Store::seqs_of`]) this subscriber
    /// has been sent or has a delivery planned with.
    pub fn sent_among(
        &self,
        subscriber: SubscriberId,
        papers: &[(PaperId, u32)],
    ) -> Result<HashSet<PaperId>> {
        Ok(self.sent_before(subscriber)?.among(papers))
    }

    /// Whether a delivery of this edition was ever planned for the subscriber (within the
    /// retention window), even if the delivery itself has since been cleared away.
    pub fn has_edition(&self, subscriber: SubscriberId, date: EditionDate) -> Result<bool> {
        Ok(self.sent_before(subscriber)?.has_edition(date))
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
        self.deliveries_iter(date).collect()
    }

    /// Every delivery of an edition, read one at a time: an edition can have a delivery for
    /// each of many thousands of subscribers.
    pub fn deliveries_iter(&self, date: EditionDate) -> impl Iterator<Item = Result<Delivery>> {
        self.deliveries
            .scan_prefix(date.key_bytes())
            .values()
            .map(|v| decode("deliveries", &v?))
    }

    /// Plans a delivery and enters it and its papers in the subscriber's ledger, atomically.
    /// Returns false (and changes nothing) when the subscriber already had a delivery of
    /// this edition: one digest per subscriber per edition, however often a run repeats.
    ///
    /// `known` holds papers' numbers already looked up (the page's, from [`Store::seqs_of`]);
    /// the others are looked up here.
    pub fn plan_delivery(&self, d: &Delivery, known: &[(PaperId, u32)]) -> Result<bool> {
        let key = delivery_key(d.date, d.subscriber);
        let mut seqs: Vec<u32> = d
            .papers
            .iter()
            .filter_map(|id| known.iter().find(|(k, _)| k == id).map(|(_, n)| *n))
            .collect();
        if seqs.len() < d.papers.len() {
            seqs = self
                .seqs_of(&d.papers)?
                .into_iter()
                .map(|(_, n)| n)
                .collect();
        }
        if seqs.len() < d.papers.len() {
            // Planned from papers that were not recorded first: number them now.
            seqs = self.assign_seqs(&d.papers, None)?.into_values().collect();
        }
        let day = d.date.day_number();
        let result = (&self.deliveries, &self.ledger).transaction(|(deliveries, ledger)| {
            let mut record = match ledger.get(d.subscriber.to_bytes())? {
                Some(v) => decode_ledger(&v).map_err(ConflictableTransactionError::Abort)?,
                None => Ledger::default(),
            };
            if deliveries.get(key)?.is_some() || !record.days.insert(day) {
                return Ok(false);
            }
            record.papers.extend(&seqs);
            deliveries.insert(&key, encode(d))?;
            ledger.insert(&d.subscriber.to_bytes(), record.encode())?;
            Ok(true)
        });
        match result {
            Ok(planned) => Ok(planned),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(e.into()),
        }
    }

    /// Editions with deliveries still to send (pending, in flight at a crash, or deferred).
    pub fn open_dates(&self) -> Result<Vec<EditionDate>> {
        let mut dates = Vec::new();
        for item in self.deliveries.iter() {
            let (key, value) = item?;
            let date = <[u8; 4]>::try_from(&key[..4])
                .ok()
                .and_then(EditionDate::from_key_bytes);
            if let Some(date) = date
                && dates.last() != Some(&date)
                && decode::<Delivery>("deliveries", &value)?.state.is_open()
            {
                dates.push(date);
            }
        }
        Ok(dates)
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
            .map(|(_, v)| decode_edition(&v))
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

    /// Forgets what can no longer matter: papers not seen on the source for `retention_days`
    /// (and their numbers in every ledger), editions older than the window, and the finished
    /// deliveries of editions before `today` (the ledger remembers them; the latest
    /// edition's stay until the next run, to show what it did). A paper that keeps trending
    /// stays in the ledgers however long ago it was sent, so it is never sent again.
    pub fn prune(&self, today: EditionDate, retention_days: u32) -> Result<PruneReport> {
        let cutoff = today.minus_days(retention_days);
        let mut report = PruneReport::default();
        let mut forgotten = HashSet::new();
        for item in self.papers.iter() {
            let (key, value) = item?;
            let stored: StoredPaper = decode("papers", &value)?;
            if stored.last_seen < cutoff {
                self.papers.remove(key)?;
                if let Some(seq) = stored.seq {
                    self.paper_seqs.remove(seq.to_be_bytes())?;
                    forgotten.insert(seq);
                }
                report.papers += 1;
            }
        }
        let first_day = cutoff.day_number();
        for item in self.ledger.iter() {
            let (key, value) = item?;
            let mut record = decode_ledger(&value)?;
            let before = record.papers.len();
            record.papers.retain(|p| !forgotten.contains(p));
            report.ledger += before - record.papers.len();
            let kept_days = record.days.split_off(&first_day);
            // `record.days` now holds the days that fell out of the window.
            let changed = !record.days.is_empty() || before != record.papers.len();
            record.days = kept_days;
            if changed {
                // Compare-and-swap: a subscriber planned meanwhile keeps the newer record.
                let _ = self
                    .ledger
                    .compare_and_swap(&key, Some(&value), Some(record.encode()))?;
            }
        }
        let cutoff_key = cutoff.key_bytes();
        for key in self.editions.range(..cutoff_key).keys() {
            self.editions.remove(key?)?;
            report.editions += 1;
        }
        for item in self.deliveries.range(..today.key_bytes()) {
            let (key, value) = item?;
            let d: Delivery = decode("deliveries", &value)?;
            if !d.state.is_open() || key[..4] < cutoff_key[..] {
                self.deliveries.remove(key)?;
                report.deliveries += 1;
            }
        }
        Ok(report)
    }
}

/// Group commit: each writer waits until its writes are durable, and one flush makes the
/// writes of everyone waiting at that moment durable together. With `n` writers the store
/// syncs about once per round of `n` writes instead of once per write, and no writer goes on
/// before its own write is on disk.
pub struct GroupCommit {
    store: Store,
    /// Writers that asked so far; a writer's ticket is its place in this count.
    asked: AtomicU64,
    /// Every ticket up to this one is durable.
    durable: AtomicU64,
    flushing: tokio::sync::Mutex<()>,
}

impl GroupCommit {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            asked: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            flushing: tokio::sync::Mutex::new(()),
        }
    }

    /// Returns once every write this task made before calling is durable.
    pub async fn durable(&self) -> Result<()> {
        let ticket = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        while self.durable.load(Ordering::SeqCst) < ticket {
            let _turn = self.flushing.lock().await;
            if self.durable.load(Ordering::SeqCst) >= ticket {
                break;
            }
            // Every ticket handed out so far belongs to a write already made, so the flush
            // below covers all of them.
            let covered = self.asked.load(Ordering::SeqCst);
            self.store.flush().await?;
            self.durable.fetch_max(covered, Ordering::SeqCst);
        }
        Ok(())
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
                .plan_delivery(&delivery(d, &s, &["2501.00001"]), &[])
                .unwrap()
        );
        store.remove_subscriber(&s.email).unwrap();
        assert!(store.subscriber(&s.email).unwrap().is_none());
        assert!(store.subscriber_by_id(s.id).unwrap().is_none());
        assert!(sent(&store, &s, &["2501.00001"]).is_empty());
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
                .plan_delivery(&delivery(d, &s, &["2501.00001"]), &[])
                .unwrap()
        );
        assert!(
            !store
                .plan_delivery(&delivery(d, &s, &["2501.00002"]), &[])
                .unwrap()
        );
        let sent = sent(&store, &s, &["2501.00001", "2501.00002"]);
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
        assert_eq!(store.edition(d).unwrap().unwrap().papers, e.papers);
    }

    #[test]
    fn editions_are_stored_deflated_and_plain_ones_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = date("2025-12-08");
        let mut record = EditionRecord::new(d);
        let mut p = paper("2501.00001", 5);
        p.summary = "We study how small models learn to read long documents. ".repeat(30);
        record.papers.push(p);
        let plain = encode(&record);
        let stored = encode_edition(&record);
        assert!(
            stored.len() * 4 < plain.len(),
            "{} vs {}",
            stored.len(),
            plain.len()
        );
        assert_eq!(decode_edition(&stored).unwrap().papers, record.papers);
        // Editions written before they were deflated are plain JSON.
        assert_eq!(decode_edition(&plain).unwrap().papers, record.papers);
        let damaged = [DEFLATED, 0xff, 0x00, 0x12];
        assert!(matches!(
            decode_edition(&damaged),
            Err(StoreError::Corrupt {
                tree: "editions",
                ..
            })
        ));
        store.freeze_edition(d, &record.papers).unwrap();
        assert_eq!(store.edition(d).unwrap().unwrap().papers, record.papers);
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
            .plan_delivery(&delivery(old, &s, &["2501.00001", "2501.00002"]), &[])
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
        let sent = sent(&store, &s, &["2501.00001", "2501.00002"]);
        assert!(sent.contains(&PaperId::parse("2501.00002").unwrap()));
        assert_eq!(sent.len(), 1);
        // The edition is older than the window: forgotten with the rest.
        assert!(!store.has_edition(s.id, old).unwrap());
    }

    #[test]
    fn finished_deliveries_leave_the_outbox_but_not_the_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let s = subscriber("ann@example.org");
        store.add_subscriber(&s).unwrap();
        let (monday, friday) = (date("2025-12-08"), date("2025-12-12"));
        store
            .record_papers(monday, &[paper("2501.00001", 1)])
            .unwrap();
        let mut d = delivery(monday, &s, &["2501.00001"]);
        assert!(store.plan_delivery(&d, &[]).unwrap());
        // Still open four days later: kept, it can still be sent.
        assert_eq!(store.prune(friday, 180).unwrap().deliveries, 0);
        d.state = DeliveryState::Sent;
        store.update_delivery(&d).unwrap();
        // The run of Monday's own edition keeps its outcome in view.
        assert_eq!(store.prune(monday, 180).unwrap().deliveries, 0);
        assert_eq!(store.deliveries(monday).unwrap().len(), 1);
        assert_eq!(store.prune(friday, 180).unwrap().deliveries, 1);
        assert!(store.deliveries(monday).unwrap().is_empty());
        // Gone from the outbox, still remembered: no second digest of Monday's edition.
        assert!(store.has_edition(s.id, monday).unwrap());
        assert!(
            !store
                .plan_delivery(&delivery(monday, &s, &["2501.00002"]), &[])
                .unwrap()
        );
        assert_eq!(sent(&store, &s, &["2501.00001"]).len(), 1);
    }

    #[test]
    fn a_schema_1_ledger_is_carried_over() {
        let dir = tempfile::tempdir().unwrap();
        let s = subscriber("ann@example.org");
        let d = date("2025-12-08");
        {
            let store = Store::open(dir.path()).unwrap();
            store.add_subscriber(&s).unwrap();
            store.record_papers(d, &[paper("2501.00001", 1)]).unwrap();
            // What schema 1 wrote: subscriber ‖ paper → date, and the delivery.
            let sent = store.db.open_tree("sent").unwrap();
            let mut key = s.id.to_bytes().to_vec();
            key.extend_from_slice(b"2501.00002");
            sent.insert(key, &d.key_bytes()).unwrap();
            store
                .deliveries
                .insert(
                    delivery_key(d, s.id),
                    encode(&delivery(d, &s, &["2501.00002"])),
                )
                .unwrap();
            store
                .meta
                .insert("schema_version", &1u64.to_be_bytes())
                .unwrap();
            store.db.flush().unwrap();
        }
        // sled's threads of the dropped instance may hold the directory a moment longer.
        let mut reopened = Store::open(dir.path());
        for _ in 0..100 {
            if !matches!(reopened, Err(StoreError::Locked(_))) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
            reopened = Store::open(dir.path());
        }
        let store = reopened.unwrap();
        assert_eq!(
            sent(&store, &s, &["2501.00001", "2501.00002"]),
            HashSet::from([PaperId::parse("2501.00002").unwrap()])
        );
        assert!(store.has_edition(s.id, d).unwrap());
        assert!(!store.db.tree_names().iter().any(|n| n.as_ref() == b"sent"));
    }

    fn sent(store: &Store, s: &Subscriber, ids: &[&str]) -> HashSet<PaperId> {
        let ids: Vec<PaperId> = ids.iter().map(|p| PaperId::parse(p).unwrap()).collect();
        store
            .sent_among(s.id, &store.seqs_of(&ids).unwrap())
            .unwrap()
    }
}
