//! The handlers behind each route.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;

use super::forms::{FormValues, PreferencesForm, SubscribeForm};
use super::{MessagePage, Params, WebError, WebState, client_ip, form_rejection, page};
use crate::domain::{MAX_ITEMS_CAP, PaperId, Status, Subscriber, SubscriberId};
use crate::edition::{self, RunError};
use crate::telemetry::{metrics, one_line};
use crate::tokens::{Purpose, TokenKey};
use crate::web::notices::Notice;

type Shared = State<Arc<WebState>>;

const SAMPLE_SIZE: usize = 5;

#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    pub(super) token: String,
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    token: String,
}

pub struct SampleView {
    pub title: String,
    pub url: String,
    pub upvotes: u32,
    pub organization: Option<String>,
}

#[derive(Template)]
#[template(path = "web/index.html")]
struct IndexPage {
    cadence: String,
    form: FormValues,
    errors: Vec<String>,
    sample: Vec<SampleView>,
    sample_date: Option<String>,
    /// Why there is no sample, when there is none.
    sample_missing: &'static str,
    max_items_cap: u32,
    max_items_default: u32,
}

#[derive(Template)]
#[template(path = "web/action.html")]
struct ActionPage {
    heading: String,
    explanation: String,
    action: String,
    hidden: Vec<(String, String)>,
    button: String,
}

#[derive(Template)]
#[template(path = "web/preferences.html")]
struct PreferencesPage {
    email: String,
    form: FormValues,
    errors: Vec<String>,
    saved: bool,
    action: String,
    unsubscribe_url: String,
    feed_url: String,
    min_upvotes_default: u32,
    max_items_default: u32,
    max_items_cap: u32,
    server_zone: String,
    why: WhySection,
}

/// The "why these papers" part of the preferences page: the newest edition on record, judged
/// by the preferences as they are now, so that a reader who changes them sees the effect.
pub enum WhySection {
    /// No edition has been run yet.
    NoEdition,
    /// The judgement failed (logged); the form must still work, so the page shows a sentence.
    Unavailable,
    Edition(WhyView),
}

pub struct WhyView {
    /// `YYYY-MM-DD`, for the link to the edition's page.
    pub date: String,
    pub date_long: String,
    /// "3 of 12 papers would be in your digest".
    pub summary: String,
    /// Picked papers first, then the others; page order within each.
    pub lines: Vec<WhyLine>,
}

pub struct WhyLine {
    pub title: String,
    pub url: String,
    pub upvotes: u32,
    /// The verdict as `explain` prints it: "picked", "below 25 upvotes", ….
    pub verdict: String,
    pub picked: bool,
}

/// "every weekday at 08:00 UTC" is hard to say for any cron line; the next time is not.
fn cadence(web: &WebState) -> String {
    let next = web
        .schedule
        .cron
        .schedule()
        .upcoming(web.schedule.tz())
        .next();
    match next {
        Some(t) => format!(
            "the next one goes out on {} at {} ({})",
            t.format("%A, %B %-d"),
            t.format("%H:%M"),
            web.schedule.tz()
        ),
        None => "on the operator's schedule".into(),
    }
}

fn index_page(
    web: &WebState,
    form: FormValues,
    errors: Vec<String>,
) -> Result<IndexPage, WebError> {
    let latest = match web.source.latest() {
        Some(l) => Some(l),
        None => web.store.latest_edition()?.map(|e| (e.date, e.papers)),
    };
    let (sample, sample_date) = match latest {
        Some((date, papers)) => {
            let mut papers: Vec<_> = papers.iter().collect();
            papers.sort_by_key(|p| std::cmp::Reverse(p.upvotes));
            let sample = papers
                .into_iter()
                .take(SAMPLE_SIZE)
                .map(|p| SampleView {
                    title: p.title.clone(),
                    url: p.id.hf_url(),
                    upvotes: p.upvotes,
                    organization: p.organization.clone(),
                })
                .collect();
            (sample, Some(date.long()))
        }
        None => (Vec::new(), None),
    };
    let sample_missing = if web.metrics.last_fetch_error().is_some() {
        "The list of trending papers could not be read just now. Subscribing works all the same: your first digest comes with the next edition."
    } else {
        "The papers trending now will show here once the list has been read."
    };
    Ok(IndexPage {
        cadence: cadence(web),
        form,
        errors,
        sample,
        sample_date,
        sample_missing,
        max_items_cap: MAX_ITEMS_CAP,
        max_items_default: web.digest.max_items,
    })
}

