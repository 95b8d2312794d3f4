//! # ackline-rabbitmq: the delivery contract on RabbitMQ
//!
//! [`RabbitBroker`] implements [`ackline_broker::Broker`], [`ackline_broker::Consumer`] (as
//! [`RabbitConsumer`]) and [`ackline_broker::DeadLetters`] on RabbitMQ, so the worker runtime
//! runs on it unchanged and the backend contract suite passes on it. `docs/rabbitmq.md` is the
//! operator's version of this page.
//!
//! ## How the contract maps
//!
//! | contract | on RabbitMQ |
//! | --- | --- |
//! | durable publish | durable **quorum** queue (`x-queue-type = quorum`; classic on request) that RabbitMQ never drops from: `x-delivery-limit` = [`DELIVERY_LIMIT`] (4.x defaults to 20, then drops) and its own dead-lettering into `<queue>.dlq`, at least once, persistent messages (`delivery_mode` 2), **publisher confirms**: [`Broker::publish`] returns once every message is confirmed; a `basic.nack` is an error (`publish.rs`) |
//! | attempt | `x-ackline-attempt` (deliveries that ended before this copy was published) + the quorum queue's `x-delivery-count` (or the `redelivered` flag on classic queues, written into a republished copy so it accumulates) + 1 (`attempts.rs`) |
//! | ack | `basic.ack` (manual acks); lapin's `Ok(false)` (dead channel) is `SettleError::Stale`, never success |
//! | nack with delay | a confirmed copy (attempt header +1, last error) to the delay queue of the smallest power-of-two bucket `>=` the delay, which dead-letters back into the main queue at least once; then `basic.ack` of the original (`delay.rs`) |
//! | reject, max attempts | a confirmed copy to the quorum queue `<queue>.dlq` with reason, last error, attempts, first/last failure; then `basic.ack` (`dlq.rs`) |
//! | lease (ack timeout) | a client-side timer per consumer: an expired delivery is `basic.nack(requeue)`ed (so redelivered at once, attempt + 1) and fenced; `extend` renews it (`consumer.rs`) |
//! | release on close / crash | RabbitMQ requeues a closed channel's or dead connection's unacked deliveries (2-10 ms) |
//! | prefetch | `basic.qos(prefetch)` on each consumer's channel |
//! | backpressure | `x-max-length-bytes` + `x-overflow = reject-publish`: the broker nacks, [`Broker::publish`] returns `BrokerError::Full` |
//! | dead-letter list/show/replay/purge | a scan of `<queue>.dlq` on its own channel; replay publishes (confirmed) then acks (`dlq.rs`) |
//! | reconnection | one connection per [`RabbitBroker`], re-established with backoff; unconfirmed publishes are published again; consumers re-consume on a new channel (`connection.rs`) |
//!
//! Credentials come from the URL (`amqp://user:pass@host:port/vhost`, `amqps://` for TLS) or
//! the environment variable [`ENV_URL`]; the password is never printed (`url.rs`).
//!
//! ## Invariants
//! - A publish, a nack's copy, a dead-letter copy and a replay's copy are each confirmed by the
//!   broker before the call returns or the source is acked: every confirmed message is in the
//!   main queue, a delay queue, the dead-letter queue, or stored.
//! - Duplicates are possible (a lost confirm, a lost ack after a confirmed copy); they carry the
//!   same id, and ackline's stores are idempotent by id. Losses are not. The one duplicate
//!   with a second id: a message another producer published with no id at all is adopted
//!   under a new random id (republished, confirmed, then acked), and an ack lost after that
//!   confirm adopts it again (`attempts.rs`, `docs/rabbitmq.md`).
//! - No panic on broker input: headers of any type or absent decode to defaults.
//!
//! ```no_run
//! # async fn f() -> Result<(), ackline_broker::BrokerError> {
//! use ackline_broker::{Broker, Message};
//! use ackline_rabbitmq::{RabbitBroker, RabbitOptions};
//! let b = RabbitBroker::connect("amqp://guest:guest@127.0.0.1:5672/%2f", "logs",
//!     RabbitOptions::default()).await?;
//! b.publish(vec![Message::new("line-1", "hello")]).await?;
//! # Ok(()) }
//! ```

