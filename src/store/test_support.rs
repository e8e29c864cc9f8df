//! What the store's tests share: records to store, and questions about a store that only
//! tests ask.

use std::collections::HashSet;

use chrono::Utc;

use super::{Delivery, DeliveryState, Result, Store};
use crate::domain::{
    EditionDate, Paper, PaperId, Preferences, Subscriber, SubscriberEmail, SubscriberId,
};

pub(super) fn paper(id: &str, upvotes: u32) -> Paper {
    Paper::new(PaperId::parse(id).unwrap(), format!("Paper {id}"), upvotes)
}

pub(super) fn date(s: &str) -> EditionDate {
    EditionDate::parse(s).unwrap()
}

pub(super) fn subscriber(email: &str) -> Subscriber {
    Subscriber::new(
        SubscriberEmail::parse(email).unwrap(),
        Preferences::default(),
        true,
    )
}

pub(super) fn delivery(d: EditionDate, s: &Subscriber, papers: &[&str]) -> Delivery {
    Delivery {
        date: d,
        subscriber: s.id,
        papers: papers.iter().map(|p| PaperId::parse(p).unwrap()).collect(),
        message_id: "<x@y>".into(),
        state: DeliveryState::Pending,
        attempts: 0,
        last_error: None,
        updated_at: Utc::now(),
        created_at: Some(Utc::now()),
        late: Vec::new(),
    }
}

impl Store {
    /// Which of these papers this subscriber has been sent or has a delivery planned with.
    pub(super) fn sent_among(
        &self,
        subscriber: SubscriberId,
        papers: &[PaperId],
    ) -> Result<HashSet<PaperId>> {
        let page = self.page_index(papers)?;
        Ok(self
            .sent_before(subscriber)?
            .among(&page)
            .into_keys()
            .collect())
    }

    pub(super) fn has_edition(&self, subscriber: SubscriberId, date: EditionDate) -> Result<bool> {
        Ok(self.sent_before(subscriber)?.has_edition(date))
    }

    /// Plans one delivery through a planner of its own; whether it was planned.
    pub(super) fn plan_one(&self, d: &Delivery) -> Result<bool> {
        let mut planner = self.planner(d.date)?;
        planner.plan(d.clone(), &[])?;
        Ok(planner.finish()? == 1)
    }
}

pub(super) fn sent(store: &Store, s: &Subscriber, ids: &[&str]) -> HashSet<PaperId> {
    let ids: Vec<PaperId> = ids.iter().map(|p| PaperId::parse(p).unwrap()).collect();
    store.sent_among(s.id, &ids).unwrap()
}
