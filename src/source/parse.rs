//! Turns a Hugging Face Papers page (or the `/api/daily_papers` JSON) into typed papers.
//!
//! The page hydrates from a `DailyPapers` data island: HTML-escaped JSON in a `data-props`
//! attribute. That island is the reliable part of the page; the cards below it have changed
//! several times, so paperboy reads only the island and fails loudly when it is gone.
//!
//! The island is found as a browser reads the page's tags (see [`super::island`]).

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::config::SourceKind;
use crate::domain::{Author, EditionDate, HttpUrl, Paper, PaperId};

/// What one page said: its papers and the date it claims to be for.
#[derive(Debug, Clone)]
pub struct Listing {
    /// `dateString`: the day the page shows. A daily page for a day with no papers shows the
    /// latest valid day instead, which is why callers compare it with the day they asked for.
    /// The API's JSON has no such field; there it is the day most of its papers were featured.
    pub date: Option<EditionDate>,
    /// `periodType`: `day`, `week` or `month`.
    pub period: Option<String>,
    pub is_trending: bool,
    pub papers: Vec<Paper>,
    /// Entries that were present but unusable (no id, no title, an id that is not arXiv's).
    pub skipped: usize,
    /// Papers of the daily lists of the days before the edition's that are not in `papers`,
    /// each once, with its highest upvotes: papers that may have gained upvotes since they
    /// were new. Filled by the source's recent window; a parse leaves it empty.
    pub recent: Vec<Paper>,
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
    #[error(
        "source kind \"{kind}\" expects {}, but this is {found}",
        match kind { SourceKind::HfPage => "an HTML page with the DailyPapers data", SourceKind::HfApi => "the JSON list of /api/daily_papers" }
    )]
    WrongKind {
        kind: SourceKind,
        found: &'static str,
    },
}

