//! Bringing a store written by an earlier schema up to date when it is opened; see
//! `SCHEMA_VERSION` for what each schema changed.

use super::ledger::{Ledger, NO_SELECTION};
use super::{DELIVERIES, LEDGER, Result, Store};
use crate::domain::{EditionDate, PaperId};

impl Store {
    /// Schema 1 kept one `sent` entry (subscriber ‖ paper → date) per paper: folds them into
    /// ledgers, with the editions of the deliveries on record, then drops the old tree.
    pub(super) fn migrate_sent_to_ledger(&self) -> Result<()> {
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
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::store::codec::{delivery_key, encode};
    use crate::store::engine::Db;
    use crate::store::papers::StoredPaper;
    use crate::store::test_support::{date, delivery, sent, subscriber};
    use crate::store::{EngineKind, META, PAPERS, SUBSCRIBER_IDS, SUBSCRIBERS, TREES};

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
}
