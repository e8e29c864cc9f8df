//! Each fixture in tests/fixtures/bounces read and acted on, and the inputs that must
//! change nothing.

use super::parse::{self, ReportKind};
use super::*;
use crate::domain::{Preferences, Subscriber};
use crate::store::EngineKind;

const RCPT: &str = "ann@example.com";

fn fixture(name: &str, verp: &str, message_id: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/bounces/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .replace("@@RCPT@@", RCPT)
        .replace("@@VERP@@", verp)
        .replace("@@MSGID@@", message_id)
        .into_bytes()
}

/// What each fixture is, as read: a DSN's action and status, or an ARF's feedback type.
const EXPECTED: &[(&str, &str)] = &[
    ("postfix-permanent.eml", "failed 5.1.1"),
    ("postfix-delayed.eml", "delayed 4.2.2"),
    ("exim-permanent.eml", "failed 5.0.0"),
    ("exim-delayed.eml", "delayed 4.0.0"),
    ("gmail-permanent.eml", "failed 5.1.1"),
    ("microsoft-permanent.eml", "failed 5.1.10"),
    ("microsoft-complaint.eml", "feedback abuse"),
    ("ses-permanent.eml", "failed 5.1.1"),
    ("ses-complaint.eml", "feedback abuse"),
    ("arf-not-spam.eml", "feedback not-spam"),
];

#[test]
fn every_fixture_reads_as_the_report_it_is() {
    let message_id = "digest.2026-12-01.0123456789abcdef@example.org";
    for (name, expected) in EXPECTED {
        let raw = fixture(name, "bounces+tok@example.org", message_id);
        let report = parse::read(&raw).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = match &report.kind {
            ReportKind::Delivery(statuses) => {
                assert_eq!(statuses.len(), 1, "{name}");
                assert!(statuses[0].names(RCPT), "{name}: {:?}", statuses[0]);
                format!("{} {}", statuses[0].action, statuses[0].status)
            }
            ReportKind::Feedback { feedback_type, .. } => format!("feedback {feedback_type}"),
        };
        assert_eq!(&got, expected, "{name}");
        assert_eq!(
            report.original.message_id.as_deref(),
            Some(message_id),
            "{name}"
        );
    }
    let raw = fixture("vacation.eml", "bounces+tok@example.org", message_id);
    assert_eq!(parse::read(&raw), Err(Ignored::AutoReply));
}

#[test]
fn a_folded_diagnostic_is_read_whole() {
    let raw = fixture("gmail-permanent.eml", "x@example.org", "m@example.org");
    let Ok(parse::Report {
        kind: ReportKind::Delivery(statuses),
        ..
    }) = parse::read(&raw)
    else {
        panic!("a DSN");
    };
    let d = statuses[0].diagnostic.as_deref().unwrap();
    assert!(d.starts_with("550-5.1.1 The email account"), "{d}");
    assert!(d.ends_with("- gsmtp"), "{d}");
}

/// An intake over a fresh store holding one active subscriber, and that subscriber.
struct World {
    _dir: tempfile::TempDir,
    intake: Intake,
    store: Store,
    key: TokenKey,
    subscriber: Subscriber,
    metrics: Arc<Metrics>,
}

fn world(bounce_address: Option<&str>) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), EngineKind::Sled).unwrap();
    let subscriber = Subscriber::new(
        SubscriberEmail::parse(RCPT).unwrap(),
        Preferences::default(),
        true,
    );
    store.add_subscriber(&subscriber).unwrap();
    let key = TokenKey::from_bytes(vec![7; 32]).unwrap();
    // The default sender is digest@example.org, whose domain digests' Message-IDs carry.
    let mail = MailSettings {
        bounce_address: bounce_address.map(|a| BounceAddress::try_from(a.to_string()).unwrap()),
        bounce_transient_count: 2,
        ..MailSettings::default()
    };
    let metrics = Arc::new(Metrics::default());
    let intake = Intake::new(
        store.clone(),
        key.clone(),
        &mail,
        "Trending papers <digest.example.org>",
        metrics.clone(),
    );
    World {
        _dir: dir,
        intake,
        store,
        key,
        subscriber,
        metrics,
    }
}

impl World {
    fn verp(&self, edition: &str) -> String {
        let date = EditionDate::parse(edition).unwrap();
        format!(
            "bounces+{}@example.org",
            self.key.sign_return(self.subscriber.id, Some(date))
        )
    }

    fn message_id(&self, edition: &str) -> String {
        format!("digest.{edition}.{}@example.org", self.subscriber.id)
    }

    fn now(&self) -> Subscriber {
        self.store
            .subscriber(&self.subscriber.email)
            .unwrap()
            .unwrap()
    }

    fn process(&self, raw: &[u8]) -> Outcome {
        self.intake.process(raw, None).unwrap()
    }
}

#[test]
fn each_fixture_has_its_outcome_through_the_token() {
    use crate::domain::BounceKind::*;
    let cases: &[(&str, Option<BounceKind>, Status)] = &[
        ("postfix-permanent.eml", Some(Permanent), Status::Bounced),
        ("exim-permanent.eml", Some(Permanent), Status::Bounced),
        ("gmail-permanent.eml", Some(Permanent), Status::Bounced),
        ("microsoft-permanent.eml", Some(Permanent), Status::Bounced),
        ("ses-permanent.eml", Some(Permanent), Status::Bounced),
        ("postfix-delayed.eml", Some(Transient), Status::Active),
        ("exim-delayed.eml", Some(Transient), Status::Active),
        (
            "microsoft-complaint.eml",
            Some(Complaint),
            Status::Unsubscribed,
        ),
        ("ses-complaint.eml", Some(Complaint), Status::Unsubscribed),
        ("arf-not-spam.eml", None, Status::Active),
        ("vacation.eml", None, Status::Active),
    ];
    for (name, kind, status) in cases {
        let w = world(Some("bounces@example.org"));
        // A Message-ID that attributes nothing: the token alone must do it.
        let raw = fixture(name, &w.verp("2026-12-01"), "other@elsewhere.example");
        let outcome = w.process(&raw);
        match (kind, &outcome) {
            (Some(k), Outcome::Recorded { kind, .. }) => assert_eq!(k, kind, "{name}"),
            (None, Outcome::Ignored(_)) => {}
            _ => panic!("{name}: {outcome:?}"),
        }
        let s = w.now();
        assert_eq!(s.status, *status, "{name}");
        assert_eq!(s.last_bounce.is_some(), kind.is_some(), "{name}");
    }
}