mod attempts;
mod connection;
mod consumer;
mod delay;
mod dlq;
mod publish;
mod url;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ackline_broker::{
    Broker, BrokerError, BrokerStats, ConsumerOptions, DeadLetter, DeadLetters, DlqSelector,
    Message,
};
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::attempts::{Envelope, int, long_string, now_ms};
use crate::connection::{Backoff, Connector, NAME};
use crate::delay::Buckets;
use crate::dlq::Action;
use crate::publish::Outgoing;

pub use crate::consumer::RabbitConsumer;
pub use crate::url::{AmqpUrl, ENV_URL, UrlError, redact_text};

/// The type of the main queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// Replicated, durable, counts redeliveries (`x-delivery-count`). The default.
    #[default]
    Quorum,
    /// A single-node durable classic queue; a return is seen only as the `redelivered` flag,
    /// so the consumer republishes a redelivered message with its attempt written down
    /// before handing it out (one extra publish per return). No delivery limit; RabbitMQ's
    /// own dead-lettering (foreign TTLs only) is at most once.
    Classic,
}

/// Whether opening a broker handle declares its queues or requires them to exist.
#[derive(Debug, Clone, Copy)]
enum Open {
    Declare,
    Existing,
}

/// How a [`RabbitBroker`] uses its queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RabbitOptions {
    /// Deliveries allowed before the dead-letter queue. Default 5.
    pub max_attempts: u32,
    /// `x-max-length-bytes` of the main queue (publishes are then refused with
    /// `BrokerError::Full`). Default none.
    pub max_bytes: Option<u64>,
    /// The smallest delay bucket; buckets are `delay_base * 2^k`. Default 100 ms.
    pub delay_base: Duration,
    /// How many delay buckets (and so at most how many delay queues). Default 20
    /// (100 ms .. 14.5 h).
    pub delay_buckets: u32,
    /// The main queue's type. Default quorum.
    pub queue_type: QueueType,
    /// The connection's `connection_name` (default `ackline <queue> pid <pid>`).
    pub connection_name: Option<String>,
    /// First reconnection wait (doubling, jittered). Default 100 ms.
    pub reconnect_base: Duration,
    /// Longest reconnection wait. Default 5 s.
    pub reconnect_cap: Duration,
    /// One connection attempt's limit. Default 10 s.
    pub connect_timeout: Duration,
    /// How long a publish keeps trying (across reconnections) before `Unavailable`.
    /// Default 30 s.
    pub publish_timeout: Duration,
    /// PEM certificates trusted for `amqps` beside the system's roots (a private CA).
    /// Default none.
    pub tls_ca_pem: Option<String>,
}

impl Default for RabbitOptions {
    fn default() -> Self {
        RabbitOptions {
            max_attempts: 5,
            max_bytes: None,
            delay_base: Duration::from_millis(100),
            delay_buckets: 20,
            queue_type: QueueType::Quorum,
            connection_name: None,
            reconnect_base: Duration::from_millis(100),
            reconnect_cap: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            publish_timeout: Duration::from_secs(30),
            tls_ca_pem: None,
        }
    }
}

impl RabbitOptions {
    pub(crate) fn backoff(&self) -> Backoff {
        Backoff {
            base: self.reconnect_base,
            cap: self.reconnect_cap,
        }
    }
}

pub(crate) use ackline_broker::counters::Counters;

/// What the broker handle and its consumers share.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) conn: Connector,
    pub(crate) queue: String,
    pub(crate) dlq: String,
    pub(crate) opts: RabbitOptions,
    pub(crate) buckets: Buckets,
    pub(crate) declared: Mutex<BTreeSet<u64>>,
    pub(crate) counters: Counters,
    pub(crate) dlq_lock: tokio::sync::Mutex<()>,
}

impl Inner {
    fn deadline(&self) -> Instant {
        Instant::now() + self.opts.publish_timeout
    }

