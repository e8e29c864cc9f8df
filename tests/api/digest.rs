//! The daily digest end to end: page → store → selection → render → SMTP.

use std::collections::{HashMap, HashSet};

use paperboy::source::parse_listing;

use crate::helpers::{PageServer, Reply, SmtpSink, TestApp, fixture, island_page};

/// What a subscriber with `min_upvotes` should get from `page`, given what they already have:
/// the papers they lack, most upvoted first, page order among equals.
fn expected(page: &str, min_upvotes: u32, already: &HashSet<String>) -> Vec<String> {
    let listing = parse_listing(&fixture(page)).unwrap();
    let mut papers: Vec<_> = listing
        .papers
        .iter()
        .filter(|p| p.upvotes >= min_upvotes && !already.contains(p.id.as_str()))
        .collect();
    papers.sort_by_key(|p| std::cmp::Reverse(p.upvotes));
    papers.iter().take(30).map(|p| p.id.to_string()).collect()
}

fn by_recipient(sink: &SmtpSink) -> HashMap<String, Vec<crate::helpers::Received>> {
    let mut map: HashMap<String, Vec<_>> = HashMap::new();
    for m in sink.messages() {
        assert_eq!(m.recipients.len(), 1, "one recipient per message");
        map.entry(m.recipients[0].clone()).or_default().push(m);
    }
    map
}

crate::helpers::on_both_engines!(two_days_of_digests_reach_the_right_people_once);

