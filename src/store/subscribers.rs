//! The subscribers: by address (`subscribers`) and by id (`subscriber_ids`), and removing
//! one with everything recorded about them.
//!
//! A known subscriber's record is only ever changed by reading it in the transaction that
//! writes it ([`Store::change_subscriber`], [`Store::update_subscriber_by_id`]): the web
//! pages, the bounce intake, the send and the commands all change records while the others
//! run, and a record read earlier and written back whole would undo what they did meanwhile.

use super::codec::{decode, encode};
use super::{DELIVERIES, LEDGER, Result, SUBSCRIBER_IDS, SUBSCRIBERS, Store, StoreError};
use crate::domain::{Status, Subscriber, SubscriberEmail, SubscriberId};

impl Store {
    /// Adds a new subscriber; an address that is already known is an error and changes nothing.
    pub fn add_subscriber(&self, s: &Subscriber) -> Result<()> {
        self.db.transaction(|tx| {
            let email = s.email.as_str().as_bytes();
            if tx.get(SUBSCRIBERS, email)?.is_some() {
                return Err(StoreError::Duplicate(s.email.clone()));
            }
            tx.put(SUBSCRIBERS, email, &encode(s))?;
            tx.put(SUBSCRIBER_IDS, &s.id.to_bytes(), email)
        })
    }

    /// Reads the subscriber at `email` (`None` for an address not known) and writes what
    /// `change` makes of them, in one transaction, so that no other write falls between: a
    /// bounce or a send's outcome recorded meanwhile is not undone. When `change` refuses
    /// (`Err`), nothing is written. It may run more than once (see
    /// [`super::engine::Db::transaction`]), and must keep the address.
    ///
    /// The record and its id are written alike for a new address and a known one: the
    /// subscribe form answers after this, and its answer must take as long for either.
    pub fn change_subscriber<T, E>(
        &self,
        email: &SubscriberEmail,
        change: impl Fn(Option<Subscriber>) -> std::result::Result<(Subscriber, T), E>,
    ) -> Result<std::result::Result<T, E>> {
        let key = email.as_str().as_bytes();
        self.db.transaction(|tx| {
            let current = tx
                .get(SUBSCRIBERS, key)?
                .map(|v| decode::<Subscriber>("subscribers", &v))
                .transpose()?;
            Ok(match change(current) {
                Ok((s, out)) => {
                    debug_assert_eq!(&s.email, email, "a change keeps the address");
                    tx.put(SUBSCRIBERS, key, &encode(&s))?;
                    tx.put(SUBSCRIBER_IDS, &s.id.to_bytes(), key)?;
                    Ok(out)
                }
                Err(e) => Err(e),
            })
        })
    }

    pub fn subscriber(&self, email: &SubscriberEmail) -> Result<Option<Subscriber>> {
        self.db
            .get(SUBSCRIBERS, email.as_str().as_bytes())?
            .map(|v| decode("subscribers", &v))
            .transpose()
    }

    pub fn subscriber_by_id(&self, id: SubscriberId) -> Result<Option<Subscriber>> {
        let Some(email) = self.db.get(SUBSCRIBER_IDS, &id.to_bytes())? else {
            return Ok(None);
        };
        self.db
            .get(SUBSCRIBERS, &email)?
            .map(|v| decode("subscribers", &v))
            .transpose()
    }

    /// Reads the subscriber with `id` and writes what `change` makes of them, in one
    /// transaction, so that no other write falls between. `change` is given `None` for an
    /// id with no subscriber; when it refuses (`Err`), nothing is written. It may run more
    /// than once (see [`super::engine::Db::transaction`]).
    pub fn update_subscriber_by_id<T, E>(
        &self,
        id: SubscriberId,
        change: impl Fn(Option<Subscriber>) -> std::result::Result<(Subscriber, T), E>,
    ) -> Result<std::result::Result<T, E>> {
        self.db.transaction(|tx| {
            let current = match tx.get(SUBSCRIBER_IDS, &id.to_bytes())? {
                Some(email) => tx
                    .get(SUBSCRIBERS, &email)?
                    .map(|v| decode::<Subscriber>("subscribers", &v))
                    .transpose()?,
                None => None,
            };
            Ok(match change(current) {
                Ok((s, out)) => {
                    tx.put(SUBSCRIBERS, s.email.as_str().as_bytes(), &encode(&s))?;
                    Ok(out)
                }
                Err(e) => Err(e),
            })
        })
    }

