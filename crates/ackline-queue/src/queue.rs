//! A queue: the public operations, the writer thread and the checkpoint thread.
//!
//! Locking: one mutex per queue guards the index ([`State`]) and the write buffer
//! ([`Appender`]); an operation takes it once, appends its records and applies their effect,
//! and releases it before waiting for durability or reading payloads from disk.
//!
//! Invariants:
//! - A publish is confirmed (its call returns, or its [`Commit`] resolves) only after its
//!   records are durable as `Fsync` promises.
//! - A delivery is handed out only after the record counting its attempt is durable, so a
//!   crash never lets an attempt number go backwards or repeat.
//! - Settlements take effect in memory at once (no other consumer can get the message) and are
//!   durable when their `Commit` resolves; if the process dies before that, the message is
//!   delivered again (at-least-once), never lost.
//! - A message leaves the queue for the dead-letter queue in one record: after any crash it is
//!   in exactly one of the two.
//! - After an I/O error the queue refuses every write (see [`QueueError::Poisoned`]). A read
//!   that fails is retried a few times (with the file reopened) before it poisons the queue:
//!   an I/O failure is never taken for a property of the message.
//! - A message id that is pending or in the dead-letter queue is not enqueued again: the
//!   publish is confirmed with the position that already holds it (`Published::duplicate`).
//! - A message whose stored frame is damaged goes to the dead-letter queue with reason
//!   [`REASON_CORRUPT`]; nothing is dropped without a record of it.
//! - A queue opened read-only ([`crate::Db::open_read_only`]) changes no file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::checkpoint::{self, Pos};
use crate::clock::Clock;
use crate::error::{PublishError, QueueError, SettleError};
use crate::fs::{DirLock, Fs, FsFile, FsRead};
use crate::log::{Appender, Chunk, Commit, Durable, seg_header, seg_name};
use crate::options::{Fsync, QueueOptions};
use crate::record::{FRAME_HEADER, Frame, MessageRef, RecordRef, decode, runs};
use crate::recovery::{CHECKPOINT, CHECKPOINT_PREV, CHECKPOINT_TMP, Mode, RecoveryReport, recover};
use crate::state::{LEASED, LOST, Loc, READY, SETTLED, State};

/// The dead-letter reason of a message that had as many deliveries as `max_attempts` allows.
pub const REASON_MAX_ATTEMPTS: &str = "max attempts exceeded";
/// The dead-letter reason of a message whose stored frame is damaged (its publish record
/// fails its checksum, or recovery found its position but not its record).
pub const REASON_CORRUPT: &str = "corrupt";

/// How many times a failed read of a stored message is tried before the queue is poisoned.
const READ_TRIES: u32 = 4;

/// A message to publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewMessage {
    /// A stable id (an idempotency key); one is assigned when `None`.
    pub id: Option<String>,
    /// Header pairs.
    pub headers: Vec<(String, String)>,
    /// The payload.
    pub payload: Vec<u8>,
}

impl NewMessage {
    /// A message with a payload and nothing else.
    pub fn new(payload: impl Into<Vec<u8>>) -> Self {
        NewMessage {
            payload: payload.into(),
            ..Default::default()
        }
    }

    /// Sets the id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
}

/// A confirmed (or, from `publish_nowait`, accepted) publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Queue position.
    pub seq: u64,
    /// The message id (given or assigned).
    pub id: String,
    /// A message with this id was already pending or dead-lettered (at `seq`): nothing new
    /// was enqueued.
    pub duplicate: bool,
}

/// Names one delivery of one message: settlements must quote it (stale-ack fencing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    /// Queue position of the message.
    pub seq: u64,
    /// Which delivery of it (1 for the first).
    pub attempt: u32,
}

/// A message handed to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Quote this to settle the delivery.
    pub tag: Tag,
    /// The message id.
    pub id: String,
    /// Header pairs.
    pub headers: Vec<(String, String)>,
    /// The payload.
    pub payload: Vec<u8>,
    /// When the message was first published, Unix ms.
    pub enqueued_at: u64,
    /// 1 on the first delivery, +1 on each redelivery; survives restarts.
    pub attempt: u32,
    /// The lease ends then (Unix ms) unless extended or settled.
    pub lease_until: u64,
}

/// How to settle one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Done: the message leaves the queue.
    Ack,
    /// Failed for now: deliver again no earlier than `delay` from now.
    Nack {
        /// The delay.
        delay: Duration,
        /// Why it failed (kept as the message's last error).
        error: String,
    },
    /// Can never succeed: move to the dead-letter queue now.
    Reject {
        /// Why.
        reason: String,
    },
    /// Still working: the lease ends `lease` from now. Not a settlement.
    Extend {
        /// The new lease length.
        lease: Duration,
    },
}

/// An entry of the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its key in the dead-letter queue (the position it had in the queue).
    pub key: u64,
    /// The message id.
    pub id: String,
    /// Header pairs.
    pub headers: Vec<(String, String)>,
    /// The payload.
    pub payload: Vec<u8>,
    /// When the message was first published, Unix ms.
    pub enqueued_at: u64,
    /// Deliveries it had.
    pub attempts: u32,
    /// First failure, Unix ms.
    pub first_failure: u64,
    /// Last failure (when it was dead-lettered), Unix ms.
    pub last_failure: u64,
    /// Why it was dead-lettered.
    pub reason: String,
    /// The last error a consumer reported.
    pub last_error: String,
}

/// Which dead-letter entries an operation applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DlqSelector {
    /// Every entry.
    All,
    /// Entries with these keys.
    Keys(Vec<u64>),
    /// Entries whose message has one of these ids.
    Ids(Vec<String>),
    /// Entries matching every given condition.
    Filter(DlqFilter),
}

/// Conditions on dead-letter entries (all that are set must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DlqFilter {
    /// The reason contains this text.
    pub reason_contains: Option<String>,
    /// The last error contains this text.
    pub error_contains: Option<String>,
    /// Dead-lettered at or after this time, Unix ms.
    pub since: Option<u64>,
    /// Dead-lettered before this time, Unix ms.
    pub until: Option<u64>,
}

/// Counts describing a queue now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages not yet settled (ready + leased + delayed).
    pub pending: u64,
    /// Deliverable now.
    pub ready: u64,
    /// Delivered and not settled.
    pub leased: u64,
    /// Waiting for their redelivery time.
    pub delayed: u64,
    /// Entries in the dead-letter queue.
    pub dead_letters: u64,
    /// Bytes of pending messages (framed).
    pub pending_bytes: u64,
    /// Segment files.
    pub segments: u64,
    /// Next queue position.
    pub next_seq: u64,
    /// Events since the queue was opened.
    pub published: u64,
    /// Deliveries made (first and later).
    pub delivered: u64,
    /// Deliveries with attempt above 1.
    pub redelivered: u64,
    /// Acks.
    pub acked: u64,
    /// Nacks.
    pub nacked: u64,
    /// Moves to the dead-letter queue.
    pub dead_lettered: u64,
    /// Leases that ran out.
    pub lease_expired: u64,
    /// Deliveries released by a closed consumer.
    pub released: u64,
    /// Dead-letter entries replayed.
    pub replayed: u64,
    /// Dead-letter entries purged.
    pub purged: u64,
    /// Publishes absorbed because their id was already pending or dead-lettered.
    pub duplicates: u64,
    /// Damaged ranges recovery found when the queue opened (see
    /// [`Queue::recovery_report`]).
    pub corrupt_ranges: u64,
    /// Messages dead-lettered with reason [`REASON_CORRUPT`] since the queue opened.
    pub corrupt_messages: u64,
}

