//! Helpers shared by the server's HTTP tests: a server on an ephemeral loopback port,
//! tokens of each scope, and one-shot HTTP/1.1 requests over plain sockets.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use ackline_server::{Scope, Server, ServerConfig, Token};

pub const INGEST: &str = "ingest-token-0123456789abcdef";

pub const ADMIN: &str = "admin-token-0123456789abcdef";

pub const WORKER: &str = "worker-token-0123456789abcdef";

pub fn with_tokens(cfg: &mut ServerConfig) {
    cfg.tokens = vec![
        Token::new(INGEST, &[Scope::Ingest]),
        Token::new(ADMIN, &[Scope::Admin]),
        Token::new(WORKER, &[Scope::Worker]),
    ];
}

pub fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

pub struct Running {
    pub addr: SocketAddr,
    pub syslog_tcp: Option<SocketAddr>,
    pub syslog_udp: Option<SocketAddr>,
    pub _dir: tempfile::TempDir,
    pub _stop: tokio::sync::oneshot::Sender<()>,
}

pub async fn start(f: impl FnOnce(&mut ServerConfig)) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::new(dir.path())
    };
    f(&mut cfg);
    let server = Server::bind(cfg).await.unwrap();
    let addr = server.local_addr();
    let syslog_tcp = server.syslog_tcp_addr();
    let syslog_udp = server.syslog_udp_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    Running {
        addr,
        syslog_tcp,
        syslog_udp,
        _dir: dir,
        _stop: tx,
    }
}
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub head: String,
    pub body: String,
}

pub fn parse(out: &[u8]) -> Resp {
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

pub fn request(
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
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let bytes = request(method, path, addr, headers, body);
    tokio::task::spawn_blocking(move || send(addr, &bytes))
        .await
        .unwrap()
}
/// Sends one request's bytes on a new connection and reads the answer to its end.
pub fn send(addr: SocketAddr, bytes: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    parse(&out)
}
