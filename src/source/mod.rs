//! Where the papers come from: Hugging Face Papers, over HTTP.
//!
//! Every way a fetch can go wrong is a [`SourceError`] with a one-line reason, and none of them
//! yields a partial list: a digest is built from a whole, current page or not at all. Several
//! sources (`[source]` and `[source.also.*]`) are merged by arXiv id; the daily lists of the
//! days before the edition's (the recent window) are read at best effort on top.

mod fetch;
mod held;
mod island;
mod merge;
mod parse;
mod recorded;

use std::time::Duration;

use futures_util::future::{join_all, try_join_all};

pub use held::Held;
pub use merge::{merge, recent_only};
pub use parse::{Listing, ParseError, clean, parse_as, parse_listing};
pub use recorded::{Pages, Source};

use crate::config::SourceSettings;
use crate::domain::{EditionDate, Paper};
use crate::telemetry::one_line;
use fetch::{Feed, Fetcher};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("gave up after {attempts} attempts")]
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
    #[error("{url}")]
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
    /// Held listings ([`Held`]) begin after this day.
    #[error("no listing is held for {asked} or any day before it")]
    NotHeld { asked: EditionDate },
    /// With several sources, which one failed: its config key.
    #[error("{key}")]
    Of {
        key: String,
        #[source]
        error: Box<SourceError>,
    },
}

impl SourceError {
    /// What went wrong, without the source's address or anything it sent: for `/healthz`,
    /// which anyone who can reach the web pages can read. The log has the whole error.
    pub fn summary(&self) -> String {
        match self {
            SourceError::GaveUp { last, .. } => last.summary(),
            SourceError::Network { .. } => "source unreachable".into(),
            SourceError::Timeout { secs, .. } => {
                format!("the source did not answer within {secs} s")
            }
            SourceError::RateLimited { .. } => "the source is rate-limiting us (HTTP 429)".into(),
            SourceError::Http { status, .. } => format!("the source answered HTTP {status}"),
            SourceError::TooLarge { limit, .. } => {
                format!("the source sent more than {limit} bytes")
            }
            SourceError::Parse { .. } => {
                "the source's page could not be read (has its layout changed?)".into()
            }
            SourceError::WrongDate { .. } => "the source shows another day's papers".into(),
            SourceError::NotHeld { .. } => "no listing is held for that day".into(),
            SourceError::Of { key, error } => format!("{key}: {}", error.summary()),
        }
    }

    /// Whether trying again soon may succeed. A page that parses wrongly or is for another
    /// day will not be different a few seconds later.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Network { .. } | SourceError::Timeout { .. } => true,
            SourceError::RateLimited { .. } => true,
            SourceError::Http { status, .. } => *status >= 500,
            SourceError::Of { error, .. } => error.is_transient(),
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

/// The configured sources: fetched, merged, and widened by the recent window.
#[derive(Clone)]
pub struct HfSource {
    fetcher: Fetcher,
    /// `[source]` first, then `[source.also.*]` in name order.
    feeds: Vec<Feed>,
    /// One day's list, for the days before the edition's.
    recent: Feed,
    recent_days: u32,
}

impl HfSource {
    pub fn new(settings: &SourceSettings) -> anyhow::Result<Self> {
        let first = Feed {
            key: "source".into(),
            kind: settings.kind,
            template: settings.url().to_string(),
        };
        let also = settings.also.iter().map(|(name, also)| Feed {
            key: format!("source.also.{name}"),
            kind: also.kind,
            template: also.url().to_string(),
        });
        Ok(Self {
            fetcher: Fetcher::new(settings)?,
            feeds: std::iter::once(first).chain(also).collect(),
            recent: Feed {
                key: "source.recent_url".into(),
                kind: settings.kind,
                template: settings.recent_url(),
            },
            recent_days: settings.recent_days,
        })
    }

    /// The address of the first source for an edition.
    pub fn url_for(&self, date: EditionDate) -> String {
        self.feeds[0].url_for(date)
    }

    /// Fetches every source for `date` and merges them (see [`merge`]); date, period and
    /// trending flag are the first source's. Any source failing fails the fetch: a digest is
    /// built from whole lists or not at all. Then the recent window fills
    /// [`Listing::recent`], at best effort.
    pub async fn fetch(&self, date: EditionDate) -> Result<Listing, SourceError> {
        let several = self.feeds.len() > 1;
        let listings = try_join_all(self.feeds.iter().map(|feed| async move {
            self.fetcher.fetch(feed, date).await.map_err(|error| {
                if several {
                    SourceError::Of {
                        key: feed.key.clone(),
                        error: Box::new(error),
                    }
                } else {
                    error
                }
            })
        }))
        .await?;
        let mut listings = listings.into_iter();
        let mut listing = listings.next().expect("the first source is always there");
        if several {
            let rest: Vec<Listing> = listings.collect();
            listing.skipped += rest.iter().map(|l| l.skipped).sum::<usize>();
            let first = std::mem::take(&mut listing.papers);
            listing.papers =
                merge(std::iter::once(first).chain(rest.into_iter().map(|l| l.papers)));
        }
        listing.recent = self.recent(date, &listing.papers).await;
        Ok(listing)
    }

    /// The papers of the `recent_days` daily lists before `date` that are not in `page`.
    /// One attempt per day; a day that fails (404, another day's list, no answer) is
    /// skipped with a warning, since the edition does not depend on it.
    async fn recent(&self, date: EditionDate, page: &[Paper]) -> Vec<Paper> {
        let days = join_all((1..=self.recent_days).map(|back| {
            let day = date.minus_days(back);
            async move {
                match self.fetcher.fetch_once(&self.recent, day).await {
                    Ok(listing) => Some(listing.papers),
                    Err(error) => {
                        tracing::warn!(error = %one_line(&error), day = %day, "skipping a recent day's list");
                        None
                    }
                }
            }
        }))
        .await;
        if days.is_empty() {
            return Vec::new();
        }
        let read: Vec<Vec<Paper>> = days.into_iter().flatten().collect();
        let days_read = read.len();
        let recent = recent_only(read, page);
        tracing::info!(edition = %date, days_read, papers = recent.len(), "read the recent window");
        recent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SourceKind;

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
    fn the_kind_decides_what_the_body_must_be() {
        let page = fixture("date-2025-12-09.html");
        let api = fixture("api-daily_papers-2025-12-09.json");
        assert_eq!(
            parse_as(&page, SourceKind::HfPage).unwrap().papers.len(),
            12
        );
        assert_eq!(parse_as(&api, SourceKind::HfApi).unwrap().papers.len(), 12);
        let e = parse_as(&page, SourceKind::HfApi).unwrap_err();
        assert_eq!(
            e,
            ParseError::WrongKind {
                kind: SourceKind::HfApi,
                found: "an HTML page"
            }
        );
        assert!(e.to_string().contains("\"hf-api\""), "{e}");
        let e = parse_as(&api, SourceKind::HfPage).unwrap_err();
        assert!(
            e.to_string().contains("\"hf-page\"") && e.to_string().contains("JSON"),
            "{e}"
        );
        assert!(matches!(
            parse_as(r#"{"error":"Invalid date"}"#, SourceKind::HfApi),
            Err(ParseError::WrongKind {
                found: "a JSON object",
                ..
            })
        ));
    }

    #[test]
    fn an_api_list_is_dated_by_when_its_papers_were_featured() {
        let api = parse_listing(&fixture("api-daily_papers-2025-12-09.json")).unwrap();
        assert_eq!(api.date, EditionDate::parse("2025-12-09").ok());
        assert!(parse_listing("[]").unwrap().date.is_none());
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
