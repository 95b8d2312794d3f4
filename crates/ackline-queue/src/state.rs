//! The in-memory index of one queue: where each pending message is, its attempts and its state.
//!
//! This module does no I/O. The same transition functions (`on_*`) serve live operation and
//! recovery: a live operation appends its record to the log and then applies the transition;
//! recovery decodes the record and applies the same transition. So the state rebuilt from a log
//! equals the state that wrote it, except for what is deliberately not persisted (leases: after
//! a restart every unsettled delivery is deliverable again).
//!
//! Invariants:
//! - `slots[i]` describes the message at position `base + i`; `base <= fresh <= next_seq`;
//!   positions below `base` are all settled, and the first slot, if any, is not settled.
//! - A slot is in exactly one [`SlotState`]: `Ready`, `Leased` (an entry in `leases`),
//!   `Delayed` (an entry in `delayed`), `Lost` (recovery knows the position held a message but
//!   its publish record is damaged; such slots are never delivered, and the queue moves them to
//!   the dead-letter queue with reason `corrupt` as it opens) or `Settled` (acked,
//!   dead-lettered).
//! - `ids` maps the fingerprint of every message id that is pending or in the dead-letter queue
//!   to its position (entries of settled positions are dropped lazily: an entry counts only
//!   while its position is pending or a dead-letter key; see [`State::duplicate_of`]).
//! - Every `Ready` slot below `fresh` is in `retry` (possibly with stale duplicates, which are
//!   skipped); `Ready` slots at or above `fresh` are found by advancing `fresh`. So first
//!   deliveries go out in position (publish) order, and redeliveries go first.
//! - `pending`/`pending_bytes` count exactly the slots that are not `Settled`;
//!   `dlq_bytes` is the sum of the framed lengths of the dead-letter entries' publish records
//!   (they keep their segments, so they hold disk as pending messages do).
//! - `seg_live[s]` counts the pending messages and dead-letter entries whose publish record is
//!   in segment `s`; a segment is deleted only when this is zero (see `queue::maintenance`).
//! - `attempts` only grows (a replay from the dead-letter queue is a new message).
//! - Per pending message the index costs one `Slot` (24 bytes) in a `VecDeque` (at most twice
//!   that with its spare capacity) and one 16-byte entry in `ids`; leases, delays and failures
//!   cost extra only for messages in those states.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// A hasher for queue positions: one multiply instead of SipHash on the hot path. Positions are
/// assigned by the engine, not chosen by a client, so there is no flooding to defend against.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SeqHasher(u64);

impl Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        let p = u128::from(self.0) * 0x9E37_79B9_7F4A_7C15;
        (p as u64) ^ ((p >> 64) as u64)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map keyed by queue position.
pub(crate) type SeqMap<V> = HashMap<u64, V, BuildHasherDefault<SeqHasher>>;

/// The state of one position. Stored as one byte in a slot and in checkpoints (the
/// discriminants are part of the checkpoint format: never renumber them).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotState {
    /// The message was acked, dead-lettered, or its position is a gap.
    Settled = 0,
    /// The message can be delivered.
    Ready = 1,
    /// The message is delivered and not settled; its lease is in `leases`.
    Leased = 2,
    /// The message waits for its redelivery time; it is in `delayed`.
    Delayed = 3,
    /// Recovery found evidence of the message (a later record names its position, or a
    /// damaged frame's header does) but its publish record is damaged. Never delivered.
    Lost = 4,
}

impl SlotState {
    /// The state stored as `b`, if `b` names one.
    pub fn from_u8(b: u8) -> Option<SlotState> {
        Some(match b {
            0 => SlotState::Settled,
            1 => SlotState::Ready,
            2 => SlotState::Leased,
            3 => SlotState::Delayed,
            4 => SlotState::Lost,
            _ => return None,
        })
    }
}

/// The 96-bit fingerprint of a message id (keyed SipHash-1-3): `hi` keys the id index, `lo`
/// (kept in the slot or dead-letter entry) confirms a match. Two different live ids share one
/// with probability 2^-96.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fp {
    pub hi: u64,
    pub lo: u32,
}