const NO_ERROR: &str = "deliveries ended without a settlement (consumer died or its lease expired)";

struct Inner {
    st: State,
    log: Appender,
    /// The writer sleeps on `writer_cv` (so an append must wake it).
    writer_idle: bool,
    /// Consumers sleeping on `avail_cv` in `receive`.
    receivers_waiting: u32,
    stop_writer: bool,
    closing: bool,
    last_checkpoint_bytes: u64,
    /// Position of the installed `checkpoint` (it becomes `checkpoint.prev` at the next
    /// install; segments before it are kept so that generation can stand in).
    checkpoint_pos: Option<Pos>,
    /// The next batch must be fsynced whatever the `Fsync` mode (a checkpoint waits on it).
    force_sync: bool,
}

pub(crate) struct Shared {
    name: Arc<str>,
    dir: PathBuf,
    fs: Arc<dyn Fs>,
    clock: Arc<dyn Clock>,
    opts: QueueOptions,
    inner: Mutex<Inner>,
    writer_cv: Condvar,
    avail_cv: Condvar,
    maint_cv: Condvar,
    durable: Arc<Durable>,
    readers: Mutex<HashMap<u32, Arc<dyn FsRead>>>,
    next_consumer: AtomicU64,
    report: RecoveryReport,
    /// Held until the queue closes; then released even if handles remain. `None` when the
    /// queue was opened read-only.
    dir_lock: Mutex<Option<Arc<DirLock>>>,
    read_only: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct Threads {
    shared: Arc<Shared>,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.shared.shutdown(&self.handles);
    }
}

/// A named durable queue. Cheap to clone; the queue closes (flushing and checkpointing) when
/// the last clone and the last [`Consumer`] are dropped, or on [`Queue::close`].
#[derive(Clone)]
pub struct Queue {
    shared: Arc<Shared>,
    threads: Arc<Threads>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("name", &self.shared.name)
            .field("dir", &self.shared.dir)
            .finish()
    }
}

impl Queue {
    pub(crate) fn open(
        name: &str,
        dir: PathBuf,
        fs: Arc<dyn Fs>,
        clock: Arc<dyn Clock>,
        opts: QueueOptions,
        dir_lock: Option<Arc<DirLock>>,
    ) -> Result<Queue, crate::OpenError> {
        opts.validate()?;
        let read_only = dir_lock.is_none();
        let mode = if read_only {
            Mode::ReadOnly
        } else {
            Mode::ReadWrite
        };
        let mut rec = recover(fs.as_ref(), &dir, mode)?;
        let log = Appender::new(
            rec.next_seg,
            std::mem::take(&mut rec.segs),
            opts.segment_bytes,
        );
        let shared = Arc::new(Shared {
            name: name.into(),
            dir,
            fs,
            clock,
            opts,
            inner: Mutex::new(Inner {
                st: rec.state,
                log,
                writer_idle: false,
                receivers_waiting: 0,
                stop_writer: false,
                closing: false,
                last_checkpoint_bytes: 0,
                checkpoint_pos: rec.checkpoint_pos,
                force_sync: false,
            }),
            writer_cv: Condvar::new(),
            avail_cv: Condvar::new(),
            maint_cv: Condvar::new(),
            durable: Arc::new(Durable::default()),
            readers: Mutex::new(HashMap::new()),
            next_consumer: AtomicU64::new(1),
            report: rec.report,
            dir_lock: Mutex::new(dir_lock),
            read_only,
        });
        // Positions recovery proved but could not read go to the dead-letter queue now, so
        // they are visible (and durable as such) before anything else happens.
        let lost_commit = {
            let now = shared.clock.now_ms();
            let mut inner = lock(&shared.inner);
            for (seq, why) in &rec.lost {
                shared.dead_letter(&mut inner, *seq, now, REASON_CORRUPT, Some(why));
            }
            shared.commit_locked(&inner)
        };
        if read_only {
            return Ok(Queue {
                threads: Arc::new(Threads {
                    shared: shared.clone(),
                    handles: Mutex::new(Vec::new()),
                }),
                shared,
            });
        }
        let spawn = |what: &str, f: fn(Arc<Shared>), s: Arc<Shared>| {
            std::thread::Builder::new()
                .name(format!("ackline-{what}-{}", s.name))
                .spawn(move || f(s))
                .map_err(|e| crate::OpenError::io("starting a thread for", PathBuf::from(what), e))
        };
        let writer = spawn("writer", Shared::writer_loop, shared.clone())?;
        let maint = spawn("checkpoint", Shared::maintenance_loop, shared.clone())?;
        let q = Queue {
            threads: Arc::new(Threads {
                shared: shared.clone(),
                handles: Mutex::new(vec![maint, writer]),
            }),
            shared,
        };
        if !rec.lost.is_empty() {
            q.shared.writer_cv.notify_one();
            lost_commit.wait().map_err(|e| {
                crate::OpenError::io(
                    "dead-lettering damaged messages in",
                    q.shared.dir.clone(),
                    std::io::Error::other(e.to_string()),
                )
            })?;
        }
        Ok(q)
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// What recovery found when the queue was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.shared.report
    }

    /// Publishes a batch and returns once it is durable. The batch is all or nothing: on any
    /// error nothing of it was stored.
    pub fn publish(&self, batch: Vec<NewMessage>) -> Result<Vec<Published>, PublishError> {
        let (published, commit) = self.publish_nowait(batch)?;
        commit.wait()?;
        Ok(published)
    }

