//! A queue, by actor: the [`Queue`] front (open, publish, stats, close) in this module, and
//! one module per actor that works on the shared state.
//!
//! | module | actor | what it does |
//! | --- | --- | --- |
//! | `types` | — | the public value types (`NewMessage`, `Delivery`, `DeadLetter`...) |
//! | `shared` | all | the state under the queue lock; steps several actors take |
//! | this module | producers, owners | `Queue`: open, publish, sync, stats, close |
//! | `consumer` | consumers | `Consumer`: receive, ack/nack/reject/settle, extend |
//! | `reader` | consumers, operators | stored messages read back (retried, coalesced) |
//! | `writer` | the writer thread | group commit: write and fsync batches; `Durable` and `Commit` |
//! | `maintenance` | the maintenance thread | checkpoints and segment reclamation |
//! | `dead_letters` | operators | `DeadLetterQueue`: list, get, find, replay, purge |
//!
//! Invariants (of the whole; each module lists its own):
//! - A publish is confirmed (its call returns, or its [`Commit`] resolves) only after its
//!   records are durable as `Fsync` promises.
//! - A message leaves the queue for the dead-letter queue in one record: after any crash it is
//!   in exactly one of the two.
//! - After an I/O error the queue refuses every write: the operations it hit get
//!   [`QueueError::Io`], every later one [`QueueError::Poisoned`] with the same cause.
//! - A message id that is pending or in the dead-letter queue is not enqueued again: the
//!   publish is confirmed with the position that already holds it (`Published::duplicate`).
//! - A message whose stored frame is damaged goes to the dead-letter queue with reason
//!   [`REASON_CORRUPT`]; nothing is dropped without a record of it.
//! - A queue opened read-only ([`crate::Db::open_read_only`]) changes no file: it starts no
//!   thread and refuses every write with [`QueueError::ReadOnly`].
//! - Closing stops the maintenance thread first (its final checkpoint needs the writer), then
//!   the writer; then waiters of batches never written get [`QueueError::Closed`] and the data
//!   directory's lock is released, even if handles remain.

mod consumer;
mod dead_letters;
mod maintenance;
mod reader;
mod shared;
mod types;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

pub use consumer::Consumer;
pub use dead_letters::DeadLetterQueue;
use shared::{Inner, MessageParts, Shared};
pub use types::{
    DeadLetter, Delivery, DlqFilter, DlqSelector, NewMessage, Outgoing, Published, QueueStats,
    REASON_CORRUPT, REASON_MAX_ATTEMPTS, Settlement, Tag,
};
pub use writer::Commit;
use writer::Durable;

use crate::clock::Clock;
use crate::error::{OpenError, PublishError, QueueError};
use crate::fs::{DirLock, Fs};
use crate::log::Appender;
use crate::options::QueueOptions;
use crate::record::FRAME_HEADER;
use crate::recovery::{Mode, RecoveryReport, recover};