pub async fn index(State(state): Shared) -> Result<Response, WebError> {
    let p = index_page(&state, FormValues::default(), Vec::new())?;
    Ok(page(StatusCode::OK, &p))
}

pub async fn not_found() -> WebError {
    WebError::NotFound
}

/// The one answer to every accepted subscribe request, whoever the address belongs to.
fn check_your_inbox() -> Response {
    page(
        StatusCode::OK,
        &MessagePage::new(
            "Check your inbox",
            &[
                "If the address can receive mail, a message is on its way to it. Open it and confirm to start getting trending papers.",
                "Nothing arrives? Look in the spam folder, or try again in an hour.",
            ],
        )
        .with_link("/", "Back to the start page"),
    )
}

pub async fn subscribe(
    State(state): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<SubscribeForm>, FormRejection>,
) -> Result<Response, WebError> {
    let web = &*state;
    metrics::inc(&web.metrics.subscribe_requests);
    let Form(form) = form.map_err(form_rejection)?;
    if !state.limits.allow_client(client_ip(web, peer, &headers)) {
        metrics::inc(&web.metrics.rate_limited);
        return Err(WebError::RateLimited);
    }
    state.limits.shrink();
    if !form.website.is_empty() {
        // A bot filled in the hidden field: answer as usual, do nothing.
        return Ok(check_your_inbox());
    }
    let days = crate::schedule::edition_days(&web.schedule, Utc::now());
    let (email, prefs) = match form.parse(&days) {
        Ok(ok) => ok,
        Err(errors) => {
            let p = index_page(web, form.values(), errors)?;
            return Ok(page(StatusCode::UNPROCESSABLE_ENTITY, &p));
        }
    };
    if !state.limits.allow_request(email.as_str()) {
        metrics::inc(&web.metrics.rate_limited);
        return Err(WebError::RateLimited);
    }

    let notice = {
        let _guard = state.subscribe_lock.lock().await;
        let now = Utc::now();
        // The same reads and writes for a new address as for a known one, even when a
        // request changes nothing: the answer's timing must not tell them apart.
        let changed = web.store.change_subscriber(&email, |current| {
            let (s, notice) = match current {
                None => (
                    Subscriber::requested(email.clone(), prefs.clone(), now),
                    Some(Notice::Confirm),
                ),
                Some(mut s) => {
                    let notice = s.requested_again(prefs.clone(), now);
                    (s, notice)
                }
            };
            Ok::<_, Infallible>((s.clone(), notice.map(|n| (s, n))))
        })?;
        let Ok(notice) = changed;
        web.store.flush().await?;
        notice
    };

    if let Some((s, notice)) = notice {
        // Sent in the background: the answer must not take longer for one kind of
        // address than for another.
        let notices = web.notices.clone();
        tokio::spawn(async move {
            if let Err(e) = notices.send(&s, notice).await {
                let error = s.email.redact_in(&one_line(&e));
                tracing::warn!(domain = %s.email.domain(), %error, ?notice, "could not send a subscription mail");
            }
        });
    }
    Ok(check_your_inbox())
}

/// What a valid confirm token is for.
enum ConfirmTarget {
    /// A confirmation outstanding: its nonce, and whose it is.
    Outstanding(Subscriber, u64),
    /// The link that already made this subscriber active, used again.
    Done(Subscriber),
}

