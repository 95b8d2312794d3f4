//! # ackline-kafka: the delivery contract on Kafka
//!
//! [`KafkaBroker`] implements [`ackline_broker::Broker`], [`ackline_broker::Consumer`] (as
//! [`KafkaConsumer`]) and [`ackline_broker::DeadLetters`] on a Kafka topic read by a consumer
//! group, through librdkafka (the `rdkafka` crate with the librdkafka sources it bundles). Kafka has
//! offsets, not per-message acks, no delayed redelivery and no dead-letter queue; each is built
//! here on the client. `docs/kafka.md` is the operator's version of this page, with what works,
//! what does not yet, and where the test broker (tansu) differs from Kafka.
//!
//! ## How the contract maps
//!
//! | contract | on Kafka |
//! | --- | --- |
//! | durable publish | an idempotent producer with `acks=all`; a batch is confirmed once every record's delivery report came back without error |
//! | message id, headers | the record key is the message id; id, `enqueued_at` and ackline's fields are headers named `ackline.*` ([`wire`]), the user's headers are the record's other headers |
//! | receive | a consumer group (manual commits, no auto offset store) subscribed to `<topic>` and `<topic>.retry`; a background thread serves librdkafka's consumer queue all the time (so rebalances and heartbeats are served) and reads ahead of the worker from each assigned partition's own queue (split from the consumer's at assignment) only while fewer than `prefetch` records are read and not handed out; the rest wait in librdkafka's fetch queues, and nothing is paused, so the fetch never stops; a consumer keeps at most about 2 x `prefetch` records (`prefetch` held, `prefetch` read ahead; [`KafkaConsumer::buffer`]) besides librdkafka's fetch queues |
//! | ack | the record is settled in its partition's [`OffsetTracker`], and the end of the contiguous settled prefix is committed (synchronously) before `settle` returns |
//! | lease, extend, fencing | client-side: a deadline per delivery, [`ackline_broker::fence`] for late settlements; an expired lease is released like a nack with no delay |
//! | nack with delay | a copy in `<topic>.retry` with `ackline.attempts` + 1 and `ackline.not_before`, confirmed (`acks=all`) before the original's offset may be committed; a consumer holds a retry record in memory until it is due |
//! | reject, max attempts | a copy in `<topic>.dlq` with payload, headers, attempts, failure times, reason and last error, confirmed before the original's offset may be committed |
//! | dead-letter list/show/replay/purge | the dead-letter topic read from its start (the key is the record's offset); purge appends a marker record naming the key (a tombstone index), replay republishes then marks |
//! | attempt | `ackline.attempts` + 1, + 1 for each earlier hand-out by a consumer that never committed past the record, read from the committed offset's metadata ([`journal`]; a broker that drops that metadata, as tansu does, leaves only the header) |
//!
//! ## Invariants
//! - A partition's committed offset never passes a record that is not settled, and a record
//!   is settled only after its ack, or after its retry or dead-letter copy was confirmed by
//!   the broker: after any crash each message is pending, in the retry topic, in the
//!   dead-letter topic or acked (possibly in two of them: at-least-once, the store absorbs it).
//! - A settlement acts only on a delivery this consumer holds at the attempt it was made with,
//!   on a partition still assigned to it; a partition's deliveries are fenced when it is
//!   revoked (its records go to the new owner from the committed offset).
//! - Commits of one consumer are serialized and only move forward.
//!
//! ```no_run
//! # async fn f() -> Result<(), ackline_broker::BrokerError> {
//! use ackline_broker::{Broker, Message};
//! use ackline_kafka::{KafkaBroker, KafkaOptions};
//! let b = KafkaBroker::connect("kafka://127.0.0.1:9092", "logs", KafkaOptions::default()).await?;
//! b.publish(vec![Message::new("line-1", "hello")]).await?;
//! # Ok(()) }
//! ```

mod client;
pub mod consumer;
mod dlq;
pub mod journal;
pub mod tracker;
pub mod url;
pub mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ackline_broker::{Broker, BrokerError, BrokerStats, ConsumerOptions, Message};

