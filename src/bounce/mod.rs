//! Bounces and complaints that arrive after a relay accepted the mail: `paperboy bounce`
//! reads one message on standard input, as an MTA hands it to a program (a Postfix `pipe`
//! transport or alias, procmail, sieve, fetchmail's mda), and acts on it.
//!
//! - A DSN (RFC 3464) with a permanent status (5.x.x) marks the subscriber `bounced`; a
//!   temporary one (4.x.x, or `delayed`) is counted, and `mail.bounce_transient_count`
//!   different messages within `mail.bounce_transient_days` days make a bounce.
//! - An ARF report (RFC 5965) of type `abuse` unsubscribes the reader.
//! - Anything else (auto-replies, other reports, reports it cannot attribute, truncated or
//!   oversized messages, forged tokens) changes nothing and is [`Ignored`] with a reason:
//!   an MTA must not bounce a bounce, so that is a success too.
//!
//! Attribution comes from the VERP token in the envelope sender paperboy used (signed with
//! the link key: see [`crate::tokens`]), found in the recipient the MTA names or in the
//! report's headers; failing that, from the original message's Message-ID and List-Id as
//! the report returns them, which must both be paperboy's. An address written in the
//! report is never enough on its own.
//!
//! Errors that an MTA should retry for (the store busy or failing) are [`BounceError`],
//! whose [`BounceError::exit_code`] follows sysexits (75).

pub mod parse;

use std::fmt;
use std::io::Read;
use std::sync::Arc;

use chrono::Utc;

use crate::config::{BounceAddress, MailSettings};
use crate::domain::{
    BounceKind, EditionDate, Status, SubscriberEmail, SubscriberId, TransientLimit,
};
use crate::store::{Store, StoreError};
use crate::telemetry::metrics::{self, Metrics};
use crate::tokens::TokenKey;
use parse::{Report, ReportKind};

/// The largest message the intake reads: a DSN returning a whole digest (at most ~100 KB)
/// with room to spare. Anything longer is read to its end (the MTA must be able to hand it
/// over) and ignored.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// sysexits.h: the codes an MTA reads from a delivery program.
pub mod exit {
    /// Done, or ignored on purpose.
    pub const OK: u8 = 0;
    /// Standard input could not be read.
    pub const IOERR: u8 = 74;
    /// Try again later: the store is busy (another run holds it) or failed.
    pub const TEMPFAIL: u8 = 75;
    /// The configuration cannot be read.
    pub const CONFIG: u8 = 78;
}

/// Why a message changed nothing. Each is logged at info and printed, and exits 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    TooLarge(usize),
    Unreadable,
    Truncated,
    AutoReply,
    NotAReport,
    OtherReport(String),
    NoStatus,
    NotAFailure(String),
    NotAbuse(String),
    ForgedToken,
    Unattributable,
    Stranger,
    OtherAddress,
}

impl fmt::Display for Ignored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ignored::TooLarge(n) => write!(
                f,
                "the message is over {} bytes ({n}), more than any report: not read",
                MAX_MESSAGE_BYTES
            ),
            Ignored::Unreadable => f.write_str("not a MIME message that can be read"),
            Ignored::Truncated => {
                f.write_str("the report is truncated (its closing MIME boundary is missing)")
            }
            Ignored::AutoReply => f.write_str("an auto-reply (vacation or similar), not a report"),
            Ignored::NotAReport => {
                f.write_str("neither a delivery status notification nor a complaint")
            }
            Ignored::OtherReport(t) => write!(f, "a report of type '{t}', not one acted on"),
            Ignored::NoStatus => f.write_str("the report has no status or feedback fields"),
            Ignored::NotAFailure(s) => write!(f, "the report is not about a failure ({s})"),
            Ignored::NotAbuse(t) => write!(f, "feedback of type '{t}', not an abuse complaint"),
            Ignored::ForgedToken => {
                f.write_str("the return-path token is not one paperboy signed (forged or damaged)")
            }
            Ignored::Unattributable => f.write_str(
                "no return-path token and no Message-ID and List-Id of paperboy's: cannot tell whose mail it was",
            ),
            Ignored::Stranger => f.write_str("it names no subscriber on record"),
            Ignored::OtherAddress => {
                f.write_str("the report is about another address than the subscriber's")
            }
        }
    }
}

/// What a message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A permanent failure, a temporary one, or a complaint, recorded for `email`;
    /// `status` is the subscriber's status after it.
    Recorded {
        email: String,
        kind: BounceKind,
        status: Status,
        reason: String,
    },
    Ignored(Ignored),
}

