//! The fields of the subscribe and preferences forms, as posted and as checked.

use serde::Deserialize;

use crate::domain::{
    Choices, EditionDays, Frequency, Keywords, MAX_ITEMS_CAP, Preferences, SendAt, SubscriberEmail,
};

/// The most a single field may hold; longer input is refused before any parsing.
const MAX_FIELD: usize = 1000;

/// What the subscribe form posts. Every field is optional text so that a bad value comes
/// back as a message next to the field instead of a bare 400.
#[derive(Debug, Default, Deserialize)]
pub struct SubscribeForm {
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub keywords: String,
    #[serde(default)]
    pub min_upvotes: String,
    #[serde(default)]
    pub max_items: String,
    /// The honeypot: hidden from people, filled in by bots.
    #[serde(default)]
    pub website: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct PreferencesForm {
    #[serde(default)]
    pub keywords: String,
    #[serde(default)]
    pub min_upvotes: String,
    #[serde(default)]
    pub max_items: String,
    #[serde(default)]
    pub paused: Option<String>,
    /// `daily` or `weekly:mon` … `weekly:sun`.
    #[serde(default)]
    pub frequency: String,
    /// An hour, 0–23, or empty for the server's schedule.
    #[serde(default)]
    pub send_hour: String,
    /// An IANA zone name, for `send_hour`.
    #[serde(default)]
    pub timezone: String,
}

/// The values a form shows, refilled after an error.
#[derive(Debug, Default, Clone)]
pub struct FormValues {
    pub email: String,
    pub keywords: String,
    pub min_upvotes: String,
    pub max_items: String,
    pub paused: bool,
    pub frequency: String,
    pub send_hour: String,
    pub timezone: String,
}

impl FormValues {
    pub fn from_preferences(p: &Preferences) -> Self {
        Self {
            email: String::new(),
            keywords: p.keywords().to_string(),
            min_upvotes: p.min_upvotes().map(|n| n.to_string()).unwrap_or_default(),
            max_items: p.max_items().map(|n| n.to_string()).unwrap_or_default(),
            paused: p.paused(),
            frequency: p.frequency().to_string(),
            send_hour: p
                .send_at()
                .map(|s| s.hour().to_string())
                .unwrap_or_default(),
            timezone: p
                .send_at()
                .map(|s| s.zone().name().to_string())
                .unwrap_or_default(),
        }
    }

    /// The choices of the frequency list: value, label, and whether it is the one chosen.
    pub fn frequency_options(&self) -> Vec<(String, String, bool)> {
        let days = [
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
            "Sunday",
        ];
        std::iter::once(("daily".to_string(), "Daily".to_string()))
            .chain(days.iter().map(|d| {
                let code = d[..3].to_ascii_lowercase();
                (format!("weekly:{code}"), format!("Weekly, on {d}"))
            }))
            .map(|(value, label)| {
                let chosen =
                    value == self.frequency || (self.frequency.is_empty() && value == "daily");
                (value, label, chosen)
            })
            .collect()
    }

    /// The choices of the send-hour list: value, label, and whether it is the one chosen.
    pub fn hour_options(&self) -> Vec<(String, String, bool)> {
        std::iter::once((
            String::new(),
            "With everyone, on the site's schedule".to_string(),
        ))
        .chain((0..24).map(|h| (h.to_string(), format!("{h:02}:00"))))
        .map(|(value, label)| {
            let chosen = value == self.send_hour.trim();
            (value, label, chosen)
        })
        .collect()
    }
}

/// How often and when, from the form's fields; `zone` when a send hour comes without one.
fn cadence(
    form: &PreferencesForm,
    default_zone: &str,
    errors: &mut Vec<String>,
) -> (Frequency, Option<SendAt>) {
    let frequency = Frequency::parse(&form.frequency)
        .map_err(|e| errors.push(format!("How often: {e}.")))
        .unwrap_or_default();
    let send_at = if form.send_hour.trim().is_empty() {
        None
    } else {
        let zone = match form.timezone.trim() {
            "" => default_zone,
            z => z,
        };
        SendAt::parse_parts(&form.send_hour, zone)
            .map_err(|e| errors.push(format!("Send time: {e}.")))
            .ok()
    };
    (frequency, send_at)
}

fn bounded(s: &str) -> String {
    s.chars().take(MAX_FIELD).collect()
}

/// An optional whole number in `range`; the message names the same range the field's
/// hint and the CLI do.
fn number(
    raw: &str,
    what: &str,
    range: std::ops::RangeInclusive<u32>,
    errors: &mut Vec<String>,
) -> Option<u32> {
    let t = raw.trim();
    if t.is_empty() {
        return None;
    }
    match t.parse::<u32>() {
        Ok(n) if range.contains(&n) => Some(n),
        _ => {
            errors.push(format!(
                "{what} must be a whole number from {} to {}.",
                range.start(),
                range.end()
            ));
            None
        }
    }
}

fn preferences(
    keywords: &str,
    min_upvotes: &str,
    max_items: &str,
    paused: bool,
    errors: &mut Vec<String>,
) -> Option<Choices> {
    let keywords = if keywords.len() > MAX_FIELD {
        errors.push(format!(
            "Keywords may have at most {MAX_FIELD} characters in all."
        ));
        None
    } else {
        Keywords::parse_list(keywords)
            .map_err(|e| errors.push(format!("Keywords: {e}.")))
            .ok()
    };
    let min_upvotes = number(min_upvotes, "Minimum upvotes", 0..=100_000, errors);
    let max_items = number(max_items, "Papers per digest", 1..=MAX_ITEMS_CAP, errors);
    let choices = Choices {
        min_upvotes,
        keywords: keywords?,
        max_items,
        paused,
        ..Choices::default()
    };
    errors.is_empty().then_some(choices)
}

/// The preferences `choices` make, or the rule they break as one more error.
fn kept(choices: Choices, days: &EditionDays, errors: &mut Vec<String>) -> Option<Preferences> {
    Preferences::new(choices, days)
        // The form's own checks catch every other rule first: what is left is the day.
        .map_err(|e| errors.push(format!("How often: {e}.")))
        .ok()
}

impl SubscribeForm {
    pub fn values(&self) -> FormValues {
        FormValues {
            email: bounded(&self.email),
            keywords: bounded(&self.keywords),
            min_upvotes: bounded(&self.min_upvotes),
            max_items: bounded(&self.max_items),
            ..FormValues::default()
        }
    }

