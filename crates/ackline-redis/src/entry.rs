//! Stream entries: how a message is laid out in fields, and how replies are read back.
//!
//! A message is `XADD <q> * id <id> enqueued_at <unix ms> [headers <json>] payload <bytes>`;
//! copies made by a move add `attempts` (deliveries that ended before the copy),
//! `first_failure` and `last_error`; dead letters add `last_failure` and `reason`. `headers` is
//! a JSON array of `[name, value]` pairs (order and duplicates kept), sent only when there are
//! headers. Field names are readable on purpose (`XRANGE logs - +` in `redis-cli` shows what is
//! queued); Redis stores an entry's field names once per stream node when they repeat.
//!
//! Entries of other producers are read as well, never dropped: the id is the `id` field or
//! `redis-<entry id>` (an entry id is stable, so redeliveries keep it), `enqueued_at` the field or
//! the entry id's time, and the payload the `payload` field, else the only other field's value,
//! else a JSON object of the other fields in their order. Moves keep such fields as they are,
//! so every delivery of the entry reads the same.
//!
//! Invariant: no reply from Redis makes this module panic; a malformed reply is an error value.

use ackline_broker::{DeadLetter, Message};
use redis::Value;

/// Fields the backend owns (the others belong to another producer's entry).
const RESERVED: [&[u8]; 9] = [
    b"id",
    b"enqueued_at",
    b"headers",
    b"attempts",
    b"first_failure",
    b"last_error",
    b"last_failure",
    b"reason",
    b"payload",
];

/// The `XADD` field list of a new message (after `<key> *`).
pub(crate) fn fields(m: &Message, enqueued_at: u64) -> Vec<Vec<u8>> {
    let mut f: Vec<Vec<u8>> = Vec::with_capacity(8);
    f.push(b"id".to_vec());
    f.push(m.id.as_bytes().to_vec());
    f.push(b"enqueued_at".to_vec());
    f.push(enqueued_at.to_string().into_bytes());
    if !m.headers.is_empty() {
        f.push(b"headers".to_vec());
        f.push(encode_headers(&m.headers).into_bytes());
    }
    f.push(b"payload".to_vec());
    f.push(m.payload.clone());
    f
}

pub(crate) fn encode_headers(h: &[(String, String)]) -> String {
    let pairs: Vec<[&str; 2]> = h.iter().map(|(k, v)| [k.as_str(), v.as_str()]).collect();
    serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".into())
}

fn decode_headers(raw: &[u8]) -> Vec<(String, String)> {
    match serde_json::from_slice::<Vec<(String, String)>>(raw) {
        Ok(v) => v,
        // Not ours: kept as one header rather than dropped.
        Err(_) => vec![("headers".into(), String::from_utf8_lossy(raw).into_owned())],
    }
}

/// A stream entry as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The stream entry id (`<ms>-<seq>`).
    pub eid: String,
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    fn get(&self, k: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(f, _)| f == k.as_bytes())
            .map(|(_, v)| v.as_slice())
    }

    fn get_str(&self, k: &str) -> Option<String> {
        self.get(k).map(|v| String::from_utf8_lossy(v).into_owned())
    }

    fn get_u64(&self, k: &str) -> Option<u64> {
        std::str::from_utf8(self.get(k)?).ok()?.trim().parse().ok()
    }

    /// The message id (see the module doc).
    pub fn id(&self) -> String {
        self.get_str("id")
            .unwrap_or_else(|| format!("redis-{}", self.eid))
    }

    /// `enqueued_at`, or the entry id's time.
    pub fn enqueued_at(&self) -> u64 {
        self.get_u64("enqueued_at")
            .unwrap_or_else(|| entry_ms(&self.eid))
    }

    /// Deliveries that ended before this copy was made.
    pub fn attempts_before(&self) -> u32 {
        self.get_u64("attempts")
            .map(|a| u32::try_from(a).unwrap_or(u32::MAX))
            .unwrap_or(0)
    }

    pub fn headers(&self) -> Vec<(String, String)> {
        self.get("headers").map(decode_headers).unwrap_or_default()
    }

    /// The payload (see the module doc for other producers' entries).
    pub fn payload(&self) -> Vec<u8> {
        if let Some(p) = self.get("payload") {
            return p.to_vec();
        }
        let foreign: Vec<&(Vec<u8>, Vec<u8>)> = self
            .fields
            .iter()
            .filter(|(k, _)| !RESERVED.contains(&k.as_slice()))
            .collect();
        match foreign.as_slice() {
            [] => Vec::new(),
            [(_, v)] => v.clone(),
            many => {
                let mut s = String::from("{");
                for (i, (k, v)) in many.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    let k = serde_json::Value::String(String::from_utf8_lossy(k).into_owned());
                    let v = serde_json::Value::String(String::from_utf8_lossy(v).into_owned());
                    s.push_str(&format!("{k}:{v}"));
                }
                s.push('}');
                s.into_bytes()
            }
        }
    }

    /// The payload, moved out of the entry when it has a `payload` field.
    pub fn take_payload(&mut self) -> Vec<u8> {
        match self.fields.iter_mut().find(|(f, _)| f == b"payload") {
            Some((_, v)) => std::mem::take(v),
            None => self.payload(),
        }
    }

    /// As a dead letter.
    pub fn dead_letter(&self) -> Option<DeadLetter> {
        Some(DeadLetter {
            key: dlq_key(&self.eid)?,
            id: self.id(),
            headers: self.headers(),
            payload: self.payload(),
            enqueued_at: self.enqueued_at(),
            attempts: self.attempts_before(),
            first_failure: self.get_u64("first_failure").unwrap_or(0),
            last_failure: self
                .get_u64("last_failure")
                .unwrap_or_else(|| entry_ms(&self.eid)),
            reason: self.get_str("reason").unwrap_or_default(),
            last_error: self.get_str("last_error").unwrap_or_default(),
        })
    }
}

