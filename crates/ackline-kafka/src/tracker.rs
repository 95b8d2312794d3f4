//! Which offset of one partition may be committed: the end of the contiguous settled prefix.
//!
//! Kafka keeps one committed offset per partition and group, not an ack per message; ackline
//! settles messages one by one and out of order. [`OffsetTracker`] bridges the two, as
//! Confluent's parallel consumer and KIP-932 share groups do: a settled record whose earlier
//! records are still outstanding is held, and the committable offset only moves past records
//! that are all settled.
//!
//! Invariants:
//! - [`OffsetTracker::committable`] never passes an outstanding (received, unsettled) offset:
//!   after a crash, Kafka redelivers from it, so nothing unsettled is ever skipped.
//! - It never goes backwards, and never past one beyond the highest offset received.
//! - Offsets need not be contiguous (compaction and transaction markers leave gaps): the prefix
//!   is "every received offset below it is settled", so a gap never blocks it.
//! - Pure: no I/O, no clock.

use std::collections::BTreeSet;

/// The outstanding offsets of one partition and the offset that may be committed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetTracker {
    /// Received, not yet settled.
    outstanding: BTreeSet<i64>,
    /// One past the highest offset received (`None` before the first).
    end: Option<i64>,
    /// The last offset [`OffsetTracker::committed`] recorded (at first, the first received).
    committed: Option<i64>,
}

impl OffsetTracker {
    /// An empty tracker.
    #[must_use]
    pub fn new() -> Self {
        OffsetTracker::default()
    }

    /// Offset `offset` was received (handed to the consumer or held for later). Offsets arrive
    /// in increasing order within a partition; an offset at or below one received already
    /// (a re-fetch after a seek) is outstanding again unless it lies below what was committed.
    /// The first offset received is taken as committed: a consumer starts reading a partition
    /// at its committed offset.
    pub fn received(&mut self, offset: i64) {
        if self.committed.is_some_and(|c| offset < c) {
            return;
        }
        if self.committed.is_none() {
            self.committed = Some(offset);
        }
        self.outstanding.insert(offset);
        self.end = Some(self.end.map_or(offset + 1, |e| e.max(offset + 1)));
    }

    /// Offset `offset` was settled (acked, or its retry or dead-letter copy confirmed).
    /// Returns false when it was not outstanding.
    pub fn settled(&mut self, offset: i64) -> bool {
        self.outstanding.remove(&offset)
    }

    /// The offset to commit now (the first unsettled offset, or one past the highest received
    /// when all are settled), when it is ahead of what was committed.
    #[must_use]
    pub fn committable(&self) -> Option<i64> {
        let end = self.end?;
        let next = self.outstanding.first().copied().unwrap_or(end);
        match self.committed {
            Some(c) if next <= c => None,
            _ => Some(next),
        }
    }

    /// `offset` was committed (as returned by [`OffsetTracker::committable`]).
    pub fn committed(&mut self, offset: i64) {
        self.committed = Some(self.committed.map_or(offset, |c| c.max(offset)));
    }

    /// The offset last committed (at first, the first received); `None` before any record.
    #[must_use]
    pub fn position(&self) -> Option<i64> {
        self.committed
    }

    /// How many offsets are outstanding.
    #[must_use]
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn out_of_order_settlements_are_held_until_the_prefix_is_settled() {
        let mut t = OffsetTracker::new();
        assert_eq!(t.committable(), None, "nothing received");
        for o in 5..=8 {
            t.received(o);
        }
        assert_eq!(
            t.committable(),
            None,
            "nothing settled: the start is committed"
        );
        assert!(t.settled(7));
        assert!(t.settled(6));
        assert_eq!(t.committable(), None, "5 is still outstanding");
        assert!(t.settled(5));
        assert_eq!(t.committable(), Some(8), "5..=7 settled, 8 outstanding");
        assert!(!t.settled(5), "a second settlement is not outstanding");
        t.committed(8);
        assert!(t.settled(8));
        assert_eq!(t.committable(), Some(9));
        t.committed(9);
        assert_eq!(t.committable(), None);
        assert_eq!(t.outstanding(), 0);
    }

    #[test]
    fn gaps_in_offsets_do_not_block_the_prefix() {
        let mut t = OffsetTracker::new();
        t.received(10);
        t.received(14); // 11..=13 compacted away
        t.settled(10);
        assert_eq!(t.committable(), Some(14));
        t.settled(14);
        assert_eq!(t.committable(), Some(15));
    }

    #[test]
    fn a_refetch_below_the_commit_is_ignored() {
        let mut t = OffsetTracker::new();
        t.received(3);
        t.settled(3);
        t.committed(4);
        t.received(2);
        assert_eq!(t.outstanding(), 0);
        assert_eq!(t.committable(), None);
    }

    proptest! {
        /// Whatever the order of settlements, the committable offset is exactly the first
        /// unsettled received offset (or the end), never goes backwards, and never passes an
        /// unsettled offset.
        #[test]
        fn commits_only_the_contiguous_settled_prefix(
            gaps in proptest::collection::vec(1i64..4, 1..60),
            order in proptest::collection::vec(any::<prop::sample::Index>(), 0..80),
            commit_every in 1usize..5,
        ) {
            let mut offsets = Vec::new();
            let mut o = 100i64;
            for g in gaps {
                offsets.push(o);
                o += g;
            }
            let mut t = OffsetTracker::new();
            for &o in &offsets {
                t.received(o);
            }
            let mut unsettled: BTreeSet<i64> = offsets.iter().copied().collect();
            let mut last = Some(offsets[0]);
            for (n, i) in order.iter().enumerate() {
                let pick = offsets[i.index(offsets.len())];
                prop_assert_eq!(t.settled(pick), unsettled.remove(&pick));
                let want = unsettled.first().copied().unwrap_or(offsets[offsets.len() - 1] + 1);
                if let Some(c) = t.committable() {
                    prop_assert_eq!(c, want);
                    prop_assert!(last.is_none_or(|l| c > l), "went backwards or stood still");
                    prop_assert!(unsettled.iter().all(|&u| u >= c), "passed an unsettled offset");
                    if n % commit_every == 0 {
                        t.committed(c);
                        last = Some(c);
                    }
                } else {
                    prop_assert_eq!(last, Some(want), "nothing new only when committed already");
                }
            }
        }
    }
}
