//! The command line: parse arguments, load the settings, run one command, map the outcome
//! to an exit code. Errors print as one line on stderr and exit non-zero.
//!
//! Only one process can open the store. When `serve` holds it, the commands that need it are
//! sent to the daemon over its admin socket and run there ([`crate::commands::admin`]), with the same
//! output and exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::app::App;
use crate::commands::{self, Output};
use crate::config::Settings;
use crate::daemon::{Application, shutdown_signal};
use crate::store::StoreError;

#[derive(Parser)]
#[command(
    name = "paperboy",
    version,
    about = "Trending research papers in your inbox"
)]
pub struct Cli {
    /// The config file (default: $PAPERBOY_CONFIG, else ./paperboy.toml, else built-in defaults)
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The daemon: send editions on the schedule and serve the subscribe, confirm,
    /// unsubscribe and preferences pages, until SIGTERM or Ctrl-C
    Serve,
    /// Fetch the papers now and send the edition for DATE (default: today in the schedule's
    /// time zone) to those on the server's schedule who are due for it; without --date, also
    /// send to those whose own send time has come. Running it again sends nothing new.
    RunOnce {
        /// The edition date, YYYY-MM-DD
        #[arg(long, value_name = "YYYY-MM-DD")]
        date: Option<String>,
        /// Show what each subscriber would get; send and record nothing
        #[arg(long)]
        dry_run: bool,
        /// Take this instant (RFC 3339) as the time now, for subscribers' own send times
        #[arg(long, value_name = "TIME", hide = true)]
        now: Option<String>,
    },
    /// Manage subscribers
    #[command(subcommand)]
    Subscribers(SubscribersCommand),
    /// Print the text part of the digest EMAIL would get now; sends nothing
    Preview { email: String },
    /// List every paper of an edition with why it is or is not in EMAIL's digest (the
    /// edition on record, else the page as it is now); sends and records nothing
    Explain {
        email: String,
        /// The edition date, YYYY-MM-DD (default: today in the schedule's time zone)
        #[arg(long, value_name = "YYYY-MM-DD")]
        date: Option<String>,
    },
    /// Validate the config and secrets and print the effective settings (secrets masked)
    CheckConfig,
    /// Write a snapshot of the whole store and the link-signing key to FILE (works while
    /// `serve` runs)
    Backup { file: PathBuf },
    /// Fill an empty data directory from a backup FILE
    Restore { file: PathBuf },
    /// Look after the store
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Rewrite the store so that it takes no more disk than its records need (sled; with
    /// SQLite there is nothing to do). Editions do it on their own when the files have grown
    /// past twice the records; the store is unavailable meanwhile (seconds)
    Compact,
}

#[derive(Subcommand, Debug)]
pub enum SubscribersCommand {
    /// Add a subscriber (pending until confirmed, unless --confirmed)
    Add {
        email: String,
        /// Active at once, without the confirmation step
        #[arg(long)]
        confirmed: bool,
        /// Only papers with at least this many upvotes
        #[arg(long, value_name = "N")]
        min_upvotes: Option<u32>,
        /// Only papers matching any of these comma-separated keywords
        #[arg(long, value_name = "a,b")]
        keywords: Option<String>,
        /// At most this many papers per digest
        #[arg(long, value_name = "N")]
        max_items: Option<u32>,
        /// One digest a week, on this day (mon … sun): the week's best they were not sent
        #[arg(long, value_name = "DAY")]
        weekly: Option<String>,
        /// Send at this hour (0-23) of the subscriber's own time zone instead of on the
        /// server's schedule
        #[arg(long, value_name = "HOUR")]
        send_at: Option<String>,
        /// The subscriber's IANA time zone for --send-at (default: the schedule's)
        #[arg(long, value_name = "ZONE", requires = "send_at")]
        timezone: Option<String>,
    },
    /// List subscribers
    List {
        /// One JSON object per subscriber, as a JSON array
        #[arg(long)]
        json: bool,
    },
    /// Unsubscribe an address; with --forget, delete every trace of it instead
    Remove {
        email: String,
        /// Delete the subscriber, their ledger and their deliveries (GDPR erasure)
        #[arg(long)]
        forget: bool,
    },
    /// Write every subscriber, with status and preferences, to stdout
    Export {
        #[arg(long, value_enum, default_value = "jsonl")]
        format: commands::ExportFormat,
    },
    /// Add or update subscribers from FILE (JSON Lines or CSV, as export writes them);
    /// a bad line is reported with its number and nothing of the file is applied
    Import { file: PathBuf },
}

impl Command {
    /// The file a command reads, which the CLI reads for it (the daemon may not see it).
    fn input_file(&self) -> Option<&PathBuf> {
        match self {
            Command::Subscribers(SubscribersCommand::Import { file }) => Some(file),
            _ => None,
        }
    }

    /// The file a command writes, which the CLI writes for it.
    fn output_file(&self) -> Option<&PathBuf> {
        match self {
            Command::Backup { file } => Some(file),
            _ => None,
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::telemetry::init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", crate::telemetry::one_line(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let (settings, origin) = Settings::load(cli.config.as_deref())?;
    match &cli.command {
        Command::CheckConfig => {
            println!("# effective settings, from {origin}");
            print!("{}", settings.to_masked_toml());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Serve => {
            tracing::info!(config = %origin, "starting");
            let application = Application::build(settings).await?;
            application.run_until_stopped(shutdown_signal()).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Restore { file } => {
            let bytes = std::fs::read(file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let report = crate::commands::backup::restore(&settings, &bytes).await?;
            println!("{report}");
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let input = match cli.command.input_file() {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let data_dir = settings.data_dir.clone();
    let output = match App::open(settings) {
        Ok(app) => {
            let mut out = Output::default();
            match commands::execute(&Arc::new(app), &cli.command, input, &mut out).await {
                Ok(()) => out,
                Err(e) => {
                    out.fail(&e);
                    out
                }
            }
        }
        Err(e) if matches!(e.downcast_ref::<StoreError>(), Some(StoreError::Locked(_))) => {
            // The daemon holds the store: let it do the work.
            let args: Vec<String> = std::env::args().skip(1).collect();
            match crate::commands::admin::request(&data_dir, args, input).await {
                Ok(out) => out,
                Err(socket_error) => {
                    return Err(
                        e.context(format!("and the daemon's admin socket: {socket_error:#}"))
                    );
                }
            }
        }
        Err(e) => return Err(e),
    };
    finish(&cli.command, output)
}

/// Prints what a command produced, writes the file it made, and gives its exit code.
fn finish(command: &Command, out: Output) -> anyhow::Result<ExitCode> {
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    if let (Some(path), Some(bytes)) = (command.output_file(), &out.file) {
        write_private(path, bytes)?;
    }
    Ok(ExitCode::from(out.code))
}

/// Backups hold the link-signing key: only their owner may read them.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}
