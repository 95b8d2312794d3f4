//! A store that is not there, with real processes: `ackline work` and `ackline run` reach the
//! machine's PostgreSQL through a TCP proxy the test controls (refusing, black-holing,
//! restored; `ackline-worker/tests/worker/proxy.rs`), never by stopping the shared server.
//!
//! - A worker started while its store refuses, then is silent, waits, and works once the store
//!   appears: every line stored once, nothing dead-lettered.
//! - Bad credentials are not waited for: exit 1 with the server's error.
//!
//! Each run uses its own table, dropped afterwards. When PostgreSQL is unreachable the test
//! prints why and returns, except under `CI=true`, where it fails. Every wait polls its
//! condition against a deadline.

#![allow(clippy::unwrap_used)] // tests: a panic is a failed assertion

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::common::{Pg, Proc, ackline, pg_url, reachable, unique, wait_for};
use crate::proxy::Proxy;

/// The PostgreSQL URL through `proxy`.
fn via(proxy: &Proxy) -> String {
    pg_url().replace("127.0.0.1:5432", &proxy.addr().to_string())
}

fn pg_up() -> bool {
    reachable(
        "PostgreSQL",
        "127.0.0.1:5432",
        ".ci/run (it starts PostgreSQL)",
    )
}

/// `serve --json` on a free port of `dir`, `max_attempts` deliveries per message; returns it
/// and its address once it listens.
fn serve(dir: &Path, max_attempts: u32) -> (Proc, String) {
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .env_remove("ACKLINE_LISTEN")
        .env_remove("ACKLINE_TOKENS")
        .env("ACKLINE_RETRY_MAX_ATTEMPTS", max_attempts.to_string())
        .arg("--data-dir")
        .arg(dir)
        .args(["--json", "serve", "--listen", "127.0.0.1:0"]);
    let (p, v) = crate::common::spawn_json_line(c);
    (p, v["listening"].as_str().unwrap().to_string())
}

fn post(addr: &str, lines: std::ops::Range<usize>) {
    let body: String = lines
        .map(|i| {
            format!(
                "{{\"id\":\"line-{i}\",\"ts\":\"2024-05-01T10:00:00Z\",\"level\":\"info\",\"msg\":\"line {i}\"}}\n"
            )
        })
        .collect();
    let (st, resp) = crate::common::http(
        addr,
        None,
        "POST",
        "/v1/logs?format=ndjson",
        "application/x-ndjson",
        body.as_bytes(),
    );
    assert_eq!(st, 202, "{resp}");
}

