//! Subscribers and what they asked for.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use chrono::Weekday;

use super::{Frequency, Paper, SendAt, SubscriberEmail, day_code};

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
    #[error(
        "this site sends on {} only: pick one of those days for a weekly digest, or an hour of your own",
        .0.iter().map(|d| day_code(*d)).collect::<Vec<_>>().join(", ")
    )]
    WeeklyDayNotSent(Vec<Weekday>),
    #[error(
        "this site's schedule sends no edition in the next four weeks: a weekly digest needs an hour of your own"
    )]
    NoEditionDays,
}

/// The weekdays the site's own schedule sends editions on. A weekly reader on that schedule
/// must pick one of them, or they would never get a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EditionDays(Vec<Weekday>);

impl EditionDays {
    pub fn new(days: Vec<Weekday>) -> Self {
        Self(days)
    }

    /// A schedule with an edition every day.
    pub fn every_day() -> Self {
        Self(vec![
            Weekday::Mon,
            Weekday::Tue,
            Weekday::Wed,
            Weekday::Thu,
            Weekday::Fri,
            Weekday::Sat,
            Weekday::Sun,
        ])
    }

    pub fn contains(&self, day: Weekday) -> bool {
        self.0.contains(&day)
    }
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

    /// Each keyword that matches the paper, with the first place it is found in, in the
    /// order a reader looks (title, AI keywords, abstract): what a digest's card says about
    /// why the paper is there, so a match deep in an abstract is no mystery.
    pub fn found_in<'k>(&'k self, paper: &Searchable) -> Vec<(&'k str, Place)> {
        self.0
            .iter()
            .filter_map(|k| {
                let place = if starts_a_word(&paper.title, k) {
                    Place::Title
                } else if paper.ai_keywords.iter().any(|a| starts_a_word(a, k)) {
                    Place::AiKeywords
                } else if starts_a_word(&paper.summary, k) {
                    Place::Abstract
                } else {
                    return None;
                };
                Some((k.as_str(), place))
            })
            .collect()
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

/// A paper's text in lower case, as keywords are compared with it: made once per paper and
/// edition, then matched against each reader's keywords.
#[derive(Clone, Debug)]
pub struct Searchable {
    title: String,
    ai_keywords: Vec<String>,
    summary: String,
}

impl Searchable {
    pub fn of(paper: &Paper) -> Self {
        Self {
            title: paper.title.to_lowercase(),
            ai_keywords: paper.ai_keywords.iter().map(|k| k.to_lowercase()).collect(),
            summary: paper.summary.to_lowercase(),
        }
    }
}

/// Where in a paper a keyword was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Title,
    AiKeywords,
    Abstract,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Place::Title => "title",
            Place::AiKeywords => "AI keywords",
            Place::Abstract => "abstract",
        })
    }
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

/// What a subscriber asks for, before the rules are applied: [`Preferences::new`] turns it
/// into preferences, or says what is wrong with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Choices {
    pub min_upvotes: Option<u32>,
    pub keywords: Keywords,
    pub max_items: Option<u32>,
    pub paused: bool,
    pub frequency: Frequency,
    pub send_at: Option<SendAt>,
}

/// What a subscriber asked for. `None` means "the operator's default" (`[digest]` in the
/// config), so a default changed later applies to everyone who never chose otherwise.
///
/// Every way in (the CLI, the web form, an import) builds them with [`Preferences::new`],
/// so every rule holds for all of them. Stored preferences are read back as they were
/// accepted: a schedule changed later does not unmake them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preferences {
    min_upvotes: Option<u32>,
    #[serde(default)]
    keywords: Keywords,
    max_items: Option<u32>,
    /// No digests until unpaused; nothing else changes.
    #[serde(default)]
    paused: bool,
    /// Daily, or weekly on a chosen day (the week's best they were not sent).
    #[serde(default, skip_serializing_if = "Frequency::is_daily")]
    frequency: Frequency,
    /// Their own hour in their own time zone; `None`: the server's schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    send_at: Option<SendAt>,
}

impl Preferences {
    /// The preferences `choices` describe, if they can be kept: at most
    /// [`MAX_ITEMS_CAP`] papers, and a weekly day on the site's schedule one of `days`.
    pub fn new(choices: Choices, days: &EditionDays) -> Result<Self, PreferencesError> {
        if let Some(n) = choices.max_items
            && !(1..=MAX_ITEMS_CAP).contains(&n)
        {
            return Err(PreferencesError::MaxItemsOutOfRange);
        }
        if let (Frequency::Weekly(day), None) = (choices.frequency, choices.send_at)
            && !days.contains(day)
        {
            return Err(if days.0.is_empty() {
                PreferencesError::NoEditionDays
            } else {
                PreferencesError::WeeklyDayNotSent(days.0.clone())
            });
        }
        Ok(Self {
            min_upvotes: choices.min_upvotes,
            keywords: choices.keywords,
            max_items: choices.max_items,
            paused: choices.paused,
            frequency: choices.frequency,
            send_at: choices.send_at,
        })
    }

