//! `serve`: the web server and the schedule in one process, stopped by one signal.
//!
//! [`Application::build`] binds the listener first, so tests can ask for port 0 and learn
//! the real one; [`Application::run_until_stopped`] takes the shutdown as a future, so tests
//! can stop it without signals.

pub mod watchdog;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::App;
use crate::config::Settings;

pub struct Application {
    app: Arc<App>,
    listener: TcpListener,
    addr: SocketAddr,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let app = Arc::new(App::open(settings)?);
        let listen = app.settings.web.listen.clone();
        let listener = TcpListener::bind(&listen)
            .await
            .with_context(|| format!("web.listen: cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        Ok(Self {
            app,
            listener,
            addr,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The opened application, for tests that drive editions directly.
    pub fn app(&self) -> Arc<App> {
        self.app.clone()
    }

    /// Serves until `shutdown` completes, then stops taking requests, lets a send in flight
    /// finish and be recorded, and flushes the store.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let app = self.app.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing the messages in flight");
            crate::telemetry::systemd::stopping();
            app.request_stop();
            let _ = stop_tx.send(true);
        });
        let router = crate::web::router(self.app.clone());
        let mut web_stop = stop_rx.clone();
        let web = axum::serve(
            self.listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = web_stop.wait_for(|s| *s).await;
        });
        tracing::info!(addr = %self.addr, "serving");
        crate::telemetry::systemd::ready();
        crate::daemon::watchdog::spawn(self.app.store.clone());
        tokio::spawn(first_look(self.app.clone()));
        let admin_app = self.app.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::commands::admin::serve(admin_app).await {
                tracing::error!(error = %format!("{e:#}"), "the admin socket is not available");
            }
        });
        let scheduler = crate::schedule::run(self.app.clone(), stop_rx);
        let (web, ()) = tokio::join!(async { web.await }, scheduler);
        web.context("the web server failed")?;
        // An edition started through the admin socket finishes its messages in flight too.
        let _no_edition_running = self.app.edition_lock.lock().await;
        self.app.store.flush().await?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Reads the page once at start, sending nothing: the subscribe page gets its sample and
/// `/healthz` learns at once whether the source is reachable.
async fn first_look(app: Arc<App>) {
    let tz = app.settings.timezone().expect("validated at start");
    let today = crate::domain::EditionDate::today_in(tz);
    match app.fetch(today).await {
        Ok(listing) => tracing::info!(papers = listing.papers.len(), "source reachable"),
        Err(e) => tracing::warn!(error = %e, "the source cannot be read right now"),
    }
}

/// Completes on the first SIGTERM or SIGINT; a second one ends the process at once. Every
/// recorded state change is already flushed, so nothing recorded is lost; a message in
/// flight may then go again on the next run, with its same Message-ID.
pub async fn shutdown_signal() {
    one_signal().await;
    tokio::spawn(async {
        one_signal().await;
        eprintln!("second signal: exiting now");
        std::process::exit(130);
    });
}

async fn one_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
