//! Typed parse errors.
//!
//! Invariants:
//! - every error carries the byte offset into the line handed to
//!   [`Parser::parse`](crate::Parser::parse) (not into a trimmed view of it)
//!   where parsing stopped, and a machine-matchable [`ErrorKind`];
//! - the `Display` text is one line, stable enough to be a dead-letter reason,
//!   and never contains bytes of the line itself (so it is always valid UTF-8
//!   and bounded in size, whatever the input).

use crate::format::Format;

/// Why a line could not be parsed, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {kind} at byte {position}", format_label(*.format))]
pub struct ParseError {
    /// The format that was attempted; `None` when no format was attempted
    /// because automatic detection recognised none.
    pub format: Option<Format>,
    /// Byte offset into the line where the problem was found.
    pub position: usize,
    /// What went wrong.
    pub kind: ErrorKind,
}

fn format_label(format: Option<Format>) -> &'static str {
    match format {
        Some(f) => f.name(),
        None => "auto",
    }
}

impl ParseError {
    /// A new error.
    #[must_use]
    pub fn new(format: Option<Format>, position: usize, kind: ErrorKind) -> Self {
        Self {
            format,
            position,
            kind,
        }
    }
}

/// The reason a line was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The line is empty (after removing its line terminator).
    #[error("empty line")]
    Empty,
    /// A structural element of the format is missing or malformed.
    #[error("expected {0}")]
    Expected(&'static str),
    /// A timestamp is syntactically wrong (bad digits, bad month name, ...).
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(&'static str),
    /// A timestamp is well-formed but names no real instant (month 13,
    /// February 30, hour 25, offset beyond ±24h, epoch beyond year 262143...).
    #[error("timestamp out of range")]
    TimestampOutOfRange,
    /// A syslog `<PRI>` is not a number in 0..=191 written without leading zeros.
    #[error("invalid syslog priority")]
    InvalidPriority,
    /// The JSON text is malformed; the string is serde_json's description.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// JSON nesting exceeds [`ParserConfig::max_json_depth`](crate::ParserConfig::max_json_depth).
    #[error("JSON nested deeper than {limit} levels")]
    JsonTooDeep {
        /// The configured limit.
        limit: usize,
    },
    /// The JSON line is valid JSON but not an object.
    #[error("JSON line is not an object")]
    JsonNotAnObject,
    /// Automatic detection found no supported format (strict mode only).
    #[error("no supported format matched")]
    NoFormatMatched,
}
