//! Weekly digests and subscribers' own send times, driven with an injected clock
//! (`run-once --now`), across the night Europe/Berlin moves to summer time.

use serde_json::json;

use crate::helpers::{
    PageServer, Reply, SmtpSink, TestApp, island_page, start_serve, web_on_free_port,
};

/// A trending page whose papers are new on each call with a different `batch`.
fn page(batch: u32, n: u32) -> Reply {
    let entries: Vec<_> = (0..n)
        .map(|i| {
            json!({"paper": {
                "id": format!("2603.{:05}", batch * 100 + i),
                "title": format!("Batch {batch} paper {i}"),
                "upvotes": 10 + batch * 10 + i,
            }})
        })
        .collect();
    Reply::Page(island_page("2026-03-28", true, &entries))
}

fn recipients(sink: &SmtpSink) -> Vec<String> {
    let mut r = sink.recipients();
    r.sort();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_send_times_go_out_at_the_local_hour_once_across_dst() {
    let pages = PageServer::start(page(1, 3)).await;
    let sink = SmtpSink::start();
    let app = TestApp::new(&pages.url(), sink.port, "");
    app.add(
        "berlin@example.org",
        &[
            "--confirmed",
            "--send-at",
            "7",
            "--timezone",
            "Europe/Berlin",
        ],
    );
    app.add(
        "tokyo@example.org",
        &[
            "--confirmed",
            "--send-at",
            "08:00",
            "--timezone",
            "Asia/Tokyo",
        ],
    );
    app.add("plain@example.org", &["--confirmed"]);
    let run_at = |now: &str| {
        let r = app.run(&["run-once", "--now", now]);
        assert!(r.ok(), "{}", r.stderr);
        r.stdout
    };

    // 06:30 in Berlin (CET): the server's edition goes to the subscriber on its schedule.
    let out = run_at("2026-03-28T05:30:00Z");
    assert!(out.contains("2 not due"), "{out}");
    assert_eq!(recipients(&sink), ["plain@example.org"]);

    // 07:05 in Berlin: hers; a quarter hour later, nothing more.
    sink.clear();
    run_at("2026-03-28T06:05:00Z");
    assert_eq!(recipients(&sink), ["berlin@example.org"]);
    let subject = sink.messages()[0].header("Subject").unwrap();
    assert!(subject.contains("Mar 28"), "{subject}");
    sink.clear();
    run_at("2026-03-28T06:20:00Z");
    assert!(recipients(&sink).is_empty());

    // 08:05 in Tokyo is 23:05 UTC the day before: the edition of Tokyo's date.
    pages.set(page(2, 3));
    run_at("2026-03-28T23:05:00Z");
    assert_eq!(recipients(&sink), ["tokyo@example.org"]);
    let subject = sink.messages()[0].header("Subject").unwrap();
    assert!(subject.contains("Mar 29"), "{subject}");

    // The clocks went forward overnight: 07:00 in Berlin is now 05:00 UTC. At 04:30 UTC
    // (06:30 CEST) it is too early; at 05:05 UTC it is her time.
    sink.clear();
    pages.set(page(3, 3));
    run_at("2026-03-29T04:30:00Z");
    assert_eq!(recipients(&sink), ["plain@example.org"]);
    sink.clear();
    run_at("2026-03-29T05:05:00Z");
    run_at("2026-03-29T05:20:00Z");
    assert_eq!(recipients(&sink), ["berlin@example.org"]);

    // Long after her time (past the catch-up window): skipped, not sent late.
    sink.clear();
    pages.set(page(4, 3));
    run_at("2026-03-30T14:00:00Z");
    assert_eq!(recipients(&sink), ["plain@example.org"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weekly_digest_gathers_the_week_on_its_day() {
    let pages = PageServer::start(page(1, 2)).await;
    let sink = SmtpSink::start();
    let app = TestApp::new(&pages.url(), sink.port, "");
    app.add("weekly@example.org", &["--confirmed", "--weekly", "mon"]);
    app.add("daily@example.org", &["--confirmed", "--max-items", "2"]);
    let run = |date: &str| {
        let r = app.run(&["run-once", "--date", date]);
        assert!(r.ok(), "{}", r.stderr);
        r.stdout
    };

    // Friday and Saturday: dailies only.
    let out = run("2026-03-27");
    assert!(out.contains("1 not due"), "{out}");
    pages.set(page(2, 2));
    run("2026-03-28");
    assert_eq!(
        recipients(&sink),
        ["daily@example.org", "daily@example.org"]
    );

    // Monday: the week's papers the weekly reader was not sent, most upvoted first.
    sink.clear();
    pages.set(page(3, 2));
    let r = app.run(&["run-once", "--date", "2026-03-30", "--dry-run"]);
    assert!(
        r.stdout
            .contains("weekly@example.org: would get 6 paper(s)"),
        "{}",
        r.stdout
    );
    run("2026-03-30");
    let messages = sink.messages();
    let weekly: Vec<_> = messages
        .iter()
        .filter(|m| m.recipients[0] == "weekly@example.org")
        .collect();
    assert_eq!(weekly.len(), 1);
    assert_eq!(
        weekly[0].paper_ids(),
        [
            "2603.00301",
            "2603.00300",
            "2603.00201",
            "2603.00200",
            "2603.00101",
            "2603.00100"
        ]
    );
    let subject = weekly[0].header("Subject").unwrap();
    assert!(
        subject.starts_with("Your week in papers, Mar 24–30: "),
        "{subject}"
    );
    assert!(
        weekly[0]
            .part("text/plain")
            .contains("6 papers of the week picked for you")
    );

    // Their feed has the digest whole, papers of the days before included.
    let token = crate::web::token_of(&crate::web::link_in(weekly[0], "/preferences?token="));
    let base = web_on_free_port(&app);
    let (daemon, http) = start_serve(&app, &base).await;
    let preferences = http
        .get(format!("{base}/preferences?token={token}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let start = preferences
        .find(&format!("{base}/feed/"))
        .expect("a feed link");
    let end = start + preferences[start..].find('"').unwrap();
    let feed_url = &preferences[start..end];
    let xml = http
        .get(feed_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let feed = atom_syndication::Feed::read_from(xml.as_bytes()).unwrap();
    assert_eq!(feed.entries.len(), 1);
    let content = feed.entries[0]
        .content
        .as_ref()
        .unwrap()
        .value
        .clone()
        .unwrap();
    for batch in 1..=3 {
        for i in 0..2 {
            let title = format!("Batch {batch} paper {i}");
            assert!(content.contains(&title), "{title} missing from\n{content}");
        }
    }
    drop(daemon);
    app.set("schedule.cron", "0 0 8 * * Mon-Fri");

    // Tuesday: not again until next Monday.
    sink.clear();
    pages.set(page(4, 2));
    let out = run("2026-03-31");
    assert!(out.contains("1 not due"), "{out}");
    assert_eq!(recipients(&sink), ["daily@example.org"]);

    // A day the site does not send on (Mon-Fri here) needs an hour of their own.
    let r = app.run(&["subscribers", "add", "sat@example.org", "--weekly", "sat"]);
    assert!(
        !r.ok() && r.stderr.contains("mon, tue, wed, thu, fri only"),
        "{}",
        r.stderr
    );
    let r = app.run(&[
        "subscribers",
        "add",
        "sat@example.org",
        "--weekly",
        "sat",
        "--send-at",
        "9",
    ]);
    assert!(r.ok(), "{}", r.stderr);

    // A bad day or zone is refused when the subscriber is added.
    let r = app.run(&["subscribers", "add", "x@example.org", "--weekly", "someday"]);
    assert!(
        !r.ok() && r.stderr.contains("not a frequency"),
        "{}",
        r.stderr
    );
    let r = app.run(&[
        "subscribers",
        "add",
        "y@example.org",
        "--send-at",
        "7",
        "--timezone",
        "Mars/Olympus",
    ]);
    assert!(
        !r.ok() && r.stderr.contains("IANA time zone"),
        "{}",
        r.stderr
    );
}

/// The site's schedule (weekdays at 8) sends nothing on Saturdays, so a weekly reader on it
/// cannot have Saturday: not from `subscribers add`, and not from an import either (the
/// preferences are built by one constructor, whatever the way in). With an hour of their
/// own, any day is theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weekly_day_the_site_never_sends_on_is_refused_at_every_entry_point() {
    let pages = PageServer::start(page(0, 3)).await;
    let sink = SmtpSink::start();
    let app = TestApp::new(&pages.url(), sink.port, "");
    let refused = "this site sends on mon, tue, wed, thu, fri only";

    let r = app.run(&["subscribers", "add", "sat@example.org", "--weekly", "sat"]);
    assert!(!r.ok() && r.stderr.contains(refused), "{}", r.stderr);

    let file = app.dir.path().join("import.jsonl");
    std::fs::write(
        &file,
        concat!(
            "{\"email\":\"fri@example.org\",\"status\":\"active\",\"frequency\":\"weekly:fri\"}\n",
            "{\"email\":\"sat@example.org\",\"status\":\"active\",\"frequency\":\"weekly:sat\"}\n",
        ),
    )
    .unwrap();
    let r = app.run(&["subscribers", "import", file.to_str().unwrap()]);
    assert!(!r.ok(), "{}", r.stdout);
    assert!(
        r.stderr.contains("line 2:") && r.stderr.contains(refused),
        "{}",
        r.stderr
    );
    // A bad line applies nothing: not even the good one before it.
    let listed = app.run(&["subscribers", "list", "--json"]).stdout;
    assert!(!listed.contains("fri@example.org"), "{listed}");

    std::fs::write(
        &file,
        "{\"email\":\"sat@example.org\",\"status\":\"active\",\"frequency\":\"weekly:sat\",\"send_at\":\"09:00 UTC\"}\n",
    )
    .unwrap();
    let r = app.run(&["subscribers", "import", file.to_str().unwrap()]);
    assert!(r.ok(), "{}", r.stderr);
    let listed = app.run(&["subscribers", "list", "--json"]).stdout;
    assert!(listed.contains("sat@example.org"), "{listed}");
}
