//! How a message's body goes on the wire: the text and HTML versions as one
//! `multipart/alternative`, each part `7bit` when it can go as it is and quoted-printable
//! otherwise, so the message stays 7-bit.
//!
//! The bodies' transfer encodings (`7bit` and quoted-printable, in `encode_body`) are our
//! own rather than lettre's `Body::new`, which inserts each CR one at a time and
//! quoted-printable encodes any part with a long line, byte by byte. Building one digest
//! into a message took 258 µs with lettre's encoding and 40 µs with ours, the HTML made
//! ASCII once per edition and sent as `7bit` (criterion, `cargo bench --bench render`, "one
//! digest built into a message", 2-core benchmark machine, recorded 2026-11-27 in
//! bench/RESULTS.md, "Parse and render").

use lettre::Message;
use lettre::message::header::{ContentTransferEncoding, ContentType, MIME_VERSION_1_0};
use lettre::message::{Body, MessageBuilder, MultiPart, SinglePart};

/// The message with the text and HTML versions as its body.
///
/// The `multipart/alternative` goes in as the message's own body, its Content-Type set as a
/// header of the message: lettre keeps a multipart's Content-Type apart from the message's
/// headers, where a DKIM signature cannot cover it. The bytes are what lettre's `multipart`
/// makes, plus a top-level `Content-Transfer-Encoding: 7bit`, which is true (the parts are
/// 7-bit) and allowed for a multipart (RFC 2045, 6.4).
pub(super) fn with_alternatives(
    message: MessageBuilder,
    text: &str,
    html: &str,
) -> Result<Message, lettre::error::Error> {
    let parts = alternative(text, html);
    let content_type = parts
        .headers()
        .get::<ContentType>()
        .expect("a multipart has its Content-Type");
    let formatted = parts.formatted();
    // `formatted` is the multipart's headers, a blank line, then the body.
    let body_starts = parts.headers().to_string().len() + 2;
    message
        .header(MIME_VERSION_1_0)
        .header(content_type)
        .body(Body::dangerous_pre_encoded(
            formatted[body_starts..].to_vec(),
            ContentTransferEncoding::SevenBit,
        ))
}

/// The text and HTML versions of a mail, each part encoded by [`encode_body`].
fn alternative(text: &str, html: &str) -> MultiPart {
    let part = |content_type, content| {
        SinglePart::builder()
            .header(content_type)
            .body(encode_body(content))
    };
    MultiPart::alternative()
        .singlepart(part(ContentType::TEXT_PLAIN, text))
        .singlepart(part(ContentType::TEXT_HTML, html))
}

/// Longest line RFC 5322 allows, without its CRLF.
const MAX_LINE: usize = 998;
/// Longest quoted-printable line (RFC 2045), a soft break's `=` included.
const QP_LINE: usize = 76;

/// A part's content ready for the wire. The message always stays 7-bit, so it goes through
/// servers without 8BITMIME too: content that can go as it is goes as `7bit` (line breaks
/// made CRLF, nothing else touched: the digest's HTML, which the renderer keeps ASCII),
/// anything else as quoted-printable.
///
/// Our own encoders rather than lettre's `Body::new`, which took some 250 µs per digest: it
/// inserts each CR into the string one at a time (moving the rest of the body every time),
/// and quoted-printable encodes anything with a line over 76 characters, byte by byte.
fn encode_body(content: &str) -> Body {
    match seven_bit(content) {
        Some(bytes) => Body::dangerous_pre_encoded(bytes, ContentTransferEncoding::SevenBit),
        None => Body::dangerous_pre_encoded(
            quoted_printable(content),
            ContentTransferEncoding::QuotedPrintable,
        ),
    }
}

