//! A reader's own copy of a digest at `/digest/YYYY-MM-DD?token=…`: what "view in your
//! browser" opens. It shows the digest as it was mailed to them (their papers in their
//! order, their late bloomers, why each is there), assembled again from the edition and
//! their delivery on record, with the whole edition's page in the archive linked at the top.
//!
//! The token is signed for [`Purpose::Digest`] and bound to the edition's date: mail gets
//! forwarded, so it opens that one digest and nothing else (it cannot unsubscribe, change
//! preferences or read another day's).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;

use super::archive::date_in_url;
use super::pages::TokenQuery;
use super::{Params, WebError, WebState};
use crate::domain::Status;
use crate::tokens::{Purpose, digest_binding};

pub async fn own_copy(
    State(state): State<Arc<WebState>>,
    Path(date): Path<String>,
    Params(q): Params<TokenQuery>,
) -> Result<Response, WebError> {
    let web = &*state;
    // A date spelt otherwise is another address, whose token cannot match.
    let date = date_in_url(&date).map_err(|_| WebError::BadToken)?;
    let id = web
        .links
        .key()
        .verify(Purpose::Digest, &q.token, Utc::now(), digest_binding(date))
        .map_err(|_| WebError::BadToken)?;
    let s = web.store.subscriber_by_id(id)?.ok_or(WebError::NotFound)?;
    if s.status == Status::Unsubscribed {
        return Err(WebError::Gone);
    }
    let digest = crate::edition::as_sent(&web.editions, date, &s)?.ok_or(WebError::NotFound)?;
    let mut response = (StatusCode::OK, Html(digest.html)).into_response();
    // A page of one reader's: search engines keep out even if a forwarded link is posted.
    let h = response.headers_mut();
    h.insert("x-robots-tag", HeaderValue::from_static("noindex"));
    // The digest's thumbnails (`digest.thumbnails`) come from the source's image host, as
    // they do in the mail. Pictures only: still no script, no frames, no forms elsewhere,
    // and no referrer goes with them.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https: http:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    Ok(response)
}
