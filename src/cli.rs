//! The command line: parse arguments, load the settings, run one command, map the outcome
//! to an exit code. Errors print as one line on stderr and exit non-zero.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::app::App;
use crate::config::Settings;
use crate::domain::{EditionDate, Keywords, Preferences, Status, Subscriber, SubscriberEmail};
use crate::edition::{self, DryRunPlan};
use crate::startup::{Application, shutdown_signal};

#[derive(Parser)]
#[command(
    name = "paperboy",
    version,
    about = "Trending research papers in your inbox"
)]
struct Cli {
    /// The config file (default: $PAPERBOY_CONFIG, else ./paperboy.toml, else built-in defaults)
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The daemon: send editions on the schedule and serve the subscribe, confirm,
    /// unsubscribe and preferences pages, until SIGTERM or Ctrl-C
    Serve,
    /// Fetch the papers now and send the edition for DATE (default: today in the schedule's
    /// time zone). Running it again for the same date sends nothing new.
    RunOnce {
        /// The edition date, YYYY-MM-DD
        #[arg(long, value_name = "YYYY-MM-DD")]
        date: Option<String>,
        /// Show what each subscriber would get; send and record nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Manage subscribers
    #[command(subcommand)]
    Subscribers(SubscribersCommand),
    /// Print the text part of the digest EMAIL would get now; sends nothing
    Preview { email: String },
    /// Validate the config and secrets and print the effective settings (secrets masked)
    CheckConfig,
}

#[derive(Subcommand)]
enum SubscribersCommand {
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
    },
    /// List subscribers
    List {
        /// One JSON object per subscriber, as a JSON array
        #[arg(long)]
        json: bool,
    },
    /// Remove a subscriber and everything recorded about them
    Remove { email: String },
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
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// `a: b: c` on one line, without repeating a cause that the message above already quotes.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string().replace(['\r', '\n'], " ");
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let (settings, origin) = Settings::load(cli.config.as_deref())?;
    if let Command::CheckConfig = cli.command {
        println!("# effective settings, from {origin}");
        print!("{}", settings.to_masked_toml());
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Serve = cli.command {
        tracing::info!(config = %origin, "starting");
        let application = Application::build(settings).await?;
        application.run_until_stopped(shutdown_signal()).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let tz = settings.timezone()?;
    let app = Arc::new(App::open(settings)?);
    match cli.command {
        Command::CheckConfig | Command::Serve => unreachable!("handled above"),
        Command::RunOnce { date, dry_run } => {
            let date = match date {
                Some(d) => EditionDate::parse(&d).map_err(anyhow::Error::msg)?,
                None => EditionDate::today_in(tz),
            };
            if dry_run {
                print_dry_run(&app, date).await
            } else {
                run_once(&app, date).await
            }
        }
        Command::Subscribers(cmd) => subscribers(&app, cmd),
        Command::Preview { email } => {
            let email = SubscriberEmail::parse(&email)?;
            let s = app
                .store
                .subscriber(&email)?
                .with_context(|| format!("{email} is not a subscriber"))?;
            if s.status != Status::Active {
                eprintln!(
                    "note: {email} is {}; this is what they would get if they were active",
                    s.status
                );
            }
            match edition::preview(&app, EditionDate::today_in(tz), &s).await? {
                Some(r) => print!("{}", r.text),
                None => eprintln!(
                    "nothing new for {email} on the page right now: no digest would be sent"
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn run_once(app: &Arc<App>, date: EditionDate) -> anyhow::Result<ExitCode> {
    let report = edition::run(app, date).await?;
    println!("{}", report.summary(date));
    if report.send.deferred > 0 {
        bail!(
            "SMTP: {} digest(s) could not be sent ({}); they stay queued for the next run",
            report.send.deferred,
            report.send.last_error.as_deref().unwrap_or("unknown error")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn print_dry_run(app: &Arc<App>, date: EditionDate) -> anyhow::Result<ExitCode> {
    let (on_page, lines) = edition::dry_run(app, date).await?;
    println!(
        "dry run for edition {date}: {on_page} papers on the page; nothing is sent or recorded"
    );
    for line in lines {
        let who = &line.subscriber.email;
        match line.plan {
            DryRunPlan::AlreadyHas(state) => {
                println!("{who}: already has this edition ({state:?})")
            }
            DryRunPlan::NothingNew => println!("{who}: nothing new, no email"),
            DryRunPlan::Would {
                subject,
                papers,
                bytes,
            } => println!(
                "{who}: would get {} paper(s), {:.1} KB: {subject} [{}]",
                papers.len(),
                bytes as f64 / 1024.0,
                papers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn subscribers(app: &App, cmd: SubscribersCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SubscribersCommand::Add {
            email,
            confirmed,
            min_upvotes,
            keywords,
            max_items,
        } => {
            let email = SubscriberEmail::parse(&email)?;
            let keywords = Keywords::parse_list(keywords.as_deref().unwrap_or(""))?;
            let prefs = Preferences::new(min_upvotes, keywords, max_items)?;
            let s = Subscriber::new(email, prefs, confirmed);
            app.store.add_subscriber(&s)?;
            flush_now(app)?;
            println!("added {} ({})", s.email, s.status);
        }
        SubscribersCommand::List { json } => {
            let all = app.store.subscribers()?;
            if json {
                let rows: Vec<_> = all.iter().map(subscriber_json).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print_table(app, &all);
            }
        }
        SubscribersCommand::Remove { email } => {
            let email = SubscriberEmail::parse(&email)?;
            app.store.remove_subscriber(&email)?;
            flush_now(app)?;
            println!("removed {email}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn flush_now(app: &App) -> anyhow::Result<()> {
    futures_lite_block(app.store.flush())?;
    Ok(())
}

/// The subscriber commands are synchronous; they run inside the runtime but need one await.
fn futures_lite_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

fn subscriber_json(s: &Subscriber) -> serde_json::Value {
    serde_json::json!({
        "email": s.email.as_str(),
        "status": s.status.as_str(),
        "min_upvotes": s.preferences.min_upvotes,
        "keywords": s.preferences.keywords.as_slice(),
        "max_items": s.preferences.max_items,
        "created_at": s.created_at,
        "confirmed_at": s.confirmed_at,
    })
}

fn print_table(app: &App, all: &[Subscriber]) {
    if all.is_empty() {
        println!("no subscribers yet; add one with `paperboy subscribers add EMAIL --confirmed`");
        return;
    }
    let d = &app.settings.digest;
    let width = all
        .iter()
        .map(|s| s.email.as_str().len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!(
        "{:<width$}  {:<12}  {:>11}  {:>9}  keywords",
        "email", "status", "min_upvotes", "max_items"
    );
    for s in all {
        let p = &s.preferences;
        let or_default = |v: Option<u32>, def: u32| v.map_or(format!("{def}*"), |v| v.to_string());
        println!(
            "{:<width$}  {:<12}  {:>11}  {:>9}  {}",
            s.email.as_str(),
            s.status.as_str(),
            or_default(p.min_upvotes, d.min_upvotes),
            or_default(p.max_items, d.max_items),
            if p.keywords.is_empty() {
                "-".to_string()
            } else {
                p.keywords.to_string()
            }
        );
    }
    println!("({} subscribers; * = the operator's default)", all.len());
}