    /// Publishes a batch and returns at once; the publish is confirmed when the [`Commit`]
    /// resolves. Use it to pipeline publishes from one thread.
    pub fn publish_nowait(
        &self,
        batch: Vec<NewMessage>,
    ) -> Result<(Vec<Published>, Commit), PublishError> {
        let s = &self.shared;
        s.check_poisoned()?;
        let now = s.clock.now_ms();
        let mut sizes = Vec::with_capacity(batch.len());
        for (index, m) in batch.iter().enumerate() {
            sizes.push(s.check_message(index, m)?);
        }
        let needed: u64 = sizes.iter().map(|&n| n as u64).sum();
        // Take the ids out of the (owned) batch rather than copying them.
        let mut batch = batch;
        let ids: Vec<String> = batch
            .iter_mut()
            .map(|m| m.id.take().unwrap_or_else(|| new_id(now)))
            .collect();
        let mut inner = lock(&s.inner);
        if inner.closing {
            return Err(s.closed().into());
        }
        if inner.st.pending_bytes + needed > s.opts.max_bytes {
            return Err(PublishError::Full {
                queue: s.name.to_string(),
                pending_bytes: inner.st.pending_bytes,
                limit_bytes: s.opts.max_bytes,
                needed_bytes: needed,
            });
        }
        let mut out = Vec::with_capacity(batch.len());
        for (m, id) in batch.iter().zip(ids) {
            let fp = inner.st.fp_key.of(&id);
            if let Some(seq) = inner.st.duplicate_of(fp) {
                inner.st.counters.duplicates += 1;
                out.push(Published {
                    seq,
                    id,
                    duplicate: true,
                });
                continue;
            }
            let seq = inner.st.next_seq;
            let msg = MessageRef {
                id: &id,
                enqueued_at: now,
                headers: m
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
                payload: &m.payload,
            };
            let loc = inner.log.append(|e| e.publish(seq, None, &msg));
            inner.st.on_publish(seq, loc, None, fp);
            out.push(Published {
                seq,
                id,
                duplicate: false,
            });
        }
        inner.st.prune_ids();
        let commit = s.commit_locked(&inner);
        s.wake(&mut inner, true);
        drop(inner);
        Ok((out, commit))
    }

    /// A new consumer. Its unsettled deliveries are released when it is dropped.
    pub fn consumer(&self) -> Consumer {
        Consumer {
            queue: self.clone(),
            id: self.shared.next_consumer.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Waits until everything done so far is durable.
    pub fn sync(&self) -> Result<(), QueueError> {
        if self.shared.read_only {
            return Ok(());
        }
        let inner = lock(&self.shared.inner);
        let c = self.shared.commit_locked(&inner);
        drop(inner);
        self.shared.writer_cv.notify_one();
        c.wait()
    }

    /// Counts describing the queue now (timers that are due are applied first).
    pub fn stats(&self) -> QueueStats {
        let s = &self.shared;
        let mut inner = lock(&s.inner);
        s.tick(&mut inner);
        let st = &inner.st;
        let c = st.counters;
        let leased = st.leases.len() as u64;
        let delayed = st.delayed_len() as u64;
        QueueStats {
            pending: st.pending,
            ready: st.pending.saturating_sub(leased + delayed),
            leased,
            delayed,
            dead_letters: st.dlq.len() as u64,
            pending_bytes: st.pending_bytes,
            segments: inner.log.segs.len() as u64,
            next_seq: st.next_seq,
            published: c.published,
            delivered: c.delivered,
            redelivered: c.redelivered,
            acked: c.acked,
            nacked: c.nacked,
            dead_lettered: c.dead_lettered,
            lease_expired: c.lease_expired,
            released: c.released,
            replayed: c.replayed,
            purged: c.purged,
            duplicates: c.duplicates,
            corrupt_ranges: s.report.corrupt.len() as u64,
            corrupt_messages: c.corrupt,
        }
    }

    /// Whether the queue was opened read-only (every write is refused with
    /// [`QueueError::ReadOnly`]).
    pub fn is_read_only(&self) -> bool {
        self.shared.read_only
    }

    /// Lists dead-letter entries with keys after `after` (all when `None`), at most `limit`.
    pub fn dlq_list(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let entries: Vec<_> = {
            let inner = lock(&self.shared.inner);
            let range = match after {
                Some(k) => inner.st.dlq.range(k.saturating_add(1)..),
                None => inner.st.dlq.range(..),
            };
            range.take(limit).map(|(&k, e)| (k, e.clone())).collect()
        };
        entries
            .into_iter()
            .map(|(k, e)| self.shared.dead_letter_view(k, &e).map(|v| v.0))
            .collect()
    }

    /// The dead-letter entry with this key.
    pub fn dlq_get(&self, key: u64) -> Result<Option<DeadLetter>, QueueError> {
        let entry = lock(&self.shared.inner).st.dlq.get(&key).cloned();
        entry
            .map(|e| self.shared.dead_letter_view(key, &e).map(|v| v.0))
            .transpose()
    }

    /// Dead-letter entries whose message has this id (reads every entry: an operator's tool).
    pub fn dlq_find(&self, id: &str) -> Result<Vec<DeadLetter>, QueueError> {
        Ok(self
            .select(&DlqSelector::Ids(vec![id.to_string()]))?
            .into_iter()
            .map(|v| v.0)
            .collect())
    }

    /// Replays selected dead-letter entries: each goes back to the queue as a new delivery
    /// with attempts reset (same id, headers, payload and `enqueued_at`), and leaves the
    /// dead-letter queue in the same record. Returns how many, once durable. Entries whose
    /// stored message is damaged (reason [`REASON_CORRUPT`]) cannot be replayed and stay.
    pub fn dlq_replay(&self, sel: &DlqSelector) -> Result<usize, PublishError> {
        let s = &self.shared;
        s.check_poisoned()?;
        let chosen: Vec<DeadLetter> = self
            .select(sel)?
            .into_iter()
            .filter_map(|(d, readable)| readable.then_some(d))
            .collect();
        let mut inner = lock(&s.inner);
        let needed: u64 = chosen
            .iter()
            .filter_map(|d| inner.st.dlq.get(&d.key))
            .map(|e| u64::from(e.loc.len) + 9)
            .sum();
        if inner.st.pending_bytes + needed > s.opts.max_bytes {
            return Err(PublishError::Full {
                queue: s.name.to_string(),
                pending_bytes: inner.st.pending_bytes,
                limit_bytes: s.opts.max_bytes,
                needed_bytes: needed,
            });
        }
        let mut n = 0;
        for d in &chosen {
            if !inner.st.dlq.contains_key(&d.key) {
                continue; // purged or replayed meanwhile
            }
            let seq = inner.st.next_seq;
            let msg = MessageRef {
                id: &d.id,
                enqueued_at: d.enqueued_at,
                headers: d
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
                payload: &d.payload,
            };
            let loc = inner.log.append(|e| e.publish(seq, Some(d.key), &msg));
            let fp = inner.st.fp_key.of(&d.id);
            inner.st.on_publish(seq, loc, Some(d.key), fp);
            n += 1;
        }
        let commit = s.commit_locked(&inner);
        s.wake(&mut inner, true);
        drop(inner);
        commit.wait()?;
        Ok(n)
    }

    /// Purges selected dead-letter entries; returns how many, once durable.
    pub fn dlq_purge(&self, sel: &DlqSelector) -> Result<usize, QueueError> {
        let s = &self.shared;
        s.check_poisoned()?;
        let keys: Vec<u64> = match sel {
            DlqSelector::All => lock(&s.inner).st.dlq.keys().copied().collect(),
            DlqSelector::Keys(k) => k.clone(),
            _ => self.select(sel)?.into_iter().map(|d| d.0.key).collect(),
        };
        let mut inner = lock(&s.inner);
        let keys: Vec<u64> = keys
            .into_iter()
            .filter(|k| inner.st.dlq.contains_key(k))
            .collect();
        if keys.is_empty() {
            return Ok(0);
        }
        let rs = runs(keys.clone());
        inner.log.append(|e| e.purge(&rs));
        for k in &keys {
            inner.st.on_purge(*k);
        }
        let commit = s.commit_locked(&inner);
        s.wake(&mut inner, false);
        drop(inner);
        commit.wait()?;
        Ok(keys.len())
    }

    /// The selected entries, each with whether its stored message could be read.
    fn select(&self, sel: &DlqSelector) -> Result<Vec<(DeadLetter, bool)>, QueueError> {
        let entries: Vec<_> = {
            let inner = lock(&self.shared.inner);
            match sel {
                DlqSelector::Keys(keys) => keys
                    .iter()
                    .filter_map(|k| inner.st.dlq.get(k).map(|e| (*k, e.clone())))
                    .collect(),
                _ => inner.st.dlq.iter().map(|(&k, e)| (k, e.clone())).collect(),
            }
        };
        let mut out = Vec::new();
        for (k, e) in entries {
            let keep_meta = match sel {
                DlqSelector::Filter(f) => {
                    f.reason_contains
                        .as_deref()
                        .is_none_or(|t| e.reason.contains(t))
                        && f.error_contains
                            .as_deref()
                            .is_none_or(|t| e.last_error.contains(t))
                        && f.since.is_none_or(|t| e.last_failure >= t)
                        && f.until.is_none_or(|t| e.last_failure < t)
                }
                _ => true,
            };
            if !keep_meta {
                continue;
            }
            let d = self.shared.dead_letter_view(k, &e)?;
            if let DlqSelector::Ids(ids) = sel
                && !ids.contains(&d.0.id)
            {
                continue;
            }
            out.push(d);
        }
        Ok(out)
    }

    /// Closes the queue: stops the threads after flushing and writing a checkpoint. Other
    /// clones and consumers then fail with [`QueueError::Closed`].
    pub fn close(self) {
        self.shared.shutdown(&self.threads.handles);
    }
}

/// Takes deliveries from a queue and settles them. Dropping it releases its unsettled
/// deliveries at once (they become deliverable again, attempts kept).
pub struct Consumer {
    queue: Queue,
    id: u64,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.queue.shared.name)
            .field("id", &self.id)
            .finish()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let s = &self.queue.shared;
        let mut inner = lock(&s.inner);
        let held = inner.st.leased_by(self.id);
        for seq in &held {
            inner.st.release(*seq);
        }
        if !held.is_empty() {
            s.wake_receivers(&inner);
        }
    }
}

