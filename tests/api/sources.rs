//! Sources through the real binary: several merged by arXiv id, the JSON API as a kind of
//! its own with the same date check as a daily page, and the recent window's best effort.

use serde_json::json;

use crate::helpers::{PageServer, Reply, SmtpSink, TestApp, fixture, island_page};

fn entry(id: &str, title: &str, upvotes: u32) -> serde_json::Value {
    json!({
        "paper": {
            "id": id,
            "title": title,
            "upvotes": upvotes,
            "submittedOnDailyAt": "2025-12-09T08:00:00.000Z",
        },
        "numComments": 0,
    })
}

/// The JSON of `/api/daily_papers`: the same entries, as a bare array.
fn api_body(entries: &[serde_json::Value]) -> String {
    serde_json::Value::Array(entries.to_vec()).to_string()
}

/// The ids in a dry-run line for `who`, in digest order.
fn dry_run_ids(stdout: &str, who: &str) -> Vec<String> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("{who}: would get")))
        .unwrap_or_else(|| panic!("no dry-run line for {who}: {stdout}"));
    let list = &line[line.rfind('[').unwrap() + 1..line.len() - 1];
    list.split(", ").map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sources_are_merged_by_arxiv_id() {
    let pages = PageServer::start(Reply::Status(404)).await;
    pages.route(
        "/papers/trending",
        Reply::Page(island_page(
            "2025-12-09",
            true,
            &[
                entry("2501.00001", "Alpha as the page says", 5),
                entry("2501.00002", "Beta", 100),
                entry("2501.00003", "Gamma", 3),
            ],
        )),
    );
    pages.route(
        "/api/daily_papers",
        Reply::Page(api_body(&[
            entry("2501.00001v2", "Alpha as the API says", 50),
            entry("2501.00004", "Delta", 60),
            entry("2501.00005", "Epsilon", 70),
        ])),
    );
    let sink = SmtpSink::start();
    let app = TestApp::new(&pages.at("/papers/trending"), sink.port, "");
    app.set("source.also.api.kind", "hf-api");
    app.set("source.also.api.url", pages.at("/api/daily_papers"));
    app.add("ann@example.org", &["--confirmed", "--min-upvotes", "40"]);

    let r = app.run(&["check-config"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(r.stdout.contains("[source.also.api]"), "{}", r.stdout);

    let r = app.run(&["run-once", "--date", "2025-12-09", "--dry-run"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(r.stdout.contains("5 papers on the page"), "{}", r.stdout);
    // Alpha is one paper with the API's 50 upvotes, so it clears the minimum of 40.
    assert_eq!(
        dry_run_ids(&r.stdout, "ann@example.org"),
        ["2501.00002", "2501.00005", "2501.00004", "2501.00001"]
    );
    // Its title is the first source's.
    let r = app.run(&["preview", "ann@example.org"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(r.stdout.contains("Alpha as the page says"), "{}", r.stdout);
    assert!(!r.stdout.contains("Alpha as the API says"), "{}", r.stdout);

    // One source failing fails the fetch, naming the source; nothing is sent.
    pages.route("/api/daily_papers", Reply::Status(404));
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(!r.ok());
    assert!(
        r.stderr.contains("source.also.api") && r.stderr.contains("HTTP 404"),
        "{}",
        r.stderr
    );
    assert!(sink.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_kind_reads_json_and_both_kinds_check_the_day() {
    let pages = PageServer::start(Reply::Status(404)).await;
    let api = fixture("api-daily_papers-2025-12-09.json");
    let page = fixture("date-2025-12-09.html");
    pages.route(
        "/api/daily_papers?date=2025-12-09",
        Reply::Page(api.clone()),
    );
    // A day without papers answered with another day's: what the site does.
    pages.route("/api/daily_papers?date=2025-12-10", Reply::Page(api));
    pages.route("/papers/date/2025-12-09", Reply::Page(page.clone()));
    pages.route("/papers/date/2025-12-10", Reply::Page(page));
    let sink = SmtpSink::start();
    let app = TestApp::new(&pages.at("/api/daily_papers?date={date}"), sink.port, "");
    app.set("source.kind", "hf-api");
    app.add("ann@example.org", &["--confirmed"]);

    let r = app.run(&["run-once", "--date", "2025-12-09", "--dry-run"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(r.stdout.contains("12 papers on the page"), "{}", r.stdout);
    let r = app.run(&["run-once", "--date", "2025-12-10", "--dry-run"]);
    assert!(!r.ok());
    assert!(
        r.stderr
            .contains("shows the papers of 2025-12-09, not of 2025-12-10"),
        "{}",
        r.stderr
    );

    // The same day check for the daily page.
    app.set("source.kind", "hf-page");
    app.set("source.url", pages.at("/papers/date/{date}"));
    let r = app.run(&["run-once", "--date", "2025-12-09", "--dry-run"]);
    assert!(r.ok(), "{}", r.stderr);
    assert!(r.stdout.contains("12 papers on the page"), "{}", r.stdout);
    let r = app.run(&["run-once", "--date", "2025-12-10", "--dry-run"]);
    assert!(!r.ok());
    assert!(
        r.stderr
            .contains("shows the papers of 2025-12-09, not of 2025-12-10"),
        "{}",
        r.stderr
    );

    // A page where the kind says JSON: an error naming the kind and the URL.
    app.set("source.kind", "hf-api");
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(!r.ok());
    let url = pages.at("/papers/date/2025-12-09");
    assert!(
        r.stderr.contains(&url)
            && r.stderr.contains("\"hf-api\"")
            && r.stderr.contains("HTML page"),
        "{}",
        r.stderr
    );
    assert!(sink.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recent_window_reads_earlier_days_at_best_effort() {
    let pages = PageServer::start(Reply::Status(404)).await;
    // Trending on the 10th is the 8th's list; of the 9th's twelve papers, four are not on it.
    pages.route(
        "/papers/trending",
        Reply::Page(fixture("trending-2025-12-08.html")),
    );
    pages.route(
        "/papers/date/2025-12-09",
        Reply::Page(fixture("date-2025-12-09.html")),
    );
    pages.route("/papers/date/2025-12-08", Reply::Status(404));
    let sink = SmtpSink::start();
    let app = TestApp::new(&pages.at("/papers/trending"), sink.port, "");
    app.set("source.recent_days", 2);
    app.add("ann@example.org", &["--confirmed"]);

    let r: crate::helpers::Run = app
        .command(&["run-once", "--date", "2025-12-10"])
        .env("RUST_LOG", "info")
        .env("PAPERBOY_LOG_FORMAT", "json")
        .output()
        .unwrap()
        .into();
    assert!(r.ok(), "a missing recent day fails nothing: {}", r.stderr);
    assert_eq!(sink.messages().len(), 1);
    let events: Vec<serde_json::Value> = r
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let window = events
        .iter()
        .find(|e| e["message"] == "read the recent window")
        .unwrap_or_else(|| panic!("no recent-window line: {}", r.stderr));
    assert_eq!(window["days_read"], 1);
    assert_eq!(window["papers"], 4);
    let skipped = events
        .iter()
        .find(|e| e["message"] == "skipping a recent day's list")
        .unwrap_or_else(|| panic!("no warning for the missing day: {}", r.stderr));
    assert_eq!(skipped["level"], "WARN");
    assert_eq!(skipped["day"], "2025-12-08");
    let error = skipped["error"].as_str().unwrap();
    assert!(
        error.contains("/papers/date/2025-12-08") && error.contains("404"),
        "{error}"
    );
}

/// A page that sends no Content-Length is cut at `source.max_bytes` as it streams in: the
/// fetch fails clearly, nothing is sent, and the rest of the body is never asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_without_a_length_is_cut_at_the_cap() {
    let total = 64 * 1024 * 1024;
    let pages = PageServer::start(Reply::Streamed(total)).await;
    let sink = SmtpSink::start();
    let app = TestApp::new(&pages.url(), sink.port, "");
    app.set("source.max_bytes", 1048576);
    app.set("source.max_attempts", 1);
    app.add("ann@example.org", &["--confirmed"]);
    let r = app.run(&["run-once", "--date", "2025-12-09"]);
    assert!(!r.ok());
    assert!(r.stderr.contains("more than 1048576 bytes"), "{}", r.stderr);
    // Loopback socket buffers hold a few megabytes; the rest was never made.
    let made = pages.streamed();
    assert!(made < total / 4, "{made} of {total} bytes were streamed");
    assert!(sink.messages().is_empty());
}
