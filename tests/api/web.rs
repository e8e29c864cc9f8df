//! The web side over HTTP: an in-process `serve` on a loopback port, a real SMTP sink.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use paperboy::config::Settings;
use paperboy::daemon::Application;
use paperboy::domain::{EditionDate, Status, SubscriberEmail, SubscriberId};
use paperboy::edition::Editions;
use paperboy::store::Store;
use paperboy::tokens::Links;
use paperboy::tokens::Purpose;

use crate::helpers::{PageServer, Received, Reply, SmtpSink, fixture, free_port};

pub struct WebApp {
    pub base: String,
    pub store: Store,
    pub editions: Arc<Editions>,
    pub links: Links,
    pub metrics: Arc<paperboy::telemetry::metrics::Metrics>,
    pub sink: SmtpSink,
    pub pages: PageServer,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

/// Starts `serve` in this process; `web_extra` are more `[web]` keys.
pub async fn spawn_web(web_extra: &str) -> WebApp {
    let pages = PageServer::start(Reply::Page(fixture("trending-2025-12-08.html"))).await;
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let toml = format!(
        r#"data_dir = "{data}"
public_url = "http://127.0.0.1:{port}"

[source]
url = "{source}"
timeout_secs = 5

[schedule]
cron = "0 0 8 1 1 * 2099"

[mail]
transport = "smtp"

[mail.smtp]
port = {smtp}
timeout_secs = 5
max_attempts = 2

[web]
listen = "127.0.0.1:{port}"
{web_extra}
"#,
        data = dir.path().join("data").display(),
        source = pages.url(),
        smtp = sink.port,
    );
    let settings = Settings::from_toml(&toml).unwrap();
    settings.validate().unwrap();
    let application = Application::build(settings).await.unwrap();
    assert_eq!(application.port(), port);
    let (store, editions, links) = (
        application.store(),
        application.editions(),
        application.links(),
    );
    let metrics = application.metrics();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until_stopped(async {
        let _ = rx.await;
    }));
    // serve reads the page once at start; let that settle before the test changes the page.
    let deadline = Instant::now() + Duration::from_secs(10);
    while metrics.fetches.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "no first fetch");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    WebApp {
        base: format!("http://127.0.0.1:{port}"),
        store,
        editions,
        links,
        metrics,
        sink,
        pages,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        stop: Some(tx),
        server: Some(server),
        _dir: dir,
    }
}

impl WebApp {
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .form(fields)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path_or_url: &str) -> reqwest::Response {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.base)
        };
        self.http.get(url).send().await.unwrap()
    }

    pub async fn subscribe(&self, email: &str) -> reqwest::Response {
        self.post_form(
            "/subscribe",
            &[
                ("email", email),
                ("keywords", ""),
                ("min_upvotes", ""),
                ("max_items", ""),
            ],
        )
        .await
    }

    pub fn status_of(&self, email: &str) -> Option<Status> {
        let e = SubscriberEmail::parse(email).unwrap();
        self.store.subscriber(&e).unwrap().map(|s| s.status)
    }

    /// Waits (bounded) until the sink holds `n` messages, and returns them.
    pub async fn wait_for_mail(&self, n: usize) -> Vec<Received> {
        self.sink.wait_for(n).await
    }

    /// Proves that no mail beyond the `already` received is on its way: a fresh address
    /// subscribes, and its confirmation must be the one message that arrives next. Anything
    /// sent before it would have come first, so no fixed wait stands in for "nothing more".
    pub async fn assert_no_more_mail(&self, already: usize) {
        let sentinel = "sentinel@example.net";
        assert_eq!(self.subscribe(sentinel).await.status(), 200);
        let mail = self.wait_for_mail(already + 1).await;
        let others = mail.iter().filter(|m| m.recipients != [sentinel]).count();
        assert_eq!(
            others, already,
            "a message other than the sentinel's arrived"
        );
    }

    pub async fn run_edition(&self, date: &str) {
        let date = EditionDate::parse(date).unwrap();
        paperboy::edition::run(&self.editions, date).await.unwrap();
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let server = self.server.take().unwrap();
        tokio::time::timeout(Duration::from_secs(20), server)
            .await
            .expect("serve stops in time")
            .unwrap()
            .unwrap();
    }
}

