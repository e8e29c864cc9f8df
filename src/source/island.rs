//! Where a Hugging Face page keeps its papers: the `data-props` of the `DailyPapers` data
//! island, found the way a browser reads the page's tags.
//!
//! It is found by html5ever's tokenizer, which reads tags and attributes (character
//! references decoded) exactly as a browser's does, switching to raw text inside `script`,
//! `style`, `textarea` and the like as a browser's tree builder tells it to. No tree is
//! built: html5ever's tree builder checks the stack of open elements at every tag, so a
//! page of deeply nested tags took time quadratic in its length (a 48 KB page of nested
//! `div`s, 25 s in a debug build; 195 KB, over 6 minutes), and a source page is not ours.
//! The tokenizer takes time linear in the page's length. An earlier hand-written reader
//! that cut the island's tag out of the text was removed: it was not how a browser reads a
//! page. Figures in bench/RESULTS.md (`cargo bench --bench parse`).
//!
//! Inside `svg` and `math` (foreign content) it follows the tree builder as far as
//! well-nested content goes: `<![CDATA[` opens text, `style` and `title` are not raw text,
//! `foreignObject` and its like read HTML again, and a tag no foreign element may hold ends
//! it. Misnested foreign content (an `svg` closed by the end tag of an HTML element around
//! it) and what the tree builder drops once read (`frameset` pages, tags in `select`) are
//! not followed; no listing page has them. A property test holds the finder to scraper's
//! whole tree on generated pages.

use std::cell::{Cell, RefCell};

use html5ever::LocalName;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, StartTag, Tag, TagToken, Token, TokenSink, TokenSinkResult, Tokenizer,
    TokenizerOpts,
};

/// The unescaped `data-props` of the first `DailyPapers` island (a
/// `div.SVELTE_HYDRATER[data-target="DailyPapers"]` that has them), as a browser reads the
/// page's tags.
pub fn props(body: &str) -> Option<String> {
    let tokenizer = Tokenizer::new(IslandFinder::default(), TokenizerOpts::default());
    let input = BufferQueue::default();
    input.push_back(body.into());
    // The finder never asks to stop for a script, so one feed reads the whole page.
    let _ = tokenizer.feed(&input);
    tokenizer.end();
    tokenizer.sink.found.into_inner()
}

/// Watches the tags go by for the island, and tells the tokenizer what a browser's tree
/// builder would: where text is raw (a `<div>` written inside a script is not a tag), and,
/// inside `svg` and `math`, that `<![CDATA[` opens text rather than a comment.
#[derive(Default)]
struct IslandFinder {
    found: RefCell<Option<String>>,
    /// The open elements of foreign content (`foreign`) and the HTML integration points in
    /// it (not), innermost last; empty in plain HTML. HTML elements are not tracked.
    frames: RefCell<Vec<Frame>>,
    /// Foreign content nested deeper than [`MAX_FOREIGN_DEPTH`]: nothing more is read as
    /// an island, since where it ends can no longer be told for certain.
    too_deep: Cell<bool>,
}

struct Frame {
    name: LocalName,
    /// A foreign element (else an HTML integration point, whose content is HTML).
    foreign: bool,
    /// In SVG (else MathML): which foreign elements are integration points depends on it.
    svg: bool,
}

/// Browsers cap how deep a document nests, too; the cap also bounds the search for a
/// closing tag's element, keeping the reading linear in the page's length.
const MAX_FOREIGN_DEPTH: usize = 512;

impl IslandFinder {
    fn in_foreign(&self) -> bool {
        self.frames.borrow().last().is_some_and(|f| f.foreign)
    }

    /// Closes the open element named `name` and everything opened inside it, if it is open.
    fn close(&self, name: &str) {
        let mut frames = self.frames.borrow_mut();
        if let Some(at) = frames.iter().rposition(|f| &*f.name == name) {
            frames.truncate(at);
        }
    }

    /// A tag that no foreign element may hold ends foreign content, back to the nearest
    /// HTML integration point (or to plain HTML).
    fn break_out(&self) {
        let mut frames = self.frames.borrow_mut();
        while frames.last().is_some_and(|f| f.foreign) {
            frames.pop();
        }
    }

