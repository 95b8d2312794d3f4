//! Group commit: the writer thread and the promises it keeps ([`Durable`], [`Commit`]).
//!
//! Operations append records to the write buffer under the queue lock and take a [`Commit`]
//! for the batch their records belong to. The writer thread takes the whole buffer at once,
//! writes it, makes it durable (one fsync for every operation waiting on the batch) and then
//! announces the batch durable through [`Durable`], which resolves the commits. (tikv's
//! raft-engine calls this half `write_barrier`.)
//!
//! Invariants:
//! - Batches become durable in order: when batch `n` is announced, every record of batches
//!   `<= n` is durable (or, with `Fsync::Interval`/`Never`, written to the operating system).
//! - A new segment's header is written before its records, and its directory entry is made
//!   durable (fsync of the directory) before any batch containing its records is announced.
//! - Only the current segment can hold bytes that are not durable: a segment left for a new
//!   one is fsynced first (except with `Fsync::Never`). What `Fsync::Interval` promises, and
//!   what a checkpoint's forced sync relies on.
//! - After an I/O error the writer announces nothing more and stops. The waiters of the batch
//!   it failed on get [`QueueError::Io`]; every later waiter and operation gets
//!   [`QueueError::Poisoned`] with the same cause. A failed fsync is never retried.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::shared::Shared;
use crate::error::{IoError, QueueError};
use crate::fs::FsFile;
use crate::log::{Chunk, seg_header, seg_name};
use crate::options::Fsync;

/// The first I/O failure of a queue.
#[derive(Debug)]
struct Failure {
    cause: Arc<IoError>,
    /// The batch whose write failed, if a write did (not a checkpoint or a read).
    batch: Option<u64>,
}

#[derive(Debug, Default)]
struct DurState {
    durable: u64,
    failure: Option<Failure>,
    closed: bool,
    wakers: Vec<(u64, Waker)>,
}

/// Which batches are durable, and a way to wait for one.
#[derive(Debug, Default)]
pub(crate) struct Durable {
    st: Mutex<DurState>,
    cv: Condvar,
    /// Set once an error is recorded: a lock-free check for every operation's fast path.
    failed: AtomicBool,
}

impl Durable {
    /// Announces every batch up to `batch` durable.
    pub fn advance(&self, batch: u64) {
        let mut st = self.st.lock();
        st.durable = st.durable.max(batch);
        let durable = st.durable;
        let mut ready = Vec::new();
        st.wakers.retain(|(b, w)| {
            if *b <= durable {
                ready.push(w.clone());
                false
            } else {
                true
            }
        });
        drop(st);
        self.cv.notify_all();
        ready.into_iter().for_each(Waker::wake);
    }

    /// Records a fatal I/O error (the first one counts): every waiter and later operation
    /// fails with it. `batch` is the batch whose write failed, if the failure was a write.
    pub fn fail(&self, cause: Arc<IoError>, batch: Option<u64>) {
        let mut st = self.st.lock();
        st.failure.get_or_insert(Failure { cause, batch });
        self.failed.store(true, Ordering::Release);
        let wakers = std::mem::take(&mut st.wakers);
        drop(st);
        self.cv.notify_all();
        wakers.into_iter().for_each(|(_, w)| w.wake());
    }

    /// Marks the queue closed: waiters for batches that will never be written are released.
    pub fn close(&self) {
        let mut st = self.st.lock();
        st.closed = true;
        let wakers = std::mem::take(&mut st.wakers);
        drop(st);
        self.cv.notify_all();
        wakers.into_iter().for_each(|(_, w)| w.wake());
    }

    /// The fatal error, if one happened.
    pub fn error(&self) -> Option<Arc<IoError>> {
        if !self.failed.load(Ordering::Acquire) {
            return None;
        }
        self.st.lock().failure.as_ref().map(|f| f.cause.clone())
    }

    fn check(st: &DurState, batch: u64, queue: &str) -> Option<Result<(), QueueError>> {
        if st.durable >= batch {
            Some(Ok(()))
        } else if let Some(f) = &st.failure {
            let (queue, cause) = (queue.to_string(), f.cause.clone());
            Some(Err(if f.batch == Some(batch) {
                QueueError::Io { queue, cause }
            } else {
                QueueError::Poisoned { queue, cause }
            }))
        } else if st.closed {
            Some(Err(QueueError::Closed {
                queue: queue.to_string(),
            }))
        } else {
            None
        }
    }

