//! [`Latency`]: a fixed-bucket latency histogram with atomic counters, for hosts that have
//! no histogram of their own to show (the server's end-to-end latency of lease-API acks).
//!
//! Invariants: observing never blocks or allocates; a snapshot's buckets are not cumulative
//! and there is one more bucket than bounds (`+Inf`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::host::HistogramView;

/// A latency histogram.
#[derive(Debug)]
pub struct Latency {
    name: &'static str,
    bounds: &'static [f64],
    buckets: Box<[AtomicU64]>,
}

impl Latency {
    /// An empty histogram called `name` over `bounds` (seconds, increasing).
    pub fn new(name: &'static str, bounds: &'static [f64]) -> Self {
        Latency {
            name,
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Records one value.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self.bounds.partition_point(|b| *b < secs);
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The histogram now.
    pub fn view(&self) -> HistogramView {
        HistogramView {
            name: self.name.to_string(),
            bounds: self.bounds.to_vec(),
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_their_bucket() {
        let h = Latency::new("x", &[0.001, 0.01]);
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_secs(1));
        assert_eq!(h.view().buckets, vec![2, 1, 1]);
    }
}
