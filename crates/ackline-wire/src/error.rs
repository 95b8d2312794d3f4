//! The body of every failed request.
//!
//! Invariant: `error` is one of the fixed codes the OpenAPI document lists (`bad_request`,
//! `invalid`, `too_large`, `full`, `unavailable`, `fatal`, `not_found`, `session_not_found`,
//! `unauthorized`, `forbidden`, `too_many_sessions`); clients branch on it, never on
//! `message`.

use serde::{Deserialize, Serialize};

/// `{"error": code, "message": text}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable code.
    pub error: String,
    /// A human-readable reason.
    pub message: String,
}
