//! Turns an edition's papers into the HTML and plain-text parts of each digest.
//!
//! Mail clients drop `<style>` blocks, so the HTML carries its CSS inline. Inlining is the
//! slow part of rendering, so it happens once per edition: the whole edition is rendered
//! with every paper and with markers where the per-subscriber parts go, inlined, then cut
//! into a head, one card per paper and a tail. A subscriber's digest is those pieces put
//! together with their own papers and links: string work, no parsing.

use std::collections::HashMap;

use askama::Template;

use crate::domain::{EditionDate, Keywords, Paper, PaperId, Searchable, Sighting};
use crate::telemetry::Flat;

mod slots;
mod text;

use slots::Slotted;
pub use text::{ascii_html, escape_html, trim_at_word, wrap};

/// Gmail clips messages whose HTML is larger than about 102 KB; stay well below. The HTML
/// is ASCII (see [`ascii_html`]) and normally goes as it is, so these are the bytes on the
/// wire, but for a CR per line.
pub const HTML_BUDGET: usize = 90 * 1024;
const AUTHORS_SHOWN: usize = 3;
const ABSTRACT_CHARS: usize = 420;
const TEXT_WIDTH: usize = 72;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template error")]
    Template(#[source] Flat<askama::Error>),
    #[error("CSS inlining failed")]
    Inline(#[source] Flat<css_inline::InlineError>),
    #[error("the rendered digest has an unexpected shape: {0}")]
    Shape(&'static str),
}

impl From<askama::Error> for RenderError {
    fn from(e: askama::Error) -> Self {
        RenderError::Template(Flat(e))
    }
}

pub struct GithubView {
    pub url: String,
    pub label: String,
    pub stars: Option<u32>,
}

/// What a template needs to know about one paper, already formatted.
pub struct PaperView {
    pub id: String,
    pub title: String,
    pub hf_url: String,
    pub authors: String,
    pub organization: Option<String>,
    pub upvotes: u32,
    pub comments: u32,
    pub github: Option<GithubView>,
    pub project_page: Option<String>,
    pub blurb: String,
    pub blurb_is_ai: bool,
    pub blurb_lines: Vec<String>,
    /// The title and the byline wrapped for the text part, as the blurb is: a long title
    /// wraps at a word, never mid-word.
    pub title_lines: Vec<String>,
    pub byline_lines: Vec<String>,
    /// The code and project-page links for the text part, each after its label, or on a
    /// line of its own when that would run past the width: a link is never broken.
    pub code_lines: Vec<String>,
    pub project_lines: Vec<String>,
    pub abs_url: String,
    pub pdf_url: String,
    /// The paper's comments on Hugging Face, where readers discuss it.
    pub discussion_url: String,
    /// The source's thumbnail, when the digest shows them.
    pub thumbnail: Option<String>,
}

impl PaperView {
    pub fn new(p: &Paper, look: &Look) -> Self {
        let names: Vec<&str> = p.authors.iter().map(|a| a.name.as_str()).collect();
        let mut authors = names
            .iter()
            .take(AUTHORS_SHOWN)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        if names.len() > AUTHORS_SHOWN {
            authors.push_str(" et al.");
        }
        let byline_lines = wrap(
            &match &p.organization {
                Some(org) if !authors.is_empty() => format!("{authors} · {org}"),
                _ => authors.clone(),
            },
            TEXT_WIDTH - 3,
        );
        let (blurb, blurb_is_ai) = match &p.ai_summary {
            Some(s) => (s.clone(), true),
            None => (trim_at_word(&p.summary, ABSTRACT_CHARS), false),
        };
        Self {
            id: p.id.to_string(),
            title: p.title.clone(),
            hf_url: p.id.hf_url(),
            authors,
            organization: p.organization.clone(),
            upvotes: p.upvotes,
            comments: p.comments,
            github: p.github_repo.as_ref().map(|url| GithubView {
                url: url.to_string(),
                label: p.github_name().unwrap_or_else(|| "Code".into()),
                stars: p.github_stars,
            }),
            code_lines: p
                .github_repo
                .as_ref()
                .map(|url| {
                    let stars = p.github_stars.map(|n| format!(" (★ {n})"));
                    labelled("Code", url.as_str(), stars.as_deref().unwrap_or(""))
                })
                .unwrap_or_default(),
            project_lines: p
                .project_page
                .as_ref()
                .map(|url| labelled("Project page", url.as_str(), ""))
                .unwrap_or_default(),
            project_page: p.project_page.as_ref().map(ToString::to_string),
            // The same label as the HTML card's.
            blurb_lines: wrap(
                &if blurb_is_ai {
                    format!("AI summary: {blurb}")
                } else {
                    blurb.clone()
                },
                TEXT_WIDTH - 3,
            ),
            byline_lines,
            title_lines: {
                let mut lines = wrap(&p.title, TEXT_WIDTH - 4);
                if lines.is_empty() {
                    lines.push(String::new());
                }
                lines
            },
            blurb,
            blurb_is_ai,
            abs_url: p.id.arxiv_abs_url(),
            pdf_url: p.id.arxiv_pdf_url(),
            // The anchor Hugging Face's own pages link a paper's comments with.
            discussion_url: format!("{}#community", p.id.hf_url()),
            thumbnail: p
                .thumbnail
                .as_ref()
                .filter(|_| look.thumbnails)
                .map(ToString::to_string),
        }
    }
}

/// How an operator's digests look, the same for every reader: from the `digest` and
/// `mail` settings.
#[derive(Clone, Debug, Default)]
pub struct Look {
    /// Each card shows the paper's thumbnail, when the source gives one.
    pub thumbnails: bool,
    /// The sender's postal address, in the footer (bulk-mail rules in several countries ask
    /// for one).
    pub postal_address: Option<String>,
}

#[derive(Template)]
#[template(path = "digest.html")]
struct DigestHtml<'a> {
    heading: &'a str,
    when: &'a str,
    browser_label: &'a str,
    browser_url: &'a str,
    count_line: &'a str,
    preheader: &'a str,
    papers: &'a [PaperView],
    marker: &'a str,
    site: &'a str,
    kind: &'a str,
    why: &'a str,
    preferences_url: &'a str,
    unsubscribe_url: &'a str,
    postal_address: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "digest.txt")]