/// The failures an MTA should retry for: nothing was recorded.
#[derive(Debug, thiserror::Error)]
pub enum BounceError {
    #[error("the store: {0}")]
    Store(#[from] StoreError),
    #[error("reading the message: {0}")]
    Input(#[from] std::io::Error),
}

impl BounceError {
    /// The sysexits code for an MTA.
    pub fn exit_code(&self) -> u8 {
        match self {
            BounceError::Store(_) => exit::TEMPFAIL,
            BounceError::Input(_) => exit::IOERR,
        }
    }
}

/// The exit code for an error that kept the intake from running at all: a config that
/// cannot be read is the operator's to fix (78); anything else (the store locked by a run,
/// a daemon that did not answer) passes, so the MTA tries again (75).
pub fn exit_code_before_start(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if cause.downcast_ref::<crate::config::ConfigError>().is_some() {
            return exit::CONFIG;
        }
        if let Some(e) = cause.downcast_ref::<BounceError>() {
            return e.exit_code();
        }
    }
    exit::TEMPFAIL
}

/// Reads one message from `input`: up to [`MAX_MESSAGE_BYTES`] and one byte more (so a
/// longer one is known as such), then the rest to its end, unkept.
pub fn read_message(mut input: impl Read) -> std::io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    input
        .by_ref()
        .take(MAX_MESSAGE_BYTES as u64 + 1)
        .read_to_end(&mut kept)?;
    std::io::copy(&mut input, &mut std::io::sink())?;
    Ok(kept)
}

/// The intake: what it needs to attribute a report and record it.
pub struct Intake {
    store: Store,
    key: TokenKey,
    bounce_address: Option<BounceAddress>,
    /// The domain of digests' Message-IDs (`<digest.DATE.ID@DOMAIN>`) and their List-Id.
    message_id_domain: String,
    list_id: String,
    limit: TransientLimit,
    metrics: Arc<Metrics>,
}

impl Intake {
    pub fn new(
        store: Store,
        key: TokenKey,
        mail: &MailSettings,
        list_id: &str,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            key,
            bounce_address: mail.bounce_address.clone(),
            message_id_domain: mail.from.mailbox().email.domain().to_string(),
            list_id: list_id.to_string(),
            limit: TransientLimit {
                count: mail.bounce_transient_count,
                days: mail.bounce_transient_days,
            },
            metrics,
        }
    }

    /// Acts on one message. `recipient` is the envelope recipient the MTA delivered it to,
    /// if it says (Postfix's `${original_recipient}`).
    pub fn process(&self, raw: &[u8], recipient: Option<&str>) -> Result<Outcome, BounceError> {
        let outcome = match self.attribute_and_record(raw, recipient) {
            Ok(outcome) => outcome,
            Err(Step::Ignored(why)) => Outcome::Ignored(why),
            Err(Step::Failed(e)) => return Err(e),
        };
        match &outcome {
            Outcome::Recorded {
                email,
                kind,
                status,
                reason,
            } => {
                metrics::inc(match kind {
                    BounceKind::Permanent => &self.metrics.bounces_permanent,
                    BounceKind::Transient => &self.metrics.bounces_transient,
                    BounceKind::Complaint => &self.metrics.complaints,
                });
                let domain = email.rsplit('@').next().unwrap_or_default();
                tracing::info!(%kind, %status, domain, reason = %reason, "bounce report recorded");
            }
            Outcome::Ignored(why) => {
                metrics::inc(&self.metrics.bounce_reports_ignored);
                tracing::info!(reason = %why, "bounce report ignored");
            }
        }
        Ok(outcome)
    }

    fn attribute_and_record(&self, raw: &[u8], recipient: Option<&str>) -> Result<Outcome, Step> {
        if raw.len() > MAX_MESSAGE_BYTES {
            return Err(Step::Ignored(Ignored::TooLarge(raw.len())));
        }
        let report = parse::read(raw).map_err(Step::Ignored)?;
        let (id, edition, by_token) = self.attribute(&report, recipient)?;
        let now = Utc::now();
        let limit = self.limit;
        // Read and written in one transaction: a digest recorded meanwhile cannot undo it.
        let result = self.store.update_subscriber_by_id(id, |s| {
            let mut s = s.ok_or(Ignored::Stranger)?;
            let (kind, reason) = classify(&report, &s.email, by_token)?;
            match kind {
                BounceKind::Permanent => s.bounced_permanently(now, &reason),
                BounceKind::Transient => {
                    s.bounced_transiently(now, edition, &reason, limit);
                }
                BounceKind::Complaint => s.complained(now, &reason),
            }
            let outcome = Outcome::Recorded {
                email: s.email.to_string(),
                kind,
                status: s.status,
                reason,
            };
            Ok((s, outcome))
        });
        match result {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(why)) => Err(Step::Ignored(why)),
            Err(e) => Err(Step::Failed(e.into())),
        }
    }

    /// Whose message and which edition the report is about, and whether a token said so.
    fn attribute(
        &self,
        report: &Report,
        recipient: Option<&str>,
    ) -> Result<(SubscriberId, Option<EditionDate>, bool), Step> {
        if let Some(address) = &self.bounce_address {
            let candidates = recipient
                .into_iter()
                .map(str::to_string)
                .chain(report.delivered_to.iter().cloned())
                .chain(report.original.return_path.iter().cloned());
            let mut forged = false;
            for candidate in candidates {
                let Some(token) = token_in(&candidate, address) else {
                    continue;
                };
                match self.key.verify_return(token) {
                    Ok((id, edition)) => return Ok((id, edition, true)),
                    Err(_) => forged = true,
                }
            }
            if forged {
                return Err(Step::Ignored(Ignored::ForgedToken));
            }
        }
        self.by_message_id(report)
            .map(|(id, edition)| (id, Some(edition), false))
            .ok_or(Step::Ignored(Ignored::Unattributable))
    }

    /// A digest's own Message-ID (`digest.DATE.ID@DOMAIN`), with the List-Id digests carry.
    fn by_message_id(&self, report: &Report) -> Option<(SubscriberId, EditionDate)> {
        let original = &report.original;
        let ours = |list_id: &str| {
            let id_part = |v: &str| {
                let v = v.trim();
                v.rfind('<')
                    .and_then(|l| v[l..].find('>').map(|r| v[l + 1..l + r].to_string()))
            };
            id_part(list_id).is_some_and(|id| Some(id) == id_part(&self.list_id))
        };
        if !original.list_id.as_deref().is_some_and(ours) {
            return None;
        }
        let message_id = original.message_id.as_deref()?;
        let (date, id) = crate::mail::digest_of_message_id(message_id, &self.message_id_domain)?;
        Some((id, date))
    }
}

