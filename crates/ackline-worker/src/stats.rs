//! Counters of a runtime, readable while it runs.
//!
//! Invariant: counters only grow; a snapshot is a consistent-enough view for progress and
//! metrics (each counter is read atomically, not the set together).

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters.
#[derive(Debug, Default)]
pub struct Stats {
    received: AtomicU64,
    stored: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
    store_rejected: AtomicU64,
    nacked: AtomicU64,
    panics: AtomicU64,
    outages: AtomicU64,
    settle_refused: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Deliveries received.
    pub received: u64,
    /// Records newly stored.
    pub stored: u64,
    /// Records the store already had (redeliveries, replays).
    pub duplicates: u64,
    /// Deliveries dead-lettered for a permanent processing error.
    pub rejected: u64,
    /// Deliveries dead-lettered because the store refused their record.
    pub store_rejected: u64,
    /// Deliveries nacked for retry.
    pub nacked: u64,
    /// Panics caught while processing.
    pub panics: u64,
    /// Times the store became unavailable.
    pub outages: u64,
    /// Settlements refused (stale deliveries).
    pub settle_refused: u64,
}

fn add(c: &AtomicU64, n: usize) {
    c.fetch_add(n as u64, Ordering::Relaxed);
}

impl Stats {
    pub(crate) fn add_received(&self, n: usize) {
        add(&self.received, n);
    }
    pub(crate) fn add_stored(&self, inserted: usize, duplicates: usize) {
        add(&self.stored, inserted);
        add(&self.duplicates, duplicates);
    }
    pub(crate) fn add_rejected(&self, n: usize) {
        add(&self.rejected, n);
    }
    pub(crate) fn add_store_rejected(&self) {
        add(&self.store_rejected, 1);
    }
    pub(crate) fn add_nacked(&self, n: usize) {
        add(&self.nacked, n);
    }
    pub(crate) fn add_panic(&self) {
        add(&self.panics, 1);
    }
    pub(crate) fn add_outage(&self) {
        add(&self.outages, 1);
    }
    pub(crate) fn add_settle_refused(&self, n: usize) {
        add(&self.settle_refused, n);
    }

    /// The counters now.
    pub fn snapshot(&self) -> StatsSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            received: r(&self.received),
            stored: r(&self.stored),
            duplicates: r(&self.duplicates),
            rejected: r(&self.rejected),
            store_rejected: r(&self.store_rejected),
            nacked: r(&self.nacked),
            panics: r(&self.panics),
            outages: r(&self.outages),
            settle_refused: r(&self.settle_refused),
        }
    }
}
