//! Turning a delivery into a record.
//!
//! [`Process`] is what a worker does to each delivery before the store write; the pipeline's
//! is [`ParseProcess`], which parses the payload as a log line with `ackline-parse`.
//!
//! Invariant: the record's id is the message id, so a redelivered or replayed message maps to
//! the same record and the idempotent store keeps one copy.

use std::sync::Arc;

use ackline_broker::Delivery;
use ackline_parse::{LineContext, Parser, Record};
use chrono::{DateTime, Utc};

/// Header naming the input a line came from (a file path, `stdin`, a socket).
pub const INPUT_HEADER: &str = "input";

/// Header with the modification time (Unix milliseconds) of the file a line came from, set by
/// the file input when the year rule needs it (`input.year = "mtime"`): the reference time of
/// [`ackline_parse::YearRule::FileMtime`].
pub const MTIME_HEADER: &str = "mtime";

/// Why a delivery could not become a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// It never will (a parse error in strict mode): dead-letter it now.
    #[error("{0}")]
    Permanent(String),
    /// It might next time: retry with backoff, counting the attempt.
    #[error("{0}")]
    Transient(String),
}

/// What a worker does to each delivery.
pub trait Process: Send + Sync + 'static {
    /// The record to store for `d`.
    fn process(&self, d: &Delivery) -> Result<Record, ProcessError>;
}

/// Parses each payload as one log line.
#[derive(Debug, Clone)]
pub struct ParseProcess {
    parser: Parser,
}

impl ParseProcess {
    /// With this parser (its strictness decides whether bad lines are dead-lettered or kept
    /// raw).
    pub fn new(parser: Parser) -> Self {
        ParseProcess { parser }
    }
}

impl Process for ParseProcess {
    fn process(&self, d: &Delivery) -> Result<Record, ProcessError> {
        let ingest_time = i64::try_from(d.enqueued_at)
            .ok()
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .unwrap_or_else(|| DateTime::<Utc>::from(std::time::SystemTime::now()));
        let ctx = LineContext {
            id: d.id.clone(),
            input: Arc::from(d.header(INPUT_HEADER).unwrap_or("unknown")),
            ingest_time,
            file_mtime: d
                .header(MTIME_HEADER)
                .and_then(|m| m.parse::<i64>().ok())
                .and_then(DateTime::<Utc>::from_timestamp_millis),
        };
        self.parser
            .parse(&d.payload, &ctx)
            .map_err(|e| ProcessError::Permanent(format!("parse error: {e}")))
    }
}
