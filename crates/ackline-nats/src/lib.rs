//! # ackline-nats: the delivery contract on NATS JetStream
//!
//! [`NatsBroker`] implements [`ackline_broker::Broker`], [`ackline_broker::Consumer`] (as
//! [`NatsConsumer`]) and [`ackline_broker::DeadLetters`] on a JetStream stream, so the worker
//! runtime runs on it unchanged and the backend contract suite passes on it. `docs/nats.md` is
//! the operator's version of this page.
//!
//! ## How the contract maps
//!
//! | contract | on JetStream |
//! | --- | --- |
//! | queue | stream `<queue>` on subject `ackline.<queue>`: file storage, **work-queue retention** (a message is removed when acked or terminated), `discard: new` |
//! | durable publish | `Nats-Msg-Id` = the message id, [`Broker::publish`] returns once every message has its **PubAck**; a lost PubAck is published again, absorbed by the stream's `duplicate_window` (default 2 min) ([`publish`]) |
//! | receive | one durable **pull consumer** `ackline` shared by every worker; each [`NatsConsumer`] pulls on its own inbox at most `prefetch` minus what it holds ([`consumer`]) |
//! | attempt | the server's delivery count (`num_delivered`, in the reply subject): it is the consumer's state, so it survives worker and server restarts |
//! | lease | the consumer's `AckWait` ([`NatsOptions::ack_wait`]) recovers a dead worker's deliveries; a live consumer keeps its own lease: `+WPI` (AckProgress) keeps the server from redelivering while the lease runs, and when it ends the consumer sends `-NAK` (redelivered at once, attempt + 1) |
//! | extend | the lease renewed and `+WPI` sent (confirmed) |
//! | ack | `+ACK`: each one an AckSync request, or ([`AckMode::Batched`], the default) plain acks with the last of each settle call an AckSync, whose reply confirms the batch (the server handles a connection's acks in order) |
//! | nack with delay | `-NAK {"delay": ns}` (NakWithDelay) |
//! | reject, max attempts | a confirmed copy (payload, headers, attempts, first and last failure, reason, last error) to the stream `<queue>-dlq`, then `+TERM` of the original ([`dlq`]) |
//! | server limit | `MaxDeliver = -1`: JetStream never gives up on a message by itself (it would skip it, not dead-letter it); ackline dead-letters at `max_attempts` |
//! | stale settlement | fenced by (key, attempt) in the consumer, and refused once the server may have redelivered (its AckWait counted from before the delivery or the last confirmed `+WPI`) |
//! | backpressure | the stream's `max_bytes` with `discard: new`: the PubAck is an error, [`Broker::publish`] returns `BrokerError::Full` |
//! | dead-letter list/show/replay/purge | reads, deletes and republishes by sequence in `<queue>-dlq` ([`dlq`]) |
//! | reconnection | async-nats reconnects with backoff and resubscribes; unconfirmed publishes are published again, unanswered settlements reported ([`connection`]) |
//!
//! Credentials come from the URL (`nats://user:pass@host:port`, `nats://token@host`,
//! `tls://` for TLS) or the environment variable [`url::ENV_URL`], and `.creds` content
//! ([`NatsOptions::credentials`]); secrets are never printed ([`url`]).
//!
//! ## Invariants
//! - A publish, a dead-letter copy and a replay's copy are each confirmed (PubAck) before the
//!   call returns or the source is terminated or deleted: every confirmed message is in the
//!   stream, in the dead-letter stream, or stored.
//! - Duplicates are possible (a lost PubAck outside the duplicate window, a lost ack); they
//!   carry the same id, and ackline's stores are idempotent by id. Losses are not.
//! - No panic on broker input: headers of any form or absent decode to defaults ([`wire`]).
//!
//! ```no_run
//! # async fn f() -> Result<(), ackline_broker::BrokerError> {
//! use ackline_broker::{Broker, Message};
//! use ackline_nats::{NatsBroker, NatsOptions};
//! let b = NatsBroker::connect("nats://127.0.0.1:4222", "logs", NatsOptions::default()).await?;
//! b.publish(vec![Message::new("line-1", "hello")]).await?;
//! # Ok(()) }
//! ```

