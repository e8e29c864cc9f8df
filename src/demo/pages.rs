//! What the demo adds to the web pages, and only the demo: the outbox pages, the "next
//! day" action, the digest sent as soon as a subscription is confirmed, and a banner on
//! every page saying that this is a demo with sample data.
//!
//! The pages of `serve` are used as they are; the banner is put into each HTML page on its
//! way out, so that no page of theirs needs to know about the demo.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::Demo;
use super::outbox::{self, Piece};
use crate::web::{MessagePage, WebError, page, security_headers};

/// The pages of `serve` (`web`) with the demo's added.
pub fn router(web: Router, demo: Arc<Demo>) -> Router {
    let own = Router::new()
        .route("/demo/outbox", get(outbox_index))
        .route("/demo/outbox/{name}", get(message))
        .route("/demo/outbox/{name}/html", get(html_part))
        .route("/demo/next-day", post(next_day))
        .layer(middleware::map_response(demo_headers))
        .with_state(demo.clone());
    own.merge(web)
        .layer(middleware::from_fn_with_state(demo.clone(), send_at_once))
        .layer(middleware::from_fn_with_state(demo, with_banner))
}

/// Marks a response that is a message's own HTML: it gets no banner and may be framed by
/// the outbox page alone.
#[derive(Clone, Copy)]
struct MailPart;

/// The headers of `serve`'s pages, except that the message page may frame the HTML part,
/// and the HTML part runs in a sandbox of its own.
async fn demo_headers(response: Response) -> Response {
    let is_part = response.extensions().get::<MailPart>().is_some();
    let mut response = security_headers(response).await;
    let h = response.headers_mut();
    if is_part {
        // No script, nothing fetched from elsewhere (images included, which a mail program
        // would ask before loading), links open in the demo's window.
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "sandbox allow-top-navigation-by-user-activation; default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'",
            ),
        );
        h.insert(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("SAMEORIGIN"),
        );
    } else {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        );
    }
    response
}

/// A confirmed subscription gets the day's digest at once, as a daily reader would at the
/// next edition: the day's edition runs again, which sends only to those who have not had
/// it.
async fn send_at_once(State(demo): State<Arc<Demo>>, request: Request, next: Next) -> Response {
    let confirming = request.method() == Method::POST && request.uri().path() == "/confirm";
    let response = next.run(request).await;
    if confirming && response.status() == StatusCode::OK {
        let today = *demo.today.lock().await;
        demo.run_edition(demo.days[today]).await;
    }
    response
}

#[derive(Template)]
#[template(path = "web/demo_banner.html")]
struct Banner {
    sample: String,
    today: String,
    next: Option<String>,
    messages: usize,
    digests: usize,
}

