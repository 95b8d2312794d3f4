//! What the scale-out tests on Redis Streams, NATS JetStream and Kafka share: a private broker
//! server (its own free port and temp dir, killed on drop and by a watchdog when the test
//! process is gone), `ackline` with no configuration from the environment, and the scale-out
//! scenario itself, run once per broker:
//!
//! `ackline serve --broker URL` takes 2,000 valid lines and a malformed one over HTTP and
//! relays them to the broker; `ackline work --broker URL --store sqlite:... --strict` is
//! SIGKILLed once it has stored some lines, more lines are posted, and a second worker
//! finishes: every valid line is stored exactly once (the exact id set; the killed worker's
//! deliveries come back after the lease), the malformed line is the one entry that
//! `ackline dlq list --broker URL` shows, and a mistyped queue is an error (exit 1), not a new
//! empty queue. No sleeps synchronise anything: every wait polls its condition.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Proc, ackline, run_with_deadline, sqlite_rows as counts, unique, wait_for};

/// Whether `bin --version` runs; fails under `CI=true` when it does not, else prints why.
/// `install` says how to get it.
pub fn available(bin: &str, install: &str) -> bool {
    let found = Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "no runnable `{bin}` (CI=true, so this fails): {install}"
        );
        println!("skipped: no runnable `{bin}` ({install})");
    }
    found
}

/// A private server process, killed on drop; a watchdog kills it when the test process is
/// gone or after 10 minutes.
pub struct Daemon {
    /// Holds the server's data and log; removed on drop.
    _dir: tempfile::TempDir,
    child: Child,
    watchdog: Child,
}