    fn declared(&self) -> parking_lot::MutexGuard<'_, BTreeSet<u64>> {
        self.declared.lock()
    }

    /// Declares a queue on a short-lived channel (a refusal closes only that channel).
    /// Checks that queue `name` exists (a passive declare), creating nothing.
    async fn exists(&self, name: &str) -> Result<(), BrokerError> {
        let ch = self.conn.channel(Some(self.deadline())).await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let r = ch
            .queue_declare(name.into(), passive, FieldTable::default())
            .await;
        match r {
            Ok(_) => {
                let _ = ch.close(200, "checked".into()).await;
                Ok(())
            }
            Err(e) => Err(
                match self.conn.error(&format!("opening queue {name:?}"), &e) {
                    BrokerError::Fatal { backend, reason } => BrokerError::Fatal {
                        backend,
                        reason: format!("{reason} (no such queue on this broker?)"),
                    },
                    other => other,
                },
            ),
        }
    }

    /// Declares a durable queue on a short-lived channel (a refusal closes only that channel).
    /// `Ok(Err(text))`: the queue exists with other arguments (PRECONDITION_FAILED; RabbitMQ's
    /// text names the first that differs).
    async fn try_declare(
        &self,
        name: &str,
        args: FieldTable,
    ) -> Result<Result<(), String>, BrokerError> {
        let ch = self.conn.channel(Some(self.deadline())).await?;
        let r = ch
            .queue_declare(
                name.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                args,
            )
            .await;
        match r {
            Ok(_) => {
                let _ = ch.close(200, "declared".into()).await;
                Ok(Ok(()))
            }
            Err(e) if Connector::precondition_failed(&e) => {
                Ok(Err(self.conn.url().redact(&e.to_string())))
            }
            Err(e) => Err(self.conn.error(&format!("declaring queue {name:?}"), &e)),
        }
    }

    /// Declares a queue that must have `args`.
    async fn declare(&self, name: &str, args: FieldTable) -> Result<(), BrokerError> {
        self.try_declare(name, args.clone())
            .await?
            .map_err(|text| mismatch(name, &text, &args))
    }

    /// Declares the main queue or the dead-letter queue with `args`; one that an earlier
    /// ackline declared with `earlier` (before these queues had a delivery limit and the main
    /// queue a dead-letter exchange) is used as it is, with a warning saying how to add them.
    async fn declare_or_accept_earlier(
        &self,
        name: &str,
        args: FieldTable,
        earlier: FieldTable,
        policy: &str,
    ) -> Result<(), BrokerError> {
        let Err(text) = self.try_declare(name, args.clone()).await? else {
            return Ok(());
        };
        if self.try_declare(name, earlier).await?.is_err() {
            return Err(mismatch(name, &text, &args));
        }
        tracing::warn!(
            queue = name,
            "queue {name:?} was declared by an earlier ackline, without the arguments that keep \
             RabbitMQ from dropping messages ({}); it is used as it is. On RabbitMQ 4.x a quorum \
             queue without them drops a message returned more than 20 times. Either drain and \
             delete it so that ackline declares it anew, or add them with a policy (ackline \
             cannot see policies, so this warning stays): {policy}",
            describe(&args)
        );
        Ok(())
    }

    /// The main queue's arguments as ackline declared them before `x-delivery-limit` and the
    /// dead-letter exchange (kept to recognise such queues).
    fn earlier_main_arguments(&self) -> FieldTable {
        let mut t = FieldTable::default();
        let kind = match self.opts.queue_type {
            QueueType::Quorum => "quorum",
            QueueType::Classic => "classic",
        };
        t.insert("x-queue-type".into(), long_string(kind));
        if let Some(b) = self.opts.max_bytes {
            t.insert("x-max-length-bytes".into(), int(b));
            t.insert("x-overflow".into(), long_string("reject-publish"));
        }
        t
    }

    /// The main queue's arguments: its type, `max_bytes`, and what keeps RabbitMQ from
    /// dropping a message: every message RabbitMQ dead-letters itself (a delivery limit
    /// reached, a TTL another producer set) goes to `<queue>.dlq`, at least once on quorum
    /// queues; and the delivery limit is [`DELIVERY_LIMIT`], not RabbitMQ 4's default of 20.
    fn main_arguments(&self) -> FieldTable {
        let mut t = self.earlier_main_arguments();
        t.insert("x-dead-letter-exchange".into(), long_string(""));
        t.insert("x-dead-letter-routing-key".into(), long_string(&self.dlq));
        if self.opts.queue_type == QueueType::Quorum {
            // At-least-once dead-lettering requires reject-publish overflow (which only acts
            // when a length limit is set).
            t.insert(
                "x-dead-letter-strategy".into(),
                long_string("at-least-once"),
            );
            t.insert("x-overflow".into(), long_string("reject-publish"));
            t.insert("x-delivery-limit".into(), int(DELIVERY_LIMIT));
        }
        t
    }

    /// The policy that gives an earlier ackline's main queue the same protection.
    fn main_policy(&self) -> String {
        let q = &self.queue;
        let dlq = &self.dlq;
        let definition = match self.opts.queue_type {
            QueueType::Quorum => format!(
                r#"{{"delivery-limit":{DELIVERY_LIMIT},"dead-letter-exchange":"","dead-letter-routing-key":"{dlq}","dead-letter-strategy":"at-least-once","overflow":"reject-publish"}}"#
            ),
            QueueType::Classic => {
                format!(r#"{{"dead-letter-exchange":"","dead-letter-routing-key":"{dlq}"}}"#)
            }
        };
        policy_command(q, &definition)
    }

    fn earlier_dlq_arguments() -> FieldTable {
        let mut t = FieldTable::default();
        t.insert("x-queue-type".into(), long_string("quorum"));
        t
    }

    /// The dead-letter queue's arguments: quorum, and [`DELIVERY_LIMIT`], because every
    /// list/get/replay/purge returns the entries it keeps to the queue (RabbitMQ counts each
    /// return), and RabbitMQ 4's default limit of 20 would drop an entry after 20 listings.
    fn dlq_arguments() -> FieldTable {
        let mut t = Self::earlier_dlq_arguments();
        t.insert("x-delivery-limit".into(), int(DELIVERY_LIMIT));
        t
    }

    /// Publishes copies (declaring the delay queues they need first), confirmed.
    pub(crate) async fn publish_copies(&self, items: &[Outgoing]) -> Result<(), BrokerError> {
        let needed: BTreeSet<u64> = items.iter().filter_map(|o| o.declare_delay).collect();
        let missing: Vec<u64> = {
            let have = self.declared();
            needed.difference(&have).copied().collect()
        };
        for ttl in missing {
            self.declare(
                &delay::queue_name(&self.queue, ttl),
                delay::arguments(&self.queue, ttl),
            )
            .await?;
            self.declared().insert(ttl);
        }
        publish::publish_confirmed(&self.conn, items, self.opts.publish_timeout).await
    }

    /// The copy a nack publishes: to the delay bucket for `delay` (or the main queue), with
    /// `attempt` deliveries ended and `error` as the last error.
    pub(crate) fn retry_copy(
        &self,
        env: &Envelope,
        attempt: u32,
        delay: Duration,
        error: &str,
    ) -> Outgoing {
        let mut copy = env.clone();
        copy.last_error = Some(error.to_owned());
        copy.first_failure = Some(env.first_failure.unwrap_or_else(now_ms));
        copy.not_before = None;
        self.delayed(copy, attempt, delay)
    }

    /// A copy put back to wait for `delay` with `ended` deliveries counted, headers kept.
    pub(crate) fn retry_copy_raw(&self, env: &Envelope, ended: u32, delay: Duration) -> Outgoing {
        self.delayed(env.clone(), ended, delay)
    }

    fn delayed(&self, mut copy: Envelope, ended: u32, delay: Duration) -> Outgoing {
        copy.ended = ended;
        let bucket = self.buckets.bucket(delay);
        if let Some(b) = bucket
            && u128::from(b) < delay.as_millis()
        {
            // Longer than the largest bucket: wait in it repeatedly until this time.
            copy.not_before = Some(
                copy.not_before
                    .unwrap_or_else(|| now_ms().saturating_add(delay.as_millis() as u64)),
            );
        }
        Outgoing {
            routing_key: match bucket {
                Some(b) => delay::queue_name(&self.queue, b),
                None => self.queue.clone(),
            },
            props: copy.properties(),
            payload: copy.payload,
            declare_delay: bucket,
        }
    }

    /// The dead-letter copy of a delivery that had `attempts` deliveries.
    pub(crate) fn dead_letter_copy(
        &self,
        env: &Envelope,
        attempts: u32,
        reason: &str,
        last_error: &str,
    ) -> Outgoing {
        dlq::entry(&self.dlq, env, attempts, reason, last_error, now_ms())
    }
}