impl Consumer {
    /// Takes up to `max` deliveries, each leased for `lease`, waiting up to `wait` for the
    /// first. Returns an empty batch if none came in time.
    pub fn receive(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let s = &self.queue.shared;
        let deadline = Instant::now() + wait;
        let mut inner = lock(&s.inner);
        loop {
            let (picked, commit) = s.pick(&mut inner, self.id, max, lease)?;
            if !picked.is_empty() {
                s.wake(&mut inner, false);
                drop(inner);
                commit.wait()?;
                return s.load(picked);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let mut timeout = deadline - now;
            if let Some(t) = inner.st.next_timer() {
                let ms = t.saturating_sub(s.clock.now_ms()).max(1);
                timeout = timeout.min(Duration::from_millis(ms));
            }
            inner.receivers_waiting += 1;
            inner = s
                .avail_cv
                .wait_timeout(inner, timeout)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
            inner.receivers_waiting -= 1;
        }
    }

    /// Takes up to `max` deliveries that are ready now, without waiting for new ones.
    pub fn try_receive(&self, max: usize, lease: Duration) -> Result<Vec<Delivery>, QueueError> {
        self.receive(max, lease, Duration::ZERO)
    }

    /// Acknowledges a delivery: the message leaves the queue.
    pub fn ack(&self, tag: Tag) -> Result<Commit, SettleError> {
        // The hot path of individual acks: no allocation, one lock.
        let s = &self.queue.shared;
        s.check_poisoned()
            .map_err(|e| SettleError::Queue(e.to_string()))?;
        let mut inner = lock(&s.inner);
        s.check_tag(&inner.st, tag)?;
        inner.st.on_ack(tag.seq);
        inner.log.defer_acks([tag.seq]);
        let commit = s.commit_locked(&inner);
        s.wake(&mut inner, false);
        Ok(commit)
    }

    /// Fails a delivery: deliver it again no earlier than `delay` from now (or dead-letter it
    /// if it has had `max_attempts` deliveries). `error` is kept as its last error.
    pub fn nack(&self, tag: Tag, delay: Duration, error: &str) -> Result<Commit, SettleError> {
        self.settle_one(
            tag,
            Settlement::Nack {
                delay,
                error: error.to_string(),
            },
        )
    }

    /// Dead-letters a delivery now with `reason`.
    pub fn reject(&self, tag: Tag, reason: &str) -> Result<Commit, SettleError> {
        self.settle_one(
            tag,
            Settlement::Reject {
                reason: reason.to_string(),
            },
        )
    }

    /// Renews a delivery's lease to end `lease` from now.
    pub fn extend(&self, tag: Tag, lease: Duration) -> Result<(), SettleError> {
        self.settle_one(tag, Settlement::Extend { lease })
            .map(|_| ())
    }

    fn settle_one(&self, tag: Tag, how: Settlement) -> Result<Commit, SettleError> {
        let (mut results, commit) = self.settle(&[(tag, how)]);
        results.pop().unwrap_or(Ok(())).map(|()| commit)
    }

    /// Settles many deliveries in one step: one result per item, and one [`Commit`] for all.
    pub fn settle(&self, items: &[(Tag, Settlement)]) -> (Vec<Result<(), SettleError>>, Commit) {
        let s = &self.queue.shared;
        if let Err(e) = s.check_poisoned() {
            let err = SettleError::Queue(e.to_string());
            return (
                items.iter().map(|_| Err(err.clone())).collect(),
                Commit::done(s.name.clone()),
            );
        }
        let now = s.clock.now_ms();
        let mut inner = lock(&s.inner);
        let mut results = Vec::with_capacity(items.len());
        let mut acks = Vec::new();
        let mut woke = false;
        for (tag, how) in items {
            let r = match s.check_tag(&inner.st, *tag) {
                Err(e) => Err(e),
                Ok(()) => {
                    match how {
                        Settlement::Ack => {
                            inner.st.on_ack(tag.seq);
                            acks.push(tag.seq);
                        }
                        Settlement::Nack { delay, error } => {
                            let attempts = inner.st.slot(tag.seq).map_or(0, |x| x.attempts);
                            if attempts >= s.opts.max_attempts {
                                s.dead_letter(
                                    &mut inner,
                                    tag.seq,
                                    now,
                                    REASON_MAX_ATTEMPTS,
                                    Some(error),
                                );
                            } else {
                                let due = now.saturating_add(delay.as_millis() as u64);
                                inner.log.append(|e| e.nack(tag.seq, due, now, error));
                                inner.st.on_nack(tag.seq, due, now, error);
                                woke = true;
                            }
                        }
                        Settlement::Reject { reason } => {
                            s.dead_letter(&mut inner, tag.seq, now, reason, Some(reason));
                        }
                        Settlement::Extend { lease } => {
                            let until = now.saturating_add(lease.as_millis() as u64);
                            if inner.st.state_of(tag.seq) == LEASED {
                                inner.st.extend(tag.seq, until);
                            } else {
                                // Expired but not redelivered: this delivery is still the
                                // current one, so it may take the lease back.
                                inner.st.lease(tag.seq, self.id, until);
                            }
                        }
                    }
                    Ok(())
                }
            };
            results.push(r);
        }
        inner.log.defer_acks(acks);
        let commit = s.commit_locked(&inner);
        s.wake(&mut inner, woke);
        drop(inner);
        (results, commit)
    }

    /// Releases every unsettled delivery of this consumer and closes it.
    pub fn close(self) {}
}

/// A 28-character id: the time in ms (12 hex digits, so ids sort by time) and 64 random bits.
fn new_id(now: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let r: u64 = rand::random();
    let mut b = [0u8; 28];
    for (i, c) in b[..12].iter_mut().enumerate() {
        *c = HEX[((now >> (44 - 4 * i)) & 0xf) as usize];
    }
    for (i, c) in b[12..].iter_mut().enumerate() {
        *c = HEX[((r >> (60 - 4 * i)) & 0xf) as usize];
    }
    // Hex digits are ASCII, so this never falls back.
    std::str::from_utf8(&b).map_or_else(|_| String::new(), str::to_owned)
}

/// A message as read back from its publish record.
#[derive(Debug, Default)]
struct StoredMessage {
    id: String,
    headers: Vec<(String, String)>,
    enqueued_at: u64,
    payload: Vec<u8>,
}

type Picked = Vec<(u64, u32, Loc, u64)>;

impl Shared {
    fn closed(&self) -> QueueError {
        QueueError::Closed {
            queue: self.name.to_string(),
        }
    }