struct DigestText<'a> {
    heading: &'a str,
    when: &'a str,
    browser_label: &'a str,
    browser_url: &'a str,
    count_line: &'a str,
    papers: &'a [&'a PaperView],
    /// Per paper, in order: the lines saying why it is there (a late bloomer's note, the
    /// keywords it matched), often none.
    notes: &'a [Vec<String>],
    /// Why they get this digest, wrapped.
    reason_lines: &'a [String],
    preferences_url: &'a str,
    unsubscribe_url: &'a str,
    postal_address: Option<&'a str>,
}

/// The per-subscriber parts of a digest.
#[derive(Clone)]
pub struct Personal {
    /// Why they get these papers, in one sentence.
    pub why: String,
    pub preferences_url: String,
    pub unsubscribe_url: String,
    /// The papers that are late bloomers for them, with their first sighting.
    pub late: Vec<(PaperId, Sighting)>,
    /// A weekly digest: the week's best, said so in the subject, heading, count and footer.
    pub weekly: bool,
    /// Their keywords: each card says which of them it matched, and where.
    pub keywords: Keywords,
    /// Where the link at the top goes.
    pub browser: BrowserLink,
}

/// The link at the top of a digest.
#[derive(Clone, Debug, Default)]
pub enum BrowserLink {
    /// "View in your browser": the edition's page in the archive.
    #[default]
    Edition,
    /// "View in your browser": their own copy of this digest on the web.
    Own(String),
    /// "See the whole edition", on their own copy: the edition's page in the archive.
    WholeEdition,
}

impl Personal {
    fn late_note(&self, id: &PaperId) -> Option<String> {
        let (_, s) = self.late.iter().find(|(l, _)| l == id)?;
        Some(format!(
            "Late bloomer: first seen {} with {} upvote{}",
            s.date.short(),
            s.upvotes,
            if s.upvotes == 1 { "" } else { "s" }
        ))
    }

    /// Which of their keywords `paper` matched, and where: "Matches your keywords: llm
    /// (title), rag (abstract)". None without keywords.
    fn reason(&self, paper: &Searchable) -> Option<String> {
        if self.keywords.is_empty() {
            return None;
        }
        let found = self.keywords.found_in(paper);
        if found.is_empty() {
            return None;
        }
        let list: Vec<String> = found.iter().map(|(k, at)| format!("{k} ({at})")).collect();
        let label = if found.len() == 1 {
            "Matches your keyword"
        } else {
            "Matches your keywords"
        };
        Some(format!("{label}: {}", list.join(", ")))
    }

    /// What one reader's copy of a card adds to it, in the order of [`CARD_SLOTS`]: its
    /// number, a late bloomer's badge, the keywords it matched. Cards are inlined once per
    /// edition, so these carry their style inline themselves; the classes are for the
    /// dark-mode rules.
    fn card_values(&self, rank: usize, id: &PaperId, reason: Option<&str>) -> CardValues {
        let badge = self.late_note(id).map(|note| {
            format!(
                "<p class=\"late\" style=\"font-size: 12px; font-weight: 700; color: #047857; margin: 0 0 4px 0;\">{}</p>",
                escape_html(&note)
            )
        });
        let reason = reason.map(|reason| {
            format!(
                "<p class=\"reason\" style=\"font-size: 13px; line-height: 18px; color: #52525b; margin: 0 0 10px 0;\">{}</p>",
                escape_html(reason)
            )
        });
        [
            format!("{rank}. "),
            badge.unwrap_or_default(),
            reason.unwrap_or_default(),
        ]
    }

    /// The text part's lines under a card's title: the same as the HTML's badge and reason.
    fn card_notes(&self, id: &PaperId, reason: Option<&str>) -> Vec<String> {
        let mut lines: Vec<String> = self.late_note(id).into_iter().collect();
        if let Some(reason) = reason {
            lines.extend(wrap(reason, TEXT_WIDTH - 3));
        }
        lines
    }

    fn kind(&self) -> &'static str {
        if self.weekly {
            "weekly digest"
        } else {
            "daily digest"
        }
    }
}

/// One subscriber's digest, ready to be put in a message.
pub struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: String,
    /// The papers that made it in (fewer than asked only if the size budget was reached).
    pub papers: Vec<PaperId>,
}