/// The first line of a text part that holds a link to `path`.
pub fn link_in(m: &Received, path: &str) -> String {
    m.part("text/plain")
        .split_whitespace()
        .find(|w| w.contains(path) && w.starts_with("http"))
        .unwrap_or_else(|| panic!("no {path} link"))
        .to_string()
}

pub fn token_of(url: &str) -> String {
    url.split("token=").nth(1).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_journey() {
    let w = spawn_web("").await;
    let page = w.get("/").await;
    assert_eq!(page.status(), 200);
    let body = page.text().await.unwrap();
    assert!(body.contains("name=\"email\"") && body.contains("action=\"/subscribe\""));

    let r = w
        .post_form(
            "/subscribe",
            &[
                ("email", "Reader@Example.org"),
                ("keywords", ""),
                ("min_upvotes", "100"),
                ("max_items", "3"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(w.status_of("reader@example.org"), Some(Status::Pending));
    let mail = w.wait_for_mail(1).await;
    assert_eq!(mail[0].recipients, ["reader@example.org"]);
    let confirm_url = link_in(&mail[0], "/confirm?token=");
    assert!(confirm_url.starts_with(&w.base));

    // Following the link shows a button and changes nothing.
    let r = w.get(&confirm_url).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("method=\"post\""));
    assert_eq!(w.status_of("reader@example.org"), Some(Status::Pending));

    // Nothing goes to a pending subscriber.
    w.run_edition("2025-12-08").await;
    assert_eq!(w.sink.messages().len(), 1);

    let r = w
        .post_form("/confirm", &[("token", &token_of(&confirm_url))])
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(w.status_of("reader@example.org"), Some(Status::Active));

    w.pages.serve_fixture("trending-2025-12-09.html");
    w.run_edition("2025-12-09").await;
    let mail = w.wait_for_mail(2).await;
    let digest = mail
        .iter()
        .find(|m| m.header("List-Unsubscribe").is_some())
        .unwrap();
    assert_eq!(digest.paper_ids().len(), 3, "their own preferences apply");
    let header = digest.header("List-Unsubscribe").unwrap();
    let unsubscribe_url = header.trim_start_matches('<').trim_end_matches('>');

    // The one-click POST of RFC 8058, exactly as a mail provider sends it.
    let r = w
        .http
        .post(unsubscribe_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "200 without a redirect");
    assert_eq!(
        w.status_of("reader@example.org"),
        Some(Status::Unsubscribed)
    );

    // The next edition has new papers, but not for them.
    let entry =
        serde_json::json!({"paper": {"id": "2512.10001", "title": "A new one", "upvotes": 500}});
    w.pages.set(Reply::Page(crate::helpers::island_page(
        "2025-12-10",
        true,
        &[entry],
    )));
    w.run_edition("2025-12-10").await;
    w.assert_no_more_mail(2).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_answers_the_same_whoever_the_address_is() {
    let w = spawn_web("").await;
    // One address in each state, set up directly.
    for (email, status) in [
        ("pending@example.org", Status::Pending),
        ("active@example.org", Status::Active),
        ("gone@example.org", Status::Unsubscribed),
    ] {
        let mut s = paperboy::domain::Subscriber::new(
            SubscriberEmail::parse(email).unwrap(),
            Default::default(),
            false,
        );
        s.status = status;
        w.store.add_subscriber(&s).unwrap();
    }
    let mut bodies = Vec::new();
    for email in [
        "new@example.org",
        "pending@example.org",
        "active@example.org",
        "gone@example.org",
    ] {
        let r = w.subscribe(email).await;
        assert_eq!(r.status(), 200);
        let headers: Vec<_> = r
            .headers()
            .iter()
            .filter(|(k, _)| *k != "date")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        bodies.push((headers, r.bytes().await.unwrap()));
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "responses differ by address state"
    );

    // Each got exactly one mail; the active one a note, not a confirmation.
    let mail = w.wait_for_mail(4).await;
    let active = mail
        .iter()
        .find(|m| m.recipients == ["active@example.org"])
        .unwrap();
    assert!(
        active
            .header("Subject")
            .unwrap()
            .contains("already subscribed")
    );
    assert!(active.part("text/plain").contains("/preferences?token="));
    // Resubscribing goes through confirmation again.
    assert_eq!(w.status_of("gone@example.org"), Some(Status::Unsubscribed));

    // Whatever is posted, one mail per address per hour.
    for _ in 0..3 {
        assert_eq!(w.subscribe("new@example.org").await.status(), 200);
    }
    w.assert_no_more_mail(4).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_and_used_tokens_change_nothing() {
    let w = spawn_web("").await;
    w.subscribe("ann@example.org").await;
    let mail = w.wait_for_mail(1).await;
    let confirm_token = token_of(&link_in(&mail[0], "/confirm?token="));
    let ann = w
        .store
        .subscriber(&SubscriberEmail::parse("ann@example.org").unwrap())
        .unwrap()
        .unwrap();

    // Tampered, truncated, wrong purpose, expired: all 400, nothing changes.
    let mut tampered = confirm_token.clone().into_bytes();
    tampered[12] = if tampered[12] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let unsubscribe_token = w.links.key().sign(Purpose::Unsubscribe, ann.id, None, 0);
    let expired = w.links.key().sign(
        Purpose::Confirm,
        ann.id,
        Some(Utc::now() - chrono::Duration::hours(1)),
        ann.newest_confirmation().unwrap().nonce,
    );
    for bad in [
        tampered.as_str(),
        &confirm_token[..20],
        "",
        &unsubscribe_token,
        &expired,
        "<script>",
    ] {
        let r = w.post_form("/confirm", &[("token", bad)]).await;
        assert_eq!(r.status(), 400, "{bad}");
        let body = r.text().await.unwrap();
        assert!(body.contains("This link does not work") && !body.contains("<script>"));
        assert_eq!(w.get(&format!("/confirm?token={bad}")).await.status(), 400);
    }
    assert_eq!(w.status_of("ann@example.org"), Some(Status::Pending));

    // The real one works; a second click (a double click, a mail scanner's replay after
    // the reader's) says the same and changes nothing.
    for _ in 0..2 {
        let r = w.post_form("/confirm", &[("token", &confirm_token)]).await;
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("You are subscribed"));
    }
    assert_eq!(w.status_of("ann@example.org"), Some(Status::Active));

    // GET never unsubscribes; a tampered unsubscribe token is refused; a valid token for
    // an address that no longer exists finds nothing.
    let unsubscribe = format!("/unsubscribe?token={unsubscribe_token}");
    let r = w.get(&unsubscribe).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("List-Unsubscribe"));
    assert_eq!(w.status_of("ann@example.org"), Some(Status::Active));
    let forged = w.links.key().sign(Purpose::Preferences, ann.id, None, 0);
    assert_eq!(
        w.post_form(&format!("/unsubscribe?token={forged}"), &[])
            .await
            .status(),
        400
    );
    let stranger = w
        .links
        .key()
        .sign(Purpose::Unsubscribe, SubscriberId::from_u64(7), None, 0);
    assert_eq!(
        w.post_form(&format!("/unsubscribe?token={stranger}"), &[])
            .await
            .status(),
        404
    );
    assert_eq!(w.status_of("ann@example.org"), Some(Status::Active));
    // The page's own button posts List-Unsubscribe=One-Click to the same URL.
    let r = w
        .post_form(&unsubscribe, &[("List-Unsubscribe", "One-Click")])
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(w.status_of("ann@example.org"), Some(Status::Unsubscribed));
    // The old confirmation does not bring them back.
    let r = w.post_form("/confirm", &[("token", &confirm_token)]).await;
    assert_eq!(r.status(), 400);
    assert_eq!(w.status_of("ann@example.org"), Some(Status::Unsubscribed));
    w.stop().await;
}

/// A subscribe request for an address someone else owns changes nothing they chose, in
/// any state: preferences asked for wait in that request's confirmation, and only its own
/// link applies them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_someone_elses_address_changes_nothing_they_chose() {
    let app = spawn_web("").await;
    let w = &app;
    let ann = || {
        w.store
            .subscriber(&SubscriberEmail::parse("ann@example.org").unwrap())
            .unwrap()
            .unwrap()
    };
    let ask = |keywords: &'static str, min_upvotes: &'static str| async move {
        w.post_form(
            "/subscribe",
            &[
                ("email", "Ann@Example.org"),
                ("keywords", keywords),
                ("min_upvotes", min_upvotes),
                ("max_items", ""),
            ],
        )
        .await
    };
    // Lets the next request mail again, as if the hour had passed.
    let an_hour_passes = || {
        let s = ann();
        w.store
            .change_subscriber(&s.email, |current| {
                let mut s = current.unwrap();
                s.last_notice_at = s.last_notice_at.map(|t| t - chrono::Duration::hours(2));
                Ok::<_, ()>((s, ()))
            })
            .unwrap()
            .unwrap();
    };

    assert_eq!(ask("mine", "").await.status(), 200);
    let own_link = link_in(&w.wait_for_mail(1).await[0], "/confirm?token=");
    let pending = ann();
    assert_eq!(ask("theirs", "999").await.status(), 200);
    assert_eq!(ann(), pending, "a request within the hour changes nothing");

    an_hour_passes();
    let pending = ann();
    assert_eq!(ask("theirs", "999").await.status(), 200);
    let mail = w.wait_for_mail(2).await;
    let after = ann();
    assert_eq!(after.preferences, pending.preferences);
    assert_eq!(after.status, Status::Pending);
    let their_link = mail
        .iter()
        .map(|m| link_in(m, "/confirm?token="))
        .find(|l| *l != own_link)
        .unwrap();

    // Ann uses her own link: her keywords, not theirs; theirs is dead from then on.
    let r = w
        .post_form("/confirm", &[("token", &token_of(&own_link))])
        .await;
    assert_eq!(r.status(), 200);
    let confirmed = ann();
    assert_eq!(confirmed.status, Status::Active);
    assert_eq!(confirmed.preferences.keywords().as_slice(), ["mine"]);
    assert_eq!(confirmed.preferences.min_upvotes(), None);
    let r = w
        .post_form("/confirm", &[("token", &token_of(&their_link))])
        .await;
    assert_eq!(r.status(), 400);

    // Active, then unsubscribed: a request still changes nothing they chose.
    for state in ["active", "unsubscribed"] {
        if state == "unsubscribed" {
            let s = ann();
            w.store
                .change_subscriber(&s.email, |current| {
                    let mut s = current.unwrap();
                    s.unsubscribe(Utc::now());
                    Ok::<_, ()>((s, ()))
                })
                .unwrap()
                .unwrap();
        }
        an_hour_passes();
        let before = ann();
        assert_eq!(ask("theirs", "999").await.status(), 200);
        let after = ann();
        assert_eq!(after.preferences, before.preferences, "{state}");
        assert_eq!(after.status, before.status, "{state}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_page_saying_what_is_wrong() {
    let w = spawn_web("").await;
    let r = w
        .post_form(
            "/subscribe",
            &[
                ("email", "\"><script>x</script>"),
                ("keywords", "a,b"),
                ("min_upvotes", "lots"),
                ("max_items", "99"),
            ],
        )
        .await;
    assert_eq!(r.status(), 422);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("Email address")
            && body.contains("Minimum upvotes")
            && body.contains("Papers per digest")
    );
    assert!(!body.contains("<script>x"), "the refilled form is escaped");
    assert!(body.contains("value=\"a,b\""), "the form is refilled");
    let long = format!("{}@example.org", "a".repeat(300));
    assert_eq!(w.subscribe(&long).await.status(), 422);
    let huge = "x".repeat(64 * 1024);
    assert_eq!(
        w.post_form("/subscribe", &[("email", &huge)])
            .await
            .status(),
        413
    );
    let r = w
        .http
        .post(format!("{}/subscribe", w.base))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(w.get("/nope").await.status(), 404);
    // A query string that cannot be read gets the usual page, not a framework's text.
    for path in [
        "/confirm?token=a&token=b",
        "/unsubscribe",
        "/preferences?token=a&token=b",
        "/editions?before=a&before=b",
    ] {
        let r = w.get(path).await;
        assert_eq!(r.status(), 400, "{path}");
        let kind = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(kind.starts_with("text/html"), "{path}: {kind}");
        assert!(r.text().await.unwrap().contains("<html"), "{path}");
    }
    // The honeypot: same answer, no mail, no subscriber.
    let r = w
        .post_form(
            "/subscribe",
            &[("email", "bot@example.org"), ("website", "http://spam")],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(w.status_of("bot@example.org"), None);
    w.assert_no_more_mail(0).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_is_rate_limited() {
    let w = spawn_web("subscribe_per_ip_per_hour = 3\nsubscribe_per_address_per_hour = 2").await;
    assert_eq!(w.subscribe("a@example.org").await.status(), 200);
    assert_eq!(w.subscribe("a@example.org").await.status(), 200);
    let r = w.subscribe("a@example.org").await;
    assert_eq!(r.status(), 429, "per address");
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.text().await.unwrap().contains("Too many requests"));
    assert_eq!(
        w.subscribe("b@example.org").await.status(),
        429,
        "per client"
    );
    let metrics = w.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("paperboy_rate_limited_total 2"),
        "{metrics}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferences_change_the_next_digest() {
    let w = spawn_web("").await;
    let ten = paperboy::domain::Choices {
        max_items: Some(10),
        ..Default::default()
    };
    let s = paperboy::domain::Subscriber::new(
        SubscriberEmail::parse("ann@example.org").unwrap(),
        paperboy::domain::Preferences::new(ten, &paperboy::domain::EditionDays::every_day())
            .unwrap(),
        true,
    );
    w.store.add_subscriber(&s).unwrap();
    let url = w.links.preferences(s.id);
    let r = w.get(&url).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("value=\"10\""));
    let path = url.trim_start_matches(&w.base);
    let r = w
        .post_form(
            path,
            &[("keywords", "x"), ("min_upvotes", "-1"), ("max_items", "")],
        )
        .await;
    assert_eq!(r.status(), 422);
    let r = w
        .post_form(
            path,
            &[
                ("keywords", "Diffusion"),
                ("min_upvotes", ""),
                ("max_items", "2"),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Saved"));
    w.run_edition("2025-12-08").await;
    let mail = w.wait_for_mail(1).await;
    assert!(mail[0].paper_ids().len() <= 2);
    // Paused: no digest.
    w.post_form(path, &[("keywords", ""), ("paused", "on")])
        .await;
    w.pages.serve_fixture("trending-2025-12-09.html");
    w.run_edition("2025-12-09").await;
    assert_eq!(w.sink.messages().len(), 1);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_tell_the_operator() {
    let w = spawn_web("").await;
    let r = w.get("/healthz").await;
    assert_eq!(r.status(), 200);
    w.pages.set(Reply::Status(500));
    let date = EditionDate::parse("2025-12-08").unwrap();
    assert!(paperboy::edition::run(&w.editions, date).await.is_err());
    let r = w.get("/healthz").await;
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap();
    assert!(body.contains("the source answered HTTP 500"), "{body}");
    assert!(
        !body.contains("127.0.0.1"),
        "the source's address is private: {body}"
    );
    w.pages.serve_fixture("trending-2025-12-08.html");
    w.run_edition("2025-12-08").await;
    assert_eq!(w.get("/healthz").await.status(), 200);
    let m = w.get("/metrics").await;
    assert!(
        m.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = m.text().await.unwrap();
    assert!(text.contains("paperboy_fetch_errors_total 1"), "{text}");
    assert!(text.contains("paperboy_subscribers{status=\"active\"} 0"));
    assert!(!text.contains("paperboy_last_fetch_success_timestamp_seconds 0\n"));
    w.stop().await;
}

/// The real binary under a stand-in systemd: `serve` says READY=1 once it listens, answers,
/// feeds the watchdog (its store answering), says STOPPING=1 on SIGTERM and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_tells_systemd_and_stops_cleanly_on_sigterm() {
    use std::os::unix::net::UnixDatagram;
    let app = crate::helpers::TestApp::new("http://127.0.0.1:9/x", free_port(), "");
    let port = free_port();
    app.set("web.listen", format!("127.0.0.1:{port}"));
    let socket_path = app.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut child = crate::helpers::KillOnDrop(
        app.command(&["serve"])
            .env("NOTIFY_SOCKET", &socket_path)
            // WatchdogSec=1s: a ping every half second.
            .env("WATCHDOG_USEC", "1000000")
            .spawn()
            .unwrap(),
    );
    let mut messages = String::new();
    let mut buf = [0u8; 4096];
    while !messages.contains("READY=1") {
        let n = socket.recv(&mut buf).expect("READY=1 within 20 s");
        messages.push_str(&String::from_utf8_lossy(&buf[..n]));
        messages.push('\n');
    }
    while !messages.contains("WATCHDOG=1") {
        let n = socket.recv(&mut buf).expect("a watchdog ping within 20 s");
        messages.push_str(&String::from_utf8_lossy(&buf[..n]));
        messages.push('\n');
    }
    // Ready means listening: the first request is answered.
    let r = reqwest::get(format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let status = child.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    // The datagrams wait in the socket's buffer.
    while !messages.contains("STOPPING=1") {
        let n = socket.recv(&mut buf).expect("STOPPING=1 was sent");
        messages.push_str(&String::from_utf8_lossy(&buf[..n]));
        messages.push('\n');
    }
}

/// Every answer, page or error, carries the headers that keep tokens in URLs from leaking
/// (no referrer), pages from being framed or sniffed, and script from running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_the_security_headers() {
    let w = spawn_web("").await;
    let mut answers = Vec::new();
    for path in [
        "/",
        "/nope",
        "/healthz",
        "/metrics",
        "/editions",
        "/feed.xml",
        "/confirm?token=forged",
        "/unsubscribe?token=forged",
    ] {
        answers.push((path, w.get(path).await));
    }
    answers.push(("POST /subscribe", w.subscribe("not an address").await));
    for (what, r) in answers {
        let h = r.headers();
        let value = |name: &str| {
            h.get(name)
                .unwrap_or_else(|| panic!("{what}: no {name}"))
                .to_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(value("referrer-policy"), "no-referrer", "{what}");
        assert_eq!(value("x-content-type-options"), "nosniff", "{what}");
        assert_eq!(value("x-frame-options"), "DENY", "{what}");
        let csp = value("content-security-policy");
        for directive in [
            "default-src 'none'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ] {
            assert!(csp.contains(directive), "{what}: {csp}");
        }
        assert!(
            !csp.contains("script-src"),
            "{what}: no script may run: {csp}"
        );
        assert!(h.contains_key("cache-control"), "{what}");
    }
    w.stop().await;
}

/// Well-formed requests from many clients together cannot exceed `subscribe_per_hour`:
/// the limit that protects the mail server when the clients are many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overall_subscribe_limit_holds_across_clients() {
    let w = spawn_web("trust_forwarded_for = true\nsubscribe_per_hour = 3").await;
    let from = |client: &str, email: &str| {
        w.http
            .post(format!("{}/subscribe", w.base))
            .header("x-forwarded-for", client)
            .form(&[("email", email)])
            .send()
    };
    for i in 0..3 {
        let client = format!("198.51.100.{i}");
        let r = from(&client, &format!("reader{i}@example.org"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "request {i} is within the limit");
    }
    let r = from("198.51.100.99", "late@example.org").await.unwrap();
    assert_eq!(r.status(), 429, "a fresh client is over the overall limit");
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(w.status_of("late@example.org"), None);
    // The three within it were each asked to confirm.
    let mut mailed = w.wait_for_mail(3).await;
    mailed.sort_by(|a, b| a.recipients.cmp(&b.recipients));
    let mailed: Vec<_> = mailed.iter().map(|m| m.recipients.join(",")).collect();
    assert_eq!(
        mailed,
        [
            "reader0@example.org",
            "reader1@example.org",
            "reader2@example.org"
        ]
    );
    w.stop().await;
}

/// `X-Forwarded-For` names the client only when the operator says a proxy sets it; then
/// its last entry (the one the proxy added) counts, not what the client wrote before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_counts_only_when_trusted() {
    let post = |w: &WebApp, forwarded: &str, email: &str| {
        let request = w
            .http
            .post(format!("{}/subscribe", w.base))
            .header("x-forwarded-for", forwarded.to_string())
            .form(&[("email", email.to_string())]);
        async move { request.send().await.unwrap().status() }
    };

    // Not trusted: every request comes from the loopback peer, whatever the header says.
    let w = spawn_web("subscribe_per_ip_per_hour = 2").await;
    assert_eq!(post(&w, "203.0.113.1", "a@example.org").await, 200);
    assert_eq!(post(&w, "203.0.113.2", "b@example.org").await, 200);
    assert_eq!(post(&w, "203.0.113.3", "c@example.org").await, 429);
    w.stop().await;

    // Trusted: each forwarded address has its own budget.
    let w = spawn_web("subscribe_per_ip_per_hour = 2\ntrust_forwarded_for = true").await;
    assert_eq!(post(&w, "203.0.113.1", "a@example.org").await, 200);
    assert_eq!(post(&w, "203.0.113.1", "b@example.org").await, 200);
    assert_eq!(post(&w, "203.0.113.1", "c@example.org").await, 429);
    assert_eq!(post(&w, "203.0.113.2", "d@example.org").await, 200);
    // A client cannot pick its own key by writing an entry before the proxy's.
    assert_eq!(
        post(&w, "192.0.2.77, 203.0.113.1", "e@example.org").await,
        429
    );
    w.stop().await;
}

/// `/healthz` fails when the last good fetch is older than `health_max_fetch_age_hours`,
/// even though no fetch failed: a schedule that stopped fetching is not healthy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_fails_when_the_last_good_fetch_is_stale() {
    let w = spawn_web("health_max_fetch_age_hours = 2").await;
    let r = w.get("/healthz").await;
    assert_eq!(r.status(), 200, "fetched at start");
    assert!(
        r.text()
            .await
            .unwrap()
            .starts_with("ok: last successful fetch at")
    );

    w.metrics
        .set_last_fetch_ok(Some(Utc::now() - chrono::Duration::minutes(90)));
    assert_eq!(w.get("/healthz").await.status(), 200, "90 minutes is fresh");

    let three_hours_ago = Utc::now() - chrono::Duration::hours(3);
    w.metrics.set_last_fetch_ok(Some(three_hours_ago));
    let r = w.get("/healthz").await;
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap();
    assert!(body.starts_with("no successful fetch since"), "{body}");

    // The next good fetch makes it healthy again.
    w.run_edition("2025-12-08").await;
    assert_eq!(w.get("/healthz").await.status(), 200);
    w.stop().await;
}

/// Connections that send nothing, or half a request line, are closed after
/// `idle_timeout_secs`; past `max_connections` new ones wait to be accepted instead of
/// using up descriptors; and once the flood is closed, `/healthz` answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = spawn_web("idle_timeout_secs = 2\nmax_connections = 16").await;
    let addr = w.base.trim_start_matches("http://").to_string();
    let started = Instant::now();
    let mut flood = Vec::new();
    for i in 0..48 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        if i % 2 == 1 {
            s.write_all(b"GET /healthz HT").await.unwrap();
        }
        flood.push(s);
    }
    // Every one of them is closed by the server: at most a 408, then end of stream.
    let closing = flood.into_iter().map(|mut s| async move {
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut answer))
            .await
            .map(|read| (read.is_ok(), answer))
    });
    for closed in futures_util::future::join_all(closing).await {
        let (_, answer) = closed.expect("an idle connection stayed open for a minute");
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
    }
    let all_closed = started.elapsed();
    // 48 connections, 16 at a time, 2 s each: at least three rounds of the timeout.
    assert!(
        all_closed >= Duration::from_secs(5),
        "closed in {all_closed:?}: the cap did not hold them back"
    );
    let r = w.get("/healthz").await;
    assert_eq!(r.status(), 200);
    eprintln!("48 idle connections, 16 at a time, all closed in {all_closed:?}");
    w.stop().await;
}

/// SIGTERM with idle and half-sent connections open: the daemon exits at once, without
/// waiting for them (their idle timeout here is a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_do_not_hold_the_exit() {
    use tokio::io::AsyncWriteExt;
    let app = crate::helpers::TestApp::new("http://127.0.0.1:9/x", free_port(), "");
    let base = crate::helpers::web_on_free_port(&app);
    app.set("web.idle_timeout_secs", 60);
    let (mut daemon, _) = crate::helpers::start_serve(&app, &base).await;
    let addr = base.trim_start_matches("http://").to_string();
    let mut open = Vec::new();
    for i in 0..10 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        if i % 2 == 1 {
            s.write_all(b"POST /subscribe HTTP/1.1\r\nHost: x\r\nContent-Le")
                .await
                .unwrap();
        }
        open.push(s);
    }
    // Served: a full request on a kept-alive connection also answers first.
    let r = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert!(r.status().is_success() || r.status() == 503);
    let stopping = Instant::now();
    let status = daemon.terminate(Duration::from_secs(30));
    let took = stopping.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_secs(15),
        "the exit waited {took:?} on open connections"
    );
    eprintln!("stopped in {took:?} with 10 connections open");
    drop(open);
}

