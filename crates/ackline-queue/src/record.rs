//! Record framing and encoding: the bytes of the log.
//!
//! Every record is framed as
//!
//! ```text
//! +-----------+-----------+---------+------------------+
//! | crc: u32  | len: u32  | kind:u8 | body: len bytes  |
//! +-----------+-----------+---------+------------------+
//! ```
//!
//! all integers little-endian. `crc` is CRC-32C (Castagnoli, polynomial 0x1EDC6F41, reflected
//! 0x82F63B78) over `len`, `kind` and `body`, seeded with the segment's random salt, so a record
//! copied from another segment, or a frame embedded in a payload, never verifies.
//!
//! Invariants:
//! - `encode_*` and [`decode`] are inverses: every record that `encode_*` writes decodes to the
//!   same values (tested by round trip).
//! - [`decode`] never panics and never reads past its buffer, whatever the bytes; it returns
//!   [`Frame::Incomplete`] when the buffer ends inside a frame and [`Frame::Corrupt`] when a
//!   complete frame fails its checksum or its body does not parse.

use std::fmt;

/// Bytes of the frame header (crc, len, kind).
pub const FRAME_HEADER: usize = 9;
/// No record body is ever longer than this; a larger `len` is corruption.
pub const MAX_BODY: usize = 256 << 20;

/// Record kinds. The high nibble is a fixed pattern, which makes a random byte unlikely to pass
/// for a kind while scanning for the next intact record after corruption.
pub mod kind {
    /// A message enters the queue (or re-enters it from the dead-letter queue).
    pub const PUBLISH: u8 = 0xA1;
    /// Messages were handed to a consumer: each one's attempt count goes up by one.
    pub const DELIVER: u8 = 0xA2;
    /// Messages were acknowledged: they leave the queue.
    pub const ACK: u8 = 0xA3;
    /// A message failed and is to be redelivered no earlier than a given time.
    pub const NACK: u8 = 0xA4;
    /// A message moved to the dead-letter queue, with why. The message itself stays where it
    /// was published: the dead-letter entry refers to its publish record.
    pub const DEAD: u8 = 0xA5;
    /// Dead-letter entries were purged.
    pub const PURGE: u8 = 0xA6;
}

/// A message as it is stored: everything but its queue position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRef<'a> {
    /// The stable message id.
    pub id: &'a str,
    /// When the message was first published, Unix ms.
    pub enqueued_at: u64,
    /// Header pairs, in publish order.
    pub headers: Vec<(&'a str, &'a str)>,
    /// The payload.
    pub payload: &'a [u8],
}

/// A decoded record, borrowing from the buffer it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordRef<'a> {
    /// A message entered the queue at `seq`; `replay_of` names the dead-letter entry it was
    /// replayed from (which leaves the dead-letter queue in the same step).
    Publish {
        /// Queue position.
        seq: u64,
        /// Dead-letter entry replayed, if any.
        replay_of: Option<u64>,
        /// The message.
        msg: MessageRef<'a>,
    },
    /// Each message in these runs was delivered once more.
    Deliver(Vec<Run>),
    /// These messages were acknowledged.
    Ack(Vec<Run>),
    /// A message failed; redeliver no earlier than `not_before`.
    Nack {
        /// Queue position.
        seq: u64,
        /// Earliest redelivery, Unix ms.
        not_before: u64,
        /// When it failed, Unix ms.
        failed_at: u64,
        /// Why (empty when no reason was given).
        error: &'a str,
    },
    /// A message moved to the dead-letter queue under key `seq`.
    Dead {
        /// Queue position, which becomes the dead-letter key.
        seq: u64,
        /// Deliveries made.
        attempts: u32,
        /// First failure, Unix ms (0 when it never failed before being dead-lettered).
        first_failure: u64,
        /// Last failure, Unix ms.
        last_failure: u64,
        /// Why it was dead-lettered.
        reason: &'a str,
        /// The last error reported by a consumer.
        last_error: &'a str,
    },
    /// These dead-letter entries were purged.
    Purge(Vec<Run>),
}

/// A run of consecutive queue positions `start .. start + len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// First position.
    pub start: u64,
    /// How many.
    pub len: u32,
}

impl Run {
    /// The positions of the run.
    pub fn iter(self) -> impl Iterator<Item = u64> {
        self.start..self.start + u64::from(self.len)
    }
}