    fn open(&self, name: &LocalName, foreign: bool, svg: bool) {
        let mut frames = self.frames.borrow_mut();
        if frames.len() >= MAX_FOREIGN_DEPTH {
            self.too_deep.set(true);
        } else {
            frames.push(Frame {
                name: name.clone(),
                foreign,
                svg,
            });
        }
    }

    /// A start tag read as HTML: the island, raw text, or the way into foreign content.
    fn html_start(&self, tag: &Tag) -> TokenSinkResult<()> {
        let attr = |name: &str| attr(tag, name);
        match &*tag.name {
            "div" if self.found.borrow().is_none() && !self.too_deep.get() => {
                let is_island = attr("class")
                    .is_some_and(|c| c.split_ascii_whitespace().any(|c| c == "SVELTE_HYDRATER"))
                    && attr("data-target") == Some("DailyPapers");
                if is_island && let Some(props) = attr("data-props") {
                    *self.found.borrow_mut() = Some(props.to_string());
                }
                TokenSinkResult::Continue
            }
            "svg" | "math" if !tag.self_closing => {
                self.open(&tag.name, true, &*tag.name == "svg");
                TokenSinkResult::Continue
            }
            "script" => TokenSinkResult::RawData(RawKind::ScriptData),
            // Raw text, as html5ever's tree builder has it with scripting on (scraper's
            // default), `noscript` included.
            "style" | "xmp" | "iframe" | "noembed" | "noframes" | "noscript" => {
                TokenSinkResult::RawData(RawKind::Rawtext)
            }
            "title" | "textarea" => TokenSinkResult::RawData(RawKind::Rcdata),
            "plaintext" => TokenSinkResult::Plaintext,
            _ => TokenSinkResult::Continue,
        }
    }
}

fn attr<'t>(tag: &'t Tag, name: &str) -> Option<&'t str> {
    tag.attrs
        .iter()
        .find(|a| a.name.ns.is_empty() && &*a.name.local == name)
        .map(|a| &*a.value)
}

/// Start tags that end foreign content (the HTML standard's list for "in foreign content").
const BREAK_OUT: &[&str] = &[
    "b",
    "big",
    "blockquote",
    "body",
    "br",
    "center",
    "code",
    "dd",
    "div",
    "dl",
    "dt",
    "em",
    "embed",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "head",
    "hr",
    "i",
    "img",
    "li",
    "listing",
    "menu",
    "meta",
    "nobr",
    "ol",
    "p",
    "pre",
    "ruby",
    "s",
    "small",
    "span",
    "strong",
    "strike",
    "sub",
    "sup",
    "table",
    "tt",
    "u",
    "ul",
    "var",
];

fn breaks_out(tag: &Tag) -> bool {
    BREAK_OUT.contains(&&*tag.name)
        || (&*tag.name == "font"
            && ["color", "face", "size"]
                .iter()
                .any(|a| attr(tag, a).is_some()))
}

/// Foreign elements whose content is read as HTML again, in SVG (`svg`) or MathML.
fn integration_point(tag: &Tag, svg: bool) -> bool {
    match &*tag.name {
        "foreignobject" | "desc" | "title" => svg,
        "mi" | "mo" | "mn" | "ms" | "mtext" => !svg,
        "annotation-xml" => {
            !svg && attr(tag, "encoding").is_some_and(|e| {
                e.eq_ignore_ascii_case("text/html")
                    || e.eq_ignore_ascii_case("application/xhtml+xml")
            })
        }
        _ => false,
    }
}

