//! How fast `paperboy run-once` mails an edition, next to what the SMTP server could take.
//!
//! For each subscriber count it makes a fresh store with varied preferences, serves the
//! trending fixture from a loopback HTTP server, and runs the release binary under
//! `/usr/bin/time -v` against Postfix's `smtp-sink` (which accepts and discards). Then
//! Postfix's `smtp-source` sends as many messages of the same average size with the same
//! concurrency to the same sink: the ceiling. Both rates come from one run, so their ratio
//! means something on a shared, noisy machine where the absolute figures do not.
//!
//! `cargo bench --features e2e --bench send_rate` (under `cargo test --features e2e`, a
//! 200-subscriber run that only checks it works, on each engine); `BENCH_SUBSCRIBERS="10000 100000"`,
//! `BENCH_STORE_ENGINES="sled sqlite"` and `BENCH_CONCURRENCY=4` change the defaults. Each
//! subscriber count runs on each engine, one after the other, so their times compare. Needs smtp-sink and smtp-source (package
//! `postfix`, `scripts/install-test-deps`) and `/usr/bin/time` (package `time`).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FIXTURE: &str = include_str!("../tests/fixtures/hf/trending-2025-12-09.html");
const DATE: &str = "2025-12-09";

fn main() {
    // `cargo test --all-targets` runs this too, without `--bench`: then a small run checks
    // that the benchmark still works, in seconds.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let default_counts = if benchmarking { "10000 100000" } else { "200" };
    let counts: Vec<usize> = std::env::var("BENCH_SUBSCRIBERS")
        .unwrap_or_else(|_| default_counts.into())
        .split_whitespace()
        .map(|n| n.parse().expect("BENCH_SUBSCRIBERS: whole numbers"))
        .collect();
    let concurrency: u32 = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .map(|n| n.parse().expect("BENCH_CONCURRENCY: a whole number"))
        .unwrap_or(4);
    for tool in ["/usr/bin/time", &sbin("smtp-sink"), &sbin("smtp-source")] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: run scripts/install-test-deps (postfix) and install `time`"
        );
    }
    let engines: Vec<String> = std::env::var("BENCH_STORE_ENGINES")
        .unwrap_or_else(|_| "sled sqlite".into())
        .split_whitespace()
        .map(|e| match e {
            "sled" | "sqlite" => e.to_string(),
            other => panic!("BENCH_STORE_ENGINES: {other:?} is neither sled nor sqlite"),
        })
        .collect();
    let page_port = serve_fixture();
    let mut rows = Vec::new();
    for n in counts {
        for engine in &engines {
            eprintln!("send_rate: {n} subscribers on {engine}, concurrency {concurrency}…");
            rows.push(measure(n, engine, concurrency, page_port));
        }
    }
    println!();
    println!(
        "| engine | subscribers | digests | wall s | digests/s | planning s | sending digests/s | peak RSS MB | avg message KB | smtp-source s | smtp-source msg/s | ratio | ratio, sending | import s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.1} | {:.0} | {:.1} | {:.0} | {:.1} | {:.1} | {:.1} | {:.0} | {:.2} | {:.2} | {:.1} |",
            r.engine,
            r.subscribers,
            r.sent,
            r.wall,
            r.sent as f64 / r.wall,
            r.planning,
            r.sent as f64 / r.sending,
            r.rss_kb as f64 / 1024.0,
            r.avg_bytes as f64 / 1024.0,
            r.ceiling_wall,
            r.sent as f64 / r.ceiling_wall,
            r.ceiling_wall / r.wall,
            r.ceiling_wall / r.sending,
            r.import_wall,
        );
    }
}

struct Row {
    engine: String,
    subscribers: usize,
    sent: u64,
    wall: f64,
    /// From the start of the run to "edition planned; sending" (fetch and planning).
    planning: f64,
    /// From then to "edition done" (sending and pruning).
    sending: f64,
    rss_kb: u64,
    avg_bytes: u64,
    ceiling_wall: f64,
    import_wall: f64,
}

fn sbin(name: &str) -> String {
    format!("/usr/sbin/{name}")
}

