//! Turns a Hugging Face Papers page (or the `/api/daily_papers` JSON) into typed papers.
//!
//! The page hydrates from a `DailyPapers` data island: HTML-escaped JSON in a `data-props`
//! attribute. That island is the reliable part of the page; the cards below it have changed
//! several times, so paperboy reads only the island and fails loudly when it is gone.

use chrono::{DateTime, Utc};
use scraper::{Html, Selector};
use serde::Deserialize;
use serde_json::Value;

use crate::domain::{Author, EditionDate, HttpUrl, Paper, PaperId};

/// What one page said: its papers and the date it claims to be for.
#[derive(Debug, Clone)]
pub struct Listing {
    /// `dateString`: the day the page shows. A daily page for a day with no papers shows the
    /// latest valid day instead, which is why callers compare it with the day they asked for.
    pub date: Option<EditionDate>,
    /// `periodType`: `day`, `week` or `month`.
    pub period: Option<String>,
    pub is_trending: bool,
    pub papers: Vec<Paper>,
    /// Entries that were present but unusable (no id, no title, an id that is not arXiv's).
    pub skipped: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error(
        "the page has no DailyPapers data island (the site's layout may have changed); refusing to build a digest from it"
    )]
    NoIsland,
    #[error("the DailyPapers data is not valid JSON: {0}")]
    BadJson(String),
    #[error("the DailyPapers data has no dailyPapers list")]
    NoList,
    #[error("none of the {0} entries on the page could be read as a paper")]
    NoValidPapers(usize),
}

// Caps on scraped text: a digest must stay small and a hostile page must not make it huge.
const MAX_TITLE: usize = 300;
const MAX_SUMMARY: usize = 4000;
const MAX_AI_SUMMARY: usize = 1000;
const MAX_AUTHORS: usize = 100;
const MAX_NAME: usize = 100;
const MAX_KEYWORDS: usize = 30;
const MAX_KEYWORD: usize = 100;
const MAX_ORG: usize = 100;

/// Parses either form the source can take: an HTML page with the island, or the JSON API's
/// array of entries.
pub fn parse_listing(body: &str) -> Result<Listing, ParseError> {
    let trimmed = body.trim_start();
    if trimmed.starts_with('[') {
        let entries: Vec<Value> =
            serde_json::from_str(trimmed).map_err(|e| ParseError::BadJson(one_line(&e)))?;
        return listing_from_entries(entries, None, None, false);
    }
    let props = island_props(body)?;
    let props: Value =
        serde_json::from_str(&props).map_err(|e| ParseError::BadJson(one_line(&e)))?;
    let Value::Object(mut map) = props else {
        return Err(ParseError::BadJson("not an object".into()));
    };
    let entries = match map.remove("dailyPapers") {
        Some(Value::Array(a)) => a,
        _ => return Err(ParseError::NoList),
    };
    let date = map
        .get("dateString")
        .and_then(Value::as_str)
        .and_then(|s| EditionDate::parse(s).ok());
    let period = map
        .get("periodType")
        .and_then(Value::as_str)
        .map(str::to_string);
    let is_trending = map
        .get("isTrending")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    listing_from_entries(entries, date, period, is_trending)
}

/// The unescaped `data-props` of the `DailyPapers` island. Runs synchronously: scraper's
/// `Html` is not `Send`, so it must never live across an await.
///
/// The island's own tag is cut out of the page and parsed alone; only when that fails is the
/// whole page parsed. Besides being fast, this keeps a hostile page (thousands of nested
/// inline elements make HTML tree building quadratic) from costing more than one tag.
fn island_props(body: &str) -> Result<String, ParseError> {
    if let Some(tag) = island_tag(body)
        && let Some(props) = props_in(&Html::parse_fragment(&format!("{tag}</div>")))
    {
        return Ok(props);
    }
    props_in(&Html::parse_document(body)).ok_or(ParseError::NoIsland)
}

fn props_in(doc: &Html) -> Option<String> {
    let selector = Selector::parse(r#"div.SVELTE_HYDRATER[data-target="DailyPapers"]"#)
        .expect("static selector");
    doc.select(&selector)
        .find_map(|el| el.value().attr("data-props"))
        .map(str::to_string)
}

/// The start tag that carries `data-target="DailyPapers"`, found by scanning text: from the
/// `<` before the marker to the first `>` outside quoted attribute values.
fn island_tag(body: &str) -> Option<&str> {
    let marker = body.find(r#"data-target="DailyPapers""#)?;
    let start = body[..marker].rfind('<')?;
    let mut quote = None;
    for (i, c) in body[start..].char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Some(&body[start..=start + i]),
            _ => {}
        }
    }
    None
}