pub use crate::consumer::KafkaConsumer;
pub use crate::tracker::OffsetTracker;
pub use crate::url::{KafkaUrl, UrlError};

/// The backend's name in errors and stats.
pub const NAME: &str = "kafka";

/// How a [`KafkaBroker`] uses its topics. Its `Debug` shows the names of
/// [`KafkaOptions::client_config`]'s settings, not their values (`sasl.password` is one).
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaOptions {
    /// Deliveries allowed before the dead-letter topic. Default 5.
    pub max_attempts: u32,
    /// The consumer group. Default `ackline`.
    pub group: String,
    /// Create the topic, its retry and its dead-letter topic when missing. Default true.
    pub create_topics: bool,
    /// Partitions of the topic and the retry topic when created here (the dead-letter topic
    /// always has one: its offsets are the entries' keys). Default 1.
    pub partitions: i32,
    /// Replication factor of created topics; `None` leaves it to the broker's default.
    /// Default `None`.
    pub replication: Option<i32>,
    /// The group session timeout: how soon a consumer that died (no heartbeat) loses its
    /// partitions to the others. Kafka brokers refuse less than their
    /// `group.min.session.timeout.ms` (6 s by default). Default 10 s.
    pub session_timeout: Duration,
    /// How long a publish (and a retry or dead-letter copy) may take, across retries, before
    /// it fails (`message.timeout.ms`). Default 30 s.
    pub publish_timeout: Duration,
    /// How long a metadata request, a commit or an offset query may take. Default 10 s.
    pub request_timeout: Duration,
    /// How long a consumer whose partitions are being revoked (another consumer joined, or
    /// it is closing) waits for the deliveries it holds from them to be settled and
    /// committed before it lets them go (fenced: the next owner redelivers them). Default 10 s.
    pub revoke_grace: Duration,
    /// How often consumers look for expired leases and due retry records. Default 50 ms.
    pub poll_interval: Duration,
    /// Extra librdkafka settings for every client (security, tuning). The settings the
    /// contract depends on (idempotence, `acks=all`, manual commits, the group) override them.
    pub client_config: Vec<(String, String)>,
    /// PEM CA certificates that verify the brokers' certificates on a TLS connection
    /// (librdkafka's `ssl.ca.pem`). They replace the system's roots, which librdkafka
    /// loads only when no CA is given. A CA for a connection without TLS is refused.
    /// Default `None`: the system's roots.
    pub tls_ca_pem: Option<String>,
}

impl std::fmt::Debug for KafkaOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let KafkaOptions {
            max_attempts,
            group,
            create_topics,
            partitions,
            replication,
            session_timeout,
            publish_timeout,
            request_timeout,
            revoke_grace,
            poll_interval,
            client_config,
            tls_ca_pem,
        } = self;
        f.debug_struct("KafkaOptions")
            .field("max_attempts", max_attempts)
            .field("group", group)
            .field("create_topics", create_topics)
            .field("partitions", partitions)
            .field("replication", replication)
            .field("session_timeout", session_timeout)
            .field("publish_timeout", publish_timeout)
            .field("request_timeout", request_timeout)
            .field("revoke_grace", revoke_grace)
            .field("poll_interval", poll_interval)
            .field(
                "client_config",
                &client_config.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("tls_ca_pem", &tls_ca_pem.is_some())
            .finish()
    }
}

impl Default for KafkaOptions {
    fn default() -> Self {
        KafkaOptions {
            max_attempts: 5,
            group: "ackline".into(),
            create_topics: true,
            partitions: 1,
            replication: None,
            session_timeout: Duration::from_secs(10),
            publish_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            revoke_grace: Duration::from_secs(10),
            poll_interval: Duration::from_millis(50),
            client_config: Vec::new(),
            tls_ca_pem: None,
        }
    }
}

pub(crate) use ackline_broker::counters::Counters;