fn measure(n: usize, engine: &str, concurrency: u32, page_port: u16) -> Row {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sink = Sink::start();
    let config = dir.path().join("paperboy.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{data}\"\n\
             [source]\nurl = \"http://127.0.0.1:{page_port}/papers/trending\"\n\
             recent_days = 0\n\
             [mail]\ntransport = \"smtp\"\n\
             [mail.smtp]\nport = {port}\nconcurrency = {concurrency}\n\
             [store]\nengine = \"{engine}\"\n",
            data = dir.path().join("data").display(),
            port = sink.port,
        ),
    )
    .unwrap();
    let subscribers = dir.path().join("subscribers.jsonl");
    std::fs::write(&subscribers, subscriber_lines(n)).unwrap();

    let started = Instant::now();
    let import = paperboy(&config)
        .args(["subscribers", "import"])
        .arg(&subscribers)
        .output()
        .unwrap();
    assert!(import.status.success(), "import failed: {import:?}");
    let import_wall = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let run = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(env!("CARGO_BIN_EXE_paperboy"))
        .arg("--config")
        .arg(&config)
        .args(["run-once", "--date", DATE])
        .env("PAPERBOY_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let wall = started.elapsed().as_secs_f64();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "run-once failed:\n{stderr}");
    let done = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "edition done")
        .unwrap_or_else(|| panic!("no 'edition done' line in:\n{stderr}"));
    let field = |name: &str| done[name].as_u64().unwrap_or(0);
    let planned = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "edition planned; sending")
        .unwrap_or_else(|| panic!("no 'edition planned' line in:\n{stderr}"));
    let planning = planned["elapsed_ms"].as_u64().unwrap_or(0) as f64 / 1000.0;
    let sending = field("elapsed_ms") as f64 / 1000.0 - planning;
    let sent = field("sent");
    assert!(sent > 0 && field("deferred") == 0, "not all sent:\n{done}");
    let avg_bytes = field("bytes_sent") / sent;
    let rss_kb = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.parse().ok())
        .expect("time -v reports the peak RSS");

    let started = Instant::now();
    let source = Command::new(sbin("smtp-source"))
        .args(["-d", "-s", &concurrency.to_string()])
        .args(["-m", &sent.to_string(), "-l", &avg_bytes.to_string()])
        .args(["-f", "digest@example.org", "-t", "reader@example.org"])
        .arg(format!("127.0.0.1:{}", sink.port))
        .output()
        .unwrap();
    let ceiling_wall = started.elapsed().as_secs_f64();
    assert!(source.status.success(), "smtp-source failed: {source:?}");
    Row {
        engine: engine.to_string(),
        subscribers: n,
        sent,
        wall,
        planning,
        sending,
        rss_kb,
        avg_bytes,
        ceiling_wall,
        import_wall,
    }
}

fn paperboy(config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_paperboy"));
    c.arg("--config").arg(config);
    c
}

/// Varied preferences, so digests differ in length and content; deterministic, so runs
/// compare. Most subscribers get something from the fixture page.
fn subscriber_lines(n: usize) -> String {
    const KEYWORDS: [&str; 6] = ["agent", "video", "reasoning", "language", "diffusion", "3d"];
    let mut out = String::with_capacity(n * 110);
    for i in 0..n {
        let min_upvotes = [0, 0, 5, 10, 20, 40][i % 6];
        let max_items = [3, 5, 10, 10, 15, 20, 30][i % 7];
        let keywords = if i.is_multiple_of(5) {
            format!("\"{}\"", KEYWORDS[(i / 5) % KEYWORDS.len()])
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{{\"email\":\"reader{i}@example.org\",\"status\":\"active\",\"min_upvotes\":{min_upvotes},\"max_items\":{max_items},\"keywords\":[{keywords}]}}\n"
        ));
    }
    out
}

/// Postfix's smtp-sink on a free loopback port, accepting and discarding everything.
struct Sink {
    port: u16,
    child: Child,
}

impl Sink {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let mut cmd = Command::new(sbin("smtp-sink"));
        if is_root() {
            cmd.args(["-u", "nobody"]);
        }
        let child = cmd
            .arg(format!("127.0.0.1:{port}"))
            .arg("1024")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("smtp-sink starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "smtp-sink did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { port, child }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A loopback HTTP/1.1 server answering every request with the trending fixture page.
fn serve_fixture() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = answer(stream);
        }
    });
    port
}

fn answer(stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    // Read the request head up to its blank line; the body (there is none) is not needed.
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        FIXTURE.len()
    )?;
    stream.write_all(FIXTURE.as_bytes())?;
    stream.flush()
}