/// `content` as `7bit`, line breaks made CRLF, if it can go so: ASCII without NUL or CR
/// (line breaks are LF; a CR is left to quoted-printable, which keeps a lone one intact),
/// lines of at most 998 octets, and no line starting with "From " (mbox delivery would
/// make it ">From "). Lines starting with "." are fine: SMTP dot-stuffing covers them.
fn seven_bit(content: &str) -> Option<Vec<u8>> {
    /// Bytes that need a look: line breaks, and what 7bit cannot carry as it is.
    fn special(b: u8) -> bool {
        (b == b'\n') | (b == b'\r') | (b == 0) | (b >= 0x80)
    }
    const CHUNK: usize = 16;
    let bytes = content.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32 + 2);
    let mut line_start = 0;
    let mut i = 0;
    loop {
        // Most bytes need nothing: skip them a chunk at a time (no early exit inside a
        // chunk, so the compiler can check all of it at once).
        while let Some(chunk) = bytes.get(i..i + CHUNK)
            && let Ok(chunk) = <&[u8; CHUNK]>::try_from(chunk)
            && !chunk.iter().fold(false, |any, &b| any | special(b))
        {
            i += CHUNK;
        }
        let end = bytes.len().min(i + CHUNK);
        let Some(at) = bytes[i..end].iter().position(|&b| special(b)) else {
            break; // The end, with nothing left to look at.
        };
        i += at;
        if bytes[i] != b'\n' {
            return None;
        }
        let line = &bytes[line_start..i];
        if line.len() > MAX_LINE || line.starts_with(b"From ") {
            return None;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        i += 1;
        line_start = i;
    }
    let line = &bytes[line_start..];
    if line.len() > MAX_LINE || line.starts_with(b"From ") {
        return None;
    }
    out.extend_from_slice(line);
    Some(out)
}