/// What fits in one digest: the papers, their views, the per-subscriber parts filled in, and
/// the size of the HTML.
struct Fitted<'a> {
    ids: Vec<PaperId>,
    views: Vec<&'a PaperView>,
    values: SlotValues,
    cards: Vec<CardValues>,
    /// Per paper, the keywords it matched, said once for both parts.
    reasons: Vec<Option<String>>,
    size: usize,
}

/// An edition, inlined once, from which each subscriber's digest is assembled.
pub struct EditionTemplate {
    date: EditionDate,
    site: String,
    /// The edition's page in the archive: where "view in your browser" goes for a reader
    /// without a page of their own.
    edition_url: String,
    look: Look,
    papers: HashMap<PaperId, (PaperView, Searchable)>,
    head: Slotted,
    /// Each paper's card, cut at what a reader's copy adds to it.
    cards: HashMap<String, Slotted>,
    tail: Slotted,
    /// Kept for the tests, which check that no marker reaches a mail.
    #[cfg(test)]
    marker: String,
}

/// The per-subscriber parts of a digest's head and tail, in the order of [`SLOTS`].
type SlotValues = [String; SLOTS.len()];

/// Where the per-subscriber parts go, by the name after the marker in the rendered page. No
/// name starts another.
const SLOTS: [&str; 11] = [
    "heading",
    "when",
    "browser",
    "count",
    "preheader",
    "kind",
    "why",
    "preferences",
    "unsubscribe",
    "title",
    "linktext",
];

/// What a reader's copy of a card adds to it, in the order of [`CARD_SLOTS`].
type CardValues = [String; CARD_SLOTS.len()];

/// Where a card's per-subscriber parts go: its number in their digest, a late bloomer's
/// badge, the keywords it matched.
const CARD_SLOTS: [&str; 3] = ["rank", "badge", "reason"];

impl EditionTemplate {
    pub fn new(
        date: EditionDate,
        papers: &[Paper],
        public_base: &str,
        look: &Look,
    ) -> Result<Self, RenderError> {
        // A marker no paper can contain: random, and only hex digits, which escaping keeps.
        let marker = format!("pb{:032x}", rand::random::<u128>());
        let views: Vec<PaperView> = papers.iter().map(|p| PaperView::new(p, look)).collect();
        let site = site_name(public_base);
        let edition_url = edition_url(public_base, date);
        let html = marked_edition(&views, &site, look, &marker)?;
        let cut = Cut::new(inline_css(&html)?, &views, &marker)?;
        Ok(Self {
            date,
            site,
            edition_url,
            look: look.clone(),
            papers: papers
                .iter()
                .zip(views)
                .map(|(p, v)| (p.id.clone(), (v, Searchable::of(p))))
                .collect(),
            head: Slotted::cut(&cut.head, &marker, &SLOTS),
            cards: cut
                .cards
                .into_iter()
                .map(|(id, card)| (id, Slotted::cut(&card, &marker, &CARD_SLOTS)))
                .collect(),
            tail: Slotted::cut(&cut.tail, &marker, &SLOTS),
            #[cfg(test)]
            marker,
        })
    }

    /// The chosen papers that make it into a digest, in their order: those of this edition,
    /// cut at the end if the HTML would exceed the size budget (the rest stay unsent for a
    /// later digest). Only sizes are added up: the cards are fixed but for a few short
    /// parts, and just the head and tail are filled in per try.
    pub fn fit(&self, chosen: &[PaperId], personal: &Personal) -> Vec<PaperId> {
        self.fitted(chosen, personal).ids
    }

