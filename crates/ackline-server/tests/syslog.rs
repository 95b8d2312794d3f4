//! Syslog ingest over real sockets: the machine's `logger` (util-linux) over TCP (newline and
//! octet-counting framing) and UDP, and hand-written frames: many in one packet, truncated
//! by a disconnect, stalled mid-frame, oversized, binary. After each test the server is
//! stopped and the queue reopened to check exactly what was queued, with its `input` header.
//!
//! Without `logger` the logger test prints why it is skipped, unless `CI=true`, where it
//! fails. Nothing sleeps to synchronise: every wait polls a metric against a deadline.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ackline_queue::{Db, QueueOptions};
use ackline_server::{Server, ServerConfig};

struct Running {
    http: SocketAddr,
    tcp: SocketAddr,
    udp: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(dir: &Path) -> Running {
        let mut cfg = ServerConfig::new(dir);
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        cfg.syslog_tcp = Some("127.0.0.1:0".parse().unwrap());
        cfg.syslog_udp = Some("127.0.0.1:0".parse().unwrap());
        cfg.limits.syslog_max_frame = 1024;
        cfg.limits.syslog_frame_timeout = Duration::from_millis(500);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let s = Server::bind(cfg).await.unwrap();
                addr_tx
                    .send((
                        s.local_addr(),
                        s.syslog_tcp_addr().unwrap(),
                        s.syslog_udp_addr().unwrap(),
                    ))
                    .unwrap();
                s.run(async move {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
            });
        });
        let (http, tcp, udp) = addr_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        Running {
            http,
            tcp,
            udp,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The value of the metric line starting with `prefix` (0 when absent).
    fn metric(&self, prefix: &str) -> f64 {
        let mut s = TcpStream::connect(self.http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }

    fn wait_metric(&self, prefix: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let v = self.metric(prefix);
            if v == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{prefix} is {v}, expected {want}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (graceful) and returns every queued message as (input, payload).
    fn stop(mut self, dir: &Path) -> Vec<(String, Vec<u8>)> {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap();
        let db = Db::open(dir).unwrap();
        let q = db.queue("logs", QueueOptions::default()).unwrap();
        let c = q.consumer();
        let mut out = Vec::new();
        loop {
            let batch = c
                .receive(1000, Duration::from_secs(60), Duration::ZERO)
                .unwrap();
            if batch.is_empty() {
                break;
            }
            for d in batch {
                let input = d
                    .headers
                    .iter()
                    .find(|(k, _)| k == "input")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                out.push((input, d.payload.to_vec()));
            }
        }
        out
    }
}

const FRAMES: &str = "ackline_syslog_frames_total{transport=\"tcp\"}";
const UDP_FRAMES: &str = "ackline_syslog_frames_total{transport=\"udp\"}";

fn err_metric(transport: &str, kind: &str) -> String {
    format!("ackline_syslog_errors_total{{transport=\"{transport}\",kind=\"{kind}\"}}")
}

#[test]
fn hand_written_frames() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let r = Running::start(dir.path());

    // Many octet-counted frames in one packet, then a frame cut by a disconnect.
    let mut s = TcpStream::connect(r.tcp).unwrap();
    let local = s.local_addr().unwrap();
    let mut packet = Vec::new();
    for i in 0..50 {
        let m = format!("<13>1 2024-05-01T10:00:00Z h app - - - octet {i}");
        packet.extend_from_slice(format!("{} {m}", m.len()).as_bytes());
    }
    packet.extend_from_slice(b"40 <13>cut short");
    s.write_all(&packet).unwrap();
    r.wait_metric(FRAMES, 50.0);
    drop(s);
    r.wait_metric(&err_metric("tcp", "truncated"), 1.0);

    // Newline framing: many lines in one packet, an oversized one (skipped), a binary one.
    let mut s = TcpStream::connect(r.tcp).unwrap();
    let mut packet = Vec::new();
    for i in 0..20 {
        packet.extend_from_slice(format!("<14>May  1 10:00:00 h app: line {i}\r\n").as_bytes());
    }
    packet.extend_from_slice(&[b'x'; 3000]);
    packet.extend_from_slice(b"\n<14>bin\0ary\n<14>after\n");
    s.write_all(&packet).unwrap();
    r.wait_metric(FRAMES, 71.0);
    r.wait_metric(&err_metric("tcp", "oversized"), 1.0);
    r.wait_metric(&err_metric("tcp", "binary"), 1.0);

    // A stalled frame: dropped after the frame timeout, and the connection closed.
    let mut s = TcpStream::connect(r.tcp).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"<14>no newline yet").unwrap();
    let mut b = [0u8; 1];
    assert_eq!(s.read(&mut b).unwrap_or(0), 0, "the server closes it");
    r.wait_metric(&err_metric("tcp", "truncated"), 2.0);

    // An oversized octet count and a binary connection: refused, connection closed.
    for bad in [&b"99999 <13>x"[..], &b"\x16\x03\x01\x02\x00"[..]] {
        let mut s = TcpStream::connect(r.tcp).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(bad).unwrap();
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).unwrap_or(0), 0);
    }
    r.wait_metric(&err_metric("tcp", "oversized"), 2.0);
    r.wait_metric(&err_metric("tcp", "binary"), 2.0);

    // UDP: one datagram, one message; oversized and binary refused; empty ignored.
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    let upeer = u.local_addr().unwrap();
    for i in 0..10 {
        u.send_to(format!("<13>udp {i}\n").as_bytes(), r.udp)
            .unwrap();
    }
    u.send_to(&[b'y'; 2000], r.udp).unwrap();
    u.send_to(b"<13>\0", r.udp).unwrap();
    u.send_to(b"", r.udp).unwrap();
    r.wait_metric(UDP_FRAMES, 10.0);
    r.wait_metric(&err_metric("udp", "oversized"), 1.0);
    r.wait_metric(&err_metric("udp", "binary"), 1.0);

    let msgs = r.stop(dir.path());
    assert_eq!(msgs.len(), 81);
    let first: Vec<&(String, Vec<u8>)> = msgs
        .iter()
        .filter(|(i, _)| *i == format!("syslog+tcp://{local}"))
        .collect();
    assert_eq!(first.len(), 50);
    assert!(first[7].1.ends_with(b"octet 7"));
    assert!(msgs.iter().any(|(_, p)| p == b"<14>after"));
    assert!(msgs.iter().any(|(_, p)| p.ends_with(b"line 19")));
    let udp: Vec<_> = msgs
        .iter()
        .filter(|(i, _)| *i == format!("syslog+udp://{upeer}"))
        .collect();
    assert_eq!(udp.len(), 10);
    assert!(udp.iter().any(|(_, p)| p == b"<13>udp 3"));
    assert!(!msgs.iter().any(|(_, p)| p.contains(&0) || p.len() > 1024));
    eprintln!("hand-written syslog frames: {:?}", t0.elapsed());
}

