//! The outbox worker: sends an edition's planned deliveries and records each outcome.
//!
//! Every delivery is planned durably before its message leaves and is durably `Sent` before
//! its worker takes another message. A crash can only repeat the messages in flight (at
//! most `mail.smtp.concurrency`, one per worker), with the same Message-ID; it never loses
//! one.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::Editions;
use crate::config::SmtpSettings;
use crate::domain::{EditionDate, Status, Subscriber, SubscriberId};
use crate::mail::{Formatted, Outgoing, SendError, Session, with_retries};
use crate::render::EditionTemplate;
use crate::store::{Delivery, DeliveryState, GroupCommit, StoreError};
use crate::telemetry::metrics::{self, Metrics};
use crate::telemetry::one_line;

/// Permanent refusals in a row after which a subscriber is marked bounced and skipped.
pub const BOUNCE_AFTER: u32 = 3;

#[derive(Debug, Default, Clone)]
pub struct SendOutcome {
    pub sent: usize,
    /// Size of the messages sent, headers included.
    pub bytes: u64,
    /// Refused permanently this run.
    pub failed: usize,
    /// Not accepted because of temporary failures; still pending for the next run.
    pub deferred: usize,
    /// No longer active (unsubscribed or removed since planning): not sent.
    pub skipped: usize,
    pub last_error: Option<String>,
}

impl SendOutcome {
    /// Adds another edition's outcome to this one.
    pub fn add(&mut self, other: SendOutcome) {
        self.sent += other.sent;
        self.bytes += other.bytes;
        self.failed += other.failed;
        self.deferred += other.deferred;
        self.skipped += other.skipped;
        self.last_error = other.last_error.or(self.last_error.take());
    }
}

enum Outcome {
    Sent { bytes: usize },
    Failed(String),
    Deferred(String),
    Skipped,
}

/// The send-rate caps of `[mail.smtp]`: the run waits for a slot instead of failing.
pub struct Pacer {
    clock: TokioClock,
    per_second: Option<Limiter>,
    per_hour: Option<Limiter>,
}

/// governor's clock read from tokio's, and waits on tokio's timers: so that the pacing
/// follows a paused test clock as it follows the real one.
#[derive(Clone, Copy)]
struct TokioClock {
    origin: tokio::time::Instant,
}

impl governor::clock::Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

impl Pacer {
    pub fn new(smtp: &SmtpSettings) -> Self {
        let clock = TokioClock {
            origin: tokio::time::Instant::now(),
        };
        let limiter = |quota| Some(RateLimiter::direct_with_clock(quota, clock));
        let nz = |n: u32| NonZeroU32::new(n);
        Self {
            clock,
            per_second: nz(smtp.max_per_second).and_then(|n| limiter(Quota::per_second(n))),
            // One at a time, evenly spaced: "1800 an hour" must not mean 1800 in the first
            // second when the provider also counts per minute.
            per_hour: nz(smtp.max_per_hour)
                .and_then(|n| limiter(Quota::per_hour(n).allow_burst(NonZeroU32::MIN))),
        }
    }

    pub async fn wait(&self) {
        for limiter in [&self.per_second, &self.per_hour].into_iter().flatten() {
            while let Err(not_until) = limiter.check() {
                let at = self.clock.origin + not_until.earliest_possible();
                tokio::time::sleep_until(at).await;
            }
        }
    }

    /// How long `n` messages take at the caps, if any cap is set.
    pub fn estimate(smtp: &SmtpSettings, n: usize) -> Option<Duration> {
        let secs = |per: u32, window: f64| (per > 0).then(|| n as f64 * window / per as f64);
        let by_second = secs(smtp.max_per_second, 1.0);
        let by_hour = secs(smtp.max_per_hour, 3600.0);
        by_second
            .into_iter()
            .chain(by_hour)
            .reduce(f64::max)
            .map(Duration::from_secs_f64)
    }
}