async fn two_days_of_digests_reach_the_right_people_once(engine: crate::helpers::EngineKind) {
    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-08.html"))).await;
    let sink = SmtpSink::start();
    let app = TestApp::on(engine, &pages.url(), sink.port, "");
    app.add("ann@example.org", &["--confirmed"]);
    app.add("bob@example.com", &["--confirmed", "--min-upvotes", "100"]);
    app.add("carl@example.net", &[]);

    // Day 1: two digests, none for the pending subscriber.
    let r = app.run(&["run-once", "--date", "2025-12-08"]);
    assert!(r.ok(), "{}", r.stderr);
    let day1 = by_recipient(&sink);
    assert_eq!(day1.len(), 2, "recipients: {:?}", day1.keys());
    let ann1 = day1["ann@example.org"][0].paper_ids();
    let bob1 = day1["bob@example.com"][0].paper_ids();
    assert_eq!(
        ann1,
        expected("trending-2025-12-08.html", 0, &HashSet::new())
    );
    assert_eq!(ann1.len(), 26);
    assert_eq!(
        bob1,
        expected("trending-2025-12-08.html", 100, &HashSet::new())
    );
    assert!(!bob1.is_empty() && bob1.len() < 26);

    // The same edition again: nothing new.
    let r = app.run(&["run-once", "--date", "2025-12-08"]);
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(sink.messages().len(), 2);

    // Day 2: only what was not sent on day 1; for Bob, also papers that crossed 100 since.
    pages.serve_fixture("trending-2025-12-09.html");
    sink.clear();
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(r.ok(), "{}", r.stderr);
    let day2 = by_recipient(&sink);
    assert_eq!(day2.len(), 2);
    let ann2 = day2["ann@example.org"][0].paper_ids();
    assert_eq!(ann2.len(), 14);
    let ann_had: HashSet<String> = ann1.into_iter().collect();
    assert_eq!(ann2, expected("trending-2025-12-09.html", 0, &ann_had));
    let bob_had: HashSet<String> = bob1.into_iter().collect();
    let bob2 = day2["bob@example.com"][0].paper_ids();
    assert_eq!(bob2, expected("trending-2025-12-09.html", 100, &bob_had));
    let day1_page = parse_listing(&fixture("trending-2025-12-08.html")).unwrap();
    let crossed = bob2
        .iter()
        .filter(|id| day1_page.papers.iter().any(|p| p.id.as_str() == *id))
        .count();
    assert!(
        crossed > 0,
        "a paper that crossed the threshold overnight is sent now"
    );
    assert!(bob2.iter().all(|id| !bob_had.contains(id)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_digest_is_well_formed_mail() {
    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-09.html"))).await;
    let sink = SmtpSink::start();
    let app = TestApp::new(&pages.url(), sink.port, "");
    app.add("ann@example.org", &["--confirmed", "--max-items", "10"]);
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(r.ok(), "{}", r.stderr);
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    let parsed = m.parsed();
    assert_eq!(parsed.ctype.mimetype, "multipart/alternative");
    let types: Vec<_> = parsed
        .subparts
        .iter()
        .map(|p| p.ctype.mimetype.as_str())
        .collect();
    assert_eq!(types, ["text/plain", "text/html"]);
    for part in &parsed.subparts {
        let n = part
            .headers
            .iter()
            .filter(|h| h.get_key().eq_ignore_ascii_case("content-type"))
            .count();
        assert_eq!(n, 1, "one Content-Type per part");
    }
    let top_level = parsed
        .headers
        .iter()
        .filter(|h| h.get_key().eq_ignore_ascii_case("content-type"))
        .count();
    assert_eq!(top_level, 1);

    let subject = m.header("Subject").unwrap();
    assert!(
        subject.starts_with("Trending papers, Dec 9: Inference Scaling for Long-Context Retrieval")
            && subject.ends_with(" and 9 more"),
        "{subject}"
    );
    let unsubscribe = m.header("List-Unsubscribe").unwrap();
    assert!(
        unsubscribe.starts_with("<https://papers.example.org/unsubscribe?token=")
            && unsubscribe.ends_with('>'),
        "{unsubscribe}"
    );
    assert_eq!(
        m.header("List-Unsubscribe-Post").unwrap(),
        "List-Unsubscribe=One-Click"
    );
    assert!(
        m.header("List-Id")
            .unwrap()
            .contains("<digest.example.org>")
    );
    let message_id = m.header("Message-ID").unwrap();
    assert!(message_id.starts_with("<digest.2025-12-09.") && message_id.ends_with("@example.org>"));

    let html = m.part("text/html");
    let text = m.part("text/plain");
    let token = unsubscribe.trim_start_matches('<').trim_end_matches('>');
    assert!(
        html.contains(token),
        "the visible unsubscribe link is the header's"
    );
    assert!(html.contains("https://papers.example.org/preferences?token="));
    assert!(text.contains(token));
    assert!(html.contains("style=\""), "CSS is inlined");
    assert!(m.raw.len() < 102 * 1024, "{} bytes", m.raw.len());
    assert_eq!(m.paper_ids().len(), 10);
    assert!(text.contains("arXiv: https://arxiv.org/abs/2410.87143"));
    assert!(html.contains("https://arxiv.org/pdf/2410.87143"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_titles_stay_text() {
    let evil_title = "<script>alert('x')</script> Evil\r\nBcc: victim@example.net";
    let entry = serde_json::json!({
        "paper": {
            "id": "2512.00001v2",
            "title": evil_title,
            "summary": "<img src=x onerror=alert(1)> an abstract",
            "upvotes": 10,
            "authors": [{"name": "<b>Mallory</b>"}],
            "githubRepo": "javascript:alert(1)",
            "projectPage": "javascript:alert(2)",
        },
        "numComments": 0,
    });
    let pages = PageServer::start(Reply::Page(island_page("2025-12-09", true, &[entry]))).await;
    let sink = SmtpSink::start();
    let app = TestApp::new(&pages.url(), sink.port, "");
    app.add("ann@example.org", &["--confirmed"]);
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(r.ok(), "{}", r.stderr);
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.recipients, ["ann@example.org"], "no header was injected");
    assert!(m.header("Bcc").is_none());
    let subject = m.header("Subject").unwrap();
    assert!(
        subject.contains("<script>") && !subject.contains('\n'),
        "{subject}"
    );
    let html = m.part("text/html");
    assert!(!html.contains("<script"), "raw markup in the HTML part");
    assert!(!html.contains("<img src=x"));
    assert!(!html.contains("<b>Mallory"));
    assert!(!html.contains("href=\"javascript:"));
    assert!(html.contains("&lt;script&gt;"));
    assert_eq!(
        m.paper_ids(),
        ["2512.00001"],
        "the version suffix is dropped"
    );
}
