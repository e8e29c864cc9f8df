//! The web side: the pages readers use (subscribe, confirm, unsubscribe, preferences, the
//! archive of editions and the Atom feeds) and the operator's `/healthz` and `/metrics`.
//!
//! Every handler answers with a rendered page; every failure is a [`WebError`], which maps to
//! a status and a page in exactly one place and never says more than it must (a bad token is
//! "not valid", whatever was wrong with it).

mod archive;
mod atom;
mod copy;
mod feeds;
mod forms;
mod limits;
pub mod notices;
mod pages;
mod server;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

use crate::config::{DigestSettings, ScheduleSettings, WebSettings};
use crate::edition::Editions;
use crate::source::Source;
use crate::store::Store;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::one_line;
use crate::tokens::Links;

pub use limits::Limits;
pub use server::serve;

/// Forms are a few short fields; anything larger is refused before it is read.
const BODY_LIMIT: usize = 16 * 1024;

/// What the pages work with: each handler reads the parts it needs from here.
pub struct WebState {
    store: Store,
    /// For "why these papers" on the preferences page (never fetches).
    editions: Arc<Editions>,
    /// The last listing fetched, for the sample on the subscribe page.
    source: Arc<Source>,
    links: Links,
    notices: notices::Notices,
    settings: WebSettings,
    schedule: ScheduleSettings,
    digest: DigestSettings,
    metrics: Arc<Metrics>,
    limits: Limits,
    /// Serialises subscribe requests: read-modify-write of one record, and the promise of
    /// at most one notice per address per hour, must not race.
    subscribe_lock: tokio::sync::Mutex<()>,
}

/// The parts [`router`] serves with.
pub struct Parts {
    pub store: Store,
    pub editions: Arc<Editions>,
    pub source: Arc<Source>,
    pub links: Links,
    pub notices: notices::Notices,
    pub settings: WebSettings,
    pub schedule: ScheduleSettings,
    pub digest: DigestSettings,
    pub metrics: Arc<Metrics>,
}

pub fn router(parts: Parts) -> Router {
    let state = Arc::new(WebState {
        limits: Limits::new(&parts.settings),
        store: parts.store,
        editions: parts.editions,
        source: parts.source,
        links: parts.links,
        notices: parts.notices,
        settings: parts.settings,
        schedule: parts.schedule,
        digest: parts.digest,
        metrics: parts.metrics,
        subscribe_lock: tokio::sync::Mutex::new(()),
    });
    Router::new()
        .route("/", get(pages::index))
        .route("/subscribe", post(pages::subscribe))
        .route("/confirm", get(pages::confirm_page).post(pages::confirm))
        .route(
            "/unsubscribe",
            get(pages::unsubscribe_page).post(pages::unsubscribe),
        )
        .route(
            "/preferences",
            get(pages::preferences_page).post(pages::save_preferences),
        )
        .route("/editions", get(archive::index))
        .route("/editions/{date}", get(archive::edition))
        .route("/digest/{date}", get(copy::own_copy))
        .route("/feed.xml", get(feeds::general))
        .route("/feed/{file}", get(feeds::personal))
        .route("/healthz", get(pages::healthz))
        .route("/metrics", get(pages::metrics))
        .fallback(pages::not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// What a page may load: its own styles and pictures, nothing else, and no script.
pub const PAGE_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Tokens travel in URLs: no referrer may carry them elsewhere, and no page runs script.
pub async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    // A page that shows pictures from elsewhere (a reader's copy of a digest) sets its own.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        set(h, header::CONTENT_SECURITY_POLICY, PAGE_POLICY);
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    response
}

/// The client address a rate limit is keyed on.
pub fn client_ip(web: &WebState, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    if web.settings.trust_forwarded_for
        && let Some(ip) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return ip;
    }
    peer.ip()
}

#[derive(Template)]
#[template(path = "web/message.html")]
pub struct MessagePage {
    pub heading: String,
    pub paragraphs: Vec<String>,
    pub link: Option<(String, String)>,
}

