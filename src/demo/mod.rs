//! `paperboy demo`: the whole product in one command, offline. The web pages of `serve`,
//! two sample days of trending papers built into the binary ([`sample`]), a data
//! directory of its own (a temporary one unless `--data` names one), and mail written to
//! that directory's outbox, which the demo's own pages show as a reader would see it
//! ([`pages`]).
//!
//! The editions are the real ones: the same parts as `run-once` (store, planning, ledger,
//! rendering, the file transport), with a source that hands out the sample days instead of
//! fetching. Nothing is read from the config file or the environment, so a demo never
//! touches the network, the configured data directory or anyone's inbox. There is no
//! schedule: a confirmed subscription gets the day's digest at once, and "next day" sends
//! the next sample day's edition.

mod outbox;
mod pages;
mod sample;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::config::{PublicUrl, Settings, Transport};
use crate::daemon::{local_url, shutdown_signal_then};
use crate::domain::EditionDate;
use crate::edition::{self, Editions};
use crate::parts::Parts;
use crate::telemetry::one_line;

/// What `paperboy demo` is given on the command line.
pub struct Options {
    /// Where the pages listen; else 127.0.0.1:8080, or any free port when that is taken.
    pub listen: Option<SocketAddr>,
    /// A data directory to keep; else a temporary one, deleted at the end.
    pub data: Option<PathBuf>,
}

/// The file that marks a data directory as a demo's, so that `--data` never fills a real
/// one with sample subscribers.
const MARKER: &str = "paperboy-demo.txt";

/// What the demo's pages share.
pub(crate) struct Demo {
    editions: Arc<Editions>,
    outbox: PathBuf,
    /// The sample days, oldest first.
    days: Vec<EditionDate>,
    /// Which of them the demo is at; held while "next day" moves it on.
    today: tokio::sync::Mutex<usize>,
}

impl Demo {
    /// Runs the edition of `date` for everyone due, as `run-once --date` would, and says
    /// what it did on the terminal.
    async fn run_edition(&self, date: EditionDate) {
        match edition::run(&self.editions, date).await {
            Ok(report) => println!("{}", report.summary(date)),
            Err(e) => {
                tracing::error!(edition = %date, error = %one_line(&e), "the demo's edition failed")
            }
        }
    }
}

/// Runs the demo until Ctrl-C or SIGTERM, then stops as `serve` does and deletes a
/// temporary data directory (at once on a second Ctrl-C).
pub async fn run(options: Options) -> anyhow::Result<()> {
    let data = DataDir::open(options.data)?;
    let listener = bind(options.listen).await?;
    let addr = listener.local_addr()?;
    let url = local_url(addr);
    let settings = settings(data.path(), &url, addr)?;
    let held = sample::days()?;
    let days = held.dates();
    let parts = Parts::build_with(&settings, held.into())?;

    // A demo kept in a directory goes on from the last sample day it sent.
    let mut today = 0;
    for (i, day) in days.iter().enumerate() {
        if parts.store.edition(*day)?.is_some() {
            today = i;
        }
    }
    // What `serve` does at start: the start page gets its sample of papers.
    parts.source.fetch(days[today]).await?;
    let demo = Arc::new(Demo {
        editions: parts.editions.clone(),
        outbox: settings.outbox_dir(),
        days: days.clone(),
        today: tokio::sync::Mutex::new(today),
    });
    let router = pages::router(crate::daemon::router(&parts, &settings), demo);

    print_block(&url, &settings, &data, &days);
    // A second Ctrl-C ends the process before `finish`: the temporary directory goes then.
    let temporary = match &data {
        DataDir::Temporary(dir) => Some(dir.clone()),
        DataDir::Kept(_) => None,
    };
    let stop = shutdown_signal_then(move || {
        if let Some(dir) = temporary {
            let _ = std::fs::remove_dir_all(dir);
        }
    });
    crate::web::serve(listener, router, &settings.web, stop).await;
    let no_edition_running = parts.editions.between_editions().await;
    parts.store.flush().await?;
    drop(no_edition_running);
    drop(parts);
    data.finish();
    Ok(())
}

/// The settings of a demo: built-in defaults, but for the directory, the address and mail
/// written to files. The config file and `PAPERBOY_*` variables are not read.
fn settings(dir: &Path, url: &str, addr: SocketAddr) -> anyhow::Result<Settings> {
    let mut settings = Settings {
        data_dir: dir.to_path_buf(),
        public_url: PublicUrl::try_from(url.trim_end_matches('/').to_string())
            .map_err(anyhow::Error::msg)?,
        ..Settings::default()
    };
    settings.web.listen = addr;
    settings.mail.transport = Transport::File;
    settings.mail.outbox_dir = None;
    settings.validate()?;
    Ok(settings)
}

