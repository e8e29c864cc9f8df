//! The HTTP server loop, in place of `axum::serve`, for the limits a public listener needs
//! and that one cannot set: a connection that sends nothing, or half a request, is closed
//! after `web.idle_timeout_secs` (hyper's header-read timeout, which also runs while a
//! kept-alive connection waits for its next request); a request whose body does not arrive
//! in that time gets 408; at most `web.max_connections` are open at once, so a flood runs
//! into the cap rather than the file-descriptor limit; and on stop, idle connections close
//! at once and a request in progress gets [`STOP_GRACE`] to finish, so no client can hold
//! the exit.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower_service::Service;

use crate::config::WebSettings;

/// How long a request in progress at stop may take to finish: a page takes milliseconds.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` until `stop` completes, then lets requests in progress
/// finish (within [`STOP_GRACE`]) and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: &WebSettings,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let idle_timeout = Duration::from_secs(settings.idle_timeout_secs.into());
    let max_connections = settings.max_connections;
    let slots = Arc::new(Semaphore::new(max_connections as usize));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        stop.await;
        let _ = stop_tx.send(true);
    });
    let mut stopping = stop_rx.clone();
    loop {
        // Wait for a free slot before accepting: past the cap, clients queue in the
        // kernel's backlog instead of costing a file descriptor each.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = stopped(&mut stopping) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it was taken: wait a
                    // little rather than spin.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped(&mut stopping) => break,
        };
        let router = router.clone();
        let stop_rx = stop_rx.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, router, idle_timeout, stop_rx).await;
            drop(slot);
        });
    }
    drop(listener);
    // Every connection gives its slot back when it ends, each within STOP_GRACE of the stop.
    let grace = STOP_GRACE + Duration::from_secs(1);
    if tokio::time::timeout(grace, slots.acquire_many(max_connections))
        .await
        .is_err()
    {
        tracing::warn!("connections still open at stop were dropped");
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    idle_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    // Requests being handled on this connection: at stop, only those are waited for.
    let busy = Arc::new(AtomicUsize::new(0));
    let handling = busy.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let mut router = router.clone();
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        let handling = handling.clone();
        handling.fetch_add(1, Ordering::SeqCst);
        async move {
            let _done = Done(handling);
            let response = match tokio::time::timeout(idle_timeout, router.call(request)).await {
                Ok(response) => response.unwrap_or_else(|e: Infallible| match e {}),
                // The body did not arrive in time.
                Err(_) => StatusCode::REQUEST_TIMEOUT.into_response(),
            };
            Ok::<Response, Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(idle_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = stopped(&mut stop) => {}
    }
    // Stopping: a request being handled gets to finish, but only for so long; a connection
    // that is idle or still sending its request line and headers is closed (after a
    // moment for a response already on its way out).
    connection.as_mut().graceful_shutdown();
    let grace = if busy.load(Ordering::SeqCst) > 0 {
        STOP_GRACE
    } else {
        Duration::from_millis(200)
    };
    let _ = tokio::time::timeout(grace, connection).await;
}

/// Counts a request as handled when its future ends, however it ends.
struct Done(Arc<AtomicUsize>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Completes once the stop was asked for (its guard dropped here: it must not be held
/// across an await of the caller's).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
