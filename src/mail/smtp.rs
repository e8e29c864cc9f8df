//! A small SMTP client for the send loop's most common set-up: plain TCP to a relay (a local
//! Postfix, an smarthost on the same network) with no login, as the README recommends at scale.
//!
//! It exists for speed. lettre waits for the answer to each of MAIL, RCPT and DATA before
//! sending the next, and copies every message byte by byte to escape dots; this client sends
//! the three commands in one write when the server offers PIPELINING (RFC 2920), so a message
//! costs two round trips instead of four, and escapes dots by searching for line starts. It
//! also lets the send loop hold a message's final dot until the previous acceptance is on
//! disk (see `edition::deliver`), so the disk sync overlaps the next message's transfer. TLS and
//! logins still go through lettre (see `mail::Session`).
//!
//! The figure: 537 digests/s through this client against 339/s through lettre (median of
//! three interleaved pairs; this client was 1.4–1.6× faster in each), 10,000 subscribers to
//! Postfix's smtp-sink on loopback, concurrency 4, SQLite, on the 2-core benchmark machine
//! under load, 2026-12-01: `BENCH_SUBSCRIBERS=10000 BENCH_STORE_ENGINES=sqlite cargo bench
//! --bench send_rate`, the lettre runs with `PAPERBOY_MAIL__SMTP__USERNAME` and
//! `PAPERBOY_SMTP_PASSWORD` set (a login takes the lettre path). See bench/RESULTS.md.

use lettre::address::Envelope;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A failure, and whether trying again could help: a 5xx reply is permanent; a 4xx, a
/// dropped connection or a reply that cannot be read is not. The mailer sorts it with the
/// failures of its other transports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text}")]
pub struct Error {
    pub permanent: bool,
    text: String,
}

impl Error {
    fn permanent(text: impl Into<String>) -> Self {
        Self {
            permanent: true,
            text: text.into(),
        }
    }

    fn transient(text: impl Into<String>) -> Self {
        Self {
            permanent: false,
            text: text.into(),
        }
    }
}

/// Longest reply accepted, all lines together: a server that talks on and on is broken.
const MAX_REPLY: usize = 64 * 1024;

/// One open session with the server, after EHLO.
pub struct Client {
    stream: BufReader<TcpStream>,
    pipelining: bool,
    eight_bit: bool,
    smtputf8: bool,
    broken: bool,
}

/// A reply: its code and its text, lines joined.
struct Reply {
    code: u16,
    text: String,
}

impl Reply {
    fn check(self, expected: u16) -> Result<Self, Error> {
        if self.code == expected {
            return Ok(self);
        }
        let text = format!("{} {}", self.code, self.text);
        Err(if (500..600).contains(&self.code) {
            Error::permanent(text)
        } else {
            Error::transient(text)
        })
    }
}

fn network(e: std::io::Error) -> Error {
    Error::transient(format!("connection lost: {e}"))
}