/// The banner's style, for the page's head.
const BANNER_STYLE: &str = r#"<style>
  .demo { --demo-bg: #fef3c7; --demo-text: #78350f; --demo-line: #d97706; background: var(--demo-bg); color: var(--demo-text); border-bottom: 2px dashed var(--demo-line); padding: 10px 16px; font-size: 14px; }
  @media (prefers-color-scheme: dark) { .demo { --demo-bg: #1c1407; --demo-text: #fde68a; --demo-line: #b45309; } }
  .demo p, .demo .line { margin: 0 auto 4px; max-width: 1200px; }
  .demo strong { letter-spacing: 0.04em; }
  .demo a { color: inherit; font-weight: 700; }
  .demo form { display: inline; }
  .demo button { margin: 0 0 0 4px; padding: 4px 12px; font-size: 14px; }
</style>
"#;

/// Everything the pages of the demo serve as HTML gets the banner, error pages included;
/// a message's own HTML part does not.
async fn with_banner(State(demo): State<Arc<Demo>>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    if !is_html || response.extensions().get::<MailPart>().is_some() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 << 20).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let banner = match demo.banner().await.render() {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "the demo banner failed to render");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let html = String::from_utf8_lossy(&bytes)
        .replacen("</head>", &format!("{BANNER_STYLE}</head>"), 1)
        .replacen("<body>", &format!("<body>\n{banner}"), 1);
    // The length changed; the server counts it again.
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(html))
}

impl Demo {
    async fn banner(&self) -> Banner {
        let today = *self.today.lock().await;
        let messages = outbox::list(&self.outbox);
        Banner {
            sample: super::span(&self.days),
            today: self.days[today].long(),
            next: self.days.get(today + 1).map(|d| d.short()),
            digests: messages.iter().filter(|m| m.is_digest).count(),
            messages: messages.len(),
        }
    }
}

struct Row {
    name: String,
    subject: String,
    to: String,
    written: String,
    is_digest: bool,
}

#[derive(Template)]
#[template(path = "web/demo_outbox.html")]
struct OutboxPage {
    dir: String,
    messages: Vec<Row>,
}

async fn outbox_index(State(demo): State<Arc<Demo>>) -> Response {
    let messages = outbox::list(&demo.outbox)
        .into_iter()
        .map(|m| Row {
            written: chrono::DateTime::<chrono::Utc>::from(m.written)
                .format("%H:%M:%S UTC")
                .to_string(),
            name: m.name,
            subject: m.subject,
            to: m.to,
            is_digest: m.is_digest,
        })
        .collect();
    page(
        StatusCode::OK,
        &OutboxPage {
            dir: demo.outbox.display().to_string(),
            messages,
        },
    )
}

#[derive(Template)]
#[template(path = "web/demo_message.html")]
struct MessageView {
    name: String,
    subject: String,
    from: String,
    to: String,
    date: String,
    headers: Vec<(String, String)>,
    has_html: bool,
    text: Option<Vec<Piece>>,
}

async fn message(
    State(demo): State<Arc<Demo>>,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    let m = outbox::read(&demo.outbox, &name).ok_or(WebError::NotFound)?;
    Ok(page(
        StatusCode::OK,
        &MessageView {
            from: header(&m.headers, "From"),
            to: m.to,
            date: header(&m.headers, "Date"),
            name: m.name,
            subject: m.subject,
            headers: m.headers,
            has_html: m.html.is_some(),
            text: m.text.as_deref().map(outbox::pieces),
        },
    ))
}

fn header(headers: &[(String, String)], name: &str) -> String {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// A message's HTML part as it was sent, but for links opening in the demo's window
/// rather than in the frame that shows it.
async fn html_part(
    State(demo): State<Arc<Demo>>,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    let html = outbox::read(&demo.outbox, &name)
        .and_then(|m| m.html)
        .ok_or(WebError::NotFound)?;
    let html = match html.find("<head>") {
        Some(at) => {
            let at = at + "<head>".len();
            format!("{}<base target=\"_top\">{}", &html[..at], &html[at..])
        }
        None => format!("<base target=\"_top\">{html}"),
    };
    let mut response = Html(html).into_response();
    response.extensions_mut().insert(MailPart);
    Ok(response)
}

/// The next sample day's edition, sent to every subscriber as the schedule would.
async fn next_day(State(demo): State<Arc<Demo>>) -> Response {
    let mut today = demo.today.lock().await;
    if *today + 1 >= demo.days.len() {
        return page(
            StatusCode::OK,
            &MessagePage::new(
                "That was the last sample day",
                &[&format!(
                    "The sample holds the trending papers of {}. Run the demo again for a fresh start, or run paperboy itself (paperboy serve) for today's papers.",
                    super::span(&demo.days)
                )],
            )
            .with_link("/demo/outbox", "Open the outbox"),
        );
    }
    *today += 1;
    let date = demo.days[*today];
    // Held while the edition runs: a second click waits, then moves on from this day.
    demo.run_edition(date).await;
    Redirect::to("/demo/outbox").into_response()
}
