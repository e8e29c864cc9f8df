//! The cron loop of `serve`: sleep until the next scheduled time, run that day's edition,
//! repeat, until told to stop. After downtime, the latest missed edition is caught up if it
//! is recent enough, and skipped (and logged) otherwise.
//!
//! The decisions are pure functions of a given "now", so tests drive them with any clock.

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
    mut stop: watch::Receiver<bool>,
) {
    let schedule = settings.cron.schedule();
    let tz = settings.tz();
    let window = Duration::hours(settings.catch_up_hours.into());
    let handled = store.schedule_handled_until().unwrap_or(None);
    let mut last_edition = None;
    match missed(schedule, tz, Utc::now(), handled, window) {
        Missed::Nothing => {}
        Missed::CatchUp(t) => {
            tracing::info!(scheduled = %t.to_rfc3339(), "catching up the edition missed while down");
            last_edition = Some(run_edition(&editions, edition_of(&t)).await);
        }
        Missed::TooLate { latest, also } => tracing::warn!(
            scheduled = %latest.to_rfc3339(),
            older_also_missed = also,
            catch_up_hours = window.num_hours(),
            "skipping the edition missed while down: too late to be news"
        ),
    }
    mark_handled(&store, Utc::now());
    tick(&editions, Utc::now()).await;
    let mut announced = None;
    loop {
        let next = schedule.upcoming(tz).next();
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
        let next_tick = next_quarter(Utc::now());
        let wake = next.map_or(next_tick, |n| n.with_timezone(&Utc).min(next_tick));
        let wait = (wake - Utc::now()).to_std().unwrap_or_default();
        // The watchdog is fed elsewhere, while the store answers (`crate::daemon::watchdog`).
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Some(next) = next.filter(|n| n.with_timezone(&Utc) <= Utc::now()) {
            let date = edition_of(&next);
            // A clock going back (DST fall-back) fires twice for one edition: once is enough.
            if last_edition == Some(date) {
                tracing::info!(edition = %date, "second scheduled time for the same edition; nothing to do");
            } else {
                last_edition = Some(run_edition(&editions, date).await);
            }
            mark_handled(&store, next.with_timezone(&Utc));
        }
        if editions.is_stopping() {
            return;
        }
        tick(&editions, Utc::now()).await;
        if editions.is_stopping() {
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

async fn run_edition(editions: &Arc<Editions>, date: EditionDate) -> EditionDate {
    match edition::run(editions, date).await {
        Ok(report) => tracing::info!("{}", report.summary(date)),
        Err(e) => tracing::error!(edition = %date, error = %one_line(&e), "edition failed"),
    }
    crate::telemetry::systemd::status("waiting for the next edition");
    date
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
}