/// The time part of an entry id.
pub(crate) fn entry_ms(eid: &str) -> u64 {
    eid.split('-')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0)
}

/// Bits of a dead-letter key given to the entry id's sequence number.
const SEQ_BITS: u32 = 22;

/// A dead letter's key: its entry id `<ms>-<seq>` as `ms << 22 | seq` (ordered like the
/// entries). `None` for ids outside that range (a sequence past 4 million in one millisecond).
pub(crate) fn dlq_key(eid: &str) -> Option<u64> {
    let (ms, seq) = eid.split_once('-')?;
    let (ms, seq): (u64, u64) = (ms.parse().ok()?, seq.parse().ok()?);
    if seq >= 1 << SEQ_BITS || ms >= 1 << (64 - SEQ_BITS) {
        return None;
    }
    Some(ms << SEQ_BITS | seq)
}

/// The entry id of a dead-letter key.
pub(crate) fn dlq_eid(key: u64) -> String {
    format!("{}-{}", key >> SEQ_BITS, key & ((1 << SEQ_BITS) - 1))
}

/// Why a reply could not be read.
pub(crate) fn malformed(what: &str, v: &Value) -> String {
    let mut shown = format!("{v:?}");
    if shown.len() > 200 {
        let mut cut = 200;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        shown.truncate(cut);
        shown.push('…');
    }
    format!("unexpected reply to {what}: {shown}")
}

pub(crate) fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.as_bytes().to_vec()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        Value::Okay => Some(b"OK".to_vec()),
        _ => None,
    }
}

pub(crate) fn text(v: &Value) -> Option<String> {
    bytes(v).and_then(|b| String::from_utf8(b).ok())
}

pub(crate) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other)?.trim().parse().ok(),
    }
}

pub(crate) fn array(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Array(a) | Value::Set(a) => Some(a),
        _ => None,
    }
}

pub(crate) fn owned_bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        Value::Okay => Some(b"OK".to_vec()),
        _ => None,
    }
}

pub(crate) fn owned_array(v: Value) -> Option<Vec<Value>> {
    match v {
        Value::Array(a) | Value::Set(a) => Some(a),
        _ => None,
    }
}

/// The field pairs of a flat `[field, value, ...]` list (or a RESP3 map), taken by value.
pub(crate) fn field_pairs(v: Value) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    match v {
        Value::Map(m) => m
            .into_iter()
            .map(|(k, v)| Some((owned_bytes(k)?, owned_bytes(v)?)))
            .collect(),
        other => {
            let a = owned_array(other)?;
            if a.len() % 2 != 0 {
                return None;
            }
            let mut out = Vec::with_capacity(a.len() / 2);
            let mut it = a.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                out.push((owned_bytes(k)?, owned_bytes(v)?));
            }
            Some(out)
        }
    }
}

/// One `[id, [field, value, ...]]` entry, taken by value (no copy of its payload).
pub(crate) fn entry(v: Value) -> Option<Entry> {
    let mut parts = owned_array(v)?.into_iter();
    let eid = String::from_utf8(owned_bytes(parts.next()?)?).ok()?;
    let fields = field_pairs(parts.next()?)?;
    Some(Entry { eid, fields })
}