/// The server's counts of its queue `logs`.
fn server_stats(addr: &str) -> serde_json::Value {
    let (st, body) = crate::common::http(
        addr,
        None,
        "GET",
        "/v1/queues/logs/stats",
        "application/json",
        b"",
    );
    assert_eq!(st, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// (pending, dead letters) of the server's queue `logs`.
fn queue_counts(addr: &str) -> (u64, u64) {
    let v = server_stats(addr);
    (
        v["pending"].as_u64().unwrap(),
        v["dead_letters"].as_u64().unwrap(),
    )
}

/// `work` from the server at `addr` into `table` through `proxy`, its stderr (logs) in `log`.
fn work(dir: &Path, addr: &str, table: &str, proxy: &Proxy, log: &Path) -> Proc {
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .env_remove("ACKLINE_BROKER_URL")
        .env_remove("ACKLINE_LOG")
        .env("ACKLINE_STORE_TABLE", table)
        .arg("--data-dir")
        .arg(dir)
        .args(["work", "--broker", &format!("http://{addr}"), "--store"])
        .arg(via(proxy))
        .args(["--batch-size", "50", "--prefetch", "100", "--lease", "1s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    Proc(c.spawn().unwrap())
}

/// The case, with real processes: `serve` with `retry.max_attempts = 1`, one `work`
/// whose PostgreSQL goes silent for several leases (half-open connections, new ones
/// black-holed) and then answers again on new connections only. No attempt is spent (nothing
/// redelivered, nothing dead-lettered), the worker recovers by itself, every line is stored
/// once, and the store's state changes are logged at WARN.
#[test]
fn through_serve_a_silent_store_spends_no_attempt_and_the_worker_recovers_by_itself() {
    if !pg_up() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let table = unique("silent");
    let pg = Pg::connect(&table);
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap());
    let (_server, addr) = serve(&dir.path().join("server"), 1);
    let log = dir.path().join("work.log");
    let mut worker = work(&dir.path().join("worker"), &addr, &table, &proxy, &log);
    let stderr = || std::fs::read_to_string(&log).unwrap_or_default();

    post(&addr, 0..100);
    wait_for(Duration::from_secs(60), "the first lines stored", || {
        pg.counts() == (100, 100)
    });
    proxy.black_hole();
    post(&addr, 100..300);
    wait_for(Duration::from_secs(30), "the outage to be logged", || {
        stderr().contains("store unavailable")
    });
    // Several leases (1 s) of silence, the server watching the worker's sessions meanwhile.
    let silent_at = std::time::Instant::now();
    wait_for(Duration::from_secs(30), "5 s of silence", || {
        let v = server_stats(&addr);
        assert_eq!(v["dead_letters"], 0, "the silence dead-lettered: {v}");
        assert_eq!(v["redelivered"], 0, "the silence spent attempts: {v}");
        silent_at.elapsed() >= Duration::from_secs(5)
    });
    assert!(pg.counts().0 < 300, "stored through a black hole?");

    proxy.restore(); // new connections only: the open ones stay silent
    wait_for(Duration::from_secs(60), "every line stored", || {
        pg.counts() == (300, 300)
    });
    wait_for(Duration::from_secs(30), "every ack", || {
        queue_counts(&addr) == (0, 0)
    });
    let v = server_stats(&addr);
    assert_eq!(
        (v["redelivered"].as_u64(), v["dead_lettered"].as_u64()),
        (Some(0), Some(0)),
        "{v}"
    );
    assert!(stderr().contains("store available again"), "{}", stderr());
    worker.signal("TERM");
    let st = worker.wait_exit(Duration::from_secs(30));
    assert!(st.success(), "work exited {st:?}:\n{}", stderr());
}

#[test]
fn a_worker_started_while_its_store_is_down_waits_and_then_works() {
    if !pg_up() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let table = unique("startwait");
    let pg = Pg::connect(&table);
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap());
    proxy.refuse();
    let (_server, addr) = serve(&dir.path().join("server"), 5);

    let log = dir.path().join("work.log");
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .env_remove("ACKLINE_BROKER_URL")
        .env("ACKLINE_STORE_TABLE", &table)
        .arg("--data-dir")
        .arg(dir.path().join("worker"))
        .args(["work", "--broker", &format!("http://{addr}"), "--store"])
        .arg(via(&proxy))
        .args(["--batch-size", "50", "--prefetch", "100", "--lease", "2s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut worker = Proc(c.spawn().unwrap());
    let stderr = || std::fs::read_to_string(&log).unwrap_or_default();

    wait_for(
        Duration::from_secs(30),
        "the worker to wait for the store",
        || stderr().contains("waiting for the store") || worker.0.try_wait().unwrap().is_some(),
    );
    assert!(
        worker.0.try_wait().unwrap().is_none(),
        "the worker exited instead of waiting for its store:\n{}",
        stderr()
    );
    // Still waiting, now on a store that accepts connections and never answers.
    proxy.black_hole();
    let tried = proxy.accepted();
    wait_for(
        Duration::from_secs(30),
        "the worker to try the silent store twice",
        || proxy.accepted() >= tried + 2,
    );
    assert!(
        worker.0.try_wait().unwrap().is_none(),
        "the worker exited while its store was down:\n{}",
        stderr()
    );
    post(&addr, 0..300);

    proxy.restore();
    wait_for(Duration::from_secs(60), "every line stored", || {
        pg.counts() == (300, 300)
    });
    wait_for(Duration::from_secs(30), "every ack", || {
        queue_counts(&addr) == (0, 0)
    });
    worker.signal("TERM");
    let st = worker.wait_exit(Duration::from_secs(30));
    assert!(st.success(), "work exited {st:?}:\n{}", stderr());
    assert!(
        stderr().contains("the store answered after"),
        "{}",
        stderr()
    );
    assert_eq!(pg.counts(), (300, 300), "every line exactly once");
}

#[test]
fn bad_store_credentials_are_not_waited_for() {
    if !pg_up() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = pg_url().replacen("postgres://postgres", "postgres://no_such_role_ackline", 1);
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["run", "--once", "--store", &url]);
    let o = crate::common::run_with_deadline(c, Duration::from_secs(30));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no_such_role_ackline") && err.contains("does not exist"),
        "{err}"
    );
    assert!(!err.contains("waiting for the store"), "{err}");
}

/// `ackline --json queue stats logs` of `dir`: (pending, dead letters).
fn local_queue(dir: &Path) -> (u64, u64) {
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .arg("--data-dir")
        .arg(dir)
        .args(["--json", "queue", "stats", "logs"]);
    let o = crate::common::run_with_deadline(c, Duration::from_secs(30));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = crate::common::json(&o);
    let q = v["queues"]
        .as_array()
        .and_then(|qs| {
            qs.iter()
                .find(|q| q["queue"] == "logs" || q["name"] == "logs")
        })
        .unwrap_or_else(|| panic!("no queue logs in {v}"));
    (
        q["pending"].as_u64().unwrap(),
        q["dead_letters"].as_u64().unwrap(),
    )
}

/// `run --once` whose store goes silent after it opened it (the disk-full case of the issue:
/// an outage that never ends) gives up after `--max-outage`: exit 1 with an error saying so,
/// every line still queued, nothing stored, nothing dead-lettered.
#[test]
fn run_once_gives_up_on_a_store_down_past_max_outage_with_everything_queued() {
    if !pg_up() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let table = unique("maxoutage");
    let pg = Pg::connect(&table);
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap());
    let log = dir.path().join("run.log");
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .env("ACKLINE_STORE_TABLE", &table)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["run", "--once", "-", "--store"])
        .arg(via(&proxy))
        .args(["--max-outage", "2s", "--lease", "1s", "--batch-size", "50"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut run = Proc(child);
    let stderr = || std::fs::read_to_string(&log).unwrap_or_default();

    // The pipeline writes its status file once the store is open and it runs.
    wait_for(Duration::from_secs(30), "the run to start", || {
        dir.path().join("run-status.json").exists()
    });
    proxy.black_hole();
    let lines: String = (0..200)
        .map(|i| format!("<14>1 2026-11-28T10:00:00Z web app {i} - - request {i}\n"))
        .collect();
    std::io::Write::write_all(&mut stdin, lines.as_bytes()).unwrap();
    drop(stdin);

    let st = run.wait_exit(Duration::from_secs(60));
    let err = stderr();
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains("worker.max_outage") && err.contains("still queued"),
        "{err}"
    );
    assert_eq!(local_queue(dir.path()), (200, 0), "every line still queued");
    proxy.restore();
    assert_eq!(pg.counts(), (0, 0), "nothing stored through the black hole");
}

/// `run --once` started while its store refuses gives up after `--max-outage` too.
#[test]
fn run_once_with_its_store_down_at_start_gives_up_after_max_outage() {
    if !pg_up() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap());
    proxy.refuse();
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .env("ACKLINE_STORE_TABLE", unique("startdown"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["run", "--once", "--store"])
        .arg(via(&proxy))
        .args(["--max-outage", "1500ms"]);
    let o = crate::common::run_with_deadline(c, Duration::from_secs(30));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("waiting for the store") && err.contains("longer than worker.max_outage"),
        "{err}"
    );
}

/// A signal ends the start-up wait for a silent store: exit 0, nothing opened.
#[test]
fn a_signal_ends_the_wait_for_a_silent_store() {
    if !pg_up() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap());
    proxy.black_hole();
    let (_server, addr) = serve(&dir.path().join("server"), 5);
    let log = dir.path().join("work.log");
    let table = unique("sigwait");
    let mut worker = work(&dir.path().join("worker"), &addr, &table, &proxy, &log);
    let stderr = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for(
        Duration::from_secs(30),
        "the worker to wait for the store",
        || stderr().contains("waiting for the store"),
    );
    worker.signal("TERM");
    let st = worker.wait_exit(Duration::from_secs(10));
    assert!(st.success(), "work exited {st:?}:\n{}", stderr());
    assert!(
        stderr().contains("stopped before the store answered"),
        "{}",
        stderr()
    );
}