    fn check_poisoned(&self) -> Result<(), QueueError> {
        if self.read_only {
            return Err(QueueError::ReadOnly {
                queue: self.name.to_string(),
            });
        }
        match self.durable.error() {
            Some(cause) => Err(QueueError::Poisoned {
                queue: self.name.to_string(),
                cause,
            }),
            None => Ok(()),
        }
    }

    fn commit_locked(&self, inner: &Inner) -> Commit {
        if inner.log.has_work() {
            Commit::new(self.durable.clone(), inner.log.batch, self.name.clone())
        } else {
            // Nothing buffered: everything appended so far is in the batch being written.
            Commit::new(
                self.durable.clone(),
                inner.log.batch.saturating_sub(1),
                self.name.clone(),
            )
        }
    }

    /// Wakes the writer if it sleeps and something waits to be written, and (if `ready`) the
    /// consumers blocked in `receive`. Called with the lock held, and only when someone waits,
    /// so an operation costs no futex call when the threads are busy.
    fn wake(&self, inner: &mut Inner, ready: bool) {
        if inner.writer_idle && inner.log.has_work() {
            inner.writer_idle = false;
            self.writer_cv.notify_one();
        }
        if ready {
            self.wake_receivers(inner);
        }
    }

    fn wake_receivers(&self, inner: &Inner) {
        if inner.receivers_waiting > 0 {
            self.avail_cv.notify_all();
        }
    }

    /// Validates one message and returns its framed size.
    fn check_message(&self, index: usize, m: &NewMessage) -> Result<usize, PublishError> {
        let invalid = |reason: String| PublishError::Invalid { index, reason };
        if let Some(id) = &m.id
            && (id.is_empty() || id.len() > 1024)
        {
            return Err(invalid(format!(
                "id must be 1 to 1024 bytes, got {}",
                id.len()
            )));
        }
        if m.headers.len() > 1024 {
            return Err(invalid(format!(
                "at most 1024 headers, got {}",
                m.headers.len()
            )));
        }
        let mut size = FRAME_HEADER + 8 + 1 + 2 + m.id.as_ref().map_or(28, String::len) + 8 + 2;
        for (k, v) in &m.headers {
            if k.len() > u16::MAX as usize || v.len() > u16::MAX as usize {
                return Err(invalid(format!(
                    "header {k:.40}: name and value at most 65535 bytes"
                )));
            }
            size += 4 + k.len() + v.len();
        }
        size += m.payload.len();
        if size > self.opts.max_message_bytes {
            return Err(PublishError::TooLarge {
                index,
                size,
                max: self.opts.max_message_bytes,
            });
        }
        Ok(size)
    }

    /// Applies due timers: expired leases and delays whose time has come.
    fn tick(&self, inner: &mut Inner) {
        let now = self.clock.now_ms();
        let expired = inner.st.take_expired(now);
        let mut woke = !expired.is_empty();
        for seq in expired {
            let attempts = inner.st.slot(seq).map_or(0, |x| x.attempts);
            inner.st.note_failure(seq, now, "");
            if attempts >= self.opts.max_attempts {
                self.dead_letter(inner, seq, now, REASON_MAX_ATTEMPTS, None);
            } else {
                inner.st.expire_to_ready(seq);
            }
        }
        woke |= inner.st.wake_delayed(now) > 0;
        if woke {
            self.wake_receivers(inner);
        }
    }

    /// Moves `seq` to the dead-letter queue (one record).
    fn dead_letter(
        &self,
        inner: &mut Inner,
        seq: u64,
        now: u64,
        reason: &str,
        error: Option<&str>,
    ) {
        let Some(slot) = inner.st.slot(seq).copied() else {
            return;
        };
        if slot.state == SETTLED {
            return;
        }
        if let Some(e) = error {
            inner.st.note_failure(seq, now, e);
        }
        let (first, last_error) = match inner.st.failures.get(&seq) {
            Some(f) if !f.error.is_empty() => (f.first, f.error.to_string()),
            Some(f) => (f.first, NO_ERROR.to_string()),
            None => (now, NO_ERROR.to_string()),
        };
        if !self.read_only {
            inner
                .log
                .append(|e| e.dead(seq, slot.attempts, first, now, reason, &last_error));
        }
        inner.st.on_dead(seq, now, reason, &last_error);
        if reason == REASON_CORRUPT {
            inner.st.counters.corrupt += 1;
        }
    }

