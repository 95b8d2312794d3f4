//! The all-in-one pipeline in one process: inputs → embedded queue → N workers → store.
//!
//! Shutdown order (either mode): stop the inputs and wait for them (each commits its
//! positions, which never run ahead of confirmed publishes); then stop the workers (no new
//! deliveries; batches in hand finish within the shutdown deadline, anything left is
//! released); then close the queue (flush and checkpoint). The caller turns a second signal
//! into an immediate exit ([`crate::signals`]).
//!
//! Invariants:
//! - [`Mode::Once`] returns only after every input read to its end at start and the queue
//!   has nothing pending (every message stored or dead-lettered), or with an error; a store
//!   outage longer than `worker.max_outage` is such an error (the runtime releases what it
//!   holds: still queued, no attempt spent, nothing dead-lettered).
//! - A runtime or input failure stops the rest in the same order and is returned; nothing
//!   is settled on its behalf (unsettled deliveries come back after restart).
//! - In [`Mode::Once`], idle workers wait at most 10 ms for a delivery before they check for
//!   the stop, and the queue is checked for being drained every 10 ms once the inputs are
//!   done, so a drained run ends within about 10 ms.
//! - Live counters are written to `<data-dir>/run-status.json` every 200 ms (write to a
//!   temporary file, rename), so `ackline stats` and the demo can read a running or killed
//!   run's last counters; they are figures for people, not a source of truth.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ackline_broker::embedded::EmbeddedBroker;
use ackline_broker::{Broker, BrokerStats};
use ackline_input::{
    FileInput, FileInputConfig, InputCounters, InputError, StdinConfig, StdinInput,
};
use ackline_queue::Db;
use ackline_store::Store;
use ackline_worker::{Process, Runtime, Stats, WorkerError};
use anyhow::{Context, anyhow};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::exit::usage;
use crate::output::Out;

/// With the inputs done, how often the queue is checked for being drained, and (in
/// [`Mode::Once`]) the longest an idle worker waits for a delivery before it checks for the
/// stop: a drained run ends within about this.
const ONCE_IDLE_POLL: Duration = Duration::from_millis(10);

/// The status file in the data directory.
pub const STATUS_FILE: &str = "run-status.json";

/// How long to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Read inputs to their current end, drain the queue, return.
    Once,
    /// Follow the files until the stop signal (stdin alone: until its end, then drain).
    Follow,
}

/// What a run did (this process's counters) and the queue at its end.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunReport {
    /// Still running (in the status file) or finished.
    pub running: bool,
    /// `once` or `follow`.
    pub mode: String,
    /// The queue.
    pub queue: String,
    /// The store's kind.
    pub store: String,
    /// Lines read and confirmed published by the inputs.
    pub lines_read: u64,
    /// Messages published to the queue.
    pub queued: u64,
    /// Records newly stored.
    pub stored: u64,
    /// Records the store already had (redeliveries after a crash, replays).
    pub duplicates: u64,
    /// Messages moved to the dead-letter queue.
    pub dead_lettered: u64,
    /// Deliveries nacked for a retry with backoff.
    pub retried: u64,
    /// Deliveries with attempt > 1.
    pub redelivered: u64,
    /// Times the store became unavailable (the workers paused and probed).
    pub store_outages: u64,
    /// Messages not yet settled, at the end.
    pub pending: u64,
    /// Entries in the dead-letter queue, at the end.
    pub dead_letters: u64,
    /// Milliseconds since the run started.
    pub elapsed_ms: u64,
    /// Ended by SIGTERM/SIGINT.
    pub stopped_by_signal: bool,
}

struct Live {
    inputs: Vec<Arc<InputCounters>>,
    workers: Arc<Stats>,
    broker: Arc<EmbeddedBroker>,
    base: RunReport,
    started: Instant,
}

impl Live {
    async fn report(&self, running: bool) -> RunReport {
        let q = self
            .broker
            .stats()
            .await
            .unwrap_or_else(|_| BrokerStats::default());
        let w = self.workers.snapshot();
        RunReport {
            running,
            lines_read: self.inputs.iter().map(|c| c.snapshot().lines).sum(),
            queued: q.published,
            stored: w.stored,
            duplicates: w.duplicates,
            dead_lettered: q.dead_lettered,
            retried: w.nacked,
            redelivered: q.redelivered,
            store_outages: w.outages,
            pending: q.pending,
            dead_letters: q.dead_letters,
            elapsed_ms: self.started.elapsed().as_millis() as u64,
            ..self.base.clone()
        }
    }
}

