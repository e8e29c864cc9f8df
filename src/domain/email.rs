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

/// Reading a stored record: the address was checked when it was stored, by the rules of
/// the version that stored it, and must load as it is even where today's rules are
/// stricter (so an old store opens, and its keys still match).
impl TryFrom<String> for SubscriberEmail {
    type Error = EmailError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        match lettre::Address::from_str(&value) {
            Ok(_) => Ok(Self(value)),
            Err(_) => Err(EmailError::Invalid(shorten(&value))),
        }
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
    #[error("the address contains spaces, control or invisible characters")]
    BadCharacters,
    #[error("quoted addresses (\"...\"@) cannot be used")]
    Quoted,
    #[error("addresses at an IP address ([...]) cannot be used; use the domain's name")]
    IpLiteral,
    #[error("only ASCII letters, digits and punctuation can come before the @")]
    NonAsciiLocalPart,
    #[error("'{0}' is not a valid email address")]
    Invalid(String),
}

impl SubscriberEmail {
    /// Checks an address as typed into the form or given to the CLI, and normalises it:
    /// lower case, and a non-ASCII domain in its ASCII (punycode) form, as SMTP carries it.
    ///
    /// Refused, because a digest could never reach them or they hide what they are: quoted
    /// local parts, IP-literal domains, control, bidirectional and zero-width characters
    /// (and U+FFFD, what invalid UTF-8 becomes), and non-ASCII before the `@`, which needs
    /// SMTPUTF8 from every server on the way; paperboy's mailer does not ask for it.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(EmailError::Empty);
        }
        if trimmed.len() > MAX_LEN {
            return Err(EmailError::TooLong);
        }
        if trimmed
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || is_invisible(c))
        {
            return Err(EmailError::BadCharacters);
        }
        if trimmed.contains('"') {
            return Err(EmailError::Quoted);
        }
        let invalid = || EmailError::Invalid(shorten(trimmed));
        let (local, domain) = trimmed.rsplit_once('@').ok_or_else(invalid)?;
        if domain.starts_with('[') {
            return Err(EmailError::IpLiteral);
        }
        if !local.is_ascii() {
            return Err(EmailError::NonAsciiLocalPart);
        }
        let domain = match url::Host::parse(domain) {
            Ok(url::Host::Domain(ascii)) => ascii,
            _ => return Err(invalid()),
        };
        let lower = format!("{}@{}", local.to_lowercase(), domain.to_lowercase());
        if lower.len() > MAX_LEN {
            return Err(EmailError::TooLong);
        }
        let address = lettre::Address::from_str(&lower).map_err(|_| invalid())?;
        // lettre accepts domains without a dot ("user@localhost"); a digest cannot reach those.
        if !address.domain().contains('.') {
            return Err(invalid());
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

/// Characters that show nothing, or turn the text around them: an address holding one
/// looks like another. U+FFFD stands for bytes that were not UTF-8.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}'
        | '\u{17B5}' | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}'
        | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFD}')
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

    #[test]
    fn refuses_addresses_that_hide_what_they_are_or_cannot_be_sent() {
        let cases = [
            ("\"ann\"@example.org", EmailError::Quoted),
            ("\"a.b\".c@example.org", EmailError::Quoted),
            ("ann@[192.0.2.1]", EmailError::IpLiteral),
            ("ann@[IPv6:2001:db8::1]", EmailError::IpLiteral),
            (
                "ann\u{202E}gro.elpmaxe@example.org",
                EmailError::BadCharacters,
            ),
            ("an\u{200B}n@example.org", EmailError::BadCharacters),
            ("ann@exam\u{200D}ple.org", EmailError::BadCharacters),
            ("ann\u{FEFF}@example.org", EmailError::BadCharacters),
            ("ann\u{0007}@example.org", EmailError::BadCharacters),
            ("ann\u{FFFD}@example.org", EmailError::BadCharacters),
            ("jörg@example.org", EmailError::NonAsciiLocalPart),
        ];
        for (raw, expected) in cases {
            assert_eq!(SubscriberEmail::parse(raw), Err(expected), "{raw:?}");
        }
    }

    #[test]
    fn a_non_ascii_domain_is_kept_as_punycode() {
        let e = SubscriberEmail::parse("Ann@Bücher.Example").unwrap();
        assert_eq!(e.as_str(), "ann@xn--bcher-kva.example");
        assert_eq!(
            SubscriberEmail::parse("ann@xn--bcher-kva.example").unwrap(),
            e
        );
    }

    #[test]
    fn a_stored_address_loads_as_stored() {
        // Stored by a version whose rules were looser: it still loads, unchanged.
        let e: SubscriberEmail = serde_json::from_str("\"ann@[192.0.2.1]\"").unwrap();
        assert_eq!(e.as_str(), "ann@[192.0.2.1]");
        assert!(serde_json::from_str::<SubscriberEmail>("\"not an address\"").is_err());
    }
}
