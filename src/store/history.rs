//! A subscriber's history: which papers each edition planned for them carried, read back
//! from what the store keeps anyway (the ledger, the editions' selections and the papers'
//! numbers) rather than from a record of its own. Personal feeds show it, and a reader's
//! own copy of an older digest on the web.

use std::collections::HashMap;

use super::codec::{decode_selection, selection_key};
use super::ledger::NO_SELECTION;
use super::{PAPER_SEQS, Result, SELECTIONS, Store, StoreError};
use crate::domain::{EditionDate, PaperId, SubscriberId};

impl Store {
    /// The newest `limit` editions planned for this subscriber, newest first, each with the
    /// papers its digest carried (in the order paperboy first saw them).
    ///
    /// This is what the ledger remembers: editions within the retention window. The ledger
    /// keeps no outcomes, so a digest still waiting in the outbox, or refused for good, is
    /// here too. An edition planned before editions had selections (or whose selection left
    /// the store meanwhile) comes with no papers: which of the ledger's own papers went with
    /// which edition is not kept. Papers forgotten since are left out.
    pub fn sent_history(
        &self,
        id: SubscriberId,
        limit: usize,
    ) -> Result<Vec<(EditionDate, Vec<PaperId>)>> {
        let ledger = self.ledger_of(id)?;
        // Selections share papers across days (a paper trends for a while): each number is
        // looked up once.
        let mut names: HashMap<u32, Option<PaperId>> = HashMap::new();
        let mut out = Vec::with_capacity(ledger.days.len().min(limit));
        for (&day, &selection) in ledger.days.iter().rev().take(limit) {
            let date = EditionDate::from_day_number(day).ok_or_else(|| StoreError::Corrupt {
                tree: "ledger",
                reason: format!("day {day} is not a date"),
            })?;
            out.push((date, self.selection_papers(day, selection, &mut names)?));
        }
        Ok(out)
    }

    /// The papers the digest of `date` planned for this subscriber carried, as
    /// [`Store::sent_history`] gives them, without reading the other days: None when the
    /// ledger has no digest of that date for them.
    pub fn sent_on(&self, id: SubscriberId, date: EditionDate) -> Result<Option<Vec<PaperId>>> {
        let ledger = self.ledger_of(id)?;
        let day = date.day_number();
        match ledger.days.get(&day) {
            None => Ok(None),
            Some(&selection) => Ok(Some(self.selection_papers(
                day,
                selection,
                &mut HashMap::new(),
            )?)),
        }
    }

    /// The papers of one edition's selection, in the order paperboy first saw them, leaving
    /// out those forgotten since; `names` keeps the numbers already looked up.
    fn selection_papers(
        &self,
        day: u32,
        selection: u32,
        names: &mut HashMap<u32, Option<PaperId>>,
    ) -> Result<Vec<PaperId>> {
        let packed = match selection {
            NO_SELECTION => None,
            n => self.db.get(SELECTIONS, &selection_key(day, n))?,
        };
        let mut papers = Vec::new();
        if let Some(packed) = packed {
            for seq in decode_selection(&packed)? {
                let name = match names.get(&seq) {
                    Some(known) => known.clone(),
                    None => {
                        let found = self.paper_of_seq(seq)?;
                        names.insert(seq, found.clone());
                        found
                    }
                };
                papers.extend(name);
            }
        }
        Ok(papers)
    }

