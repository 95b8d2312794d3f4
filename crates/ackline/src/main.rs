//! `ackline`: the command-line edge. Parses, dispatches, and turns errors into exit codes
//! (see [`exit`]). Errors are printed as one line with their context chain, each cause once
//! ([`exit::message`]).

mod bench;
mod bench_http;
mod bench_pipeline;
mod books;
mod cli;
mod config;
mod demo;
mod dlq;
mod exit;
mod fault;
mod journal;
mod logging;
mod metrics;
mod output;
mod pipeline;
mod pipeline_demo;
mod query;
mod run;
mod serve;
mod signals;
mod stats;
mod work;
mod worker;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{BenchCommand, Cli, Command, DemoSub};
use crate::output::Out;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let out = Out { json: cli.json };
    if let Err(e) = logging::init(cli.log_format, &cli.log) {
        eprintln!("error: {}", exit::message(&e));
        return ExitCode::from(exit::code(&e));
    }
    match run(&cli, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", exit::message(&e));
            ExitCode::from(exit::code(&e))
        }
    }
}

/// Help and version print as clap prints them; every other parse error becomes one line on
/// stderr and exit code 2.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        _ => {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("error: invalid arguments");
            eprintln!("{first} (see --help)");
            ExitCode::from(2)
        }
    }
}

fn run(cli: &Cli, out: Out) -> anyhow::Result<()> {
    match &cli.command {
        Command::Run(a) => run::run(a, &cli.data_dir(), cli.config.as_deref(), out),
        Command::Serve(a) => serve::run(a, &cli.data_dir(), cli.config.as_deref(), out),
        Command::Work(a) => work::run(a, &cli.data_dir(), cli.config.as_deref(), out),
        Command::Check(a) => run::check(a, &cli.data_dir(), cli.config.as_deref(), out),
        Command::Query(a) => query::run(a, &cli.data_dir(), cli.config.as_deref(), out),
        Command::Stats => stats::run(&cli.data_dir(), cli.config.as_deref(), out),
        Command::Demo(d) => match &d.sub {
            Some(DemoSub::Queue(a)) => demo::run(a, cli.data_dir.as_deref(), out),
            None => pipeline_demo::run(&d.pipeline, cli.data_dir.as_deref(), out),
        },
        Command::Bench(BenchCommand::Queue(a)) => bench::run(a, cli.data_dir.as_deref(), out),
        Command::Bench(BenchCommand::Pipeline(a)) => bench_pipeline::run(a, out),
        Command::Bench(BenchCommand::Http(a)) => bench_http::run(a, out),
        Command::Queue(c) => dlq::queue_cmd(c, &cli.data_dir(), cli.config.as_deref(), out),
        Command::Dlq(c) => dlq::dlq_cmd(c, &cli.data_dir(), cli.config.as_deref(), out),
        Command::QueueWorker(a) => worker::run(a, &cli.data_dir()),
        Command::BenchFill(a) => bench::fill(a),
    }
}
