//! An SMTP server inside the test process, so that the suite runs where Postfix's
//! `smtp-sink` is not installed: [`crate::helpers::SmtpSink`] starts this one unless the
//! `e2e` feature asks for the real thing.
//!
//! It speaks what paperboy's pipelining client and lettre use: EHLO (PIPELINING, 8BITMIME,
//! SMTPUTF8), HELO, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP and QUIT. Each accepted
//! message lands in the dump directory in the layout of `smtp-sink -d` (its `X-…-Args`
//! headers, its three-line `Received:` header, the message with LF line ends, an empty line),
//! so one reader serves both. It takes the smtp-sink switches the tests use to refuse or
//! stall, with smtp-sink's replies: `-r CMD` and `-f CMD` answer 4xx and 5xx (and, as in
//! smtp-sink, stop offering PIPELINING), `-q CMD` hangs up without a reply, `-Q CMD` says
//! 421 and hangs up, `-w SECS` waits before answering DATA. The tests at the end hold it to
//! smtp-sink's answers, and with `e2e` they check those answers against smtp-sink itself.
//!
//! It listens on 127.0.0.1 only, serves on a thread of its own (a current-thread tokio
//! runtime, so that it keeps answering while a test blocks its own threads on the binary),
//! and every read has a deadline. Stopping it drops the runtime and with it every open
//! connection, as killing smtp-sink does.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};

/// How long the server waits for a command or a line of a message: a client that goes quiet
/// this long is gone (smtp-sink's `-t` is 100 s; paperboy's own timeout in tests is 5 s).
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest line taken, command or message (RFC 5321 asks for 1000; this is lenient). A
/// longer one ends the session rather than be cut in two.
const MAX_LINE: u64 = 64 * 1024;
/// The largest message stored; larger ones are read to their end and refused.
const MAX_MESSAGE: usize = 32 * 1024 * 1024;
/// Commands in one session: the busiest test sends some hundreds.
const MAX_COMMANDS: usize = 100_000;
/// Sessions at once, as smtp-sink's `-m` default; more wait in the listen queue.
const MAX_SESSIONS: usize = 256;

/// What the server does when a command named by a switch arrives.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Refusal {
    /// `-r`: a 4xx reply.
    Soft,
    /// `-f`: a 5xx reply.
    Hard,
    /// `-q`: hangs up without replying.
    HangUp,
    /// `-Q`: 421, then hangs up.
    Close,
}

/// The server's behaviour, from smtp-sink's switches.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    refusals: Vec<(String, Refusal)>,
    data_delay: Duration,
}

impl Behaviour {
    /// Reads the switches of `smtp-sink` that the tests use (`-r`, `-f`, `-q`, `-Q` with a
    /// list of commands, `-w` with seconds). Any other switch panics, naming it: silently
    /// ignoring one would make a test pass for the wrong reason.
    pub fn from_switches(switches: &[String]) -> Self {
        let mut behaviour = Self::default();
        let mut args = switches.iter();
        while let Some(switch) = args.next() {
            let value = args
                .next()
                .unwrap_or_else(|| panic!("smtp-sink switch {switch} needs a value"));
            let refusal = match switch.as_str() {
                "-r" => Refusal::Soft,
                "-f" => Refusal::Hard,
                "-q" => Refusal::HangUp,
                "-Q" => Refusal::Close,
                "-w" => {
                    let secs: u64 = value
                        .parse()
                        .unwrap_or_else(|_| panic!("-w takes whole seconds, not {value:?}"));
                    behaviour.data_delay = Duration::from_secs(secs);
                    continue;
                }
                other => panic!(
                    "the in-process SMTP server does not know smtp-sink's {other}; \
                     add it to tests/api/smtp_server.rs"
                ),
            };
            // smtp-sink takes names separated by commas or white space, in any case.
            for command in value.split([',', ' ', '\t']).filter(|c| !c.is_empty()) {
                behaviour
                    .refusals
                    .push((command.to_ascii_uppercase(), refusal));
            }
        }
        behaviour
    }

    fn refusal(&self, command: &str) -> Option<Refusal> {
        self.refusals
            .iter()
            .find(|(c, _)| c == command)
            .map(|&(_, r)| r)
    }

