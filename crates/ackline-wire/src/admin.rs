//! The admin API's bodies: queue stats, dead letters, selectors, replay and purge counts.
//!
//! Invariants: a [`Selector`] names exactly one kind of selection, and "every entry" only as
//! `{"all": true}` (an empty or blank `matching` would select every entry by accident and is
//! refused); a dead letter's payload is as lossless as a delivery's.

use ackline_broker::{BrokerStats, DlqSelector};
use serde::{Deserialize, Serialize};

use crate::payload::{Encoding, PayloadError, decode, encode};

/// A dead-letter entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

impl DeadLetter {
    /// The broker's dead-letter entry.
    pub fn into_broker(self) -> Result<ackline_broker::DeadLetter, PayloadError> {
        Ok(ackline_broker::DeadLetter {
            key: self.key,
            id: self.id,
            headers: self.headers,
            payload: decode(self.payload, self.encoding)?,
            enqueued_at: self.enqueued_at,
            attempts: self.attempts,
            first_failure: self.first_failure,
            last_failure: self.last_failure,
            reason: self.reason,
            last_error: self.last_error,
        })
    }
}

/// The answer of `GET /v1/queues/{queue}/dlq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterList {
    /// The entries, by key.
    pub entries: Vec<DeadLetter>,
}

/// Which dead letters a replay or purge applies to: exactly one field set, or `all: true`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// All of them.
    #[serde(default, skip_serializing_if = "is_false")]
    pub all: bool,
    /// These keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<u64>>,
    /// These message ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
    /// Reason or last error containing this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matching: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Why a [`Selector`] selects nothing well-defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// `matching` is empty or blank.
    #[error(
        "matching must contain a non-blank character (an empty match selects every entry: send {{\"all\": true}} for that)"
    )]
    BlankMatching,
    /// None, or more than one, of the kinds.
    #[error("a selector needs exactly one of all: true, keys, ids, matching")]
    NotExactlyOne,
}

impl Selector {
    /// The broker's selector, unless the selector is blank or ambiguous.
    pub fn into_broker(self) -> Result<DlqSelector, SelectorError> {
        if self.matching.as_ref().is_some_and(|m| m.trim().is_empty()) {
            return Err(SelectorError::BlankMatching);
        }
        match (self.all, self.keys, self.ids, self.matching) {
            (true, None, None, None) => Ok(DlqSelector::All),
            (false, Some(k), None, None) => Ok(DlqSelector::Keys(k)),
            (false, None, Some(i), None) => Ok(DlqSelector::Ids(i)),
            (false, None, None, Some(m)) => Ok(DlqSelector::Matching(m)),
            _ => Err(SelectorError::NotExactlyOne),
        }
    }
}

impl From<DlqSelector> for Selector {
    fn from(sel: DlqSelector) -> Self {
        match sel {
            DlqSelector::All => Selector {
                all: true,
                ..Selector::default()
            },
            DlqSelector::Keys(k) => Selector {
                keys: Some(k),
                ..Selector::default()
            },
            DlqSelector::Ids(i) => Selector {
                ids: Some(i),
                ..Selector::default()
            },
            DlqSelector::Matching(m) => Selector {
                matching: Some(m),
                ..Selector::default()
            },
        }
    }
}

/// The answer of a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replayed {
    /// Entries published again.
    pub replayed: usize,
}

/// The answer of a purge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purged {
    /// Entries removed.
    pub purged: usize,
}

/// Queue counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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

/// The answer of `GET /v1/queues`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueList {
    /// Every queue with its counts.
    pub queues: Vec<Stats>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn selectors_round_trip_as_one_field() {
        let cases = [
            (DlqSelector::All, json!({"all": true})),
            (DlqSelector::Keys(vec![1, 2]), json!({"keys": [1, 2]})),
            (DlqSelector::Ids(vec!["a".into()]), json!({"ids": ["a"]})),
            (DlqSelector::Matching("x".into()), json!({"matching": "x"})),
        ];
        for (sel, want) in cases {
            let wire = Selector::from(sel.clone());
            assert_eq!(serde_json::to_value(&wire).unwrap(), want);
            let back: Selector = serde_json::from_value(want).unwrap();
            assert_eq!(back.into_broker().unwrap(), sel);
        }
    }

    #[test]
    fn selectors_refuse_blank_and_ambiguous() {
        let blank: Selector = serde_json::from_value(json!({"matching": "  "})).unwrap();
        assert_eq!(blank.into_broker(), Err(SelectorError::BlankMatching));
        for v in [
            json!({}),
            json!({"all": true, "keys": [1]}),
            json!({"all": false}),
        ] {
            let s: Selector = serde_json::from_value(v.clone()).unwrap();
            assert_eq!(s.into_broker(), Err(SelectorError::NotExactlyOne), "{v}");
        }
        assert!(serde_json::from_value::<Selector>(json!({"everything": true})).is_err());
    }
}