/// Sends every delivery of `date` that is pending, or was in flight when a run died.
///
/// `mail.smtp.concurrency` workers each take the next delivery, send it and wait until its
/// outcome is durable before taking another; their waits share flushes (group commit), so
/// the store syncs once per round of acceptances rather than once per message.
pub async fn send_pending(
    editions: &Arc<Editions>,
    date: EditionDate,
    template: &Arc<EditionTemplate>,
) -> Result<SendOutcome, StoreError> {
    let mut outcome = SendOutcome::default();
    let queue = open_deliveries(editions, date, &mut outcome)?;
    editions.store.flush().await?;
    if queue.is_empty() {
        return Ok(outcome);
    }
    let smtp = &editions.smtp;
    // Find out once, not once per message, whether the server is there at all.
    if let Err(e) = with_retries(smtp.max_attempts, &editions.metrics, || {
        editions.mailer.check()
    })
    .await
    {
        outcome.deferred = queue.len();
        outcome.last_error = Some(one_line(&e));
        return Ok(outcome);
    }
    if let Some(eta) = Pacer::estimate(smtp, queue.len()) {
        tracing::info!(
            edition = %date,
            digests = queue.len(),
            minutes = format!("{:.1}", eta.as_secs_f64() / 60.0),
            "send-rate caps in force; sending will take about this long"
        );
    }
    let shared = Arc::new(Shared {
        editions: editions.clone(),
        template: template.clone(),
        pacer: Pacer::new(smtp),
        commit: GroupCommit::new(editions.store.clone()),
        date,
        queue,
        next: AtomicUsize::new(0),
        failing_in_a_row: AtomicU32::new(0),
        concurrency: smtp.concurrency,
    });
    shared.send_all(&mut outcome).await?;
    Ok(outcome)
}

/// The subscribers whose delivery of `date` is open. A delivery planned longer ago than
/// `mail.smtp.give_up_after_hours` is too late to be news: it is marked failed and counted
/// in `outcome` instead of sent.
fn open_deliveries(
    editions: &Editions,
    date: EditionDate,
    outcome: &mut SendOutcome,
) -> Result<Vec<SubscriberId>, StoreError> {
    let give_up = chrono::Duration::hours(editions.smtp.give_up_after_hours.into());
    // Only who is still open is kept in memory; each worker reads the record it sends.
    let mut queue = Vec::new();
    for d in editions.store.deliveries_iter(date) {
        let mut d = d?;
        if !d.state.is_open() {
            continue;
        }
        if d.created_at.is_some_and(|t| Utc::now() - t > give_up) {
            d.state = DeliveryState::Failed;
            d.last_error = Some(format!(
                "given up after {} attempt(s) over {} hours; last error: {}",
                d.attempts,
                give_up.num_hours(),
                d.last_error.as_deref().unwrap_or("none")
            ));
            d.updated_at = Utc::now();
            editions.store.update_delivery(&d)?;
            tally(
                outcome,
                Outcome::Failed(d.last_error.clone().unwrap_or_default()),
                &editions.metrics,
            );
            continue;
        }
        queue.push(d.subscriber);
    }
    Ok(queue)
}

/// How often a long send tells systemd how far it is.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// What the send workers of one edition share.
struct Shared {
    editions: Arc<Editions>,
    template: Arc<EditionTemplate>,
    pacer: Pacer,
    commit: GroupCommit,
    date: EditionDate,
    queue: Vec<SubscriberId>,
    next: AtomicUsize,
    /// Messages in a row that failed temporarily after all their attempts: when as many as
    /// can be in flight have, the server is down and the rest wait for the next run.
    failing_in_a_row: AtomicU32,
    concurrency: u32,
}

impl Shared {
    /// Runs the workers over the queue and adds up their outcomes as they come in, telling
    /// systemd how far the send is.
    async fn send_all(self: &Arc<Self>, outcome: &mut SendOutcome) -> Result<(), StoreError> {
        let total = self.queue.len();
        let (results, mut received) = mpsc::unbounded_channel();
        let mut workers = JoinSet::new();
        for _ in 0..self.concurrency {
            let (shared, results) = (self.clone(), results.clone());
            workers.spawn(async move { shared.work(results).await });
        }
        drop(results);
        let mut finished = 0;
        let mut last_report = Instant::now();
        while let Some(result) = received.recv().await {
            tally(outcome, result?, &self.editions.metrics);
            finished += 1;
            if last_report.elapsed() >= PROGRESS_EVERY || finished == total {
                progress(self.date, finished, total);
                last_report = Instant::now();
            }
        }
        while let Some(done) = workers.join_next().await {
            done.expect("send worker panicked");
        }
        // Not started because the server kept failing or paperboy is stopping: the next run.
        outcome.deferred += total - finished;
        Ok(())
    }

