//! `ackline stats`: the pipeline at a glance: its queue, its dead letters, the records stored,
//! and the last (or running) run's counters.
//!
//! Invariants:
//! - Read-only: creates neither the data directory, nor the queue, nor the database.
//! - While `ackline run` holds the data directory, the queue cannot be opened; the run's
//!   status file (refreshed every 200 ms) is shown instead, and says it is live.

use std::path::Path;

use ackline_queue::Db;
use ackline_store::{SqliteStore, StoreUrl};
use anyhow::Context;
use serde::Serialize;

use crate::cli::PipelineFlags;
use crate::config::{self, Env};
use crate::dlq::{StatsView, existing, open_db_read_only, stats_view};
use crate::output::Out;
use crate::pipeline::{RunReport, progress_line, read_status};

#[derive(Debug, Serialize)]
struct View {
    data_dir: String,
    queue_name: String,
    /// The queue's counts; absent while a run holds the directory or if it does not exist.
    queue: Option<StatsView>,
    /// A run holds the data directory now.
    in_use: bool,
    store: String,
    records: Option<u64>,
    last_run: Option<RunReport>,
}

/// `ackline stats`.
pub fn run(data_dir: &Path, config_file: Option<&Path>, out: Out) -> anyhow::Result<()> {
    let cfg = config::load(
        data_dir,
        config_file,
        &PipelineFlags::default(),
        &Env::process(),
    )?;
    // Read-only: works while `ackline run` holds the directory, and changes nothing.
    let in_use = Db::in_use(data_dir);
    let mut queue = None;
    // A data directory that does not exist yet is shown as empty; one that cannot be a
    // directory (a file, or a path through a file) is an error.
    match std::fs::metadata(data_dir) {
        Ok(md) if !md.is_dir() => {
            anyhow::bail!("data directory {} is not a directory", data_dir.display())
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("data directory {}", data_dir.display()));
        }
        _ => {}
    }
    if let Some(db) = open_db_read_only(data_dir)?
        && let Some(q) = existing(&db, &cfg.queue)?
    {
        queue = Some(stats_view(&q));
    }
    let records = match StoreUrl::parse(&cfg.store_url) {
        Ok(StoreUrl::Sqlite(p)) if p.is_file() => {
            let rt = crate::runtime::build()?;
            Some(rt.block_on(async {
                let s = SqliteStore::open(&p, &cfg.store)
                    .await
                    .with_context(|| format!("opening {}", p.display()))?;
                s.count().await.context("counting records")
            })?)
        }
        _ => None,
    };
    let v = View {
        data_dir: data_dir.display().to_string(),
        queue_name: cfg.queue.clone(),
        queue,
        in_use,
        store: cfg.store_display(),
        records,
        last_run: read_status(data_dir),
    };
    out.emit(&v, || {
        let mut s = String::new();
        match &v.queue {
            Some(q) => {
                s += &serde_json::to_value(q)
                    .map(|j| {
                        format!(
                            "queue {}: {} pending ({} ready, {} leased, {} delayed), {} dead letters\n",
                            v.queue_name, j["pending"], j["ready"], j["leased"], j["delayed"], j["dead_letters"]
                        )
                    })
                    .unwrap_or_default();
            }
            None if v.in_use => {
                s += &format!("queue {}: in use by a running `ackline run` (see its live counters below)\n", v.queue_name);
            }
            None => s += &format!("queue {}: does not exist yet in {}\n", v.queue_name, v.data_dir),
        }
        match v.records {
            Some(n) => s += &format!("store {}: {n} records\n", v.store),
            None => s += &format!("store {}: no records database yet (or not SQLite)\n", v.store),
        }
        if let Some(r) = &v.last_run {
            s += &format!(
                "{} run ({}): {}\n",
                if r.running && v.in_use { "running" } else { "last" },
                r.mode,
                progress_line(r)
            );
        }
        s
    })
}
