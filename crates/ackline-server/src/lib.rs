//! # ackline-server: the embedded queue as a server
//!
//! [`serve`] opens the embedded queue (an [`ackline_queue::Db`] in `cfg.data_dir`) and serves,
//! on 127.0.0.1 by default:
//! - ingest: `POST /v1/logs` (NDJSON, a JSON array, or text lines), 2xx only once durable;
//! - the lease API for remote workers (the HTTP backend of the broker trait; client in
//!   `ackline-http`): sessions, long-poll receive, batched settle fenced by session and (key, attempt);
//! - admin: queues and stats, dead-letter list/show/replay/purge, `/healthz`, `/readyz`;
//! - Prometheus metrics at `/metrics`; the OpenAPI 3 document at `/v1/openapi.json`;
//! - optionally syslog over TCP (RFC 6587) and UDP ([`syslog`]) into the default queue.
//!
//! [`serve_metrics`] serves only `GET /metrics` from a caller's text producer, for processes
//! that are not the server (`ackline run`, `ackline work`) to expose their worker metrics.
//!
//! Invariants:
//! - Every 2xx to a write (ingest, publish, settle) is sent after the write is durable.
//! - Bound beyond loopback the server requires bearer tokens (checked at start).
//! - Shutdown: stop accepting, refuse new work (readiness false, 503), let open requests
//!   finish within `limits.shutdown_grace`, drop sessions (releasing their deliveries), then
//!   stop the syslog listeners (frames already read are queued first), close the queues
//!   (flush and checkpoint) before [`serve`] returns, so the data directory
//!   can be reopened at once.
//!
//! API details, auth, limits and metric names: `docs/server.md`.

pub mod auth;
mod config;
mod conn;
pub mod console;
mod error;
pub mod metrics;
pub mod metrics_endpoint;
pub mod openapi;
pub mod routes;
pub mod sessions;
pub mod slots;
pub mod state;
pub mod syslog;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::net::{TcpListener, UdpSocket};

pub use auth::{Scope, Token};
pub use config::{Limits, ServerConfig};
pub use error::{ApiError, ServerError};
pub use metrics_endpoint::{serve_metrics, serve_router};

use crate::metrics::Metrics;
use crate::sessions::Sessions;
use crate::slots::Slots;
use crate::state::{AppState, Inner, Queues};

/// A server bound to its address, not yet serving.
#[derive(Debug)]
pub struct Server {
    state: AppState,
    listener: TcpListener,
    addr: SocketAddr,
    syslog: conn::Syslog,
}

