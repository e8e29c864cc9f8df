//! Atom 1.0 (RFC 4287) feeds, written with `atom_syndication`: the crate lays out the
//! elements and escapes markup in text and attribute values, so titles from the source
//! (which may hold `<`, `&` or quotes) stay text.
//!
//! One thing the crate does not do: it writes control characters through as they are, and
//! most of them (U+0000–U+001F but tab, newline and carriage return; U+FFFE, U+FFFF) make
//! the document ill-formed, since XML 1.0 has no way to hold them, not even a character
//! reference. A source title with a stray BEL would then break the whole feed in every
//! reader, so every value goes through [`xml_chars`] first.

use std::borrow::Cow;

use atom_syndication as atom;
use chrono::{DateTime, SubsecRound, Utc};

/// The media type feeds are served as.
pub const CONTENT_TYPE: &str = "application/atom+xml; charset=utf-8";

/// A feed and its entries, newest first.
pub struct Feed {
    pub title: String,
    /// A permanent IRI: the feed's own address.
    pub id: String,
    pub updated: DateTime<Utc>,
    pub self_url: String,
    /// The web page the feed follows.
    pub alternate_url: String,
    pub entries: Vec<Entry>,
}

pub struct Entry {
    pub title: String,
    /// A permanent IRI, unique among all entries of all paperboy's feeds.
    pub id: String,
    pub updated: DateTime<Utc>,
    /// The entry's web page.
    pub url: String,
    /// One line, as plain text.
    pub summary: String,
    /// The body, as HTML (escaped once more on writing, as `type="html"` content is).
    pub content_html: String,
}

impl Feed {
    pub fn to_xml(&self) -> String {
        let feed = atom::Feed {
            title: text(&self.title),
            id: xml_chars(&self.id).into_owned(),
            updated: timestamp(self.updated),
            links: vec![
                link("self", "application/atom+xml", &self.self_url),
                link("alternate", "text/html", &self.alternate_url),
            ],
            // Atom needs an author for every entry; one for the feed covers them all.
            authors: vec![atom::Person {
                name: "paperboy".into(),
                ..Default::default()
            }],
            generator: Some(atom::Generator {
                value: "paperboy".into(),
                ..Default::default()
            }),
            entries: self.entries.iter().map(Entry::to_atom).collect(),
            ..Default::default()
        };
        let config = atom::WriteConfig {
            write_document_declaration: true,
            indent_size: Some(2),
        };
        let mut xml = feed
            .write_with_config(Vec::with_capacity(4096 + self.entries.len() * 8192), config)
            // The only errors are the writer's, and a Vec does not fail to grow.
            .expect("writing into memory");
        xml.push(b'\n');
        // The crate writes the str it was given, escaped: UTF-8 in, UTF-8 out.
        String::from_utf8(xml).expect("the crate writes UTF-8")
    }
}

