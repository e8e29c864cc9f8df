//! The parts tests run against: an SMTP sink (Postfix's `smtp-sink` with the `e2e` feature,
//! else the in-process server of `smtp_server.rs`), an HTTP server serving fixture pages, and
//! the paperboy binary with its own config and data directory.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

pub fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A page shaped like Hugging Face's, with the given `dailyPapers` entries (JSON values).
pub fn island_page(date: &str, trending: bool, entries: &[serde_json::Value]) -> String {
    let props = serde_json::json!({
        "dailyPapers": entries,
        "dateString": date,
        "periodType": "day",
        "isTrending": trending,
    });
    let escaped = props
        .to_string()
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        "<!doctype html><html><body><div class=\"SVELTE_HYDRATER contents\" data-target=\"DailyPapers\" data-props=\"{escaped}\"></div></body></html>"
    )
}

/// What the fixture server answers, whatever the path.
#[derive(Clone)]
pub enum Reply {
    Page(String),
    /// An error status (with `Retry-After: 120`, which matters for 429).
    Status(u16),
    /// 429 asking to retry after this many seconds.
    RateLimited(u64),
    /// The page, after a delay.
    Slow(Duration, String),
    /// This many bytes of filler, streamed in 64 KiB chunks without a Content-Length, each
    /// chunk made only when the client reads on; [`PageServer::streamed`] counts them.
    Streamed(usize),
}

/// An HTTP server on a loopback port whose answers a test can script: each request takes
/// the next reply of the queue, and the last one stays; a path given its own reply with
/// [`PageServer::route`] always gets that one instead.
pub struct PageServer {
    pub addr: SocketAddr,
    replies: Arc<Mutex<std::collections::VecDeque<Reply>>>,
    routes: Arc<Mutex<std::collections::HashMap<String, Reply>>>,
    hits: Arc<std::sync::atomic::AtomicUsize>,
    streamed: Arc<std::sync::atomic::AtomicUsize>,
}

impl PageServer {
    pub async fn start(initial: Reply) -> Self {
        let replies = Arc::new(Mutex::new(std::collections::VecDeque::from([initial])));
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let routes = Arc::new(Mutex::new(std::collections::HashMap::new()));
        let streamed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (r, h, paths, made) = (
            replies.clone(),
            hits.clone(),
            routes.clone(),
            streamed.clone(),
        );
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let (r, h, paths, made) = (r.clone(), h.clone(), paths.clone(), made.clone());
            async move {
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let routed = uri
                    .path_and_query()
                    .and_then(|p| paths.lock().unwrap().get(p.as_str()).cloned());
                let current = {
                    let mut q = r.lock().unwrap();
                    if let Some(reply) = routed {
                        reply
                    } else if q.len() > 1 {
                        q.pop_front().unwrap()
                    } else {
                        q.front().unwrap().clone()
                    }
                };
                let response: Response = match current {
                    Reply::RateLimited(secs) => (
                        StatusCode::TOO_MANY_REQUESTS,
                        [(axum::http::header::RETRY_AFTER, secs.to_string())],
                        "slow down",
                    )
                        .into_response(),
                    Reply::Slow(delay, body) => {
                        tokio::time::sleep(delay).await;
                        body.into_response()
                    }
                    Reply::Streamed(total) => {
                        const CHUNK: usize = 64 * 1024;
                        let chunks = futures_util::stream::unfold(0usize, move |sent| {
                            let made = made.clone();
                            async move {
                                (sent < total).then(|| {
                                    let n = CHUNK.min(total - sent);
                                    made.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                                    (Ok::<_, std::io::Error>(vec![b'x'; n]), sent + n)
                                })
                            }
                        });
                        axum::body::Body::from_stream(chunks).into_response()
                    }
                    Reply::Page(body) => (
                        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
                        body,
                    )
                        .into_response(),
                    Reply::Status(code) => (
                        StatusCode::from_u16(code).unwrap(),
                        [(axum::http::header::RETRY_AFTER, "120")],
                        "error page",
                    )
                        .into_response(),
                };
                response
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            addr,
            replies,
            routes,
            hits,
            streamed,
        }
    }

