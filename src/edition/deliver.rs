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
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::Editions;
use crate::config::SmtpSettings;
use crate::domain::{EditionDate, Status, SubscriberId};
use crate::mail::{Outgoing, SendError, Session, with_retries};
use crate::render::EditionTemplate;
use crate::store::{Delivery, DeliveryState, GroupCommit, StoreError};
use crate::telemetry::metrics::{self, Metrics};

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
    per_second: Option<DefaultDirectRateLimiter>,
    per_hour: Option<DefaultDirectRateLimiter>,
}

impl Pacer {
    pub fn new(smtp: &SmtpSettings) -> Self {
        let nz = |n: u32| NonZeroU32::new(n);
        Self {
            per_second: nz(smtp.max_per_second).map(|n| RateLimiter::direct(Quota::per_second(n))),
            // One at a time, evenly spaced: "1800 an hour" must not mean 1800 in the first
            // second when the provider also counts per minute.
            per_hour: nz(smtp.max_per_hour)
                .map(|n| RateLimiter::direct(Quota::per_hour(n).allow_burst(NonZeroU32::MIN))),
        }
    }

    pub async fn wait(&self) {
        if let Some(l) = &self.per_second {
            l.until_ready().await;
        }
        if let Some(l) = &self.per_hour {
            l.until_ready().await;
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
    let give_up = chrono::Duration::hours(editions.smtp.give_up_after_hours.into());
    // Only who is still open is kept in memory; each worker reads the record it sends.
    let mut queue = Vec::new();
    for d in editions.store.deliveries_iter(date) {
        let mut d = d?;
        if !d.state.is_open() {
            continue;
        }
        if d.created_at.is_some_and(|t| Utc::now() - t > give_up) {
            // Too late to be news: report it instead of sending it.
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
                &mut outcome,
                Outcome::Failed(d.last_error.clone().unwrap_or_default()),
                &editions.metrics,
            );
            continue;
        }
        queue.push(d.subscriber);
    }
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
        outcome.last_error = Some(crate::telemetry::one_line(&e));
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
    let total = queue.len();
    let concurrency = smtp.concurrency;
    let shared = Arc::new(Shared {
        editions: editions.clone(),
        template: template.clone(),
        pacer: Pacer::new(smtp),
        commit: GroupCommit::new(editions.store.clone()),
        date,
        queue,
        next: AtomicUsize::new(0),
        failing_in_a_row: AtomicU32::new(0),
        concurrency,
    });
    let (results, mut received) = mpsc::unbounded_channel();
    let mut workers = JoinSet::new();
    for _ in 0..concurrency {
        let (shared, results) = (shared.clone(), results.clone());
        workers.spawn(async move { shared.work(results).await });
    }
    drop(results);
    let mut finished = 0;
    let mut last_report = Instant::now();
    while let Some(result) = received.recv().await {
        tally(&mut outcome, result?, &editions.metrics);
        finished += 1;
        if last_report.elapsed() >= PROGRESS_EVERY || finished == total {
            progress(date, finished, total);
            last_report = Instant::now();
        }
    }
    while let Some(done) = workers.join_next().await {
        done.expect("send worker panicked");
    }
    // Not started because the server kept failing or paperboy is stopping: the next run.
    outcome.deferred += total - finished;
    Ok(outcome)
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
        let editions = &self.editions;
        let store = &editions.store;
        let Some(mut sub) = store
            .subscriber_by_id(d.subscriber)?
            .filter(|s| s.receives_digests())
        else {
            d.state = DeliveryState::Failed;
            d.last_error = Some("no longer subscribed".into());
            d.updated_at = Utc::now();
            store.update_delivery(&d)?;
            return Ok(Outcome::Skipped);
        };
        let domain = sub.email.domain().to_string();
        let mut personal = editions.personal(&sub);
        personal.late = d.late.clone();
        let message = self
            .template
            .digest(&d.papers, &personal)
            .map_err(SendError::permanent_from)
            .and_then(|r| {
                editions.mailer.build(Outgoing {
                    to: &sub.email,
                    subject: &r.subject,
                    text: r.text,
                    html: r.html,
                    message_id: &d.message_id,
                    unsubscribe_url: &personal.unsubscribe_url,
                })
            });
        let message = match message {
            Ok(m) => m,
            Err(e) => {
                let e = sub.email.redact_in(&crate::telemetry::one_line(&e));
                return self.fail_permanently(d, &mut sub, e).await;
            }
        };

        // Nothing is written before the send: what must be durable before a message leaves is
        // its plan, and it is. A crash from here on leaves the delivery open, so the next
        // run sends it again with the same Message-ID (at-least-once); the attempt is
        // recorded with its outcome.
        d.attempts += 1;

        let attempts = editions.smtp.max_attempts;
        let previous = *unsynced;
        let previous_on_disk = || async move {
            let Some(ticket) = previous else {
                return Ok(());
            };
            let on_disk = self.commit.wait(ticket).await;
            on_disk.map_err(|e| SendError::transient("recording the previous digest").because(e))
        };
        let paced_send = || async {
            self.pacer.wait().await;
            session.send_gated(&message, previous_on_disk()).await
        };
        match with_retries(attempts, &editions.metrics, paced_send).await {
            Ok(()) => {
                d.state = DeliveryState::Sent;
                d.last_error = None;
                d.updated_at = Utc::now();
                store.update_delivery(&d)?;
                if sub.permanent_failures > 0 {
                    sub.permanent_failures = 0;
                    store.update_subscriber(&sub)?;
                }
                // On disk before this worker's next acceptance (see `work_with`): a crash
                // can repeat at most one message per worker.
                *unsynced = Some(self.commit.ticket());
                tracing::debug!(edition = %d.date, %domain, papers = d.papers.len(), "digest accepted");
                Ok(Outcome::Sent {
                    bytes: message.len(),
                })
            }
            Err(e) if !e.is_transient() => {
                let e = sub.email.redact_in(&e.reason());
                self.fail_permanently(d, &mut sub, e).await
            }
            Err(e) => {
                let e = sub.email.redact_in(&e.reason());
                d.state = DeliveryState::Retry;
                d.last_error = Some(e.clone());
                d.updated_at = Utc::now();
                store.update_delivery(&d)?;
                self.commit.durable().await?;
                tracing::warn!(edition = %d.date, %domain, error = %e, "digest deferred to the next run");
                Ok(Outcome::Deferred(e))
            }
        }
    }

    async fn fail_permanently(
        &self,
        mut d: Delivery,
        sub: &mut crate::domain::Subscriber,
        error: String,
    ) -> Result<Outcome, StoreError> {
        let store = &self.editions.store;
        d.state = DeliveryState::Failed;
        d.last_error = Some(error.clone());
        d.updated_at = Utc::now();
        store.update_delivery(&d)?;
        sub.permanent_failures += 1;
        if sub.permanent_failures >= BOUNCE_AFTER {
            sub.status = Status::Bounced;
        }
        store.update_subscriber(sub)?;
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
}