/// The key of the id fingerprints, random per queue and kept in its checkpoint (so a producer
/// cannot choose ids whose fingerprints collide).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FpKey(pub u64, pub u64);

impl FpKey {
    pub fn random() -> FpKey {
        FpKey(rand::random(), rand::random())
    }

    pub fn of(&self, id: &str) -> Fp {
        use siphasher::sip128::Hasher128;
        use std::hash::Hasher;
        let mut h = siphasher::sip128::SipHasher13::new_with_keys(self.0, self.1);
        h.write(id.as_bytes());
        let r = h.finish128();
        Fp {
            hi: r.h1,
            lo: r.h2 as u32,
        }
    }
}

impl Default for FpKey {
    fn default() -> Self {
        FpKey::random()
    }
}

/// The location given to `Lost` slots whose damage could not be placed.
pub(crate) const LOST_UNKNOWN: Loc = Loc {
    seg: 0,
    off: 0,
    len: 0,
};

/// A record naming a position this far beyond the last known one is itself taken as damage
/// rather than as evidence of that many lost messages.
const MAX_LOST_RUN: u64 = 1 << 20;

/// Where a record is: segment, offset of its frame, frame length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    pub seg: u32,
    pub off: u32,
    pub len: u32,
}

/// One position of the queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub seg: u32,
    pub off: u32,
    pub len: u32,
    pub attempts: u32,
    /// The low half of the message id's fingerprint (0 for a `Lost` slot).
    pub check: u32,
    pub state: SlotState,
}

// The index's memory cost per pending message (see the module doc).
const _: () = assert!(std::mem::size_of::<Slot>() == 24);

impl Slot {
    pub fn loc(&self) -> Loc {
        Loc {
            seg: self.seg,
            off: self.off,
            len: self.len,
        }
    }
}

/// Who holds a delivery, and until when.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lease {
    pub consumer: u64,
    pub deadline: u64,
}

/// Failures seen for a pending message (kept only for messages that failed).
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub first: u64,
    pub last: u64,
    pub error: Box<str>,
}

/// A dead-letter entry; the message itself stays in its publish record at `loc`.
#[derive(Debug, Clone)]
pub(crate) struct DlqEntry {
    pub loc: Loc,
    /// The low half of the message id's fingerprint.
    pub check: u32,
    pub attempts: u32,
    pub first_failure: u64,
    pub last_failure: u64,
    pub reason: Box<str>,
    pub last_error: Box<str>,
}

/// Event counters since the queue was opened.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    pub published: u64,
    pub delivered: u64,
    pub redelivered: u64,
    pub acked: u64,
    pub nacked: u64,
    pub dead_lettered: u64,
    pub lease_expired: u64,
    pub released: u64,
    pub replayed: u64,
    pub purged: u64,
    pub duplicates: u64,
    pub corrupt: u64,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub base: u64,
    pub slots: VecDeque<Slot>,
    pub next_seq: u64,
    fresh: u64,
    retry: VecDeque<u64>,
    delayed: SeqMap<u64>,
    delay_heap: BinaryHeap<Reverse<(u64, u64)>>,
    pub leases: SeqMap<Lease>,
    lease_heap: BinaryHeap<Reverse<(u64, u64)>>,
    pub failures: SeqMap<Failure>,
    pub dlq: BTreeMap<u64, DlqEntry>,
    pub pending: u64,
    pub pending_bytes: u64,
    pub dlq_bytes: u64,
    pub seg_live: BTreeMap<u32, u32>,
    pub counters: Counters,
    /// Fingerprint (`hi`) of each id pending or dead-lettered -> its position.
    pub ids: SeqMap<u64>,
    pub fp_key: FpKey,
}

impl State {
    pub fn slot(&self, seq: u64) -> Option<&Slot> {
        let i = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        self.slots.get(i)
    }

    fn slot_mut(&mut self, seq: u64) -> Option<&mut Slot> {
        let i = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        self.slots.get_mut(i)
    }

