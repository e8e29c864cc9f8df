//! A paper as paperboy knows it: the canonical arXiv id and what a digest shows about it.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A canonical arXiv identifier, `YYMM.NNNNN` (or the 4-digit form used before 2015), without
/// a version suffix: `2501.01234v2` and `2501.01234` are the same paper, and a reader must
/// never get it twice because a new version was posted.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PaperId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("'{0}' is not an arXiv identifier (expected YYMM.NNNNN, optionally with a version)")]
pub struct PaperIdError(String);

impl PaperId {
    pub fn parse(raw: &str) -> Result<Self, PaperIdError> {
        let err = || PaperIdError(raw.chars().take(40).collect());
        let s = raw.trim();
        let s = s.strip_prefix("arXiv:").unwrap_or(s);
        let (yymm, rest) = s.split_once('.').ok_or_else(err)?;
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (number, version) = rest.split_at(digits_end);
        let month: u32 = yymm.parse().map_err(|_| err())?;
        let valid_yymm = yymm.len() == 4 && (1..=12).contains(&(month % 100));
        let valid_number = number.len() == 4 || number.len() == 5;
        let valid_version = version.is_empty()
            || (version.len() > 1
                && version.starts_with('v')
                && version[1..].bytes().all(|b| b.is_ascii_digit()));
        if !(valid_yymm
            && valid_number
            && valid_version
            && yymm.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(err());
        }
        Ok(Self(format!("{yymm}.{number}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn hf_url(&self) -> String {
        format!("https://huggingface.co/papers/{}", self.0)
    }

    pub fn arxiv_abs_url(&self) -> String {
        format!("https://arxiv.org/abs/{}", self.0)
    }

    pub fn arxiv_pdf_url(&self) -> String {
        format!("https://arxiv.org/pdf/{}", self.0)
    }
}

impl TryFrom<String> for PaperId {
    type Error = PaperIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<PaperId> for String {
    fn from(value: PaperId) -> Self {
        value.0
    }
}

impl fmt::Display for PaperId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An absolute `http` or `https` link. Anything else from a scraped page (`javascript:`,
/// `data:`, relative paths) is dropped, so a template can put it in an `href` safely.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HttpUrl(String);

impl HttpUrl {
    pub fn parse(raw: &str) -> Option<Self> {
        let url = url::Url::parse(raw.trim()).ok()?;
        matches!(url.scheme(), "http" | "https")
            .then(|| url.host_str().is_some())
            .filter(|has_host| *has_host)
            .map(|_| Self(url.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for HttpUrl {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value).ok_or_else(|| format!("not an http(s) link: {value}"))
    }
}

impl From<HttpUrl> for String {
    fn from(value: HttpUrl) -> Self {
        value.0
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    pub name: String,
}

/// One paper as listed on Hugging Face Papers at the time of a fetch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paper {
    pub id: PaperId,
    pub title: String,
    /// The arXiv abstract.
    pub summary: String,
    pub ai_summary: Option<String>,
    #[serde(default)]
    pub ai_keywords: Vec<String>,
    #[serde(default)]
    pub authors: Vec<Author>,
    pub organization: Option<String>,
    pub upvotes: u32,
    pub comments: u32,
    pub published_at: Option<DateTime<Utc>>,
    /// When it was featured on the daily list (`submittedOnDailyAt`).
    pub featured_at: Option<DateTime<Utc>>,
    pub github_repo: Option<HttpUrl>,
    pub github_stars: Option<u32>,
    pub project_page: Option<HttpUrl>,
    pub thumbnail: Option<HttpUrl>,
}

impl Paper {
    /// A paper with only what every listing has: id, title and upvotes.
    pub fn new(id: PaperId, title: impl Into<String>, upvotes: u32) -> Self {
        Self {
            id,
            title: title.into(),
            summary: String::new(),
            ai_summary: None,
            ai_keywords: Vec::new(),
            authors: Vec::new(),
            organization: None,
            upvotes,
            comments: 0,
            published_at: None,
            featured_at: None,
            github_repo: None,
            github_stars: None,
            project_page: None,
            thumbnail: None,
        }
    }

    /// A short name for a GitHub link, `owner/repo`, when the link is a GitHub repository.
    pub fn github_name(&self) -> Option<String> {
        let url = url::Url::parse(self.github_repo.as_ref()?.as_str()).ok()?;
        if url.host_str()? != "github.com" {
            return None;
        }
        let mut parts = url.path_segments()?.filter(|s| !s.is_empty());
        let owner = parts.next()?;
        let repo = parts.next()?;
        Some(format!("{owner}/{}", repo.trim_end_matches(".git")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_ids_drop_the_version() {
        assert_eq!(
            PaperId::parse("2501.01234v2").unwrap().as_str(),
            "2501.01234"
        );
        assert_eq!(PaperId::parse("2501.01234").unwrap().as_str(), "2501.01234");
        assert_eq!(
            PaperId::parse("arXiv:1703.0650v11").unwrap().as_str(),
            "1703.0650"
        );
        assert_eq!(
            PaperId::parse("2501.01234v2").unwrap(),
            PaperId::parse("2501.01234v3").unwrap()
        );
    }

    #[test]
    fn rejects_what_is_not_an_arxiv_id() {
        for bad in [
            "",
            "2501",
            "2501.",
            "2501.123",
            "2501.123456",
            "2513.01234",
            "25a1.01234",
            "2501.01234v",
            "2501.01234x",
            "../etc/passwd",
            "2501.01234v2/../x",
        ] {
            assert!(PaperId::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn only_http_links_survive() {
        assert!(HttpUrl::parse("https://github.com/a/b").is_some());
        assert!(HttpUrl::parse("http://example.org/x").is_some());
        assert!(HttpUrl::parse("javascript:alert(1)").is_none());
        assert!(HttpUrl::parse("data:text/html,<b>x</b>").is_none());
        assert!(HttpUrl::parse("/relative/path").is_none());
        assert!(HttpUrl::parse("owner/repo").is_none());
    }
}