    /// Every subscriber, in address order.
    pub fn subscribers(&self) -> Result<Vec<Subscriber>> {
        self.db
            .iter(SUBSCRIBERS)
            .map(|e| decode("subscribers", &e?.1))
            .collect()
    }

    /// Every subscriber, in the order of their ids, read a few hundred at a time: what
    /// planning walks. Deliveries and ledgers are keyed by id, so planning in id order
    /// writes them in key order: each batch fills a few pages instead of touching a
    /// different page for every subscriber.
    pub fn subscribers_by_id(&self) -> impl Iterator<Item = Result<Subscriber>> + '_ {
        self.db.iter(SUBSCRIBER_IDS).filter_map(move |e| {
            let (_, email) = match e {
                Ok(entry) => entry,
                Err(e) => return Some(Err(e)),
            };
            // Removed between the two reads: skipped.
            self.db
                .get(SUBSCRIBERS, &email)
                .transpose()
                .map(|v| v.and_then(|v| decode("subscribers", &v)))
        })
    }

    /// Deletes a subscriber and everything recorded about them: their ledger and their
    /// deliveries. Nothing of the address is left in the store.
    pub fn remove_subscriber(&self, email: &SubscriberEmail) -> Result<Subscriber> {
        let s = self
            .subscriber(email)?
            .ok_or_else(|| StoreError::Unknown(email.clone()))?;
        let id = s.id.to_bytes();
        let mut deliveries = Vec::new();
        for item in self.db.iter(DELIVERIES) {
            let (key, _) = item?;
            if key.len() == 12 && key[4..] == id {
                deliveries.push(key);
            }
        }
        self.db.transaction(|tx| {
            for key in &deliveries {
                tx.remove(DELIVERIES, key)?;
            }
            tx.remove(LEDGER, &id)?;
            tx.remove(SUBSCRIBER_IDS, &id)?;
            tx.remove(SUBSCRIBERS, email.as_str().as_bytes())?;
            Ok(())
        })?;
        Ok(s)
    }

    /// Subscriber counts by status, for metrics.
    pub fn count_by_status(&self) -> Result<Vec<(&'static str, usize)>> {
        let mut counts = [0usize; 4];
        let all = [
            Status::Pending,
            Status::Active,
            Status::Unsubscribed,
            Status::Bounced,
        ];
        for s in self.subscribers()? {
            counts[all
                .iter()
                .position(|x| *x == s.status)
                .expect("every status")] += 1;
        }
        Ok(all.iter().map(|s| s.as_str()).zip(counts).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EngineKind;
    use crate::store::test_support::{date, delivery, sent, subscriber};

    #[test]
    fn subscribers_are_unique_and_removable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), EngineKind::Sled).unwrap();
        let s = subscriber("ann@example.org");
        store.add_subscriber(&s).unwrap();
        assert!(matches!(
            store.add_subscriber(&subscriber("ANN@example.org")),
            Err(StoreError::Duplicate(_))
        ));
        assert_eq!(
            store.subscriber_by_id(s.id).unwrap().unwrap().email,
            s.email
        );
        // A change sees the record as stored, and a refused change writes nothing.
        let failures = store
            .change_subscriber(&s.email, |current| {
                let mut current = current.expect("known");
                current.permanent_failures += 1;
                Ok::<_, ()>((current.clone(), current.permanent_failures))
            })
            .unwrap();
        assert_eq!(failures, Ok(s.permanent_failures + 1));
        let bob = subscriber("bob@example.org");
        let refused = store
            .change_subscriber(&bob.email, |current| match current {
                None => Err("unknown"),
                Some(s) => Ok((s, ())),
            })
            .unwrap();
        assert_eq!(refused, Err("unknown"));
        assert!(store.subscriber(&bob.email).unwrap().is_none());
        let d = date("2025-12-08");
        assert!(store.plan_one(&delivery(d, &s, &["2501.00001"])).unwrap());
        store.remove_subscriber(&s.email).unwrap();
        assert!(store.subscriber(&s.email).unwrap().is_none());
        assert!(store.subscriber_by_id(s.id).unwrap().is_none());
        assert!(sent(&store, &s, &["2501.00001"]).is_empty());
        assert!(store.deliveries(d).unwrap().is_empty());
        assert!(matches!(
            store.remove_subscriber(&s.email),
            Err(StoreError::Unknown(_))
        ));
    }
}
