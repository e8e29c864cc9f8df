//! How long the subscribe form takes to answer for an address it does not know, next to one
//! it knows (pending, active, unsubscribed). The answer is the same page either way; if its
//! time differed, timing it would tell a stranger who is subscribed.
//!
//! Serves the web pages in this process (mail to a file outbox), seeds known addresses,
//! then posts new and known addresses in turn from one client and reports the median and
//! 90th percentile of each, and their ratio: both come from one run, so the ratio means
//! something on a shared, noisy machine where the absolute figures do not.
//!
//! `cargo bench --bench subscribe` (under `cargo test`, a run of 20 that only checks it
//! works); `BENCH_REQUESTS=2000` changes the 500 of each.

use std::time::{Duration, Instant};

use paperboy::config::Settings;
use paperboy::daemon::Application;
use paperboy::domain::{Preferences, Status, Subscriber, SubscriberEmail};

fn main() {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let requests: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .map(|n| n.parse().expect("BENCH_REQUESTS: a whole number"))
        .unwrap_or(if benchmarking { 500 } else { 20 });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run(requests));
}

async fn run(requests: usize) {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let toml = format!(
        r#"data_dir = "{data}"
public_url = "http://127.0.0.1:{port}"

[source]
url = "http://127.0.0.1:9/unused"
max_attempts = 1

[schedule]
cron = "0 0 8 1 1 * 2099"

[mail]
transport = "file"

[web]
listen = "127.0.0.1:{port}"
subscribe_per_ip_per_hour = 1000000
subscribe_per_address_per_hour = 1000000
subscribe_per_hour = 1000000
"#,
        data = dir.path().join("data").display(),
    );
    let settings = Settings::from_toml(&toml).unwrap();
    settings.validate().unwrap();
    let application = Application::build(settings).await.unwrap();
    let store = application.store();
    let statuses = [Status::Pending, Status::Active, Status::Unsubscribed];
    for i in 0..requests {
        let email = SubscriberEmail::parse(&format!("known{i}@example.org")).unwrap();
        let mut s = Subscriber::new(email, Preferences::default(), false);
        s.status = statuses[i % statuses.len()];
        store.add_subscriber(&s).unwrap();
    }
    store.flush().await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until_stopped(async {
        let _ = stopped.await;
    }));

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}/subscribe");
    let post = |email: String| {
        let request = http.post(&base).form(&[("email", email)]);
        async move {
            let started = Instant::now();
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap();
            started.elapsed()
        }
    };
    // Warm up the connection and the store's caches.
    for i in 0..10 {
        post(format!("warm{i}@example.org")).await;
    }
    let (mut new, mut known) = (Vec::new(), Vec::new());
    for i in 0..requests {
        // In turn, so that a slow moment of the machine hits both alike.
        new.push(post(format!("new{i}@example.org")).await);
        known.push(post(format!("known{i}@example.org")).await);
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();

    let (new_median, new_p90) = median_and_p90(&mut new);
    let (known_median, known_p90) = median_and_p90(&mut known);
    println!("subscribe answers, {requests} of each, one client:");
    println!("| address | median | p90 |");
    println!("|---|---:|---:|");
    println!("| new | {new_median:.2?} | {new_p90:.2?} |");
    println!("| known | {known_median:.2?} | {known_p90:.2?} |");
    println!(
        "median new / known: {:.2}",
        new_median.as_secs_f64() / known_median.as_secs_f64()
    );
}

fn median_and_p90(times: &mut [Duration]) -> (Duration, Duration) {
    times.sort();
    (times[times.len() / 2], times[times.len() * 9 / 10])
}