    pub fn min_upvotes(&self) -> Option<u32> {
        self.min_upvotes
    }

    pub fn keywords(&self) -> &Keywords {
        &self.keywords
    }

    pub fn max_items(&self) -> Option<u32> {
        self.max_items
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    pub fn frequency(&self) -> Frequency {
        self.frequency
    }

    pub fn send_at(&self) -> Option<SendAt> {
        self.send_at
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
    /// Confirmations mailed and not used yet, oldest first. Each carries the preferences
    /// asked for with it, and only its own link applies them: a request for somebody
    /// else's address cannot change what they get.
    #[serde(default)]
    pub confirmations: Vec<Confirmation>,
    /// The nonce of the confirmation that made the subscription active: its link, used
    /// again (a double click), says so instead of failing, and changes nothing.
    #[serde(default)]
    pub confirmed_nonce: Option<u64>,
    /// The one confirmation nonce that earlier versions stored, for the preferences on the
    /// record: read so that links already mailed keep working, never written.
    #[serde(default, rename = "confirm_nonce", skip_serializing)]
    legacy_nonce: Option<u64>,
    /// When paperboy last mailed this address about the subscription (not digests): at most
    /// one such mail an hour, whatever is posted to the subscribe form.
    #[serde(default)]
    pub last_notice_at: Option<DateTime<Utc>>,
    /// The last bounce or complaint reported after a digest or notice was accepted (or the
    /// refusals during the send that made the subscriber bounced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_bounce: Option<super::BounceNote>,
    /// Recent temporary failures, counted towards a bounce (see `bounce.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transient_bounces: Vec<super::TransientBounce>,
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
            confirmations: Vec::new(),
            confirmed_nonce: None,
            legacy_nonce: None,
            last_notice_at: None,
            last_bounce: None,
            transient_bounces: Vec::new(),
        }
    }

    /// Whether digests go to this subscriber now.
    pub fn receives_digests(&self) -> bool {
        self.status == Status::Active && !self.preferences.paused
    }

    /// Makes the subscriber active (the address owner confirmed, or an operator added
    /// them) and kills every confirm link outstanding.
    pub fn confirm(&mut self, now: DateTime<Utc>) {
        self.status = Status::Active;
        self.confirmed_at = Some(now);
        self.unsubscribed_at = None;
        self.permanent_failures = 0;
        self.transient_bounces.clear();
        self.confirmations.clear();
        self.legacy_nonce = None;
    }

    /// The owner used the link of the confirmation with `nonce`: active, with the
    /// preferences asked for in that request. The others die with it.
    pub fn confirm_with(&mut self, nonce: u64, now: DateTime<Utc>) {
        if let Some(c) = self.confirmations.iter().find(|c| c.nonce == nonce) {
            self.preferences = c.preferences.clone();
        }
        self.confirm(now);
        self.confirmed_nonce = Some(nonce);
    }

    /// The nonces a confirm link may be bound to now.
    pub fn outstanding_nonces(&self) -> impl Iterator<Item = u64> + '_ {
        self.confirmations
            .iter()
            .map(|c| c.nonce)
            .chain(self.legacy_nonce)
    }

    /// The confirmation mailed last, whose link a confirm notice carries.
    pub fn newest_confirmation(&self) -> Option<&Confirmation> {
        self.confirmations.last()
    }

    pub fn unsubscribe(&mut self, now: DateTime<Utc>) {
        if self.status != Status::Unsubscribed {
            self.status = Status::Unsubscribed;
            self.unsubscribed_at = Some(now);
        }
        self.confirmations.clear();
        self.legacy_nonce = None;
        self.confirmed_nonce = None;
    }
}

/// A confirmation mailed for a subscribe request: the nonce its link is bound to, and the
/// preferences that request asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    pub nonce: u64,
    pub preferences: Preferences,
    pub requested_at: DateTime<Utc>,
}

/// Confirmations kept per address: a few requests in a row (a typo fixed, a second device)
/// each keep their link, and the list cannot grow.
const MAX_CONFIRMATIONS: usize = 3;

