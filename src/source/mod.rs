//! Where the papers come from: Hugging Face Papers, over HTTP.
//!
//! Every way a fetch can go wrong is a [`SourceError`] with a one-line reason, and none of them
//! yields a partial list: a digest is built from a whole, current page or not at all.

mod parse;

use std::time::Duration;

pub use parse::{Listing, ParseError, clean, parse_listing};

use crate::config::SourceSettings;
use crate::domain::EditionDate;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{last} (gave up after {attempts} attempts)")]
    GaveUp {
        attempts: u32,
        #[source]
        last: Box<SourceError>,
    },
    #[error("could not reach {url}: {reason}")]
    Network { url: String, reason: String },
    #[error("{url} did not answer within {secs} s")]
    Timeout { url: String, secs: u64 },
    #[error("{url} is rate-limiting us (HTTP 429){}", retry_after.map(|s| format!("; retry after {s} s")).unwrap_or_default())]
    RateLimited {
        url: String,
        retry_after: Option<u64>,
    },
    #[error("{url} answered HTTP {status}")]
    Http { url: String, status: u16 },
    #[error("{url} sent more than {limit} bytes; refusing to read on")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: {source}")]
    Parse {
        url: String,
        #[source]
        source: ParseError,
    },
    #[error(
        "{url} shows the papers of {got}, not of {asked} (that day has none yet, or the page fell back to another day)"
    )]
    WrongDate {
        url: String,
        asked: EditionDate,
        got: EditionDate,
    },
}

impl SourceError {
    /// Whether trying again soon may succeed. A page that parses wrongly or is for another
    /// day will not be different a few seconds later.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Network { .. } | SourceError::Timeout { .. } => true,
            SourceError::RateLimited { .. } => true,
            SourceError::Http { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// How long the server asked us to wait, if it did.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            SourceError::RateLimited {
                retry_after: Some(s),
                ..
            } => Some(Duration::from_secs(*s)),
            _ => None,
        }
    }
}

/// Fetches and parses the configured page.
#[derive(Clone)]
pub struct HfSource {
    client: reqwest::Client,
    url_template: String,
    timeout: Duration,
    max_bytes: u64,
    max_attempts: u32,
    max_wait: Duration,
}

impl HfSource {
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
            url_template: settings.url.clone(),
            timeout,
            max_bytes: settings.max_bytes,
            max_attempts: settings.max_attempts,
            max_wait: Duration::from_secs(settings.max_retry_wait_secs),
        })
    }

    /// The address for an edition: `{date}` in the configured URL becomes `YYYY-MM-DD`, so
    /// `https://huggingface.co/papers/date/{date}` fetches that day's page.
    pub fn url_for(&self, date: EditionDate) -> String {
        self.url_template.replace("{date}", &date.to_string())
    }

    /// Whether the configured URL names a day, so the page must be for exactly that day.
    fn is_dated(&self) -> bool {
        self.url_template.contains("{date}")
    }

    /// Fetches the page for `date`, retrying temporary failures with backoff (or the wait a
    /// 429 asks for) up to `source.max_attempts` times.
    pub async fn fetch(&self, date: EditionDate) -> Result<Listing, SourceError> {
        let mut attempt = 1;
        loop {
            let error = match self.fetch_once(date).await {
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
            tracing::warn!(%error, attempt, wait_secs = wait.as_secs(), "fetch failed; retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn fetch_once(&self, date: EditionDate) -> Result<Listing, SourceError> {
        let url = self.url_for(date);
        let body = self.get(&url).await?;
        let listing = tokio::task::spawn_blocking(move || parse_listing(&body))
            .await
            .expect("the parser does not panic")
            .map_err(|source| SourceError::Parse {
                url: url.clone(),
                source,
            })?;
        // A daily page for a day without papers shows the latest day that has some; mailing
        // those as today's edition would resend yesterday's news under a new date.
        let must_match =
            self.is_dated() || (!listing.is_trending && listing.period.as_deref() == Some("day"));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/hf/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn trending_day_one() {
        let l = parse_listing(&fixture("trending-2025-12-08.html")).unwrap();
        assert_eq!(l.papers.len(), 26);
        assert_eq!(l.skipped, 0);
        assert!(l.is_trending);
        assert_eq!(l.date, EditionDate::parse("2025-12-08").ok());
        let first = &l.papers[0];
        assert_eq!(first.id.as_str(), "2508.53847");
        assert_eq!(first.upvotes, 140);
        assert_eq!(first.authors[0].name, "Aisha Silva");
        assert!(first.title.starts_with("Leveraging Generative Models"));
        assert!(!first.summary.is_empty());
        assert!(first.featured_at.is_some() && first.published_at.is_some());
    }

    #[test]
    fn trending_day_two_overlaps_day_one() {
        let one = parse_listing(&fixture("trending-2025-12-08.html")).unwrap();
        let two = parse_listing(&fixture("trending-2025-12-09.html")).unwrap();
        assert_eq!(two.papers.len(), 36);
        let new = two
            .papers
            .iter()
            .filter(|p| !one.papers.iter().any(|q| q.id == p.id))
            .count();
        assert_eq!(new, 14);
    }

    #[test]
    fn daily_page_and_api_agree() {
        let page = parse_listing(&fixture("date-2025-12-09.html")).unwrap();
        let api = parse_listing(&fixture("api-daily_papers-2025-12-09.json")).unwrap();
        assert_eq!(page.papers.len(), 12);
        assert!(!page.is_trending);
        assert_eq!(page.period.as_deref(), Some("day"));
        let ids = |l: &Listing| l.papers.iter().map(|p| p.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&page), ids(&api));
    }

    #[test]
    fn real_api_item_shape() {
        let item = fixture("real-api-item-2602.23229.json");
        let l = parse_listing(&format!("[{item}]")).unwrap();
        let p = &l.papers[0];
        assert_eq!(p.id.as_str(), "2602.23229");
        assert_eq!(p.upvotes, 10);
        assert_eq!(p.comments, 1);
        assert_eq!(p.authors.len(), 5);
        assert_eq!(
            p.organization.as_deref(),
            Some("Multimedia and Human Understanding Group")
        );
        assert_eq!(
            p.github_repo.as_ref().unwrap().as_str(),
            "https://github.com/marco-garosi/CIRCLE"
        );
        assert_eq!(p.github_name().as_deref(), Some("marco-garosi/CIRCLE"));
        assert_eq!(p.github_stars, Some(9));
        assert_eq!(
            p.project_page.as_ref().unwrap().as_str(),
            "https://circle-lmm.github.io/"
        );
        assert!(p.thumbnail.is_some());
        assert_eq!(p.ai_keywords.len(), 9);
        assert!(
            p.ai_summary
                .as_deref()
                .unwrap()
                .starts_with("Large Multimodal")
        );
    }

    #[test]
    fn empty_day_is_valid_and_empty() {
        let l = parse_listing(&fixture("empty-day.html")).unwrap();
        assert!(l.papers.is_empty());
        assert_eq!(l.date, EditionDate::parse("2025-12-07").ok());
    }

    #[test]
    fn redesigned_page_is_an_error() {
        assert_eq!(
            parse_listing(&fixture("layout-changed.html")).unwrap_err(),
            ParseError::NoIsland
        );
    }
}