impl Server {
    /// Checks the config, opens the data directory and the default queue, binds.
    pub async fn bind(cfg: ServerConfig) -> Result<Server, ServerError> {
        cfg.validate()?;
        let dir = cfg.data_dir.clone();
        let qopts = cfg.queue_options.clone();
        let default_queue = cfg.default_queue.clone();
        let max_queues = cfg.max_queues;
        let queues = tokio::task::spawn_blocking(move || -> Result<Queues, ServerError> {
            let db = ackline_queue::Db::open(&dir)?;
            log_recovery(&db.queue(&default_queue, qopts.clone())?);
            Ok(Queues::new(db, qopts, max_queues))
        })
        .await
        .map_err(|e| ServerError::Config {
            field: "data_dir",
            reason: format!("opening task failed: {e}"),
        })??;
        let queues = Arc::new(queues);
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: cfg.listen.to_string(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: cfg.listen.to_string(),
            source,
        })?;
        let bind_err = |addr: SocketAddr| {
            move |source| ServerError::Bind {
                addr: addr.to_string(),
                source,
            }
        };
        let mut syslog = conn::Syslog::default();
        if let Some(a) = cfg.syslog_tcp {
            let l = TcpListener::bind(a).await.map_err(bind_err(a))?;
            syslog.tcp_addr = Some(l.local_addr().map_err(bind_err(a))?);
            syslog.tcp = Some(l);
        }
        let mut udp_drops = None;
        if let Some(a) = cfg.syslog_udp {
            let s = UdpSocket::bind(a).await.map_err(bind_err(a))?;
            syslog.udp_addr = Some(s.local_addr().map_err(bind_err(a))?);
            set_recv_buffer(&s, cfg.limits.syslog_udp_recv_buffer);
            udp_drops = syslog::udp::KernelDrops::of(&s);
            if udp_drops.is_none() {
                tracing::info!(
                    "syslog udp: the kernel's drop counter is not readable here; ackline_syslog_dropped_total stays 0"
                );
            }
            syslog.udp = Some(s);
        }
        let sessions = Arc::new(Sessions::default());
        let l = &cfg.limits;
        let http_slots = Slots::new(l.max_connections, l.max_connections_per_client);
        let syslog_slots = Slots::new(l.max_connections, l.max_connections_per_client);
        let readiness = state::Readiness::default();
        let metrics = Metrics::new(
            queues.clone(),
            sessions.clone(),
            vec![
                ("http", http_slots.clone()),
                ("syslog_tcp", syslog_slots.clone()),
            ],
            readiness.checks.clone(),
            udp_drops,
        );
        let state = Arc::new(Inner {
            cfg,
            queues,
            sessions,
            metrics,
            draining: AtomicBool::new(false),
            http_slots,
            syslog_slots,
            readiness,
        });
        Ok(Server {
            state,
            listener,
            addr,
            syslog,
        })
    }

    /// The bound address (with the real port when port 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The embedded queue `name` as a broker, opened (and created) if needed: how a relay
    /// in the same process consumes what the server ingests. Drop it (and every consumer
    /// made from it) before [`Server::run`]'s shutdown future completes.
    pub fn queue(&self, name: &str) -> Result<ackline_broker::embedded::EmbeddedBroker, ApiError> {
        self.state.queues.get(name)
    }

    /// The bound syslog TCP address, when enabled.
    pub fn syslog_tcp_addr(&self) -> Option<SocketAddr> {
        self.syslog.tcp_addr
    }

    /// The bound syslog UDP address, when enabled.
    pub fn syslog_udp_addr(&self) -> Option<SocketAddr> {
        self.syslog.udp_addr
    }

    /// Serves until `shutdown` completes, then shuts down gracefully.
    pub async fn run(self, shutdown: impl Future) -> Result<(), ServerError> {
        tracing::info!(addr = %self.addr, "ackline server listening");
        conn::serve(self.state, self.listener, self.syslog, shutdown).await
    }
}

/// Asks for a receive buffer of `bytes` (0: leave the default) and logs what the kernel gave.
fn set_recv_buffer(s: &UdpSocket, bytes: usize) {
    let sock = socket2::SockRef::from(s);
    if bytes > 0
        && let Err(e) = sock.set_recv_buffer_size(bytes)
    {
        tracing::warn!(error = %e, bytes, "syslog udp: could not set the receive buffer");
    }
    if let Ok(got) = sock.recv_buffer_size() {
        // Linux reports twice what is usable for data (the rest is bookkeeping), capped by
        // net.core.rmem_max.
        tracing::info!(asked = bytes, got, "syslog udp receive buffer");
    }
}

/// Runs the server until `shutdown` completes.
pub async fn serve(cfg: ServerConfig, shutdown: impl Future) -> Result<(), ServerError> {
    Server::bind(cfg).await?.run(shutdown).await
}

/// Logs what recovery found when `q` was opened: each damaged range at ERROR (with file,
/// offset, length and where its bytes were kept), each torn tail at WARN, a checkpoint that
/// could not be used at ERROR, and the messages moved to the dead-letter queue as `corrupt`.
/// The engine only reports; whoever opens a queue says it out loud.
pub fn log_recovery(q: &ackline_queue::Queue) {
    let r = q.recovery_report();
    let queue = q.name();
    for d in &r.corrupt {
        tracing::error!(queue, damage = %d, "queue data damaged");
    }
    for d in &r.truncated {
        tracing::warn!(queue, damage = %d, "torn tail cut at recovery");
    }
    if let Some(e) = &r.checkpoint_error {
        tracing::error!(queue, error = %e, previous_generation_used = r.from_previous_checkpoint, "checkpoint unusable");
    }
    if r.lost_messages > 0 {
        tracing::error!(
            queue,
            messages = r.lost_messages,
            "messages with damaged records moved to the dead-letter queue with reason {:?}",
            ackline_broker::REASON_CORRUPT
        );
    }
}