    fn check_tag(&self, st: &State, tag: Tag) -> Result<(), SettleError> {
        if tag.attempt == 0 {
            // No delivery has attempt 0: a message never delivered has 0 attempts, and a tag
            // quoting 0 would otherwise match it.
            return Err(SettleError::Unknown {
                seq: tag.seq,
                attempt: 0,
            });
        }
        let Some(slot) = st.slot(tag.seq) else {
            return Err(if tag.seq < st.next_seq {
                SettleError::AlreadySettled {
                    seq: tag.seq,
                    attempt: tag.attempt,
                }
            } else {
                SettleError::Unknown {
                    seq: tag.seq,
                    attempt: tag.attempt,
                }
            });
        };
        if slot.state == SETTLED {
            return Err(SettleError::AlreadySettled {
                seq: tag.seq,
                attempt: tag.attempt,
            });
        }
        if slot.attempts != tag.attempt {
            return Err(if tag.attempt > slot.attempts || tag.attempt == 0 {
                SettleError::Unknown {
                    seq: tag.seq,
                    attempt: tag.attempt,
                }
            } else {
                SettleError::Stale {
                    seq: tag.seq,
                    attempt: tag.attempt,
                    current: slot.attempts,
                }
            });
        }
        match slot.state {
            LEASED | READY => Ok(()),
            LOST => Err(SettleError::Unknown {
                seq: tag.seq,
                attempt: tag.attempt,
            }),
            _ => Err(SettleError::AlreadySettled {
                seq: tag.seq,
                attempt: tag.attempt,
            }),
        }
    }

    /// Leases up to `max` ready messages (dead-lettering those out of attempts) and appends the
    /// record counting their attempts.
    fn pick(
        &self,
        inner: &mut Inner,
        consumer: u64,
        max: usize,
        lease: Duration,
    ) -> Result<(Picked, Commit), QueueError> {
        self.check_poisoned()?;
        if inner.closing {
            return Err(self.closed());
        }
        self.tick(inner);
        let now = self.clock.now_ms();
        let until = now.saturating_add(lease.as_millis() as u64);
        let mut picked = Vec::new();
        while picked.len() < max {
            let Some(seq) = inner.st.peek_ready() else {
                break;
            };
            let Some(slot) = inner.st.slot(seq).copied() else {
                break;
            };
            if slot.attempts >= self.opts.max_attempts {
                self.dead_letter(inner, seq, now, REASON_MAX_ATTEMPTS, None);
                continue;
            }
            inner.st.lease(seq, consumer, until);
            inner.st.on_deliver(seq);
            inner.st.counters.delivered += 1;
            if slot.attempts > 0 {
                inner.st.counters.redelivered += 1;
            }
            picked.push((seq, slot.attempts + 1, slot.loc(), until));
        }
        if !picked.is_empty() {
            let rs = runs(picked.iter().map(|p| p.0).collect());
            inner.log.append(|e| e.deliver(&rs));
        }
        Ok((picked, self.commit_locked(inner)))
    }

    fn reader(&self, seg: u32) -> Result<Arc<dyn FsRead>, QueueError> {
        let mut readers = lock(&self.readers);
        if let Some(r) = readers.get(&seg) {
            return Ok(r.clone());
        }
        let path = self.dir.join(seg_name(seg));
        let r = self.fs.open_read(&path).map_err(|e| QueueError::Read {
            path,
            offset: 0,
            cause: Arc::new(e),
        })?;
        readers.insert(seg, r.clone());
        Ok(r)
    }

