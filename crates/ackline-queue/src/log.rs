//! The append side of the log: segment files (names, headers) and the write buffer.
//!
//! Operations append records to an in-memory [`Appender`] while holding the queue lock, and get
//! the number of the batch their records belong to. The writer thread (`queue::writer`) takes
//! the whole buffer at once as [`Chunk`]s, writes them and announces the batch durable.
//!
//! Invariants:
//! - Records are numbered into batches in append order; a batch is taken whole, and the next
//!   one opens as it is taken, so batch numbers grow with the log.
//! - A new segment's chunk comes before any record in it (`Chunk::create`: the writer creates
//!   the file and writes its header first); a segment rolls over once it reaches its target
//!   size, so records never straddle segments.
//! - Acks are deferred and encoded as one record when the batch is taken; nothing appended
//!   later refers to an acked message, so the deferral changes no outcome.

use std::collections::BTreeMap;

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
}
