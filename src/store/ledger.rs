//! One subscriber's ledger in a few hundred bytes: the editions planned for them and the
//! papers those carried, as small numbers.
//!
//! Each paper has a sequence number, given when paperboy first saw it, counting up. An
//! edition's deliveries are mostly the same few selections of its papers (subscribers with
//! the same preferences get the same digest), so each distinct selection is stored once per
//! edition, as a set of numbers, and a subscriber's ledger holds, per edition planned, only
//! which selection they got: one or two bytes a day. Numbers a ledger holds itself (from
//! before selections, or papers still trending when their edition left the retention
//! window) are written either as gaps in varints or as a bitmap, whichever is smaller.

use std::collections::{BTreeMap, BTreeSet};

/// An edition whose papers are in [`Ledger::papers`] rather than in a selection.
pub const NO_SELECTION: u32 = u32::MAX;

/// The record of one subscriber. Both collections are sorted and hold no duplicates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Editions (day numbers) a delivery was planned for, one digest per edition, each with
    /// the selection of that edition it carried (or [`NO_SELECTION`]).
    pub days: BTreeMap<u32, u32>,
    /// Papers (sequence numbers) planned outside any selection still on record.
    pub papers: BTreeSet<u32>,
}

/// 1: days as gaps, no selections. 2: days as runs, then a selection per day.
const VERSION_1: u8 = 1;
const VERSION: u8 = 2;
const GAPS: u8 = 0;
const BITMAP: u8 = 1;

impl Ledger {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        put_runs(&mut out, self.days.keys().copied());
        for &selection in self.days.values() {
            // 0 for none, so that the usual small numbers stay one byte.
            put_varint(&mut out, selection.wrapping_add(1).into());
        }
        out.extend(encode_seqs(&self.papers));
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut r = Reader { bytes, at: 0 };
        let days = match r.byte()? {
            VERSION_1 => r.gaps()?.into_iter().map(|d| (d, NO_SELECTION)).collect(),
            VERSION => {
                let days = r.runs()?;
                let mut out = BTreeMap::new();
                for day in days {
                    let selection = u32::try_from(r.varint()?)
                        .map_err(|_| "a selection out of range")?
                        .wrapping_sub(1);
                    out.insert(day, selection);
                }
                out
            }
            _ => return Err("unknown ledger version".into()),
        };
        let papers = r.seqs()?;
        if r.at != bytes.len() {
            return Err("trailing bytes".into());
        }
        Ok(Self { days, papers })
    }
}

/// A set of sequence numbers as gaps or as a bitmap, whichever is smaller: the papers of a
/// selection, or those a ledger holds itself.
pub fn encode_seqs(set: &BTreeSet<u32>) -> Vec<u8> {
    let mut gaps = vec![GAPS];
    put_gaps(&mut gaps, set);
    match bitmap(set) {
        Some(bitmap) if bitmap.len() < gaps.len() => bitmap,
        _ => gaps,
    }
}

pub fn decode_seqs(bytes: &[u8]) -> Result<BTreeSet<u32>, String> {
    let mut r = Reader { bytes, at: 0 };
    let set = r.seqs()?;
    if r.at != bytes.len() {
        return Err("trailing bytes".into());
    }
    Ok(set)
}

fn bitmap(set: &BTreeSet<u32>) -> Option<Vec<u8>> {
    let (&first, &last) = (set.first()?, set.last()?);
    let mut bits = vec![0u8; ((last - first) / 8 + 1) as usize];
    for p in set {
        let i = (p - first) as usize;
        bits[i / 8] |= 1 << (i % 8);
    }
    let mut out = vec![BITMAP];
    put_varint(&mut out, first.into());
    put_varint(&mut out, bits.len() as u64);
    out.extend(bits);
    Some(out)
}

