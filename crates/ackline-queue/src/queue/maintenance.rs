//! The maintenance thread: checkpoints and segment reclamation (tikv's raft-engine calls this
//! half `purge`).
//!
//! The thread sleeps until the log has grown past the checkpoint threshold (the writer wakes
//! it) or the queue closes, then writes a checkpoint and deletes the segments nothing refers
//! to any more. Closing the queue writes a final checkpoint, so the next open replays little.
//!
//! Invariants:
//! - Two checkpoint generations are kept: installing a new `checkpoint` renames the old one to
//!   `checkpoint.prev`, and a segment is deleted only if it lies before the *previous*
//!   generation's position and holds nothing live (`State::seg_live`), so either generation
//!   can rebuild the state.
//! - With `Fsync::Always` and `Fsync::Interval` the log is fsynced up to the checkpoint's
//!   position before the checkpoint is installed: a checkpoint never covers records that are
//!   not durable. (With `Never`, a power loss may take records a checkpoint covers; their
//!   messages are then dead-lettered as corrupt when read.)
//! - A checkpoint is installed atomically (written to `checkpoint.tmp`, fsynced, renamed, the
//!   directory fsynced); a failure at any step poisons the queue and leaves the installed
//!   generations as they were.
//! - The threshold doubles with the checkpoint's size (at least `checkpoint_bytes` of log
//!   between checkpoints), so checkpointing costs amortised O(1) per appended byte.

use std::path::Path;
use std::sync::Arc;

use super::shared::{Inner, Shared};
use super::writer::Commit;
use crate::checkpoint::{self, Pos};
use crate::error::IoError;
use crate::log::seg_name;
use crate::options::Fsync;
use crate::recovery::{CHECKPOINT, CHECKPOINT_PREV, CHECKPOINT_TMP};

/// Why a checkpoint was not installed.
enum CheckpointFailed {
    /// A file operation of the checkpoint failed: the queue is poisoned with it.
    Io(IoError),
    /// The log could not be made durable up to the checkpoint's position: the queue failed
    /// already (its cause is recorded in `Durable`).
    Log,
}

/// Maps a failed file operation of the checkpoint to its [`CheckpointFailed`].
fn io<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> CheckpointFailed + 'a {
    move |e| CheckpointFailed::Io(IoError::new(op, path, e))
}

impl Shared {
    /// The maintenance thread: checkpoints when due and once more when the queue closes.
    pub(super) fn maintenance_loop(self: Arc<Self>) {
        loop {
            let closing = {
                let mut inner = self.inner.lock();
                while !inner.closing
                    && inner.log.since_checkpoint < self.checkpoint_threshold(&inner)
                {
                    self.maint_cv.wait(&mut inner);
                }
                inner.closing
            };
            if self.durable.error().is_some() {
                return;
            }
            match self.checkpoint() {
                Ok(()) => {}
                Err(CheckpointFailed::Io(cause)) => {
                    self.durable.fail(Arc::new(cause), None);
                    return;
                }
                Err(CheckpointFailed::Log) => return,
            }
            if closing {
                return;
            }
        }
    }

    /// Bytes of log after which the next checkpoint is due.
    pub(super) fn checkpoint_threshold(&self, inner: &Inner) -> u64 {
        self.opts
            .checkpoint_bytes
            .max(inner.last_checkpoint_bytes.saturating_mul(2))
    }

    /// Writes a checkpoint and deletes segments nothing refers to any more (see the module
    /// doc for the two generations and the forced sync).
    fn checkpoint(&self) -> Result<(), CheckpointFailed> {
        let (bytes, commit, deletable, pos) = {
            let mut inner = self.inner.lock();
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
        commit.wait().map_err(|_| CheckpointFailed::Log)?;
        let tmp = self.dir.join(CHECKPOINT_TMP);
        let dst = self.dir.join(CHECKPOINT);
        let prev = self.dir.join(CHECKPOINT_PREV);
        if self.fs.exists(&tmp) {
            self.fs
                .remove(&tmp)
                .map_err(io("checkpoint: removing the stale", &tmp))?;
        }
        let mut f = self
            .fs
            .create(&tmp)
            .map_err(io("checkpoint: creating", &tmp))?;
        f.append(&bytes).map_err(io("checkpoint: writing", &tmp))?;
        f.sync().map_err(io("checkpoint: fsync of", &tmp))?;
        drop(f);
        if self.fs.exists(&dst) {
            self.fs.rename(&dst, &prev).map_err(io(
                "checkpoint: keeping the previous generation, renaming",
                &dst,
            ))?;
        }
        self.fs
            .rename(&tmp, &dst)
            .map_err(io("checkpoint: installing (rename)", &tmp))?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(io("checkpoint: fsync of directory", &self.dir))?;
        self.inner.lock().checkpoint_pos = Some(pos);
        if !deletable.is_empty() {
            for id in &deletable {
                let p = self.dir.join(seg_name(*id));
                if self.fs.exists(&p) {
                    self.fs
                        .remove(&p)
                        .map_err(io("checkpoint: removing segment", &p))?;
                }
            }
            self.fs
                .sync_dir(&self.dir)
                .map_err(io("checkpoint: fsync of directory", &self.dir))?;
            let mut inner = self.inner.lock();
            let mut readers = self.readers.lock();
            for id in &deletable {
                inner.log.segs.remove(id);
                readers.remove(id);
            }
        }
        Ok(())
    }
}