impl Daemon {
    /// Starts `cmd` (its output discarded but for stderr) with the watchdog, then waits (at
    /// most 20 s) until `up` holds.
    pub fn start(mut cmd: Command, dir: tempfile::TempDir, up: impl Fn() -> bool) -> Daemon {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let watchdog = ackline_broker::watchdog::watch(child.id(), Duration::from_secs(600));
        let d = Daemon {
            _dir: dir,
            child,
            watchdog,
        };
        wait_for(Duration::from_secs(20), "the private server to answer", up);
        d
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        for c in [&mut self.child, &mut self.watchdog] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Sends `hello` to 127.0.0.1:`port` and reports whether the answer's first line starts with
/// `expect` (after `skip_greeting` lines, for servers that speak first).
pub fn answers(port: u16, skip_greeting: bool, hello: &[u8], expect: &[u8]) -> bool {
    use std::io::{BufRead, BufReader, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let Ok(read) = s.try_clone() else {
        return false;
    };
    let mut r = BufReader::new(read);
    let mut line = Vec::new();
    if skip_greeting && r.read_until(b'\n', &mut line).is_err() {
        return false;
    }
    if s.write_all(hello).is_err() {
        return false;
    }
    line.clear();
    r.read_until(b'\n', &mut line).is_ok() && line.starts_with(expect)
}

/// Spawns `c` with its stderr piped and reads it until a line contains `until` (at most 60 s):
/// the process and every stderr line up to that one.
pub fn spawn_until_noted(mut c: Command, until: &str) -> (Proc, Vec<String>) {
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut p = Proc(c.spawn().unwrap());
    let stderr = p.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(l);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let l = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no stderr line with {until:?}: {seen:#?}"));
        seen.push(l.clone());
        if l.contains(until) {
            return (p, seen);
        }
    }
}

/// `ackline` with no configuration from the environment.
pub fn cmd(dir: &Path) -> Command {
    let mut c = ackline();
    for v in [
        "ACKLINE_CONFIG",
        "ACKLINE_BROKER_URL",
        "ACKLINE_BROKER_ALLOW_VOLATILE",
        "ACKLINE_BROKER_CREDENTIALS_FILE",
        "ACKLINE_BROKER_KAFKA_PARTITIONS",
        "ACKLINE_BROKER_KAFKA_SETTINGS",
        "ACKLINE_QUEUE_NAME",
        "ACKLINE_LISTEN",
        "ACKLINE_TOKENS",
    ] {
        c.env_remove(v);
    }
    c.arg("--data-dir").arg(dir);
    c
}

/// `ackline work` on `queue` of `broker` into the SQLite file `db` (2 s leases), stderr
/// inherited, with `env` set.
fn work(dir: &Path, broker: &str, queue: &str, db: &Path, env: &[(&str, &str)]) -> Proc {
    let mut c = cmd(dir);
    c.envs(env.iter().copied());
    c.args([
        "work",
        "--broker",
        broker,
        "--queue",
        queue,
        "--store",
        &format!("sqlite:{}", db.display()),
        "--format",
        "json",
        "--strict",
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

fn ids(db: &Path) -> BTreeSet<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c.prepare("SELECT id FROM ackline_records").unwrap();
    st.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Posts `lines` as one `format=text` request; returns the ids they got (the request's key
/// and each line's index).
fn post(addr: &str, queue: &str, key: &str, lines: &[String]) -> Vec<String> {
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let (st, resp) = crate::common::http_with(
        addr,
        None,
        "POST",
        &format!("/v1/logs?format=text&queue={queue}"),
        "text/plain",
        &[("Idempotency-Key", key)],
        body.as_bytes(),
    );
    assert_eq!(st, 202, "{resp}");
    (0..lines.len())
        .map(|i| format!("http:{key}:{i}"))
        .collect()
}

/// The scenario of the module doc against `broker` (a URL `ackline` takes), on a queue named
/// from `prefix`.
pub fn scale_out_survives_a_killed_worker(broker: &str, prefix: &str) {
    scale_out_survives_a_killed_worker_with(broker, prefix, &[]);
}

/// The scenario with `env` set for every `ackline` it runs (broker settings a test server
/// needs).
pub fn scale_out_survives_a_killed_worker_with(broker: &str, prefix: &str, env: &[(&str, &str)]) {
    let cmd = |dir: &Path| {
        let mut c = cmd(dir);
        c.envs(env.iter().copied());
        c
    };
    let t0 = Instant::now();
    let queue = unique(prefix);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("records.db");

    let mut c = cmd(dir.path());
    c.args([
        "--json",
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--queue",
        &queue,
        "--broker",
        broker,
    ]);
    let (mut node, v) = crate::common::spawn_json_line(c);
    assert_eq!(v["relay_to"].as_str().unwrap(), broker, "{v}");
    let addr = v["listening"].as_str().unwrap().to_string();

    const N: usize = 2000;
    let mut expected = BTreeSet::new();
    let line = |i: usize| {
        format!("{{\"ts\":\"2024-05-01T10:00:00Z\",\"level\":\"info\",\"msg\":\"line {i}\"}}")
    };
    for c in 0..4 {
        let lines: Vec<String> = (c * 250..(c + 1) * 250).map(line).collect();
        expected.extend(post(&addr, &queue, &format!("{queue}-{c}"), &lines));
    }
    let bad = post(
        &addr,
        &queue,
        &format!("{queue}-bad"),
        &["this is not json {".into()],
    );

    let mut a = work(dir.path(), broker, &queue, &db, env);
    wait_for(Duration::from_secs(60), "the worker's first rows", || {
        counts(&db).0 > 0
    });
    a.signal("KILL");
    assert_eq!(a.wait_exit(Duration::from_secs(10)).code(), None);
    for c in 4..8 {
        let lines: Vec<String> = (c * 250..(c + 1) * 250).map(line).collect();
        expected.extend(post(&addr, &queue, &format!("{queue}-{c}"), &lines));
    }
    let mut b = work(dir.path(), broker, &queue, &db, env);
    wait_for(Duration::from_secs(120), "every line stored", || {
        counts(&db).0 >= N as i64
    });

    // The malformed line is in the broker's dead-letter queue, listed through the CLI.
    let list = || {
        let mut c = cmd(dir.path());
        c.args([
            "--json", "dlq", "list", "--broker", broker, "--queue", &queue,
        ]);
        let o = run_with_deadline(c, Duration::from_secs(60));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        crate::common::json(&o)
    };
    let mut last = serde_json::Value::Null;
    wait_for(Duration::from_secs(30), "the dead letter", || {
        last = list();
        last["entries"].as_array().is_some_and(|e| !e.is_empty())
    });
    let entries = last["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{last}");
    assert_eq!(entries[0]["id"].as_str().unwrap(), bad[0], "{last}");

    // `queue stats --broker` sees the queue (nothing left but the dead letter).
    let mut c = cmd(dir.path());
    c.args([
        "--json", "queue", "stats", "--broker", broker, "--queue", &queue,
    ]);
    let o = run_with_deadline(c, Duration::from_secs(60));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stats = crate::common::json(&o);
    assert_eq!(stats["queues"][0]["queue"], queue.as_str(), "{stats}");
    assert_eq!(stats["queues"][0]["dead_letters"], 1, "{stats}");

    // A mistyped queue is an error, not a new queue.
    let mut c = cmd(dir.path());
    c.args([
        "dlq",
        "list",
        "--broker",
        broker,
        "--queue",
        "no-such-queue",
    ]);
    let o = run_with_deadline(c, Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(1), "{o:?}");

    b.signal("TERM");
    assert_eq!(b.wait_exit(Duration::from_secs(30)).code(), Some(0));
    node.signal("TERM");
    assert_eq!(node.wait_exit(Duration::from_secs(30)).code(), Some(0));
    assert_eq!(counts(&db), (N as i64, N as i64), "each line stored once");
    assert_eq!(ids(&db), expected);
    eprintln!(
        "scale-out on {broker} with a SIGKILLed worker: {N} lines in {:?}",
        t0.elapsed()
    );
}
