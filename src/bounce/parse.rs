//! Reading one incoming message into what the intake acts on: a delivery status
//! notification (RFC 3464), an abuse report (RFC 5965 ARF), or the reason it is neither.
//!
//! The MIME structure is mail-parser's; the report's own fields (`Status:`,
//! `Feedback-Type:`, the blocks of a `message/delivery-status` part) are header blocks,
//! read with its header parser too. Nothing here trusts what it reads: attribution is the
//! caller's, from a signed token first.

use mail_parser::{Message, MessageParser, MimeHeaders};

use super::Ignored;

/// A report about a message paperboy sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub kind: ReportKind,
    /// The headers of the message the report is about, as far as the report returns them.
    pub original: Original,
    /// Addresses the report itself was delivered to (`Delivered-To`, `X-Original-To`,
    /// `To`): where a VERP token may be found without the MTA's help.
    pub delivered_to: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportKind {
    /// A DSN: one status per recipient it is about.
    Delivery(Vec<RecipientStatus>),
    /// An ARF report of this feedback type (`abuse`, `fraud`, `not-spam`, …), lower case.
    Feedback {
        feedback_type: String,
        /// Who sent the report (`User-Agent` of the feedback part), for the reason.
        user_agent: Option<String>,
    },
}

/// One per-recipient block of a DSN.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecipientStatus {
    /// `Final-Recipient` and `Original-Recipient`, the address type (`rfc822;`) taken off.
    pub final_recipient: Option<String>,
    pub original_recipient: Option<String>,
    /// `failed`, `delayed`, `delivered`, `relayed`, `expanded`, lower case.
    pub action: String,
    /// `5.1.1`, as given.
    pub status: String,
    pub diagnostic: Option<String>,
}

impl RecipientStatus {
    /// The status's class: 2 success, 4 persistent transient failure, 5 permanent.
    pub fn class(&self) -> Option<u8> {
        match self.status.trim().as_bytes() {
            [c @ (b'2' | b'4' | b'5'), b'.', ..] => Some(c - b'0'),
            _ => None,
        }
    }

    /// What the report said about this recipient, in a line.
    pub fn reason(&self) -> String {
        match &self.diagnostic {
            Some(d) => format!("{} {}: {d}", self.status, self.action),
            None => format!("{} {}", self.status, self.action),
        }
    }

    /// Whether the block is about `address` (either recipient field, any case).
    pub fn names(&self, address: &str) -> bool {
        [&self.final_recipient, &self.original_recipient]
            .into_iter()
            .flatten()
            .any(|r| r.eq_ignore_ascii_case(address))
    }
}

/// What a report returns of the original message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Original {
    /// Without its angle brackets.
    pub message_id: Option<String>,
    pub list_id: Option<String>,
    /// The envelope sender a receiver recorded, where a VERP token is.
    pub return_path: Option<String>,
}

/// Reads `raw` into a report, or says why it is not one paperboy acts on.
pub fn read(raw: &[u8]) -> Result<Report, Ignored> {
    let message = MessageParser::default()
        .parse(raw)
        .filter(|m| !m.headers().is_empty())
        .ok_or(Ignored::Unreadable)?;
    let report_type = match message.content_type() {
        Some(ct)
            if ct.ctype().eq_ignore_ascii_case("multipart")
                && ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("report")) =>
        {
            let boundary = ct.attribute("boundary").ok_or(Ignored::Unreadable)?;
            if !closes(raw, boundary) {
                return Err(Ignored::Truncated);
            }
            ct.attribute("report-type")
                .unwrap_or_default()
                .to_ascii_lowercase()
        }
        _ => {
            return Err(if is_auto_reply(&message) {
                Ignored::AutoReply
            } else {
                Ignored::NotAReport
            });
        }
    };
    let mut statuses = None;
    let mut feedback = None;
    let mut original = Original::default();
    for part in message.parts.iter().skip(1) {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let full = format!(
            "{}/{}",
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or_default().to_ascii_lowercase()
        );
        match full.as_str() {
            "message/delivery-status" | "message/global-delivery-status" => {
                statuses = Some(delivery_status(part.contents()));
            }
            "message/feedback-report" => feedback = Some(fields(part.contents())),
            "text/rfc822-headers" | "message/rfc822-headers" => {
                if let Some(headers) = MessageParser::default().parse_headers(part.contents()) {
                    original = original_of(&headers);
                }
            }
            "message/rfc822" | "message/global" => {
                if let Some(nested) = part.message() {
                    original = original_of(nested);
                } else if let Some(headers) =
                    MessageParser::default().parse_headers(part.contents())
                {
                    original = original_of(&headers);
                }
            }
            _ => {}
        }
    }
    let kind = match report_type.as_str() {
        "delivery-status" => {
            let statuses = statuses.ok_or(Ignored::NoStatus)?;
            if statuses.is_empty() {
                return Err(Ignored::NoStatus);
            }
            ReportKind::Delivery(statuses)
        }
        "feedback-report" => {
            let fields = feedback.ok_or(Ignored::NoStatus)?;
            let get = |name: &str| {
                fields
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            ReportKind::Feedback {
                feedback_type: get("Feedback-Type")
                    .ok_or(Ignored::NoStatus)?
                    .to_ascii_lowercase(),
                user_agent: get("User-Agent"),
            }
        }
        other => return Err(Ignored::OtherReport(other.chars().take(40).collect())),
    };
    let delivered_to = ["Delivered-To", "X-Original-To", "To"]
        .iter()
        .flat_map(|name| header_values(&message, name))
        .map(|v| bare_address(&v))
        .collect();
    Ok(Report {
        kind,
        original,
        delivered_to,
    })
}

