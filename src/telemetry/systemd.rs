//! Telling systemd how the daemon is doing (`Type=notify`): ready, status lines while a send
//! runs, stopping, and watchdog pings. Without `$NOTIFY_SOCKET` every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::debug!(error = %e, "could not notify systemd");
    }
}

/// Config valid, store open, listener bound.
pub fn ready() {
    send(&[
        NotifyState::Ready,
        NotifyState::Status("waiting for the next edition"),
    ]);
}

pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to ping when `WatchdogSec=` is set: half the timeout, as systemd advises.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}
