//! Prometheus exposition of a runtime's [`Stats`] (`prometheus-client`'s text encoder, the
//! OpenMetrics text format Prometheus scrapes).
//!
//! [`StatsCollector`] reads the live [`Stats`] at scrape time: nothing is copied or kept in
//! between, so there is one source of truth (the numbers [`Stats::snapshot`] shows), and a
//! scrape costs one atomic load per counter and bucket. [`register`] adds it to a caller's
//! registry (to combine with other metrics in one endpoint); [`render`] encodes it alone.
//!
//! Invariants:
//! - Names follow Prometheus conventions: counters end in `_total`, durations are
//!   `_seconds`; every name starts with `ackline_`. The set of names and labels is fixed (no
//!   label takes values from data), so the series count is bounded.
//! - Counts are since the runtime was created (a restart starts from zero, which Prometheus
//!   `rate()` handles as a counter reset).
//!
//! | name | type | what |
//! | --- | --- | --- |
//! | `ackline_worker_received_total` | counter | deliveries received |
//! | `ackline_worker_acked_total` | counter | acks the broker confirmed durable |
//! | `ackline_worker_stored_total` | counter | records newly stored |
//! | `ackline_worker_duplicates_total` | counter | records the store already had |
//! | `ackline_worker_rejected_total` | counter | deliveries dead-lettered for a permanent processing error |
//! | `ackline_worker_store_rejected_total` | counter | deliveries dead-lettered because the store refused their record |
//! | `ackline_worker_nacked_total` | counter | deliveries nacked for retry |
//! | `ackline_worker_panics_total` | counter | panics caught while processing |
//! | `ackline_worker_store_outages_total` | counter | times the store became unavailable |
//! | `ackline_worker_settle_refused_total` | counter | settlements refused as stale |
//! | `ackline_store_batch_duration_seconds` | histogram | one store batch write, success or failure |
//! | `ackline_end_to_end_latency_seconds` | histogram | enqueue to durable ack, per acked delivery |

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Registry;

use crate::stats::{HistogramSnapshot, Stats, StatsSnapshot};

/// Rendering the metrics failed (the text encoder refused to write).
#[derive(Debug, thiserror::Error)]
#[error("encoding worker metrics: {0}")]
pub struct MetricsError(#[from] std::fmt::Error);

type Read = fn(&StatsSnapshot) -> u64;

/// Counter names (without `_total`, which the encoder adds), help, and the field read.
const COUNTERS: &[(&str, &str, Read)] = &[
    ("ackline_worker_received", "Deliveries received.", |s| {
        s.received
    }),
    (
        "ackline_worker_acked",
        "Acks the broker confirmed durable.",
        |s| s.acked,
    ),
    ("ackline_worker_stored", "Records newly stored.", |s| {
        s.stored
    }),
    (
        "ackline_worker_duplicates",
        "Records the store already had (redeliveries, replays).",
        |s| s.duplicates,
    ),
    (
        "ackline_worker_rejected",
        "Deliveries dead-lettered for a permanent processing error.",
        |s| s.rejected,
    ),
    (
        "ackline_worker_store_rejected",
        "Deliveries dead-lettered because the store refused their record.",
        |s| s.store_rejected,
    ),
    (
        "ackline_worker_nacked",
        "Deliveries nacked for retry.",
        |s| s.nacked,
    ),
    (
        "ackline_worker_panics",
        "Panics caught while processing.",
        |s| s.panics,
    ),
    (
        "ackline_worker_store_outages",
        "Times the store became unavailable.",
        |s| s.outages,
    ),
    (
        "ackline_worker_settle_refused",
        "Settlements refused as stale (redelivered elsewhere).",
        |s| s.settle_refused,
    ),
];

/// Reads a runtime's [`Stats`] at each scrape.
#[derive(Debug, Clone)]
pub struct StatsCollector {
    stats: Arc<Stats>,
}

impl StatsCollector {
    /// A collector over these stats (`Runtime::stats()`).
    pub fn new(stats: Arc<Stats>) -> Self {
        StatsCollector { stats }
    }
}

fn encode_histogram(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    h: &HistogramSnapshot,
) -> Result<(), std::fmt::Error> {
    // The encoder takes per-bucket counts and makes them cumulative; `f64::MAX` is `+Inf`.
    let buckets: Vec<(f64, u64)> = h
        .bounds
        .iter()
        .copied()
        .chain(std::iter::once(f64::MAX))
        .zip(h.buckets.iter().copied())
        .collect();
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    m.encode_histogram::<NoLabelSet>(h.sum, h.count(), &buckets, None)
}

impl Collector for StatsCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.stats.snapshot();
        for (name, help, read) in COUNTERS {
            let m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            ConstCounter::new(read(&s)).encode(m)?;
        }
        encode_histogram(
            &mut enc,
            "ackline_store_batch_duration_seconds",
            "Duration of one store batch write (one transaction), success or failure.",
            &self.stats.store_batch_latency(),
        )?;
        encode_histogram(
            &mut enc,
            "ackline_end_to_end_latency_seconds",
            "Time from a message's enqueue to its durable ack, per acked delivery.",
            &self.stats.end_to_end_latency(),
        )?;
        Ok(())
    }
}

/// Adds the worker metrics of `stats` to `registry`.
pub fn register(registry: &mut Registry, stats: Arc<Stats>) {
    registry.register_collector(Box::new(StatsCollector::new(stats)));
}

/// The worker metrics of `stats` in the text exposition format (ends with `# EOF`).
pub fn render(stats: &Arc<Stats>) -> Result<String, MetricsError> {
    let mut registry = Registry::default();
    register(&mut registry, stats.clone());
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let stats = Arc::new(Stats::default());
        stats.add_received(3);
        stats.add_acked(2);
        stats.observe_store_batch(Duration::from_millis(3));
        stats.observe_end_to_end(Duration::from_millis(7));
        stats.observe_end_to_end(Duration::from_secs(9000));
        let text = render(&stats).unwrap();
        for want in [
            "# TYPE ackline_worker_received counter",
            "ackline_worker_received_total 3\n",
            "ackline_worker_acked_total 2\n",
            "ackline_worker_settle_refused_total 0\n",
            "# TYPE ackline_store_batch_duration_seconds histogram",
            "ackline_store_batch_duration_seconds_count 1\n",
            "ackline_store_batch_duration_seconds_bucket{le=\"0.0025\"} 0\n",
            "ackline_store_batch_duration_seconds_bucket{le=\"0.005\"} 1\n",
            "ackline_store_batch_duration_seconds_bucket{le=\"+Inf\"} 1\n",
            "ackline_end_to_end_latency_seconds_count 2\n",
            "ackline_end_to_end_latency_seconds_sum 9000.007\n",
            "ackline_end_to_end_latency_seconds_bucket{le=\"0.01\"} 1\n",
            "ackline_end_to_end_latency_seconds_bucket{le=\"7200.0\"} 1\n",
            "ackline_end_to_end_latency_seconds_bucket{le=\"+Inf\"} 2\n",
        ] {
            assert!(text.contains(want), "{want:?} missing from\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