/// Malformed posts spend only their sender's budget: a flood of empty addresses from many
/// clients leaves the form open to a real request, while the flooding client is refused.
/// IPv6 clients are counted by their /64.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_spends_only_its_senders_budget() {
    let w = spawn_web(
        "trust_forwarded_for = true\nsubscribe_per_hour = 3\nsubscribe_per_ip_per_hour = 4",
    )
    .await;
    let post = |client: String, email: &'static str| {
        let request = w
            .http
            .post(format!("{}/subscribe", w.base))
            .header("x-forwarded-for", client)
            .form(&[("email", email)]);
        async move { request.send().await.unwrap().status() }
    };
    // Ten clients, four malformed posts each (their whole budget), then more.
    for i in 0..60 {
        let status = post(format!("198.51.100.{}", i % 10), "").await;
        let expected = if i < 40 { 422 } else { 429 };
        assert_eq!(status, expected, "post {i}");
    }
    assert_eq!(
        post("198.51.100.1".into(), "real@example.org").await,
        429,
        "the flooding client is over its own limit"
    );
    assert_eq!(
        post("203.0.113.9".into(), "real@example.org").await,
        200,
        "a new client still gets through"
    );
    // One /64 is one client: four requests from any of its addresses, then 429.
    for i in 1..=4 {
        assert_eq!(post(format!("2001:db8:0:7::{i}"), "").await, 422);
    }
    assert_eq!(post("2001:db8:0:7::99".into(), "").await, 429);
    assert_eq!(post("2001:db8:0:8::1".into(), "").await, 422, "another /64");
    w.stop().await;
}

