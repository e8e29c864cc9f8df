//! The commands that work on the store, written once for both ways they run: in the CLI's
//! own process, or inside `serve` when the daemon holds the store (see [`crate::commands::admin`]).
//! They write to an [`Output`] instead of the terminal, so either caller can deliver it.

pub mod admin;
pub mod backup;
pub mod transfer;

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use std::path::PathBuf;

use clap::Subcommand;

use crate::config::{DigestSettings, ScheduleSettings};
use crate::domain::{
    Choices, EditionDate, EditionDays, Frequency, Keywords, Preferences, SendAt, Status,
    Subscriber, SubscriberEmail,
};
use crate::edition::select::Effective;
use crate::edition::{self, DryRunPlan, Editions};
use crate::store::Store;
use transfer::ExportFormat;

/// What a command printed, the file it made, and its exit code.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    #[serde(with = "b64opt", default)]
    pub file: Option<Vec<u8>>,
    pub code: u8,
}

impl Output {
    pub fn fail(&mut self, e: &anyhow::Error) {
        let _ = writeln!(
            self.stderr,
            "error: {}",
            crate::telemetry::one_line(e.as_ref())
        );
        self.code = 1;
    }
}

mod b64opt {
    use super::*;
    pub fn serialize<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref().map(|b| STANDARD.encode(b)).serialize(s)
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| STANDARD.decode(s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[derive(Subcommand, Clone, Debug, Serialize, Deserialize)]
/// The commands that work on an open store. The CLI runs them itself, or sends them to
/// the daemon's admin socket when `serve` holds the store.
pub enum Command {
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
    /// Write a snapshot of the whole store and the link-signing key to FILE (works while
    /// `serve` runs)
    Backup { file: PathBuf },
    /// Look after the store
    #[command(subcommand)]
    Store(StoreCommand),
    /// Read one bounce or complaint on standard input, as a mail server hands it to a
    /// program, and act on it: a permanent failure (DSN, 5.x.x) marks the subscriber
    /// bounced, temporary ones (4.x.x) are counted, an abuse report (ARF) unsubscribes.
    /// Anything else changes nothing and exits 0 with the reason. Exit codes follow
    /// sysexits: 75 (try again later) when the store is busy, 78 for a bad config, 74 when
    /// standard input cannot be read
    Bounce {
        /// The address the mail server delivered the message to, whose VERP token names
        /// the message (Postfix: ${original_recipient})
        #[arg(long, value_name = "ADDRESS")]
        recipient: Option<String>,
    },
}

#[derive(Subcommand, Clone, Debug, Serialize, Deserialize)]
pub enum StoreCommand {
    /// Rewrite the store so that it takes no more disk than its records need (sled; with
    /// SQLite there is nothing to do). Editions do it on their own when the files have grown
    /// past twice the records; the store is unavailable meanwhile (seconds)
    Compact,
}

#[derive(Subcommand, Clone, Debug, Serialize, Deserialize)]
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
        format: ExportFormat,
    },
    /// Add or update subscribers from FILE (JSON Lines or CSV, as export writes them);
    /// a bad line is reported with its number and nothing of the file is applied
    Import { file: PathBuf },
}

impl Command {
    /// The file a command reads, which the CLI reads for it (the daemon may not see it).
    pub fn input_file(&self) -> Option<&PathBuf> {
        match self {
            Command::Subscribers(SubscribersCommand::Import { file }) => Some(file),
            _ => None,
        }
    }

    /// Whether the command reads a message on standard input, which the CLI reads for it.
    pub fn reads_stdin(&self) -> bool {
        matches!(self, Command::Bounce { .. })
    }

    /// The file a command writes, which the CLI writes for it.
    pub fn output_file(&self) -> Option<&PathBuf> {
        match self {
            Command::Backup { file } => Some(file),
            _ => None,
        }
    }
}

