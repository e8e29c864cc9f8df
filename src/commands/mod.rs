//! The commands that work on the store, written once for both ways they run: in the CLI's
//! own process, or inside `serve` when the daemon holds the store (see [`crate::commands::admin`]).
//! They write to an [`Output`] instead of the terminal, so either caller can deliver it.

pub mod admin;
pub mod backup;
pub mod transfer;

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::cli::{Command, StoreCommand, SubscribersCommand};
use crate::domain::{
    EditionDate, Frequency, Keywords, Preferences, SendAt, Status, Subscriber, SubscriberEmail,
};
use crate::edition::select::Effective;
use crate::edition::{self, DryRunPlan};

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

pub async fn execute(
    app: &Arc<App>,
    command: &Command,
    input: Option<Vec<u8>>,
    out: &mut Output,
) -> anyhow::Result<()> {
    let tz = app.settings.timezone()?;
    match command {
        Command::Serve | Command::CheckConfig | Command::Restore { .. } => {
            bail!("this command does not run on an open store")
        }
        Command::RunOnce { date, dry_run, now } => {
            let now = match now {
                Some(t) => chrono::DateTime::parse_from_rfc3339(t)
                    .map_err(|e| anyhow::anyhow!("--now '{t}': {e}"))?
                    .with_timezone(&chrono::Utc),
                None => chrono::Utc::now(),
            };
            let (date, tick) = match date {
                Some(d) => (EditionDate::parse(d).map_err(anyhow::Error::msg)?, false),
                None => (
                    EditionDate::from_naive(now.with_timezone(&tz).date_naive()),
                    true,
                ),
            };
            if *dry_run {
                dry_run_report(app, date, out).await
            } else {
                run_once(app, date, tick.then_some(now), out).await
            }
        }
        Command::Subscribers(cmd) => subscribers(app, cmd, input, out).await,
        Command::Preview { email } => {
            let email = SubscriberEmail::parse(email)?;
            let s = app
                .store
                .subscriber(&email)?
                .with_context(|| format!("{email} is not a subscriber"))?;
            if s.status != Status::Active {
                let _ = writeln!(
                    out.stderr,
                    "note: {email} is {}; this is what they would get if they were active",
                    s.status
                );
            }
            match edition::preview(app, EditionDate::today_in(tz), &s).await? {
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
        Command::Explain { email, date } => {
            let date = match date {
                Some(d) => EditionDate::parse(d).map_err(anyhow::Error::msg)?,
                None => EditionDate::today_in(tz),
            };
            explain(app, &SubscriberEmail::parse(email)?, date, out).await
        }
        Command::Backup { .. } => {
            let bytes = crate::commands::backup::backup(app).await?;
            let _ = writeln!(out.stdout, "backup written: {} bytes", bytes.len());
            out.file = Some(bytes);
            Ok(())
        }
        Command::Store(StoreCommand::Compact) => {
            // Between editions, like a backup.
            let _between_editions = app.edition_lock.lock().await;
            let store = app.store.clone();
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
                        app.store.disk_bytes() as f64 / 1e6
                    );
                }
            }
            Ok(())
        }
    }
}

/// `explain`: one line per paper, the verdict first, so a reader can scan the reasons.
async fn explain(
    app: &Arc<App>,
    email: &SubscriberEmail,
    date: EditionDate,
    out: &mut Output,
) -> anyhow::Result<()> {
    let s = app
        .store
        .subscriber(email)?
        .with_context(|| format!("{email} is not a subscriber"))?;
    if !s.receives_digests() {
        let _ = writeln!(
            out.stderr,
            "note: {email} is {}{}; this is what they would get otherwise",
            s.status,
            if s.preferences.paused {
                " and paused"
            } else {
                ""
            }
        );
    }
    let e = edition::explain(app, date, &s, true)
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
        Effective::new(&s.preferences, &app.settings.digest).explain()
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
    app: &Arc<App>,
    date: EditionDate,
    tick: Option<chrono::DateTime<chrono::Utc>>,
    out: &mut Output,
) -> anyhow::Result<()> {
    let mut reports = vec![(date, edition::run(app, date).await?)];
    if let Some(at) = tick {
        reports.extend(edition::tick(app, at).await?);
    }
    let mut deferred = 0;
    let mut last_error = None;
    for (date, report) in &reports {
        let _ = writeln!(out.stdout, "{}", report.summary(*date));
        deferred += report.send.deferred;
        last_error = last_error.or(report.send.last_error.clone());
    }
    if deferred > 0 {
        bail!(
            "SMTP: {deferred} digest(s) could not be sent ({}); they stay queued for the next run",
            last_error.as_deref().unwrap_or("unknown error")
        );
    }
    Ok(())
}