pub mod connection;
pub mod consumer;
pub mod dlq;
pub mod publish;
pub mod setup;
pub mod url;
pub mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ackline_broker::{
    Broker, BrokerError, BrokerStats, ConsumerOptions, DeadLetter, DeadLetters, DlqSelector,
    Message,
};
use async_nats::HeaderMap;
use async_nats::jetstream;
use parking_lot::Mutex;

use crate::connection::{NAME, fatal};
use crate::publish::Outgoing;
use crate::wire::{MSG_ID, encode_id, put, put_headers};

pub use crate::consumer::NatsConsumer;
pub use crate::url::{ENV_URL, NatsUrl, UrlError, redact_text};

/// How acks reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AckMode {
    /// Every `+ACK` is an AckSync request: `settle` returns when the server answered each.
    Sync,
    /// The acks of one `settle` call are sent as plain messages except the last, an AckSync:
    /// the server handles one connection's acks for a consumer in order, so its answer means
    /// every ack before it was applied. One round trip per call instead of one reply per ack.
    /// The default (see `docs/BENCHMARKS.md`, NATS backend).
    #[default]
    Batched,
}

/// How a [`NatsBroker`] uses its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsOptions {
    /// Deliveries allowed before the dead-letter stream. Default 5.
    pub max_attempts: u32,
    /// The stream's `max_bytes` (`discard: new`: publishes are then refused with
    /// `BrokerError::Full`). Default none.
    pub max_bytes: Option<u64>,
    /// The consumer's `AckWait`: how long the server waits for a delivery's settlement (or a
    /// `+WPI`) before redelivering it, so at most how long a dead worker's deliveries stay
    /// away. Default 30 s.
    pub ack_wait: Duration,
    /// The consumer's `max_ack_pending`: unsettled deliveries across all workers (each worker
    /// also holds at most its own prefetch). Default 20 000.
    pub max_ack_pending: i64,
    /// The stream's duplicate window (`Nats-Msg-Id`). Default 2 min.
    pub duplicate_window: Duration,
    /// Replicas of the streams (1 on a single server, 3 in a cluster). Default 1.
    pub replicas: usize,
    /// How acks are sent. Default [`AckMode::Batched`].
    pub ack_mode: AckMode,
    /// The connection's name (default `ackline <queue> pid <pid>`).
    pub connection_name: Option<String>,
    /// First reconnection wait (doubling, jittered). Default 100 ms.
    pub reconnect_base: Duration,
    /// Longest reconnection wait. Default 5 s.
    pub reconnect_cap: Duration,
    /// One connection attempt's limit. Default 10 s.
    pub connect_timeout: Duration,
    /// One request's limit (JetStream API, PubAck, AckSync). Default 10 s.
    pub request_timeout: Duration,
    /// How long a publish keeps trying (across reconnections) before `Unavailable`.
    /// Default 30 s.
    pub publish_timeout: Duration,
    /// PEM certificates trusted for TLS beside the system's roots (a private CA). Default none.
    pub tls_ca_pem: Option<String>,
    /// The content of a NATS `.creds` file (user JWT and nkey seed). Default none.
    pub credentials: Option<String>,
    /// This handle only publishes (a relay such as `ackline serve --broker nats://`): an
    /// existing consumer keeps the `ack_wait` and `max_ack_pending` its workers set (only an
    /// unsafe `max_deliver` is fixed), so a publisher and the workers never take turns
    /// rewriting them; [`Broker::consumer`] on such a handle is refused, since a consumer's
    /// stale-ack fence counts on `ack_wait` being the consumer's. Default false.
    pub publish_only: bool,
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions {
            max_attempts: 5,
            max_bytes: None,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 20_000,
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
            ack_mode: AckMode::Batched,
            connection_name: None,
            reconnect_base: Duration::from_millis(100),
            reconnect_cap: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            publish_timeout: Duration::from_secs(30),
            tls_ca_pem: None,
            credentials: None,
            publish_only: false,
        }
    }
}

pub(crate) use ackline_broker::counters::Counters;

/// A message's failures as this handle saw them (JetStream keeps no per-message state that
/// ackline could write; see `docs/nats.md`, "First failure").
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub first: u64,
    pub last_error: String,
}

