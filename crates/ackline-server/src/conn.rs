//! The accept loop: connection limit, slowloris defence, graceful shutdown.
//!
//! Invariants:
//! - At most `limits.max_connections` connections are served at once: the loop takes a
//!   permit before it accepts, so excess connections wait in the kernel's backlog.
//! - A connection that has not sent a request's headers within `limits.header_read_timeout`
//!   is closed (hyper's `header_read_timeout`), so slow senders cannot pin permits.
//! - On shutdown: no new connection is accepted, idle keep-alive connections close, open
//!   requests get `limits.shutdown_grace`; sessions are then dropped (releasing their
//!   deliveries) and the queues closed.
//! - The metrics-only endpoint ([`crate::serve_metrics`]) runs the same [`accept`] loop, so it
//!   has the same connection cap, header-read timeout and graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::error::ServerError;
use crate::state::AppState;

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
    let graceful = GracefulShutdown::new();
    let reaper = tokio::spawn(reap(st.clone()));
    let result = accept(
        &listener,
        router,
        limits.max_connections,
        limits.header_read_timeout,
        &graceful,
        shutdown,
    )
    .await;
    st.draining.store(true, Ordering::Relaxed);
    drop(listener);
    let started = Instant::now();
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
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

/// Accepts connections and serves `router` on each (HTTP/1.1, keep-alive) until `shutdown`
/// completes or accepting fails for good; every connection is watched by `graceful`, which
/// the caller shuts down afterwards.
pub(crate) async fn accept(
    listener: &TcpListener,
    router: Router,
    max_connections: usize,
    header_read_timeout: Duration,
    graceful: &GracefulShutdown,
    shutdown: impl Future,
) -> Result<(), ServerError> {
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return Ok(()),
            },
        };
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
        let _ = stream.set_nodelay(true);
        let svc = TowerToHyperService::new(router.clone());
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), svc);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
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
