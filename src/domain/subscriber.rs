//! Subscribers and what they asked for.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Frequency, SendAt, SubscriberEmail};

/// A random, stable identifier. Stored keys, tokens and Message-IDs use it instead of the
/// address, so none of them reveals who the subscriber is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SubscriberId(u64);

impl SubscriberId {
    pub fn random() -> Self {
        Self(rand::random())
    }

    pub fn from_u64(v: u64) -> Self {
        Self(v)
    }

    pub fn as_u64(&self) -> u64 {
        self.0
    }

    pub fn to_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }
}

impl fmt::Display for SubscriberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Signed up, has not confirmed yet: gets no digest.
    Pending,
    /// Gets digests.
    Active,
    /// Left; gets nothing until they subscribe and confirm again.
    Unsubscribed,
    /// Their mailbox refused mail permanently, repeatedly; skipped until re-confirmed.
    Bounced,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Active => "active",
            Status::Unsubscribed => "unsubscribed",
            Status::Bounced => "bounced",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const MAX_KEYWORDS: usize = 20;
const MAX_KEYWORD_LEN: usize = 64;
/// The most papers one digest may hold, whatever a subscriber asks for: keeps every digest
/// well under Gmail's 102 KB clipping limit.
pub const MAX_ITEMS_CAP: u32 = 30;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PreferencesError {
    #[error("at most {MAX_KEYWORDS} keywords")]
    TooManyKeywords,
    #[error("a keyword may have at most {MAX_KEYWORD_LEN} characters")]
    KeywordTooLong,
    #[error("keywords may not contain control characters")]
    KeywordBadCharacters,
    #[error("papers per digest must be between 1 and {MAX_ITEMS_CAP}")]
    MaxItemsOutOfRange,
}

/// Lower-cased, trimmed, de-duplicated keywords; a paper matches when any of them starts a
/// word of its title, abstract or AI keywords ("llm" matches "LLMs", "rag" does not match
/// "storage").
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct Keywords(Vec<String>);

impl Keywords {
    /// Parses a comma-separated list, as the CLI and the web form take it.
    pub fn parse_list(raw: &str) -> Result<Self, PreferencesError> {
        Self::from_vec(raw.split(',').map(str::to_string).collect())
    }

