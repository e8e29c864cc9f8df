//! The cron loop of `serve`: sleep until the next scheduled time, run that day's edition,
//! repeat, until told to stop. After downtime, the latest missed edition is caught up if it
//! is recent enough, and skipped (and logged) otherwise.
//!
//! The decisions are pure functions of a given "now", and the loop reads its "now" from a
//! clock it is given and waits with tokio's timers, so tests drive both with any clock: the
//! loop itself under tokio's paused time.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use cron::Schedule;
use tokio::sync::watch;

use crate::config::ScheduleSettings;
use crate::domain::{EditionDate, EditionDays};
use crate::edition::{self, Editions};
use crate::store::Store;
use crate::telemetry::one_line;

/// What to do at start about scheduled times that passed while paperboy was down.
#[derive(Debug, PartialEq, Eq)]
pub enum Missed {
    Nothing,
    /// Send this one now: it is within the catch-up window.
    CatchUp(DateTime<Tz>),
    /// Too long ago: skip it. `also` more before it were missed too.
    TooLate {
        latest: DateTime<Tz>,
        also: usize,
    },
}

/// The scheduled times in `(handled_until, now]`, judged against the catch-up window.
/// Only the latest can be caught up; older ones are always skipped.
pub fn missed(
    schedule: &Schedule,
    tz: Tz,
    now: DateTime<Utc>,
    handled_until: Option<DateTime<Utc>>,
    window: Duration,
) -> Missed {
    let Some(since) = handled_until else {
        // First start ever: nothing was owed before it.
        return Missed::Nothing;
    };
    let mut times = schedule
        .after(&since.with_timezone(&tz))
        .take_while(|t| t.with_timezone(&Utc) <= now)
        .take(10_000);
    let Some(first) = times.next() else {
        return Missed::Nothing;
    };
    let (latest, count) = times.fold((first, 1usize), |(_, n), t| (t, n + 1));
    if now - latest.with_timezone(&Utc) <= window && window > Duration::zero() {
        if count > 1 {
            tracing::warn!(skipped = count - 1, "older missed editions are skipped");
        }
        Missed::CatchUp(latest)
    } else {
        Missed::TooLate {
            latest,
            also: count - 1,
        }
    }
}

/// The days of the week the schedule sends on (looked at over the next four weeks).
pub fn weekdays(schedule: &Schedule, tz: Tz, now: DateTime<Utc>) -> Vec<chrono::Weekday> {
    use chrono::Datelike;
    let until = now + Duration::days(28);
    let mut days: Vec<chrono::Weekday> = schedule
        .after(&now.with_timezone(&tz))
        .take_while(|t| t.with_timezone(&Utc) <= until)
        .take(10_000)
        .map(|t| t.weekday())
        .collect();
    days.sort_by_key(|d| d.num_days_from_monday());
    days.dedup();
    days
}

/// The days the schedule sends editions on (in the next four weeks from `now`): a weekly
/// subscriber on the site's schedule must pick one of them.
pub fn edition_days(settings: &ScheduleSettings, now: DateTime<Utc>) -> EditionDays {
    EditionDays::new(weekdays(settings.cron.schedule(), settings.tz(), now))
}

/// The edition a scheduled time is for: its day in the schedule's time zone.
pub fn edition_of(t: &DateTime<Tz>) -> EditionDate {
    EditionDate::from_naive(t.date_naive())
}

/// The loop of `serve`: runs `editions` on the schedule until `stop` turns true. The store
/// keeps how far the schedule was handled, so a restart knows what it missed.
pub async fn run(
    editions: Arc<Editions>,
    store: Store,
    settings: &ScheduleSettings,
    stop: watch::Receiver<bool>,
) {
    run_on(&editions, &store, settings, Utc::now, stop).await;
}

/// What the loop sets going: in `serve` the edition runner; tests put a recorder in its
/// place to see what the loop asked for, and when.
trait Runner {
    /// The server's edition of `date`, for a scheduled time.
    async fn edition(&self, date: EditionDate);
    /// The subscribers whose own send time has come at `at`.
    async fn tick(&self, at: DateTime<Utc>);
    /// Shutdown was asked for while a run was going.
    fn is_stopping(&self) -> bool;
}

impl Runner for Arc<Editions> {
    async fn edition(&self, date: EditionDate) {
        run_edition(self, date).await;
    }

