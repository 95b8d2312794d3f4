//! How an ackline message travels in a JetStream message: headers in, headers out.
//!
//! | header | meaning |
//! | --- | --- |
//! | `Nats-Msg-Id` | the server's deduplication key. On a publish, the message id (`encode_id`); on a replay `ackline-replay:<dlq stream>:<seq>`; on a dead-letter copy `ackline-dlq:<stream>:<seq>`, so a retried copy is absorbed too |
//! | `Ackline-Id` | the message id when `Nats-Msg-Id` is not it (replays, dead-letter copies) |
//! | `Ackline-Headers` | the message's headers, in order and with duplicates: a JSON array of `[name, value]` pairs; absent when there are none |
//! | `Ackline-Enqueued-At` | Unix ms of the first publish, on copies (a first publish uses the stream's own timestamp) |
//! | `Ackline-Attempts`, `Ackline-First-Failure`, `Ackline-Last-Failure`, `Ackline-Reason`, `Ackline-Last-Error`, `Ackline-Source-Seq` | dead-letter copies only (reason and error as JSON strings) |
//!
//! **Ids in headers.** A header value cannot hold a line break, and NATS trims the blanks
//! around it, so an id that is empty, has a control character or outer blanks, or starts with
//! `~json:` travels as `~json:` followed by its JSON string; every other id travels as is.
//! The two forms cannot collide (an id sent as is never starts with `~json:`).
//!
//! **Messages from other producers.** Headers other than `Nats-*` and `Ackline-*` become the
//! delivery's headers (after ackline's own, sorted by name: NATS does not keep their order). A
//! message with no id at all gets `nats:<stream>:<sequence>`, stable across its redeliveries
//! because the stream sequence never changes (no republish needed, unlike AMQP).
//!
//! **Delivery metadata** comes from the reply subject of a delivery (`AckInfo::parse`): the
//! stream sequence, the server's delivery count (the attempt) and the publish time.
//!
//! Invariant: decoding never panics; a header that does not decode reads as absent.

use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;

pub(crate) const MSG_ID: &str = "Nats-Msg-Id";
pub(crate) const ID: &str = "Ackline-Id";
pub(crate) const HEADERS: &str = "Ackline-Headers";
pub(crate) const ENQUEUED_AT: &str = "Ackline-Enqueued-At";
pub(crate) const ATTEMPTS: &str = "Ackline-Attempts";
pub(crate) const FIRST_FAILURE: &str = "Ackline-First-Failure";
pub(crate) const LAST_FAILURE: &str = "Ackline-Last-Failure";
pub(crate) const REASON: &str = "Ackline-Reason";
pub(crate) const LAST_ERROR: &str = "Ackline-Last-Error";
pub(crate) const SOURCE_SEQ: &str = "Ackline-Source-Seq";

const JSON_PREFIX: &str = "~json:";

/// Unix ms now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// An id as a header value (see the module doc).
pub(crate) fn encode_id(id: &str) -> String {
    let plain = !id.is_empty()
        && !id.starts_with(JSON_PREFIX)
        && !id.chars().any(char::is_control)
        && id.trim() == id;
    if plain {
        id.to_owned()
    } else {
        format!(
            "{JSON_PREFIX}{}",
            serde_json::to_string(id).unwrap_or_default()
        )
    }
}

/// The id a header value carries.
pub(crate) fn decode_id(v: &str) -> Option<String> {
    match v.strip_prefix(JSON_PREFIX) {
        Some(json) => serde_json::from_str(json).ok(),
        None => Some(v.to_owned()),
    }
}

/// A string as a header value (JSON: no line breaks, blanks kept).
pub(crate) fn encode_text(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

fn get<'a>(h: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    h?.get(name).map(|v| v.as_str())
}

fn get_u64(h: Option<&HeaderMap>, name: &str) -> Option<u64> {
    get(h, name)?.trim().parse().ok()
}

fn get_text(h: Option<&HeaderMap>, name: &str) -> Option<String> {
    serde_json::from_str(get(h, name)?).ok()
}

/// Adds `name: value` (values with a line break are impossible here: every value is an
/// encoded id, a number or JSON).
pub(crate) fn put(h: &mut HeaderMap, name: &'static str, value: &str) {
    h.insert(name, async_nats::HeaderValue::from_lossy(value));
}

/// The headers of a message: ackline's pairs as JSON (when there are any).
pub(crate) fn put_headers(h: &mut HeaderMap, pairs: &[(String, String)]) {
    if !pairs.is_empty() {
        let json = serde_json::to_string(pairs).unwrap_or_default();
        put(h, HEADERS, &json);
    }
}

/// What ackline reads from a message's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    /// The message id, if the message carries one.
    pub id: Option<String>,
    pub headers: Vec<(String, String)>,
    /// `Ackline-Enqueued-At`, if present.
    pub enqueued_at: Option<u64>,
}

impl Envelope {
    pub fn decode(h: Option<&HeaderMap>) -> Envelope {
        let id = get(h, ID).or_else(|| get(h, MSG_ID)).and_then(decode_id);
        let mut headers: Vec<(String, String)> = get(h, HEADERS)
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_default();
        if let Some(h) = h {
            let mut foreign: Vec<(String, String)> = Vec::new();
            for (name, values) in h.iter() {
                let n: &str = name.as_ref();
                let ours = |prefix: &str| {
                    n.get(..prefix.len())
                        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
                };
                if ours("nats-") || ours("ackline-") {
                    continue;
                }
                for v in values {
                    foreign.push((n.to_owned(), v.as_str().to_owned()));
                }
            }
            foreign.sort();
            headers.extend(foreign);
        }
        Envelope {
            id,
            headers,
            enqueued_at: get_u64(h, ENQUEUED_AT),
        }
    }
}