/// At most one mail about the subscription per address per hour, whatever is posted to the
/// subscribe form: the form cannot be used to flood someone's inbox.
pub const NOTICE_INTERVAL: chrono::Duration = chrono::Duration::hours(1);

/// A mail about the subscription itself, sent in answer to a subscribe request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// "Confirm your address": the link that makes the subscription active.
    Confirm,
    /// "You are already subscribed": a link to the preferences instead.
    AlreadySubscribed,
}

impl Notice {
    /// A short name for the kind, as it appears in the notice's Message-ID.
    pub fn kind(self) -> &'static str {
        match self {
            Notice::Confirm => "confirm",
            Notice::AlreadySubscribed => "subscribed",
        }
    }
}

/// What a subscribe request for an address does. The answer on the page is the same in
/// every case, so it reveals nothing about who is subscribed; only the mail differs.
impl Subscriber {
    /// A first request for an address: pending until the confirmation link is used, with
    /// the preferences asked for waiting in that confirmation.
    pub fn requested(email: SubscriberEmail, preferences: Preferences, now: DateTime<Utc>) -> Self {
        let mut s = Self::new(email, Preferences::default(), false);
        s.add_confirmation(preferences, now);
        s.last_notice_at = Some(now);
        s
    }

    /// Another request for a known address, and the mail it calls for, if one may go now.
    /// An active subscriber is told they are subscribed; anyone else (pending,
    /// unsubscribed, bounced) gets a new confirmation carrying these preferences. Nothing
    /// else about the subscriber changes: who asks need not own the address.
    pub fn requested_again(
        &mut self,
        preferences: Preferences,
        now: DateTime<Utc>,
    ) -> Option<Notice> {
        let may_notify = self
            .last_notice_at
            .is_none_or(|t| now.signed_duration_since(t) >= NOTICE_INTERVAL);
        if !may_notify {
            return None;
        }
        self.last_notice_at = Some(now);
        if self.status == Status::Active {
            return Some(Notice::AlreadySubscribed);
        }
        self.add_confirmation(preferences, now);
        Some(Notice::Confirm)
    }

    fn add_confirmation(&mut self, preferences: Preferences, now: DateTime<Utc>) {
        if self.confirmations.len() >= MAX_CONFIRMATIONS {
            self.confirmations.remove(0);
        }
        self.confirmations.push(Confirmation {
            nonce: new_nonce(),
            preferences,
            requested_at: now,
        });
    }
}

