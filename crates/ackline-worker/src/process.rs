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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ackline_broker::Tag;
    use ackline_parse::{ParserConfig, YearRule};

    fn delivery(headers: &[(&str, &str)]) -> Delivery {
        Delivery {
            tag: Tag {
                key: 1,
                attempt: 1,
                token: None,
            },
            id: "m-1".into(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            payload: b"Dec 31 23:59:58 combo sshd[1]: x".to_vec(),
            // 2026-12-05T00:00:00Z
            enqueued_at: 1_796_428_800_000,
        }
    }

    /// The `mtime` header becomes the parser's file mtime: with `year = mtime` a 2005
    /// archive's `Dec 31` is 2005, not the year before the ingest time.
    #[test]
    fn mtime_header_reaches_the_year_rule() {
        let p = ParseProcess::new(Parser::new(ParserConfig {
            year_rule: YearRule::FileMtime,
            ..ParserConfig::default()
        }));
        // 2006-01-02T03:04:05.678Z
        let rec = p
            .process(&delivery(&[
                ("input", "a.log"),
                (MTIME_HEADER, "1136171045678"),
            ]))
            .unwrap();
        assert_eq!(rec.timestamp.to_rfc3339(), "2005-12-31T23:59:58+00:00");
        assert_eq!(&*rec.input, "a.log");
        let rec = p
            .process(&delivery(&[(MTIME_HEADER, "not a number")]))
            .unwrap();
        assert_eq!(rec.timestamp.to_rfc3339(), "2025-12-31T23:59:58+00:00");
    }
}
