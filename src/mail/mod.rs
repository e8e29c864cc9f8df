//! Putting digests in envelopes: message headers, and the transports that carry them.
//!
//! One [`Mailer`] type hides whether mail goes to an SMTP server or to `.eml` files, and
//! sorts every failure into the two classes delivery cares about: worth retrying, or not.
//! With `[mail.dkim]`, every message is signed as it is formatted (see [`dkim`]). With
//! `mail.bounce_address`, each message's envelope sender names its subscriber and edition
//! (VERP, [`Mailer::returning`]), and the file outbox records it as `Return-Path`.
//!
//! The bodies' transfer encodings (`7bit` and quoted-printable, in `encode_body`) are our
//! own rather than lettre's `Body::new`, which inserts each CR one at a time and
//! quoted-printable encodes any part with a long line, byte by byte. Building one digest
//! into a message took 258 µs with lettre's encoding and 40 µs with ours, the HTML made
//! ASCII once per edition and sent as `7bit` (criterion, `cargo bench --bench render`, "one
//! digest built into a message", 2-core benchmark machine, recorded 2026-11-27 in
//! bench/RESULTS.md, "Parse and render").

pub mod dkim;
mod retry;
pub mod smtp;

pub use retry::with_retries;

use std::time::Duration;

use lettre::address::Envelope;
use lettre::message::header::{
    ContentTransferEncoding, ContentType, HeaderName, HeaderValue, MIME_VERSION_1_0,
};
use lettre::message::{Body, Mailbox, MessageBuilder, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncFileTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::net::TcpStream;

use std::path::Path;
use std::sync::Arc;

use crate::config::{BounceAddress, MailSettings, Tls, Transport};
use crate::domain::{EditionDate, SubscriberEmail, SubscriberId};
use crate::telemetry::Flat;

/// Why a message did not go: which of the two classes the failure is in, what was being
/// done when the cause alone would not say it, and the cause itself (lettre's error, the
/// socket's, the store's).
#[derive(Debug, Clone)]
pub struct SendError {
    kind: SendErrorKind,
    doing: Option<String>,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendErrorKind {
    /// 4xx, refused or dropped connections, timeouts, a full disk: try again later.
    Transient,
    /// 5xx for this recipient or message: retrying will not help.
    Permanent,
}

impl SendError {
    fn new(kind: SendErrorKind) -> Self {
        Self {
            kind,
            doing: None,
            source: None,
        }
    }

    /// A temporary failure, said in words: "the server did not answer within 30 s".
    pub fn transient(doing: impl Into<String>) -> Self {
        Self::new(SendErrorKind::Transient).doing(doing)
    }

    /// A permanent failure, said in words.
    pub fn permanent(doing: impl Into<String>) -> Self {
        Self::new(SendErrorKind::Permanent).doing(doing)
    }

    /// A temporary failure that `cause` says all about.
    pub fn transient_from(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::new(SendErrorKind::Transient).because(cause)
    }

    /// A permanent failure that `cause` says all about.
    pub fn permanent_from(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::new(SendErrorKind::Permanent).because(cause)
    }

    fn doing(mut self, doing: impl Into<String>) -> Self {
        self.doing = Some(doing.into());
        self
    }

    /// The same failure, caused by `cause`.
    pub fn because(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(cause));
        self
    }

    pub fn kind(&self) -> SendErrorKind {
        self.kind
    }

    pub fn is_transient(&self) -> bool {
        self.kind == SendErrorKind::Transient
    }

    /// What went wrong and why, without the class: for a delivery's record, whose state
    /// already says whether it will be tried again.
    pub fn reason(&self) -> String {
        let cause = self
            .source
            .as_deref()
            .map(|c| crate::telemetry::one_line(c));
        match (&self.doing, cause) {
            (Some(doing), Some(cause)) => format!("{doing}: {cause}"),
            (Some(doing), None) => doing.clone(),
            (None, Some(cause)) => cause,
            (None, None) => String::new(),
        }
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.kind {
            SendErrorKind::Transient => "temporary failure",
            SendErrorKind::Permanent => "permanent failure",
        })?;
        match &self.doing {
            Some(doing) => write!(f, ": {doing}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|c| c as _)
    }
}

impl From<smtp::Error> for SendError {
    fn from(e: smtp::Error) -> Self {
        if e.permanent {
            SendError::permanent_from(e)
        } else {
            SendError::transient_from(e)
        }
    }
}

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

/// The message with the text and HTML versions as its body.
///
/// The `multipart/alternative` goes in as the message's own body, its Content-Type set as a
/// header of the message: lettre keeps a multipart's Content-Type apart from the message's
/// headers, where a DKIM signature cannot cover it. The bytes are what lettre's `multipart`
/// makes, plus a top-level `Content-Transfer-Encoding: 7bit`, which is true (the parts are
/// 7-bit) and allowed for a multipart (RFC 2045, 6.4).
fn with_alternatives(
    message: MessageBuilder,
    text: &str,
    html: &str,
) -> Result<Message, lettre::error::Error> {
    let parts = alternative(text, html);
    let content_type = parts
        .headers()
        .get::<ContentType>()
        .expect("a multipart has its Content-Type");
    let formatted = parts.formatted();
    // `formatted` is the multipart's headers, a blank line, then the body.
    let body_starts = parts.headers().to_string().len() + 2;
    message
        .header(MIME_VERSION_1_0)
        .header(content_type)
        .body(Body::dangerous_pre_encoded(
            formatted[body_starts..].to_vec(),
            ContentTransferEncoding::SevenBit,
        ))
}

/// The text and HTML versions of a mail, each part encoded by [`encode_body`].
fn alternative(text: &str, html: &str) -> MultiPart {
    let part = |content_type, content| {
        SinglePart::builder()
            .header(content_type)
            .body(encode_body(content))
    };
    MultiPart::alternative()
        .singlepart(part(ContentType::TEXT_PLAIN, text))
        .singlepart(part(ContentType::TEXT_HTML, html))
}

/// Longest line RFC 5322 allows, without its CRLF.
const MAX_LINE: usize = 998;
/// Longest quoted-printable line (RFC 2045), a soft break's `=` included.
const QP_LINE: usize = 76;

/// A part's content ready for the wire. The message always stays 7-bit, so it goes through
/// servers without 8BITMIME too: content that can go as it is goes as `7bit` (line breaks
/// made CRLF, nothing else touched: the digest's HTML, which the renderer keeps ASCII),
/// anything else as quoted-printable.
///
/// Our own encoders rather than lettre's `Body::new`, which took some 250 µs per digest: it
/// inserts each CR into the string one at a time (moving the rest of the body every time),
/// and quoted-printable encodes anything with a line over 76 characters, byte by byte.
fn encode_body(content: &str) -> Body {
    match seven_bit(content) {
        Some(bytes) => Body::dangerous_pre_encoded(bytes, ContentTransferEncoding::SevenBit),
        None => Body::dangerous_pre_encoded(
            quoted_printable(content),
            ContentTransferEncoding::QuotedPrintable,
        ),
    }
}

/// `content` as `7bit`, line breaks made CRLF, if it can go so: ASCII without NUL or CR
/// (line breaks are LF; a CR is left to quoted-printable, which keeps a lone one intact),
/// lines of at most 998 octets, and no line starting with "From " (mbox delivery would
/// make it ">From "). Lines starting with "." are fine: SMTP dot-stuffing covers them.
fn seven_bit(content: &str) -> Option<Vec<u8>> {
    /// Bytes that need a look: line breaks, and what 7bit cannot carry as it is.
    fn special(b: u8) -> bool {
        (b == b'\n') | (b == b'\r') | (b == 0) | (b >= 0x80)
    }
    const CHUNK: usize = 16;
    let bytes = content.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32 + 2);
    let mut line_start = 0;
    let mut i = 0;
    loop {
        // Most bytes need nothing: skip them a chunk at a time (no early exit inside a
        // chunk, so the compiler can check all of it at once).
        while let Some(chunk) = bytes.get(i..i + CHUNK)
            && let Ok(chunk) = <&[u8; CHUNK]>::try_from(chunk)
            && !chunk.iter().fold(false, |any, &b| any | special(b))
        {
            i += CHUNK;
        }
        let end = bytes.len().min(i + CHUNK);
        let Some(at) = bytes[i..end].iter().position(|&b| special(b)) else {
            break; // The end, with nothing left to look at.
        };
        i += at;
        if bytes[i] != b'\n' {
            return None;
        }
        let line = &bytes[line_start..i];
        if line.len() > MAX_LINE || line.starts_with(b"From ") {
            return None;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        i += 1;
        line_start = i;
    }
    let line = &bytes[line_start..];
    if line.len() > MAX_LINE || line.starts_with(b"From ") {
        return None;
    }
    out.extend_from_slice(line);
    Some(out)
}

/// Quoted-printable (RFC 2045, 6.7) for text: a line break (LF or CRLF) stays a line break,
/// and every encoded line is at most 76 characters. Beyond what the RFC asks, a `.` or the
/// `F` of "From " at the start of a line is encoded too, so neither SMTP dot-stuffing gone
/// wrong nor mbox ">From " munging can change the text.
fn quoted_printable(content: &str) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    /// Bytes that stand for themselves, but for white space at the end of a line.
    const PLAIN: [bool; 256] = {
        let mut t = [false; 256];
        let mut b = 0;
        while b < 256 {
            t[b] = matches!(b as u8, b' ' | b'\t' | b'!'..=b'<' | b'>'..=b'~');
            b += 1;
        }
        t
    };
    let bytes = content.as_bytes();
    // Whether a line break (or the end) follows at `at`.
    let line_ends =
        |at: usize| matches!(bytes.get(at..), Some([] | [b'\n', ..] | [b'\r', b'\n', ..]));
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 8 + 16);
    let mut col = 0;
    let mut i = 0;
    while i < bytes.len() {
        // The common case, in one copy: a run of plain bytes past the start of a line, as
        // much as fits before a soft break. White space just before a line break is left
        // for below.
        if col > 0 {
            let max = (bytes.len() - i).min((QP_LINE - 1).saturating_sub(col));
            let mut run = bytes[i..i + max]
                .iter()
                .position(|&b| !PLAIN[usize::from(b)])
                .unwrap_or(max);
            if run > 0 && matches!(bytes[i + run - 1], b' ' | b'\t') && line_ends(i + run) {
                run -= 1;
            }
            out.extend_from_slice(&bytes[i..i + run]);
            col += run;
            i += run;
            if i == bytes.len() {
                break;
            }
        }
        let b = bytes[i];
        if b == b'\n' || (b == b'\r' && bytes.get(i + 1) == Some(&b'\n')) {
            out.extend_from_slice(b"\r\n");
            col = 0;
            i += if b == b'\r' { 2 } else { 1 };
            continue;
        }
        let last = line_ends(i + 1);
        let literal = |col: usize| match b {
            // Trailing white space may be stripped on the way: encode it.
            b' ' | b'\t' => !last,
            b'.' => col > 0,
            b'F' => col > 0 || !bytes[i..].starts_with(b"From "),
            _ => PLAIN[usize::from(b)],
        };
        // Room for the `=` of a soft break, unless this is the last byte of the line.
        let limit = if last { QP_LINE } else { QP_LINE - 1 };
        let mut width = if literal(col) { 1 } else { 3 };
        if col + width > limit {
            out.extend_from_slice(b"=\r\n");
            col = 0;
            width = if literal(col) { 1 } else { 3 };
        }
        if width == 1 {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
        col += width;
        i += 1;
    }
    out
}

/// One sender's SMTP connection: opened on first use, reused for the next message, dropped
/// and opened afresh after any error (the server's state after a failure is not worth
/// guessing).
pub struct Session {
    inner: Inner,
    connection: tokio::sync::Mutex<Option<Connection>>,
}

/// A session through lettre (TLS, logins), or through paperboy's own pipelining client (plain
/// TCP without a login: the local relay a large list should send through).
enum Connection {
    Lettre(Box<AsyncSmtpConnection>),
    Plain(crate::mail::smtp::Client),
}

impl Connection {
    fn has_broken(&self) -> bool {
        match self {
            Self::Lettre(c) => c.has_broken(),
            Self::Plain(c) => c.has_broken(),
        }
    }

    /// Sends a message, awaiting `gate` before the server can accept it: with the plain
    /// client once everything but the final dot has gone, otherwise before anything goes.
    /// Each exchange with the server has `timeout` (lettre has no time limit of its own once
    /// connected: a server that stops answering must not hold a sender forever).
    async fn send_gated(
        &mut self,
        envelope: &Envelope,
        bytes: &[u8],
        gate: impl Future<Output = Result<(), SendError>>,
        timeout: Duration,
    ) -> Result<(), SendError> {
        let late = || {
            SendError::transient(format!(
                "the server did not answer within {} s",
                timeout.as_secs()
            ))
        };
        match self {
            Self::Lettre(c) => {
                gate.await?;
                let send = c.send(envelope, bytes);
                match tokio::time::timeout(timeout, send).await {
                    Ok(result) => result.map(drop).map_err(classify_smtp),
                    Err(_) => Err(late()),
                }
            }
            Self::Plain(c) => {
                tokio::time::timeout(timeout, c.start(envelope, bytes))
                    .await
                    .map_err(|_| late())??;
                gate.await?;
                Ok(tokio::time::timeout(timeout, c.finish())
                    .await
                    .map_err(|_| late())??)
            }
        }
    }

    async fn quit(&mut self) {
        match self {
            Self::Lettre(c) => drop(c.quit().await),
            Self::Plain(c) => c.quit().await,
        }
    }
}

impl Session {
    pub async fn send(&self, message: &Formatted) -> Result<(), SendError> {
        self.send_gated(message, async { Ok(()) }).await
    }

    /// Sends a message, but lets the server accept it only once `gate` is done: the send
    /// loop's way to have the previous acceptance on disk first, while this message is
    /// already on its way (see `smtp`). A failed gate fails the send, and nothing is
    /// delivered.
    pub async fn send_gated(
        &self,
        message: &Formatted,
        gate: impl Future<Output = Result<(), SendError>>,
    ) -> Result<(), SendError> {
        let (envelope, bytes) = (&message.envelope, message.bytes.as_slice());
        let target = match &self.inner {
            Inner::File(t) => {
                gate.await?;
                // What a delivering server would add (RFC 5321, 4.4): the outbox records the
                // envelope sender, which the message's own headers do not carry.
                let mut recorded = Vec::with_capacity(bytes.len() + 80);
                let sender = envelope.from().map(|a| a.to_string()).unwrap_or_default();
                recorded.extend_from_slice(format!("Return-Path: <{sender}>\r\n").as_bytes());
                recorded.extend_from_slice(bytes);
                let written = t.send_raw(envelope, &recorded).await;
                return written
                    .map(drop)
                    .map_err(|e| SendError::transient("writing to the outbox").because(Flat(e)));
            }
            Inner::Smtp(target) => target,
        };
        let mut slot = self.connected().await?;
        let conn = slot.as_mut().expect("connected");
        let result = conn.send_gated(envelope, bytes, gate, target.timeout).await;
        if result.is_err() {
            // Whatever state the session is in (possibly mid-message) is not worth keeping.
            *slot = None;
        }
        result
    }

    /// The open connection, after opening one if there is none (or it broke).
    async fn connected(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<Connection>>, SendError> {
        let mut slot = self.connection.lock().await;
        if slot.as_ref().is_some_and(|c| c.has_broken()) {
            *slot = None;
        }
        if slot.is_none()
            && let Inner::Smtp(target) = &self.inner
        {
            let connect = connect(target);
            let conn = tokio::time::timeout(target.timeout, connect)
                .await
                .map_err(|_| {
                    SendError::transient(format!(
                        "no answer from {}:{} within {} s",
                        target.host,
                        target.port,
                        target.timeout.as_secs()
                    ))
                })??;
            *slot = Some(conn);
        }
        Ok(slot)
    }

    /// Says goodbye politely, if a connection is open.
    pub async fn close(&self) {
        if let Some(mut conn) = self.connection.lock().await.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.quit()).await;
        }
    }
}

