//! One edition, from fetch to mail: what `run-once` does and what each scheduled tick does.
//!
//! The order is what makes "once" hold: fetch the page whole (or fail with nothing sent),
//! freeze the edition's papers, plan each subscriber's delivery together with its ledger
//! entries in one transaction, make that durable, then send. A re-run finds the plans and
//! sends only what is still pending.

pub mod deliver;
pub mod due;
mod preview;
pub mod select;

pub use preview::{DryRunLine, DryRunPlan, Explanation, Judge, as_sent, dry_run, explain, preview};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::config::{DigestSettings, SmtpSettings};
use crate::domain::{EditionDate, Keywords, Paper, PaperId, SentOn, Subscriber};
use crate::edition::due::{Occasion, due};
use crate::edition::select::{Effective, Pool, Verdict, judge, matches_keywords, picked};
use crate::mail::Mailer;
use crate::render::{BrowserLink, EditionTemplate, Look, Personal, RenderError};
use crate::source::{Source, SourceError};
use crate::store::{
    Delivery, DeliveryState, EditionRecord, PageIndex, SentBefore, Store, StoreError,
};
use crate::telemetry::metrics;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::one_line;
use crate::tokens::Links;
use deliver::SendOutcome;

/// What editions are made with: the store, the source, the mailer and the links, each
/// built from its own settings at start and handed over here. One per process; the
/// scheduler, `run-once` and the pages share it.
pub struct Editions {
    store: Store,
    source: Arc<Source>,
    mailer: Mailer,
    links: Links,
    /// The operator's defaults for what a subscriber did not choose.
    digest: DigestSettings,
    /// How digests look: thumbnails, the postal address.
    look: Look,
    /// Concurrency, attempts, rate caps and when to give up.
    smtp: SmtpSettings,
    /// How far back a subscriber's own send time may have come and still be kept.
    catch_up: chrono::Duration,
    metrics: Arc<Metrics>,
    /// Held while an edition runs (and while a backup is taken): the scheduler and a
    /// `run-once` sent through the admin socket must never send one edition side by side.
    one_at_a_time: tokio::sync::Mutex<()>,
    /// Set on shutdown: no new message is started, those in flight finish and are recorded.
    stopping: AtomicBool,
}

/// The parts [`Editions::new`] takes.
pub struct Parts {
    pub store: Store,
    pub source: Arc<Source>,
    pub mailer: Mailer,
    pub links: Links,
    pub digest: DigestSettings,
    pub look: Look,
    pub smtp: SmtpSettings,
    pub catch_up_hours: u32,
    pub metrics: Arc<Metrics>,
}

impl Editions {
    pub fn new(parts: Parts) -> Self {
        Self {
            store: parts.store,
            source: parts.source,
            mailer: parts.mailer,
            links: parts.links,
            digest: parts.digest,
            look: parts.look,
            smtp: parts.smtp,
            catch_up: chrono::Duration::hours(parts.catch_up_hours.into()),
            metrics: parts.metrics,
            one_at_a_time: tokio::sync::Mutex::new(()),
            stopping: AtomicBool::new(false),
        }
    }

    /// Waits until no edition runs and keeps it so while the guard lives: for a backup, a
    /// compaction, or the end of the process.
    pub async fn between_editions(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.one_at_a_time.lock().await
    }

