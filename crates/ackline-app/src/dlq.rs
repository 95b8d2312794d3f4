//! `ackline queue stats` and `ackline dlq list|show|replay|purge`: thin wrappers over the
//! engine's API, or with a broker (`--broker`, `broker.url`) over the broker traits
//! ([`broker`]).
//!
//! Invariants:
//! - Read-only commands (`queue stats`, `dlq list`, `dlq show`) open the data directory
//!   read-only ([`Db::open_read_only`]): they change no file, need no lock (so they work while
//!   `ackline run` or `serve` holds the directory, and on a read-only mount), and never create
//!   a queue: a queue that does not exist is reported (stats, show) or has an empty
//!   dead-letter queue (list).
//! - Replay and purge report how many entries they changed, once that is durable.
//! - Replay and purge act on every entry only with `--all`: a `--reason-contains` text that
//!   is empty or blank (which every reason would contain) is a usage error (exit 2), checked
//!   before anything is opened or connected.
//! - Without a broker configured, nothing but the data directory is touched; with one, the
//!   data directory is not opened at all.
//! - An entry's JSON carries its payload exactly (`payload_base64`) beside the readable
//!   `payload` (UTF-8, invalid bytes replaced); human output never writes a control
//!   character of an entry (ESC, NUL, newlines...) to the terminal: they are escaped
//!   ([`escape`]), as are invalid UTF-8 bytes.

mod broker;

use std::path::Path;

use ackline_queue::{
    Db, DeadLetter, DlqFilter, DlqSelector, Queue, QueueOptions, QueueStats, valid_queue_name,
};
use anyhow::{Context, anyhow};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Serialize;

use crate::cli::{BrokerFlags, DlqCommand, QueueCommand, Selection};
use crate::config::Config;
use crate::exit::usage;
use crate::output::Out;

pub fn open_db(dir: &Path) -> anyhow::Result<Db> {
    Db::open(dir).map_err(|e| match e {
        ackline_queue::OpenError::Locked { .. } => anyhow!(
            "{e}. Stop the ackline process that holds it first, or run the command against that process with --broker http://HOST:PORT (ackline serve)"
        ),
        e => anyhow::Error::new(e).context(format!("opening data directory {}", dir.display())),
    })
}

/// Opens the data directory for inspection: no lock, no file changed. `None` when it holds
/// no queues at all (it may not exist yet).
pub fn open_db_read_only(dir: &Path) -> anyhow::Result<Option<Db>> {
    if !dir.join("queues").is_dir() {
        if dir.exists() && !dir.is_dir() {
            return Err(anyhow!(
                "data directory {} is not a directory",
                dir.display()
            ));
        }
        return Ok(None);
    }
    Db::open_read_only(dir)
        .with_context(|| format!("opening data directory {} for reading", dir.display()))
        .map(Some)
}

fn check_name(name: &str) -> anyhow::Result<()> {
    if valid_queue_name(name) {
        Ok(())
    } else {
        Err(usage(format!(
            "invalid queue name {name:?}: use 1 to 128 of A-Z a-z 0-9 . _ -"
        )))
    }
}

/// Opens `name` if it exists.
pub fn existing(db: &Db, name: &str) -> anyhow::Result<Option<Queue>> {
    check_name(name)?;
    let names = db.queue_names().context("listing queues")?;
    if !names.iter().any(|n| n == name) {
        return Ok(None);
    }
    let q = db
        .queue(name, QueueOptions::default())
        .with_context(|| format!("opening queue {name}"))?;
    ackline_server::log_recovery(&q);
    Ok(Some(q))
}

#[derive(Debug, Serialize)]
struct All {
    queues: Vec<StatsView>,
}

#[derive(Debug, Serialize)]
pub struct StatsView {
    queue: String,
    pending: u64,
    ready: u64,
    leased: u64,
    delayed: u64,
    dead_letters: u64,
    pending_bytes: u64,
    /// Bytes the dead letters hold; with `pending_bytes` what the queue's byte limit counts.
    dead_letter_bytes: u64,
    segments: u64,
    next_seq: u64,
    recovery_micros: u64,
    torn_tails_truncated: usize,
    corrupt_ranges: usize,
    corrupt_messages: u64,
    duplicates: u64,
}