/// Connects, says hello, secures the connection as configured and logs in.
async fn connect(t: &SmtpTarget) -> Result<Connection, SendError> {
    if t.tls == Tls::None && t.credentials.is_none() {
        let client =
            crate::mail::smtp::Client::connect(&t.host, t.port, &t.hello.to_string()).await?;
        return Ok(Connection::Plain(client));
    }
    connect_lettre(t)
        .await
        .map(|c| Connection::Lettre(Box::new(c)))
}

async fn connect_lettre(t: &SmtpTarget) -> Result<AsyncSmtpConnection, SendError> {
    let tls = |host: &str| {
        TlsParameters::new(host.to_string()).map_err(|e| SendError::permanent_from(Flat(e)))
    };
    let mut conn = if t.tls == Tls::Tls {
        AsyncSmtpConnection::connect_tokio1(
            (t.host.as_str(), t.port),
            Some(t.timeout),
            &t.hello,
            Some(tls(&t.host)?),
            None,
        )
        .await
        .map_err(classify_smtp)?
    } else {
        // Our own socket, to turn off Nagle's algorithm: lettre writes a message's final
        // "." on its own, and with Nagle that small write waits for the server's delayed
        // ACK (40 ms) on every message.
        let tcp = TcpStream::connect((t.host.as_str(), t.port))
            .await
            .map_err(|e| {
                SendError::transient(format!("connecting to {}:{}", t.host, t.port)).because(e)
            })?;
        tcp.set_nodelay(true)
            .map_err(|e| SendError::transient("setting up the connection").because(e))?;
        let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &t.hello)
            .await
            .map_err(classify_smtp)?;
        if t.tls == Tls::Starttls {
            conn.starttls(tls(&t.host)?, &t.hello)
                .await
                .map_err(classify_smtp)?;
        }
        conn
    };
    if let Some(credentials) = &t.credentials {
        conn.auth(DEFAULT_MECHANISMS, credentials)
            .await
            .map_err(classify_smtp)?;
    }
    Ok(conn)
}

