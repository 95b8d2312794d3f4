//! The JSON bodies, mirroring `ackline_server::wire`.
//!
//! Invariant: payloads travel losslessly (UTF-8 text as is, other bytes as base64 with
//! `"encoding": "base64"`).

use ackline_broker::{BrokerError, BrokerStats, DlqSelector, Message};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::NAME;

pub(crate) fn encode(payload: Vec<u8>) -> (String, &'static str) {
    match String::from_utf8(payload) {
        Ok(s) => (s, "utf8"),
        Err(e) => (B64.encode(e.as_bytes()), "base64"),
    }
}

pub(crate) fn decode(payload: String, encoding: &str) -> Result<Vec<u8>, BrokerError> {
    match encoding {
        "utf8" => Ok(payload.into_bytes()),
        "base64" => B64
            .decode(payload.as_bytes())
            .map_err(|e| BrokerError::Fatal {
                backend: NAME,
                reason: format!("server sent bad base64: {e}"),
            }),
        other => Err(BrokerError::Fatal {
            backend: NAME,
            reason: format!("server sent unknown encoding {other:?}"),
        }),
    }
}

pub(crate) fn publish_body(batch: Vec<Message>) -> Value {
    let messages: Vec<Value> = batch
        .into_iter()
        .map(|m| {
            let (payload, encoding) = encode(m.payload);
            json!({ "id": m.id, "headers": m.headers, "payload": payload, "encoding": encoding })
        })
        .collect();
    json!({ "messages": messages })
}

pub(crate) fn selector(sel: DlqSelector) -> Value {
    match sel {
        DlqSelector::All => json!({ "all": true }),
        DlqSelector::Keys(k) => json!({ "keys": k }),
        DlqSelector::Ids(i) => json!({ "ids": i }),
        DlqSelector::Matching(m) => json!({ "matching": m }),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct Session {
    pub session: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Delivery {
    pub key: u64,
    pub attempt: u32,
    pub id: String,
    pub headers: Vec<(String, String)>,
    pub payload: String,
    pub encoding: String,
    pub enqueued_at: u64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Deliveries {
    pub deliveries: Vec<Delivery>,
}

/// One settlement as the server reads it (`op`: ack, nack, reject, extend; the fields of
/// the other ops are left out).
#[derive(Debug, Serialize)]
pub(crate) struct SettleItem {
    pub key: u64,
    pub attempt: u32,
    pub op: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
}

impl SettleItem {
    /// An ack of (key, attempt); the caller sets `op` and its fields for the others.
    pub fn new(key: u64, attempt: u32) -> Self {
        SettleItem {
            key,
            attempt,
            op: "ack",
            delay_ms: None,
            error: None,
            reason: None,
            lease_ms: None,
        }
    }
}

/// The body of a settle request (typed: no `serde_json::Value` per item).
#[derive(Debug, Serialize)]
pub(crate) struct SettleBody {
    pub items: Vec<SettleItem>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SettleResult {
    pub result: String,
    #[serde(default)]
    pub attempt: u32,
    #[serde(default)]
    pub current: u32,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SettleResults {
    pub results: Vec<SettleResult>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DeadLetter {
    key: u64,
    id: String,
    headers: Vec<(String, String)>,
    payload: String,
    encoding: String,
    enqueued_at: u64,
    attempts: u32,
    first_failure: u64,
    last_failure: u64,
    reason: String,
    last_error: String,
}

impl DeadLetter {
    pub(crate) fn into_broker(self) -> Result<ackline_broker::DeadLetter, BrokerError> {
        Ok(ackline_broker::DeadLetter {
            key: self.key,
            id: self.id,
            headers: self.headers,
            payload: decode(self.payload, &self.encoding)?,
            enqueued_at: self.enqueued_at,
            attempts: self.attempts,
            first_failure: self.first_failure,
            last_failure: self.last_failure,
            reason: self.reason,
            last_error: self.last_error,
        })
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct DlqList {
    pub entries: Vec<DeadLetter>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Count {
    pub replayed: Option<usize>,
    pub purged: Option<usize>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Stats {
    pending: u64,
    in_flight: u64,
    delayed: u64,
    dead_letters: u64,
    published: u64,
    delivered: u64,
    redelivered: u64,
    acked: u64,
    nacked: u64,
    dead_lettered: u64,
    lease_expired: u64,
}

impl From<Stats> for BrokerStats {
    fn from(s: Stats) -> Self {
        BrokerStats {
            pending: s.pending,
            in_flight: s.in_flight,
            delayed: s.delayed,
            dead_letters: s.dead_letters,
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