#[test]
fn without_a_token_the_digests_message_id_and_list_id_attribute_it() {
    let w = world(None);
    let raw = fixture(
        "ses-permanent.eml",
        "bounces+whatever@example.org",
        &w.message_id("2026-12-01"),
    );
    assert!(matches!(w.process(&raw), Outcome::Recorded { .. }));
    assert_eq!(w.now().status, Status::Bounced);

    // The same Message-ID with another list's List-Id is not ours.
    let w = world(None);
    let raw = String::from_utf8(fixture(
        "ses-permanent.eml",
        "x@example.org",
        &w.message_id("2026-12-01"),
    ))
    .unwrap()
    .replace("<digest.example.org>", "<news.example.org>");
    assert_eq!(
        w.process(raw.as_bytes()),
        Outcome::Ignored(Ignored::Unattributable)
    );
    assert_eq!(w.now().status, Status::Active);
}

#[test]
fn transient_failures_of_different_editions_add_up() {
    let w = world(Some("bounces@example.org"));
    let day1 = fixture("postfix-delayed.eml", &w.verp("2026-12-01"), "x@y");
    // The same message delayed twice counts once (limit 2 here).
    w.process(&day1);
    w.process(&day1);
    assert_eq!(w.now().status, Status::Active);
    assert_eq!(w.now().transient_bounces.len(), 1);
    let day2 = fixture("exim-delayed.eml", &w.verp("2026-12-02"), "x@y");
    let outcome = w.process(&day2);
    assert!(
        matches!(
            outcome,
            Outcome::Recorded {
                status: Status::Bounced,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(
        w.metrics
            .bounces_transient
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
}

#[test]
fn bad_input_changes_nothing_and_says_why() {
    let w = world(Some("bounces@example.org"));
    let before = w.now();
    let good = fixture("postfix-permanent.eml", &w.verp("2026-12-01"), "x@y");

    // Cut short in the middle of the returned message.
    let cut = &good[..good.len() - 200];
    assert_eq!(w.process(cut), Outcome::Ignored(Ignored::Truncated));

    // A token with one character changed.
    let verp = w.verp("2026-12-01");
    let at = verp.find('@').unwrap() - 1;
    let mut forged = verp.clone().into_bytes();
    forged[at] = if forged[at] == b'a' { b'b' } else { b'a' };
    let forged = String::from_utf8(forged).unwrap();
    let raw = fixture(
        "postfix-permanent.eml",
        &forged,
        &w.message_id("2026-12-01"),
    );
    assert_eq!(w.process(&raw), Outcome::Ignored(Ignored::ForgedToken));

    // A genuine token for somebody who is not on record.
    let stranger = format!(
        "bounces+{}@example.org",
        w.key.sign_return(SubscriberId::from_u64(42), None)
    );
    let raw = fixture("postfix-permanent.eml", &stranger, "x@y");
    assert_eq!(w.process(&raw), Outcome::Ignored(Ignored::Stranger));

    // A report naming the subscriber's address, but nothing else of paperboy's.
    let raw = fixture("postfix-permanent.eml", "someone@example.net", "x@y");
    assert_eq!(w.process(&raw), Outcome::Ignored(Ignored::Unattributable));

    // Our Message-ID and List-Id, but about another address.
    let raw = String::from_utf8(fixture(
        "postfix-permanent.eml",
        "someone@example.net",
        &w.message_id("2026-12-01"),
    ))
    .unwrap()
    .replace(&format!("rfc822; {RCPT}"), "rfc822; bob@example.net")
    .replace(&format!("rfc822;{RCPT}"), "rfc822;bob@example.net");
    assert_eq!(
        w.process(raw.as_bytes()),
        Outcome::Ignored(Ignored::OtherAddress)
    );

    // Ten megabytes.
    let mut big = good.clone();
    big.resize(10 * 1024 * 1024, b'x');
    assert_eq!(
        w.process(&big),
        Outcome::Ignored(Ignored::TooLarge(10 * 1024 * 1024))
    );

    // Not a message at all.
    assert_eq!(
        w.process(b"\x00\x01garbage"),
        Outcome::Ignored(Ignored::NotAReport)
    );

    assert_eq!(w.now(), before);
    assert_eq!(
        w.metrics
            .bounce_reports_ignored
            .load(std::sync::atomic::Ordering::Relaxed),
        7
    );
}

#[test]
fn a_message_longer_than_the_limit_is_read_to_its_end_and_kept_short() {
    let big = vec![b'x'; MAX_MESSAGE_BYTES + 5000];
    let mut reader = std::io::Cursor::new(big);
    let kept = read_message(&mut reader).unwrap();
    assert_eq!(kept.len(), MAX_MESSAGE_BYTES + 1);
    assert_eq!(reader.position() as usize, MAX_MESSAGE_BYTES + 5000);
}
