//! The date an edition is for: one digest per subscriber per edition date.

use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EditionDate(NaiveDate);

impl TryFrom<String> for EditionDate {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<EditionDate> for String {
    fn from(value: EditionDate) -> Self {
        value.to_string()
    }
}

impl EditionDate {
    /// Parses `YYYY-MM-DD`, the form the CLI takes and Hugging Face's `dateString` uses.
    pub fn parse(raw: &str) -> Result<Self, String> {
        NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
            .map(Self)
            .map_err(|_| format!("'{raw}' is not a date of the form YYYY-MM-DD"))
    }

    pub fn from_naive(date: NaiveDate) -> Self {
        Self(date)
    }

    /// Today in the given time zone: the edition a run with no `--date` is for.
    pub fn today_in(tz: chrono_tz::Tz) -> Self {
        Self(chrono::Utc::now().with_timezone(&tz).date_naive())
    }

    /// The date `days` earlier: where a retention window starts.
    pub fn minus_days(&self, days: u32) -> Self {
        Self(self.0 - chrono::Days::new(days.into()))
    }

    pub fn naive(&self) -> NaiveDate {
        self.0
    }

    /// Days since 1 January of year 1: a small number that sorts like the date.
    pub fn day_number(&self) -> u32 {
        use chrono::Datelike;
        self.0.num_days_from_ce() as u32
    }

    pub fn from_day_number(n: u32) -> Option<Self> {
        NaiveDate::from_num_days_from_ce_opt(i32::try_from(n).ok()?).map(Self)
    }

    /// Big-endian day number: sorts like the date, so stored keys come out in date order.
    pub fn key_bytes(&self) -> [u8; 4] {
        self.day_number().to_be_bytes()
    }

    pub fn from_key_bytes(bytes: [u8; 4]) -> Option<Self> {
        Self::from_day_number(u32::from_be_bytes(bytes))
    }

    /// "Dec 9", as the subject line says it.
    pub fn short(&self) -> String {
        self.0.format("%b %-d").to_string()
    }

    /// "Tuesday, December 9, 2025", as the digest's header says it.
    pub fn long(&self) -> String {
        self.0.format("%A, %B %-d, %Y").to_string()
    }
}

impl fmt::Display for EditionDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        let d = EditionDate::parse("2025-12-09").unwrap();
        assert_eq!(d.to_string(), "2025-12-09");
        assert_eq!(d.short(), "Dec 9");
        assert_eq!(d.long(), "Tuesday, December 9, 2025");
        assert_eq!(EditionDate::from_key_bytes(d.key_bytes()), Some(d));
        assert!(EditionDate::parse("2025-13-01").is_err());
        assert!(EditionDate::parse("yesterday").is_err());
    }

    #[test]
    fn key_bytes_sort_like_dates() {
        let a = EditionDate::parse("2025-12-31").unwrap();
        let b = EditionDate::parse("2026-01-01").unwrap();
        assert!(a.key_bytes() < b.key_bytes());
    }
}
