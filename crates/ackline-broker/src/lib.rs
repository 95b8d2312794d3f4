//! # ackline-broker: one delivery contract, any queue
//!
//! The worker runtime talks to a queue only through [`Broker`] and [`Consumer`], so the same
//! runtime runs on the embedded queue ([`embedded::EmbeddedBroker`]) and on the scale-out
//! brokers (RabbitMQ, NATS JetStream, Redis Streams; later crates). Dead-letter operations are
//! the capability trait [`DeadLetters`].
//!
//! The contract (BRIEF.md, "The delivery contract") in trait terms:
//! - [`Broker::publish`] returns only when the batch is durable on that backend.
//! - [`Consumer::receive`] leases deliveries; each has an [`attempt`](Delivery::attempt) that is
//!   1 on the first delivery and grows on each redelivery, across restarts.
//! - [`Consumer::settle`] settles each delivery once ([`Settlement::Ack`], `Nack` with a delay,
//!   `Reject` with a reason) or renews its lease (`Extend`); it returns once the settlements are
//!   durable. A settlement for a delivery that is no longer current is
//!   [`SettleError::Stale`]; a second one is [`SettleError::AlreadySettled`]: values, not panics.
//! - A lease not settled in time, or held by a closed consumer, is redelivered; past the
//!   backend's `max_attempts` the message goes to the dead-letter queue with its reason.
//!
//! With the `contract` feature, `contract` holds the test suite every backend must pass, and
//! `contract_tests!` expands it into one test per rule.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub mod backoff;
pub mod counters;
pub mod embedded;
mod error;
pub mod fence;

#[cfg(feature = "bench")]
pub mod bench;
#[cfg(feature = "contract")]
pub mod contract;
#[cfg(feature = "contract")]
pub mod watchdog;

/// The contract's dead-letter reasons, spelled once (the embedded engine's own constants).
pub use ackline_queue::{REASON_CORRUPT, REASON_MAX_ATTEMPTS};
pub use error::{BrokerError, SettleError};

/// A message to publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Stable id (idempotency key). Stores deduplicate by it.
    pub id: String,
    /// Header pairs.
    pub headers: Vec<(String, String)>,
    /// The payload.
    pub payload: Vec<u8>,
}

impl Message {
    /// A message with an id and a payload.
    pub fn new(id: impl Into<String>, payload: impl Into<Vec<u8>>) -> Self {
        Message {
            id: id.into(),
            headers: Vec::new(),
            payload: payload.into(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }

    /// The value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Names one delivery; settlements quote it. Backends interpret the fields: the embedded queue
/// uses `key` (queue position) and `attempt`; others may carry a `token` (an ack subject, a
/// stream entry id).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    /// Backend-specific key.
    pub key: u64,
    /// The delivery's attempt (fencing).
    pub attempt: u32,
    /// Backend-specific token.
    pub token: Option<Arc<str>>,
}

/// A leased message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Quote this to settle.
    pub tag: Tag,
    /// The message id.
    pub id: String,
    /// Header pairs.
    pub headers: Vec<(String, String)>,
    /// The payload.
    pub payload: Vec<u8>,
    /// When the message was first published, Unix ms.
    pub enqueued_at: u64,
}

impl Delivery {
    /// 1 on the first delivery, +1 on each redelivery: the attempt its tag fences with (held
    /// once, in the tag).
    pub fn attempt(&self) -> u32 {
        self.tag.attempt
    }

    /// The value of header `name`, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// How to settle a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Done.
    Ack,
    /// Failed for now: redeliver no earlier than `delay` from now.
    Nack {
        /// The delay.
        delay: Duration,
        /// Why (kept as the last error).
        error: String,
    },
    /// Can never succeed: dead-letter now.
    Reject {
        /// Why.
        reason: String,
    },
    /// Still working: renew the lease for `lease` from now. Not a settlement.
    Extend {
        /// The new lease length.
        lease: Duration,
    },
}

/// The longest reject reason or nack error the worker runtime sends and the server keeps
/// (bytes): a dead letter's reason and last error live in memory with it.
pub const MAX_REASON_BYTES: usize = 4096;

/// `text` cut to at most `max` bytes (at a character boundary) followed by
/// `… [truncated N bytes]` (N: the bytes cut), or `text` itself when it fits.
pub fn truncate_reason(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let dropped = text.len() - cut;
    text.truncate(cut);
    text.push_str(&format!("… [truncated {dropped} bytes]"));
    text
}

impl Settlement {
    /// This settlement with its reason or error cut to `max` bytes ([`truncate_reason`]).
    pub fn bounded(self, max: usize) -> Settlement {
        match self {
            Settlement::Nack { delay, error } => Settlement::Nack {
                delay,
                error: truncate_reason(error, max),
            },
            Settlement::Reject { reason } => Settlement::Reject {
                reason: truncate_reason(reason, max),
            },
            other => other,
        }
    }
}

/// Options of a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerOptions {
    /// Most unsettled deliveries this consumer holds at once.
    pub prefetch: usize,
    /// Lease (ack timeout) of each delivery.
    pub lease: Duration,
}

impl Default for ConsumerOptions {
    fn default() -> Self {
        ConsumerOptions {
            prefetch: 1000,
            lease: Duration::from_secs(30),
        }
    }
}

