//! One list over HTTP: a GET within the configured limits, retried when the failure is
//! temporary, and the body read as the source's kind says it must be.

use std::time::Duration;

use super::{Listing, SourceError, parse_as};
use crate::config::{SourceKind, SourceSettings};
use crate::domain::EditionDate;
use crate::telemetry::one_line;

/// One list's address (a template with `{date}` or a fixed URL) and how to read it.
#[derive(Clone, Debug)]
pub(super) struct Feed {
    /// The config key that defines it (`source`, `source.also.NAME`), for errors.
    pub key: String,
    pub kind: SourceKind,
    pub template: String,
}

impl Feed {
    /// `{date}` in the template becomes `YYYY-MM-DD`, so
    /// `https://huggingface.co/papers/date/{date}` is that day's page.
    pub fn url_for(&self, date: EditionDate) -> String {
        self.template.replace("{date}", &date.to_string())
    }

    /// Whether the URL names a day, so the list must be for exactly that day.
    fn is_dated(&self) -> bool {
        self.template.contains("{date}")
    }
}

/// The HTTP client and the limits every fetch keeps to.
#[derive(Clone)]
pub(super) struct Fetcher {
    client: reqwest::Client,
    timeout: Duration,
    max_bytes: u64,
    max_attempts: u32,
    max_wait: Duration,
}

impl Fetcher {
    pub fn new(settings: &SourceSettings) -> anyhow::Result<Self> {
        let timeout = Duration::from_secs(settings.timeout_secs);
        let client = reqwest::Client::builder()
            .user_agent(concat!(
                "paperboy/",
                env!("CARGO_PKG_VERSION"),
                " (self-hosted paper digest)"
            ))
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()?;
        Ok(Self {
            client,
            timeout,
            max_bytes: settings.max_bytes,
            max_attempts: settings.max_attempts,
            max_wait: Duration::from_secs(settings.max_retry_wait_secs),
        })
    }

    /// Fetches `feed` for `date`, retrying temporary failures with backoff (or the wait a
    /// 429 asks for) up to `source.max_attempts` times.
    pub async fn fetch(&self, feed: &Feed, date: EditionDate) -> Result<Listing, SourceError> {
        let mut attempt = 1;
        loop {
            let error = match self.fetch_once(feed, date).await {
                Ok(listing) => return Ok(listing),
                Err(e) if !e.is_transient() => return Err(e),
                Err(e) => e,
            };
            let wait = error
                .retry_after()
                .unwrap_or_else(|| Duration::from_secs(1 << (attempt - 1).min(6)));
            if attempt >= self.max_attempts || wait > self.max_wait {
                return Err(if attempt > 1 {
                    SourceError::GaveUp {
                        attempts: attempt,
                        last: Box::new(error),
                    }
                } else {
                    error
                });
            }
            tracing::warn!(error = %one_line(&error), attempt, wait_secs = wait.as_secs(), "fetch failed; retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// One attempt, no retries.
    pub async fn fetch_once(&self, feed: &Feed, date: EditionDate) -> Result<Listing, SourceError> {
        let url = feed.url_for(date);
        let body = self.get(&url).await?;
        let kind = feed.kind;
        let listing = tokio::task::spawn_blocking(move || parse_as(&body, kind))
            .await
            .expect("the parser does not panic")
            .map_err(|source| SourceError::Parse {
                url: url.clone(),
                source,
            })?;
        // A daily page for a day without papers shows the latest day that has some; mailing
        // those as today's edition would resend yesterday's news under a new date.
        let must_match =
            feed.is_dated() || (!listing.is_trending && listing.period.as_deref() == Some("day"));
        if must_match
            && let Some(got) = listing.date
            && got != date
        {
            return Err(SourceError::WrongDate {
                url,
                asked: date,
                got,
            });
        }
        Ok(listing)
    }

    async fn get(&self, url: &str) -> Result<String, SourceError> {
        let net = |e: reqwest::Error| {
            if e.is_timeout() {
                SourceError::Timeout {
                    url: url.to_string(),
                    secs: self.timeout.as_secs(),
                }
            } else {
                SourceError::Network {
                    url: url.to_string(),
                    reason: root_cause(&e),
                }
            }
        };
        let mut response = self.client.get(url).send().await.map_err(net)?;
        let status = response.status();
        if status.as_u16() == 429 {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok());
            return Err(SourceError::RateLimited {
                url: url.to_string(),
                retry_after,
            });
        }
        if !status.is_success() {
            return Err(SourceError::Http {
                url: url.to_string(),
                status: status.as_u16(),
            });
        }
        let too_large = || SourceError::TooLarge {
            url: url.to_string(),
            limit: self.max_bytes,
        };
        if response
            .content_length()
            .is_some_and(|n| n > self.max_bytes)
        {
            return Err(too_large());
        }
        // Read in chunks so a page that lies about (or omits) its length still cannot make
        // us hold more than the cap.
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(net)? {
            if body.len() as u64 + chunk.len() as u64 > self.max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}

/// reqwest's top-level message is "error sending request"; the useful part is underneath.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
