//! ackline's product commands as a library: `run`, `serve`, `work`, `check`, `query`, `stats`,
//! `queue stats` and `dlq`, with what they share (configuration, output, exit codes, logging,
//! signals, the tokio runtime). The `ackline` binary parses [`cli`] and calls [`dispatch`];
//! the harness (`ackline-harness`: benchmarks and demos) drives the product through the public
//! modules below, never through a flag of a product command.
//!
//! Invariants:
//! - [`cli`] is a leaf: clap definitions only, importing nothing from the command modules.
//! - Every command returns `anyhow::Result<()>`; [`exit::code`] maps its error to the exit code
//!   (2 usage or configuration, 1 runtime failure, 3 books that do not balance) and
//!   [`exit::message`] to its one-line message.
//! - The pipeline's processing step is a value ([`run::run_as`], [`run::run_with`]): the
//!   product passes the parser; nothing else selects what the workers do.

use crate::cli::{Command, GlobalArgs};
use crate::output::Out;

pub mod cli;
pub mod config;
mod console;
mod dlq;
pub mod exit;
pub mod logging;
mod metrics;
pub mod output;
pub mod pipeline;
mod query;
pub mod run;
pub mod runtime;
mod serve;
pub mod signals;
mod stats;
mod work;

/// Runs the product command `c` with the global flags `g`.
pub fn dispatch(c: &Command, g: &GlobalArgs, out: Out) -> anyhow::Result<()> {
    let config = g.config.as_deref();
    match c {
        Command::Run(a) => run::run(a, &g.data_dir(), config, out),
        Command::Serve(a) => serve::run(a, &g.data_dir(), config, out),
        Command::Work(a) => work::run(a, &g.data_dir(), config, out),
        Command::Check(a) => run::check(a, &g.data_dir(), config, out),
        Command::Query(a) => query::run(a, &g.data_dir(), config, out),
        Command::Stats => stats::run(&g.data_dir(), config, out),
        Command::Queue(c) => dlq::queue_cmd(c, &g.data_dir(), config, out),
        Command::Dlq(c) => dlq::dlq_cmd(c, &g.data_dir(), config, out),
    }
}
