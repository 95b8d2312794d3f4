//! Errors of the broker traits.
//!
//! Invariant: the worker runtime decides retry versus give-up from the variant alone:
//! `Unavailable` and `Full` are transient (retry with backoff, burn no attempts), `Invalid` is
//! about one request (never retried as is), `Fatal` stops the caller.

use std::time::Duration;

/// Why a broker operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// The backend cannot be reached or refused for now: retry later.
    #[error("{backend} unavailable: {reason}")]
    Unavailable {
        /// The backend.
        backend: &'static str,
        /// What happened.
        reason: String,
    },
    /// The queue is full: back off (`retry_after` if the backend suggests one).
    #[error("{backend} queue full: {reason}")]
    Full {
        /// The backend.
        backend: &'static str,
        /// What happened.
        reason: String,
        /// A suggested wait.
        retry_after: Option<Duration>,
    },
    /// The request itself is unacceptable (a message too large, an invalid id).
    #[error("{backend} refused the request: {reason}")]
    Invalid {
        /// The backend.
        backend: &'static str,
        /// Why.
        reason: String,
    },
    /// The backend is unusable (an I/O error on the queue's disk, a bad configuration).
    #[error("{backend} failed: {reason}")]
    Fatal {
        /// The backend.
        backend: &'static str,
        /// Why.
        reason: String,
    },
}

/// Why one settlement was refused; the others of its batch are unaffected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettleError {
    /// The message was redelivered since: this delivery is no longer current.
    #[error("stale delivery (attempt {attempt}, message now at attempt {current})")]
    Stale {
        /// The delivery's attempt.
        attempt: u32,
        /// The message's current attempt.
        current: u32,
    },
    /// The delivery was settled already.
    #[error("delivery already settled")]
    AlreadySettled,
    /// The backend knows no such delivery.
    #[error("unknown delivery")]
    Unknown,
}