    /// No new message is started from now on; those in flight finish and are recorded.
    pub fn request_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The parts of a digest that are a subscriber's own: why they get it, and their links
    /// (their own copy of the digest of `date` on the web among them).
    pub fn personal(&self, s: &Subscriber, date: EditionDate) -> Personal {
        Personal {
            why: Effective::new(&s.preferences, &self.digest).explain(),
            unsubscribe_url: self.links.unsubscribe(s.id),
            preferences_url: self.links.preferences(s.id),
            late: Vec::new(),
            weekly: !s.preferences.frequency().is_daily(),
            keywords: s.preferences.keywords().clone(),
            browser: BrowserLink::Own(self.links.digest(s.id, date)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("source failed")]
    Source(#[from] SourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("rendering failed")]
    Render(#[from] RenderError),
}

#[derive(Debug, Default, Clone)]
pub struct Report {
    pub papers_on_page: usize,
    /// Deliveries planned by this run.
    pub planned: usize,
    /// Active subscribers with nothing new that matches: no email.
    pub nothing_new: usize,
    /// Active subscribers who already had this edition planned or sent.
    pub already_had: usize,
    /// Active subscribers not due for it: weekly on another day, or with a send time of
    /// their own that has not come (or, for a scheduled edition, that is theirs to keep).
    pub not_due: usize,
    pub send: SendOutcome,
    pub elapsed: Duration,
}

/// "1 digest", "2 digests".
fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

impl Report {
    /// The one line an edition leaves in the log and on the terminal.
    pub fn summary(&self, date: EditionDate) -> String {
        let not_due = match self.not_due {
            0 => String::new(),
            n => format!(", {n} not due"),
        };
        format!(
            "edition {date}: {} on the page, {} planned, {} sent, {} failed, {} deferred, {} with nothing new, {} already had it{not_due} ({:.1} s)",
            plural(self.papers_on_page, "paper"),
            plural(self.planned, "digest"),
            self.send.sent,
            self.send.failed,
            self.send.deferred,
            self.nothing_new,
            self.already_had,
            self.elapsed.as_secs_f64()
        )
    }
}

/// The page of an edition as planning sees it: its papers (then those of recent lists, for
/// late bloomers), their numbers in the ledgers, their first sightings and the selections
/// on record that carried them (looked up once, not once per subscriber), and the
/// edition's template.
struct Page<'a> {
    date: EditionDate,
    papers: Vec<Paper>,
    on_page: usize,
    index: PageIndex,
    template: &'a EditionTemplate,
    /// Which papers match each set of keywords seen so far: subscribers' keyword sets
    /// repeat, and matching lower-cases whole abstracts.
    keyword_matches: Mutex<HashMap<Vec<String>, Arc<[bool]>>>,
}

impl<'a> Page<'a> {
    fn new(
        editions: &Editions,
        date: EditionDate,
        page: &[Paper],
        recent: &[Paper],
        template: &'a EditionTemplate,
    ) -> Result<Self, RunError> {
        let mut papers = page.to_vec();
        papers.extend(
            recent
                .iter()
                .filter(|r| !page.iter().any(|p| p.id == r.id))
                .cloned(),
        );
        let ids: Vec<PaperId> = papers.iter().map(|p| p.id.clone()).collect();
        Ok(Self {
            date,
            on_page: page.len(),
            index: editions.store.page_index(&ids)?,
            papers,
            template,
            keyword_matches: Mutex::default(),
        })
    }

    fn pool(&self) -> Pool<'_> {
        Pool {
            date: self.date,
            papers: &self.papers,
            on_page: self.on_page,
            first_seen: Some(self.index.first_seen()),
        }
    }

    /// For each paper, whether it matches these (non-empty) keywords.
    fn matching(&self, keywords: &Keywords) -> Arc<[bool]> {
        let mut known = self
            .keyword_matches
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        known
            .entry(keywords.as_slice().to_vec())
            .or_insert_with(|| {
                self.papers
                    .iter()
                    .map(|p| matches_keywords(p, keywords))
                    .collect()
            })
            .clone()
    }

    /// The verdict on every paper for a subscriber, before the size budget.
    fn judge(&self, effective: &Effective<'_>, sent: &SentOn) -> Vec<(&Paper, Verdict)> {
        let pool = self.pool();
        if effective.keywords.is_empty() {
            judge(&pool, effective, sent, |_, _| true)
        } else {
            let matching = self.matching(effective.keywords);
            judge(&pool, effective, sent, |i, _| matching[i])
        }
    }
}

/// The pages an edition's subscribers are chosen from: the day's (with recent lists), and
/// the week's, built when the first weekly subscriber needs it.
struct Pages<'a> {
    editions: &'a Editions,
    papers: &'a [Paper],
    recent: &'a [Paper],
    template: &'a EditionTemplate,
    daily: Page<'a>,
    weekly: Option<Page<'a>>,
}

impl<'a> Pages<'a> {
    fn new(
        editions: &'a Editions,
        date: EditionDate,
        papers: &'a [Paper],
        recent: &'a [Paper],
        template: &'a EditionTemplate,
    ) -> Result<Self, RunError> {
        Ok(Self {
            daily: Page::new(editions, date, papers, recent, template)?,
            weekly: None,
            editions,
            papers,
            recent,
            template,
        })
    }

