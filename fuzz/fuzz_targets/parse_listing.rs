//! Arbitrary bytes (read as lossy UTF-8) into the page/API parser: it must never panic, and a
//! listing it accepts must hold canonical, unique paper ids.

#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let body = String::from_utf8_lossy(data);
    if let Ok(listing) = paperboy::source::parse_listing(&body) {
        let mut seen = HashSet::with_capacity(listing.papers.len());
        for p in &listing.papers {
            let id = p.id.as_str();
            assert!(!id.contains('v'), "paper id {id:?} kept a version suffix");
            assert!(
                seen.insert(id),
                "paper id {id:?} appears twice in one listing"
            );
        }
    }
});
