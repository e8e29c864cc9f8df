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
        subject.starts_with("Dec 9: Inference Scaling for Long-Context Retrieval")
            && subject.ends_with(" + 9 more")
            && subject.chars().count() <= 80,
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
    // A plain-text newsletter as mail readers expect one: lines that fit (a long link on a
    // line of its own, never broken), and the footer after the signature delimiter,
    // trailing space and all, as it arrived.
    let a_link_alone = |l: &str| l.trim_start().starts_with("https://") && !l.trim().contains(' ');
    assert!(
        text.lines()
            .all(|l| l.chars().count() <= 78 || a_link_alone(l)),
        "{text}"
    );
    assert!(text.lines().any(|l| l == "-- "), "{text}");
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

/// The papers of a fixture page as the page carries them (its `data-props` attribute, read
/// here without paperboy's parser): id, upvotes, and the texts keywords look at (title,
/// abstract, AI keywords).
fn page_papers(page: &str) -> Vec<(String, u64, Vec<String>)> {
    let html = fixture(page);
    let start = html.find("data-props=\"").expect("a data island") + "data-props=\"".len();
    let end = start + html[start..].find('"').unwrap();
    let json = html[start..end]
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let props: serde_json::Value = serde_json::from_str(&json).unwrap();
    props["dailyPapers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let p = &e["paper"];
            let mut texts = vec![
                p["title"].as_str().unwrap().to_string(),
                p["summary"].as_str().unwrap_or("").to_string(),
            ];
            if let Some(k) = p["ai_keywords"].as_array() {
                texts.extend(k.iter().map(|k| k.as_str().unwrap().to_string()));
            }
            (
                p["id"].as_str().unwrap().to_string(),
                p["upvotes"].as_u64().unwrap(),
                texts,
            )
        })
        .collect()
}

/// Whether `word` starts a word of `text`, in any case.
fn starts_a_word(text: &str, word: &str) -> bool {
    let text = text.to_lowercase();
    let word = word.to_lowercase();
    text.match_indices(&word).any(|(i, _)| {
        text[..i]
            .chars()
            .last()
            .is_none_or(|c| !c.is_alphanumeric())
    })
}

/// A first digest for a reader with `keywords`, `min_upvotes` and `max_items`: the papers of
/// the page any of whose texts has a word starting with a keyword, most upvoted first, page
/// order among equals, at most `max_items`.
fn expected_for_keywords(
    page: &str,
    keywords: &[&str],
    min_upvotes: u64,
    max_items: usize,
) -> Vec<String> {
    let mut papers: Vec<_> = page_papers(page)
        .into_iter()
        .filter(|(_, upvotes, texts)| {
            *upvotes >= min_upvotes
                && keywords
                    .iter()
                    .any(|k| texts.iter().any(|t| starts_a_word(t, k)))
        })
        .collect();
    papers.sort_by_key(|(_, upvotes, _)| std::cmp::Reverse(*upvotes));
    papers
        .into_iter()
        .take(max_items)
        .map(|(id, _, _)| id)
        .collect()
}

/// The papers `explain` says are picked for `email`, most upvoted first (its lines come in
/// page order), page order among equals.
fn explained_picks(app: &TestApp, email: &str, date: &str) -> Vec<String> {
    let r = app.run(&["explain", email, "--date", date]);
    assert!(r.ok(), "{}", r.stderr);
    let mut picked: Vec<(u64, String)> = r
        .stdout
        .lines()
        .filter(|l| l.len() > 34 && l[..34].trim() == "picked")
        .map(|l| {
            let mut rest = l[34..].split_whitespace();
            let upvotes = rest.next().unwrap().parse().unwrap();
            (upvotes, rest.next().unwrap().to_string())
        })
        .collect();
    picked.sort_by_key(|(upvotes, _)| std::cmp::Reverse(*upvotes));
    picked.into_iter().map(|(_, id)| id).collect()
}

/// Keywords end to end: each reader's digest holds exactly the papers of the page that
/// match their keywords (and minimum, and cap), in order, and `explain` names the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyword_digests_hold_exactly_the_matching_papers() {
    const PAGE: &str = "trending-2025-12-09.html";
    const DATE: &str = "2025-12-09";
    let pages = PageServer::start(Reply::Page(fixture(PAGE))).await;
    let sink = SmtpSink::start();
    let app = TestApp::new(&pages.url(), sink.port, "");
    // (email, keywords, minimum, cap): a cap of 30 is the config's.
    let readers: [(&str, &[&str], u64, usize); 5] = [
        ("ann@example.org", &["medical", "segment"], 0, 30),
        ("bob@example.org", &["scaling"], 0, 30),
        ("cat@example.org", &["compression"], 0, 3),
        ("dan@example.org", &["bottleneck"], 70, 30),
        ("eve@example.org", &["text"], 0, 30),
    ];
    for (email, keywords, min, cap) in readers {
        let (keywords, min, cap) = (keywords.join(", "), min.to_string(), cap.to_string());
        let mut args = vec![
            "--confirmed",
            "--keywords",
            &keywords,
            "--min-upvotes",
            &min,
        ];
        if cap != "30" {
            args.extend(["--max-items", &cap]);
        }
        app.add(email, &args);
    }
    // The fixture as worked out by hand, so the reading above is checked too.
    assert_eq!(
        expected_for_keywords(PAGE, &["medical", "segment"], 0, 30),
        ["2405.25425", "1906.68431", "2411.78831", "2404.71401"]
    );
    // "text" starts a word of seven papers and sits inside one ("Long-Context") of six more,
    // which Eve must not get.
    let inside = page_papers(PAGE)
        .iter()
        .filter(|(_, _, texts)| texts.iter().any(|t| t.to_lowercase().contains("text")))
        .count();
    assert_eq!(
        (expected_for_keywords(PAGE, &["text"], 0, 30).len(), inside),
        (7, 13)
    );

    // Before the run, from the page as it is now.
    let before: Vec<Vec<String>> = readers
        .iter()
        .map(|(email, ..)| explained_picks(&app, email, DATE))
        .collect();

    let r = app.run(&["run-once", "--date", DATE]);
    assert!(r.ok(), "{}", r.stderr);
    let got = by_recipient(&sink);
    assert_eq!(got.len(), readers.len(), "recipients: {:?}", got.keys());
    for ((email, keywords, min, cap), before) in readers.iter().zip(before) {
        let want = expected_for_keywords(PAGE, keywords, *min, *cap);
        assert!(!want.is_empty() && want.len() < 36, "{email}: {want:?}");
        let digests = &got[*email];
        assert_eq!(digests.len(), 1, "{email}");
        let sent = digests[0].paper_ids();
        assert_eq!(sent, want, "{email}'s digest");
        assert_eq!(before, sent, "explain before the run, for {email}");
        assert_eq!(
            explained_picks(&app, email, DATE),
            sent,
            "explain of the edition on record, for {email}"
        );
    }
    assert_eq!(got["cat@example.org"][0].paper_ids().len(), 3, "the cap");
}
