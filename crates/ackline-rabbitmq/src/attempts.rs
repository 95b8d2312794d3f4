//! The wire format of an ackline message on RabbitMQ, and how a delivery's attempt is counted.
//!
//! A message is an AMQP message on the default exchange, routed by queue name, with
//! `delivery_mode` 2 (persistent), `message_id` set to the ackline id when it is not empty and
//! fits AMQP's 255-byte short string, and these headers (all ackline's own, prefixed
//! `x-ackline-`; each is sent only when needed, since every header costs RabbitMQ work per
//! message):
//!
//! | header | type | meaning |
//! | --- | --- | --- |
//! | `x-ackline-id` | long string | the message id, when `message_id` cannot carry it (empty, or over 255 bytes); when both are present, this one wins |
//! | `x-ackline-headers` | array of [name, value] arrays | the ackline headers, in order, duplicates kept; absent when there are none |
//! | `x-ackline-enqueued-at` | long long | first publish time, Unix ms |
//! | `x-ackline-attempt` | long long | deliveries that ENDED before this copy was published |
//! | `x-ackline-last-error` | long string | the last nack's error |
//! | `x-ackline-first-failure` | long long | Unix ms of the first failed delivery |
//! | `x-ackline-not-before` | long long | Unix ms before which a delayed copy must not be handed out |
//!
//! **Attempt.** `attempt = x-ackline-attempt + broker redeliveries + 1`, where broker
//! redeliveries is the quorum queue's `x-delivery-count` (how many times RabbitMQ returned this
//! copy to the queue: a `basic.nack(requeue)` after a lease expiry, a closed channel, a dead
//! connection), or, where that header is absent (classic queues), 1 if the `redelivered` flag
//! is set and 0 otherwise; since that flag does not grow, the consumer republishes a
//! redelivered classic-queue message with `x-ackline-attempt` = attempt - 1 (confirmed, then
//! acks it) before handing it out, so every return is counted. ackline never returns a message with `requeue` on a nack with a
//! delay: it publishes a new copy (to a delay queue, or straight back to the main queue for a
//! zero delay) with `x-ackline-attempt` = the delivery's attempt, confirmed, then acks the old
//! copy. The new copy starts with no `x-delivery-count`, so the sum stays exact across requeues,
//! restarts, reconnections and delayed republishes.
//!
//! **Messages from other producers.** A message with a non-empty `message_id` and none of
//! these headers is an ackline message with that id (attempt from `x-delivery-count`,
//! `enqueued_at` from `timestamp` or the time it is first read). One with no id at all is
//! *adopted* ([`Envelope::decode_or_adopt`]): it gets a new random id (`amqp-` + 32 hex
//! digits) and the consumer republishes it with that id, confirmed, before acking it; the
//! payload and its own headers are kept.
//!
//! Invariant: an attempt never goes backwards for a message, and every delivery that ends
//! without a settlement (crash, lease expiry, channel loss) is counted by the broker.

use std::time::{SystemTime, UNIX_EPOCH};

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};

pub(crate) const ID: &str = "x-ackline-id";
pub(crate) const HEADERS: &str = "x-ackline-headers";
pub(crate) const ENQUEUED_AT: &str = "x-ackline-enqueued-at";
pub(crate) const ATTEMPT: &str = "x-ackline-attempt";
pub(crate) const LAST_ERROR: &str = "x-ackline-last-error";
pub(crate) const FIRST_FAILURE: &str = "x-ackline-first-failure";
pub(crate) const NOT_BEFORE: &str = "x-ackline-not-before";
/// RabbitMQ's count of returns to a quorum queue.
pub(crate) const DELIVERY_COUNT: &str = "x-delivery-count";

/// Unix ms now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// An ackline message as carried by RabbitMQ.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Envelope {
    pub id: String,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
    pub enqueued_at: u64,
    /// Deliveries that ended before this copy was published.
    pub ended: u32,
    pub last_error: Option<String>,
    pub first_failure: Option<u64>,
    pub not_before: Option<u64>,
    /// The rest of the AMQP headers (dead-letter entries keep theirs here).
    pub extra: Vec<(String, AMQPValue)>,
}

