//! The archive and the feeds end to end: editions run by the real binary, then read over
//! HTTP from `paperboy serve` the way a browser and a feed reader would.

use std::collections::HashSet;

use atom_syndication::Feed;

use crate::helpers::{
    KillOnDrop, PageServer, Reply, SmtpSink, TestApp, island_page, start_serve, web_on_free_port,
};
use crate::web::{link_in, token_of};

const TRICKY: &str = r#"Attention <is> all & "you" need"#;
const FOURTH: &str = r#"Fourth <new> & 'on' "Tuesday""#;

fn entry(id: &str, title: &str, upvotes: u32) -> serde_json::Value {
    serde_json::json!({
        "paper": {
            "id": id,
            "title": title,
            "summary": format!("What {id} is about."),
            "upvotes": upvotes,
            "authors": [{"name": "Ada Lovelace"}],
        },
        "thumbnail": format!("https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/{id}.png"),
        "numComments": 2,
    })
}

/// `paperboy serve` on its own port, with two editions behind it: Ann got three papers on
/// Monday and one on Tuesday, Bob (60 upvotes at least) one on Monday.
struct Archive {
    app: TestApp,
    sink: SmtpSink,
    base: String,
    http: reqwest::Client,
    _pages: PageServer,
    _daemon: KillOnDrop,
}

async fn archive() -> Archive {
    let monday = [
        entry("2512.00001", TRICKY, 50),
        entry("2512.00002", "Second of Monday", 80),
        entry("2512.00003", "Third of Monday", 50),
    ];
    let pages = PageServer::start(Reply::Page(island_page("2025-12-08", true, &monday))).await;
    let sink = SmtpSink::start();
    let app = TestApp::new(&pages.url(), sink.port, "");
    app.set("digest.thumbnails", true);
    let base = web_on_free_port(&app);
    app.add("ann@example.org", &["--confirmed"]);
    app.add("bob@example.com", &["--confirmed", "--min-upvotes", "60"]);
    let r = app.run(&["run-once", "--date", "2025-12-08"]);
    assert!(r.ok(), "{}", r.stderr);
    let tuesday = [
        entry("2512.00002", "Second of Monday", 95),
        entry("2512.00004", FOURTH, 10),
    ];
    pages.set(Reply::Page(island_page("2025-12-09", true, &tuesday)));
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(sink.messages().len(), 3, "Ann twice, Bob once");

    let (daemon, http) = start_serve(&app, &base).await;
    Archive {
        app,
        sink,
        base,
        http,
        _pages: pages,
        _daemon: daemon,
    }
}

impl Archive {
    async fn get(&self, path_or_url: &str) -> (u16, String, String) {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.base)
        };
        let r = self.http.get(url).send().await.unwrap();
        let status = r.status().as_u16();
        let media = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, media, r.text().await.unwrap())
    }

    async fn feed(&self, url: &str) -> Feed {
        let (status, media, body) = self.get(url).await;
        assert_eq!(status, 200, "{url}: {body}");
        assert_eq!(media, "application/atom+xml; charset=utf-8");
        body.parse()
            .unwrap_or_else(|e| panic!("{url} is not Atom: {e}\n{body}"))
    }

    /// Ann's digests, oldest first.
    fn anns(&self) -> Vec<crate::helpers::Received> {
        let mut mail: Vec<_> = self
            .sink
            .messages()
            .into_iter()
            .filter(|m| m.recipients == ["ann@example.org"])
            .collect();
        mail.sort_by_key(|m| link_in(m, "/digest/"));
        mail
    }
}

/// Where each of these snippets is in `body`, in order; panics naming the one missing.
fn positions(body: &str, snippets: &[&str]) -> Vec<usize> {
    snippets
        .iter()
        .map(|s| body.find(s).unwrap_or_else(|| panic!("{s:?} missing")))
        .collect()
}