pub fn stats_view(q: &Queue) -> StatsView {
    let s: QueueStats = q.stats();
    let r = q.recovery_report();
    StatsView {
        queue: q.name().to_string(),
        pending: s.pending,
        ready: s.ready,
        leased: s.leased,
        delayed: s.delayed,
        dead_letters: s.dead_letters,
        pending_bytes: s.pending_bytes,
        dead_letter_bytes: s.dead_letter_bytes,
        segments: s.segments,
        next_seq: s.next_seq,
        recovery_micros: r.micros,
        torn_tails_truncated: r.truncated.len(),
        corrupt_ranges: r.corrupt.len(),
        corrupt_messages: s.corrupt_messages,
        duplicates: s.duplicates,
    }
}

/// `ackline queue ...`
pub fn queue_cmd(
    c: &QueueCommand,
    dir: &Path,
    config_file: Option<&Path>,
    out: Out,
) -> anyhow::Result<()> {
    let QueueCommand::Stats {
        queue,
        queue_flag,
        broker: flags,
    } = c;
    let queue = queue.as_ref().or(queue_flag.as_ref());
    let cfg = broker::load(flags, dir, config_file)?;
    if let Some(url) = &cfg.broker {
        return broker::queue_stats(url, &cfg, flags, queue.map(String::as_str), out);
    }
    let db = open_db_read_only(dir)?;
    let names = match (queue, &db) {
        (Some(n), _) => {
            check_name(n)?;
            vec![n.clone()]
        }
        (None, Some(db)) => db.queue_names().context("listing queues")?,
        (None, None) => Vec::new(),
    };
    let mut views = Vec::new();
    for n in &names {
        let q = match &db {
            Some(db) => existing(db, n)?,
            None => None,
        };
        let q = q.ok_or_else(|| anyhow!("no queue named {n} in {}", dir.display()))?;
        views.push(stats_view(&q));
    }
    let all = All { queues: views };
    out.emit(&all, || {
        let mut s = String::new();
        if all.queues.is_empty() {
            s += &format!("no queues in {}\n", dir.display());
        }
        for v in &all.queues {
            s += &format!(
                "{}: {} pending ({} ready, {} leased, {} delayed), {} dead letters, {} bytes pending, {} bytes in dead letters, {} segments, next position {}\n  recovery {:.2} ms, {} torn tails truncated, {} corrupt ranges, {} messages dead-lettered as corrupt\n",
                v.queue,
                v.pending,
                v.ready,
                v.leased,
                v.delayed,
                v.dead_letters,
                v.pending_bytes,
                v.dead_letter_bytes,
                v.segments,
                v.next_seq,
                v.recovery_micros as f64 / 1000.0,
                v.torn_tails_truncated,
                v.corrupt_ranges,
                v.corrupt_messages
            );
        }
        s
    })
}

#[derive(Debug, Serialize)]
struct EntryView {
    key: u64,
    id: String,
    attempts: u32,
    enqueued_at: u64,
    first_failure: u64,
    last_failure: u64,
    reason: String,
    last_error: String,
    headers: Vec<(String, String)>,
    payload_bytes: usize,
    /// The payload as UTF-8 (invalid bytes replaced): for reading.
    payload: String,
    /// The payload exactly, standard base64.
    payload_base64: String,
    /// The payload exactly, for human output: control characters and invalid bytes escaped.
    #[serde(skip)]
    payload_escaped: String,
}

impl From<ackline_broker::DeadLetter> for EntryView {
    fn from(d: ackline_broker::DeadLetter) -> Self {
        EntryView {
            key: d.key,
            id: d.id,
            attempts: d.attempts,
            enqueued_at: d.enqueued_at,
            first_failure: d.first_failure,
            last_failure: d.last_failure,
            reason: d.reason,
            last_error: d.last_error,
            headers: d.headers,
            payload_bytes: d.payload.len(),
            payload: String::from_utf8_lossy(&d.payload).into_owned(),
            payload_base64: B64.encode(&d.payload),
            payload_escaped: escape(&d.payload),
        }
    }
}

impl From<DeadLetter> for EntryView {
    fn from(d: DeadLetter) -> Self {
        ackline_broker::DeadLetter::from(d).into()
    }
}

