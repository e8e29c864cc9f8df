//! Who gets which papers, and why. Pure functions: easy to test and to explain.

use std::collections::{HashMap, HashSet};

use crate::config::DigestSettings;
use crate::domain::{EditionDate, Keywords, Paper, PaperId, Preferences, SentOn, Sighting};

/// A subscriber's preferences with the operator's defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Effective<'a> {
    pub min_upvotes: u32,
    pub max_items: u32,
    pub keywords: &'a Keywords,
}

impl<'a> Effective<'a> {
    pub fn new(prefs: &'a Preferences, defaults: &DigestSettings) -> Self {
        Self {
            min_upvotes: prefs.min_upvotes().unwrap_or(defaults.min_upvotes),
            max_items: prefs.max_items().unwrap_or(defaults.max_items),
            keywords: prefs.keywords(),
        }
    }

    /// One sentence for the digest's footer: why these papers and not others.
    pub fn explain(&self) -> String {
        let mut why = format!("up to {} trending papers", self.max_items);
        if self.min_upvotes > 0 {
            why.push_str(&format!(" with at least {} upvotes", self.min_upvotes));
        }
        if !self.keywords.is_empty() {
            why.push_str(&format!(" matching {}", self.keywords));
        }
        why.push_str(" that you have not been sent before");
        why
    }
}

/// Whether a paper matches the keywords: any keyword starting a word of its title, abstract
/// or AI keywords. No keywords means every paper matches.
pub fn matches_keywords(paper: &Paper, keywords: &Keywords) -> bool {
    keywords.is_empty()
        || keywords.any_starts_a_word_in(&paper.title)
        || keywords.any_starts_a_word_in(&paper.summary)
        || paper
            .ai_keywords
            .iter()
            .any(|k| keywords.any_starts_a_word_in(k))
}

/// The papers an edition can offer: today's page first, then (from `on_page` on) papers
/// of recent days' lists that left it, which only late bloomers come from.
pub struct Pool<'p> {
    pub date: EditionDate,
    pub papers: &'p [Paper],
    pub on_page: usize,
    /// The first sighting of papers seen before (on any edition up to this one), if known.
    pub first_seen: Option<&'p HashMap<PaperId, Sighting>>,
}

impl<'p> Pool<'p> {
    /// A pool of just a page, with nothing known of earlier sightings.
    pub fn page(date: EditionDate, papers: &'p [Paper]) -> Self {
        Self {
            date,
            papers,
            on_page: papers.len(),
            first_seen: None,
        }
    }

    /// Whether the paper is a late bloomer for someone asking for `min_upvotes`: first
    /// seen on an earlier edition below that bar, at or above it now.
    fn late_for(&self, paper: &Paper, min_upvotes: u32) -> Option<Sighting> {
        self.first_seen?
            .get(&paper.id)
            .filter(|s| {
                s.date < self.date && s.upvotes < min_upvotes && paper.upvotes >= min_upvotes
            })
            .copied()
    }
}

/// Why a paper is or is not in a subscriber's digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// In the digest. `late`: first seen below their minimum, above it now.
    Picked {
        late: Option<Sighting>,
    },
    AlreadySent(Option<EditionDate>),
    BelowMinimum(u32),
    NoKeywordMatch,
    /// Off today's page, and not a late bloomer for them.
    NotOnPage,
    /// Eligible, but `max_items` papers with more upvotes came first.
    OverCap(u32),
    /// Picked, but the email would have grown past what mail clients show whole.
    OverSizeBudget,
    /// Would be picked now, but their digest of this edition, already on record, did not
    /// carry it: a later run of the same date added it, or their preferences changed.
    NotInTheirDigest,
}

impl Verdict {
    pub fn is_picked(&self) -> bool {
        matches!(self, Verdict::Picked { .. })
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Picked { late: None } => f.write_str("picked"),
            Verdict::Picked { late: Some(s) } => write!(
                f,
                "picked, late bloomer (first seen {} with {} upvotes)",
                s.date, s.upvotes
            ),
            Verdict::AlreadySent(Some(d)) => write!(f, "already sent on {d}"),
            Verdict::AlreadySent(None) => f.write_str("already sent"),
            Verdict::BelowMinimum(min) => write!(f, "below {min} upvotes"),
            Verdict::NoKeywordMatch => f.write_str("no keyword match"),
            Verdict::NotOnPage => f.write_str("no longer on the page"),
            Verdict::OverCap(max) => write!(f, "over the cap of {max} papers"),
            Verdict::OverSizeBudget => f.write_str("over the size limit of one email"),
            Verdict::NotInTheirDigest => f.write_str("not in the digest they were sent"),
        }
    }
}