/// How many messages' failures a handle remembers.
const FAILURES_KEPT: usize = 100_000;

/// What the broker handle and its consumers share.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) client: async_nats::Client,
    /// Changes each time the client connects again after losing the server.
    pub(crate) reconnected: tokio::sync::watch::Receiver<u64>,
    pub(crate) js: jetstream::Context,
    pub(crate) url: NatsUrl,
    pub(crate) queue: String,
    pub(crate) dlq: String,
    pub(crate) subject: String,
    pub(crate) dlq_subject: String,
    pub(crate) opts: NatsOptions,
    pub(crate) counters: Counters,
    /// Consumers of this handle: deliveries they hold.
    pub(crate) in_flight: AtomicU64,
    failures: Mutex<BTreeMap<u64, Failure>>,
    pub(crate) dlq_lock: tokio::sync::Mutex<()>,
}

impl Inner {
    /// Records a failure of the message at stream sequence `seq`.
    pub(crate) fn failed(&self, seq: u64, error: &str) {
        let mut f = self.failures.lock();
        let now = wire::now_ms();
        f.entry(seq)
            .and_modify(|x| x.last_error = error.to_owned())
            .or_insert_with(|| Failure {
                first: now,
                last_error: error.to_owned(),
            });
        while f.len() > FAILURES_KEPT {
            f.pop_first();
        }
    }

    /// The failures recorded for `seq`, forgotten.
    pub(crate) fn take_failure(&self, seq: u64) -> Option<Failure> {
        self.failures.lock().remove(&seq)
    }

    pub(crate) fn in_flight_add(&self, n: usize) {
        self.in_flight.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn in_flight_sub(&self, n: usize) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n as u64))
            });
    }

    /// The API subject a pull request goes to.
    pub(crate) fn next_subject(&self) -> String {
        format!(
            "$JS.API.CONSUMER.MSG.NEXT.{}.{}",
            self.queue,
            setup::CONSUMER
        )
    }

    /// A publish of `m` to the main stream.
    fn outgoing(&self, m: Message) -> Outgoing {
        let mut h = HeaderMap::new();
        put(&mut h, MSG_ID, &encode_id(&m.id));
        put_headers(&mut h, &m.headers);
        Outgoing {
            subject: self.subject.clone(),
            headers: h,
            payload: m.payload.into(),
        }
    }
}

/// A queue on NATS JetStream as an ackline broker (see the crate doc).
#[derive(Debug, Clone)]
pub struct NatsBroker {
    inner: Arc<Inner>,
}

/// Checks a queue name: it names streams and a subject token.
fn check_queue_name(q: &str) -> Result<(), BrokerError> {
    let ok = !q.is_empty()
        && q.len() <= 200
        && !q.ends_with("-dlq")
        && q.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(BrokerError::Fatal {
            backend: NAME,
            reason: format!(
                "invalid queue name {q:?} for NATS: expected 1-200 bytes of letters, digits, \
                 '_' or '-', not ending in \"-dlq\" (it names the stream and the subject \
                 ackline.<queue>)"
            ),
        })
    }
}

/// Whether opening a handle creates the streams or requires them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Create,
    Existing,
}

impl NatsBroker {
    /// Connects to `url` (see [`NatsUrl`]) and creates (or checks) the stream `queue`, its
    /// consumer and the dead-letter stream `<queue>-dlq`.
    ///
    /// # Errors
    /// `Fatal` for a bad URL, queue name, credentials, a refused certificate or a stream that
    /// exists with settings ackline cannot use; `Unavailable` when the server cannot be reached
    /// (one attempt, no retry).
    pub async fn connect(url: &str, queue: &str, opts: NatsOptions) -> Result<Self, BrokerError> {
        let url = NatsUrl::parse(url).map_err(|e| BrokerError::Fatal {
            backend: NAME,
            reason: e.to_string(),
        })?;
        Self::connect_url(url, queue, opts).await
    }

