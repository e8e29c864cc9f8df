//! Property test of editions: for any sequence of runs, page snapshots, partial sends
//! (a crash) and restarts, no subscriber is planned a paper twice or two digests of one
//! edition, and every planned digest can still be sent.

use std::collections::{HashMap, HashSet};

use paperboy::config::Settings;
use paperboy::domain::{
    EditionDate, Keywords, Paper, PaperId, Preferences, Subscriber, SubscriberEmail,
};
use paperboy::parts::Parts;
use paperboy::store::DeliveryState;
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Step {
    day: u32,
    page: Vec<(u32, u32)>,
    /// How many of the pending digests the server accepts before the "crash".
    accepted: usize,
    restart: bool,
}

fn arb_step() -> impl Strategy<Value = Step> {
    (
        0u32..4,
        prop::collection::vec((0u32..15, 0u32..100), 0..10),
        0usize..4,
        any::<bool>(),
    )
        .prop_map(|(day, page, accepted, restart)| Step {
            day,
            page,
            accepted,
            restart,
        })
}

/// Opens the app on `dir`: the store of the instance before a "restart" was dropped, and
/// with it the data directory's lock.
///
/// The lock can outlive the drop by a moment in this test process, though not in paperboy's:
/// a child that another test spawns at that time holds a copy of every descriptor between its
/// fork and its exec, the lock's too (flock belongs to the open file, not the descriptor). So
/// a refusal is tried again, to a deadline of a few seconds.
fn open(dir: &std::path::Path) -> Parts {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let opened = Parts::build(&Settings {
            data_dir: dir.to_path_buf(),
            ..Settings::default()
        });
        match opened {
            Ok(app) => return app,
            Err(e)
                if std::time::Instant::now() < deadline
                    && e.chain().any(|c| {
                        matches!(
                            c.downcast_ref(),
                            Some(paperboy::store::StoreError::Locked(_))
                        )
                    }) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("{e:#}"),
        }
    }
}

fn mark_sent(
    app: &Parts,
    date: EditionDate,
    limit: usize,
    log: &mut Vec<(u64, EditionDate, Vec<PaperId>)>,
) {
    let pending = app
        .store
        .deliveries(date)
        .unwrap()
        .into_iter()
        .filter(|d| d.state.is_open());
    for mut d in pending.take(limit) {
        d.state = DeliveryState::Sent;
        app.store.update_delivery(&d).unwrap();
        log.push((d.subscriber.as_u64(), d.date, d.papers.clone()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn never_a_paper_twice_nor_an_edition_twice(
        steps in prop::collection::vec(arb_step(), 1..7),
        mins in prop::collection::vec(0u32..60, 3),
        maxes in prop::collection::vec(1u32..6, 3),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut app = open(dir.path());
        for (i, (min, max)) in mins.iter().zip(&maxes).enumerate() {
            let choices = paperboy::domain::Choices {
                min_upvotes: Some(*min),
                keywords: Keywords::default(),
                max_items: Some(*max),
                ..Default::default()
            };
            let prefs = Preferences::new(choices, &paperboy::domain::EditionDays::every_day()).unwrap();
            let s = Subscriber::new(SubscriberEmail::parse(&format!("s{i}@example.org")).unwrap(), prefs, true);
            app.store.add_subscriber(&s).unwrap();
        }
        let base = EditionDate::parse("2025-12-01").unwrap();
        let mut log = Vec::new();
        let mut dates = HashSet::new();
        for step in &steps {
            let date = EditionDate::from_naive(base.naive() + chrono::Days::new(step.day.into()));
            dates.insert(date);
            let papers: Vec<Paper> = step
                .page
                .iter()
                .map(|(n, up)| Paper::new(PaperId::parse(&format!("2512.{n:05}")).unwrap(), format!("Paper {n}"), *up))
                .collect();
            let before = app.store.deliveries(date).unwrap().len();
            rt.block_on(paperboy::edition::plan(&app.editions, date, &papers, &[], paperboy::edition::due::Occasion::Scheduled(date))).unwrap();
            let after = app.store.deliveries(date).unwrap();
            prop_assert!(after.len() <= 3 && after.len() >= before);
            mark_sent(&app, date, step.accepted, &mut log);
            rt.block_on(app.store.flush()).unwrap();
            if step.restart {
                drop(app);
                app = open(dir.path());
            }
        }
        // Recovery: everything still pending goes out now.
        for date in &dates {
            mark_sent(&app, *date, usize::MAX, &mut log);
        }
        let mut per_edition: HashMap<(u64, EditionDate), usize> = HashMap::new();
        let mut per_paper: HashMap<(u64, PaperId), usize> = HashMap::new();
        for (sub, date, papers) in &log {
            *per_edition.entry((*sub, *date)).or_default() += 1;
            prop_assert!(!papers.is_empty(), "an empty digest");
            for p in papers {
                *per_paper.entry((*sub, p.clone())).or_default() += 1;
            }
        }
        prop_assert!(per_edition.values().all(|n| *n == 1), "two digests of one edition");
        prop_assert!(per_paper.values().all(|n| *n == 1), "a paper twice");
        for date in &dates {
            prop_assert!(app.store.deliveries(*date).unwrap().iter().all(|d| d.state == DeliveryState::Sent));
        }
    }
}