fn classify_smtp(e: lettre::transport::smtp::Error) -> SendError {
    if e.is_permanent() {
        SendError::permanent_from(Flat(e))
    } else {
        SendError::transient_from(Flat(e))
    }
}

#[cfg(test)]
mod tests {
    use mailparse::{MailHeaderMap, ParsedMail};
    use proptest::prelude::*;

    use super::*;
    use crate::domain::{Author, Paper, PaperId, Subscriber};
    use crate::render::{EditionTemplate, Personal};

    fn mailer(dir: &std::path::Path) -> Mailer {
        let settings = crate::config::Settings {
            data_dir: dir.to_path_buf(),
            ..crate::config::Settings::default()
        };
        Mailer::new(&settings.mail, &settings.outbox_dir()).unwrap()
    }

    #[test]
    fn a_send_error_keeps_its_cause_and_says_it_once() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = SendError::transient("connecting to mx.example.org:25").because(refused);
        assert_eq!(
            crate::telemetry::one_line(&e),
            "temporary failure: connecting to mx.example.org:25: refused"
        );
        assert_eq!(e.reason(), "connecting to mx.example.org:25: refused");
        let cause = std::error::Error::source(&e).expect("a cause");
        assert_eq!(
            cause.downcast_ref::<std::io::Error>().map(|io| io.kind()),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
    }