    async fn tick(&self, at: DateTime<Utc>) {
        tick(self, at).await;
    }

    fn is_stopping(&self) -> bool {
        Editions::is_stopping(self)
    }
}

/// [`run`] with the clock given: `now` is read for every decision and the waits between
/// are tokio sleeps, so tests drive the loop with tokio's paused time.
async fn run_on(
    runner: &impl Runner,
    store: &Store,
    settings: &ScheduleSettings,
    now: impl Fn() -> DateTime<Utc>,
    mut stop: watch::Receiver<bool>,
) {
    let schedule = settings.cron.schedule();
    let tz = settings.tz();
    let window = Duration::hours(settings.catch_up_hours.into());
    let handled = store.schedule_handled_until().unwrap_or(None);
    let mut last_edition = None;
    match missed(schedule, tz, now(), handled, window) {
        Missed::Nothing => {}
        Missed::CatchUp(t) => {
            tracing::info!(scheduled = %t.to_rfc3339(), "catching up the edition missed while down");
            let date = edition_of(&t);
            runner.edition(date).await;
            last_edition = Some(date);
        }
        Missed::TooLate { latest, also } => tracing::warn!(
            scheduled = %latest.to_rfc3339(),
            older_also_missed = also,
            catch_up_hours = window.num_hours(),
            "skipping the edition missed while down: too late to be news"
        ),
    }
    mark_handled(store, now());
    runner.tick(now()).await;
    let mut announced = None;
    loop {
        let at = now();
        // In the hour the clocks go back, the schedule can name a time of the first pass
        // through it, already gone: only one to come is next.
        let next = schedule
            .after(&at.with_timezone(&tz))
            .find(|t| t.with_timezone(&Utc) > at);
        if next.is_none() && announced.is_none() {
            tracing::warn!(
                "the schedule has no future times; only subscribers' own send times remain"
            );
        }
        if next != announced
            && let Some(next) = next
        {
            tracing::info!(next = %next.to_rfc3339(), "next edition scheduled");
        }
        announced = next;
        // Subscribers' own send times are looked at every quarter hour, on the quarter.
        let next_tick = next_quarter(now());
        let wake = next.map_or(next_tick, |n| n.with_timezone(&Utc).min(next_tick));
        let wait = (wake - now()).to_std().unwrap_or_default();
        // The watchdog is fed elsewhere, while the store answers (`crate::daemon::watchdog`).
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Some(next) = next.filter(|n| n.with_timezone(&Utc) <= now()) {
            let date = edition_of(&next);
            // A clock going back (DST fall-back) fires twice for one edition: once is enough.
            if last_edition == Some(date) {
                tracing::info!(edition = %date, "second scheduled time for the same edition; nothing to do");
            } else {
                runner.edition(date).await;
                last_edition = Some(date);
            }
            mark_handled(store, next.with_timezone(&Utc));
        }
        if runner.is_stopping() {
            return;
        }
        runner.tick(now()).await;
        if runner.is_stopping() {
            return;
        }
    }
}

/// The next quarter hour strictly after `t`: every time zone's hours start on one.
pub fn next_quarter(t: DateTime<Utc>) -> DateTime<Utc> {
    let quarter = 15 * 60;
    let secs = t.timestamp().div_euclid(quarter) * quarter + quarter;
    DateTime::from_timestamp(secs, 0).unwrap_or(t + Duration::minutes(15))
}

/// Sends the digests of subscribers whose own send time has come.
async fn tick(editions: &Arc<Editions>, at: DateTime<Utc>) {
    match edition::tick(editions, at).await {
        Ok(reports) => {
            for (date, report) in reports {
                tracing::info!("own send times: {}", report.summary(date));
            }
        }
        Err(e) => tracing::error!(error = %one_line(&e), "own send times: edition failed"),
    }
}

async fn run_edition(editions: &Arc<Editions>, date: EditionDate) {
    match edition::run(editions, date).await {
        Ok(report) => tracing::info!("{}", report.summary(date)),
        Err(e) => tracing::error!(edition = %date, error = %one_line(&e), "edition failed"),
    }
    crate::telemetry::systemd::status("waiting for the next edition");
}

