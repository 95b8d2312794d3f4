//! Checkpoints: the queue's index written whole, so recovery does not replay all history.
//!
//! File layout (`checkpoint`, replaced atomically through `checkpoint.tmp` and a rename):
//!
//! ```text
//! "ACKLCKP1" | version: u32 | body_len: u64 | body | crc32c(body): u32
//! body: log position (segment u32, offset u64), base u64, next_seq u64,
//!       slots: count u64, then per slot seg u32, off u32, len u32, attempts u32,
//!              (version 2 on:) check u32, state u8 (+ due u64 when delayed),
//!       failures: count u64, then per entry seq u64, first u64, last u64, error (u32 len + utf-8),
//!       dead letters: count u64, then per entry key u64, seg u32, off u32, len u32,
//!              (version 2 on:) check u32, attempts u32, first u64, last u64, reason,
//!              last_error (u32 len + utf-8 each)
//!       (version 2 on:) id index: fingerprint key k0 u64, k1 u64, count u64, then per live
//!              entry hi u64, seq u64 (`check` is the fingerprint's other 32 bits)
//! ```
//!
//! Version 1 (no id index) is still read: its messages are then not in the id index, so a
//! duplicate of one of them is enqueued again (the stores deduplicate it; nothing is lost).
//! A version this build does not know is refused, never guessed at.
//!
//! Invariants:
//! - A checkpoint describes the state after exactly the records before its log position; it
//!   is installed only after every one of those records is durable.
//! - Leases are not saved: a leased slot is saved as ready (its attempt was already counted).
//! - [`decode`] never panics; any damage is reported as an error, never guessed around.

use std::collections::VecDeque;

use crate::state::{DlqEntry, FpKey, Slot, SlotState, State};

const MAGIC: &[u8; 8] = b"ACKLCKP1";
pub(crate) const VERSION: u32 = 2;

/// Why a checkpoint cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CheckpointError {
    /// Torn, truncated or damaged: another generation (or a full replay) may stand in.
    Damaged(String),
    /// Written by a build that knows a format this one does not: refuse to open.
    Version(u32),
}

impl From<&str> for CheckpointError {
    fn from(s: &str) -> Self {
        CheckpointError::Damaged(s.to_string())
    }
}

impl From<String> for CheckpointError {
    fn from(s: String) -> Self {
        CheckpointError::Damaged(s)
    }
}

/// A log position: records at or after it are not covered by the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pos {
    pub seg: u32,
    pub off: u64,
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u32).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

/// Serialises the state as of `pos`.
pub(crate) fn encode(st: &State, pos: Pos) -> Vec<u8> {
    let mut b = Vec::with_capacity(64 + st.slots.len() * 17);
    b.extend_from_slice(&pos.seg.to_le_bytes());
    b.extend_from_slice(&pos.off.to_le_bytes());
    b.extend_from_slice(&st.base.to_le_bytes());
    b.extend_from_slice(&st.next_seq.to_le_bytes());
    b.extend_from_slice(&(st.slots.len() as u64).to_le_bytes());
    for (i, s) in st.slots.iter().enumerate() {
        b.extend_from_slice(&s.seg.to_le_bytes());
        b.extend_from_slice(&s.off.to_le_bytes());
        b.extend_from_slice(&s.len.to_le_bytes());
        b.extend_from_slice(&s.attempts.to_le_bytes());
        b.extend_from_slice(&s.check.to_le_bytes());
        let state = match s.state {
            SlotState::Leased => SlotState::Ready,
            other => other,
        };
        b.push(state as u8);
        if state == SlotState::Delayed {
            let due = st.due_of(st.base + i as u64).unwrap_or(0);
            b.extend_from_slice(&due.to_le_bytes());
        }
    }
    b.extend_from_slice(&(st.failures.len() as u64).to_le_bytes());
    for (seq, f) in &st.failures {
        b.extend_from_slice(&seq.to_le_bytes());
        b.extend_from_slice(&f.first.to_le_bytes());
        b.extend_from_slice(&f.last.to_le_bytes());
        put_str(&mut b, &f.error);
    }
    b.extend_from_slice(&(st.dlq.len() as u64).to_le_bytes());
    for (key, e) in &st.dlq {
        b.extend_from_slice(&key.to_le_bytes());
        b.extend_from_slice(&e.loc.seg.to_le_bytes());
        b.extend_from_slice(&e.loc.off.to_le_bytes());
        b.extend_from_slice(&e.loc.len.to_le_bytes());
        b.extend_from_slice(&e.check.to_le_bytes());
        b.extend_from_slice(&e.attempts.to_le_bytes());
        b.extend_from_slice(&e.first_failure.to_le_bytes());
        b.extend_from_slice(&e.last_failure.to_le_bytes());
        put_str(&mut b, &e.reason);
        put_str(&mut b, &e.last_error);
    }
    b.extend_from_slice(&st.fp_key.0.to_le_bytes());
    b.extend_from_slice(&st.fp_key.1.to_le_bytes());
    let count_at = b.len();
    b.extend_from_slice(&0u64.to_le_bytes());
    let mut live = 0u64;
    for (hi, &seq) in &st.ids {
        if st.live_check(seq).is_some() {
            b.extend_from_slice(&hi.to_le_bytes());
            b.extend_from_slice(&seq.to_le_bytes());
            live += 1;
        }
    }
    b[count_at..count_at + 8].copy_from_slice(&live.to_le_bytes());
    let mut out = Vec::with_capacity(b.len() + 24);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    out.extend_from_slice(&b);
    out.extend_from_slice(&crc32c::crc32c(&b).to_le_bytes());
    out
}