/// Quoted-printable (RFC 2045, 6.7) for text: a line break (LF or CRLF) stays a line break,
/// and every encoded line is at most 76 characters. Beyond what the RFC asks, a `.` or the
/// `F` of "From " at the start of a line is encoded too, so neither SMTP dot-stuffing gone
/// wrong nor mbox ">From " munging can change the text.
fn quoted_printable(content: &str) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    /// Bytes that stand for themselves, but for white space at the end of a line.
    const PLAIN: [bool; 256] = {
        let mut t = [false; 256];
        let mut b = 0;
        while b < 256 {
            t[b] = matches!(b as u8, b' ' | b'\t' | b'!'..=b'<' | b'>'..=b'~');
            b += 1;
        }
        t
    };
    let bytes = content.as_bytes();
    // Whether a line break (or the end) follows at `at`.
    let line_ends =
        |at: usize| matches!(bytes.get(at..), Some([] | [b'\n', ..] | [b'\r', b'\n', ..]));
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 8 + 16);
    let mut col = 0;
    let mut i = 0;
    while i < bytes.len() {
        // The common case, in one copy: a run of plain bytes past the start of a line, as
        // much as fits before a soft break. White space just before a line break is left
        // for below.
        if col > 0 {
            let max = (bytes.len() - i).min((QP_LINE - 1).saturating_sub(col));
            let mut run = bytes[i..i + max]
                .iter()
                .position(|&b| !PLAIN[usize::from(b)])
                .unwrap_or(max);
            if run > 0 && matches!(bytes[i + run - 1], b' ' | b'\t') && line_ends(i + run) {
                run -= 1;
            }
            out.extend_from_slice(&bytes[i..i + run]);
            col += run;
            i += run;
            if i == bytes.len() {
                break;
            }
        }
        let b = bytes[i];
        if b == b'\n' || (b == b'\r' && bytes.get(i + 1) == Some(&b'\n')) {
            out.extend_from_slice(b"\r\n");
            col = 0;
            i += if b == b'\r' { 2 } else { 1 };
            continue;
        }
        let last = line_ends(i + 1);
        let literal = |col: usize| match b {
            // Trailing white space may be stripped on the way: encode it.
            b' ' | b'\t' => !last,
            b'.' => col > 0,
            b'F' => col > 0 || !bytes[i..].starts_with(b"From "),
            _ => PLAIN[usize::from(b)],
        };
        // Room for the `=` of a soft break, unless this is the last byte of the line.
        let limit = if last { QP_LINE } else { QP_LINE - 1 };
        let mut width = if literal(col) { 1 } else { 3 };
        if col + width > limit {
            out.extend_from_slice(b"=\r\n");
            col = 0;
            width = if literal(col) { 1 } else { 3 };
        }
        if width == 1 {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
        col += width;
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use mailparse::{MailHeaderMap, ParsedMail};
    use proptest::prelude::*;

    use super::*;
    use crate::domain::{Author, EditionDate, Paper, PaperId, Subscriber};
    use crate::mail::test_support::to;
    use crate::mail::{Mailer, Outgoing};
    use crate::render::{EditionTemplate, Personal};

    fn mailer(dir: &std::path::Path) -> Mailer {
        let settings = crate::config::Settings {
            data_dir: dir.to_path_buf(),
            ..crate::config::Settings::default()
        };
        Mailer::new(&settings.mail, &settings.outbox_dir()).unwrap()
    }

    /// LF line breaks, as the parts are rendered, whatever the wire had.
    fn lf(s: &str) -> String {
        s.replace("\r\n", "\n")
    }

    /// The message's parts, checked for shape on the way: multipart/alternative with a text
    /// and an HTML part, one Content-Type each, 7-bit, no line too long, none to be munged.
    fn parts<'a>(raw: &'a [u8], parsed: &'a ParsedMail<'a>) -> (String, String) {
        assert!(raw.is_ascii(), "the message is 7-bit");
        let raw = std::str::from_utf8(raw).unwrap();
        for line in raw.split("\r\n") {
            assert!(
                !line.contains('\n') && !line.contains('\r'),
                "bare line break"
            );
            assert!(line.len() <= MAX_LINE, "a line of {} octets", line.len());
            assert!(!line.starts_with("From "), "{line}");
        }
        assert_eq!(parsed.ctype.mimetype, "multipart/alternative");
        let types: Vec<_> = parsed
            .subparts
            .iter()
            .map(|p| p.ctype.mimetype.as_str())
            .collect();
        assert_eq!(types, ["text/plain", "text/html"]);
        for p in std::iter::once(parsed).chain(&parsed.subparts) {
            assert_eq!(p.headers.get_all_values("Content-Type").len(), 1);
        }
        for p in &parsed.subparts {
            assert_eq!(p.ctype.charset, "utf-8");
            let cte = p
                .headers
                .get_first_value("Content-Transfer-Encoding")
                .unwrap();
            assert!(cte == "7bit" || cte == "quoted-printable", "{cte}");
        }
        (
            parsed.subparts[0].get_body().unwrap(),
            parsed.subparts[1].get_body().unwrap(),
        )
    }

    #[test]
    fn awkward_bodies_round_trip_through_a_mail_parser() {
        let long_ascii = "x".repeat(2000);
        let long_words = "word ".repeat(300);
        let long_utf8 = "日本語のタイトル — Ünïcödé ".repeat(60);
        let text = format!(
            "TRENDING PAPERS · Tuesday\n\
             .\n\
             .starts with a dot\n\
             ..two dots\n\
             From the abstract: we find\n\
             From\n\
             Fromage is not a line to munge\n\
             trailing space \n\
             trailing tab\t\n\
             a=b, =41, =\n\
             {long_ascii}\n\
             {long_words}\n\
             {long_utf8}\n\
             Emoji 📬 and ★ 12 and ▲ 3 · Zoë Çelik, Łukasz Żółć et al.\n\
             \n\
             {}\n\
             last line without a break",
            "é".repeat(37),
        );
        let html = format!(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body>\n\
             <p style=\"margin: 0;\">Über «Straße» 中文 🚀</p>\n\
             .\n\
             .dot\n\
             From here\n\
             <p>{long_utf8}</p><p>{long_ascii}</p>\n\
             </body></html>\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let mailer = mailer(dir.path());
        let subject = "Trending papers, Dec 9: Ünïcödé — 日本語 and 9 more";
        let message = mailer
            .build(Outgoing {
                to: &to(),
                subject,
                text: text.clone(),
                html: html.clone(),
                message_id: "<digest.2025-12-09.1@example.org>",
                unsubscribe_url: "https://p.example.org/unsubscribe?token=abc",
            })
            .unwrap();
        let parsed = mailparse::parse_mail(&message.bytes).unwrap();
        let (got_text, got_html) = parts(&message.bytes, &parsed);
        assert_eq!(lf(&got_text), text);
        assert_eq!(lf(&got_html), html);
        let header = |name| parsed.headers.get_first_value(name).unwrap();
        assert_eq!(header("Subject"), subject);
        assert_eq!(header("Message-ID"), "<digest.2025-12-09.1@example.org>");
        assert_eq!(
            header("List-Unsubscribe"),
            "<https://p.example.org/unsubscribe?token=abc>"
        );
        assert_eq!(
            header("List-Unsubscribe-Post"),
            "List-Unsubscribe=One-Click"
        );
        assert_eq!(header("List-Id"), "Trending papers <digest.example.org>");
        assert_eq!(header("Auto-Submitted"), "auto-generated");
    }

    #[test]
    fn a_rendered_digest_goes_as_7bit_html_and_quoted_printable_text() {
        let mut papers: Vec<Paper> = (0..3)
            .map(|i| {
                let mut p = Paper::new(
                    PaperId::parse(&format!("2512.0000{i}")).unwrap(),
                    format!("Über-Modelle {i}: 大規模言語モデル — «test» & <b>"),
                    10 - i,
                );
                p.authors = ["Zoë Çelik", "Łukasz Żółć", "José Núñez", "Ada"]
                    .iter()
                    .map(|n| Author {
                        name: n.to_string(),
                    })
                    .collect();
                p.summary = "Wir zeigen, daß 📈 größer wird. ".repeat(20);
                p
            })
            .collect();
        papers[1].ai_summary = Some("Short AI summary with a = sign…".into());
        let date = EditionDate::parse("2025-12-09").unwrap();
        let template =
            EditionTemplate::new(date, &papers, "https://p.example.org", &Default::default())
                .unwrap();
        let ids: Vec<PaperId> = papers.iter().map(|p| p.id.clone()).collect();
        let personal = Personal {
            why: "up to 10 trending papers about «Über»".into(),
            preferences_url: "https://p.example.org/preferences?token=abc".into(),
            unsubscribe_url: "https://p.example.org/unsubscribe?token=abc".into(),
            late: Vec::new(),
            weekly: false,
            keywords: Default::default(),
            browser: Default::default(),
        };
        let r = template.digest(&ids, &personal).unwrap();
        assert!(r.html.is_ascii(), "the renderer keeps the HTML ASCII");

        let dir = tempfile::tempdir().unwrap();
        let mailer = mailer(dir.path());
        let subscriber = Subscriber::new(to(), Default::default(), true);
        let message = mailer
            .build(Outgoing {
                to: &subscriber.email,
                subject: &r.subject,
                text: r.text.clone(),
                html: r.html.clone(),
                message_id: &mailer.message_id(date, subscriber.id),
                unsubscribe_url: &personal.unsubscribe_url,
            })
            .unwrap();
        let parsed = mailparse::parse_mail(&message.bytes).unwrap();
        let (text, html) = parts(&message.bytes, &parsed);
        assert_eq!(lf(&text), r.text);
        assert_eq!(lf(&html), r.html);
        let cte = |i: usize| {
            parsed.subparts[i]
                .headers
                .get_first_value("Content-Transfer-Encoding")
                .unwrap()
        };
        assert_eq!(cte(0), "quoted-printable");
        assert_eq!(cte(1), "7bit");
        assert_eq!(
            parsed.headers.get_first_value("Subject").unwrap(),
            "Dec 9: Über-Modelle 0: 大規模言語モデル — «test» & <b> + 2 more"
        );
        assert!(text.contains("Zoë Çelik, Łukasz Żółć, José Núñez et al."));
        // What a mail client shows of the HTML: the same characters.
        let shown: String = scraper::Html::parse_document(&html)
            .root_element()
            .text()
            .collect();
        assert!(shown.contains("Über-Modelle 1: 大規模言語モデル — «test» & <b>"));
        assert!(shown.contains("Zoë Çelik, Łukasz Żółć, José Núñez et al."));
        assert!(shown.contains("Short AI summary with a = sign…"));
        assert!(shown.contains("about «Über»"));
    }

    #[test]
    fn quoted_printable_lines() {
        let qp = |s: &str| String::from_utf8(quoted_printable(s)).unwrap();
        assert_eq!(qp("a=b\nc \n\tx\t"), "a=3Db\r\nc=20\r\n\tx=09");
        assert_eq!(
            qp(".\n..\nFrom me\nFrome"),
            "=2E\r\n=2E.\r\n=46rom me\r\nFrome"
        );
        assert_eq!(qp("Ü\r\n\r"), "=C3=9C\r\n=0D");
        // 76 characters fit on a line of their own; 77 need a soft break, after 75.
        assert_eq!(qp(&"a".repeat(76)), "a".repeat(76));
        assert_eq!(qp(&"a".repeat(77)), format!("{}=\r\naa", "a".repeat(75)));
        // An escape is never cut by a soft break, and a line never starts a "From ".
        let s = format!("{}éFrom x", "a".repeat(73));
        assert_eq!(qp(&s), format!("{}=\r\n=C3=A9From x", "a".repeat(73)));
        let s = format!("{}From x", "a".repeat(75));
        assert_eq!(qp(&s), format!("{}=\r\n=46rom x", "a".repeat(75)));
    }

    #[test]
    fn seven_bit_only_when_it_is_safe() {
        let seven = |s: &str| seven_bit(s).map(|b| String::from_utf8(b).unwrap());
        assert_eq!(
            seven("<p>plain</p>\n.\nfrom here\n\n").unwrap(),
            "<p>plain</p>\r\n.\r\nfrom here\r\n\r\n"
        );
        assert_eq!(seven(""), Some(String::new()));
        let long = "x".repeat(MAX_LINE);
        assert_eq!(
            seven(&format!("{long}\n{long}")).unwrap(),
            format!("{long}\r\n{long}")
        );
        assert_eq!(seven(&format!("{long}x")), None);
        assert_eq!(seven(&format!("{long}x\nshort")), None);
        assert_eq!(seven(&format!("{}caf\u{e9}", "a".repeat(40))), None);
        assert_eq!(seven("a\r\nb"), None);
        assert_eq!(seven("a\rb"), None);
        assert_eq!(seven("a\0b"), None);
        assert_eq!(seven("ok\nFrom me"), None);
        assert_eq!(seven("From me"), None);
    }

    proptest! {
        /// Whatever the text, what a mail parser decodes is what went in, line breaks made
        /// CRLF, and what goes on the wire is 7-bit with lines a server takes.
        #[test]
        fn any_body_round_trips(
            content in prop_oneof![
                r"(\PC|[\t\r\n .=F ]|From |\.|é|📬| \n|\r\n){0,400}",
                // ASCII, now and then with a line too long for 7bit.
                r"([ -~]{0,1100}\n(From |\.)?){0,4}",
            ]
        ) {
            let body = encode_body(&content);
            let cte = match body.encoding() {
                ContentTransferEncoding::SevenBit => "7bit",
                ContentTransferEncoding::QuotedPrintable => "quoted-printable",
                other => panic!("{other:?}"),
            };
            let wire = body.into_vec();
            prop_assert!(wire.is_ascii());
            let limit = if cte == "7bit" { MAX_LINE } else { QP_LINE };
            for line in wire.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                prop_assert!(line.len() <= limit);
                prop_assert!(!line.starts_with(b"From "));
                prop_assert!(!line.contains(&b'\r'));
                if cte != "7bit" {
                    prop_assert!(!line.starts_with(b"."));
                }
            }
            let mut raw = format!(
                "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: {cte}\r\n\r\n"
            )
            .into_bytes();
            raw.extend_from_slice(&wire);
            let parsed = mailparse::parse_mail(&raw).unwrap();
            let expected = content.replace("\r\n", "\n").replace('\n', "\r\n");
            prop_assert_eq!(parsed.get_body_raw().unwrap(), expected.into_bytes());
        }
    }
}