fn logger_available() -> bool {
    let ok = Command::new("logger")
        .arg("--help")
        .output()
        .map(|o| {
            let h = String::from_utf8_lossy(&o.stdout);
            h.contains("--octet-count") && h.contains("--tcp") && h.contains("--udp")
        })
        .unwrap_or(false);
    if !ok {
        let why = "util-linux `logger` with --tcp/--udp/--octet-count is not installed";
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: {why}"
        );
        eprintln!("skipped: {why}");
    }
    ok
}

fn logger(args: &[&str], port: u16, msg: &str) {
    let o = Command::new("logger")
        .args(["--server", "127.0.0.1", "--port", &port.to_string()])
        .args(args)
        .args(["--tag", "ackline-test", msg])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "logger {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn real_logger_over_tcp_and_udp() {
    if !logger_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let r = Running::start(dir.path());
    logger(&["--tcp", "--rfc5424"], r.tcp.port(), "newline framed");
    logger(
        &["--tcp", "--octet-count", "--rfc5424"],
        r.tcp.port(),
        "octet counted",
    );
    logger(
        &["--tcp", "--octet-count", "--rfc3164"],
        r.tcp.port(),
        "old style",
    );
    r.wait_metric(FRAMES, 3.0);
    logger(&["--udp", "--rfc5424"], r.udp.port(), "over udp");
    r.wait_metric(UDP_FRAMES, 1.0);
    let msgs = r.stop(dir.path());
    assert_eq!(msgs.len(), 4, "{msgs:?}");
    for (want, transport) in [
        ("newline framed", "tcp"),
        ("octet counted", "tcp"),
        ("old style", "tcp"),
        ("over udp", "udp"),
    ] {
        let (input, p) = msgs
            .iter()
            .find(|(_, p)| String::from_utf8_lossy(p).ends_with(want))
            .unwrap_or_else(|| panic!("{want} not queued: {msgs:?}"));
        assert!(input.starts_with(&format!("syslog+{transport}://127.0.0.1:")));
        assert!(p.starts_with(b"<"), "{}", String::from_utf8_lossy(p));
        assert!(String::from_utf8_lossy(p).contains("ackline-test"));
    }
}
