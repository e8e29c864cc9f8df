//! Subscribers in and out: `subscribers export` (JSON Lines or CSV) and `subscribers import`
//! (the same formats). Import checks the whole file before it writes anything, and applying
//! the same file twice changes nothing the second time.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;

use anyhow::Context as _;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{
    Choices, EditionDays, Frequency, Keywords, Preferences, SendAt, Status, Subscriber,
    SubscriberEmail,
};
use crate::store::Store;

/// How `subscribers export` writes the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

/// One subscriber as exported: address, status and preferences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub email: String,
    pub status: Status,
    pub min_upvotes: Option<u32>,
    #[serde(default)]
    pub keywords: Vec<String>,
    pub max_items: Option<u32>,
    #[serde(default)]
    pub paused: bool,
    // Always written, so `subscribers list --json` shows every reader's schedule; files
    // from before these fields existed still import.
    #[serde(default)]
    pub frequency: Frequency,
    #[serde(default)]
    pub send_at: Option<SendAt>,
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub confirmed_at: Option<DateTime<Utc>>,
    /// The last bounce or complaint (`2026-12-01 permanent: 5.1.1 failed: …`): written for
    /// the operator, not read back by an import.
    #[serde(default)]
    pub last_bounce: Option<String>,
}

/// The CSV shape: keywords in one comma-separated field; frequency and send time as text
/// (`weekly:mon`, `07:00 Europe/Berlin`), empty for the defaults. Files from before those
/// columns existed still import.
#[derive(Debug, Serialize, Deserialize)]
struct CsvRecord {
    email: String,
    status: Status,
    min_upvotes: Option<u32>,
    keywords: String,
    max_items: Option<u32>,
    paused: bool,
    created_at: Option<DateTime<Utc>>,
    confirmed_at: Option<DateTime<Utc>>,
    #[serde(default)]
    frequency: String,
    #[serde(default)]
    send_at: String,
    #[serde(default)]
    last_bounce: String,
}

pub fn record(s: &Subscriber) -> Record {
    Record {
        email: s.email.to_string(),
        status: s.status,
        min_upvotes: s.preferences.min_upvotes(),
        keywords: s.preferences.keywords().as_slice().to_vec(),
        max_items: s.preferences.max_items(),
        paused: s.preferences.paused(),
        frequency: s.preferences.frequency(),
        send_at: s.preferences.send_at(),
        created_at: Some(s.created_at),
        confirmed_at: s.confirmed_at,
        last_bounce: s.last_bounce.as_ref().map(ToString::to_string),
    }
}

pub fn export(all: &[Subscriber], format: ExportFormat) -> anyhow::Result<String> {
    match format {
        ExportFormat::Jsonl => {
            let mut out = String::new();
            for s in all {
                out.push_str(&serde_json::to_string(&record(s))?);
                out.push('\n');
            }
            Ok(out)
        }
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            for s in all {
                let r = record(s);
                w.serialize(CsvRecord {
                    email: r.email,
                    status: r.status,
                    min_upvotes: r.min_upvotes,
                    keywords: r.keywords.join(", "),
                    max_items: r.max_items,
                    paused: r.paused,
                    created_at: r.created_at,
                    confirmed_at: r.confirmed_at,
                    frequency: r.frequency.to_string(),
                    send_at: r.send_at.map(|s| s.to_string()).unwrap_or_default(),
                    last_bounce: r.last_bounce.unwrap_or_default(),
                })?;
            }
            if all.is_empty() {
                return Ok(
                    "email,status,min_upvotes,keywords,max_items,paused,created_at,confirmed_at,frequency,send_at,last_bounce\n"
                        .into(),
                );
            }
            Ok(String::from_utf8(w.into_inner()?)?)
        }
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub added: usize,
    pub updated: usize,
    pub unchanged: usize,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "imported: {} added, {} updated, {} unchanged",
            self.added, self.updated, self.unchanged
        )
    }
}

/// A checked line of the file: where it was, and what it says.
struct Checked {
    line: usize,
    email: SubscriberEmail,
    status: Status,
    preferences: Preferences,
    created_at: Option<DateTime<Utc>>,
    confirmed_at: Option<DateTime<Utc>>,
}

