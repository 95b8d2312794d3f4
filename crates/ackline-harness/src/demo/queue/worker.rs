//! The queue demo's worker process (`ackline demo queue-worker`, hidden): one producer thread
//! and N consumer threads on the queue `demo`, journaling what they know for certain (see
//! [`super::journal`]) so the parent can check the books after killing it with SIGKILL.
//!
//! Invariants:
//! - Message `m-<n>` is published at queue position `n`: the producer continues from the
//!   queue's `next_seq` after a restart, so a publish that became durable but whose
//!   confirmation was lost in a crash is never published a second time under its id.
//! - A `P` line is journaled (and fsynced) only after `publish` returned Ok; an `A`/`R` line
//!   only after the settlement's commit resolved Ok; `D` lines right after `receive`.
//! - Decisions are a pure function of the payload, the id, the attempt and the seed, so a
//!   seeded run can be replayed: payload `POISON..` is rejected, `FLAKY..` is always nacked
//!   (so it reaches `max attempts exceeded`), about 5% of other deliveries are nacked with a
//!   1-20 ms delay, the rest acked.
//! - The process exits 0 once every message is published and nothing is pending; it writes
//!   `run-NNNN-start.json` (recovery report, counts at open) as soon as the queue is open.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ackline_queue::{Commit, Consumer, Db, Delivery, NewMessage, Queue, QueueOptions};
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::journal::{self, Kind};
use crate::cli::WorkerArgs;

/// The demo's queue.
pub const QUEUE: &str = "demo";
const PUBLISH_BATCH: u64 = 50;
const RECEIVE_MAX: usize = 64;
const LEASE: Duration = Duration::from_secs(60);

/// What a worker found when it opened the queue (written to `run-NNNN-start.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartInfo {
    /// The run.
    pub run: u32,
    /// Recovery time the engine reported, microseconds.
    pub recovery_micros: u64,
    /// Time to open the data directory and the queue, microseconds.
    pub open_micros: u64,
    /// Records replayed from the log.
    pub records_replayed: u64,
    /// Recovery started from a checkpoint.
    pub from_checkpoint: bool,
    /// Torn tails truncated (file, offset, length, reason).
    pub truncated: Vec<String>,
    /// Damaged ranges skipped.
    pub corrupt: Vec<String>,
    /// The checkpoint could not be used, and why.
    pub checkpoint_error: Option<String>,
    /// Pending messages at open.
    pub pending: u64,
    /// Dead-letter entries at open.
    pub dead_letters: u64,
    /// Next queue position at open.
    pub next_seq: u64,
}

/// The options the demo's queue runs with.
pub fn queue_options() -> QueueOptions {
    QueueOptions {
        // Small segments and checkpoints so that crashes hit segment rolls and checkpoints.
        segment_bytes: 256 << 10,
        checkpoint_bytes: 512 << 10,
        ..QueueOptions::default()
    }
}

/// The payload of message `n`.
pub fn payload(n: u64) -> Vec<u8> {
    let kind = if n % 101 == 7 {
        "POISON"
    } else if n % 97 == 3 {
        "FLAKY"
    } else {
        "ok"
    };
    let mut p = format!("{kind} m-{n} ").into_bytes();
    p.resize(64, b'.');
    p
}

enum Action {
    Ack,
    Nack(Duration),
    Reject,
}

