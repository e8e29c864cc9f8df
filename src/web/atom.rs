//! Atom 1.0 (RFC 4287) feeds, written by hand: a feed is a dozen elements, which does not
//! call for an XML library. Every value goes through [`escape`], so titles from the source
//! (which may hold `<`, `&` or quotes) stay text.

use chrono::{DateTime, SecondsFormat, Utc};

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
    /// The body, as HTML (escaped once more here, as `type="html"` content is).
    pub content_html: String,
}

impl Feed {
    pub fn to_xml(&self) -> String {
        let mut x = String::with_capacity(4096 + self.entries.len() * 8192);
        x.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
        x.push_str("<feed xmlns=\"http://www.w3.org/2005/Atom\">\n");
        element(&mut x, 1, "title", &self.title);
        element(&mut x, 1, "id", &self.id);
        element(&mut x, 1, "updated", &timestamp(self.updated));
        link(&mut x, 1, "self", "application/atom+xml", &self.self_url);
        link(&mut x, 1, "alternate", "text/html", &self.alternate_url);
        // Atom needs an author for every entry; one for the feed covers them all.
        x.push_str("  <author><name>paperboy</name></author>\n");
        element(&mut x, 1, "generator", "paperboy");
        for e in &self.entries {
            x.push_str("  <entry>\n");
            element(&mut x, 2, "title", &e.title);
            element(&mut x, 2, "id", &e.id);
            element(&mut x, 2, "updated", &timestamp(e.updated));
            link(&mut x, 2, "alternate", "text/html", &e.url);
            element(&mut x, 2, "summary", &e.summary);
            x.push_str("    <content type=\"html\">");
            x.push_str(&escape(&e.content_html));
            x.push_str("</content>\n");
            x.push_str("  </entry>\n");
        }
        x.push_str("</feed>\n");
        x
    }
}

fn element(x: &mut String, depth: usize, name: &str, text: &str) {
    x.push_str(&"  ".repeat(depth));
    x.push_str(&format!("<{name}>{}</{name}>\n", escape(text)));
}

fn link(x: &mut String, depth: usize, rel: &str, media: &str, href: &str) {
    x.push_str(&"  ".repeat(depth));
    x.push_str(&format!(
        "<link rel=\"{rel}\" type=\"{media}\" href=\"{}\"/>\n",
        escape(href)
    ));
}

/// RFC 3339, as Atom's dates are: `2025-12-09T08:00:00Z`.
fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Text made safe for XML text and attribute values. Characters XML 1.0 cannot hold at all
/// (most control characters) are left out: no reference would make them valid.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
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
            updated: at("2025-12-09T08:00:00Z"),
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
    fn escapes_markup_and_drops_what_xml_cannot_hold() {
        assert_eq!(
            escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &apos;Jerry&apos;&lt;/a&gt;"
        );
        assert_eq!(escape("a\u{0}b\u{1b}c\td\u{fffe}é"), "abc\tdé");
    }

    #[test]
    fn an_atom_parser_reads_it_back() {
        let tricky = r#"Attention <is> all & "you" need"#;
        let xml = feed(&[tricky, "Plain\u{7} title"]).to_xml();
        let parsed: atom_syndication::Feed = xml.parse().unwrap();
        assert_eq!(parsed.title.value, "Trending papers & more");
        assert_eq!(parsed.id, "http://127.0.0.1:8080/feed.xml");
        assert_eq!(parsed.updated.to_rfc3339(), "2025-12-09T08:00:00+00:00");
        let rels: Vec<(&str, &str)> = parsed
            .links
            .iter()
            .map(|l| (l.rel.as_str(), l.href.as_str()))
            .collect();
        assert_eq!(
            rels,
            [
                ("self", "http://127.0.0.1:8080/feed.xml"),
                ("alternate", "http://127.0.0.1:8080/editions?x=1&y=2")
            ]
        );
        assert_eq!(parsed.authors[0].name, "paperboy");
        assert_eq!(parsed.entries.len(), 2);
        let first = &parsed.entries[0];
        assert_eq!(first.title.value, tricky);
        assert_eq!(parsed.entries[1].title.value, "Plain title");
        assert_eq!(
            first.links[0].href,
            "http://127.0.0.1:8080/editions/2025-12-09"
        );
        assert_eq!(first.updated.to_rfc3339(), "2025-12-09T08:00:00+00:00");
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
}
