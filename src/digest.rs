//! Who gets which papers, and why. Pure functions: easy to test and to explain.

use std::collections::HashSet;

use crate::config::DigestSettings;
use crate::domain::{Keywords, Paper, PaperId, Preferences};

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
            min_upvotes: prefs.min_upvotes.unwrap_or(defaults.min_upvotes),
            max_items: prefs.max_items.unwrap_or(defaults.max_items),
            keywords: &prefs.keywords,
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

/// The papers of this fetch that a subscriber should get: not sent before, with enough
/// upvotes, matching their keywords if they have any, most upvoted first (page order breaks
/// ties), at most `max_items`. An empty result means no email.
pub fn select<'p>(
    papers: &'p [Paper],
    prefs: &Effective<'_>,
    already_sent: &HashSet<PaperId>,
) -> Vec<&'p Paper> {
    select_matching(papers, prefs, already_sent, |_, p| {
        matches_keywords(p, prefs.keywords)
    })
}

/// [`select`], told by `matching` (given a paper's position and the paper) whether it
/// matches the keywords: planning works that out once per edition for each distinct set of
/// keywords, rather than once per subscriber.
pub fn select_matching<'p>(
    papers: &'p [Paper],
    prefs: &Effective<'_>,
    already_sent: &HashSet<PaperId>,
    matching: impl Fn(usize, &Paper) -> bool,
) -> Vec<&'p Paper> {
    let mut seen = HashSet::new();
    let mut chosen: Vec<&Paper> = papers
        .iter()
        .enumerate()
        .filter(|(_, p)| seen.insert(&p.id))
        .filter(|(_, p)| !already_sent.contains(&p.id))
        .filter(|(_, p)| p.upvotes >= prefs.min_upvotes)
        .filter(|(i, p)| matching(*i, p))
        .map(|(_, p)| p)
        .collect();
    // A stable sort keeps the page's order among equals.
    chosen.sort_by_key(|p| std::cmp::Reverse(p.upvotes));
    chosen.truncate(prefs.max_items as usize);
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

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
            retention_days: 180,
        }
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
        let prefs = Preferences {
            max_items: Some(3),
            ..Default::default()
        };
        let got = select(
            &papers,
            &Effective::new(&prefs, &defaults()),
            &HashSet::new(),
        );
        assert_eq!(ids(&got), ["2501.00002", "2501.00003", "2501.00004"]);
    }

    #[test]
    fn never_twice_and_threshold() {
        let papers = vec![paper("2501.00001", 5, "a"), paper("2501.00002", 50, "b")];
        let prefs = Preferences {
            min_upvotes: Some(10),
            ..Default::default()
        };
        let eff = Effective::new(&prefs, &defaults());
        let sent: HashSet<_> = [PaperId::parse("2501.00002").unwrap()].into();
        assert!(select(&papers, &eff, &sent).is_empty());
        // Later the first paper crosses the threshold: now it is selected, once.
        let later = vec![paper("2501.00001", 12, "a")];
        assert_eq!(ids(&select(&later, &eff, &sent)), ["2501.00001"]);
    }

    #[test]
    fn keywords_look_at_title_abstract_and_ai_keywords() {
        let papers = vec![
            paper("2501.00001", 5, "Diffusion for audio"),
            paper("2501.00002", 6, "Something else"),
        ];
        let by = |k: &str| {
            let prefs = Preferences {
                keywords: Keywords::parse_list(k).unwrap(),
                ..Default::default()
            };
            ids(&select(
                &papers,
                &Effective::new(&prefs, &defaults()),
                &HashSet::new(),
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
            &papers,
            &Effective::new(&prefs, &defaults()),
            &HashSet::new(),
        );
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn explains_itself() {
        let prefs = Preferences {
            min_upvotes: Some(20),
            keywords: Keywords::parse_list("llm, rag").unwrap(),
            max_items: Some(5),
            paused: false,
        };
        assert_eq!(
            Effective::new(&prefs, &defaults()).explain(),
            "up to 5 trending papers with at least 20 upvotes matching llm, rag that you have not been sent before"
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
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
            let sent: HashSet<PaperId> = sent_ids
                .iter()
                .map(|n| PaperId::parse(&format!("2501.{n:05}")).unwrap())
                .collect();
            let prefs = Preferences {
                min_upvotes: Some(min),
                max_items: Some(max),
                keywords: if keyword { Keywords::parse_list("llm").unwrap() } else { Keywords::default() },
                paused: false,
            };
            let defaults = DigestSettings { max_items: 10, min_upvotes: 0, retention_days: 180 };
            let eff = Effective::new(&prefs, &defaults);
            let chosen = select(&papers, &eff, &sent);

            prop_assert!(chosen.len() <= max as usize);
            let ids: HashSet<_> = chosen.iter().map(|p| &p.id).collect();
            prop_assert_eq!(ids.len(), chosen.len(), "a paper twice in one digest");
            for p in &chosen {
                prop_assert!(!sent.contains(&p.id), "a paper sent before");
                prop_assert!(p.upvotes >= min);
                prop_assert!(!keyword || p.title.contains("LLM"));
            }
            prop_assert!(chosen.windows(2).all(|w| w[0].upvotes >= w[1].upvotes));
            // Nothing eligible was left out for something with fewer upvotes.
            let eligible = papers.iter().filter(|p| {
                !sent.contains(&p.id) && p.upvotes >= min && (!keyword || p.title.contains("LLM"))
            });
            let floor = chosen.last().map_or(u32::MAX, |p| p.upvotes);
            for p in eligible {
                prop_assert!(ids.contains(&p.id) || (chosen.len() == max as usize && p.upvotes <= floor));
            }
        }
    }
}