fn selector(sel: &Selection) -> DlqSelector {
    if sel.all {
        DlqSelector::All
    } else if !sel.keys.is_empty() {
        DlqSelector::Keys(sel.keys.clone())
    } else if !sel.ids.is_empty() {
        DlqSelector::Ids(sel.ids.clone())
    } else {
        DlqSelector::Filter(DlqFilter {
            reason_contains: sel.reason_contains.clone(),
            ..DlqFilter::default()
        })
    }
}

/// `bytes` made safe for a terminal: valid UTF-8 as it is except control characters (C0,
/// DEL, C1), written `\0`, `\t`, `\n`, `\r` or `\xHH`, bidirectional and zero-width format
/// characters, written `\u{HHHH}`, and each invalid byte, written `\xHH`. Backslashes are kept as they are, so the escaped text is for
/// reading; the exact bytes are in `--json`'s `payload_base64`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\0' => out.push_str("\\0"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
                // Bidirectional and zero-width format characters reorder or hide text.
                '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
                    out.push_str(&format!("\\u{{{:04x}}}", c as u32));
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// [`escape`] for text.
fn esc(s: &str) -> String {
    escape(s.as_bytes())
}

/// Refuses a selection that names every entry without `--all`: an empty or blank
/// `--reason-contains` (every reason contains it).
fn check_selection(sel: &Selection) -> anyhow::Result<()> {
    match &sel.reason_contains {
        Some(t) if t.trim().is_empty() => Err(usage(
            "--reason-contains needs a non-blank TEXT (an empty one matches every entry; use --all for that)",
        )),
        _ => Ok(()),
    }
}

/// The `--broker` flags of a `dlq` subcommand.
fn broker_flags(c: &DlqCommand) -> &BrokerFlags {
    match c {
        DlqCommand::List { broker, .. }
        | DlqCommand::Show { broker, .. }
        | DlqCommand::Replay { broker, .. }
        | DlqCommand::Purge { broker, .. } => broker,
    }
}

/// `ackline dlq ...`; without `--queue`, the pipeline's queue (`queue.name`).
pub fn dlq_cmd(
    c: &DlqCommand,
    dir: &Path,
    config_file: Option<&Path>,
    out: Out,
) -> anyhow::Result<()> {
    if let DlqCommand::Replay { sel, .. } | DlqCommand::Purge { sel, .. } = c {
        check_selection(sel)?;
    }
    let flags = broker_flags(c);
    let cfg: Config = broker::load(flags, dir, config_file)?;
    if let Some(url) = &cfg.broker {
        return broker::dlq(c, url, &cfg, flags, out);
    }
    let default_queue = cfg.queue.as_str();
    let db = if matches!(c, DlqCommand::List { .. } | DlqCommand::Show { .. }) {
        open_db_read_only(dir)?
    } else {
        Some(open_db(dir)?)
    };
    let existing = |db: &Option<Db>, queue: &str| match db {
        Some(db) => existing(db, queue),
        None => check_name(queue).map(|()| None),
    };
    let pick = |q: &Option<String>| q.clone().unwrap_or_else(|| default_queue.to_string());
    match c {
        DlqCommand::List {
            queue,
            after,
            limit,
            ..
        } => {
            let queue = &pick(queue);
            if *limit == 0 {
                return Err(usage("--limit must be at least 1"));
            }
            let entries: Vec<EntryView> = match existing(&db, queue)? {
                None => Vec::new(),
                Some(q) => q
                    .dead_letters()
                    .list(*after, *limit)
                    .with_context(|| format!("listing the dead-letter queue of {queue}"))?
                    .into_iter()
                    .map(EntryView::from)
                    .collect(),
            };
            emit_list(out, None, queue, &entries, *limit)
        }
        DlqCommand::Show { queue, key, id, .. } => {
            let queue = &pick(queue);
            let q = existing(&db, queue)?
                .ok_or_else(|| anyhow!("no queue named {queue} in {}", dir.display()))?;
            let found: Vec<EntryView> = match (key, id) {
                (Some(k), _) => q
                    .dead_letters()
                    .get(*k)
                    .with_context(|| format!("reading dead-letter entry {k} of {queue}"))?
                    .into_iter()
                    .map(EntryView::from)
                    .collect(),
                (None, Some(id)) => q
                    .dead_letters()
                    .find(id)
                    .with_context(|| {
                        format!("finding id {id} in the dead-letter queue of {queue}")
                    })?
                    .into_iter()
                    .map(EntryView::from)
                    .collect(),
                (None, None) => return Err(usage("give a KEY or --id ID")),
            };
            emit_show(out, None, queue, *key, id.as_deref(), &found)
        }
        DlqCommand::Replay { queue, sel, .. } | DlqCommand::Purge { queue, sel, .. } => {
            let queue = &pick(queue);
            let replay = matches!(c, DlqCommand::Replay { .. });
            let verb = if replay { "replayed" } else { "purged" };
            let n = match existing(&db, queue)? {
                None => 0,
                Some(q) => {
                    let s = selector(sel);
                    if replay {
                        q.dead_letters()
                            .replay(&s)
                            .with_context(|| format!("replaying dead letters of {queue}"))?
                    } else {
                        q.dead_letters()
                            .purge(&s)
                            .with_context(|| format!("purging dead letters of {queue}"))?
                    }
                }
            };
            emit_done(out, None, queue, verb, n)
        }
    }
}

