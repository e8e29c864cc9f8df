//! Bad input and failures: the run fails loudly, sends nothing it should not, loses nothing.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::helpers::{PageServer, Reply, SmtpSink, TestApp, WaitBounded, fixture, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redesigned_page_fails_loudly_and_sends_nothing() {
    let pages = PageServer::start(Reply::Page(fixture("layout-changed.html"))).await;
    let sink = SmtpSink::start();
    let app = TestApp::new(&pages.url(), sink.port, "");
    app.add("ann@example.org", &["--confirmed"]);
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(!r.ok());
    let last = r.stderr.trim().lines().last().unwrap();
    assert!(
        last.starts_with("error: ") && last.contains("DailyPapers"),
        "{}",
        r.stderr
    );
    assert!(sink.messages().is_empty());

    // Nothing was recorded: once the page is back, the edition goes out as usual.
    pages.serve_fixture("trending-2025-12-09.html");
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_day_sends_nothing_and_a_stale_day_is_refused() {
    let pages = PageServer::start(Reply::Page(fixture("empty-day.html"))).await;
    let sink = SmtpSink::start();
    let app = TestApp::new(&pages.url(), sink.port, "");
    app.add("ann@example.org", &["--confirmed"]);
    let r = app.run(&["run-once", "--date", "2025-12-07"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(sink.messages().is_empty());
    // The daily page fell back to another day than the one asked for.
    let r = app.run(&["run-once", "--date", "2025-12-08"]);
    assert!(!r.ok());
    assert!(
        r.stderr.contains("2025-12-07") && r.stderr.contains("2025-12-08"),
        "{}",
        r.stderr
    );
    assert!(sink.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_and_rate_limits_send_nothing() {
    let pages = PageServer::start(Reply::Status(500)).await;
    let sink = SmtpSink::start();
    let app = TestApp::new(&pages.url(), sink.port, "");
    app.add("ann@example.org", &["--confirmed"]);
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(!r.ok());
    assert!(r.stderr.contains("HTTP 500"), "{}", r.stderr);
    pages.set(Reply::Status(429));
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(!r.ok());
    assert!(
        r.stderr.contains("429") && r.stderr.contains("retry after 120 s"),
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stderr
            .trim()
            .lines()
            .filter(|l| l.starts_with("error:"))
            .count(),
        1
    );
    assert!(sink.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_source_is_a_clear_error() {
    let app = TestApp::new(
        &format!("http://127.0.0.1:{}/papers/trending", free_port()),
        free_port(),
        "",
    );
    app.add("ann@example.org", &["--confirmed"]);
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(!r.ok());
    assert!(r.stderr.contains("could not reach"), "{}", r.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_smtp_server_loses_nothing() {
    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-09.html"))).await;
    let mut sink = SmtpSink::start();
    sink.stop();
    let app = TestApp::new(&pages.url(), sink.port, "");
    app.add("ann@example.org", &["--confirmed"]);
    app.add("bob@example.com", &["--confirmed"]);
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(!r.ok());
    assert!(
        r.stderr.contains("SMTP") && r.stderr.contains("queued"),
        "{}",
        r.stderr
    );

    // The server is back: both digests go out, once.
    sink.restart_with(&[]);
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(sink.recipients(), ["ann@example.org", "bob@example.com"]);
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(r.ok());
    assert_eq!(sink.messages().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digests_deferred_on_one_day_go_out_with_the_next_edition() {
    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-09.html"))).await;
    let mut sink = SmtpSink::start();
    sink.stop();
    let app = TestApp::new(&pages.url(), sink.port, "");
    app.add("ann@example.org", &["--confirmed"]);
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(!r.ok(), "SMTP is down");

    // The next day's run still delivers what the first day planned, once, with that day's id.
    sink.restart_with(&[]);
    let first_day = |sink: &SmtpSink| {
        sink.messages()
            .iter()
            .filter(|m| String::from_utf8_lossy(&m.raw).contains("<digest.2025-12-09."))
            .count()
    };
    let r = app.run(&["run-once", "--date", "2025-12-10"]);
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(first_day(&sink), 1, "{}", r.stdout);
    let r = app.run(&["run-once", "--date", "2025-12-11"]);
    assert!(r.ok());
    assert_eq!(first_day(&sink), 1, "sent once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_refusals_are_retried_later_and_permanent_ones_bounce() {
    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-09.html"))).await;
    let mut sink = SmtpSink::start_with(&["-r", "RCPT"]);
    let app = TestApp::new(&pages.url(), sink.port, "");
    app.add("ann@example.org", &["--confirmed"]);
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(!r.ok(), "a 4xx leaves the digest queued: {}", r.stdout);
    assert!(sink.messages().is_empty());
    sink.restart_with(&[]);
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(sink.messages().len(), 1);

    // 5xx: permanent for the message; three editions in a row and the address is bounced.
    sink.restart_with(&["-f", "RCPT"]);
    for (i, date) in ["2025-12-10", "2025-12-11", "2025-12-12"]
        .iter()
        .enumerate()
    {
        // A new day's page, so there is something new to send each time.
        let entry = serde_json::json!({"paper": {"id": format!("2512.1000{i}"), "title": format!("Paper {i}"), "upvotes": 5}});
        pages.set(Reply::Page(crate::helpers::island_page(
            date,
            true,
            &[entry],
        )));
        let r = app.run(&["run-once", "--date", date]);
        assert!(
            r.ok(),
            "a permanent refusal does not fail the run: {}",
            r.stderr
        );
        assert!(r.stdout.contains("1 failed"), "{}", r.stdout);
    }
    let list = app.run(&["subscribers", "list", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(rows[0]["status"], "bounced");
    assert_eq!(sink.messages().len(), 1);
}

/// One new paper on the page of `date`, so that each edition has something to send.
fn one_new_paper(pages: &PageServer, i: u32, date: &str) {
    let entry = serde_json::json!({"paper": {"id": format!("2512.200{i:02}"), "title": format!("Paper {i}"), "upvotes": 5}});
    pages.set(Reply::Page(crate::helpers::island_page(
        date,
        true,
        &[entry],
    )));
}

/// The subscriber's count of permanent refusals in a row, and their status, from the store.
fn refusals(app: &TestApp, email: &str) -> (u32, String) {
    let store = app.store();
    let email = paperboy::domain::SubscriberEmail::parse(email).unwrap();
    let sub = store.subscriber(&email).unwrap().expect("a subscriber");
    (sub.permanent_failures, sub.status.to_string())
}

/// Only refusals in a row bounce an address: an accepted digest starts the count again. A
/// bounced address gets nothing from the next editions, even once the server accepts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_digest_clears_the_refusals_and_a_bounced_address_is_skipped() {
    let pages = PageServer::start(Reply::Status(404)).await;
    let mut sink = SmtpSink::start_with(&["-f", "RCPT"]);
    let app = TestApp::new(&pages.url(), sink.port, "");
    app.add("ann@example.org", &["--confirmed"]);
    let dates = [
        "2025-12-10",
        "2025-12-11",
        "2025-12-12",
        "2025-12-13",
        "2025-12-14",
        "2025-12-15",
        "2025-12-16",
    ];
    let edition = |i: usize, outcome: &str| {
        one_new_paper(&pages, i as u32, dates[i]);
        let r = app.run(&["run-once", "--date", dates[i]]);
        assert!(r.ok(), "{}", r.stderr);
        assert!(r.stdout.contains(outcome), "{}: {}", dates[i], r.stdout);
    };

    // Two refusals in a row: counted, not yet bounced.
    edition(0, "1 failed");
    edition(1, "1 failed");
    assert_eq!(refusals(&app, "ann@example.org"), (2, "active".into()));

    // The server takes the next digest: the count starts again.
    sink.restart_with(&[]);
    edition(2, "1 sent");
    assert_eq!(sink.messages().len(), 1);
    assert_eq!(refusals(&app, "ann@example.org"), (0, "active".into()));

    // One more refusal is the first of a new series, not the third.
    sink.restart_with(&["-f", "RCPT"]);
    edition(3, "1 failed");
    assert_eq!(refusals(&app, "ann@example.org"), (1, "active".into()));
    edition(4, "1 failed");
    edition(5, "1 failed");
    assert_eq!(refusals(&app, "ann@example.org"), (3, "bounced".into()));

    // The server accepts again and Bob subscribes: the next edition is Bob's alone.
    sink.restart_with(&[]);
    app.add("bob@example.org", &["--confirmed"]);
    one_new_paper(&pages, 6, dates[6]);
    let dry = app.run(&["run-once", "--date", dates[6], "--dry-run"]);
    assert!(dry.ok(), "{}", dry.stderr);
    assert!(
        dry.stdout.contains("bob@example.org: would get 1 paper(s)"),
        "{}",
        dry.stdout
    );
    assert!(!dry.stdout.contains("ann@example.org"), "{}", dry.stdout);
    edition(6, "1 sent");
    let to: Vec<Vec<String>> = sink.messages().into_iter().map(|m| m.recipients).collect();
    assert_eq!(
        to.len(),
        2,
        "day 3's digest to Ann and today's to Bob: {to:?}"
    );
    assert!(to.contains(&vec!["bob@example.org".to_string()]), "{to:?}");
    assert_eq!(
        to.iter().filter(|r| r[0] == "ann@example.org").count(),
        1,
        "nothing more for the bounced address: {to:?}"
    );
    assert_eq!(refusals(&app, "ann@example.org"), (3, "bounced".into()));
}

crate::helpers::on_both_engines!(kills_mid_run_lose_nothing_and_repeat_at_most_the_in_flight);

/// The digests in the sink by reader: each digest (Message-ID) with its papers, in the order
/// they arrived, repeats included.
fn digests_by_reader(sink: &SmtpSink) -> HashMap<String, Vec<(String, Vec<String>)>> {
    let mut per: HashMap<String, Vec<(String, Vec<String>)>> = HashMap::new();
    for m in sink.messages() {
        per.entry(m.recipients[0].clone())
            .or_default()
            .push((m.header("Message-ID").unwrap(), m.paper_ids()));
    }
    per
}

/// Readers with a digest in the sink, and messages there.
fn readers_and_messages(sink: &SmtpSink) -> (usize, usize) {
    let messages = sink.messages();
    let readers: HashSet<&String> = messages.iter().map(|m| &m.recipients[0]).collect();
    (readers.len(), messages.len())
}

/// kill -9 in the middle of sending, again and again: the next run sends every digest that
/// was not accepted, only those in flight at a kill arrive twice (and then the same digest),
/// and the next day's edition brings nobody a paper they already had.
async fn kills_mid_run_lose_nothing_and_repeat_at_most_the_in_flight(
    engine: crate::helpers::EngineKind,
) {
    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-08.html"))).await;
    let sink = SmtpSink::start();
    let app = TestApp::on(engine, &pages.url(), sink.port, "");
    let concurrency = 4;
    app.set("mail.smtp.concurrency", concurrency as i64);
    // Paced, so that a run sends for seconds: a kill at a share of the readers lands while
    // the run is sending, however slow the machine.
    app.set("mail.smtp.max_per_second", 30);
    let subscribers = 160;
    app.seed(subscribers, |i| {
        let choices = paperboy::domain::Choices {
            min_upvotes: Some(i % 50),
            max_items: Some(1 + i % 5),
            ..Default::default()
        };
        paperboy::domain::Preferences::new(choices, &paperboy::domain::EditionDays::every_day())
            .unwrap()
    })
    .await;
    let kills = 4;
    for round in 1..=kills {
        let (_, before) = readers_and_messages(&sink);
        let mut child = crate::helpers::KillOnDrop(
            app.command(&["run-once", "--date", "2025-12-08"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        // Kill once this run has sent something and a further share of the readers has
        // their digest: a sixth, two sixths, ... The last kill leaves a third of the readers
        // (some two seconds of sending at the cap) for it to land in, however long a look at
        // the sink takes on a loaded machine.
        let share = subscribers as usize * round / (kills + 2);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (readers, messages) = readers_and_messages(&sink);
            if messages > before && readers >= share {
                break;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "round {round}: the run ended before {share} readers had their digest"
            );
            assert!(
                Instant::now() < deadline,
                "round {round}: no progress in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "round {round}: the run had ended before the kill"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        let (readers, messages) = readers_and_messages(&sink);
        assert!(
            messages > before && readers < subscribers as usize,
            "round {round}: the kill did not land while sending ({readers} readers served)"
        );
    }
    // The sends that follow need no pacing.
    app.set("mail.smtp.max_per_second", 0);
    let r = app.run(&["run-once", "--date", "2025-12-08"]);
    assert!(
        r.ok(),
        "the store opens cleanly after kill -9: {}",
        r.stderr
    );

    let per = digests_by_reader(&sink);
    assert_eq!(
        per.len(),
        subscribers as usize,
        "every subscriber got their digest"
    );
    let mut repeats = 0;
    for (reader, copies) in &per {
        assert!(
            copies.len() <= 2,
            "{reader} got {} copies: only the one in flight at a kill may repeat",
            copies.len()
        );
        for copy in &copies[1..] {
            assert_eq!(copy, &copies[0], "{reader}'s repeat is the same digest");
        }
        repeats += copies.len() - 1;
    }
    eprintln!("{kills} kills, {repeats} repeated digests of {subscribers}");
    assert!(
        repeats <= kills * concurrency as usize,
        "{repeats} repeats for {kills} kills at concurrency {concurrency}"
    );
    let r = app.run(&["run-once", "--date", "2025-12-08"]);
    assert!(r.ok());
    assert_eq!(
        sink.messages().len(),
        subscribers as usize + repeats,
        "a re-run sends nothing"
    );

    // The next day's page: the first day's papers, still trending and with more upvotes, at
    // its top, and new ones below. Nobody gets one of the first day's papers a second time,
    // in a new digest or a repeated one.
    let day1 = paperboy::source::parse_listing(&fixture("trending-2025-12-08.html")).unwrap();
    let mut entries: Vec<serde_json::Value> = day1
        .papers
        .iter()
        .map(|p| {
            serde_json::json!({"paper": {"id": p.id.as_str(), "title": p.title, "upvotes": p.upvotes + 10}})
        })
        .collect();
    entries.extend((0..5).map(|i| {
        serde_json::json!({"paper": {"id": format!("2512.300{i:02}"), "title": format!("New {i}"), "upvotes": 60}})
    }));
    pages.set(Reply::Page(crate::helpers::island_page(
        "2025-12-09",
        true,
        &entries,
    )));
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(r.ok(), "{}", r.stderr);
    let per = digests_by_reader(&sink);
    let mut next_day = 0;
    for (reader, copies) in &per {
        // A repeat carries the same papers as its first copy (checked above): count it once.
        let digests: HashMap<&String, &Vec<String>> =
            copies.iter().map(|(id, papers)| (id, papers)).collect();
        next_day += digests
            .keys()
            .filter(|id| id.contains(".2025-12-09."))
            .count();
        let mut papers: Vec<&String> = digests.values().copied().flatten().collect();
        let all = papers.len();
        papers.sort();
        papers.dedup();
        assert_eq!(papers.len(), all, "{reader} got a paper twice: {digests:?}");
    }
    assert!(
        next_day > subscribers as usize / 2,
        "the next day's edition went out ({next_day} digests)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_source_failures_are_retried() {
    let pages = PageServer::start(Reply::Status(503)).await;
    pages.script(vec![
        Reply::Status(503),
        Reply::RateLimited(1),
        Reply::Page(fixture("trending-2025-12-09.html")),
    ]);
    let sink = SmtpSink::start();
    let app = TestApp::new(&pages.url(), sink.port, "");
    app.set("source.max_attempts", 3);
    app.add("ann@example.org", &["--confirmed"]);
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(r.ok(), "{}", r.stderr);
    assert_eq!(pages.hits(), 3);
    assert_eq!(sink.messages().len(), 1);

    // Failing every time: a bounded number of attempts, then a clear error.
    pages.set(Reply::Status(502));
    let r = app.run(&["run-once", "--date", "2025-12-10"]);
    assert!(!r.ok());
    assert!(
        r.stderr.contains("HTTP 502") && r.stderr.contains("after 3 attempts"),
        "{}",
        r.stderr
    );
    assert_eq!(pages.hits(), 6);
    // A 429 asking for longer than we wait ends at once.
    pages.set(Reply::RateLimited(3600));
    let r = app.run(&["run-once", "--date", "2025-12-10"]);
    assert!(!r.ok());
    assert_eq!(pages.hits(), 7);
    assert_eq!(sink.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_huge_and_truncated_pages_send_nothing() {
    let page = fixture("trending-2025-12-09.html");
    let pages = PageServer::start(Reply::Slow(Duration::from_secs(4), page.clone())).await;
    let sink = SmtpSink::start();
    let app = TestApp::new(&pages.url(), sink.port, "");
    app.set("source.timeout_secs", 1);
    app.set("source.max_attempts", 1);
    app.set("source.max_bytes", 1048576);
    app.add("ann@example.org", &["--confirmed"]);
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(!r.ok());
    assert!(
        r.stderr.contains("did not answer within 1 s"),
        "{}",
        r.stderr
    );

    // 50 MB: refused at the cap, not read to the end.
    pages.set(Reply::Page("x".repeat(50 * 1024 * 1024)));
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(!r.ok());
    assert!(r.stderr.contains("more than 1048576 bytes"), "{}", r.stderr);

    pages.set(Reply::Page(page[..page.len() / 2].to_string()));
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(!r.ok(), "a truncated page must not make a digest");
    assert!(sink.messages().is_empty());
}

/// A cap of `k` a second lets `k` go at once and then one every 1/k s, so `n` digests reach
/// the sink over at least (n - k)/k seconds: seconds that an unpaced run of a few small
/// digests to a local sink never takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_rate_caps_pace_the_run() {
    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-09.html"))).await;
    let sink = SmtpSink::start();
    let app = TestApp::new(&pages.url(), sink.port, "");
    let (per_second, digests) = (4u32, 16u32);
    app.set("mail.smtp.max_per_second", i64::from(per_second));
    app.seed(digests, |_| {
        let choices = paperboy::domain::Choices {
            max_items: Some(2),
            ..Default::default()
        };
        paperboy::domain::Preferences::new(choices, &paperboy::domain::EditionDays::every_day())
            .unwrap()
    })
    .await;
    let run = app
        .command(&["run-once", "--date", "2025-12-09"])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    sink.wait_for_first().await;
    let first = std::time::Instant::now();
    sink.wait_for(digests as usize).await;
    let spread = first.elapsed();
    let out = run.wait_with_output_bounded();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("send-rate caps in force"), "{stderr}");
    let paced = Duration::from_secs_f64(f64::from(digests - per_second) / f64::from(per_second));
    assert!(
        spread + Duration::from_millis(300) >= paced,
        "{digests} digests at {per_second}/s arrived within {spread:?}, under the {paced:?} \
         the cap needs"
    );
    assert_eq!(
        sink.messages().len(),
        digests as usize,
        "paced, not dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_421_or_a_hang_up_is_retried_and_a_stale_digest_is_given_up() {
    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-09.html"))).await;
    for switches in [["-Q", "RCPT"], ["-q", "DATA"]] {
        let mut sink = SmtpSink::start_with(&switches);
        let app = TestApp::new(&pages.url(), sink.port, "");
        app.add("ann@example.org", &["--confirmed"]);
        let r = app.run(&["run-once", "--date", "2025-12-09"]);
        assert!(!r.ok(), "{switches:?}: {}", r.stdout);
        assert!(r.stderr.contains("queued for the next run"), "{}", r.stderr);
        sink.restart_with(&[]);
        let r = app.run(&["run-once", "--date", "2025-12-09"]);
        assert!(r.ok(), "{switches:?}: {}", r.stderr);
        assert_eq!(sink.messages().len(), 1, "{switches:?}");
    }

    // A digest still refused long after it was planned is reported, not sent late.
    let mut sink = SmtpSink::start_with(&["-r", "RCPT"]);
    let app = TestApp::new(&pages.url(), sink.port, "");
    app.add("ann@example.org", &["--confirmed"]);
    assert!(!app.run(&["run-once", "--date", "2025-12-09"]).ok());
    {
        let store = app.store();
        let date = paperboy::domain::EditionDate::parse("2025-12-09").unwrap();
        let mut d = store.deliveries(date).unwrap().pop().unwrap();
        assert_eq!(d.state, paperboy::store::DeliveryState::Retry);
        d.created_at = Some(chrono::Utc::now() - chrono::Duration::hours(49));
        store.update_delivery(&d).unwrap();
        store.flush().await.unwrap();
    }
    sink.restart_with(&[]);
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(r.stdout.contains("1 failed"), "{}", r.stdout);
    assert!(sink.messages().is_empty());
}

/// The SMTP server goes away in the middle of a run: what it accepted is recorded, the rest
/// waits for the next run, and nobody gets two beyond the messages in flight at the cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smtp_server_dying_mid_run_loses_nothing() {
    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-09.html"))).await;
    let mut sink = SmtpSink::start_with(&["-w", "1"]);
    let app = TestApp::new(&pages.url(), sink.port, "");
    let subscribers = 20;
    app.seed(subscribers, |_| Default::default()).await;
    let run = app
        .command(&["run-once", "--date", "2025-12-09"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Cut once the first messages are in: twenty at a second each, two at a time, take ten
    // seconds, so the run is then well short of its end.
    sink.wait_for_first().await;
    let mut accepted = sink.messages().len();
    sink.stop();
    let out = run.wait_with_output_bounded();
    assert!(!out.status.success(), "the run reports the SMTP failure");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("queued for the next run"), "{stderr}");
    // Messages already in the sink's hands at the cut may have landed after the count.
    accepted = accepted.max(sink.messages().len());
    assert!(
        accepted > 0 && accepted < subscribers as usize,
        "{accepted} accepted"
    );

    sink.restart_with(&[]);
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(r.ok(), "{}", r.stderr);
    let mut to = sink.recipients();
    let total = to.len();
    to.dedup();
    assert_eq!(to.len(), subscribers as usize, "everyone got their digest");
    assert!(
        total - to.len() <= 2,
        "at most the in-flight messages repeat"
    );
}

/// A TCP relay in front of the SMTP sink that holds the first `DATA` command it sees until
/// the test lets it through: a point in the middle of a send that a test can wait for and
/// act at, with no timing guessed.
struct DataGate {
    port: u16,
    reached: std::sync::Arc<tokio::sync::Notify>,
    release: std::sync::Arc<tokio::sync::Semaphore>,
}

impl DataGate {
    async fn start(sink_port: u16) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let reached = std::sync::Arc::new(tokio::sync::Notify::new());
        let release = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
        let held = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (reached2, release2) = (reached.clone(), release.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(("127.0.0.1", sink_port))
                    .await
                    .unwrap();
                let (mut client_in, mut client_out) = client.into_split();
                let (mut server_in, mut server_out) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_in, &mut client_out).await;
                });
                let (reached, release, held) = (reached2.clone(), release2.clone(), held.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match client_in.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let chunk = &buf[..n];
                        if chunk
                            .windows(6)
                            .any(|w| w.eq_ignore_ascii_case(b"DATA\r\n"))
                            && !held.swap(true, std::sync::atomic::Ordering::SeqCst)
                        {
                            reached.notify_one();
                            let _ = release.acquire().await;
                        }
                        if server_out.write_all(chunk).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self {
            port,
            reached,
            release,
        }
    }

    /// Waits (at most 30 s) until a client's `DATA` is held.
    async fn wait_reached(&self) {
        tokio::time::timeout(Duration::from_secs(30), self.reached.notified())
            .await
            .expect("no DATA reached the gate in 30 s");
    }

    fn release(&self) {
        self.release.add_permits(1);
    }
}

/// A reader who unsubscribes while their digest is in the middle of the SMTP exchange stays
/// unsubscribed: what the send records afterwards (here, clearing an earlier refusal) is
/// applied to the record as it is then, not written over it from the copy read before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_who_leaves_during_their_send_stays_gone() {
    use paperboy::domain::SubscriberEmail;
    use paperboy::tokens::{Links, TokenKey};

    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-09.html"))).await;
    let sink = SmtpSink::start();
    let gate = DataGate::start(sink.port).await;
    let app = TestApp::new(&pages.url(), gate.port, "");
    let base = crate::helpers::web_on_free_port(&app);
    app.add("ann@example.org", &["--confirmed"]);
    // A refusal on record, which her accepted digest clears.
    let email = SubscriberEmail::parse("ann@example.org").unwrap();
    let id = {
        let store = app.store();
        let changed = store.change_subscriber(&email, |current| {
            let mut ann = current.unwrap();
            ann.permanent_failures = 1;
            Ok::<_, ()>((ann.clone(), ann.id))
        });
        changed.unwrap().unwrap()
    };
    let (_daemon, http) = crate::helpers::start_serve(&app, &base).await;
    let run = app
        .command(&["run-once", "--date", "2025-12-09"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    gate.wait_reached().await;
    let key = TokenKey::load_or_create(&app.dir.path().join("data/secret.key")).unwrap();
    let unsubscribe = Links::new(key, &base).unsubscribe(id);
    let r = http.post(&unsubscribe).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    gate.release();

    let out = run.wait_with_output_bounded();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sink.recipients(), ["ann@example.org"], "her digest went");
    let r = app.run(&["subscribers", "list", "--json"]);
    assert!(r.ok(), "{}", r.stderr);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rows[0]["status"], "unsubscribed", "{}", r.stdout);
}
