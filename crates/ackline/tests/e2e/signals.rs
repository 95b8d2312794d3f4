//! Signals on a real `ackline serve`: a second signal that arrives within a second of the
//! first is the same stop (GNU `timeout` signals the process and then its process group, so
//! the process gets two SIGTERMs at once), not the "exit at once" second signal; one that
//! comes later still exits at once with 130.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{Proc, ackline, http, wait_for};

#[test]
fn a_repeated_signal_within_a_second_is_one_stop() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .env_remove("ACKLINE_LISTEN")
        .env_remove("ACKLINE_TOKENS")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--json", "serve", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut p = Proc(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let addr = v["listening"].as_str().unwrap().to_string();
    let (err_tx, err_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = err_tx.send(l);
        }
    });

    // A long-poll keeps the graceful stop busy (up to the 10 s shutdown grace).
    let (st, body) = http(
        &addr,
        None,
        "POST",
        "/v1/queues/logs/sessions",
        "application/json",
        b"{}",
    );
    assert_eq!(st, 201, "{body}");
    let sv: serde_json::Value = serde_json::from_str(&body).unwrap();
    let path = format!(
        "/v1/queues/logs/sessions/{}/receive",
        sv["session"].as_str().unwrap()
    );
    let mut poll = std::net::TcpStream::connect(&addr).unwrap();
    let req = br#"{"max":1,"wait_ms":20000}"#;
    write!(
        poll,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        req.len()
    )
    .unwrap();
    poll.write_all(req).unwrap();
    wait_for(
        Duration::from_secs(10),
        "the long-poll to be in its handler",
        || {
            let (_, m) = http(&addr, None, "GET", "/metrics", "text/plain", b"");
            m.contains("ackline_connections_busy{listener=\"http\"} 2")
        },
    );

    p.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let l = err_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("no 'stopping' line on stderr");
        if l.contains("stopping") {
            break;
        }
    }
    let first = Instant::now();
    p.signal("TERM");
    // The repeat is part of the first stop: still stopping gracefully a while later.
    while first.elapsed() < Duration::from_millis(1200) {
        assert!(
            p.0.try_wait().unwrap().is_none(),
            "a repeat within 1 s ended the process: {:?}",
            p.0.try_wait()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A signal after the window is a real second signal: exit at once, 130.
    p.signal("TERM");
    let st = p.wait_exit(Duration::from_secs(5));
    assert_eq!(st.code(), Some(130), "{st:?}");
    drop(poll);
}