/// Sorted numbers as runs of consecutive ones: a count, then per run its distance from the
/// end of the run before and its length. Daily editions are one run.
fn put_runs(out: &mut Vec<u8>, numbers: impl Iterator<Item = u32>) {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for n in numbers {
        match runs.last_mut() {
            Some((start, len)) if *start + *len == n => *len += 1,
            _ => runs.push((n, 1)),
        }
    }
    put_varint(out, runs.len() as u64);
    let mut end = 0;
    for (start, len) in runs {
        put_varint(out, (start - end).into());
        put_varint(out, len.into());
        end = start + len;
    }
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A count, then each number as its distance from the one before.
fn put_gaps(out: &mut Vec<u8>, set: &BTreeSet<u32>) {
    put_varint(out, set.len() as u64);
    let mut previous = 0;
    for &n in set {
        put_varint(out, (n - previous).into());
        previous = n;
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.bytes.get(self.at).ok_or("truncated")?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).ok_or("truncated")?;
        let slice = self.bytes.get(self.at..end).ok_or("truncated")?;
        self.at = end;
        Ok(slice)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err("a number too long".into())
    }

    fn u32(&mut self) -> Result<u32, String> {
        u32::try_from(self.varint()?).map_err(|_| "a number out of range".to_string())
    }

    fn seqs(&mut self) -> Result<BTreeSet<u32>, String> {
        match self.byte()? {
            GAPS => self.gaps(),
            BITMAP => {
                let first = self.u32()?;
                let len = self.varint()? as usize;
                let bits = self.take(len)?;
                let mut set = BTreeSet::new();
                for (i, byte) in bits.iter().enumerate() {
                    for bit in 0..8 {
                        if byte & (1 << bit) != 0 {
                            let n = u32::try_from(i * 8 + bit)
                                .ok()
                                .and_then(|n| first.checked_add(n))
                                .ok_or("a paper number out of range")?;
                            set.insert(n);
                        }
                    }
                }
                Ok(set)
            }
            _ => Err("unknown paper encoding".into()),
        }
    }

    fn runs(&mut self) -> Result<Vec<u32>, String> {
        let count = self.varint()?;
        let mut out = Vec::new();
        let mut end = 0u32;
        for i in 0..count {
            let gap = self.u32()?;
            let len = self.u32()?;
            if len == 0 || (gap == 0 && i > 0) {
                return Err("runs that are not runs".into());
            }
            let start = end.checked_add(gap).ok_or("a day out of range")?;
            end = start.checked_add(len).ok_or("a day out of range")?;
            if out.len() + len as usize > 100_000 {
                return Err("more days than a ledger can hold".into());
            }
            out.extend(start..end);
        }
        Ok(out)
    }

    fn gaps(&mut self) -> Result<BTreeSet<u32>, String> {
        let count = self.varint()?;
        let mut set = BTreeSet::new();
        let mut previous = 0u32;
        for i in 0..count {
            let gap = self.u32()?;
            if gap == 0 && i > 0 {
                return Err("a number twice".into());
            }
            previous = previous.checked_add(gap).ok_or("a number out of range")?;
            set.insert(previous);
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn selection() -> impl Strategy<Value = u32> {
        prop_oneof![Just(NO_SELECTION), 0u32..300, any::<u32>()]
    }

    proptest! {
        #[test]
        fn round_trips(days in prop::collection::btree_map(0u32..800_000, selection(), 0..200),
                       papers in prop::collection::btree_set(0u32..100_000, 0..2_000)) {
            let ledger = Ledger { days, papers };
            prop_assert_eq!(Ledger::decode(&ledger.encode()).unwrap(), ledger);
        }

        #[test]
        fn sets_round_trip(set in prop::collection::btree_set(0u32..100_000, 0..500)) {
            prop_assert_eq!(decode_seqs(&encode_seqs(&set)).unwrap(), set);
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = Ledger::decode(&bytes);
            let _ = decode_seqs(&bytes);
        }
    }

    #[test]
    fn version_1_ledgers_still_read() {
        // Days 739000 and 739001 as gaps, then papers 3 and 5 as gaps.
        let v1 = [VERSION_1, 2, 0xb8, 0x8d, 0x2d, 1, GAPS, 2, 3, 2];
        let ledger = Ledger::decode(&v1).unwrap();
        assert_eq!(
            ledger.days,
            BTreeMap::from([(739_000, NO_SELECTION), (739_001, NO_SELECTION)])
        );
        assert_eq!(ledger.papers, BTreeSet::from([3, 5]));
    }

    #[test]
    fn a_year_of_heavy_reading_stays_small() {
        // 180 daily editions; this reader got one of a few hundred selections each day.
        let ledger = Ledger {
            days: (739_000..739_180).map(|d| (d, d % 300)).collect(),
            papers: BTreeSet::new(),
        };
        let size = ledger.encode().len();
        assert!(size < 400, "{size} bytes");
        // Without selections: 10 of every 36 papers, as a bitmap.
        let explicit = Ledger {
            days: (739_000..739_180).map(|d| (d, NO_SELECTION)).collect(),
            papers: (0..180 * 36).filter(|n| n % 36 < 10).collect(),
        };
        let size = explicit.encode().len();
        assert!(size < 1_100, "{size} bytes");
        // A light reader: one digest a week.
        let light = Ledger {
            days: (739_000..739_180).step_by(7).map(|d| (d, 0)).collect(),
            papers: BTreeSet::new(),
        };
        assert!(light.encode().len() < 100);
    }
}
