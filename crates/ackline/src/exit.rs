//! Exit codes, decided at the edge from the error's kind.
//!
//! Invariants: 0 success; 1 a runtime failure; 2 a usage or configuration error (clap exits 2
//! by itself for bad flags; [`Usage`] covers what clap cannot check); 3 the demo's books do
//! not balance ([`Unbalanced`]). Nothing else picks an exit code.

use std::fmt;

/// A usage or configuration error found after parsing (exit 2).
#[derive(Debug)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// The demo's books do not balance (exit 3). The books were already printed.
#[derive(Debug)]
pub struct Unbalanced(pub String);

impl fmt::Display for Unbalanced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the books do not balance: {}", self.0)
    }
}

impl std::error::Error for Unbalanced {}

impl Unbalanced {
    /// `Ok` when there are no `failures`, else this error listing them (with `context`
    /// appended, such as the seed that replays the run).
    pub fn check(failures: &[String], context: &str) -> anyhow::Result<()> {
        if failures.is_empty() {
            return Ok(());
        }
        Err(Unbalanced(format!("{}{context}", failures.join("; "))).into())
    }
}

/// The exit code for an error.
pub fn code(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| c.is::<Unbalanced>()) {
        3
    } else if e.chain().any(|c| c.is::<Usage>()) {
        2
    } else {
        1
    }
}

/// Shorthand: a usage error as an `anyhow::Error`.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(msg.into()))
}
