//! Bounds on what one client can make the server hold (issue 11 items 7 and 9), over real
//! HTTP on loopback: lines per ingest request, ingest parsing off the async workers, lease
//! length, sessions per token, reason and error sizes. Each test runs its own server on an
//! ephemeral 127.0.0.1 port.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ackline_server::{Scope, Server, ServerConfig, Token};

struct Running {
    addr: SocketAddr,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(f: impl FnOnce(&mut ServerConfig)) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::new(dir.path())
    };
    f(&mut cfg);
    let server = Server::bind(cfg).await.unwrap();
    let addr = server.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    Running {
        addr,
        _dir: dir,
        _stop: tx,
    }
}

struct Resp {
    status: u16,
    body: String,
}

/// One HTTP/1.1 request on its own connection (blocking I/O on the blocking pool).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        // A refused body may close the connection early; the answer is still readable.
        let _ = s.write_all(&bytes);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Resp {
            status,
            body: body.to_string(),
        }
    })
    .await
    .unwrap()
}

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

#[allow(dead_code)]
fn token(secret: &str, scopes: &[Scope]) -> Token {
    Token::new(secret, scopes)
}