/// Parses a body as `kind` says it must be: a page given to `hf-api`, or JSON given to
/// `hf-page`, is an error rather than a guess, since it means the URL is not what the
/// config says it is.
pub fn parse_as(body: &str, kind: SourceKind) -> Result<Listing, ParseError> {
    let trimmed = body.trim_start();
    let found = match trimmed.as_bytes().first() {
        Some(b'[') => "a JSON list",
        Some(b'{') => "a JSON object",
        Some(b'<') => "an HTML page",
        _ => "neither HTML nor JSON",
    };
    match (kind, found) {
        (SourceKind::HfPage, "an HTML page" | "neither HTML nor JSON") => parse_listing(body),
        (SourceKind::HfApi, "a JSON list") => parse_listing(body),
        _ => Err(ParseError::WrongKind { kind, found }),
    }
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
///
/// The JSON is first read straight into typed structs ([`RawProps`], [`RawEntry`]), which the
/// site's data always fits; building a [`Value`] tree of the whole island first cost more
/// than the rest of the parse. That read is all-or-nothing, so when it fails for any reason
/// (a malformed entry, a field of an unexpected type, a duplicate key, bad JSON) the text is
/// read again through [`Value`] exactly as before: that reading skips bad entries one by one
/// and words the errors. Where the typed read succeeds, both give the same listing.
pub fn parse_listing(body: &str) -> Result<Listing, ParseError> {
    let trimmed = body.trim_start();
    if trimmed.starts_with('[') {
        return match serde_json::from_str::<Vec<RawEntry>>(trimmed) {
            Ok(entries) => api_listing(all_read(entries)),
            Err(_) => api_listing_via_values(trimmed),
        };
    }
    let props = super::island::props(body).ok_or(ParseError::NoIsland)?;
    match typed_props(&props) {
        Some(props) => props.into_listing(),
        None => island_listing_via_values(&props),
    }
}

/// The island's props as the site sends them. Each field means what the [`Value`] reading in
/// [`island_listing_via_values`] takes it to mean (a missing or `null` optional field is
/// `None` in both); a field of another type makes the whole typed read fail.
#[derive(Deserialize)]
struct RawProps {
    #[serde(rename = "dailyPapers")]
    daily_papers: Vec<RawEntry>,
    #[serde(rename = "dateString")]
    date_string: Option<String>,
    #[serde(rename = "periodType")]
    period_type: Option<String>,
    #[serde(rename = "isTrending")]
    is_trending: Option<bool>,
}

impl RawProps {
    fn into_listing(self) -> Result<Listing, ParseError> {
        listing_from_entries(
            all_read(self.daily_papers),
            self.date_string.and_then(|s| EditionDate::parse(&s).ok()),
            self.period_type,
            self.is_trending.unwrap_or(false),
        )
    }
}

/// The props read straight into [`RawProps`], or `None` when they do not fit it exactly.
fn typed_props(props: &str) -> Option<RawProps> {
    // serde also reads a struct from a JSON array (fields by position), but props that are
    // an array are "not an object" to the `Value` reading, so only an object is tried here.
    if !props
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
    {
        return None;
    }
    serde_json::from_str(props).ok()
}

/// The JSON API's array read entry by entry: an entry that is not a [`RawEntry`] is skipped.
fn api_listing_via_values(json: &str) -> Result<Listing, ParseError> {
    let entries: Vec<Value> =
        serde_json::from_str(json).map_err(|e| ParseError::BadJson(one_line(&e)))?;
    api_listing(read_each(entries))
}

/// The API's entries as a listing, dated by when its papers were featured.
fn api_listing(entries: Vec<Option<RawEntry>>) -> Result<Listing, ParseError> {
    let mut listing = listing_from_entries(entries, None, None, false)?;
    listing.date = featured_day(&listing.papers);
    Ok(listing)
}

/// The (UTC) day most papers were featured on (the later day on a tie): an API answer for
/// `?date=D` that falls back to another day is caught by the same check as a daily page.
fn featured_day(papers: &[Paper]) -> Option<EditionDate> {
    let mut days: Vec<EditionDate> = papers
        .iter()
        .filter_map(|p| p.featured_at)
        .map(|t| EditionDate::from_naive(t.date_naive()))
        .collect();
    days.sort();
    // `max_by_key` keeps the last of equals, and the runs are in date order.
    days.chunk_by(|a, b| a == b)
        .max_by_key(|run| run.len())
        .map(|run| run[0])
}

/// The island's props read through [`Value`]: lenient about the optional fields, entry by
/// entry about the papers, and precise about what is wrong when there is no list at all.
fn island_listing_via_values(props: &str) -> Result<Listing, ParseError> {
    let props: Value =
        serde_json::from_str(props).map_err(|e| ParseError::BadJson(one_line(&e)))?;
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
    listing_from_entries(read_each(entries), date, period, is_trending)
}

/// Entries that the typed read already read, every one of them.
fn all_read(entries: Vec<RawEntry>) -> Vec<Option<RawEntry>> {
    entries.into_iter().map(Some).collect()
}

/// Each entry as a [`RawEntry`], or `None` for one that is not shaped like one.
fn read_each(entries: Vec<Value>) -> Vec<Option<RawEntry>> {
    entries
        .into_iter()
        .map(|entry| serde_json::from_value(entry).ok())
        .collect()
}

/// `None` entries are ones that could not be read as a [`RawEntry`] at all.
fn listing_from_entries(
    entries: Vec<Option<RawEntry>>,
    date: Option<EditionDate>,
    period: Option<String>,
    is_trending: bool,
) -> Result<Listing, ParseError> {
    let total = entries.len();
    let mut papers: Vec<Paper> = Vec::with_capacity(total);
    let mut skipped = 0;
    for entry in entries {
        match entry.and_then(RawEntry::into_paper) {
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
        recent: Vec::new(),
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
        // Nearly every word is plain ASCII: one character per byte and no invisible
        // characters, so it is copied whole (or cut) instead of character by character.
        if word.is_ascii() {
            let room = max_chars.saturating_sub(count);
            if word.len() > room {
                out.push_str(&word[..room]);
                out.push('…');
                return out;
            }
            out.push_str(word);
            count += word.len();
            continue;
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

/// The fast paths (the ASCII words of `clean`, the typed JSON read) against what they
/// replace: wherever a fast path answers, it answers the same.
#[cfg(test)]
mod fast_paths {
    use super::*;
    use proptest::prelude::*;

    const PAGES: [&str; 4] = [
        "trending-2025-12-08.html",
        "trending-2025-12-09.html",
        "date-2025-12-09.html",
        "empty-day.html",
    ];

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/hf/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path).unwrap()
    }

    /// `clean` as it was before words were copied whole.
    fn clean_char_by_char(s: &str, max_chars: usize) -> String {
        let mut out = String::new();
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

    #[test]
    fn real_pages_take_the_fast_paths() {
        for name in PAGES {
            let props = crate::source::island::props(&fixture(name)).unwrap();
            let typed = typed_props(&props).expect("the typed read fits the real data");
            assert_eq!(
                format!("{:?}", typed.into_listing()),
                format!("{:?}", island_listing_via_values(&props)),
                "{name}"
            );
        }
        let api = fixture("api-daily_papers-2025-12-09.json");
        let typed = serde_json::from_str::<Vec<RawEntry>>(&api).unwrap();
        assert_eq!(
            format!("{:?}", api_listing(all_read(typed))),
            format!("{:?}", api_listing_via_values(&api))
        );
    }

    fn text_strategy() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "a",
            "Word",
            " ",
            "  ",
            "\n",
            "\t",
            "\r\n",
            "\x0B",
            "\0",
            "\x7F",
            "\u{85}",
            "\u{9F}",
            "\u{A0}",
            "\u{2003}",
            "\u{3000}",
            "\u{200B}",
            "\u{200F}",
            "\u{202E}",
            "\u{2066}",
            "\u{FEFF}",
            "é",
            "漢字",
            "—",
            "x\u{200B}y",
        ]);
        prop::collection::vec(piece, 0..12).prop_map(|p| p.concat())
    }

    /// JSON for one entry: the fields paperboy reads (sometimes repeated), with values of the
    /// right type most of the time.
    fn entry_strategy() -> impl Strategy<Value = String> {
        let value = prop::sample::select(vec![
            "\"2501.00001\"",
            "\"2501.00002v2\"",
            "\"bogus\"",
            "\"T \\n t\"",
            "\"\"",
            "null",
            "1",
            "-5",
            "3.5",
            "1e2",
            "18446744073709551615",
            "true",
            "[]",
            "[\"k\", \" \"]",
            "[{\"name\":\"A\"},{\"name\":null},{}]",
            "{\"name\":\"O\",\"fullname\":\" \"}",
            "\"https://x.org/a\"",
            "\"javascript:x\"",
            "\"2025-12-09T08:00:00.000Z\"",
            "\"owner/repo\"",
            "{\"x\":[1,{\"y\":null}]}",
        ]);
        let paper_key = prop::sample::select(vec![
            "id",
            "title",
            "summary",
            "authors",
            "publishedAt",
            "submittedOnDailyAt",
            "upvotes",
            "ai_summary",
            "ai_keywords",
            "githubRepo",
            "githubStars",
            "projectPage",
            "organization",
            "other",
        ]);
        let entry_key = prop::sample::select(vec![
            "title",
            "summary",
            "thumbnail",
            "numComments",
            "organization",
            "other",
        ]);
        let pairs = |keys: BoxedStrategy<&'static str>| {
            prop::collection::vec((keys, value.clone()), 0..4).prop_map(|kv| {
                kv.iter()
                    .map(|(k, v)| format!(",\"{k}\":{v}"))
                    .collect::<String>()
            })
        };
        let id =
            prop_oneof![8 => Just("\"2501.00001\""), 4 => Just("\"2502.00002v1\""), 1 => Just("7")];
        (id, pairs(paper_key.boxed()), pairs(entry_key.boxed())).prop_map(|(id, paper, entry)| {
            format!("{{\"paper\":{{\"id\":{id},\"title\":\"A title\"{paper}}}{entry}}}")
        })
    }

    proptest! {
        #[test]
        fn clean_is_unchanged(s in text_strategy(), max in 0usize..16) {
            prop_assert_eq!(clean(&s, max), clean_char_by_char(&s, max));
        }

        #[test]
        fn typed_read_agrees_with_value_read(
            entries in prop::collection::vec(entry_strategy(), 0..4),
            extra in prop::sample::select(vec!["", ",\"dateString\":\"2025-12-09\"", ",\"dateString\":5", ",\"periodType\":\"day\",\"isTrending\":true", ",\"isTrending\":null", ",\"isTrending\":\"yes\"", ",\"dailyPapers\":[]", ",\"x\":{}"]),
        ) {
            let list = format!("[{}]", entries.join(","));
            let props = format!("{{\"dailyPapers\":{list}{extra}}}");
            if let Some(typed) = typed_props(&props) {
                prop_assert_eq!(
                    format!("{:?}", typed.into_listing()),
                    format!("{:?}", island_listing_via_values(&props))
                );
            }
            if let Ok(typed) = serde_json::from_str::<Vec<RawEntry>>(&list) {
                prop_assert_eq!(
                    format!("{:?}", api_listing(all_read(typed))),
                    format!("{:?}", api_listing_via_values(&list))
                );
            }
            // Whatever path it takes, parse_listing says what the Value reading says.
            prop_assert_eq!(
                format!("{:?}", parse_listing(&list)),
                format!("{:?}", api_listing_via_values(&list))
            );
        }
    }
}