/// A dead-letter entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its key in the dead-letter queue.
    pub key: u64,
    /// The message id.
    pub id: String,
    /// Header pairs.
    pub headers: Vec<(String, String)>,
    /// The payload.
    pub payload: Vec<u8>,
    /// When first published, Unix ms.
    pub enqueued_at: u64,
    /// Deliveries it had.
    pub attempts: u32,
    /// First failure, Unix ms.
    pub first_failure: u64,
    /// When it was dead-lettered, Unix ms.
    pub last_failure: u64,
    /// Why it was dead-lettered.
    pub reason: String,
    /// The last error reported.
    pub last_error: String,
}

/// Which dead-letter entries an operation applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DlqSelector {
    /// All of them.
    All,
    /// These keys.
    Keys(Vec<u64>),
    /// Entries whose message has one of these ids.
    Ids(Vec<String>),
    /// Entries whose reason or last error contains this text.
    Matching(String),
}

/// Counts describing a queue, as far as the backend knows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// Messages not yet settled.
    pub pending: u64,
    /// Delivered and not settled.
    pub in_flight: u64,
    /// Waiting for a redelivery time.
    pub delayed: u64,
    /// Entries in the dead-letter queue.
    pub dead_letters: u64,
    /// Messages published since the backend was opened.
    pub published: u64,
    /// Deliveries made since opened.
    pub delivered: u64,
    /// Redeliveries since opened.
    pub redelivered: u64,
    /// Acks since opened.
    pub acked: u64,
    /// Nacks since opened.
    pub nacked: u64,
    /// Moves to the dead-letter queue since opened.
    pub dead_lettered: u64,
    /// Leases that expired since opened.
    pub lease_expired: u64,
}

/// A queue backend.
pub trait Broker: Send + Sync + 'static {
    /// Its consumers.
    type Consumer: Consumer;

    /// A short name ("embedded", "rabbitmq", ...).
    fn name(&self) -> &'static str;

    /// Publishes a batch; returns once it is durable on the backend.
    fn publish(&self, batch: Vec<Message>) -> impl Future<Output = Result<(), BrokerError>> + Send;

    /// [`Broker::publish`] of a batch the caller keeps, to publish it again when it is refused
    /// for now (an input retrying `Unavailable` or `Full`). The default copies the batch; a
    /// backend that can write from borrowed messages does so (the embedded queue).
    fn publish_borrowed(
        &self,
        batch: &[Message],
    ) -> impl Future<Output = Result<(), BrokerError>> + Send {
        self.publish(batch.to_vec())
    }

    /// A new consumer.
    fn consumer(
        &self,
        opts: ConsumerOptions,
    ) -> impl Future<Output = Result<Self::Consumer, BrokerError>> + Send;

    /// Counts describing the queue.
    fn stats(&self) -> impl Future<Output = Result<BrokerStats, BrokerError>> + Send;
}

/// Leases deliveries and settles them. Dropping (or [`Consumer::close`]) releases what it
/// holds unsettled.
pub trait Consumer: Send + Sync + 'static {
    /// Up to `max` deliveries (fewer if the prefetch bound is reached), waiting up to `wait`
    /// for the first.
    fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Delivery>, BrokerError>> + Send;

    /// Settles deliveries; one result per item, in order. Returns once the settlements are
    /// durable (a `BrokerError` if that failed: then none is known to be).
    fn settle(
        &self,
        items: Vec<(Tag, Settlement)>,
    ) -> impl Future<Output = Result<Vec<Result<(), SettleError>>, BrokerError>> + Send;

    /// Releases unsettled deliveries and closes the consumer.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// Dead-letter operations (a capability: a backend without them does not implement it).
pub trait DeadLetters: Send + Sync + 'static {
    /// Entries with keys after `after`, at most `limit`.
    fn dlq_list(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, BrokerError>> + Send;

    /// The entry with this key.
    fn dlq_get(
        &self,
        key: u64,
    ) -> impl Future<Output = Result<Option<DeadLetter>, BrokerError>> + Send;

    /// Puts selected entries back in the queue with attempts reset; returns how many.
    fn dlq_replay(
        &self,
        sel: DlqSelector,
    ) -> impl Future<Output = Result<usize, BrokerError>> + Send;

    /// Removes selected entries; returns how many.
    fn dlq_purge(
        &self,
        sel: DlqSelector,
    ) -> impl Future<Output = Result<usize, BrokerError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_at_a_character_boundary_with_a_marker() {
        let s = Settlement::Reject {
            reason: "x".repeat(5000),
        }
        .bounded(MAX_REASON_BYTES);
        let Settlement::Reject { reason } = s else {
            panic!("a reject stays a reject");
        };
        assert_eq!(
            reason,
            format!("{}… [truncated 904 bytes]", "x".repeat(4096))
        );
        assert_eq!(Settlement::Ack.bounded(1), Settlement::Ack);
        assert_eq!(truncate_reason("short".into(), 64), "short");
        let s = "aé".repeat(40); // 120 bytes
        let t = truncate_reason(s, 64);
        // "aé" is 3 bytes: 21 pairs and an "a" make 64, a boundary.
        assert!(t.starts_with(&format!("{}a…", "aé".repeat(21))));
        assert!(t.ends_with("… [truncated 56 bytes]"), "{t}");
        // 65 falls inside the 33rd "é": cut before it.
        let t = truncate_reason("é".repeat(40), 65);
        assert_eq!(t, format!("{}… [truncated 16 bytes]", "é".repeat(32)));
    }
}
