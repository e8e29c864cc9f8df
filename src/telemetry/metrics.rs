//! Counters for `/metrics` (Prometheus text format) and the state behind `/healthz`.
//!
//! Plain atomics: a handful of numbers updated a few times per message need no metrics
//! framework, and the text format is simple enough to write by hand.

use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use chrono::{DateTime, Utc};

#[derive(Default)]
pub struct Metrics {
    pub digests_sent: AtomicU64,
    pub digests_failed: AtomicU64,
    pub digests_deferred: AtomicU64,
    pub smtp_errors: AtomicU64,
    pub fetches: AtomicU64,
    pub fetch_errors: AtomicU64,
    pub editions: AtomicU64,
    pub notices_sent: AtomicU64,
    pub subscribe_requests: AtomicU64,
    pub rate_limited: AtomicU64,
    /// Bounce reports recorded after acceptance, by kind, and those that changed nothing.
    pub bounces_permanent: AtomicU64,
    pub bounces_transient: AtomicU64,
    pub complaints: AtomicU64,
    pub bounce_reports_ignored: AtomicU64,
    /// Unix seconds of the last successful fetch; 0 = none yet.
    last_fetch_ok: AtomicI64,
    /// The last fetch's error, if the last fetch failed.
    last_fetch_error: Mutex<Option<(DateTime<Utc>, String)>>,
}

pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub fn add(c: &AtomicU64, n: usize) {
    c.fetch_add(n as u64, Ordering::Relaxed);
}

impl Metrics {
    pub fn fetch_succeeded(&self, at: DateTime<Utc>) {
        inc(&self.fetches);
        self.last_fetch_ok.store(at.timestamp(), Ordering::Relaxed);
        *self.last_fetch_error.lock().expect("not poisoned") = None;
    }

    pub fn fetch_failed(&self, at: DateTime<Utc>, error: String) {
        inc(&self.fetches);
        inc(&self.fetch_errors);
        *self.last_fetch_error.lock().expect("not poisoned") = Some((at, error));
    }

    /// Restores the last successful fetch time (kept in the store across restarts).
    pub fn set_last_fetch_ok(&self, at: Option<DateTime<Utc>>) {
        self.last_fetch_ok
            .store(at.map_or(0, |t| t.timestamp()), Ordering::Relaxed);
    }

    pub fn last_fetch_ok(&self) -> Option<DateTime<Utc>> {
        match self.last_fetch_ok.load(Ordering::Relaxed) {
            0 => None,
            t => DateTime::from_timestamp(t, 0),
        }
    }

    pub fn last_fetch_error(&self) -> Option<(DateTime<Utc>, String)> {
        self.last_fetch_error.lock().expect("not poisoned").clone()
    }

    /// The exposition text; `subscribers` are counts by status, read from the store.
    pub fn render(&self, subscribers: &[(&str, usize)]) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "paperboy_digests_sent_total",
            "Digests accepted by the SMTP server (or written to the outbox).",
            get(&self.digests_sent),
        );
        counter(
            "paperboy_digests_failed_total",
            "Digests refused permanently (5xx).",
            get(&self.digests_failed),
        );
        counter(
            "paperboy_digests_deferred_total",
            "Digests left queued after temporary failures.",
            get(&self.digests_deferred),
        );
        counter(
            "paperboy_smtp_errors_total",
            "Failed SMTP attempts of any kind.",
            get(&self.smtp_errors),
        );
        counter(
            "paperboy_fetches_total",
            "Fetches of the source page.",
            get(&self.fetches),
        );
        counter(
            "paperboy_fetch_errors_total",
            "Fetches that failed.",
            get(&self.fetch_errors),
        );
        counter(
            "paperboy_editions_total",
            "Edition runs completed.",
            get(&self.editions),
        );
        counter(
            "paperboy_notices_sent_total",
            "Confirmation and already-subscribed mails sent.",
            get(&self.notices_sent),
        );
        counter(
            "paperboy_subscribe_requests_total",
            "Posts to the subscribe form.",
            get(&self.subscribe_requests),
        );
        counter(
            "paperboy_rate_limited_total",
            "Requests refused by a rate limit.",
            get(&self.rate_limited),
        );
        let _ = writeln!(
            out,
            "# HELP paperboy_bounces_total Bounce reports (DSNs) recorded after the mail was accepted, by kind.\n# TYPE paperboy_bounces_total counter\npaperboy_bounces_total{{kind=\"permanent\"}} {}\npaperboy_bounces_total{{kind=\"transient\"}} {}",
            get(&self.bounces_permanent),
            get(&self.bounces_transient)
        );
        let _ = writeln!(
            out,
            "# HELP paperboy_complaints_total Abuse reports (ARF) recorded: each unsubscribed its reader.\n# TYPE paperboy_complaints_total counter\npaperboy_complaints_total {}",
            get(&self.complaints)
        );
        let _ = writeln!(
            out,
            "# HELP paperboy_bounce_reports_ignored_total Messages to the bounce intake that changed nothing (auto-replies, unattributable, malformed).\n# TYPE paperboy_bounce_reports_ignored_total counter\npaperboy_bounce_reports_ignored_total {}",
            get(&self.bounce_reports_ignored)
        );
        let _ = writeln!(
            out,
            "# HELP paperboy_last_fetch_success_timestamp_seconds When the source was last fetched successfully (0: never).\n# TYPE paperboy_last_fetch_success_timestamp_seconds gauge\npaperboy_last_fetch_success_timestamp_seconds {}",
            self.last_fetch_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP paperboy_subscribers Subscribers by status.\n# TYPE paperboy_subscribers gauge"
        );
        for (status, n) in subscribers {
            let _ = writeln!(out, "paperboy_subscribers{{status=\"{status}\"}} {n}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        inc(&m.digests_sent);
        add(&m.digests_sent, 2);
        m.fetch_failed(Utc::now(), "HTTP 500".into());
        inc(&m.bounces_transient);
        inc(&m.complaints);
        let text = m.render(&[("active", 3), ("pending", 1)]);
        assert!(text.contains("paperboy_bounces_total{kind=\"permanent\"} 0\n"));
        assert!(text.contains("paperboy_bounces_total{kind=\"transient\"} 1\n"));
        assert!(text.contains("paperboy_complaints_total 1\n"));
        assert!(text.contains("paperboy_digests_sent_total 3\n"));
        assert!(text.contains("paperboy_fetch_errors_total 1\n"));
        assert!(text.contains("paperboy_subscribers{status=\"active\"} 3\n"));
        assert!(text.contains("# TYPE paperboy_subscribers gauge"));
        assert!(m.last_fetch_error().is_some());
        m.fetch_succeeded(Utc::now());
        assert!(m.last_fetch_error().is_none() && m.last_fetch_ok().is_some());
    }
}
