//! The archive on the web: every edition's papers at `/editions/YYYY-MM-DD` (linked from
//! each reader's own copy of a digest) and an index of them at `/editions`, a page at a
//! time.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::{Params, WebError, WebState, page};
use crate::domain::{EditionDate, Paper};
use crate::render::{Look, PaperView};

/// Editions on one page of the index.
pub const PER_PAGE: usize = 100;

/// An edition's papers as the archive shows them: most upvoted first, the page's own order
/// breaking ties.
pub fn ranked<'a>(papers: impl IntoIterator<Item = &'a Paper>) -> Vec<&'a Paper> {
    let mut ranked: Vec<&Paper> = papers.into_iter().collect();
    ranked.sort_by_key(|p| std::cmp::Reverse(p.upvotes));
    ranked
}

/// "12 papers", "1 paper".
pub fn paper_count(n: usize) -> String {
    match n {
        1 => "1 paper".into(),
        n => format!("{n} papers"),
    }
}

/// A date from a URL, only in its one canonical spelling: each edition has one address.
pub(super) fn date_in_url(raw: &str) -> Result<EditionDate, WebError> {
    EditionDate::parse(raw)
        .ok()
        .filter(|d| d.to_string() == raw)
        .ok_or(WebError::NotFound)
}

pub struct EditionLine {
    pub date: String,
    pub long: String,
    pub count: String,
}

#[derive(Template)]
#[template(path = "web/editions.html")]
struct IndexPage {
    editions: Vec<EditionLine>,
    /// Where the next page starts, if there are older editions.
    older: Option<String>,
    /// Whether this is a later page (and so links back to the newest).
    paged: bool,
}

#[derive(Deserialize)]
pub struct IndexQuery {
    before: Option<String>,
}

pub async fn index(
    State(state): State<Arc<WebState>>,
    Params(q): Params<IndexQuery>,
) -> Result<Response, WebError> {
    let before = q.before.as_deref().map(date_in_url).transpose()?;
    // One more than shown: whether there is an older page.
    let mut summaries = state.store.edition_summaries(before, PER_PAGE + 1)?;
    let older = (summaries.len() > PER_PAGE).then(|| {
        summaries.truncate(PER_PAGE);
        summaries[PER_PAGE - 1].date.to_string()
    });
    let editions = summaries
        .into_iter()
        .map(|s| EditionLine {
            date: s.date.to_string(),
            long: s.date.long(),
            count: paper_count(s.papers),
        })
        .collect();
    Ok(page(
        StatusCode::OK,
        &IndexPage {
            editions,
            older,
            paged: before.is_some(),
        },
    ))
}

#[derive(Template)]
#[template(path = "web/edition.html")]
struct EditionPage {
    date_long: String,
    count: String,
    papers: Vec<PaperView>,
}

pub async fn edition(
    State(state): State<Arc<WebState>>,
    Path(raw): Path<String>,
) -> Result<Response, WebError> {
    let date = date_in_url(&raw)?;
    let edition = state.store.edition(date)?.ok_or(WebError::NotFound)?;
    let papers: Vec<PaperView> = ranked(&edition.papers)
        .into_iter()
        .map(|p| PaperView::new(p, &Look::default()))
        .collect();
    Ok(page(
        StatusCode::OK,
        &EditionPage {
            date_long: date.long(),
            count: paper_count(papers.len()),
            papers,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PaperId;

    #[test]
    fn most_upvoted_first_ties_in_page_order() {
        let paper =
            |id: &str, upvotes| Paper::new(PaperId::parse(id).unwrap(), id.to_string(), upvotes);
        let page = [
            paper("2512.00001", 5),
            paper("2512.00002", 9),
            paper("2512.00003", 5),
            paper("2512.00004", 12),
        ];
        let order: Vec<&str> = ranked(&page).iter().map(|p| p.id.as_str()).collect();
        assert_eq!(
            order,
            ["2512.00004", "2512.00002", "2512.00001", "2512.00003"]
        );
    }

    #[test]
    fn only_canonical_dates_name_an_edition() {
        assert!(date_in_url("2025-12-09").is_ok());
        for bad in [
            "2025-12-9",
            " 2025-12-09",
            "2025-13-01",
            "yesterday",
            "",
            "2025-12-09x",
        ] {
            assert!(
                matches!(date_in_url(bad), Err(WebError::NotFound)),
                "{bad:?}"
            );
        }
    }
}
