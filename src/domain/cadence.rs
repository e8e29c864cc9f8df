//! How often and when a subscriber gets digests: daily or weekly on a chosen day, at the
//! server's scheduled time or at an hour of their own in their own time zone.
//!
//! Both are stored and exported in a short text form (`weekly:mon`, `07:00 Europe/Berlin`)
//! that the CLI, the import file and the web form all parse the same way.

use std::fmt;
use std::str::FromStr;

use chrono::Weekday;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CadenceError {
    #[error("'{0}' is not a frequency: use daily, or weekly:DAY (mon, tue, … sun)")]
    Frequency(String),
    #[error("'{0}' is not a send time: use an hour from 0 to 23, like 7 or 07:00")]
    Hour(String),
    #[error("'{0}' is not an IANA time zone name, like Europe/Berlin or America/New_York")]
    Zone(String),
}

/// Daily, or weekly on one day of the week.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Frequency {
    #[default]
    Daily,
    Weekly(Weekday),
}

impl Frequency {
    pub fn is_daily(&self) -> bool {
        *self == Frequency::Daily
    }

    pub fn parse(raw: &str) -> Result<Self, CadenceError> {
        let t = raw.trim().to_ascii_lowercase();
        let err = || CadenceError::Frequency(raw.chars().take(40).collect());
        if t == "daily" || t.is_empty() {
            return Ok(Frequency::Daily);
        }
        let day = t
            .strip_prefix("weekly:")
            .or_else(|| t.strip_prefix("weekly "))
            .ok_or_else(err)?;
        Weekday::from_str(day.trim())
            .map(Frequency::Weekly)
            .map_err(|_| err())
    }
}

impl fmt::Display for Frequency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frequency::Daily => f.write_str("daily"),
            Frequency::Weekly(d) => write!(f, "weekly:{}", day_code(*d)),
        }
    }
}

/// `mon` … `sun`: the form stored and shown.
pub fn day_code(d: Weekday) -> &'static str {
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][d.num_days_from_monday() as usize]
}

impl TryFrom<String> for Frequency {
    type Error = CadenceError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Frequency> for String {
    fn from(value: Frequency) -> Self {
        value.to_string()
    }
}

/// An hour of the day in a time zone: when a subscriber's digest goes out, DST included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SendAt {
    hour: u8,
    zone: Tz,
}

impl SendAt {
    pub fn new(hour: u8, zone: Tz) -> Result<Self, CadenceError> {
        if hour > 23 {
            return Err(CadenceError::Hour(hour.to_string()));
        }
        Ok(Self { hour, zone })
    }

    /// An hour (`7`, `07`, `07:00`) and a zone name, each as typed.
    pub fn parse_parts(hour: &str, zone: &str) -> Result<Self, CadenceError> {
        let h = hour.trim();
        let bad_hour = || CadenceError::Hour(h.chars().take(20).collect());
        let h = h.strip_suffix(":00").unwrap_or(h);
        let hour: u8 = if !h.is_empty() && h.len() <= 2 && h.bytes().all(|b| b.is_ascii_digit()) {
            h.parse().map_err(|_| bad_hour())?
        } else {
            return Err(bad_hour());
        };
        let zone = zone.trim();
        let tz: Tz = zone
            .parse()
            .map_err(|_| CadenceError::Zone(zone.chars().take(60).collect()))?;
        Self::new(hour, tz)
    }

    /// `07:00 Europe/Berlin`, the stored form.
    pub fn parse(raw: &str) -> Result<Self, CadenceError> {
        let (hour, zone) = raw
            .trim()
            .split_once(' ')
            .ok_or_else(|| CadenceError::Hour(raw.chars().take(40).collect()))?;
        Self::parse_parts(hour, zone)
    }

    pub fn hour(&self) -> u8 {
        self.hour
    }

    pub fn zone(&self) -> Tz {
        self.zone
    }
}

impl fmt::Display for SendAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:00 {}", self.hour, self.zone.name())
    }
}

impl TryFrom<String> for SendAt {
    type Error = CadenceError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<SendAt> for String {
    fn from(value: SendAt) -> Self {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequencies_parse_and_print() {
        assert_eq!(Frequency::parse("daily"), Ok(Frequency::Daily));
        assert_eq!(Frequency::parse(""), Ok(Frequency::Daily));
        assert_eq!(
            Frequency::parse("Weekly:Monday"),
            Ok(Frequency::Weekly(Weekday::Mon))
        );
        assert_eq!(
            Frequency::parse("weekly sun").unwrap().to_string(),
            "weekly:sun"
        );
        for bad in ["weekly", "weekly:someday", "monthly", "weekly:"] {
            assert!(Frequency::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn send_times_parse_and_print() {
        let s = SendAt::parse_parts("7", "Europe/Berlin").unwrap();
        assert_eq!(s.to_string(), "07:00 Europe/Berlin");
        assert_eq!(SendAt::parse("07:00 Europe/Berlin"), Ok(s));
        assert_eq!(
            SendAt::parse_parts("23:00", "UTC").unwrap().to_string(),
            "23:00 UTC"
        );
        assert!(matches!(
            SendAt::parse_parts("24", "UTC"),
            Err(CadenceError::Hour(_))
        ));
        assert!(matches!(
            SendAt::parse_parts("7:30", "UTC"),
            Err(CadenceError::Hour(_))
        ));
        assert!(matches!(
            SendAt::parse_parts("7", "Mars/Olympus"),
            Err(CadenceError::Zone(_))
        ));
        assert!(SendAt::parse("07:00").is_err());
    }

    #[test]
    fn stored_as_text() {
        let json = serde_json::to_string(&Frequency::Weekly(Weekday::Fri)).unwrap();
        assert_eq!(json, "\"weekly:fri\"");
        let back: SendAt = serde_json::from_str("\"06:00 Asia/Tokyo\"").unwrap();
        assert_eq!(back.hour(), 6);
        assert!(serde_json::from_str::<SendAt>("\"99:00 UTC\"").is_err());
    }
}
