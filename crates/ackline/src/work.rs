//! `ackline work`: split mode's worker. [`ackline_worker::Runtime`] over
//! [`ackline_http::HttpBroker`] (the lease API of `ackline serve`) into a store, until SIGTERM
//! or SIGINT.
//!
//! Invariants:
//! - A delivery is acked only after the store committed its record (the runtime's rule), and
//!   the store is idempotent by message id, so a worker killed at any moment (SIGKILL
//!   included) loses nothing and duplicates nothing: its leases expire on the server and
//!   another worker stores what it had not acked; what it had stored is skipped.
//! - Graceful stop as in `run`: the first signal stops taking deliveries, the batches in hand
//!   finish within `worker.shutdown_deadline` (the rest is released), exit 0.
//! - Configuration errors (a bad flag value, a bad `--queue` URL) exit 2 before anything is
//!   opened. A server not reachable yet at start is waited for (probed with backoff up to
//!   5 s, a signal ends the wait with exit 0), so workers may start before `serve`; a refused
//!   token (401/403) is a runtime error, exit 1.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ackline_http::HttpBroker;
use ackline_parse::Parser;
use ackline_store::Store;
use ackline_worker::{ParseProcess, Runtime};
use anyhow::Context;
use serde::Serialize;

use crate::cli::{PipelineFlags, WorkArgs};
use crate::config::{self, Env};
use crate::exit::usage;
use crate::output::Out;

#[derive(Debug, Serialize)]
struct Report {
    queue: String,
    store: String,
    received: u64,
    stored: u64,
    duplicates: u64,
    rejected: u64,
    retried: u64,
    store_outages: u64,
    elapsed_ms: u64,
}

/// `ackline work`.
pub fn run(
    a: &WorkArgs,
    data_dir: &Path,
    config_file: Option<&Path>,
    out: Out,
) -> anyhow::Result<()> {
    let flags = PipelineFlags {
        format: a.format.clone(),
        strict: a.strict,
        lenient: a.lenient,
        workers: a.workers.clone(),
        batch_size: a.batch_size.clone(),
        prefetch: a.prefetch.clone(),
        lease: a.lease.clone(),
        shutdown_deadline: a.shutdown_deadline.clone(),
        retry_base: a.retry_base.clone(),
        retry_factor: a.retry_factor.clone(),
        retry_cap: a.retry_cap.clone(),
        store: a.store.clone(),
        ..PipelineFlags::default()
    };
    let cfg = config::load(data_dir, config_file, &flags, &Env::process())?;
    let broker = HttpBroker::connect(&a.queue_url, a.token.clone())
        .map_err(|e| usage(format!("invalid --queue: {e}")))?;
    let queue = broker.queue().to_string();
    let rt = crate::run::tokio_runtime()?;
    let started = Instant::now();
    let report = rt.block_on(async {
        let signal = crate::signals::install()?;
        if let Some(parent) = cfg.sqlite_path().as_deref().and_then(Path::parent)
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let store = ackline_store::open(&cfg.store_url, &cfg.store)
            .await
            .with_context(|| format!("opening store {}", cfg.store_url))?;
        let kind = store.kind().to_string();
        let process = ParseProcess::new(Parser::new(cfg.parser));
        let broker_probe = broker.clone();
        let runtime = Runtime::new(
            Arc::new(broker),
            Arc::new(store),
            Arc::new(process),
            cfg.worker.clone(),
        );
        if !wait_for_server(&broker_probe, signal.clone(), out).await? {
            return anyhow::Ok(None);
        }
        let stats = runtime.stats();
        out.note(&format!(
            "ackline work: {} -> {} ({} workers)",
            a.queue_url, cfg.store_url, cfg.worker.workers
        ));
        runtime.run(signal).await.context("the workers stopped")?;
        let s = stats.snapshot();
        anyhow::Ok(Some(Report {
            queue,
            store: kind,
            received: s.received,
            stored: s.stored,
            duplicates: s.duplicates,
            rejected: s.rejected,
            retried: s.nacked,
            store_outages: s.outages,
            elapsed_ms: started.elapsed().as_millis() as u64,
        }))
    })?;
    let Some(report) = report else {
        out.note("ackline work: stopped before the server answered");
        return Ok(());
    };
    out.emit(&report, || {
        format!(
            "ackline work: stopped after {:.1} s: received {}, stored {} (+{} dup), dead-lettered {}, retried {}, store outages {}\n",
            report.elapsed_ms as f64 / 1000.0,
            report.received,
            report.stored,
            report.duplicates,
            report.rejected,
            report.retried,
            report.store_outages
        )
    })
}

/// Probes the server until it answers (true) or a signal arrives (false); a refusal that
/// waiting cannot fix (bad token, unknown queue) is an error.
async fn wait_for_server(
    broker: &HttpBroker,
    mut signal: tokio::sync::watch::Receiver<bool>,
    out: Out,
) -> anyhow::Result<bool> {
    use ackline_broker::{Broker, BrokerError};
    let mut delay = Duration::from_millis(100);
    let mut noted = false;
    loop {
        match broker.stats().await {
            Ok(_) => return Ok(true),
            Err(BrokerError::Unavailable { reason, .. }) => {
                if !noted {
                    out.note(&format!("ackline work: waiting for the server ({reason})"));
                    noted = true;
                }
            }
            Err(e) => return Err(anyhow::Error::new(e).context("the server refused")),
        }
        tokio::select! {
            _ = signal.wait_for(|s| *s) => return Ok(false),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
