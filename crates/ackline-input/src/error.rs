//! Typed errors of the inputs.
//!
//! Invariant: every error that concerns a line names the input (file path or `stdin`) and where
//! in it (byte offset for files, line number for stdin), so an operator can find the line.

use std::fmt;
use std::path::PathBuf;

use ackline_broker::BrokerError;

/// Where in an input a message starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// Byte offset in a file.
    Offset(u64),
    /// Line number (1-based) in a stream without offsets (stdin).
    Line(u64),
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Offset(o) => write!(f, "byte offset {o}"),
            At::Line(n) => write!(f, "line {n}"),
        }
    }
}

/// Why an input stopped.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A configuration value out of range.
    #[error("invalid input option {field}: expected {expected}")]
    Config {
        /// The option.
        field: &'static str,
        /// What is expected.
        expected: String,
    },
    /// A path pattern that is not a valid glob.
    #[error("invalid path pattern {pattern:?}: {reason}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// A file is matched by the paths of two groups whose settings differ: which settings
    /// its lines get would be a guess, so the input refuses to read it.
    #[error(
        "{path} is matched by group {first} and by group {second}, whose settings differ: make their paths exclusive (or their settings equal)"
    )]
    GroupConflict {
        /// The file.
        path: PathBuf,
        /// The first group (in configuration order) whose paths match it.
        first: String,
        /// Another group whose paths match it.
        second: String,
    },
    /// An I/O error on a file or directory.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("open", "read", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The position file cannot be decoded.
    #[error(
        "position file {path} is damaged: {reason} (move it aside to start over; lines may then be published again)"
    )]
    PositionsDamaged {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Another process holds the state directory.
    #[error("state directory {path} is in use by another file input")]
    StateDirInUse {
        /// The directory.
        path: PathBuf,
    },
    /// Committing read positions failed: the lines published since the last commit will be
    /// published again (same ids) on the next run.
    #[error("committing read positions failed: {reason}")]
    Commit {
        /// Why.
        reason: String,
    },
    /// The broker failed for good while publishing.
    #[error("publishing {input} at {at} failed: {source}")]
    Publish {
        /// The input (file path or `stdin`).
        input: String,
        /// Where the first unpublished line starts.
        at: At,
        /// The broker's error.
        #[source]
        source: BrokerError,
    },
    /// The queue refused one message (`BrokerError::Invalid`). Nothing was lost: the read
    /// position did not advance past it.
    #[error(
        "the queue refused the message of {input} at {at}: {reason} (if it is too large, set max_line_bytes below the queue's maximum message size; the line is kept and published on the next run)"
    )]
    Refused {
        /// The input.
        input: String,
        /// Where the refused message starts.
        at: At,
        /// The broker's reason.
        reason: String,
    },
    /// A stream input was stopped while the queue refused its publishes: these messages
    /// were read and never published (a stream cannot be read again).
    #[error("stopped before {messages} message(s) of {input} from {at} were published; a stream cannot be re-read, so they are lost", at = from)]
    Unpublished {
        /// The input.
        input: String,
        /// The first unpublished line.
        from: At,
        /// How many messages.
        messages: u64,
    },
    /// Reading a stream failed.
    #[error("reading {input} failed after line {line}: {source}")]
    Read {
        /// The input.
        input: String,
        /// The last line read whole.
        line: u64,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A blocking task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(String),
}

impl InputError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        InputError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
