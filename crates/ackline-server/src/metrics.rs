//! Prometheus metrics (`prometheus-client`: a registry per server, no global recorder, so
//! several servers in one test process never mix their numbers; text exposition built in).
//!
//! Queue counters are read from the engine's own counts at scrape time (one source of truth:
//! the numbers `/v1/queues/{queue}/stats` shows); request latency and ingest counts are
//! observed here. Names follow Prometheus conventions: counters end in `_total`, durations
//! are `_seconds`, sizes `_bytes`; every queue metric has a `queue` label. They count since
//! the queue was opened by this process.
//!
//! | name | type | what |
//! | --- | --- | --- |
//! | `ackline_published_total` | counter | messages published |
//! | `ackline_delivered_total` | counter | deliveries made (redeliveries included) |
//! | `ackline_redelivered_total` | counter | redeliveries |
//! | `ackline_acked_total` | counter | acks |
//! | `ackline_nacked_total` | counter | nacks |
//! | `ackline_rejected_total` | counter | rejects through the lease API |
//! | `ackline_dead_lettered_total` | counter | moves to the dead-letter queue |
//! | `ackline_lease_expired_total` | counter | leases that ran out |
//! | `ackline_ingested_lines_total` | counter | lines queued by `POST /v1/logs` |
//! | `ackline_syslog_frames_total` | counter | syslog frames queued, by `transport` (`tcp`, `udp`) |
//! | `ackline_syslog_errors_total` | counter | syslog frames refused, by `transport` and `kind` (`truncated`, `oversized`, `binary`, `bad_octet_count`, `dropped`) |
//! | `ackline_syslog_dropped_total` | counter | syslog datagrams the kernel dropped before they were read (receive buffer full), `transport="udp"`; Linux only (read from `/proc/net/udp` at scrape) |
//! | `ackline_in_flight` | gauge | delivered, not settled |
//! | `ackline_queue_depth` | gauge | messages not settled |
//! | `ackline_queue_bytes` | gauge | bytes not settled |
//! | `ackline_delayed` | gauge | waiting for a redelivery time |
//! | `ackline_dead_letters` | gauge | entries in the dead-letter queue |
//! | `ackline_sessions` | gauge | open lease sessions |
//! | `ackline_readiness_checks_total` | counter | checks of the default queue (a sync) run by `GET /readyz`, at most one per `limits.readiness_interval` |
//! | `ackline_connections` | gauge | open connections, by `listener` (`http`, `syslog_tcp`) |
//! | `ackline_connections_busy` | gauge | connections with a request (HTTP) or frame being queued (syslog TCP) in progress, by `listener` |
//! | `ackline_connections_shed_total` | counter | idle connections closed to make room for a new one, by `listener` |
//! | `ackline_connections_refused_total` | counter | connections refused over `limits.max_connections_per_client`, by `listener` |
//! | `ackline_http_request_duration_seconds` | histogram | by `method` (`GET`, `POST`, ... or `other`), `route` (pattern, or `unmatched`), `status` |
//! | `ackline_end_to_end_latency_seconds` | histogram | per queue: from a message's enqueue to its durable ack through the lease API |
//!
//! `ackline_end_to_end_latency_seconds` is observed once per ack that succeeded through the
//! session that handed the delivery out (see `routes/lease.rs`), on the server's clock, with
//! the buckets [`END_TO_END_BUCKETS`] (the same as the worker runtime's histogram of that
//! name, so the two can be compared or aggregated).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ackline_queue::QueueStats;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::sessions::Sessions;
use crate::slots::Slots;
use crate::state::Queues;
use crate::syslog::udp::KernelDrops;

type Labels = Vec<(String, String)>;

/// Upper bounds (seconds) of the end-to-end latency buckets: 1 ms to 2 h. Kept equal to
/// `ackline_worker::END_TO_END_BUCKETS`.
pub const END_TO_END_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
];

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    latency: Family<Labels, Histogram>,
    end_to_end: Family<Labels, Histogram>,
    /// The same observations over all queues, for the console's latency chart.
    console_end_to_end: ackline_console::Latency,
    ingested: Family<Labels, Counter>,
    rejected: Family<Labels, Counter>,
    syslog_frames: Family<Labels, Counter>,
    syslog_errors: Family<Labels, Counter>,
    udp_drops: Option<KernelDrops>,
}