/// `dlq list`'s output; `next_after` is set when the page is full (`limit` entries).
/// `broker` (redacted) appears in the JSON of the broker path only.
fn emit_list(
    out: Out,
    broker: Option<&str>,
    queue: &str,
    entries: &[EntryView],
    limit: usize,
) -> anyhow::Result<()> {
    let next_after = if entries.len() == limit {
        entries.last().map(|e| e.key)
    } else {
        None
    };
    #[derive(Serialize)]
    struct List<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        broker: Option<&'a str>,
        queue: &'a str,
        entries: &'a [EntryView],
        next_after: Option<u64>,
    }
    out.emit(
        &List {
            broker,
            queue,
            entries,
            next_after,
        },
        || {
            let mut s = String::new();
            if entries.is_empty() {
                s += &format!("dead-letter queue of {queue}: no entries\n");
            }
            for e in entries {
                s += &format!(
                    "{:>10}  {:<24} attempts {:<3} {}",
                    e.key,
                    esc(&e.id),
                    e.attempts,
                    esc(&e.reason)
                );
                // A reject's reason is also its last error: say it once.
                if e.last_error != e.reason {
                    s += &format!(" (last error: {})", esc(&e.last_error));
                }
                s.push('\n');
            }
            if let Some(k) = next_after {
                s += &format!("more: --after {k}\n");
            }
            s
        },
    )
}

/// `dlq show`'s output; nothing found (by `key` or `id`) is an error.
fn emit_show(
    out: Out,
    broker: Option<&str>,
    queue: &str,
    key: Option<u64>,
    id: Option<&str>,
    found: &[EntryView],
) -> anyhow::Result<()> {
    if found.is_empty() {
        let what = key.map_or_else(
            || format!("id {}", id.unwrap_or("")),
            |k| format!("key {k}"),
        );
        return Err(anyhow!("no dead-letter entry with {what} in queue {queue}"));
    }
    #[derive(Serialize)]
    struct Show<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        broker: Option<&'a str>,
        queue: &'a str,
        entries: &'a [EntryView],
    }
    out.emit(
        &Show {
            broker,
            queue,
            entries: found,
        },
        || {
            let mut s = String::new();
            for e in found {
                s += &format!(
                    "key {}\n  id           {}\n  attempts     {}\n  enqueued at  {} (Unix ms)\n  failures     first {} last {} (Unix ms)\n  reason       {}\n  last error   {}\n",
                    e.key,
                    esc(&e.id),
                    e.attempts,
                    e.enqueued_at,
                    e.first_failure,
                    e.last_failure,
                    esc(&e.reason),
                    esc(&e.last_error)
                );
                for (k, v) in &e.headers {
                    s += &format!("  header       {}: {}\n", esc(k), esc(v));
                }
                s += &format!(
                    "  payload      {} bytes: {}\n",
                    e.payload_bytes, e.payload_escaped
                );
            }
            s
        },
    )
}

/// `dlq replay` and `dlq purge`'s output: how many entries were `verb`.
fn emit_done(
    out: Out,
    broker: Option<&str>,
    queue: &str,
    verb: &str,
    count: usize,
) -> anyhow::Result<()> {
    #[derive(Serialize)]
    struct Done<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        broker: Option<&'a str>,
        queue: &'a str,
        action: &'a str,
        count: usize,
    }
    out.emit(
        &Done {
            broker,
            queue,
            action: verb,
            count,
        },
        || format!("{verb} {count} dead-letter entries of {queue}\n"),
    )
}
