//! [`AnyStore`]: whichever store a URL named, behind one type.
//!
//! Invariant: every method dispatches to the wrapped store unchanged; the
//! wrapper adds no buffering, retries or error translation.

use ackline_parse::Record;

use crate::{NdjsonStore, PostgresStore, SqliteStore, StdoutStore, Store, StoreError, WriteReport};

/// One of the stores, chosen at run time by [`open`](crate::open).
#[derive(Debug)]
pub enum AnyStore {
    /// SQLite, the embedded default.
    Sqlite(SqliteStore),
    /// PostgreSQL, for scale-out.
    Postgres(PostgresStore),
    /// An NDJSON file.
    Ndjson(NdjsonStore),
    /// Standard output (at-least-once).
    Stdout(StdoutStore),
}

impl AnyStore {
    /// The SQLite store, for `ackline query`.
    #[must_use]
    pub fn as_sqlite(&self) -> Option<&SqliteStore> {
        match self {
            AnyStore::Sqlite(s) => Some(s),
            _ => None,
        }
    }
}

impl Store for AnyStore {
    fn kind(&self) -> &'static str {
        match self {
            AnyStore::Sqlite(s) => s.kind(),
            AnyStore::Postgres(s) => s.kind(),
            AnyStore::Ndjson(s) => s.kind(),
            AnyStore::Stdout(s) => s.kind(),
        }
    }

    async fn write_batch(&self, batch: &[Record]) -> Result<WriteReport, StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.write_batch(batch).await,
            AnyStore::Postgres(s) => s.write_batch(batch).await,
            AnyStore::Ndjson(s) => s.write_batch(batch).await,
            AnyStore::Stdout(s) => s.write_batch(batch).await,
        }
    }

    async fn probe(&self) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(s) => s.probe().await,
            AnyStore::Postgres(s) => s.probe().await,
            AnyStore::Ndjson(s) => s.probe().await,
            AnyStore::Stdout(s) => s.probe().await,
        }
    }
}
