//! The fields of the subscribe and preferences forms, as posted and as checked.

use serde::Deserialize;

use crate::domain::{Keywords, MAX_ITEMS_CAP, Preferences, SubscriberEmail};

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
}

/// The values a form shows, refilled after an error.
#[derive(Debug, Default, Clone)]
pub struct FormValues {
    pub email: String,
    pub keywords: String,
    pub min_upvotes: String,
    pub max_items: String,
    pub paused: bool,
}

impl FormValues {
    pub fn from_preferences(p: &Preferences) -> Self {
        Self {
            email: String::new(),
            keywords: p.keywords.to_string(),
            min_upvotes: p.min_upvotes.map(|n| n.to_string()).unwrap_or_default(),
            max_items: p.max_items.map(|n| n.to_string()).unwrap_or_default(),
            paused: p.paused,
        }
    }
}

fn bounded(s: &str) -> String {
    s.chars().take(MAX_FIELD).collect()
}

fn number(raw: &str, what: &str, max: u32, errors: &mut Vec<String>) -> Option<u32> {
    let t = raw.trim();
    if t.is_empty() {
        return None;
    }
    match t.parse::<u32>() {
        Ok(n) if n <= max => Some(n),
        _ => {
            errors.push(format!("{what} must be a whole number from 0 to {max}."));
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
) -> Option<Preferences> {
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
    let min_upvotes = number(min_upvotes, "Minimum upvotes", 100_000, errors);
    let max_items = number(max_items, "Papers per digest", MAX_ITEMS_CAP, errors);
    if max_items == Some(0) {
        errors.push(format!(
            "Papers per digest must be between 1 and {MAX_ITEMS_CAP}."
        ));
    }
    let mut prefs = Preferences::new(min_upvotes, keywords?, max_items.filter(|n| *n > 0))
        .map_err(|e| errors.push(format!("{e}.")))
        .ok()?;
    prefs.paused = paused;
    errors.is_empty().then_some(prefs)
}

impl SubscribeForm {
    pub fn values(&self) -> FormValues {
        FormValues {
            email: bounded(&self.email),
            keywords: bounded(&self.keywords),
            min_upvotes: bounded(&self.min_upvotes),
            max_items: bounded(&self.max_items),
            paused: false,
        }
    }

    /// The address and preferences, or every problem found, in the order of the form.
    pub fn parse(&self) -> Result<(SubscriberEmail, Preferences), Vec<String>> {
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
        );
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
        }
    }

    pub fn parse(&self) -> Result<Preferences, Vec<String>> {
        let mut errors = Vec::new();
        preferences(
            &self.keywords,
            &self.min_upvotes,
            &self.max_items,
            self.paused.is_some(),
            &mut errors,
        )
        .ok_or(errors)
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
            .parse()
            .unwrap();
        assert_eq!(e.as_str(), "ann@example.org");
        assert_eq!(p.min_upvotes, Some(10));
        assert_eq!(p.max_items, Some(5));
        assert_eq!(p.keywords.as_slice(), ["llm", "agents"]);
        let (_, p) = form("a@example.org", "", "", "").parse().unwrap();
        assert_eq!(p, Preferences::default());
    }

    #[test]
    fn every_problem_is_reported() {
        let errors = form("nope", &"k".repeat(70), "-3", "99")
            .parse()
            .unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("Email address"));
        let errors = form("a@example.org", "", "", "0").parse().unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
    }
}