    /// smtp-sink stops offering PIPELINING when it rejects commands (`-r` and `-f` imply
    /// its `-p`), so that a client sees each refusal before it sends the next command.
    fn pipelining(&self) -> bool {
        !self
            .refusals
            .iter()
            .any(|(_, r)| matches!(r, Refusal::Soft | Refusal::Hard))
    }
}

/// The server, listening from [`SmtpServer::start`] until it is dropped.
pub struct SmtpServer {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SmtpServer {
    /// Listens on 127.0.0.1:`port` (0: a free port) before it returns, and stores each
    /// accepted message as a file in `dir` (written beside it first, then moved in, so that
    /// a reader never sees half a message).
    pub fn start(port: u16, dir: &Path, behaviour: Behaviour) -> Self {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("the SMTP server cannot listen on 127.0.0.1:{port}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let spool = Arc::new(Spool::new(dir));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("smtp-server-{port}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the SMTP server");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).unwrap();
                    tokio::select! {
                        () = serve(listener, spool, Arc::new(behaviour)) => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime drops every session with its socket: to a client in
                // the middle of one, the server is gone, as when smtp-sink is killed.
                drop(runtime);
            })
            .expect("a thread for the SMTP server");
        Self {
            port,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for SmtpServer {
    /// Stops listening and closes every session; the port is free when this returns.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(listener: TcpListener, spool: Arc<Spool>, behaviour: Arc<Behaviour>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SESSIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((socket, peer)) => {
                let (spool, behaviour) = (spool.clone(), behaviour.clone());
                tokio::spawn(async move {
                    // A session that fails (the client went away, a deadline passed) just
                    // ends, as it does in smtp-sink; the test sees what the client reports.
                    let _ = session(socket, peer, &spool, &behaviour).await;
                    drop(slot);
                });
            }
            // Out of file descriptors and the like: give the system a moment rather than
            // spin; the loop ends when the server is stopped.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Where messages go: one file per message in the dump directory.
struct Spool {
    dir: PathBuf,
    incoming: PathBuf,
    next: AtomicU64,
}

impl Spool {
    fn new(dir: &Path) -> Self {
        let mut incoming = dir.as_os_str().to_owned();
        incoming.push(".incoming");
        let incoming = PathBuf::from(incoming);
        std::fs::create_dir_all(&incoming).unwrap();
        Self {
            dir: dir.to_path_buf(),
            incoming,
            next: AtomicU64::new(0),
        }
    }

    /// Writes the message with smtp-sink's headers in front and moves it into the dump
    /// directory; returns the file's name. Names sort in the order messages arrived (the
    /// clock, then a counter), across restarts of the server on the same directory too.
    fn store(&self, envelope: &Envelope, peer: IpAddr, message: &[u8]) -> std::io::Result<String> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!(
            "{nanos:020}.{:06}",
            self.next.fetch_add(1, Ordering::SeqCst)
        );
        let mut text = format!("X-Client-Addr: {peer}\nX-Client-Proto: ESMTP\n");
        if let Some(helo) = &envelope.helo {
            text.push_str(&format!("X-Helo-Args: {helo}\n"));
        }
        text.push_str(&format!("X-Mail-Args: {}\n", envelope.from));
        for to in &envelope.to {
            text.push_str(&format!("X-Rcpt-Args: {to}\n"));
        }
        let from = envelope.helo.clone().unwrap_or_else(|| format!("[{peer}]"));
        text.push_str(&format!(
            "Received: from {from} ([{peer}])\n\tby 127.0.0.1 (in-process sink) with ESMTP id {name};\n\t{}\n",
            chrono::Utc::now().to_rfc2822()
        ));
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(message);
        bytes.push(b'\n');
        let partial = self.incoming.join(&name);
        std::fs::write(&partial, &bytes)?;
        std::fs::rename(&partial, self.dir.join(&name))?;
        Ok(name)
    }
}

/// The transaction in progress.
#[derive(Default)]
struct Envelope {
    helo: Option<String>,
    from: String,
    to: Vec<String>,
    started: bool,
}

impl Envelope {
    fn reset(&mut self) {
        self.from.clear();
        self.to.clear();
        self.started = false;
    }
}

/// One SMTP session. Replies are collected and written when no complete command is waiting
/// in the input: a pipelining client gets the answers to a batch together, as from
/// smtp-sink (which matters for `-w`: the answers to MAIL and RCPT come with DATA's).
async fn session(
    socket: TcpStream,
    peer: SocketAddr,
    spool: &Spool,
    behaviour: &Behaviour,
) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    let (read, write) = socket.into_split();
    let mut input = BufReader::new(read);
    let mut out = Replies {
        write,
        pending: Vec::new(),
    };
    match behaviour.refusal("CONNECT") {
        Some(Refusal::HangUp) => return Ok(()),
        Some(Refusal::Close) => return out.close().await,
        _ => {}
    }
    out.push("220 127.0.0.1 ESMTP in-process sink");
    let mut envelope = Envelope::default();
    for _ in 0..MAX_COMMANDS {
        if !input.buffer().contains(&b'\n') {
            out.flush().await?;
        }
        let Some(line) = read_line(&mut input).await? else {
            return Ok(());
        };
        let line = String::from_utf8_lossy(strip_line_end(&line)).into_owned();
        let (verb, args) = match line.split_once(' ') {
            Some((verb, args)) => (verb.to_ascii_uppercase(), args.trim().to_string()),
            None => (line.trim().to_ascii_uppercase(), String::new()),
        };
        match behaviour.refusal(&verb) {
            Some(Refusal::HangUp) => {
                out.flush().await?;
                return Ok(());
            }
            Some(Refusal::Close) => return out.close().await,
            Some(Refusal::Soft) => {
                out.push("450 4.3.0 Error: command failed");
                continue;
            }
            Some(Refusal::Hard) => {
                out.push("500 5.3.0 Error: command failed");
                continue;
            }
            None => {}
        }
        match verb.as_str() {
            "EHLO" => {
                envelope.reset();
                envelope.helo = Some(args);
                let mut keywords = vec!["127.0.0.1"];
                if behaviour.pipelining() {
                    keywords.push("PIPELINING");
                }
                keywords.extend(["8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"]);
                let last = keywords.len() - 1;
                for (i, keyword) in keywords.iter().enumerate() {
                    let sep = if i == last { ' ' } else { '-' };
                    out.push(&format!("250{sep}{keyword}"));
                }
            }
            "HELO" => {
                envelope.reset();
                envelope.helo = Some(args);
                out.push("250 127.0.0.1");
            }
            "MAIL" => match strip_prefix_ignore_case(&args, "FROM:") {
                _ if envelope.started => out.push("503 5.5.1 Error: nested MAIL command"),
                Some(from) => {
                    envelope.from = from.trim().to_string();
                    envelope.started = true;
                    out.push("250 2.1.0 Ok");
                }
                None => out.push("501 5.5.4 Syntax: MAIL FROM:<address>"),
            },
            "RCPT" => match strip_prefix_ignore_case(&args, "TO:") {
                _ if !envelope.started => out.push("503 5.5.1 Error: need MAIL command"),
                Some(to) => {
                    envelope.to.push(to.trim().to_string());
                    out.push("250 2.1.5 Ok");
                }
                None => out.push("501 5.5.4 Syntax: RCPT TO:<address>"),
            },
            "DATA" => {
                if envelope.to.is_empty() {
                    out.push("503 5.5.1 Error: need RCPT command");
                    continue;
                }
                // smtp-sink's -w: the answer to DATA (and the ones held with it) waits.
                tokio::time::sleep(behaviour.data_delay).await;
                out.push("354 End data with <CR><LF>.<CR><LF>");
                out.flush().await?;
                let Some(message) = read_message(&mut input).await? else {
                    // The client went away before the final dot: nothing was delivered.
                    return Ok(());
                };
                match behaviour.refusal(".") {
                    Some(Refusal::HangUp) => return Ok(()),
                    Some(Refusal::Close) => return out.close().await,
                    Some(Refusal::Soft) => out.push("450 4.3.0 Error: command failed"),
                    Some(Refusal::Hard) => out.push("500 5.3.0 Error: command failed"),
                    None if message.len() > MAX_MESSAGE => {
                        out.push("552 5.3.4 Error: message too large");
                    }
                    None => {
                        let name = spool.store(&envelope, peer.ip(), &message)?;
                        out.push(&format!("250 2.0.0 Ok: queued as {name}"));
                    }
                }
                envelope.reset();
            }
            "RSET" => {
                envelope.reset();
                out.push("250 2.0.0 Ok");
            }
            "NOOP" => out.push("250 2.0.0 Ok"),
            "QUIT" => {
                out.push("221 2.0.0 Bye");
                return out.flush().await;
            }
            _ => out.push("502 5.5.2 Error: command not recognized"),
        }
    }
    out.push("421 4.7.0 Error: too many commands");
    out.flush().await
}

/// Replies waiting to be written.
struct Replies {
    write: OwnedWriteHalf,
    pending: Vec<u8>,
}

impl Replies {
    fn push(&mut self, reply: &str) {
        self.pending.extend_from_slice(reply.as_bytes());
        self.pending.extend_from_slice(b"\r\n");
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            self.write.write_all(&self.pending).await?;
            self.pending.clear();
        }
        Ok(())
    }

