//! What the console asks of the process that mounts it: [`Host`], and the values it returns.
//!
//! Invariants:
//! - The console knows no queue engine, server or store: everything it shows or does goes
//!   through [`Host`], so `ackline serve` and `ackline run` share one console.
//! - [`Host::authenticate`] is the only place a token is checked; it compares secrets in
//!   constant time (the host's business) and never logs them.
//! - Every value here is plain data ([`serde::Serialize`]), the JSON the pages read.

use std::future::Future;

use ackline_broker::{BrokerError, DeadLetter, DlqSelector};
use serde::Serialize;

/// What a signed-in person may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Look: overview, dead letters, records.
    Viewer,
    /// Look, and replay or purge dead letters.
    Admin,
}

/// One queue's counts now (counters since the queue was opened).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueView {
    /// Its name.
    pub name: String,
    /// Deliverable now.
    pub ready: u64,
    /// Delivered, not settled.
    pub leased: u64,
    /// Waiting for their redelivery time.
    pub delayed: u64,
    /// Entries in the dead-letter queue.
    pub dead_letters: u64,
    /// Publishes.
    pub published: u64,
    /// Deliveries with attempt above 1.
    pub redelivered: u64,
    /// Acks.
    pub acked: u64,
    /// Nacks.
    pub nacked: u64,
    /// Moves to the dead-letter queue (rejects, and `max attempts exceeded`).
    pub dead_lettered: u64,
    /// Leases that ran out.
    pub lease_expired: u64,
    /// Dead-letter entries replayed.
    pub replayed: u64,
    /// Dead-letter entries purged.
    pub purged: u64,
}

/// A consumer (a lease-API session, or one of `run`'s workers) and its leases.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SessionView {
    /// The queue it consumes.
    pub queue: String,
    /// A short name (never a secret: a session id is cut to its first 8 characters).
    pub name: String,
    /// Deliveries it holds now.
    pub leases: u64,
    /// Since it was last heard from, ms.
    pub idle_ms: u64,
}

/// The store's state as the workers see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StoreView {
    /// What the store is (a redacted URL), or why the host cannot tell (`serve`: the
    /// workers own the store).
    pub name: String,
    /// `up`, `outage` or `unknown`.
    pub state: String,
    /// How long the outage has lasted, ms.
    pub outage_ms: Option<u64>,
    /// The outage's last error.
    pub error: Option<String>,
    /// The circuit breaker: `closed`, `open` or `unknown`.
    pub breaker: String,
}

/// A latency histogram as counts per bucket (not cumulative), the last bucket `+Inf`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HistogramView {
    /// `end_to_end` or `store_batch`.
    pub name: String,
    /// Upper bounds of the finite buckets, seconds, increasing.
    pub bounds: Vec<f64>,
    /// Observations per bucket: one per bound, then `+Inf`.
    pub buckets: Vec<u64>,
}

/// The books: what came in against where it is now, since the host started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Books {
    /// Messages published (first publishes, not replays).
    pub published: u64,
    /// Of those, stored (acked after the store's commit).
    pub stored: u64,
    /// Of those, in the dead-letter queue now.
    pub dead_lettered: u64,
    /// Of those, still pending (ready, leased or delayed).
    pub pending: u64,
    /// Purged meanwhile (shown, so the line still adds up).
    pub purged: u64,
    /// What "stored" means here: `stored` (acked after the store's commit) or `relayed`
    /// (acked after the destination broker's confirm).
    pub settled_as: String,
}

/// Everything the overview page shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Overview {
    /// `serve` or `run`.
    pub mode: String,
    /// The broker a relay forwards to (redacted), when there is one.
    pub relay: Option<String>,
    /// Per queue.
    pub queues: Vec<QueueView>,
    /// Consumers and their leases.
    pub sessions: Vec<SessionView>,
    /// The store.
    pub store: StoreView,
    /// Latency histograms (cumulative since start: the page takes differences).
    pub latency: Vec<HistogramView>,
    /// The books.
    pub books: Books,
}

/// A search of the record store (as `ackline query` takes it).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct RecordQuery {
    /// Records at or after this time (RFC 3339 or Unix ms), as `ackline query --since`.
    pub since: Option<String>,
    /// Records before this time.
    pub until: Option<String>,
    /// At least this severe (a name: `err`, `warning`, ...).
    pub severity: Option<String>,
    /// This host.
    pub host: Option<String>,
    /// This app.
    pub app: Option<String>,
    /// The message contains this text.
    pub text: Option<String>,
    /// At most this many (the console caps it).
    pub limit: Option<usize>,
}

/// One stored record, as the records page lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecordRow {
    /// The record id (the message id).
    pub id: String,
    /// Its timestamp, RFC 3339.
    pub timestamp: String,
    /// Severity name, when known.
    pub severity: Option<String>,
    /// Host.
    pub host: Option<String>,
    /// App.
    pub app: Option<String>,
    /// The message.
    pub message: String,
}

/// Why a host could not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostError {
    /// No such queue (404).
    NoQueue(String),
    /// The request is wrong (400), with why.
    Bad(String),
    /// Not available here (404: e.g. records on a host without a store).
    NotHere(String),
    /// The broker or store failed (503 when it may pass, else 500).
    Broker(BrokerError),
    /// Anything else (500).
    Failed(String),
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostError::NoQueue(q) => write!(f, "no queue named {q:?}"),
            HostError::Bad(m) | HostError::NotHere(m) | HostError::Failed(m) => f.write_str(m),
            HostError::Broker(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for HostError {}

impl From<BrokerError> for HostError {
    fn from(e: BrokerError) -> Self {
        HostError::Broker(e)
    }
}

/// The process the console runs in.
pub trait Host: Send + Sync + 'static {
    /// The role a token grants, `None` for an unknown token or one without a read scope.
    /// A host without configured tokens (loopback only) grants [`Role::Admin`] to anyone,
    /// as its API does.
    fn authenticate(&self, token: &str) -> Option<Role>;

    /// Whether the host requires tokens at all (the login page says so when not).
    fn requires_token(&self) -> bool;

    /// The overview now.
    fn overview(&self) -> impl Future<Output = Result<Overview, HostError>> + Send;

    /// Dead letters of `queue` with keys after `after`, at most `limit`.
    fn dlq_list(
        &self,
        queue: &str,
        after: Option<u64>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, HostError>> + Send;

    /// The dead letter `key` of `queue`.
    fn dlq_get(
        &self,
        queue: &str,
        key: u64,
    ) -> impl Future<Output = Result<Option<DeadLetter>, HostError>> + Send;

    /// Replays the selected entries of `queue`; how many.
    fn dlq_replay(
        &self,
        queue: &str,
        sel: DlqSelector,
    ) -> impl Future<Output = Result<usize, HostError>> + Send;

    /// Purges the selected entries of `queue`; how many.
    fn dlq_purge(
        &self,
        queue: &str,
        sel: DlqSelector,
    ) -> impl Future<Output = Result<usize, HostError>> + Send;

    /// Searches the record store; [`HostError::NotHere`] when the host has none it can read.
    fn records(
        &self,
        q: RecordQuery,
    ) -> impl Future<Output = Result<Vec<RecordRow>, HostError>> + Send {
        let _ = q;
        async {
            Err(HostError::NotHere(
                "this process has no record store to search".into(),
            ))
        }
    }
}
