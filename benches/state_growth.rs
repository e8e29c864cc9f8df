//! How much disk paperboy's state takes as editions go by, and a soak of the store under
//! the daemon's own mix of work.
//!
//! Simulates a year of daily editions for 10,000 subscribers with varied preferences: each
//! day a page of 36 papers never seen before (the trending fixture's papers under fresh ids,
//! so titles, abstracts and authors are real-sized), planned through the same code as a run
//! (`edition::plan`), every delivery then recorded as sent by four concurrent workers that
//! share flushes (`GroupCommit`, as the SMTP workers do), retention applied as after a run.
//! Meanwhile two threads read the store as the web pages do (a subscriber by id, their
//! history for the personal feed, the archive index, the newest editions). Prints the data
//! directory's size on disk as it grows, in bytes per subscriber; after the retention window
//! (180 days by default) it should stay flat. A run in which no edition completes for two
//! minutes is reported as hung and exits with status 3 (the store hanging is what a soak is
//! there to catch).
//!
//! `cargo bench --bench state_growth`. Under `cargo test` it runs small (50 subscribers, a
//! 7-day window, 21 days) and fails unless the records outside the archive stop growing
//! once the window is crossed. `BENCH_STATE_SUBSCRIBERS`, `BENCH_STATE_DAYS` and
//! `BENCH_STATE_RETENTION` change the defaults (10000, 365, 180), `BENCH_STORE_ENGINE` the
//! engine (`sled`, the default, or `sqlite`).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use paperboy::config::Settings;
use paperboy::domain::{
    EditionDate, Keywords, Paper, PaperId, Preferences, Subscriber, SubscriberEmail,
};
use paperboy::parts::Parts;
use paperboy::store::{DeliveryState, EngineKind, GroupCommit, Store};

const FIXTURE: &str = include_str!("../tests/fixtures/hf/trending-2025-12-09.html");

fn env_number(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: a whole number"))
        })
        .unwrap_or(default)
}

