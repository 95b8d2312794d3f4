//! The tokio runtime a command runs on: one place builds it, so every command (and the
//! harness, which drives the product in process) runs on the same kind of runtime.
//!
//! Invariant: a command's runtime is multi-threaded with I/O and time enabled; a command that
//! needs a runtime builds one with [`build`] at its start and drops it at its end.

use anyhow::Context;

/// The builder [`build`] uses, for a caller that adds to it (a thread name).
pub fn builder() -> tokio::runtime::Builder {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all();
    b
}

/// A multi-threaded tokio runtime for one command.
pub fn build() -> anyhow::Result<tokio::runtime::Runtime> {
    builder().build().context("starting the async runtime")
}