impl MessagePage {
    pub fn new(heading: &str, paragraphs: &[&str]) -> Self {
        Self {
            heading: heading.into(),
            paragraphs: paragraphs.iter().map(|p| p.to_string()).collect(),
            link: None,
        }
    }

    pub fn with_link(mut self, href: &str, label: &str) -> Self {
        self.link = Some((href.into(), label.into()));
        self
    }
}

/// Renders a page; a template that fails to render is a bug, reported as a plain 500.
pub fn page(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => (status, Html(body)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// Unknown, tampered, expired or used token: one answer for all.
    #[error("bad token")]
    BadToken,
    #[error("not found")]
    NotFound,
    /// A valid link to something that has ended: the feed of a subscription that ended.
    #[error("gone")]
    Gone,
    #[error("rate limited")]
    RateLimited,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("body too large")]
    TooLarge,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A template that failed to render: a bug.
    #[error("rendering failed")]
    Render(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// An edition's papers could not be read or laid out: the store's error as it is, anything
/// else (a template) as a rendering failure.
impl From<crate::edition::RunError> for WebError {
    fn from(e: crate::edition::RunError) -> Self {
        use crate::edition::RunError;
        match e {
            RunError::Store(e) => WebError::Store(e),
            RunError::Render(e) => WebError::Render(e.into()),
            other @ RunError::Source(_) => WebError::Render(other.into()),
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let home = ("/", "Back to the start page");
        match self {
            WebError::BadToken => page(
                StatusCode::BAD_REQUEST,
                &MessagePage::new(
                    "This link does not work",
                    &[
                        "The link is not valid. It may have expired, been used already, or been cut short by your mail program.",
                        "If you were confirming a subscription, subscribe again and use the link in the new mail.",
                    ],
                )
                .with_link(home.0, home.1),
            ),
            WebError::NotFound => page(
                StatusCode::NOT_FOUND,
                &MessagePage::new("Not found", &["There is nothing here."]).with_link(home.0, home.1),
            ),
            WebError::Gone => page(
                StatusCode::GONE,
                &MessagePage::new(
                    "This subscription has ended",
                    &["What this link showed belonged to a subscription that has ended. Subscribe again from the start page to get digests (and a new link)."],
                )
                .with_link(home.0, home.1),
            ),
            WebError::RateLimited => {
                let mut r = page(
                    StatusCode::TOO_MANY_REQUESTS,
                    &MessagePage::new(
                        "Too many requests",
                        &["There have been too many subscribe requests from here or for this address. Please try again in an hour."],
                    )
                    .with_link(home.0, home.1),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("3600"));
                r
            }
            WebError::BadRequest(why) => page(
                StatusCode::BAD_REQUEST,
                &MessagePage::new("That did not work", &[&why]).with_link(home.0, home.1),
            ),
            WebError::TooLarge => page(
                StatusCode::PAYLOAD_TOO_LARGE,
                &MessagePage::new("Too much data", &["The form sent more than paperboy accepts."])
                    .with_link(home.0, home.1),
            ),
            e @ (WebError::Store(_) | WebError::Render(_)) => {
                tracing::error!(error = %one_line(&e), "error while serving a page");
                page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &MessagePage::new(
                        "Something went wrong",
                        &["paperboy could not do that just now. Please try again later."],
                    ),
                )
            }
        }
    }
}

/// Maps a form body that could not be read to our page, with the right status.
/// `Query`, with a query string that cannot be read (a parameter missing or given twice)
/// answered by the usual error page rather than axum's plain text.
pub struct Params<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Params<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = WebError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, WebError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(params)) => Ok(Params(params)),
            Err(_) => Err(WebError::BadRequest(
                "The address of this page could not be read.".into(),
            )),
        }
    }
}

pub fn form_rejection(r: axum::extract::rejection::FormRejection) -> WebError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        WebError::TooLarge
    } else {
        WebError::BadRequest("The form could not be read.".into())
    }
}