/// The verdict on every paper of the pool for one subscriber, in pool order (a paper listed
/// twice is judged once). `matching` tells, given a paper's position and the paper,
/// whether it matches their keywords: planning works that out once per edition for each
/// distinct set of keywords, rather than once per subscriber.
///
/// The picked papers are those not sent before, with enough upvotes, matching their
/// keywords if they have any, on today's page or late bloomers, the `max_items` most
/// upvoted (page order breaks ties).
pub fn judge<'p>(
    pool: &Pool<'p>,
    prefs: &Effective<'_>,
    sent: &SentOn,
    matching: impl Fn(usize, &Paper) -> bool,
) -> Vec<(&'p Paper, Verdict)> {
    let mut seen = HashSet::new();
    let mut judged: Vec<(&Paper, Verdict)> = Vec::with_capacity(pool.papers.len());
    for (i, p) in pool.papers.iter().enumerate() {
        if !seen.insert(&p.id) {
            continue;
        }
        let verdict = if let Some(on) = sent.get(&p.id) {
            Verdict::AlreadySent(*on)
        } else if p.upvotes < prefs.min_upvotes {
            Verdict::BelowMinimum(prefs.min_upvotes)
        } else if !matching(i, p) {
            Verdict::NoKeywordMatch
        } else {
            let late = pool.late_for(p, prefs.min_upvotes);
            if i >= pool.on_page && late.is_none() {
                Verdict::NotOnPage
            } else {
                Verdict::Picked { late }
            }
        };
        judged.push((p, verdict));
    }
    // The most upvoted eligible papers make the cut; a stable sort keeps the pool's order
    // among equals.
    let mut eligible: Vec<usize> = (0..judged.len())
        .filter(|&i| judged[i].1.is_picked())
        .collect();
    eligible.sort_by_key(|&i| std::cmp::Reverse(judged[i].0.upvotes));
    for &i in eligible.iter().skip(prefs.max_items as usize) {
        judged[i].1 = Verdict::OverCap(prefs.max_items);
    }
    judged
}

/// The picked papers of a [`judge`]ment, most upvoted first, each with its first sighting
/// if it is a late bloomer. Empty means no email.
pub fn picked<'p>(judged: &[(&'p Paper, Verdict)]) -> Vec<(&'p Paper, Option<Sighting>)> {
    let mut chosen: Vec<(&Paper, Option<Sighting>)> = judged
        .iter()
        .filter_map(|(p, v)| match v {
            Verdict::Picked { late } => Some((*p, *late)),
            _ => None,
        })
        .collect();
    // Stable: the pool's order among equals.
    chosen.sort_by_key(|(p, _)| std::cmp::Reverse(p.upvotes));
    chosen
}