impl Client {
    /// Connects to `host:port`, reads the greeting and says EHLO as `hello`.
    pub async fn connect(host: &str, port: u16, hello: &str) -> Result<Self, Error> {
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| Error::transient(format!("connecting to {host}:{port}: {e}")))?;
        // A message's last write is small: without this it would wait for the server's
        // delayed ACK (40 ms) every time.
        tcp.set_nodelay(true)
            .map_err(|e| Error::transient(format!("setting up the connection: {e}")))?;
        let mut client = Self {
            stream: BufReader::new(tcp),
            pipelining: false,
            eight_bit: false,
            smtputf8: false,
            broken: false,
        };
        client.reply().await?.check(220)?;
        client.write(format!("EHLO {hello}\r\n").as_bytes()).await?;
        let ehlo = client.reply().await?.check(250)?;
        for line in ehlo.text.lines().skip(1) {
            let keyword = line.split_whitespace().next().unwrap_or("");
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => client.pipelining = true,
                "8BITMIME" => client.eight_bit = true,
                "SMTPUTF8" => client.smtputf8 = true,
                _ => {}
            }
        }
        Ok(client)
    }

    /// Whether an earlier failure left the session unusable.
    pub fn has_broken(&self) -> bool {
        self.broken
    }

    /// Sends one message: [`Client::start`] then [`Client::finish`].
    pub async fn send(&mut self, envelope: &Envelope, message: &[u8]) -> Result<(), Error> {
        self.start(envelope, message).await?;
        self.finish().await
    }

    /// Sends everything of a message but its final dot: MAIL, RCPT for each recipient and
    /// DATA (in one write when the server pipelines), then the message, dot-escaped. The
    /// server accepts nothing before [`Client::finish`]; a session dropped in between
    /// delivers nothing.
    pub async fn start(&mut self, envelope: &Envelope, message: &[u8]) -> Result<(), Error> {
        // Any failure leaves the server in a state not worth guessing: the caller opens a
        // new session.
        self.broken = true;
        let mut params = String::new();
        let addresses = envelope
            .from()
            .into_iter()
            .chain(envelope.to())
            .map(|a| a.as_ref());
        if addresses.clone().any(|a: &str| !a.is_ascii()) {
            if !self.smtputf8 {
                return Err(Error::permanent(
                    "the address is not ASCII and the server does not take SMTPUTF8",
                ));
            }
            params.push_str(" SMTPUTF8");
        }
        if !message.is_ascii() {
            if !self.eight_bit {
                return Err(Error::permanent(
                    "the message is not 7-bit and the server does not take 8BITMIME",
                ));
            }
            params.push_str(" BODY=8BITMIME");
        }
        let from = envelope.from().map_or("", |a| a.as_ref());
        let mut commands = vec![format!("MAIL FROM:<{from}>{params}\r\n")];
        commands.extend(envelope.to().iter().map(|to| format!("RCPT TO:<{to}>\r\n")));
        commands.push("DATA\r\n".into());
        let expected = |i: usize| if i + 1 == commands.len() { 354 } else { 250 };
        if self.pipelining {
            self.write(commands.concat().as_bytes()).await?;
            // Every command gets its answer; the first refusal is the one that counts.
            let mut first_error = None;
            for i in 0..commands.len() {
                let reply = self.reply().await?;
                if let Err(e) = reply.check(expected(i)) {
                    first_error.get_or_insert(e);
                }
            }
            if let Some(e) = first_error {
                return Err(e);
            }
        } else {
            for (i, command) in commands.iter().enumerate() {
                self.write(command.as_bytes()).await?;
                self.reply().await?.check(expected(i))?;
            }
        }
        self.write(&dot_escaped(message)).await
    }

    /// Ends the message [`Client::start`] sent with its final dot, and reads the verdict.
    pub async fn finish(&mut self) -> Result<(), Error> {
        self.write(b".\r\n").await?;
        self.reply().await?.check(250)?;
        self.broken = false;
        Ok(())
    }

    /// Ends the session politely.
    pub async fn quit(&mut self) {
        if self.write(b"QUIT\r\n").await.is_ok() {
            let _ = self.reply().await;
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let stream = self.stream.get_mut();
        stream.write_all(bytes).await.map_err(network)?;
        stream.flush().await.map_err(network)
    }

    /// Reads one reply, all its lines ("250-…" continues, "250 …" ends).
    async fn reply(&mut self) -> Result<Reply, Error> {
        let mut text = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            let n = (&mut self.stream)
                .take(MAX_REPLY as u64)
                .read_line(&mut line)
                .await
                .map_err(network)?;
            if n == 0 {
                return Err(Error::transient("the server closed the connection"));
            }
            let trimmed = line.trim_end_matches(['\r', '\n']);
            let code = trimmed
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .filter(|c| (200..600).contains(c))
                .ok_or_else(|| Error::transient(format!("not an SMTP reply: {:.80}", trimmed)))?;
            let rest = &trimmed[3..];
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(rest.get(1..).unwrap_or(""));
            if text.len() > MAX_REPLY {
                return Err(Error::transient("the server's reply is too long"));
            }
            if !rest.starts_with('-') {
                return Ok(Reply { code, text });
            }
        }
    }
}

