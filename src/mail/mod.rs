//! Putting digests in envelopes: message headers, and the transports that carry them.
//!
//! One [`Mailer`] type hides whether mail goes to an SMTP server or to `.eml` files, and
//! sorts every failure into the two classes delivery cares about: worth retrying, or not.
//! With `[mail.dkim]`, every message is signed as it is formatted (see [`dkim`]). With
//! `mail.bounce_address`, each message's envelope sender names its subscriber and edition
//! (VERP, [`Mailer::returning`]), and the file outbox records it as `Return-Path`.
//!
//! This file holds the [`Mailer`] (built from `[mail]`, checked by `check-config`) and the
//! messages it builds ([`Outgoing`] in, [`Formatted`] out). The rest:
//! - `error.rs`: [`SendError`], a failure sorted into one of the two classes;
//! - `body.rs`: how a message's text and HTML go on the wire (our own `7bit` and
//!   quoted-printable encoders);
//! - `session.rs`: [`Session`], one SMTP connection kept open from message to message, and
//!   which client (lettre or [`smtp`]) it goes through;
//! - [`smtp`]: the pipelining SMTP client for plain relays;
//! - [`dkim`]: DKIM signing;
//! - `retry.rs`: [`with_retries`], backoff for temporary failures.

mod body;
pub mod dkim;
mod error;
mod retry;
mod session;
pub mod smtp;

pub use error::{SendError, SendErrorKind};
pub use retry::with_retries;
pub use session::Session;

use std::time::Duration;

use lettre::address::Envelope;
use lettre::message::Mailbox;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::TlsParameters;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncFileTransport, Message, Tokio1Executor};

use std::path::Path;
use std::sync::Arc;

use crate::config::{BounceAddress, MailSettings, Tls, Transport};
use crate::domain::{EditionDate, SubscriberEmail, SubscriberId};
use body::with_alternatives;

#[derive(Clone)]
enum Inner {
    Smtp(Arc<SmtpTarget>),
    File(AsyncFileTransport<Tokio1Executor>),
}

/// Where and how to reach the SMTP server.
struct SmtpTarget {
    host: String,
    port: u16,
    tls: Tls,
    timeout: Duration,
    credentials: Option<Credentials>,
    hello: ClientId,
}

#[derive(Clone)]
pub struct Mailer {
    inner: Inner,
    from: Mailbox,
    list_id: String,
    dkim: Option<Arc<dkim::Signer>>,
    /// `mail.bounce_address`, and (once given) the key its tokens are signed with.
    bounce_address: Option<BounceAddress>,
    return_key: Option<crate::tokens::TokenKey>,
}

/// A message as it goes over the wire, formatted once: retries resend the same bytes, and
/// the size is known without formatting it again.
pub struct Formatted {
    envelope: Envelope,
    bytes: Vec<u8>,
}

impl Formatted {
    /// The message's bytes, signed first when a signer is given: every transport sends
    /// these bytes, so each sends the signature.
    fn new(mut message: Message, dkim: Option<&dkim::Signer>) -> Self {
        if let Some(signer) = dkim {
            signer.sign(&mut message);
        }
        Self {
            envelope: message.envelope().clone(),
            bytes: message.formatted(),
        }
    }

    /// The message as it goes over the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Size in bytes, headers included.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The envelope sender: where a relay sends a bounce.
    pub fn envelope_sender(&self) -> Option<String> {
        self.envelope.from().map(|a| a.to_string())
    }
}

/// What one digest message carries.
pub struct Outgoing<'a> {
    pub to: &'a SubscriberEmail,
    pub subject: &'a str,
    pub text: String,
    pub html: String,
    pub message_id: &'a str,
    pub unsubscribe_url: &'a str,
}

/// Fails at start-up, not at the first send, when TLS cannot be set up for the server.
fn check_tls(settings: &MailSettings) -> anyhow::Result<()> {
    use anyhow::Context;
    if settings.transport == Transport::Smtp && settings.smtp.tls != Tls::None {
        TlsParameters::new(settings.smtp.host.clone()).context("mail.smtp: setting up TLS")?;
    }
    Ok(())
}

