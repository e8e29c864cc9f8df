//! How records are laid out as keys and values: JSON values (editions deflated), ledgers
//! and selections in their compact encodings, and the keys that order them.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::editions::EditionRecord;
use super::ledger::{Ledger, decode_seqs};
use super::{Result, StoreError};
use crate::domain::{EditionDate, SubscriberId};

pub(super) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialise")
}

pub(super) fn decode<T: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        tree,
        reason: e.to_string(),
    })
}

/// Marks an edition stored deflated. Editions written before were plain JSON, which starts
/// with `{`, so both read back.
pub(super) const DEFLATED: u8 = 1;

/// Editions are the bulk of the store's text (abstracts, author lists: ~80 KB a day);
/// deflated they take a third of that.
pub(super) fn encode_edition(record: &EditionRecord) -> Vec<u8> {
    use std::io::Write;
    let mut z = flate2::write::DeflateEncoder::new(vec![DEFLATED], flate2::Compression::default());
    z.write_all(&encode(record)).expect("writing to memory");
    z.finish().expect("writing to memory")
}

pub(super) fn decode_edition(bytes: &[u8]) -> Result<EditionRecord> {
    decode_edition_as(bytes)
}

/// An edition read as `T`: the whole record, or only the parts a caller needs.
pub(super) fn decode_edition_as<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
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

pub(super) fn decode_ledger(bytes: &[u8]) -> Result<Ledger> {
    Ledger::decode(bytes).map_err(|reason| StoreError::Corrupt {
        tree: "ledger",
        reason,
    })
}

pub(super) fn delivery_key(date: EditionDate, subscriber: SubscriberId) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&date.key_bytes());
    k[4..].copy_from_slice(&subscriber.to_bytes());
    k
}

pub(super) fn selection_key(day: u32, selection: u32) -> [u8; 8] {
    let mut k = [0u8; 8];
    k[..4].copy_from_slice(&day.to_be_bytes());
    k[4..].copy_from_slice(&selection.to_be_bytes());
    k
}

pub(super) fn selection_of_key(key: &[u8]) -> Result<(u32, u32)> {
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

pub(super) fn decode_selection(bytes: &[u8]) -> Result<std::collections::BTreeSet<u32>> {
    decode_seqs(bytes).map_err(|reason| StoreError::Corrupt {
        tree: "selections",
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::{date, paper};
    use crate::store::{EngineKind, Store};

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
}