    async fn work(&self, results: mpsc::UnboundedSender<Result<Outcome, StoreError>>) {
        let session = self.editions.mailer.session();
        self.work_with(&session, results).await;
        session.close().await;
    }

    async fn work_with(
        &self,
        session: &Session,
        results: mpsc::UnboundedSender<Result<Outcome, StoreError>>,
    ) {
        // This worker's last acceptance, recorded but perhaps not yet on disk. The next
        // message is sent meanwhile, but its final dot waits for it: so at most one
        // acceptance per worker is ever unrecorded, and the sync overlaps the transfer.
        let mut unsynced = None;
        self.work_loop(session, &results, &mut unsynced).await;
        if let Some(ticket) = unsynced
            && let Err(e) = self.commit.wait(ticket).await
        {
            let _ = results.send(Err(e));
        }
    }

    async fn work_loop(
        &self,
        session: &Session,
        results: &mpsc::UnboundedSender<Result<Outcome, StoreError>>,
        unsynced: &mut Option<u64>,
    ) {
        loop {
            if self.failing_in_a_row.load(Ordering::SeqCst) >= self.concurrency
                || self.editions.is_stopping()
            {
                return;
            }
            let Some(&subscriber) = self.queue.get(self.next.fetch_add(1, Ordering::SeqCst)) else {
                return;
            };
            let result = match self.editions.store.delivery(self.date, subscriber) {
                Ok(Some(d)) if d.state.is_open() => self.send_one(session, d, unsynced).await,
                // Sent by someone else since the queue was read: nothing to do.
                Ok(_) => Ok(Outcome::Skipped),
                Err(e) => Err(e),
            };
            match &result {
                Ok(Outcome::Deferred(_)) => {
                    self.failing_in_a_row.fetch_add(1, Ordering::SeqCst);
                }
                Ok(_) => self.failing_in_a_row.store(0, Ordering::SeqCst),
                Err(_) => {}
            }
            let stop = result.is_err();
            if results.send(result).is_err() || stop {
                return;
            }
        }
    }
}
/// "sending edition 2025-12-09: 120/400" for systemd.
fn progress(date: EditionDate, done: usize, total: usize) {
    crate::telemetry::systemd::status(&format!("sending edition {date}: {done}/{total}"));
}

fn tally(outcome: &mut SendOutcome, o: Outcome, m: &Metrics) {
    match o {
        Outcome::Sent { bytes } => {
            outcome.sent += 1;
            outcome.bytes += bytes as u64;
            metrics::inc(&m.digests_sent);
        }
        Outcome::Skipped => outcome.skipped += 1,
        Outcome::Failed(e) => {
            outcome.failed += 1;
            metrics::inc(&m.digests_failed);
            outcome.last_error = Some(e);
        }
        Outcome::Deferred(e) => {
            outcome.deferred += 1;
            metrics::inc(&m.digests_deferred);
            outcome.last_error = Some(e);
        }
    }
}

impl Shared {
    /// Sends one digest and records the outcome. An acceptance is recorded but not waited
    /// for: its ticket goes into `unsynced`, and the next message's acceptance waits for
    /// it. Failures are made durable before returning.
    async fn send_one(
        &self,
        session: &Session,
        mut d: Delivery,
        unsynced: &mut Option<u64>,
    ) -> Result<Outcome, StoreError> {
        let Some(mut sub) = self.recipient(&mut d)? else {
            return Ok(Outcome::Skipped);
        };
        let message = match self.compose(&d, &sub) {
            Ok(m) => m,
            Err(e) => {
                let e = sub.email.redact_in(&one_line(&e));
                return self.fail_permanently(d, &mut sub, e).await;
            }
        };

        // Nothing is written before the send: what must be durable before a message leaves is
        // its plan, and it is. A crash from here on leaves the delivery open, so the next
        // run sends it again with the same Message-ID (at-least-once); the attempt is
        // recorded with its outcome.
        d.attempts += 1;

        match self.transmit(session, &message, *unsynced).await {
            Ok(()) => self.record_sent(d, &mut sub, message.len(), unsynced),
            Err(e) if !e.is_transient() => {
                let e = sub.email.redact_in(&e.reason());
                self.fail_permanently(d, &mut sub, e).await
            }
            Err(e) => self.defer(d, &sub, &e).await,
        }
    }