/// The DKIM signer `[mail.dkim]` describes, if signing is configured.
fn signer(settings: &MailSettings) -> anyhow::Result<Option<Arc<dkim::Signer>>> {
    Ok(settings
        .dkim
        .as_ref()
        .map(dkim::Signer::from_settings)
        .transpose()?
        .map(Arc::new))
}

impl Mailer {
    /// Checks what [`Mailer::new`] would build from `[mail]` (the sender, TLS, the DKIM
    /// key), writing nothing: for `check-config`.
    pub fn verify_settings(settings: &MailSettings) -> anyhow::Result<()> {
        check_tls(settings)?;
        signer(settings)?;
        Ok(())
    }

    /// The mailer `[mail]` describes; `.eml` files go to `outbox` with the file transport.
    pub fn new(settings: &MailSettings, outbox: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let from = settings.from.mailbox().clone();
        let inner = match settings.transport {
            Transport::File => {
                let dir = outbox;
                crate::files::private_dir(dir)
                    .with_context(|| format!("creating the outbox {}", dir.display()))?;
                Inner::File(AsyncFileTransport::new(dir))
            }
            Transport::Smtp => {
                check_tls(settings)?;
                let smtp = &settings.smtp;
                Inner::Smtp(Arc::new(SmtpTarget {
                    host: smtp.host.clone(),
                    port: smtp.port,
                    tls: smtp.tls,
                    timeout: Duration::from_secs(smtp.timeout_secs),
                    credentials: match (&smtp.username, &smtp.password) {
                        (Some(user), Some(pass)) => {
                            Some(Credentials::new(user.clone(), pass.expose().to_string()))
                        }
                        _ => None,
                    },
                    hello: ClientId::default(),
                }))
            }
        };
        let dkim = signer(settings)?;
        if let Some(signer) = &dkim {
            tracing::debug!(algorithm = signer.algorithm(), "messages are DKIM-signed");
        }
        Ok(Self {
            inner,
            list_id: format!("Trending papers <digest.{}>", from.email.domain()),
            from,
            dkim,
            bounce_address: settings.bounce_address.clone(),
            return_key: None,
        })
    }

    /// The mailer, signing VERP tokens with `key` (the link-signing key) when
    /// `mail.bounce_address` is set.
    pub fn with_return_key(mut self, key: crate::tokens::TokenKey) -> Self {
        self.return_key = Some(key);
        self
    }

    /// The List-Id header digests carry: the bounce intake recognises its own mail by it.
    pub fn list_id(&self) -> &str {
        &self.list_id
    }

    /// `message` with the envelope sender that names its subscriber and edition (`None`:
    /// a notice), when `mail.bounce_address` is set; as it is otherwise. The bytes, and so
    /// the DKIM signature, do not change: only the envelope does.
    pub fn returning(
        &self,
        mut message: Formatted,
        subscriber: SubscriberId,
        edition: Option<EditionDate>,
    ) -> Formatted {
        if let (Some(address), Some(key)) = (&self.bounce_address, &self.return_key) {
            let token = key.sign_return(subscriber, edition);
            let sender = format!("{}+{token}@{}", address.local(), address.domain());
            let sender: lettre::Address = sender.parse().expect("a checked address and a token");
            message.envelope =
                Envelope::new(Some(sender), message.envelope.to().to_vec()).expect("recipients");
        }
        message
    }

    /// The Message-ID of a subscriber's digest for an edition. Derived, not random: a digest
    /// sent again after a crash carries the same id, so it can be recognised as a repeat.
    pub fn message_id(&self, date: EditionDate, subscriber: SubscriberId) -> String {
        format!("<digest.{date}.{subscriber}@{}>", self.from.email.domain())
    }