/// What a confirm token is for, if it is valid now.
fn confirm_target(web: &WebState, token: &str) -> Result<ConfirmTarget, WebError> {
    let sid = TokenKey::claimed_subscriber(token).ok_or(WebError::BadToken)?;
    let s = web.store.subscriber_by_id(sid)?;
    target_in(web, token, s)
}

/// What a confirm token is for in the record `s` of the subscriber it claims.
fn target_in(
    web: &WebState,
    token: &str,
    s: Option<Subscriber>,
) -> Result<ConfirmTarget, WebError> {
    let s = s.ok_or(WebError::BadToken)?;
    let valid = |nonce: u64| {
        web.links
            .key()
            .verify(Purpose::Confirm, token, Utc::now(), nonce)
            .is_ok()
    };
    let outstanding = s.outstanding_nonces().find(|&n| valid(n));
    if let Some(nonce) = outstanding {
        return Ok(ConfirmTarget::Outstanding(s, nonce));
    }
    match s.confirmed_nonce {
        Some(n) if s.status == Status::Active && valid(n) => Ok(ConfirmTarget::Done(s)),
        _ => Err(WebError::BadToken),
    }
}

/// Shows a button; following the link alone changes nothing, since mail scanners follow
/// links too.
pub async fn confirm_page(
    State(state): Shared,
    Params(q): Params<TokenQuery>,
) -> Result<Response, WebError> {
    confirm_target(&state, &q.token)?;
    Ok(page(
        StatusCode::OK,
        &ActionPage {
            heading: "Confirm your subscription".into(),
            explanation: "One click and trending papers start arriving with the next edition."
                .into(),
            action: "/confirm".into(),
            hidden: vec![("token".into(), q.token)],
            button: "Confirm subscription".into(),
        },
    ))
}

pub async fn confirm(
    State(state): Shared,
    form: Result<Form<TokenForm>, FormRejection>,
) -> Result<Response, WebError> {
    let Form(form) = form.map_err(form_rejection)?;
    let web = &*state;
    let _guard = state.subscribe_lock.lock().await;
    let sid = TokenKey::claimed_subscriber(&form.token).ok_or(WebError::BadToken)?;
    let now = Utc::now();
    let (s, confirmed) =
        web.store
            .update_subscriber_by_id(sid, |current| -> Result<_, WebError> {
                match target_in(web, &form.token, current)? {
                    ConfirmTarget::Outstanding(mut s, nonce) => {
                        s.confirm_with(nonce, now);
                        Ok((s.clone(), (s, true)))
                    }
                    // A second click on the same link: already done, and said so.
                    ConfirmTarget::Done(s) => Ok((s.clone(), (s, false))),
                }
            })??;
    if confirmed {
        web.store.flush().await?;
        tracing::info!(subscriber = %s.id, "subscription confirmed");
    }
    let prefs = web.links.preferences(s.id);
    Ok(page(
        StatusCode::OK,
        &MessagePage::new(
            "You are subscribed",
            &["Trending papers will arrive with the next edition. Every digest has links to change your preferences or to leave with one click."],
        )
        .with_link(&prefs, "Set keywords and how many papers you get"),
    ))
}

/// The subscriber of an unsubscribe or preferences token. A valid token for an address that
/// no longer exists is "not found"; anything else wrong with it is "not valid".
fn token_owner(web: &WebState, purpose: Purpose, token: &str) -> Result<Subscriber, WebError> {
    let sid = token_subscriber(web, purpose, token)?;
    web.store.subscriber_by_id(sid)?.ok_or(WebError::NotFound)
}

/// The subscriber id an unsubscribe or preferences token is signed for.
fn token_subscriber(
    web: &WebState,
    purpose: Purpose,
    token: &str,
) -> Result<SubscriberId, WebError> {
    web.links
        .key()
        .verify(purpose, token, Utc::now(), 0)
        .map_err(|_| WebError::BadToken)
}

