//! `serve`: the web server and the schedule in one process, stopped by one signal.
//!
//! [`Application::build`] binds the listener first, so tests can ask for port 0 and learn
//! the real one; [`Application::run_until_stopped`] takes the shutdown as a future, so tests
//! can stop it without signals.

pub mod watchdog;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::commands;
use crate::config::{ScheduleSettings, Settings, WebSettings};
use crate::edition::Editions;
use crate::parts::Parts;
use crate::source::Source;
use crate::store::Store;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::one_line;
use crate::tokens::Links;
use crate::web::notices::Notices;

pub struct Application {
    store: Store,
    editions: Arc<Editions>,
    source: Arc<Source>,
    links: Links,
    metrics: Arc<Metrics>,
    commands: Arc<commands::Context>,
    router: axum::Router,
    web: WebSettings,
    schedule: ScheduleSettings,
    data_dir: PathBuf,
    listener: TcpListener,
    addr: SocketAddr,
    /// `mail.bounce_socket`, bound.
    bounces: Option<tokio::net::UnixListener>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let parts = Parts::build(&settings)?;
        let listen = settings.web.listen;
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("web.listen: cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        // Bound before the start is reported: a socket that cannot be made is a set-up
        // error, said now rather than by every bounce the mail server keeps retrying.
        let bounces = match &settings.mail.bounce_socket {
            Some(path) => {
                Some(crate::commands::admin::bind(path, 0o666).context("mail.bounce_socket")?)
            }
            None => None,
        };
        let router = router(&parts, &settings);
        Ok(Self {
            store: parts.store,
            editions: parts.editions,
            source: parts.source,
            links: parts.links,
            metrics: parts.metrics,
            commands: parts.commands,
            router,
            web: settings.web,
            schedule: settings.schedule,
            data_dir: settings.data_dir,
            bounces,
            listener,
            addr,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The store, for tests that look at what was recorded.
    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// The edition runner, for tests that drive editions directly.
    pub fn editions(&self) -> Arc<Editions> {
        self.editions.clone()
    }

    /// The links, for tests that make tokens of their own.
    pub fn links(&self) -> Links {
        self.links.clone()
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Serves until `shutdown` completes, then stops taking requests, lets a send in flight
    /// finish and be recorded, and flushes the store.
    pub async fn run_until_stopped(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let editions = self.editions.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing the messages in flight");
            crate::telemetry::systemd::stopping();
            editions.request_stop();
            let _ = stop_tx.send(true);
        });
        let mut web_stop = stop_rx.clone();
        let web = crate::web::serve(self.listener, self.router, &self.web, async move {
            let _ = web_stop.wait_for(|s| *s).await;
        });
        tracing::info!(
            url = %local_url(self.addr),
            public_url = %self.links.base(),
            "serving the web pages"
        );
        crate::telemetry::systemd::ready();
        watchdog::spawn(self.store.clone());
        tokio::spawn(first_look(self.source.clone(), self.schedule.tz()));
        let (commands, data_dir) = (self.commands.clone(), self.data_dir.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::commands::admin::serve(commands, &data_dir).await {
                tracing::error!(error = %format!("{e:#}"), "the admin socket is not available");
            }
        });
        if let Some(listener) = self.bounces.take() {
            let commands = self.commands.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::commands::admin::serve_bounces(commands, listener).await {
                    tracing::error!(error = %format!("{e:#}"), "the bounce socket stopped");
                }
            });
        }
        let scheduler = crate::schedule::run(
            self.editions.clone(),
            self.store.clone(),
            &self.schedule,
            stop_rx,
        );
        tokio::join!(web, scheduler);
        // An edition started through the admin socket finishes its messages in flight too.
        let _no_edition_running = self.editions.between_editions().await;
        self.store.flush().await?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The web pages, served with the parts they use.
pub fn router(parts: &Parts, settings: &Settings) -> axum::Router {
    crate::web::router(crate::web::Parts {
        store: parts.store.clone(),
        editions: parts.editions.clone(),
        source: parts.source.clone(),
        links: parts.links.clone(),
        notices: Notices::new(
            parts.mailer.clone(),
            parts.links.clone(),
            parts.metrics.clone(),
            settings.mail.smtp.max_attempts,
        ),
        settings: settings.web.clone(),
        schedule: settings.schedule.clone(),
        digest: settings.digest.clone(),
        metrics: parts.metrics.clone(),
    })
}

/// Reads the page once at start, sending nothing: the subscribe page gets its sample and
/// `/healthz` learns at once whether the source is reachable.
async fn first_look(source: Arc<Source>, tz: chrono_tz::Tz) {
    let today = crate::domain::EditionDate::today_in(tz);
    match source.fetch(today).await {
        Ok(listing) => tracing::info!(papers = listing.papers.len(), "source reachable"),
        Err(e) => {
            tracing::warn!(error = %one_line(&e), "the source cannot be read right now");
        }
    }
}

/// Completes on the first SIGTERM or SIGINT; a second one ends the process at once. Every
/// recorded state change is already flushed, so nothing recorded is lost; a message in
/// flight may then go again on the next run, with its same Message-ID.
pub async fn shutdown_signal() {
    shutdown_signal_then(|| {}).await;
}

/// [`shutdown_signal`], with `at_exit` run before a second signal ends the process (the
/// demo deletes its temporary directory there).
pub async fn shutdown_signal_then(at_exit: impl FnOnce() + Send + 'static) {
    // Listening for both signals from the start: one that arrives while the first is being
    // handled is kept for the second wait, not lost between the two.
    let mut signals = StopSignals::listen();
    signals.next().await;
    tokio::spawn(async move {
        signals.next().await;
        at_exit();
        eprintln!("second signal: exiting now");
        std::process::exit(130);
    });
}

/// SIGINT (Ctrl-C) and SIGTERM (systemd, kill), as one stream. A signal that cannot be
/// listened for is never seen.
struct StopSignals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn listen() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Self {
            interrupt: signal(SignalKind::interrupt()).ok(),
            terminate: signal(SignalKind::terminate()).ok(),
        }
    }

    async fn next(&mut self) {
        async fn one(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = one(&mut self.interrupt) => {}
            _ = one(&mut self.terminate) => {}
        }
    }
}

/// A URL for the listening address that opens in a browser on this machine: a wildcard
/// address (0.0.0.0, ::) is reached through loopback.
pub fn local_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
        ip if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        ip => ip.to_string(),
    };
    format!("http://{ip}:{}/", addr.port())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_logged_url_opens_locally() {
        let url = |a: &str| super::local_url(a.parse().unwrap());
        assert_eq!(url("127.0.0.1:8080"), "http://127.0.0.1:8080/");
        assert_eq!(url("0.0.0.0:80"), "http://127.0.0.1:80/");
        assert_eq!(url("[::]:8080"), "http://[::1]:8080/");
        assert_eq!(url("[2001:db8::1]:8080"), "http://[2001:db8::1]:8080/");
    }
}
