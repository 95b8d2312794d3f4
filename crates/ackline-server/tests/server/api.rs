//! The server over real HTTP: auth and scopes, limits, ingest formats and idempotency,
//! metrics names. Each test runs its own server on an ephemeral 127.0.0.1 port.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ackline_queue::QueueOptions;
use ackline_server::{Server, ServerConfig};

use crate::common::*;

/// Captures every tracing event's fields, to show no token is ever logged.
struct Capture(Arc<Mutex<String>>);

struct Visit<'a>(&'a mut String);

impl tracing::field::Visit for Visit<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut s = self.0.lock().unwrap();
        span.record(&mut Visit(&mut s));
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        values.record(&mut Visit(&mut self.0.lock().unwrap()));
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut s = self.0.lock().unwrap();
        event.record(&mut Visit(&mut s));
        s.push('\n');
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn captured() -> Arc<Mutex<String>> {
    static LOG: OnceLock<Arc<Mutex<String>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Mutex::new(String::new()));
        tracing::subscriber::set_global_default(Capture(log.clone())).unwrap();
        log
    })
    .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_scopes() {
    let log = captured();
    let s = start(with_tokens).await;
    let a = s.addr;
    let ndjson = b"{\"msg\":\"hi\"}\n";
    assert_eq!(http(a, "POST", "/v1/logs", &[], ndjson).await.status, 401);
    let wrong = bearer("not-a-token-at-all-xxxxxxxx");
    assert_eq!(
        http(a, "POST", "/v1/logs", &[("Authorization", &wrong)], ndjson)
            .await
            .status,
        401
    );
    let admin = bearer(ADMIN);
    let r = http(a, "POST", "/v1/logs", &[("Authorization", &admin)], ndjson).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("ingest"), "{}", r.body);
    let ingest = bearer(INGEST);
    let r = http(a, "POST", "/v1/logs", &[("Authorization", &ingest)], ndjson).await;
    assert_eq!(r.status, 202, "{}", r.body);
    // Each scope opens its own routes only.
    assert_eq!(
        http(a, "GET", "/v1/queues", &[("Authorization", &ingest)], b"")
            .await
            .status,
        403
    );
    assert_eq!(
        http(a, "GET", "/v1/queues", &[("Authorization", &admin)], b"")
            .await
            .status,
        200
    );
    assert_eq!(http(a, "GET", "/metrics", &[], b"").await.status, 401);
    let worker = bearer(WORKER);
    let r = http(
        a,
        "POST",
        "/v1/queues/logs/sessions",
        &[("Authorization", &worker)],
        b"{}",
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = http(
        a,
        "POST",
        "/v1/queues/logs/sessions",
        &[("Authorization", &ingest)],
        b"{}",
    )
    .await;
    assert_eq!(r.status, 403);
    // Open routes.
    assert_eq!(http(a, "GET", "/healthz", &[], b"").await.status, 200);
    assert_eq!(http(a, "GET", "/readyz", &[], b"").await.status, 200);
    assert_eq!(
        http(a, "GET", "/v1/openapi.json", &[], b"").await.status,
        200
    );
    let log = log.lock().unwrap().clone();
    assert!(
        log.contains("request"),
        "the capture saw no request events: {log}"
    );
    for t in [INGEST, ADMIN, WORKER, "not-a-token-at-all"] {
        assert!(!log.contains(t), "a token appeared in the logs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_needs_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ServerConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..ServerConfig::new(dir.path())
    };
    let e = Server::bind(cfg).await.unwrap_err();
    assert!(e.to_string().contains("tokens"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_name_the_line() {
    let s = start(|_| {}).await;
    let r = http(
        s.addr,
        "POST",
        "/v1/logs",
        &[],
        b"{\"a\":1}\n{\"b\":2}\n{oops}\n",
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("line 3"), "{}", r.body);
    let r = http(s.addr, "POST", "/v1/logs?format=json", &[], b"[\"a\", 5]").await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("element 1"), "{}", r.body);
    let r = http(s.addr, "POST", "/v1/logs?format=json", &[], b"[\"a\",\n  ").await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("line 2"), "{}", r.body);
    let r = http(s.addr, "POST", "/v1/logs?format=yaml", &[], b"x").await;
    assert_eq!(r.status, 400, "{}", r.body);
    // Nothing of a refused request was queued.
    let r = http(s.addr, "GET", "/v1/queues/logs/stats", &[], b"").await;
    assert!(r.body.contains("\"published\":0"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_413_and_429_with_retry_after() {
    let s = start(|c| {
        c.limits.max_body_bytes = 64 * 1024;
        c.queue_options = QueueOptions {
            max_bytes: 16 * 1024,
            max_message_bytes: 4096,
            ..Default::default()
        };
    })
    .await;
    let big = vec![b'x'; 100 * 1024];
    let r = http(
        s.addr,
        "POST",
        "/v1/logs",
        &[("Content-Type", "text/plain")],
        &big,
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.body);
    let line = format!("{}\n", "y".repeat(1000));
    let mut refused = None;
    for i in 0..64 {
        let r = http(
            s.addr,
            "POST",
            "/v1/logs",
            &[("Content-Type", "text/plain")],
            line.as_bytes(),
        )
        .await;
        if r.status != 202 {
            refused = Some((i, r));
            break;
        }
    }
    let (i, r) = refused.expect("a 16 KiB queue must refuse 64 KiB of lines");
    assert!(i > 0);
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.head.contains("retry-after: 1"), "{}", r.head);
    let r = http(s.addr, "GET", "/v1/queues/logs/stats", &[], b"").await;
    assert!(r.body.contains(&format!("\"published\":{i}")), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_and_formats() {
    let s = start(|_| {}).await;
    let a = s.addr;
    let r = http(
        a,
        "POST",
        "/v1/logs",
        &[("Idempotency-Key", "req-7")],
        b"one\ntwo\n",
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(r.body.contains("\"queued\":2"), "{}", r.body);
    let r = http(
        a,
        "POST",
        "/v1/logs",
        &[],
        b"{\"id\":\"own\",\"msg\":\"x\"}\n\"text\"\n",
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let r = http(
        a,
        "POST",
        "/v1/logs",
        &[("Content-Type", "application/json")],
        b"[\"a\", {\"m\": 1}]",
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    // Lease them and look at ids, headers and payloads.
    let r = http(
        a,
        "POST",
        "/v1/queues/logs/sessions",
        &[],
        b"{\"lease_ms\": 60000}",
    )
    .await;
    let sid = serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["session"]
        .as_str()
        .unwrap()
        .to_string();
    let r = http(
        a,
        "POST",
        &format!("/v1/queues/logs/sessions/{sid}/receive"),
        &[],
        b"{\"max\": 10, \"wait_ms\": 1000}",
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let ds = v["deliveries"].as_array().unwrap();
    assert_eq!(ds.len(), 6, "{}", r.body);
    let ids: Vec<&str> = ds.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(&ids[..2], ["http:req-7:0", "http:req-7:1"]);
    assert_ne!(
        ids[2], "own",
        "a line's own id field is content, not its id"
    );
    assert!(
        ds.iter()
            .all(|d| d["headers"][0] == serde_json::json!(["input", "http"]))
    );
    assert_eq!(ds[3]["payload"], "text");
    assert_eq!(ds[5]["payload"], "{\"m\":1}");
    // Close releases at once.
    let r = http(
        a,
        "DELETE",
        &format!("/v1/queues/logs/sessions/{sid}"),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, 204);
    let r = http(a, "GET", "/v1/queues/logs/stats", &[], b"").await;
    assert!(r.body.contains("\"in_flight\":0"), "{}", r.body);
}

/// Issue 10 item 11: one line, one id. A line's `"id"` field is log content: two lines with the
/// same one are two messages, a numeric one is accepted; ids come from the request's
/// `Idempotency-Key` and the line's index, so a retried request sends the same ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lines_id_field_never_names_the_message() {
    let s = start(|_| {}).await;
    let a = s.addr;
    let ndjson = b"{\"id\":\"req-7\",\"msg\":\"start\"}\n{\"id\":\"req-7\",\"msg\":\"end\"}\n{\"id\":7,\"msg\":\"numeric\"}\n";
    let array = br#"[{"id":"req-7","msg":"a"},{"id":"req-7","msg":"b"},{"id":7.5}]"#;
    // Without a key: fresh ids, all different.
    for (ct, body) in [
        ("application/x-ndjson", &ndjson[..]),
        ("application/json", &array[..]),
    ] {
        let r = http(a, "POST", "/v1/logs", &[("Content-Type", ct)], body).await;
        assert_eq!(r.status, 202, "{}", r.body);
        assert!(r.body.contains("\"queued\":3"), "{}", r.body);
    }
    // With a key, sent twice (a producer retrying after a lost answer).
    for _ in 0..2 {
        let r = http(
            a,
            "POST",
            "/v1/logs",
            &[("Idempotency-Key", "batch-1")],
            ndjson,
        )
        .await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
    let sid = open_session(a, b"{\"prefetch\": 100, \"lease_ms\": 60000}").await;
    let ds = lease_all(a, &sid, 9).await;
    let ids: Vec<&str> = ds.iter().map(|d| d["id"].as_str().unwrap()).collect();
    let payloads: Vec<&str> = ds.iter().map(|d| d["payload"].as_str().unwrap()).collect();
    assert_eq!(payloads[0], "{\"id\":\"req-7\",\"msg\":\"start\"}");
    assert_eq!(payloads[1], "{\"id\":\"req-7\",\"msg\":\"end\"}");
    assert_eq!(payloads[2], "{\"id\":7,\"msg\":\"numeric\"}");
    let fresh: BTreeSet<&str> = ids[..6].iter().copied().collect();
    assert_eq!(fresh.len(), 6, "keyless lines share an id: {ids:?}");
    assert!(!fresh.contains("req-7"), "{ids:?}");
    let keyed = ["http:batch-1:0", "http:batch-1:1", "http:batch-1:2"];
    assert_eq!(ids[6..9], keyed, "{ids:?}");
    // The retry sent the same ids, so the queue (whose id index holds every pending id)
    // enqueued nothing again.
    let r = http(a, "GET", "/v1/queues/logs/stats", &[], b"").await;
    assert!(
        r.body.contains("\"pending\":9"),
        "a retry must not enqueue twice: {}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_prometheus_names() {
    let s = start(|_| {}).await;
    assert_eq!(
        http(s.addr, "POST", "/v1/logs", &[], b"a\nb\n")
            .await
            .status,
        202
    );
    let r = http(s.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(r.status, 200);
    for name in [
        "ackline_published_total{queue=\"logs\"} 2",
        "ackline_delivered_total",
        "ackline_acked_total",
        "ackline_nacked_total",
        "ackline_redelivered_total",
        "ackline_dead_lettered_total",
        "ackline_lease_expired_total",
        "ackline_in_flight{queue=\"logs\"} 0",
        "ackline_queue_depth{queue=\"logs\"} 2",
        "ackline_queue_bytes",
        "ackline_ingested_lines_total{queue=\"logs\"} 2",
        "ackline_http_request_duration_seconds_bucket",
        "route=\"/v1/logs\"",
    ] {
        assert!(r.body.contains(name), "{name} missing from\n{}", r.body);
    }
}

/// The value of the sample line `name` (exact series, labels included) in an exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Opens a session and receives until `n` deliveries came (bounded).
async fn lease_all(a: SocketAddr, sid: &str, n: usize) -> Vec<serde_json::Value> {
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while got.len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "received {} of {n}",
            got.len()
        );
        let r = http(
            a,
            "POST",
            &format!("/v1/queues/logs/sessions/{sid}/receive"),
            &[],
            b"{\"max\": 1000, \"wait_ms\": 1000}",
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        got.extend(v["deliveries"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(got.len(), n);
    got
}

async fn settle(a: SocketAddr, sid: &str, items: Vec<serde_json::Value>) -> Vec<String> {
    let body = serde_json::json!({ "items": items }).to_string();
    let r = http(
        a,
        "POST",
        &format!("/v1/queues/logs/sessions/{sid}/settle"),
        &[],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["result"].as_str().unwrap().to_string())
        .collect()
}

fn item(d: &serde_json::Value, op: serde_json::Value) -> serde_json::Value {
    let mut it = op;
    it["key"] = d["key"].clone();
    it["attempt"] = d["attempt"].clone();
    it
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_latency_counts_each_durable_ack_once() {
    use serde_json::json;
    let s = start(|_| {}).await;
    let a = s.addr;
    let published = std::time::Instant::now();
    let msgs: Vec<_> = (0..40)
        .map(|i| json!({ "id": format!("m{i}"), "payload": format!("line {i}") }))
        .collect();
    let body = json!({ "messages": msgs }).to_string();
    let r = http(a, "POST", "/v1/queues/logs/messages", &[], body.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = http(
        a,
        "POST",
        "/v1/queues/logs/sessions",
        &[],
        b"{\"prefetch\": 100, \"lease_ms\": 60000}",
    )
    .await;
    let sid = serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["session"]
        .as_str()
        .unwrap()
        .to_string();
    let ds = lease_all(a, &sid, 40).await;

    // 30 acks, 5 nacks (redelivered at once), 3 rejects, 2 extends (still held).
    let mut items: Vec<_> = ds[..30]
        .iter()
        .map(|d| item(d, json!({"op": "ack"})))
        .collect();
    items.extend(ds[30..35].iter().map(|d| item(d, json!({"op": "nack"}))));
    items.extend(
        ds[35..38]
            .iter()
            .map(|d| item(d, json!({"op": "reject", "reason": "bad"}))),
    );
    items.extend(
        ds[38..]
            .iter()
            .map(|d| item(d, json!({"op": "extend", "lease_ms": 60000}))),
    );
    // Refused settlements are not observed: an ack settled before, and an ack naming an
    // attempt that never was.
    items.push(item(&ds[0], json!({"op": "ack"})));
    let mut stale = item(&ds[1], json!({"op": "ack"}));
    stale["attempt"] = json!(7);
    items.push(stale);
    let results = settle(a, &sid, items).await;
    assert!(results[..40].iter().all(|r| r == "ok"), "{results:?}");
    assert!(results[40..].iter().all(|r| r != "ok"), "{results:?}");

    // The extended two are acked later; the nacked five come back (attempt 2) and are acked.
    let extended: Vec<_> = ds[38..]
        .iter()
        .map(|d| item(d, json!({"op": "ack"})))
        .collect();
    assert_eq!(settle(a, &sid, extended).await, ["ok", "ok"]);
    let again = lease_all(a, &sid, 5).await;
    assert!(again.iter().all(|d| d["attempt"] == 2), "{again:?}");
    let acks: Vec<_> = again
        .iter()
        .map(|d| item(d, json!({"op": "ack"})))
        .collect();
    assert_eq!(settle(a, &sid, acks).await, ["ok"; 5]);
    let elapsed = published.elapsed().as_secs_f64();

    let r = http(a, "GET", "/metrics", &[], b"").await;
    assert_eq!(r.status, 200);
    let m = |name: &str| {
        sample(&r.body, name).unwrap_or_else(|| panic!("{name} missing from\n{}", r.body))
    };
    let q = "{queue=\"logs\"}";
    assert_eq!(m(&format!("ackline_acked_total{q}")), 37.0);
    assert_eq!(
        m(&format!("ackline_end_to_end_latency_seconds_count{q}")),
        37.0
    );
    assert_eq!(
        m("ackline_end_to_end_latency_seconds_bucket{le=\"+Inf\",queue=\"logs\"}"),
        37.0
    );
    // Every ack came after its publish and before now (whole milliseconds on both ends).
    let sum = m(&format!("ackline_end_to_end_latency_seconds_sum{q}"));
    assert!(
        (0.0..=37.0 * (elapsed + 0.002)).contains(&sum),
        "sum {sum}, elapsed {elapsed}"
    );
}

async fn open_session(a: SocketAddr, body: &[u8]) -> String {
    let r = http(a, "POST", "/v1/queues/logs/sessions", &[], body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["session"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn settle_raw(a: SocketAddr, sid: &str, items: serde_json::Value) -> Resp {
    let body = serde_json::json!({ "items": items }).to_string();
    http(
        a,
        "POST",
        &format!("/v1/queues/logs/sessions/{sid}/settle"),
        &[],
        body.as_bytes(),
    )
    .await
}

async fn pending(a: SocketAddr) -> (u64, u64) {
    let r = http(a, "GET", "/v1/queues/logs/stats", &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    (v["pending"].as_u64().unwrap(), v["acked"].as_u64().unwrap())
}

/// Issue 10 item 7: only the session a delivery was handed to settles it. A forged settle
/// (attempt 0 for a message never delivered, another session's delivery, an unknown session)
/// is refused and the message stays deliverable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlements_only_from_the_session_holding_the_delivery() {
    use serde_json::json;
    let s = start(|_| {}).await;
    let a = s.addr;
    let body = json!({ "messages": [
        { "id": "m0", "payload": "delivered to the holder" },
        { "id": "m1", "payload": "never delivered" },
    ] })
    .to_string();
    let r = http(a, "POST", "/v1/queues/logs/messages", &[], body.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // A session that received nothing forges an ack of the second message with attempt 0
    // (its attempts are 0, so the engine's tag check alone would match) and with attempt 1:
    // refused, nothing reaches the queue.
    let idle = open_session(a, b"{\"prefetch\": 10, \"lease_ms\": 60000}").await;
    let r = settle_raw(a, &idle, json!([{ "key": 1, "attempt": 0, "op": "ack" }])).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("attempt 0"), "{}", r.body);
    let r = settle_raw(a, &idle, json!([{ "key": 1, "attempt": 1, "op": "ack" }])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"unknown\""), "{}", r.body);

    // An unknown session is 404, whatever it names.
    let forged = format!("{:032x}", 42u128);
    for attempt in [0, 1] {
        let r = settle_raw(
            a,
            &forged,
            json!([{ "key": 1, "attempt": attempt, "op": "ack" }]),
        )
        .await;
        assert_eq!(r.status, 404, "{}", r.body);
        assert!(r.body.contains("session_not_found"), "{}", r.body);
    }
    assert_eq!(pending(a).await, (2, 0), "a forged settle acked something");

    // The holder receives one message; another session cannot ack, nack, reject or extend
    // it, even quoting its exact tag.
    let holder = open_session(a, b"{\"prefetch\": 1, \"lease_ms\": 60000}").await;
    let got = lease_all(a, &holder, 1).await;
    let d = &got[0];
    assert_eq!((&d["key"], &d["attempt"]), (&json!(0), &json!(1)));
    for op in [
        json!({"op": "ack"}),
        json!({"op": "nack"}),
        json!({"op": "reject", "reason": "forged"}),
        json!({"op": "extend", "lease_ms": 1}),
    ] {
        assert_eq!(settle(a, &idle, vec![item(d, op)]).await, ["unknown"]);
    }
    let r = http(a, "GET", "/v1/queues/logs/dlq", &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains(d["id"].as_str().unwrap()), "{}", r.body);
    assert_eq!(pending(a).await, (2, 0));

    // The other message is still deliverable to anyone, with attempt 1: nothing touched it.
    let other = lease_all(a, &idle, 1).await;
    assert_eq!(other[0]["key"], 1, "{other:?}");
    assert_eq!(other[0]["attempt"], 1, "{other:?}");

    // The holder settles its own; a repeat answers as the first did.
    assert_eq!(
        settle(a, &holder, vec![item(d, json!({"op": "ack"}))]).await,
        ["ok"]
    );
    assert_eq!(
        settle(a, &holder, vec![item(d, json!({"op": "ack"}))]).await,
        ["already_settled"]
    );
    assert_eq!(
        settle(a, &idle, vec![item(&other[0], json!({"op": "ack"}))]).await,
        ["ok"]
    );
    assert_eq!(pending(a).await, (0, 2));

    // A closed session is unknown from then on.
    let r = http(
        a,
        "DELETE",
        &format!("/v1/queues/logs/sessions/{holder}"),
        &[],
        b"",
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = settle_raw(a, &holder, json!([item(d, json!({"op": "ack"}))])).await;
    assert_eq!(r.status, 404, "{}", r.body);
}

/// Issue 10 item 13: only `{"all": true}` selects every dead letter; an empty or blank
/// `matching` is 400 for purge and replay, and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_refuses_an_empty_match() {
    use serde_json::json;
    let s = start(|_| {}).await;
    let a = s.addr;
    let body = json!({ "messages": [
        { "id": "m0", "payload": "zero" },
        { "id": "m1", "payload": "one" },
    ] })
    .to_string();
    let r = http(a, "POST", "/v1/queues/logs/messages", &[], body.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sid = open_session(a, b"{\"prefetch\": 10, \"lease_ms\": 60000}").await;
    let ds = lease_all(a, &sid, 2).await;
    let rejects = ds
        .iter()
        .map(|d| item(d, json!({"op": "reject", "reason": "parse error"})))
        .collect();
    assert_eq!(settle(a, &sid, rejects).await, ["ok", "ok"]);
    let dead = || async {
        let r = http(a, "GET", "/v1/queues/logs/stats", &[], b"").await;
        serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["dead_letters"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(dead().await, 2);
    for verb in ["purge", "replay"] {
        for m in ["", " \t"] {
            let body = json!({ "matching": m }).to_string();
            let r = http(
                a,
                "POST",
                &format!("/v1/queues/logs/dlq/{verb}"),
                &[],
                body.as_bytes(),
            )
            .await;
            assert_eq!(r.status, 400, "{verb} {m:?}: {}", r.body);
            assert!(r.body.contains("matching"), "{}", r.body);
            assert_eq!(dead().await, 2, "{verb} {m:?} changed the dead letters");
        }
    }
    let r = http(
        a,
        "POST",
        "/v1/queues/logs/dlq/purge",
        &[],
        b"{\"matching\": \"parse\"}",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"purged\":2"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_metrics_answers_get_metrics_only() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = listener.local_addr().unwrap();
    let scrapes = Arc::new(AtomicU64::new(0));
    let fail = Arc::new(AtomicBool::new(false));
    let (n, f) = (scrapes.clone(), fail.clone());
    let render = move || {
        let i = n.fetch_add(1, Ordering::SeqCst) + 1;
        if f.load(Ordering::SeqCst) {
            Err(format!("scrape {i} refused"))
        } else {
            Ok(format!("# TYPE x counter\nx_total {i}\n# EOF\n"))
        }
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(ackline_server::serve_metrics(
        listener,
        render,
        async move {
            let _ = stopped.await;
        },
    ));
    let r = http(a, "GET", "/metrics", &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.head
            .contains("content-type: application/openmetrics-text"),
        "{}",
        r.head
    );
    assert_eq!(r.body, "# TYPE x counter\nx_total 1\n# EOF\n");
    assert_eq!(http(a, "GET", "/", &[], b"").await.status, 404);
    assert_eq!(http(a, "GET", "/v1/queues", &[], b"").await.status, 404);
    assert_eq!(http(a, "POST", "/metrics", &[], b"").await.status, 405);
    fail.store(true, Ordering::SeqCst);
    let r = http(a, "GET", "/metrics", &[], b"").await;
    assert_eq!(r.status, 500);
    assert!(r.body.contains("scrape 2 refused"), "{}", r.body);
    assert_eq!(scrapes.load(Ordering::SeqCst), 2, "one render per scrape");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("serve_metrics returns after shutdown")
        .unwrap()
        .unwrap();
    assert!(
        std::net::TcpStream::connect(a).is_err(),
        "still listening after shutdown"
    );
}