    /// Reads `buf.len()` bytes of segment `seg` at `offset`. A failure is retried with the
    /// file reopened (EMFILE, EIO and the like may pass); only when every try failed is it an
    /// error, which the caller treats as the queue's, never as the message's.
    fn read_at(&self, seg: u32, buf: &mut [u8], offset: u64) -> Result<(), QueueError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let res = self.reader(seg).and_then(|r| {
                r.read_exact_at(buf, offset).map_err(|e| QueueError::Read {
                    path: self.dir.join(seg_name(seg)),
                    offset,
                    cause: Arc::new(e),
                })
            });
            match res {
                Ok(()) => return Ok(()),
                Err(e) if tries >= READ_TRIES => return Err(e),
                Err(_) => {
                    lock(&self.readers).remove(&seg);
                    std::thread::sleep(Duration::from_millis(10 << tries));
                }
            }
        }
    }

    /// The salts of the distinct segments in `locs` (sorted by segment), read under one lock.
    fn salts(&self, locs: &[Loc]) -> Vec<(u32, u32)> {
        let inner = lock(&self.inner);
        let mut out: Vec<(u32, u32)> = Vec::new();
        for l in locs {
            if out.last().is_none_or(|&(seg, _)| seg != l.seg)
                && let Some(&salt) = inner.log.segs.get(&l.seg)
            {
                out.push((l.seg, salt));
            }
        }
        out
    }

    /// Reads the frames at `locs` (sorted by location), coalescing nearby ones into one read,
    /// and hands each to `f` with its index in `locs`.
    fn read_frames(&self, locs: &[Loc], mut f: impl FnMut(usize, Result<&[u8], &QueueError>)) {
        const MAX_GAP: u64 = 64 << 10;
        const MAX_SPAN: u64 = 4 << 20;
        let mut buf = Vec::new();
        let mut i = 0;
        while i < locs.len() {
            let first = locs[i];
            let mut j = i + 1;
            let mut end = u64::from(first.off) + u64::from(first.len);
            while j < locs.len()
                && locs[j].seg == first.seg
                && u64::from(locs[j].off) >= end
                && u64::from(locs[j].off) - end <= MAX_GAP
                && u64::from(locs[j].off) + u64::from(locs[j].len) - u64::from(first.off)
                    <= MAX_SPAN
            {
                end = u64::from(locs[j].off) + u64::from(locs[j].len);
                j += 1;
            }
            let start = u64::from(first.off);
            buf.clear();
            buf.resize((end - start) as usize, 0);
            let res = self.read_at(first.seg, &mut buf, start);
            for (k, l) in locs.iter().enumerate().take(j).skip(i) {
                match &res {
                    Ok(()) => {
                        let a = (u64::from(l.off) - start) as usize;
                        f(k, Ok(&buf[a..a + l.len as usize]));
                    }
                    Err(e) => f(k, Err(e)),
                }
            }
            i = j;
        }
    }

    /// Reads and decodes the messages of picked deliveries. A message whose frame is damaged
    /// is dead-lettered with reason [`REASON_CORRUPT`] (never silently dropped) and left out.
    /// A read that fails after its retries poisons the queue and fails the receive: the
    /// deliveries stay leased in memory, their attempts counted, and come back after reopening.
    fn load(&self, mut picked: Picked) -> Result<Vec<Delivery>, QueueError> {
        picked.sort_by_key(|p| (p.2.seg, p.2.off));
        let locs: Vec<Loc> = picked.iter().map(|p| p.2).collect();
        let salts = self.salts(&locs);
        let mut out = Vec::with_capacity(picked.len());
        let mut damaged = Vec::new();
        let mut io_error = None;
        self.read_frames(&locs, |k, frame| {
            let (seq, attempt, loc, until) = picked[k];
            let salt = salts
                .iter()
                .find(|(s, _)| *s == loc.seg)
                .map(|&(_, salt)| salt);
            match frame.map(|f| self.decode_message(loc, f, seq, salt)) {
                Ok(Ok(m)) => out.push(Delivery {
                    tag: Tag { seq, attempt },
                    id: m.id,
                    headers: m.headers,
                    payload: m.payload,
                    enqueued_at: m.enqueued_at,
                    attempt,
                    lease_until: until,
                }),
                Ok(Err(reason)) => damaged.push((seq, reason)),
                Err(e) => {
                    io_error.get_or_insert_with(|| e.clone());
                }
            }
        });
        if let Some(e) = io_error {
            self.durable.fail(format!("{e}").into());
            self.avail_cv.notify_all();
            return Err(QueueError::Poisoned {
                queue: self.name.to_string(),
                cause: e.to_string().into(),
            });
        }
        if !damaged.is_empty() {
            let now = self.clock.now_ms();
            let mut inner = lock(&self.inner);
            for (seq, reason) in damaged {
                self.dead_letter(&mut inner, seq, now, REASON_CORRUPT, Some(&reason));
            }
            self.wake(&mut inner, false);
        }
        out.sort_by_key(|d| d.tag.seq);
        Ok(out)
    }

    fn decode_message(
        &self,
        loc: Loc,
        frame: &[u8],
        seq: u64,
        salt: Option<u32>,
    ) -> Result<StoredMessage, String> {
        // The path is only for error messages: built on the error path alone (hot loop).
        let place = || {
            format!(
                "{} offset {}",
                self.dir.join(seg_name(loc.seg)).display(),
                loc.off
            )
        };
        let Some(salt) = salt else {
            return Err(format!("{}: segment unknown", place()));
        };
        match decode(frame, 0, salt) {
            Frame::Record(RecordRef::Publish { seq: s, msg, .. }, _) if s == seq => {
                Ok(StoredMessage {
                    id: msg.id.to_string(),
                    headers: msg
                        .headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    enqueued_at: msg.enqueued_at,
                    payload: msg.payload.to_vec(),
                })
            }
            Frame::Record(..) => Err(format!(
                "{}: record there is not the publish of position {seq}",
                place()
            )),
            Frame::Corrupt(r) => Err(format!("{}: {r}", place())),
            Frame::Incomplete => Err(format!("{}: record cut short", place())),
        }
    }

    /// An entry as operators see it, and whether its stored message could be read. An
    /// unreadable one (damaged frame) shows the raw bytes of its location as payload, up to
    /// 1 MiB, and an id saying why.
    fn dead_letter_view(
        &self,
        key: u64,
        e: &crate::state::DlqEntry,
    ) -> Result<(DeadLetter, bool), QueueError> {
        const RAW_MAX: u32 = 1 << 20;
        let salts = self.salts(&[e.loc]);
        let mut read = Err(self.closed());
        let loc = Loc {
            len: e.loc.len.min(RAW_MAX),
            ..e.loc
        };
        let to_read: &[Loc] = if e.loc.len == 0 {
            &[]
        } else {
            std::slice::from_ref(&loc)
        };
        self.read_frames(to_read, |_, frame| {
            read = frame.map_err(Clone::clone).map(|f| {
                match self.decode_message(e.loc, f, key, salts.first().map(|&(_, salt)| salt)) {
                    Ok(m) => (m, true),
                    Err(reason) => (
                        StoredMessage {
                            id: format!("<unreadable: {reason}>"),
                            payload: f.to_vec(),
                            ..StoredMessage::default()
                        },
                        false,
                    ),
                }
            });
        });
        if e.loc.len == 0 {
            // Recovery could not place the damage that held this message.
            read = Ok((
                StoredMessage {
                    id: "<unreadable: its record was lost to damage>".to_string(),
                    ..StoredMessage::default()
                },
                false,
            ));
        }
        let (m, readable) = match read {
            Ok(r) => r,
            // One entry whose bytes cannot be read must not hide the others from an operator.
            Err(err @ QueueError::Read { .. }) => (
                StoredMessage {
                    id: format!("<unreadable: {err}>"),
                    ..StoredMessage::default()
                },
                false,
            ),
            Err(err) => return Err(err),
        };
        Ok((
            DeadLetter {
                key,
                id: m.id,
                headers: m.headers,
                payload: m.payload,
                enqueued_at: m.enqueued_at,
                attempts: e.attempts,
                first_failure: e.first_failure,
                last_failure: e.last_failure,
                reason: e.reason.to_string(),
                last_error: e.last_error.to_string(),
            },
            readable,
        ))
    }

    // ---- threads ----

    fn writer_loop(self: Arc<Self>) {
        let mut file: Option<(u32, Box<dyn FsFile>)> = None;
        // Bytes written to `file` and not yet fsynced (only with `Interval` or `Never`).
        let mut dirty = false;
        let mut last_sync = Instant::now();
        loop {
            let (batch, chunks, force) = {
                let mut inner = lock(&self.inner);
                loop {
                    if inner.log.has_work() || inner.force_sync {
                        break;
                    }
                    if inner.stop_writer {
                        if dirty && let Some((_, f)) = file.as_mut() {
                            let _ = f.sync();
                        }
                        return;
                    }
                    let timeout = match self.opts.fsync {
                        Fsync::Interval(d) if dirty => d.saturating_sub(last_sync.elapsed()),
                        _ => Duration::from_secs(3600),
                    };
                    if timeout.is_zero() {
                        break;
                    }
                    inner.writer_idle = true;
                    inner = self
                        .writer_cv
                        .wait_timeout(inner, timeout)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                    inner.writer_idle = false;
                }
                if inner.log.since_checkpoint >= self.checkpoint_threshold(&inner) {
                    self.maint_cv.notify_one();
                }
                let force = std::mem::take(&mut inner.force_sync);
                let (batch, chunks) = inner.log.take();
                (batch, chunks, force)
            };
            let written = self.write_batch(&mut file, &chunks, &mut dirty);
            {
                let mut inner = lock(&self.inner);
                for c in chunks {
                    inner.log.recycle(c.bytes);
                }
            }
            let synced = written.and_then(|()| {
                let due = match self.opts.fsync {
                    Fsync::Always => true,
                    Fsync::Interval(d) => last_sync.elapsed() >= d,
                    Fsync::Never => false,
                };
                if dirty && (due || force) {
                    if let Some((seg, f)) = file.as_mut() {
                        f.sync().map_err(|e| {
                            format!("fsync of {}: {e}", self.dir.join(seg_name(*seg)).display())
                        })?;
                    }
                    dirty = false;
                    last_sync = Instant::now();
                }
                Ok(())
            });
            match synced {
                Ok(()) => self.durable.advance(batch),
                Err(cause) => {
                    self.durable.fail(cause.into());
                    self.avail_cv.notify_all();
                    return;
                }
            }
        }
    }

    /// Writes chunks, marking `dirty` when bytes went to a file. A segment that is left for a
    /// new one is fsynced first (except with `Fsync::Never`), so only the current segment can
    /// hold bytes that are not durable (what `Fsync::Interval` promises, and what a
    /// checkpoint's forced sync relies on). A new segment's directory entry is fsynced before
    /// return. Errors name the file.
    fn write_batch(
        &self,
        file: &mut Option<(u32, Box<dyn FsFile>)>,
        chunks: &[Chunk],
        dirty: &mut bool,
    ) -> Result<(), String> {
        let mut created = false;
        let ctx = |what: &str, seg: u32, e: std::io::Error| {
            format!("{what} {}: {e}", self.dir.join(seg_name(seg)).display())
        };
        for c in chunks {
            if c.create {
                if let Some((seg, f)) = file.as_mut()
                    && *dirty
                    && !matches!(self.opts.fsync, Fsync::Never)
                {
                    f.sync().map_err(|e| ctx("fsync of", *seg, e))?;
                    *dirty = false;
                }
                let path = self.dir.join(seg_name(c.seg));
                let mut f = self
                    .fs
                    .create(&path)
                    .map_err(|e| ctx("creating", c.seg, e))?;
                f.append(&seg_header(c.seg, c.salt, self.clock.now_ms()))
                    .map_err(|e| ctx("writing", c.seg, e))?;
                *file = Some((c.seg, f));
                created = true;
                *dirty = true;
            }
            if c.bytes.is_empty() {
                continue;
            }
            let f = match file.as_mut() {
                Some((seg, f)) if *seg == c.seg => f,
                _ => {
                    let path = self.dir.join(seg_name(c.seg));
                    let f = self
                        .fs
                        .open_append(&path)
                        .map_err(|e| ctx("opening", c.seg, e))?;
                    &mut file.insert((c.seg, f)).1
                }
            };
            f.append(&c.bytes).map_err(|e| ctx("writing", c.seg, e))?;
            *dirty = true;
        }
        if created {
            // The new segment's header and records must be durable before its directory
            // entry is relied on.
            if matches!(self.opts.fsync, Fsync::Always)
                && let Some((seg, f)) = file.as_mut()
            {
                f.sync().map_err(|e| ctx("fsync of", *seg, e))?;
                *dirty = false;
            }
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| format!("fsync of directory {}: {e}", self.dir.display()))?;
        }
        Ok(())
    }

    fn maintenance_loop(self: Arc<Self>) {
        loop {
            let closing = {
                let mut inner = lock(&self.inner);
                while !inner.closing
                    && inner.log.since_checkpoint < self.checkpoint_threshold(&inner)
                {
                    inner = self.maint_cv.wait(inner).unwrap_or_else(|e| e.into_inner());
                }
                inner.closing
            };
            if self.durable.error().is_some() {
                return;
            }
            if let Err(cause) = self.checkpoint() {
                self.durable.fail(cause.into());
                return;
            }
            if closing {
                return;
            }
        }
    }

    fn checkpoint_threshold(&self, inner: &Inner) -> u64 {
        self.opts
            .checkpoint_bytes
            .max(inner.last_checkpoint_bytes.saturating_mul(2))
    }

    /// Writes a checkpoint and deletes segments nothing refers to any more.
    ///
    /// Two generations are kept: installing a new `checkpoint` renames the old one to
    /// `checkpoint.prev`, and a segment is deleted only if it lies before the *previous*
    /// generation's position (and holds nothing live), so either generation can rebuild the
    /// state. With `Fsync::Always` and `Fsync::Interval` the log is fsynced up to the
    /// checkpoint's position before it is installed: a checkpoint never covers records that
    /// are not durable (with `Never`, a power loss may take records a checkpoint covers; their
    /// messages are then dead-lettered as corrupt when read).
    fn checkpoint(&self) -> Result<(), String> {
        let (bytes, commit, deletable, pos) = {
            let mut inner = lock(&self.inner);
            if inner.log.since_checkpoint == 0 && inner.checkpoint_pos.is_some() {
                return Ok(());
            }
            let pos = Pos {
                seg: inner.log.seg,
                off: inner.log.len,
            };
            let bytes = checkpoint::encode(&inner.st, pos);
            inner.last_checkpoint_bytes = bytes.len() as u64;
            inner.log.since_checkpoint = 0;
            // Segments before the generation that is about to become the previous one.
            let keep_from = inner.checkpoint_pos.map_or(0, |p| p.seg.min(pos.seg));
            let deletable: Vec<u32> = inner
                .log
                .segs
                .keys()
                .copied()
                .filter(|&id| id < keep_from && !inner.st.seg_live.contains_key(&id))
                .collect();
            // `Never` promises nothing after a power loss and fsyncs nothing; every other mode
            // makes the log durable up to the checkpoint's position first.
            let commit = if matches!(self.opts.fsync, Fsync::Never) {
                self.commit_locked(&inner)
            } else {
                // The writer takes the batch being filled even if nothing else is appended.
                inner.force_sync = true;
                Commit::new(self.durable.clone(), inner.log.batch, self.name.clone())
            };
            (bytes, commit, deletable, pos)
        };
        self.writer_cv.notify_one();
        commit.wait().map_err(|e| e.to_string())?;
        let tmp = self.dir.join(CHECKPOINT_TMP);
        let dst = self.dir.join(CHECKPOINT);
        let prev = self.dir.join(CHECKPOINT_PREV);
        let io = |what: &str, e: std::io::Error| format!("checkpoint: {what}: {e}");
        if self.fs.exists(&tmp) {
            self.fs
                .remove(&tmp)
                .map_err(|e| io("removing old tmp", e))?;
        }
        let mut f = self.fs.create(&tmp).map_err(|e| io("creating", e))?;
        f.append(&bytes).map_err(|e| io("writing", e))?;
        f.sync().map_err(|e| io("fsync", e))?;
        drop(f);
        if self.fs.exists(&dst) {
            self.fs
                .rename(&dst, &prev)
                .map_err(|e| io("keeping the previous generation", e))?;
        }
        self.fs.rename(&tmp, &dst).map_err(|e| io("rename", e))?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(|e| io("fsync of directory", e))?;
        lock(&self.inner).checkpoint_pos = Some(pos);
        if !deletable.is_empty() {
            for id in &deletable {
                let p = self.dir.join(seg_name(*id));
                if self.fs.exists(&p) {
                    self.fs.remove(&p).map_err(|e| io("removing segment", e))?;
                }
            }
            self.fs
                .sync_dir(&self.dir)
                .map_err(|e| io("fsync of directory", e))?;
            let mut inner = lock(&self.inner);
            let mut readers = lock(&self.readers);
            for id in &deletable {
                inner.log.segs.remove(id);
                readers.remove(id);
            }
        }
        Ok(())
    }

    fn shutdown(&self, handles: &Mutex<Vec<JoinHandle<()>>>) {
        let mut hs = lock(handles);
        if hs.is_empty() {
            return;
        }
        {
            let mut inner = lock(&self.inner);
            inner.closing = true;
        }
        self.maint_cv.notify_all();
        self.avail_cv.notify_all();
        // The checkpoint thread goes first: its final checkpoint needs the writer.
        let maint = hs.remove(0);
        let _ = maint.join();
        lock(&self.inner).stop_writer = true;
        self.writer_cv.notify_all();
        for h in hs.drain(..) {
            let _ = h.join();
        }
        self.durable.close();
        lock(&self.dir_lock).take();
    }
}
