//! Counters and latency histograms of a runtime, readable while it runs.
//!
//! Invariants:
//! - Counters only grow; a snapshot is a consistent-enough view for progress and metrics
//!   (each counter is read atomically, not the set together).
//! - Recording is lock-free: one relaxed `fetch_add` per counter, two per histogram
//!   observation (its bucket and its sum). No observation allocates or blocks.
//! - A histogram's buckets are fixed at construction ([`STORE_BATCH_BUCKETS`],
//!   [`END_TO_END_BUCKETS`]) and a value lands in the first bucket whose upper bound is at
//!   least the value (Prometheus `le` semantics); values above the last bound land in the
//!   implicit `+Inf` bucket, so every observation is counted exactly once.
//! - A histogram's count is the sum of its buckets (never kept apart, so the two cannot
//!   disagree); its sum is kept in whole microseconds, so a snapshot taken while observations
//!   land may see a bucket without its sum (or the reverse) for that one observation.
//!
//! What the histograms observe (the runtime in `lib.rs` records them):
//! - `store_batch`: the wall time of one `Store::write_batch` call, from the call to its
//!   return, successful or not (an unavailable store's quick refusals are observed too).
//! - `end_to_end`: for each delivery acked durably (the broker's `settle` returned and the
//!   delivery's own result is `Ok`), the time from its message's `enqueued_at` (Unix ms, set by
//!   the queue when it was first published) to the moment `settle` returned, read from this
//!   machine's clock. Nacks, rejects and refused (stale) acks are not observed. A producer
//!   clock ahead of this one would give a negative latency: it is counted as 0.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the store batch-write latency buckets: 0.5 ms to 60 s.
pub const STORE_BATCH_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Upper bounds (seconds) of the end-to-end latency buckets: 1 ms to 2 h (a backlog drained
/// hours later is still placed, not just counted in `+Inf`).
pub const END_TO_END_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
];

/// A latency histogram with fixed buckets and atomic counters.
#[derive(Debug)]
pub struct LatencyHistogram {
    bounds: &'static [f64],
    /// One per bound, then `+Inf`.
    buckets: Box<[AtomicU64]>,
    sum_micros: AtomicU64,
}

/// A histogram at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Upper bounds of the finite buckets, seconds, increasing.
    pub bounds: &'static [f64],
    /// Observations per bucket (not cumulative): one per bound, then the `+Inf` bucket.
    pub buckets: Vec<u64>,
    /// Sum of the observed values, seconds.
    pub sum: f64,
}

impl HistogramSnapshot {
    /// Observations in all.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

impl LatencyHistogram {
    /// An empty histogram over these upper bounds (seconds, increasing).
    pub fn new(bounds: &'static [f64]) -> Self {
        LatencyHistogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one value.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self.bounds.partition_point(|b| *b < secs);
        // `i <= bounds.len()`, and there are `bounds.len() + 1` buckets.
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The histogram now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            bounds: self.bounds,
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            sum: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// Live counters and latency histograms.
#[derive(Debug)]
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
    acked: AtomicU64,
    store_batch: LatencyHistogram,
    end_to_end: LatencyHistogram,
}

impl Default for Stats {
    fn default() -> Self {
        let z = || AtomicU64::new(0);
        Stats {
            received: z(),
            stored: z(),
            duplicates: z(),
            rejected: z(),
            store_rejected: z(),
            nacked: z(),
            panics: z(),
            outages: z(),
            settle_refused: z(),
            acked: z(),
            store_batch: LatencyHistogram::new(STORE_BATCH_BUCKETS),
            end_to_end: LatencyHistogram::new(END_TO_END_BUCKETS),
        }
    }
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
    /// Acks the broker confirmed durable.
    pub acked: u64,
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
    pub(crate) fn add_acked(&self, n: usize) {
        add(&self.acked, n);
    }
    pub(crate) fn observe_store_batch(&self, took: Duration) {
        self.store_batch.observe(took);
    }
    pub(crate) fn observe_end_to_end(&self, took: Duration) {
        self.end_to_end.observe(took);
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
            acked: r(&self.acked),
        }
    }

    /// Latency of each store batch write (success or failure), now.
    pub fn store_batch_latency(&self) -> HistogramSnapshot {
        self.store_batch.snapshot()
    }

    /// Latency from enqueue to durable ack of each acked delivery, now.
    pub fn end_to_end_latency(&self) -> HistogramSnapshot {
        self.end_to_end.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_at_least_as_large() {
        const B: &[f64] = &[0.001, 0.01, 0.1];
        let h = LatencyHistogram::new(B);
        for ms in [0, 1, 2, 10, 11, 100, 101, 5000] {
            h.observe(Duration::from_millis(ms));
        }
        let s = h.snapshot();
        // le=0.001: 0 and 1 ms; le=0.01: 2, 10; le=0.1: 11, 100; +Inf: 101, 5000.
        assert_eq!(s.buckets, vec![2, 2, 2, 2]);
        assert_eq!(s.count(), 8);
        assert!((s.sum - 5.225).abs() < 1e-9, "{}", s.sum);
    }

    #[test]
    fn bounds_increase() {
        for b in [STORE_BATCH_BUCKETS, END_TO_END_BUCKETS] {
            assert!(b.windows(2).all(|w| w[0] < w[1]), "{b:?}");
        }
    }
}