    /// The paper with this sequence number, if it is still remembered.
    fn paper_of_seq(&self, seq: u32) -> Result<Option<PaperId>> {
        let Some(raw) = self.db.get(PAPER_SEQS, &seq.to_be_bytes())? else {
            return Ok(None);
        };
        std::str::from_utf8(&raw)
            .ok()
            .and_then(|s| PaperId::parse(s).ok())
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt {
                tree: "paper_seqs",
                reason: format!("number {seq} names no paper"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::super::LEDGER;
    use super::*;
    use crate::domain::{Paper, Subscriber};
    use crate::store::ledger::Ledger;
    use crate::store::test_support::{date, delivery, paper, subscriber};

    fn id(s: &str) -> PaperId {
        PaperId::parse(s).unwrap()
    }

    /// A subscriber, added to the store.
    fn subscribed(store: &Store, email: &str) -> Subscriber {
        let s = subscriber(email);
        store.add_subscriber(&s).unwrap();
        s
    }

    /// Records the page of `day` and plans each of these subscribers the papers given.
    fn edition(store: &Store, day: EditionDate, page: &[&str], plans: &[(&Subscriber, &[&str])]) {
        let papers: Vec<Paper> = page.iter().map(|p| paper(p, 1)).collect();
        store.record_papers(day, &papers).unwrap();
        store.freeze_edition(day, &papers, &[]).unwrap();
        let ids: Vec<PaperId> = page.iter().map(|p| id(p)).collect();
        let known = store.page_index(&ids).unwrap().seqs().to_vec();
        let mut planner = store.planner(day).unwrap();
        for (s, chosen) in plans {
            planner.plan(delivery(day, s, chosen), &known).unwrap();
        }
        planner.finish().unwrap();
    }

    #[test]
    fn three_editions_come_back_newest_first_with_their_papers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), crate::store::EngineKind::Sled).unwrap();
        let ann = subscribed(&store, "ann@example.org");
        let bob = subscribed(&store, "bob@example.org");
        let (mon, tue, thu) = (date("2025-12-08"), date("2025-12-09"), date("2025-12-11"));
        edition(
            &store,
            mon,
            &["2512.00001", "2512.00002", "2512.00003"],
            &[
                (&ann, &["2512.00003", "2512.00001"]),
                (&bob, &["2512.00002"]),
            ],
        );
        // Tuesday's page repeats a paper and Bob has the same selection as Ann.
        edition(
            &store,
            tue,
            &["2512.00002", "2512.00004"],
            &[
                (&ann, &["2512.00002", "2512.00004"]),
                (&bob, &["2512.00004", "2512.00002"]),
            ],
        );
        // Nothing for Ann on Wednesday; Thursday has one paper for her.
        edition(&store, thu, &["2512.00005"], &[(&ann, &["2512.00005"])]);

        let history = store.sent_history(ann.id, usize::MAX).unwrap();
        assert_eq!(
            history,
            vec![
                (thu, vec![id("2512.00005")]),
                (tue, vec![id("2512.00002"), id("2512.00004")]),
                // In the order the papers were first seen, not the order they were chosen.
                (mon, vec![id("2512.00001"), id("2512.00003")]),
            ]
        );
        // The newest ones only, when asked for fewer.
        assert_eq!(store.sent_history(ann.id, 2).unwrap(), history[..2]);
        // One day on its own, as the history has it.
        for (day, papers) in &history {
            assert_eq!(store.sent_on(ann.id, *day).unwrap().as_ref(), Some(papers));
        }
        assert_eq!(store.sent_on(ann.id, date("2025-12-10")).unwrap(), None);
        assert_eq!(
            store.sent_history(bob.id, usize::MAX).unwrap(),
            vec![
                (tue, vec![id("2512.00002"), id("2512.00004")]),
                (mon, vec![id("2512.00002")]),
            ]
        );
    }

    #[test]
    fn a_subscriber_with_no_editions_has_no_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), crate::store::EngineKind::Sled).unwrap();
        let ann = subscribed(&store, "ann@example.org");
        assert!(store.sent_history(ann.id, usize::MAX).unwrap().is_empty());
        // Nor does an id the store never saw.
        let stranger = SubscriberId::from_u64(7);
        assert!(store.sent_history(stranger, usize::MAX).unwrap().is_empty());
    }

    #[test]
    fn editions_whose_papers_are_not_on_record_come_without_papers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), crate::store::EngineKind::Sled).unwrap();
        let ann = subscribed(&store, "ann@example.org");
        let (old, new) = (date("2025-12-01"), date("2025-12-08"));
        edition(&store, new, &["2512.00001"], &[(&ann, &["2512.00001"])]);
        // An edition from before selections: the ledger holds the day but no selection.
        let mut ledger = store.ledger_of(ann.id).unwrap();
        ledger.days.insert(old.day_number(), NO_SELECTION);
        store
            .db
            .put(LEDGER, &ann.id.to_bytes(), &ledger.encode())
            .unwrap();
        assert_eq!(
            store.sent_history(ann.id, usize::MAX).unwrap(),
            vec![(new, vec![id("2512.00001")]), (old, vec![])]
        );
        // A ledger naming a day that is no date is reported, not skipped.
        let broken = Ledger {
            days: [(u32::MAX - 1, 0)].into(),
            papers: Default::default(),
        };
        store
            .db
            .put(LEDGER, &ann.id.to_bytes(), &broken.encode())
            .unwrap();
        assert!(matches!(
            store.sent_history(ann.id, usize::MAX),
            Err(StoreError::Corrupt { tree: "ledger", .. })
        ));
    }
}