    /// The address and preferences, or every problem found, in the order of the form.
    pub fn parse(&self, days: &EditionDays) -> Result<(SubscriberEmail, Preferences), Vec<String>> {
        let mut errors = Vec::new();
        let email = SubscriberEmail::parse(&self.email)
            .map_err(|e| errors.push(format!("Email address: {e}.")))
            .ok();
        let prefs = preferences(
            &self.keywords,
            &self.min_upvotes,
            &self.max_items,
            false,
            &mut errors,
        )
        .and_then(|c| kept(c, days, &mut errors));
        match (email, prefs) {
            (Some(e), Some(p)) if errors.is_empty() => Ok((e, p)),
            _ => Err(errors),
        }
    }
}

impl PreferencesForm {
    pub fn values(&self) -> FormValues {
        FormValues {
            email: String::new(),
            keywords: bounded(&self.keywords),
            min_upvotes: bounded(&self.min_upvotes),
            max_items: bounded(&self.max_items),
            paused: self.paused.is_some(),
            frequency: bounded(&self.frequency),
            send_hour: bounded(&self.send_hour),
            timezone: bounded(&self.timezone),
        }
    }

    /// The preferences, or every problem found. A send hour without a zone is in
    /// `default_zone` (the server's).
    pub fn parse(
        &self,
        default_zone: &str,
        days: &EditionDays,
    ) -> Result<Preferences, Vec<String>> {
        let mut errors = Vec::new();
        let (frequency, send_at) = cadence(self, default_zone, &mut errors);
        let choices = preferences(
            &self.keywords,
            &self.min_upvotes,
            &self.max_items,
            self.paused.is_some(),
            &mut errors,
        )
        .ok_or_else(|| errors.clone())?;
        if !errors.is_empty() {
            return Err(errors);
        }
        let choices = Choices {
            frequency,
            send_at,
            ..choices
        };
        kept(choices, days, &mut errors).ok_or(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(email: &str, keywords: &str, min: &str, max: &str) -> SubscribeForm {
        SubscribeForm {
            email: email.into(),
            keywords: keywords.into(),
            min_upvotes: min.into(),
            max_items: max.into(),
            website: String::new(),
        }
    }

    #[test]
    fn a_good_form() {
        let (e, p) = form("Ann@Example.org", "LLM, agents", "10", "5")
            .parse(&EditionDays::every_day())
            .unwrap();
        assert_eq!(e.as_str(), "ann@example.org");
        assert_eq!(p.min_upvotes(), Some(10));
        assert_eq!(p.max_items(), Some(5));
        assert_eq!(p.keywords().as_slice(), ["llm", "agents"]);
        let (_, p) = form("a@example.org", "", "", "")
            .parse(&EditionDays::every_day())
            .unwrap();
        assert_eq!(p, Preferences::default());
    }

    #[test]
    fn how_often_and_when() {
        let form = |frequency: &str, hour: &str, zone: &str| PreferencesForm {
            frequency: frequency.into(),
            send_hour: hour.into(),
            timezone: zone.into(),
            ..Default::default()
        };
        let p = form("weekly:fri", "7", "Asia/Tokyo")
            .parse("UTC", &EditionDays::every_day())
            .unwrap();
        assert_eq!(p.frequency().to_string(), "weekly:fri");
        assert_eq!(p.send_at().unwrap().to_string(), "07:00 Asia/Tokyo");
        let p = form("daily", "", "Asia/Tokyo")
            .parse("UTC", &EditionDays::every_day())
            .unwrap();
        assert_eq!(p.send_at(), None);
        let p = form("", "23", "")
            .parse("Europe/Berlin", &EditionDays::every_day())
            .unwrap();
        assert_eq!(p.send_at().unwrap().to_string(), "23:00 Europe/Berlin");
        let errors = form("fortnightly", "25", "Nowhere/Land")
            .parse("UTC", &EditionDays::every_day())
            .unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        let values = FormValues::from_preferences(
            &form("weekly:sun", "6", "UTC")
                .parse("UTC", &EditionDays::every_day())
                .unwrap(),
        );
        assert!(
            values
                .frequency_options()
                .iter()
                .any(|(v, _, chosen)| v == "weekly:sun" && *chosen)
        );
        assert!(
            values
                .hour_options()
                .iter()
                .any(|(v, l, chosen)| v == "6" && l == "06:00" && *chosen)
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let errors = form("nope", &"k".repeat(70), "-3", "99")
            .parse(&EditionDays::every_day())
            .unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("Email address"));
        // One range for papers per digest, whichever end is crossed, as the hint says.
        for bad in ["0", "31"] {
            let errors = form("a@example.org", "", "", bad)
                .parse(&EditionDays::every_day())
                .unwrap_err();
            assert_eq!(
                errors,
                ["Papers per digest must be a whole number from 1 to 30."],
                "{bad}"
            );
        }
    }
}
