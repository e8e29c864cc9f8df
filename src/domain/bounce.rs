//! What bounces and complaints leave on a subscriber: the last one and why, and the recent
//! temporary failures that add up to a bounce.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{EditionDate, Status, Subscriber};

/// What a report said about a message to a subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BounceKind {
    /// The address cannot take mail (5.x.x): bounced at once.
    Permanent,
    /// Not now (4.x.x, or delayed): counted, and enough of them make a bounce.
    Transient,
    /// The reader reported the mail as spam: unsubscribed.
    Complaint,
}

impl BounceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BounceKind::Permanent => "permanent",
            BounceKind::Transient => "transient",
            BounceKind::Complaint => "complaint",
        }
    }
}

impl fmt::Display for BounceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last bounce or complaint on record for a subscriber.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BounceNote {
    pub at: DateTime<Utc>,
    pub kind: BounceKind,
    /// What the report said, in a line: its status and diagnostic, or the feedback type.
    pub reason: String,
}

impl fmt::Display for BounceNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.at.format("%Y-%m-%d"),
            self.kind,
            self.reason
        )
    }
}

/// One temporary failure counted towards a bounce: when it was reported, and the edition
/// of the message it was about (`None`: a notice), so that several reports about the same
/// message count once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransientBounce {
    pub at: DateTime<Utc>,
    pub edition: Option<EditionDate>,
}

/// How many temporary failures within how many days make a bounce (`mail.bounce_transient_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransientLimit {
    pub count: u32,
    pub days: u32,
}

/// The longest a reason is kept: a line in a listing, not the report.
const MAX_REASON: usize = 200;

fn note(at: DateTime<Utc>, kind: BounceKind, reason: &str) -> BounceNote {
    let mut reason: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if reason.chars().count() > MAX_REASON {
        reason = reason.chars().take(MAX_REASON - 1).collect::<String>() + "…";
    }
    BounceNote {
        at,
        kind,
        reason: reason.trim().to_string(),
    }
}

impl Subscriber {
    /// Whether a bounce can still change this subscriber: one who left, or is bounced
    /// already, only gets the note.
    fn mailed(&self) -> bool {
        matches!(self.status, Status::Active | Status::Pending)
    }

    /// A permanent failure: bounced at once (one who left stays unsubscribed).
    pub fn bounced_permanently(&mut self, at: DateTime<Utc>, reason: &str) {
        if self.mailed() {
            self.status = Status::Bounced;
        }
        self.last_bounce = Some(note(at, BounceKind::Permanent, reason));
    }

    /// A temporary failure of the message of `edition`: counted once per message, and
    /// bounced when `limit.count` messages failed so within `limit.days` days. Returns
    /// whether this one made the subscriber bounced.
    pub fn bounced_transiently(
        &mut self,
        at: DateTime<Utc>,
        edition: Option<EditionDate>,
        reason: &str,
        limit: TransientLimit,
    ) -> bool {
        let since = at - Duration::days(i64::from(limit.days));
        self.transient_bounces.retain(|b| b.at > since);
        let seen = edition.is_some() && self.transient_bounces.iter().any(|b| b.edition == edition);
        if !seen {
            self.transient_bounces.push(TransientBounce { at, edition });
        }
        // Never more than the limit needs: the record cannot grow.
        let excess = self
            .transient_bounces
            .len()
            .saturating_sub(limit.count as usize);
        self.transient_bounces.drain(..excess);
        self.last_bounce = Some(note(at, BounceKind::Transient, reason));
        if self.mailed() && self.transient_bounces.len() >= limit.count as usize {
            self.status = Status::Bounced;
            return true;
        }
        false
    }

    /// An abuse report: unsubscribed, as if they had used the link.
    pub fn complained(&mut self, at: DateTime<Utc>, reason: &str) {
        self.unsubscribe(at);
        self.last_bounce = Some(note(at, BounceKind::Complaint, reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Preferences, SubscriberEmail};

    fn active() -> Subscriber {
        let email = SubscriberEmail::parse("ann@example.org").unwrap();
        Subscriber::new(email, Preferences::default(), true)
    }

    fn day(d: u32) -> Option<EditionDate> {
        Some(EditionDate::parse(&format!("2026-11-{d:02}")).unwrap())
    }

    #[test]
    fn a_permanent_failure_bounces_at_once_and_keeps_its_reason() {
        let mut s = active();
        s.bounced_permanently(Utc::now(), "5.1.1 user unknown\r\nsecond line");
        assert_eq!(s.status, Status::Bounced);
        let n = s.last_bounce.as_ref().unwrap();
        assert_eq!(n.kind, BounceKind::Permanent);
        assert_eq!(n.reason, "5.1.1 user unknown  second line");
        // One who left stays unsubscribed.
        let mut s = active();
        s.unsubscribe(Utc::now());
        s.bounced_permanently(Utc::now(), "5.1.1");
        assert_eq!(s.status, Status::Unsubscribed);
    }

    #[test]
    fn transient_failures_of_different_messages_add_up_within_the_window() {
        let limit = TransientLimit { count: 3, days: 7 };
        let t0 = Utc::now();
        let mut s = active();
        assert!(!s.bounced_transiently(t0, day(1), "4.2.2 full", limit));
        // The same message reported again counts once.
        assert!(!s.bounced_transiently(t0, day(1), "4.2.2 full", limit));
        assert!(!s.bounced_transiently(t0, day(2), "4.2.2 full", limit));
        assert_eq!(s.status, Status::Active);
        // Eight days on, the first two are out of the window.
        let later = t0 + Duration::days(8);
        assert!(!s.bounced_transiently(later, day(9), "4.2.2 full", limit));
        assert!(!s.bounced_transiently(later, day(10), "4.2.2 full", limit));
        assert_eq!(s.status, Status::Active);
        assert!(s.bounced_transiently(later, day(11), "4.4.1 delayed", limit));
        assert_eq!(s.status, Status::Bounced);
        assert!(s.transient_bounces.len() <= 3);
        assert_eq!(s.last_bounce.unwrap().reason, "4.4.1 delayed");
    }

    #[test]
    fn a_complaint_unsubscribes() {
        let mut s = active();
        s.complained(Utc::now(), "abuse report");
        assert_eq!(s.status, Status::Unsubscribed);
        assert_eq!(s.last_bounce.unwrap().kind, BounceKind::Complaint);
    }

    #[test]
    fn records_from_before_bounces_load() {
        let mut v = serde_json::to_value(active()).unwrap();
        v.as_object_mut().unwrap().remove("last_bounce");
        v.as_object_mut().unwrap().remove("transient_bounces");
        let s: Subscriber = serde_json::from_value(v).unwrap();
        assert!(s.last_bounce.is_none() && s.transient_bounces.is_empty());
    }
}