/// What the commands work on, handed over when the store is opened.
pub struct Context {
    store: Store,
    editions: Arc<Editions>,
    schedule: ScheduleSettings,
    digest: DigestSettings,
    /// The link-signing key's file, which a backup carries.
    secret_key: PathBuf,
    bounces: crate::bounce::Intake,
}

impl Context {
    /// The days the site's schedule sends on, which weekly subscribers choose from.
    fn edition_days(&self) -> EditionDays {
        crate::schedule::edition_days(&self.schedule, chrono::Utc::now())
    }

    pub fn new(
        store: Store,
        editions: Arc<Editions>,
        schedule: ScheduleSettings,
        digest: DigestSettings,
        secret_key: PathBuf,
        bounces: crate::bounce::Intake,
    ) -> Self {
        Self {
            store,
            editions,
            schedule,
            digest,
            secret_key,
            bounces,
        }
    }
}

pub async fn execute(
    ctx: &Context,
    command: &Command,
    input: Option<Vec<u8>>,
    out: &mut Output,
) -> anyhow::Result<()> {
    let tz = ctx.schedule.tz();
    match command {
        Command::RunOnce { date, dry_run, now } => {
            let (date, tick) = run_once_dates(date.as_deref(), now.as_deref(), tz)?;
            if *dry_run {
                dry_run_report(ctx, date, out).await
            } else {
                run_once(ctx, date, tick, out).await
            }
        }
        Command::Subscribers(cmd) => subscribers(ctx, cmd, input, out).await,
        Command::Preview { email } => preview(ctx, &SubscriberEmail::parse(email)?, out).await,
        Command::Explain { email, date } => {
            let date = match date {
                Some(d) => EditionDate::parse(d).map_err(anyhow::Error::msg)?,
                None => EditionDate::today_in(tz),
            };
            explain(ctx, &SubscriberEmail::parse(email)?, date, out).await
        }
        Command::Backup { .. } => {
            let bytes = crate::commands::backup::backup(ctx).await?;
            let _ = writeln!(out.stdout, "backup written: {} bytes", bytes.len());
            out.file = Some(bytes);
            Ok(())
        }
        Command::Store(StoreCommand::Compact) => compact(ctx, out).await,
        Command::Bounce { recipient } => {
            bounce(ctx, &input.unwrap_or_default(), recipient.as_deref(), out).await;
            Ok(())
        }
    }
}

/// `bounce`: one message in, one line out; the exit code for the MTA (sysexits).
async fn bounce(ctx: &Context, raw: &[u8], recipient: Option<&str>, out: &mut Output) {
    let result = match ctx.bounces.process(raw, recipient) {
        Ok(outcome) => ctx
            .store
            .flush()
            .await
            .map(|()| outcome)
            .map_err(crate::bounce::BounceError::from),
        Err(e) => Err(e),
    };
    match result {
        Ok(outcome) => {
            let _ = writeln!(out.stdout, "{outcome}");
            out.code = crate::bounce::exit::OK;
        }
        Err(e) => {
            let _ = writeln!(
                out.stderr,
                "error: {}; nothing was recorded, try again later",
                crate::telemetry::one_line(&e)
            );
            out.code = e.exit_code();
        }
    }
}

/// `run-once`'s edition date, and the instant at which it also serves subscribers' own send
/// times: with `--date`, that date alone; without, today in the schedule's time zone and the
/// time now (or `--now`).
fn run_once_dates(
    date: Option<&str>,
    now: Option<&str>,
    tz: chrono_tz::Tz,
) -> anyhow::Result<(EditionDate, Option<chrono::DateTime<chrono::Utc>>)> {
    let now = match now {
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|e| anyhow::anyhow!("--now '{t}': {e}"))?
            .with_timezone(&chrono::Utc),
        None => chrono::Utc::now(),
    };
    Ok(match date {
        Some(d) => (EditionDate::parse(d).map_err(anyhow::Error::msg)?, None),
        None => (
            EditionDate::from_naive(now.with_timezone(&tz).date_naive()),
            Some(now),
        ),
    })
}

