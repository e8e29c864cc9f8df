//! Times the store keeps for the service across restarts, in `meta`: the last good fetch
//! and how far the scheduler got.

use chrono::{DateTime, Utc};

use super::{META, Result, Store};

impl Store {
    pub(super) fn meta_time(&self, key: &str) -> Result<Option<DateTime<Utc>>> {
        Ok(self
            .db
            .get(META, key.as_bytes())?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .and_then(|b| DateTime::from_timestamp(i64::from_be_bytes(b), 0)))
    }

    pub(super) fn set_meta_time(&self, key: &str, at: DateTime<Utc>) -> Result<()> {
        self.db
            .put(META, key.as_bytes(), &at.timestamp().to_be_bytes())
    }

    /// When the source was last fetched successfully, for `/healthz` across restarts.
    pub fn last_fetch_ok(&self) -> Result<Option<DateTime<Utc>>> {
        self.meta_time("last_fetch_ok")
    }

    pub fn set_last_fetch_ok(&self, at: DateTime<Utc>) -> Result<()> {
        self.set_meta_time("last_fetch_ok", at)
    }

    /// Up to when the scheduler has dealt with every scheduled time: what `serve` compares
    /// with the schedule after downtime to find a missed edition.
    pub fn schedule_handled_until(&self) -> Result<Option<DateTime<Utc>>> {
        self.meta_time("schedule_handled_until")
    }

    pub fn set_schedule_handled_until(&self, at: DateTime<Utc>) -> Result<()> {
        self.set_meta_time("schedule_handled_until", at)
    }
}