pub async fn unsubscribe_page(
    State(state): Shared,
    Params(q): Params<TokenQuery>,
) -> Result<Response, WebError> {
    let s = token_owner(&state, Purpose::Unsubscribe, &q.token)?;
    Ok(page(
        StatusCode::OK,
        &ActionPage {
            heading: "Unsubscribe".into(),
            explanation: format!(
                "Stop sending trending papers to {}? You can subscribe again at any time.",
                s.email
            ),
            action: format!("/unsubscribe?token={}", q.token),
            hidden: vec![("List-Unsubscribe".into(), "One-Click".into())],
            button: "Unsubscribe".into(),
        },
    ))
}

/// RFC 8058 one-click: a POST to the exact URL of the `List-Unsubscribe` header, with the
/// body `List-Unsubscribe=One-Click`, unsubscribes at once, with no cookie and no redirect.
/// The page's own button posts the same. The body is not needed to act.
pub async fn unsubscribe(
    State(state): Shared,
    Params(q): Params<TokenQuery>,
) -> Result<Response, WebError> {
    let web = &*state;
    let sid = token_subscriber(web, Purpose::Unsubscribe, &q.token)?;
    let now = Utc::now();
    let left = web
        .store
        .update_subscriber_by_id(sid, |current| -> Result<_, WebError> {
            let mut s = current.ok_or(WebError::NotFound)?;
            let left = (s.status != Status::Unsubscribed).then(|| s.email.domain().to_string());
            s.unsubscribe(now);
            Ok((s, left))
        })??;
    if let Some(domain) = left {
        web.store.flush().await?;
        tracing::info!(%domain, "unsubscribed");
    }
    Ok(page(
        StatusCode::OK,
        &MessagePage::new(
            "You are unsubscribed",
            &["No more digests will be sent to this address. Changed your mind? Subscribe again from the start page."],
        )
        .with_link("/", "Subscribe again"),
    ))
}

/// Judges the newest edition on record for `s`. Never fetches: a page view must not reach
/// out to Hugging Face.
async fn why_section(web: &WebState, s: &Subscriber) -> WhySection {
    match why_view(web, s).await {
        Ok(Some(view)) => WhySection::Edition(view),
        Ok(None) => WhySection::NoEdition,
        Err(e) => {
            tracing::error!(error = %one_line(&e), "could not explain the latest edition");
            WhySection::Unavailable
        }
    }
}

async fn why_view(web: &WebState, s: &Subscriber) -> Result<Option<WhyView>, RunError> {
    // Only the date: `explain` reads the edition itself.
    let Some(latest) = web.store.edition_summaries(None, 1)?.into_iter().next() else {
        return Ok(None);
    };
    let Some(e) =
        edition::explain(&web.editions, latest.date, s, false, edition::Judge::AsNow).await?
    else {
        return Ok(None);
    };
    let (picked, total) = (e.picked(), e.lines.len());
    let papers = if total == 1 { "paper" } else { "papers" };
    let date = e.date.long();
    let summary = if e.had_it {
        // The verdicts follow the preferences as they are now; what the digest carried is
        // in the ledger, and after a change the two differ.
        let ids: Vec<PaperId> = e.lines.iter().map(|(p, _)| p.id.clone()).collect();
        let carried = web
            .store
            .sent_before(s.id)?
            .among(&web.store.page_index(&ids)?)
            .values()
            .filter(|on| **on == Some(e.date))
            .count();
        let mut line = format!("{carried} of {total} {papers} were in your digest of {date}.");
        if carried != picked {
            line += &format!(" With your preferences as they are now, it would be {picked}.");
        }
        line
    } else {
        format!("{picked} of {total} {papers} would be in your digest.")
    };
    // The verdicts say what the preferences pick even while nothing is sent.
    let summary = if s.receives_digests() {
        summary
    } else {
        summary + " No digests go to you now (paused or unsubscribed)."
    };
    let mut lines: Vec<WhyLine> = e
        .lines
        .into_iter()
        .map(|(p, v)| WhyLine {
            url: p.id.hf_url(),
            title: p.title,
            upvotes: p.upvotes,
            picked: v.is_picked(),
            verdict: v.to_string(),
        })
        .collect();
    // Stable: page order within each group.
    lines.sort_by_key(|l| !l.picked);
    Ok(Some(WhyView {
        date: e.date.to_string(),
        date_long: date,
        summary,
        lines,
    }))
}