fn parse(bytes: &[u8]) -> anyhow::Result<Vec<(usize, Record)>> {
    let text = std::str::from_utf8(bytes).map_err(|_| anyhow::anyhow!("the file is not UTF-8"))?;
    let first = text.trim_start();
    if first.starts_with('{') || first.is_empty() {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let r: Record =
                serde_json::from_str(line).map_err(|e| anyhow::anyhow!("line {}: {e}", i + 1))?;
            out.push((i + 1, r));
        }
        Ok(out)
    } else {
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let mut out = Vec::new();
        for row in reader.deserialize::<CsvRecord>() {
            let row = row.map_err(|e| {
                let line = e.position().map_or(0, |p| p.line());
                anyhow::anyhow!("line {line}: {e}")
            })?;
            let line = out.len() + 2;
            let bad = |e: &dyn fmt::Display| anyhow::anyhow!("line {line}: {e}");
            let frequency = Frequency::parse(&row.frequency).map_err(|e| bad(&e))?;
            let send_at = match row.send_at.trim() {
                "" => None,
                s => Some(SendAt::parse(s).map_err(|e| bad(&e))?),
            };
            out.push((
                line,
                Record {
                    email: row.email,
                    status: row.status,
                    min_upvotes: row.min_upvotes,
                    keywords: row.keywords.split(',').map(str::to_string).collect(),
                    max_items: row.max_items,
                    paused: row.paused,
                    frequency,
                    send_at,
                    created_at: row.created_at,
                    confirmed_at: row.confirmed_at,
                    last_bounce: None,
                },
            ));
        }
        Ok(out)
    }
}

fn check(rows: Vec<(usize, Record)>, days: &EditionDays) -> anyhow::Result<Vec<Checked>> {
    let mut seen: HashMap<SubscriberEmail, usize> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for (line, r) in rows {
        let bad = |e: &dyn fmt::Display| anyhow::anyhow!("line {line}: {e}");
        let email = SubscriberEmail::parse(&r.email).map_err(|e| bad(&e))?;
        if let Some(first) = seen.insert(email.clone(), line) {
            return Err(bad(&format!("{email} is already on line {first}")));
        }
        let keywords = Keywords::from_vec(r.keywords).map_err(|e| bad(&e))?;
        let choices = Choices {
            min_upvotes: r.min_upvotes,
            keywords,
            max_items: r.max_items,
            paused: r.paused,
            frequency: r.frequency,
            send_at: r.send_at,
        };
        let preferences = Preferences::new(choices, days).map_err(|e| bad(&e))?;
        out.push(Checked {
            line,
            email,
            status: r.status,
            preferences,
            created_at: r.created_at,
            confirmed_at: r.confirmed_at,
        });
    }
    Ok(out)
}

/// What importing one line did.
enum Imported {
    Added,
    Updated,
    Unchanged,
}