#[derive(Debug)]
struct QueueCollector {
    queues: Arc<Queues>,
    sessions: Arc<Sessions>,
    listeners: Vec<(&'static str, Arc<Slots>)>,
    readiness: Arc<AtomicU64>,
    udp_drops: Option<KernelDrops>,
}

type Read = fn(&QueueStats) -> u64;
type ReadSlots = fn(&Slots) -> u64;

const COUNTERS: &[(&str, &str, Read)] = &[
    ("ackline_published", "Messages published.", |s| s.published),
    (
        "ackline_delivered",
        "Deliveries made, redeliveries included.",
        |s| s.delivered,
    ),
    ("ackline_redelivered", "Redeliveries.", |s| s.redelivered),
    ("ackline_acked", "Acks.", |s| s.acked),
    ("ackline_nacked", "Nacks.", |s| s.nacked),
    (
        "ackline_dead_lettered",
        "Moves to the dead-letter queue.",
        |s| s.dead_lettered,
    ),
    ("ackline_lease_expired", "Leases that ran out.", |s| {
        s.lease_expired
    }),
    (
        "ackline_duplicate_publishes",
        "Publishes absorbed because their id was already pending or dead-lettered.",
        |s| s.duplicates,
    ),
    (
        "ackline_corrupt_messages",
        "Messages dead-lettered with reason corrupt (damaged stored records).",
        |s| s.corrupt_messages,
    ),
];

const GAUGES: &[(&str, &str, Read)] = &[
    ("ackline_in_flight", "Deliveries not yet settled.", |s| {
        s.leased
    }),
    ("ackline_queue_depth", "Messages not yet settled.", |s| {
        s.pending
    }),
    (
        "ackline_queue_bytes",
        "Bytes of messages not yet settled.",
        |s| s.pending_bytes,
    ),
    (
        "ackline_delayed",
        "Messages waiting for a redelivery time.",
        |s| s.delayed,
    ),
    (
        "ackline_dead_letters",
        "Entries in the dead-letter queue.",
        |s| s.dead_letters,
    ),
    (
        "ackline_corrupt_ranges",
        "Damaged ranges of the queue's files found when it was opened.",
        |s| s.corrupt_ranges,
    ),
];

impl Collector for QueueCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats: Vec<(String, QueueStats)> = self
            .queues
            .open_queues()
            .into_iter()
            .map(|(n, b)| (n, b.queue().stats()))
            .collect();
        for (name, help, read) in COUNTERS {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (q, s) in &stats {
                let labels = [("queue", q.as_str())];
                ConstCounter::new(read(s)).encode(m.encode_family(&labels)?)?;
            }
        }
        for (name, help, read) in GAUGES {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (q, s) in &stats {
                let labels = [("queue", q.as_str())];
                ConstGauge::new(read(s) as i64).encode(m.encode_family(&labels)?)?;
            }
        }
        let m = enc.encode_descriptor(
            "ackline_sessions",
            "Open lease sessions.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.sessions.len() as i64).encode(m)?;
        let m = enc.encode_descriptor(
            "ackline_readiness_checks",
            "Checks of the default queue run by GET /readyz (at most one per readiness_interval).",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(self.readiness.load(Ordering::Relaxed)).encode(m)?;
        let mut m = enc.encode_descriptor(
            "ackline_syslog_dropped",
            "Syslog datagrams the kernel dropped before they were read (receive buffer full), by transport.",
            None,
            MetricType::Counter,
        )?;
        if let Some(d) = &self.udp_drops {
            let n = d.read().unwrap_or(0);
            ConstCounter::new(n).encode(m.encode_family(&[("transport", "udp")])?)?;
        }
        let mut m = enc.encode_descriptor(
            "ackline_connections",
            "Open connections, by listener.",
            None,
            MetricType::Gauge,
        )?;
        for (l, s) in &self.listeners {
            ConstGauge::new(s.len() as i64).encode(m.encode_family(&[("listener", *l)])?)?;
        }
        let mut m = enc.encode_descriptor(
            "ackline_connections_busy",
            "Connections with a request (HTTP) or frame (syslog) in progress, by listener.",
            None,
            MetricType::Gauge,
        )?;
        for (l, s) in &self.listeners {
            ConstGauge::new(s.busy_len() as i64).encode(m.encode_family(&[("listener", *l)])?)?;
        }
        let per: [(&str, &str, ReadSlots); 2] = [
            (
                "ackline_connections_shed",
                "Idle connections closed to make room for a new one, by listener.",
                Slots::shed_total,
            ),
            (
                "ackline_connections_refused",
                "Connections refused over the per-client cap, by listener.",
                Slots::refused_total,
            ),
        ];
        for (name, help, read) in per {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (l, s) in &self.listeners {
                ConstCounter::new(read(s)).encode(m.encode_family(&[("listener", *l)])?)?;
            }
        }
        Ok(())
    }
}

fn queue_label(q: &str) -> Labels {
    vec![("queue".to_string(), q.to_string())]
}

impl Metrics {
    /// Metrics over these queues and sessions.
    pub fn new(
        queues: Arc<Queues>,
        sessions: Arc<Sessions>,
        listeners: Vec<(&'static str, Arc<Slots>)>,
        readiness: Arc<AtomicU64>,
        udp_drops: Option<KernelDrops>,
    ) -> Self {
        let mut registry = Registry::default();
        let latency = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.5, 14))
        });
        let end_to_end = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(END_TO_END_BUCKETS.iter().copied())
        });
        registry.register(
            "ackline_end_to_end_latency_seconds",
            "Time from a message's enqueue to its durable ack through the lease API.",
            end_to_end.clone(),
        );
        let ingested = Family::<Labels, Counter>::default();
        let rejected = Family::<Labels, Counter>::default();
        registry.register(
            "ackline_http_request_duration_seconds",
            "HTTP request latency by method, route pattern and status.",
            latency.clone(),
        );
        registry.register(
            "ackline_ingested_lines",
            "Lines queued by POST /v1/logs.",
            ingested.clone(),
        );
        registry.register(
            "ackline_rejected",
            "Rejects (dead-lettered at once) through the lease API.",
            rejected.clone(),
        );
        let syslog_frames = Family::<Labels, Counter>::default();
        let syslog_errors = Family::<Labels, Counter>::default();
        registry.register(
            "ackline_syslog_frames",
            "Syslog frames queued, by transport.",
            syslog_frames.clone(),
        );
        registry.register(
            "ackline_syslog_errors",
            "Syslog frames refused, by transport and kind.",
            syslog_errors.clone(),
        );
        registry.register_collector(Box::new(QueueCollector {
            queues,
            sessions,
            listeners,
            readiness,
            udp_drops: udp_drops.clone(),
        }));
        Metrics {
            registry,
            latency,
            end_to_end,
            console_end_to_end: ackline_console::Latency::new("end_to_end", END_TO_END_BUCKETS),
            ingested,
            rejected,
            syslog_frames,
            syslog_errors,
            udp_drops,
        }
    }

    /// The kernel's drop counter of the syslog UDP socket, where readable.
    pub fn udp_drops(&self) -> Option<KernelDrops> {
        self.udp_drops.clone()
    }

    /// Observes one request.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        let labels = vec![
            ("method".to_string(), method.to_string()),
            ("route".to_string(), route.to_string()),
            ("status".to_string(), status.to_string()),
        ];
        self.latency
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Observes one durable ack, `took` after its message was enqueued.
    pub fn observe_end_to_end(&self, queue: &str, took: Duration) {
        self.console_end_to_end.observe(took);
        self.end_to_end
            .get_or_create(&queue_label(queue))
            .observe(took.as_secs_f64());
    }

    /// End-to-end latency over all queues, as the console charts it.
    pub fn end_to_end_view(&self) -> ackline_console::HistogramView {
        self.console_end_to_end.view()
    }

    /// Counts lines queued by ingest.
    pub fn ingested(&self, queue: &str, n: u64) {
        self.ingested.get_or_create(&queue_label(queue)).inc_by(n);
    }

    /// Counts one reject.
    pub fn rejected(&self, queue: &str) {
        self.rejected.get_or_create(&queue_label(queue)).inc();
    }

    /// Counts syslog frames queued.
    pub fn syslog_frames(&self, transport: &str, n: u64) {
        let l = vec![("transport".to_string(), transport.to_string())];
        self.syslog_frames.get_or_create(&l).inc_by(n);
    }

    /// Counts one refused syslog frame.
    pub fn syslog_error(&self, transport: &str, kind: &str) {
        let l = vec![
            ("transport".to_string(), transport.to_string()),
            ("kind".to_string(), kind.to_string()),
        ];
        self.syslog_errors.get_or_create(&l).inc();
    }

    /// The text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
