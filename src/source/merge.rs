//! Several lists of papers made into one, by canonical arXiv id.
//!
//! Two sources often list the same paper (the trending page and the day's API list), with
//! counts fetched at slightly different moments and text fields that one of them may lack.
//! A digest must show each paper once, in an order the first source decides.

use std::collections::HashMap;

use crate::domain::{Paper, PaperId};

/// One paper per id: upvotes, comments and GitHub stars the highest any list gave, every
/// other field from the first list that has it. The order is the first list's, then the
/// papers only the later lists have, most upvoted first (ties in the order they were met).
pub fn merge(lists: impl IntoIterator<Item = Vec<Paper>>) -> Vec<Paper> {
    let mut lists = lists.into_iter();
    let mut merged = lists.next().unwrap_or_default();
    let mut at: HashMap<PaperId, usize> = HashMap::with_capacity(merged.len());
    for (i, paper) in merged.iter().enumerate() {
        // A parsed list holds each id once; should one not, its first entry is the one kept.
        at.entry(paper.id.clone()).or_insert(i);
    }
    let first_len = merged.len();
    for list in lists {
        for paper in list {
            match at.get(&paper.id) {
                Some(&i) => absorb(&mut merged[i], paper),
                None => {
                    at.insert(paper.id.clone(), merged.len());
                    merged.push(paper);
                }
            }
        }
    }
    // Stable: equal upvotes keep the order of the lists.
    merged[first_len..].sort_by_key(|p| std::cmp::Reverse(p.upvotes));
    merged
}

/// Folds a later list's copy of a paper into the one kept.
fn absorb(kept: &mut Paper, other: Paper) {
    kept.upvotes = kept.upvotes.max(other.upvotes);
    kept.comments = kept.comments.max(other.comments);
    kept.github_stars = kept.github_stars.max(other.github_stars);
    // The title is never empty: a parse drops entries without one.
    if kept.summary.is_empty() {
        kept.summary = other.summary;
    }
    if kept.ai_keywords.is_empty() {
        kept.ai_keywords = other.ai_keywords;
    }
    if kept.authors.is_empty() {
        kept.authors = other.authors;
    }
    kept.ai_summary = kept.ai_summary.take().or(other.ai_summary);
    kept.organization = kept.organization.take().or(other.organization);
    kept.published_at = kept.published_at.or(other.published_at);
    kept.featured_at = kept.featured_at.or(other.featured_at);
    kept.github_repo = kept.github_repo.take().or(other.github_repo);
    kept.project_page = kept.project_page.take().or(other.project_page);
    kept.thumbnail = kept.thumbnail.take().or(other.thumbnail);
}

/// The papers of the recent days' lists (newest day first) that are not in `page`: merged
/// like sources, so each appears once with the highest upvotes any day showed.
pub fn recent_only(days: Vec<Vec<Paper>>, page: &[Paper]) -> Vec<Paper> {
    let on_page: std::collections::HashSet<&PaperId> = page.iter().map(|p| &p.id).collect();
    let mut recent = merge(days);
    recent.retain(|p| !on_page.contains(&p.id));
    recent
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Author, HttpUrl};

    fn paper(id: &str, upvotes: u32) -> Paper {
        Paper::new(PaperId::parse(id).unwrap(), format!("Paper {id}"), upvotes)
    }

    fn ids(papers: &[Paper]) -> Vec<&str> {
        papers.iter().map(|p| p.id.as_str()).collect()
    }

    #[test]
    fn first_order_then_the_others_most_upvoted_first() {
        let first = vec![paper("2501.00003", 5), paper("2501.00001", 50)];
        let second = vec![
            paper("2501.00010", 7),
            paper("2501.00001v2", 60),
            paper("2501.00011", 90),
        ];
        let third = vec![paper("2501.00012", 7), paper("2501.00010", 8)];
        let merged = merge([first, second, third]);
        assert_eq!(
            ids(&merged),
            [
                "2501.00003",
                "2501.00001",
                "2501.00011",
                "2501.00010",
                "2501.00012"
            ]
        );
        // The highest count any source gave, also for papers only later sources have.
        assert_eq!(merged[1].upvotes, 60);
        assert_eq!(merged[3].upvotes, 8);
    }

    #[test]
    fn text_from_the_first_source_that_has_it_counts_the_highest() {
        let mut a = paper("2501.00001", 10);
        a.title = "From A".into();
        a.comments = 4;
        a.ai_summary = Some("A's summary".into());
        let mut b = paper("2501.00001", 3);
        b.title = "From B".into();
        b.summary = "B's abstract".into();
        b.ai_summary = Some("B's summary".into());
        b.authors = vec![Author {
            name: "B. Author".into(),
        }];
        b.comments = 9;
        b.github_stars = Some(12);
        b.project_page = HttpUrl::parse("https://b.example.org/");
        let merged = merge([vec![a], vec![b]]);
        assert_eq!(merged.len(), 1);
        let p = &merged[0];
        assert_eq!(p.title, "From A");
        assert_eq!(p.ai_summary.as_deref(), Some("A's summary"));
        assert_eq!(p.summary, "B's abstract");
        assert_eq!(p.authors.len(), 1);
        assert_eq!((p.upvotes, p.comments, p.github_stars), (10, 9, Some(12)));
        assert_eq!(
            p.project_page.as_ref().unwrap().as_str(),
            "https://b.example.org/"
        );
    }

    #[test]
    fn one_list_is_unchanged() {
        let list = vec![paper("2501.00002", 1), paper("2501.00001", 9)];
        assert_eq!(merge([list.clone()]), list);
        assert!(merge(Vec::<Vec<Paper>>::new()).is_empty());
    }

    #[test]
    fn recent_leaves_out_the_page_and_keeps_the_best_count() {
        let page = vec![paper("2501.00001", 5)];
        let yesterday = vec![paper("2501.00001", 1), paper("2501.00002", 3)];
        let before = vec![paper("2501.00002", 30), paper("2501.00003", 4)];
        let recent = recent_only(vec![yesterday, before], &page);
        assert_eq!(ids(&recent), ["2501.00002", "2501.00003"]);
        assert_eq!(recent[0].upvotes, 30);
    }
}