    /// [`fit`], with what assembling the digest needs.
    ///
    /// [`fit`]: EditionTemplate::fit
    fn fitted(&self, chosen: &[PaperId], personal: &Personal) -> Fitted<'_> {
        let mut ids = Vec::new();
        let mut views = Vec::new();
        let mut cards = Vec::new();
        let mut reasons = Vec::new();
        let mut card_sizes = Vec::new();
        for id in chosen {
            let Some((view, text)) = self.papers.get(id) else {
                continue;
            };
            let reason = personal.reason(text);
            let values = personal.card_values(views.len() + 1, id, reason.as_deref());
            card_sizes.push(self.cards[&view.id].len_with(&values));
            ids.push(id.clone());
            views.push(view);
            cards.push(values);
            reasons.push(reason);
        }
        loop {
            let values = self.slot_values(&views, personal);
            let size = self.head.len_with(&values)
                + card_sizes.iter().sum::<usize>()
                + self.tail.len_with(&values);
            if size <= HTML_BUDGET || views.len() <= 1 {
                return Fitted {
                    ids,
                    views,
                    values,
                    cards,
                    reasons,
                    size,
                };
            }
            ids.pop();
            views.pop();
            cards.pop();
            reasons.pop();
            card_sizes.pop();
        }
    }

    /// Assembles one subscriber's digest from the papers chosen for them, after [`fit`].
    ///
    /// [`fit`]: EditionTemplate::fit
    pub fn digest(&self, chosen: &[PaperId], personal: &Personal) -> Result<Rendered, RenderError> {
        let Fitted {
            ids: papers,
            views,
            values,
            cards,
            reasons,
            size,
        } = self.fitted(chosen, personal);
        let mut html = String::with_capacity(size);
        self.head.fill_into(&mut html, &values);
        for (v, card) in views.iter().zip(&cards) {
            self.cards[&v.id].fill_into(&mut html, card);
        }
        self.tail.fill_into(&mut html, &values);
        let notes: Vec<Vec<String>> = papers
            .iter()
            .zip(&reasons)
            .map(|(id, reason)| personal.card_notes(id, reason.as_deref()))
            .collect();
        let text = DigestText {
            heading: heading(personal.weekly),
            when: &self.when(personal.weekly),
            browser_label: self.browser_link(personal).0,
            browser_url: self.browser_link(personal).1,
            count_line: &count_line(views.len(), personal.weekly),
            papers: &views,
            notes: &notes,
            reason_lines: &wrap(
                &format!(
                    "You get this {} because you subscribed to paperboy at {}: {}.",
                    personal.kind(),
                    self.site,
                    personal.why
                ),
                TEXT_WIDTH,
            ),
            preferences_url: &personal.preferences_url,
            unsubscribe_url: &personal.unsubscribe_url,
            postal_address: self.look.postal_address.as_deref(),
        }
        .render()?;
        Ok(Rendered {
            subject: subject(self.date, &views, personal.weekly),
            html,
            text,
            papers,
        })
    }

    /// The dates a digest covers, as its heading shows them: "Tuesday, December 9, 2025",
    /// or the seven days of a weekly one, "Dec 3–9, 2025".
    fn when(&self, weekly: bool) -> String {
        use chrono::Datelike;
        if weekly {
            format!("{}, {}", week_ending(self.date), self.date.naive().year())
        } else {
            self.date.long()
        }
    }

    fn browser_link<'a>(&'a self, personal: &'a Personal) -> (&'static str, &'a str) {
        match &personal.browser {
            BrowserLink::Edition => ("View in your browser", &self.edition_url),
            BrowserLink::Own(url) => ("View in your browser", url),
            BrowserLink::WholeEdition => ("See the whole edition", &self.edition_url),
        }
    }

    /// The per-subscriber parts of the head and tail, escaped, in the order of [`SLOTS`].
    fn slot_values(&self, views: &[&PaperView], personal: &Personal) -> SlotValues {
        let heading = heading(personal.weekly);
        let when = self.when(personal.weekly);
        let (label, url) = self.browser_link(personal);
        [
            escape_html(heading),
            escape_html(&when),
            escape_html(url),
            escape_html(&count_line(views.len(), personal.weekly)),
            escape_html(&preheader(views)),
            escape_html(personal.kind()),
            escape_html(&personal.why),
            escape_html(&personal.preferences_url),
            escape_html(&personal.unsubscribe_url),
            escape_html(&format!("{heading}, {when}")),
            escape_html(label),
        ]
    }
}

/// A digest's heading: a weekly digest says it is one.
fn heading(weekly: bool) -> &'static str {
    if weekly {
        "Your week in papers"
    } else {
        "Trending papers"
    }
}

/// The whole edition as one digest with every paper, and markers where the per-subscriber
/// parts go and around each card: the HTML that is inlined once and cut.
fn marked_edition(
    views: &[PaperView],
    site: &str,
    look: &Look,
    marker: &str,
) -> Result<String, RenderError> {
    let slot = |name: &str| format!("{marker}-{name}");
    let html = DigestHtml {
        heading: &slot("heading"),
        when: &slot("when"),
        browser_label: &slot("linktext"),
        browser_url: &slot("browser"),
        count_line: &slot("count"),
        preheader: &slot("preheader"),
        papers: views,
        marker,
        site,
        kind: &slot("kind"),
        why: &slot("why"),
        preferences_url: &slot("preferences"),
        unsubscribe_url: &slot("unsubscribe"),
        postal_address: look.postal_address.as_deref(),
    }
    .render()?;
    Ok(html)
}

/// `html` with its CSS inlined, in plain ASCII.
fn inline_css(html: &str) -> Result<String, RenderError> {
    // The dark-mode and small-screen rules cannot be inlined; their <style> block is
    // marked `data-css-inline="keep"` in the template and survives as it is.
    let inlined = css_inline::inline(html).map_err(|e| RenderError::Inline(Flat(e)))?;
    // Plain ASCII, so the HTML part goes as 7bit, with no per-message encoding.
    Ok(ascii_html(&inlined))
}

/// An edition's inlined HTML cut at its card markers.
struct Cut {
    head: String,
    /// Each paper's card, with the markers of its [`CARD_SLOTS`].
    cards: HashMap<String, String>,
    tail: String,
}

impl Cut {
    fn new(inlined: String, views: &[PaperView], marker: &str) -> Result<Self, RenderError> {
        let Some(first) = views.first() else {
            // An edition without papers is never mailed; keep the document whole.
            return Ok(Self {
                head: inlined,
                cards: HashMap::new(),
                tail: String::new(),
            });
        };
        let start_tag = |id: &str| format!("<!--{marker} card {id}-->");
        let end_tag = format!("<!--{marker} end-->");
        let head_end = inlined
            .find(&start_tag(&first.id))
            .ok_or(RenderError::Shape("the first card marker is missing"))?;
        let mut cards = HashMap::new();
        let mut cursor = head_end;
        for v in views {
            let open = start_tag(&v.id);
            let at = inlined[cursor..]
                .find(&open)
                .ok_or(RenderError::Shape("a card marker is missing"))?
                + cursor;
            let body_start = at + open.len();
            let body_end = inlined[body_start..]
                .find(&end_tag)
                .ok_or(RenderError::Shape("a card end marker is missing"))?
                + body_start;
            let card = &inlined[body_start..body_end];
            if CARD_SLOTS
                .iter()
                .any(|name| card.matches(&format!("{marker}-{name}")).count() != 1)
            {
                return Err(RenderError::Shape("a card lacks one of its slots"));
            }
            cards.insert(v.id.clone(), card.to_string());
            cursor = body_end + end_tag.len();
        }
        Ok(Self {
            head: inlined[..head_end].to_string(),
            cards,
            tail: inlined[cursor..].to_string(),
        })
    }
}