/// What the report says happened to the subscriber at `email`'s message, and why.
fn classify(
    report: &Report,
    email: &SubscriberEmail,
    by_token: bool,
) -> Result<(BounceKind, String), Ignored> {
    match &report.kind {
        ReportKind::Delivery(statuses) => {
            // The block about the subscriber's address; with a token, the first failure
            // will do (the mail may have been forwarded on the way).
            let mine = statuses.iter().find(|r| r.names(email.as_str()));
            let block = match (mine, by_token) {
                (Some(b), _) => b,
                (None, true) => statuses
                    .iter()
                    .find(|r| r.class() != Some(2))
                    .unwrap_or(&statuses[0]),
                (None, false) => return Err(Ignored::OtherAddress),
            };
            let kind = match (block.class(), block.action.as_str()) {
                (_, "delivered" | "relayed" | "expanded") | (Some(2), _) => {
                    return Err(Ignored::NotAFailure(block.reason()));
                }
                (Some(5), _) => BounceKind::Permanent,
                (Some(4), _) | (_, "delayed") => BounceKind::Transient,
                _ => return Err(Ignored::NoStatus),
            };
            Ok((kind, block.reason()))
        }
        ReportKind::Feedback {
            feedback_type,
            user_agent,
        } => {
            if feedback_type != "abuse" {
                return Err(Ignored::NotAbuse(feedback_type.clone()));
            }
            let by = user_agent
                .as_deref()
                .map_or(String::new(), |a| format!(" from {a}"));
            Ok((BounceKind::Complaint, format!("abuse report{by}")))
        }
    }
}

/// The token of `address` if it is `LOCAL+TOKEN@DOMAIN` of the bounce address.
fn token_in<'a>(address: &'a str, bounce: &BounceAddress) -> Option<&'a str> {
    let (local, domain) = address.trim().rsplit_once('@')?;
    if !domain.eq_ignore_ascii_case(bounce.domain()) {
        return None;
    }
    let (base, token) = local.rsplit_once('+')?;
    (base.eq_ignore_ascii_case(bounce.local()) && !token.is_empty()).then_some(token)
}

enum Step {
    Ignored(Ignored),
    Failed(BounceError),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Recorded {
                email,
                kind,
                status,
                reason,
            } => write!(f, "{email}: {kind} ({reason}); now {status}"),
            Outcome::Ignored(why) => write!(f, "ignored: {why}"),
        }
    }
}

#[cfg(test)]
mod tests;
