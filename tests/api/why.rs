//! "Why these papers" on the preferences page: the newest edition on record, judged by the
//! reader's preferences, from `paperboy serve` over HTTP, editions run by the real binary.

use serde_json::{Value, json};

use crate::helpers::{
    KillOnDrop, PageServer, Reply, SmtpSink, TestApp, island_page, start_serve, web_on_free_port,
};
use crate::web::{link_in, token_of};

const SCRIPT_TITLE: &str = "<script>alert('LLM')</script> agents";

fn entry(id: &str, upvotes: u32, title: &str) -> Value {
    json!({"paper": {"id": id, "title": title, "upvotes": upvotes, "summary": "An abstract."}})
}

fn monday() -> String {
    island_page(
        "2025-12-08",
        true,
        &[entry("2512.00021", 40, "Sent on Monday: LLM serving")],
    )
}

fn tuesday() -> String {
    island_page(
        "2025-12-09",
        true,
        &[
            entry("2512.00021", 90, "Sent on Monday: LLM serving"),
            entry("2512.00022", 70, "LLM compilers"),
            entry("2512.00023", 60, SCRIPT_TITLE),
            entry("2512.00024", 300, "Graph theory for the rest of us"),
            entry("2512.00025", 3, "LLM with few upvotes"),
        ],
    )
}

/// `paperboy serve` on a port of its own, and a client that does not follow redirects.
struct Served {
    app: TestApp,
    sink: SmtpSink,
    pages: PageServer,
    base: String,
    http: reqwest::Client,
    _daemon: KillOnDrop,
}

async fn serve() -> Served {
    let pages = PageServer::start(Reply::Page(monday())).await;
    let sink = SmtpSink::start();
    let app = TestApp::new(&pages.url(), sink.port, "");
    let base = web_on_free_port(&app);
    let (daemon, http) = start_serve(&app, &base).await;
    Served {
        app,
        sink,
        pages,
        base,
        http,
        _daemon: daemon,
    }
}