/// The most a subject holds: what a phone's inbox shows of it.
const SUBJECT_MAX: usize = 80;

/// "Dec 9: <the top paper's title> + 9 more", at most [`SUBJECT_MAX`] characters, the title
/// cut at a word to fit ("Your week in papers, Dec 3–9: …" for a weekly digest). The From
/// name already says whose mail it is, so the subject does not. The title is already free
/// of line breaks (the source collapses whitespace); lettre encodes the rest, so no header
/// can be injected.
pub fn subject(date: EditionDate, papers: &[&PaperView], weekly: bool) -> String {
    let when = if weekly {
        format!("Your week in papers, {}", week_ending(date))
    } else {
        date.short()
    };
    let Some(top) = papers.first() else {
        return when;
    };
    let more = match papers.len() {
        1 => String::new(),
        n => format!(" + {} more", n - 1),
    };
    // ": " and the ellipsis a cut title ends with.
    let room = SUBJECT_MAX.saturating_sub(when.chars().count() + more.chars().count() + 3);
    format!("{when}: {}{more}", trim_at_word(&top.title, room))
}

/// "Dec 3–9", or "Nov 28–Dec 4" across a month end: the seven days a weekly digest ending
/// on `date` draws on.
fn week_ending(date: EditionDate) -> String {
    let first = date.minus_days(6);
    use chrono::Datelike;
    if first.naive().month() == date.naive().month() {
        format!("{}–{}", first.short(), date.naive().format("%-d"))
    } else {
        format!("{}–{}", first.short(), date.short())
    }
}

fn count_line(n: usize, weekly: bool) -> String {
    let of_the_week = if weekly { " of the week" } else { "" };
    match n {
        1 => format!("1 paper{of_the_week} picked for you"),
        n => format!("{n} papers{of_the_week} picked for you"),
    }
}

/// The preview line inbox lists show next to the subject.
fn preheader(views: &[&PaperView]) -> String {
    let titles: Vec<&str> = views
        .iter()
        .skip(1)
        .take(3)
        .map(|v| v.title.as_str())
        .collect();
    if titles.is_empty() {
        "Today's most upvoted paper on Hugging Face".into()
    } else {
        trim_at_word(&format!("Also: {}", titles.join(" · ")), 140)
    }
}

/// The page of an edition in the archive, under the public URL (given without a trailing
/// slash, as `Settings::public_base` has it).
pub fn edition_url(public_base: &str, date: EditionDate) -> String {
    format!("{public_base}/editions/{date}")
}

fn site_name(public_base: &str) -> String {
    url::Url::parse(public_base)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
        })
        .unwrap_or_else(|| public_base.to_string())
}