    fn for_subscriber(&mut self, s: &Subscriber) -> Result<&Page<'a>, RunError> {
        if s.preferences.frequency().is_daily() {
            return Ok(&self.daily);
        }
        if self.weekly.is_none() {
            let date = self.daily.date;
            let mut pool = self.papers.to_vec();
            pool.extend(week_before(self.editions, date, self.papers)?);
            let page = Page::new(self.editions, date, &pool, self.recent, self.template)?;
            self.weekly = Some(page);
        }
        Ok(self.weekly.as_ref().expect("just built"))
    }
}

/// Which papers a subscriber gets from this page, after the size budget: the papers that
/// would not fit stay unsent and can come in a later digest. Empty means no email. The
/// late bloomers among them are put in `personal`, which the digest marks them from.
fn choose(
    editions: &Editions,
    page: &Page<'_>,
    s: &Subscriber,
    before: &SentBefore,
    personal: &mut Personal,
) -> Vec<PaperId> {
    decide(editions, page, s, &before.among(&page.index), personal).1
}

/// [`choose`], with the verdict on every paper of the page (those the size budget left out
/// marked so).
fn decide<'p>(
    editions: &Editions,
    page: &'p Page<'_>,
    s: &Subscriber,
    sent: &SentOn,
    personal: &mut Personal,
) -> (Vec<(&'p Paper, Verdict)>, Vec<PaperId>) {
    let effective = Effective::new(&s.preferences, &editions.digest);
    let mut judged = page.judge(&effective, sent);
    let picked = picked(&judged);
    personal.late = picked
        .iter()
        .filter_map(|(p, late)| Some((p.id.clone(), (*late)?)))
        .collect();
    let chosen: Vec<PaperId> = picked.into_iter().map(|(p, _)| p.id.clone()).collect();
    let fitted = page.template.fit(&chosen, personal);
    if fitted.len() < chosen.len() {
        personal.late.retain(|(id, _)| fitted.contains(id));
        for (p, v) in &mut judged {
            if v.is_picked() && !fitted.contains(&p.id) {
                *v = Verdict::OverSizeBudget;
            }
        }
    }
    (judged, fitted)
}

/// How old a listing a tick may reuse instead of asking the source again.
const TICK_FETCH_MAX_AGE: Duration = Duration::from_secs(30 * 60);

/// Fetches, plans and sends the server's edition for `date` to those due for it.
pub async fn run(editions: &Arc<Editions>, date: EditionDate) -> Result<Report, RunError> {
    run_for(editions, date, Occasion::Scheduled(date)).await
}

/// Runs the editions that subscribers with a send time of their own are due for at `at`
/// (usually none: then nothing is fetched). One edition per local date that came due.
pub async fn tick(
    editions: &Arc<Editions>,
    at: DateTime<Utc>,
) -> Result<Vec<(EditionDate, Report)>, RunError> {
    let occasion = Occasion::Tick {
        at,
        window: editions.catch_up,
    };
    let mut dates = std::collections::BTreeSet::new();
    for s in editions.store.subscribers_by_id() {
        let s = s?;
        if s.preferences.send_at().is_none() || !s.receives_digests() {
            continue;
        }
        let before = editions.store.sent_before(s.id)?;
        if let Some(d) = due(&s.preferences, &occasion, |a, b| before.had_between(a, b)) {
            dates.insert(d);
        }
    }
    let mut reports = Vec::new();
    for date in dates {
        reports.push((date, run_for(editions, date, occasion).await?));
    }
    Ok(reports)
}

/// Fetches, plans and sends the edition for `date` to those due for it at `occasion`.
async fn run_for(
    editions: &Arc<Editions>,
    date: EditionDate,
    occasion: Occasion,
) -> Result<Report, RunError> {
    let _one_at_a_time = editions.one_at_a_time.lock().await;
    let started = Instant::now();
    let store = &editions.store;
    let listing = match occasion {
        Occasion::Scheduled(_) => editions.source.fetch(date).await?,
        // Ticks come every quarter hour and may find someone due each time.
        Occasion::Tick { .. } => {
            editions
                .source
                .fetch_within(date, TICK_FETCH_MAX_AGE)
                .await?
        }
    };
    if listing.skipped > 0 {
        tracing::warn!(edition = %date, skipped = listing.skipped, "entries on the page could not be read as papers");
    }
    let (mut report, template) =
        plan(editions, date, &listing.papers, &listing.recent, occasion).await?;
    tracing::info!(
        edition = %date,
        planned = report.planned,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "edition planned; sending"
    );
    // Digests of earlier editions still waiting (the server was down, or refused for now)
    // go first: once planned, their papers are in the ledger and no later digest has them.
    for earlier in store.open_dates()?.into_iter().filter(|d| *d < date) {
        let Some(edition) = store.edition(earlier)? else {
            continue;
        };
        let template = Arc::new(template_for(editions, &edition)?);
        let outcome = deliver::send_pending(editions, earlier, &template).await?;
        tracing::info!(edition = %earlier, sent = outcome.sent, deferred = outcome.deferred, "earlier edition's waiting digests");
        report.send.add(outcome);
    }
    report
        .send
        .add(deliver::send_pending(editions, date, &template).await?);
    let pruned = store.prune(date, editions.digest.retention_days)?;
    store.flush().await?;
    compact_if_grown(store).await;
    metrics::inc(&editions.metrics.editions);
    report.elapsed = started.elapsed();
    tracing::info!(
        edition = %date,
        papers = report.papers_on_page,
        planned = report.planned,
        sent = report.send.sent,
        failed = report.send.failed,
        deferred = report.send.deferred,
        bytes_sent = report.send.bytes,
        nothing_new = report.nothing_new,
        already_had = report.already_had,
        pruned_papers = pruned.papers,
        pruned_ledger = pruned.ledger,
        elapsed_ms = report.elapsed.as_millis() as u64,
        "edition done"
    );
    Ok(report)
}

/// Between editions, sled's files are rewritten once they hold well over twice their
/// records (sled frees rewritten pages only slowly on its own; see `store::engine`). A
/// failure is logged: the edition is done, and the next one tries again.
async fn compact_if_grown(store: &crate::store::Store) {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || store.compact_if_grown()).await {
        Ok(Ok(Some(c))) => tracing::info!(
            bytes_before = c.bytes_before,
            bytes_after = c.bytes_after,
            took_ms = c.took.as_millis() as u64,
            "store compacted"
        ),
        Ok(Ok(None)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %one_line(&e), "compacting the store failed")
        }
        Err(e) => tracing::warn!(error = %e, "compacting the store panicked"),
    }
}

