//! The papers paperboy has seen: each one's sequence number (what ledgers and selections
//! hold) and when it was first and last seen, and a page's papers indexed for planning.

use std::ops::Bound::{Included, Unbounded};

use serde::{Deserialize, Serialize};

use super::codec::{decode, decode_selection, encode, selection_key, selection_of_key};
use super::{META, PAPER_SEQS, PAPERS, Result, SELECTIONS, Store};
use crate::domain::{EditionDate, Paper, PaperId, Sighting};

/// What is remembered of a paper between editions (its text lives in the editions).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct StoredPaper {
    /// Its number in the ledgers; given when first seen, counting up.
    #[serde(default)]
    pub(super) seq: Option<u32>,
    pub(super) first_seen: EditionDate,
    pub(super) last_seen: EditionDate,
    /// Its upvotes when first seen: a paper that passes a subscriber's minimum only later
    /// is a late bloomer for them. Unknown for papers recorded by earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) first_upvotes: Option<u32>,
}

/// A page's papers as planning checks them against ledgers: their sequence numbers, and
/// which of them each selection on record carried. Built once per edition.
pub struct PageIndex {
    pub(super) seqs: Vec<(PaperId, u32)>,
    /// When each paper was first seen, and with how many upvotes, where known.
    pub(super) first_seen: std::collections::HashMap<PaperId, Sighting>,
    /// The day the oldest of the papers was first seen.
    pub(super) first_day: u32,
    /// (day, selection) → positions in `seqs`, for the selections that hold any of them.
    pub(super) carried: std::collections::HashMap<(u32, u32), Vec<usize>>,
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

impl Store {
    /// The sequence number of each paper, numbering those that have none yet. `seen`, when
    /// given, also records the papers as seen on that edition date.
    pub(super) fn assign_seqs(
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

    /// Remembers when each paper was last seen (what the retention window counts from) and
    /// gives papers seen for the first time their sequence number.
    pub fn record_papers(&self, date: EditionDate, papers: &[Paper]) -> Result<()> {
        let ids: Vec<PaperId> = papers.iter().map(|p| p.id.clone()).collect();
        let upvotes: Vec<u32> = papers.iter().map(|p| p.upvotes).collect();
        self.assign_seqs(&ids, Some((date, &upvotes)))?;
        Ok(())
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
}
