//! Putting digests in envelopes: message headers, and the transports that carry them.
//!
//! One [`Mailer`] type hides whether mail goes to an SMTP server or to `.eml` files, and
//! sorts every failure into the two classes delivery cares about: worth retrying, or not.

use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{Settings, Tls, Transport};
use crate::domain::{EditionDate, SubscriberEmail, SubscriberId};

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SendError {
    /// 4xx, refused or dropped connections, timeouts, a full disk: try again later.
    #[error("temporary failure: {0}")]
    Transient(String),
    /// 5xx for this recipient or message: retrying will not help.
    #[error("permanent failure: {0}")]
    Permanent(String),
}

#[derive(Clone)]
enum Inner {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    File(AsyncFileTransport<Tokio1Executor>),
}

#[derive(Clone)]
pub struct Mailer {
    inner: Inner,
    from: Mailbox,
    list_id: String,
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

impl Mailer {
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        use anyhow::Context;
        let from = settings.from_mailbox()?;
        let inner = match settings.mail.transport {
            Transport::File => {
                let dir = settings.outbox_dir();
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating the outbox {}", dir.display()))?;
                Inner::File(AsyncFileTransport::new(dir))
            }
            Transport::Smtp => {
                let smtp = &settings.mail.smtp;
                let builder = match smtp.tls {
                    Tls::None => {
                        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
                    }
                    Tls::Starttls => {
                        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
                            .context("mail.smtp: setting up STARTTLS")?
                    }
                    Tls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)
                        .context("mail.smtp: setting up TLS")?,
                };
                let mut builder = builder
                    .port(smtp.port)
                    .timeout(Some(Duration::from_secs(smtp.timeout_secs)))
                    .pool_config(PoolConfig::new().max_size(smtp.concurrency));
                if let (Some(user), Some(pass)) = (&smtp.username, &smtp.password) {
                    builder = builder
                        .credentials(Credentials::new(user.clone(), pass.expose().to_string()));
                }
                Inner::Smtp(builder.build())
            }
        };
        Ok(Self {
            inner,
            list_id: format!("Trending papers <digest.{}>", from.email.domain()),
            from,
        })
    }

    /// The Message-ID of a subscriber's digest for an edition. Derived, not random: a digest
    /// sent again after a crash carries the same id, so it can be recognised as a repeat.
    pub fn message_id(&self, date: EditionDate, subscriber: SubscriberId) -> String {
        format!("<digest.{date}.{subscriber}@{}>", self.from.email.domain())
    }

    pub fn build(&self, m: Outgoing<'_>) -> Result<Message, SendError> {
        let header = |name: &'static str, value: String| {
            HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
        };
        Message::builder()
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
            .raw_header(header("Auto-Submitted", "auto-generated".into()))
            // Never set Content-Type before `multipart`: lettre would send two.
            .multipart(MultiPart::alternative_plain_html(m.text, m.html))
            .map_err(|e| SendError::Permanent(format!("cannot build the message: {e}")))
    }

    /// A mail about the subscription itself (confirm, already subscribed): no list headers.
    pub fn build_notice(
        &self,
        to: &SubscriberEmail,
        subject: &str,
        text: String,
        html: String,
    ) -> Result<Message, SendError> {
        Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to.to_address()))
            .subject(subject)
            .date_now()
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-replied".into(),
            ))
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| SendError::Permanent(format!("cannot build the message: {e}")))
    }

    pub async fn send(&self, message: &Message) -> Result<(), SendError> {
        match &self.inner {
            Inner::Smtp(t) => t
                .send(message.clone())
                .await
                .map(drop)
                .map_err(classify_smtp),
            Inner::File(t) => t
                .send(message.clone())
                .await
                .map(drop)
                .map_err(|e| SendError::Transient(format!("writing to the outbox: {e}"))),
        }
    }

    /// Opens a connection and says hello, so a run can tell "SMTP is down" before it starts.
    pub async fn check(&self) -> Result<(), SendError> {
        match &self.inner {
            Inner::Smtp(t) => match t.test_connection().await {
                Ok(true) => Ok(()),
                Ok(false) => Err(SendError::Transient(
                    "the server did not answer NOOP".into(),
                )),
                Err(e) => Err(classify_smtp(e)),
            },
            Inner::File(_) => Ok(()),
        }
    }
}

fn classify_smtp(e: lettre::transport::smtp::Error) -> SendError {
    let text = crate::telemetry::one_line(&e);
    if e.is_permanent() {
        SendError::Permanent(text)
    } else {
        SendError::Transient(text)
    }
}
