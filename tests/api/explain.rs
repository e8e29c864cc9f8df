//! Late bloomers and `explain`: why each paper is or is not in a subscriber's digest.

use serde_json::{Value, json};

use crate::helpers::{PageServer, Reply, SmtpSink, TestApp, island_page};

fn entry(id: &str, upvotes: u32, title: &str) -> Value {
    json!({"paper": {"id": id, "title": title, "upvotes": upvotes, "summary": "An abstract."}})
}

/// A trending page of `date` on which the riser has `riser` upvotes.
fn snapshot(date: &str, riser: u32) -> String {
    island_page(
        date,
        true,
        &[
            entry("2512.00001", 80, "Scaling LLM agents"),
            entry("2512.00002", riser, "A slow starter about LLM routing"),
            entry("2512.00003", 5, "Tiny LLM tricks"),
        ],
    )
}

crate::helpers::on_both_engines!(a_late_bloomer_goes_out_once_marked_as_such);

async fn a_late_bloomer_goes_out_once_marked_as_such(engine: crate::helpers::EngineKind) {
    let pages = PageServer::start(Reply::Page(snapshot("2025-12-07", 10))).await;
    let sink = SmtpSink::start();
    let app = TestApp::on(engine, &pages.url(), sink.port, "");
    app.add("lena@example.org", &["--confirmed", "--min-upvotes", "25"]);
    app.add("max@example.org", &["--confirmed"]);

    // Day 1: the riser has 10 upvotes: Max (no minimum) gets it, Lena does not.
    assert!(app.run(&["run-once", "--date", "2025-12-07"]).ok());
    // Day 2: 20 upvotes, still below Lena's 25: no digest for either (nothing new).
    pages.set(Reply::Page(snapshot("2025-12-08", 20)));
    assert!(app.run(&["run-once", "--date", "2025-12-08"]).ok());
    // Day 3: 31 upvotes: Lena gets it, marked, once; Max does not get it again.
    pages.set(Reply::Page(snapshot("2025-12-09", 31)));
    assert!(app.run(&["run-once", "--date", "2025-12-09"]).ok());
    assert!(app.run(&["run-once", "--date", "2025-12-09"]).ok());

    let messages = sink.messages();
    let to = |who: &str| {
        messages
            .iter()
            .filter(|m| m.recipients[0] == who)
            .collect::<Vec<_>>()
    };
    let max = to("max@example.org");
    assert_eq!(max.len(), 1, "Max gets day 1 only");
    assert!(max[0].paper_ids().contains(&"2512.00002".to_string()));
    assert!(!max[0].part("text/plain").contains("Late bloomer"));

    let mut lena = to("lena@example.org");
    assert_eq!(lena.len(), 2, "day 1 and day 3");
    // The sink's files come in no particular order.
    lena.sort_by_key(|m| m.paper_ids());
    assert_eq!(lena[0].paper_ids(), ["2512.00001"]);
    assert_eq!(lena[1].paper_ids(), ["2512.00002"]);
    let text = lena[1].part("text/plain");
    assert!(
        text.contains("Late bloomer: first seen Dec 7 with 10 upvotes"),
        "{text}"
    );
    let html = lena[1].part("text/html");
    assert!(
        html.contains("class=\"late\""),
        "the card carries the badge"
    );
    assert!(html.contains("Late bloomer: first seen Dec 7 with 10 upvotes"));

    // Day 4: still on the page with more upvotes: never a second time.
    pages.set(Reply::Page(snapshot("2025-12-10", 45)));
    sink.clear();
    assert!(app.run(&["run-once", "--date", "2025-12-10"]).ok());
    assert!(sink.messages().is_empty(), "nothing new for anyone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_gives_every_paper_its_reason() {
    let page = island_page(
        "2025-12-09",
        true,
        &[
            entry("2512.00011", 90, "Sent yesterday: LLM serving"),
            entry("2512.00012", 70, "LLM compilers"),
            entry("2512.00013", 60, "LLM caches"),
            entry("2512.00014", 50, "LLM quantisation"),
            entry("2512.00015", 300, "Graph theory, no match"),
            entry("2512.00016", 3, "LLM with few upvotes"),
        ],
    );
    let yesterday = island_page(
        "2025-12-08",
        true,
        &[entry("2512.00011", 40, "Sent yesterday: LLM serving")],
    );
    let pages = PageServer::start(Reply::Page(yesterday)).await;
    let sink = SmtpSink::start();
    let app = TestApp::new(&pages.url(), sink.port, "");
    app.add(
        "ann@example.org",
        &[
            "--confirmed",
            "--min-upvotes",
            "25",
            "--keywords",
            "llm",
            "--max-items",
            "2",
        ],
    );
    assert!(app.run(&["run-once", "--date", "2025-12-08"]).ok());
    pages.set(Reply::Page(page));

    // Not on record yet: explained from the page as it is now, nothing recorded.
    let r = app.run(&["explain", "ann@example.org", "--date", "2025-12-09"]);
    assert!(r.ok(), "{}", r.stderr);
    let reason = |out: &str, id: &str| {
        out.lines()
            .find(|l| l.contains(id))
            .unwrap_or_else(|| panic!("no line for {id} in\n{out}"))
            .split("  ")
            .next()
            .unwrap()
            .trim()
            .to_string()
    };
    let out = &r.stdout;
    assert!(
        out.starts_with("edition 2025-12-09 for ann@example.org: 2 of 6 papers picked"),
        "{out}"
    );
    assert!(out.contains("nothing on record"), "{out}");
    assert_eq!(reason(out, "2512.00011"), "already sent on 2025-12-08");
    assert_eq!(reason(out, "2512.00012"), "picked");
    assert_eq!(reason(out, "2512.00013"), "picked");
    assert_eq!(reason(out, "2512.00014"), "over the cap of 2 papers");
    assert_eq!(reason(out, "2512.00015"), "no keyword match");
    assert_eq!(reason(out, "2512.00016"), "below 25 upvotes");
    assert_eq!(sink.messages().len(), 1, "explain sends nothing");

    // After the run, the edition on record explains the digest she got.
    assert!(app.run(&["run-once", "--date", "2025-12-09"]).ok());
    let r = app.run(&["explain", "ann@example.org", "--date", "2025-12-09"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(
        r.stdout
            .contains("(the edition on record; their digest of it is planned or sent)"),
        "{}",
        r.stdout
    );
    assert_eq!(reason(&r.stdout, "2512.00012"), "picked");
    assert_eq!(reason(&r.stdout, "2512.00014"), "over the cap of 2 papers");
    assert_eq!(
        reason(&r.stdout, "2512.00011"),
        "already sent on 2025-12-08"
    );

    // Who is not a subscriber gets a clear error.
    let r = app.run(&["explain", "nobody@example.org"]);
    assert!(!r.ok());
    assert!(
        r.stderr.contains("nobody@example.org is not a subscriber"),
        "{}",
        r.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_bloomer_off_the_page_comes_from_the_recent_window() {
    let pages = PageServer::start(Reply::Status(404)).await;
    let daily = |date: &str, upvotes: u32| {
        Reply::Page(island_page(
            date,
            false,
            &[entry("2512.00031", upvotes, "Quietly rising LLM paper")],
        ))
    };
    let sink = SmtpSink::start();
    let app = TestApp::new(&pages.at("/papers/trending"), sink.port, "");
    app.set("source.recent_days", 1);
    app.add("lena@example.org", &["--confirmed", "--min-upvotes", "25"]);
    app.add("max@example.org", &["--confirmed"]);
    // Day 1: on the trending page with 8 upvotes.
    let day1 = island_page(
        "2025-12-07",
        true,
        &[
            entry("2512.00001", 80, "Scaling LLM agents"),
            entry("2512.00031", 8, "Quietly rising LLM paper"),
        ],
    );
    pages.route("/papers/trending", Reply::Page(day1));
    assert!(app.run(&["run-once", "--date", "2025-12-07"]).ok());

    // Day 2: gone from trending, but its day's list shows 40 upvotes now.
    pages.route("/papers/trending", Reply::Page(snapshot("2025-12-08", 12)));
    pages.route("/papers/date/2025-12-07", daily("2025-12-07", 40));
    sink.clear();
    let r = app.run(&["explain", "lena@example.org", "--date", "2025-12-08"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(
        r.stdout
            .contains("picked, late bloomer (first seen 2025-12-07 with 8 upvotes)"),
        "{}",
        r.stdout
    );
    let r = app.run(&["explain", "max@example.org", "--date", "2025-12-08"]);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.contains("2512.00031") && l.starts_with("already sent on 2025-12-07")),
        "{}",
        r.stdout
    );
    // Someone new with no minimum: off the page and no late bloomer for them.
    app.add("nina@example.org", &["--confirmed"]);
    let r = app.run(&["explain", "nina@example.org", "--date", "2025-12-08"]);
    assert!(
        r.stdout
            .lines()
            .any(|l| l.contains("2512.00031") && l.starts_with("no longer on the page")),
        "{}",
        r.stdout
    );
    assert!(app.run(&["run-once", "--date", "2025-12-08"]).ok());
    let lena: Vec<_> = sink
        .messages()
        .into_iter()
        .filter(|m| m.recipients[0] == "lena@example.org")
        .collect();
    assert_eq!(lena.len(), 1);
    assert!(lena[0].paper_ids().contains(&"2512.00031".to_string()));
    assert!(
        lena[0]
            .part("text/plain")
            .contains("Late bloomer: first seen Dec 7 with 8 upvotes")
    );
}

/// A second run of the same date with a newer page adds its new papers to the edition (for
/// readers that run serves), but `explain` for a reader served by the first run says what
/// their digest carried, not what the grown edition would pick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_says_what_was_sent_after_a_later_run_of_the_same_date() {
    let first = island_page(
        "2025-12-08",
        true,
        &[
            entry("2512.00001", 10, "Small"),
            entry("2512.00002", 20, "Middle"),
            entry("2512.00003", 30, "Large"),
        ],
    );
    let pages = PageServer::start(Reply::Page(first)).await;
    let sink = SmtpSink::start();
    let app = TestApp::new(&pages.url(), sink.port, "");
    app.add("ann@example.org", &["--confirmed", "--max-items", "2"]);
    assert!(app.run(&["run-once", "--date", "2025-12-08"]).ok());
    let sent = sink.wait_for(1).await[0].paper_ids();
    assert_eq!(sent, ["2512.00003", "2512.00002"]);

    // Later the same day: two new papers above them all, and a reader who joined since.
    pages.set(Reply::Page(island_page(
        "2025-12-08",
        true,
        &[
            entry("2512.00004", 100, "Newcomer"),
            entry("2512.00005", 90, "Runner-up"),
            entry("2512.00001", 10, "Small"),
            entry("2512.00002", 20, "Middle"),
            entry("2512.00003", 30, "Large"),
        ],
    )));
    app.add("bob@example.org", &["--confirmed", "--max-items", "2"]);
    assert!(app.run(&["run-once", "--date", "2025-12-08"]).ok());
    let mail = sink.wait_for(2).await;
    let bob = mail
        .iter()
        .find(|m| m.recipients == ["bob@example.org"])
        .unwrap();
    assert_eq!(bob.paper_ids(), ["2512.00004", "2512.00005"]);

    let r = app.run(&["explain", "ann@example.org", "--date", "2025-12-08"]);
    assert!(r.ok(), "{}", r.stderr);
    let verdict = |id: &str| {
        r.stdout
            .lines()
            .find(|l| l.contains(id))
            .unwrap_or_else(|| panic!("no line for {id}: {}", r.stdout))
            .to_string()
    };
    assert!(r.stdout.contains("2 of 5 papers picked"), "{}", r.stdout);
    for id in sent {
        assert!(verdict(&id).starts_with("picked"), "{}", verdict(&id));
    }
    for id in ["2512.00004", "2512.00005"] {
        assert!(
            verdict(id).starts_with("not in the digest they were sent"),
            "{}",
            verdict(id)
        );
    }
    assert!(
        verdict("2512.00001").starts_with("over the cap"),
        "{}",
        r.stdout
    );

    // Bob, served by the second run, is explained by the same rule: his digest.
    let r = app.run(&["explain", "bob@example.org", "--date", "2025-12-08"]);
    let picked: Vec<_> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("picked"))
        .collect();
    assert_eq!(picked.len(), 2, "{}", r.stdout);
    assert!(
        picked
            .iter()
            .all(|l| l.contains("2512.00004") || l.contains("2512.00005"))
    );
}