/// Groups positions into runs of consecutive values (sorting them first).
pub fn runs(mut seqs: Vec<u64>) -> Vec<Run> {
    seqs.sort_unstable();
    seqs.dedup();
    let mut out: Vec<Run> = Vec::new();
    for s in seqs {
        match out.last_mut() {
            Some(r) if r.start + u64::from(r.len) == s && r.len < u32::MAX => r.len += 1,
            _ => out.push(Run { start: s, len: 1 }),
        }
    }
    out
}

/// What [`decode`] found at a position.
#[derive(Debug)]
pub enum Frame<'a> {
    /// An intact record and the frame's total length.
    Record(RecordRef<'a>, usize),
    /// The buffer ends inside the frame (a torn write at the tail, or a short read).
    Incomplete,
    /// The frame is complete but fails its checksum, has an unknown kind, or does not parse.
    Corrupt(CorruptReason),
}

/// Why a frame was judged corrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorruptReason {
    /// The length field is beyond [`MAX_BODY`].
    Length,
    /// The checksum does not match.
    Checksum,
    /// The kind byte is not a known record kind.
    Kind,
    /// The checksum matches but the body does not parse (a bug or a deliberate forgery).
    Body,
}

impl fmt::Display for CorruptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CorruptReason::Length => "impossible record length",
            CorruptReason::Checksum => "checksum mismatch",
            CorruptReason::Kind => "unknown record kind",
            CorruptReason::Body => "record body does not parse",
        })
    }
}

/// Appends records to a buffer, framing each.
#[derive(Debug)]
pub struct Encoder<'b> {
    buf: &'b mut Vec<u8>,
    salt: u32,
}

impl<'b> Encoder<'b> {
    /// An encoder appending to `buf` for a segment with `salt`.
    pub fn new(buf: &'b mut Vec<u8>, salt: u32) -> Self {
        Self { buf, salt }
    }

    fn frame(&mut self, kind: u8, body: impl FnOnce(&mut Vec<u8>)) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; FRAME_HEADER]);
        self.buf[start + 8] = kind;
        body(self.buf);
        let len = (self.buf.len() - start - FRAME_HEADER) as u32;
        self.buf[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
        let crc = crc32c::crc32c_append(self.salt, &self.buf[start + 4..]);
        self.buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
        self.buf.len() - start
    }

    /// Appends a publish record; returns the frame length.
    pub fn publish(&mut self, seq: u64, replay_of: Option<u64>, msg: &MessageRef<'_>) -> usize {
        self.frame(kind::PUBLISH, |b| {
            put_u64(b, seq);
            match replay_of {
                Some(k) => {
                    b.push(1);
                    put_u64(b, k);
                }
                None => b.push(0),
            }
            put_msg(b, msg);
        })
    }

    /// Appends a deliver record.
    pub fn deliver(&mut self, runs: &[Run]) -> usize {
        self.frame(kind::DELIVER, |b| put_runs(b, runs))
    }

    /// Appends an ack record.
    pub fn ack(&mut self, runs: &[Run]) -> usize {
        self.frame(kind::ACK, |b| put_runs(b, runs))
    }

    /// Appends a nack record.
    pub fn nack(&mut self, seq: u64, not_before: u64, failed_at: u64, error: &str) -> usize {
        self.frame(kind::NACK, |b| {
            put_u64(b, seq);
            put_u64(b, not_before);
            put_u64(b, failed_at);
            put_str32(b, error);
        })
    }

    /// Appends a dead-letter record.
    pub fn dead(
        &mut self,
        seq: u64,
        attempts: u32,
        first_failure: u64,
        last_failure: u64,
        reason: &str,
        last_error: &str,
    ) -> usize {
        self.frame(kind::DEAD, |b| {
            put_u64(b, seq);
            put_u32(b, attempts);
            put_u64(b, first_failure);
            put_u64(b, last_failure);
            put_str32(b, reason);
            put_str32(b, last_error);
        })
    }

    /// Appends a purge record.
    pub fn purge(&mut self, runs: &[Run]) -> usize {
        self.frame(kind::PURGE, |b| put_runs(b, runs))
    }
}

fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_str16(b: &mut Vec<u8>, s: &str) {
    // Callers validate lengths (ids and header names/values are at most u16::MAX bytes).
    let n = s.len().min(u16::MAX as usize);
    b.extend_from_slice(&(n as u16).to_le_bytes());
    b.extend_from_slice(&s.as_bytes()[..n]);
}
fn put_str32(b: &mut Vec<u8>, s: &str) {
    put_u32(b, s.len() as u32);
    b.extend_from_slice(s.as_bytes());
}
fn put_runs(b: &mut Vec<u8>, runs: &[Run]) {
    put_u32(b, runs.len() as u32);
    for r in runs {
        put_u64(b, r.start);
        put_u32(b, r.len);
    }
}
fn put_msg(b: &mut Vec<u8>, m: &MessageRef<'_>) {
    put_str16(b, m.id);
    put_u64(b, m.enqueued_at);
    b.extend_from_slice(&(m.headers.len() as u16).to_le_bytes());
    for (k, v) in &m.headers {
        put_str16(b, k);
        put_str16(b, v);
    }
    // The payload is the rest of the body: its length is implied by the frame.
    b.extend_from_slice(m.payload);
}

/// A cursor over a record body that fails instead of panicking.
struct Body<'a> {
    b: &'a [u8],
}

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Some(h)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2)
            .and_then(|s| s.try_into().ok())
            .map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_le_bytes)
    }
    fn str16(&mut self) -> Option<&'a str> {
        let n = self.u16()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
    fn str32(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }
    fn runs(&mut self) -> Option<Vec<Run>> {
        let n = self.u32()? as usize;
        // Each run is 12 bytes: refuse counts the body cannot hold before allocating.
        if n > self.b.len() / 12 {
            return None;
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let start = self.u64()?;
            let len = self.u32()?;
            start.checked_add(u64::from(len))?;
            out.push(Run { start, len });
        }
        Some(out)
    }
    fn msg(&mut self) -> Option<MessageRef<'a>> {
        let id = self.str16()?;
        let enqueued_at = self.u64()?;
        let nh = self.u16()? as usize;
        let mut headers = Vec::with_capacity(nh.min(64));
        for _ in 0..nh {
            headers.push((self.str16()?, self.str16()?));
        }
        let payload = std::mem::take(&mut self.b);
        Some(MessageRef {
            id,
            enqueued_at,
            headers,
            payload,
        })
    }
    fn end(self) -> Option<()> {
        self.b.is_empty().then_some(())
    }
}

/// Decodes the frame at `pos` of `buf`, verifying its checksum with `salt`.
pub fn decode(buf: &[u8], pos: usize, salt: u32) -> Frame<'_> {
    let Some(rest) = buf.get(pos..) else {
        return Frame::Incomplete;
    };
    if rest.len() < FRAME_HEADER {
        return Frame::Incomplete;
    }
    let crc = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
    let len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
    let kind = rest[8];
    if len > MAX_BODY {
        return Frame::Corrupt(CorruptReason::Length);
    }
    if !(kind::PUBLISH..=kind::PURGE).contains(&kind) {
        return Frame::Corrupt(CorruptReason::Kind);
    }
    let total = FRAME_HEADER + len;
    if rest.len() < total {
        return Frame::Incomplete;
    }
    if crc32c::crc32c_append(salt, &rest[4..total]) != crc {
        return Frame::Corrupt(CorruptReason::Checksum);
    }
    match parse_body(kind, &rest[FRAME_HEADER..total]) {
        Some(r) => Frame::Record(r, total),
        None => Frame::Corrupt(CorruptReason::Body),
    }
}

