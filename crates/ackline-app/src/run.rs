//! `ackline run` and `ackline check`: the configuration checked once, then the pipeline.
//!
//! Invariants:
//! - `check` and `run` build the configuration the same way ([`crate::config::load`]), so a
//!   configuration `check` accepts is one `run` starts with.
//! - `run` exits 0 after a graceful stop (signal) or a completed `--once`; 1 when a part
//!   failed; 2 for configuration errors (before anything is opened).
//! - A store that is unavailable at start is waited for (as `work` does, see
//!   `work::open_store`); a signal ends the wait with exit 0.
//! - `--once` never waits on the store forever: an outage (at start or later) longer than
//!   `worker.max_outage` ends the run with exit 1 and a message saying so; nothing is acked
//!   that was not stored and nothing is dead-lettered for the outage, so what was not stored
//!   is still queued for the next run.
//! - What the workers do to each delivery is a value the caller passes ([`run_as`],
//!   [`run_with`]); `ackline run` passes [`parse_process`], the parser the configuration
//!   describes. The production path has no other branch.

use std::path::Path;
use std::sync::Arc;

use ackline_parse::Parser;
use ackline_worker::{ParseProcess, Process};
use anyhow::Context;
use serde::Serialize;

use crate::cli::{CheckArgs, PipelineFlags, RunArgs};
use crate::config::{self, Config, Env};
use crate::output::Out;
use crate::pipeline::{self, Mode, RunReport};

/// `ackline run`.
pub fn run(
    a: &RunArgs,
    data_dir: &Path,
    config_file: Option<&Path>,
    out: Out,
) -> anyhow::Result<()> {
    run_as(a, data_dir, config_file, out, parse_process)
}

/// `ackline run` with the processing step `process` builds from the checked configuration
/// (the same configuration, runtime, signals and report as `ackline run`).
pub fn run_as<P: Process>(
    a: &RunArgs,
    data_dir: &Path,
    config_file: Option<&Path>,
    out: Out,
    process: impl FnOnce(&Config) -> P,
) -> anyhow::Result<()> {
    let flags = PipelineFlags {
        console_listen: a.listen.clone(),
        ..a.flags.clone()
    };
    let cfg = config::load(data_dir, config_file, &flags, &Env::process())?;
    let mode = if a.once { Mode::Once } else { Mode::Follow };
    let process = process(&cfg);
    let rt = crate::runtime::build()?;
    let report = rt.block_on(async {
        let signal = crate::signals::install()?;
        run_with(&cfg, mode, process, signal, out).await
    })?;
    out.emit(&report, || human(&report))
}

/// The pipeline's processing step: the parser `cfg` describes (format, strictness).
pub fn parse_process(cfg: &Config) -> ParseProcess {
    ParseProcess::new(Parser::new(cfg.parser))
}

/// Opens the store and runs the pipeline with `process` as the workers' processing step.
pub async fn run_with<P: Process>(
    cfg: &Config,
    mode: Mode,
    process: P,
    signal: tokio::sync::watch::Receiver<bool>,
    out: Out,
) -> anyhow::Result<RunReport> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
    let limit = (mode == Mode::Once).then_some(cfg.max_outage);
    let Some(store) = crate::work::open_store(cfg, signal.clone(), out, limit).await? else {
        out.note("ackline run: stopped before the store answered");
        return Ok(RunReport {
            mode: match mode {
                Mode::Once => "once",
                Mode::Follow => "follow",
            }
            .into(),
            queue: cfg.queue.clone(),
            stopped_by_signal: true,
            ..RunReport::default()
        });
    };
    pipeline::run(cfg, Arc::new(store), Arc::new(process), mode, signal, out).await
}

fn human(r: &RunReport) -> String {
    format!(
        "{} ({} run, {:.1} s{})\nqueue {}: {} pending, {} dead letters; store: {}\n",
        pipeline::progress_line(r),
        r.mode,
        r.elapsed_ms as f64 / 1000.0,
        if r.stopped_by_signal {
            ", stopped by signal"
        } else {
            ""
        },
        r.queue,
        r.pending,
        r.dead_letters,
        r.store
    )
}