impl Envelope {
    /// A fresh message.
    pub fn new(id: String, headers: Vec<(String, String)>, payload: Vec<u8>) -> Self {
        Envelope {
            id,
            headers,
            payload,
            enqueued_at: now_ms(),
            ended: 0,
            last_error: None,
            first_failure: None,
            not_before: None,
            extra: Vec::new(),
        }
    }

    /// The AMQP properties carrying this envelope (persistent).
    pub fn properties(&self) -> BasicProperties {
        let mut t = FieldTable::default();
        // Each header costs RabbitMQ work on every message (about 10 % of a quorum queue's
        // throughput for these two): the id goes in the header only when `message_id` cannot
        // carry it, and the ackline headers only when there are any.
        let id_in_message_id = !self.id.is_empty() && self.id.len() <= 255;
        if !id_in_message_id {
            t.insert(ID.into(), long_string(&self.id));
        }
        if !self.headers.is_empty() {
            let pairs: Vec<AMQPValue> = self
                .headers
                .iter()
                .map(|(k, v)| {
                    AMQPValue::FieldArray(FieldArray::from(vec![long_string(k), long_string(v)]))
                })
                .collect();
            t.insert(
                HEADERS.into(),
                AMQPValue::FieldArray(FieldArray::from(pairs)),
            );
        }
        t.insert(ENQUEUED_AT.into(), int(self.enqueued_at));
        if self.ended > 0 {
            t.insert(ATTEMPT.into(), int(u64::from(self.ended)));
        }
        if let Some(e) = &self.last_error {
            t.insert(LAST_ERROR.into(), long_string(e));
        }
        if let Some(f) = self.first_failure {
            t.insert(FIRST_FAILURE.into(), int(f));
        }
        if let Some(n) = self.not_before {
            t.insert(NOT_BEFORE.into(), int(n));
        }
        for (k, v) in &self.extra {
            t.insert(ShortString::from(k.as_str()), v.clone());
        }
        let mut p = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(t)
            .with_timestamp(self.enqueued_at / 1000);
        if id_in_message_id {
            p = p.with_message_id(ShortString::from(self.id.as_str()));
        }
        p
    }

    /// Reads a delivered message. `None` when it carries no id at all (not ackline's, and no
    /// `message_id` either): see [`Envelope::decode_or_adopt`].
    pub fn decode(props: &BasicProperties, payload: Vec<u8>) -> Option<Self> {
        let id = id_of(props)?;
        Some(Self::read(props, payload, id))
    }

    /// Reads a delivered message; one that carries no id (published by another AMQP producer
    /// without `message_id`) gets a new one, [`adopted_id`], and `adopted` is true. The payload
    /// is kept either way.
    pub fn decode_or_adopt(props: &BasicProperties, payload: Vec<u8>) -> (Self, bool) {
        match id_of(props) {
            Some(id) => (Self::read(props, payload, id), false),
            None => (Self::read(props, payload, adopted_id()), true),
        }
    }