async fn preferences_view(
    web: &WebState,
    s: &Subscriber,
    token: &str,
    form: FormValues,
    errors: Vec<String>,
    saved: bool,
) -> PreferencesPage {
    PreferencesPage {
        why: why_section(web, s).await,
        email: s.email.to_string(),
        form,
        errors,
        saved,
        action: format!("/preferences?token={token}"),
        unsubscribe_url: web.links.unsubscribe(s.id),
        feed_url: web.links.feed(s.id),
        min_upvotes_default: web.digest.min_upvotes,
        max_items_default: web.digest.max_items,
        max_items_cap: MAX_ITEMS_CAP,
        server_zone: web.schedule.tz().name().to_string(),
    }
}

pub async fn preferences_page(
    State(state): Shared,
    Params(q): Params<TokenQuery>,
) -> Result<Response, WebError> {
    let web = &*state;
    let s = token_owner(web, Purpose::Preferences, &q.token)?;
    let values = FormValues::from_preferences(&s.preferences);
    Ok(page(
        StatusCode::OK,
        &preferences_view(web, &s, &q.token, values, Vec::new(), false).await,
    ))
}

pub async fn save_preferences(
    State(state): Shared,
    Params(q): Params<TokenQuery>,
    form: Result<Form<PreferencesForm>, FormRejection>,
) -> Result<Response, WebError> {
    let web = &*state;
    let s = token_owner(web, Purpose::Preferences, &q.token)?;
    let Form(form) = form.map_err(form_rejection)?;
    let days = crate::schedule::edition_days(&web.schedule, Utc::now());
    let parsed = form.parse(web.schedule.tz().name(), &days);
    match parsed {
        Err(errors) => Ok(page(
            StatusCode::UNPROCESSABLE_ENTITY,
            &preferences_view(web, &s, &q.token, form.values(), errors, false).await,
        )),
        Ok(prefs) => {
            let s =
                web.store
                    .update_subscriber_by_id(s.id, |current| -> Result<_, WebError> {
                        let mut s = current.ok_or(WebError::NotFound)?;
                        s.preferences = prefs.clone();
                        Ok((s.clone(), s))
                    })??;
            web.store.flush().await?;
            let values = FormValues::from_preferences(&s.preferences);
            Ok(page(
                StatusCode::OK,
                &preferences_view(web, &s, &q.token, values, Vec::new(), true).await,
            ))
        }
    }
}

/// 200 when the store answers and the source was fetched successfully lately; 503 with the
/// reason otherwise. A daemon that has not fetched yet is healthy.
pub async fn healthz(State(state): Shared) -> Response {
    let web = &*state;
    let text = |code: StatusCode, body: String| {
        (
            code,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            body + "\n",
        )
            .into_response()
    };
    if let Err(e) = web.store.last_fetch_ok() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unusable: {}", one_line(&e)),
        );
    }
    if let Some((at, error)) = web.metrics.last_fetch_error() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("last fetch failed at {}: {error}", at.to_rfc3339()),
        );
    }
    let max_age = chrono::Duration::hours(web.settings.health_max_fetch_age_hours.into());
    match web.metrics.last_fetch_ok() {
        Some(at) if Utc::now().signed_duration_since(at) > max_age => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no successful fetch since {}", at.to_rfc3339()),
        ),
        Some(at) => text(
            StatusCode::OK,
            format!("ok: last successful fetch at {}", at.to_rfc3339()),
        ),
        None => text(StatusCode::OK, "ok: no fetch yet".into()),
    }
}

pub async fn metrics(State(state): Shared) -> Result<Response, WebError> {
    let web = &*state;
    let counts = web.store.count_by_status()?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        web.metrics.render(&counts),
    )
        .into_response())
}
