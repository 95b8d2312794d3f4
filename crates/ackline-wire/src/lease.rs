//! The lease API's bodies: publish, open a session, receive (long-poll), settle.
//!
//! Invariants:
//! - A delivery carries (`key`, `attempt`), and a settle item quotes both: the server fences
//!   settlements by them (see `ackline-server`'s `routes::lease`).
//! - A settle answer holds one [`SettleResult`] per item, in the order of the items.
//! - The defaults a server applies to an absent field are written here once
//!   ([`OpenSession`]'s prefetch 1000 and lease 30 s, a nack's delay 0, a receive's wait 0).

use ackline_broker::{Message, SettleError, Settlement, Tag};
use serde::{Deserialize, Serialize};

use crate::payload::{Encoding, PayloadError, decode, encode};

/// A message to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMessage {
    /// Its id (idempotency key); the server assigns a random one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

impl From<Message> for NewMessage {
    fn from(m: Message) -> Self {
        let (payload, encoding) = encode(m.payload);
        NewMessage {
            id: Some(m.id),
            headers: m.headers,
            payload,
            encoding,
        }
    }
}

/// `POST /v1/queues/{queue}/messages`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishRequest {
    /// The batch (all or nothing).
    pub messages: Vec<NewMessage>,
}

/// The answer of a publish, once the batch is durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// Messages in the batch.
    pub published: usize,
}

/// `POST /v1/queues/{queue}/sessions` (an empty body takes every default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// The answer of an open session (201).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The session id, in the paths of receive, settle and close.
    pub session: String,
    /// Its prefetch.
    pub prefetch: usize,
    /// Its lease, ms.
    pub lease_ms: u64,
}

/// `POST .../sessions/{id}/receive`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiveRequest {
    /// Most deliveries wanted.
    pub max: usize,
    /// Longest wait for the first, ms (capped by the server).
    #[serde(default)]
    pub wait_ms: u64,
}

/// A delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

impl From<ackline_broker::Delivery> for Delivery {
    /// The server's side: the delivery's tag becomes (key, attempt).
    fn from(d: ackline_broker::Delivery) -> Self {
        let (payload, encoding) = encode(d.payload);
        Delivery {
            key: d.tag.key,
            attempt: d.tag.attempt,
            id: d.id,
            headers: d.headers,
            payload,
            encoding,
            enqueued_at: d.enqueued_at,
        }
    }
}

impl Delivery {
    /// The client's side: a broker delivery whose tag is (key, attempt).
    pub fn into_broker(self) -> Result<ackline_broker::Delivery, PayloadError> {
        Ok(ackline_broker::Delivery {
            tag: Tag {
                key: self.key,
                attempt: self.attempt,
                token: None,
            },
            id: self.id,
            headers: self.headers,
            payload: decode(self.payload, self.encoding)?,
            enqueued_at: self.enqueued_at,
        })
    }
}

/// The answer of a receive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deliveries {
    /// What was leased.
    pub deliveries: Vec<Delivery>,
}

/// One settlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettleItem {
    /// The delivery's key.
    pub key: u64,
    /// The delivery's attempt.
    pub attempt: u32,
    /// What to do (the `op` field and its own fields).
    #[serde(flatten)]
    pub op: SettleOp,
}

impl SettleItem {
    /// The item settling the delivery `tag` with `how`.
    pub fn new(tag: &Tag, how: Settlement) -> Self {
        SettleItem {
            key: tag.key,
            attempt: tag.attempt,
            op: how.into(),
        }
    }
}

/// What to do with a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

impl From<Settlement> for SettleOp {
    fn from(s: Settlement) -> Self {
        match s {
            Settlement::Ack => SettleOp::Ack,
            Settlement::Nack { delay, error } => SettleOp::Nack {
                delay_ms: crate::millis(delay),
                error,
            },
            Settlement::Reject { reason } => SettleOp::Reject { reason },
            Settlement::Extend { lease } => SettleOp::Extend {
                lease_ms: crate::millis(lease),
            },
        }
    }
}

/// `POST .../sessions/{id}/settle`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettleRequest {
    /// The settlements, applied in order.
    pub items: Vec<SettleItem>,
}

/// The outcome of one settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

impl From<Result<(), SettleError>> for SettleResult {
    fn from(r: Result<(), SettleError>) -> Self {
        match r {
            Ok(()) => SettleResult::Ok,
            Err(SettleError::Stale { attempt, current }) => {
                SettleResult::Stale { attempt, current }
            }
            Err(SettleError::AlreadySettled) => SettleResult::AlreadySettled,
            Err(SettleError::Unknown) => SettleResult::Unknown,
        }
    }
}