/// `preview`: the text part of the digest `email` would get from the page now.
async fn preview(ctx: &Context, email: &SubscriberEmail, out: &mut Output) -> anyhow::Result<()> {
    let s = ctx
        .store
        .subscriber(email)?
        .with_context(|| format!("{email} is not a subscriber"))?;
    if s.status != Status::Active {
        let _ = writeln!(
            out.stderr,
            "note: {email} is {}; this is what they would get if they were active",
            s.status
        );
    }
    let today = EditionDate::today_in(ctx.schedule.tz());
    match edition::preview(&ctx.editions, today, &s).await? {
        Some(r) => out.stdout.push_str(&r.text),
        None => {
            let _ = writeln!(
                out.stderr,
                "nothing new for {email} on the page right now: no digest would be sent"
            );
        }
    }
    Ok(())
}

/// `store compact`, between editions, like a backup.
async fn compact(ctx: &Context, out: &mut Output) -> anyhow::Result<()> {
    let _between_editions = ctx.editions.between_editions().await;
    let store = ctx.store.clone();
    let engine = store.engine();
    match tokio::task::spawn_blocking(move || store.compact()).await?? {
        Some(c) => {
            let _ = writeln!(
                out.stdout,
                "store compacted: {:.1} MB -> {:.1} MB in {:.1} s",
                c.bytes_before as f64 / 1e6,
                c.bytes_after as f64 / 1e6,
                c.took.as_secs_f64()
            );
        }
        None => {
            let _ = writeln!(
                out.stdout,
                "nothing to compact: the {engine} store reuses its free space ({:.1} MB)",
                ctx.store.disk_bytes() as f64 / 1e6
            );
        }
    }
    Ok(())
}

/// `explain`: one line per paper, the verdict first, so a reader can scan the reasons.
async fn explain(
    ctx: &Context,
    email: &SubscriberEmail,
    date: EditionDate,
    out: &mut Output,
) -> anyhow::Result<()> {
    let s = ctx
        .store
        .subscriber(email)?
        .with_context(|| format!("{email} is not a subscriber"))?;
    if !s.receives_digests() {
        let _ = writeln!(
            out.stderr,
            "note: {email} is {}{}; this is what they would get otherwise",
            s.status,
            if s.preferences.paused() {
                " and paused"
            } else {
                ""
            }
        );
    }
    let e = edition::explain(&ctx.editions, date, &s, true, edition::Judge::AsSent)
        .await?
        .expect("a fetch was allowed");
    let o = &mut out.stdout;
    let _ = writeln!(
        o,
        "edition {date} for {email}: {} of {} papers picked ({}{})",
        e.picked(),
        e.lines.len(),
        if e.on_record {
            "the edition on record"
        } else {
            "the page as it is now; nothing on record for that date"
        },
        if e.had_it {
            "; their digest of it is planned or sent"
        } else {
            ""
        }
    );
    let _ = writeln!(
        o,
        "preferences: {}",
        Effective::new(&s.preferences, &ctx.digest).explain()
    );
    for (paper, verdict) in &e.lines {
        let _ = writeln!(
            o,
            "{:<34} {:>5}  {:<10}  {}",
            verdict.to_string(),
            paper.upvotes,
            paper.id,
            crate::render::trim_at_word(&paper.title, 70)
        );
    }
    Ok(())
}