/// The six editions before `date`, newest first: with that day's page, the pool of a
/// weekly digest.
pub fn week_before_dates(date: EditionDate) -> impl Iterator<Item = EditionDate> {
    (1..=6).map(move |k| date.minus_days(k))
}

/// The papers of the [`week_before_dates`] editions that are not among `page`, newest
/// snapshot first.
fn week_before(
    editions: &Editions,
    date: EditionDate,
    page: &[Paper],
) -> Result<Vec<Paper>, RunError> {
    let mut seen: std::collections::HashSet<PaperId> = page.iter().map(|p| p.id.clone()).collect();
    let mut week = Vec::new();
    for day in week_before_dates(date) {
        if let Some(e) = editions.store.edition(day)? {
            week.extend(e.papers.into_iter().filter(|p| seen.insert(p.id.clone())));
        }
    }
    Ok(week)
}

/// Every paper a digest of this edition can hold: its page's, its recent ones and those of
/// the week before (for weekly digests).
fn digest_papers(editions: &Editions, edition: &EditionRecord) -> Result<Vec<Paper>, RunError> {
    let mut papers = edition.all_papers();
    papers.extend(week_before(editions, edition.date, &papers)?);
    Ok(papers)
}

/// The template every digest of an edition is cut from, with all its [`digest_papers`], so
/// a retry renders what was planned.
fn template_for(editions: &Editions, edition: &EditionRecord) -> Result<EditionTemplate, RunError> {
    Ok(EditionTemplate::new(
        edition.date,
        &digest_papers(editions, edition)?,
        editions.links.base(),
        &editions.look,
    )?)
}

