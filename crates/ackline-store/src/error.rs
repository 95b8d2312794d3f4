//! The one error type every store returns, classified for the worker runtime.
//!
//! Invariants:
//! - [`StoreError::Unavailable`] means "nothing is wrong with the batch": the
//!   caller retries the *whole* batch later and does not count it against any
//!   message's attempts (the circuit breaker probes with [`Store::probe`](crate::Store::probe)).
//! - [`StoreError::Rejected`] names exactly one record of the batch, by index,
//!   that can never be stored; **nothing of the batch was committed**, so the
//!   caller dead-letters `batch[index]` and writes the rest again.
//! - [`StoreError::Fatal`] is misconfiguration or a broken store: retrying
//!   cannot help until an operator acts.
//!
//! The `Display` forms are one line each, fit for logs and CLI errors.

/// Why a store operation failed, and so what the caller does next.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store (or the network to it) is unavailable or timed out: retry the whole batch later;
    /// this must NOT count against a message's attempts.
    #[error("{store} store unavailable: {reason}")]
    Unavailable {
        /// The store's [`kind`](crate::Store::kind).
        store: &'static str,
        /// What failed, for logs.
        reason: String,
    },
    /// One record of the batch can never be stored (e.g. a value the schema refuses): the caller
    /// dead-letters batch\[index\] and retries the rest. Nothing of the batch was committed.
    #[error("record {index} of the batch rejected: {reason}")]
    Rejected {
        /// Index into the batch handed to `write_batch`.
        index: usize,
        /// Why the store refuses it, for the dead-letter entry.
        reason: String,
    },
    /// Misconfiguration (bad URL, schema from a newer version, permission denied): not retryable.
    #[error("{store} store: {reason}")]
    Fatal {
        /// The store's [`kind`](crate::Store::kind) (`"url"` for a URL that names no store).
        store: &'static str,
        /// What is wrong and, where possible, what is expected.
        reason: String,
    },
}

impl StoreError {
    /// `Unavailable` for `store`.
    pub(crate) fn unavailable(store: &'static str, reason: impl Into<String>) -> Self {
        StoreError::Unavailable {
            store,
            reason: reason.into(),
        }
    }

    /// `Fatal` for `store`.
    pub(crate) fn fatal(store: &'static str, reason: impl Into<String>) -> Self {
        StoreError::Fatal {
            store,
            reason: reason.into(),
        }
    }

    /// Whether retrying later may succeed without anyone acting
    /// ([`StoreError::Unavailable`] only).
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

/// The blocking task running a store operation panicked or was cancelled.
/// The operation's transaction was not committed (a panic unwinds through the
/// transaction guard, which rolls back), so the batch is safe to retry; but a
/// panic is a bug, so it is `Fatal` rather than silently retried forever.
pub(crate) fn join_error(store: &'static str, err: &tokio::task::JoinError) -> StoreError {
    StoreError::fatal(store, format!("store task failed: {err}"))
}
