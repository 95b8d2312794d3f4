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

/// The one line printed for an error: its context chain, outermost first, joined by `: `,
/// each cause once. Library errors put their source into their own message (so a log line
/// with just `%e` is complete) and also return it from `source()`; a cause whose text already
/// ends the line so far is that repeat and is left out (`opening X: Read-only file system
/// (os error 30)`, not `...: Read-only file system (os error 30): Read-only file system (os
/// error 30)`).
pub fn message(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Shorthand: a usage error as an `anyhow::Error`.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(msg.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Like the libraries' thiserror errors: the source in the message and from `source()`.
    #[derive(Debug)]
    struct Locked {
        source: std::io::Error,
    }

    impl fmt::Display for Locked {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "data directory /d is in use: {}", self.source)
        }
    }

    impl std::error::Error for Locked {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn each_cause_is_printed_once() {
        let io = || std::io::Error::from_raw_os_error(30);
        let cause = io().to_string();
        // A library error that embeds its source, under the binary's context.
        let e = anyhow::Error::new(Locked { source: io() }).context("opening data directory /d");
        let m = message(&e);
        assert_eq!(m.matches(&cause).count(), 1, "{m}");
        assert_eq!(
            m,
            format!("opening data directory /d: data directory /d is in use: {cause}")
        );
        // One that does not embed it still shows it, once.
        let e = anyhow::Error::new(io()).context("writing /d/x");
        assert_eq!(message(&e), format!("writing /d/x: {cause}"));
        assert_eq!(message(&usage("bad --limit")), "bad --limit");
    }
}
