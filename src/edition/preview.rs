//! The edition as it would be, computed without writing anything: what a dry run would send
//! to each subscriber, the digest `preview` shows, and why each paper is or is not in a
//! reader's digest (`explain`, and "why these papers" on the preferences page). Built from
//! the same pages, verdicts and templates as a real run, so they cannot disagree with it.

use std::collections::HashMap;
use std::sync::Arc;

use super::due::{Occasion, due};
use super::{Editions, Pages, RunError, choose, decide, digest_papers, template_for};
use crate::domain::{EditionDate, Paper, PaperId, Subscriber};
use crate::edition::select::Verdict;
use crate::render::{BrowserLink, EditionTemplate, Rendered};
use crate::store::{DeliveryState, EditionRecord};

/// What a run for `date` would send to each subscriber, computed without writing anything.
pub struct DryRunLine {
    pub subscriber: Subscriber,
    pub plan: DryRunPlan,
}

pub enum DryRunPlan {
    AlreadyHas(DeliveryState),
    /// Weekly on another day, or with a send time of their own.
    NotDue,
    NothingNew,
    Would {
        subject: String,
        papers: Vec<PaperId>,
        bytes: usize,
    },
}

pub async fn dry_run(
    editions: &Arc<Editions>,
    date: EditionDate,
) -> Result<(usize, Vec<DryRunLine>), RunError> {
    let listing = editions.source.peek(date).await?;
    // The edition as a real run would freeze it, built in memory only.
    let mut edition = editions
        .store
        .edition(date)?
        .unwrap_or_else(|| EditionRecord::new(date));
    edition.merge(&listing.papers, &listing.recent);
    let template = template_for(editions, &edition)?;
    let mut pages = Pages::new(editions, date, &listing.papers, &edition.recent, &template)?;
    let occasion = Occasion::Scheduled(date);
    let mut lines = Vec::new();
    for s in editions.store.subscribers()? {
        if !s.receives_digests() {
            continue;
        }
        let before = editions.store.sent_before(s.id)?;
        let plan = if let Some(d) = editions.store.delivery(date, s.id)? {
            DryRunPlan::AlreadyHas(d.state)
        } else if before.has_edition(date) {
            // Planned and since cleared from the outbox: done, whichever way it went.
            DryRunPlan::AlreadyHas(DeliveryState::Sent)
        } else if due(&s.preferences, &occasion, |a, b| before.had_between(a, b)) != Some(date) {
            DryRunPlan::NotDue
        } else {
            let mut personal = editions.personal(&s, date);
            let chosen = choose(
                editions,
                pages.for_subscriber(&s)?,
                &s,
                &before,
                &mut personal,
            );
            if chosen.is_empty() {
                DryRunPlan::NothingNew
            } else {
                let r = template.digest(&chosen, &personal)?;
                DryRunPlan::Would {
                    bytes: r.html.len() + r.text.len(),
                    subject: r.subject,
                    papers: r.papers,
                }
            }
        };
        lines.push(DryRunLine {
            subscriber: s,
            plan,
        });
    }
    Ok((listing.papers.len(), lines))
}

/// The digest a subscriber would get from the page right now, for `preview`.
pub async fn preview(
    editions: &Arc<Editions>,
    date: EditionDate,
    s: &Subscriber,
) -> Result<Option<Rendered>, RunError> {
    let listing = editions.source.peek(date).await?;
    let mut edition = EditionRecord::new(date);
    edition.merge(&listing.papers, &listing.recent);
    let template = template_for(editions, &edition)?;
    let mut personal = editions.personal(s, date);
    let mut pages = Pages::new(editions, date, &listing.papers, &listing.recent, &template)?;
    let before = editions.store.sent_before(s.id)?;
    let chosen = choose(
        editions,
        pages.for_subscriber(s)?,
        s,
        &before,
        &mut personal,
    );
    if chosen.is_empty() {
        return Ok(None);
    }
    Ok(Some(template.digest(&chosen, &personal)?))
}