/// An `[[input.files]]` group as `check --json` shows it.
#[derive(Debug, Serialize)]
struct CheckedGroup {
    name: String,
    paths: Vec<String>,
    format: String,
    multiline: String,
    multiline_timeout_ms: u64,
    year: String,
    timezone: String,
    strict: bool,
}

#[derive(Debug, Serialize)]
struct Checked<'a> {
    ok: bool,
    config_file: Option<String>,
    data_dir: String,
    inputs: &'a [String],
    groups: Vec<CheckedGroup>,
    stdin: bool,
    format: String,
    strict: bool,
    queue: &'a str,
    workers: usize,
    batch_size: usize,
    prefetch: usize,
    lease_ms: u64,
    max_outage_ms: u64,
    retry_base_ms: u64,
    retry_factor: f64,
    retry_cap_ms: u64,
    max_attempts: u32,
    store: String,
    store_operation_timeout_ms: u64,
    broker: Option<String>,
    listen: String,
    tokens: usize,
}

/// `ackline check`.
pub fn check(
    a: &CheckArgs,
    data_dir: &Path,
    config_file: Option<&Path>,
    out: Out,
) -> anyhow::Result<()> {
    let flags = PipelineFlags {
        server: a.server.clone(),
        ..a.flags.clone()
    };
    let cfg = config::load(data_dir, config_file, &flags, &Env::process())?;
    let c = Checked {
        ok: true,
        config_file: cfg.file.as_ref().map(|p| p.display().to_string()),
        data_dir: cfg.data_dir.display().to_string(),
        inputs: &cfg.paths,
        groups: cfg
            .groups
            .iter()
            .map(|g| CheckedGroup {
                name: g.name.clone(),
                paths: g.paths.clone(),
                format: g.parser.format.to_string(),
                multiline: g.multiline.to_string(),
                multiline_timeout_ms: g.multiline_timeout.as_millis() as u64,
                year: g.parser.year_rule.to_string(),
                timezone: g.parser.timezone.to_string(),
                strict: g.parser.strict,
            })
            .collect(),
        stdin: cfg.stdin,
        format: match cfg.parser.format {
            ackline_parse::FormatChoice::Auto => "auto".into(),
            ackline_parse::FormatChoice::Fixed(f) => f.name().into(),
        },
        strict: cfg.parser.strict,
        queue: &cfg.queue,
        workers: cfg.worker.workers,
        batch_size: cfg.worker.batch_size,
        prefetch: cfg.worker.prefetch,
        lease_ms: cfg.worker.lease.as_millis() as u64,
        max_outage_ms: cfg.max_outage.as_millis() as u64,
        retry_base_ms: cfg.worker.retry.base.as_millis() as u64,
        retry_factor: cfg.worker.retry.factor,
        retry_cap_ms: cfg.worker.retry.cap.as_millis() as u64,
        max_attempts: cfg.queue_options.max_attempts,
        store: cfg.store_display(),
        store_operation_timeout_ms: cfg.store.operation_timeout.as_millis() as u64,
        broker: cfg.broker.as_ref().map(|b| b.to_string()),
        listen: cfg.server.listen.to_string(),
        tokens: cfg.server.tokens.len(),
    };
    out.emit(&c, || {
        format!(
            "config ok ({}): {} input(s){}{}, format {}{}, queue {}, {} workers, batch {}, store {}{}, serve on {} with {} token(s)\n",
            c.config_file.as_deref().unwrap_or("no config file"),
            c.inputs.len(),
            if c.groups.is_empty() {
                String::new()
            } else {
                format!(" + {} input group(s)", c.groups.len())
            },
            if c.stdin { " + stdin" } else { "" },
            c.format,
            if c.strict { " (strict)" } else { "" },
            c.queue,
            c.workers,
            c.batch_size,
            c.store,
            c.broker
                .as_deref()
                .map(|b| format!(", broker {b}"))
                .unwrap_or_default(),
            c.listen,
            c.tokens
        )
    })
}
