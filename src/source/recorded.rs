//! The source as the daemon uses it: every fetch is recorded where health looks (the
//! metrics, and the time of the last good fetch in the store, which outlives a restart), and
//! the last good listing is kept for the subscribe page's sample and for ticks. The pages
//! come over HTTP, or, for the demo, from listings held in memory.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;

use super::{Held, HfSource, Listing, SourceError};
use crate::domain::{EditionDate, Paper};
use crate::store::Store;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::one_line;

/// Where a [`Source`]'s listings come from.
pub enum Pages {
    /// The configured sources, over HTTP.
    Web(HfSource),
    /// Listings held in memory: nothing is fetched.
    Held(Held),
}

impl Pages {
    async fn fetch(&self, date: EditionDate) -> Result<Listing, SourceError> {
        match self {
            Pages::Web(web) => web.fetch(date).await,
            Pages::Held(held) => held.fetch(date),
        }
    }
}

impl From<HfSource> for Pages {
    fn from(web: HfSource) -> Self {
        Pages::Web(web)
    }
}

impl From<Held> for Pages {
    fn from(held: Held) -> Self {
        Pages::Held(held)
    }
}

pub struct Source {
    pages: Pages,
    store: Store,
    metrics: Arc<Metrics>,
    /// The last successful fetch: when, for which edition, and what it said.
    latest: Mutex<Option<(Instant, EditionDate, Listing)>>,
}

impl Source {
    pub fn new(pages: impl Into<Pages>, store: Store, metrics: Arc<Metrics>) -> Self {
        Self {
            pages: pages.into(),
            store,
            metrics,
            latest: Mutex::new(None),
        }
    }

    /// Fetches the page for `date` and records the outcome.
    pub async fn fetch(&self, date: EditionDate) -> Result<Listing, SourceError> {
        match self.pages.fetch(date).await {
            Ok(listing) => {
                let now = Utc::now();
                self.metrics.fetch_succeeded(now);
                if let Err(e) = self.store.set_last_fetch_ok(now) {
                    tracing::warn!(error = %one_line(&e), "could not record the fetch time");
                }
                *self.latest.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), date, listing.clone()));
                Ok(listing)
            }
            Err(e) => {
                // What health shows: the kind of failure, not the source's address.
                self.metrics.fetch_failed(Utc::now(), e.summary());
                Err(e)
            }
        }
    }

    /// Fetches the page for `date` without recording anything: for a dry run, a preview or
    /// an explanation, which must not change what health reports.
    pub async fn peek(&self, date: EditionDate) -> Result<Listing, SourceError> {
        self.pages.fetch(date).await
    }

    /// The papers of the last successful fetch of this process, if any.
    pub fn latest(&self) -> Option<(EditionDate, Vec<Paper>)> {
        let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        latest.as_ref().map(|(_, d, l)| (*d, l.papers.clone()))
    }

    /// The listing for `date` fetched less than `max_age` ago, or a fresh fetch: ticks look
    /// every quarter hour, and the source need not be asked as often.
    pub async fn fetch_within(
        &self,
        date: EditionDate,
        max_age: Duration,
    ) -> Result<Listing, SourceError> {
        let cached = self
            .latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(at, d, _)| *d == date && at.elapsed() < max_age)
            .map(|(_, _, l)| l.clone());
        match cached {
            Some(listing) => Ok(listing),
            None => self.fetch(date).await,
        }
    }
}
