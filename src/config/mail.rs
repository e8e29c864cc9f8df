//! `[mail]`: who the mail is from and how it travels (files or SMTP), with the SMTP
//! server's limits, the DKIM key, and where bounces go (the VERP envelope sender) and how
//! many temporary ones make an address bounced. The mail module builds the transports and
//! the signer from these; the bounce intake reads the bounce limits.

use std::path::PathBuf;

use lettre::message::Mailbox;
use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret, invalid};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    File,
    Smtp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tls {
    None,
    Starttls,
    Tls,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailSettings {
    /// The From header: a name and an address.
    pub from: Sender,
    pub transport: Transport,
    /// Where `transport = "file"` writes `.eml` files; default `{data_dir}/outbox`.
    pub outbox_dir: Option<PathBuf>,
    pub smtp: SmtpSettings,
    /// Sign every message with DKIM; unset, messages go unsigned.
    pub dkim: Option<DkimSettings>,
    /// The sender's postal address, shown in every digest's footer: bulk-mail rules in
    /// several countries (CAN-SPAM in the US among them) ask for one.
    pub postal_address: Option<String>,
    /// The mailbox that receives bounces: each message goes out with the envelope sender
    /// `LOCAL+TOKEN@DOMAIN` (VERP), the token naming its subscriber and edition. Unset, the
    /// envelope sender is the From address.
    pub bounce_address: Option<BounceAddress>,
    /// Temporary failures (DSNs with a 4.x.x status, or "delayed") of this many different
    /// messages within `bounce_transient_days` mark a subscriber bounced.
    pub bounce_transient_count: u32,
    pub bounce_transient_days: u32,
    /// A socket on which `serve` takes bounce reports from any local user (a mail server's
    /// `pipe` runs as one of its own): `paperboy bounce` hands its message there, so it
    /// needs no access to the store. Only reports are taken on it, each attributed by a
    /// token signed with the link key, as one mailed in would be. Unset, `bounce` goes
    /// through the admin socket, which only the service's user can use.
    pub bounce_socket: Option<PathBuf>,
}

/// `mail.bounce_address`: a plain address (`bounces@example.org`) whose local part gets
/// `+TOKEN` appended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BounceAddress {
    local: String,
    domain: String,
}

impl BounceAddress {
    pub fn local(&self) -> &str {
        &self.local
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }
}

impl TryFrom<String> for BounceAddress {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let bad = || {
            format!(
                "'{text}' is not a plain address like \"bounces@example.org\" (no name, no '+')"
            )
        };
        let address: lettre::Address = text.parse().map_err(|_| bad())?;
        let (local, domain) = (address.user(), address.domain());
        // The token and its '+' must fit in a local part's 64 octets.
        if local.contains('+') || local.len() + 1 + crate::tokens::RETURN_TOKEN_CHARS > 64 {
            return Err(bad());
        }
        Ok(Self {
            local: local.to_string(),
            domain: domain.to_string(),
        })
    }
}

impl From<BounceAddress> for String {
    fn from(a: BounceAddress) -> Self {
        format!("{}@{}", a.local, a.domain)
    }
}

/// `[mail.dkim]`: the signing domain, the selector its public key is published under
/// (`SELECTOR._domainkey.DOMAIN`), and the private key.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DkimSettings {
    pub selector: String,
    pub domain: String,
    /// A PEM file with the private key (RSA or Ed25519); unset, the `dkim-key` systemd
    /// credential.
    pub key_file: Option<PathBuf>,
    /// Filled from `key_file`; never read from the TOML file itself, never printed.
    #[serde(skip)]
    pub key: Option<Secret>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub concurrency: u32,
    pub timeout_secs: u64,
    /// Attempts per message for temporary failures (4xx, refused connections) in one run.
    pub max_attempts: u32,
    /// Hours after planning when a digest that is still refused for now is given up.
    pub give_up_after_hours: u32,
    /// Messages per second at most (0: no cap).
    pub max_per_second: u32,
    /// Messages per hour at most, evenly spaced (0: no cap).
    pub max_per_hour: u32,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Filled from `password_file` or `$PAPERBOY_SMTP_PASSWORD`; never read from the TOML
    /// file itself, never printed.
    #[serde(skip)]
    pub password: Option<Secret>,
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            from: Sender::try_from("paperboy <digest@example.org>".to_string())
                .expect("the default sender parses"),
            transport: Transport::File,
            outbox_dir: None,
            smtp: SmtpSettings::default(),
            dkim: None,
            postal_address: None,
            bounce_address: None,
            bounce_transient_count: 5,
            bounce_transient_days: 14,
            bounce_socket: None,
        }
    }
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 25,
            tls: Tls::None,
            concurrency: 4,
            timeout_secs: 30,
            max_attempts: 3,
            give_up_after_hours: 48,
            max_per_second: 0,
            max_per_hour: 0,
            username: None,
            password_file: None,
            password: None,
        }
    }
}

impl MailSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if let Some(address) = &self.postal_address {
            if address.trim().is_empty() || address.chars().count() > 200 {
                return Err(invalid(
                    "mail.postal_address",
                    "must be between 1 and 200 characters",
                ));
            }
            if address.chars().any(char::is_control) {
                return Err(invalid(
                    "mail.postal_address",
                    "must be one line, without control characters",
                ));
            }
        }
        let smtp = &self.smtp;
        if smtp.host.trim().is_empty() {
            return Err(invalid("mail.smtp.host", "must not be empty"));
        }
        if smtp.port == 0 {
            return Err(invalid("mail.smtp.port", "must not be 0"));
        }
        let timeout = u32::try_from(smtp.timeout_secs).unwrap_or(u32::MAX);
        for (key, value, range) in [
            ("mail.smtp.concurrency", smtp.concurrency, 1..=64),
            ("mail.smtp.timeout_secs", timeout, 1..=600),
            ("mail.smtp.max_attempts", smtp.max_attempts, 1..=20),
            (
                "mail.smtp.give_up_after_hours",
                smtp.give_up_after_hours,
                1..=720,
            ),
        ] {
            if !range.contains(&value) {
                return Err(invalid(
                    key,
                    format!("must be between {} and {}", range.start(), range.end()),
                ));
            }
        }
        if !(1..=100).contains(&self.bounce_transient_count) {
            return Err(invalid(
                "mail.bounce_transient_count",
                "must be between 1 and 100",
            ));
        }
        if !(1..=365).contains(&self.bounce_transient_days) {
            return Err(invalid(
                "mail.bounce_transient_days",
                "must be between 1 and 365",
            ));
        }
        if let Some(socket) = &self.bounce_socket
            && !socket.is_absolute()
        {
            // A mail server runs `paperboy bounce` from a directory of its own.
            return Err(invalid("mail.bounce_socket", "must be an absolute path"));
        }
        if smtp.password.is_some() && smtp.username.is_none() {
            return Err(invalid(
                "mail.smtp.username",
                "a password is set, but no username to go with it",
            ));
        }
        Ok(())
    }
}

/// The From mailbox, parsed when the settings are read.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sender(Mailbox);

impl Sender {
    pub fn mailbox(&self) -> &Mailbox {
        &self.0
    }
}

impl TryFrom<String> for Sender {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse().map(Self).map_err(|_| {
            format!("'{text}' is not a mailbox like \"paperboy <digest@example.org>\"")
        })
    }
}

impl From<Sender> for String {
    fn from(s: Sender) -> Self {
        s.0.to_string()
    }
}