    /// The bytes of [`Reply::Streamed`] bodies made so far.
    pub fn streamed(&self) -> usize {
        self.streamed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Requests for exactly `path_and_query` (`/api/daily_papers?date=2025-12-09`) always get
    /// `reply`; the others still take the queue's.
    pub fn route(&self, path_and_query: &str, reply: Reply) {
        self.routes
            .lock()
            .unwrap()
            .insert(path_and_query.to_string(), reply);
    }

    /// The server's address with `path_and_query` on it.
    pub fn at(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    pub fn set(&self, reply: Reply) {
        self.script(vec![reply]);
    }

    /// The next requests get these replies in turn; the last one then stays.
    pub fn script(&self, replies: Vec<Reply>) {
        *self.replies.lock().unwrap() = replies.into();
    }

    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn serve_fixture(&self, name: &str) {
        self.set(Reply::Page(fixture(name)));
    }

    pub fn url(&self) -> String {
        format!("http://{}/papers/trending", self.addr)
    }
}

/// A port nothing listens on right now.
/// A loopback port nothing listens on now, and never handed out before in this process:
/// the kernel may give a port it just gave back to another test, whose server would then
/// answer for this one.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("no loopback port left that was not handed out before");
}

fn wait_for_port(port: u16, up: bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let listening = TcpStream::connect(("127.0.0.1", port)).is_ok();
        if listening == up {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// One message as the sink stored it.
pub struct Received {
    pub recipients: Vec<String>,
    /// The envelope sender (MAIL FROM), without its angle brackets.
    pub sender: String,
    /// The message as the client sent it, without the sink's own headers.
    pub raw: Vec<u8>,
}

impl Received {
    pub fn parsed(&self) -> mailparse::ParsedMail<'_> {
        mailparse::parse_mail(&self.raw).expect("a MIME message")
    }

    pub fn header(&self, name: &str) -> Option<String> {
        use mailparse::MailHeaderMap;
        self.parsed().headers.get_first_value(name)
    }

    pub fn part(&self, mime: &str) -> String {
        let parsed = self.parsed();
        let part = parsed
            .subparts
            .iter()
            .find(|p| p.ctype.mimetype == mime)
            .unwrap_or_else(|| panic!("no {mime} part"));
        part.get_body().unwrap()
    }

    /// The papers of the digest in order, read from the text part.
    pub fn paper_ids(&self) -> Vec<String> {
        self.part("text/plain")
            .lines()
            .filter_map(|l| l.trim().strip_prefix("https://huggingface.co/papers/"))
            .map(str::to_string)
            .collect()
    }
}

/// The messages in a dump directory in the layout of `smtp-sink -d` (one file each, the
/// sink's `X-…-Args` headers and its three-line `Received:` header first), in the order of
/// their file names.
pub fn read_dump(dir: &Path) -> Vec<Received> {
    read_complete(dir, &[])
}

/// [`read_dump`] leaving out the files in `busy`: those a server is still writing.
fn read_complete(dir: &Path, busy: &[PathBuf]) -> Vec<Received> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !busy.contains(p))
        .collect();
    files.sort();
    files
        .iter()
        .filter_map(|f| {
            // smtp-sink removes the file of a transaction cut short (a killed run), and may
            // do so between the listing and this read: nothing was delivered.
            let bytes = std::fs::read(f).ok()?;
            let text = String::from_utf8_lossy(&bytes);
            // A transaction the client abandoned before sending the message (a killed
            // run) leaves a file with the envelope only: nothing was delivered.
            let start = text.find("\nReceived: from")?;
            let recipients = text
                .lines()
                .take_while(|l| !l.starts_with("Received:"))
                .filter_map(|l| l.strip_prefix("X-Rcpt-Args: "))
                .map(|a| {
                    a.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_string()
                })
                .collect();
            let sender = text
                .lines()
                .take_while(|l| !l.starts_with("Received:"))
                .find_map(|l| l.strip_prefix("X-Mail-Args: "))
                .and_then(|a| a.split_whitespace().next())
                .unwrap_or_default()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string();
            // The sink's own headers end with its three-line Received header.
            let after = &text[start + 1..];
            let mut lines = after.split_inclusive('\n');
            let mut skipped = 0;
            for _ in 0..3 {
                skipped += lines.next().map_or(0, str::len);
            }
            Some(Received {
                recipients,
                sender,
                raw: after.as_bytes()[skipped..].to_vec(),
            })
        })
        .collect()
}

/// What receives the tests' mail. With the `e2e` feature, Postfix's `smtp-sink`; without
/// it, the SMTP server of `smtp_server.rs`, inside this process, which answers and stores
/// as smtp-sink does (its tests hold it to that), so the suite needs nothing but Rust.
#[cfg(feature = "e2e")]
type SinkServer = PostfixSink;
#[cfg(not(feature = "e2e"))]
type SinkServer = crate::smtp_server::SmtpServer;

