//! What every actor of a queue shares: the index and write buffer under one lock, the
//! condition variables the actors sleep on, and the steps more than one actor takes (refusing
//! work after a failure, waking sleepers, applying timers, dead-lettering, appending a publish).
//!
//! Locking: one mutex per queue ([`Shared::inner`]) guards the index ([`State`]) and the write
//! buffer ([`Appender`]); an operation takes it once, appends its records and applies their
//! effect, and releases it before waiting for durability or reading payloads from disk. The
//! segment readers have their own mutex, never taken while waiting for `inner`.
//!
//! Invariants:
//! - Every record is appended and its transition applied under one hold of `inner`, so the
//!   index always equals what the log (written or buffered) says.
//! - Whoever appends wakes the writer if it sleeps ([`Shared::wake`]); whoever makes a message
//!   deliverable wakes the consumers waiting in `receive`. Sleepers are woken only when someone
//!   waits, so an operation costs no futex call when the threads are busy.
//! - A move to the dead-letter queue is one record ([`Shared::dead_letter`]); a read-only
//!   queue applies it in memory only and writes nothing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use parking_lot::{Condvar, Mutex};

use super::types::{REASON_CORRUPT, REASON_MAX_ATTEMPTS};
use super::writer::{Commit, Durable};
use crate::checkpoint::Pos;
use crate::clock::Clock;
use crate::error::{PublishError, QueueError};
use crate::fs::{DirLock, Fs, FsRead};
use crate::log::Appender;
use crate::options::QueueOptions;
use crate::record::MessageRef;
use crate::recovery::RecoveryReport;
use crate::state::{Fp, SlotState, State};

/// The last error of a message whose deliveries ended without a consumer's word.
const NO_ERROR: &str = "deliveries ended without a settlement (consumer died or its lease expired)";

/// The stored parts of a message, borrowed from a new message or a dead-letter entry.
pub(super) struct MessageParts<'a> {
    /// When the message was first published, Unix ms.
    pub(super) enqueued_at: u64,
    pub(super) headers: &'a [(String, String)],
    pub(super) payload: &'a [u8],
}

/// The state under the queue lock.
pub(super) struct Inner {
    pub(super) st: State,
    pub(super) log: Appender,
    /// The writer sleeps on `writer_cv` (so an append must wake it).
    pub(super) writer_idle: bool,
    /// Consumers sleeping on `avail_cv` in `receive`.
    pub(super) receivers_waiting: u32,
    pub(super) stop_writer: bool,
    pub(super) closing: bool,
    pub(super) last_checkpoint_bytes: u64,
    /// Position of the installed `checkpoint` (it becomes `checkpoint.prev` at the next
    /// install; segments before it are kept so that generation can stand in).
    pub(super) checkpoint_pos: Option<Pos>,
    /// The next batch must be fsynced whatever the `Fsync` mode (a checkpoint waits on it).
    pub(super) force_sync: bool,
}

impl Inner {
    /// The state of a queue just recovered.
    pub(super) fn new(st: State, log: Appender, checkpoint_pos: Option<Pos>) -> Inner {
        Inner {
            st,
            log,
            writer_idle: false,
            receivers_waiting: 0,
            stop_writer: false,
            closing: false,
            last_checkpoint_bytes: 0,
            checkpoint_pos,
            force_sync: false,
        }
    }

    /// Appends the publish record of a message at the next position and indexes it; returns
    /// the position. `replay_of` names the dead-letter entry a replay takes it from (which
    /// leaves the dead-letter queue in the same record).
    pub(super) fn publish(
        &mut self,
        id: &str,
        fp: Fp,
        m: MessageParts<'_>,
        replay_of: Option<u64>,
    ) -> u64 {
        let seq = self.st.next_seq;
        let msg = MessageRef {
            id,
            enqueued_at: m.enqueued_at,
            headers: m
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            payload: m.payload,
        };
        let loc = self.log.append(|e| e.publish(seq, replay_of, &msg));
        self.st.on_publish(seq, loc, replay_of, fp);
        seq
    }
}

/// One queue's state, shared by its handles, its consumers and its two threads.
pub(crate) struct Shared {
    pub(super) name: Arc<str>,
    pub(super) dir: PathBuf,
    pub(super) fs: Arc<dyn Fs>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) opts: QueueOptions,
    pub(super) inner: Mutex<Inner>,
    /// The writer sleeps here while there is nothing to write.
    pub(super) writer_cv: Condvar,
    /// Consumers sleep here in `receive` while nothing is deliverable.
    pub(super) avail_cv: Condvar,
    /// The maintenance thread sleeps here until a checkpoint is due or the queue closes.
    pub(super) maint_cv: Condvar,
    pub(super) durable: Arc<Durable>,
    /// Open segment files for reading, by segment id (the read path's cache).
    pub(super) readers: Mutex<HashMap<u32, Arc<dyn FsRead>>>,
    pub(super) next_consumer: AtomicU64,
    pub(super) report: RecoveryReport,
    /// Held until the queue closes; then released even if handles remain. `None` when the
    /// queue was opened read-only.
    pub(super) dir_lock: Mutex<Option<Arc<DirLock>>>,
    pub(super) read_only: bool,
}

impl Shared {
    pub(super) fn closed(&self) -> QueueError {
        QueueError::Closed {
            queue: self.name.to_string(),
        }
    }

    /// Refuses a write on a read-only queue, or on one poisoned by an earlier I/O error.
    pub(super) fn check_poisoned(&self) -> Result<(), QueueError> {
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

    /// Refuses `needed` more bytes if they would take the queue's pending messages and
    /// dead-letter entries together over `max_bytes` (both keep their records on disk).
    pub(super) fn check_room(&self, inner: &Inner, needed: u64) -> Result<(), PublishError> {
        let held = inner.st.pending_bytes + inner.st.dlq_bytes;
        if held.saturating_add(needed) > self.opts.max_bytes {
            return Err(PublishError::Full {
                queue: self.name.to_string(),
                pending_bytes: inner.st.pending_bytes,
                dead_letter_bytes: inner.st.dlq_bytes,
                limit_bytes: self.opts.max_bytes,
                needed_bytes: needed,
            });
        }
        Ok(())
    }

    /// A promise for everything appended so far.
    pub(super) fn commit_locked(&self, inner: &Inner) -> Commit {
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
    pub(super) fn wake(&self, inner: &mut Inner, ready: bool) {
        if inner.writer_idle && inner.log.has_work() {
            inner.writer_idle = false;
            self.writer_cv.notify_one();
        }
        if ready {
            self.wake_receivers(inner);
        }
    }

    pub(super) fn wake_receivers(&self, inner: &Inner) {
        if inner.receivers_waiting > 0 {
            self.avail_cv.notify_all();
        }
    }

    /// Applies due timers: expired leases and delays whose time has come.
    pub(super) fn tick(&self, inner: &mut Inner) {
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
    pub(super) fn dead_letter(
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
        if slot.state == SlotState::Settled {
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
}
