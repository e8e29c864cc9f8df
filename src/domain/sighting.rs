//! What is known of a paper from earlier editions: when it was first seen and with how many
//! upvotes, and which edition it went out with to a subscriber. Selection, rendering and
//! the store all speak in these.

use std::collections::HashMap;

use super::{EditionDate, PaperId};

/// Where a subscriber's papers were planned before, by paper: the edition it went out
/// with, or `None` when the store keeps only that it was sent (before the window).
pub type SentOn = HashMap<PaperId, Option<EditionDate>>;

/// When a paper was first seen, and how many upvotes it had then.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sighting {
    pub date: EditionDate,
    pub upvotes: u32,
}
