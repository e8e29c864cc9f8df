//! Editions frozen at their first fetch (`editions`), so a retried delivery renders the
//! same digest; kept for good, they are also the archive.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::codec::{decode_edition, encode_edition};
use super::{EDITIONS, Result, Store};
use crate::domain::{EditionDate, Paper, PaperId};

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

impl Store {
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

    /// The newest edition on record: what the subscribe page shows as a sample.
    pub fn latest_edition(&self) -> Result<Option<EditionRecord>> {
        self.db
            .last(EDITIONS)?
            .map(|(_, v)| decode_edition(&v))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EngineKind;
    use crate::store::test_support::{date, paper};

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
}
