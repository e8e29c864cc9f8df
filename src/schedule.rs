//! The cron loop of `serve`: sleep until the next scheduled time, run that day's edition,
//! repeat, until told to stop.

use std::str::FromStr;
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::watch;

use crate::app::App;
use crate::domain::EditionDate;
use crate::edition;

pub async fn run(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let schedule =
        cron::Schedule::from_str(&app.settings.schedule.cron).expect("validated at start");
    let tz = app.settings.timezone().expect("validated at start");
    loop {
        let Some(next) = schedule.upcoming(tz).next() else {
            tracing::warn!("the schedule has no future times; no editions will be sent");
            let _ = stop.wait_for(|s| *s).await;
            return;
        };
        let wait = (next.with_timezone(&Utc) - Utc::now())
            .to_std()
            .unwrap_or_default();
        tracing::info!(next = %next.to_rfc3339(), "next edition scheduled");
        let until = tokio::time::Instant::now() + wait;
        loop {
            // With WatchdogSec= set, wake up to ping; systemd restarts a loop that stops.
            let nap = crate::service::watchdog_interval()
                .map_or(until, |i| until.min(tokio::time::Instant::now() + i));
            tokio::select! {
                _ = tokio::time::sleep_until(nap) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            crate::service::watchdog();
            if tokio::time::Instant::now() >= until {
                break;
            }
        }
        // The edition is the scheduled day in the schedule's time zone, not the day the
        // timer happened to wake up on.
        let date = EditionDate::from_naive(next.date_naive());
        match edition::run(&app, date).await {
            Ok(report) => tracing::info!("{}", report.summary(date)),
            Err(e) => tracing::error!(edition = %date, error = %e, "edition failed"),
        }
        if app.is_stopping() {
            return;
        }
    }
}