/// The digest a subscriber was sent for `date`, assembled again, for their own copy on the
/// web: the link at its top goes to the whole edition. None when the edition or their
/// digest of it is no longer on record (past `digest.retention_days`).
///
/// The newest edition's deliveries are still in the outbox and give the digest exactly
/// (its papers, its order, its late bloomers). Those of earlier editions are cleared once
/// sent, to keep the store small; the ledger still says which papers went, and they are put
/// in the digest's order, most upvoted first, but without the late bloomers' badges, which
/// only the delivery kept.
pub fn as_sent(
    editions: &Editions,
    date: EditionDate,
    s: &Subscriber,
) -> Result<Option<Rendered>, RunError> {
    let Some(edition) = editions.store.edition(date)? else {
        return Ok(None);
    };
    let papers = digest_papers(editions, &edition)?;
    let (chosen, late) = match editions.store.delivery(date, s.id)? {
        Some(d) => (d.papers, d.late),
        None => {
            let Some(mut ids) = editions.store.sent_on(s.id, date)? else {
                return Ok(None);
            };
            let upvotes: HashMap<&PaperId, u32> =
                papers.iter().map(|p| (&p.id, p.upvotes)).collect();
            // Stable, as planning's own sort: the order first seen among equals.
            ids.sort_by_key(|id| std::cmp::Reverse(upvotes.get(id).copied().unwrap_or(0)));
            (ids, Vec::new())
        }
    };
    if chosen.is_empty() {
        return Ok(None);
    }
    let template = EditionTemplate::new(date, &papers, editions.links.base(), &editions.look)?;
    let mut personal = editions.personal(s, date);
    personal.late = late;
    personal.browser = BrowserLink::WholeEdition;
    Ok(Some(template.digest(&chosen, &personal)?))
}

/// Why each paper of an edition is or is not in a subscriber's digest.
pub struct Explanation {
    pub date: EditionDate,
    /// Whether the papers are the edition as frozen in the store (else a fresh fetch).
    pub on_record: bool,
    /// Whether the subscriber's digest of this edition was planned already: the picked
    /// papers are then exactly those it carried.
    pub had_it: bool,
    /// Every paper of the page (then of recent lists), with its verdict, in page order.
    pub lines: Vec<(Paper, Verdict)>,
}

impl Explanation {
    pub fn picked(&self) -> usize {
        self.lines.iter().filter(|(_, v)| v.is_picked()).count()
    }
}

/// How [`explain`] judges an edition the reader already had a digest of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judge {
    /// As it was sent: the papers their digest carried are the picked ones (`explain`).
    AsSent,
    /// Under their preferences as they are now, whatever was sent: what a change of
    /// preferences would pick (the preferences page).
    AsNow,
}

/// The verdict on every paper of the edition for `date` for this subscriber: the edition on
/// record if there is one, else (with `fetch`) the page as it is now. Nothing is written.
pub async fn explain(
    editions: &Arc<Editions>,
    date: EditionDate,
    s: &Subscriber,
    fetch: bool,
    judge: Judge,
) -> Result<Option<Explanation>, RunError> {
    let (edition, on_record) = match editions.store.edition(date)? {
        Some(e) => (e, true),
        None if fetch => {
            let listing = editions.source.peek(date).await?;
            let mut e = EditionRecord::new(date);
            e.merge(&listing.papers, &listing.recent);
            (e, false)
        }
        None => return Ok(None),
    };
    let template = template_for(editions, &edition)?;
    let mut pages = Pages::new(editions, date, &edition.papers, &edition.recent, &template)?;
    let page = pages.for_subscriber(s)?;
    let before = editions.store.sent_before(s.id)?;
    // Judged as when this edition was planned: what its own digest carried was not sent
    // before it.
    let mut sent = before.among(&page.index);
    let in_digest: std::collections::HashSet<_> = sent
        .iter()
        .filter(|(_, on)| **on == Some(date))
        .map(|(id, _)| id.clone())
        .collect();
    sent.retain(|_, on| *on != Some(date));
    let (judged, _) = decide(editions, page, s, &sent, &mut editions.personal(s, date));
    let had_it = before.has_edition(date);
    // Once their digest of it is on record, it says what was picked: a later run of the
    // same date may have added papers, and their preferences may have changed since, so
    // judging again would contradict what they were sent.
    let as_sent = had_it && judge == Judge::AsSent;
    let lines = judged
        .into_iter()
        .map(|(p, v)| {
            let v = match (as_sent, in_digest.contains(&p.id), v) {
                (false, _, v) => v,
                (true, true, v @ Verdict::Picked { .. }) => v,
                (true, true, _) => Verdict::Picked { late: None },
                (true, false, Verdict::Picked { .. }) => Verdict::NotInTheirDigest,
                (true, false, v) => v,
            };
            (p.clone(), v)
        })
        .collect();
    Ok(Some(Explanation {
        date,
        on_record,
        had_it,
        lines,
    }))
}