    fn wait(&self, batch: u64, queue: &str) -> Result<(), QueueError> {
        let mut st = self.st.lock();
        loop {
            if let Some(r) = Self::check(&st, batch, queue) {
                return r;
            }
            self.cv.wait(&mut st);
        }
    }

    fn poll(&self, batch: u64, queue: &str, cx: &mut Context<'_>) -> Poll<Result<(), QueueError>> {
        let mut st = self.st.lock();
        if let Some(r) = Self::check(&st, batch, queue) {
            return Poll::Ready(r);
        }
        st.wakers.push((batch, cx.waker().clone()));
        Poll::Pending
    }
}

/// A promise that some operation's records become durable.
///
/// [`Commit::wait`] blocks until they are; a `Commit` is also a [`Future`], for async callers.
/// Dropping it does not cancel anything: the records are written either way.
pub struct Commit {
    durable: Option<Arc<Durable>>,
    batch: u64,
    queue: Arc<str>,
}

impl fmt::Debug for Commit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Commit")
            .field("queue", &self.queue)
            .field("batch", &self.batch)
            .finish()
    }
}

impl Commit {
    pub(crate) fn new(durable: Arc<Durable>, batch: u64, queue: Arc<str>) -> Self {
        Commit {
            durable: Some(durable),
            batch,
            queue,
        }
    }

    /// A commit with nothing to wait for.
    pub(crate) fn done(queue: Arc<str>) -> Self {
        Commit {
            durable: None,
            batch: 0,
            queue,
        }
    }

    /// Blocks until the records are durable; fails if the queue failed or closed first.
    pub fn wait(self) -> Result<(), QueueError> {
        match &self.durable {
            Some(d) => d.wait(self.batch, &self.queue),
            None => Ok(()),
        }
    }
}

