//! ackline's harness: the benchmarks (`ackline bench queue|pipeline|http`) and the demos
//! (`ackline demo`, `ackline demo queue`), outside the product. They drive the product through
//! `ackline-app`'s public API (configuration, the pipeline, `run` with another processing
//! step) and the library crates; the product has no flag or command of theirs.
//!
//! Invariants:
//! - [`cli`] is a leaf: clap definitions only. The `ackline` binary puts [`cli::DemoCmd`] and
//!   [`cli::BenchCommand`] beside the product's commands and calls [`demo()`] and [`bench()`].
//! - Child processes (the queue demo's worker, the pipeline demo's node, the recovery
//!   benchmark's filler) are this executable started again with a hidden subcommand of
//!   `demo` or `bench`; so the harness runs inside the `ackline` binary, whose parser has
//!   those subcommands.
//! - Every benchmark and demo works in a fresh data directory (a temporary one unless
//!   `--data-dir` names one), and a demo's books that do not balance exit 3
//!   ([`ackline_app::exit::Unbalanced`]).

use ackline_app::cli::GlobalArgs;
use ackline_app::output::Out;

use crate::cli::{BenchCommand, DemoCmd, DemoSub};

mod bench;
pub mod cli;
mod demo;

/// `ackline demo [queue]`, and the demos' hidden child processes.
pub fn demo(d: &DemoCmd, g: &GlobalArgs, out: Out) -> anyhow::Result<()> {
    match &d.sub {
        None => demo::pipeline::run(&d.pipeline, g.data_dir.as_deref(), out),
        Some(DemoSub::Queue(a)) => demo::queue::run(a, g.data_dir.as_deref(), out),
        Some(DemoSub::QueueWorker(a)) => demo::queue::worker::run(a, &g.data_dir()),
        Some(DemoSub::PipelineNode(a)) => {
            demo::pipeline::node(a, &g.data_dir(), g.config.as_deref(), out)
        }
    }
}

/// `ackline bench queue|pipeline|http`, and the queue benchmark's hidden filler process.
pub fn bench(b: &BenchCommand, g: &GlobalArgs, out: Out) -> anyhow::Result<()> {
    match b {
        BenchCommand::Queue(a) => bench::queue::run(a, g.data_dir.as_deref(), out),
        BenchCommand::Pipeline(a) => bench::pipeline::run(a, out),
        BenchCommand::Http(a) => bench::http::run(a, out),
        BenchCommand::QueueFill(a) => bench::queue::fill(a),
    }
}
