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

mod archive;
pub mod engine;
mod history;
mod ledger;

use std::collections::HashSet;
use std::ops::Bound::{Excluded, Included, Unbounded};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use self::archive::EditionSummary;
use self::engine::Db;
pub use self::engine::EngineKind;
use self::ledger::{Ledger, NO_SELECTION, decode_seqs, encode_seqs};
use crate::domain::{
    EditionDate, Paper, PaperId, SentOn, Sighting, Status, Subscriber, SubscriberEmail,
    SubscriberId,
};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

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
    #[error("storage I/O error: {0}")]
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
    /// The papers that are late bloomers for this subscriber, marked as such in the digest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub late: Vec<(PaperId, Sighting)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EditionRecord {
    pub date: EditionDate,
    pub created_at: DateTime<Utc>,
    /// The page's papers.
    pub papers: Vec<Paper>,
    /// Papers of recent days' lists that were no longer on the page: only late bloomers
    /// are sent from these, and they are not part of the edition as the archive shows it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<Paper>,
}

impl EditionRecord {
    pub fn new(date: EditionDate) -> Self {
        Self {
            date,
            created_at: Utc::now(),
            papers: Vec::new(),
            recent: Vec::new(),
        }
    }

    pub fn paper(&self, id: &PaperId) -> Option<&Paper> {
        self.papers.iter().chain(&self.recent).find(|p| &p.id == id)
    }

    /// Every paper a digest of this edition can hold: the page's, then the recent ones.
    pub fn all_papers(&self) -> Vec<Paper> {
        self.papers.iter().chain(&self.recent).cloned().collect()
    }

    /// Adds the papers new to this edition; papers already in it keep their first snapshot.
    /// Returns how many were added.
    pub fn merge(&mut self, fresh: &[Paper], recent: &[Paper]) -> usize {
        let before = self.papers.len() + self.recent.len();
        for p in fresh {
            if self.paper(&p.id).is_none() {
                self.papers.push(p.clone());
            }
        }
        for p in recent {
            if self.paper(&p.id).is_none() {
                self.recent.push(p.clone());
            }
        }
        self.papers.len() + self.recent.len() - before
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
    /// Its upvotes when first seen: a paper that passes a subscriber's minimum only later
    /// is a late bloomer for them. Unknown for papers recorded by earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    first_upvotes: Option<u32>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub papers: usize,
    pub ledger: usize,
    pub selections: usize,
    pub deliveries: usize,
}

/// The papers and editions planned for one subscriber, as the ledger holds them.
pub struct SentBefore(Ledger);

impl SentBefore {
    /// Which of the page's papers are among them, with the edition each went out with
    /// when the store still knows it (the selections of editions in the window).
    pub fn among(&self, page: &PageIndex) -> SentOn {
        let mut hit: Vec<Option<Option<EditionDate>>> = vec![None; page.seqs.len()];
        for (i, (_, seq)) in page.seqs.iter().enumerate() {
            if self.0.papers.contains(seq) {
                hit[i] = Some(None);
            }
        }
        // Selections from before the page's oldest paper was first seen cannot hold any.
        for (&day, &selection) in self.0.days.range(page.first_day..) {
            for &i in page.carried.get(&(day, selection)).into_iter().flatten() {
                hit[i] = Some(EditionDate::from_day_number(day));
            }
        }
        page.seqs
            .iter()
            .zip(hit)
            .filter_map(|((id, _), hit)| Some((id.clone(), hit?)))
            .collect()
    }

    pub fn has_edition(&self, date: EditionDate) -> bool {
        self.0.days.contains_key(&date.day_number())
    }

    /// Whether they were planned a digest of any edition from `from` to `to`, both included.
    pub fn had_between(&self, from: EditionDate, to: EditionDate) -> bool {
        from <= to
            && self
                .0
                .days
                .range(from.day_number()..=to.day_number())
                .next()
                .is_some()
    }
}

/// A page's papers as planning checks them against ledgers: their sequence numbers, and
/// which of them each selection on record carried. Built once per edition.
pub struct PageIndex {
    seqs: Vec<(PaperId, u32)>,
    /// When each paper was first seen, and with how many upvotes, where known.
    first_seen: std::collections::HashMap<PaperId, Sighting>,
    /// The day the oldest of the papers was first seen.
    first_day: u32,
    /// (day, selection) → positions in `seqs`, for the selections that hold any of them.
    carried: std::collections::HashMap<(u32, u32), Vec<usize>>,
}

impl PageIndex {
    /// The papers that have a sequence number (all those recorded), with it.
    pub fn seqs(&self) -> &[(PaperId, u32)] {
        &self.seqs
    }

