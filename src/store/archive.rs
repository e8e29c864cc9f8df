//! The archive: every edition is kept (its frozen papers, the `editions` tree), and readers
//! browse them on the web and follow them in a feed. These are the reads those need, newest
//! first and a page at a time, so that a page costs the same after ten years as after ten
//! days.

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::codec::decode_edition_as;
use super::{EDITIONS, EditionRecord, Result, Store, StoreError};
use crate::domain::EditionDate;

/// One line of the archive's index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EditionSummary {
    pub date: EditionDate,
    /// How many papers the edition has.
    pub papers: usize,
}

/// An edition read only as far as its number of papers: no text is kept in memory.
#[derive(Deserialize)]
struct Counted {
    papers: Vec<IgnoredAny>,
}

impl Store {
    /// Up to `limit` editions from before `before` (from the newest if none), newest first,
    /// with their number of papers.
    pub fn edition_summaries(
        &self,
        before: Option<EditionDate>,
        limit: usize,
    ) -> Result<Vec<EditionSummary>> {
        let before = before.map(|d| d.key_bytes());
        self.db
            .last_n_before(EDITIONS, before.as_ref().map(|k| &k[..]), limit)?
            .into_iter()
            .map(|(key, value)| {
                Ok(EditionSummary {
                    date: date_of_key(&key)?,
                    papers: decode_edition_as::<Counted>(&value)?.papers.len(),
                })
            })
            .collect()
    }

    /// The newest `limit` editions, whole, newest first: what the feed shows.
    pub fn latest_editions(&self, limit: usize) -> Result<Vec<EditionRecord>> {
        self.db
            .last_n_before(EDITIONS, None, limit)?
            .into_iter()
            .map(|(_, value)| decode_edition_as(&value))
            .collect()
    }
}

fn date_of_key(key: &[u8]) -> Result<EditionDate> {
    <[u8; 4]>::try_from(key)
        .ok()
        .and_then(EditionDate::from_key_bytes)
        .ok_or_else(|| StoreError::Corrupt {
            tree: "editions",
            reason: "a key that is not a date".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Paper;
    use crate::store::test_support::{date, paper};

    fn papers(n: u32) -> Vec<Paper> {
        (1..=n).map(|i| paper(&format!("2512.{i:05}"), i)).collect()
    }

    #[test]
    fn the_index_is_newest_first_a_page_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), crate::store::EngineKind::Sled).unwrap();
        assert!(store.edition_summaries(None, 10).unwrap().is_empty());
        assert!(store.latest_editions(10).unwrap().is_empty());
        let days = ["2025-12-08", "2025-12-09", "2025-12-11", "2026-01-05"];
        for (i, d) in days.iter().enumerate() {
            store
                .freeze_edition(date(d), &papers(i as u32 + 1), &[])
                .unwrap();
        }
        let summary = |d: &str, papers| EditionSummary {
            date: date(d),
            papers,
        };
        assert_eq!(
            store.edition_summaries(None, 2).unwrap(),
            [summary("2026-01-05", 4), summary("2025-12-11", 3)]
        );
        // The next page starts below the last date shown.
        assert_eq!(
            store
                .edition_summaries(Some(date("2025-12-11")), 2)
                .unwrap(),
            [summary("2025-12-09", 2), summary("2025-12-08", 1)]
        );
        // A date with no edition of its own works as a bound too.
        assert_eq!(
            store
                .edition_summaries(Some(date("2025-12-10")), 100)
                .unwrap(),
            [summary("2025-12-09", 2), summary("2025-12-08", 1)]
        );
        let latest = store.latest_editions(3).unwrap();
        let dates: Vec<String> = latest.iter().map(|e| e.date.to_string()).collect();
        assert_eq!(dates, ["2026-01-05", "2025-12-11", "2025-12-09"]);
        assert_eq!(latest[0].papers, papers(4));
    }
}
