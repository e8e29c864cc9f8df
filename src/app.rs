//! Everything a command needs, opened once from the settings.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use chrono::Utc;

use crate::config::Settings;
use crate::domain::{EditionDate, Paper, Subscriber};
use crate::edition::select::Effective;
use crate::mail::Mailer;
use crate::render::Personal;
use crate::source::{HfSource, Listing, SourceError};
use crate::store::Store;
use crate::telemetry::metrics::Metrics;
use crate::tokens::{Purpose, TokenKey};

pub struct App {
    pub settings: Settings,
    pub store: Store,
    pub source: HfSource,
    pub mailer: Mailer,
    pub tokens: TokenKey,
    pub metrics: Metrics,
    /// Set on shutdown: no new message is started, those in flight finish and are recorded.
    stopping: AtomicBool,
    /// The last successful fetch: when, for which edition, and what it said. The subscribe
    /// page shows a sample of it, and ticks reuse it while it is fresh.
    latest: Mutex<Option<(std::time::Instant, EditionDate, Listing)>>,
    /// Held while an edition runs (and while a backup is taken): the scheduler and a
    /// `run-once` sent through the admin socket must never send one edition side by side.
    pub edition_lock: tokio::sync::Mutex<()>,
}

impl App {
    pub fn open(settings: Settings) -> anyhow::Result<Self> {
        let dir = &settings.data_dir;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
        let store = Store::open(dir, settings.store.engine)?;
        let tokens = TokenKey::load_or_create(&settings.secret_key_path())?;
        let metrics = Metrics::default();
        metrics.set_last_fetch_ok(store.last_fetch_ok()?);
        Ok(Self {
            metrics,
            stopping: AtomicBool::new(false),
            latest: Mutex::new(None),
            edition_lock: tokio::sync::Mutex::new(()),
            source: HfSource::new(&settings.source)?,
            mailer: Mailer::from_settings(&settings)?,
            store,
            tokens,
            settings,
        })
    }

    /// Fetches the page for `date` and records the outcome where health and the subscribe
    /// page look: metrics, the last good fetch time in the store, the latest papers.
    pub async fn fetch(&self, date: EditionDate) -> Result<Listing, SourceError> {
        match self.source.fetch(date).await {
            Ok(listing) => {
                let now = Utc::now();
                self.metrics.fetch_succeeded(now);
                if let Err(e) = self.store.set_last_fetch_ok(now) {
                    tracing::warn!(error = %e, "could not record the fetch time");
                }
                *self.latest.lock().expect("not poisoned") =
                    Some((std::time::Instant::now(), date, listing.clone()));
                Ok(listing)
            }
            Err(e) => {
                self.metrics.fetch_failed(Utc::now(), e.to_string());
                Err(e)
            }
        }
    }

    /// The papers of the last successful fetch of this process, if any.
    pub fn latest(&self) -> Option<(EditionDate, Vec<Paper>)> {
        let latest = self.latest.lock().expect("not poisoned");
        latest.as_ref().map(|(_, d, l)| (*d, l.papers.clone()))
    }

    /// The listing for `date` fetched less than `max_age` ago, or a fresh fetch: ticks look
    /// every quarter hour, and the source need not be asked as often.
    pub async fn fetch_within(
        &self,
        date: EditionDate,
        max_age: std::time::Duration,
    ) -> Result<Listing, SourceError> {
        let cached = self
            .latest
            .lock()
            .expect("not poisoned")
            .as_ref()
            .filter(|(at, d, _)| *d == date && at.elapsed() < max_age)
            .map(|(_, _, l)| l.clone());
        match cached {
            Some(listing) => Ok(listing),
            None => self.fetch(date).await,
        }
    }

    pub fn request_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The address of a subscriber's personal feed: the digests they were sent.
    pub fn feed_url(&self, s: &Subscriber) -> String {
        format!(
            "{}/feed/{}.xml",
            self.settings.public_base(),
            self.tokens.sign(Purpose::Feed, s.id, None, 0)
        )
    }

    /// The parts of a digest that are a subscriber's own: why they get it, and their links.
    pub fn personal(&self, s: &Subscriber) -> Personal {
        let base = self.settings.public_base();
        Personal {
            why: Effective::new(&s.preferences, &self.settings.digest).explain(),
            unsubscribe_url: format!(
                "{base}/unsubscribe?token={}",
                self.tokens.sign(Purpose::Unsubscribe, s.id, None, 0)
            ),
            preferences_url: format!(
                "{base}/preferences?token={}",
                self.tokens.sign(Purpose::Preferences, s.id, None, 0)
            ),
            late: Vec::new(),
            weekly: !s.preferences.frequency.is_daily(),
        }
    }
}