impl TokenSink for IslandFinder {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let TagToken(tag) = token else {
            return TokenSinkResult::Continue;
        };
        if tag.kind == StartTag {
            if self.in_foreign() {
                if !breaks_out(&tag) {
                    if !tag.self_closing {
                        // A foreign element takes its parent's namespace, whatever its name
                        // (`<svg>` in MathML is a MathML element), but for an `<svg>` right in
                        // `annotation-xml`, which is SVG.
                        let svg = match self.frames.borrow().last() {
                            Some(f) if !f.svg && &*f.name == "annotation-xml" => {
                                &*tag.name == "svg"
                            }
                            Some(f) => f.svg,
                            None => false,
                        };
                        self.open(&tag.name, !integration_point(&tag, svg), svg);
                    }
                    return TokenSinkResult::Continue;
                }
                self.break_out();
            }
            return self.html_start(&tag);
        }
        if self.in_foreign() && matches!(&*tag.name, "br" | "p") {
            self.break_out();
        } else {
            self.close(&tag.name);
        }
        TokenSinkResult::Continue
    }

    /// An HTML integration point is a foreign element too: right inside one, `<![CDATA[`
    /// still opens text. (Inside an HTML element within it, a browser reads a comment
    /// there; those elements are not tracked, and taking it as text at worst hides an
    /// island, never makes one.)
    fn adjusted_current_node_present_but_not_in_html_namespace(&self) -> bool {
        !self.frames.borrow().is_empty()
    }
}

/// The island as a browser finds it: html5ever's tokenizer against scraper's whole parse
/// (a browser's tree), on pages made of the constructs that change how tags are read.
#[cfg(test)]
mod tests {
    use super::props as island_props;
    use proptest::prelude::*;

    const ISLAND: &str = r#"<div class="SVELTE_HYDRATER contents" data-target="DailyPapers" data-props="{&quot;n&quot;:1}"></div>"#;