/// Whether the multipart's closing delimiter is there: a report cut short (by a full
/// disk, a size limit on the way) is not acted on, even if the part that counts arrived.
fn closes(raw: &[u8], boundary: &str) -> bool {
    let closing = format!("--{boundary}--");
    memchr::memmem::find(raw, closing.as_bytes()).is_some()
}

/// RFC 3834 and the headers vacation programs use instead.
fn is_auto_reply(message: &Message<'_>) -> bool {
    let has = |name: &str| !header_values(message, name).is_empty();
    let auto_submitted = header_values(message, "Auto-Submitted")
        .iter()
        .any(|v| !v.eq_ignore_ascii_case("no"));
    let precedence = header_values(message, "Precedence")
        .iter()
        .any(|v| ["auto_reply", "bulk", "junk", "list"].contains(&v.to_ascii_lowercase().as_str()));
    auto_submitted
        || precedence
        || has("X-Autoreply")
        || has("X-Autorespond")
        || has("X-Auto-Response-Suppress")
}

/// Every value of the header `name` (any case), unfolded and trimmed.
fn header_values(message: &Message<'_>, name: &str) -> Vec<String> {
    message
        .headers_raw()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| unfold(v))
        .collect()
}

fn unfold(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `Name <a@b>` or `<a@b>` or `a@b` as `a@b`.
fn bare_address(value: &str) -> String {
    let v = value.trim();
    match (v.rfind('<'), v.rfind('>')) {
        (Some(l), Some(r)) if l < r => v[l + 1..r].trim().to_string(),
        _ => v.trim_matches(|c| c == '<' || c == '>').to_string(),
    }
}

/// The fields of one header block, as (name, unfolded value).
fn fields(block: &[u8]) -> Vec<(String, String)> {
    // A block that does not end in a blank line would read as headers and nothing more
    // anyway; the blank line makes the parser's end of headers unambiguous.
    let mut owned = block.to_vec();
    owned.extend_from_slice(b"\r\n\r\n");
    MessageParser::default()
        .parse_headers(&owned)
        .map(|m| {
            m.headers_raw()
                .map(|(n, v)| (n.to_string(), unfold(v)))
                .collect()
        })
        .unwrap_or_default()
}

/// The per-recipient blocks of a `message/delivery-status` body: the blocks after the
/// first (which is about the message), each with an `Action` and a `Status`.
fn delivery_status(body: &[u8]) -> Vec<RecipientStatus> {
    let text = String::from_utf8_lossy(body).replace("\r\n", "\n");
    let mut blocks = text.split("\n\n").map(str::trim).filter(|b| !b.is_empty());
    // The per-message block (Reporting-MTA, Arrival-Date, …).
    blocks.next();
    blocks
        .filter_map(|block| {
            let fields = fields(block.as_bytes());
            let get = |name: &str| {
                fields
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            let address = |name: &str| {
                get(name).map(|v| match v.split_once(';') {
                    Some((_, a)) => bare_address(a),
                    None => bare_address(&v),
                })
            };
            Some(RecipientStatus {
                final_recipient: address("Final-Recipient"),
                original_recipient: address("Original-Recipient"),
                action: get("Action")?.to_ascii_lowercase(),
                status: get("Status")?.split_whitespace().next()?.to_string(),
                diagnostic: get("Diagnostic-Code").map(|d| match d.split_once(';') {
                    Some((kind, text)) if !kind.contains(' ') => text.trim().to_string(),
                    _ => d,
                }),
            })
        })
        .collect()
}

fn original_of(message: &Message<'_>) -> Original {
    let first = |name: &str| header_values(message, name).into_iter().next();
    Original {
        message_id: first("Message-ID").map(|v| bare_address(&v)),
        list_id: first("List-Id"),
        return_path: first("Return-Path").map(|v| bare_address(&v)),
    }
}