async fn bind(listen: Option<SocketAddr>) -> anyhow::Result<TcpListener> {
    if let Some(addr) = listen {
        return TcpListener::bind(addr)
            .await
            .with_context(|| format!("--listen: cannot listen on {addr}"));
    }
    match TcpListener::bind(("127.0.0.1", 8080)).await {
        Ok(listener) => Ok(listener),
        Err(_) => TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("cannot listen on any port of 127.0.0.1"),
    }
}

fn print_block(url: &str, settings: &Settings, data: &DataDir, days: &[EditionDate]) {
    let outbox = settings.outbox_dir();
    let kept = match data {
        DataDir::Temporary(_) => "temporary: deleted when the demo stops",
        DataDir::Kept(_) => "kept: run the demo with the same --data to go on",
    };
    println!(
        "\
paperboy demo: the web pages and the digests, offline, on sample data

  Open     {url}
  Mail     is not sent: each message is written to {outbox}
           and shown at {url}demo/outbox
  Papers   the trending papers of {sample}, built in
  Data     {data} ({kept})
  Stop     Ctrl-C

Subscribe with any address, confirm with the link in the outbox, and the first day's
digest arrives at once; \"Next day\" on any page sends the second day's. The config file
and PAPERBOY_* settings are not used.
",
        outbox = outbox.display(),
        data = data.path().display(),
        sample = span(days),
    );
}

/// "Dec 8 and Dec 9, 2025": the sample days.
fn span(days: &[EditionDate]) -> String {
    let year = |d: &EditionDate| d.naive().format("%Y").to_string();
    match days {
        [] => String::new(),
        [one] => format!("{}, {}", one.short(), year(one)),
        [rest @ .., last] => {
            let rest: Vec<String> = rest.iter().map(EditionDate::short).collect();
            format!("{} and {}, {}", rest.join(", "), last.short(), year(last))
        }
    }
}

/// The demo's data directory.
enum DataDir {
    /// Made for this run and deleted at its end.
    Temporary(PathBuf),
    /// Named with `--data`: kept.
    Kept(PathBuf),
}

impl DataDir {
    fn open(asked: Option<PathBuf>) -> anyhow::Result<Self> {
        let Some(dir) = asked else {
            return Self::temporary();
        };
        let in_use = std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some());
        if in_use && !dir.join(MARKER).exists() {
            anyhow::bail!(
                "--data {}: the directory is not empty and was not made by paperboy demo; name a new or empty one",
                dir.display()
            );
        }
        crate::files::private_dir(&dir)
            .with_context(|| format!("--data: cannot create {}", dir.display()))?;
        mark(&dir)?;
        let dir = dir.canonicalize()?;
        Ok(Self::Kept(dir))
    }

    fn temporary() -> anyhow::Result<Self> {
        let base = std::env::temp_dir();
        let mut tries = 0;
        loop {
            let dir = base.join(format!("paperboy-demo-{:08x}", rand::random::<u32>()));
            // Made here, by this process (0700 under paperboy's umask): never one that exists.
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    mark(&dir)?;
                    return Ok(Self::Temporary(dir));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 10 => {
                    tries += 1;
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot create a temporary directory in {}", base.display())
                    });
                }
            }
        }
    }

    fn path(&self) -> &Path {
        match self {
            DataDir::Temporary(p) | DataDir::Kept(p) => p,
        }
    }

    /// Deletes a temporary directory; says where a kept one is.
    fn finish(self) {
        match &self {
            DataDir::Temporary(dir) => match std::fs::remove_dir_all(dir) {
                Ok(()) => println!("demo stopped; deleted {}", dir.display()),
                Err(e) => eprintln!("demo stopped; could not delete {}: {e}", dir.display()),
            },
            DataDir::Kept(dir) => println!("demo stopped; its data stays in {}", dir.display()),
        }
    }
}

/// A demo that could not start leaves no temporary directory behind either.
impl Drop for DataDir {
    fn drop(&mut self) {
        if let DataDir::Temporary(dir) = self
            && dir.exists()
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn mark(dir: &Path) -> anyhow::Result<()> {
    std::fs::write(
        dir.join(MARKER),
        "Made by `paperboy demo`: sample subscribers and mail only.\n",
    )
    .with_context(|| format!("cannot write in {}", dir.display()))
}