    fn read(props: &BasicProperties, payload: Vec<u8>, id: String) -> Self {
        let empty = FieldTable::default();
        let t = props.headers().as_ref().unwrap_or(&empty);
        let headers = match t.inner().get(HEADERS) {
            Some(AMQPValue::FieldArray(a)) => a
                .as_slice()
                .iter()
                .filter_map(|pair| match pair {
                    AMQPValue::FieldArray(kv) => match kv.as_slice() {
                        [k, v] => Some((value_string(k)?, value_string(v)?)),
                        _ => None,
                    },
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        // A message from another producer may carry neither: then the time it is first read
        // (kept from then on, since a republished copy carries it in the header).
        let enqueued_at = get_u64(t, ENQUEUED_AT)
            .or_else(|| props.timestamp().map(|s| s.saturating_mul(1000)))
            .unwrap_or_else(now_ms);
        let extra = t
            .inner()
            .iter()
            .filter(|(k, _)| !k.as_str().starts_with("x-ackline-") && !is_broker_header(k.as_str()))
            .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
            .collect();
        Envelope {
            id,
            headers,
            payload,
            enqueued_at,
            ended: get_u64(t, ATTEMPT)
                .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
                .unwrap_or(0),
            last_error: get_string(t, LAST_ERROR),
            first_failure: get_u64(t, FIRST_FAILURE),
            not_before: get_u64(t, NOT_BEFORE),
            extra,
        }
    }
}

/// The id a message carries: `x-ackline-id` (ackline's own, which may be empty), else a
/// non-empty `message_id`.
fn id_of(props: &BasicProperties) -> Option<String> {
    let empty = FieldTable::default();
    let t = props.headers().as_ref().unwrap_or(&empty);
    get_string(t, ID).or_else(|| {
        props
            .message_id()
            .as_ref()
            .map(|s| s.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    })
}

/// A new id for an adopted message: `amqp-` and 128 random bits in hex. Random rather than
/// derived from the content, because two byte-identical lines are two lines (see
/// `docs/rabbitmq.md`, "Messages from other producers").
pub(crate) fn adopted_id() -> String {
    format!(
        "amqp-{:016x}{:016x}",
        crate::connection::random_u64(),
        crate::connection::random_u64()
    )
}

/// Headers RabbitMQ adds itself (dropped when ackline republishes a copy).
fn is_broker_header(k: &str) -> bool {
    k == DELIVERY_COUNT
        || k == "x-death"
        || k.starts_with("x-first-death-")
        || k.starts_with("x-last-death-")
}

/// `attempt = x-ackline-attempt + broker redeliveries + 1` (see the module doc).
pub(crate) fn attempt_of(props: &BasicProperties, redelivered: bool) -> u32 {
    let empty = FieldTable::default();
    let t = props.headers().as_ref().unwrap_or(&empty);
    let ended = get_u64(t, ATTEMPT).unwrap_or(0);
    let broker = get_u64(t, DELIVERY_COUNT).unwrap_or(u64::from(redelivered));
    u32::try_from(ended.saturating_add(broker).saturating_add(1)).unwrap_or(u32::MAX)
}

pub(crate) fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

pub(crate) fn int(v: u64) -> AMQPValue {
    AMQPValue::LongLongInt(i64::try_from(v).unwrap_or(i64::MAX))
}

pub(crate) fn value_string(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

pub(crate) fn value_u64(v: &AMQPValue) -> Option<u64> {
    let n: i128 = match v {
        AMQPValue::ShortShortInt(n) => (*n).into(),
        AMQPValue::ShortShortUInt(n) => (*n).into(),
        AMQPValue::ShortInt(n) => (*n).into(),
        AMQPValue::ShortUInt(n) => (*n).into(),
        AMQPValue::LongInt(n) => (*n).into(),
        AMQPValue::LongUInt(n) => (*n).into(),
        AMQPValue::LongLongInt(n) => (*n).into(),
        AMQPValue::Timestamp(n) => (*n).into(),
        AMQPValue::LongString(_) | AMQPValue::ShortString(_) => {
            value_string(v)?.trim().parse::<i128>().ok()?
        }
        _ => return None,
    };
    u64::try_from(n).ok()
}

pub(crate) fn get_string(t: &FieldTable, k: &str) -> Option<String> {
    t.inner().get(k).and_then(value_string)
}

pub(crate) fn get_u64(t: &FieldTable, k: &str) -> Option<u64> {
    t.inner().get(k).and_then(value_u64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn with(h: &[(&str, AMQPValue)]) -> BasicProperties {
        let mut t = FieldTable::default();
        for (k, v) in h {
            t.insert((*k).into(), v.clone());
        }
        BasicProperties::default().with_headers(t)
    }

    #[test]
    fn attempt_adds_ended_and_broker_returns() {
        assert_eq!(attempt_of(&BasicProperties::default(), false), 1);
        assert_eq!(attempt_of(&BasicProperties::default(), true), 2);
        assert_eq!(attempt_of(&with(&[(DELIVERY_COUNT, int(2))]), true), 3);
        assert_eq!(
            attempt_of(&with(&[(ATTEMPT, int(4)), (DELIVERY_COUNT, int(1))]), true),
            6
        );
        assert_eq!(attempt_of(&with(&[(ATTEMPT, int(4))]), false), 5);
    }

    #[test]
    fn envelope_round_trips() {
        let mut e = Envelope::new(
            "id-1".into(),
            vec![("a".into(), "1".into()), ("a".into(), "2".into())],
            b"line".to_vec(),
        );
        e.ended = 2;
        e.last_error = Some("boom".into());
        e.first_failure = Some(7);
        let p = e.properties();
        assert_eq!(p.delivery_mode(), &Some(2));
        let back = Envelope::decode(&p, b"line".to_vec()).unwrap();
        assert_eq!(back, e);
        assert_eq!(attempt_of(&p, false), 3);
    }

    #[test]
    fn a_short_id_and_no_headers_send_one_header() {
        let e = Envelope::new("id-2".into(), Vec::new(), b"x".to_vec());
        let p = e.properties();
        assert_eq!(p.message_id().as_ref().unwrap().as_str(), "id-2");
        let t = p.headers().as_ref().unwrap();
        assert_eq!(t.inner().len(), 1);
        assert!(t.contains_key(ENQUEUED_AT));
        assert_eq!(Envelope::decode(&p, b"x".to_vec()).unwrap(), e);
    }

    #[test]
    fn the_earlier_format_still_decodes() {
        // Messages published before the id moved to `message_id`: the id in the header wins.
        let mut t = FieldTable::default();
        t.insert(ID.into(), long_string("full-id"));
        t.insert(
            HEADERS.into(),
            AMQPValue::FieldArray(FieldArray::from(vec![])),
        );
        t.insert(ENQUEUED_AT.into(), int(5));
        let p = BasicProperties::default()
            .with_headers(t)
            .with_message_id("copy".into());
        let e = Envelope::decode(&p, Vec::new()).unwrap();
        assert_eq!((e.id.as_str(), e.enqueued_at), ("full-id", 5));
        assert!(e.headers.is_empty() && e.extra.is_empty());
    }

    #[test]
    fn an_empty_id_stays_in_the_header() {
        let p = Envelope::new(String::new(), Vec::new(), Vec::new()).properties();
        assert!(p.message_id().is_none());
        assert_eq!(Envelope::decode(&p, Vec::new()).unwrap().id, "");
    }

    #[test]
    fn a_long_id_stays_in_the_header() {
        let e = Envelope::new("x".repeat(300), Vec::new(), Vec::new());
        let p = e.properties();
        assert!(p.message_id().is_none());
        assert_eq!(Envelope::decode(&p, Vec::new()).unwrap().id.len(), 300);
    }

    #[test]
    fn foreign_messages_without_an_id_are_adopted_with_their_payload() {
        assert!(Envelope::decode(&BasicProperties::default(), b"x".to_vec()).is_none());
        let mut t = FieldTable::default();
        t.insert("their-header".into(), long_string("v"));
        let p = BasicProperties::default().with_headers(t);
        let (a, adopted) = Envelope::decode_or_adopt(&p, b"line".to_vec());
        let (b, _) = Envelope::decode_or_adopt(&p, b"line".to_vec());
        assert!(adopted);
        assert_eq!(a.payload, b"line");
        assert!(a.id.starts_with("amqp-") && a.id.len() == 37, "{}", a.id);
        // Two identical lines are two lines: two ids.
        assert_ne!(a.id, b.id);
        assert!(a.enqueued_at > 0);
        assert_eq!(a.extra.len(), 1);
        // The adopted copy carries its id: read again, it is the same message.
        let again = Envelope::decode_or_adopt(&a.properties(), a.payload.clone());
        assert_eq!(again, (a, false));
        // An empty message_id is no id.
        let p = BasicProperties::default().with_message_id("".into());
        assert!(Envelope::decode_or_adopt(&p, Vec::new()).1);
    }

    #[test]
    fn a_foreign_message_id_is_the_id() {
        let p = BasicProperties::default().with_message_id("m".into());
        let (e, adopted) = Envelope::decode_or_adopt(&p, b"y".to_vec());
        assert!(!adopted);
        assert_eq!((e.id.as_str(), e.payload.as_slice()), ("m", &b"y"[..]));
        assert_eq!(attempt_of(&p, false), 1);
    }
}
