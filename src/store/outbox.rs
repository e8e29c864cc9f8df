//! The outbox (`deliveries`, one per subscriber per edition) and the ledgers planning
//! writes with it, so that no paper and no edition is planned for anyone twice.

use std::ops::Bound::{Excluded, Unbounded};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::codec::{decode, decode_ledger, delivery_key, encode, selection_key, selection_of_key};
use super::ledger::{Ledger, encode_seqs};
use super::papers::PageIndex;
use super::{DELIVERIES, LEDGER, Result, SELECTIONS, Store, StoreError};
use crate::domain::{EditionDate, PaperId, SentOn, Sighting, SubscriberId};

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

impl Store {
    pub(super) fn ledger_of(&self, subscriber: SubscriberId) -> Result<Ledger> {
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
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::domain::{Status, Subscriber};
    use crate::store::EngineKind;
    use crate::store::test_support::{date, delivery, paper, sent, subscriber};

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
}
