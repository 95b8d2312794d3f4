//! `ackline`: the command-line edge. Parses ([`args`]), dispatches to the product
//! ([`ackline_app`]) or the harness ([`ackline_harness`]: `demo`, `bench`), and turns errors
//! into exit codes (see [`ackline_app::exit`]). Errors are printed as one line with their
//! context chain, each cause once ([`ackline_app::exit::message`]).

mod args;

use std::process::ExitCode;

use ackline_app::exit;
use ackline_app::output::Out;
use clap::Parser;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let g = &cli.global;
    let out = Out { json: g.json };
    if let Err(e) = ackline_app::logging::init(g.log_format, &g.log) {
        eprintln!("error: {}", exit::message(&e));
        return ExitCode::from(exit::code(&e));
    }
    let result = match &cli.command {
        Command::App(c) => ackline_app::dispatch(c, g, out),
        Command::Demo(d) => ackline_harness::demo(d, g, out),
        Command::Bench(b) => ackline_harness::bench(b, g, out),
    };
    match result {
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
