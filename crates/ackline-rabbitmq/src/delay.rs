//! Delayed redelivery, which RabbitMQ lacks natively: per-bucket delay queues.
//!
//! A nack with delay `d > 0` publishes a copy of the message to the delay queue
//! `<queue>.delay.<ms>` of the smallest bucket `base * 2^k >= d` (`k < buckets`). Each delay
//! queue is a durable quorum queue with `x-message-ttl = <ms>`, `x-dead-letter-exchange = ""`
//! and `x-dead-letter-routing-key = <queue>`, so RabbitMQ moves each copy back to the main
//! queue when its TTL ends. Its dead-lettering is `x-dead-letter-strategy = at-least-once`
//! (with `x-overflow = reject-publish`, which that strategy requires): a copy leaves the delay
//! queue only once the main queue has confirmed it, never RabbitMQ's at-most-once default.
//! A nack with `d = 0` publishes the copy straight to the main queue.
//!
//! Invariants:
//! - Never earlier than requested: the TTL starts when the delay queue confirms the copy,
//!   which is after the nack, and the bucket is `>= d`. At most twice as late (plus the
//!   broker's expiry latency) since buckets are powers of two; delays above the largest bucket
//!   use it repeatedly, the copy carrying `x-ackline-not-before` and being put back into a
//!   delay queue (without counting an attempt) until that time has passed.
//! - Every delay queue holds copies of one TTL, so expiry at the head (the only place quorum
//!   queues expire messages) is never blocked behind a longer-lived copy.
//! - The number of queues per ackline queue is bounded: at most `buckets` delay queues, each
//!   declared when first used.
//!
//! Ordering: a nacked message goes to the back of the main queue when its delay ends, so it is
//! redelivered after messages published meanwhile (a redelivery may overtake or be overtaken;
//! first deliveries stay in publish order).

use std::time::Duration;

use lapin::types::FieldTable;

use crate::attempts::{int, long_string};

/// The delay buckets of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Buckets {
    base_ms: u64,
    count: u32,
}

impl Buckets {
    pub fn new(base: Duration, count: u32) -> Self {
        Buckets {
            base_ms: u64::try_from(base.as_millis()).unwrap_or(u64::MAX).max(1),
            count: count.clamp(1, 40),
        }
    }

    /// Every bucket's TTL in ms, smallest first.
    pub fn all(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.count).map(|k| self.base_ms.saturating_mul(1 << k))
    }

    /// The largest bucket, ms.
    pub fn max_ms(&self) -> u64 {
        self.base_ms.saturating_mul(1 << (self.count - 1))
    }

    /// The bucket (TTL in ms) for a delay: the smallest `>= delay`, or the largest. `None`
    /// for a zero delay (straight back to the main queue).
    pub fn bucket(&self, delay: Duration) -> Option<u64> {
        if delay.is_zero() {
            return None;
        }
        // Round up to whole ms: never earlier than requested.
        let want = u64::try_from(delay.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
        Some(
            self.all()
                .find(|&b| b >= want)
                .unwrap_or_else(|| self.max_ms()),
        )
    }
}

/// The name of a delay queue.
pub(crate) fn queue_name(queue: &str, ttl_ms: u64) -> String {
    format!("{queue}.delay.{ttl_ms}")
}

/// The declaration arguments of a delay queue that dead-letters into `queue`.
pub(crate) fn arguments(queue: &str, ttl_ms: u64) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert("x-queue-type".into(), long_string("quorum"));
    t.insert("x-message-ttl".into(), int(ttl_ms));
    t.insert("x-dead-letter-exchange".into(), long_string(""));
    t.insert("x-dead-letter-routing-key".into(), long_string(queue));
    t.insert(
        "x-dead-letter-strategy".into(),
        long_string("at-least-once"),
    );
    t.insert("x-overflow".into(), long_string("reject-publish"));
    t
}

/// Whether an AMQP argument value names the quorum type (for tests of the declaration).
#[cfg(test)]
fn is_quorum(t: &FieldTable) -> bool {
    matches!(
        t.inner().get("x-queue-type"),
        Some(lapin::types::AMQPValue::LongString(s)) if s.as_bytes() == b"quorum"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_up_and_cap() {
        let b = Buckets::new(Duration::from_millis(100), 4);
        assert_eq!(b.all().collect::<Vec<_>>(), [100, 200, 400, 800]);
        assert_eq!(b.bucket(Duration::ZERO), None);
        assert_eq!(b.bucket(Duration::from_micros(1)), Some(100));
        assert_eq!(b.bucket(Duration::from_millis(100)), Some(100));
        assert_eq!(b.bucket(Duration::from_micros(100_001)), Some(200));
        assert_eq!(b.bucket(Duration::from_millis(800)), Some(800));
        assert_eq!(b.bucket(Duration::from_secs(60)), Some(800));
        assert_eq!(b.max_ms(), 800);
    }

    #[test]
    fn delay_queues_dead_letter_back_at_least_once() {
        let t = arguments("logs", 800);
        assert!(is_quorum(&t));
        assert!(t.contains_key("x-dead-letter-strategy"));
        assert_eq!(queue_name("logs", 800), "logs.delay.800");
    }
}