    /// What scraper, building the whole tree, takes the island to be.
    fn by_tree(page: &str) -> Option<String> {
        let doc = scraper::Html::parse_document(page);
        let selector =
            scraper::Selector::parse(r#"div.SVELTE_HYDRATER[data-target="DailyPapers"]"#).unwrap();
        doc.select(&selector)
            .find_map(|el| el.value().attr("data-props"))
            .map(str::to_string)
    }

    #[test]
    fn tags_in_raw_text_and_comments_are_not_the_island() {
        let decoy = ISLAND.replace("&quot;n&quot;:1", "&quot;n&quot;:0");
        for wrap in [
            "<script>{}</script>",
            "<script>if (a < b) document.write('{}')</script>",
            "<style>{}</style>",
            "<textarea>{}</textarea>",
            "<title>{}</title>",
            "<noscript>{}</noscript>",
            "<iframe>{}</iframe>",
            "<xmp>{}</xmp>",
            "<!-- {} -->",
            "<template>{}</template>",
        ] {
            let page = format!(
                "<html><head>{}</head><body>{ISLAND}</body></html>",
                wrap.replace("{}", &decoy)
            );
            let tree = by_tree(&page);
            assert_eq!(island_props(&page), tree, "{wrap}");
            if !wrap.starts_with("<template") {
                assert_eq!(tree.as_deref(), Some(r#"{"n":1}"#), "{wrap}");
            }
        }
    }

    /// Inside `svg`, `<![CDATA[` opens text and `style` or `noscript` are not raw text;
    /// a tag no foreign element may hold (`div`) ends it.
    #[test]
    fn foreign_content_reads_as_a_browser_reads_it() {
        for (page, found) in [
            (format!("<svg><noscript>{ISLAND}"), true),
            (format!("<svg><style>{ISLAND}</style></svg>"), true),
            (format!("<svg><![CDATA[<a href='x'>{ISLAND}"), false),
            (
                format!("<svg><![CDATA[ ]]></svg><![CDATA[<a>{ISLAND}"),
                true,
            ),
            (
                format!("<svg><foreignObject><style>{ISLAND}</style></foreignObject></svg>"),
                false,
            ),
            (
                format!("<math><mi><textarea>{ISLAND}</textarea></mi></math>"),
                false,
            ),
        ] {
            assert_eq!(by_tree(&page).is_some(), found, "{page}");
            assert_eq!(island_props(&page), by_tree(&page), "{page}");
        }
    }

    #[test]
    fn attributes_read_as_a_browser_reads_them() {
        for (page, props) in [
            (ISLAND.to_string(), Some(r#"{"n":1}"#)),
            // Names are case-insensitive, classes are tokens, values are decoded.
            (
                r#"<DIV Class="a SVELTE_HYDRATER" DATA-TARGET=DailyPapers data-props='{"t":"&lt;b&gt; &amp; &#x27;q&#39;"}'>"#.to_string(),
                Some(r#"{"t":"<b> & 'q'"}"#),
            ),
            (ISLAND.replace("SVELTE_HYDRATER ", "SVELTE_HYDRATERS "), None),
            (ISLAND.replace("DailyPapers", "dailypapers"), None),
            (ISLAND.replace("<div", "<span"), None),
            // An island without props is passed over for the next one.
            (
                format!(r#"<div class="SVELTE_HYDRATER" data-target="DailyPapers"></div>{ISLAND}"#),
                Some(r#"{"n":1}"#),
            ),
        ] {
            assert_eq!(island_props(&page).as_deref(), props, "{page}");
            assert_eq!(by_tree(&page).as_deref(), props, "{page}");
        }
    }

    /// Deep nesting costs the tokenizer nothing more than its length: html5ever's tree
    /// builder took 25 s (debug build) for 48 KB of nested `div`s and minutes for 200 KB,
    /// growing with the square of the length. Here 2 MB of them, then the island, must be
    /// read within a bound that only a reader linear in the length can keep.
    #[test]
    fn deeply_nested_pages_are_read_in_linear_time() {
        for open in ["<div>", "<b><i>", "<table><tr><td>"] {
            let page = format!(
                "<html><body>{}{ISLAND}</body></html>",
                open.repeat(2 * 1024 * 1024 / open.len())
            );
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send(island_props(&page));
            });
            let found = rx
                .recv_timeout(std::time::Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("{open}: not read within 60 s"));
            assert_eq!(found.as_deref(), Some(r#"{"n":1}"#), "{open}");
        }
    }

    /// A piece of a page: each changes how what follows it is read, or is the island.
    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(ISLAND.to_string()),
            Just(ISLAND.replace("&quot;n&quot;:1", "&quot;n&quot;:2")),
            Just(r#"<div class="SVELTE_HYDRATER" data-target="DailyPapers">"#.to_string()),
            Just("<script>".to_string()),
            Just("</script>".to_string()),
            Just("<style>".to_string()),
            Just("</style>".to_string()),
            Just("<textarea>".to_string()),
            Just("</textarea>".to_string()),
            Just("<title>".to_string()),
            Just("</title>".to_string()),
            Just("<noscript>".to_string()),
            Just("</noscript>".to_string()),
            Just("<!--".to_string()),
            Just("-->".to_string()),
            Just("<![CDATA[".to_string()),
            Just("]]>".to_string()),
            Just("<p>".to_string()),
            Just("</div>".to_string()),
            Just("<table>".to_string()),
            Just("<a href='x'>".to_string()),
            Just("<b>".to_string()),
            Just("text & more".to_string()),
        ]
    }

    /// Foreign content as pages have it: whole `svg` and `math` elements, well nested,
    /// with the parts that read differently there (CDATA, `style` and `title` that are not
    /// raw text, HTML again inside `foreignObject`).
    fn foreign_piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(r#"<svg viewBox="0 0 1 1"><title>Logo</title><path d="M0 0"/></svg>"#.to_string()),
            Just("<svg><g><style>.a{fill:red}</style><path/></g></svg>".to_string()),
            Just("<svg><foreignObject><p>hi <b>there</b></p></foreignObject></svg>".to_string()),
            Just("<svg><foreignObject><textarea><g></textarea></foreignObject></svg>".to_string()),
            Just("<svg><desc>a <i>b</i></desc><![CDATA[ x ]]></svg>".to_string()),
            Just(format!("<svg><![CDATA[ {ISLAND} ]]></svg>")),
            Just(format!("<svg><style>{ISLAND}</style></svg>")),
            Just("<math><mi>x</mi><mo>=</mo><mn>1</mn></math>".to_string()),
            Just(
                "<math><annotation-xml encoding='text/html'><p>y</p></annotation-xml></math>"
                    .to_string()
            ),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn the_tokenizer_finds_what_the_tree_holds(
            pieces in prop::collection::vec(prop_oneof![3 => piece(), 1 => foreign_piece()], 0..14),
        ) {
            let page = pieces.concat();
            prop_assert_eq!(island_props(&page), by_tree(&page), "{}", page);
        }
    }
}