    pub fn build(&self, m: Outgoing<'_>) -> Result<Formatted, SendError> {
        let header = |name: &'static str, value: String| {
            HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
        };
        let message = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, m.to.to_address()))
            .subject(m.subject)
            .message_id(Some(m.message_id.to_string()))
            .date_now()
            .raw_header(header("List-Id", self.list_id.clone()))
            .raw_header(header(
                "List-Unsubscribe",
                format!("<{}>", m.unsubscribe_url),
            ))
            .raw_header(header(
                "List-Unsubscribe-Post",
                "List-Unsubscribe=One-Click".into(),
            ))
            .raw_header(header("Auto-Submitted", "auto-generated".into()));
        with_alternatives(message, &m.text, &m.html)
            .map(|m| Formatted::new(m, self.dkim.as_deref()))
            .map_err(|e| SendError::permanent("cannot build the message").because(e))
    }

    /// A mail about the subscription itself (confirm, already subscribed): no list headers.
    /// A notice about the subscription, `kind` naming it in its Message-ID. Its own
    /// Message-ID, so that no relay adds one under the DKIM signature (which covers it),
    /// and `Auto-Submitted: auto-generated` (RFC 3834: made by a program, not a reply).
    pub fn build_notice(
        &self,
        to: &SubscriberEmail,
        kind: &str,
        subject: &str,
        text: String,
        html: String,
    ) -> Result<Formatted, SendError> {
        let message_id = format!(
            "<notice.{kind}.{:016x}@{}>",
            rand::random::<u64>(),
            self.from.email.domain()
        );
        let message = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to.to_address()))
            .subject(subject)
            .message_id(Some(message_id))
            .date_now()
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".into(),
            ));
        with_alternatives(message, &text, &html)
            .map(|m| Formatted::new(m, self.dkim.as_deref()))
            .map_err(|e| SendError::permanent("cannot build the message").because(e))
    }

    /// A connection of its own for one sender, kept open from message to message.
    pub fn session(&self) -> Session {
        Session {
            inner: self.inner.clone(),
            connection: tokio::sync::Mutex::new(None),
        }
    }

    /// Sends one message over a connection of its own (notices: rare, not worth keeping one).
    pub async fn send(&self, message: &Formatted) -> Result<(), SendError> {
        let session = self.session();
        let result = session.send(message).await;
        session.close().await;
        result
    }

    /// Opens a connection and says hello, so a run can tell "SMTP is down" before it starts.
    pub async fn check(&self) -> Result<(), SendError> {
        let session = self.session();
        let result = session.connected().await.map(drop);
        session.close().await;
        result
    }
}

/// The edition and reader a digest's Message-ID (as [`Mailer::message_id`] makes it, with
/// or without its angle brackets) names, when it is one of `domain`'s: how a bounce report
/// that quotes the returned digest is attributed.
pub fn digest_of_message_id(id: &str, domain: &str) -> Option<(EditionDate, SubscriberId)> {
    let id = id.trim().trim_start_matches('<').trim_end_matches('>');
    let (local, at) = id.rsplit_once('@')?;
    if !at.eq_ignore_ascii_case(domain) {
        return None;
    }
    let (date, subscriber) = local.strip_prefix("digest.")?.split_once('.')?;
    let date = EditionDate::parse(date).ok()?;
    if subscriber.len() != 16 {
        return None;
    }
    let subscriber = u64::from_str_radix(subscriber, 16).ok()?;
    Some((date, SubscriberId::from_u64(subscriber)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a digest's Message-ID names is read back from it, and only for our domain.
    #[test]
    fn a_digests_message_id_names_its_edition_and_reader() {
        let dir = tempfile::tempdir().unwrap();
        let mailer = Mailer::new(&MailSettings::default(), dir.path()).unwrap();
        let date = EditionDate::parse("2025-12-09").unwrap();
        let reader = SubscriberId::from_u64(0x00ab_cdef_0123_4567);
        let id = mailer.message_id(date, reader);
        let domain = "example.org";
        assert_eq!(digest_of_message_id(&id, domain), Some((date, reader)));
        let bare = id.trim_matches(['<', '>']);
        assert_eq!(
            digest_of_message_id(bare, "EXAMPLE.org"),
            Some((date, reader))
        );
        for other in [
            digest_of_message_id(&id, "example.com"),
            digest_of_message_id("<notice.confirm.x@example.org>", domain),
            digest_of_message_id("<digest.2025-12-09.abc@example.org>", domain),
            digest_of_message_id("<digest.2025-13-09.00abcdef01234567@example.org>", domain),
        ] {
            assert_eq!(other, None);
        }
    }
}

#[cfg(test)]
mod test_support {
    use crate::domain::SubscriberEmail;

    pub(super) fn to() -> SubscriberEmail {
        SubscriberEmail::parse("ann@example.org").unwrap()
    }
}