/// The dead-letter fields of a dead-letter copy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct DeadFields {
    pub attempts: u32,
    pub first_failure: u64,
    pub last_failure: u64,
    pub reason: String,
    pub last_error: String,
}

impl DeadFields {
    pub fn put(&self, h: &mut HeaderMap) {
        put(h, ATTEMPTS, &self.attempts.to_string());
        put(h, FIRST_FAILURE, &self.first_failure.to_string());
        put(h, LAST_FAILURE, &self.last_failure.to_string());
        put(h, REASON, &encode_text(&self.reason));
        put(h, LAST_ERROR, &encode_text(&self.last_error));
    }

    pub fn decode(h: Option<&HeaderMap>) -> DeadFields {
        DeadFields {
            attempts: get_u64(h, ATTEMPTS)
                .and_then(|a| u32::try_from(a).ok())
                .unwrap_or(0),
            first_failure: get_u64(h, FIRST_FAILURE).unwrap_or(0),
            last_failure: get_u64(h, LAST_FAILURE).unwrap_or(0),
            reason: get_text(h, REASON).unwrap_or_default(),
            last_error: get_text(h, LAST_ERROR).unwrap_or_default(),
        }
    }
}

/// The metadata of a delivery, from its reply subject
/// (`$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>`, or
/// the form with `<domain>.<account hash>.` after `$JS.ACK.` and an optional trailing token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AckInfo {
    pub delivered: u64,
    pub stream_seq: u64,
    /// The publish time, Unix ms.
    pub published_ms: u64,
}

impl AckInfo {
    pub fn parse(reply: &str) -> Option<AckInfo> {
        let rest = reply.strip_prefix("$JS.ACK.")?;
        let tokens: Vec<&str> = rest.split('.').collect();
        // v1: stream, consumer, delivered, sseq, cseq, ts, pending (7);
        // v2: domain, hash, stream, consumer, delivered, sseq, cseq, ts, pending[, token].
        let base = match tokens.len() {
            7 => 2,
            9 | 10 => 4,
            _ => return None,
        };
        let num = |i: usize| tokens.get(i)?.parse::<u64>().ok();
        Some(AckInfo {
            delivered: num(base)?,
            stream_seq: num(base + 1)?,
            published_ms: num(base + 3)? / 1_000_000,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_round_trip_and_never_collide() {
        for id in [
            "line-1",
            "file:1:2:abc:0:17",
            "",
            " padded ",
            "a\nb",
            "a\\nb",
            "~json:\"x\"",
            "é",
        ] {
            let enc = encode_id(id);
            assert!(!enc.contains(['\r', '\n']), "{enc:?}");
            assert_eq!(enc.trim(), enc);
            assert_eq!(decode_id(&enc).unwrap(), id);
        }
        assert_ne!(encode_id("a\nb"), encode_id("a\\nb"));
        assert_eq!(encode_id("plain"), "plain");
    }

    #[test]
    fn envelope_reads_ackline_and_foreign_headers() {
        let mut h = HeaderMap::new();
        put(&mut h, MSG_ID, "m-1");
        put_headers(
            &mut h,
            &[
                ("n".into(), "1".into()),
                ("n".into(), "2".into()),
                ("x y".into(), "a\nb".into()),
            ],
        );
        h.insert("Their-Header", "v");
        let e = Envelope::decode(Some(&h));
        assert_eq!(e.id.as_deref(), Some("m-1"));
        assert_eq!(
            e.headers,
            vec![
                ("n".to_owned(), "1".to_owned()),
                ("n".into(), "2".into()),
                ("x y".into(), "a\nb".into()),
                ("Their-Header".into(), "v".into())
            ]
        );
        put(&mut h, ID, &encode_id("real id"));
        assert_eq!(Envelope::decode(Some(&h)).id.as_deref(), Some("real id"));
        let none = Envelope::decode(None);
        assert_eq!((none.id, none.headers.len()), (None, 0));
    }

    #[test]
    fn dead_fields_round_trip() {
        let d = DeadFields {
            attempts: 3,
            first_failure: 5,
            last_failure: 9,
            reason: "bad\nline".into(),
            last_error: "".into(),
        };
        let mut h = HeaderMap::new();
        d.put(&mut h);
        assert_eq!(DeadFields::decode(Some(&h)), d);
        assert_eq!(DeadFields::decode(None), DeadFields::default());
    }

    #[test]
    fn ack_subjects_of_both_forms() {
        let v1 = AckInfo::parse("$JS.ACK.logs.ackline.3.100.7.1790230470084404000.42").unwrap();
        assert_eq!(
            v1,
            AckInfo {
                delivered: 3,
                stream_seq: 100,
                published_ms: 1_790_230_470_084
            }
        );
        let v2 =
            AckInfo::parse("$JS.ACK.hub.szMp.logs.ackline.2.50.9.1790230470084404000.0").unwrap();
        assert_eq!((v2.delivered, v2.stream_seq), (2, 50));
        let v2t =
            AckInfo::parse("$JS.ACK._.szMp.logs.ackline.1.1.1.1790230470084404000.1.tok").unwrap();
        assert_eq!(v2t.delivered, 1);
        assert!(AckInfo::parse("$JS.ACK.a.b.c").is_none());
        assert!(AckInfo::parse("_INBOX.x").is_none());
        assert!(AckInfo::parse("$JS.ACK.logs.ackline.x.100.7.1.42").is_none());
    }
}
