//! Sharing flushes between concurrent writers: what lets the SMTP workers record each
//! acceptance durably without a sync of their own per message.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Result, Store};

/// Group commit: each writer waits until its writes are durable, and one flush makes the
/// writes of everyone waiting at that moment durable together. With `n` writers the store
/// syncs about once per round of `n` writes instead of once per write, and no writer goes on
/// before its own write is on disk.
pub struct GroupCommit {
    store: Store,
    /// Writers that asked so far; a writer's ticket is its place in this count.
    asked: AtomicU64,
    /// Every ticket up to this one is durable.
    durable: AtomicU64,
    flushing: tokio::sync::Mutex<()>,
}

impl GroupCommit {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            asked: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            flushing: tokio::sync::Mutex::new(()),
        }
    }

    /// Returns once every write this task made before calling is durable.
    pub async fn durable(&self) -> Result<()> {
        self.wait(self.ticket()).await
    }

    /// A claim on the writes this task made so far: [`GroupCommit::wait`] with it returns
    /// once they are durable. Taking it costs nothing; a writer can go on meanwhile.
    pub fn ticket(&self) -> u64 {
        self.asked.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Returns once the writes made before `ticket` was taken are durable.
    pub async fn wait(&self, ticket: u64) -> Result<()> {
        while self.durable.load(Ordering::SeqCst) < ticket {
            let _turn = self.flushing.lock().await;
            if self.durable.load(Ordering::SeqCst) >= ticket {
                break;
            }
            // Every ticket handed out so far belongs to a write already made, so the flush
            // below covers all of them.
            let covered = self.asked.load(Ordering::SeqCst);
            self.store.flush().await?;
            self.durable.fetch_max(covered, Ordering::SeqCst);
        }
        Ok(())
    }
}