/// `x-delivery-limit` of the main queue and the dead-letter queue (quorum): returns to the
/// queue allowed before RabbitMQ dead-letters a message. RabbitMQ 4.0 gives quorum queues a
/// default of 20 and drops the message at the limit when no dead-letter exchange is set;
/// 3.x had no limit. ackline counts attempts itself and dead-letters at `max_attempts`
/// (with its own reasons), so the broker's limit is set out of reach: `2^31 - 1` (`-1`,
/// "unlimited" on 4.x, would dead-letter at the first return on 3.x). Should it ever be
/// reached, or a policy set a lower one (RabbitMQ applies the smaller), the main queue
/// dead-letters into `<queue>.dlq`.
pub const DELIVERY_LIMIT: u64 = 2_147_483_647;

/// `rabbitmqctl set_policy` applying `definition` to exactly `queue`.
fn policy_command(queue: &str, definition: &str) -> String {
    let pattern: String = queue
        .chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect();
    format!("rabbitmqctl set_policy ackline-{queue} '^{pattern}$' '{definition}' --apply-to queues")
}

/// The error for a queue that exists with other arguments than `args`.
fn mismatch(name: &str, text: &str, args: &FieldTable) -> BrokerError {
    BrokerError::Fatal {
        backend: NAME,
        reason: format!(
            "queue {name:?} exists with other arguments than ackline declares ({}): {text}. \
             Compare `rabbitmqctl list_queues name arguments`; drain and delete the queue to \
             let ackline declare it, or use ackline options that match it",
            describe(args)
        ),
    }
}