fn parse_body(kind: u8, body: &[u8]) -> Option<RecordRef<'_>> {
    let mut b = Body { b: body };
    let rec = match kind {
        kind::PUBLISH => {
            let seq = b.u64()?;
            let replay_of = match b.u8()? {
                0 => None,
                1 => Some(b.u64()?),
                _ => return None,
            };
            let msg = b.msg()?;
            RecordRef::Publish {
                seq,
                replay_of,
                msg,
            }
        }
        kind::DELIVER => RecordRef::Deliver(b.runs()?),
        kind::ACK => RecordRef::Ack(b.runs()?),
        kind::NACK => RecordRef::Nack {
            seq: b.u64()?,
            not_before: b.u64()?,
            failed_at: b.u64()?,
            error: b.str32()?,
        },
        kind::DEAD => RecordRef::Dead {
            seq: b.u64()?,
            attempts: b.u32()?,
            first_failure: b.u64()?,
            last_failure: b.u64()?,
            reason: b.str32()?,
            last_error: b.str32()?,
        },
        kind::PURGE => RecordRef::Purge(b.runs()?),
        _ => return None,
    };
    b.end()?;
    Some(rec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn msg<'a>(id: &'a str, payload: &'a [u8]) -> MessageRef<'a> {
        MessageRef {
            id,
            enqueued_at: 42,
            headers: vec![("k", "v"), ("content-type", "text/plain")],
            payload,
        }
    }

    #[test]
    fn every_kind_round_trips() {
        let mut buf = Vec::new();
        let mut e = Encoder::new(&mut buf, 7);
        let m = msg("id-1", b"hello");
        e.publish(3, Some(9), &m);
        e.deliver(&[Run { start: 1, len: 3 }]);
        e.ack(&[Run { start: 5, len: 1 }]);
        e.nack(3, 100, 90, "db timeout");
        e.dead(3, 5, 10, 20, "max attempts exceeded", "boom");
        e.purge(&[Run { start: 3, len: 1 }]);
        let mut pos = 0;
        let mut out = Vec::new();
        while pos < buf.len() {
            match decode(&buf, pos, 7) {
                Frame::Record(r, n) => {
                    out.push(r);
                    pos += n;
                }
                other => panic!("at {pos}: {other:?}"),
            }
        }
        assert_eq!(
            out,
            vec![
                RecordRef::Publish {
                    seq: 3,
                    replay_of: Some(9),
                    msg: m
                },
                RecordRef::Deliver(vec![Run { start: 1, len: 3 }]),
                RecordRef::Ack(vec![Run { start: 5, len: 1 }]),
                RecordRef::Nack {
                    seq: 3,
                    not_before: 100,
                    failed_at: 90,
                    error: "db timeout"
                },
                RecordRef::Dead {
                    seq: 3,
                    attempts: 5,
                    first_failure: 10,
                    last_failure: 20,
                    reason: "max attempts exceeded",
                    last_error: "boom",
                },
                RecordRef::Purge(vec![Run { start: 3, len: 1 }]),
            ]
        );
    }

    #[test]
    fn another_salt_does_not_verify() {
        let mut buf = Vec::new();
        Encoder::new(&mut buf, 1).ack(&[Run { start: 0, len: 1 }]);
        assert!(matches!(
            decode(&buf, 0, 2),
            Frame::Corrupt(CorruptReason::Checksum)
        ));
    }

    #[test]
    fn every_cut_is_incomplete_and_every_flip_is_caught() {
        let mut buf = Vec::new();
        Encoder::new(&mut buf, 5).publish(1, None, &msg("a", b"payload bytes"));
        for cut in 0..buf.len() {
            assert!(
                matches!(
                    decode(&buf[..cut], 0, 5),
                    Frame::Incomplete | Frame::Corrupt(_)
                ),
                "cut at {cut}"
            );
        }
        for i in 0..buf.len() {
            let mut b = buf.clone();
            b[i] ^= 0x10;
            assert!(
                !matches!(decode(&b, 0, 5), Frame::Record(..)),
                "flip at {i} went unnoticed"
            );
        }
    }

    #[test]
    fn runs_group_consecutive_positions() {
        assert_eq!(
            runs(vec![5, 1, 2, 3, 7, 6, 3]),
            vec![Run { start: 1, len: 3 }, Run { start: 5, len: 3 }]
        );
        assert!(runs(vec![]).is_empty());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), pos in 0usize..310) {
            let _ = decode(&bytes, pos, 0);
        }

        #[test]
        fn publish_round_trips(id in "[a-z0-9-]{0,40}", payload in proptest::collection::vec(any::<u8>(), 0..512), seq: u64, at: u64) {
            let m = MessageRef { id: &id, enqueued_at: at, headers: vec![], payload: &payload };
            let mut buf = Vec::new();
            let n = Encoder::new(&mut buf, 11).publish(seq, None, &m);
            prop_assert_eq!(n, buf.len());
            match decode(&buf, 0, 11) {
                Frame::Record(RecordRef::Publish { seq: s, replay_of: None, msg }, len) => {
                    prop_assert_eq!(s, seq);
                    prop_assert_eq!(len, n);
                    prop_assert_eq!(msg, m);
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }
    }
}
