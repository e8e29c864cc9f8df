//! The demo's outbox read back: the `.eml` files the file transport wrote, parsed as a mail
//! program would (headers decoded, the text and HTML parts taken apart), so the pages can
//! show each message as its reader would see it.

use std::path::Path;
use std::time::SystemTime;

use mailparse::{MailHeaderMap, ParsedMail};

/// One message of the outbox.
pub struct Message {
    /// The file's name without `.eml`: how the pages name it.
    pub name: String,
    pub written: SystemTime,
    /// Every header of the message, decoded, in order.
    pub headers: Vec<(String, String)>,
    pub subject: String,
    pub to: String,
    /// A digest carries an unsubscribe header; the mails about a subscription do not.
    pub is_digest: bool,
    pub text: Option<String>,
    pub html: Option<String>,
}

/// Whether `name` can name an outbox file: the file transport's names are UUIDs, and
/// nothing else may reach a path.
pub fn is_message_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Every message in `dir`, newest first. Files that cannot be read as a message (one still
/// being written) are left out.
pub fn list(dir: &Path) -> Vec<Message> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut messages: Vec<Message> = entries
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_name()?.to_str()?.strip_suffix(".eml")?;
            if !is_message_name(name) {
                return None;
            }
            read(dir, name)
        })
        .collect();
    messages.sort_by(|a, b| b.written.cmp(&a.written).then(b.name.cmp(&a.name)));
    messages
}

/// The message `name` of `dir`, if there is one.
pub fn read(dir: &Path, name: &str) -> Option<Message> {
    if !is_message_name(name) {
        return None;
    }
    let path = dir.join(format!("{name}.eml"));
    let written = std::fs::metadata(&path).ok()?.modified().ok()?;
    let raw = std::fs::read(&path).ok()?;
    let mail = mailparse::parse_mail(&raw).ok()?;
    // A file opened but not yet written has no headers yet.
    mail.headers.get_first_value("From")?;
    let headers = mail
        .headers
        .iter()
        .map(|h| (h.get_key(), h.get_value()))
        .collect();
    Some(Message {
        name: name.to_string(),
        written,
        headers,
        subject: mail.headers.get_first_value("Subject").unwrap_or_default(),
        to: mail.headers.get_first_value("To").unwrap_or_default(),
        is_digest: mail.headers.get_first_value("List-Unsubscribe").is_some(),
        text: part(&mail, "text/plain"),
        html: part(&mail, "text/html"),
    })
}

/// The body of the first part of type `mime`, decoded, looking into multiparts.
fn part(mail: &ParsedMail<'_>, mime: &str) -> Option<String> {
    if mail.ctype.mimetype == mime {
        return mail.get_body().ok();
    }
    mail.subparts.iter().find_map(|p| part(p, mime))
}

/// A run of text, or a link to show as one.
pub struct Piece {
    pub text: String,
    pub link: bool,
}

/// `text` cut into plain runs and http(s) addresses, which a mail program would make
/// links of. Punctuation that ends a sentence is not part of an address.
pub fn pieces(text: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut plain = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        let at = ["http://", "https://"]
            .iter()
            .filter_map(|scheme| rest.find(scheme))
            .min();
        let Some(at) = at else {
            plain.push_str(rest);
            break;
        };
        plain.push_str(&rest[..at]);
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"'))
            .unwrap_or(tail.len());
        let link = tail[..end].trim_end_matches(['.', ',', ';', ':', ')', '!', '?']);
        if !plain.is_empty() {
            out.push(Piece {
                text: std::mem::take(&mut plain),
                link: false,
            });
        }
        out.push(Piece {
            text: link.to_string(),
            link: true,
        });
        rest = &tail[link.len()..];
    }
    if !plain.is_empty() {
        out.push(Piece {
            text: plain,
            link: false,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_become_links_and_the_rest_stays_text() {
        let shown: Vec<(String, bool)> =
            pieces("Confirm: https://x.org/confirm?token=a.b-c.\n(see http://y.org/p) end")
                .into_iter()
                .map(|p| (p.text, p.link))
                .collect();
        assert_eq!(
            shown,
            [
                ("Confirm: ".to_string(), false),
                ("https://x.org/confirm?token=a.b-c".to_string(), true),
                (".\n(see ".to_string(), false),
                ("http://y.org/p".to_string(), true),
                (") end".to_string(), false),
            ]
        );
        assert!(pieces("no links here").iter().all(|p| !p.link));
        assert!(pieces("").is_empty());
    }

    #[test]
    fn only_the_transport_s_names_name_a_file() {
        assert!(is_message_name("9f1c2d3e-0000-4abc-8def-0123456789ab"));
        for bad in ["", "../secret", "a/b", "x.eml", "a b", &"a".repeat(65)] {
            assert!(!is_message_name(bad), "{bad}");
        }
    }
}
