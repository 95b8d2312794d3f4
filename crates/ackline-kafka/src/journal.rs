//! Which records of a partition were handed out beyond its committed offset, kept in the
//! commit's metadata, so that attempts count redeliveries after a crash.
//!
//! Kafka stores a string beside each committed offset. Before a consumer hands out records up
//! to offset `x`, it commits its (unchanged) offset with metadata saying "records below `x + 1`
//! were handed out". A consumer that takes the partition over (after a crash or a rebalance)
//! reads it: every record at or past the committed offset and below that mark was handed out
//! before and never committed, so it is a redelivery, one more attempt than it had.
//!
//! The metadata is a list of ranges `ackline1:<end>:<extra>;<end>:<extra>...`, ends ascending:
//! records below the first end (and at or past the committed offset) have `extra` more
//! attempts than their headers say, those between the first and the second end the second's,
//! and so on.
//!
//! Invariants:
//! - A record's extra attempts never go down while it is not committed: a takeover adds one to
//!   every range, handing out more only appends, and a commit only drops ranges wholly below
//!   the committed offset.
//! - The text stays under [`MAX_LEN`] bytes (Kafka's default `offset.metadata.max.bytes` is
//!   4096): past [`MAX_RANGES`] ranges, the oldest two merge, keeping the larger count (an
//!   attempt may then be counted early, never missed).
//! - Decoding never fails: text that is not ours is an empty journal.

/// The most ranges kept.
pub const MAX_RANGES: usize = 64;
/// The longest text written.
pub const MAX_LEN: usize = 4000;

const PREFIX: &str = "ackline1:";

/// The handed-out ranges of one partition past its committed offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Journal {
    /// `(end, extra)`, ends ascending, each range starting at the previous end.
    ranges: Vec<(i64, u32)>,
}

impl Journal {
    /// The journal a commit's metadata holds (empty when it holds none of ours).
    #[must_use]
    pub fn decode(text: &str) -> Journal {
        let Some(body) = text.strip_prefix(PREFIX) else {
            return Journal::default();
        };
        let mut ranges: Vec<(i64, u32)> = Vec::new();
        for part in body.split(';').filter(|p| !p.is_empty()) {
            let Some((end, extra)) = part.split_once(':') else {
                return Journal::default();
            };
            let (Ok(end), Ok(extra)) = (end.parse::<i64>(), extra.parse::<u32>()) else {
                return Journal::default();
            };
            if ranges.last().is_some_and(|&(e, _)| e >= end) {
                return Journal::default();
            }
            ranges.push((end, extra));
        }
        Journal { ranges }
    }

    /// The metadata text.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut s = String::from(PREFIX);
        for (i, (end, extra)) in self.ranges.iter().enumerate() {
            if i > 0 {
                s.push(';');
            }
            s.push_str(&format!("{end}:{extra}"));
        }
        s
    }

    /// The journal a new owner starts from: every range handed out before counts once more.
    #[must_use]
    pub fn taken_over(mut self) -> Journal {
        for r in &mut self.ranges {
            r.1 = r.1.saturating_add(1);
        }
        self
    }

    /// Extra attempts of the record at `offset` (0 past every range).
    #[must_use]
    pub fn extra(&self, offset: i64) -> u32 {
        self.ranges
            .iter()
            .find(|&&(end, _)| offset < end)
            .map_or(0, |&(_, extra)| extra)
    }

    /// One past the last record handed out (0 when none is recorded).
    #[must_use]
    pub fn end(&self) -> i64 {
        self.ranges.last().map_or(0, |r| r.0)
    }

    /// Records below `end` are handed out; returns whether the journal changed (and must be
    /// committed before they are).
    pub fn hand_out(&mut self, end: i64) -> bool {
        if end <= self.end() {
            return false;
        }
        match self.ranges.last_mut() {
            Some(last) if last.1 == 0 => last.0 = end,
            _ => self.ranges.push((end, 0)),
        }
        while self.ranges.len() > MAX_RANGES || self.encode().len() > MAX_LEN {
            if self.ranges.len() < 2 {
                break;
            }
            let (_, first) = self.ranges.remove(0);
            self.ranges[0].1 = self.ranges[0].1.max(first);
        }
        true
    }

    /// The committed offset moved to `offset`: ranges wholly below it are dropped.
    pub fn committed(&mut self, offset: i64) {
        self.ranges.retain(|&(end, _)| end > offset);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_takeover_counts_every_record_handed_out_before_once_more() {
        let mut j = Journal::default();
        assert!(j.hand_out(10));
        assert!(!j.hand_out(8), "already recorded");
        assert_eq!(j.encode(), "ackline1:10:0");
        let mut k = Journal::decode(&j.encode()).taken_over();
        assert_eq!((k.extra(3), k.extra(9), k.extra(10)), (1, 1, 0));
        assert!(k.hand_out(15));
        assert_eq!(k.encode(), "ackline1:10:1;15:0");
        let m = Journal::decode(&k.encode()).taken_over();
        assert_eq!((m.extra(9), m.extra(12), m.extra(15)), (2, 1, 0));
        let mut m = m;
        m.committed(10);
        assert_eq!(m.encode(), "ackline1:15:1");
    }

    #[test]
    fn foreign_or_damaged_metadata_is_an_empty_journal() {
        for t in [
            "",
            "hello",
            "ackline1:x:1",
            "ackline1:5:1;3:0",
            "ackline1:5",
        ] {
            assert_eq!(Journal::decode(t), Journal::default(), "{t}");
        }
        assert_eq!(Journal::decode("ackline1:"), Journal::default());
    }

    #[test]
    fn too_many_ranges_merge_the_oldest_keeping_the_larger_count() {
        let mut j = Journal::default();
        for i in 0..(MAX_RANGES as i64 + 10) {
            j.hand_out((i + 1) * 10);
            j = j.taken_over();
        }
        assert!(j.ranges.len() <= MAX_RANGES);
        assert!(j.encode().len() <= MAX_LEN);
        // The oldest records were taken over the most: never fewer than the newer ones.
        assert!(j.extra(0) >= j.extra(j.end() - 1));
    }

    proptest! {
        /// Extra attempts of an uncommitted record never go down.
        #[test]
        fn extra_attempts_never_decrease(ops in proptest::collection::vec((0u8..3, 1i64..20), 1..60)) {
            let mut j = Journal::default();
            let mut committed = 0i64;
            let mut seen: std::collections::BTreeMap<i64, u32> = Default::default();
            for (op, n) in ops {
                match op {
                    0 => { j.hand_out(j.end().max(committed) + n); }
                    1 => { j = Journal::decode(&j.encode()).taken_over(); }
                    _ => { committed = (committed + n).min(j.end()).max(committed); j.committed(committed); }
                }
                for o in committed..j.end() {
                    let e = j.extra(o);
                    if let Some(&before) = seen.get(&o) {
                        prop_assert!(e >= before, "offset {o}: {before} -> {e}");
                    }
                    seen.insert(o, e);
                }
            }
        }
    }
}