/// The address of the edition's page that a reader's own copy of a digest links.
fn edition_link(copy: &str) -> String {
    let at = copy.find("/editions/").expect("a link to the edition");
    let start = copy[..at].rfind('"').unwrap() + 1;
    let end = at + copy[at..].find('"').unwrap();
    copy[start..end].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editions_are_pages_linked_from_every_digest() {
    let a = archive().await;
    let monday_url = format!("{}/editions/2025-12-08", a.base);
    let mut linked = Vec::new();
    for m in a.anns() {
        let html = m.part("text/html");
        let own = link_in(&m, "/digest/");
        assert!(
            html.contains(&format!("href=\"{own}\"")),
            "the HTML part links the reader's copy too"
        );
        let (status, _, copy) = a.get(&own).await;
        assert_eq!(status, 200, "{own}");
        let link = edition_link(&copy);
        let (status, _, _) = a.get(&link).await;
        assert_eq!(status, 200, "{link}");
        linked.push(link);
    }
    assert_eq!(linked[0], monday_url);

    let (status, media, page) = a.get(&monday_url).await;
    assert_eq!(status, 200);
    assert!(media.starts_with("text/html"));
    // Most upvoted first, the page's order between equals; the title stays text.
    assert!(!page.contains(TRICKY) && !page.contains("<is>"));
    let escaped = "Attention &#60;is&#62; all &#38; &#34;you&#34;";
    let at = positions(&page, &["Second of Monday", escaped, "Third of Monday"]);
    assert!(at[0] < at[1] && at[1] < at[2], "{at:?}");
    for link in [
        "https://huggingface.co/papers/2512.00001",
        "https://arxiv.org/abs/2512.00001",
        "https://arxiv.org/pdf/2512.00001",
    ] {
        assert!(page.contains(&format!("href=\"{link}\"")), "{link}");
    }
    assert!(page.contains("Ada Lovelace") && page.contains("What 2512.00003 is about."));
    assert!(page.contains("3 papers"));

    // The index: newest first, with counts; the subscribe page links it.
    let (status, _, index) = a.get("/editions").await;
    assert_eq!(status, 200);
    let at = positions(
        &index,
        &[
            "href=\"/editions/2025-12-09\"",
            "href=\"/editions/2025-12-08\"",
        ],
    );
    assert!(at[0] < at[1]);
    assert!(index.contains("Tuesday, December 9, 2025") && index.contains("2 papers"));
    assert!(
        !index.contains("Older editions"),
        "everything is on one page"
    );
    let (_, _, older) = a.get("/editions?before=2025-12-09").await;
    assert!(older.contains("/editions/2025-12-08") && !older.contains("/editions/2025-12-09"));
    let (_, _, start) = a.get("/").await;
    assert!(start.contains("href=\"/editions\"") && start.contains("href=\"/feed.xml\""));

    for bad in [
        "/editions/2025-12-10",
        "/editions/2025-13-01",
        "/editions/2025-12-8",
        "/editions/yesterday",
        "/editions?before=soon",
    ] {
        let (status, media, body) = a.get(bad).await;
        assert_eq!(status, 404, "{bad}");
        assert!(
            media.starts_with("text/html") && body.contains("Not found"),
            "{bad}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_in_your_browser_opens_the_readers_own_digest() {
    let a = archive().await;
    for m in a.anns() {
        let own = link_in(&m, "/digest/");
        let date = own.split("/digest/").nth(1).unwrap()[..10].to_string();
        let r = a.http.get(&own).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{own}");
        assert_eq!(r.headers()["x-robots-tag"], "noindex");
        assert_eq!(r.headers()["referrer-policy"], "no-referrer");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        let copy = r.text().await.unwrap();
        // The thumbnails show: the page's policy lets the browser load each picture.
        let pictures: Vec<&str> = copy
            .split("<img ")
            .skip(1)
            .map(|img| {
                img.split("src=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
            })
            .collect();
        assert!(!pictures.is_empty(), "thumbnails are on: {copy}");
        for picture in pictures {
            assert!(
                image_allowed(&csp, picture, &a.base),
                "{csp} blocks {picture}"
            );
        }
        // The page is the digest as mailed, but for the link at the top, which goes to the
        // whole edition rather than to the page itself.
        let mailed = m.part("text/html").replace('\r', "");
        let edition = format!("{}/editions/{date}", a.base);
        let expected = mailed.replace(
            &format!("href=\"{own}\" style=\"color: inherit;\">View in your browser<"),
            &format!("href=\"{edition}\" style=\"color: inherit;\">See the whole edition<"),
        );
        assert_ne!(expected, mailed, "the mail has the link");
        assert!(
            copy == expected,
            "{date}: the page differs from the mail:\n{copy}"
        );
        stays_text(&copy);
    }
    // Bob's Monday digest had one paper; Ann's three.
    let bob = a
        .sink
        .messages()
        .into_iter()
        .find(|m| m.recipients == ["bob@example.com"])
        .unwrap();
    let (status, _, copy) = a.get(&link_in(&bob, "/digest/")).await;
    assert_eq!(status, 200);
    assert!(copy.contains("Second of Monday") && !copy.contains("Third of Monday"));

    // The token opens that one digest: not another day's, not another page's.
    let monday = &a.anns()[0];
    let token = token_of(&link_in(monday, "/digest/"));
    let unsubscribe = token_of(&link_in(monday, "/unsubscribe?token="));
    for bad in [
        format!("/digest/2025-12-09?token={token}"),
        format!("/digest/2025-12-8?token={token}"),
        format!("/digest/2025-12-08?token={unsubscribe}"),
        format!("/digest/2025-12-08?token={}x", &token[..token.len() - 1]),
        "/digest/2025-12-08".to_string(),
        format!("/unsubscribe?token={token}"),
        format!("/preferences?token={token}"),
    ] {
        let (status, media, body) = a.get(&bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(media.starts_with("text/html"), "{bad}");
    }
    // It only reads: opening it changed nothing, and once Ann leaves it is gone.
    let r = a.app.run(&["subscribers", "list", "--json"]);
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(r.stdout.matches("\"active\"").count(), 2, "{}", r.stdout);
    let r = a.app.run(&["subscribers", "remove", "ann@example.org"]);
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(a.get(&link_in(monday, "/digest/")).await.0, 410);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_editions_feed_and_each_subscribers_own() {
    let a = archive().await;
    let feed = a.feed("/feed.xml").await;
    assert_eq!(feed.id, format!("{}/feed.xml", a.base));
    let self_link = feed.links.iter().find(|l| l.rel == "self").unwrap();
    assert_eq!(self_link.href, format!("{}/feed.xml", a.base));
    let dates: Vec<String> = feed.entries.iter().map(|e| e.title.value.clone()).collect();
    assert_eq!(
        dates,
        [
            "Trending papers, Tuesday, December 9, 2025",
            "Trending papers, Monday, December 8, 2025"
        ]
    );
    assert!(feed.entries[0].updated >= feed.entries[1].updated);
    for e in &feed.entries {
        let link = &e.links[0];
        assert_eq!(
            (link.rel.as_str(), link.href.as_str()),
            ("alternate", e.id.as_str())
        );
        assert_eq!(a.get(&link.href).await.0, 200, "{}", link.href);
    }
    let monday = feed.entries[1].content.as_ref().unwrap();
    assert_eq!(monday.content_type.as_deref(), Some("html"));
    let html = monday.value.as_deref().unwrap();
    // Escaped once for HTML inside the feed's (XML-escaped) content.
    assert!(
        html.contains("Attention &#60;is&#62; all &#38; &#34;you&#34;"),
        "{html}"
    );
    assert!(!html.contains("<is>"));
    let at = positions(html, &["Second of Monday", "Attention", "Third of Monday"]);
    assert!(at[0] < at[1] && at[1] < at[2]);
    assert_eq!(
        feed.entries[1].summary.as_ref().unwrap().value,
        "3 papers. Most upvoted: Second of Monday"
    );

    // Ann's feed, from the preferences page her digest links.
    let preferences = link_in(&a.anns()[0], "/preferences?token=");
    let (status, _, page) = a.get(&preferences).await;
    assert_eq!(status, 200);
    let start = page
        .find(&format!("{}/feed/", a.base))
        .expect("a feed link");
    let ann_url = &page[start..start + page[start..].find('"').unwrap()];
    assert!(ann_url.ends_with(".xml"), "{ann_url}");
    let ann = a.feed(ann_url).await;
    assert_eq!(
        ann.links.iter().find(|l| l.rel == "self").unwrap().href,
        ann_url
    );
    assert_eq!(ann.entries.len(), 2);
    assert!(
        ann.entries[0]
            .title
            .value
            .ends_with("Tuesday, December 9, 2025")
    );
    let tuesday = ann.entries[0]
        .content
        .as_ref()
        .unwrap()
        .value
        .clone()
        .unwrap();
    assert!(tuesday.contains("Fourth &#60;new&#62; &#38; &#39;on&#39; &#34;Tuesday&#34;"));
    // Plain text in the summary: read back exactly as it was on the page.
    assert_eq!(
        ann.entries[0].summary.as_ref().unwrap().value,
        format!("1 paper. Most upvoted: {FOURTH}")
    );
    assert!(
        !tuesday.contains("Second of Monday"),
        "she had it on Monday"
    );
    let monday = ann.entries[1]
        .content
        .as_ref()
        .unwrap()
        .value
        .clone()
        .unwrap();
    assert!(monday.contains("Attention &#60;is&#62;") && monday.contains("Third of Monday"));
    // Entry ids are unique across the feeds.
    let ids: Vec<&str> = feed
        .entries
        .iter()
        .chain(&ann.entries)
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        ids.len(),
        "{ids:?}"
    );

    // Bad tokens are not valid; a feed of an ended subscription is gone.
    let token = ann_url.rsplit('/').next().unwrap().trim_end_matches(".xml");
    let mut tampered = token.to_string();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    for (path, expected) in [
        (format!("/feed/{tampered}.xml"), 400),
        ("/feed/nonsense.xml".to_string(), 400),
        (format!("/feed/{token}.json"), 404),
        // Another link of hers is no feed token.
        (
            format!("/feed/{}.xml", preferences.split("token=").nth(1).unwrap()),
            400,
        ),
    ] {
        assert_eq!(a.get(&path).await.0, expected, "{path}");
    }
    // Through the daemon's admin socket.
    let r = a.app.run(&["subscribers", "remove", "ann@example.org"]);
    assert!(r.ok(), "{}", r.stderr);
    let (status, _, body) = a.get(ann_url).await;
    assert_eq!(status, 410, "{body}");
    let r = a
        .app
        .run(&["subscribers", "remove", "--forget", "ann@example.org"]);
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(a.get(ann_url).await.0, 404);
}

/// The hostile title is text wherever the page shows it: no `<is>` element came of it, and
/// the title reads as written. (A picture's alt text may hold a bare `<`: inside a quoted
/// attribute it is only a character, and the inliner's serializer leaves it so.)
fn stays_text(page: &str) {
    let html = scraper::Html::parse_document(page);
    let injected = scraper::Selector::parse("is").unwrap();
    assert!(html.select(&injected).next().is_none(), "{page}");
    if page.contains("Attention") {
        let text: String = html.root_element().text().collect();
        assert!(text.contains(TRICKY), "{page}");
    }
}

/// Whether a Content-Security-Policy lets a page at `origin` show the image at `url`: by
/// its `img-src` (or `default-src`), with the source forms paperboy uses ('self', a scheme,
/// a host).
fn image_allowed(csp: &str, url: &str, origin: &str) -> bool {
    let directive = |name: &str| {
        csp.split(';')
            .map(str::trim)
            .find_map(|d| d.strip_prefix(name)?.strip_prefix(' ').map(str::to_string))
    };
    let Some(sources) = directive("img-src").or_else(|| directive("default-src")) else {
        return true;
    };
    let scheme = url.split(':').next().unwrap_or_default();
    sources.split_whitespace().any(|source| match source {
        "'self'" => url.starts_with(&format!("{origin}/")),
        "'none'" => false,
        s if s.ends_with(':') => s.trim_end_matches(':') == scheme,
        s => url.starts_with(&format!("{s}/")),
    })
}

#[test]
fn the_image_policy_check_reads_sources_as_a_browser_does() {
    let own = "http://127.0.0.1:1";
    let hf = "https://cdn-thumbnails.huggingface.co/p/1.png";
    assert!(!image_allowed(
        "default-src 'none'; img-src 'self'",
        hf,
        own
    ));
    assert!(image_allowed(
        "img-src 'self'",
        &format!("{own}/a.png"),
        own
    ));
    assert!(image_allowed("img-src 'self' https:", hf, own));
    assert!(!image_allowed(
        "img-src 'self' https:",
        "http://x.org/1.png",
        own
    ));
    assert!(!image_allowed("default-src 'none'", hf, own));
    assert!(image_allowed(
        "img-src https://cdn-thumbnails.huggingface.co",
        hf,
        own
    ));
}