/// Checks the whole file, then adds new subscribers and updates the status and preferences
/// of known ones. Nothing is written when any line is bad.
/// `days`: the days the site's schedule sends on, which a weekly subscriber on it must
/// have chosen from (as on the form and in `subscribers add`).
pub fn import(store: &Store, bytes: &[u8], days: &EditionDays) -> anyhow::Result<ImportReport> {
    let checked = check(parse(bytes)?, days)?;
    let mut report = ImportReport::default();
    for c in checked {
        // Read and written in one transaction: the daemon may record a bounce or a send
        // for this reader meanwhile (an import goes through its admin socket).
        let outcome = store.change_subscriber(&c.email, |current| {
            Ok::<_, Infallible>(match current {
                Some(mut s) => {
                    let before = s.clone();
                    s.status = c.status;
                    s.preferences = c.preferences.clone();
                    s.confirmed_at = c.confirmed_at.or(s.confirmed_at);
                    let outcome = if s == before {
                        Imported::Unchanged
                    } else {
                        Imported::Updated
                    };
                    (s, outcome)
                }
                None => {
                    let mut s = Subscriber::new(c.email.clone(), c.preferences.clone(), false);
                    s.status = c.status;
                    s.created_at = c.created_at.unwrap_or(s.created_at);
                    s.confirmed_at = c.confirmed_at;
                    (s, Imported::Added)
                }
            })
        });
        let Ok(outcome) = outcome.with_context(|| format!("line {}", c.line))?;
        match outcome {
            Imported::Added => report.added += 1,
            Imported::Updated => report.updated += 1,
            Imported::Unchanged => report.unchanged += 1,
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), crate::store::EngineKind::Sled).unwrap();
        (dir, store)
    }

    fn sample() -> Vec<Subscriber> {
        let choices = Choices {
            min_upvotes: Some(10),
            keywords: Keywords::parse_list("llm, rag").unwrap(),
            max_items: Some(5),
            paused: true,
            frequency: crate::domain::Frequency::parse("weekly:thu").unwrap(),
            send_at: Some(SendAt::parse("06:00 America/New_York").unwrap()),
        };
        let a = Subscriber::new(
            SubscriberEmail::parse("ann@example.org").unwrap(),
            Preferences::new(choices, &EditionDays::every_day()).unwrap(),
            true,
        );
        let b = Subscriber::new(
            SubscriberEmail::parse("bob@example.com").unwrap(),
            Preferences::default(),
            false,
        );
        vec![a, b]
    }

    #[test]
    fn round_trips_in_both_formats_and_is_idempotent() {
        for format in [ExportFormat::Jsonl, ExportFormat::Csv] {
            let text = export(&sample(), format).unwrap();
            let (_d, s) = store();
            let r = import(&s, text.as_bytes(), &EditionDays::every_day()).unwrap();
            assert_eq!(
                r,
                ImportReport {
                    added: 2,
                    updated: 0,
                    unchanged: 0
                },
                "{format:?}"
            );
            let r = import(&s, text.as_bytes(), &EditionDays::every_day()).unwrap();
            assert_eq!(
                r,
                ImportReport {
                    added: 0,
                    updated: 0,
                    unchanged: 2
                },
                "{format:?}"
            );
            let back = export(&s.subscribers().unwrap(), format).unwrap();
            assert_eq!(back, text, "{format:?}");
            let ann = s
                .subscriber(&SubscriberEmail::parse("ann@example.org").unwrap())
                .unwrap()
                .unwrap();
            assert_eq!(ann.preferences, sample()[0].preferences, "{format:?}");
        }
    }

    #[test]
    fn files_from_before_frequencies_still_import() {
        let (_d, s) = store();
        let csv = "email,status,min_upvotes,keywords,max_items,paused,created_at,confirmed_at\nann@example.org,active,,,,false,,\n";
        let jsonl = "{\"email\":\"bob@example.org\",\"status\":\"active\",\"min_upvotes\":null,\"max_items\":null}\n";
        for text in [csv, jsonl] {
            assert_eq!(
                import(&s, text.as_bytes(), &EditionDays::every_day())
                    .unwrap()
                    .added,
                1,
                "{text}"
            );
        }
        let bad = "email,status,min_upvotes,keywords,max_items,paused,created_at,confirmed_at,frequency,send_at\ncid@example.org,active,,,,false,,,weekly:someday,\n";
        let e = import(&s, bad.as_bytes(), &EditionDays::every_day())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("line 2:") && e.contains("not a frequency"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_line_applies_nothing() {
        let text = export(&sample(), ExportFormat::Jsonl).unwrap();
        let bad = format!(
            "{text}{{\"email\":\"nope\",\"status\":\"active\",\"min_upvotes\":null,\"max_items\":null}}\n"
        );
        let (_d, s) = store();
        let e = import(&s, bad.as_bytes(), &EditionDays::every_day())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("line 3:"), "{e}");
        assert!(s.subscribers().unwrap().is_empty());
        let dup = format!("{text}{}", text.lines().next().unwrap());
        let e = import(&s, dup.as_bytes(), &EditionDays::every_day())
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("line 1"), "{e}");
        let csv = "email,status,min_upvotes,keywords,max_items,paused,created_at,confirmed_at\nann@example.org,sleeping,,,,false,,\n";
        let e = import(&s, csv.as_bytes(), &EditionDays::every_day())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("line 2"), "{e}");
        assert!(s.subscribers().unwrap().is_empty());
    }
}
