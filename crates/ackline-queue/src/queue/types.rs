//! The public value types of a queue: what goes in, what comes out, and the counts.
//!
//! Invariants:
//! - These are plain values: none holds a lock, a file or a reference to the queue, so a
//!   caller may keep, clone and send them freely.
//! - A delivery's attempt lives in its [`Tag`] only (the tag is what a settlement quotes, so
//!   the attempt a consumer sees is the one it settles).

use std::time::Duration;

/// The dead-letter reason of a message that had as many deliveries as `max_attempts` allows.
pub const REASON_MAX_ATTEMPTS: &str = "max attempts exceeded";
/// The dead-letter reason of a message whose stored frame is damaged (its publish record
/// fails its checksum, or recovery found its position but not its record).
pub const REASON_CORRUPT: &str = "corrupt";

/// What the queue reads of a message it publishes: [`NewMessage`], or a caller's own type
/// through [`crate::Queue::publish_nowait_ref`] (nothing of it is copied but its id).
pub trait Outgoing {
    /// Its stable id (an idempotency key); one is assigned when `None`.
    fn id(&self) -> Option<&str>;
    /// Its header pairs.
    fn headers(&self) -> &[(String, String)];
    /// Its payload.
    fn payload(&self) -> &[u8];
}

impl Outgoing for NewMessage {
    fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }
    fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
    fn payload(&self) -> &[u8] {
        &self.payload
    }
}

/// A message to publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewMessage {
    /// A stable id (an idempotency key); one is assigned when `None`.
    pub id: Option<String>,
    /// Header pairs.
    pub headers: Vec<(String, String)>,
    /// The payload.
    pub payload: Vec<u8>,
}

impl NewMessage {
    /// A message with a payload and nothing else.
    pub fn new(payload: impl Into<Vec<u8>>) -> Self {
        NewMessage {
            payload: payload.into(),
            ..Default::default()
        }
    }

    /// Sets the id.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
}

/// A confirmed publish (or, from
/// [`Queue::publish_nowait`](crate::Queue::publish_nowait), an accepted one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// Queue position.
    pub seq: u64,
    /// The message id (given or assigned).
    pub id: String,
    /// A message with this id was already pending or dead-lettered (at `seq`): nothing new
    /// was enqueued.
    pub duplicate: bool,
}

/// Names one delivery of one message: settlements must quote it (stale-ack fencing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    /// Queue position of the message.
    pub seq: u64,
    /// Which delivery of it: 1 on the first delivery, +1 on each redelivery; survives
    /// restarts.
    pub attempt: u32,
}

/// A message handed to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Quote this to settle the delivery; `tag.attempt` says which delivery of the message
    /// this is.
    pub tag: Tag,
    /// The message id.
    pub id: String,
    /// Header pairs.
    pub headers: Vec<(String, String)>,
    /// The payload.
    pub payload: Vec<u8>,
    /// When the message was first published, Unix ms.
    pub enqueued_at: u64,
    /// The lease ends then (Unix ms) unless extended or settled.
    pub lease_until: u64,
}

/// How to settle one delivery. (Renewing a lease is not a settlement: see
/// [`Consumer::extend`](crate::Consumer::extend).)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Done: the message leaves the queue.
    Ack,
    /// Failed for now: deliver again no earlier than `delay` from now.
    Nack {
        /// The delay.
        delay: Duration,
        /// Why it failed (kept as the message's last error).
        error: String,
    },
    /// Can never succeed: move to the dead-letter queue now.
    Reject {
        /// Why.
        reason: String,
    },
}

/// An entry of the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its key in the dead-letter queue (the position it had in the queue).
    pub key: u64,
    /// The message id.
    pub id: String,
    /// Header pairs.
    pub headers: Vec<(String, String)>,
    /// The payload.
    pub payload: Vec<u8>,
    /// When the message was first published, Unix ms.
    pub enqueued_at: u64,
    /// Deliveries it had.
    pub attempts: u32,
    /// First failure, Unix ms.
    pub first_failure: u64,
    /// Last failure (when it was dead-lettered), Unix ms.
    pub last_failure: u64,
    /// Why it was dead-lettered.
    pub reason: String,
    /// The last error a consumer reported.
    pub last_error: String,
}

/// Which dead-letter entries an operation applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DlqSelector {
    /// Every entry.
    All,
    /// Entries with these keys.
    Keys(Vec<u64>),
    /// Entries whose message has one of these ids.
    Ids(Vec<String>),
    /// Entries matching every given condition.
    Filter(DlqFilter),
}

/// Conditions on dead-letter entries (all that are set must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DlqFilter {
    /// The reason contains this text.
    pub reason_contains: Option<String>,
    /// The last error contains this text.
    pub error_contains: Option<String>,
    /// Dead-lettered at or after this time, Unix ms.
    pub since: Option<u64>,
    /// Dead-lettered before this time, Unix ms.
    pub until: Option<u64>,
}

/// Counts describing a queue now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages not yet settled (ready + leased + delayed).
    pub pending: u64,
    /// Deliverable now.
    pub ready: u64,
    /// Delivered and not settled.
    pub leased: u64,
    /// Waiting for their redelivery time.
    pub delayed: u64,
    /// Entries in the dead-letter queue.
    pub dead_letters: u64,
    /// Bytes of pending messages (framed).
    pub pending_bytes: u64,
    /// Bytes of the dead-letter entries' messages (framed); with `pending_bytes` what
    /// `max_bytes` limits.
    pub dead_letter_bytes: u64,
    /// Segment files.
    pub segments: u64,
    /// Next queue position.
    pub next_seq: u64,
    /// Events since the queue was opened.
    pub published: u64,
    /// Deliveries made (first and later).
    pub delivered: u64,
    /// Deliveries with attempt above 1.
    pub redelivered: u64,
    /// Acks.
    pub acked: u64,
    /// Nacks.
    pub nacked: u64,
    /// Moves to the dead-letter queue.
    pub dead_lettered: u64,
    /// Leases that ran out.
    pub lease_expired: u64,
    /// Deliveries released by a closed consumer.
    pub released: u64,
    /// Dead-letter entries replayed.
    pub replayed: u64,
    /// Dead-letter entries purged.
    pub purged: u64,
    /// Publishes absorbed because their id was already pending or dead-lettered.
    pub duplicates: u64,
    /// Damaged ranges recovery found when the queue opened (see
    /// [`Queue::recovery_report`](crate::Queue::recovery_report)).
    pub corrupt_ranges: u64,
    /// Messages dead-lettered with reason [`REASON_CORRUPT`] since the queue opened.
    pub corrupt_messages: u64,
}
