//! One subscriber's ledger in a few hundred bytes: the editions planned for them and the
//! papers those carried, as small numbers.
//!
//! A year of daily digests is thousands of papers per subscriber. Stored as one sled entry
//! per paper that is tens of kilobytes each; here each paper is its sequence number (given
//! to it when paperboy first saw it, counting up), and the sorted numbers are written either
//! as gaps in varints (about one byte per paper) or, when a subscriber gets most of what is
//! published, as a bitmap (one bit per paper published in the window) — whichever is smaller.

use std::collections::BTreeSet;

/// The record of one subscriber. Both sets are sorted and hold no duplicates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Editions (day numbers) a delivery was planned for: one digest per edition.
    pub days: BTreeSet<u32>,
    /// Papers (sequence numbers) planned in a delivery: never a paper twice.
    pub papers: BTreeSet<u32>,
}

const VERSION: u8 = 1;
const GAPS: u8 = 0;
const BITMAP: u8 = 1;

impl Ledger {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        put_gaps(&mut out, &self.days);
        let gaps = {
            let mut v = vec![GAPS];
            put_gaps(&mut v, &self.papers);
            v
        };
        match self.bitmap() {
            Some(bitmap) if bitmap.len() < gaps.len() => out.extend(bitmap),
            _ => out.extend(gaps),
        }
        out
    }

    fn bitmap(&self) -> Option<Vec<u8>> {
        let (&first, &last) = (self.papers.first()?, self.papers.last()?);
        let mut bits = vec![0u8; ((last - first) / 8 + 1) as usize];
        for p in &self.papers {
            let i = (p - first) as usize;
            bits[i / 8] |= 1 << (i % 8);
        }
        let mut out = vec![BITMAP];
        put_varint(&mut out, first.into());
        put_varint(&mut out, bits.len() as u64);
        out.extend(bits);
        Some(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut r = Reader { bytes, at: 0 };
        if r.byte()? != VERSION {
            return Err("unknown ledger version".into());
        }
        let days = r.gaps()?;
        let papers = match r.byte()? {
            GAPS => r.gaps()?,
            BITMAP => {
                let first = r.u32()?;
                let len = r.varint()? as usize;
                let bits = r.take(len)?;
                let mut papers = BTreeSet::new();
                for (i, byte) in bits.iter().enumerate() {
                    for bit in 0..8 {
                        if byte & (1 << bit) != 0 {
                            let n = u32::try_from(i * 8 + bit)
                                .ok()
                                .and_then(|n| first.checked_add(n))
                                .ok_or("a paper number out of range")?;
                            papers.insert(n);
                        }
                    }
                }
                papers
            }
            _ => return Err("unknown paper encoding".into()),
        };
        if r.at != bytes.len() {
            return Err("trailing bytes".into());
        }
        Ok(Self { days, papers })
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

    proptest! {
        #[test]
        fn round_trips(days in prop::collection::btree_set(0u32..800_000, 0..200),
                       papers in prop::collection::btree_set(0u32..100_000, 0..2_000)) {
            let ledger = Ledger { days, papers };
            prop_assert_eq!(Ledger::decode(&ledger.encode()).unwrap(), ledger);
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = Ledger::decode(&bytes);
        }
    }

    #[test]
    fn a_year_of_heavy_reading_stays_small() {
        // 180 daily editions of 36 papers each; this reader gets 10 of every 36.
        let ledger = Ledger {
            days: (739_000..739_180).collect(),
            papers: (0..180 * 36).filter(|n| n % 36 < 10).collect(),
        };
        let size = ledger.encode().len();
        assert!(size < 1_100, "{size} bytes");
        // A light reader: one paper a week.
        let light = Ledger {
            days: (739_000..739_180).step_by(7).collect(),
            papers: (0..180 * 36).step_by(7 * 36).collect(),
        };
        assert!(light.encode().len() < 100);
    }
}
