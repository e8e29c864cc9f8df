//! A subscriber's address, checked once and normalised so that one mailbox is one subscriber.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The longest address SMTP can carry in a path (RFC 5321, 4.5.3.1.3).
const MAX_LEN: usize = 254;

/// An address that lettre can send to, with no whitespace or control characters, in lower case.
///
/// Lower-casing the whole address is deliberate: almost no provider treats the local part as
/// case-sensitive, and treating `Ann@x.org` and `ann@x.org` as two subscribers would send two
/// digests to one person.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SubscriberEmail(String);

impl TryFrom<String> for SubscriberEmail {
    type Error = EmailError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<SubscriberEmail> for String {
    fn from(value: SubscriberEmail) -> Self {
        value.0
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EmailError {
    #[error("the address is empty")]
    Empty,
    #[error("the address is longer than {MAX_LEN} characters")]
    TooLong,
    #[error("the address contains spaces or control characters")]
    BadCharacters,
    #[error("'{0}' is not a valid email address")]
    Invalid(String),
}

impl SubscriberEmail {
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        if trimmed.len() > MAX_LEN {
            return Err(EmailError::TooLong);
        }
        if trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EmailError::BadCharacters);
        }
        let lower = trimmed.to_lowercase();
        let address =
            lettre::Address::from_str(&lower).map_err(|_| EmailError::Invalid(shorten(trimmed)))?;
        // lettre accepts domains without a dot ("user@localhost"); a digest cannot reach those.
        if !address.domain().contains('.') && !address.domain().starts_with('[') {
            return Err(EmailError::Invalid(shorten(trimmed)));
        }
        Ok(Self(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after `@`: what logs show instead of the address.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }

    /// `text` with this address replaced by `…@domain`: server replies often quote the
    /// recipient, and such text ends up in logs.
    pub fn redact_in(&self, text: &str) -> String {
        let masked = format!("…@{}", self.domain());
        let mut out = text.replace(&self.0, &masked);
        // Servers may echo the address in the case it was typed in.
        let lower = out.to_lowercase();
        if let Some(i) = lower.find(&self.0) {
            out.replace_range(i..i + self.0.len(), &masked);
        }
        out
    }

    pub fn to_address(&self) -> lettre::Address {
        lettre::Address::from_str(&self.0).expect("checked in parse")
    }
}

/// Error messages quote what was typed, but never an unbounded amount of it.
fn shorten(s: &str) -> String {
    if s.chars().count() <= 80 {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(80).collect::<String>())
    }
}

impl fmt::Display for SubscriberEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SubscriberEmail {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_lowercases_ordinary_addresses() {
        let e = SubscriberEmail::parse("  Ada.Lovelace+papers@Example.ORG ").unwrap();
        assert_eq!(e.as_str(), "ada.lovelace+papers@example.org");
        assert_eq!(e.domain(), "example.org");
    }

    #[test]
    fn redacts_itself_from_text() {
        let e = SubscriberEmail::parse("ann@example.org").unwrap();
        assert_eq!(
            e.redact_in("550 5.1.1 <ann@example.org>: unknown"),
            "550 5.1.1 <…@example.org>: unknown"
        );
        assert_eq!(e.redact_in("<Ann@Example.org> no"), "<…@example.org> no");
    }

    #[test]
    fn rejects_what_cannot_be_mailed() {
        for bad in [
            "",
            "   ",
            "no-at-sign",
            "@example.org",
            "ann@",
            "ann@localhost",
            "ann smith@example.org",
            "ann@exa mple.org",
            "ann@example.org\r\nBcc: x@y.org",
            "a@b@example.org",
        ] {
            assert!(SubscriberEmail::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let long = format!("{}@example.org", "a".repeat(250));
        assert_eq!(SubscriberEmail::parse(&long), Err(EmailError::TooLong));
    }
}
