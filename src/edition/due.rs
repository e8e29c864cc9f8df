//! Who is due for a digest, and of which edition: the server's scheduled editions for those
//! on its schedule, and each subscriber's own hour in their own time zone for the others.
//! Daily or weekly either way.
//!
//! Pure functions of a given "now" and of what the subscriber already had, so tests drive
//! them with any clock, across DST changes. "Once" does not rest on the clock: a digest is
//! one per subscriber per edition date, which the ledger enforces; here the date is chosen.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};

use crate::domain::{EditionDate, Frequency, Preferences, SendAt};

/// What a run is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Occasion {
    /// The server's edition of this date: a scheduled time, or `run-once`.
    Scheduled(EditionDate),
    /// A look at the clock at `at`: subscribers with a send time of their own whose time
    /// came at most `window` ago.
    Tick { at: DateTime<Utc>, window: Duration },
}

/// A tick is never later than this after a send time, whatever the catch-up setting.
pub const TICK_EVERY: Duration = Duration::minutes(15);

/// The edition a subscriber with these preferences is due for at this occasion, if any.
/// `had(from, to)` tells whether they were planned a digest of any edition in `[from, to]`.
pub fn due(
    prefs: &Preferences,
    occasion: &Occasion,
    had: impl Fn(EditionDate, EditionDate) -> bool,
) -> Option<EditionDate> {
    let date = match (occasion, prefs.send_at()) {
        (Occasion::Scheduled(date), None) => *date,
        (Occasion::Tick { at, window }, Some(send_at)) => slot_due(send_at, *at, *window)?,
        _ => return None,
    };
    match prefs.frequency() {
        Frequency::Daily => (!had(date, date)).then_some(date),
        // The week's digest on their day, and never two within a week (after a change of
        // day, too).
        Frequency::Weekly(day) => {
            (date.naive().weekday() == day && !had(date.minus_days(6), date)).then_some(date)
        }
    }
}

/// The local date whose send time has come at `at`, at most `window` ago (at least a
/// tick's worth): today's if its time has passed, else yesterday's.
pub fn slot_due(send_at: SendAt, at: DateTime<Utc>, window: Duration) -> Option<EditionDate> {
    let window = window.max(TICK_EVERY * 2);
    let today = at.with_timezone(&send_at.zone()).date_naive();
    [today, today.pred_opt()?].into_iter().find_map(|d| {
        let t = slot(send_at, d)?;
        (t <= at && at - t <= window).then_some(EditionDate::from_naive(d))
    })
}

