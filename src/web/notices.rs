//! The mails about a subscription itself: "confirm your address" and "you are already
//! subscribed". Unlike digests they carry no unsubscribe header: they are answers to a
//! request made on the subscribe page.

use askama::Template;
use chrono::{Duration, Utc};

use crate::app::App;
use crate::domain::Subscriber;
use crate::mail::SendError;
use crate::tokens::Purpose;

/// How long a confirm link works.
pub const CONFIRM_VALID_HOURS: i64 = 48;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    Confirm,
    AlreadySubscribed,
}

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

pub struct RenderedNotice {
    pub subject: String,
    pub html: String,
    pub text: String,
}

pub fn render(app: &App, s: &Subscriber, notice: Notice) -> Result<RenderedNotice, SendError> {
    let base = app.settings.public_base();
    let site = url::Url::parse(base)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| base.to_string());
    let (subject, heading, paragraphs, label, url, footnote) = match notice {
        Notice::Confirm => {
            let nonce = s.confirm_nonce.unwrap_or_default();
            let expires = Utc::now() + Duration::hours(CONFIRM_VALID_HOURS);
            let token = app
                .tokens
                .sign(Purpose::Confirm, s.id, Some(expires), nonce);
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
                format!("{base}/confirm?token={token}"),
                format!(
                    "The link works once and expires in {CONFIRM_VALID_HOURS} hours. If you did not ask for this, ignore this mail: nothing will be sent."
                ),
            )
        }
        Notice::AlreadySubscribed => {
            let token = app.tokens.sign(Purpose::Preferences, s.id, None, 0);
            (
                "You are already subscribed to trending papers".to_string(),
                "You are already subscribed",
                vec![
                    format!("Someone asked {site} to subscribe this address, and it already gets the trending papers digest."),
                    "To change keywords, minimum upvotes or how many papers you get, or to pause, use your preferences page.".to_string(),
                ],
                "Open my preferences",
                format!("{base}/preferences?token={token}"),
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
    .render()
    .map_err(|e| SendError::Permanent(e.to_string()))?;
    let html = css_inline::inline(&html).map_err(|e| SendError::Permanent(e.to_string()))?;
    let text = NoticeText {
        heading,
        paragraphs: &paragraphs,
        button_label: label,
        button_url: &url,
        footnote: &footnote,
    }
    .render()
    .map_err(|e| SendError::Permanent(e.to_string()))?;
    Ok(RenderedNotice {
        subject,
        html,
        text,
    })
}

/// Renders and sends a notice, retrying temporary failures like a digest.
pub async fn send(app: &App, s: &Subscriber, notice: Notice) -> Result<(), SendError> {
    let r = render(app, s, notice)?;
    let message = app
        .mailer
        .build_notice(&s.email, &r.subject, r.text, r.html)?;
    let attempts = app.settings.mail.smtp.max_attempts;
    crate::edition::deliver::with_retries(attempts, &app.metrics, || app.mailer.send(&message))
        .await?;
    crate::telemetry::metrics::inc(&app.metrics.notices_sent);
    Ok(())
}