struct Cur<'a>(&'a [u8]);

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("checkpoint body ends early".into());
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
    fn count(&mut self, min_item: usize) -> Result<usize, String> {
        let n = self.u64()?;
        if n > (self.0.len() / min_item) as u64 {
            return Err(format!("checkpoint claims {n} entries, more than it holds"));
        }
        Ok(n as usize)
    }
    fn str(&mut self) -> Result<Box<str>, String> {
        let n = self.u32()? as usize;
        let s = self.take(n)?;
        std::str::from_utf8(s)
            .map(Into::into)
            .map_err(|_| "checkpoint string is not UTF-8".to_string())
    }
}

/// Reads a checkpoint back into a state and its log position.
pub(crate) fn decode(bytes: &[u8]) -> Result<(State, Pos), CheckpointError> {
    if bytes.len() < 24 || &bytes[0..8] != MAGIC {
        return Err("not an ackline checkpoint".into());
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version == 0 || version > VERSION {
        return Err(CheckpointError::Version(version));
    }
    let mut lenb = [0u8; 8];
    lenb.copy_from_slice(&bytes[12..20]);
    let body_len = usize::try_from(u64::from_le_bytes(lenb)).map_err(|_| "bad length")?;
    let end = 20usize
        .checked_add(body_len)
        .filter(|e| e.checked_add(4) == Some(bytes.len()))
        .ok_or("checkpoint length does not match the file (torn or truncated)")?;
    let body = &bytes[20..end];
    let crc = u32::from_le_bytes([bytes[end], bytes[end + 1], bytes[end + 2], bytes[end + 3]]);
    if crc32c::crc32c(body) != crc {
        return Err("checkpoint checksum mismatch".into());
    }
    let mut c = Cur(body);
    let pos = Pos {
        seg: c.u32()?,
        off: c.u64()?,
    };
    let base = c.u64()?;
    let next_seq = c.u64()?;
    let v2 = version >= 2;
    let n = c.count(if v2 { 21 } else { 17 })?;
    let mut slots = VecDeque::with_capacity(n);
    let mut delayed = Vec::new();
    for i in 0..n {
        let (seg, off, len, attempts) = (c.u32()?, c.u32()?, c.u32()?, c.u32()?);
        let check = if v2 { c.u32()? } else { 0 };
        let byte = c.u8()?;
        let Some(state) = SlotState::from_u8(byte) else {
            return Err(format!("checkpoint slot state {byte} unknown").into());
        };
        let mut s = Slot {
            seg,
            off,
            len,
            attempts,
            check,
            state,
        };
        match s.state {
            SlotState::Settled | SlotState::Ready | SlotState::Lost => {}
            SlotState::Delayed => delayed.push((base + i as u64, c.u64()?)),
            SlotState::Leased => s.state = SlotState::Ready,
        }
        slots.push_back(s);
    }
    if base.checked_add(n as u64) != Some(next_seq) {
        return Err("checkpoint slot count does not match its positions".into());
    }
    let mut st = State::restore(base, next_seq, slots);
    for (seq, due) in delayed {
        st.restore_delayed(seq, due);
    }
    let nf = c.count(28)?;
    for _ in 0..nf {
        let seq = c.u64()?;
        let first = c.u64()?;
        let last = c.u64()?;
        let error = c.str()?;
        st.note_failure(seq, first, "");
        st.note_failure(seq, last, &error);
    }
    let nd = c.count(if v2 { 52 } else { 48 })?;
    for _ in 0..nd {
        let key = c.u64()?;
        let loc = crate::state::Loc {
            seg: c.u32()?,
            off: c.u32()?,
            len: c.u32()?,
        };
        let entry = DlqEntry {
            loc,
            check: if v2 { c.u32()? } else { 0 },
            attempts: c.u32()?,
            first_failure: c.u64()?,
            last_failure: c.u64()?,
            reason: c.str()?,
            last_error: c.str()?,
        };
        st.restore_dlq(key, entry);
    }
    if v2 {
        st.fp_key = FpKey(c.u64()?, c.u64()?);
        let ni = c.count(16)?;
        st.ids.reserve(ni);
        for _ in 0..ni {
            let hi = c.u64()?;
            let seq = c.u64()?;
            st.ids.insert(hi, seq);
        }
    }
    if !c.0.is_empty() {
        return Err("checkpoint has trailing bytes".into());
    }
    Ok((st, pos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Loc;

    fn sample() -> State {
        let mut st = State::default();
        for s in 0..5u64 {
            st.on_publish(
                s,
                Loc {
                    seg: 1 + (s as u32 / 3),
                    off: 32 + s as u32 * 10,
                    len: 10,
                },
                None,
                st.fp_key.of(&format!("m-{s}")),
            );
        }
        st.on_deliver(1);
        st.on_nack(1, 999, 5, "timeout");
        st.on_deliver(2);
        st.on_dead(2, 6, "rejected", "bad");
        st.on_ack(0);
        let seq = st.peek_ready().unwrap();
        st.lease(seq, 1, 50);
        st
    }

    #[test]
    fn round_trip_keeps_everything_but_leases() {
        let st = sample();
        let bytes = encode(&st, Pos { seg: 2, off: 77 });
        let (back, pos) = decode(&bytes).unwrap();
        assert_eq!(pos, Pos { seg: 2, off: 77 });
        assert_eq!((back.base, back.next_seq), (st.base, st.next_seq));
        assert_eq!(
            (back.pending, back.pending_bytes, back.dlq_bytes),
            (st.pending, st.pending_bytes, st.dlq_bytes)
        );
        assert!(st.dlq_bytes > 0, "the sample has a dead letter");
        assert_eq!(back.seg_live, st.seg_live);
        assert_eq!(back.due_of(1), Some(999));
        assert_eq!(&*back.failures[&1].error, "timeout");
        assert_eq!(&*back.dlq[&2].reason, "rejected");
        assert!(back.leases.is_empty());
        assert_eq!(
            back.state_of(3),
            SlotState::Ready,
            "the leased slot comes back ready"
        );
        assert_eq!(back.fp_key, st.fp_key);
        for s in [1, 2, 3, 4] {
            let fp = st.fp_key.of(&format!("m-{s}"));
            assert_eq!(back.duplicate_of(fp), Some(s), "id of position {s}");
        }
        assert_eq!(back.duplicate_of(st.fp_key.of("m-0")), None, "acked");
    }

    #[test]
    fn an_unknown_version_is_refused_not_read() {
        let mut bytes = encode(&sample(), Pos { seg: 1, off: 32 });
        bytes[8..12].copy_from_slice(&(VERSION + 1).to_le_bytes());
        assert_eq!(
            decode(&bytes).err(),
            Some(CheckpointError::Version(VERSION + 1))
        );
    }

    #[test]
    fn any_damage_is_an_error() {
        let bytes = encode(&sample(), Pos { seg: 1, off: 32 });
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in (0..bytes.len()).step_by(3) {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(decode(&b).is_err(), "flip at {i}");
        }
    }
}
