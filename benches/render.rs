//! Time to render: the edition template once per edition, then per subscriber the digest
//! for a typical 10-paper selection and the full message around it.
//!
//! `cargo bench --bench render`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use paperboy::config::Settings;
use paperboy::domain::{EditionDate, PaperId, Preferences, SentOn, Subscriber, SubscriberEmail};
use paperboy::edition::select::{Effective, Pool, select};
use paperboy::mail::{Mailer, Outgoing};
use paperboy::render::{EditionTemplate, Personal};
use paperboy::source::parse_listing;
use paperboy::tokens::{Purpose, TokenKey};

const FIXTURE: &str = include_str!("../tests/fixtures/hf/trending-2025-12-09.html");
const CHOSEN: usize = 10;

fn bench_render(c: &mut Criterion) {
    let data = tempfile::tempdir().expect("a temporary directory");
    let settings = Settings {
        data_dir: data.path().to_path_buf(),
        public_url: "https://papers.example.org/"
            .to_string()
            .try_into()
            .unwrap(),
        ..Settings::default()
    };
    let date = EditionDate::parse("2025-12-09").expect("a date");
    let papers = parse_listing(FIXTURE).expect("the fixture parses").papers;
    assert_eq!(papers.len(), 36);

    // What App::personal builds, without opening a store: a subscriber on the defaults.
    let tokens = TokenKey::from_bytes(b"paperboy bench signing key, 32+ bytes long".to_vec())
        .expect("a signing key");
    let subscriber = Subscriber::new(
        SubscriberEmail::parse("ada.lovelace@example.com").expect("an address"),
        Preferences::default(),
        true,
    );
    let effective = Effective::new(&subscriber.preferences, &settings.digest);
    let base = settings.public_base();
    let personal = Personal {
        why: effective.explain(),
        unsubscribe_url: format!(
            "{base}/unsubscribe?token={}",
            tokens.sign(Purpose::Unsubscribe, subscriber.id, None, 0)
        ),
        preferences_url: format!(
            "{base}/preferences?token={}",
            tokens.sign(Purpose::Preferences, subscriber.id, None, 0)
        ),
        late: Vec::new(),
        weekly: false,
        keywords: Default::default(),
        browser: Default::default(),
    };
    let chosen: Vec<PaperId> = select(&Pool::page(date, &papers), &effective, &SentOn::new())
        .into_iter()
        .map(|p| p.id.clone())
        .collect();
    assert_eq!(chosen.len(), CHOSEN);

    // The file transport only creates the outbox here; building a message touches no network.
    let mailer = Mailer::new(&settings.mail, &settings.outbox_dir()).expect("a mailer");
    let message_id = mailer.message_id(date, subscriber.id);

    let template = EditionTemplate::new(date, &papers, base, &Default::default())
        .expect("the edition renders");
    // Once, outside the timing: the digest and the message are whole, not an error path.
    let rendered = template.digest(&chosen, &personal).expect("a digest");
    assert_eq!(rendered.papers, chosen, "all 10 papers fit the size budget");
    let message = mailer
        .build(Outgoing {
            to: &subscriber.email,
            subject: &rendered.subject,
            text: rendered.text.clone(),
            html: rendered.html.clone(),
            message_id: &message_id,
            unsubscribe_url: &personal.unsubscribe_url,
        })
        .expect("a message");
    assert!(message.len() > rendered.html.len());

    let mut per_edition = c.benchmark_group("per_edition_36");
    per_edition
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(50);
    per_edition.bench_function("edition_template_new", |b| {
        b.iter(|| {
            EditionTemplate::new(
                black_box(date),
                black_box(&papers),
                base,
                &Default::default(),
            )
            .expect("render")
        })
    });
    per_edition.finish();

    let mut per_message = c.benchmark_group("per_message_10");
    per_message
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(50);
    per_message.bench_function("digest", |b| {
        b.iter(|| {
            template
                .digest(black_box(&chosen), black_box(&personal))
                .expect("digest")
        })
    });
    // A reader with keywords: each card also says which matched and where.
    let with_keywords = Personal {
        keywords: paperboy::domain::Keywords::parse_list(
            "llm, diffusion, retrieval, agents, reinforcement",
        )
        .expect("keywords"),
        ..personal.clone()
    };
    per_message.bench_function("digest_with_keywords", |b| {
        b.iter(|| {
            template
                .digest(black_box(&chosen), black_box(&with_keywords))
                .expect("digest")
        })
    });
    per_message.bench_function("mailer_build", |b| {
        b.iter_batched(
            || (rendered.text.clone(), rendered.html.clone()),
            |(text, html)| {
                mailer
                    .build(Outgoing {
                        to: &subscriber.email,
                        subject: &rendered.subject,
                        text,
                        html,
                        message_id: &message_id,
                        unsubscribe_url: &personal.unsubscribe_url,
                    })
                    .expect("build")
            },
            BatchSize::SmallInput,
        )
    });
    per_message.bench_function("digest_and_build", |b| {
        b.iter(|| {
            let r = template
                .digest(black_box(&chosen), black_box(&personal))
                .expect("digest");
            mailer
                .build(Outgoing {
                    to: &subscriber.email,
                    subject: &r.subject,
                    text: r.text,
                    html: r.html,
                    message_id: &message_id,
                    unsubscribe_url: &personal.unsubscribe_url,
                })
                .expect("build")
        })
    });
    per_message.finish();
}

criterion_group!(benches, bench_render);
criterion_main!(benches);
