//! Sending over SMTP: a [`Session`] is one sender's connection, opened on first use and
//! reused for the next message, through lettre (TLS, logins) or paperboy's own pipelining
//! client ([`super::smtp`]) for a plain relay. The file outbox goes through a session too, so
//! the send loop has one way to send whatever the transport.

use std::time::Duration;

use lettre::AsyncTransport;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::DEFAULT_MECHANISMS;
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use tokio::net::TcpStream;

use super::error::classify_smtp;
use super::{Formatted, Inner, SendError, SmtpTarget};
use crate::config::Tls;
use crate::telemetry::Flat;

/// One sender's SMTP connection: opened on first use, reused for the next message, dropped
/// and opened afresh after any error (the server's state after a failure is not worth
/// guessing).
pub struct Session {
    pub(super) inner: Inner,
    pub(super) connection: tokio::sync::Mutex<Option<Connection>>,
}

/// A session through lettre (TLS, logins), or through paperboy's own pipelining client (plain
/// TCP without a login: the local relay a large list should send through).
pub(super) enum Connection {
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
    pub(super) async fn connected(
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

#[cfg(test)]
mod tests {
    use crate::config::Transport;
    use crate::mail::Mailer;
    use crate::mail::test_support::to;

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
}