async fn dry_run_report(app: &Arc<App>, date: EditionDate, out: &mut Output) -> anyhow::Result<()> {
    let (on_page, lines) = edition::dry_run(app, date).await?;
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
    app: &App,
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
            let keywords = Keywords::parse_list(keywords.as_deref().unwrap_or(""))?;
            let mut prefs = Preferences::new(*min_upvotes, keywords, *max_items)?;
            if let Some(day) = weekly {
                prefs.frequency = Frequency::parse(&format!("weekly:{day}"))?;
            }
            if let Some(hour) = send_at {
                let zone = timezone
                    .clone()
                    .unwrap_or_else(|| app.settings.schedule.timezone.clone());
                prefs.send_at = Some(SendAt::parse_parts(hour, &zone)?);
            }
            crate::schedule::check_weekly(&prefs, &app.settings).map_err(anyhow::Error::msg)?;
            let s = Subscriber::new(email, prefs, *confirmed);
            app.store.add_subscriber(&s)?;
            app.store.flush().await?;
            let _ = writeln!(out.stdout, "added {} ({})", s.email, s.status);
        }
        SubscribersCommand::List { json } => {
            let all = app.store.subscribers()?;
            if *json {
                let rows: Vec<_> = all.iter().map(crate::commands::transfer::record).collect();
                let _ = writeln!(out.stdout, "{}", serde_json::to_string_pretty(&rows)?);
            } else {
                table(app, &all, &mut out.stdout);
            }
        }
        SubscribersCommand::Remove { email, forget } => {
            let email = SubscriberEmail::parse(email)?;
            if *forget {
                app.store.remove_subscriber(&email)?;
                let _ = writeln!(
                    out.stdout,
                    "forgot {email}: nothing about it is left in the store"
                );
            } else {
                let mut s = app
                    .store
                    .subscriber(&email)?
                    .with_context(|| format!("{email} is not a subscriber"))?;
                s.unsubscribe(chrono::Utc::now());
                app.store.update_subscriber(&s)?;
                let _ = writeln!(
                    out.stdout,
                    "unsubscribed {email} (use --forget to delete every trace)"
                );
            }
            app.store.flush().await?;
        }
        SubscribersCommand::Export { format } => {
            out.stdout = crate::commands::transfer::export(&app.store.subscribers()?, *format)?;
        }
        SubscribersCommand::Import { .. } => {
            let bytes = input.context("no file content to import")?;
            let report = crate::commands::transfer::import(&app.store, &bytes)?;
            app.store.flush().await?;
            let _ = writeln!(out.stdout, "{report}");
        }
    }
    Ok(())
}

fn table(app: &App, all: &[Subscriber], o: &mut String) {
    if all.is_empty() {
        let _ = writeln!(
            o,
            "no subscribers yet; add one with `paperboy subscribers add EMAIL --confirmed`"
        );
        return;
    }
    let d = &app.settings.digest;
    let width = all
        .iter()
        .map(|s| s.email.as_str().len())
        .max()
        .unwrap_or(5)
        .max(5);
    let when = |p: &Preferences| match p.send_at {
        Some(at) => format!("{} {at}", p.frequency),
        None => p.frequency.to_string(),
    };
    let when_width = all
        .iter()
        .map(|s| when(&s.preferences).len())
        .max()
        .unwrap_or(4);
    let _ = writeln!(
        o,
        "{:<width$}  {:<12}  {:>11}  {:>9}  {:<when_width$}  keywords",
        "email", "status", "min_upvotes", "max_items", "when"
    );
    for s in all {
        let p = &s.preferences;
        let or_default = |v: Option<u32>, def: u32| v.map_or(format!("{def}*"), |v| v.to_string());
        let status = if p.paused && s.status == Status::Active {
            "paused".to_string()
        } else {
            s.status.to_string()
        };
        let _ = writeln!(
            o,
            "{:<width$}  {:<12}  {:>11}  {:>9}  {:<when_width$}  {}",
            s.email.as_str(),
            status,
            or_default(p.min_upvotes, d.min_upvotes),
            or_default(p.max_items, d.max_items),
            when(p),
            if p.keywords.is_empty() {
                "-".to_string()
            } else {
                p.keywords.to_string()
            }
        );
    }
    let noun = if all.len() == 1 {
        "subscriber"
    } else {
        "subscribers"
    };
    let _ = writeln!(o, "({} {noun}; * = the operator's default)", all.len());
}