impl Served {
    async fn get(&self, url: &str) -> (u16, String) {
        let r = self.http.get(url).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn post(&self, url: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let r = self.http.post(url).form(fields).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Subscribes through the form, confirms, and returns the preferences link the
    /// confirmation page offers.
    async fn join(&self, email: &str, keywords: &str, min_upvotes: &str) -> String {
        let subscribe = format!("{}/subscribe", self.base);
        let fields = [
            ("email", email),
            ("keywords", keywords),
            ("min_upvotes", min_upvotes),
            ("max_items", ""),
        ];
        assert_eq!(self.post(&subscribe, &fields).await.0, 200);
        let confirm = link_in(&self.sink.wait_for(1).await[0], "/confirm?token=");
        let (status, page) = self
            .post(
                &format!("{}/confirm", self.base),
                &[("token", &token_of(&confirm))],
            )
            .await;
        assert_eq!(status, 200, "{page}");
        let start = page
            .find("/preferences?token=")
            .expect("a preferences link");
        let start = page[..start].rfind('"').unwrap() + 1;
        let end = start + page[start..].find('"').unwrap();
        page[start..end].to_string()
    }

    fn run_once(&self, date: &str) {
        let r = self.app.run(&["run-once", "--date", date]);
        assert!(r.ok(), "{}", r.stderr);
    }
}

/// The "why" section of a preferences page.
fn why(page: &str) -> &str {
    let start = page.find("Why these papers").expect("the section");
    &page[start..start + page[start..].find("</section>").unwrap()]
}

/// The verdict shown for a paper, and whether its line is marked as picked.
fn verdict(section: &str, id: &str) -> (String, bool) {
    let at = section
        .find(&format!("https://huggingface.co/papers/{id}\""))
        .unwrap_or_else(|| panic!("no line for {id} in\n{section}"));
    let li = &section[section[..at].rfind("<li").unwrap()..];
    let li = &li[..li.find("</li>").unwrap()];
    let text = li.split("<span class=\"verdict\">").nth(1).unwrap();
    let text = text[..text.find("</span>").unwrap()]
        .trim_start_matches("&#10003; ")
        .to_string();
    (text, li.starts_with("<li class=\"picked\""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preferences_page_says_why_each_paper_is_in_or_out() {
    let s = serve().await;
    let prefs = s.join("ann@example.org", "llm", "25").await;

    // Nothing run yet: a sentence, no list.
    let (status, page) = s.get(&prefs).await;
    assert_eq!(status, 200);
    let section = why(&page);
    assert!(section.contains("No edition has gone out yet"), "{section}");
    assert!(!section.contains("<li"), "{section}");

    // Two editions, run by the binary (through the daemon, which holds the store).
    s.run_once("2025-12-08");
    s.pages.set(Reply::Page(tuesday()));
    s.run_once("2025-12-09");
    assert_eq!(
        s.sink.wait_for(3).await.len(),
        3,
        "the confirmation and two digests"
    );

    let (status, page) = s.get(&prefs).await;
    assert_eq!(status, 200);
    let section = why(&page);
    assert!(
        section.contains("Tuesday, December 9, 2025</a>")
            && section.contains("href=\"/editions/2025-12-09\""),
        "{section}"
    );
    assert!(
        section.contains("2 of 5 papers were in your digest of Tuesday, December 9, 2025."),
        "{section}"
    );
    let picked = |v: &str| (v.to_string(), true);
    let left_out = |v: &str| (v.to_string(), false);
    assert_eq!(verdict(section, "2512.00022"), picked("picked"));
    assert_eq!(verdict(section, "2512.00023"), picked("picked"));
    assert_eq!(
        verdict(section, "2512.00021"),
        left_out("already sent on 2025-12-08")
    );
    assert_eq!(verdict(section, "2512.00024"), left_out("no keyword match"));
    assert_eq!(verdict(section, "2512.00025"), left_out("below 25 upvotes"));
    // Picked first, then the rest in page order.
    let at = |id: &str| section.find(&format!("papers/{id}\"")).unwrap();
    let order = [
        "2512.00022",
        "2512.00023",
        "2512.00021",
        "2512.00024",
        "2512.00025",
    ];
    assert!(order.windows(2).all(|w| at(w[0]) < at(w[1])), "{section}");
    assert!(section.contains("&#9650; 300"), "upvotes shown");

    // A title is text, never markup.
    assert!(!page.contains("<script>"), "{section}");
    assert!(
        section.contains("&#60;script&#62;alert(&#39;LLM&#39;)&#60;/script&#62; agents"),
        "{section}"
    );

    // New keywords: the answer to the save already judges by them.
    let fields = [
        ("keywords", "graph"),
        ("min_upvotes", "25"),
        ("max_items", ""),
    ];
    let (status, page) = s.post(&prefs, &fields).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Saved."));
    let section = why(&page);
    assert!(
        section.contains(
            "2 of 5 papers were in your digest of Tuesday, December 9, 2025. With your preferences as they are now, it would be 1."
        ),
        "{section}"
    );
    assert_eq!(verdict(section, "2512.00024"), picked("picked"));
    assert_eq!(verdict(section, "2512.00022"), left_out("no keyword match"));
    assert_eq!(
        verdict(section, "2512.00021"),
        left_out("already sent on 2025-12-08")
    );
    assert!(at_first(section, "2512.00024"), "{section}");

    // A rejected form leaves the preferences, and so the verdicts, as they were.
    let (status, page) = s
        .post(&prefs, &[("keywords", "llm"), ("min_upvotes", "-1")])
        .await;
    assert_eq!(status, 422);
    assert_eq!(verdict(why(&page), "2512.00024"), picked("picked"));

    // A lower minimum and no keywords: more of them make it, and the cap shows.
    let fields = [("keywords", ""), ("min_upvotes", ""), ("max_items", "3")];
    let (_, page) = s.post(&prefs, &fields).await;
    let section = why(&page);
    assert_eq!(
        verdict(section, "2512.00025"),
        left_out("over the cap of 3 papers")
    );
    assert_eq!(verdict(section, "2512.00022"), picked("picked"));
    // Reading the page again says the same.
    let (_, again) = s.get(&prefs).await;
    assert_eq!(why(&again), section);

    // Paused: the verdicts stay, and the summary says nothing goes out.
    let fields = [("keywords", ""), ("max_items", "3"), ("paused", "on")];
    let (_, page) = s.post(&prefs, &fields).await;
    let section = why(&page);
    assert_eq!(verdict(section, "2512.00022"), picked("picked"));
    assert!(
        section.contains("No digests go to you now (paused or unsubscribed)."),
        "{section}"
    );
}

/// Whether `id` is the first paper listed.
fn at_first(section: &str, id: &str) -> bool {
    let first = section.find("https://huggingface.co/papers/").unwrap();
    section[first..].starts_with(&format!("https://huggingface.co/papers/{id}\""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preferences_form_sets_how_often_and_when() {
    let s = serve().await;
    let prefs = s.join("ann@example.org", "", "").await;
    let (_, page) = s.get(&prefs).await;
    assert!(
        page.contains("<option value=\"daily\" selected>Daily</option>"),
        "daily is the default"
    );

    let (status, page) = s
        .post(
            &prefs,
            &[
                ("keywords", ""),
                ("min_upvotes", ""),
                ("max_items", ""),
                ("frequency", "weekly:wed"),
                ("send_hour", "6"),
                ("timezone", "America/New_York"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("<option value=\"weekly:wed\" selected>Weekly, on Wednesday</option>"));
    assert!(page.contains("<option value=\"6\" selected>06:00</option>"));
    assert!(page.contains("value=\"America/New_York\""));
    let listed = s.app.run(&["subscribers", "export"]).stdout;
    assert!(
        listed.contains("\"frequency\":\"weekly:wed\"")
            && listed.contains("\"send_at\":\"06:00 America/New_York\""),
        "{listed}"
    );

    // A zone that does not exist: the form comes back with the reason, nothing is saved.
    let (status, page) = s
        .post(
            &prefs,
            &[
                ("frequency", "daily"),
                ("send_hour", "7"),
                ("timezone", "Atlantis/Capital"),
            ],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("not an IANA time zone name"), "{page}");
    let listed = s.app.run(&["subscribers", "export"]).stdout;
    assert!(
        listed.contains("\"send_at\":\"06:00 America/New_York\""),
        "{listed}"
    );

    // Back to the site's schedule.
    let (status, _) = s
        .post(
            &prefs,
            &[("frequency", "daily"), ("send_hour", ""), ("timezone", "")],
        )
        .await;
    assert_eq!(status, 200);
    let listed = s.app.run(&["subscribers", "export"]).stdout;
    assert!(
        listed.contains("\"frequency\":\"daily\"") && listed.contains("\"send_at\":null"),
        "{listed}"
    );
}
