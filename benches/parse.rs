//! Time to get an edition's papers: fetch-and-parse of the 36-paper trending page from a
//! loopback HTTP server, next to the parse alone, so the two can be compared; the parse of
//! every real page in the fixtures; and the parse of hostile pages (deeply nested elements,
//! which make HTML tree building slow) to see how the cost grows with them. Each parse is
//! run next to building the page's whole tree with scraper, what paperboy did before it
//! read the island with html5ever's tokenizer alone.
//!
//! `cargo bench --bench parse` (add `-- --warm-up-time 1 --measurement-time 3` for a short
//! run). Two versions of the parser are compared with criterion's baselines: run with
//! `-- --save-baseline before` on the one, `-- --baseline before` on the other.

use std::hint::black_box;
use std::time::Duration;

use axum::http::header::CONTENT_TYPE;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use paperboy::config::SourceSettings;
use paperboy::domain::EditionDate;
use paperboy::source::{HfSource, parse_listing};

const FIXTURE: &str = include_str!("../tests/fixtures/hf/trending-2025-12-09.html");
const PAPERS: usize = 36;

/// Every real page in the fixtures, with its number of papers.
const PAGES: [(&str, &str, usize); 4] = [
    (
        "trending-2025-12-08",
        include_str!("../tests/fixtures/hf/trending-2025-12-08.html"),
        26,
    ),
    ("trending-2025-12-09", FIXTURE, PAPERS),
    (
        "date-2025-12-09",
        include_str!("../tests/fixtures/hf/date-2025-12-09.html"),
        12,
    ),
    (
        "empty-day",
        include_str!("../tests/fixtures/hf/empty-day.html"),
        0,
    ),
];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Serves the fixture at every path, as the page the source is configured with.
fn serve_fixture(rt: &tokio::runtime::Runtime) -> std::net::SocketAddr {
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("a local address");
        let app = axum::Router::new()
            .fallback(|| async { ([(CONTENT_TYPE, "text/html; charset=utf-8")], FIXTURE) });
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        addr
    })
}

fn bench_parse(c: &mut Criterion) {
    let rt = runtime();
    let addr = serve_fixture(&rt);
    let date = EditionDate::parse("2025-12-09").expect("a date");
    let source = HfSource::new(&SourceSettings {
        url: Some(format!("http://{addr}/papers/trending").try_into().unwrap()),
        // The page alone, as before the recent window: that is what is measured.
        recent_days: 0,
        // One attempt: an error must surface, not be retried inside the timing.
        max_attempts: 1,
        ..SourceSettings::default()
    })
    .expect("an HfSource");

    // Once, outside the timing: both paths really produce the whole listing.
    let parsed = parse_listing(FIXTURE).expect("the fixture parses");
    assert_eq!(parsed.papers.len(), PAPERS, "parse_listing");
    assert_eq!(parsed.skipped, 0);
    let fetched = rt.block_on(source.fetch(date)).expect("the fetch succeeds");
    assert_eq!(fetched.papers.len(), PAPERS, "HfSource::fetch");

    let mut group = c.benchmark_group("trending_36");
    group
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(50)
        .throughput(Throughput::Bytes(FIXTURE.len() as u64));
    group.bench_function("fetch_local_http", |b| {
        b.to_async(&rt).iter(|| async {
            let listing = source.fetch(black_box(date)).await.expect("fetch");
            debug_assert_eq!(listing.papers.len(), PAPERS);
            listing
        })
    });
    group.bench_function("parse_listing", |b| {
        b.iter(|| parse_listing(black_box(FIXTURE)).expect("parse"))
    });
    group.finish();
}

fn bench_pages(c: &mut Criterion) {
    let mut group = c.benchmark_group("pages");
    for (name, page, papers) in PAGES {
        let listing = parse_listing(page).expect("the fixture parses");
        assert_eq!(listing.papers.len(), papers, "{name}");
        group.throughput(Throughput::Bytes(page.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| parse_listing(black_box(page)).expect("parse"))
        });
        // What finding the island cost when the whole tree was built (scraper, as before
        // the tokenizer), in the same run, for the ratio.
        group.bench_function(format!("{name}/whole_tree"), |b| {
            b.iter(|| whole_tree_island(black_box(page)).expect("the island"))
        });
    }
    group.finish();
}

/// The island's props by building the page's whole tree, as paperboy did before.
fn whole_tree_island(page: &str) -> Option<String> {
    let doc = scraper::Html::parse_document(page);
    let selector =
        scraper::Selector::parse(r#"div.SVELTE_HYDRATER[data-target="DailyPapers"]"#).unwrap();
    doc.select(&selector)
        .find_map(|el| el.value().attr("data-props"))
        .map(str::to_string)
}

/// A page of one paper inside `depth` nested elements: unclosed `<b><i>` pairs (inline
/// formatting elements, which HTML tree building reopens and reconstructs), or `<div>`s
/// closed after the island.
fn nested_page(depth: usize, inline: bool) -> String {
    let island = "<div class=\"SVELTE_HYDRATER contents\" data-target=\"DailyPapers\" \
        data-props=\"{&quot;dailyPapers&quot;:[{&quot;paper&quot;:{&quot;id&quot;:\
        &quot;2501.00001&quot;,&quot;title&quot;:&quot;T&quot;}}]}\"></div>";
    let (open, close) = if inline {
        ("<b><i>".repeat(depth), String::new())
    } else {
        ("<div>".repeat(depth), "</div>".repeat(depth))
    };
    format!("<!doctype html><html><body>{open}{island}{close}</body></html>")
}

fn bench_hostile(c: &mut Criterion) {
    let mut group = c.benchmark_group("nested");
    group.sample_size(10);
    // `cargo test` runs each case once, in a debug build: there the smallest depth is
    // enough to show the bench still works.
    let depths: &[usize] = if std::env::args().any(|a| a == "--bench") {
        &[2_500, 10_000, 100_000, 400_000]
    } else {
        &[2_500]
    };
    for (shape, inline) in [("inline", true), ("block", false)] {
        for &depth in depths {
            let page = nested_page(depth, inline);
            let listing = parse_listing(&page).expect("the island is found");
            assert_eq!(listing.papers.len(), 1, "{shape} {depth}");
            group.throughput(Throughput::Bytes(page.len() as u64));
            group.bench_function(format!("{shape}/{depth}"), |b| {
                b.iter(|| parse_listing(black_box(&page)).expect("parse"))
            });
            // The whole tree, for the ratio, only where it takes less than a second.
            if depth <= 10_000 {
                group.bench_function(format!("{shape}/{depth}/whole_tree"), |b| {
                    b.iter(|| whole_tree_island(black_box(&page)).expect("the island"))
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench_parse, bench_pages, bench_hostile);
criterion_main!(benches);
