//! systemd's watchdog (`WatchdogSec=`), fed only while the store answers.
//!
//! A process that is alive but whose store has stopped answering (sled 0.34 can hang under
//! load, spacejam/sled#1412; a disk can stall) sends nothing and tells nobody. So the ping
//! is not sent because the process runs, but because a round trip through the store (a
//! write and a read, taking the same locks as the store's own writes) came back within a
//! few seconds. When it does not, the pings stop, systemd restarts paperboy after
//! `WatchdogSec=`, and the at-least-once outbox resumes where the store left off.

use std::time::Duration;

use crate::store::Store;
use crate::telemetry::one_line;

/// What one look at the store found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Beat {
    /// The store answered in time: ping.
    Alive,
    /// It did not (or the last look has not come back yet): no ping.
    Withheld,
}

/// How long a store round trip may take before the ping is withheld. A flush of a large
/// batch takes well under a second; a store that takes this long is not well.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Looks at the store every `every` and reports each look to `beat`, for ever. At most one
/// look is outstanding: a store that hangs holds one blocking thread, not one per look.
pub async fn watch(store: Store, every: Duration, answer_within: Duration, beat: impl Fn(Beat)) {
    let mut outstanding: Option<tokio::task::JoinHandle<crate::store::Result<()>>> = None;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let mut look = match outstanding.take() {
            Some(still) => still,
            None => {
                let store = store.clone();
                tokio::task::spawn_blocking(move || store.ping())
            }
        };
        match tokio::time::timeout(answer_within, &mut look).await {
            Ok(Ok(Ok(()))) => beat(Beat::Alive),
            Ok(Ok(Err(e))) => {
                tracing::error!(error = %one_line(&e), "the store failed a round trip; withholding the watchdog ping");
                beat(Beat::Withheld);
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the store round trip panicked; withholding the watchdog ping");
                beat(Beat::Withheld);
            }
            Err(_) => {
                tracing::error!(
                    within_secs = answer_within.as_secs_f64(),
                    "the store did not answer; withholding the watchdog ping so that systemd restarts paperboy"
                );
                outstanding = Some(look);
                beat(Beat::Withheld);
            }
        }
    }
}

/// Under systemd with `WatchdogSec=`: feeds the watchdog while the store answers.
pub fn spawn(store: Store) {
    if let Some(every) = crate::telemetry::systemd::watchdog_interval() {
        tokio::spawn(watch(store, every, ANSWER_WITHIN.min(every), |beat| {
            if beat == Beat::Alive {
                crate::telemetry::systemd::watchdog();
            }
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EngineKind;

    /// Waits (bounded) for the next beat.
    async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Beat>) -> Beat {
        tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("the watchdog looks at the store")
            .expect("the watchdog runs")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_that_stops_answering_stops_the_pings() {
        for kind in EngineKind::ALL {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path(), kind).unwrap();
            let (tx, mut beats) = tokio::sync::mpsc::unbounded_channel();
            let watcher = tokio::spawn(watch(
                store.clone(),
                Duration::from_millis(20),
                Duration::from_millis(300),
                move |b| {
                    let _ = tx.send(b);
                },
            ));
            assert_eq!(next(&mut beats).await, Beat::Alive, "{kind}");

            // A write that never ends holds the store, as a hung engine would.
            let (release, held) = std::sync::mpsc::channel::<()>();
            let stalled = store.clone();
            let holder = std::thread::spawn(move || stalled.stall_writes(held));
            // A look that began before the stall may still come back; after the first one
            // withheld, every look is withheld for as long as the store does not answer.
            let mut first_withheld = false;
            for _ in 0..50 {
                if next(&mut beats).await == Beat::Withheld {
                    first_withheld = true;
                    break;
                }
            }
            assert!(first_withheld, "{kind}: the stall was never noticed");
            for _ in 0..3 {
                assert_eq!(next(&mut beats).await, Beat::Withheld, "{kind}");
            }

            // Answering again: the pings come back.
            release.send(()).unwrap();
            holder.join().unwrap();
            let mut alive = false;
            for _ in 0..50 {
                if next(&mut beats).await == Beat::Alive {
                    alive = true;
                    break;
                }
            }
            assert!(alive, "{kind}: no ping after the store answered again");
            watcher.abort();
        }
    }
}