/// The instant of a send time on a local date. On the night the clocks go forward an hour
/// that does not exist moves to the first one after the gap; when they go back, the first
/// of the two is used.
pub fn slot(send_at: SendAt, date: NaiveDate) -> Option<DateTime<Utc>> {
    let local = date.and_hms_opt(send_at.hour().into(), 0, 0)?;
    let tz = send_at.zone();
    (0..=8)
        .find_map(|k| {
            tz.from_local_datetime(&(local + Duration::minutes(15 * k)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Choices, EditionDays};
    use chrono::Weekday;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn date(s: &str) -> EditionDate {
        EditionDate::parse(s).unwrap()
    }

    fn prefs(frequency: Frequency, send_at: Option<&str>) -> Preferences {
        let choices = Choices {
            frequency,
            send_at: send_at.map(|s| SendAt::parse(s).unwrap()),
            ..Default::default()
        };
        Preferences::new(choices, &EditionDays::every_day()).unwrap()
    }

    fn tick(at: &str) -> Occasion {
        Occasion::Tick {
            at: utc(at),
            window: Duration::hours(6),
        }
    }

    fn never(_: EditionDate, _: EditionDate) -> bool {
        false
    }

    #[test]
    fn the_server_schedule_serves_those_without_a_time_of_their_own() {
        let daily = prefs(Frequency::Daily, None);
        let d = date("2026-03-30");
        assert_eq!(due(&daily, &Occasion::Scheduled(d), never), Some(d));
        // Once per edition.
        assert_eq!(
            due(&daily, &Occasion::Scheduled(d), |a, b| a <= d && d <= b),
            None
        );
        // Ticks are not for them.
        assert_eq!(due(&daily, &tick("2026-03-30T08:00:00Z"), never), None);
        // Nor is the schedule for those with their own time.
        let own = prefs(Frequency::Daily, Some("07:00 UTC"));
        assert_eq!(due(&own, &Occasion::Scheduled(d), never), None);
    }

    #[test]
    fn weekly_goes_out_on_its_day_once_a_week() {
        let monday = prefs(Frequency::Weekly(Weekday::Mon), None);
        let mon = date("2026-03-30");
        assert_eq!(mon.naive().weekday(), Weekday::Mon);
        assert_eq!(due(&monday, &Occasion::Scheduled(mon), never), Some(mon));
        assert_eq!(
            due(&monday, &Occasion::Scheduled(date("2026-03-31")), never),
            None
        );
        // Had one three days ago (changed their day since): not twice within a week.
        let had =
            |a: EditionDate, b: EditionDate| a <= date("2026-03-27") && date("2026-03-27") <= b;
        assert_eq!(due(&monday, &Occasion::Scheduled(mon), had), None);
        // Had one a week ago: due again.
        let had =
            |a: EditionDate, b: EditionDate| a <= date("2026-03-23") && date("2026-03-23") <= b;
        assert_eq!(due(&monday, &Occasion::Scheduled(mon), had), Some(mon));
    }

    #[test]
    fn an_own_hour_is_kept_in_its_own_zone() {
        let berlin = prefs(Frequency::Daily, Some("07:00 Europe/Berlin"));
        // 07:00 CET is 06:00 UTC in winter.
        assert_eq!(due(&berlin, &tick("2026-03-27T05:55:00Z"), never), None);
        assert_eq!(
            due(&berlin, &tick("2026-03-27T06:00:00Z"), never),
            Some(date("2026-03-27"))
        );
        // Late, within the window: still that day's; past it: skipped.
        assert_eq!(
            due(&berlin, &tick("2026-03-27T11:30:00Z"), never),
            Some(date("2026-03-27"))
        );
        assert_eq!(due(&berlin, &tick("2026-03-27T12:30:00Z"), never), None);
        // Tokyo's 08:00 is 23:00 UTC the day before: the edition is Tokyo's date.
        let tokyo = prefs(Frequency::Daily, Some("08:00 Asia/Tokyo"));
        assert_eq!(
            due(&tokyo, &tick("2026-03-26T23:05:00Z"), never),
            Some(date("2026-03-27"))
        );
    }

    /// Europe/Berlin goes to summer time on 2026-03-29 (02:00 → 03:00) and back on
    /// 2026-10-25 (03:00 → 02:00).
    #[test]
    fn daylight_saving_changes_keep_the_local_hour_once() {
        let seven = SendAt::parse("07:00 Europe/Berlin").unwrap();
        assert_eq!(
            slot(seven, date("2026-03-28").naive()),
            Some(utc("2026-03-28T06:00:00Z"))
        );
        assert_eq!(
            slot(seven, date("2026-03-29").naive()),
            Some(utc("2026-03-29T05:00:00Z"))
        );
        assert_eq!(
            slot(seven, date("2026-10-25").naive()),
            Some(utc("2026-10-25T06:00:00Z"))
        );
        // An hour that does not exist that night moves past the gap.
        let half_two = SendAt::parse("02:00 Europe/Berlin").unwrap();
        assert_eq!(
            slot(half_two, date("2026-03-29").naive()),
            Some(utc("2026-03-29T01:00:00Z"))
        );
        // An hour that happens twice is the first one; the second finds it done.
        assert_eq!(
            slot(half_two, date("2026-10-25").naive()),
            Some(utc("2026-10-25T00:00:00Z"))
        );
        let p = prefs(Frequency::Daily, Some("02:00 Europe/Berlin"));
        let first = due(&p, &tick("2026-10-25T00:05:00Z"), never);
        assert_eq!(first, Some(date("2026-10-25")));
        let done =
            |a: EditionDate, b: EditionDate| a <= date("2026-10-25") && date("2026-10-25") <= b;
        assert_eq!(due(&p, &tick("2026-10-25T01:05:00Z"), done), None);

        // Every quarter hour through both change weeks: one slot per local day, each at
        // 07:00 on the wall clock.
        for (from, days) in [("2026-03-26T00:00:00Z", 6), ("2026-10-22T00:00:00Z", 6)] {
            let p = prefs(Frequency::Daily, Some("07:00 Europe/Berlin"));
            let mut got: Vec<(EditionDate, DateTime<Utc>)> = Vec::new();
            let start = utc(from);
            for q in 0..(days * 24 * 4) {
                let at = start + Duration::minutes(15 * q);
                let had =
                    |a: EditionDate, b: EditionDate| got.iter().any(|(d, _)| a <= *d && *d <= b);
                if let Some(d) = due(
                    &p,
                    &Occasion::Tick {
                        at,
                        window: Duration::hours(6),
                    },
                    had,
                ) {
                    got.push((d, at));
                }
            }
            assert_eq!(got.len(), days as usize, "{got:?}");
            for (d, at) in &got {
                let local = at.with_timezone(&chrono_tz::Europe::Berlin);
                assert_eq!(local.date_naive(), d.naive());
                assert_eq!(local.format("%H:%M").to_string(), "07:00");
            }
        }
    }
}
