//! Hostile and careless HTTP clients against a real server on loopback: label sets that a
//! client cannot grow, connection tables that idle or slow clients cannot pin, queue creation
//! that needs authority, a readiness probe that does not sync. Every test is bounded in
//! connections (tens) and time (seconds).

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ackline_server::{Scope, Server, ServerConfig, Token};

const INGEST: &str = "ingest-token-0123456789abcdef";
const ADMIN: &str = "admin-token-0123456789abcdef";
const WORKER: &str = "worker-token-0123456789abcdef";

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

fn with_tokens(cfg: &mut ServerConfig) {
    cfg.tokens = vec![
        Token::new(INGEST, &[Scope::Ingest]),
        Token::new(ADMIN, &[Scope::Admin]),
        Token::new(WORKER, &[Scope::Worker]),
    ];
}

#[derive(Debug)]
struct Resp {
    status: u16,
    head: String,
    body: String,
}

fn parse(out: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Resp {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

fn request(
    method: &str,
    path: &str,
    addr: SocketAddr,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
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
    bytes
}

/// One HTTP/1.1 request on its own connection (blocking I/O on the blocking pool).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let bytes = request(method, path, addr, headers, body);
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let _ = s.write_all(&bytes);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        parse(&out)
    })
    .await
    .unwrap()
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// `/metrics` grows with neither the number nor the size of the methods clients invent:
/// the `method` label takes values from a closed set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_methods_do_not_grow_metrics() {
    let s = start(|_| {}).await;
    let a = s.addr;
    assert_eq!(http(a, "GET", "/healthz", &[], b"").await.status, 200);
    assert_eq!(http(a, "GET", "/metrics", &[], b"").await.status, 200);
    let before = http(a, "GET", "/metrics", &[], b"").await.body;
    // 200 distinct methods, then 20 of 16 KiB each, on known and unknown routes.
    let huge = "X".repeat(16 << 10);
    tokio::task::spawn_blocking(move || {
        for i in 0..220 {
            let m = if i < 200 {
                format!("M{i:05}RANDOM")
            } else {
                format!("{huge}{i}")
            };
            let path = if i % 2 == 0 { "/healthz" } else { "/nope" };
            let mut c = TcpStream::connect(a).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.write_all(&request(&m, path, a, &[], b"")).unwrap();
            let mut out = Vec::new();
            let _ = c.read_to_end(&mut out);
            assert!(!out.is_empty(), "no answer to method {i}");
        }
    })
    .await
    .unwrap();
    let after = http(a, "GET", "/metrics", &[], b"").await.body;
    assert!(!after.contains("RANDOM") && !after.contains("XXXX"));
    assert!(after.contains("method=\"other\""), "{after}");
    // At most the new series of `other` (two routes, a few statuses): a few kB, not the
    // 3.5 MB the invented methods would add as labels.
    assert!(
        after.len() < before.len() + 16_000,
        "/metrics grew from {} to {} bytes",
        before.len(),
        after.len()
    );
    let series = after
        .lines()
        .filter(|l| l.starts_with("ackline_http_request_duration_seconds_count"))
        .count();
    assert!(series <= 8, "{series} series:\n{after}");
}
