//! Bounds on what one client can make the server hold (issue 11 items 7 and 9), over real
//! HTTP on loopback: lines per ingest request, ingest parsing off the async workers, lease
//! length, sessions per token, reason and error sizes. Each test runs its own server on an
//! ephemeral 127.0.0.1 port.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ackline_server::{Scope, ServerConfig, Token};

use crate::common::{Resp, http, start};

async fn published(addr: SocketAddr, queue: &str) -> u64 {
    let r = http(addr, "GET", &format!("/v1/queues/{queue}/stats"), &[], b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    v["published"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_lines_than_the_limit_is_413_and_queues_nothing() {
    let s = start(|c| c.limits.max_lines_per_request = 1000).await;
    let mut body = Vec::new();
    for i in 0..1001 {
        body.extend_from_slice(format!("line {i}\n").as_bytes());
    }
    for (path, body) in [
        ("/v1/logs?format=text", body.clone()),
        (
            "/v1/logs?format=ndjson",
            "{\"m\":1}\n".repeat(1001).into_bytes(),
        ),
        (
            "/v1/logs?format=json",
            format!("[{}\"x\"]", "\"x\",".repeat(1000)).into_bytes(),
        ),
    ] {
        let r = http(s.addr, "POST", path, &[], &body).await;
        assert_eq!(r.status, 413, "{path}: {}", r.body);
        assert!(
            r.body.contains("too_large") && r.body.contains("more than 1000 lines"),
            "{}",
            r.body
        );
    }
    assert_eq!(published(s.addr, "logs").await, 0, "nothing queued");
    // At the limit (blank lines not counted) the request is taken whole.
    let mut body = Vec::new();
    for i in 0..1000 {
        body.extend_from_slice(format!("line {i}\n\n").as_bytes());
    }
    let r = http(s.addr, "POST", "/v1/logs", &[], &body).await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(r.body.contains("\"queued\":1000"), "{}", r.body);
    assert_eq!(published(s.addr, "logs").await, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_of_more_messages_than_the_limit_is_413_and_queues_nothing() {
    let s = start(|c| c.limits.max_lines_per_request = 1000).await;
    let batch = |n: usize| {
        let m = vec![serde_json::json!({"payload": "x"}); n];
        serde_json::json!({ "messages": m })
            .to_string()
            .into_bytes()
    };
    let r = http(
        s.addr,
        "POST",
        "/v1/queues/logs/messages",
        &[],
        &batch(1001),
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("over the maximum of 1000"), "{}", r.body);
    assert_eq!(published(s.addr, "logs").await, 0);
    let r = http(
        s.addr,
        "POST",
        "/v1/queues/logs/messages",
        &[],
        &batch(1000),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(published(s.addr, "logs").await, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_mib_of_newline_a_is_refused_under_the_default_limit() {
    let s = start(|_| {}).await;
    let body = b"a\n".repeat(4 << 20);
    let r = http(s.addr, "POST", "/v1/logs", &[], &body).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("more than 100000 lines"), "{}", r.body);
    assert_eq!(published(s.addr, "logs").await, 0);
}

/// Four maximal bodies (the default 100,000 lines, close to the 8 MiB body limit) ingested at
/// once while `/healthz` is polled: the server runs on ONE async worker thread here, so if
/// the bodies were split on it, `/healthz` could not be answered until they were done.
#[tokio::test(flavor = "current_thread")]
async fn healthz_answers_while_maximal_bodies_are_parsed() {
    let s = start(|_| {}).await;
    let line = format!("{{\"msg\":\"{}\"}}\n", "x".repeat(70));
    let body = line.repeat(100_000).into_bytes();
    assert!(body.len() <= 8 << 20);
    let addr = s.addr;
    let started = Instant::now();
    let mut posts = Vec::new();
    for _ in 0..4 {
        let body = body.clone();
        posts.push(tokio::spawn(async move {
            let r = http(addr, "POST", "/v1/logs", &[], &body).await;
            (r.status, started.elapsed())
        }));
    }
    let (mut answered, mut worst) = (0u32, Duration::ZERO);
    while !posts.iter().all(|p| p.is_finished()) {
        let t = Instant::now();
        let r = http(addr, "GET", "/healthz", &[], b"").await;
        assert_eq!(r.status, 200, "{}", r.body);
        answered += 1;
        worst = worst.max(t.elapsed());
        assert!(started.elapsed() < Duration::from_secs(120), "ingest hangs");
    }
    let mut slowest = Duration::ZERO;
    for p in posts {
        let (status, took) = p.await.unwrap();
        assert_eq!(status, 202);
        slowest = slowest.max(took);
    }
    println!(
        "4 x 100,000-line bodies ({} bytes each) took {slowest:?}; /healthz answered {answered} \
         times meanwhile, slowest {worst:?}",
        body.len()
    );
    assert!(
        answered >= 1,
        "/healthz answered while the bodies were parsed"
    );
    assert_eq!(published(addr, "logs").await, 400_000);
}

const WORKER_A: &str = "worker-a-token-0123456789";
const WORKER_B: &str = "worker-b-token-0123456789";
const ADMIN: &str = "admin-token-0123456789abcd";

fn with_tokens(c: &mut ServerConfig) {
    c.tokens = vec![
        Token::new(WORKER_A, &[Scope::Worker, Scope::Ingest]),
        Token::new(WORKER_B, &[Scope::Worker]),
        Token::new(ADMIN, &[Scope::Admin]),
    ];
}

fn json(r: &Resp) -> serde_json::Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body))
}

async fn open(addr: SocketAddr, auth: &str, body: &str) -> Resp {
    let h = format!("Bearer {auth}");
    http(
        addr,
        "POST",
        "/v1/queues/logs/sessions",
        &[("Authorization", &h)],
        body.as_bytes(),
    )
    .await
}

/// Publishes one line and leases it through a new session: (session, key, attempt).
async fn lease_one(addr: SocketAddr) -> (String, u64, u64) {
    let h = format!("Bearer {WORKER_A}");
    let auth = [("Authorization", h.as_str())];
    let r = http(addr, "POST", "/v1/logs", &auth, b"one line\n").await;
    assert_eq!(r.status, 202, "{}", r.body);
    let r = open(addr, WORKER_A, "{}").await;
    assert_eq!(r.status, 201, "{}", r.body);
    let session = json(&r)["session"].as_str().unwrap().to_string();
    let (key, attempt) = receive(addr, &session).await;
    (session, key, attempt)
}

async fn receive(addr: SocketAddr, session: &str) -> (u64, u64) {
    let h = format!("Bearer {WORKER_A}");
    let r = http(
        addr,
        "POST",
        &format!("/v1/queues/logs/sessions/{session}/receive"),
        &[("Authorization", &h)],
        br#"{"max": 1, "wait_ms": 5000}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let d = &json(&r)["deliveries"][0];
    (d["key"].as_u64().unwrap(), d["attempt"].as_u64().unwrap())
}

async fn settle(addr: SocketAddr, session: &str, item: serde_json::Value) -> Resp {
    let h = format!("Bearer {WORKER_A}");
    let body = serde_json::json!({ "items": [item] }).to_string();
    http(
        addr,
        "POST",
        &format!("/v1/queues/logs/sessions/{session}/settle"),
        &[("Authorization", &h)],
        body.as_bytes(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_and_nack_delays_beyond_24h_are_400() {
    let s = start(with_tokens).await;
    let r = open(s.addr, WORKER_A, r#"{"lease_ms": 18446744073709551615}"#).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body
            .contains("lease_ms 18446744073709551615 is over the maximum of 86400000 ms"),
        "{}",
        r.body
    );
    let r = open(s.addr, WORKER_A, r#"{"lease_ms": 86400001}"#).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = open(s.addr, WORKER_A, r#"{"lease_ms": 86400000}"#).await;
    assert_eq!(r.status, 201, "24 h itself is allowed: {}", r.body);
    let (session, key, attempt) = lease_one(s.addr).await;
    for item in [
        serde_json::json!({"key": key, "attempt": attempt, "op": "extend", "lease_ms": 86_400_001u64}),
        serde_json::json!({"key": key, "attempt": attempt, "op": "nack", "delay_ms": u64::MAX}),
    ] {
        let r = settle(s.addr, &session, item).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(
            r.body.contains("item 0: ") && r.body.contains("over the maximum"),
            "{}",
            r.body
        );
    }
    // Nothing was applied: the delivery is still held and can be acked.
    let item =
        serde_json::json!({"key": key, "attempt": attempt, "op": "extend", "lease_ms": 60_000});
    let r = settle(s.addr, &session, item).await;
    assert!(r.body.contains("\"ok\""), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_per_token_are_bounded() {
    let s = start(|c| {
        with_tokens(c);
        c.limits.max_sessions_per_token = 3;
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = open(s.addr, WORKER_A, "{}").await;
        assert_eq!(r.status, 201, "{}", r.body);
        ids.push(json(&r)["session"].as_str().unwrap().to_string());
    }
    let r = http(
        s.addr,
        "POST",
        "/v1/queues/logs/sessions",
        &[("Authorization", &format!("Bearer {WORKER_A}"))],
        b"{}",
    )
    .await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(
        r.body.contains("too_many_sessions") && r.body.contains("3 sessions open"),
        "{}",
        r.body
    );
    // Another token has its own allowance.
    let r = http(
        s.addr,
        "POST",
        "/v1/queues/logs/sessions",
        &[("Authorization", &format!("Bearer {WORKER_B}"))],
        b"{}",
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // Closing one makes room again.
    let r = http(
        s.addr,
        "DELETE",
        &format!("/v1/queues/logs/sessions/{}", ids[0]),
        &[("Authorization", &format!("Bearer {WORKER_A}"))],
        b"",
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = open(s.addr, WORKER_A, "{}").await;
    assert_eq!(r.status, 201, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_without_tokens_share_one_allowance() {
    let s = start(|c| c.limits.max_sessions_per_token = 2).await;
    for expect in [201, 201, 429] {
        let r = http(s.addr, "POST", "/v1/queues/logs/sessions", &[], b"{}").await;
        assert_eq!(r.status, expect, "{}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_reasons_and_errors_are_cut_with_a_marker() {
    let s = start(with_tokens).await;
    let (session, key, attempt) = lease_one(s.addr).await;
    let big = "é".repeat(1 << 20); // 2 MiB, two bytes a character
    let item = serde_json::json!({"key": key, "attempt": attempt, "op": "nack", "delay_ms": 0, "error": big});
    let r = settle(s.addr, &session, item).await;
    assert!(r.body.contains("\"ok\""), "{}", r.body);
    let (key, attempt) = receive(s.addr, &session).await;
    assert_eq!(attempt, 2);
    let item = serde_json::json!({"key": key, "attempt": attempt, "op": "reject", "reason": big});
    let r = settle(s.addr, &session, item).await;
    assert!(r.body.contains("\"ok\""), "{}", r.body);
    let r = http(
        s.addr,
        "GET",
        "/v1/queues/logs/dlq",
        &[("Authorization", &format!("Bearer {ADMIN}"))],
        b"",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let e = &json(&r)["entries"][0];
    let marker = format!("… [truncated {} bytes]", (2 << 20) - 4096);
    for field in ["reason", "last_error"] {
        let v = e[field].as_str().unwrap();
        assert!(v.ends_with(&marker), "{field}: ...{}", &v[v.len() - 40..]);
        assert_eq!(v.len(), 4096 + marker.len(), "{field}");
        assert!(v.starts_with("éé"));
    }
    assert!(
        r.body.len() < 16 << 10,
        "the listing is small: {}",
        r.body.len()
    );
}