/// The message as DATA carries it, up to the final dot: a dot starting a line doubled, and
/// ending with a line break.
fn dot_escaped(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 8);
    let mut at = 0;
    if message.first() == Some(&b'.') {
        out.push(b'.');
    }
    for i in memchr::memmem::find_iter(message, b"\n.") {
        out.extend_from_slice(&message[at..=i]);
        out.push(b'.');
        at = i + 1;
    }
    out.extend_from_slice(&message[at..]);
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn dots_at_line_starts_are_doubled() {
        assert_eq!(dot_escaped(b"a\r\n.b\r\n..c"), b"a\r\n..b\r\n...c\r\n");
        assert_eq!(dot_escaped(b".x\r\n"), b"..x\r\n");
        assert_eq!(dot_escaped(b"no dots. here\r\n"), b"no dots. here\r\n");
        assert_eq!(dot_escaped(b""), b"\r\n");
    }

    /// A scripted server: answers each command, and each message after its final dot,
    /// with the next of `replies` (a reply may span lines), and returns what it was sent.
    /// Answers to MAIL and RCPT are held back until DATA arrives, as only a pipelining
    /// client sends it without waiting for them.
    async fn server(listener: TcpListener, greeting: &str, replies: Vec<&'static str>) -> String {
        let (socket, _) = listener.accept().await.unwrap();
        let mut socket = BufReader::new(socket);
        socket
            .get_mut()
            .write_all(greeting.as_bytes())
            .await
            .unwrap();
        let mut seen = String::new();
        let mut replies = replies.into_iter();
        let (mut in_data, mut held) = (false, String::new());
        loop {
            let mut line = String::new();
            if socket.read_line(&mut line).await.unwrap() == 0 {
                break;
            }
            seen.push_str(&line);
            if in_data && line != ".\r\n" {
                continue;
            }
            let reply = replies.next().unwrap_or("221 bye\r\n");
            in_data = reply.starts_with("354");
            held.push_str(reply);
            if line.starts_with("MAIL") || line.starts_with("RCPT") {
                continue;
            }
            socket.get_mut().write_all(held.as_bytes()).await.unwrap();
            held.clear();
            if line.starts_with("QUIT") {
                break;
            }
        }
        seen
    }

    fn envelope() -> Envelope {
        Envelope::new(
            Some("digest@example.org".parse().unwrap()),
            vec!["ann@example.org".parse().unwrap()],
        )
        .unwrap()
    }

    #[tokio::test]
    async fn commands_are_pipelined_and_refusals_are_classified() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let script = vec![
            "250-sink.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
            "250 ok\r\n",
            "250 ok\r\n",
            "354 go on\r\n",
            "250 queued\r\n",
            "250 ok\r\n",
            "550 no such user\r\n",
            "503 no valid recipients\r\n",
        ];
        let server = tokio::spawn(server(listener, "220 hello\r\n", script));
        let mut client = Client::connect("127.0.0.1", port, "paperboy.test")
            .await
            .unwrap();
        assert!(client.pipelining && client.eight_bit && !client.smtputf8);
        // A client that waited for each answer would wait here for ever.
        let envelope = envelope();
        let send = client.send(&envelope, b"Subject: x\r\n\r\n.hidden\r\n");
        tokio::time::timeout(std::time::Duration::from_secs(10), send)
            .await
            .expect("MAIL, RCPT and DATA sent without waiting for their answers")
            .unwrap();
        assert!(!client.has_broken());
        match client.send(&envelope, b"Subject: y\r\n\r\nbody").await {
            Err(e) if e.permanent => assert!(e.to_string().starts_with("550 no such user"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(client.has_broken());
        drop(client);
        let seen = server.await.unwrap();
        assert!(
            seen.contains(
                "MAIL FROM:<digest@example.org>\r\nRCPT TO:<ann@example.org>\r\nDATA\r\n"
            )
        );
        assert!(seen.contains("\r\n\r\n..hidden\r\n.\r\n"), "{seen:?}");
    }

    #[tokio::test]
    async fn a_server_that_hangs_up_is_a_transient_failure() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            socket.write_all(b"421 too busy\r\n").await.unwrap();
        });
        match Client::connect("127.0.0.1", port, "paperboy.test").await {
            Err(e) if !e.permanent => assert!(e.to_string().starts_with("421"), "{e}"),
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("connected to a server that refused"),
        }
    }
}
