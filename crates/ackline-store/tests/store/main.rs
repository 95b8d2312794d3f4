//! Integration tests of every store (one binary: `common` builds records and
//! holds the PostgreSQL helper).
#![allow(clippy::unwrap_used)]

mod common;
mod ndjson;
mod open;
mod postgres;
mod sqlite;
mod stdout;
