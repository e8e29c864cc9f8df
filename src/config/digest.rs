//! `[digest]`: the operator's defaults for what a subscriber did not choose, and how long
//! papers are remembered.

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DigestSettings {
    pub max_items: u32,
    pub min_upvotes: u32,
    /// Days a paper is remembered after it was last seen on the source; see the README.
    pub retention_days: u32,
    /// Each card shows the paper's thumbnail from the source (off: the images are remote,
    /// and many clients block them until the reader allows).
    pub thumbnails: bool,
}

impl Default for DigestSettings {
    fn default() -> Self {
        Self {
            max_items: 10,
            min_upvotes: 0,
            retention_days: 180,
            thumbnails: false,
        }
    }
}

impl DigestSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let max = crate::domain::MAX_ITEMS_CAP;
        if !(1..=max).contains(&self.max_items) {
            return Err(invalid(
                "digest.max_items",
                format!("must be between 1 and {max}"),
            ));
        }
        if self.retention_days < 90 {
            return Err(invalid(
                "digest.retention_days",
                "must be at least 90, or papers could be sent twice",
            ));
        }
        Ok(())
    }
}
