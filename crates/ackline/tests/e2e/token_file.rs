//! Secrets kept off the command line: `serve --token-file` and `work --token-file` on real
//! processes; the secret never appears in `/proc/PID/cmdline` or in an error.

#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::Duration;

use crate::common::{Proc, ackline, http, run_with_deadline, wait_for};

const SECRET: &str = "file-secret-0123456789abcdef";

fn serve(dir: &std::path::Path, token_file: &std::path::Path) -> (Proc, String) {
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .env_remove("ACKLINE_LISTEN")
        .env_remove("ACKLINE_TOKENS")
        .arg("--data-dir")
        .arg(dir)
        .args(["--json", "serve", "--listen", "127.0.0.1:0", "--token-file"])
        .arg(token_file);
    let (p, v) = crate::common::spawn_json_line(c);
    assert_eq!(v["auth"], true, "{v}");
    (p, v["listening"].as_str().unwrap().to_string())
}

#[test]
fn serve_and_work_read_their_tokens_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!("# ackline serve tokens\n\n{SECRET}:ingest,worker,admin\n"),
    )
    .unwrap();
    let (server, addr) = serve(&dir.path().join("server"), &tokens);
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", server.0.id())).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&cmdline).contains(SECRET));

    let (st, _) = http(&addr, None, "POST", "/v1/logs", "text/plain", b"a\nb\nc\n");
    assert_eq!(st, 401);
    let (st, body) = http(
        &addr,
        Some(SECRET),
        "POST",
        "/v1/logs",
        "text/plain",
        b"a\nb\nc\n",
    );
    assert_eq!(st, 202, "{body}");

    let secret_file = dir.path().join("worker-token");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .env_remove("ACKLINE_TOKEN")
        .arg("--data-dir")
        .arg(dir.path().join("worker"))
        .args([
            "work",
            "--queue",
            &format!("http://{addr}/logs"),
            "--token-file",
        ])
        .arg(&secret_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let worker = Proc(c.spawn().unwrap());
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", worker.0.id())).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&cmdline).contains(SECRET));
    wait_for(Duration::from_secs(30), "the worker to ack all 3", || {
        let (st, body) = http(
            &addr,
            Some(SECRET),
            "GET",
            "/v1/queues/logs/stats",
            "application/json",
            b"",
        );
        st == 200 && body.contains("\"acked\":3")
    });
}

#[test]
fn a_bad_token_file_is_a_usage_error_that_does_not_quote_it() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "short-secret:ingest\n").unwrap();
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .env_remove("ACKLINE_LISTEN")
        .env_remove("ACKLINE_TOKENS")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--token-file"])
        .arg(&tokens);
    let o = run_with_deadline(c, Duration::from_secs(30));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("server.token_file"), "{err}");
    assert!(!err.contains("short-secret"), "{err}");
}