/// The entries of an `XRANGE` reply (or the entry list of `XREADGROUP`/`XAUTOCLAIM`).
pub(crate) fn entries(v: Value) -> Option<Vec<Entry>> {
    match v {
        Value::Nil => Some(Vec::new()),
        other => owned_array(other)?.into_iter().map(entry).collect(),
    }
}

/// The entries of an `XREADGROUP` reply for one stream (`Nil` when the block timed out).
pub(crate) fn read_reply(v: Value) -> Option<Vec<Entry>> {
    match v {
        Value::Nil => Some(Vec::new()),
        Value::Map(m) => match m.into_iter().next() {
            Some((_, list)) => entries(list),
            None => Some(Vec::new()),
        },
        other => {
            let streams = owned_array(other)?;
            match streams.into_iter().next() {
                None => Some(Vec::new()),
                Some(s) => entries(owned_array(s)?.into_iter().nth(1)?),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn e(eid: &str, f: &[(&str, &[u8])]) -> Entry {
        Entry {
            eid: eid.into(),
            fields: f
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.to_vec()))
                .collect(),
        }
    }

    #[test]
    fn a_message_round_trips_through_its_fields() {
        let m = Message::new("m-1", b"\x00bin\xff".to_vec())
            .with_header("a", "1")
            .with_header("a", "2");
        let f = fields(&m, 1234);
        let pairs: Vec<(Vec<u8>, Vec<u8>)> =
            f.chunks(2).map(|c| (c[0].clone(), c[1].clone())).collect();
        assert_eq!(pairs.last().unwrap().0, b"payload", "payload last");
        let got = Entry {
            eid: "5-0".into(),
            fields: pairs,
        };
        assert_eq!(got.id(), "m-1");
        assert_eq!(got.enqueued_at(), 1234);
        assert_eq!(got.payload(), b"\x00bin\xff");
        assert_eq!(got.headers(), m.headers);
        assert_eq!(got.attempts_before(), 0);
        let plain = fields(&Message::new("x", "y"), 1);
        assert!(!plain.iter().any(|f| f == b"headers"), "no headers field");
    }

    #[test]
    fn entries_of_other_producers_keep_their_content() {
        let one = e("1700000000000-3", &[("line", b"hello")]);
        assert_eq!(one.id(), "redis-1700000000000-3");
        assert_eq!(one.enqueued_at(), 1_700_000_000_000);
        assert_eq!(one.payload(), b"hello");
        let many = e("9-0", &[("msg", b"a \"b\""), ("host", b"h1")]);
        assert_eq!(many.payload(), br#"{"msg":"a \"b\"","host":"h1"}"#);
        // A copy made by a move keeps the fields and adds ours: same payload.
        let copy = e(
            "10-0",
            &[
                ("msg", b"a \"b\""),
                ("host", b"h1"),
                ("id", b"redis-9-0"),
                ("enqueued_at", b"9"),
                ("attempts", b"1"),
            ],
        );
        assert_eq!(copy.payload(), many.payload());
        assert_eq!(copy.id(), many.id());
        assert_eq!(copy.attempts_before(), 1);
        let odd = e("1-0", &[("headers", b"not json")]);
        assert_eq!(odd.headers(), vec![("headers".into(), "not json".into())]);
    }

    #[test]
    fn dead_letter_keys_map_to_entry_ids_in_order() {
        let k = dlq_key("1700000000000-5").unwrap();
        assert_eq!(dlq_eid(k), "1700000000000-5");
        assert!(dlq_key("1700000000000-6").unwrap() > k);
        assert!(dlq_key("1700000000001-0").unwrap() > dlq_key("1700000000000-9").unwrap());
        assert_eq!(dlq_key("1-4194304"), None);
        assert_eq!(dlq_key("x"), None);
    }

    #[test]
    fn replies_are_read_without_panics() {
        assert_eq!(read_reply(Value::Nil), Some(vec![]));
        let reply = Value::Array(vec![Value::Array(vec![
            Value::BulkString(b"q".to_vec()),
            Value::Array(vec![Value::Array(vec![
                Value::BulkString(b"1-0".to_vec()),
                Value::Array(vec![
                    Value::BulkString(b"id".to_vec()),
                    Value::BulkString(b"a".to_vec()),
                ]),
            ])]),
        ])]);
        let mut got = read_reply(reply).unwrap();
        assert_eq!(got[0].id(), "a");
        assert_eq!(got[0].take_payload(), b"", "no payload and no other field");
        assert_eq!(read_reply(Value::Int(3)), None);
        assert_eq!(entry(Value::Array(vec![])), None);
    }
}
