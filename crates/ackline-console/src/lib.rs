//! # ackline-console: the web console
//!
//! [`router`] is an axum [`Router`] serving the console under `/ui` (and a redirect from
//! `/`): pages to watch the pipeline (queues, rates, latency, consumers, the store, the
//! books), act on dead letters (list with filters and paging, show, replay, purge) and search
//! stored records. `ackline serve` and `ackline run` mount it; each implements [`Host`].
//!
//! Invariants:
//! - The console is a separate router, never in the API's route table: its JSON routes under
//!   `/ui/api/` serve the pages only, with a session cookie instead of a bearer token, and are
//!   not part of the OpenAPI document.
//! - Viewing needs a session of [`Role::Viewer`] or more; replay and purge need
//!   [`Role::Admin`], checked by the server whatever the page shows (see [`guard`]).
//! - Every POST is CSRF-checked and same-origin ([`guard`]); every response carries a strict
//!   Content-Security-Policy with no inline script.
//! - The pages are static files embedded in the binary ([`assets`]): no CDN, no network, no
//!   build step. They put data into the DOM with `textContent` only; payloads are also sent
//!   escaped ([`payload`]).
//! - Lists are paged on the server: a page reads at most its entries plus one (unfiltered), or
//!   scans a bounded number of entries (filtered), whatever the size of the dead-letter queue.
//! - A replay selects at most [`ConsoleConfig::replay_max`] entries and passes the replay rate
//!   limit ([`ratelimit`]) whole, or is refused (429) and replays nothing.

pub mod assets;
mod dlq;
pub mod guard;
pub mod host;
pub mod latency;
pub mod payload;
pub mod ratelimit;
mod routes;
pub mod session;

use std::sync::Arc;

use axum::Router;

pub use host::{
    Books, HistogramView, Host, HostError, Overview, QueueView, RecordQuery, RecordRow, Role,
    SessionView, StoreView,
};
pub use latency::Latency;

/// How the console behaves.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// Most sessions at once. Default 1000.
    pub max_sessions: usize,
    /// Most entries one replay may select. Default 1000.
    pub replay_max: usize,
    /// Replayed messages per second, over all sessions. Default 1000.
    pub replay_rate: u32,
    /// Mark the session cookie `Secure` (the console is reached over HTTPS, e.g. behind a
    /// TLS-terminating proxy). A request with `X-Forwarded-Proto: https` gets it anyway.
    /// Default false.
    pub secure_cookie: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            max_sessions: 1000,
            replay_max: 1000,
            replay_rate: 1000,
            secure_cookie: false,
        }
    }
}

/// What the handlers share.
#[derive(Debug)]
struct Shared<H> {
    host: Arc<H>,
    cfg: ConsoleConfig,
    sessions: session::Sessions,
    replays: ratelimit::Bucket,
}

/// The console's router over `host`: `/`, `/ui`, `/ui/`, `/ui/assets/*`, `/ui/api/*`.
pub fn router<H: Host>(host: Arc<H>, cfg: ConsoleConfig) -> Router {
    let shared = Arc::new(Shared {
        host,
        sessions: session::Sessions::new(cfg.max_sessions),
        replays: ratelimit::Bucket::new(
            cfg.replay_rate,
            u32::try_from(cfg.replay_max).unwrap_or(u32::MAX),
        ),
        cfg,
    });
    routes::build(shared)
}

/// Every path pattern the console serves (its own test checks them against the router; the
/// API's OpenAPI test never sees them).
pub const ROUTES: &[(&str, &str)] = routes::ROUTES;