    /// As [`NatsBroker::connect`], with the URL from [`ENV_URL`].
    ///
    /// # Errors
    /// As [`NatsBroker::connect`]; `Fatal` when [`ENV_URL`] is unset.
    pub async fn connect_env(queue: &str, opts: NatsOptions) -> Result<Self, BrokerError> {
        let url = NatsUrl::from_env().map_err(|e| BrokerError::Fatal {
            backend: NAME,
            reason: e.to_string(),
        })?;
        Self::connect_url(url, queue, opts).await
    }

    /// As [`NatsBroker::connect`], with a parsed URL.
    ///
    /// # Errors
    /// As [`NatsBroker::connect`].
    pub async fn connect_url(
        url: NatsUrl,
        queue: &str,
        opts: NatsOptions,
    ) -> Result<Self, BrokerError> {
        Self::open(url, queue, opts, Open::Create).await
    }

    /// As [`NatsBroker::connect_url`], but creates nothing: the streams `queue` and
    /// `<queue>-dlq` must exist. For tools that only look or operate on dead letters, so a
    /// mistyped name is an error rather than two new empty streams.
    ///
    /// # Errors
    /// `Fatal` naming the stream when it does not exist; otherwise as [`NatsBroker::connect`].
    pub async fn connect_existing(
        url: NatsUrl,
        queue: &str,
        opts: NatsOptions,
    ) -> Result<Self, BrokerError> {
        Self::open(url, queue, opts, Open::Existing).await
    }

    async fn open(
        url: NatsUrl,
        queue: &str,
        opts: NatsOptions,
        mode: Open,
    ) -> Result<Self, BrokerError> {
        check_queue_name(queue)?;
        if opts.max_attempts == 0 {
            return Err(fatal(&url, "max_attempts must be at least 1"));
        }
        if opts.ack_wait < Duration::from_millis(100) {
            return Err(fatal(&url, "ack_wait must be at least 100ms"));
        }
        let name = opts
            .connection_name
            .clone()
            .unwrap_or_else(|| format!("ackline {queue} pid {}", std::process::id()));
        let (client, reconnected) = connection::connect(&url, &opts, name).await?;
        let js = jetstream::context::ContextBuilder::new()
            .timeout(opts.request_timeout)
            .build(client.clone());
        let inner = Arc::new(Inner {
            client,
            reconnected,
            js,
            url,
            queue: queue.to_owned(),
            dlq: format!("{queue}-dlq"),
            subject: format!("ackline.{queue}"),
            dlq_subject: format!("ackline.{queue}.dlq"),
            opts,
            counters: Counters::default(),
            in_flight: AtomicU64::new(0),
            failures: Mutex::new(BTreeMap::new()),
            dlq_lock: tokio::sync::Mutex::new(()),
        });
        match mode {
            Open::Create => setup::create(&inner).await?,
            Open::Existing => setup::require(&inner).await?,
        }
        Ok(NatsBroker { inner })
    }

    /// The main stream's name (the queue).
    pub fn queue_name(&self) -> &str {
        &self.inner.queue
    }

    /// The dead-letter stream's name.
    pub fn dlq_name(&self) -> &str {
        &self.inner.dlq
    }

    /// The subject messages are published on (`ackline.<queue>`): other NATS producers may
    /// publish there too.
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// The server's URL (prints without the secret).
    pub fn url(&self) -> &NatsUrl {
        &self.inner.url
    }

    /// The server's version, as it announced it when the connection was made.
    pub fn server_version(&self) -> String {
        self.inner.client.server_info().version
    }

    /// What a PubAck promises on this server, in one sentence for an operator (see
    /// `docs/nats.md`, "Durability"): before 2.10 a single server has no setting that fsyncs
    /// before the PubAck; from 2.10 `jetstream.sync_interval` decides.
    pub fn durability(&self) -> String {
        durability_of(&self.server_version())
    }

    /// Closes the connection after flushing what was sent (deliveries its consumers held come
    /// back after `ack_wait`; close the consumers first to release them at once).
    pub async fn close(&self) {
        let _ = self.inner.client.flush().await;
        let _ = self.inner.client.drain().await;
    }

    /// Deletes both streams (and so the consumer), for tests and teardown, then closes.
    ///
    /// # Errors
    /// `Unavailable` when the server cannot be reached.
    pub async fn delete(self) -> Result<(), BrokerError> {
        setup::delete(&self.inner).await?;
        self.close().await;
        Ok(())
    }
}