    /// Whom a delivery goes to, if they still receive digests; if not, the delivery is
    /// recorded as failed ("no longer subscribed") and goes to no one.
    fn recipient(&self, d: &mut Delivery) -> Result<Option<Subscriber>, StoreError> {
        let store = &self.editions.store;
        let sub = store
            .subscriber_by_id(d.subscriber)?
            .filter(|s| s.receives_digests());
        if sub.is_none() {
            d.state = DeliveryState::Failed;
            d.last_error = Some("no longer subscribed".into());
            d.updated_at = Utc::now();
            store.update_delivery(d)?;
        }
        Ok(sub)
    }

    /// The delivery's digest for `sub`, formatted as it goes over the wire.
    fn compose(&self, d: &Delivery, sub: &Subscriber) -> Result<Formatted, SendError> {
        let editions = &self.editions;
        let mut personal = editions.personal(sub, d.date);
        personal.late = d.late.clone();
        let r = self
            .template
            .digest(&d.papers, &personal)
            .map_err(SendError::permanent_from)?;
        let message = editions.mailer.build(Outgoing {
            to: &sub.email,
            subject: &r.subject,
            text: r.text,
            html: r.html,
            message_id: &d.message_id,
            unsubscribe_url: &personal.unsubscribe_url,
        })?;
        Ok(editions.mailer.returning(message, sub.id, Some(d.date)))
    }

    /// Sends `message` within the rate caps, retrying temporary failures. The server may
    /// accept it only once `previous`, this worker's last acceptance, is on disk.
    async fn transmit(
        &self,
        session: &Session,
        message: &Formatted,
        previous: Option<u64>,
    ) -> Result<(), SendError> {
        let previous_on_disk = || async move {
            let Some(ticket) = previous else {
                return Ok(());
            };
            let on_disk = self.commit.wait(ticket).await;
            on_disk.map_err(|e| SendError::transient("recording the previous digest").because(e))
        };
        let paced_send = || async {
            self.pacer.wait().await;
            session.send_gated(message, previous_on_disk()).await
        };
        let attempts = self.editions.smtp.max_attempts;
        with_retries(attempts, &self.editions.metrics, paced_send).await
    }

    /// Records an acceptance, leaving its ticket in `unsynced`: it is on disk before this
    /// worker's next acceptance (see `work_with`), so a crash can repeat at most one message
    /// per worker.
    fn record_sent(
        &self,
        mut d: Delivery,
        sub: &mut Subscriber,
        bytes: usize,
        unsynced: &mut Option<u64>,
    ) -> Result<Outcome, StoreError> {
        let store = &self.editions.store;
        d.state = DeliveryState::Sent;
        d.last_error = None;
        d.updated_at = Utc::now();
        store.update_delivery(&d)?;
        if sub.permanent_failures > 0 {
            self.update_current(sub, |s| s.permanent_failures = 0)?;
        }
        *unsynced = Some(self.commit.ticket());
        tracing::debug!(edition = %d.date, domain = %sub.email.domain(), papers = d.papers.len(), "digest accepted");
        Ok(Outcome::Sent { bytes })
    }

    /// Leaves a delivery for the next run after its temporary failures, durably.
    async fn defer(
        &self,
        mut d: Delivery,
        sub: &Subscriber,
        e: &SendError,
    ) -> Result<Outcome, StoreError> {
        let e = sub.email.redact_in(&e.reason());
        d.state = DeliveryState::Retry;
        d.last_error = Some(e.clone());
        d.updated_at = Utc::now();
        self.editions.store.update_delivery(&d)?;
        self.commit.durable().await?;
        tracing::warn!(edition = %d.date, domain = %sub.email.domain(), error = %e, "digest deferred to the next run");
        Ok(Outcome::Deferred(e))
    }

    /// Changes the subscriber as stored now, not the copy read before the send: during the
    /// seconds a send takes they may unsubscribe, change their preferences or be marked
    /// bounced by the bounce intake, and writing back the earlier copy would undo that.
    /// `sub` becomes the record as written.
    fn update_current(
        &self,
        sub: &mut Subscriber,
        change: impl Fn(&mut Subscriber),
    ) -> Result<(), StoreError> {
        let written =
            self.editions
                .store
                .update_subscriber_by_id(sub.id, |current| match current {
                    Some(mut s) => {
                        change(&mut s);
                        Ok((s.clone(), s))
                    }
                    // Removed meanwhile: nothing to record.
                    None => Err(()),
                })?;
        if let Ok(s) = written {
            *sub = s;
        }
        Ok(())
    }