    pub fn from_vec(raw: Vec<String>) -> Result<Self, PreferencesError> {
        let mut out: Vec<String> = Vec::new();
        for k in raw {
            let k = k.trim().to_lowercase();
            if k.is_empty() {
                continue;
            }
            if k.chars().count() > MAX_KEYWORD_LEN {
                return Err(PreferencesError::KeywordTooLong);
            }
            if k.chars().any(char::is_control) {
                return Err(PreferencesError::KeywordBadCharacters);
            }
            if !out.contains(&k) {
                out.push(k);
            }
        }
        if out.len() > MAX_KEYWORDS {
            return Err(PreferencesError::TooManyKeywords);
        }
        Ok(Self(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// Whether any keyword starts a word of `text`. Both sides are compared in lower case.
    pub fn any_starts_a_word_in(&self, text: &str) -> bool {
        let text = text.to_lowercase();
        self.0.iter().any(|k| starts_a_word(&text, k))
    }
}

fn starts_a_word(text: &str, keyword: &str) -> bool {
    text.match_indices(keyword).any(|(i, _)| {
        text[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric())
    })
}

impl TryFrom<Vec<String>> for Keywords {
    type Error = PreferencesError;
    fn try_from(value: Vec<String>) -> Result<Self, Self::Error> {
        Self::from_vec(value)
    }
}

impl From<Keywords> for Vec<String> {
    fn from(value: Keywords) -> Self {
        value.0
    }
}

impl fmt::Display for Keywords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

/// What a subscriber asked for. `None` means "the operator's default" (`[digest]` in the
/// config), so a default changed later applies to everyone who never chose otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {
    pub min_upvotes: Option<u32>,
    #[serde(default)]
    pub keywords: Keywords,
    pub max_items: Option<u32>,
    /// No digests until unpaused; nothing else changes.
    #[serde(default)]
    pub paused: bool,
    /// Daily, or weekly on a chosen day (the week's best they were not sent).
    #[serde(default, skip_serializing_if = "Frequency::is_daily")]
    pub frequency: Frequency,
    /// Their own hour in their own time zone; `None`: the server's schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_at: Option<SendAt>,
}

impl Preferences {
    pub fn new(
        min_upvotes: Option<u32>,
        keywords: Keywords,
        max_items: Option<u32>,
    ) -> Result<Self, PreferencesError> {
        if let Some(n) = max_items
            && !(1..=MAX_ITEMS_CAP).contains(&n)
        {
            return Err(PreferencesError::MaxItemsOutOfRange);
        }
        Ok(Self {
            min_upvotes,
            keywords,
            max_items,
            ..Self::default()
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscriber {
    pub id: SubscriberId,
    pub email: SubscriberEmail,
    pub status: Status,
    pub preferences: Preferences,
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub unsubscribed_at: Option<DateTime<Utc>>,
    /// Permanent (5xx) refusals in a row; reset by any accepted digest.
    #[serde(default)]
    pub permanent_failures: u32,
    /// Set while a confirmation is outstanding; confirm links are bound to it, and
    /// confirming clears it, so each link works once.
    #[serde(default)]
    pub confirm_nonce: Option<u64>,
    /// When paperboy last mailed this address about the subscription (not digests): at most
    /// one such mail an hour, whatever is posted to the subscribe form.
    #[serde(default)]
    pub last_notice_at: Option<DateTime<Utc>>,
}

impl Subscriber {
    pub fn new(email: SubscriberEmail, preferences: Preferences, confirmed: bool) -> Self {
        let now = Utc::now();
        Self {
            id: SubscriberId::random(),
            email,
            status: if confirmed {
                Status::Active
            } else {
                Status::Pending
            },
            preferences,
            created_at: now,
            confirmed_at: confirmed.then_some(now),
            unsubscribed_at: None,
            permanent_failures: 0,
            confirm_nonce: None,
            last_notice_at: None,
        }
    }

    /// Whether digests go to this subscriber now.
    pub fn receives_digests(&self) -> bool {
        self.status == Status::Active && !self.preferences.paused
    }

    /// Makes the subscriber active (the address owner confirmed) and kills the confirm link.
    pub fn confirm(&mut self, now: DateTime<Utc>) {
        self.status = Status::Active;
        self.confirmed_at = Some(now);
        self.unsubscribed_at = None;
        self.permanent_failures = 0;
        self.confirm_nonce = None;
    }

    pub fn unsubscribe(&mut self, now: DateTime<Utc>) {
        if self.status != Status::Unsubscribed {
            self.status = Status::Unsubscribed;
            self.unsubscribed_at = Some(now);
        }
        self.confirm_nonce = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_normalised() {
        let k = Keywords::parse_list(" LLM, , Diffusion ,llm").unwrap();
        assert_eq!(k.as_slice(), ["llm", "diffusion"]);
        assert!(Keywords::parse_list("").unwrap().is_empty());
        assert_eq!(
            Keywords::parse_list(&"x".repeat(65)),
            Err(PreferencesError::KeywordTooLong)
        );
        let many = (0..21)
            .map(|i| format!("k{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            Keywords::parse_list(&many),
            Err(PreferencesError::TooManyKeywords)
        );
    }

    #[test]
    fn keywords_match_at_word_starts() {
        let k = Keywords::parse_list("rag,llm").unwrap();
        assert!(k.any_starts_a_word_in("Scaling LLMs for retrieval"));
        assert!(k.any_starts_a_word_in("RAG-based answering"));
        assert!(k.any_starts_a_word_in("long-context RAG"));
        assert!(!k.any_starts_a_word_in("Cheap storage for everyone"));
        assert!(!k.any_starts_a_word_in("Fragments"));
    }

    #[test]
    fn max_items_is_bounded() {
        assert!(Preferences::new(None, Keywords::default(), Some(0)).is_err());
        assert!(Preferences::new(None, Keywords::default(), Some(31)).is_err());
        assert!(Preferences::new(Some(5), Keywords::default(), Some(10)).is_ok());
    }
}