fn mix(mut x: u64) -> u64 {
    // splitmix64 finaliser
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn decide(seed: u64, d: &Delivery) -> Action {
    if d.payload.starts_with(b"POISON") {
        return Action::Reject;
    }
    if d.payload.starts_with(b"FLAKY") {
        return Action::Nack(Duration::from_millis(1));
    }
    let n: u64 =
        d.id.strip_prefix("m-")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
    let h = mix(seed ^ mix(n) ^ u64::from(d.tag.attempt).rotate_left(40));
    if h % 100 < 5 {
        Action::Nack(Duration::from_millis((h >> 8) % 20 + 1))
    } else {
        Action::Ack
    }
}

/// Runs the worker until everything is published and settled.
pub fn run(a: &WorkerArgs, data_dir: &Path) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let db = Db::open(data_dir).with_context(|| format!("opening {}", data_dir.display()))?;
    let q = db
        .queue(QUEUE, queue_options())
        .with_context(|| format!("opening queue {QUEUE}"))?;
    let open_micros = t0.elapsed().as_micros() as u64;
    write_start(a, &q, open_micros)?;

    let stop = Arc::new(AtomicBool::new(false));
    let produced = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    {
        let (q, stop, produced) = (q.clone(), stop.clone(), produced.clone());
        let jw = journal::Writer::create(journal::path(&a.journal, a.run, "producer"))?;
        let total = a.messages;
        handles.push(std::thread::spawn(move || {
            let r = produce(&q, jw, total, &stop);
            produced.store(r.is_ok(), Ordering::SeqCst);
            if r.is_err() {
                stop.store(true, Ordering::SeqCst);
            }
            r
        }));
    }
    for i in 0..a.consumers.max(1) {
        let (q, stop, produced) = (q.clone(), stop.clone(), produced.clone());
        let jw =
            journal::Writer::create(journal::path(&a.journal, a.run, &format!("consumer-{i}")))?;
        let seed = a.seed;
        handles.push(std::thread::spawn(move || {
            let c = q.consumer();
            let r = consume(&q, &c, jw, seed, &stop, &produced);
            stop.store(true, Ordering::SeqCst);
            r
        }));
    }
    let mut first_err = None;
    for h in handles {
        let r = match h.join() {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("a worker thread panicked")),
        };
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    }
    drop(q);
    db.close();
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn write_start(a: &WorkerArgs, q: &Queue, open_micros: u64) -> anyhow::Result<()> {
    let r = q.recovery_report();
    let s = q.stats();
    let info = StartInfo {
        run: a.run,
        recovery_micros: r.micros,
        open_micros,
        records_replayed: r.records_replayed,
        from_checkpoint: r.from_checkpoint,
        truncated: r.truncated.iter().map(ToString::to_string).collect(),
        corrupt: r.corrupt.iter().map(ToString::to_string).collect(),
        checkpoint_error: r.checkpoint_error.clone(),
        pending: s.pending,
        dead_letters: s.dead_letters,
        next_seq: s.next_seq,
    };
    let path = a.journal.join(format!("run-{:04}-start.json", a.run));
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&info)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

fn produce(
    q: &Queue,
    mut jw: journal::Writer,
    total: u64,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut next = q.stats().next_seq;
    while next < total && !stop.load(Ordering::SeqCst) {
        let end = (next + PUBLISH_BATCH).min(total);
        let batch: Vec<NewMessage> = (next..end)
            .map(|n| NewMessage::new(payload(n)).with_id(format!("m-{n}")))
            .collect();
        let published = q
            .publish(batch)
            .with_context(|| format!("publishing m-{next}..m-{}", end - 1))?;
        for (i, p) in published.iter().enumerate() {
            if p.seq != next + i as u64 {
                bail!(
                    "queue position {} given to {} (expected {}): ids no longer match positions",
                    p.seq,
                    p.id,
                    next + i as u64
                );
            }
            jw.push(Kind::Published, &p.id, 0);
        }
        jw.sync()?;
        next = end;
    }
    Ok(())
}

fn consume(
    q: &Queue,
    c: &Consumer,
    mut jw: journal::Writer,
    seed: u64,
    stop: &AtomicBool,
    produced: &AtomicBool,
) -> anyhow::Result<()> {
    while !stop.load(Ordering::SeqCst) {
        let ds = c
            .receive(RECEIVE_MAX, LEASE, Duration::from_millis(50))
            .context("receiving")?;
        if ds.is_empty() {
            if produced.load(Ordering::SeqCst) && q.stats().pending == 0 {
                return Ok(());
            }
            continue;
        }
        let mut acks = Vec::new();
        let mut rejects = Vec::new();
        let mut nacks = Vec::new();
        for d in &ds {
            jw.push(Kind::Delivered, &d.id, d.tag.attempt);
            match decide(seed, d) {
                Action::Ack => {
                    jw.push(Kind::AckIntent, &d.id, d.tag.attempt);
                    acks.push(d);
                }
                Action::Reject => {
                    jw.push(Kind::RejectIntent, &d.id, d.tag.attempt);
                    rejects.push(d);
                }
                Action::Nack(delay) => nacks.push((d, delay)),
            }
        }
        jw.write()?;
        let mut commits: Vec<Commit> = Vec::with_capacity(ds.len());
        for (d, delay) in nacks {
            commits.push(
                c.nack(d.tag, delay, "transient failure (demo)")
                    .with_context(|| format!("nacking {} attempt {}", d.id, d.tag.attempt))?,
            );
            jw.push(Kind::Nacked, &d.id, d.tag.attempt);
        }
        for d in &acks {
            commits.push(
                c.ack(d.tag)
                    .with_context(|| format!("acking {} attempt {}", d.id, d.tag.attempt))?,
            );
        }
        for d in &rejects {
            commits.push(
                c.reject(d.tag, "poison payload")
                    .with_context(|| format!("rejecting {} attempt {}", d.id, d.tag.attempt))?,
            );
        }
        for cm in commits {
            cm.wait().context("waiting for settlements to be durable")?;
        }
        for d in acks {
            jw.push(Kind::Acked, &d.id, d.tag.attempt);
        }
        for d in rejects {
            jw.push(Kind::Rejected, &d.id, d.tag.attempt);
        }
        jw.sync()?;
    }
    Ok(())
}
