//! What the operator's logs hold: what happened and to which subscriber id, never a
//! reader's address. Logs are kept for months and read by more people than the list.

use crate::helpers::{
    PageServer, Reply, SmtpSink, TestApp, fixture, island_page, serve_with, web_on_free_port,
};
use crate::web::{link_in, token_of};

/// Subscribing, confirming, a repeated subscribe, digests, permanent refusals up to a
/// bounce and a one-click unsubscribe, all with every paperboy log line on: no line names
/// a reader's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_names_a_reader() {
    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-09.html"))).await;
    let mut sink = SmtpSink::start();
    let app = TestApp::new(&pages.url(), sink.port, "");
    let base = web_on_free_port(&app);
    let log = app.dir.path().join("serve.log");
    let mut serve = app.command(&["serve"]);
    serve
        .env("RUST_LOG", "paperboy=trace,info")
        .stderr(std::fs::File::create(&log).unwrap());
    let (mut daemon, http) = serve_with(serve, &base).await;
    let (web_reader, cli_reader) = ("Hidden.Alice@example.org", "hidden.bob@example.org");
    let mut logs = String::new();
    let mut run = |args: &[&str]| {
        let out = app
            .command(args)
            .env("RUST_LOG", "paperboy=trace,info")
            .output()
            .unwrap();
        let r = crate::helpers::Run::from(out);
        logs.push_str(&r.stderr);
        r
    };

    let subscribe = || {
        http.post(format!("{base}/subscribe"))
            .form(&[("email", web_reader)])
            .send()
    };
    assert_eq!(subscribe().await.unwrap().status(), 200);
    let confirm = link_in(&sink.wait_for(1).await[0], "/confirm?token=");
    let r = http
        .post(format!("{base}/confirm"))
        .form(&[("token", token_of(&confirm))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(run(&["subscribers", "add", cli_reader, "--confirmed"]).ok());

    let r = run(&["run-once", "--date", "2025-12-09"]);
    assert!(r.ok(), "{}", r.stderr);
    let digests = sink.wait_for(3).await;
    let unsubscribe = digests
        .iter()
        .filter(|m| m.recipients == [web_reader.to_lowercase()])
        .find_map(|m| m.header("List-Unsubscribe"))
        .expect("the web reader's digest");

    // Refused for good three editions running: both readers bounce.
    sink.restart_with(&["-f", "RCPT"]);
    for (i, date) in ["2025-12-10", "2025-12-11", "2025-12-12"]
        .iter()
        .enumerate()
    {
        let entry = serde_json::json!({"paper": {"id": format!("2512.3000{i}"), "title": format!("Paper {i}"), "upvotes": 5}});
        pages.set(Reply::Page(island_page(date, true, &[entry])));
        let r = run(&["run-once", "--date", date]);
        assert!(r.stdout.contains("2 failed"), "{}\n{}", r.stdout, r.stderr);
    }
    let r = run(&["subscribers", "list"]);
    assert_eq!(r.stdout.matches("bounced").count(), 2, "{}", r.stdout);

    // Once more through the form (an answer and a notice for a known address), then gone.
    sink.restart_with(&[]);
    assert_eq!(subscribe().await.unwrap().status(), 200);
    let url = unsubscribe.trim_start_matches('<').trim_end_matches('>');
    let r = http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    daemon.terminate(std::time::Duration::from_secs(20));
    logs.push_str(&std::fs::read_to_string(&log).unwrap());
    // The logs said what happened: the check below is not passing on silence.
    for event in ["sent", "refused", "bounced"] {
        assert!(
            logs.to_lowercase().contains(event),
            "no log line says {event:?}:\n{logs}"
        );
    }
    // The start-up line gives a URL to open.
    assert!(logs.contains(&format!("url={base}/")), "{logs}");
    let lower = logs.to_lowercase();
    for local in ["hidden.alice", "hidden.bob"] {
        let leaks: Vec<_> = lower.lines().filter(|l| l.contains(local)).collect();
        assert!(
            leaks.is_empty(),
            "log lines name {local}:\n{}",
            leaks.join("\n")
        );
    }
}
