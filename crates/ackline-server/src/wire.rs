//! The JSON bodies of the API (the client in `ackline-http` mirrors them).
//!
//! Invariant: payloads are lossless: a payload that is valid UTF-8 travels as text with
//! `"encoding": "utf8"`, any other as standard base64 with `"encoding": "base64"`; headers
//! are an ordered list of pairs, so order and repeats survive.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// How a payload is written in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// The text itself.
    #[default]
    Utf8,
    /// Standard base64.
    Base64,
}

/// Encodes a payload.
pub fn encode(payload: Vec<u8>) -> (String, Encoding) {
    match String::from_utf8(payload) {
        Ok(s) => (s, Encoding::Utf8),
        Err(e) => (B64.encode(e.as_bytes()), Encoding::Base64),
    }
}

/// Decodes a payload.
pub fn decode(payload: String, enc: Encoding) -> Result<Vec<u8>, ApiError> {
    match enc {
        Encoding::Utf8 => Ok(payload.into_bytes()),
        Encoding::Base64 => B64
            .decode(payload.as_bytes())
            .map_err(|e| ApiError::bad_request(format!("payload is not valid base64: {e}"))),
    }
}

pub use ackline_broker::truncate_reason;

/// A message to publish.
#[derive(Debug, Clone, Deserialize)]
pub struct NewMessage {
    /// Its id (idempotency key); assigned when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// Header pairs.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The payload.
    pub payload: String,
    /// How `payload` is written.
    #[serde(default)]
    pub encoding: Encoding,
}

/// `POST /v1/queues/{queue}/messages`.
#[derive(Debug, Clone, Deserialize)]
pub struct PublishRequest {
    /// The batch (all or nothing).
    pub messages: Vec<NewMessage>,
}

/// `POST /v1/queues/{queue}/sessions`.
#[derive(Debug, Clone, Deserialize)]
pub struct OpenSession {
    /// Most unsettled deliveries at once. Default 1000.
    #[serde(default = "default_prefetch")]
    pub prefetch: usize,
    /// Lease per delivery, ms; the session lives unheard this long plus 30 s. Default 30,000.
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
}

fn default_prefetch() -> usize {
    1000
}

fn default_lease_ms() -> u64 {
    30_000
}

/// `POST .../sessions/{id}/receive`.
#[derive(Debug, Clone, Deserialize)]
pub struct ReceiveRequest {
    /// Most deliveries wanted.
    pub max: usize,
    /// Longest wait for the first, ms (capped by the server).
    #[serde(default)]
    pub wait_ms: u64,
}

/// A delivery.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// Queue position (quote it to settle).
    pub key: u64,
    /// Attempt (quote it to settle; fencing).
    pub attempt: u32,
    /// Message id.
    pub id: String,
    /// Header pairs.
    pub headers: Vec<(String, String)>,
    /// Payload.
    pub payload: String,
    /// How `payload` is written.
    pub encoding: Encoding,
    /// First publish, Unix ms.
    pub enqueued_at: u64,
}

/// One settlement.
/// The answer of a receive: serialized straight from the typed deliveries (no intermediate
/// `serde_json::Value` tree: one allocation per field per delivery saved).
#[derive(Debug, Serialize)]
pub struct Deliveries {
    /// What was leased.
    pub deliveries: Vec<Delivery>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SettleItem {
    /// The delivery's key.
    pub key: u64,
    /// The delivery's attempt.
    pub attempt: u32,
    /// What to do.
    #[serde(flatten)]
    pub op: SettleOp,
}

/// What to do with a delivery.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SettleOp {
    /// Done.
    Ack,
    /// Retry no earlier than `delay_ms` from now.
    Nack {
        /// Delay, ms.
        #[serde(default)]
        delay_ms: u64,
        /// Why.
        #[serde(default)]
        error: String,
    },
    /// Dead-letter now.
    Reject {
        /// Why.
        reason: String,
    },
    /// Renew the lease.
    Extend {
        /// New lease, ms.
        lease_ms: u64,
    },
}

/// `POST .../sessions/{id}/settle`.
#[derive(Debug, Clone, Deserialize)]
pub struct SettleRequest {
    /// The settlements, applied in order.
    pub items: Vec<SettleItem>,
}

/// The outcome of one settlement.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum SettleResult {
    /// Applied (and durable).
    Ok,
    /// The message was redelivered since.
    Stale {
        /// The delivery's attempt.
        attempt: u32,
        /// The message's current attempt.
        current: u32,
    },
    /// Settled before.
    AlreadySettled,
    /// No such delivery.
    Unknown,
}