/// A confirmation nonce: never 0, which binds nothing.
fn new_nonce() -> u64 {
    rand::random::<u64>().max(1)
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
    fn keywords_say_where_they_matched() {
        let paper = Paper {
            summary: "We add retrieval to a small model.".into(),
            ai_keywords: vec!["Vision-Language Models".into()],
            ..Paper::new(
                crate::domain::PaperId::parse("2512.00001").unwrap(),
                "Scaling LLMs, and retrieval",
                1,
            )
        };
        let k = Keywords::parse_list("retrieval, vision, small, robots, llm").unwrap();
        assert_eq!(
            k.found_in(&Searchable::of(&paper)),
            [
                ("retrieval", Place::Title),
                ("vision", Place::AiKeywords),
                ("small", Place::Abstract),
                ("llm", Place::Title),
            ]
        );
        assert!(
            Keywords::default()
                .found_in(&Searchable::of(&paper))
                .is_empty()
        );
    }

    fn with_keyword(k: &str) -> Preferences {
        let choices = Choices {
            keywords: Keywords::parse_list(k).unwrap(),
            ..Choices::default()
        };
        Preferences::new(choices, &EditionDays::every_day()).unwrap()
    }

    #[test]
    fn requests_for_a_known_address_mail_at_most_once_an_hour() {
        let email = SubscriberEmail::parse("ann@example.org").unwrap();
        let t0 = Utc::now();
        let mut s = Subscriber::requested(email, Preferences::default(), t0);
        assert_eq!(s.status, Status::Pending);
        let first = s.newest_confirmation().expect("a confirmation").nonce;
        let before = s.clone();
        assert_eq!(s.requested_again(with_keyword("x"), t0), None);
        assert_eq!(s, before, "a request that mails nothing changes nothing");
        let later = t0 + NOTICE_INTERVAL;
        assert_eq!(
            s.requested_again(Preferences::default(), later),
            Some(Notice::Confirm)
        );
        // The link already mailed keeps working beside the new one.
        assert!(s.outstanding_nonces().any(|n| n == first));
        assert_eq!(s.outstanding_nonces().count(), 2);
        s.confirm_with(first, later);
        assert_eq!(s.outstanding_nonces().count(), 0, "every link dies");
        assert_eq!(s.confirmed_nonce, Some(first));
        let much_later = later + NOTICE_INTERVAL;
        assert_eq!(
            s.requested_again(with_keyword("x"), much_later),
            Some(Notice::AlreadySubscribed)
        );
        assert_eq!(s.status, Status::Active);
        assert!(s.outstanding_nonces().next().is_none());
    }

    #[test]
    fn preferences_take_effect_only_through_their_own_confirmation() {
        let email = SubscriberEmail::parse("ann@example.org").unwrap();
        let t0 = Utc::now();
        let mut s = Subscriber::requested(email, with_keyword("mine"), t0);
        assert_eq!(
            s.preferences,
            Preferences::default(),
            "nothing until confirmed"
        );
        let own = s.newest_confirmation().unwrap().nonce;
        // Someone else asks for the same address later, with other preferences.
        let later = t0 + NOTICE_INTERVAL;
        assert_eq!(
            s.requested_again(with_keyword("theirs"), later),
            Some(Notice::Confirm)
        );
        assert_eq!(s.preferences, Preferences::default());
        s.confirm_with(own, later);
        assert_eq!(s.preferences, with_keyword("mine"));

        // An unsubscribed reader's settings stay as they were until they confirm again.
        s.unsubscribe(later);
        let kept = s.preferences.clone();
        let again = later + NOTICE_INTERVAL;
        s.requested_again(with_keyword("theirs"), again);
        assert_eq!(s.preferences, kept);
        assert_eq!(s.status, Status::Unsubscribed);
    }

    #[test]
    fn a_few_confirmations_are_kept_and_no_more() {
        let email = SubscriberEmail::parse("ann@example.org").unwrap();
        let mut t = Utc::now();
        let mut s = Subscriber::requested(email, Preferences::default(), t);
        for _ in 0..10 {
            t += NOTICE_INTERVAL;
            s.requested_again(Preferences::default(), t);
        }
        assert_eq!(s.outstanding_nonces().count(), MAX_CONFIRMATIONS);
    }

    #[test]
    fn a_confirmation_stored_by_an_earlier_version_still_works() {
        let mut record = serde_json::to_value(Subscriber::new(
            SubscriberEmail::parse("ann@example.org").unwrap(),
            with_keyword("kept"),
            false,
        ))
        .unwrap();
        record["confirm_nonce"] = 77.into();
        let mut s: Subscriber = serde_json::from_value(record).unwrap();
        assert_eq!(s.outstanding_nonces().collect::<Vec<_>>(), [77]);
        s.confirm_with(77, Utc::now());
        assert_eq!(s.status, Status::Active);
        assert_eq!(s.preferences, with_keyword("kept"));
        assert!(
            serde_json::to_value(&s)
                .unwrap()
                .get("confirm_nonce")
                .is_none()
        );
    }

    #[test]
    fn max_items_is_bounded() {
        let with = |max_items| {
            let c = Choices {
                max_items,
                ..Choices::default()
            };
            Preferences::new(c, &EditionDays::every_day())
        };
        assert_eq!(with(Some(0)), Err(PreferencesError::MaxItemsOutOfRange));
        assert_eq!(with(Some(31)), Err(PreferencesError::MaxItemsOutOfRange));
        assert!(with(Some(10)).is_ok());
    }

    #[test]
    fn a_weekly_day_must_be_one_the_site_sends_on() {
        let weekdays = EditionDays::new(vec![Weekday::Mon, Weekday::Tue]);
        let weekly = |day: &str, send_at: Option<&str>| Choices {
            frequency: Frequency::parse(&format!("weekly:{day}")).unwrap(),
            send_at: send_at.map(|s| SendAt::parse(s).unwrap()),
            ..Choices::default()
        };
        let e = Preferences::new(weekly("sat", None), &weekdays).unwrap_err();
        assert_eq!(
            e.to_string(),
            "this site sends on mon, tue only: pick one of those days for a weekly digest, or an hour of your own"
        );
        assert!(Preferences::new(weekly("tue", None), &weekdays).is_ok());
        // With an hour of their own, any day.
        assert!(Preferences::new(weekly("sat", Some("09:00 UTC")), &weekdays).is_ok());
        assert_eq!(
            Preferences::new(weekly("sat", None), &EditionDays::new(Vec::new())),
            Err(PreferencesError::NoEditionDays)
        );
    }
}