fn mark_handled(store: &Store, at: DateTime<Utc>) {
    if let Err(e) = store.set_schedule_handled_until(at) {
        tracing::warn!(error = %one_line(&e), "could not record the schedule's progress");
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn weekdays_at_8() -> Schedule {
        Schedule::from_str("0 0 8 * * Mon-Fri").unwrap()
    }

    #[test]
    fn a_short_outage_is_caught_up_once() {
        let tz: Tz = "UTC".parse().unwrap();
        // Down from 07:00 to 09:30 on Tuesday 2025-12-09.
        let m = missed(
            &weekdays_at_8(),
            tz,
            utc("2025-12-09T09:30:00Z"),
            Some(utc("2025-12-09T07:00:00Z")),
            Duration::hours(6),
        );
        let Missed::CatchUp(t) = m else {
            panic!("{m:?}")
        };
        assert_eq!(edition_of(&t).to_string(), "2025-12-09");
        // Back up after the catch-up: handled until now, nothing more is owed.
        let m = missed(
            &weekdays_at_8(),
            tz,
            utc("2025-12-09T09:31:00Z"),
            Some(utc("2025-12-09T09:30:00Z")),
            Duration::hours(6),
        );
        assert_eq!(m, Missed::Nothing);
    }

    #[test]
    fn a_long_outage_skips_and_never_bursts() {
        let tz: Tz = "UTC".parse().unwrap();
        // Down from Monday 07:00 to Wednesday 15:00: Mon, Tue, Wed 08:00 all missed.
        let m = missed(
            &weekdays_at_8(),
            tz,
            utc("2025-12-10T15:00:00Z"),
            Some(utc("2025-12-08T07:00:00Z")),
            Duration::hours(6),
        );
        let Missed::TooLate { latest, also } = m else {
            panic!("{m:?}")
        };
        assert_eq!(edition_of(&latest).to_string(), "2025-12-10");
        assert_eq!(also, 2);
        // Within the window, only the latest is caught up; the older two are skipped.
        let m = missed(
            &weekdays_at_8(),
            tz,
            utc("2025-12-10T09:00:00Z"),
            Some(utc("2025-12-08T07:00:00Z")),
            Duration::hours(6),
        );
        let Missed::CatchUp(t) = m else {
            panic!("{m:?}")
        };
        assert_eq!(edition_of(&t).to_string(), "2025-12-10");
        // A window of 0 never catches up.
        let m = missed(
            &weekdays_at_8(),
            tz,
            utc("2025-12-10T08:00:01Z"),
            Some(utc("2025-12-10T07:00:00Z")),
            Duration::zero(),
        );
        assert!(matches!(m, Missed::TooLate { .. }));
    }

    #[test]
    fn weekly_days_must_be_days_the_site_sends_on() {
        let tz: Tz = "UTC".parse().unwrap();
        let days = weekdays(&weekdays_at_8(), tz, utc("2026-03-28T12:00:00Z"));
        assert_eq!(days.len(), 5);
        assert!(!days.contains(&chrono::Weekday::Sat));
        let days = edition_days(&ScheduleSettings::default(), utc("2026-03-28T12:00:00Z"));
        assert!(days.contains(chrono::Weekday::Fri) && !days.contains(chrono::Weekday::Sun));
    }

    #[test]
    fn ticks_fall_on_the_quarter() {
        assert_eq!(
            next_quarter(utc("2026-03-29T01:07:12Z")),
            utc("2026-03-29T01:15:00Z")
        );
        assert_eq!(
            next_quarter(utc("2026-03-29T01:15:00Z")),
            utc("2026-03-29T01:30:00Z")
        );
    }

    #[test]
    fn the_first_start_owes_nothing() {
        let tz: Tz = "UTC".parse().unwrap();
        let m = missed(
            &weekdays_at_8(),
            tz,
            utc("2025-12-09T09:00:00Z"),
            None,
            Duration::hours(6),
        );
        assert_eq!(m, Missed::Nothing);
    }

    /// In Europe/Berlin the clock goes back from 03:00 to 02:00 on 2025-10-26: a schedule at
    /// 02:30 fires twice that night, both times for the same edition.
    #[test]
    fn a_dst_fall_back_night_fires_twice_for_one_edition() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let s = Schedule::from_str("0 30 2 * * *").unwrap();
        let fires: Vec<_> = s
            .after(&utc("2025-10-25T12:00:00Z").with_timezone(&tz))
            .take(3)
            .collect();
        assert_eq!(fires[0].with_timezone(&Utc), utc("2025-10-26T00:30:00Z"));
        assert_eq!(fires[1].with_timezone(&Utc), utc("2025-10-26T01:30:00Z"));
        assert_eq!(edition_of(&fires[0]), edition_of(&fires[1]));
        assert_ne!(edition_of(&fires[1]), edition_of(&fires[2]));
        // Down across both: one catch-up, for that one edition.
        let m = missed(
            &s,
            tz,
            utc("2025-10-26T02:00:00Z"),
            Some(utc("2025-10-25T20:00:00Z")),
            Duration::hours(6),
        );
        let Missed::CatchUp(t) = m else {
            panic!("{m:?}")
        };
        assert_eq!(edition_of(&t).to_string(), "2025-10-26");
    }

    /// What the loop asked for, in order.
    #[derive(Default)]
    struct Recorder {
        editions: std::sync::Mutex<Vec<EditionDate>>,
        ticks: std::sync::Mutex<Vec<DateTime<Utc>>>,
    }

    impl Runner for Recorder {
        async fn edition(&self, date: EditionDate) {
            let mut editions = self.editions.lock().unwrap();
            assert!(editions.len() < 100, "the loop runs editions without end");
            editions.push(date);
        }

        async fn tick(&self, at: DateTime<Utc>) {
            let mut ticks = self.ticks.lock().unwrap();
            // A loop that never sleeps never lets paused time move on: fail, do not hang.
            assert!(ticks.len() < 1000, "the loop spins: {} ticks", ticks.len());
            ticks.push(at);
        }

        fn is_stopping(&self) -> bool {
            false
        }
    }

    impl Recorder {
        fn editions(&self) -> Vec<String> {
            let editions = self.editions.lock().unwrap();
            editions.iter().map(ToString::to_string).collect()
        }

        fn ticks(&self) -> Vec<DateTime<Utc>> {
            self.ticks.lock().unwrap().clone()
        }
    }

    fn settings(cron: &str, tz: &str) -> ScheduleSettings {
        ScheduleSettings {
            cron: crate::config::Cron::try_from(cron.to_string()).unwrap(),
            timezone: crate::config::TimeZone::try_from(tz.to_string()).unwrap(),
            catch_up_hours: 6,
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), crate::store::EngineKind::Sqlite).unwrap();
        (dir, store)
    }

    /// Runs the loop as `serve` would be from `from` until `until` on tokio's paused clock
    /// (which jumps from one timer to the next), then stops it; returns what it asked for.
    async fn serve(
        store: &Store,
        settings: &ScheduleSettings,
        from: &str,
        until: &str,
    ) -> Recorder {
        let (start, until) = (utc(from), utc(until));
        let origin = tokio::time::Instant::now();
        let now = move || start + Duration::from_std(origin.elapsed()).unwrap();
        let (stop_tx, stop) = watch::channel(false);
        let recorder = Recorder::default();
        let stopper = async {
            tokio::time::sleep((until - start).to_std().unwrap()).await;
            stop_tx.send(true).unwrap();
        };
        tokio::join!(run_on(&recorder, store, settings, now, stop), stopper);
        recorder
    }

    /// README: after downtime across scheduled times, the latest missed edition is sent once
    /// if paperboy is back within `catch_up_hours`; the older ones are skipped, never sent
    /// in a burst, and a restart does not send it again.
    #[tokio::test(start_paused = true)]
    async fn back_within_the_window_the_loop_catches_up_the_latest_edition_once() {
        let (_dir, store) = store();
        let weekdays = settings("0 0 8 * * Mon-Fri", "UTC");
        // Down from Monday 2025-12-08 06:00 to Wednesday 10:00: Mon, Tue and Wed 08:00 missed.
        store
            .set_schedule_handled_until(utc("2025-12-08T06:00:00Z"))
            .unwrap();
        let run = serve(
            &store,
            &weekdays,
            "2025-12-10T10:00:00Z",
            "2025-12-10T10:30:00Z",
        )
        .await;
        assert_eq!(run.editions(), ["2025-12-10"]);
        // Stopped again at 10:30 and back at 11:00: Wednesday's edition is not owed again;
        // Thursday's goes out on time.
        let run = serve(
            &store,
            &weekdays,
            "2025-12-10T11:00:00Z",
            "2025-12-11T09:00:00Z",
        )
        .await;
        assert_eq!(run.editions(), ["2025-12-11"]);
        assert_eq!(
            store.schedule_handled_until().unwrap(),
            Some(utc("2025-12-11T08:00:00Z"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn back_after_the_window_the_loop_skips_to_the_next_scheduled_time() {
        let (_dir, store) = store();
        let weekdays = settings("0 0 8 * * Mon-Fri", "UTC");
        // Back on Wednesday at 15:00: 08:00 is seven hours ago, more than the six allowed.
        store
            .set_schedule_handled_until(utc("2025-12-08T06:00:00Z"))
            .unwrap();
        let run = serve(
            &store,
            &weekdays,
            "2025-12-10T15:00:00Z",
            "2025-12-11T09:00:00Z",
        )
        .await;
        assert_eq!(run.editions(), ["2025-12-11"]);
    }

    /// In Europe/Berlin 02:30 happens twice on 2025-10-26 (the clocks go back from 03:00 to
    /// 02:00): the edition of a schedule at 02:30 goes out once, and a reader whose own hour
    /// is 02:00 is due at the first 02:00 and found done at the second.
    #[tokio::test(start_paused = true)]
    async fn on_the_fall_back_night_a_time_in_the_repeated_hour_runs_once() {
        use crate::domain::{Choices, EditionDays, Frequency, Preferences, SendAt};
        use crate::edition::due::{Occasion, due};

        let (_dir, store) = store();
        let berlin = settings("0 30 2 * * *", "Europe/Berlin");
        store
            .set_schedule_handled_until(utc("2025-10-25T20:00:00Z"))
            .unwrap();
        let run = serve(
            &store,
            &berlin,
            "2025-10-25T20:00:00Z",
            "2025-10-26T04:00:00Z",
        )
        .await;
        assert_eq!(run.editions(), ["2025-10-26"]);
        // The loop did wake for the second 02:30 (01:30 UTC), and recorded it as handled.
        assert!(run.ticks().contains(&utc("2025-10-26T01:30:00Z")));
        assert_eq!(
            store.schedule_handled_until().unwrap(),
            Some(utc("2025-10-26T01:30:00Z"))
        );

        // The reader's digests over the loop's ticks, each planned in the ledger as a run does.
        let reader = Preferences::new(
            Choices {
                frequency: Frequency::Daily,
                send_at: Some(SendAt::parse("02:00 Europe/Berlin").unwrap()),
                ..Default::default()
            },
            &EditionDays::every_day(),
        )
        .unwrap();
        let mut ledger: Vec<(DateTime<Utc>, EditionDate)> = Vec::new();
        for at in run.ticks() {
            let occasion = Occasion::Tick {
                at,
                window: Duration::hours(6),
            };
            let had =
                |a: EditionDate, b: EditionDate| ledger.iter().any(|(_, d)| a <= *d && *d <= b);
            if let Some(date) = due(&reader, &occasion, had) {
                ledger.push((at, date));
            }
        }
        assert_eq!(
            ledger,
            [(
                utc("2025-10-26T00:00:00Z"),
                EditionDate::parse("2025-10-26").unwrap()
            )]
        );
        // The second 02:00 (01:00 UTC) was looked at, and found done.
        assert!(run.ticks().contains(&utc("2025-10-26T01:00:00Z")));
    }

    /// Own send times are looked at on every quarter hour, each once; a scheduled time on a
    /// quarter wakes the loop once for both.
    #[tokio::test(start_paused = true)]
    async fn the_loop_ticks_on_every_quarter_hour() {
        let (_dir, store) = store();
        let weekdays = settings("0 0 8 * * Mon-Fri", "UTC");
        store
            .set_schedule_handled_until(utc("2025-12-09T07:00:00Z"))
            .unwrap();
        let run = serve(
            &store,
            &weekdays,
            "2025-12-09T06:52:30Z",
            "2025-12-09T08:20:00Z",
        )
        .await;
        assert_eq!(run.editions(), ["2025-12-09"]);
        let quarters = [
            "06:52:30", "07:00:00", "07:15:00", "07:30:00", "07:45:00", "08:00:00", "08:15:00",
        ]
        .map(|t| utc(&format!("2025-12-09T{t}Z")));
        // The first look is at start, wherever the clock is.
        assert_eq!(run.ticks(), quarters);
    }
}
