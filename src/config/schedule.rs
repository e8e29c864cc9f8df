//! `[schedule]`: when the server's editions go out, parsed once into the schedule and the
//! time zone everything else uses.

use std::str::FromStr;

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleSettings {
    /// Six or seven fields, seconds first: "0 0 8 * * Mon-Fri".
    pub cron: Cron,
    /// An IANA time zone name: the schedule's hours and edition dates are in it.
    pub timezone: TimeZone,
    /// After downtime across a scheduled time, the missed edition is still sent if paperboy
    /// is back within this many hours (0: never); later it is skipped.
    pub catch_up_hours: u32,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self {
            cron: Cron::try_from("0 0 8 * * Mon-Fri".to_string())
                .expect("the default schedule parses"),
            timezone: TimeZone(Tz::UTC),
            catch_up_hours: 6,
        }
    }
}

impl ScheduleSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.catch_up_hours > 48 {
            return Err(invalid("schedule.catch_up_hours", "must be at most 48"));
        }
        Ok(())
    }

    /// The schedule's time zone.
    pub fn tz(&self) -> Tz {
        self.timezone.0
    }
}

/// A cron schedule, kept with the text it was read from (for `check-config`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cron {
    text: String,
    schedule: cron::Schedule,
}

impl Cron {
    pub fn schedule(&self) -> &cron::Schedule {
        &self.schedule
    }
}

impl TryFrom<String> for Cron {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        match cron::Schedule::from_str(&text) {
            Ok(schedule) => Ok(Self { text, schedule }),
            Err(e) => Err(format!(
                "'{text}' is not a schedule ({e}); use 6 or 7 fields, seconds first, e.g. \"0 0 8 * * Mon-Fri\""
            )),
        }
    }
}

impl From<Cron> for String {
    fn from(c: Cron) -> Self {
        c.text
    }
}

/// An IANA time zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TimeZone(Tz);

impl TimeZone {
    pub fn tz(self) -> Tz {
        self.0
    }
}

impl TryFrom<String> for TimeZone {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        name.parse()
            .map(Self)
            .map_err(|_| format!("'{name}' is not an IANA time zone name like Europe/Berlin"))
    }
}

impl From<TimeZone> for String {
    fn from(t: TimeZone) -> Self {
        t.0.name().to_string()
    }
}
