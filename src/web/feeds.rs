//! Atom feeds: `/feed.xml` follows the editions (each with its top papers), and
//! `/feed/{token}.xml` a subscriber's own digests, for reading in a feed reader instead of
//! (or besides) the inbox. The personal feed's token only reads: it is signed for
//! [`Purpose::Feed`], so whoever sees a feed reader's settings cannot unsubscribe anyone.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::archive::{paper_count, ranked};
use super::atom::{self, Entry, Feed};
use super::{WebError, WebState};
use crate::domain::{EditionDate, Paper, PaperId, Status, Subscriber, SubscriberId};
use crate::edition::week_before_dates;
use crate::render::{Look, PaperView, edition_url, trim_at_word};
use crate::store::EditionRecord;
use crate::tokens::Purpose;

/// Entries in a feed: a month and a half of daily editions.
pub const ENTRIES: usize = 30;
/// Papers shown in an entry of the editions' feed.
pub const TOP_PAPERS: usize = 10;

#[derive(Template)]
#[template(path = "web/feed_entry.html")]
struct EntryContent<'a> {
    intro: &'a str,
    papers: Vec<PaperView>,
    edition_url: &'a str,
}

fn entry_html(intro: &str, papers: &[&Paper], edition_url: &str) -> Result<String, WebError> {
    EntryContent {
        intro,
        papers: papers
            .iter()
            .map(|p| PaperView::new(p, &Look::default()))
            .collect(),
        edition_url,
    }
    .render()
    .map_err(|e| WebError::Render(Box::new(crate::telemetry::Flat(e))))
}

/// "12 papers. Most upvoted: <title>".
fn summary(papers: &[&Paper]) -> String {
    match papers.first() {
        None => "No papers.".into(),
        Some(top) => format!(
            "{}. Most upvoted: {}",
            paper_count(papers.len()),
            trim_at_word(&top.title, 120)
        ),
    }
}

fn xml(feed: &Feed) -> Response {
    ([(header::CONTENT_TYPE, atom::CONTENT_TYPE)], feed.to_xml()).into_response()
}

/// The newest of the entries' times: when the feed last changed. A feed with no entries
/// yet gives `otherwise`.
fn updated(entries: &[Entry], otherwise: DateTime<Utc>) -> DateTime<Utc> {
    entries.iter().map(|e| e.updated).max().unwrap_or(otherwise)
}

pub async fn general(State(state): State<Arc<WebState>>) -> Result<Response, WebError> {
    let web = &*state;
    let base = web.links.base();
    let entries = web
        .store
        .latest_editions(ENTRIES)?
        .iter()
        .map(|edition| {
            let url = edition_url(base, edition.date);
            let papers = ranked(&edition.papers);
            let top = &papers[..papers.len().min(TOP_PAPERS)];
            let intro = format!(
                "The {} most upvoted of the {} trending on {}.",
                top.len(),
                paper_count(papers.len()),
                edition.date.long()
            );
            Ok(Entry {
                title: format!("Trending papers, {}", edition.date.long()),
                id: url.clone(),
                updated: edition.created_at,
                summary: summary(&papers),
                content_html: entry_html(&intro, top, &url)?,
                url,
            })
        })
        .collect::<Result<Vec<_>, WebError>>()?;
    let self_url = format!("{base}/feed.xml");
    Ok(xml(&Feed {
        title: "Trending papers · paperboy".into(),
        id: self_url.clone(),
        updated: updated(&entries, Utc::now()),
        self_url,
        alternate_url: format!("{base}/editions"),
        entries,
    }))
}

/// The subscriber a feed token belongs to: a bad token is "not valid", an address that is
/// gone "not found", and a subscription that ended "gone".
fn feed_owner(web: &WebState, file: &str) -> Result<Subscriber, WebError> {
    let token = file.strip_suffix(".xml").ok_or(WebError::NotFound)?;
    let id: SubscriberId = web
        .links
        .key()
        .verify(Purpose::Feed, token, Utc::now(), 0)
        .map_err(|_| WebError::BadToken)?;
    let s = web.store.subscriber_by_id(id)?.ok_or(WebError::NotFound)?;
    if s.status == Status::Unsubscribed {
        return Err(WebError::Gone);
    }
    Ok(s)
}

pub async fn personal(
    State(state): State<Arc<WebState>>,
    Path(file): Path<String>,
) -> Result<Response, WebError> {
    let web = &*state;
    let s = feed_owner(web, &file)?;
    let base = web.links.base();
    let history = web.store.sent_history(s.id, ENTRIES)?;
    // Each edition read once: a weekly digest also holds papers of the editions of the week
    // before, which the entries around it share.
    let mut editions: HashMap<EditionDate, Option<EditionRecord>> = HashMap::new();
    let load = |editions: &mut HashMap<_, _>, d: EditionDate| -> Result<(), WebError> {
        if let std::collections::hash_map::Entry::Vacant(slot) = editions.entry(d) {
            slot.insert(web.store.edition(d)?);
        }
        Ok(())
    };
    for (date, ids) in &history {
        load(&mut editions, *date)?;
        let own: Option<&EditionRecord> = editions[date].as_ref();
        if ids
            .iter()
            .any(|id| own.is_none_or(|e| e.paper(id).is_none()))
        {
            for d in week_before_dates(*date) {
                load(&mut editions, d)?;
            }
        }
    }
    let mut entries = Vec::new();
    for (date, ids) in history {
        let edition = editions[&date].as_ref();
        let find = |id: &PaperId| {
            std::iter::once(date)
                .chain(week_before_dates(date))
                .find_map(|d| editions.get(&d)?.as_ref()?.paper(id))
        };
        let papers: Vec<&Paper> = ranked(ids.iter().filter_map(find));
        let url = edition_url(base, date);
        let intro = if papers.is_empty() {
            "The papers of this digest are no longer on record.".to_string()
        } else {
            format!(
                "Your digest of {}: {}.",
                date.long(),
                paper_count(papers.len())
            )
        };
        entries.push(Entry {
            title: format!("Your trending papers, {}", date.long()),
            // The edition's own page is the general feed's entry; this one is theirs.
            id: format!("{url}#for-{}", s.id),
            updated: edition.map_or(s.created_at, |e| e.created_at),
            summary: summary(&papers),
            content_html: entry_html(&intro, &papers, &url)?,
            url,
        });
    }
    let self_url = web.links.feed(s.id);
    Ok(xml(&Feed {
        title: "Your trending papers · paperboy".into(),
        id: self_url.clone(),
        updated: updated(&entries, s.created_at),
        self_url,
        alternate_url: format!("{base}/editions"),
        entries,
    }))
}