fn listing_from_entries(
    entries: Vec<Value>,
    date: Option<EditionDate>,
    period: Option<String>,
    is_trending: bool,
) -> Result<Listing, ParseError> {
    let total = entries.len();
    let mut papers: Vec<Paper> = Vec::with_capacity(total);
    let mut skipped = 0;
    for entry in entries {
        match serde_json::from_value::<RawEntry>(entry)
            .ok()
            .and_then(RawEntry::into_paper)
        {
            // The same paper twice on one page (it happens on trending) counts once.
            Some(p) if !papers.iter().any(|q| q.id == p.id) => papers.push(p),
            Some(_) => {}
            None => skipped += 1,
        }
    }
    if total > 0 && papers.is_empty() {
        return Err(ParseError::NoValidPapers(total));
    }
    Ok(Listing {
        date,
        period,
        is_trending,
        papers,
        skipped,
    })
}

#[derive(Deserialize)]
struct RawEntry {
    paper: RawPaper,
    title: Option<String>,
    summary: Option<String>,
    thumbnail: Option<String>,
    #[serde(rename = "numComments")]
    num_comments: Option<i64>,
    organization: Option<RawOrg>,
}

#[derive(Deserialize)]
struct RawPaper {
    id: String,
    title: Option<String>,
    summary: Option<String>,
    #[serde(default)]
    authors: Vec<RawAuthor>,
    #[serde(rename = "publishedAt")]
    published_at: Option<String>,
    #[serde(rename = "submittedOnDailyAt")]
    submitted_on_daily_at: Option<String>,
    upvotes: Option<i64>,
    ai_summary: Option<String>,
    ai_keywords: Option<Vec<String>>,
    #[serde(rename = "githubRepo")]
    github_repo: Option<String>,
    #[serde(rename = "githubStars")]
    github_stars: Option<i64>,
    #[serde(rename = "projectPage")]
    project_page: Option<String>,
    organization: Option<RawOrg>,
}

#[derive(Deserialize)]
struct RawAuthor {
    name: Option<String>,
}

#[derive(Deserialize)]
struct RawOrg {
    name: Option<String>,
    fullname: Option<String>,
}

impl RawOrg {
    fn display(self) -> Option<String> {
        self.fullname
            .filter(|s| !s.trim().is_empty())
            .or(self.name)
            .map(|s| clean(&s, MAX_ORG))
            .filter(|s| !s.is_empty())
    }
}

impl RawEntry {
    fn into_paper(self) -> Option<Paper> {
        let p = self.paper;
        let id = PaperId::parse(&p.id).ok()?;
        let title = clean(p.title.as_deref().or(self.title.as_deref())?, MAX_TITLE);
        if title.is_empty() {
            return None;
        }
        let summary = clean(
            p.summary
                .as_deref()
                .or(self.summary.as_deref())
                .unwrap_or(""),
            MAX_SUMMARY,
        );
        let authors = p
            .authors
            .into_iter()
            .filter_map(|a| a.name)
            .map(|n| clean(&n, MAX_NAME))
            .filter(|n| !n.is_empty())
            .take(MAX_AUTHORS)
            .map(|name| Author { name })
            .collect();
        let ai_keywords = p
            .ai_keywords
            .unwrap_or_default()
            .iter()
            .map(|k| clean(k, MAX_KEYWORD))
            .filter(|k| !k.is_empty())
            .take(MAX_KEYWORDS)
            .collect();
        Some(Paper {
            id,
            title,
            summary,
            ai_summary: p
                .ai_summary
                .map(|s| clean(&s, MAX_AI_SUMMARY))
                .filter(|s| !s.is_empty()),
            ai_keywords,
            authors,
            organization: p
                .organization
                .and_then(RawOrg::display)
                .or_else(|| self.organization.and_then(RawOrg::display)),
            upvotes: clamp_count(p.upvotes),
            comments: clamp_count(self.num_comments),
            published_at: p.published_at.as_deref().and_then(timestamp),
            featured_at: p.submitted_on_daily_at.as_deref().and_then(timestamp),
            github_repo: p.github_repo.as_deref().and_then(github_url),
            github_stars: p.github_stars.map(|s| clamp_count(Some(s))),
            project_page: p.project_page.as_deref().and_then(HttpUrl::parse),
            thumbnail: self.thumbnail.as_deref().and_then(HttpUrl::parse),
        })
    }
}

fn clamp_count(v: Option<i64>) -> u32 {
    v.unwrap_or(0).clamp(0, u32::MAX as i64) as u32
}

fn timestamp(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `githubRepo` is a full URL in current data and `owner/repo` in some older data.
fn github_url(raw: &str) -> Option<HttpUrl> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    if raw.contains("://") {
        return HttpUrl::parse(raw);
    }
    let mut parts = raw.split('/');
    let (owner, repo) = (parts.next()?, parts.next()?);
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if parts.next().is_some() || !ok(owner) || !ok(repo) {
        return None;
    }
    HttpUrl::parse(&format!("https://github.com/{owner}/{repo}"))
}

