//! Property test of editions: for any sequence of runs, page snapshots, partial sends,
//! temporary refusals, crashes between the server's acceptance of a digest and its record,
//! and restarts, every planned digest reaches its reader, a second time only if it was in
//! flight at a crash (and then with the same papers), nothing is recorded sent that the
//! server never took, and no reader gets a paper twice or two digests of one edition.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use paperboy::config::Settings;
use paperboy::domain::{
    EditionDate, Keywords, Paper, PaperId, Preferences, Subscriber, SubscriberEmail, SubscriberId,
};
use paperboy::parts::Parts;
use paperboy::render::EditionTemplate;
use paperboy::store::{Delivery, DeliveryState};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Step {
    day: u32,
    page: Vec<(u32, u32)>,
    /// How many of the edition's open digests the server accepts.
    accepted: usize,
    /// How many after those it refuses for now (a 4xx: recorded for the next run).
    refused: usize,
    /// The run crashes after its sends, with this many of its last acceptances (at most
    /// one per worker) not yet recorded.
    crash: Option<usize>,
    /// The crashed run wrote `Sending` before each send, as earlier versions did.
    legacy: bool,
    restart: bool,
}

fn arb_step() -> impl Strategy<Value = Step> {
    (
        0u32..4,
        prop::collection::vec((0u32..15, 0u32..100), 0..10),
        0usize..4,
        0usize..3,
        prop::option::of(0usize..3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(day, page, accepted, refused, crash, legacy, restart)| Step {
                day,
                page,
                accepted,
                refused,
                crash,
                legacy,
                restart,
            },
        )
}

/// Opens the app on `dir`: the store of the instance before a "restart" was dropped, and
/// with it the data directory's lock. Its mail goes to `dir/outbox` as `.eml` files.
///
/// The lock can outlive the drop by a moment in this test process, though not in paperboy's:
/// a child that another test spawns at that time holds a copy of every descriptor between its
/// fork and its exec, the lock's too (flock belongs to the open file, not the descriptor). So
/// a refusal is tried again, to a deadline of a few seconds.
fn open(dir: &std::path::Path) -> Parts {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
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

/// A digest as planned: for whom, of which edition, with which papers.
#[derive(Debug, Clone, PartialEq)]
struct Planned {
    date: EditionDate,
    subscriber: SubscriberId,
    reader: String,
    papers: Vec<String>,
}

/// What the SMTP server received and what the test knows of the crashes.
#[derive(Default)]
struct World {
    /// Every digest planned so far, by Message-ID.
    planned: HashMap<String, Planned>,
    /// Each copy the server accepted, by Message-ID: its reader and papers.
    received: HashMap<String, Vec<(String, Vec<String>)>>,
    /// How many crashes each digest was in flight at (accepted, not recorded).
    in_flight: HashMap<String, usize>,
    readers: HashMap<SubscriberId, String>,
}

impl World {
    fn papers(d: &Delivery) -> Vec<String> {
        d.papers.iter().map(|p| p.as_str().to_string()).collect()
    }

    /// Notes the deliveries of `date` a plan left; a digest once planned never changes.
    fn note_plans(&mut self, app: &Parts, date: EditionDate) -> Result<(), TestCaseError> {
        for d in app.store.deliveries(date).unwrap() {
            let planned = Planned {
                date,
                subscriber: d.subscriber,
                reader: self.readers[&d.subscriber].clone(),
                papers: Self::papers(&d),
            };
            let first = self
                .planned
                .entry(d.message_id.clone())
                .or_insert_with(|| planned.clone());
            prop_assert_eq!(&*first, &planned, "a planned digest changed");
        }
        Ok(())
    }

    fn accept(&mut self, d: &Delivery) {
        let copy = (self.readers[&d.subscriber].clone(), Self::papers(d));
        self.received
            .entry(d.message_id.clone())
            .or_default()
            .push(copy);
    }

    /// What a run of `step` does with the open digests of `date`, as the send loop would:
    /// the server takes some and refuses the next for now; a crash leaves the records of
    /// its last acceptances unwritten.
    fn send_some(&mut self, app: &Parts, date: EditionDate, step: &Step) {
        let store = &app.store;
        let mut open = store
            .deliveries(date)
            .unwrap()
            .into_iter()
            .filter(|d| d.state.is_open());
        let accepted: Vec<Delivery> = open.by_ref().take(step.accepted).collect();
        let refused: Vec<Delivery> = open.take(step.refused).collect();
        let unrecorded = step.crash.map_or(0, |n| n.min(accepted.len()));
        let recorded = accepted.len() - unrecorded;
        for (i, mut d) in accepted.into_iter().enumerate() {
            if step.legacy {
                d.state = DeliveryState::Sending;
                store.update_delivery(&d).unwrap();
            }
            self.accept(&d);
            if i < recorded {
                d.state = DeliveryState::Sent;
                d.attempts += 1;
                store.update_delivery(&d).unwrap();
            } else {
                *self.in_flight.entry(d.message_id.clone()).or_default() += 1;
            }
        }
        for mut d in refused {
            d.state = DeliveryState::Retry;
            d.attempts += 1;
            d.last_error = Some("421 try again later".into());
            store.update_delivery(&d).unwrap();
        }
    }

    /// What the store says now, against what happened: a digest the server never took is
    /// still there to send, and none is recorded sent that the server never took.
    fn check_records(&self, app: &Parts) -> Result<(), TestCaseError> {
        for (id, p) in &self.planned {
            let d = app.store.delivery(p.date, p.subscriber).unwrap();
            let received = self.received.contains_key(id);
            match d {
                Some(d) if d.state == DeliveryState::Sent => {
                    prop_assert!(received, "{} recorded sent, never accepted", id)
                }
                Some(d) => prop_assert!(d.state.is_open(), "{} is {:?}", id, d.state),
                None => prop_assert!(received, "{} planned, then dropped unsent", id),
            }
        }
        Ok(())
    }

    /// The digests that paperboy's own send loop wrote to the outbox.
    fn read_outbox(&mut self, dir: &std::path::Path) {
        for entry in std::fs::read_dir(dir.join("outbox")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "eml") {
                continue;
            }
            let m = crate::helpers::Received {
                recipients: Vec::new(),
                sender: String::new(),
                raw: std::fs::read(&path).unwrap(),
            };
            let id = m.header("Message-ID").expect("a Message-ID");
            let to = m.header("To").expect("a To");
            self.received
                .entry(id)
                .or_default()
                .push((to, m.paper_ids()));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn a_crash_between_acceptance_and_record_repeats_only_the_in_flight(
        steps in prop::collection::vec(arb_step(), 1..7),
        mins in prop::collection::vec(0u32..60, 3),
        maxes in prop::collection::vec(1u32..6, 3),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut app = open(dir.path());
        let mut world = World::default();
        for (i, (min, max)) in mins.iter().zip(&maxes).enumerate() {
            let choices = paperboy::domain::Choices {
                min_upvotes: Some(*min),
                keywords: Keywords::default(),
                max_items: Some(*max),
                ..Default::default()
            };
            let prefs = Preferences::new(choices, &paperboy::domain::EditionDays::every_day()).unwrap();
            let email = format!("s{i}@example.org");
            let s = Subscriber::new(SubscriberEmail::parse(&email).unwrap(), prefs, true);
            world.readers.insert(s.id, email);
            app.store.add_subscriber(&s).unwrap();
        }
        let base = EditionDate::parse("2025-12-01").unwrap();
        let mut templates: BTreeMap<EditionDate, Arc<EditionTemplate>> = BTreeMap::new();
        for step in &steps {
            let date = EditionDate::from_naive(base.naive() + chrono::Days::new(step.day.into()));
            let papers: Vec<Paper> = step
                .page
                .iter()
                .map(|(n, up)| Paper::new(PaperId::parse(&format!("2512.{n:05}")).unwrap(), format!("Paper {n}"), *up))
                .collect();
            let before = app.store.deliveries(date).unwrap().len();
            let (_, template) = rt.block_on(paperboy::edition::plan(&app.editions, date, &papers, &[], paperboy::edition::due::Occasion::Scheduled(date))).unwrap();
            templates.insert(date, template);
            let after = app.store.deliveries(date).unwrap().len();
            prop_assert!(after <= 3 && after >= before);
            world.note_plans(&app, date)?;
            world.send_some(&app, date, step);
            rt.block_on(app.store.flush()).unwrap();
            if step.crash.is_some() || step.restart {
                drop(app);
                app = open(dir.path());
            }
            world.check_records(&app)?;
        }

        // Recovery: paperboy's send loop sends whatever is still open, oldest edition first.
        for (date, template) in &templates {
            let outcome = rt
                .block_on(paperboy::edition::deliver::send_pending(&app.editions, *date, template))
                .unwrap();
            prop_assert_eq!((outcome.failed, outcome.deferred), (0, 0));
        }
        world.read_outbox(dir.path());
        world.check_records(&app)?;
        for date in templates.keys() {
            for d in app.store.deliveries(*date).unwrap() {
                prop_assert_eq!(d.state, DeliveryState::Sent, "{} left unsent", d.message_id);
            }
        }

        for id in world.received.keys() {
            prop_assert!(world.planned.contains_key(id), "{} sent, never planned", id);
        }
        let mut per_reader: HashMap<&str, Vec<&String>> = HashMap::new();
        for (id, planned) in &world.planned {
            let copies = world.received.get(id).map_or(&[][..], Vec::as_slice);
            let crashes = world.in_flight.get(id).copied().unwrap_or(0);
            prop_assert_eq!(
                copies.len(),
                1 + crashes,
                "{} arrived {} times, in flight at {} crashes", id, copies.len(), crashes
            );
            for (reader, papers) in copies {
                prop_assert_eq!(reader, &planned.reader);
                prop_assert_eq!(papers, &planned.papers, "a copy of {} with other papers", id);
            }
            prop_assert!(!planned.papers.is_empty(), "an empty digest");
            per_reader.entry(&planned.reader).or_default().extend(&planned.papers);
        }
        for (reader, papers) in per_reader {
            let distinct: HashSet<&&String> = papers.iter().collect();
            prop_assert_eq!(distinct.len(), papers.len(), "{} got a paper twice", reader);
        }
    }
}