impl Broker for NatsBroker {
    type Consumer = NatsConsumer;

    fn name(&self) -> &'static str {
        NAME
    }

    async fn publish(&self, batch: Vec<Message>) -> Result<(), BrokerError> {
        let i = &self.inner;
        let n = batch.len();
        let items: Vec<Outgoing> = batch.into_iter().map(|m| i.outgoing(m)).collect();
        publish::publish_confirmed(i, &items).await?;
        i.counters.add(&i.counters.published, n);
        Ok(())
    }

    async fn consumer(&self, opts: ConsumerOptions) -> Result<NatsConsumer, BrokerError> {
        if self.inner.opts.publish_only {
            return Err(fatal(
                &self.inner.url,
                "this handle was opened publish_only: open another to consume",
            ));
        }
        NatsConsumer::start(self.inner.clone(), opts).await
    }

    /// `pending` = messages in the stream not yet acked or terminated (the consumer's
    /// undelivered plus its ack-pending), `in_flight` = the consumer's ack-pending across
    /// every worker (delayed nacks included: JetStream keeps them pending), `delayed` = 0
    /// (JetStream does not tell them apart), `dead_letters` = entries in `<queue>-dlq`; the
    /// counters are this handle's since it was opened.
    async fn stats(&self) -> Result<BrokerStats, BrokerError> {
        let i = &self.inner;
        let (pending, in_flight) = setup::depth(i).await?;
        let dead_letters = setup::dlq_depth(i).await?;
        let c = &i.counters;
        Ok(BrokerStats {
            pending,
            in_flight,
            delayed: 0,
            dead_letters,
            published: Counters::get(&c.published),
            delivered: Counters::get(&c.delivered),
            redelivered: Counters::get(&c.redelivered),
            acked: Counters::get(&c.acked),
            nacked: Counters::get(&c.nacked),
            dead_lettered: Counters::get(&c.dead_lettered),
            lease_expired: Counters::get(&c.lease_expired),
        })
    }
}

impl DeadLetters for NatsBroker {
    async fn dlq_list(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        dlq::list(&self.inner, after, limit).await
    }

    async fn dlq_get(&self, key: u64) -> Result<Option<DeadLetter>, BrokerError> {
        dlq::get(&self.inner, key).await
    }

    async fn dlq_replay(&self, sel: DlqSelector) -> Result<usize, BrokerError> {
        dlq::replay(&self.inner, &sel).await
    }

    async fn dlq_purge(&self, sel: DlqSelector) -> Result<usize, BrokerError> {
        dlq::purge(&self.inner, &sel).await
    }
}

/// [`NatsBroker::durability`] for a server version.
fn durability_of(version: &str) -> String {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    let at_least_2_10 = match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= (2, 10),
        _ => false,
    };
    if at_least_2_10 {
        "a PubAck means fsynced only with `jetstream { sync_interval: always }` (default: \
         every 2 min) or replicas 3 in a cluster; otherwise a power loss can lose messages \
         confirmed since the last sync (docs/nats.md, Durability)"
            .to_owned()
    } else {
        format!(
            "at risk: on nats-server {version} (before 2.10) a PubAck means written, not \
             fsynced: a power loss or kernel crash can lose messages confirmed in the last \
             seconds; a server process crash loses nothing (docs/nats.md, Durability)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_that_name_a_stream_and_a_subject_token() {
        assert!(check_queue_name("logs").is_ok());
        assert!(check_queue_name("a_b-9").is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>", "logs-dlq", &"x".repeat(201)] {
            assert!(check_queue_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_note_follows_the_server_version() {
        for old in ["2.9.10", "2.1.0", "1.4.1", "garbage", ""] {
            assert!(durability_of(old).starts_with("at risk"), "{old}");
        }
        for new in ["2.10.0", "2.11.4", "3.0.0"] {
            assert!(
                durability_of(new).contains("sync_interval: always"),
                "{new}"
            );
            assert!(!durability_of(new).starts_with("at risk"), "{new}");
        }
    }
}