impl From<SettleResult> for Result<(), SettleError> {
    fn from(r: SettleResult) -> Self {
        match r {
            SettleResult::Ok => Ok(()),
            SettleResult::Stale { attempt, current } => {
                Err(SettleError::Stale { attempt, current })
            }
            SettleResult::AlreadySettled => Err(SettleError::AlreadySettled),
            SettleResult::Unknown => Err(SettleError::Unknown),
        }
    }
}

/// The answer of a settle: one result per item, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettleResults {
    /// The results.
    pub results: Vec<SettleResult>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    #[test]
    fn settle_items_are_flat_with_their_op() {
        let tag = Tag {
            key: 7,
            attempt: 2,
            token: None,
        };
        let cases = [
            (
                Settlement::Ack,
                json!({"key": 7, "attempt": 2, "op": "ack"}),
            ),
            (
                Settlement::Nack {
                    delay: Duration::from_millis(1500),
                    error: "boom".into(),
                },
                json!({"key": 7, "attempt": 2, "op": "nack", "delay_ms": 1500, "error": "boom"}),
            ),
            (
                Settlement::Reject {
                    reason: "bad".into(),
                },
                json!({"key": 7, "attempt": 2, "op": "reject", "reason": "bad"}),
            ),
            (
                Settlement::Extend {
                    lease: Duration::from_secs(2),
                },
                json!({"key": 7, "attempt": 2, "op": "extend", "lease_ms": 2000}),
            ),
        ];
        for (how, want) in cases {
            let item = SettleItem::new(&tag, how);
            assert_eq!(serde_json::to_value(&item).unwrap(), want);
            assert_eq!(serde_json::from_value::<SettleItem>(want).unwrap(), item);
        }
        // A nack's fields have defaults.
        let item: SettleItem =
            serde_json::from_value(json!({"key": 1, "attempt": 1, "op": "nack"})).unwrap();
        assert_eq!(
            item.op,
            SettleOp::Nack {
                delay_ms: 0,
                error: String::new()
            }
        );
    }

    #[test]
    fn settle_results_map_both_ways() {
        for r in [
            Ok(()),
            Err(SettleError::Stale {
                attempt: 1,
                current: 2,
            }),
            Err(SettleError::AlreadySettled),
            Err(SettleError::Unknown),
        ] {
            let wire = SettleResult::from(r.clone());
            let text = serde_json::to_string(&wire).unwrap();
            let back: SettleResult = serde_json::from_str(&text).unwrap();
            assert_eq!(Result::<(), SettleError>::from(back), r, "{text}");
        }
        assert_eq!(
            serde_json::to_value(SettleResult::Stale {
                attempt: 1,
                current: 2
            })
            .unwrap(),
            json!({"result": "stale", "attempt": 1, "current": 2})
        );
    }

    #[test]
    fn defaults_of_absent_fields() {
        let s: OpenSession = serde_json::from_str("{}").unwrap();
        assert_eq!((s.prefetch, s.lease_ms), (1000, 30_000));
        let r: ReceiveRequest = serde_json::from_str(r#"{"max": 5}"#).unwrap();
        assert_eq!(r.wait_ms, 0);
        let m: NewMessage = serde_json::from_str(r#"{"payload": "x"}"#).unwrap();
        assert_eq!(
            m,
            NewMessage {
                id: None,
                headers: vec![],
                payload: "x".into(),
                encoding: Encoding::Utf8
            }
        );
        assert!(
            serde_json::from_str::<NewMessage>(r#"{"payload": "x", "encoding": "hex"}"#).is_err()
        );
    }

    #[test]
    fn deliveries_round_trip_bytes_and_tag() {
        let d = ackline_broker::Delivery {
            tag: Tag {
                key: 9,
                attempt: 3,
                token: None,
            },
            id: "m".into(),
            headers: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
            payload: vec![0xff, 0, 1],
            enqueued_at: 42,
        };
        let wire = Delivery::from(d.clone());
        assert_eq!(wire.encoding, Encoding::Base64);
        let text = serde_json::to_string(&wire).unwrap();
        let back: Delivery = serde_json::from_str(&text).unwrap();
        assert_eq!(back.into_broker().unwrap(), d);
    }
}