impl Entry {
    fn to_atom(&self) -> atom::Entry {
        atom::Entry {
            title: text(&self.title),
            id: xml_chars(&self.id).into_owned(),
            updated: timestamp(self.updated),
            links: vec![link("alternate", "text/html", &self.url)],
            summary: Some(text(&self.summary)),
            content: Some(atom::Content {
                value: Some(xml_chars(&self.content_html).into_owned()),
                content_type: Some("html".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

fn text(s: &str) -> atom::Text {
    atom::Text::plain(xml_chars(s))
}

fn link(rel: &str, media: &str, href: &str) -> atom::Link {
    atom::Link {
        rel: rel.into(),
        mime_type: Some(media.into()),
        href: xml_chars(href).into_owned(),
        ..Default::default()
    }
}

/// Atom's dates are RFC 3339; whole seconds are precise enough for a feed reader and keep
/// the stamps short: `2025-12-09T08:00:00+00:00`.
fn timestamp(t: DateTime<Utc>) -> atom::FixedDateTime {
    t.trunc_subsecs(0).fixed_offset()
}

/// `s` without the characters XML 1.0 cannot hold at all (most control characters): no
/// escape or reference would make them valid, so they are left out. Markup characters are
/// kept; the crate escapes those.
pub fn xml_chars(s: &str) -> Cow<'_, str> {
    fn allowed(c: char) -> bool {
        !matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{c}' | '\u{e}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}')
    }
    if s.chars().all(allowed) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.chars().filter(|&c| allowed(c)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn feed(titles: &[&str]) -> Feed {
        Feed {
            title: "Trending papers & more".into(),
            id: "http://127.0.0.1:8080/feed.xml".into(),
            updated: at("2025-12-09T08:00:00.123456Z"),
            self_url: "http://127.0.0.1:8080/feed.xml".into(),
            alternate_url: "http://127.0.0.1:8080/editions?x=1&y=2".into(),
            entries: titles
                .iter()
                .enumerate()
                .map(|(i, t)| Entry {
                    title: t.to_string(),
                    id: format!("http://127.0.0.1:8080/editions/2025-12-0{}", 9 - i),
                    updated: at("2025-12-09T08:00:00Z") - chrono::Duration::days(i as i64),
                    url: format!("http://127.0.0.1:8080/editions/2025-12-0{}", 9 - i),
                    summary: format!("about {t}"),
                    content_html: format!(
                        "<p><a href=\"https://x.org/?a=1&amp;b=2\">{}</a></p>",
                        t.replace('&', "&amp;").replace('<', "&lt;")
                    ),
                })
                .collect(),
        }
    }

    #[test]
    fn drops_what_xml_cannot_hold_and_keeps_the_rest() {
        assert_eq!(xml_chars("a\u{0}b\u{1b}c\td\u{fffe}é\r\n"), "abc\tdé\r\n");
        let plain = r#"<a href="x">Tom & 'Jerry'</a>"#;
        assert!(matches!(xml_chars(plain), Cow::Borrowed(s) if s == plain));
    }

    /// Why [`xml_chars`] is there: left to itself, the crate writes a control character as
    /// it is, which makes the document one that XML parsers must refuse. Should a later
    /// version filter or refuse them, this fails and the filter can go.
    #[test]
    fn the_crate_alone_writes_control_characters_through() {
        let bare = atom::Feed {
            title: "a\u{7}b".into(),
            ..Default::default()
        };
        assert!(bare.to_string().contains("<title>a\u{7}b</title>"));
    }

    #[test]
    fn markup_in_values_is_escaped() {
        let xml = feed(&[r#"<b>Tom</b> & "Jerry" 'x'"#]).to_xml();
        assert!(
            xml.starts_with(
                "<?xml version=\"1.0\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">"
            )
        );
        assert!(
            xml.contains(
                "<title>&lt;b&gt;Tom&lt;/b&gt; &amp; &quot;Jerry&quot; &apos;x&apos;</title>"
            ),
            "{xml}"
        );
        assert!(xml.contains("href=\"http://127.0.0.1:8080/editions?x=1&amp;y=2\""));
        assert!(!xml.contains("<b>"));
        // Whole seconds, as the input had more.
        assert!(
            xml.contains("<updated>2025-12-09T08:00:00+00:00</updated>"),
            "{xml}"
        );
    }

    #[test]
    fn an_atom_parser_reads_it_back() {
        let tricky = r#"Attention <is> all & "you" need"#;
        let xml = feed(&[tricky, "Plain\u{7} title\u{0}"]).to_xml();
        let parsed: atom::Feed = xml.parse().unwrap();
        assert_eq!(parsed.title.value, "Trending papers & more");
        assert_eq!(parsed.id, "http://127.0.0.1:8080/feed.xml");
        assert_eq!(parsed.updated.to_rfc3339(), "2025-12-09T08:00:00+00:00");
        let rels: Vec<(&str, &str, Option<&str>)> = parsed
            .links
            .iter()
            .map(|l| (l.rel.as_str(), l.href.as_str(), l.mime_type.as_deref()))
            .collect();
        assert_eq!(
            rels,
            [
                (
                    "self",
                    "http://127.0.0.1:8080/feed.xml",
                    Some("application/atom+xml")
                ),
                (
                    "alternate",
                    "http://127.0.0.1:8080/editions?x=1&y=2",
                    Some("text/html")
                )
            ]
        );
        assert_eq!(parsed.authors[0].name, "paperboy");
        assert_eq!(parsed.generator.as_ref().unwrap().value, "paperboy");
        assert_eq!(parsed.entries.len(), 2);
        let first = &parsed.entries[0];
        assert_eq!(first.title.value, tricky);
        assert_eq!(first.id, "http://127.0.0.1:8080/editions/2025-12-09");
        assert_eq!(parsed.entries[1].title.value, "Plain title");
        assert_eq!(
            parsed.entries[1].summary.as_ref().unwrap().value,
            "about Plain title"
        );
        assert_eq!(
            (first.links[0].rel.as_str(), first.links[0].href.as_str()),
            ("alternate", "http://127.0.0.1:8080/editions/2025-12-09")
        );
        assert_eq!(first.updated.to_rfc3339(), "2025-12-09T08:00:00+00:00");
        assert_eq!(
            first.summary.as_ref().unwrap().value,
            format!("about {tricky}")
        );
        let content = first.content.as_ref().unwrap();
        assert_eq!(content.content_type.as_deref(), Some("html"));
        // The HTML comes back as it went in: escaped once, for HTML.
        assert_eq!(
            content.value.as_deref(),
            Some(
                r#"<p><a href="https://x.org/?a=1&amp;b=2">Attention &lt;is> all &amp; "you" need</a></p>"#
            )
        );
    }

    #[test]
    fn a_feed_without_entries_is_still_a_feed() {
        let xml = feed(&[]).to_xml();
        let parsed: atom::Feed = xml.parse().unwrap();
        assert!(parsed.entries.is_empty());
        assert_eq!(parsed.authors[0].name, "paperboy");
    }
}