    /// smtp-sink's `-Q`: what is pending, a 421, and the end of the session.
    async fn close(&mut self) -> std::io::Result<()> {
        self.push("421 4.0.0 Server closing connection");
        self.flush().await?;
        self.write.shutdown().await
    }
}

/// One line with its line end, at most [`MAX_LINE`] bytes, within [`READ_TIMEOUT`]; `None`
/// when the client closed the connection.
async fn read_line(
    input: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let mut limited = (&mut *input).take(MAX_LINE);
    match tokio::time::timeout(READ_TIMEOUT, limited.read_until(b'\n', &mut line)).await {
        Ok(Ok(0)) => Ok(None),
        Ok(Ok(n)) if n as u64 == MAX_LINE && !line.ends_with(b"\n") => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "a line longer than the server takes",
        )),
        Ok(Ok(_)) => Ok(Some(line)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client said nothing for too long",
        )),
    }
}

/// The message after DATA up to its final dot, unstuffed, with LF line ends (as smtp-sink
/// dumps it). Beyond [`MAX_MESSAGE`] the rest is read but not kept. `None` when the client
/// closed the connection first.
async fn read_message(
    input: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut message = Vec::new();
    // Bounded by the deadline of each read and by the size: a line takes at least a byte.
    loop {
        let Some(line) = read_line(input).await? else {
            return Ok(None);
        };
        let content = strip_line_end(&line);
        if content == b"." {
            return Ok(Some(message));
        }
        if message.len() <= MAX_MESSAGE {
            message.extend_from_slice(content.strip_prefix(b".").unwrap_or(content));
            message.push(b'\n');
        }
    }
}