#[cfg(not(feature = "e2e"))]
fn start_sink_server(port: u16, dir: &Path, switches: &[String]) -> SinkServer {
    let behaviour = crate::smtp_server::Behaviour::from_switches(switches);
    crate::smtp_server::SmtpServer::start(port, dir, behaviour)
}

#[cfg(feature = "e2e")]
fn start_sink_server(port: u16, dir: &Path, switches: &[String]) -> SinkServer {
    PostfixSink::start(port, dir, switches)
}

/// An SMTP sink on a loopback port, storing every message in a directory: `smtp-sink`, or
/// its stand-in in this process (see [`SinkServer`]).
pub struct SmtpSink {
    pub port: u16,
    dir: PathBuf,
    _root: tempfile::TempDir,
    server: Option<SinkServer>,
    extra: Vec<String>,
}

impl SmtpSink {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// `extra` are smtp-sink switches, e.g. `["-f", "RCPT"]` to refuse every recipient.
    pub fn start_with(extra: &[&str]) -> Self {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("mail");
        std::fs::create_dir(&dir).unwrap();
        let mut sink = Self {
            port: 0,
            dir,
            _root: root,
            server: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        sink.restart_on(0);
        sink
    }

    /// Starts the server on `port` (0: a free one).
    fn restart_on(&mut self, port: u16) {
        let server = start_sink_server(port, &self.dir, &self.extra);
        self.port = server.port();
        self.server = Some(server);
        assert!(
            wait_for_port(self.port, true),
            "the SMTP sink did not come up on {}",
            self.port
        );
    }

    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            // Dropping the server stops it (killing smtp-sink, or closing the in-process
            // server's sessions).
            drop(server);
            assert!(
                wait_for_port(self.port, false),
                "the SMTP sink did not stop"
            );
        }
    }

    /// Starts again on the same port, with other switches.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.stop();
        self.extra = extra.iter().map(|s| s.to_string()).collect();
        self.restart_on(self.port);
    }

    /// The messages received in full. smtp-sink writes a message into its file as the data
    /// arrives and closes the file at its end, so a file it still holds open is left out;
    /// files listed before the check that are closed by then are complete.
    pub fn messages(&self) -> Vec<Received> {
        #[cfg(feature = "e2e")]
        let busy = self
            .server
            .as_ref()
            .map(PostfixSink::open_files)
            .unwrap_or_default();
        // The in-process server renames a message into the directory only once it is whole.
        #[cfg(not(feature = "e2e"))]
        let busy = Vec::new();
        read_complete(&self.dir, &busy)
    }

    /// Waits (bounded) until the sink holds `n` messages, and returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let messages = self.messages();
            if messages.len() >= n || Instant::now() > deadline {
                assert_eq!(messages.len(), n, "messages in the sink");
                return messages;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (bounded) until the sink has accepted a message: for tests that act in the
    /// middle of a send.
    pub async fn wait_for_first(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.messages().is_empty() {
            assert!(Instant::now() < deadline, "the sink got no message in 15 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The recipient of each stored message, sorted (one recipient per message).
    pub fn recipients(&self) -> Vec<String> {
        let mut to: Vec<String> = self
            .messages()
            .into_iter()
            .map(|m| m.recipients[0].clone())
            .collect();
        to.sort();
        to
    }

    pub fn clear(&self) {
        for e in std::fs::read_dir(&self.dir).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
    }
}

/// Postfix's `smtp-sink` as a child process, killed when dropped.
#[cfg(feature = "e2e")]
pub struct PostfixSink {
    port: u16,
    child: Child,
}

#[cfg(feature = "e2e")]
impl PostfixSink {
    /// `smtp-sink` on 127.0.0.1:`port` (0: a free one) with `switches`, dumping each message
    /// into `dir`, once it listens.
    pub fn start(port: u16, dir: &Path, switches: &[String]) -> Self {
        let port = if port == 0 { free_port() } else { port };
        // smtp-sink drops to `nobody` when started as root; it must be able to write here.
        if let Some(parent) = dir.parent() {
            set_mode(parent, 0o755);
        }
        set_mode(dir, 0o777);
        let mut cmd = Command::new(Self::binary());
        if running_as_root() {
            cmd.args(["-u", "nobody"]);
        }
        cmd.args(switches)
            .arg("-d")
            .arg(format!("{}/%M.", dir.display()))
            .arg(format!("127.0.0.1:{port}"))
            .arg("256")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let child = cmd
            .spawn()
            .expect("smtp-sink starts (install postfix; scripts/install-test-deps does)");
        let sink = Self { port, child };
        assert!(
            wait_for_port(port, true),
            "smtp-sink did not come up on {port}"
        );
        sink
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The files smtp-sink has open now: the messages it is still receiving.
    fn open_files(&self) -> Vec<PathBuf> {
        let fds = format!("/proc/{}/fd", self.child.id());
        std::fs::read_dir(fds)
            .map(|entries| {
                entries
                    .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn binary() -> PathBuf {
        for p in ["/usr/sbin/smtp-sink", "/usr/bin/smtp-sink"] {
            if Path::new(p).exists() {
                return p.into();
            }
        }
        PathBuf::from("smtp-sink")
    }
}

#[cfg(feature = "e2e")]
impl Drop for PostfixSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// [`PostfixSink::start`] on a free port, for tests that compare it with the in-process
/// server.
#[cfg(feature = "e2e")]
pub fn postfix_sink(switches: &[String], dir: &Path) -> (u16, PostfixSink) {
    let sink = PostfixSink::start(0, dir, switches);
    (sink.port(), sink)
}

#[cfg(feature = "e2e")]
fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[cfg(feature = "e2e")]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Variables of systemd's that paperboy reads: the data directory, the secrets' directory and
/// the journal (which switches the log format).
const SYSTEMD_ENV: &[&str] = &["STATE_DIRECTORY", "CREDENTIALS_DIRECTORY", "JOURNAL_STREAM"];

/// Whether a variable configures paperboy: every `PAPERBOY_*` one (key overrides, the config
/// path, the SMTP password, the log format) and systemd's.
pub fn configures_paperboy(name: &std::ffi::OsStr) -> bool {
    name.to_str()
        .is_some_and(|n| n.starts_with("PAPERBOY_") || SYSTEMD_ENV.contains(&n))
}

/// Removes from `cmd`'s environment every variable that configures paperboy, whether the
/// test process inherited it or it was set on `cmd` before: an exported `PAPERBOY_DATA_DIR`
/// or `STATE_DIRECTORY` would otherwise point a test at real state. A test that wants one
/// sets it after this.
pub fn clean_env(cmd: &mut Command) -> &mut Command {
    let mut names: Vec<std::ffi::OsString> = std::env::vars_os()
        .map(|(name, _)| name)
        .chain(cmd.get_envs().map(|(name, _)| name.to_os_string()))
        .filter(|name| configures_paperboy(name))
        .collect();
    names.extend(SYSTEMD_ENV.iter().map(std::ffi::OsString::from));
    for name in names {
        cmd.env_remove(name);
    }
    cmd
}

/// The paperboy binary in a clean environment (see [`clean_env`]): every test that runs it
/// starts here.
pub fn paperboy_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_paperboy"));
    clean_env(&mut cmd);
    cmd
}

/// The paperboy binary with a config file and data directory of its own.
pub struct TestApp {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// The engine its store is kept in (`store.engine`).
    pub engine: EngineKind,
}

pub use paperboy::store::EngineKind;

pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl TestApp {
    /// A config sending to `smtp_port` and reading `source_url`, plus `extra` TOML lines
    /// (top-level keys only, since they go first).
    pub fn new(source_url: &str, smtp_port: u16, extra: &str) -> Self {
        Self::on(EngineKind::default(), source_url, smtp_port, extra)
    }

    /// [`TestApp::new`] with its store kept by `engine`: for the tests that run on both.
    pub fn on(engine: EngineKind, source_url: &str, smtp_port: u16, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("paperboy.toml");
        let data = dir.path().join("data");
        std::fs::write(
            &config,
            format!(
                r#"data_dir = "{data}"
public_url = "https://papers.example.org"
{extra}

[source]
url = "{source_url}"
timeout_secs = 5
max_attempts = 2
# Only the page itself: scripted replies and request counts stay the test's own.
recent_days = 0

[digest]
max_items = 30

[mail]
from = "paperboy <digest@example.org>"
transport = "smtp"

[mail.smtp]
host = "127.0.0.1"
port = {smtp_port}
concurrency = 2
timeout_secs = 5
max_attempts = 2

[store]
engine = "{engine}"
"#,
                data = data.display()
            ),
        )
        .unwrap();
        Self {
            dir,
            config,
            engine,
        }
    }

    /// The store, opened directly (only while no paperboy process holds it).
    pub fn store(&self) -> paperboy::store::Store {
        paperboy::store::Store::open(&self.dir.path().join("data"), self.engine).unwrap()
    }

    /// Adds `n` active subscribers `r{i}@example.org` straight into the store (fast; many
    /// CLI calls would take longer than the test).
    pub async fn seed(&self, n: u32, prefs: impl Fn(u32) -> paperboy::domain::Preferences) {
        let store = self.store();
        for i in 0..n {
            let email =
                paperboy::domain::SubscriberEmail::parse(&format!("r{i}@example.org")).unwrap();
            store
                .add_subscriber(&paperboy::domain::Subscriber::new(email, prefs(i), true))
                .unwrap();
        }
        store.flush().await.unwrap();
    }

    /// Sets one config key, `section.key` or `section.sub.key`, in the TOML file.
    pub fn set(&self, path: &str, value: impl Into<toml::Value>) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let mut doc: toml::Table = text.parse().unwrap();
        let mut keys: Vec<&str> = path.split('.').collect();
        let last = keys.pop().unwrap();
        let mut table = &mut doc;
        for k in keys {
            table = table
                .entry(k)
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .unwrap();
        }
        table.insert(last.to_string(), value.into());
        std::fs::write(&self.config, toml::to_string(&doc).unwrap()).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = paperboy_command();
        cmd.arg("--config")
            .arg(&self.config)
            .args(args)
            .current_dir(self.dir.path())
            .env("RUST_LOG", "warn");
        cmd
    }

    /// Runs the binary to the end; blocking, so call it from a multi-threaded runtime.
    pub fn run(&self, args: &[&str]) -> Run {
        self.command(args).output().expect("the binary runs").into()
    }

    pub fn add(&self, email: &str, extra: &[&str]) {
        let mut args = vec!["subscribers", "add", email];
        args.extend_from_slice(extra);
        let r = self.run(&args);
        assert!(r.ok(), "adding {email}: {}", r.stderr);
    }
}

/// A child process that is killed if the test ends (or panics) before it exits.
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// Waits for a child started with piped output, at most 60 s.
pub trait WaitBounded {
    fn wait_with_output_bounded(self) -> Output;
}

impl WaitBounded for Child {
    fn wait_with_output_bounded(self) -> Output {
        let pid = rustix::process::Pid::from_child(&self);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(self.wait_with_output());
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(out) => out.unwrap(),
            Err(_) => {
                // Still unreaped (the thread waits on it), so the pid is still its own.
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                panic!("the process did not finish within 60 s");
            }
        }
    }
}

impl KillOnDrop {
    /// SIGTERM, then waits (bounded) for the exit. (Sent with a system call rather than the
    /// `kill` program, which minimal systems lack.)
    pub fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let pid = rustix::process::Pid::from_child(&self.0);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)
            .expect("SIGTERM is delivered");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the process did not stop within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether a process holds an flock on `path` (the store's `paperboy.lock`). Read from
/// /proc/locks, so that looking never takes the lock itself.
pub fn is_locked(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    let needle = format!(":{} ", meta.ino());
    std::fs::read_to_string("/proc/locks")
        .map(|locks| {
            locks
                .lines()
                .any(|l| l.contains("FLOCK") && l.contains(&needle))
        })
        .unwrap_or(false)
}

/// Points the app's web side at a free loopback port (and its links there), with a
/// schedule that never fires; returns the base URL.
pub fn web_on_free_port(app: &TestApp) -> String {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    app.set("public_url", base.clone());
    app.set("web.listen", format!("127.0.0.1:{port}"));
    app.set("schedule.cron", "0 0 8 1 1 * 2099");
    base
}

/// `paperboy serve`, once `/healthz` at `base` answers (within 15 s), and a client that
/// does not follow redirects.
pub async fn start_serve(app: &TestApp, base: &str) -> (KillOnDrop, reqwest::Client) {
    serve_with(app.command(&["serve"]), base).await
}

/// [`start_serve`] from a `serve` command the test has set up (its output, its log level).
pub async fn serve_with(mut serve: Command, base: &str) -> (KillOnDrop, reqwest::Client) {
    let daemon = KillOnDrop(serve.spawn().unwrap());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "serve did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (daemon, http)
}

/// One test per engine for a scenario `async fn name(engine: EngineKind)`: `name::on_sled`
/// and `name::on_sqlite`. For the promises that depend on the store (crash safety, dedup
/// across days, late bloomers); the rest of the suite runs on the default engine.
macro_rules! on_both_engines {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sled() {
                super::$name(crate::helpers::EngineKind::Sled).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                super::$name(crate::helpers::EngineKind::Sqlite).await
            }
        }
    };
}
pub(crate) use on_both_engines;