/// What the broker handle and its consumers share.
pub(crate) struct Inner {
    pub(crate) endpoint: client::Endpoint,
    pub(crate) topic: String,
    pub(crate) retry: String,
    pub(crate) dlq: String,
    pub(crate) opts: KafkaOptions,
    pub(crate) producer: client::Producer,
    pub(crate) counters: Counters,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("endpoint", &self.endpoint)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// The Kafka backend: a topic, its retry topic and its dead-letter topic.
#[derive(Debug, Clone)]
pub struct KafkaBroker {
    pub(crate) inner: Arc<Inner>,
}

/// Now, Unix ms.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl KafkaBroker {
    /// Connects to the servers of `url` for `topic` (creating the topics when
    /// [`KafkaOptions::create_topics`]), and checks that they are there.
    ///
    /// # Errors
    /// `Invalid` for a bad URL, topic name or option; `Unavailable` when Kafka cannot be
    /// reached or the topics are missing.
    pub async fn connect(url: &str, topic: &str, opts: KafkaOptions) -> Result<Self, BrokerError> {
        let url = KafkaUrl::parse(url).map_err(|e| BrokerError::Invalid {
            backend: NAME,
            reason: e.to_string(),
        })?;
        client::check_topic_name(topic)?;
        if opts.max_attempts == 0 || opts.partitions < 1 {
            return Err(BrokerError::Invalid {
                backend: NAME,
                reason: "max_attempts and partitions must be at least 1".into(),
            });
        }
        let endpoint = client::Endpoint::new(&url, &opts)?;
        let producer = client::Producer::new(&endpoint, &opts)?;
        let inner = Arc::new(Inner {
            retry: format!("{topic}.retry"),
            dlq: format!("{topic}.dlq"),
            topic: topic.to_owned(),
            endpoint,
            opts,
            producer,
            counters: Counters::default(),
        });
        client::ensure_topics(&inner).await?;
        Ok(KafkaBroker { inner })
    }

    /// The topic.
    #[must_use]
    pub fn topic(&self) -> &str {
        &self.inner.topic
    }
}

impl Broker for KafkaBroker {
    type Consumer = KafkaConsumer;

    fn name(&self) -> &'static str {
        NAME
    }

    async fn publish(&self, batch: Vec<Message>) -> Result<(), BrokerError> {
        for m in &batch {
            if let Some(k) = wire::check_user_headers(&m.headers) {
                return Err(BrokerError::Invalid {
                    backend: NAME,
                    reason: format!(
                        "message {:?}: header {k:?} uses the reserved prefix {:?}",
                        m.id,
                        wire::RESERVED
                    ),
                });
            }
        }
        let now = now_ms();
        let n = batch.len();
        let records = batch
            .into_iter()
            .map(|m| {
                let meta = wire::Meta {
                    id: Some(m.id.clone()),
                    enqueued_at: Some(now),
                    ..wire::Meta::default()
                };
                client::Record {
                    topic: self.inner.topic.clone(),
                    key: m.id,
                    headers: m.headers,
                    meta,
                    payload: m.payload,
                }
            })
            .collect();
        self.inner.producer.send_all(records).await?;
        self.inner.counters.add(&self.inner.counters.published, n);
        Ok(())
    }

    async fn consumer(&self, opts: ConsumerOptions) -> Result<KafkaConsumer, BrokerError> {
        KafkaConsumer::start(self.inner.clone(), opts).await
    }

    async fn stats(&self) -> Result<BrokerStats, BrokerError> {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (pending, dead_letters) = client::backlog(&self.inner).await?;
        Ok(BrokerStats {
            pending,
            in_flight: get(&c.in_flight),
            delayed: 0,
            dead_letters,
            published: get(&c.published),
            delivered: get(&c.delivered),
            redelivered: get(&c.redelivered),
            acked: get(&c.acked),
            nacked: get(&c.nacked),
            dead_lettered: get(&c.dead_lettered),
            lease_expired: get(&c.lease_expired),
        })
    }
}