/// "Label: link note" on one line of the text part if it fits, else "Label note:" on a
/// line and the link alone on the next.
fn labelled(label: &str, link: &str, note: &str) -> Vec<String> {
    let line = format!("{label}: {link}{note}");
    if line.chars().count() <= TEXT_WIDTH - 3 {
        vec![line]
    } else {
        vec![format!("{label}{note}:"), link.to_string()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Author, HttpUrl};

    fn paper(id: &str, title: &str, upvotes: u32) -> Paper {
        Paper {
            summary: "We study things. ".repeat(60),
            authors: ["Ada", "Grace", "Alan", "Edsger"]
                .iter()
                .map(|n| Author {
                    name: n.to_string(),
                })
                .collect(),
            organization: Some("Lab".into()),
            comments: 1,
            github_repo: HttpUrl::parse("https://github.com/o/r"),
            github_stars: Some(12),
            ..Paper::new(PaperId::parse(id).unwrap(), title, upvotes)
        }
    }

    fn personal() -> Personal {
        Personal {
            why: "up to 10 trending papers".into(),
            preferences_url: "https://p.example.org/preferences?token=abc".into(),
            unsubscribe_url: "https://p.example.org/unsubscribe?token=abc".into(),
            late: Vec::new(),
            weekly: false,
            keywords: Keywords::default(),
            browser: BrowserLink::Edition,
        }
    }

    /// An edition of `papers` with the default look.
    fn template(papers: &[Paper]) -> EditionTemplate {
        EditionTemplate::new(date(), papers, "https://p.example.org", &Look::default()).unwrap()
    }

    /// The text a reader sees of `html`, markup and references resolved.
    fn shown(html: &str) -> String {
        scraper::Html::parse_document(html)
            .root_element()
            .text()
            .collect()
    }

    fn date() -> EditionDate {
        EditionDate::parse("2025-12-09").unwrap()
    }

    #[test]
    fn the_text_part_reads_like_a_plain_text_newsletter() {
        let mut long = paper(
            "2501.00001",
            "Inference Scaling for Long-Context Retrieval Augmented Generation with Many Experts at Once, and Then Some More Words",
            3,
        );
        long.ai_summary = Some("A model reads long documents. ".repeat(5));
        let papers = vec![long];
        let t = template(&papers);
        let r = t.digest(&[papers[0].id.clone()], &personal()).unwrap();
        for line in r.text.lines() {
            assert!(line.chars().count() <= 78, "too long: {line:?}");
        }
        let lines: Vec<&str> = r.text.lines().collect();
        let first = lines
            .iter()
            .position(|l| l.starts_with("1. Inference"))
            .unwrap();
        assert!(
            lines[first + 1].starts_with("   ") && !lines[first + 1].contains("https://"),
            "the title goes on, indented"
        );
        // Read back across its lines, the title is whole: it broke between words only.
        let title: Vec<&str> = lines[first..]
            .iter()
            .take_while(|l| !l.contains("https://"))
            .map(|l| l.trim_start_matches("1. ").trim())
            .collect();
        assert_eq!(title.join(" "), papers[0].title, "{}", r.text);
        assert!(
            r.text.contains("   AI summary: A model reads"),
            "{}",
            r.text
        );
        assert!(
            lines.contains(&"-- "),
            "the signature delimiter: {}",
            r.text
        );
    }

    #[test]
    fn subjects_fit_a_phone_and_cut_at_a_word() {
        let long = paper(
            "2501.00001",
            "Inference Scaling for Long-Context Retrieval Augmented Generation with Many Experts at Once",
            3,
        );
        let other = paper("2501.00002", "Other", 2);
        let views: Vec<PaperView> = [&long, &other]
            .iter()
            .map(|p| PaperView::new(p, &Look::default()))
            .collect();
        let refs: Vec<&PaperView> = views.iter().collect();
        let daily = subject(date(), &refs, false);
        assert!(daily.chars().count() <= SUBJECT_MAX, "{daily}");
        assert!(
            daily.starts_with("Dec 9: Inference Scaling for Long-Context"),
            "{daily}"
        );
        assert!(daily.ends_with("… + 1 more"), "{daily}");
        let weekly = subject(date(), &refs, true);
        assert!(
            weekly.starts_with("Your week in papers, Dec 3–9: "),
            "{weekly}"
        );
        assert!(weekly.chars().count() <= SUBJECT_MAX, "{weekly}");
        assert_eq!(subject(date(), &refs[1..], false), "Dec 9: Other");
        let across = EditionDate::parse("2025-12-02").unwrap();
        assert_eq!(week_ending(across), "Nov 26–Dec 2");
    }

    #[test]
    fn assembles_only_the_chosen_papers_in_order() {
        let papers = vec![
            paper("2501.00001", "First", 3),
            paper("2501.00002", "Second", 9),
        ];
        let t = template(&papers);
        let ids = vec![papers[1].id.clone()];
        let r = t.digest(&ids, &personal()).unwrap();
        assert!(r.html.contains("Second") && !r.html.contains(">First<"));
        assert!(r.text.contains("1. Second") && !r.text.contains("First"));
        assert_eq!(r.subject, "Dec 9: Second");
        assert!(
            r.html
                .contains("https://p.example.org/unsubscribe?token=abc")
        );
        assert!(r.html.contains("1 paper picked for you"));
        assert!(!r.html.contains(&t.marker), "a marker leaked into the mail");
        // The CSS was inlined, and the dark-mode rules kept for clients that read them.
        assert!(r.html.contains("style=\""));
        assert!(r.html.contains("prefers-color-scheme: dark"));
        assert!(r.text.contains("Ada, Grace, Alan et al. · Lab"));
        assert!(r.text.contains("Code: https://github.com/o/r (★ 12)"));
        // Both parts link the edition's page in the archive.
        let archived = "https://p.example.org/editions/2025-12-09";
        assert!(r.html.contains(&format!("href=\"{archived}\"")));
        assert!(
            r.text
                .contains(&format!("View in your browser:\n{archived}\n"))
        );
    }

    #[test]
    fn each_card_is_numbered_and_says_which_keywords_it_matched() {
        let mut deep = paper("2501.00001", "Scaling laws for everything", 9);
        deep.summary = "We study the mixture of experts in a retrieval setting.".into();
        let titled = paper("2501.00002", "Retrieval at scale", 5);
        let papers = vec![deep, titled];
        let t = template(&papers);
        let ids: Vec<PaperId> = papers.iter().map(|p| p.id.clone()).collect();
        let reader = Personal {
            keywords: Keywords::parse_list("retrieval, scaling").unwrap(),
            ..personal()
        };
        let r = t.digest(&ids, &reader).unwrap();
        let shown = shown(&r.html);
        assert!(shown.contains("1. Scaling laws for everything"), "{shown}");
        assert!(shown.contains("2. Retrieval at scale"), "{shown}");
        assert!(
            shown.contains("Matches your keywords: retrieval (abstract), scaling (title)"),
            "{shown}"
        );
        assert!(
            shown.contains("Matches your keyword: retrieval (title)"),
            "{shown}"
        );
        assert!(r.text.contains("1. Scaling laws for everything"));
        assert!(r.text.contains("2. Retrieval at scale"));
        assert!(
            r.text
                .contains("   Matches your keywords: retrieval (abstract), scaling (title)"),
            "{}",
            r.text
        );
        // The comments link the discussion on Hugging Face, in both parts.
        let discussion = "https://huggingface.co/papers/2501.00001#community";
        assert!(r.html.contains(&format!("href=\"{discussion}\"")));
        assert!(r.text.contains(&format!("Discussion: {discussion}")));
        // Without keywords, no card claims a match; the numbers stay.
        let r = t.digest(&ids, &personal()).unwrap();
        assert!(!r.html.contains("Matches your") && !r.text.contains("Matches your"));
        assert!(r.text.contains("2. Retrieval at scale"));
        // The size the budget is kept with is the size of what is sent.
        let fitted = t.fitted(&ids, &reader);
        assert_eq!(
            fitted.size,
            t.digest(&ids, &reader).unwrap().html.len(),
            "fit measured the digest as assembled"
        );
    }

    #[test]
    fn a_weekly_digest_says_so_in_its_heading_and_footer() {
        let papers = vec![paper("2501.00001", "First", 3)];
        let t = template(&papers);
        let ids = vec![papers[0].id.clone()];
        let weekly = Personal {
            weekly: true,
            ..personal()
        };
        let r = t.digest(&ids, &weekly).unwrap();
        let shown = shown(&r.html);
        assert!(shown.contains("Your week in papers"), "{shown}");
        assert!(shown.contains("Dec 3–9, 2025"), "{shown}");
        assert!(
            shown.contains("You get this weekly digest because"),
            "{shown}"
        );
        assert!(
            r.html
                .contains("<title>Your week in papers, Dec 3&#x2013;9, 2025</title>")
        );
        assert!(
            r.text.starts_with("YOUR WEEK IN PAPERS · Dec 3–9, 2025\n"),
            "{}",
            r.text
        );
        assert!(r.text.contains("You get this weekly digest because"));
        let r = t.digest(&ids, &personal()).unwrap();
        assert!(
            r.html
                .contains("<title>Trending papers, Tuesday, December 9, 2025</title>")
        );
        assert!(
            r.text
                .starts_with("TRENDING PAPERS · Tuesday, December 9, 2025\n")
        );
        assert!(r.text.contains("You get this daily digest because"));
    }

    #[test]
    fn the_look_adds_thumbnails_and_a_postal_address_when_asked() {
        let mut p = paper("2501.00001", "A \"quoted\" title", 3);
        p.thumbnail = HttpUrl::parse("https://cdn.example.org/t/2501.00001.png");
        let papers = vec![p];
        let ids = vec![papers[0].id.clone()];
        let plain = template(&papers).digest(&ids, &personal()).unwrap();
        assert!(
            !plain.html.contains("<img"),
            "thumbnails are off by default"
        );
        let look = Look {
            thumbnails: true,
            postal_address: Some("Lab <b>1</b>, 10 Main St, Springfield".into()),
        };
        let r = EditionTemplate::new(date(), &papers, "https://p.example.org", &look)
            .unwrap()
            .digest(&ids, &personal())
            .unwrap();
        let doc = scraper::Html::parse_document(&r.html);
        let img = doc
            .select(&scraper::Selector::parse("img").unwrap())
            .next()
            .expect("a thumbnail");
        let attr = |name| img.value().attr(name).unwrap_or_default();
        assert_eq!(attr("src"), "https://cdn.example.org/t/2501.00001.png");
        assert_eq!((attr("width"), attr("height")), ("558", "293"));
        assert_eq!(attr("alt"), "A \"quoted\" title");
        assert!(attr("style").contains("max-width"), "it shrinks on a phone");
        assert!(
            r.html
                .contains("Lab &lt;b&gt;1&lt;/b&gt;, 10 Main St, Springfield")
        );
        assert!(
            r.text.ends_with("Lab <b>1</b>, 10 Main St, Springfield"),
            "{}",
            r.text
        );
    }

    #[test]
    fn view_in_browser_opens_the_readers_own_page_when_there_is_one() {
        let papers = vec![paper("2501.00001", "First", 3)];
        let t = template(&papers);
        let own = "https://p.example.org/digest?token=a&b";
        let reader = Personal {
            browser: BrowserLink::Own(own.into()),
            ..personal()
        };
        let r = t.digest(&[papers[0].id.clone()], &reader).unwrap();
        assert!(r.html.contains(
            "<a href=\"https://p.example.org/digest?token=a&amp;b\" style=\"color: inherit;\">View in your browser</a>"
        ));
        assert!(r.text.contains(&format!("View in your browser:\n{own}\n")));
        // On that page itself, the link goes to the whole edition.
        let on_the_web = Personal {
            browser: BrowserLink::WholeEdition,
            ..personal()
        };
        let r = t.digest(&[papers[0].id.clone()], &on_the_web).unwrap();
        assert!(r.html.contains(
            "<a href=\"https://p.example.org/editions/2025-12-09\" style=\"color: inherit;\">See the whole edition</a>"
        ));
    }

    /// WCAG's contrast ratio of two colours written `#rrggbb`.
    fn contrast(a: &str, b: &str) -> f64 {
        let luminance = |hex: &str| {
            let channel = |i: usize| {
                let c =
                    f64::from(u8::from_str_radix(&hex[1 + 2 * i..3 + 2 * i], 16).unwrap()) / 255.0;
                if c <= 0.03928 {
                    c / 12.92
                } else {
                    ((c + 0.055) / 1.055).powf(2.4)
                }
            };
            0.2126 * channel(0) + 0.7152 * channel(1) + 0.0722 * channel(2)
        };
        let (la, lb) = (luminance(a), luminance(b));
        (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
    }

    /// The colour a rule or inline style sets for `property` after `from` in `html`.
    fn colour_after<'h>(html: &'h str, from: &str, property: &str) -> &'h str {
        let at = html.find(from).unwrap_or_else(|| panic!("{from} missing"));
        let rest = &html[at..];
        let p = rest.find(property).unwrap() + property.len();
        let hash = p + rest[p..].find('#').unwrap();
        &rest[hash..hash + 7]
    }

    #[test]
    fn the_footer_reads_at_wcag_aa_contrast_in_light_and_dark() {
        let papers = vec![paper("2501.00001", "First", 3)];
        let look = Look {
            postal_address: Some("1 Example Street".into()),
            ..Look::default()
        };
        let r = EditionTemplate::new(date(), &papers, "https://p.example.org", &look)
            .unwrap()
            .digest(&[papers[0].id.clone()], &personal())
            .unwrap();
        let html = &r.html;
        // Light: the footer's inlined colour on the page's background.
        let background = colour_after(html, "class=\"wrap\"", "background-color: ");
        let text = colour_after(html, "class=\"footer\"", "color: ");
        // A link's inlined style comes before its text.
        let link = {
            let before = &html[..html.find("Change preferences").unwrap()];
            let style = before.rfind("color: ").unwrap() + "color: ".len();
            &before[style..style + 7]
        };
        for (what, colour) in [("text", text), ("link", link)] {
            let ratio = contrast(colour, background);
            assert!(
                ratio >= 4.5,
                "light {what} {colour} on {background}: {ratio:.2}"
            );
        }
        // Dark: the kept rules.
        let dark = &html[html.find("prefers-color-scheme: dark").unwrap()..];
        let background = colour_after(dark, "body, .wrap", "background-color: ");
        for rule in [".reason, .footer {", ".footer a {"] {
            let colour = colour_after(dark, rule, "color: ");
            let ratio = contrast(colour, background);
            assert!(
                ratio >= 4.5,
                "dark {rule} {colour} on {background}: {ratio:.2}"
            );
        }
        assert!(html.contains("1 Example Street"));
    }

    #[test]
    fn markup_in_content_is_escaped_in_html_and_left_as_text() {
        let evil = "<script>alert('x')</script><img src=x onerror=alert(1)>";
        let mut p = paper("2501.00001", evil, 3);
        p.organization = Some("<b>Org</b>".into());
        p.ai_summary = Some("</p><a href=\"javascript:alert(1)\">click</a>".into());
        let t = EditionTemplate::new(
            date(),
            std::slice::from_ref(&p),
            "https://p.example.org",
            &Look::default(),
        )
        .unwrap();
        let r = t.digest(&[p.id.clone()], &personal()).unwrap();
        assert!(!r.html.contains("<script>"));
        assert!(!r.html.contains("<img src=x"));
        assert!(!r.html.contains("<b>Org"));
        assert!(!r.html.contains("<a href=\"javascript:"));
        assert!(r.html.contains("&lt;script&gt;"));
        assert!(
            r.text.contains(evil),
            "the text part shows the title as it is"
        );
    }

    #[test]
    fn stays_under_the_clipping_limit() {
        let papers: Vec<Paper> = (0..30)
            .map(|i| {
                let mut p = paper(
                    &format!("2501.{:05}", i),
                    &"Long title words ".repeat(15),
                    100 - i,
                );
                p.ai_summary = Some("A very long summary sentence. ".repeat(30));
                p
            })
            .collect();
        let t = template(&papers);
        let ids: Vec<PaperId> = papers.iter().map(|p| p.id.clone()).collect();
        let r = t.digest(&ids, &personal()).unwrap();
        assert!(r.html.len() <= HTML_BUDGET);
        assert!(!r.papers.is_empty() && r.papers.len() <= 30);
        assert_eq!(r.papers[..], ids[..r.papers.len()]);
    }

    #[test]
    fn the_html_is_ascii_and_shows_the_same_characters() {
        let mut p = paper("2501.00001", "Über 大規模 models — «fast» 🚀", 3);
        p.authors = vec![Author {
            name: "Zoë Çelik".into(),
        }];
        let t = EditionTemplate::new(
            date(),
            std::slice::from_ref(&p),
            "https://p.example.org",
            &Look::default(),
        )
        .unwrap();
        let personal = Personal {
            why: "papers about «Über»".into(),
            ..personal()
        };
        let r = t.digest(&[p.id.clone()], &personal).unwrap();
        assert!(r.html.is_ascii());
        assert!(r.html.contains("&#xDC;ber &#x5927;&#x898F;&#x6A21; models"));
        assert!(r.text.contains("Über 大規模 models — «fast» 🚀"));
        let shown = shown(&r.html);
        assert!(shown.contains("Über 大規模 models — «fast» 🚀"));
        assert!(shown.contains("Zoë Çelik"));
        assert!(shown.contains("papers about «Über»"));
    }

    #[test]
    fn helpers() {
        assert_eq!(
            labelled("Code", "https://x.org/a", " (★ 3)"),
            ["Code: https://x.org/a (★ 3)"]
        );
        let long = format!("https://github.com/{}", "a".repeat(60));
        assert_eq!(labelled("Code", &long, " (★ 3)"), ["Code (★ 3):", &long]);
        assert_eq!(site_name("http://127.0.0.1:8080"), "127.0.0.1:8080");
    }
}
