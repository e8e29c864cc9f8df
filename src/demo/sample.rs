//! The demo's sample days: two trending pages built into the binary. They are the data
//! islands of the test fixtures `tests/fixtures/hf/trending-2025-12-0{8,9}.html`, kept
//! verbatim in `src/demo/sample/` without the rest of those pages, and read by the same
//! parser as a fetched page. The second day repeats most papers of the first, so its
//! digest shows that nothing is sent twice.

use crate::source::{Held, parse_listing};

const DAYS: [(&str, &str); 2] = [
    (
        "trending-2025-12-08.html",
        include_str!("sample/trending-2025-12-08.html"),
    ),
    (
        "trending-2025-12-09.html",
        include_str!("sample/trending-2025-12-09.html"),
    ),
];

/// The days before an edition whose pages are read for late bloomers, as the default
/// `source.recent_days`.
const RECENT_DAYS: u32 = 3;

/// The sample days as a source.
pub fn days() -> anyhow::Result<Held> {
    let listings = DAYS
        .iter()
        .map(|(name, page)| {
            parse_listing(page).map_err(|e| anyhow::anyhow!("the built-in sample {name}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Held::new(listings, RECENT_DAYS).map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The copies in the binary say what the fixtures say, paper for paper.
    #[test]
    fn the_built_in_days_are_the_fixtures() {
        let held = days().unwrap();
        assert_eq!(held.dates().len(), 2);
        for ((name, _), date) in DAYS.iter().zip(held.dates()) {
            let path = format!("{}/tests/fixtures/hf/{name}", env!("CARGO_MANIFEST_DIR"));
            let fixture = parse_listing(&std::fs::read_to_string(path).unwrap()).unwrap();
            let built_in = held.fetch(date).unwrap();
            assert_eq!(built_in.date, fixture.date);
            assert_eq!(built_in.papers, fixture.papers, "{name}");
        }
    }
}