/// One line of live counters (the progress line and `ackline stats`).
pub fn progress_line(r: &RunReport) -> String {
    format!(
        "read {}  queued {}  stored {} (+{} dup)  dead-lettered {}  retried {}  pending {}{}",
        r.lines_read,
        r.queued,
        r.stored,
        r.duplicates,
        r.dead_lettered,
        r.retried,
        r.pending,
        if r.store_outages > 0 {
            format!("  store outages {}", r.store_outages)
        } else {
            String::new()
        }
    )
}

fn write_status(path: &Path, r: &RunReport) {
    let tmp = path.with_extension("json.tmp");
    let ok = serde_json::to_vec(r)
        .ok()
        .and_then(|v| std::fs::write(&tmp, v).ok())
        .and_then(|()| std::fs::rename(&tmp, path).ok());
    if ok.is_none() {
        tracing::debug!(path = %path.display(), "could not write the status file");
    }
}

/// Reads the status file of the last (or running) run, if any.
pub fn read_status(data_dir: &Path) -> Option<RunReport> {
    let bytes = std::fs::read(data_dir.join(STATUS_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn input_error(e: InputError) -> anyhow::Error {
    match e {
        InputError::Config { .. }
        | InputError::Pattern { .. }
        | InputError::GroupConflict { .. } => usage(e.to_string()),
        other => anyhow::Error::new(other).context("input failed"),
    }
}

/// Runs the pipeline with this store and processing step until `mode` says it is done, a
/// part fails, or `signal` turns true.
pub async fn run<S: Store, P: Process>(
    cfg: &Config,
    store: Arc<S>,
    process: Arc<P>,
    mode: Mode,
    mut signal: watch::Receiver<bool>,
    out: Out,
) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating data directory {}", cfg.data_dir.display()))?;
    let db = Db::open(&cfg.data_dir)
        .with_context(|| format!("opening data directory {}", cfg.data_dir.display()))?;
    let queue = db
        .queue(&cfg.queue, cfg.queue_options.clone())
        .with_context(|| format!("opening queue {}", cfg.queue))?;
    ackline_server::log_recovery(&queue);
    let at_open = {
        let s = queue.stats();
        (s.pending, s.dead_letters)
    };
    let broker = Arc::new(EmbeddedBroker::new(queue));

    let (in_tx, in_rx) = watch::channel(false);
    let mut inputs: JoinSet<Result<(), InputError>> = JoinSet::new();
    let mut counters = Vec::new();
    let files = !cfg.paths.is_empty() || !cfg.groups.is_empty();
    if files {
        // One file input for every group: one set of positions, and a file followed once even
        // if two groups match it (the groups carry their settings, `config::groups`).
        let mut fc = FileInputConfig::new(cfg.paths.clone(), cfg.data_dir.join("inputs"));
        fc.poll_interval = cfg.poll_interval;
        fc.start_at = cfg.start_at;
        fc.mtime_header = cfg.parser.year_rule == ackline_parse::YearRule::FileMtime;
        fc.multiline = cfg.multiline;
        fc.multiline_timeout = cfg.multiline_timeout;
        fc.groups = cfg
            .groups
            .iter()
            .map(|g| g.file_group(&cfg.parser))
            .collect();
        let mut fi = FileInput::new(broker.clone(), fc).map_err(input_error)?;
        counters.push(fi.counters());
        let rx = in_rx.clone();
        inputs.spawn(async move {
            match mode {
                Mode::Once => fi.run_once(rx).await.map(|_| ()),
                Mode::Follow => fi.run(rx).await.map(|_| ()),
            }
        });
    }
    if cfg.stdin {
        let sc = StdinConfig {
            multiline: cfg.multiline,
            multiline_timeout: cfg.multiline_timeout,
            ..StdinConfig::default()
        };
        let si = StdinInput::new(broker.clone(), sc).map_err(input_error)?;
        counters.push(si.counters());
        let rx = in_rx.clone();
        inputs.spawn(async move { si.run_stdin(rx).await.map(|_| ()) });
    }
    let follow_files = mode == Mode::Follow && files;

    let mut worker = cfg.worker.clone();
    if mode == Mode::Once {
        worker.max_outage = Some(cfg.max_outage);
        // An idle worker notices the stop within this, so a drained run ends at once.
        worker.batch_wait = worker.batch_wait.min(ONCE_IDLE_POLL);
    }
    let runtime = Runtime::new(broker.clone(), store.clone(), process, worker);
    if let Some(addr) = cfg.metrics_listen {
        crate::metrics::spawn(addr, runtime.stats(), signal.clone(), out).await?;
    }
    if let Some(addr) = cfg.console_listen {
        let host = crate::console::RunHost {
            queue: cfg.queue.clone(),
            broker: broker.clone(),
            stats: runtime.stats(),
            breaker: runtime.breaker(),
            workers: cfg.worker.workers,
            store_name: cfg.store_display(),
            store_url: cfg.store_url.clone(),
            store_options: cfg.store.clone(),
            tokens: cfg.server.tokens.clone(),
            at_open,
        };
        crate::console::spawn(addr, host, signal.clone(), out).await?;
    }
    let live = Arc::new(Live {
        inputs: counters,
        workers: runtime.stats(),
        broker: broker.clone(),
        base: RunReport {
            mode: match mode {
                Mode::Once => "once",
                Mode::Follow => "follow",
            }
            .into(),
            queue: cfg.queue.clone(),
            store: store.kind().into(),
            ..RunReport::default()
        },
        started,
    });
    let (w_tx, w_rx) = watch::channel(false);
    let mut rt_task = tokio::spawn(async move { runtime.run(w_rx).await });
    let mut rt_done = None;

    let (tick_tx, mut tick_rx) = watch::channel(false);
    let status_path: PathBuf = cfg.data_dir.join(STATUS_FILE);
    let ticker = {
        let live = live.clone();
        let pb = out.live();
        let status_path = status_path.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(200));
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = tick_rx.changed() => break,
                }
                let r = live.report(true).await;
                pb.set_message(progress_line(&r));
                pb.tick();
                write_status(&status_path, &r);
            }
            pb.finish_and_clear();
        })
    };

    let mut failure: Option<anyhow::Error> = None;
    let mut stopped_by_signal = false;
    loop {
        tokio::select! {
            r = signal.changed() => {
                if r.is_err() || *signal.borrow() {
                    stopped_by_signal = true;
                    break;
                }
            }
            Some(r) = inputs.join_next(), if !inputs.is_empty() => match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => { failure = Some(input_error(e)); break; }
                Err(e) => { failure = Some(anyhow!("input task failed: {e}")); break; }
            },
            r = &mut rt_task, if rt_done.is_none() => {
                rt_done = Some(r);
                break;
            }
            _ = tokio::time::sleep(ONCE_IDLE_POLL), if inputs.is_empty() && !follow_files => {
                let s = broker.stats().await.context("reading queue counts")?;
                if s.pending == 0 {
                    break;
                }
            }
        }
    }

    // Stop inputs first (they commit their positions), then the workers.
    let _ = in_tx.send(true);
    while let Some(r) = inputs.join_next().await {
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                failure.get_or_insert(input_error(e));
            }
            Err(e) => {
                failure.get_or_insert(anyhow!("input task failed: {e}"));
            }
        }
    }
    let _ = w_tx.send(true);
    let rt = match rt_done {
        Some(r) => r,
        None => rt_task.await,
    };
    match rt {
        Ok(Ok(())) => {}
        Ok(Err(e @ WorkerError::StoreOutage { .. })) => {
            failure.get_or_insert(anyhow::Error::new(e).context(
                "run --once gave up on the store (worker.max_outage); nothing was dead-lettered \
                 for the outage, run again once the store is back",
            ));
        }
        Ok(Err(e)) => {
            failure.get_or_insert(anyhow::Error::new(e).context("the workers stopped"));
        }
        Err(e) => {
            failure.get_or_insert(anyhow!("worker runtime task failed: {e}"));
        }
    }
    let _ = tick_tx.send(true);
    let _ = ticker.await;
    let mut report = live.report(false).await;
    report.stopped_by_signal = stopped_by_signal;
    write_status(&status_path, &report);
    drop(live);
    drop(broker);
    db.close();
    match failure {
        Some(e) => Err(e),
        None => Ok(report),
    }
}