/// Freezes the edition's papers and plans one delivery for each active subscriber due for it
/// at `occasion` who has something new, durably, before anything is sent. Running it again
/// for the same date plans only for subscribers who have no delivery of that edition yet.
pub async fn plan(
    editions: &Editions,
    date: EditionDate,
    papers: &[Paper],
    recent: &[Paper],
    occasion: Occasion,
) -> Result<(Report, Arc<EditionTemplate>), RunError> {
    let store = &editions.store;
    let mut report = Report {
        papers_on_page: papers.len(),
        ..Report::default()
    };
    let retention = editions.digest.retention_days;
    store.clear_deliveries_before(date, date.minus_days(retention))?;
    store.record_papers(date, papers)?;
    store.record_papers(date, recent)?;
    let edition = store.freeze_edition(date, papers, recent)?;
    let template = Arc::new(template_for(editions, &edition)?);

    let mut pages = Pages::new(editions, date, papers, recent, &template)?;
    let mut planner = store.planner(date)?;
    for s in store.subscribers_by_id() {
        let s = s?;
        if !s.receives_digests() {
            continue;
        }
        let before = store.sent_before(s.id)?;
        if before.has_edition(date) {
            report.already_had += 1;
            continue;
        }
        if due(&s.preferences, &occasion, |a, b| before.had_between(a, b)) != Some(date) {
            report.not_due += 1;
            continue;
        }
        let page = pages.for_subscriber(&s)?;
        let mut personal = editions.personal(&s, date);
        let chosen = choose(editions, page, &s, &before, &mut personal);
        if chosen.is_empty() {
            report.nothing_new += 1;
            continue;
        }
        planner.plan(
            Delivery {
                date,
                subscriber: s.id,
                papers: chosen,
                message_id: editions.mailer.message_id(date, s.id),
                state: DeliveryState::Pending,
                attempts: 0,
                last_error: None,
                updated_at: Utc::now(),
                created_at: Some(Utc::now()),
                late: personal.late,
            },
            page.index.seqs(),
        )?;
    }
    report.planned = planner.finish()?;
    // Plans and ledger entries are durable before the first message leaves.
    store.flush().await?;
    Ok((report, template))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each error says its own part and leaves its cause to the chain, so the chain printed
    /// whole says every part exactly once, a library's error that quotes its own cause
    /// included.
    #[test]
    fn a_nested_error_prints_each_part_once() {
        let url = "https://huggingface.co/api/daily_papers";
        let e = RunError::Source(SourceError::Of {
            key: "source.also.api".into(),
            error: Box::new(SourceError::GaveUp {
                attempts: 3,
                last: Box::new(SourceError::Http {
                    url: url.into(),
                    status: 502,
                }),
            }),
        });
        assert_eq!(
            one_line(&e),
            format!(
                "source failed: source.also.api: gave up after 3 attempts: {url} answered HTTP 502"
            )
        );

        let e = RunError::Render(RenderError::from(askama::Error::Fmt));
        assert_eq!(
            one_line(&e),
            "rendering failed: template error: an error occurred when formatting an argument"
        );
    }
}
