//! The append side of the log: segments, the write buffer and group commit.
//!
//! Operations append records to an in-memory [`Appender`] while holding the queue lock, and get
//! the number of the batch their records belong to. The writer thread takes the whole buffer
//! at once, writes it, makes it durable (one fsync for every operation waiting on the batch:
//! group commit) and then announces the batch durable through [`Durable`].
//!
//! Invariants:
//! - Batches become durable in order: when batch `n` is announced, every record of batches
//!   `<= n` is durable (or, with `Fsync::Interval`/`Never`, written to the operating system).
//! - A new segment's header is written before its records, and its directory entry is made
//!   durable (fsync of the directory) before any batch containing its records is announced.
//! - After an I/O error the writer announces nothing more: every waiter and every later
//!   operation gets [`QueueError::Poisoned`]. A failed fsync is never retried.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::error::QueueError;
use crate::record::{Encoder, runs};
use crate::state::Loc;

/// Initial capacity of a write buffer (buffers are reused, so this is paid rarely).
const CHUNK_CAPACITY: usize = 256 << 10;

/// Bytes of a segment header.
pub(crate) const SEG_HEADER: usize = 32;
const SEG_MAGIC: &[u8; 8] = b"ACKLSEG1";
const SEG_VERSION: u32 = 1;

/// The file name of segment `id`.
pub(crate) fn seg_name(id: u32) -> String {
    format!("{id:010}.seg")
}