    /// The first sightings of the papers, for late bloomers.
    pub fn first_seen(&self) -> &std::collections::HashMap<PaperId, Sighting> {
        &self.first_seen
    }
}

fn selection_key(day: u32, selection: u32) -> [u8; 8] {
    let mut k = [0u8; 8];
    k[..4].copy_from_slice(&day.to_be_bytes());
    k[4..].copy_from_slice(&selection.to_be_bytes());
    k
}

fn selection_of_key(key: &[u8]) -> Result<(u32, u32)> {
    let corrupt = || StoreError::Corrupt {
        tree: "selections",
        reason: "a key that is not day ‖ number".into(),
    };
    let day = key.get(..4).ok_or_else(corrupt)?;
    let number = key.get(4..).ok_or_else(corrupt)?;
    Ok((
        u32::from_be_bytes(day.try_into().map_err(|_| corrupt())?),
        u32::from_be_bytes(number.try_into().map_err(|_| corrupt())?),
    ))
}

fn decode_selection(bytes: &[u8]) -> Result<std::collections::BTreeSet<u32>> {
    decode_seqs(bytes).map_err(|reason| StoreError::Corrupt {
        tree: "selections",
        reason,
    })
}

/// Plans the deliveries of one edition, numbering its distinct selections of papers as they
/// come (see [`Store::planner`]). Plans are written in batches, each in one transaction:
/// one commit per few hundred subscribers rather than per subscriber. Nothing is planned
/// until [`Planner::finish`] (or a full batch) writes it.
pub struct Planner<'a> {
    store: &'a Store,
    day: u32,
    numbers: std::collections::HashMap<Vec<u8>, u32>,
    /// Selections numbered since the last batch was written.
    new_selections: Vec<(u32, Vec<u8>)>,
    /// Deliveries waiting to be written, with the number of their selection.
    batch: Vec<(Delivery, u32)>,
    planned: usize,
}

/// How many plans go into one transaction.
const PLAN_BATCH: usize = 256;

impl Planner<'_> {
    /// Plans a delivery and enters it in the subscriber's ledger, in the same transaction.
    /// A subscriber who already had a delivery of this edition is left as they were (and
    /// not counted): one digest per subscriber per edition, however often a run repeats.
    ///
    /// `known` holds papers' numbers already looked up (the page's, [`PageIndex::seqs`]);
    /// the others are looked up here.
    pub fn plan(&mut self, d: Delivery, known: &[(PaperId, u32)]) -> Result<()> {
        let store = self.store;
        assert_eq!(d.date.day_number(), self.day, "a planner plans one edition");
        let mut seqs: Vec<u32> = d
            .papers
            .iter()
            .filter_map(|id| known.iter().find(|(k, _)| k == id).map(|(_, n)| *n))
            .collect();
        if seqs.len() < d.papers.len() {
            // Papers not on the page: their numbers, given now if they have none yet.
            seqs = store.assign_seqs(&d.papers, None)?.into_values().collect();
        }
        let packed = encode_seqs(&seqs.into_iter().collect());
        let next = self.numbers.len() as u32;
        let number = *self.numbers.entry(packed.clone()).or_insert_with(|| {
            self.new_selections.push((next, packed));
            next
        });
        self.batch.push((d, number));
        if self.batch.len() >= PLAN_BATCH {
            self.write()?;
        }
        Ok(())
    }

    /// Writes what is planned so far and returns how many deliveries were planned in all.
    pub fn finish(mut self) -> Result<usize> {
        self.write()?;
        Ok(self.planned)
    }

    fn write(&mut self) -> Result<()> {
        let (day, batch, selections) = (self.day, &self.batch, &self.new_selections);
        let planned = self.store.db.transaction(|tx| {
            for (number, packed) in selections {
                let at = selection_key(day, *number);
                if tx.get(SELECTIONS, &at)?.is_some() {
                    return Err(StoreError::Corrupt {
                        tree: "selections",
                        reason: "an edition planned by two planners at once".into(),
                    });
                }
                tx.put(SELECTIONS, &at, packed)?;
            }
            let mut planned = 0;
            for (d, number) in batch {
                let key = delivery_key(d.date, d.subscriber);
                let subscriber = d.subscriber.to_bytes();
                let mut record = match tx.get(LEDGER, &subscriber)? {
                    Some(v) => decode_ledger(&v)?,
                    None => Ledger::default(),
                };
                if tx.get(DELIVERIES, &key)?.is_some() || record.days.contains_key(&day) {
                    continue;
                }
                record.days.insert(day, *number);
                tx.put(DELIVERIES, &key, &encode(d))?;
                tx.put(LEDGER, &subscriber, &record.encode())?;
                planned += 1;
            }
            Ok(planned)
        })?;
        self.planned += planned;
        self.batch.clear();
        self.new_selections.clear();
        Ok(())
    }
}

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
    decode_edition_as(bytes)
}