/// The queue's threads, stopped when the last handle goes.
struct Threads {
    shared: Arc<Shared>,
    /// The maintenance thread first, then the writer (the order `shutdown` joins them in).
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
    ) -> Result<Queue, OpenError> {
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
            inner: Mutex::new(Inner::new(rec.state, log, rec.checkpoint_pos)),
            writer_cv: Condvar::new(),
            avail_cv: Condvar::new(),
            maint_cv: Condvar::new(),
            durable: Arc::new(Durable::default()),
            readers: Mutex::new(Default::default()),
            next_consumer: AtomicU64::new(1),
            report: rec.report,
            dir_lock: Mutex::new(dir_lock),
            read_only,
        });
        // Positions recovery proved but could not read go to the dead-letter queue now, so
        // they are visible (and durable as such) before anything else happens.
        let lost_commit = {
            let now = shared.clock.now_ms();
            let mut inner = shared.inner.lock();
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
                .map_err(|e| OpenError::io("starting a thread for", PathBuf::from(what), e))
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
                OpenError::io(
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
        mut batch: Vec<NewMessage>,
    ) -> Result<(Vec<Published>, Commit), PublishError> {
        let (now, needed) = self.admit(&batch)?;
        // Take the ids out of the (owned) batch rather than copying them.
        let ids = batch
            .iter_mut()
            .map(|m| m.id.take().unwrap_or_else(|| new_id(now)))
            .collect();
        self.append(&batch, ids, now, needed)
    }

    /// [`Queue::publish_nowait`] of a batch the caller keeps (to publish it again if it is
    /// refused for now, say): the messages are written from where they are, and only their
    /// ids are copied (into the [`Published`] results).
    pub fn publish_nowait_ref<M: Outgoing>(
        &self,
        batch: &[M],
    ) -> Result<(Vec<Published>, Commit), PublishError> {
        let (now, needed) = self.admit(batch)?;
        let ids = batch
            .iter()
            .map(|m| m.id().map_or_else(|| new_id(now), str::to_owned))
            .collect();
        self.append(batch, ids, now, needed)
    }

    /// Checks that the queue takes writes and every message is valid; returns the publish
    /// time and the bytes the batch needs.
    fn admit<M: Outgoing>(&self, batch: &[M]) -> Result<(u64, u64), PublishError> {
        let s = &self.shared;
        s.check_poisoned()?;
        let now = s.clock.now_ms();
        let mut needed = 0u64;
        for (index, m) in batch.iter().enumerate() {
            needed += check_message(&s.opts, index, m)? as u64;
        }
        Ok((now, needed))
    }

    /// Appends an admitted batch (message `i` with id `ids[i]`) under the lock: all of it, or
    /// nothing when the queue is closing or has no room.
    fn append<M: Outgoing>(
        &self,
        batch: &[M],
        ids: Vec<String>,
        now: u64,
        needed: u64,
    ) -> Result<(Vec<Published>, Commit), PublishError> {
        let s = &self.shared;
        let mut inner = s.inner.lock();
        if inner.closing {
            return Err(s.closed().into());
        }
        s.check_room(&inner, needed)?;
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
            let parts = MessageParts {
                enqueued_at: now,
                headers: m.headers(),
                payload: m.payload(),
            };
            let seq = inner.publish(&id, fp, parts, None);
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
        Consumer::new(self.clone())
    }

    /// The queue's dead-letter queue: list, get, find, replay, purge.
    pub fn dead_letters(&self) -> DeadLetterQueue<'_> {
        DeadLetterQueue::new(self)
    }

    /// Waits until everything done so far is durable.
    pub fn sync(&self) -> Result<(), QueueError> {
        if self.shared.read_only {
            return Ok(());
        }
        let inner = self.shared.inner.lock();
        let c = self.shared.commit_locked(&inner);
        drop(inner);
        self.shared.writer_cv.notify_one();
        c.wait()
    }

    /// Counts describing the queue now (timers that are due are applied first).
    pub fn stats(&self) -> QueueStats {
        let s = &self.shared;
        let mut inner = s.inner.lock();
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
            dead_letter_bytes: st.dlq_bytes,
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

    /// Closes the queue: stops the threads after flushing and writing a checkpoint. Other
    /// clones and consumers then fail with [`QueueError::Closed`].
    pub fn close(self) {
        self.shared.shutdown(&self.threads.handles);
    }
}

impl Shared {
    /// Stops the threads (the maintenance thread first: its final checkpoint needs the
    /// writer), releases waiters and the directory lock. Runs once; later calls do nothing.
    fn shutdown(&self, handles: &Mutex<Vec<JoinHandle<()>>>) {
        let mut hs = handles.lock();
        if hs.is_empty() {
            return;
        }
        self.inner.lock().closing = true;
        self.maint_cv.notify_all();
        self.avail_cv.notify_all();
        let maint = hs.remove(0);
        let _ = maint.join();
        self.inner.lock().stop_writer = true;
        self.writer_cv.notify_all();
        for h in hs.drain(..) {
            let _ = h.join();
        }
        self.durable.close();
        self.dir_lock.lock().take();
    }
}

/// Validates one message and returns its framed size.
fn check_message<M: Outgoing>(
    opts: &QueueOptions,
    index: usize,
    m: &M,
) -> Result<usize, PublishError> {
    let invalid = |reason: String| PublishError::Invalid { index, reason };
    if let Some(id) = m.id()
        && (id.is_empty() || id.len() > 1024)
    {
        return Err(invalid(format!(
            "id must be 1 to 1024 bytes, got {}",
            id.len()
        )));
    }
    if m.headers().len() > 1024 {
        return Err(invalid(format!(
            "at most 1024 headers, got {}",
            m.headers().len()
        )));
    }
    let mut size = FRAME_HEADER + 8 + 1 + 2 + m.id().map_or(28, str::len) + 8 + 2;
    for (k, v) in m.headers() {
        if k.len() > u16::MAX as usize || v.len() > u16::MAX as usize {
            return Err(invalid(format!(
                "header {k:.40}: name and value at most 65535 bytes"
            )));
        }
        size += 4 + k.len() + v.len();
    }
    size += m.payload().len();
    if size > opts.max_message_bytes {
        return Err(PublishError::TooLarge {
            index,
            size,
            max: opts.max_message_bytes,
        });
    }
    Ok(size)
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