fn main() {
    // `cargo test --all-targets` runs this too, without `--bench`: then a small run checks
    // that the benchmark still works, in seconds.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let subscribers = env_number(
        "BENCH_STATE_SUBSCRIBERS",
        if benchmarking { 10_000 } else { 50 },
    );
    // The small run crosses the retention window three times over, so pruning is exercised
    // and the store's records can be seen to stop growing.
    let days = env_number("BENCH_STATE_DAYS", if benchmarking { 365 } else { 21 });
    let engine = match std::env::var("BENCH_STORE_ENGINE").as_deref() {
        Ok("sqlite") => EngineKind::Sqlite,
        Ok("sled") | Err(_) => EngineKind::Sled,
        Ok(other) => panic!("BENCH_STORE_ENGINE: {other:?} is neither sled nor sqlite"),
    };
    println!("Engine: {engine}");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut settings = Settings {
        data_dir: dir.path().to_path_buf(),
        store: paperboy::config::StoreSettings { engine },
        ..Settings::default()
    };
    // A run may not set fewer than 90 days; the store's pruning takes any number, and the
    // small run needs a window it can cross in seconds.
    if !benchmarking {
        settings.digest.retention_days = 7;
    }
    let retention = env_number("BENCH_STATE_RETENTION", settings.digest.retention_days);
    settings.digest.retention_days = retention;
    let app = Parts::build(&settings).expect("the parts open");
    for i in 0..subscribers {
        app.store
            .add_subscriber(&subscriber(i))
            .expect("a new subscriber");
    }
    let page = paperboy::source::parse_listing(FIXTURE)
        .expect("the fixture parses")
        .papers;
    assert_eq!(page.len(), 36);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let first = EditionDate::parse("2025-01-01").unwrap();
    let started = Instant::now();
    let mut sent_total = 0usize;
    let app = std::sync::Arc::new(app);
    let progress = std::sync::Arc::new(AtomicUsize::new(0));
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (store, stop) = (app.store.clone(), stop.clone());
            std::thread::spawn(move || web_reads(&store, r, subscribers, &stop))
        })
        .collect();
    stall_detector(progress.clone(), stop.clone());
    let mut slowest_edition = 0f64;
    // Under `cargo test`: the key + value bytes of the records after each day.
    let mut record_bytes: Vec<usize> = Vec::new();
    let mut compactions = Vec::new();
    println!("| day | data dir | bytes per subscriber | digests that day |");
    println!("|---:|---:|---:|---:|");
    for day in 0..days {
        let edition_started = Instant::now();
        let date = EditionDate::from_naive(first.naive() + chrono::Days::new(day.into()));
        let papers = fresh_papers(&page, day);
        rt.block_on(paperboy::edition::plan(
            &app.editions,
            date,
            &papers,
            &[],
            paperboy::edition::due::Occasion::Scheduled(date),
        ))
        .expect("planning works");
        let sent_today = rt.block_on(mark_sent(&app.store, date));
        sent_total += sent_today;
        app.store.prune(date, retention).unwrap();
        rt.block_on(app.store.flush()).unwrap();
        // As after a run: sled's files are rewritten once they outgrow their records.
        if let Some(c) = app.store.compact_if_grown().unwrap() {
            compactions.push((day + 1, c));
        }
        slowest_edition = slowest_edition.max(edition_started.elapsed().as_secs_f64());
        if !benchmarking {
            record_bytes.push(records(&app.store));
        }
        progress.fetch_add(1, Ordering::SeqCst);
        let day_number = day + 1;
        if day_number.is_multiple_of(30) || day_number == days || day_number == retention {
            let bytes = disk_usage(dir.path());
            println!(
                "| {day_number} | {:.1} MB | {:.0} | {sent_today} |",
                bytes as f64 / 1e6,
                bytes as f64 / f64::from(subscribers),
            );
        }
    }
    stop.store(true, Ordering::SeqCst);
    let (reads, slowest_read) = readers
        .into_iter()
        .map(|r| r.join().expect("a reader"))
        .fold((0, 0f64), |(n, max), (k, m)| (n + k, max.max(m)));
    println!();
    for (day, c) in &compactions {
        println!(
            "Compacted after day {day}: {:.1} MB -> {:.1} MB in {:.2} s.",
            c.bytes_before as f64 / 1e6,
            c.bytes_after as f64 / 1e6,
            c.took.as_secs_f64()
        );
    }
    println!(
        "Web reads alongside: {reads} ({:.0}/s), the slowest {:.1} ms; the slowest edition {:.2} s.",
        reads as f64 / started.elapsed().as_secs_f64(),
        slowest_read * 1e3,
        slowest_edition
    );
    for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
        println!(
            "- {}: {:.1} MB",
            entry.file_name().to_string_lossy(),
            disk_usage(&entry.path()) as f64 / 1e6
        );
    }
    // What the trees hold, for comparison with what the database takes on disk; and the same
    // entries written once into a fresh store (what `paperboy backup` + `restore` give).
    let dump = app.store.dump().unwrap();
    let fresh = tempfile::tempdir().expect("a temporary directory");
    {
        let store = paperboy::store::Store::open(fresh.path(), engine).unwrap();
        store.load(&dump).unwrap();
        rt.block_on(store.flush()).unwrap();
    }
    let compacted = disk_usage(fresh.path());
    // How long the next start takes to open the store the year left.
    drop(app);
    let reopening = Instant::now();
    drop(Store::open(dir.path(), engine).unwrap());
    println!(
        "Reopened after the run in {:.2} s.",
        reopening.elapsed().as_secs_f64()
    );
    println!();
    println!(
        "Written afresh (backup + restore): {:.1} MB, {:.0} bytes per subscriber.",
        compacted as f64 / 1e6,
        compacted as f64 / f64::from(subscribers)
    );
    let mut trees: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    for (tree, k, v) in dump {
        let e = trees.entry(tree).or_default();
        e.0 += 1;
        e.1 += k.len() + v.len();
    }
    println!();
    println!("| tree | entries | key + value bytes |");
    println!("|---|---:|---:|");
    for (tree, (n, bytes)) in trees {
        println!("| {tree} | {n} | {bytes} |");
    }
    if !benchmarking && days >= 3 * retention {
        // Once the window has been crossed twice, every day adds as much as pruning takes:
        // the records stay flat (within a tenth, as pages differ in size).
        let (at_two, at_three) = (
            record_bytes[(2 * retention - 1) as usize],
            record_bytes[(3 * retention - 1) as usize],
        );
        println!(
            "Records after {} days: {at_two} bytes; after {}: {at_three} bytes.",
            2 * retention,
            3 * retention
        );
        assert!(
            at_three * 10 <= at_two * 11,
            "the records keep growing past the retention window: {record_bytes:?}"
        );
        assert!(
            record_bytes[(retention - 1) as usize] < at_two,
            "the first window is not yet full: {record_bytes:?}"
        );
    }
    eprintln!(
        "state_growth ({engine}): {subscribers} subscribers, {days} editions, {sent_total} digests, retention {retention} days, {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

/// The key + value bytes of everything the store holds but the archive: the frozen
/// editions are kept for good (the web archive and the feeds show them), one per day
/// whatever the number of subscribers; everything else is pruned with the window.
fn records(store: &Store) -> usize {
    store
        .dump()
        .unwrap()
        .iter()
        .filter(|(tree, _, _)| tree != "editions")
        .map(|(_, k, v)| k.len() + v.len())
        .sum()
}

/// Records every delivery of the edition as sent, from four workers that each wait for their
/// record to be durable before the next, sharing flushes: what the SMTP workers do.
async fn mark_sent(store: &Store, date: EditionDate) -> usize {
    let deliveries = store.deliveries(date).unwrap();
    let n = deliveries.len();
    let commit = std::sync::Arc::new(GroupCommit::new(store.clone()));
    let mut shares: Vec<Vec<_>> = vec![Vec::new(); 4];
    for (i, d) in deliveries.into_iter().enumerate() {
        shares[i % 4].push(d);
    }
    let workers: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let (store, commit) = (store.clone(), commit.clone());
            tokio::spawn(async move {
                for mut d in share {
                    d.state = DeliveryState::Sent;
                    store.update_delivery(&d).unwrap();
                    commit.durable().await.unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("a worker");
    }
    n
}

/// What the web pages read, over and over until `stop`: a subscriber by id (preferences),
/// their history (personal feed), the archive index and the newest editions (feed, subscribe
/// page). Returns how many reads, and the slowest in seconds.
fn web_reads(store: &Store, seed: u32, subscribers: u32, stop: &AtomicBool) -> (usize, f64) {
    let ids: Vec<_> = store
        .subscribers()
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    let (mut reads, mut slowest, mut i) = (0usize, 0f64, seed as usize);
    while !stop.load(Ordering::SeqCst) {
        i = (i * 7919 + 13) % subscribers.max(1) as usize;
        let id = ids[i % ids.len()];
        let t = Instant::now();
        store.subscriber_by_id(id).unwrap();
        store.sent_history(id, 30).unwrap();
        store.edition_summaries(None, 100).unwrap();
        store.latest_editions(3).unwrap();
        slowest = slowest.max(t.elapsed().as_secs_f64());
        reads += 4;
    }
    (reads, slowest)
}

/// Ends the process (status 3) if no edition completes for two minutes: a hung store.
fn stall_detector(progress: std::sync::Arc<AtomicUsize>, stop: std::sync::Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let mut last = (progress.load(Ordering::SeqCst), Instant::now());
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_secs(1));
            let now = progress.load(Ordering::SeqCst);
            if now != last.0 {
                last = (now, Instant::now());
            } else if last.1.elapsed() > Duration::from_secs(120) {
                eprintln!(
                    "state_growth: HUNG: no edition completed for 120 s after {now} editions"
                );
                std::process::exit(3);
            }
        }
    });
}

