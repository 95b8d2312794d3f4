//! The bodies in `openapi.json` against [`ackline_wire`]'s types, which the server and its
//! client (`ackline-http`) both read and write: samples of every body, built the way each side
//! builds them, must fit the documented schema (properties, required fields, types, enum
//! values), together cover every documented property and every value of `encoding`, `op` and
//! `result`; request bodies must read back as written, refuse a missing required field and
//! fill an absent optional one with its documented default.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ackline_broker::{DlqSelector, Message, SettleError, Settlement, Tag};
use ackline_wire as wire;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Where a body sits in the document.
#[derive(Debug, Clone, Copy)]
enum Body {
    Request,
    Response(&'static str),
}

/// A body: the route, where, and samples of it (with a reader for request bodies).
struct Case {
    method: &'static str,
    path: &'static str,
    body: Body,
    samples: Vec<Value>,
    read: Option<Reader>,
}

/// Reads a value as the wire type and writes it back (`Err` with serde's text).
type Reader = fn(&Value) -> Result<Value, String>;

fn read<T: Serialize + DeserializeOwned>(v: &Value) -> Result<Value, String> {
    let t: T = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(t).map_err(|e| e.to_string())
}

fn val(t: impl Serialize) -> Value {
    serde_json::to_value(t).unwrap()
}

fn tag(key: u64, attempt: u32) -> Tag {
    Tag {
        key,
        attempt,
        token: None,
    }
}

fn delivery(payload: &[u8]) -> wire::Delivery {
    wire::Delivery::from(ackline_broker::Delivery {
        tag: tag(3, 2),
        id: "m-1".into(),
        headers: vec![("input".into(), "file".into())],
        payload: payload.to_vec(),
        enqueued_at: 1_700_000_000_000,
    })
}

fn dead_letter(payload: &[u8]) -> wire::DeadLetter {
    wire::DeadLetter::from(ackline_broker::DeadLetter {
        key: 4,
        id: "m-2".into(),
        headers: vec![("k".into(), "v".into())],
        payload: payload.to_vec(),
        enqueued_at: 1,
        attempts: 5,
        first_failure: 2,
        last_failure: 3,
        reason: ackline_broker::REASON_MAX_ATTEMPTS.into(),
        last_error: "boom".into(),
    })
}

fn stats(queue: &str) -> wire::Stats {
    wire::Stats {
        queue: queue.into(),
        pending: 1,
        ready: 2,
        in_flight: 3,
        delayed: 4,
        dead_letters: 5,
        pending_bytes: 6,
        published: 7,
        delivered: 8,
        redelivered: 9,
        acked: 10,
        nacked: 11,
        dead_lettered: 12,
        lease_expired: 13,
    }
}

/// Every body of the lease and admin API, built as the client (requests) and the server
/// (responses) build them.
fn cases() -> Vec<Case> {
    let messages = vec![
        wire::NewMessage::from(Message::new("a", "text").with_header("h", "1")),
        wire::NewMessage::from(Message::new("b", vec![0xff, 0x00])),
        wire::NewMessage {
            id: None,
            headers: Vec::new(),
            payload: "no id".into(),
            encoding: wire::Encoding::Utf8,
        },
    ];
    let settlements = [
        Settlement::Ack,
        Settlement::Nack {
            delay: Duration::from_millis(250),
            error: "later".into(),
        },
        Settlement::Reject {
            reason: "bad".into(),
        },
        Settlement::Extend {
            lease: Duration::from_secs(60),
        },
    ];
    let items: Vec<wire::SettleItem> = settlements
        .into_iter()
        .map(|s| wire::SettleItem::new(&tag(1, 1), s))
        .collect();
    let results: Vec<wire::SettleResult> = [
        Ok(()),
        Err(SettleError::Stale {
            attempt: 1,
            current: 2,
        }),
        Err(SettleError::AlreadySettled),
        Err(SettleError::Unknown),
    ]
    .into_iter()
    .map(wire::SettleResult::from)
    .collect();
    let selectors: Vec<Value> = [
        DlqSelector::All,
        DlqSelector::Keys(vec![1, 2]),
        DlqSelector::Ids(vec!["a".into()]),
        DlqSelector::Matching("timeout".into()),
    ]
    .into_iter()
    .map(|s| val(wire::Selector::from(s)))
    .collect();
    let q = "/v1/queues/{queue}";
    let case = |method, path, body, samples, read| Case {
        method,
        path,
        body,
        samples,
        read,
    };
    vec![
        case(
            "post",
            "/v1/queues/{queue}/messages",
            Body::Request,
            vec![val(wire::PublishRequest { messages })],
            Some(read::<wire::PublishRequest>),
        ),
        case(
            "post",
            "/v1/queues/{queue}/messages",
            Body::Response("200"),
            vec![val(wire::Published { published: 3 })],
            None,
        ),
        case(
            "post",
            "/v1/queues/{queue}/sessions",
            Body::Request,
            vec![val(wire::OpenSession {
                prefetch: 10,
                lease_ms: 5_000,
            })],
            Some(read::<wire::OpenSession>),
        ),
        case(
            "post",
            "/v1/queues/{queue}/sessions",
            Body::Response("201"),
            vec![val(wire::Session {
                session: "s-1".into(),
                prefetch: 10,
                lease_ms: 5_000,
            })],
            None,
        ),
        case(
            "post",
            "/v1/queues/{queue}/sessions/{session}/receive",
            Body::Request,
            vec![val(wire::ReceiveRequest {
                max: 100,
                wait_ms: 1_000,
            })],
            Some(read::<wire::ReceiveRequest>),
        ),
        case(
            "post",
            "/v1/queues/{queue}/sessions/{session}/receive",
            Body::Response("200"),
            vec![val(wire::Deliveries {
                deliveries: vec![delivery(b"text"), delivery(&[0xfe, 0x01])],
            })],
            None,
        ),
        case(
            "post",
            "/v1/queues/{queue}/sessions/{session}/settle",
            Body::Request,
            vec![val(wire::SettleRequest { items })],
            Some(read::<wire::SettleRequest>),
        ),
        case(
            "post",
            "/v1/queues/{queue}/sessions/{session}/settle",
            Body::Response("200"),
            vec![val(wire::SettleResults { results })],
            None,
        ),
        case(
            "get",
            "/v1/queues/{queue}/dlq",
            Body::Response("200"),
            vec![val(wire::DeadLetterList {
                entries: vec![dead_letter(b"text"), dead_letter(&[0x80])],
            })],
            None,
        ),
        case(
            "get",
            "/v1/queues/{queue}/dlq/{key}",
            Body::Response("200"),
            vec![val(dead_letter(b"text"))],
            None,
        ),
        case(
            "post",
            "/v1/queues/{queue}/dlq/replay",
            Body::Request,
            selectors.clone(),
            Some(read::<wire::Selector>),
        ),
        case(
            "post",
            "/v1/queues/{queue}/dlq/replay",
            Body::Response("200"),
            vec![val(wire::Replayed { replayed: 2 })],
            None,
        ),
        case(
            "post",
            "/v1/queues/{queue}/dlq/purge",
            Body::Request,
            selectors,
            Some(read::<wire::Selector>),
        ),
        case(
            "post",
            "/v1/queues/{queue}/dlq/purge",
            Body::Response("200"),
            vec![val(wire::Purged { purged: 2 })],
            None,
        ),
        case(
            "get",
            "/v1/queues",
            Body::Response("200"),
            vec![val(wire::QueueList {
                queues: vec![stats("logs")],
            })],
            None,
        ),
        case(
            "get",
            "/v1/queues/{queue}/stats",
            Body::Response("200"),
            vec![val(stats("logs"))],
            None,
        ),
        case("put", q, Body::Response("200"), vec![val(stats("a"))], None),
        case("put", q, Body::Response("201"), vec![val(stats("b"))], None),
        case(
            "get",
            "/v1/queues/{queue}/stats",
            Body::Response("404"),
            vec![val(wire::ErrorBody {
                error: "not_found".into(),
                message: "no queue".into(),
            })],
            None,
        ),
    ]
}

/// A JSON pointer token.
fn token(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// What the samples showed of each object schema and each enum (by JSON pointer).
#[derive(Default)]
struct Seen {
    keys: BTreeMap<String, BTreeSet<String>>,
    values: BTreeMap<String, BTreeSet<String>>,
    errors: Vec<String>,
}

impl Seen {
    /// Follows a `$ref`: the pointer of the schema and the schema.
    fn resolve(doc: &Value, ptr: String) -> (String, &Value) {
        let schema = doc.pointer(&ptr).unwrap_or(&Value::Null);
        match schema["$ref"].as_str() {
            Some(r) => {
                let ptr = r.trim_start_matches('#').to_string();
                let schema = doc.pointer(&ptr).unwrap_or(&Value::Null);
                (ptr, schema)
            }
            None => (ptr, schema),
        }
    }

    /// Checks `v` against the schema at `ptr`, recording what it covers.
    fn check(&mut self, doc: &Value, ptr: String, v: &Value) {
        let (ptr, schema) = Self::resolve(doc, ptr);
        if schema.is_null() {
            self.errors.push(format!("{ptr}: no schema"));
            return;
        }
        let ty = schema["type"].as_str().unwrap_or("");
        let fits = match ty {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_u64() || v.is_i64(),
            "boolean" => v.is_boolean(),
            _ => true,
        };
        if !fits {
            self.errors.push(format!("{ptr}: {v} is not of type {ty}"));
            return;
        }
        if let Some(allowed) = schema["enum"].as_array() {
            if !allowed.contains(v) {
                self.errors
                    .push(format!("{ptr}: {v} is not one of {allowed:?}"));
            }
            self.values
                .entry(ptr.clone())
                .or_default()
                .insert(v.to_string());
        }
        if let Some(obj) = v.as_object() {
            let props = schema["properties"].as_object();
            for r in schema["required"].as_array().into_iter().flatten() {
                let r = r.as_str().unwrap_or_default();
                if !obj.contains_key(r) {
                    self.errors
                        .push(format!("{ptr}: required {r:?} missing in {v}"));
                }
            }
            self.keys
                .entry(ptr.clone())
                .or_default()
                .extend(obj.keys().cloned());
            for (k, field) in obj {
                if props.is_some_and(|p| p.contains_key(k)) {
                    let sub = format!("{ptr}/properties/{}", token(k));
                    self.check(doc, sub, field);
                } else {
                    self.errors
                        .push(format!("{ptr}: {k:?} is not documented ({v})"));
                }
            }
        }
        if let Some(items) = v.as_array() {
            for item in items {
                self.check(doc, format!("{ptr}/items"), item);
            }
        }
    }
}

fn body_pointer(c: &Case) -> String {
    let op = format!("/paths/{}/{}", token(c.path), c.method);
    match c.body {
        Body::Request => format!("{op}/requestBody/content/application~1json/schema"),
        Body::Response(code) => format!("{op}/responses/{code}/content/application~1json/schema"),
    }
}

#[test]
fn every_body_matches_the_shared_wire_types() {
    let doc: Value = serde_json::from_str(super::DOCUMENT).unwrap();
    let mut seen = Seen::default();
    for c in cases() {
        let ptr = body_pointer(&c);
        assert!(doc.pointer(&ptr).is_some(), "{ptr}: not in the document");
        for s in &c.samples {
            seen.check(&doc, ptr.clone(), s);
        }
    }
    assert!(seen.errors.is_empty(), "{:#?}", seen.errors);
    // Every property of every schema the samples reached is written by some sample...
    for (ptr, keys) in &seen.keys {
        let (_, schema) = Seen::resolve(&doc, ptr.clone());
        let documented: BTreeSet<String> = schema["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(keys, &documented, "{ptr}: properties written vs documented");
    }
    // ...and every value of the enums the client and server branch on.
    let mut covered = 0;
    for (ptr, values) in &seen.values {
        if !["/encoding", "/op", "/result"]
            .iter()
            .any(|end| ptr.ends_with(end))
        {
            continue;
        }
        covered += 1;
        let (_, schema) = Seen::resolve(&doc, ptr.clone());
        let documented: BTreeSet<String> = schema["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(Value::to_string)
            .collect();
        assert_eq!(values, &documented, "{ptr}: values written vs documented");
    }
    // encoding in NewMessage, Delivery and DeadLetter; op; result.
    assert_eq!(covered, 5, "{:?}", seen.values.keys());
}

#[test]
fn request_bodies_read_back_with_documented_required_fields_and_defaults() {
    let doc: Value = serde_json::from_str(super::DOCUMENT).unwrap();
    for c in cases() {
        let Some(read) = c.read else { continue };
        let (ptr, schema) = Seen::resolve(&doc, body_pointer(&c));
        let required: BTreeSet<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for sample in &c.samples {
            assert_eq!(read(sample).as_ref(), Ok(sample), "{ptr}: round trip");
            // Only the required fields: absent optional ones take their documented defaults.
            let mut minimal = sample.clone();
            if let Some(obj) = minimal.as_object_mut() {
                obj.retain(|k, _| required.contains(k.as_str()));
            }
            let filled = read(&minimal).unwrap_or_else(|e| panic!("{ptr}: {minimal}: {e}"));
            for (k, p) in schema["properties"].as_object().into_iter().flatten() {
                if let Some(default) = p.get("default") {
                    assert_eq!(&filled[k], default, "{ptr}: default of {k}");
                }
            }
            // Each required field is required.
            for r in &required {
                let mut without = sample.clone();
                without.as_object_mut().unwrap().remove(*r);
                assert!(read(&without).is_err(), "{ptr}: {without} read without {r}");
            }
        }
    }
    // The empty body of an open session reads as every default.
    assert_eq!(
        read::<wire::OpenSession>(&json!({})).unwrap(),
        json!({"prefetch": 1000, "lease_ms": 30000})
    );
}