    /// The state of `seq`, `Settled` when unknown.
    pub fn state_of(&self, seq: u64) -> SlotState {
        self.slot(seq).map_or(SlotState::Settled, |s| s.state)
    }

    pub fn delayed_len(&self) -> usize {
        self.delayed.len()
    }

    fn live_inc(&mut self, seg: u32) {
        *self.seg_live.entry(seg).or_insert(0) += 1;
    }

    fn live_dec(&mut self, seg: u32) {
        if let Some(n) = self.seg_live.get_mut(&seg) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.seg_live.remove(&seg);
            }
        }
    }

    fn make_ready(&mut self, seq: u64) {
        if let Some(s) = self.slot_mut(seq) {
            s.state = SlotState::Ready;
            if seq < self.fresh {
                self.retry.push_back(seq);
            }
        }
    }

    /// Leaves the slot's current state (lease or delay) without settling it.
    fn clear_hold(&mut self, seq: u64) {
        match self.state_of(seq) {
            SlotState::Leased => {
                self.leases.remove(&seq);
            }
            SlotState::Delayed => {
                self.delayed.remove(&seq);
            }
            _ => {}
        }
    }

    /// Settles a pending slot. `keep_ref` keeps its segment reference (for the dead-letter queue).
    fn settle(&mut self, seq: u64, keep_ref: bool) -> Option<Slot> {
        let slot = *self.slot(seq)?;
        if slot.state == SlotState::Settled {
            return None;
        }
        self.clear_hold(seq);
        if let Some(s) = self.slot_mut(seq) {
            s.state = SlotState::Settled;
        }
        self.pending -= 1;
        self.pending_bytes -= u64::from(slot.len);
        if !keep_ref {
            self.live_dec(slot.seg);
        }
        self.failures.remove(&seq);
        while self
            .slots
            .front()
            .is_some_and(|s| s.state == SlotState::Settled)
        {
            self.slots.pop_front();
            self.base += 1;
        }
        self.fresh = self.fresh.max(self.base);
        Some(slot)
    }

    // ---- transitions shared by live operation and recovery ----

    /// A message was published at `seq`. Returns false if the record was ignored (a position
    /// already used). A replay whose dead-letter entry is gone (its DEAD record was lost to
    /// damage) still publishes: the message is in this record, whole.
    pub fn on_publish(&mut self, seq: u64, loc: Loc, replay_of: Option<u64>, fp: Fp) -> bool {
        if seq < self.next_seq {
            return false;
        }
        if let Some(key) = replay_of
            && let Some(entry) = self.dlq.remove(&key)
        {
            self.dlq_bytes -= u64::from(entry.loc.len);
            self.live_dec(entry.loc.seg);
            self.counters.replayed += 1;
        }
        self.fill_to(seq, LOST_UNKNOWN);
        self.push_slot(loc, SlotState::Ready, fp.lo);
        self.ids.insert(fp.hi, seq);
        self.counters.published += 1;
        true
    }

    /// Positions from `next_seq` up to (not including) `seq` that no publish record accounts
    /// for become `Lost` slots located at `at` (the damage that must have held them).
    fn fill_to(&mut self, seq: u64, at: Loc) {
        while self.next_seq < seq {
            self.push_slot(at, SlotState::Lost, 0);
        }
    }

    fn push_slot(&mut self, loc: Loc, state: SlotState, check: u32) {
        if self.slots.is_empty() {
            self.base = self.next_seq;
            self.fresh = self.fresh.max(self.next_seq);
        }
        self.slots.push_back(Slot {
            seg: loc.seg,
            off: loc.off,
            len: loc.len,
            attempts: 0,
            check,
            state,
        });
        self.next_seq += 1;
        self.pending += 1;
        self.pending_bytes += u64::from(loc.len);
        self.live_inc(loc.seg);
    }

    /// Recovery: a record names position `seq`, so a message was published there; positions
    /// up to it that have no publish record are `Lost` at `at`.
    pub fn note_exists(&mut self, seq: u64, at: Loc) {
        if seq >= self.next_seq && seq - self.next_seq < MAX_LOST_RUN {
            self.fill_to(seq + 1, at);
        }
    }

    /// The position holding a message with this id fingerprint, if it is pending or in the
    /// dead-letter queue.
    pub fn duplicate_of(&self, fp: Fp) -> Option<u64> {
        let seq = *self.ids.get(&fp.hi)?;
        (self.live_check(seq) == Some(fp.lo)).then_some(seq)
    }

    /// The fingerprint check of the message at `seq` if it is pending or dead-lettered.
    pub fn live_check(&self, seq: u64) -> Option<u32> {
        match self.slot(seq) {
            Some(s) if s.state != SlotState::Settled && s.state != SlotState::Lost => Some(s.check),
            _ => self.dlq.get(&seq).map(|e| e.check),
        }
    }

    /// Drops index entries of settled positions once they outnumber the live ones (amortised
    /// O(1) per publish; bounds the index near the number of live messages).
    pub fn prune_ids(&mut self) {
        let live = self.pending + self.dlq.len() as u64;
        if (self.ids.len() as u64) > 2 * live + (1 << 16) {
            let mut ids = std::mem::take(&mut self.ids);
            ids.retain(|_, seq| self.live_check(*seq).is_some());
            if ids.capacity() > 4 * ids.len() + (1 << 17) {
                ids.shrink_to(2 * ids.len());
            }
            self.ids = ids;
        }
    }

    /// `seq` was delivered once more.
    pub fn on_deliver(&mut self, seq: u64) {
        if let Some(s) = self.slot_mut(seq)
            && s.state != SlotState::Settled
        {
            s.attempts = s.attempts.saturating_add(1);
        }
    }

    /// `seq` was acknowledged.
    pub fn on_ack(&mut self, seq: u64) -> bool {
        let done = self.settle(seq, false).is_some();
        if done {
            self.counters.acked += 1;
        }
        done
    }

    /// `seq` failed and waits until `not_before`.
    pub fn on_nack(&mut self, seq: u64, not_before: u64, failed_at: u64, error: &str) {
        match self.state_of(seq) {
            SlotState::Settled => return,
            SlotState::Lost => return self.note_failure(seq, failed_at, error),
            _ => {}
        }
        self.clear_hold(seq);
        self.note_failure(seq, failed_at, error);
        if let Some(s) = self.slot_mut(seq) {
            s.state = SlotState::Delayed;
        }
        self.delayed.insert(seq, not_before);
        self.delay_heap.push(Reverse((not_before, seq)));
        self.counters.nacked += 1;
    }

    /// `seq` moved to the dead-letter queue.
    pub fn on_dead(&mut self, seq: u64, at: u64, reason: &str, last_error: &str) -> bool {
        let failure = self.failures.get(&seq).cloned();
        let Some(slot) = self.settle(seq, true) else {
            return false;
        };
        self.dlq_bytes += u64::from(slot.len);
        self.dlq.insert(
            seq,
            DlqEntry {
                loc: slot.loc(),
                check: slot.check,
                attempts: slot.attempts,
                first_failure: failure.as_ref().map_or(at, |f| f.first),
                last_failure: at,
                reason: reason.into(),
                last_error: last_error.into(),
            },
        );
        self.counters.dead_lettered += 1;
        true
    }

    /// Restores a dead-letter entry as recorded (recovery of a `Dead` record uses the recorded
    /// attempts and times rather than the ones in memory).
    pub fn on_dead_recorded(&mut self, seq: u64, entry_fix: impl FnOnce(&mut DlqEntry)) -> bool {
        let ok = self.on_dead(seq, 0, "", "");
        if ok && let Some(e) = self.dlq.get_mut(&seq) {
            entry_fix(e);
        }
        ok
    }

    /// The dead-letter entry `key` was purged.
    pub fn on_purge(&mut self, key: u64) -> bool {
        match self.dlq.remove(&key) {
            Some(e) => {
                self.dlq_bytes -= u64::from(e.loc.len);
                self.live_dec(e.loc.seg);
                self.counters.purged += 1;
                true
            }
            None => false,
        }
    }

    pub fn note_failure(&mut self, seq: u64, at: u64, error: &str) {
        let e = self.failures.entry(seq).or_insert_with(|| Failure {
            first: at,
            last: at,
            error: "".into(),
        });
        e.last = at;
        if !error.is_empty() {
            e.error = error.into();
        }
    }

    // ---- live-only transitions: leases and timers ----

    /// The next deliverable position, if any (redeliveries first, then first deliveries in
    /// order). Does not change its state.
    pub fn peek_ready(&mut self) -> Option<u64> {
        while let Some(&seq) = self.retry.front() {
            if self.state_of(seq) == SlotState::Ready {
                return Some(seq);
            }
            self.retry.pop_front();
        }
        while self.fresh < self.next_seq {
            let seq = self.fresh;
            if self.state_of(seq) == SlotState::Ready {
                return Some(seq);
            }
            self.fresh += 1;
        }
        None
    }

    /// Leases the Ready slot `seq` (as returned by `peek_ready`).
    pub fn lease(&mut self, seq: u64, consumer: u64, deadline: u64) {
        if let Some(&front) = self.retry.front()
            && front == seq
        {
            self.retry.pop_front();
        }
        if seq == self.fresh {
            self.fresh += 1;
        }
        if let Some(s) = self.slot_mut(seq) {
            s.state = SlotState::Leased;
        }
        self.leases.insert(seq, Lease { consumer, deadline });
        self.lease_heap.push(Reverse((deadline, seq)));
    }

    /// Moves a lease's deadline.
    pub fn extend(&mut self, seq: u64, deadline: u64) {
        if let Some(l) = self.leases.get_mut(&seq) {
            l.deadline = deadline;
            self.lease_heap.push(Reverse((deadline, seq)));
        }
    }

    /// Ends a lease without settling: the message is deliverable again at once.
    pub fn release(&mut self, seq: u64) {
        if self.state_of(seq) == SlotState::Leased {
            self.leases.remove(&seq);
            self.make_ready(seq);
            self.counters.released += 1;
        }
    }

    /// Leases whose deadline has passed, removed from the lease table (their slots are left
    /// `Leased` for the caller to make ready or dead-letter).
    pub fn take_expired(&mut self, now: u64) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(&Reverse((deadline, seq))) = self.lease_heap.peek() {
            if deadline > now {
                break;
            }
            self.lease_heap.pop();
            if self
                .leases
                .get(&seq)
                .is_some_and(|l| l.deadline == deadline)
            {
                self.leases.remove(&seq);
                self.counters.lease_expired += 1;
                out.push(seq);
            }
        }
        out
    }

    /// Makes an expired lease's slot deliverable again.
    pub fn expire_to_ready(&mut self, seq: u64) {
        if self.state_of(seq) == SlotState::Leased {
            self.make_ready(seq);
        }
    }

    /// Moves delayed messages whose time has come to ready; returns how many.
    pub fn wake_delayed(&mut self, now: u64) -> usize {
        let mut n = 0;
        while let Some(&Reverse((due, seq))) = self.delay_heap.peek() {
            if due > now {
                break;
            }
            self.delay_heap.pop();
            if self.delayed.get(&seq) == Some(&due) {
                self.delayed.remove(&seq);
                self.make_ready(seq);
                n += 1;
            }
        }
        n
    }

    /// After recovery: every slot that is neither settled nor delayed is ready, and first
    /// deliveries restart from the oldest position.
    pub fn finish_recovery(&mut self) {
        self.fresh = self.base;
        self.retry.clear();
        self.leases.clear();
        self.lease_heap.clear();
        for s in self.slots.iter_mut() {
            if s.state == SlotState::Leased {
                s.state = SlotState::Ready;
            }
        }
    }

    /// Restores a delayed slot from a checkpoint.
    pub fn restore_delayed(&mut self, seq: u64, due: u64) {
        if let Some(s) = self.slot_mut(seq) {
            s.state = SlotState::Delayed;
        }
        self.delayed.insert(seq, due);
        self.delay_heap.push(Reverse((due, seq)));
    }

    /// The due time of a delayed slot.
    pub fn due_of(&self, seq: u64) -> Option<u64> {
        self.delayed.get(&seq).copied()
    }

    /// The earliest time at which a timer (lease or delay) fires, if any.
    pub fn next_timer(&self) -> Option<u64> {
        let l = self.lease_heap.peek().map(|r| r.0.0);
        let d = self.delay_heap.peek().map(|r| r.0.0);
        match (l, d) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Positions leased by `consumer`.
    pub fn leased_by(&self, consumer: u64) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .leases
            .iter()
            .filter(|(_, l)| l.consumer == consumer)
            .map(|(&s, _)| s)
            .collect();
        v.sort_unstable();
        v
    }

    /// Rebuilds a slot table from a checkpoint.
    pub fn restore(base: u64, next_seq: u64, slots: VecDeque<Slot>) -> State {
        let mut st = State {
            base,
            next_seq,
            fresh: base,
            ..State::default()
        };
        for s in &slots {
            if s.state != SlotState::Settled {
                st.pending += 1;
                st.pending_bytes += u64::from(s.len);
                *st.seg_live.entry(s.seg).or_insert(0) += 1;
            }
        }
        st.slots = slots;
        st
    }

    /// Adds a restored dead-letter entry.
    pub fn restore_dlq(&mut self, key: u64, e: DlqEntry) {
        self.live_inc(e.loc.seg);
        self.dlq_bytes += u64::from(e.loc.len);
        if let Some(old) = self.dlq.insert(key, e) {
            self.dlq_bytes -= u64::from(old.loc.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(n: u64) -> Fp {
        FpKey(1, 2).of(&format!("m-{n}"))
    }

    fn loc(n: u32) -> Loc {
        Loc {
            seg: 1,
            off: n * 100,
            len: 100,
        }
    }

    #[test]
    fn slot_states_round_trip_through_their_byte() {
        for s in [
            SlotState::Settled,
            SlotState::Ready,
            SlotState::Leased,
            SlotState::Delayed,
            SlotState::Lost,
        ] {
            assert_eq!(SlotState::from_u8(s as u8), Some(s));
        }
        assert_eq!(SlotState::from_u8(5), None);
    }

    #[test]
    fn first_deliveries_in_order_redeliveries_first() {
        let mut st = State::default();
        for s in 0..4 {
            assert!(st.on_publish(s, loc(s as u32), None, fp(s)));
        }
        let a = st.peek_ready().unwrap();
        st.lease(a, 1, 10);
        let b = st.peek_ready().unwrap();
        st.lease(b, 1, 10);
        assert_eq!((a, b), (0, 1));
        st.release(0);
        assert_eq!(st.peek_ready(), Some(0), "the released one goes first");
        st.lease(0, 1, 10);
        assert_eq!(st.peek_ready(), Some(2));
    }

    #[test]
    fn settling_the_front_advances_base_and_counts() {
        let mut st = State::default();
        for s in 0..3 {
            st.on_publish(s, loc(s as u32), None, fp(s));
        }
        assert_eq!((st.pending, st.pending_bytes), (3, 300));
        assert!(st.on_ack(1));
        assert_eq!(st.base, 0);
        assert!(st.on_ack(0));
        assert_eq!(st.base, 2);
        assert!(!st.on_ack(0), "a second ack changes nothing");
        assert_eq!((st.pending, st.pending_bytes), (1, 100));
        assert_eq!(st.seg_live.get(&1), Some(&1));
    }

    #[test]
    fn delays_wake_in_time_and_stale_heap_entries_are_ignored() {
        let mut st = State::default();
        st.on_publish(0, loc(0), None, fp(0));
        st.on_deliver(0);
        st.on_nack(0, 100, 1, "e1");
        st.on_deliver(0); // recovery order: delivered again after the first delay
        st.on_nack(0, 500, 2, "e2");
        assert_eq!(
            st.wake_delayed(100),
            0,
            "the first, superseded delay must not wake it"
        );
        assert_eq!(st.wake_delayed(500), 1);
        assert_eq!(st.peek_ready(), Some(0));
        assert_eq!(&*st.failures[&0].error, "e2");
        assert_eq!(st.failures[&0].first, 1);
    }

    #[test]
    fn dead_letter_keeps_the_segment_until_purged_or_replayed() {
        let mut st = State::default();
        st.on_publish(0, loc(0), None, fp(0));
        st.on_deliver(0);
        assert!(st.on_dead(0, 7, "rejected", "bad record"));
        assert_eq!(st.pending, 0);
        assert_eq!(st.dlq[&0].attempts, 1);
        assert_eq!(st.seg_live.get(&1), Some(&1));
        assert!(st.on_publish(
            1,
            Loc {
                seg: 2,
                off: 0,
                len: 50
            },
            Some(0),
            fp(0)
        ));
        assert!(st.dlq.is_empty());
        assert_eq!(st.seg_live.get(&1), None);
        assert!(
            st.on_publish(2, loc(3), Some(0), fp(0)),
            "a replay whose entry is gone still publishes (its DEAD record may be lost)"
        );
        assert_eq!(st.pending, 2);
    }

    #[test]
    fn positions_without_a_publish_record_are_lost_not_settled() {
        let mut st = State::default();
        st.on_publish(0, loc(0), None, fp(0));
        let damage = Loc {
            seg: 1,
            off: 500,
            len: 90,
        };
        st.note_exists(2, damage); // e.g. a DELIVER record naming position 2
        st.on_publish(3, loc(3), None, fp(3));
        assert_eq!(st.pending, 4, "the lost positions are still accounted for");
        assert_eq!(
            (st.state_of(1), st.state_of(2)),
            (SlotState::Lost, SlotState::Lost)
        );
        assert_eq!(st.slot(1).map(Slot::loc), Some(damage));
        st.on_ack(0);
        assert_eq!(st.peek_ready(), Some(3), "lost slots are never delivered");
        st.on_nack(1, 5, 5, "x");
        assert_eq!(
            st.state_of(1),
            SlotState::Lost,
            "a nack does not make a lost slot deliverable"
        );
        assert!(st.on_dead(1, 9, "corrupt", "damaged"));
        assert!(st.on_ack(2), "a later ACK record settles a lost slot");
        assert_eq!(st.base, 3);
    }

    #[test]
    fn the_id_index_finds_pending_and_dead_lettered_ids_only() {
        let mut st = State::default();
        for s in 0..3 {
            st.on_publish(s, loc(s as u32), None, fp(s));
        }
        assert_eq!(st.duplicate_of(fp(1)), Some(1));
        assert_eq!(st.duplicate_of(fp(7)), None);
        st.on_ack(1);
        assert_eq!(st.duplicate_of(fp(1)), None, "an acked id may come again");
        st.on_dead(2, 1, "rejected", "bad");
        assert_eq!(
            st.duplicate_of(fp(2)),
            Some(2),
            "a dead-lettered id is still known"
        );
        st.on_purge(2);
        assert_eq!(st.duplicate_of(fp(2)), None);
        let other = Fp {
            hi: fp(0).hi,
            lo: fp(0).lo ^ 1,
        };
        assert_eq!(st.duplicate_of(other), None, "both halves must match");
    }

    #[test]
    fn expired_leases_are_taken_once() {
        let mut st = State::default();
        st.on_publish(0, loc(0), None, fp(0));
        st.lease(0, 9, 100);
        st.extend(0, 200);
        assert!(
            st.take_expired(150).is_empty(),
            "extended lease must not expire at the old deadline"
        );
        assert_eq!(st.take_expired(200), vec![0]);
        st.expire_to_ready(0);
        assert_eq!(st.peek_ready(), Some(0));
        assert!(st.take_expired(1000).is_empty());
    }
}