impl Future for Commit {
    type Output = Result<(), QueueError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &self.durable {
            Some(d) => d.poll(self.batch, &self.queue, cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// The segment file the writer appends to.
struct OpenSegment {
    seg: u32,
    file: Box<dyn FsFile>,
}

/// The writer thread's own state: its open segment and what of it is not yet fsynced.
struct Writer<'a> {
    shared: &'a Shared,
    file: Option<OpenSegment>,
    /// Bytes written to `file` and not yet fsynced (only with `Interval` or `Never`).
    dirty: bool,
    last_sync: Instant,
}

impl Shared {
    /// The writer thread: takes the write buffer batch by batch, writes and syncs it, and
    /// announces it durable; stops after an I/O error or when told to.
    pub(super) fn writer_loop(self: Arc<Self>) {
        let mut w = Writer {
            shared: &self,
            file: None,
            dirty: false,
            last_sync: Instant::now(),
        };
        loop {
            let (batch, chunks, force) = {
                let mut inner = self.inner.lock();
                loop {
                    if inner.log.has_work() || inner.force_sync {
                        break;
                    }
                    if inner.stop_writer {
                        if w.dirty
                            && let Some(open) = w.file.as_mut()
                        {
                            let _ = open.file.sync();
                        }
                        return;
                    }
                    let timeout = match self.opts.fsync {
                        Fsync::Interval(d) if w.dirty => d.saturating_sub(w.last_sync.elapsed()),
                        _ => Duration::from_secs(3600),
                    };
                    if timeout.is_zero() {
                        break;
                    }
                    inner.writer_idle = true;
                    self.writer_cv.wait_for(&mut inner, timeout);
                    inner.writer_idle = false;
                }
                if inner.log.since_checkpoint >= self.checkpoint_threshold(&inner) {
                    self.maint_cv.notify_one();
                }
                let force = std::mem::take(&mut inner.force_sync);
                let (batch, chunks) = inner.log.take();
                (batch, chunks, force)
            };
            let written = w.write_batch(&chunks);
            {
                let mut inner = self.inner.lock();
                for c in chunks {
                    inner.log.recycle(c.bytes);
                }
            }
            match written.and_then(|()| w.sync_if_due(force)) {
                Ok(()) => self.durable.advance(batch),
                Err(cause) => {
                    self.durable.fail(Arc::new(cause), Some(batch));
                    self.avail_cv.notify_all();
                    return;
                }
            }
        }
    }
}

/// A failed operation on segment `seg` of the queue.
fn segment_error(s: &Shared, op: &'static str, seg: u32, e: std::io::Error) -> IoError {
    IoError::new(op, s.dir.join(seg_name(seg)), e)
}

impl Writer<'_> {
    /// Writes chunks, marking `dirty` when bytes went to a file. A segment that is left for a
    /// new one is fsynced first (except with `Fsync::Never`). A new segment's directory entry
    /// is fsynced before return. Errors name the file.
    fn write_batch(&mut self, chunks: &[Chunk]) -> Result<(), IoError> {
        let s = self.shared;
        let mut created = false;
        for c in chunks {
            if c.create {
                if self.dirty
                    && !matches!(s.opts.fsync, Fsync::Never)
                    && let Some(open) = self.file.as_mut()
                {
                    let seg = open.seg;
                    open.file
                        .sync()
                        .map_err(|e| segment_error(s, "fsync of", seg, e))?;
                    self.dirty = false;
                }
                let path = s.dir.join(seg_name(c.seg));
                let mut file =
                    s.fs.create(&path)
                        .map_err(|e| segment_error(s, "creating", c.seg, e))?;
                file.append(&seg_header(c.seg, c.salt, s.clock.now_ms()))
                    .map_err(|e| segment_error(s, "writing", c.seg, e))?;
                self.file = Some(OpenSegment { seg: c.seg, file });
                created = true;
                self.dirty = true;
            }
            if c.bytes.is_empty() {
                continue;
            }
            if self.file.as_ref().is_none_or(|open| open.seg != c.seg) {
                let path = s.dir.join(seg_name(c.seg));
                let file =
                    s.fs.open_append(&path)
                        .map_err(|e| segment_error(s, "opening", c.seg, e))?;
                self.file = Some(OpenSegment { seg: c.seg, file });
            }
            if let Some(open) = self.file.as_mut() {
                let seg = open.seg;
                open.file
                    .append(&c.bytes)
                    .map_err(|e| segment_error(s, "writing", seg, e))?;
                self.dirty = true;
            }
        }
        if created {
            // The new segment's header and records must be durable before its directory
            // entry is relied on.
            if matches!(s.opts.fsync, Fsync::Always)
                && let Some(open) = self.file.as_mut()
            {
                let seg = open.seg;
                open.file
                    .sync()
                    .map_err(|e| segment_error(s, "fsync of", seg, e))?;
                self.dirty = false;
            }
            s.fs.sync_dir(&s.dir)
                .map_err(|e| IoError::new("fsync of directory", &s.dir, e))?;
        }
        Ok(())
    }

    /// Fsyncs the current segment if it holds bytes not yet durable and the `Fsync` mode
    /// wants it now (or `force`: a checkpoint waits on it).
    fn sync_if_due(&mut self, force: bool) -> Result<(), IoError> {
        let s = self.shared;
        let due = match s.opts.fsync {
            Fsync::Always => true,
            Fsync::Interval(d) => self.last_sync.elapsed() >= d,
            Fsync::Never => false,
        };
        if self.dirty && (due || force) {
            if let Some(open) = self.file.as_mut() {
                let seg = open.seg;
                open.file
                    .sync()
                    .map_err(|e| segment_error(s, "fsync of", seg, e))?;
            }
            self.dirty = false;
            self.last_sync = Instant::now();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durable_wait_returns_once_advanced_and_fails_on_error() {
        let d = Arc::new(Durable::default());
        let c = Commit::new(d.clone(), 3, "q".into());
        let t = {
            let d = d.clone();
            std::thread::spawn(move || d.advance(3))
        };
        c.wait().unwrap();
        t.join().unwrap();
        let fire = IoError::new(
            "fsync of",
            "/q/0000000001.seg",
            std::io::Error::other("disk on fire"),
        );
        d.fail(Arc::new(fire), Some(4));
        let err = Commit::new(d.clone(), 4, "q".into()).wait().unwrap_err();
        assert!(
            matches!(&err, QueueError::Io { cause, .. } if cause.op == "fsync of"),
            "the batch that failed reports the failure itself: {err}"
        );
        assert!(err.to_string().contains("disk on fire"), "{err}");
        let err = Commit::new(d.clone(), 5, "q".into()).wait().unwrap_err();
        assert!(
            matches!(&err, QueueError::Poisoned { .. }),
            "a later batch reports the earlier failure: {err}"
        );
        assert!(err.to_string().contains("disk on fire"), "{err}");
        assert!(
            d.error()
                .is_some_and(|c| c.kind() == std::io::ErrorKind::Other)
        );
    }
}