/// An edition read as `T`: the whole record, or only the parts a caller needs.
fn decode_edition_as<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
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

    /// Schema 1 kept one `sent` entry (subscriber ‖ paper → date) per paper: folds them into
    /// ledgers, with the editions of the deliveries on record, then drops the old tree.
    fn migrate_sent_to_ledger(&self) -> Result<()> {
        let mut entries = Vec::new();
        if self.db.trees()?.iter().any(|t| t == "sent") {
            for item in self.db.iter("sent") {
                let (key, value) = item?;
                let subscriber = key.get(..8).and_then(|k| <[u8; 8]>::try_from(k).ok());
                let paper = key
                    .get(8..)
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .and_then(|s| PaperId::parse(s).ok());
                let day = <[u8; 4]>::try_from(value.as_slice())
                    .ok()
                    .and_then(EditionDate::from_key_bytes);
                if let (Some(subscriber), Some(paper)) = (subscriber, paper) {
                    entries.push((subscriber, paper, day));
                }
            }
        }
        let ids: Vec<PaperId> = entries.iter().map(|(_, p, _)| p.clone()).collect();
        let seqs = self.assign_seqs(&ids, None)?;
        let mut ledgers: std::collections::BTreeMap<[u8; 8], Ledger> = Default::default();
        for (subscriber, paper, day) in entries {
            let ledger = ledgers.entry(subscriber).or_default();
            ledger.papers.extend(seqs.get(&paper));
            ledger
                .days
                .extend(day.map(|d| (d.day_number(), NO_SELECTION)));
        }
        for item in self.db.iter(DELIVERIES) {
            let (key, _) = item?;
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
                    .entry(day.day_number())
                    .or_insert(NO_SELECTION);
            }
        }
        let encoded: Vec<([u8; 8], Vec<u8>)> =
            ledgers.iter().map(|(s, l)| (*s, l.encode())).collect();
        self.db
            .load(encoded.iter().map(|(s, l)| (LEDGER, &s[..], l.as_slice())))?;
        self.db.drop_tree("sent")?;
        self.db.flush()?;
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
        seen: Option<(EditionDate, &[u32])>,
    ) -> Result<std::collections::HashMap<PaperId, u32>> {
        self.db.transaction(|tx| {
            let mut next = tx
                .get(META, b"next_paper_seq")?
                .and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok())
                .map(u32::from_be_bytes)
                .unwrap_or(0);
            let mut out = std::collections::HashMap::new();
            for (i, id) in ids.iter().enumerate() {
                let stored: Option<StoredPaper> = tx
                    .get(PAPERS, id.as_str().as_bytes())?
                    .map(|v| decode("papers", &v))
                    .transpose()?;
                // Numbered without being seen (planned from papers not recorded first):
                // seen on the earliest day, so the first real sighting sets both dates.
                let day = seen.map_or(EditionDate::from_day_number(0).expect("day 0"), |s| s.0);
                let is_new = stored.is_none();
                let mut stored = stored.unwrap_or(StoredPaper {
                    seq: None,
                    first_seen: day,
                    last_seen: day,
                    first_upvotes: None,
                });
                let seq = match stored.seq {
                    Some(seq) => seq,
                    None => {
                        let seq = next;
                        next += 1;
                        tx.put(PAPER_SEQS, &seq.to_be_bytes(), id.as_str().as_bytes())?;
                        seq
                    }
                };
                stored.seq = Some(seq);
                if let Some((date, upvotes)) = seen {
                    // The upvotes of the first sighting, not of a later one: a record
                    // from before they were kept stays without.
                    if is_new || date < stored.first_seen {
                        stored.first_upvotes = upvotes.get(i).copied();
                    }
                    stored.first_seen = stored.first_seen.min(date);
                    stored.last_seen = stored.last_seen.max(date);
                }
                tx.put(PAPERS, id.as_str().as_bytes(), &encode(&stored))?;
                out.insert(id.clone(), seq);
            }
            tx.put(META, b"next_paper_seq", &next.to_be_bytes())?;
            Ok(out)
        })
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

    /// Makes every write so far durable.
    pub async fn flush(&self) -> Result<()> {
        // The checkpoint syncs files: blocking work, on tokio's blocking pool.
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .expect("flush does not panic")
    }

    // --- subscribers ---------------------------------------------------------------------

    /// Adds a new subscriber; an address that is already known is an error and changes nothing.
    pub fn add_subscriber(&self, s: &Subscriber) -> Result<()> {
        self.db.transaction(|tx| {
            let email = s.email.as_str().as_bytes();
            if tx.get(SUBSCRIBERS, email)?.is_some() {
                return Err(StoreError::Duplicate(s.email.clone()));
            }
            tx.put(SUBSCRIBERS, email, &encode(s))?;
            tx.put(SUBSCRIBER_IDS, &s.id.to_bytes(), email)
        })
    }

    /// Replaces the record of an existing subscriber (same id and address).
    pub fn update_subscriber(&self, s: &Subscriber) -> Result<()> {
        self.db
            .put(SUBSCRIBERS, s.email.as_str().as_bytes(), &encode(s))
    }

    pub fn subscriber(&self, email: &SubscriberEmail) -> Result<Option<Subscriber>> {
        self.db
            .get(SUBSCRIBERS, email.as_str().as_bytes())?
            .map(|v| decode("subscribers", &v))
            .transpose()
    }

    pub fn subscriber_by_id(&self, id: SubscriberId) -> Result<Option<Subscriber>> {
        let Some(email) = self.db.get(SUBSCRIBER_IDS, &id.to_bytes())? else {
            return Ok(None);
        };
        self.db
            .get(SUBSCRIBERS, &email)?
            .map(|v| decode("subscribers", &v))
            .transpose()
    }

    /// Every subscriber, in address order.
    pub fn subscribers(&self) -> Result<Vec<Subscriber>> {
        self.db
            .iter(SUBSCRIBERS)
            .map(|e| decode("subscribers", &e?.1))
            .collect()
    }

    /// Every subscriber, in the order of their ids, read a few hundred at a time: what
    /// planning walks. Deliveries and ledgers are keyed by id, so planning in id order
    /// writes them in key order: each batch fills a few pages instead of touching a
    /// different page for every subscriber.
    pub fn subscribers_by_id(&self) -> impl Iterator<Item = Result<Subscriber>> + '_ {
        self.db.iter(SUBSCRIBER_IDS).filter_map(move |e| {
            let (_, email) = match e {
                Ok(entry) => entry,
                Err(e) => return Some(Err(e)),
            };
            // Removed between the two reads: skipped.
            self.db
                .get(SUBSCRIBERS, &email)
                .transpose()
                .map(|v| v.and_then(|v| decode("subscribers", &v)))
        })
    }

    /// Deletes a subscriber and everything recorded about them: their ledger and their
    /// deliveries. Nothing of the address is left in the store.
    pub fn remove_subscriber(&self, email: &SubscriberEmail) -> Result<Subscriber> {
        let s = self
            .subscriber(email)?
            .ok_or_else(|| StoreError::Unknown(email.clone()))?;
        let id = s.id.to_bytes();
        let mut deliveries = Vec::new();
        for item in self.db.iter(DELIVERIES) {
            let (key, _) = item?;
            if key.len() == 12 && key[4..] == id {
                deliveries.push(key);
            }
        }
        self.db.transaction(|tx| {
            for key in &deliveries {
                tx.remove(DELIVERIES, key)?;
            }
            tx.remove(LEDGER, &id)?;
            tx.remove(SUBSCRIBER_IDS, &id)?;
            tx.remove(SUBSCRIBERS, email.as_str().as_bytes())?;
            Ok(())
        })?;
        Ok(s)
    }

    // --- papers and editions -------------------------------------------------------------

    /// Remembers when each paper was last seen (what the retention window counts from) and
    /// gives papers seen for the first time their sequence number.
    pub fn record_papers(&self, date: EditionDate, papers: &[Paper]) -> Result<()> {
        let ids: Vec<PaperId> = papers.iter().map(|p| p.id.clone()).collect();
        let upvotes: Vec<u32> = papers.iter().map(|p| p.upvotes).collect();
        self.assign_seqs(&ids, Some((date, &upvotes)))?;
        Ok(())
    }

    /// Freezes the papers of an edition: papers already frozen keep their first snapshot,
    /// papers new to this edition are added. Returns the whole frozen edition.
    pub fn freeze_edition(
        &self,
        date: EditionDate,
        fresh: &[Paper],
        recent: &[Paper],
    ) -> Result<EditionRecord> {
        let stored = self.edition(date)?;
        let is_new = stored.is_none();
        let mut record = stored.unwrap_or_else(|| EditionRecord::new(date));
        if record.merge(fresh, recent) > 0 || is_new {
            self.db
                .put(EDITIONS, &date.key_bytes(), &encode_edition(&record))?;
        }
        Ok(record)
    }

    pub fn edition(&self, date: EditionDate) -> Result<Option<EditionRecord>> {
        self.db
            .get(EDITIONS, &date.key_bytes())?
            .map(|v| decode_edition(&v))
            .transpose()
    }

    // --- the ledger and deliveries -------------------------------------------------------

    fn ledger_of(&self, subscriber: SubscriberId) -> Result<Ledger> {
        self.db
            .get(LEDGER, &subscriber.to_bytes())?
            .map(|v| decode_ledger(&v))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// What the subscriber has been planned so far (within the retention window): read once
    /// per subscriber when planning.
    pub fn sent_before(&self, subscriber: SubscriberId) -> Result<SentBefore> {
        self.ledger_of(subscriber).map(SentBefore)
    }

    /// These papers' sequence numbers, and which of them each selection on record carried.
    pub fn page_index(&self, ids: &[PaperId]) -> Result<PageIndex> {
        let mut seqs = Vec::with_capacity(ids.len());
        let mut first_seen = std::collections::HashMap::new();
        let mut first_day = u32::MAX;
        for id in ids {
            let stored = self
                .db
                .get(PAPERS, id.as_str().as_bytes())?
                .map(|v| decode::<StoredPaper>("papers", &v))
                .transpose()?;
            if let Some(StoredPaper {
                seq: Some(seq),
                first_seen: first,
                first_upvotes,
                ..
            }) = stored
            {
                seqs.push((id.clone(), seq));
                // A paper numbered before it was seen has day 0 here: every selection is
                // looked at, as it could have been planned any day.
                first_day = first_day.min(first.day_number());
                if let Some(upvotes) = first_upvotes {
                    let sighting = Sighting {
                        date: first,
                        upvotes,
                    };
                    first_seen.insert(id.clone(), sighting);
                }
            }
        }
        let position: std::collections::HashMap<u32, usize> = seqs
            .iter()
            .enumerate()
            .map(|(i, (_, seq))| (*seq, i))
            .collect();
        let mut carried = std::collections::HashMap::new();
        let from = selection_key(first_day, 0).to_vec();
        for item in self.db.range(SELECTIONS, (Included(from), Unbounded)) {
            let (key, value) = item?;
            let hits: Vec<usize> = decode_selection(&value)?
                .iter()
                .filter_map(|seq| position.get(seq).copied())
                .collect();
            if !hits.is_empty() {
                carried.insert(selection_of_key(&key)?, hits);
            }
        }
        Ok(PageIndex {
            seqs,
            first_seen,
            first_day,
            carried,
        })
    }

    pub fn delivery(
        &self,
        date: EditionDate,
        subscriber: SubscriberId,
    ) -> Result<Option<Delivery>> {
        self.db
            .get(DELIVERIES, &delivery_key(date, subscriber))?
            .map(|v| decode("deliveries", &v))
            .transpose()
    }

    /// Every delivery of an edition.
    pub fn deliveries(&self, date: EditionDate) -> Result<Vec<Delivery>> {
        self.deliveries_iter(date).collect()
    }

    /// Every delivery of an edition, read a few hundred at a time: an edition can have a
    /// delivery for each of many thousands of subscribers.
    pub fn deliveries_iter(
        &self,
        date: EditionDate,
    ) -> impl Iterator<Item = Result<Delivery>> + '_ {
        self.db
            .scan_prefix(DELIVERIES, &date.key_bytes())
            .map(|e| decode("deliveries", &e?.1))
    }

    /// A planner for the deliveries of `date`, which knows the edition's selections so far.
    pub fn planner(&self, date: EditionDate) -> Result<Planner<'_>> {
        let day = date.day_number();
        let mut numbers = std::collections::HashMap::new();
        for item in self.db.scan_prefix(SELECTIONS, &day.to_be_bytes()) {
            let (key, value) = item?;
            numbers.insert(value, selection_of_key(&key)?.1);
        }
        Ok(Planner {
            store: self,
            day,
            numbers,
            new_selections: Vec::new(),
            batch: Vec::new(),
            planned: 0,
        })
    }

    /// Editions with deliveries still to send (pending, in flight at a crash, or deferred).
    pub fn open_dates(&self) -> Result<Vec<EditionDate>> {
        let mut dates = Vec::new();
        for item in self.db.iter(DELIVERIES) {
            let (key, value) = item?;
            let date = key
                .get(..4)
                .and_then(|k| <[u8; 4]>::try_from(k).ok())
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
        self.db
            .put(DELIVERIES, &delivery_key(d.date, d.subscriber), &encode(d))
    }

    /// The newest edition on record: what the subscribe page shows as a sample.
    pub fn latest_edition(&self) -> Result<Option<EditionRecord>> {
        self.db
            .last(EDITIONS)?
            .map(|(_, v)| decode_edition(&v))
            .transpose()
    }

    fn meta_time(&self, key: &str) -> Result<Option<DateTime<Utc>>> {
        Ok(self
            .db
            .get(META, key.as_bytes())?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .and_then(|b| DateTime::from_timestamp(i64::from_be_bytes(b), 0)))
    }

    fn set_meta_time(&self, key: &str, at: DateTime<Utc>) -> Result<()> {
        self.db
            .put(META, key.as_bytes(), &at.timestamp().to_be_bytes())
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

    // --- retention -----------------------------------------------------------------------

    /// Removes the deliveries of editions before `today` that are finished (the ledger
    /// remembers them), and any older than `cutoff`. Returns how many went.
    ///
    /// Planning calls it too, before it writes an edition's deliveries: the pages they free
    /// take the new ones, so the file holds one edition's outbox rather than two.
    pub fn clear_deliveries_before(
        &self,
        today: EditionDate,
        cutoff: EditionDate,
    ) -> Result<usize> {
        let cutoff_key = cutoff.key_bytes();
        let mut gone = Vec::new();
        for item in self.db.range(
            DELIVERIES,
            (Unbounded, Excluded(today.key_bytes().to_vec())),
        ) {
            let (key, value) = item?;
            let d: Delivery = decode("deliveries", &value)?;
            if !d.state.is_open() || key[..4] < cutoff_key[..] {
                gone.push(key);
            }
        }
        self.db.transaction(|tx| {
            for key in &gone {
                tx.remove(DELIVERIES, key)?;
            }
            Ok(())
        })?;
        Ok(gone.len())
    }

    /// Forgets what can no longer matter: papers not seen on the source for `retention_days`
    /// (and their numbers in every ledger), the selections of editions older than the
    /// window, and the finished deliveries of editions before `today` (the ledger remembers
    /// them; the latest edition's stay until the next run, to show what it did). A paper
    /// that keeps trending stays in the ledgers however long ago it was sent, so it is never
    /// sent again. Editions themselves are kept for good: they are the archive (a few tens
    /// of kilobytes a day, deflated).
    pub fn prune(&self, today: EditionDate, retention_days: u32) -> Result<PruneReport> {
        let cutoff = today.minus_days(retention_days);
        let mut report = PruneReport::default();
        let mut forgotten = HashSet::new();
        let mut gone = Vec::new();
        for item in self.db.iter(PAPERS) {
            let (key, value) = item?;
            let stored: StoredPaper = decode("papers", &value)?;
            if stored.last_seen < cutoff {
                forgotten.extend(stored.seq);
                gone.push((key, stored.seq));
            }
        }
        report.papers = gone.len();
        self.db.transaction(|tx| {
            for (key, seq) in &gone {
                tx.remove(PAPERS, key)?;
                if let Some(seq) = seq {
                    tx.remove(PAPER_SEQS, &seq.to_be_bytes())?;
                }
            }
            Ok(())
        })?;

        let first_day = cutoff.day_number();
        // Selections of editions leaving the window go with them; the papers in them that are
        // still on the source stay in the ledgers, as numbers of their own.
        let mut leaving = std::collections::HashMap::new();
        let mut leaving_keys = Vec::new();
        let before_window = selection_key(first_day, 0).to_vec();
        for item in self
            .db
            .range(SELECTIONS, (Unbounded, Excluded(before_window)))
        {
            let (key, value) = item?;
            let still_seen: Vec<u32> = decode_selection(&value)?
                .into_iter()
                .filter(|seq| !forgotten.contains(seq))
                .collect();
            if !still_seen.is_empty() {
                leaving.insert(selection_of_key(&key)?, still_seen);
            }
            leaving_keys.push(key);
        }
        report.selections = leaving_keys.len();
        // Written a few hundred at a time, each only if unchanged since read: a subscriber
        // planned meanwhile keeps the newer record (and is pruned at the next run).
        let write = |changed: &mut Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>| {
            self.db.transaction(|tx| {
                for (key, old, new) in changed.iter() {
                    if tx.get(LEDGER, key)?.as_deref() == Some(old.as_slice()) {
                        tx.put(LEDGER, key, new)?;
                    }
                }
                Ok(())
            })?;
            changed.clear();
            Ok::<_, StoreError>(())
        };
        let mut changed = Vec::new();
        for item in self.db.iter(LEDGER) {
            let (key, value) = item?;
            let mut record = decode_ledger(&value)?;
            let before = record.papers.len();
            record.papers.retain(|p| !forgotten.contains(p));
            report.ledger += before - record.papers.len();
            let kept_days = record.days.split_off(&first_day);
            // `record.days` now holds the days that fell out of the window.
            if !record.days.is_empty() || before != record.papers.len() {
                for (&day, &selection) in &record.days {
                    record
                        .papers
                        .extend(leaving.get(&(day, selection)).into_iter().flatten());
                }
                record.days = kept_days;
                changed.push((key, value, record.encode()));
            }
            if changed.len() >= 256 {
                write(&mut changed)?;
            }
        }
        write(&mut changed)?;

        report.deliveries = self.clear_deliveries_before(today, cutoff)?;
        self.db.transaction(|tx| {
            for key in &leaving_keys {
                tx.remove(SELECTIONS, key)?;
            }
            Ok(())
        })?;
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
        self.wait(self.ticket()).await
    }

    /// A claim on the writes this task made so far: [`GroupCommit::wait`] with it returns
    /// once they are durable. Taking it costs nothing; a writer can go on meanwhile.
    pub fn ticket(&self) -> u64 {
        self.asked.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Returns once the writes made before `ticket` was taken are durable.
    pub async fn wait(&self, ticket: u64) -> Result<()> {
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
            late: Vec::new(),
        }
    }

    #[test]
    fn subscribers_are_unique_and_removable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), EngineKind::Sled).unwrap();
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
        assert!(store.plan_one(&delivery(d, &s, &["2501.00001"])).unwrap());
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
        let store = Store::open(dir.path(), EngineKind::Sled).unwrap();
        let s = subscriber("ann@example.org");
        store.add_subscriber(&s).unwrap();
        let d = date("2025-12-08");
        assert!(store.plan_one(&delivery(d, &s, &["2501.00001"])).unwrap());
        assert!(!store.plan_one(&delivery(d, &s, &["2501.00002"])).unwrap());
        let sent = sent(&store, &s, &["2501.00001", "2501.00002"]);
        assert_eq!(sent.len(), 1, "the refused plan must leave no ledger entry");
        assert_eq!(store.deliveries(d).unwrap().len(), 1);
        assert_eq!(store.subscribers().unwrap()[0].status, Status::Active);
    }

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

    #[test]
    fn identical_selections_are_stored_once_per_edition() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), EngineKind::Sled).unwrap();
        let d = date("2025-12-08");
        let page = ["2501.00001", "2501.00002", "2501.00003"];
        store
            .record_papers(d, &page.map(|id| paper(id, 1)))
            .unwrap();
        let readers: Vec<Subscriber> = (0..4)
            .map(|i| subscriber(&format!("r{i}@example.org")))
            .collect();
        let mut planner = store.planner(d).unwrap();
        let ids: Vec<PaperId> = page.iter().map(|p| PaperId::parse(p).unwrap()).collect();
        let known = store.page_index(&ids).unwrap().seqs().to_vec();
        for s in &readers[..3] {
            store.add_subscriber(s).unwrap();
            planner.plan(delivery(d, s, &page[..2]), &known).unwrap();
        }
        assert_eq!(planner.finish().unwrap(), 3);
        // A planner made later (a run repeated after a crash) knows the edition's selections.
        let mut again = store.planner(d).unwrap();
        store.add_subscriber(&readers[3]).unwrap();
        again
            .plan(delivery(d, &readers[3], &page[1..]), &known)
            .unwrap();
        // Already planned: left as it was.
        again
            .plan(delivery(d, &readers[0], &page[1..]), &known)
            .unwrap();
        assert_eq!(again.finish().unwrap(), 1);
        assert_eq!(store.db.iter(SELECTIONS).count(), 2);
        for s in &readers[..3] {
            assert_eq!(sent(&store, s, &page).len(), 2);
            assert!(!sent(&store, s, &page).contains(&ids[2]));
        }
        assert!(sent(&store, &readers[3], &page).contains(&ids[2]));
        // The next day's page repeats a paper: already sent, through the selection.
        let next = date("2025-12-09");
        store
            .record_papers(next, &[paper("2501.00002", 9), paper("2501.00004", 1)])
            .unwrap();
        assert_eq!(
            sent(&store, &readers[0], &["2501.00002", "2501.00004"]),
            HashSet::from([ids[1].clone()])
        );
    }

    #[test]
    fn frozen_editions_keep_their_first_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), EngineKind::Sled).unwrap();
        let d = date("2025-12-08");
        store
            .freeze_edition(d, &[paper("2501.00001", 5)], &[])
            .unwrap();
        let e = store
            .freeze_edition(d, &[paper("2501.00001", 50), paper("2501.00002", 7)], &[])
            .unwrap();
        assert_eq!(e.papers.len(), 2);
        assert_eq!(e.papers[0].upvotes, 5);
        assert_eq!(store.edition(d).unwrap().unwrap().papers, e.papers);
    }

    #[test]
    fn editions_are_stored_deflated_and_plain_ones_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), EngineKind::Sled).unwrap();
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
        store.freeze_edition(d, &record.papers, &[]).unwrap();
        assert_eq!(store.edition(d).unwrap().unwrap().papers, record.papers);
    }

    #[test]
    fn prune_forgets_only_what_cannot_matter() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), EngineKind::Sled).unwrap();
        let s = subscriber("ann@example.org");
        store.add_subscriber(&s).unwrap();
        let old = date("2025-01-01");
        let today = date("2025-12-08");
        store
            .record_papers(old, &[paper("2501.00001", 1), paper("2501.00002", 1)])
            .unwrap();
        store
            .freeze_edition(old, &[paper("2501.00001", 1)], &[])
            .unwrap();
        store
            .plan_one(&delivery(old, &s, &["2501.00001", "2501.00002"]))
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
                // The papers were in the edition's selection, not in the ledger itself.
                ledger: 0,
                selections: 1,
                deliveries: 1
            }
        );
        let sent = sent(&store, &s, &["2501.00001", "2501.00002"]);
        assert!(sent.contains(&PaperId::parse("2501.00002").unwrap()));
        assert_eq!(sent.len(), 1);
        // The edition is older than the window: gone from the ledger with the rest...
        assert!(!store.has_edition(s.id, old).unwrap());
        assert!(store.sent_history(s.id, usize::MAX).unwrap().is_empty());
        // ...but kept in the archive, whole.
        assert_eq!(store.edition(old).unwrap().unwrap().papers.len(), 1);
    }

    #[test]
    fn finished_deliveries_leave_the_outbox_but_not_the_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), EngineKind::Sled).unwrap();
        let s = subscriber("ann@example.org");
        store.add_subscriber(&s).unwrap();
        let (monday, friday) = (date("2025-12-08"), date("2025-12-12"));
        store
            .record_papers(monday, &[paper("2501.00001", 1)])
            .unwrap();
        let mut d = delivery(monday, &s, &["2501.00001"]);
        assert!(store.plan_one(&d).unwrap());
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
                .plan_one(&delivery(monday, &s, &["2501.00002"]))
                .unwrap()
        );
        assert_eq!(sent(&store, &s, &["2501.00001"]).len(), 1);
    }

    #[test]
    fn a_schema_1_store_is_upgraded_on_both_engines() {
        for kind in EngineKind::ALL {
            let dir = tempfile::tempdir().unwrap();
            let s = subscriber("ann@example.org");
            let d = date("2025-12-08");
            {
                // What schema 1 kept: one `sent` entry (subscriber ‖ paper → date) per paper
                // sent, and the delivery.
                let db = Db::open(kind, dir.path(), &TREES).unwrap();
                let seen = encode(&StoredPaper {
                    seq: None,
                    first_seen: d,
                    last_seen: d,
                    first_upvotes: None,
                });
                let mut sent_key = s.id.to_bytes().to_vec();
                sent_key.extend_from_slice(b"2501.00002");
                let delivery_key = delivery_key(d, s.id);
                let delivery = encode(&delivery(d, &s, &["2501.00002"]));
                let (subscriber, id, day) = (encode(&s), s.id.to_bytes(), d.key_bytes());
                db.load([
                    (
                        SUBSCRIBERS,
                        s.email.as_str().as_bytes(),
                        subscriber.as_slice(),
                    ),
                    (SUBSCRIBER_IDS, &id[..], s.email.as_str().as_bytes()),
                    (PAPERS, &b"2501.00001"[..], seen.as_slice()),
                    (PAPERS, &b"2501.00002"[..], seen.as_slice()),
                    ("sent", sent_key.as_slice(), &day[..]),
                    (DELIVERIES, &delivery_key[..], delivery.as_slice()),
                    (META, &b"schema_version"[..], &1u64.to_be_bytes()[..]),
                ])
                .unwrap();
                db.flush().unwrap();
            }
            let store = Store::open(dir.path(), kind).unwrap();
            assert_eq!(store.subscriber(&s.email).unwrap().unwrap().id, s.id);
            assert_eq!(store.deliveries(d).unwrap().len(), 1);
            assert_eq!(
                sent(&store, &s, &["2501.00001", "2501.00002"]),
                HashSet::from([PaperId::parse("2501.00002").unwrap()]),
                "{kind}"
            );
            assert!(store.has_edition(s.id, d).unwrap());
            assert!(!store.db.trees().unwrap().iter().any(|t| t == "sent"));
            drop(store);
            // Opened again: nothing to upgrade, same contents.
            let store = Store::open(dir.path(), kind).unwrap();
            assert!(store.has_edition(s.id, d).unwrap());
        }
    }

    impl Store {
        /// Which of these papers this subscriber has been sent or has a delivery planned with.
        fn sent_among(
            &self,
            subscriber: SubscriberId,
            papers: &[PaperId],
        ) -> Result<HashSet<PaperId>> {
            let page = self.page_index(papers)?;
            Ok(self
                .sent_before(subscriber)?
                .among(&page)
                .into_keys()
                .collect())
        }

        fn has_edition(&self, subscriber: SubscriberId, date: EditionDate) -> Result<bool> {
            Ok(self.sent_before(subscriber)?.has_edition(date))
        }

        /// Plans one delivery through a planner of its own; whether it was planned.
        fn plan_one(&self, d: &Delivery) -> Result<bool> {
            let mut planner = self.planner(d.date)?;
            planner.plan(d.clone(), &[])?;
            Ok(planner.finish()? == 1)
        }
    }

    fn sent(store: &Store, s: &Subscriber, ids: &[&str]) -> HashSet<PaperId> {
        let ids: Vec<PaperId> = ids.iter().map(|p| PaperId::parse(p).unwrap()).collect();
        store.sent_among(s.id, &ids).unwrap()
    }
}