fn strip_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

mod tests {
    use std::time::Instant;

    use super::*;
    use crate::helpers::{PageServer, Reply, TestApp, fixture, read_dump};

    fn switches(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    /// A dump directory, as the sink makes one.
    fn dump_dir() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("mail");
        std::fs::create_dir(&dir).unwrap();
        (root, dir)
    }

    /// A message as DATA carries it: a line that starts with a dot (doubled on the wire)
    /// and one that is not ASCII.
    const MESSAGE: &[u8] =
        b"Subject: parity\r\nX-Test: 1\r\n\r\n..a line that starts with a dot\r\n\xc3\x9cber\r\nlast\r\n";
    /// The same message as the dump holds it: unstuffed, LF line ends, an empty line after.
    const STORED: &[u8] =
        b"Subject: parity\nX-Test: 1\n\n.a line that starts with a dot\n\xc3\x9cber\nlast\n\n";

    /// What a client saw of one scripted session.
    #[derive(Debug, PartialEq)]
    struct Seen {
        /// The reply code to each command the client got an answer to, in order.
        codes: Vec<u16>,
        pipelining: bool,
        /// Whether the server hung up before the client said QUIT.
        hung_up: bool,
    }

    /// Plays one session against the server on `port`, as paperboy's client does with a
    /// pipelining server: greeting, EHLO, then MAIL, RCPT and DATA in one write, the message
    /// if DATA was welcome, QUIT. Returns what it saw and how long the answer to DATA took.
    async fn converse(port: u16) -> (Seen, Duration) {
        let socket = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut input = BufReader::new(socket);
        let mut seen = Seen {
            codes: Vec::new(),
            pipelining: false,
            hung_up: false,
        };
        // Each reply is the code of its last line; None once the server has hung up.
        async fn reply(input: &mut BufReader<TcpStream>, lines: &mut Vec<String>) -> Option<u16> {
            loop {
                let mut line = String::new();
                let read = input.read_line(&mut line);
                let n = tokio::time::timeout(Duration::from_secs(10), read)
                    .await
                    .expect("the server answers within 10 s")
                    .ok()?;
                if n == 0 {
                    return None;
                }
                lines.push(line.trim_end().to_string());
                if line.as_bytes().get(3) != Some(&b'-') {
                    return line.get(..3)?.parse().ok();
                }
            }
        }
        async fn send(input: &mut BufReader<TcpStream>, bytes: &[u8]) {
            input.get_mut().write_all(bytes).await.unwrap();
        }
        let mut lines = Vec::new();
        let mut took = Duration::ZERO;
        'session: {
            for (write, replies) in [
                (&b""[..], 1),
                (b"EHLO client.example\r\n", 1),
                (
                    b"MAIL FROM:<digest@example.org>\r\nRCPT TO:<ann@example.org>\r\nDATA\r\n",
                    3,
                ),
            ] {
                send(&mut input, write).await;
                let asked = Instant::now();
                for _ in 0..replies {
                    let Some(code) = reply(&mut input, &mut lines).await else {
                        seen.hung_up = true;
                        break 'session;
                    };
                    seen.codes.push(code);
                }
                took = asked.elapsed();
            }
            if seen.codes.last() == Some(&354) {
                send(&mut input, MESSAGE).await;
                send(&mut input, b".\r\n").await;
                match reply(&mut input, &mut lines).await {
                    Some(code) => seen.codes.push(code),
                    None => {
                        seen.hung_up = true;
                        break 'session;
                    }
                }
            }
            send(&mut input, b"QUIT\r\n").await;
            match reply(&mut input, &mut lines).await {
                Some(code) => seen.codes.push(code),
                None => seen.hung_up = true,
            }
        }
        seen.pipelining = lines.iter().any(|l| l.ends_with("PIPELINING"));
        (seen, took)
    }

    /// Each set of switches the tests use, and what smtp-sink answers to it (as observed
    /// from Postfix 3.x; the `e2e` test below checks it against smtp-sink itself).
    fn cases() -> Vec<(Vec<String>, Seen)> {
        let seen = |codes: &[u16], pipelining, hung_up| Seen {
            codes: codes.to_vec(),
            pipelining,
            hung_up,
        };
        vec![
            (
                switches(&[]),
                seen(&[220, 250, 250, 250, 354, 250, 221], true, false),
            ),
            (
                switches(&["-w", "1"]),
                seen(&[220, 250, 250, 250, 354, 250, 221], true, false),
            ),
            (
                switches(&["-r", "RCPT"]),
                seen(&[220, 250, 250, 450, 503, 221], false, false),
            ),
            (
                switches(&["-f", "RCPT"]),
                seen(&[220, 250, 250, 500, 503, 221], false, false),
            ),
            (
                switches(&["-Q", "RCPT"]),
                seen(&[220, 250, 250, 421], true, true),
            ),
            (
                switches(&["-q", "DATA"]),
                seen(&[220, 250, 250, 250], true, true),
            ),
        ]
    }

    /// Runs every case against servers made by `start` (switches, dump directory → port
    /// and a guard that stops the server when dropped), checking the replies, the `-w`
    /// delay and the one message stored.
    async fn check_cases<G>(start: impl Fn(&[String], &Path) -> (u16, G)) {
        for (switches, expected) in cases() {
            let (_root, dir) = dump_dir();
            let (port, server) = start(&switches, &dir);
            let (seen, took) = converse(port).await;
            assert_eq!(seen, expected, "{switches:?}");
            if switches.first().is_some_and(|s| s == "-w") {
                assert!(took >= Duration::from_secs(1), "-w 1 answered in {took:?}");
            }
            let messages = read_dump(&dir);
            if expected.codes.contains(&354) {
                assert_eq!(messages.len(), 1, "{switches:?}");
                assert_eq!(messages[0].recipients, ["ann@example.org"]);
                assert_eq!(
                    String::from_utf8_lossy(&messages[0].raw),
                    String::from_utf8_lossy(STORED),
                    "{switches:?}"
                );
            } else {
                assert!(messages.is_empty(), "{switches:?}");
            }
            drop(server);
        }
    }

    fn in_process(switches: &[String], dir: &Path) -> (u16, SmtpServer) {
        let server = SmtpServer::start(0, dir, Behaviour::from_switches(switches));
        (server.port(), server)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_and_stores_as_smtp_sink_does() {
        check_cases(in_process).await;
    }

    /// The same script against Postfix's smtp-sink: the table above is smtp-sink's
    /// behaviour, not a guess, and the in-process server keeps matching it.
    #[cfg(feature = "e2e")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn smtp_sink_answers_as_the_table_says() {
        check_cases(crate::helpers::postfix_sink).await;
    }

    /// lettre (paperboy's path for TLS and logins) sends through it, and what it stores
    /// parses back as what was sent.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lettre_sends_through_it() {
        use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
        let (_root, dir) = dump_dir();
        let server = SmtpServer::start(0, &dir, Behaviour::default());
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(server.port())
            .timeout(Some(Duration::from_secs(10)))
            .build();
        for (i, to) in ["ann@example.org", "bob@example.com"].iter().enumerate() {
            let message = Message::builder()
                .from("paperboy <digest@example.org>".parse().unwrap())
                .to(to.parse().unwrap())
                .subject(format!("Über {i}"))
                .header(lettre::message::header::ContentType::TEXT_PLAIN)
                .body(format!(".starts with a dot\nand ends with ünïcödé {i}\n"))
                .unwrap();
            transport.send(message).await.unwrap();
        }
        let mut messages = read_dump(&dir);
        assert_eq!(messages.len(), 2);
        messages.sort_by_key(|m| m.recipients.clone());
        for (i, m) in messages.iter().enumerate() {
            assert_eq!(m.header("Subject").unwrap(), format!("Über {i}"));
            // lettre may encode the body (and its line ends) either way; the text counts.
            let body = m.parsed().get_body().unwrap().replace("\r\n", "\n");
            assert_eq!(
                body.trim_end(),
                format!(".starts with a dot\nand ends with ünïcödé {i}")
            );
        }
        assert_eq!(messages[0].recipients, ["ann@example.org"]);
        assert_eq!(messages[1].recipients, ["bob@example.com"]);
    }

    /// The binary's own pipelining client against it: a digest arrives whole. (Without
    /// `e2e` every integration test does this; with it, this test still does.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn paperboy_sends_a_digest_through_it() {
        let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-09.html"))).await;
        let (_root, dir) = dump_dir();
        let server = SmtpServer::start(0, &dir, Behaviour::default());
        let app = TestApp::new(&pages.url(), server.port(), "");
        app.add("ann@example.org", &["--confirmed", "--max-items", "3"]);
        let r = app.run(&["run-once", "--date", "2025-12-09"]);
        assert!(r.ok(), "{}", r.stderr);
        let messages = read_dump(&dir);
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].recipients, ["ann@example.org"]);
        assert_eq!(messages[0].paper_ids().len(), 3);
        assert!(messages[0].part("text/html").contains("</html>"));
    }

    #[test]
    fn stopping_closes_the_port_and_open_sessions() {
        let (_root, dir) = dump_dir();
        let server = SmtpServer::start(0, &dir, Behaviour::default());
        let port = server.port();
        let mut session = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        session
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut greeting = [0u8; 3];
        std::io::Read::read_exact(&mut session, &mut greeting).unwrap();
        assert_eq!(&greeting, b"220");
        drop(server);
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
        let mut rest = Vec::new();
        // The rest of the greeting, then the end of the stream (or a reset), not a hang.
        let _ = std::io::Read::read_to_end(&mut session, &mut rest);
        // It can start again on the same port at once, as the tests' restarts do.
        let again = SmtpServer::start(port, &dir, Behaviour::default());
        assert_eq!(again.port(), port);
    }

    #[test]
    #[should_panic(expected = "does not know smtp-sink's -W")]
    fn an_unknown_switch_is_refused() {
        Behaviour::from_switches(&switches(&["-W", "DATA:1"]));
    }
}