    async fn fail_permanently(
        &self,
        mut d: Delivery,
        sub: &mut Subscriber,
        error: String,
    ) -> Result<Outcome, StoreError> {
        let store = &self.editions.store;
        d.state = DeliveryState::Failed;
        d.last_error = Some(error.clone());
        d.updated_at = Utc::now();
        store.update_delivery(&d)?;
        let reason = format!("SMTP: {error}");
        self.update_current(sub, |s| {
            s.permanent_failures += 1;
            // As a bounce report would: one who left meanwhile stays gone.
            if s.permanent_failures >= BOUNCE_AFTER {
                s.bounced_permanently(d.updated_at, &reason);
            }
        })?;
        self.commit.durable().await?;
        tracing::warn!(
            edition = %d.date,
            domain = %sub.email.domain(),
            error = %error,
            bounced = sub.status == Status::Bounced,
            "digest refused permanently"
        );
        Ok(Outcome::Failed(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_the_time_the_caps_need() {
        let mut smtp = crate::config::Settings::default().mail.smtp;
        assert_eq!(Pacer::estimate(&smtp, 100), None);
        smtp.max_per_hour = 1800;
        assert_eq!(Pacer::estimate(&smtp, 900), Some(Duration::from_secs(1800)));
        smtp.max_per_second = 1;
        assert_eq!(Pacer::estimate(&smtp, 900), Some(Duration::from_secs(1800)));
        smtp.max_per_hour = 0;
        assert_eq!(Pacer::estimate(&smtp, 900), Some(Duration::from_secs(900)));
    }

    fn caps(per_second: u32, per_hour: u32) -> SmtpSettings {
        let mut smtp = crate::config::Settings::default().mail.smtp;
        smtp.max_per_second = per_second;
        smtp.max_per_hour = per_hour;
        smtp
    }

    /// When each of `n` sends, one after another, got its slot, in milliseconds from the
    /// first call (tokio's timers round up to the millisecond).
    async fn slots(smtp: &SmtpSettings, n: usize) -> Vec<u128> {
        let pacer = Pacer::new(smtp);
        let start = tokio::time::Instant::now();
        let mut at = Vec::new();
        for _ in 0..n {
            pacer.wait().await;
            at.push(start.elapsed().as_millis());
        }
        at
    }

    #[tokio::test(start_paused = true)]
    async fn an_hourly_cap_spaces_sends_evenly() {
        assert_eq!(
            slots(&caps(0, 60), 4).await,
            [0, 60_000, 120_000, 180_000],
            "60 an hour: one a minute, not 60 at once"
        );
        assert_eq!(slots(&caps(0, 7200), 3).await, [0, 500, 1000]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_per_second_cap_allows_its_burst_then_spaces_the_rest() {
        assert_eq!(
            slots(&caps(4, 0), 8).await,
            [0, 0, 0, 0, 250, 500, 750, 1000]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn with_both_caps_the_slower_sets_the_pace() {
        // 3600 an hour is one a second, slower than the two a second allowed.
        assert_eq!(slots(&caps(2, 3600), 4).await, [0, 1000, 2000, 3000]);
        // One a second is slower than 7200 an hour.
        assert_eq!(slots(&caps(1, 7200), 4).await, [0, 1000, 2000, 3000]);
    }

    #[tokio::test(start_paused = true)]
    async fn workers_sharing_the_pacer_share_the_cap() {
        let pacer = Arc::new(Pacer::new(&caps(0, 60)));
        let start = tokio::time::Instant::now();
        let mut workers = JoinSet::new();
        for _ in 0..4 {
            let pacer = pacer.clone();
            workers.spawn(async move {
                let mut at = Vec::new();
                for _ in 0..3 {
                    pacer.wait().await;
                    at.push(start.elapsed().as_secs());
                }
                at
            });
        }
        let mut at: Vec<u64> = workers.join_all().await.into_iter().flatten().collect();
        at.sort();
        assert_eq!(at, (0..12).map(|i| i * 60).collect::<Vec<_>>());
    }
}