/// The server's edition of `date`, then (given a time) the editions of those whose own
/// send time has come by then.
async fn run_once(
    ctx: &Context,
    date: EditionDate,
    tick: Option<chrono::DateTime<chrono::Utc>>,
    out: &mut Output,
) -> anyhow::Result<()> {
    let mut reports = vec![(date, edition::run(&ctx.editions, date).await?)];
    if let Some(at) = tick {
        reports.extend(edition::tick(&ctx.editions, at).await?);
    }
    let mut deferred = 0;
    let mut last_error = None;
    for (date, report) in &reports {
        let _ = writeln!(out.stdout, "{}", report.summary(*date));
        deferred += report.send.deferred;
        last_error = last_error.or(report.send.last_error.clone());
    }
    if deferred > 0 && ctx.editions.is_stopping() {
        bail!(
            "paperboy is stopping: {deferred} digest(s) were not sent yet; they stay queued for the next run"
        );
    }
    if deferred > 0 {
        bail!(
            "SMTP: {deferred} digest(s) could not be sent ({}); they stay queued for the next run",
            last_error.as_deref().unwrap_or("unknown error")
        );
    }
    Ok(())
}

async fn dry_run_report(ctx: &Context, date: EditionDate, out: &mut Output) -> anyhow::Result<()> {
    let (on_page, lines) = edition::dry_run(&ctx.editions, date).await?;
    let o = &mut out.stdout;
    let _ = writeln!(
        o,
        "dry run for edition {date}: {on_page} papers on the page; nothing is sent or recorded"
    );
    for line in lines {
        let who = &line.subscriber.email;
        let _ = match line.plan {
            DryRunPlan::AlreadyHas(state) => {
                writeln!(o, "{who}: already has this edition ({state:?})")
            }
            DryRunPlan::NothingNew => writeln!(o, "{who}: nothing new, no email"),
            DryRunPlan::NotDue => writeln!(
                o,
                "{who}: not due for this edition (weekly on another day, or a send time of their own)"
            ),
            DryRunPlan::Would {
                subject,
                papers,
                bytes,
            } => writeln!(
                o,
                "{who}: would get {} paper(s), {:.1} KB: {subject} [{}]",
                papers.len(),
                bytes as f64 / 1024.0,
                papers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
    }
    Ok(())
}

async fn subscribers(
    ctx: &Context,
    cmd: &SubscribersCommand,
    input: Option<Vec<u8>>,
    out: &mut Output,
) -> anyhow::Result<()> {
    match cmd {
        SubscribersCommand::Add {
            email,
            confirmed,
            min_upvotes,
            keywords,
            max_items,
            weekly,
            send_at,
            timezone,
        } => {
            let email = SubscriberEmail::parse(email)?;
            let frequency = match weekly {
                Some(day) => Frequency::parse(&format!("weekly:{day}"))?,
                None => Frequency::Daily,
            };
            let send_at = match send_at {
                Some(hour) => {
                    let zone = timezone
                        .clone()
                        .unwrap_or_else(|| ctx.schedule.tz().name().to_string());
                    Some(SendAt::parse_parts(hour, &zone)?)
                }
                None => None,
            };
            let choices = Choices {
                min_upvotes: *min_upvotes,
                keywords: Keywords::parse_list(keywords.as_deref().unwrap_or(""))?,
                max_items: *max_items,
                paused: false,
                frequency,
                send_at,
            };
            let prefs = Preferences::new(choices, &ctx.edition_days())?;
            let s = Subscriber::new(email, prefs, *confirmed);
            ctx.store.add_subscriber(&s)?;
            ctx.store.flush().await?;
            let _ = writeln!(out.stdout, "added {} ({})", s.email, s.status);
        }
        SubscribersCommand::List { json } => list(ctx, *json, out)?,
        SubscribersCommand::Remove { email, forget } => {
            remove(ctx, &SubscriberEmail::parse(email)?, *forget, out).await?;
        }
        SubscribersCommand::Export { format } => {
            out.stdout = crate::commands::transfer::export(&ctx.store.subscribers()?, *format)?;
        }
        SubscribersCommand::Import { .. } => {
            let bytes = input.context("no file content to import")?;
            let report =
                crate::commands::transfer::import(&ctx.store, &bytes, &ctx.edition_days())?;
            ctx.store.flush().await?;
            let _ = writeln!(out.stdout, "{report}");
        }
    }
    Ok(())
}

/// `subscribers list`: a table, or with `--json` the records export writes.
fn list(ctx: &Context, json: bool, out: &mut Output) -> anyhow::Result<()> {
    let all = ctx.store.subscribers()?;
    if json {
        let rows: Vec<_> = all.iter().map(crate::commands::transfer::record).collect();
        let _ = writeln!(out.stdout, "{}", serde_json::to_string_pretty(&rows)?);
    } else {
        table(ctx, &all, &mut out.stdout);
    }
    Ok(())
}

/// `subscribers remove`: unsubscribes, keeping the ledger so that a return repeats nothing;
/// with `--forget`, deletes every trace instead.
async fn remove(
    ctx: &Context,
    email: &SubscriberEmail,
    forget: bool,
    out: &mut Output,
) -> anyhow::Result<()> {
    if forget {
        ctx.store.remove_subscriber(email)?;
        let _ = writeln!(
            out.stdout,
            "forgot {email}: nothing about it is left in the store"
        );
    } else {
        let now = chrono::Utc::now();
        ctx.store
            .change_subscriber(email, |current| {
                let mut s = current.ok_or(())?;
                s.unsubscribe(now);
                Ok((s, ()))
            })?
            .map_err(|()| anyhow::anyhow!("{email} is not a subscriber"))?;
        let _ = writeln!(
            out.stdout,
            "unsubscribed {email} (use --forget to delete every trace)"
        );
    }
    ctx.store.flush().await?;
    Ok(())
}

fn table(ctx: &Context, all: &[Subscriber], o: &mut String) {
    if all.is_empty() {
        let _ = writeln!(
            o,
            "no subscribers yet; add one with `paperboy subscribers add EMAIL --confirmed`"
        );
        return;
    }
    let d = &ctx.digest;
    let width = all
        .iter()
        .map(|s| s.email.as_str().len())
        .max()
        .unwrap_or(5)
        .max(5);
    let when = |p: &Preferences| match p.send_at() {
        Some(at) => format!("{} {at}", p.frequency()),
        None => p.frequency().to_string(),
    };
    let when_width = all
        .iter()
        .map(|s| when(&s.preferences).len())
        .max()
        .unwrap_or(4);
    // The last bounce or complaint, after the keywords, only when someone has one.
    let bounces = all.iter().any(|s| s.last_bounce.is_some());
    let keywords_width = if bounces {
        all.iter()
            .map(|s| s.preferences.keywords().to_string().chars().count())
            .max()
            .unwrap_or(0)
            .max("keywords".len())
    } else {
        0
    };
    let _ = write!(
        o,
        "{:<width$}  {:<12}  {:>11}  {:>9}  {:<when_width$}  {:<keywords_width$}",
        "email", "status", "min_upvotes", "max_items", "when", "keywords"
    );
    let _ = writeln!(o, "{}", if bounces { "  last bounce" } else { "" });
    for s in all {
        let p = &s.preferences;
        let or_default = |v: Option<u32>, def: u32| v.map_or(format!("{def}*"), |v| v.to_string());
        let status = if p.paused() && s.status == Status::Active {
            "paused".to_string()
        } else {
            s.status.to_string()
        };
        let _ = write!(
            o,
            "{:<width$}  {:<12}  {:>11}  {:>9}  {:<when_width$}  {:<keywords_width$}",
            s.email.as_str(),
            status,
            or_default(p.min_upvotes(), d.min_upvotes),
            or_default(p.max_items(), d.max_items),
            when(p),
            if p.keywords().is_empty() {
                "-".to_string()
            } else {
                p.keywords().to_string()
            }
        );
        match &s.last_bounce {
            Some(b) if bounces => {
                let _ = writeln!(o, "  {b}");
            }
            _ => {
                let _ = writeln!(o, "{}", if bounces { "  -" } else { "" });
            }
        }
    }
    let noun = if all.len() == 1 {
        "subscriber"
    } else {
        "subscribers"
    };
    let _ = writeln!(o, "({} {noun}; * = the operator's default)", all.len());
}