/// Collapses whitespace (titles and abstracts arrive with hard line breaks), drops control
/// and bidi-override characters, and caps the length at a character boundary.
pub fn clean(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars * 4));
    let mut count = 0;
    for word in s.split(|c: char| c.is_whitespace() || c.is_control()) {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
            count += 1;
        }
        for c in word.chars().filter(|c| !is_invisible_control(*c)) {
            if count >= max_chars {
                out.push('…');
                return out;
            }
            out.push(c);
            count += 1;
        }
    }
    out
}

/// Bidirectional overrides and zero-width characters can make a title display as something
/// other than what it says.
fn is_invisible_control(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

fn one_line(e: &serde_json::Error) -> String {
    e.to_string().replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_collapses_and_caps() {
        assert_eq!(clean("  a\n\tb  c ", 100), "a b c");
        assert_eq!(clean("abcdef", 3), "abc…");
        assert_eq!(clean("x\u{202E}y\r\nz", 100), "xy z");
    }

    #[test]
    fn github_links_in_both_forms() {
        assert_eq!(
            github_url("owner/repo").unwrap().as_str(),
            "https://github.com/owner/repo"
        );
        assert_eq!(
            github_url("https://github.com/a/b").unwrap().as_str(),
            "https://github.com/a/b"
        );
        assert!(github_url("javascript:alert(1)").is_none());
        assert!(github_url("a/b/c").is_none());
        assert!(github_url("").is_none());
    }

    #[test]
    fn api_array_form() {
        let body = r#"[{"paper":{"id":"2501.00001v3","title":"T","upvotes":-4},"numComments":2},
                       {"paper":{"id":"bogus","title":"U"}}]"#;
        let l = parse_listing(body).unwrap();
        assert_eq!(l.papers.len(), 1);
        assert_eq!(l.papers[0].id.as_str(), "2501.00001");
        assert_eq!(l.papers[0].upvotes, 0);
        assert_eq!(l.papers[0].comments, 2);
        assert_eq!(l.skipped, 1);
    }

    #[test]
    fn garbage_is_an_error_not_an_empty_digest() {
        assert_eq!(
            parse_listing("<html><body>hi</body></html>").unwrap_err(),
            ParseError::NoIsland
        );
        let bad = r#"<div class="SVELTE_HYDRATER contents" data-target="DailyPapers" data-props="{nope"></div>"#;
        assert!(matches!(parse_listing(bad), Err(ParseError::BadJson(_))));
        let no_list = r#"<div class="SVELTE_HYDRATER contents" data-target="DailyPapers" data-props="{}"></div>"#;
        assert_eq!(parse_listing(no_list).unwrap_err(), ParseError::NoList);
        let all_bad = r#"<div class="SVELTE_HYDRATER contents" data-target="DailyPapers" data-props="{&quot;dailyPapers&quot;:[{&quot;x&quot;:1}]}"></div>"#;
        assert_eq!(
            parse_listing(all_bad).unwrap_err(),
            ParseError::NoValidPapers(1)
        );
    }
}

#[cfg(test)]
mod hostile_pages {
    use super::*;

    /// 10,000 nested elements around the island: no stack overflow, and the island is found.
    #[test]
    fn deep_nesting() {
        let island = r#"<div class="SVELTE_HYDRATER contents" data-target="DailyPapers" data-props="{&quot;dailyPapers&quot;:[{&quot;paper&quot;:{&quot;id&quot;:&quot;2501.00001&quot;,&quot;title&quot;:&quot;T&quot;}}]}"></div>"#;
        let page = format!(
            "<html><body>{}{island}{}</body></html>",
            "<div>".repeat(10_000),
            "</div>".repeat(10_000)
        );
        let listing = parse_listing(&page).unwrap();
        assert_eq!(listing.papers.len(), 1);
        let inline = format!(
            "<html><body>{}{island}</body></html>",
            "<b><i>".repeat(10_000)
        );
        assert!(parse_listing(&inline).is_ok());
    }

    #[test]
    fn the_island_tag_is_found_without_parsing_the_page() {
        let page = r#"<p a='>'><div class="SVELTE_HYDRATER contents" data-target="DailyPapers" data-props="{&quot;x&quot;:&quot;a>b&quot;}"></div><p>"#;
        let tag = island_tag(page).unwrap();
        assert!(
            tag.starts_with("<div class") && tag.ends_with("}\">"),
            "{tag}"
        );
        let html = Html::parse_fragment(&format!("{tag}</div>"));
        assert_eq!(props_in(&html).as_deref(), Some(r#"{"x":"a>b"}"#));
    }

    #[test]
    fn truncated_page_is_an_error() {
        let path = format!(
            "{}/tests/fixtures/hf/trending-2025-12-09.html",
            env!("CARGO_MANIFEST_DIR")
        );
        let page = std::fs::read_to_string(path).unwrap();
        for cut in [page.len() / 3, page.len() / 2, 2000] {
            assert!(
                parse_listing(&page[..page.floor_char_boundary(cut)]).is_err(),
                "cut at {cut}"
            );
        }
    }
}