/// The segment id of a file name, if it is one.
pub(crate) fn parse_seg_name(name: &str) -> Option<u32> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Encodes a segment header: magic, version, id, salt, creation time, CRC-32C of the rest.
pub(crate) fn seg_header(id: u32, salt: u32, created_ms: u64) -> [u8; SEG_HEADER] {
    let mut h = [0u8; SEG_HEADER];
    h[0..8].copy_from_slice(SEG_MAGIC);
    h[8..12].copy_from_slice(&SEG_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&id.to_le_bytes());
    h[16..20].copy_from_slice(&salt.to_le_bytes());
    h[20..28].copy_from_slice(&created_ms.to_le_bytes());
    let crc = crc32c::crc32c(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Decodes a segment header into `(id, salt)`, or says what is wrong with it.
pub(crate) fn parse_seg_header(h: &[u8]) -> Result<(u32, u32), String> {
    let h = h
        .get(..SEG_HEADER)
        .ok_or_else(|| format!("shorter than the {SEG_HEADER}-byte segment header"))?;
    if &h[0..8] != SEG_MAGIC {
        return Err("not an ackline segment (bad magic)".into());
    }
    let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    if crc32c::crc32c(&h[0..28]) != word(28) {
        return Err("segment header checksum mismatch".into());
    }
    let version = word(8);
    if version != SEG_VERSION {
        return Err(format!(
            "segment format version {version}, this build reads {SEG_VERSION}"
        ));
    }
    Ok((word(12), word(16)))
}

/// Bytes appended for one segment since the writer last took the buffer.
#[derive(Debug)]
pub(crate) struct Chunk {
    pub seg: u32,
    pub salt: u32,
    /// The segment is new: create its file and write its header first.
    pub create: bool,
    pub bytes: Vec<u8>,
}

/// The write buffer and the logical end of the log. Lives under the queue lock.
#[derive(Debug)]
pub(crate) struct Appender {
    pub seg: u32,
    pub salt: u32,
    /// Logical length of the current segment, buffered bytes included.
    pub len: u64,
    pub chunks: Vec<Chunk>,
    /// The batch now being filled.
    pub batch: u64,
    /// Bytes appended since the last checkpoint was started.
    pub since_checkpoint: u64,
    /// Every segment that exists or is about to: id to salt.
    pub segs: BTreeMap<u32, u32>,
    /// Written buffers handed back by the writer, reused so appends do not reallocate.
    spare: Vec<Vec<u8>>,
    /// Acks not yet encoded: they become one ACK record when the writer takes the batch.
    /// Deferring is safe because nothing appended later refers to an acked message.
    acks: Vec<u64>,
    seg_target: u64,
    /// Whether segment `seg` was started (its file is created with the first record, so an
    /// open that writes nothing leaves no file behind).
    started: bool,
}

impl Appender {
    /// An appender whose first record starts a new segment `seg`.
    pub fn new(seg: u32, segs: BTreeMap<u32, u32>, seg_target: u64) -> Self {
        Appender {
            seg,
            salt: 0,
            len: SEG_HEADER as u64,
            chunks: Vec::new(),
            batch: 1,
            since_checkpoint: 0,
            segs,
            spare: Vec::new(),
            acks: Vec::new(),
            seg_target,
            started: false,
        }
    }

    fn start_segment(&mut self, seg: u32) {
        self.started = true;
        self.seg = seg;
        self.salt = rand::random();
        self.len = SEG_HEADER as u64;
        self.segs.insert(seg, self.salt);
        let bytes = self.buffer();
        self.chunks.push(Chunk {
            seg,
            salt: self.salt,
            create: true,
            bytes,
        });
    }

    fn buffer(&mut self) -> Vec<u8> {
        self.spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(CHUNK_CAPACITY))
    }

    /// Takes back a written chunk's buffer for reuse.
    pub fn recycle(&mut self, mut bytes: Vec<u8>) {
        if self.spare.len() < 4 && bytes.capacity() <= 16 * CHUNK_CAPACITY {
            bytes.clear();
            self.spare.push(bytes);
        }
    }

    /// Appends one record written by `f`; returns where it will be.
    pub fn append(&mut self, f: impl FnOnce(&mut Encoder<'_>) -> usize) -> Loc {
        if !self.started {
            self.start_segment(self.seg);
        }
        if self.chunks.last().is_none_or(|c| c.seg != self.seg) {
            let bytes = self.buffer();
            self.chunks.push(Chunk {
                seg: self.seg,
                salt: self.salt,
                create: false,
                bytes,
            });
        }
        let off = self.len;
        let n = match self.chunks.last_mut() {
            Some(chunk) => f(&mut Encoder::new(&mut chunk.bytes, self.salt)),
            None => 0, // unreachable: a chunk was pushed above
        };
        self.len += n as u64;
        self.since_checkpoint += n as u64;
        let loc = Loc {
            seg: self.seg,
            off: off as u32,
            len: n as u32,
        };
        if self.len >= self.seg_target {
            self.start_segment(self.seg + 1);
        }
        loc
    }

    /// Adds acks to the batch being filled (encoded together when the batch is taken).
    pub fn defer_acks(&mut self, seqs: impl IntoIterator<Item = u64>) {
        self.acks.extend(seqs);
    }

    /// Whether anything waits to be written.
    pub fn has_work(&self) -> bool {
        !self.acks.is_empty() || self.chunks.iter().any(|c| c.create || !c.bytes.is_empty())
    }

    /// Takes the buffer for writing; returns it with its batch number, and opens the next batch.
    pub fn take(&mut self) -> (u64, Vec<Chunk>) {
        if !self.acks.is_empty() {
            let rs = runs(std::mem::take(&mut self.acks));
            self.append(|e| e.ack(&rs));
        }
        let batch = self.batch;
        self.batch += 1;
        (batch, std::mem::take(&mut self.chunks))
    }
}

#[derive(Debug, Default)]
struct DurState {
    durable: u64,
    error: Option<Arc<str>>,
    closed: bool,
    wakers: Vec<(u64, Waker)>,
}

/// Which batches are durable, and a way to wait for one.
#[derive(Debug, Default)]
pub(crate) struct Durable {
    st: Mutex<DurState>,
    cv: Condvar,
    /// Set once an error is recorded: a lock-free check for every operation's fast path.
    failed: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Durable {
    /// Announces every batch up to `batch` durable.
    pub fn advance(&self, batch: u64) {
        let mut st = lock(&self.st);
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

    /// Records a fatal I/O error: every waiter and later operation fails with it.
    pub fn fail(&self, cause: Arc<str>) {
        let mut st = lock(&self.st);
        st.error.get_or_insert(cause);
        self.failed
            .store(true, std::sync::atomic::Ordering::Release);
        let wakers = std::mem::take(&mut st.wakers);
        drop(st);
        self.cv.notify_all();
        wakers.into_iter().for_each(|(_, w)| w.wake());
    }

    /// Marks the queue closed: waiters for batches that will never be written are released.
    pub fn close(&self) {
        let mut st = lock(&self.st);
        st.closed = true;
        let wakers = std::mem::take(&mut st.wakers);
        drop(st);
        self.cv.notify_all();
        wakers.into_iter().for_each(|(_, w)| w.wake());
    }

    /// The fatal error, if one happened.
    pub fn error(&self) -> Option<Arc<str>> {
        if !self.failed.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        lock(&self.st).error.clone()
    }

    fn check(st: &DurState, batch: u64, queue: &str) -> Option<Result<(), QueueError>> {
        if st.durable >= batch {
            Some(Ok(()))
        } else if let Some(cause) = &st.error {
            Some(Err(QueueError::Poisoned {
                queue: queue.to_string(),
                cause: cause.clone(),
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
        let mut st = lock(&self.st);
        loop {
            if let Some(r) = Self::check(&st, batch, queue) {
                return r;
            }
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn poll(&self, batch: u64, queue: &str, cx: &mut Context<'_>) -> Poll<Result<(), QueueError>> {
        let mut st = lock(&self.st);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Frame, decode};

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(seg_name(42), "0000000042.seg");
        assert_eq!(parse_seg_name(&seg_name(42)), Some(42));
        assert_eq!(parse_seg_name("42.seg"), None);
        assert_eq!(parse_seg_name("0000000042.seg.tmp"), None);
    }

    #[test]
    fn headers_round_trip_and_reject_damage() {
        let h = seg_header(7, 99, 123);
        assert_eq!(parse_seg_header(&h), Ok((7, 99)));
        for i in 0..SEG_HEADER {
            let mut d = h;
            d[i] ^= 1;
            assert!(parse_seg_header(&d).is_err(), "flip at {i}");
        }
        assert!(parse_seg_header(&h[..20]).is_err());
    }

    #[test]
    fn appender_rolls_segments_and_locates_records() {
        let mut a = Appender::new(1, BTreeMap::new(), 100);
        let l1 = a.append(|e| e.ack(&[crate::record::Run { start: 0, len: 1 }]));
        assert_eq!((l1.seg, l1.off as usize), (1, SEG_HEADER));
        let mut last = l1;
        while last.seg == 1 {
            last = a.append(|e| e.nack(1, 2, 3, "some error text"));
        }
        assert_eq!((last.seg, last.off as usize), (2, SEG_HEADER));
        let (batch, chunks) = a.take();
        assert_eq!(batch, 1);
        assert_eq!(a.batch, 2);
        assert!(chunks[0].create && chunks.iter().any(|c| c.seg == 2 && c.create));
        // The first record decodes at its location within its chunk.
        let c = &chunks[0];
        assert!(matches!(
            decode(&c.bytes, l1.off as usize - SEG_HEADER, c.salt),
            Frame::Record(..)
        ));
    }

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
        d.fail("disk on fire".into());
        let err = Commit::new(d, 4, "q".into()).wait().unwrap_err();
        assert!(err.to_string().contains("disk on fire"), "{err}");
    }
}