/// The papers a subscriber gets, matching keywords as it goes: [`picked`] of [`judge`].
pub fn select<'p>(pool: &Pool<'p>, prefs: &Effective<'_>, sent: &SentOn) -> Vec<&'p Paper> {
    picked(&judge(pool, prefs, sent, |_, p| {
        matches_keywords(p, prefs.keywords)
    }))
    .into_iter()
    .map(|(p, _)| p)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Choices, EditionDays};

    fn paper(id: &str, upvotes: u32, title: &str) -> Paper {
        Paper {
            summary: "An abstract.".into(),
            ai_keywords: vec!["Vision-Language Models".into()],
            ..Paper::new(PaperId::parse(id).unwrap(), title, upvotes)
        }
    }

    fn defaults() -> DigestSettings {
        DigestSettings {
            max_items: 10,
            min_upvotes: 0,
            ..DigestSettings::default()
        }
    }

    fn day() -> EditionDate {
        EditionDate::parse("2025-12-09").unwrap()
    }

    fn ids(v: &[&Paper]) -> Vec<String> {
        v.iter().map(|p| p.id.to_string()).collect()
    }

    #[test]
    fn orders_by_upvotes_and_caps() {
        let papers = vec![
            paper("2501.00001", 5, "a"),
            paper("2501.00002", 50, "b"),
            paper("2501.00003", 20, "c"),
            paper("2501.00004", 20, "d"),
        ];
        let prefs = Preferences::new(
            Choices {
                max_items: Some(3),
                ..Default::default()
            },
            &EditionDays::every_day(),
        )
        .unwrap();
        let got = select(
            &Pool::page(day(), &papers),
            &Effective::new(&prefs, &defaults()),
            &SentOn::new(),
        );
        assert_eq!(ids(&got), ["2501.00002", "2501.00003", "2501.00004"]);
    }

    #[test]
    fn never_twice_and_threshold() {
        let papers = vec![paper("2501.00001", 5, "a"), paper("2501.00002", 50, "b")];
        let prefs = Preferences::new(
            Choices {
                min_upvotes: Some(10),
                ..Default::default()
            },
            &EditionDays::every_day(),
        )
        .unwrap();
        let eff = Effective::new(&prefs, &defaults());
        let sent: SentOn = [(PaperId::parse("2501.00002").unwrap(), None)].into();
        assert!(select(&Pool::page(day(), &papers), &eff, &sent).is_empty());
        // Later the first paper crosses the threshold: now it is selected, once.
        let later = vec![paper("2501.00001", 12, "a")];
        assert_eq!(
            ids(&select(&Pool::page(day(), &later), &eff, &sent)),
            ["2501.00001"]
        );
    }

    #[test]
    fn keywords_look_at_title_abstract_and_ai_keywords() {
        let papers = vec![
            paper("2501.00001", 5, "Diffusion for audio"),
            paper("2501.00002", 6, "Something else"),
        ];
        let by = |k: &str| {
            let prefs = Preferences::new(
                Choices {
                    keywords: Keywords::parse_list(k).unwrap(),
                    ..Default::default()
                },
                &EditionDays::every_day(),
            )
            .unwrap();
            ids(&select(
                &Pool::page(day(), &papers),
                &Effective::new(&prefs, &defaults()),
                &SentOn::new(),
            ))
        };
        assert_eq!(by("DIFFUSION"), ["2501.00001"]);
        assert_eq!(by("vision-language").len(), 2);
        assert_eq!(by("abstract").len(), 2);
        assert!(by("quantum").is_empty());
    }

    #[test]
    fn duplicates_on_a_page_count_once() {
        let papers = vec![paper("2501.00001", 5, "a"), paper("2501.00001v2", 5, "a")];
        let prefs = Preferences::default();
        let got = select(
            &Pool::page(day(), &papers),
            &Effective::new(&prefs, &defaults()),
            &SentOn::new(),
        );
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn every_paper_gets_a_reason() {
        let papers = vec![
            paper("2501.00001", 40, "Scaling LLMs"),
            paper("2501.00002", 90, "Scaling LLMs again"),
            paper("2501.00003", 10, "LLMs, small"),
            paper("2501.00004", 60, "Graph theory"),
            paper("2501.00005", 30, "LLM agents"),
            paper("2501.00006", 35, "LLM routing"),
        ];
        let prefs = Preferences::new(
            Choices {
                min_upvotes: Some(25),
                keywords: Keywords::parse_list("llm").unwrap(),
                max_items: Some(2),
                ..Default::default()
            },
            &EditionDays::every_day(),
        )
        .unwrap();
        let sent_on = day().minus_days(3);
        let sent: SentOn = [(PaperId::parse("2501.00002").unwrap(), Some(sent_on))].into();
        let judged = judge(
            &Pool::page(day(), &papers),
            &Effective::new(&prefs, &defaults()),
            &sent,
            |_, p| matches_keywords(p, prefs.keywords()),
        );
        let reasons: Vec<String> = judged.iter().map(|(_, v)| v.to_string()).collect();
        assert_eq!(
            reasons,
            [
                "picked",
                "already sent on 2025-12-06",
                "below 25 upvotes",
                "no keyword match",
                "over the cap of 2 papers",
                "picked",
            ]
        );
    }

    #[test]
    fn late_bloomers_come_from_the_page_and_from_recent_lists() {
        let papers = vec![
            // On the page: first seen two days ago with 5, now 30.
            paper("2501.00001", 30, "a"),
            // On the page, new today with 40: picked, not late.
            paper("2501.00002", 40, "b"),
            // Off the page (a recent day's list): first seen with 8, now 26.
            paper("2501.00003", 26, "c"),
            // Off the page, first seen already with 50: not late, so not picked.
            paper("2501.00004", 55, "d"),
        ];
        let earlier = day().minus_days(2);
        let first_seen: HashMap<PaperId, Sighting> =
            [("2501.00001", 5), ("2501.00003", 8), ("2501.00004", 50)]
                .into_iter()
                .map(|(id, upvotes)| {
                    let date = earlier;
                    (PaperId::parse(id).unwrap(), Sighting { date, upvotes })
                })
                .chain([(
                    PaperId::parse("2501.00002").unwrap(),
                    Sighting {
                        date: day(),
                        upvotes: 40,
                    },
                )])
                .collect();
        let pool = Pool {
            date: day(),
            papers: &papers,
            on_page: 2,
            first_seen: Some(&first_seen),
        };
        let prefs = Preferences::new(
            Choices {
                min_upvotes: Some(25),
                ..Default::default()
            },
            &EditionDays::every_day(),
        )
        .unwrap();
        let eff = Effective::new(&prefs, &defaults());
        let verdicts: Vec<Verdict> = judge(&pool, &eff, &SentOn::new(), |_, _| true)
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        let late = |upvotes| Verdict::Picked {
            late: Some(Sighting {
                date: earlier,
                upvotes,
            }),
        };
        assert_eq!(
            verdicts,
            [
                late(5),
                Verdict::Picked { late: None },
                late(8),
                Verdict::NotOnPage
            ]
        );
        // With no minimum nothing is late, and off-page papers stay out.
        let prefs = Preferences::default();
        let eff = Effective::new(&prefs, &defaults());
        let chosen = select(&pool, &eff, &SentOn::new());
        assert_eq!(ids(&chosen), ["2501.00002", "2501.00001"]);
    }

    #[test]
    fn explains_itself() {
        let prefs = Preferences::new(
            Choices {
                min_upvotes: Some(20),
                keywords: Keywords::parse_list("llm, rag").unwrap(),
                max_items: Some(5),
                ..Default::default()
            },
            &EditionDays::every_day(),
        )
        .unwrap();
        assert_eq!(
            Effective::new(&prefs, &defaults()).explain(),
            "up to 5 trending papers with at least 20 upvotes matching llm, rag that you have not been sent before"
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::domain::{Choices, EditionDays};
    use proptest::prelude::*;

    fn arb_papers() -> impl Strategy<Value = Vec<Paper>> {
        // A page lists each paper once (the parser de-duplicates), so ids are unique here.
        prop::collection::btree_map(0u32..40, (0u32..200, any::<bool>()), 0..30).prop_map(|v| {
            v.into_iter()
                .map(|(n, (upvotes, llm))| {
                    let title = if llm { "Scaling LLMs" } else { "Graph theory" };
                    Paper::new(
                        PaperId::parse(&format!("2501.{n:05}")).unwrap(),
                        title,
                        upvotes,
                    )
                })
                .collect()
        })
    }

    proptest! {
            #[test]
            fn selection_keeps_every_promise(
                papers in arb_papers(),
                sent_ids in prop::collection::hash_set(0u32..40, 0..20),
                min in 0u32..150,
                max in 1u32..12,
                keyword in any::<bool>(),
            ) {
                let sent: SentOn = sent_ids
                    .iter()
                    .map(|n| (PaperId::parse(&format!("2501.{n:05}")).unwrap(), None))
                    .collect();
                let prefs = Preferences::new(
    Choices {
                    min_upvotes: Some(min),
                    max_items: Some(max),
                    keywords: if keyword { Keywords::parse_list("llm").unwrap() } else { Keywords::default() },
                    ..Default::default()
                }, &EditionDays::every_day()).unwrap();
                let defaults = DigestSettings { max_items: 10, min_upvotes: 0, ..DigestSettings::default() };
                let eff = Effective::new(&prefs, &defaults);
                let day = EditionDate::parse("2025-12-09").unwrap();
                let chosen = select(&Pool::page(day, &papers), &eff, &sent);

                prop_assert!(chosen.len() <= max as usize);
                let ids: HashSet<_> = chosen.iter().map(|p| &p.id).collect();
                prop_assert_eq!(ids.len(), chosen.len(), "a paper twice in one digest");
                for p in &chosen {
                    prop_assert!(!sent.contains_key(&p.id), "a paper sent before");
                    prop_assert!(p.upvotes >= min);
                    prop_assert!(!keyword || p.title.contains("LLM"));
                }
                prop_assert!(chosen.windows(2).all(|w| w[0].upvotes >= w[1].upvotes));
                // Nothing eligible was left out for something with fewer upvotes.
                let eligible = papers.iter().filter(|p| {
                    !sent.contains_key(&p.id) && p.upvotes >= min && (!keyword || p.title.contains("LLM"))
                });
                let floor = chosen.last().map_or(u32::MAX, |p| p.upvotes);
                for p in eligible {
                    prop_assert!(ids.contains(&p.id) || (chosen.len() == max as usize && p.upvotes <= floor));
                }
            }
        }
}
