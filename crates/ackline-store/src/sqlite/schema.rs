//! The SQLite schema, its version and its migrations.
//!
//! Invariants:
//! - The version of each records table is a row of `ackline_schema`
//!   (`table_name`, `version`); a table is created only together with its
//!   version row, in one transaction.
//! - [`migrate`] runs in one `BEGIN IMMEDIATE` transaction: concurrent
//!   openers (other processes) see the old schema or the new one, never half.
//! - A version newer than [`CURRENT`] is `Fatal` (this binary would misread
//!   it); a table of that name without a version row is `Fatal` (not ours).
//!
//! Versions:
//! - 1: the first layout (no `parse_error` column, no `app` index).
//! - 2: adds `parse_error` and the `(app, ts_ms)` index.
//! - 3: drops the `(host, ts_ms)`, `(severity, ts_ms)` and
//!   `(app, ts_ms)` indexes. Every write paid for them (three more B-tree
//!   inserts per record: the store inserted 1.7× faster without them), and
//!   no query needs them: every [`super::Query`] is "oldest first, up to a
//!   limit", which walks the `(ts_ms, ts_nanos, id)` index in order and
//!   stops at the limit, filtering host, app and severity on the way (with
//!   `since`/`until` narrowing the walk). An equality index could only help a
//!   rare host or app, and for a common one it made SQLite sort every
//!   matching row to return the first hundred.
//! - 4 (current): adds `msg_start` and `msg_len`. When a record's message is
//!   a slice of its (UTF-8) raw line, as most parsers' messages are, it is
//!   stored once: `message` is `''` and the message is the `msg_len` bytes of
//!   `raw` from byte `msg_start` (both `NULL` otherwise, and on every row
//!   written before version 4, whose `message` holds the text). That keeps
//!   about a third of each record's bytes out of the WAL, the checkpoint and
//!   the file. Adding two nullable columns rewrites no row, so the migration
//!   is instant on any size of table; a binary before version 4 refuses the
//!   file (it would read `''` as the message).
//!
//! What stays indexed: `id` (the primary key, which `ON CONFLICT (id)`
//! needs) and `(ts_ms, ts_nanos, id)` (the query order and keyset paging).

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::classify;
use crate::StoreError;

/// The schema version this binary writes.
pub(crate) const CURRENT: i64 = 4;

const META: &str = "CREATE TABLE IF NOT EXISTS ackline_schema (
    table_name TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT";

/// The current (version 4) table and its index.
fn create_current(t: &str) -> String {
    format!(
        "CREATE TABLE {t} (
            id TEXT PRIMARY KEY NOT NULL,
            ts_ms INTEGER NOT NULL,
            ts_nanos INTEGER NOT NULL,
            ts_offset INTEGER NOT NULL,
            timestamp_source TEXT NOT NULL,
            severity INTEGER,
            host TEXT,
            app TEXT,
            pid INTEGER,
            message TEXT NOT NULL,
            fields TEXT,
            raw TEXT,
            raw_bytes BLOB,
            input TEXT NOT NULL,
            format TEXT NOT NULL,
            stored_at_ms INTEGER NOT NULL,
            parse_error TEXT,
            msg_start INTEGER,
            msg_len INTEGER,
            CHECK ((raw IS NULL) <> (raw_bytes IS NULL))
        ) STRICT;
        CREATE INDEX {t}_ts ON {t} (ts_ms, ts_nanos, id);"
    )
}

/// Migration from version `from` to `from + 1`.
fn step(t: &str, from: i64) -> Option<String> {
    match from {
        1 => Some(format!(
            "ALTER TABLE {t} ADD COLUMN parse_error TEXT;
             CREATE INDEX {t}_app_ts ON {t} (app, ts_ms);"
        )),
        2 => Some(format!(
            "DROP INDEX IF EXISTS {t}_host_ts;
             DROP INDEX IF EXISTS {t}_severity_ts;
             DROP INDEX IF EXISTS {t}_app_ts;"
        )),
        3 => Some(format!(
            "ALTER TABLE {t} ADD COLUMN msg_start INTEGER;
             ALTER TABLE {t} ADD COLUMN msg_len INTEGER;"
        )),
        _ => None,
    }
}

/// Brings `table` to [`CURRENT`], creating it when absent.
pub(crate) fn migrate(conn: &mut Connection, t: &str) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(classify)?;
    tx.execute_batch(META).map_err(classify)?;
    let version: Option<i64> = tx
        .query_row(
            "SELECT version FROM ackline_schema WHERE table_name = ?1",
            [t],
            |r| r.get(0),
        )
        .optional()
        .map_err(classify)?;
    let exists = tx
        .query_row(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [t],
            |_| Ok(()),
        )
        .optional()
        .map_err(classify)?
        .is_some();
    let now = super::now_ms();
    match version {
        None if exists => {
            return Err(StoreError::fatal(
                "sqlite",
                format!("table {t} exists but has no row in ackline_schema: not an ackline table"),
            ));
        }
        None => {
            tx.execute_batch(&create_current(t)).map_err(classify)?;
            tx.execute(
                "INSERT INTO ackline_schema (table_name, version, updated_at_ms) VALUES (?1, ?2, ?3)",
                params![t, CURRENT, now],
            )
            .map_err(classify)?;
        }
        Some(v) if v > CURRENT => {
            return Err(StoreError::fatal(
                "sqlite",
                format!(
                    "table {t} has schema version {v}, newer than this binary knows ({CURRENT}): \
                     upgrade ackline"
                ),
            ));
        }
        Some(mut v) => {
            while v < CURRENT {
                let sql = step(t, v).ok_or_else(|| {
                    StoreError::fatal(
                        "sqlite",
                        format!("table {t}: no migration from version {v}"),
                    )
                })?;
                tx.execute_batch(&sql).map_err(classify)?;
                v += 1;
            }
            tx.execute(
                "UPDATE ackline_schema SET version = ?2, updated_at_ms = ?3 WHERE table_name = ?1",
                params![t, CURRENT, now],
            )
            .map_err(classify)?;
        }
    }
    tx.commit().map_err(classify)
}