/// The fixture's papers under ids never used before, so each day's page is all new.
fn fresh_papers(page: &[Paper], day: u32) -> Vec<Paper> {
    page.iter()
        .enumerate()
        .map(|(i, p)| {
            let n = day as usize * page.len() + i;
            let month = 1 + n / 90_000;
            Paper {
                id: PaperId::parse(&format!("26{month:02}.{:05}", n % 90_000 + 10_000))
                    .expect("a valid id"),
                ..p.clone()
            }
        })
        .collect()
}

/// Varied preferences, as in the send-rate benchmark: most subscribers get something daily.
fn subscriber(i: u32) -> Subscriber {
    const KEYWORDS: [&str; 6] = ["agent", "video", "reasoning", "language", "diffusion", "3d"];
    let i = i as usize;
    let keywords = if i.is_multiple_of(5) {
        Keywords::parse_list(KEYWORDS[(i / 5) % KEYWORDS.len()]).unwrap()
    } else {
        Keywords::default()
    };
    let choices = paperboy::domain::Choices {
        min_upvotes: Some([0, 0, 5, 10, 20, 40][i % 6]),
        keywords,
        max_items: Some([3, 5, 10, 10, 15, 20, 30][i % 7]),
        ..Default::default()
    };
    let prefs = Preferences::new(choices, &paperboy::domain::EditionDays::every_day()).unwrap();
    Subscriber::new(
        SubscriberEmail::parse(&format!("reader{i}@example.org")).unwrap(),
        prefs,
        true,
    )
}

/// Bytes a file or directory takes on disk (allocated blocks, as `du` counts them).
fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).unwrap();
    if !meta.is_dir() {
        return meta.blocks() * 512;
    }
    std::fs::read_dir(path)
        .unwrap()
        .flatten()
        .map(|entry| disk_usage(&entry.path()))
        .sum()
}