/// `name=value, ...` of declaration arguments, for messages.
fn describe(args: &FieldTable) -> String {
    args.inner()
        .iter()
        .map(|(k, v)| {
            let v = attempts::value_string(v)
                .map(|s| format!("{s:?}"))
                .or_else(|| attempts::value_u64(v).map(|n| n.to_string()))
                .unwrap_or_else(|| format!("{v:?}"));
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A queue on RabbitMQ as an ackline broker (see the crate doc).
#[derive(Debug, Clone)]
pub struct RabbitBroker {
    inner: Arc<Inner>,
}

fn check_queue_name(q: &str) -> Result<(), BrokerError> {
    // Leave room for ".delay.<ms>" within AMQP's 255-byte names.
    let ok = !q.is_empty()
        && q.len() <= 200
        && !q.starts_with("amq.")
        && q.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if ok {
        Ok(())
    } else {
        Err(BrokerError::Fatal {
            backend: NAME,
            reason: format!(
                "invalid queue name {q:?}: expected 1-200 bytes of letters, digits, '.', '_', \
                 '-' or ':', not starting with \"amq.\""
            ),
        })
    }
}

impl RabbitBroker {
    /// Connects to `url` (see [`AmqpUrl`]) and declares `queue` and `<queue>.dlq`.
    ///
    /// # Errors
    /// `Fatal` for a bad URL, queue name or a queue that exists with other arguments;
    /// `Unavailable` when the broker cannot be reached (one attempt, no retry).
    pub async fn connect(url: &str, queue: &str, opts: RabbitOptions) -> Result<Self, BrokerError> {
        let url = AmqpUrl::parse(url).map_err(|e| BrokerError::Fatal {
            backend: NAME,
            reason: e.to_string(),
        })?;
        Self::connect_url(url, queue, opts).await
    }

    /// As [`RabbitBroker::connect`], with the URL from [`ENV_URL`].
    ///
    /// # Errors
    /// As [`RabbitBroker::connect`]; `Fatal` when [`ENV_URL`] is unset.
    pub async fn connect_env(queue: &str, opts: RabbitOptions) -> Result<Self, BrokerError> {
        let url = AmqpUrl::from_env().map_err(|e| BrokerError::Fatal {
            backend: NAME,
            reason: e.to_string(),
        })?;
        Self::connect_url(url, queue, opts).await
    }

    /// As [`RabbitBroker::connect`], with a parsed URL.
    ///
    /// # Errors
    /// As [`RabbitBroker::connect`].
    pub async fn connect_url(
        url: AmqpUrl,
        queue: &str,
        opts: RabbitOptions,
    ) -> Result<Self, BrokerError> {
        Self::open(url, queue, opts, Open::Declare).await
    }

    async fn open(
        url: AmqpUrl,
        queue: &str,
        opts: RabbitOptions,
        mode: Open,
    ) -> Result<Self, BrokerError> {
        check_queue_name(queue)?;
        if opts.max_attempts == 0 {
            return Err(BrokerError::Fatal {
                backend: NAME,
                reason: "max_attempts must be at least 1".into(),
            });
        }
        let name = opts
            .connection_name
            .clone()
            .unwrap_or_else(|| format!("ackline {queue} pid {}", std::process::id()));
        let conn = Connector::new(
            url,
            name,
            opts.backoff(),
            opts.connect_timeout,
            opts.tls_ca_pem.clone(),
        );
        conn.first_connect().await?;
        let inner = Arc::new(Inner {
            conn,
            queue: queue.to_owned(),
            dlq: format!("{queue}.dlq"),
            buckets: Buckets::new(opts.delay_base, opts.delay_buckets),
            opts,
            declared: Mutex::new(BTreeSet::new()),
            counters: Counters::default(),
            dlq_lock: tokio::sync::Mutex::new(()),
        });
        match mode {
            Open::Declare => {
                // The dead-letter queue first: the main queue dead-letters into it.
                let dlq_policy = policy_command(
                    &inner.dlq,
                    &format!(r#"{{"delivery-limit":{DELIVERY_LIMIT}}}"#),
                );
                inner
                    .declare_or_accept_earlier(
                        &inner.dlq,
                        Inner::dlq_arguments(),
                        Inner::earlier_dlq_arguments(),
                        &dlq_policy,
                    )
                    .await?;
                inner
                    .declare_or_accept_earlier(
                        &inner.queue,
                        inner.main_arguments(),
                        inner.earlier_main_arguments(),
                        &inner.main_policy(),
                    )
                    .await?;
            }
            Open::Existing => {
                inner.exists(&inner.queue).await?;
                inner.exists(&inner.dlq).await?;
            }
        }
        Ok(RabbitBroker { inner })
    }

    /// As [`RabbitBroker::connect_url`], but declares nothing: `queue` and `<queue>.dlq`
    /// must exist already. For tools that only look or operate on dead letters, so a
    /// mistyped name is an error rather than two new empty queues.
    ///
    /// # Errors
    /// `Fatal` naming the queue when it does not exist; otherwise as
    /// [`RabbitBroker::connect`].
    pub async fn connect_existing(
        url: AmqpUrl,
        queue: &str,
        opts: RabbitOptions,
    ) -> Result<Self, BrokerError> {
        Self::open(url, queue, opts, Open::Existing).await
    }

    /// The main queue's name.
    pub fn queue_name(&self) -> &str {
        &self.inner.queue
    }

    /// The dead-letter queue's name.
    pub fn dlq_name(&self) -> &str {
        &self.inner.dlq
    }

    /// The broker's URL (prints without the password).
    pub fn url(&self) -> &AmqpUrl {
        self.inner.conn.url()
    }

    /// The names of every queue this broker may use: main, dead-letter, and each delay bucket.
    pub fn queue_names(&self) -> Vec<String> {
        let i = &self.inner;
        let mut v = vec![i.queue.clone(), i.dlq.clone()];
        v.extend(i.buckets.all().map(|b| delay::queue_name(&i.queue, b)));
        v
    }

    /// Closes the connection (consumers of this handle lose their channels; RabbitMQ requeues
    /// what they held).
    pub async fn close(&self) {
        self.inner.conn.close().await;
    }

    /// Deletes the main queue, its delay queues and its dead-letter queue (for tests and
    /// teardown), then closes the connection.
    ///
    /// # Errors
    /// `Unavailable` when the broker cannot be reached.
    pub async fn delete(self) -> Result<(), BrokerError> {
        let i = &self.inner;
        let ch = i.conn.channel(Some(i.deadline())).await?;
        for name in self.queue_names() {
            ch.queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                .await
                .map_err(|e| i.conn.error(&format!("deleting queue {name:?}"), &e))?;
        }
        let _ = ch.close(200, "deleted".into()).await;
        i.conn.close().await;
        Ok(())
    }

    async fn depth(&self, ch: &lapin::Channel, name: &str) -> Result<u64, BrokerError> {
        let q = ch
            .queue_declare(
                name.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| {
                self.inner
                    .conn
                    .error(&format!("reading queue {name:?}"), &e)
            })?;
        Ok(u64::from(q.message_count()))
    }
}

impl Broker for RabbitBroker {
    type Consumer = RabbitConsumer;

    fn name(&self) -> &'static str {
        NAME
    }

    async fn publish(&self, batch: Vec<Message>) -> Result<(), BrokerError> {
        let i = &self.inner;
        let n = batch.len();
        let items: Vec<Outgoing> = batch
            .into_iter()
            .map(|m| {
                let env = Envelope::new(m.id, m.headers, m.payload);
                Outgoing {
                    routing_key: i.queue.clone(),
                    props: env.properties(),
                    payload: env.payload,
                    declare_delay: None,
                }
            })
            .collect();
        if let Some(m) = items.iter().find(|o| o.payload.len() > 128 << 20) {
            return Err(BrokerError::Invalid {
                backend: NAME,
                reason: format!(
                    "a {}-byte message exceeds RabbitMQ's default max_message_size (128 MiB)",
                    m.payload.len()
                ),
            });
        }
        publish::publish_confirmed(&i.conn, &items, i.opts.publish_timeout).await?;
        i.counters.add(&i.counters.published, n);
        Ok(())
    }

    async fn consumer(&self, opts: ConsumerOptions) -> Result<RabbitConsumer, BrokerError> {
        RabbitConsumer::start(self.inner.clone(), opts).await
    }

    /// `pending` = ready in the main queue + in delay queues this handle declared + held by
    /// this handle's consumers (other processes' unacked deliveries are not visible over AMQP);
    /// the counters are this handle's since it was opened.
    async fn stats(&self) -> Result<BrokerStats, BrokerError> {
        let i = &self.inner;
        let ch = i.conn.channel(Some(i.deadline())).await?;
        let ready = self.depth(&ch, &i.queue).await?;
        let dead_letters = self.depth(&ch, &i.dlq).await?;
        let buckets: Vec<u64> = i.declared().iter().copied().collect();
        let mut delayed = 0;
        for b in buckets {
            delayed += self.depth(&ch, &delay::queue_name(&i.queue, b)).await?;
        }
        let _ = ch.close(200, "stats".into()).await;
        let c = &i.counters;
        let in_flight = Counters::get(&c.in_flight);
        Ok(BrokerStats {
            pending: ready + delayed + in_flight,
            in_flight,
            delayed,
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

impl DeadLetters for RabbitBroker {
    async fn dlq_list(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        let (mut all, _) = dlq::scan(&self.inner, |_| Action::Keep).await?;
        all.sort_by_key(|d| d.key);
        Ok(all
            .into_iter()
            .filter(|d| after.is_none_or(|a| d.key > a))
            .take(limit)
            .collect())
    }

    async fn dlq_get(&self, key: u64) -> Result<Option<DeadLetter>, BrokerError> {
        let (all, _) = dlq::scan(&self.inner, |_| Action::Keep).await?;
        Ok(all.into_iter().find(|d| d.key == key))
    }

    async fn dlq_replay(&self, sel: DlqSelector) -> Result<usize, BrokerError> {
        let (_, n) = dlq::scan(&self.inner, |d| {
            if dlq::selects(&sel, d) {
                Action::Replay
            } else {
                Action::Keep
            }
        })
        .await?;
        Ok(n)
    }

    async fn dlq_purge(&self, sel: DlqSelector) -> Result<usize, BrokerError> {
        let (_, n) = dlq::scan(&self.inner, |d| {
            if dlq::selects(&sel, d) {
                Action::Purge
            } else {
                Action::Keep
            }
        })
        .await?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_hint_matches_exactly_one_queue() {
        assert_eq!(
            policy_command("logs.dlq", r#"{"delivery-limit":1}"#),
            r#"rabbitmqctl set_policy ackline-logs.dlq '^logs\.dlq$' '{"delivery-limit":1}' --apply-to queues"#
        );
    }

    #[test]
    fn a_mismatch_names_the_queue_and_every_argument() {
        let mut t = FieldTable::default();
        t.insert("x-queue-type".into(), long_string("quorum"));
        t.insert("x-delivery-limit".into(), int(DELIVERY_LIMIT));
        let BrokerError::Fatal { reason, .. } = mismatch("logs", "PRECONDITION_FAILED - x", &t)
        else {
            panic!("not fatal");
        };
        assert!(reason.contains(r#"queue "logs""#), "{reason}");
        assert!(
            reason.contains(r#"x-delivery-limit=2147483647, x-queue-type="quorum""#),
            "{reason}"
        );
        assert!(reason.contains("PRECONDITION_FAILED - x"), "{reason}");
    }
}
