//! The mails about a subscription itself: "confirm your address" and "you are already
//! subscribed". Unlike digests they carry no unsubscribe header: they are answers to a
//! request made on the subscribe page.

use std::sync::Arc;

use askama::Template;
use chrono::{Duration, Utc};

use crate::domain::Subscriber;
use crate::mail::{Mailer, SendError, with_retries};
use crate::render::RenderError;
use crate::telemetry::Flat;
use crate::telemetry::metrics::Metrics;
use crate::tokens::Links;

/// How long a confirm link works.
pub const CONFIRM_VALID_HOURS: i64 = 48;

pub use crate::domain::Notice;

#[derive(Template)]
#[template(path = "notice.html")]
struct NoticeHtml<'a> {
    heading: &'a str,
    paragraphs: &'a [String],
    button_label: &'a str,
    button_url: &'a str,
    footnote: &'a str,
}

#[derive(Template)]
#[template(path = "notice.txt")]
struct NoticeText<'a> {
    heading: &'a str,
    paragraphs: &'a [String],
    button_label: &'a str,
    button_url: &'a str,
    footnote: &'a str,
}

/// Why a notice did not go: it could not be written (a template or its CSS failing: a bug in
/// paperboy, whoever it was for), or it could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    #[error("the notice could not be rendered")]
    Render(#[from] RenderError),
    #[error(transparent)]
    Send(#[from] SendError),
}

pub struct RenderedNotice {
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// The confirmation mails of the subscribe form, with what they need to be written and sent.
#[derive(Clone)]
pub struct Notices {
    mailer: Mailer,
    links: Links,
    metrics: Arc<Metrics>,
    attempts: u32,
}

impl Notices {
    /// `attempts`: tries per notice for temporary failures, as for a digest.
    pub fn new(mailer: Mailer, links: Links, metrics: Arc<Metrics>, attempts: u32) -> Self {
        Self {
            mailer,
            links,
            metrics,
            attempts,
        }
    }

    /// Renders and sends a notice, retrying temporary failures like a digest.
    pub async fn send(&self, s: &Subscriber, notice: Notice) -> Result<(), NoticeError> {
        let r = render(&self.links, s, notice)?;
        let message =
            self.mailer
                .build_notice(&s.email, notice.kind(), &r.subject, r.text, r.html)?;
        let message = self.mailer.returning(message, s.id, None);
        with_retries(self.attempts, &self.metrics, || self.mailer.send(&message)).await?;
        crate::telemetry::metrics::inc(&self.metrics.notices_sent);
        Ok(())
    }
}

pub fn render(
    links: &Links,
    s: &Subscriber,
    notice: Notice,
) -> Result<RenderedNotice, RenderError> {
    let base = links.base();
    let site = url::Url::parse(base)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| base.to_string());
    let (subject, heading, paragraphs, label, url, footnote) = match notice {
        Notice::Confirm => {
            let nonce = s.newest_confirmation().map_or(0, |c| c.nonce);
            let expires = Utc::now() + Duration::hours(CONFIRM_VALID_HOURS);
            (
                "Confirm your subscription to trending papers".to_string(),
                "Confirm your subscription",
                vec![
                    format!(
                        "Someone, hopefully you, asked {site} to send trending research papers from Hugging Face Papers to this address."
                    ),
                    "Confirm with the button below and the digests start with the next edition."
                        .to_string(),
                ],
                "Confirm subscription",
                links.confirm(s.id, expires, nonce),
                format!(
                    "The link works once and expires in {CONFIRM_VALID_HOURS} hours. If you did not ask for this, ignore this mail: nothing will be sent."
                ),
            )
        }
        Notice::AlreadySubscribed => {
            (
                "You are already subscribed to trending papers".to_string(),
                "You are already subscribed",
                vec![
                    format!("Someone asked {site} to subscribe this address, and it already gets the trending papers digest."),
                    "To change keywords, minimum upvotes or how many papers you get, or to pause, use your preferences page.".to_string(),
                ],
                "Open my preferences",
                links.preferences(s.id),
                "If you did not ask for this, ignore this mail: nothing changes.".to_string(),
            )
        }
    };
    let html = NoticeHtml {
        heading,
        paragraphs: &paragraphs,
        button_label: label,
        button_url: &url,
        footnote: &footnote,
    }
    .render()?;
    let html = css_inline::inline(&html).map_err(|e| RenderError::Inline(Flat(e)))?;
    let text = NoticeText {
        heading,
        paragraphs: &paragraphs,
        button_label: label,
        button_url: &url,
        footnote: &footnote,
    }
    .render()?;
    Ok(RenderedNotice {
        subject,
        html,
        text,
    })
}
