//! Output: human-readable text or one JSON object, and progress bars.
//!
//! Invariants: with `--json`, stdout carries exactly one JSON object (errors go to stderr);
//! progress bars draw on stderr only when it is a terminal and `--json` is off.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// Where a command's result goes.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    /// `--json` was given.
    pub json: bool,
}

impl Out {
    /// Prints `value` as one JSON object when `--json`, otherwise calls `human`.
    pub fn emit<T: Serialize>(
        &self,
        value: &T,
        human: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        let mut stdout = std::io::stdout().lock();
        if self.json {
            serde_json::to_writer(&mut stdout, value)?;
            writeln!(stdout)?;
        } else {
            write!(stdout, "{}", human())?;
        }
        stdout.flush()?;
        Ok(())
    }

    /// A progress bar of `len` steps, hidden when stderr is not a terminal or with `--json`.
    pub fn progress(&self, len: u64, what: &str) -> ProgressBar {
        if self.json || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::new(len);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
        ) {
            pb.set_style(style);
        }
        pb.set_message(what.to_string());
        pb
    }

    /// A spinner with a message that the caller updates (live counters), hidden when stderr
    /// is not a terminal or with `--json`.
    pub fn live(&self) -> ProgressBar {
        if self.json || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}") {
            pb.set_style(style);
        }
        pb
    }

    /// A line of commentary on stderr (never with `--json`, never into stdout).
    pub fn note(&self, msg: &str) {
        if !self.json {
            eprintln!("{msg}");
        }
    }
}