/// Addresses a digest could never reach, or that look like another, are refused at the
/// form with a message saying why; a non-ASCII domain is kept in the form SMTP carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_that_cannot_be_mailed_are_refused_at_the_form() {
    let w = spawn_web("").await;
    for (address, says) in [
        ("\"ann\"@example.org", "quoted addresses"),
        ("ann@[192.0.2.1]", "at an IP address"),
        ("ann\u{202E}gro.elpmaxe@example.org", "invisible characters"),
        ("an\u{200B}n@example.org", "invisible characters"),
        ("jörg@example.org", "only ASCII"),
    ] {
        let r = w.subscribe(address).await;
        assert_eq!(r.status(), 422, "{address:?}");
        let body = r.text().await.unwrap();
        assert!(body.contains(says), "{address:?}: {body}");
    }
    // Bytes that are not UTF-8, percent-encoded in the form body.
    let r = w
        .http
        .post(format!("{}/subscribe", w.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=ann%FF%FE%40example.org")
        .send()
        .await
        .unwrap();
    assert!(
        r.status() == 422 || r.status() == 400,
        "invalid UTF-8: {}",
        r.status()
    );
    assert!(w.store.subscribers().unwrap().is_empty());

    assert_eq!(w.subscribe("Ann@Bücher.Example").await.status(), 200);
    let mail = w.wait_for_mail(1).await;
    assert_eq!(mail[0].recipients, ["ann@xn--bcher-kva.example"]);
    assert_eq!(
        w.status_of("ann@xn--bcher-kva.example"),
        Some(Status::Pending)
    );
    w.stop().await;
}

/// With the source down and no edition on record, the home page says why it shows no
/// papers, and that subscribing works all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_home_page_says_why_it_has_no_sample() {
    let app = crate::helpers::TestApp::new("http://127.0.0.1:9/x", free_port(), "");
    let base = crate::helpers::web_on_free_port(&app);
    let (_daemon, http) = crate::helpers::start_serve(&app, &base).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = http.get(&base).send().await.unwrap().text().await.unwrap();
        if page.contains("could not be read just now") {
            assert!(page.contains("Subscribing works all the same"));
            break;
        }
        assert!(
            page.contains("will show here once the list has been read"),
            "neither note: {page}"
        );
        assert!(Instant::now() < deadline, "the failed fetch never showed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