    fn to() -> SubscriberEmail {
        SubscriberEmail::parse("ann@example.org").unwrap()
    }

    /// A server that asks for a login, answering like one; returns what it was sent.
    async fn login_server(listener: tokio::net::TcpListener) -> String {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let (socket, _) = listener.accept().await.unwrap();
        let mut socket = tokio::io::BufReader::new(socket);
        socket.get_mut().write_all(b"220 hi\r\n").await.unwrap();
        let (mut seen, mut in_data) = (String::new(), false);
        loop {
            let mut line = String::new();
            if socket.read_line(&mut line).await.unwrap() == 0 {
                break;
            }
            seen.push_str(&line);
            let reply = if in_data {
                if line != ".\r\n" {
                    continue;
                }
                in_data = false;
                "250 queued\r\n"
            } else {
                match line.get(..4).unwrap_or("") {
                    "EHLO" => "250-test\r\n250 AUTH PLAIN LOGIN\r\n",
                    "AUTH" => "235 welcome\r\n",
                    "MAIL" | "RCPT" => "250 ok\r\n",
                    "DATA" => {
                        in_data = true;
                        "354 go on\r\n"
                    }
                    "QUIT" => "221 bye\r\n",
                    _ => "500 what?\r\n",
                }
            };
            socket.get_mut().write_all(reply.as_bytes()).await.unwrap();
            if line.starts_with("QUIT") {
                break;
            }
        }
        seen
    }

