//! Retention: what the store forgets once it can no longer matter, so that it stays the
//! same size however long paperboy runs (editions excepted: they are the archive).

use std::collections::{HashMap, HashSet};
use std::ops::Bound::{Excluded, Unbounded};

use super::codec::{decode, decode_ledger, decode_selection, selection_key, selection_of_key};
use super::papers::StoredPaper;
use super::{LEDGER, PAPER_SEQS, PAPERS, Result, SELECTIONS, Store};
use crate::domain::EditionDate;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub papers: usize,
    pub ledger: usize,
    pub selections: usize,
    pub deliveries: usize,
}

/// Ledger records rewritten per transaction: a few hundred at a time, so that what is held
/// in memory does not grow with the number of subscribers.
const LEDGER_BATCH: usize = 256;

/// A ledger record's key, its bytes as read, and the bytes to write instead.
type LedgerChange = (Vec<u8>, Vec<u8>, Vec<u8>);

/// The papers not seen on the source since the cutoff, removed from the store.
struct Forgotten {
    /// How many paper records went.
    papers: usize,
    /// Their numbers in the ledgers.
    seqs: HashSet<u32>,
}

/// The selections of editions that leave the window.
struct Leaving {
    /// Per selection (day, number), its papers that are still on the source: they stay in
    /// the ledgers, as numbers of their own.
    still_seen: HashMap<(u32, u32), Vec<u32>>,
    keys: Vec<Vec<u8>>,
}

impl Store {
    /// Forgets what can no longer matter: papers not seen on the source for `retention_days`
    /// (and their numbers in every ledger), the selections of editions older than the
    /// window, and the finished deliveries of editions before `today` (the ledger remembers
    /// them; the latest edition's stay until the next run, to show what it did). A paper
    /// that keeps trending stays in the ledgers however long ago it was sent, so it is never
    /// sent again. Editions themselves are kept for good: they are the archive (a few tens
    /// of kilobytes a day, deflated).
    pub fn prune(&self, today: EditionDate, retention_days: u32) -> Result<PruneReport> {
        let cutoff = today.minus_days(retention_days);
        let first_day = cutoff.day_number();
        let forgotten = self.forget_papers_before(cutoff)?;
        let leaving = self.selections_leaving(first_day, &forgotten.seqs)?;
        let ledger = self.prune_ledgers(first_day, &forgotten.seqs, &leaving.still_seen)?;
        let deliveries = self.clear_deliveries_before(today, cutoff)?;
        // Last: until the ledgers hold their papers, the selections are what remembers them.
        self.db.transaction(|tx| {
            for key in &leaving.keys {
                tx.remove(SELECTIONS, key)?;
            }
            Ok(())
        })?;
        Ok(PruneReport {
            papers: forgotten.papers,
            ledger,
            selections: leaving.keys.len(),
            deliveries,
        })
    }

    /// Removes the papers last seen before `cutoff`, with their numbers.
    fn forget_papers_before(&self, cutoff: EditionDate) -> Result<Forgotten> {
        let mut seqs = HashSet::new();
        let mut gone = Vec::new();
        for item in self.db.iter(PAPERS) {
            let (key, value) = item?;
            let stored: StoredPaper = decode("papers", &value)?;
            if stored.last_seen < cutoff {
                seqs.extend(stored.seq);
                gone.push((key, stored.seq));
            }
        }
        self.db.transaction(|tx| {
            for (key, seq) in &gone {
                tx.remove(PAPERS, key)?;
                if let Some(seq) = seq {
                    tx.remove(PAPER_SEQS, &seq.to_be_bytes())?;
                }
            }
            Ok(())
        })?;
        Ok(Forgotten {
            papers: gone.len(),
            seqs,
        })
    }

    /// Reads the selections of the editions before `first_day`, the first day of the window.
    fn selections_leaving(&self, first_day: u32, forgotten: &HashSet<u32>) -> Result<Leaving> {
        let mut leaving = Leaving {
            still_seen: HashMap::new(),
            keys: Vec::new(),
        };
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
                leaving
                    .still_seen
                    .insert(selection_of_key(&key)?, still_seen);
            }
            leaving.keys.push(key);
        }
        Ok(leaving)
    }

    /// Drops the forgotten papers from every ledger, and turns the days that leave the
    /// window into the papers of their selections that are still on the source. Returns how
    /// many paper numbers were dropped.
    fn prune_ledgers(
        &self,
        first_day: u32,
        forgotten: &HashSet<u32>,
        leaving: &HashMap<(u32, u32), Vec<u32>>,
    ) -> Result<usize> {
        let mut dropped = 0;
        let mut changed = Vec::new();
        for item in self.db.iter(LEDGER) {
            let (key, value) = item?;
            let mut record = decode_ledger(&value)?;
            let before = record.papers.len();
            record.papers.retain(|p| !forgotten.contains(p));
            dropped += before - record.papers.len();
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
            if changed.len() >= LEDGER_BATCH {
                self.write_ledgers(&mut changed)?;
            }
        }
        self.write_ledgers(&mut changed)?;
        Ok(dropped)
    }

    /// Writes pruned ledger records, each only if unchanged since read: a subscriber planned
    /// meanwhile keeps the newer record (and is pruned at the next run).
    fn write_ledgers(&self, changed: &mut Vec<LedgerChange>) -> Result<()> {
        self.db.transaction(|tx| {
            for (key, old, new) in changed.iter() {
                if tx.get(LEDGER, key)?.as_deref() == Some(old.as_slice()) {
                    tx.put(LEDGER, key, new)?;
                }
            }
            Ok(())
        })?;
        changed.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PaperId;
    use crate::store::test_support::{date, delivery, paper, sent, subscriber};
    use crate::store::{DeliveryState, EngineKind};

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
}
