//! The pipeline demo's books: what was written to the log files against what the store and
//! the dead-letter queue hold at the end.
//!
//! Rules (each a check that can fail):
//! - **lost**: a line written (so published under its deterministic id) that is neither a row
//!   of the store nor in the dead-letter queue.
//! - **duplicates in store**: rows minus distinct ids (the store's primary key makes this 0;
//!   it is counted, not assumed).
//! - **unexpected rows**: rows whose id no written line has.
//! - **malformed stored**: a line the strict parser rejects found in the store.
//! - **poison stored**: a line that fails on every attempt found in the store.
//! - **pending at end**: messages still unsettled after the final run drained the queue.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use ackline_queue::{Db, QueueOptions};
use anyhow::Context;
use serde::Serialize;

use super::traffic::Kind;

/// The books.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Books {
    /// Lines written to the log files, each published under its own id.
    pub published: u64,
    /// Of those: lines that parse (stored expected).
    pub valid: u64,
    /// Lines that fail once before they are stored.
    pub flaky: u64,
    /// Lines that fail on every attempt.
    pub poison: u64,
    /// Lines the strict parser rejects.
    pub malformed: u64,
    /// Rows in the store.
    pub stored: u64,
    /// Dead-letter entries.
    pub dead_lettered: u64,
    /// Dead-letter entries by reason.
    pub dead_lettered_by_reason: BTreeMap<String, u64>,
    /// Deliveries with attempt > 1, summed over runs (killed runs: their last report).
    pub redelivered: u64,
    /// Deliveries nacked for a retry, summed over runs.
    pub retried: u64,
    /// Records the store already had when written again (redeliveries after kills).
    pub duplicates_skipped: u64,
    /// Times the store became unavailable and the workers paused.
    pub store_outages: u64,
    /// Rows minus distinct ids (must be 0).
    pub duplicates_in_store: u64,
    /// Dead-letter entries minus distinct ids (must be 0: the queue never enqueues an id
    /// that is pending or dead-lettered).
    pub duplicates_in_dlq: u64,
    /// Rows with an id no written line has (must be 0).
    pub unexpected_rows: u64,
    /// Written lines neither stored nor dead-lettered (must be 0).
    pub lost: u64,
    /// Malformed lines stored (must be 0 in strict mode).
    pub malformed_stored: u64,
    /// Poison lines stored (must be 0).
    pub poison_stored: u64,
    /// Lines both stored and dead-lettered (possible only when kills used up a stored
    /// line's attempts; not a loss and not a duplicate).
    pub stored_and_dead_lettered: u64,
    /// Messages unsettled at the end (must be 0).
    pub pending_at_end: u64,
    /// Up to 10 lost ids, for the report.
    pub lost_examples: Vec<String>,
    /// Whether every check passed.
    pub balanced: bool,
    /// The checks that failed.
    pub failures: Vec<String>,
}

/// Figures the runs reported.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunTotals {
    /// Redeliveries.
    pub redelivered: u64,
    /// Nacks.
    pub retried: u64,
    /// Duplicates skipped by the store.
    pub duplicates: u64,
    /// Store outages.
    pub outages: u64,
}

fn reason_group(reason: &str) -> String {
    if reason.starts_with("parse error") {
        "parse error (strict)".into()
    } else {
        reason
            .split(':')
            .next()
            .unwrap_or(reason)
            .trim()
            .to_string()
    }
}

/// Reads the store and the queue and balances them against `expected` (id → kind).
pub fn check(
    data_dir: &Path,
    db_path: &Path,
    table: &str,
    queue: &str,
    expected: &HashMap<String, Kind>,
    totals: RunTotals,
) -> anyhow::Result<Books> {
    let conn =
        rusqlite::Connection::open_with_flags(db_path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("opening {}", db_path.display()))?;
    let (rows, distinct): (i64, i64) = conn
        .query_row(
            &format!("SELECT count(*), count(DISTINCT id) FROM {table}"),
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .context("counting rows")?;
    let mut stmt = conn
        .prepare(&format!("SELECT id FROM {table}"))
        .context("listing ids")?;
    let stored: HashSet<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .context("listing ids")?
        .collect::<Result<_, _>>()
        .context("reading ids")?;

    let db = Db::open(data_dir).with_context(|| format!("opening {}", data_dir.display()))?;
    let q = db
        .queue(queue, QueueOptions::default())
        .with_context(|| format!("opening queue {queue}"))?;
    let pending = q.stats().pending;
    let mut dead: HashMap<String, String> = HashMap::new();
    let mut dead_entries = 0u64;
    let mut after = None;
    loop {
        let page = q
            .dead_letters()
            .list(after, 1000)
            .context("listing dead letters")?;
        let Some(last) = page.last() else { break };
        after = Some(last.key);
        for d in page {
            dead_entries += 1;
            dead.insert(d.id, d.reason);
        }
    }
    drop(q);
    db.close();

    let mut b = Books {
        published: expected.len() as u64,
        stored: rows as u64,
        dead_lettered: dead.len() as u64,
        duplicates_in_store: (rows - distinct).max(0) as u64,
        duplicates_in_dlq: dead_entries - dead.len() as u64,
        pending_at_end: pending,
        redelivered: totals.redelivered,
        retried: totals.retried,
        duplicates_skipped: totals.duplicates,
        store_outages: totals.outages,
        ..Books::default()
    };
    for reason in dead.values() {
        *b.dead_lettered_by_reason
            .entry(reason_group(reason))
            .or_default() += 1;
    }
    for (id, kind) in expected {
        match kind {
            Kind::Valid => b.valid += 1,
            Kind::Flaky => b.flaky += 1,
            Kind::Poison => b.poison += 1,
            Kind::Malformed => b.malformed += 1,
        }
        let s = stored.contains(id);
        let d = dead.contains_key(id);
        if !s && !d {
            b.lost += 1;
            if b.lost_examples.len() < 10 {
                b.lost_examples.push(id.clone());
            }
        }
        if s && d {
            b.stored_and_dead_lettered += 1;
        }
        if s && *kind == Kind::Malformed {
            b.malformed_stored += 1;
        }
        if s && *kind == Kind::Poison {
            b.poison_stored += 1;
        }
    }
    b.unexpected_rows = stored
        .iter()
        .filter(|id| !expected.contains_key(*id))
        .count() as u64;
    let mut fail = |bad: bool, what: String| {
        if bad {
            b.failures.push(what);
        }
    };
    fail(b.lost > 0, format!("{} lines lost", b.lost));
    fail(
        b.duplicates_in_dlq > 0,
        format!("{} ids dead-lettered more than once", b.duplicates_in_dlq),
    );
    fail(
        b.duplicates_in_store > 0,
        format!("{} duplicate rows in the store", b.duplicates_in_store),
    );
    fail(
        b.unexpected_rows > 0,
        format!("{} rows nobody wrote", b.unexpected_rows),
    );
    fail(
        b.malformed_stored > 0,
        format!(
            "{} malformed lines stored in strict mode",
            b.malformed_stored
        ),
    );
    fail(
        b.poison_stored > 0,
        format!("{} always-failing lines stored", b.poison_stored),
    );
    fail(
        b.pending_at_end > 0,
        format!("{} messages still pending", b.pending_at_end),
    );
    b.balanced = b.failures.is_empty();
    Ok(b)
}