    #[tokio::test]
    async fn a_login_goes_through_lettre() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(login_server(listener));
        let dir = tempfile::tempdir().unwrap();
        let mut settings = crate::config::Settings {
            data_dir: dir.path().to_path_buf(),
            ..crate::config::Settings::default()
        };
        settings.mail.transport = Transport::Smtp;
        settings.mail.smtp.host = "127.0.0.1".into();
        settings.mail.smtp.port = port;
        settings.mail.smtp.username = Some("pb".into());
        settings.mail.smtp.password = Some("secret".to_string().into());
        let mailer = Mailer::new(&settings.mail, &settings.outbox_dir()).unwrap();
        let message = mailer
            .build_notice(&to(), "test", "Hello", "Hi.".into(), "<p>Hi.</p>".into())
            .unwrap();
        mailer.send(&message).await.unwrap();
        let seen = server.await.unwrap();
        // AUTH PLAIN, base64 of "\0pb\0secret".
        assert!(seen.contains("AUTH PLAIN AHBiAHNlY3JldA=="), "{seen}");
        assert!(seen.contains("RCPT TO:<ann@example.org>"), "{seen}");
        assert!(seen.contains("Subject: Hello"), "{seen}");
    }

    /// LF line breaks, as the parts are rendered, whatever the wire had.
    fn lf(s: &str) -> String {
        s.replace("\r\n", "\n")
    }

    /// The message's parts, checked for shape on the way: multipart/alternative with a text
    /// and an HTML part, one Content-Type each, 7-bit, no line too long, none to be munged.
    fn parts<'a>(raw: &'a [u8], parsed: &'a ParsedMail<'a>) -> (String, String) {
        assert!(raw.is_ascii(), "the message is 7-bit");
        let raw = std::str::from_utf8(raw).unwrap();
        for line in raw.split("\r\n") {
            assert!(
                !line.contains('\n') && !line.contains('\r'),
                "bare line break"
            );
            assert!(line.len() <= MAX_LINE, "a line of {} octets", line.len());
            assert!(!line.starts_with("From "), "{line}");
        }
        assert_eq!(parsed.ctype.mimetype, "multipart/alternative");
        let types: Vec<_> = parsed
            .subparts
            .iter()
            .map(|p| p.ctype.mimetype.as_str())
            .collect();
        assert_eq!(types, ["text/plain", "text/html"]);
        for p in std::iter::once(parsed).chain(&parsed.subparts) {
            assert_eq!(p.headers.get_all_values("Content-Type").len(), 1);
        }
        for p in &parsed.subparts {
            assert_eq!(p.ctype.charset, "utf-8");
            let cte = p
                .headers
                .get_first_value("Content-Transfer-Encoding")
                .unwrap();
            assert!(cte == "7bit" || cte == "quoted-printable", "{cte}");
        }
        (
            parsed.subparts[0].get_body().unwrap(),
            parsed.subparts[1].get_body().unwrap(),
        )
    }

    #[test]
    fn awkward_bodies_round_trip_through_a_mail_parser() {
        let long_ascii = "x".repeat(2000);
        let long_words = "word ".repeat(300);
        let long_utf8 = "日本語のタイトル — Ünïcödé ".repeat(60);
        let text = format!(
            "TRENDING PAPERS · Tuesday\n\
             .\n\
             .starts with a dot\n\
             ..two dots\n\
             From the abstract: we find\n\
             From\n\
             Fromage is not a line to munge\n\
             trailing space \n\
             trailing tab\t\n\
             a=b, =41, =\n\
             {long_ascii}\n\
             {long_words}\n\
             {long_utf8}\n\
             Emoji 📬 and ★ 12 and ▲ 3 · Zoë Çelik, Łukasz Żółć et al.\n\
             \n\
             {}\n\
             last line without a break",
            "é".repeat(37),
        );
        let html = format!(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body>\n\
             <p style=\"margin: 0;\">Über «Straße» 中文 🚀</p>\n\
             .\n\
             .dot\n\
             From here\n\
             <p>{long_utf8}</p><p>{long_ascii}</p>\n\
             </body></html>\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let mailer = mailer(dir.path());
        let subject = "Trending papers, Dec 9: Ünïcödé — 日本語 and 9 more";
        let message = mailer
            .build(Outgoing {
                to: &to(),
                subject,
                text: text.clone(),
                html: html.clone(),
                message_id: "<digest.2025-12-09.1@example.org>",
                unsubscribe_url: "https://p.example.org/unsubscribe?token=abc",
            })
            .unwrap();
        let parsed = mailparse::parse_mail(&message.bytes).unwrap();
        let (got_text, got_html) = parts(&message.bytes, &parsed);
        assert_eq!(lf(&got_text), text);
        assert_eq!(lf(&got_html), html);
        let header = |name| parsed.headers.get_first_value(name).unwrap();
        assert_eq!(header("Subject"), subject);
        assert_eq!(header("Message-ID"), "<digest.2025-12-09.1@example.org>");
        assert_eq!(
            header("List-Unsubscribe"),
            "<https://p.example.org/unsubscribe?token=abc>"
        );
        assert_eq!(
            header("List-Unsubscribe-Post"),
            "List-Unsubscribe=One-Click"
        );
        assert_eq!(header("List-Id"), "Trending papers <digest.example.org>");
        assert_eq!(header("Auto-Submitted"), "auto-generated");
    }

    #[test]
    fn a_rendered_digest_goes_as_7bit_html_and_quoted_printable_text() {
        let mut papers: Vec<Paper> = (0..3)
            .map(|i| {
                let mut p = Paper::new(
                    PaperId::parse(&format!("2512.0000{i}")).unwrap(),
                    format!("Über-Modelle {i}: 大規模言語モデル — «test» & <b>"),
                    10 - i,
                );
                p.authors = ["Zoë Çelik", "Łukasz Żółć", "José Núñez", "Ada"]
                    .iter()
                    .map(|n| Author {
                        name: n.to_string(),
                    })
                    .collect();
                p.summary = "Wir zeigen, daß 📈 größer wird. ".repeat(20);
                p
            })
            .collect();
        papers[1].ai_summary = Some("Short AI summary with a = sign…".into());
        let date = EditionDate::parse("2025-12-09").unwrap();
        let template =
            EditionTemplate::new(date, &papers, "https://p.example.org", &Default::default())
                .unwrap();
        let ids: Vec<PaperId> = papers.iter().map(|p| p.id.clone()).collect();
        let personal = Personal {
            why: "up to 10 trending papers about «Über»".into(),
            preferences_url: "https://p.example.org/preferences?token=abc".into(),
            unsubscribe_url: "https://p.example.org/unsubscribe?token=abc".into(),
            late: Vec::new(),
            weekly: false,
            keywords: Default::default(),
            browser: Default::default(),
        };
        let r = template.digest(&ids, &personal).unwrap();
        assert!(r.html.is_ascii(), "the renderer keeps the HTML ASCII");

        let dir = tempfile::tempdir().unwrap();
        let mailer = mailer(dir.path());
        let subscriber = Subscriber::new(to(), Default::default(), true);
        let message = mailer
            .build(Outgoing {
                to: &subscriber.email,
                subject: &r.subject,
                text: r.text.clone(),
                html: r.html.clone(),
                message_id: &mailer.message_id(date, subscriber.id),
                unsubscribe_url: &personal.unsubscribe_url,
            })
            .unwrap();
        let parsed = mailparse::parse_mail(&message.bytes).unwrap();
        let (text, html) = parts(&message.bytes, &parsed);
        assert_eq!(lf(&text), r.text);
        assert_eq!(lf(&html), r.html);
        let cte = |i: usize| {
            parsed.subparts[i]
                .headers
                .get_first_value("Content-Transfer-Encoding")
                .unwrap()
        };
        assert_eq!(cte(0), "quoted-printable");
        assert_eq!(cte(1), "7bit");
        assert_eq!(
            parsed.headers.get_first_value("Subject").unwrap(),
            "Dec 9: Über-Modelle 0: 大規模言語モデル — «test» & <b> + 2 more"
        );
        assert!(text.contains("Zoë Çelik, Łukasz Żółć, José Núñez et al."));
        // What a mail client shows of the HTML: the same characters.
        let shown: String = scraper::Html::parse_document(&html)
            .root_element()
            .text()
            .collect();
        assert!(shown.contains("Über-Modelle 1: 大規模言語モデル — «test» & <b>"));
        assert!(shown.contains("Zoë Çelik, Łukasz Żółć, José Núñez et al."));
        assert!(shown.contains("Short AI summary with a = sign…"));
        assert!(shown.contains("about «Über»"));
    }

    #[test]
    fn quoted_printable_lines() {
        let qp = |s: &str| String::from_utf8(quoted_printable(s)).unwrap();
        assert_eq!(qp("a=b\nc \n\tx\t"), "a=3Db\r\nc=20\r\n\tx=09");
        assert_eq!(
            qp(".\n..\nFrom me\nFrome"),
            "=2E\r\n=2E.\r\n=46rom me\r\nFrome"
        );
        assert_eq!(qp("Ü\r\n\r"), "=C3=9C\r\n=0D");
        // 76 characters fit on a line of their own; 77 need a soft break, after 75.
        assert_eq!(qp(&"a".repeat(76)), "a".repeat(76));
        assert_eq!(qp(&"a".repeat(77)), format!("{}=\r\naa", "a".repeat(75)));
        // An escape is never cut by a soft break, and a line never starts a "From ".
        let s = format!("{}éFrom x", "a".repeat(73));
        assert_eq!(qp(&s), format!("{}=\r\n=C3=A9From x", "a".repeat(73)));
        let s = format!("{}From x", "a".repeat(75));
        assert_eq!(qp(&s), format!("{}=\r\n=46rom x", "a".repeat(75)));
    }

    #[test]
    fn seven_bit_only_when_it_is_safe() {
        let seven = |s: &str| seven_bit(s).map(|b| String::from_utf8(b).unwrap());
        assert_eq!(
            seven("<p>plain</p>\n.\nfrom here\n\n").unwrap(),
            "<p>plain</p>\r\n.\r\nfrom here\r\n\r\n"
        );
        assert_eq!(seven(""), Some(String::new()));
        let long = "x".repeat(MAX_LINE);
        assert_eq!(
            seven(&format!("{long}\n{long}")).unwrap(),
            format!("{long}\r\n{long}")
        );
        assert_eq!(seven(&format!("{long}x")), None);
        assert_eq!(seven(&format!("{long}x\nshort")), None);
        assert_eq!(seven(&format!("{}caf\u{e9}", "a".repeat(40))), None);
        assert_eq!(seven("a\r\nb"), None);
        assert_eq!(seven("a\rb"), None);
        assert_eq!(seven("a\0b"), None);
        assert_eq!(seven("ok\nFrom me"), None);
        assert_eq!(seven("From me"), None);
    }

    proptest! {
        /// Whatever the text, what a mail parser decodes is what went in, line breaks made
        /// CRLF, and what goes on the wire is 7-bit with lines a server takes.
        #[test]
        fn any_body_round_trips(
            content in prop_oneof![
                r"(\PC|[\t\r\n .=F ]|From |\.|é|📬| \n|\r\n){0,400}",
                // ASCII, now and then with a line too long for 7bit.
                r"([ -~]{0,1100}\n(From |\.)?){0,4}",
            ]
        ) {
            let body = encode_body(&content);
            let cte = match body.encoding() {
                ContentTransferEncoding::SevenBit => "7bit",
                ContentTransferEncoding::QuotedPrintable => "quoted-printable",
                other => panic!("{other:?}"),
            };
            let wire = body.into_vec();
            prop_assert!(wire.is_ascii());
            let limit = if cte == "7bit" { MAX_LINE } else { QP_LINE };
            for line in wire.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                prop_assert!(line.len() <= limit);
                prop_assert!(!line.starts_with(b"From "));
                prop_assert!(!line.contains(&b'\r'));
                if cte != "7bit" {
                    prop_assert!(!line.starts_with(b"."));
                }
            }
            let mut raw = format!(
                "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
            )
            .into_bytes();
            raw.extend_from_slice(&wire);
            let parsed = mailparse::parse_mail(&raw).unwrap();
            let expected = content.replace("\r\n", "\n").replace('\n', "\r\n");
            prop_assert_eq!(parsed.get_body_raw().unwrap(), expected.into_bytes());
        }
    }
}
