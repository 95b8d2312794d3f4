//! The top-level command line: the product's commands ([`ackline_app::cli`]) beside the
//! harness's (`demo`, `bench`: [`ackline_harness::cli`]). Only composition lives here; every
//! flag is defined in one of those two leaves.
//!
//! Invariants: every command and flag the binary had before the harness moved out is here with
//! the same syntax; `ackline --help` lists the product's commands first, then `demo` and
//! `bench`; the harness's child processes stay hidden.

use ackline_app::cli::GlobalArgs;
use ackline_harness::cli::{BenchCommand, DemoCmd};
use clap::{Parser, Subcommand};

/// ackline: a log pipeline that never loses a log line and stores none twice.
///
/// `ackline run` reads files and stdin into the embedded durable queue, parses each line with
/// N workers and stores the records in SQLite (by default DIR/records.db); `query`, `stats`,
/// `dlq` and `check` are the operator's tools; `demo` shows it all surviving crashes and an
/// outage. Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error, 3 the books
/// do not balance.
#[derive(Debug, Parser)]
#[command(name = "ackline", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    App(Box<ackline_app::cli::Command>),
    /// The pipeline demo: realistic log traffic, strict parsing, worker processes killed with
    /// SIGKILL, a store outage; then the books (exit 3 if they do not balance).
    /// `demo queue` is the queue-only crash demo
    Demo(DemoCmd),
    /// Benchmarks
    #[command(subcommand)]
    Bench(BenchCommand),
}
