//! The read path: stored messages read back from their publish records, for deliveries and
//! for the dead-letter queue's views.
//!
//! Reads run without the queue lock (only the salts of the segments are looked up under it)
//! and share a cache of open segment files.
//!
//! Invariants:
//! - A read that fails is retried a few times, with the file reopened, before it counts:
//!   EMFILE, EIO and the like may pass. A read that fails every try is the queue's failure
//!   (it poisons the queue), never taken for a property of the message.
//! - A frame that reads but does not decode as the publish record of its position (checksum,
//!   salt, position) is the message's damage: a delivery of it is dead-lettered with reason
//!   [`REASON_CORRUPT`], never silently dropped.
//! - Nearby frames are read in one call (gaps up to 64 KiB, spans up to 4 MiB), so a batch of
//!   deliveries costs few system calls.

use std::sync::Arc;
use std::time::Duration;

use super::consumer::Picked;
use super::shared::Shared;
use super::types::{Delivery, REASON_CORRUPT, Tag};
use crate::error::{IoError, QueueError};
use crate::fs::FsRead;
use crate::log::seg_name;
use crate::record::{Frame, RecordRef, decode};
use crate::state::Loc;

/// How many times a failed read of a stored message is tried before the queue is poisoned.
const READ_TRIES: u32 = 4;

/// A message as read back from its publish record.
#[derive(Debug, Default)]
pub(super) struct StoredMessage {
    pub(super) id: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) enqueued_at: u64,
    pub(super) payload: Vec<u8>,
}

/// The salts of some segments (each segment's records are checksummed with its salt).
pub(super) struct Salts(Vec<(u32, u32)>);

impl Salts {
    /// The salt of segment `seg`, if it was asked for and still exists.
    pub(super) fn of(&self, seg: u32) -> Option<u32> {
        self.0
            .iter()
            .find(|&&(s, _)| s == seg)
            .map(|&(_, salt)| salt)
    }
}

impl Shared {
    fn reader(&self, seg: u32) -> Result<Arc<dyn FsRead>, IoError> {
        let mut readers = self.readers.lock();
        if let Some(r) = readers.get(&seg) {
            return Ok(r.clone());
        }
        let path = self.dir.join(seg_name(seg));
        let r = self.fs.open_read(&path).map_err(|e| IoError {
            op: "reading",
            path,
            offset: Some(0),
            cause: e,
        })?;
        readers.insert(seg, r.clone());
        Ok(r)
    }

    /// Reads `buf.len()` bytes of segment `seg` at `offset`. A failure is retried with the
    /// file reopened (EMFILE, EIO and the like may pass); only when every try failed is it an
    /// error, which the caller treats as the queue's, never as the message's.
    fn read_at(&self, seg: u32, buf: &mut [u8], offset: u64) -> Result<(), IoError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let res = self.reader(seg).and_then(|r| {
                r.read_exact_at(buf, offset).map_err(|e| IoError {
                    op: "reading",
                    path: self.dir.join(seg_name(seg)),
                    offset: Some(offset),
                    cause: e,
                })
            });
            match res {
                Ok(()) => return Ok(()),
                Err(e) if tries >= READ_TRIES => return Err(e),
                Err(_) => {
                    self.readers.lock().remove(&seg);
                    std::thread::sleep(Duration::from_millis(10 << tries));
                }
            }
        }
    }

    /// The salts of the distinct segments in `locs` (sorted by segment), read under one lock.
    pub(super) fn salts(&self, locs: &[Loc]) -> Salts {
        let inner = self.inner.lock();
        let mut out: Vec<(u32, u32)> = Vec::new();
        for l in locs {
            if out.last().is_none_or(|&(seg, _)| seg != l.seg)
                && let Some(&salt) = inner.log.segs.get(&l.seg)
            {
                out.push((l.seg, salt));
            }
        }
        Salts(out)
    }

    /// Reads the frames at `locs` (sorted by location), coalescing nearby ones into one read,
    /// and hands each to `f` with its index in `locs`.
    pub(super) fn read_frames(
        &self,
        locs: &[Loc],
        mut f: impl FnMut(usize, Result<&[u8], &Arc<IoError>>),
    ) {
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
            let res = self.read_at(first.seg, &mut buf, start).map_err(Arc::new);
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
    /// A read that fails after its retries poisons the queue and fails the receive with
    /// [`QueueError::Io`]: the deliveries stay leased in memory, their attempts counted, and
    /// come back after reopening.
    pub(super) fn load(&self, mut picked: Vec<Picked>) -> Result<Vec<Delivery>, QueueError> {
        picked.sort_by_key(|p| (p.loc.seg, p.loc.off));
        let locs: Vec<Loc> = picked.iter().map(|p| p.loc).collect();
        let salts = self.salts(&locs);
        let mut out = Vec::with_capacity(picked.len());
        let mut damaged = Vec::new();
        let mut io_error = None;
        self.read_frames(&locs, |k, frame| {
            let p = &picked[k];
            let salt = salts.of(p.loc.seg);
            match frame.map(|f| self.decode_message(p.loc, f, p.seq, salt)) {
                Ok(Ok(m)) => out.push(Delivery {
                    tag: Tag {
                        seq: p.seq,
                        attempt: p.attempt,
                    },
                    id: m.id,
                    headers: m.headers,
                    payload: m.payload,
                    enqueued_at: m.enqueued_at,
                    lease_until: p.lease_until,
                }),
                Ok(Err(reason)) => damaged.push((p.seq, reason)),
                Err(e) => {
                    io_error.get_or_insert_with(|| e.clone());
                }
            }
        });
        if let Some(cause) = io_error {
            self.durable.fail(cause.clone(), None);
            self.avail_cv.notify_all();
            return Err(QueueError::Io {
                queue: self.name.to_string(),
                cause,
            });
        }
        if !damaged.is_empty() {
            let now = self.clock.now_ms();
            let mut inner = self.inner.lock();
            for (seq, reason) in damaged {
                self.dead_letter(&mut inner, seq, now, REASON_CORRUPT, Some(&reason));
            }
            self.wake(&mut inner, false);
        }
        out.sort_by_key(|d| d.tag.seq);
        Ok(out)
    }

    /// Decodes the publish record of position `seq` from its frame at `loc`, or says (with the
    /// file and offset) why the frame is not that record.
    pub(super) fn decode_message(
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
}
