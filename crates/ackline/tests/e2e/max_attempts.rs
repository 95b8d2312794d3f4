//! `retry.max_attempts` in split mode (issue 11 item 12): the server's setting applies, so
//! `work --max-attempts` against an `ackline serve` is refused (exit 2, one line) instead of
//! being silently ignored, and `serve --max-attempts N` sets it for the server's queues.

#![allow(clippy::unwrap_used)] // tests: a panic is a failed assertion

use std::time::Duration;

use crate::common::{ackline, run_with_deadline};

const LIMIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "attempts-token-0123456789";

#[test]
fn work_refuses_max_attempts_against_a_server() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &[
            "work",
            "--broker",
            "http://127.0.0.1:9",
            "--max-attempts",
            "3",
        ][..],
        &[
            "work",
            "--queue",
            "http://127.0.0.1:9/logs",
            "--max-attempts",
            "3",
        ],
    ] {
        let mut c = ackline();
        c.env_remove("ACKLINE_CONFIG")
            .env_remove("ACKLINE_BROKER_URL")
            .arg("--data-dir")
            .arg(dir.path())
            .args(args);
        let o = run_with_deadline(c, LIMIT);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(
            err.contains("--max-attempts") && err.contains("serve"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn serve_max_attempts_applies_to_its_queue() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .env_remove("ACKLINE_LISTEN")
        .env_remove("ACKLINE_TOKENS")
        .env_remove("ACKLINE_RETRY_MAX_ATTEMPTS")
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "--json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--token",
            &format!("{TOKEN}:ingest,worker,admin"),
            "--max-attempts",
            "1",
        ]);
    let (_serve, v) = crate::common::spawn_json_line(c);
    let addr = v["listening"].as_str().unwrap().to_string();
    let http = |method: &str, path: &str, body: &str| {
        crate::common::http(
            &addr,
            Some(TOKEN),
            method,
            path,
            "application/json",
            body.as_bytes(),
        )
    };
    let (st, body) = http("POST", "/v1/logs?format=text", "one line\n");
    assert_eq!(st, 202, "{body}");
    let (st, body) = http("POST", "/v1/queues/logs/sessions", "{}");
    assert_eq!(st, 201, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let session = v["session"].as_str().unwrap().to_string();
    let (st, body) = http(
        "POST",
        &format!("/v1/queues/logs/sessions/{session}/receive"),
        r#"{"max": 1, "wait_ms": 5000}"#,
    );
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let d = &v["deliveries"][0];
    let item = serde_json::json!({"items": [{
        "key": d["key"], "attempt": d["attempt"], "op": "nack", "delay_ms": 0, "error": "boom"
    }]});
    let (st, body) = http(
        "POST",
        &format!("/v1/queues/logs/sessions/{session}/settle"),
        &item.to_string(),
    );
    assert_eq!(st, 200, "{body}");
    // With --max-attempts 1 the first failed delivery is the last (the default, 5, would
    // redeliver it).
    let (st, body) = http("GET", "/v1/queues/logs/dlq", "");
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{body}");
    assert_eq!(entries[0]["last_error"], "boom", "{body}");
    assert_eq!(entries[0]["attempts"], 1, "{body}");
}