/// The answer of a settle: one result per item, in order.
#[derive(Debug, Serialize)]
pub struct SettleResults {
    /// The results.
    pub results: Vec<SettleResult>,
}

/// A dead-letter entry.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// Its key.
    pub key: u64,
    /// Message id.
    pub id: String,
    /// Header pairs.
    pub headers: Vec<(String, String)>,
    /// Payload.
    pub payload: String,
    /// How `payload` is written.
    pub encoding: Encoding,
    /// First publish, Unix ms.
    pub enqueued_at: u64,
    /// Deliveries it had.
    pub attempts: u32,
    /// First failure, Unix ms.
    pub first_failure: u64,
    /// When dead-lettered, Unix ms.
    pub last_failure: u64,
    /// Why.
    pub reason: String,
    /// Last error.
    pub last_error: String,
}

impl From<ackline_broker::DeadLetter> for DeadLetter {
    fn from(d: ackline_broker::DeadLetter) -> Self {
        let (payload, encoding) = encode(d.payload);
        DeadLetter {
            key: d.key,
            id: d.id,
            headers: d.headers,
            payload,
            encoding,
            enqueued_at: d.enqueued_at,
            attempts: d.attempts,
            first_failure: d.first_failure,
            last_failure: d.last_failure,
            reason: d.reason,
            last_error: d.last_error,
        }
    }
}

/// Which dead letters a replay or purge applies to: exactly one field set, or `all: true`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// All of them.
    #[serde(default)]
    pub all: bool,
    /// These keys.
    #[serde(default)]
    pub keys: Option<Vec<u64>>,
    /// These message ids.
    #[serde(default)]
    pub ids: Option<Vec<String>>,
    /// Reason or last error containing this text.
    #[serde(default)]
    pub matching: Option<String>,
}

impl Selector {
    /// The broker selector; 400 unless exactly one kind is given, and for a blank `matching`
    /// (every entry would match it: that is `all`, and must be asked for as such).
    pub fn into_broker(self) -> Result<ackline_broker::DlqSelector, ApiError> {
        use ackline_broker::DlqSelector as S;
        if self.matching.as_ref().is_some_and(|m| m.trim().is_empty()) {
            return Err(ApiError::bad_request(
                "matching must contain a non-blank character (an empty match selects every entry: send {\"all\": true} for that)",
            ));
        }
        match (self.all, self.keys, self.ids, self.matching) {
            (true, None, None, None) => Ok(S::All),
            (false, Some(k), None, None) => Ok(S::Keys(k)),
            (false, None, Some(i), None) => Ok(S::Ids(i)),
            (false, None, None, Some(m)) => Ok(S::Matching(m)),
            _ => Err(ApiError::bad_request(
                "a selector needs exactly one of all: true, keys, ids, matching",
            )),
        }
    }
}

/// Queue counts.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// The queue.
    pub queue: String,
    /// Not yet settled.
    pub pending: u64,
    /// Ready to deliver.
    pub ready: u64,
    /// Delivered, not settled.
    pub in_flight: u64,
    /// Waiting for a redelivery time.
    pub delayed: u64,
    /// Dead-letter entries.
    pub dead_letters: u64,
    /// Pending bytes.
    pub pending_bytes: u64,
    /// Published since open.
    pub published: u64,
    /// Delivered since open.
    pub delivered: u64,
    /// Redelivered since open.
    pub redelivered: u64,
    /// Acked since open.
    pub acked: u64,
    /// Nacked since open.
    pub nacked: u64,
    /// Dead-lettered since open.
    pub dead_lettered: u64,
    /// Leases expired since open.
    pub lease_expired: u64,
}

impl Stats {
    /// From the engine's counts.
    pub fn of(queue: &str, s: &ackline_queue::QueueStats) -> Self {
        Stats {
            queue: queue.to_string(),
            pending: s.pending,
            ready: s.ready,
            in_flight: s.leased,
            delayed: s.delayed,
            dead_letters: s.dead_letters,
            pending_bytes: s.pending_bytes,
            published: s.published,
            delivered: s.delivered,
            redelivered: s.redelivered,
            acked: s.acked,
            nacked: s.nacked,
            dead_lettered: s.dead_lettered,
            lease_expired: s.lease_expired,
        }
    }
}
