//! The accept loop: connection slots, slowloris and keep-alive bounds, graceful shutdown.
//!
//! Invariants:
//! - Every connection holds a slot of the listener's [`Slots`] table (`limits.max_connections`,
//!   at most `limits.max_connections_per_client` from one IP address). Over the per-client
//!   cap a connection gets a 503 and is closed at once. When the table is full, the
//!   connection idle the longest (no request in progress for at least
//!   [`crate::slots::MIN_IDLE`]; a slow or silent client is idle) is asked to close, so a new
//!   client is served within about [`crate::slots::MIN_IDLE`] plus [`CLOSE_GRACE`] instead of
//!   waiting behind idle ones. One that never had a request in progress is dropped at once.
//! - A request's headers must arrive within `limits.header_read_timeout` of the connection
//!   starting to wait for them (hyper's header timer, which starts when the previous response
//!   was written), so the same bound closes a slowloris connection and an idle keep-alive one.
//! - A connection asked to close (shed, or shutdown) closes at once if it is between requests,
//!   finishes a request in progress first, and is dropped after [`CLOSE_GRACE`] if it is still
//!   open with no request in progress (a fresh connection that sent part of a head).
//! - On shutdown: no new connection is accepted, every connection is asked to close, open
//!   requests get `limits.shutdown_grace`; sessions are then dropped (releasing their
//!   deliveries) and the queues closed.
//! - The metrics-only endpoint ([`crate::serve_metrics`]) runs the same [`accept`] loop, so it
//!   has the same slot table, header-read timeout and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::ServerError;
use crate::slots::{Refusal, Slot, Slots};
use crate::state::AppState;

/// How long a connection asked to close may stay open with no request in progress.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What a connection over the per-client cap is told before it is closed.
const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 74\r\n\r\n{\"error\":\"unavailable\",\"message\":\"too many connections from this address\"}";

/// The syslog sockets, bound (or not) with the server.
#[derive(Debug, Default)]
pub(crate) struct Syslog {
    pub(crate) tcp: Option<TcpListener>,
    pub(crate) tcp_addr: Option<std::net::SocketAddr>,
    pub(crate) udp: Option<UdpSocket>,
    pub(crate) udp_addr: Option<std::net::SocketAddr>,
}

pub(crate) async fn serve(
    st: AppState,
    listener: TcpListener,
    syslog: Syslog,
    shutdown: impl Future,
) -> Result<(), ServerError> {
    let (router, _) = crate::routes::build(st.clone());
    let (syslog_stop, stop_rx) = watch::channel(false);
    let mut syslog_tasks = JoinSet::new();
    if let Some(l) = syslog.tcp {
        syslog_tasks.spawn(crate::syslog::tcp::run(st.clone(), l, stop_rx.clone()));
    }
    if let Some(s) = syslog.udp {
        syslog_tasks.spawn(crate::syslog::udp::run(st.clone(), s, stop_rx));
    }
    let limits = st.cfg.limits.clone();
    let (close, closing) = watch::channel(false);
    let reaper = tokio::spawn(reap(st.clone()));
    let result = accept(
        &listener,
        router,
        &st.http_slots,
        limits.header_read_timeout,
        &closing,
        shutdown,
    )
    .await;
    st.draining.store(true, Ordering::Relaxed);
    drop(listener);
    let started = Instant::now();
    if !drain(close, &st.http_slots, limits.shutdown_grace).await {
        tracing::warn!(
            after = ?started.elapsed(),
            "shutdown grace ran out with requests still open; closing anyway"
        );
    }
    let _ = syslog_stop.send(true);
    let drain = async { while syslog_tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.shutdown_grace, drain)
        .await
        .is_err()
    {
        tracing::warn!("syslog listeners did not stop within the shutdown grace; aborting them");
        syslog_tasks.abort_all();
    }
    reaper.abort();
    st.sessions.clear();
    let queues = st.queues.clone();
    let _ = tokio::task::spawn_blocking(move || queues.close()).await;
    tracing::info!("ackline server stopped");
    result
}

/// Asks every connection to close and waits (at most `grace`) until all have; false if some
/// were still open.
pub(crate) async fn drain(close: watch::Sender<bool>, slots: &Slots, grace: Duration) -> bool {
    let _ = close.send(true);
    let ok = tokio::time::timeout(grace, slots.drained()).await.is_ok();
    drop(close);
    ok
}

/// Accepts connections and serves `router` on each (HTTP/1.1, keep-alive) until `shutdown`
/// completes or accepting fails for good. Each connection holds a slot of `slots` and closes
/// gracefully once `closing` turns true ([`drain`]).
pub(crate) async fn accept(
    listener: &TcpListener,
    router: Router,
    slots: &Arc<Slots>,
    header_read_timeout: Duration,
    closing: &watch::Receiver<bool>,
    shutdown: impl Future,
) -> Result<(), ServerError> {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) if transient(&e) => {
                    tracing::warn!(error = %e, "accept failed; continuing");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err(ServerError::Accept(e)),
            },
        };
        let slot = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            s = slots.admit(peer.ip()) => s,
        };
        let slot = match slot {
            Ok(s) => s,
            Err(Refusal::PerClient) => {
                tracing::debug!(%peer, "connection refused: too many from this address");
                let _ = stream.try_write(TOO_MANY);
                continue;
            }
            Err(Refusal::Closed) => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            peer,
            slot,
            router.clone(),
            header_read_timeout,
            closing.clone(),
        ));
    }
}

/// Serves one connection until it ends, is shed, or shutdown closes it.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    router: Router,
    header_read_timeout: Duration,
    mut closing: watch::Receiver<bool>,
) {
    let slot = Arc::new(slot);
    let inner = TowerToHyperService::new(router);
    let tracked = slot.clone();
    let svc = hyper::service::service_fn(move |req| {
        let busy = tracked.busy();
        let fut = hyper::service::Service::call(&inner, req);
        async move {
            let r = fut.await;
            drop(busy);
            r
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc);
    let mut conn = std::pin::pin!(conn);
    let mut asked = false;
    loop {
        let cut = async {
            if asked {
                tokio::time::sleep(CLOSE_GRACE).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = slot.shed(), if !asked => {
                if slot.never_busy() {
                    // A silent or slow client that never completed a head: nothing to finish.
                    tracing::debug!(%peer, "connection table full: dropped this connection, which sent no request");
                    return;
                }
                tracing::debug!(%peer, "connection table full: closing this idle connection");
                asked = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = closing.wait_for(|c| *c), if !asked => {
                asked = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = cut => {
                if slot.is_idle() {
                    tracing::debug!(%peer, "connection asked to close had no request in progress; dropped");
                    return;
                }
            }
        }
    }
}

/// Accept errors that pass (a connection reset before accept, too many open files).
fn transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::ConnectionAborted | K::ConnectionReset | K::Interrupted | K::WouldBlock
    ) || e.raw_os_error() == Some(24)
        || e.raw_os_error() == Some(23)
}

/// Drops sessions idle past their lease.
async fn reap(st: AppState) {
    loop {
        tokio::time::sleep(st.sessions.reap_interval()).await;
        let n = st.sessions.reap(Instant::now());
        if n > 0 {
            tracing::info!(sessions = n, "dropped idle lease sessions");
        }
    }
}
