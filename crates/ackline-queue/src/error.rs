//! Errors, one enum per kind of operation.
//!
//! Invariant: no operation of the engine panics on a bad argument, a bad file or a failed
//! system call; each returns one of these values, whose message names what failed and where.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// A failed system call: what the engine was doing, to which file, and the operating
/// system's error, kept whole so a caller can tell a full disk (`ENOSPC`,
/// [`io::ErrorKind::StorageFull`]) from a failing one (`EIO`) by [`IoError::cause`].
#[derive(Debug)]
pub struct IoError {
    /// What was being done (`"fsync of"`, `"writing"`, `"checkpoint: creating"`...).
    pub op: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// Where in the file, for a positional read.
    pub offset: Option<u64>,
    /// The operating system's error (in the message, not also as `source()`, so it is
    /// printed once).
    pub cause: io::Error,
}

impl IoError {
    pub(crate) fn new(op: &'static str, path: impl Into<PathBuf>, cause: io::Error) -> Self {
        IoError {
            op,
            path: path.into(),
            offset: None,
            cause,
        }
    }

    /// The kind of the operating system's error.
    pub fn kind(&self) -> io::ErrorKind {
        self.cause.kind()
    }
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op, self.path.display())?;
        if let Some(offset) = self.offset {
            write!(f, " at offset {offset}")?;
        }
        write!(f, ": {}", self.cause)
    }
}

impl std::error::Error for IoError {}

/// The queue as a whole can no longer serve the request.
///
/// An I/O failure is reported once as [`QueueError::Io`], to the operations whose records (or
/// read) it hit; every later operation is refused with [`QueueError::Poisoned`], which carries
/// the same original cause.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    /// This operation's records were in a write or fsync that failed (so they may or may not
    /// be on disk), or its read of a stored message failed after retries. The queue refuses
    /// every write from now on: reopen it to recover from what is durable.
    #[error("queue {queue}: {cause}; the queue refuses writes until reopened")]
    Io {
        /// The queue.
        queue: String,
        /// What failed, with the file.
        cause: Arc<IoError>,
    },
    /// A write, fsync or read failed earlier. The engine never retries a failed fsync (the
    /// kernel may have dropped the dirty pages, so a retry could report success for lost
    /// data): it refuses every further write. Reopen the queue to recover from what is durable.
    #[error("queue {queue} refuses writes since an earlier I/O error: {cause}")]
    Poisoned {
        /// The queue.
        queue: String,
        /// The original failure, with the file.
        cause: Arc<IoError>,
    },
    /// The queue was opened read-only (for inspection): it refuses every write.
    #[error("queue {queue} is open read-only (for inspection); writes are refused")]
    ReadOnly {
        /// The queue.
        queue: String,
    },
    /// The queue was closed.
    #[error("queue {queue} is closed")]
    Closed {
        /// The queue.
        queue: String,
    },
}

/// Why a publish was refused. A refused publish stored nothing of its batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// The queue holds its configured maximum of bytes: back off and retry (backpressure).
    #[error(
        "queue {queue} is full: {pending_bytes} bytes pending and {dead_letter_bytes} in dead letters (replay or purge them to free it), limit {limit_bytes}, this batch needs {needed_bytes}"
    )]
    Full {
        /// The queue.
        queue: String,
        /// Bytes pending now.
        pending_bytes: u64,
        /// Bytes of the dead-letter entries' messages, which count toward the limit too.
        dead_letter_bytes: u64,
        /// The configured limit.
        limit_bytes: u64,
        /// What the refused batch would have added.
        needed_bytes: u64,
    },
    /// One message is larger than the configured maximum.
    #[error("message {index} of the batch is {size} bytes, over the maximum of {max}")]
    TooLarge {
        /// Its index in the batch.
        index: usize,
        /// Its encoded size.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A message id or header is not acceptable.
    #[error("message {index} of the batch: {reason}")]
    Invalid {
        /// Its index in the batch.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The queue cannot accept writes.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Why a settlement (ack, nack, reject) or a lease extension was refused. A refused
/// settlement changed nothing.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SettleError {
    /// The message was redelivered since this delivery: the delivery is no longer current
    /// (its lease expired or it was released). Only the current delivery may settle it.
    #[error(
        "stale delivery: message at position {seq} was delivered as attempt {attempt}, now at attempt {current}"
    )]
    Stale {
        /// Queue position.
        seq: u64,
        /// The delivery's attempt.
        attempt: u32,
        /// The message's current attempt.
        current: u32,
    },
    /// This delivery was already settled (acked, nacked, rejected or released).
    #[error("delivery of position {seq} attempt {attempt} is already settled")]
    AlreadySettled {
        /// Queue position.
        seq: u64,
        /// The delivery's attempt.
        attempt: u32,
    },
    /// The queue has no such delivery (it never existed, or it was settled long ago).
    #[error("no delivery at position {seq} attempt {attempt}")]
    Unknown {
        /// Queue position.
        seq: u64,
        /// The delivery's attempt.
        attempt: u32,
    },
    /// The queue cannot accept writes.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Why a queue or a data directory could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process (or handle) holds the data directory.
    #[error("data directory {dir} is in use: {cause}")]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// The cause (in the message, not also as `source()`, so it is printed once).
        cause: io::Error,
    },
    /// A queue name outside `[A-Za-z0-9._-]{1,128}`.
    #[error("invalid queue name {name:?}: use 1 to 128 of A-Z a-z 0-9 . _ -")]
    InvalidName {
        /// The name.
        name: String,
    },
    /// An option out of range.
    #[error("invalid option {field}: {reason}")]
    InvalidOption {
        /// The option.
        field: &'static str,
        /// What is expected.
        reason: String,
    },
    /// A file could not be read or written during recovery.
    #[error("{action} {path}: {cause}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause (in the message, not also as `source()`, so it is printed once).
        cause: io::Error,
    },
    /// A file is not what the engine wrote (not an ackline segment, or a newer format).
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl OpenError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, cause: io::Error) -> Self {
        OpenError::Io {
            action,
            path: path.into(),
            cause,
        }
    }
}
