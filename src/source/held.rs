//! Listings held in memory instead of fetched: a source that never opens a connection.
//! `paperboy demo` feeds its sample days through it, so that its editions run the same
//! code as `run-once` without the network.

use std::collections::BTreeMap;

use super::{Listing, SourceError, recent_only};
use crate::domain::EditionDate;

/// One listing per day. A date is answered with the newest listing on or before it, as
/// the trending page shows what it showed last until it changes; the recent window is the
/// held listings of the `recent_days` days before, as the daily lists would give them.
#[derive(Clone, Debug)]
pub struct Held {
    days: BTreeMap<EditionDate, Listing>,
    recent_days: u32,
}

impl Held {
    /// Each listing is held under the date it claims; one without a date cannot be placed.
    pub fn new(
        listings: impl IntoIterator<Item = Listing>,
        recent_days: u32,
    ) -> Result<Self, String> {
        let mut days = BTreeMap::new();
        for listing in listings {
            let date = listing
                .date
                .ok_or("a held listing must say which day it is for")?;
            days.insert(date, listing);
        }
        Ok(Self { days, recent_days })
    }

    /// The days held, oldest first.
    pub fn dates(&self) -> Vec<EditionDate> {
        self.days.keys().copied().collect()
    }

    pub fn fetch(&self, date: EditionDate) -> Result<Listing, SourceError> {
        let (_, page) = self
            .days
            .range(..=date)
            .next_back()
            .ok_or(SourceError::NotHeld { asked: date })?;
        let mut listing = page.clone();
        let before: Vec<_> = (1..=self.recent_days)
            .filter_map(|back| self.days.get(&date.minus_days(back)))
            .map(|l| l.papers.clone())
            .collect();
        listing.recent = recent_only(before, &listing.papers);
        Ok(listing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::parse_listing;

    fn fixture(name: &str) -> Listing {
        let path = format!("{}/tests/fixtures/hf/{name}", env!("CARGO_MANIFEST_DIR"));
        parse_listing(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn date(s: &str) -> EditionDate {
        EditionDate::parse(s).unwrap()
    }

    #[test]
    fn a_day_gets_the_newest_listing_on_or_before_it_and_the_days_before_as_recent() {
        let one = fixture("trending-2025-12-08.html");
        let two = fixture("trending-2025-12-09.html");
        let held = Held::new([two.clone(), one.clone()], 3).unwrap();
        assert_eq!(held.dates(), [date("2025-12-08"), date("2025-12-09")]);

        let first = held.fetch(date("2025-12-08")).unwrap();
        assert_eq!(first.papers.len(), one.papers.len());
        assert!(first.recent.is_empty());

        let second = held.fetch(date("2025-12-09")).unwrap();
        assert_eq!(second.papers.len(), two.papers.len());
        let only_on_day_one = one
            .papers
            .iter()
            .filter(|p| !two.papers.iter().any(|q| q.id == p.id))
            .count();
        assert!(only_on_day_one > 0);
        assert_eq!(second.recent.len(), only_on_day_one);

        // Later days show the last page; earlier ones have none.
        let later = held.fetch(date("2026-03-01")).unwrap();
        assert_eq!(later.date, Some(date("2025-12-09")));
        assert!(matches!(
            held.fetch(date("2025-12-07")),
            Err(SourceError::NotHeld { .. })
        ));
    }

    #[test]
    fn a_listing_without_a_date_is_refused() {
        let undated = parse_listing("[]").unwrap();
        assert!(Held::new([undated], 3).is_err());
    }
}
