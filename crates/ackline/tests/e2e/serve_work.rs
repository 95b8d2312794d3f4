//! Split mode with real processes: `ackline serve`, lines ingested over HTTP (`POST /v1/logs`
//! with a hand-written HTTP/1.1 request on a std `TcpStream`), two `ackline work` processes,
//! one killed with SIGKILL while it works; every line must end up in the SQLite store exactly
//! once. And `serve` refuses a listen address beyond loopback without tokens (exit 2, one
//! line).
//!
//! No sleeps synchronise anything: every wait polls its condition against a deadline.

#![allow(clippy::unwrap_used)] // tests: a panic is a failed assertion

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{Proc, ackline, run_with_deadline, wait_for};

const TOKEN: &str = "test-token-0123456789abcdef";

/// One HTTP/1.1 request with the test's token; returns (status, body).
fn http(addr: &str, method: &str, path: &str, ctype: &str, body: &[u8]) -> (u16, String) {
    crate::common::http(addr, Some(TOKEN), method, path, ctype, body)
}

/// Starts `serve --json` on a free port; returns it and its address once it listens.
fn serve(dir: &Path) -> (Proc, String) {
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .env_remove("ACKLINE_LISTEN")
        .env_remove("ACKLINE_TOKENS")
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--token",
            &format!("{TOKEN}:ingest,worker,admin"),
        ]);
    let (p, v) = crate::common::spawn_json_line(c);
    let addr = v["listening"].as_str().unwrap().to_string();
    (p, addr)
}

fn work(dir: &Path, addr: &str) -> Proc {
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .arg("--data-dir")
        .arg(dir)
        .args([
            "work",
            "--queue",
            &format!("http://{addr}/logs"),
            "--token",
            TOKEN,
            "--workers",
            "2",
            "--batch-size",
            "50",
            "--prefetch",
            "100",
            "--lease",
            "2s",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    Proc(c.spawn().unwrap())
}

fn pending(addr: &str) -> u64 {
    let (st, body) = http(
        addr,
        "GET",
        "/v1/queues/logs/stats",
        "application/json",
        b"",
    );
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["pending"].as_u64().unwrap()
}

#[test]
fn sigkilled_worker_loses_nothing_and_duplicates_nothing() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (mut server, addr) = serve(dir.path());

    const N: usize = 4000;
    let mut expected = BTreeSet::new();
    let post = |from: usize, to: usize, expected: &mut BTreeSet<String>| {
        // A line's id comes from the request's key and its index, never from its content.
        let key = format!("chunk-{from}");
        let mut body = String::new();
        for i in from..to {
            body += &format!(
                "{{\"id\":\"line\",\"ts\":\"2024-05-01T10:00:00Z\",\"level\":\"info\",\"msg\":\"line {i}\"}}\n"
            );
            expected.insert(format!("http:{key}:{}", i - from));
        }
        let (st, resp) = crate::common::http_with(
            &addr,
            Some(TOKEN),
            "POST",
            "/v1/logs?format=ndjson",
            "application/x-ndjson",
            &[("Idempotency-Key", &key)],
            body.as_bytes(),
        );
        assert_eq!(st, 202, "{resp}");
    };
    // Half before the workers start, half while they run.
    for c in 0..N / 2 / 500 {
        post(c * 500, (c + 1) * 500, &mut expected);
    }
    let db = dir.path().join("records.db");
    // A alone first, so that when the first rows appear A is mid-stream: batches of 50
    // stored, up to 100 more leased, most of the queue still ahead.
    let mut a = work(dir.path(), &addr);
    wait_for(
        Duration::from_secs(60),
        "worker A's first stored rows",
        || crate::common::sqlite_rows(&db).0 > 0,
    );
    let mut b = work(dir.path(), &addr);
    a.signal("KILL");
    let st = a.wait_exit(Duration::from_secs(10));
    assert_eq!(st.code(), None, "worker A was killed by a signal");
    for c in N / 2 / 500..N / 500 {
        post(c * 500, (c + 1) * 500, &mut expected);
    }
    wait_for(
        Duration::from_secs(90),
        "every line stored and nothing pending",
        || crate::common::sqlite_rows(&db).0 == N as i64 && pending(&addr) == 0,
    );

    // A's leased deliveries went to B: the kill landed while A held work.
    let (_, body) = http(
        &addr,
        "GET",
        "/v1/queues/logs/stats",
        "application/json",
        b"",
    );
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(stats["redelivered"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(stats["dead_letters"].as_u64(), Some(0), "{stats}");

    b.signal("TERM");
    assert_eq!(b.wait_exit(Duration::from_secs(30)).code(), Some(0));
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(30)).code(), Some(0));

    let (count, distinct) = crate::common::sqlite_rows(&db);
    assert_eq!((count, distinct), (N as i64, N as i64));
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut stmt = conn.prepare("SELECT id FROM ackline_records").unwrap();
    let ids: BTreeSet<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ids, expected);
    eprintln!(
        "split mode with a SIGKILLed worker: {N} lines in {:?}",
        t0.elapsed()
    );
}

#[test]
fn serve_refuses_non_loopback_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .env_remove("ACKLINE_LISTEN")
        .env_remove("ACKLINE_TOKENS")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["serve", "--listen", "0.0.0.0:0"]);
    let o = run_with_deadline(c, Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("server.listen") && err.contains("--listen"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
    // Nothing was opened.
    assert!(!dir.path().join("queues").exists());

    // The same from the environment, and a too-short token is refused without echoing it.
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .env("ACKLINE_LISTEN", "0.0.0.0:0")
        .env("ACKLINE_TOKENS", "tiny:ingest")
        .arg("--data-dir")
        .arg(dir.path())
        .arg("check");
    let o = run_with_deadline(c, Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("ACKLINE_TOKENS") && !err.contains("tiny"),
        "{err}"
    );
}

#[test]
fn serve_takes_syslog_over_tcp_and_udp() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--token",
            &format!("{TOKEN}:ingest,worker,admin"),
            "--syslog-tcp",
            "127.0.0.1:0",
            "--syslog-udp",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = c.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut server = Proc(child);
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let addr = v["listening"].as_str().unwrap().to_string();
    let tcp = v["syslog_tcp"].as_str().unwrap();
    let udp = v["syslog_udp"].as_str().unwrap();
    let mut s = TcpStream::connect(tcp).unwrap();
    s.write_all(b"<13>1 2024-05-01T10:00:00Z h app - - - over tcp\n")
        .unwrap();
    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    u.send_to(b"<13>May  1 10:00:00 h app: over udp", udp)
        .unwrap();
    wait_for(
        Duration::from_secs(30),
        "two syslog messages queued",
        || pending(&addr) == 2,
    );
    drop(s);
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(30)).code(), Some(0));
}

#[test]
fn work_waits_for_a_server_that_is_not_up_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // A port that was free a moment ago: nothing listens there.
    let port = crate::common::free_port();
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["work", "--queue", &format!("http://127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut w = Proc(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            if line.contains("waiting for the broker") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("work says it waits for the broker");
    assert!(
        w.0.try_wait().unwrap().is_none(),
        "still waiting, not failed"
    );
    w.signal("TERM");
    assert_eq!(w.wait_exit(Duration::from_secs(30)).code(), Some(0));
}
