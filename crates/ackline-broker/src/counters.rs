//! The event counters a network backend's handle keeps for [`crate::BrokerStats`] (published,
//! delivered, acked, ...), shared by its consumers.
//!
//! Invariants:
//! - Counters only grow, except `in_flight`, which never goes below zero (a late or repeated
//!   decrement saturates instead of wrapping).
//! - They are this handle's since it was opened, not the broker's: relaxed atomics, read
//!   without a lock, each exact on its own (no snapshot across them).

use std::sync::atomic::{AtomicU64, Ordering};

/// A backend handle's counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages published.
    pub published: AtomicU64,
    /// Deliveries made.
    pub delivered: AtomicU64,
    /// Deliveries with an attempt above 1.
    pub redelivered: AtomicU64,
    /// Acks.
    pub acked: AtomicU64,
    /// Nacks.
    pub nacked: AtomicU64,
    /// Moves to the dead-letter queue.
    pub dead_lettered: AtomicU64,
    /// Leases that ran out.
    pub lease_expired: AtomicU64,
    /// Deliveries held by this handle's consumers now.
    pub in_flight: AtomicU64,
}

impl Counters {
    /// Adds `n` to the counter `c` (one of this value's fields).
    pub fn add(&self, c: &AtomicU64, n: usize) {
        c.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `n` more deliveries held.
    pub fn in_flight_add(&self, n: usize) {
        self.add(&self.in_flight, n);
    }

    /// `n` deliveries no longer held (never below zero).
    pub fn in_flight_sub(&self, n: usize) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n as u64))
            });
    }

    /// The value of the counter `c`.
    #[must_use]
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_never_goes_below_zero() {
        let c = Counters::default();
        c.in_flight_add(2);
        c.in_flight_sub(3);
        assert_eq!(Counters::get(&c.in_flight), 0);
        c.add(&c.acked, 5);
        c.add(&c.acked, 1);
        assert_eq!(Counters::get(&c.acked), 6);
    }
}
