//! Idempotent stores for parsed log records: SQLite (the embedded default),
//! PostgreSQL (scale-out), NDJSON files and stdout.
//!
//! This crate knows [`Record`](ackline_parse::Record)s, never queues: the
//! worker runtime hands a batch to [`Store::write_batch`] and acks the batch's
//! deliveries only after it returns `Ok`.
//!
//! # The contract every store keeps
//! - **Idempotent by [`Record::id`](ackline_parse::Record::id)**: a record
//!   whose id is already stored (or appears earlier in the same batch) is
//!   skipped and counted in [`WriteReport::duplicates`]; so at-least-once
//!   delivery yields exactly-once content. The one exception is
//!   [`StdoutStore`], which cannot look back at what it wrote and is
//!   documented as at-least-once.
//! - **One batch, one transaction**: `write_batch` commits all of the batch's
//!   new records or none of them, and returns `Ok` only once they are durable
//!   (committed with `synchronous=FULL`, committed by PostgreSQL, or fsynced).
//! - **Errors are classified** ([`StoreError`]): `Unavailable` (retry the
//!   batch later, attempts untouched), `Rejected { index }` (dead-letter that
//!   record, nothing committed) or `Fatal` (an operator must act).
//! - **Never blocks the async runtime**: file and SQLite work runs under
//!   [`tokio::task::spawn_blocking`]; the operations must be called from
//!   within a Tokio runtime.
//!
//! With the `test-support` feature (off by default), module `test_support` adds an in-memory
//! store and a fault-injecting wrapper for tests, benchmarks and the demo.
//!
//! # Example
//! ```no_run
//! # async fn demo(batch: Vec<ackline_parse::Record>) -> Result<(), ackline_store::StoreError> {
//! use ackline_store::{Store, StoreOptions};
//! let store = ackline_store::open("sqlite:data/records.db", &StoreOptions::default()).await?;
//! let report = store.write_batch(&batch).await?;
//! println!("{} new, {} already stored", report.inserted, report.duplicates);
//! # Ok(()) }
//! ```

use std::future::Future;
use std::time::Duration;

mod any;
mod error;
mod ndjson;
mod postgres;
mod row;
mod sqlite;
mod stdout;
#[cfg(feature = "test-support")]
pub mod test_support;
mod url;

pub use any::AnyStore;
pub use error::StoreError;
pub use ndjson::{NdjsonRecovery, NdjsonStore};
pub use postgres::PostgresStore;
pub use sqlite::{Query, QueryCursor, SqliteStore};
pub use stdout::StdoutStore;
pub use url::{FORMS as URL_FORMS, StoreUrl};

/// A place records are written to, idempotently by record id.
pub trait Store: Send + Sync + 'static {
    /// A short name for logs and metrics ("sqlite", "postgres", "ndjson", "stdout").
    fn kind(&self) -> &'static str;
    /// Writes the batch in ONE transaction; records whose id is already stored are skipped
    /// (idempotent by Record::id). Returns only when the batch is durable (committed/fsynced).
    fn write_batch(
        &self,
        batch: &[ackline_parse::Record],
    ) -> impl Future<Output = Result<WriteReport, StoreError>> + Send;
    /// A cheap health check used by the circuit breaker while the store is unavailable.
    fn probe(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// What one [`Store::write_batch`] did: `inserted + duplicates == batch.len()`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Records newly stored.
    pub inserted: usize,
    /// Records skipped because their id was already stored (or came earlier in the batch).
    pub duplicates: usize,
}

/// Options for [`open`]; each store reads the ones that concern it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// The table records go to (SQLite and PostgreSQL). Letters, digits and
    /// `_`, starting with a letter or `_`, at most 48 bytes (so derived index
    /// names stay within PostgreSQL's 63). Default `ackline_records`.
    pub table: String,
    /// PostgreSQL: the most connections the pool opens. Default 4.
    pub pool_size: usize,
    /// PostgreSQL: how long to wait for a connection (TCP connect, TLS and
    /// login; also a free pooled connection) before `Unavailable`. Default 5 s.
    pub connect_timeout: Duration,
    /// PostgreSQL: how long one `write_batch` or `probe` may take before
    /// `Unavailable`. A batch that timed out may still have committed; the
    /// retry then counts its records as duplicates. Default 60 s; keep it
    /// shorter than the worker's lease (`ackline` refuses a configuration
    /// where it is not, and derives it from the lease by default).
    pub operation_timeout: Duration,
    /// SQLite: how long to wait for another process's lock before
    /// `Unavailable`. Default 5 s.
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            table: "ackline_records".to_owned(),
            pool_size: 4,
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(60),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

impl StoreOptions {
    /// Checks [`StoreOptions::table`] (it is spliced into SQL, so only a
    /// plain identifier is accepted).
    pub(crate) fn checked_table(&self, store: &'static str) -> Result<&str, StoreError> {
        let t = self.table.as_str();
        let ok = !t.is_empty()
            && t.len() <= 48
            && t.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if ok {
            Ok(t)
        } else {
            Err(StoreError::fatal(
                store,
                format!(
                    "invalid table name {t:?}: expected letters, digits and _, \
                     starting with a letter or _, at most 48 bytes"
                ),
            ))
        }
    }
}

/// Opens the store `url` names (see [`StoreUrl`] for the forms), creating or
/// migrating its schema.
///
/// # Errors
/// `Fatal` for a bad URL, bad options, a schema newer than this binary or a
/// permission problem; `Unavailable` when a PostgreSQL server cannot be
/// reached (so the caller may retry the open).
pub async fn open(url: &str, opts: &StoreOptions) -> Result<AnyStore, StoreError> {
    Ok(match StoreUrl::parse(url)? {
        StoreUrl::Sqlite(path) => AnyStore::Sqlite(SqliteStore::open(path, opts).await?),
        StoreUrl::Postgres(url) => AnyStore::Postgres(PostgresStore::connect(&url, opts).await?),
        StoreUrl::Ndjson(path) => AnyStore::Ndjson(NdjsonStore::open(path).await?),
        StoreUrl::Stdout => AnyStore::Stdout(StdoutStore::new()),
    })
}
