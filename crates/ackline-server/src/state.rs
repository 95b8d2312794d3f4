//! The shared state of one server: the open data directory, its queues, the sessions, the
//! metrics and the configuration.
//!
//! Invariants: a queue is opened once (the `Db` caches it) and always with the server's queue
//! options; only valid queue names reach the `Db`; a queue is created only while the data
//! directory holds fewer than `max_queues` (checked under the `Db` lock).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ackline_broker::embedded::EmbeddedBroker;
use ackline_queue::Db;
use parking_lot::Mutex;

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::sessions::Sessions;
use crate::slots::Slots;

/// The open queues of the data directory.
#[derive(Debug)]
pub struct Queues {
    db: Mutex<Option<Db>>,
    open: Mutex<BTreeMap<String, EmbeddedBroker>>,
    /// Per queue, what it held when this server opened it (pending, dead letters): the
    /// console's books start from there.
    at_open: Mutex<BTreeMap<String, (u64, u64)>>,
    opts: ackline_queue::QueueOptions,
    max: usize,
}

impl Queues {
    pub(crate) fn new(db: Db, opts: ackline_queue::QueueOptions, max: usize) -> Self {
        Queues {
            db: Mutex::new(Some(db)),
            open: Mutex::new(BTreeMap::new()),
            at_open: Mutex::new(BTreeMap::new()),
            opts,
            max,
        }
    }

    /// Whether the queue `name` exists (open, or on disk).
    pub fn exists(&self, name: &str) -> bool {
        self.open.lock().contains_key(name) || self.names().iter().any(|n| n == name)
    }

    /// The queue `name`, opening it if needed and creating it if it does not exist and the
    /// data directory has fewer than the maximum number of queues (403 otherwise). Who may
    /// create a queue is the router's business (see `routes::Table`).
    pub fn get(&self, name: &str) -> Result<EmbeddedBroker, ApiError> {
        if let Some(b) = self.open.lock().get(name) {
            return Ok(b.clone());
        }
        if !ackline_queue::valid_queue_name(name) {
            return Err(ApiError::bad_request(format!(
                "invalid queue name {name:?}: 1 to 128 of A-Z a-z 0-9 . _ -"
            )));
        }
        let db = self.db.lock();
        let Some(db) = db.as_ref() else {
            return Err(ApiError::unavailable("the server is shutting down"));
        };
        // Counted under the `db` lock, so two creations cannot both pass the limit.
        let mut names: Vec<String> = db.queue_names().unwrap_or_default();
        names.extend(self.open.lock().keys().cloned());
        names.sort();
        names.dedup();
        if !names.iter().any(|n| n == name) && names.len() >= self.max {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "queue {name:?} does not exist and the server has its maximum of {} queues (max_queues)",
                    self.max
                ),
            ));
        }
        let q = db
            .queue(name, self.opts.clone())
            .map_err(|e| ApiError::unavailable(format!("opening queue {name}: {e}")))?;
        crate::log_recovery(&q);
        let s = q.stats();
        self.at_open
            .lock()
            .insert(name.to_string(), (s.pending, s.dead_letters));
        let b = EmbeddedBroker::new(q);
        self.open.lock().insert(name.to_string(), b.clone());
        Ok(b)
    }

    /// The queue `name` if it exists on disk or is open (never creates one).
    pub fn existing(&self, name: &str) -> Result<EmbeddedBroker, ApiError> {
        if self.exists(name) {
            return self.get(name);
        }
        Err(ApiError::not_found(format!("no queue named {name:?}")))
    }

    /// Names of the queues on disk and open.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.open.lock().keys().cloned().collect();
        if let Some(db) = self.db.lock().as_ref()
            && let Ok(on_disk) = db.queue_names()
        {
            names.extend(on_disk);
        }
        names.sort();
        names.dedup();
        names
    }

    /// The queues open now.
    pub fn open_queues(&self) -> Vec<(String, EmbeddedBroker)> {
        self.open
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// What queue `name` held when it was opened: (pending, dead letters).
    pub fn at_open(&self, name: &str) -> (u64, u64) {
        self.at_open.lock().get(name).copied().unwrap_or_default()
    }

    /// Closes every queue (flush and checkpoint) and the data directory.
    pub fn close(&self) {
        self.open.lock().clear();
        if let Some(db) = self.db.lock().take() {
            db.close();
        }
    }
}

/// Everything a handler needs.
#[derive(Debug)]
pub struct Inner {
    /// The configuration.
    pub cfg: ServerConfig,
    /// The queues.
    pub queues: Arc<Queues>,
    /// Lease sessions.
    pub sessions: Arc<Sessions>,
    /// Metrics.
    pub metrics: Metrics,
    /// Set when shutdown began (readiness turns false).
    pub draining: AtomicBool,
    /// The HTTP listener's connection table.
    pub http_slots: Arc<Slots>,
    /// The syslog TCP listener's connection table.
    pub syslog_slots: Arc<Slots>,
    /// `/readyz`'s last check.
    pub readiness: Readiness,
}

/// The last readiness check (when, and its failure if it failed), shared by all `/readyz`
/// requests so that at most one check runs per `limits.readiness_interval`.
#[derive(Debug, Default)]
pub struct Readiness {
    /// Held while a check runs, so concurrent requests wait for it instead of starting theirs.
    pub checking: tokio::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>,
    /// Checks run since start (`ackline_readiness_checks_total`).
    pub checks: Arc<std::sync::atomic::AtomicU64>,
}

impl Inner {
    /// Whether shutdown began.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// The handlers' state.
pub type AppState = Arc<Inner>;
