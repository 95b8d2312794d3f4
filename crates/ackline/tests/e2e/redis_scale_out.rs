//! Scale-out on Redis Streams with real processes: `ackline serve --broker redis://...` takes
//! lines over HTTP and relays them to a stream of a private `redis-server` (AOF,
//! `appendfsync always`); `ackline work --broker redis://... --store sqlite:... --strict`
//! stores them. The worker is SIGKILLed once it has stored some lines and restarted: every
//! valid line is stored exactly once (the killed worker's deliveries are claimed after the
//! lease), and the malformed line is in the dead-letter stream, as `ackline dlq list --broker
//! redis://...` shows. A second server without persistence is refused by `work` (exit 1, the
//! risk named) unless `--allow-volatile`.
//!
//! Each test starts its own `redis-server` on a free port in a temp dir (the approach of
//! ackline-redis' test helper): killed at the end, and by a watchdog when the test process is
//! gone. When the binary is missing the test prints why and returns, except under `CI=true`,
//! where it fails. No sleeps synchronise anything: every wait polls its condition.

#![allow(clippy::unwrap_used)] // tests: a panic is a failed assertion

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Proc, ackline, free_port, run_with_deadline, unique, wait_for};

/// The `redis-server` binary: `ACKLINE_REDIS_SERVER`, else `redis-server` on the PATH.
fn binary() -> String {
    std::env::var("ACKLINE_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

/// Whether `redis-server` runs; fails under `CI=true` when it does not, else prints why.
fn available() -> bool {
    let found = Command::new(binary())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "no runnable `{}` (CI=true, so this fails): install redis-server or set \
             ACKLINE_REDIS_SERVER",
            binary()
        );
        println!("skipped: no runnable `{}`", binary());
    }
    found
}

/// A private redis-server, killed on drop; a watchdog kills it when the test process is gone
/// or after 10 minutes.
struct Redis {
    port: u16,
    /// Holds the AOF and log; removed on drop.
    _dir: tempfile::TempDir,
    child: Child,
    watchdog: Child,
}

impl Redis {
    fn start(aof: bool) -> Redis {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(binary());
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(dir.path().join("redis.log"))
            .args(["--save", "", "--daemonize", "no"]);
        if aof {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let script = format!(
            "i=0; while [ $i -lt 600 ] && kill -0 {} 2>/dev/null && kill -0 {} 2>/dev/null; \
             do sleep 1; i=$((i+1)); done; kill -9 {} 2>/dev/null",
            std::process::id(),
            child.id(),
            child.id()
        );
        let watchdog = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let r = Redis {
            port,
            _dir: dir,
            child,
            watchdog,
        };
        wait_for(Duration::from_secs(20), "redis-server to answer", || {
            r.ping()
        });
        r
    }

    fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        for c in [&mut self.child, &mut self.watchdog] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `ackline` with no configuration from the environment.
fn cmd(dir: &Path) -> Command {
    let mut c = ackline();
    for v in [
        "ACKLINE_CONFIG",
        "ACKLINE_BROKER_URL",
        "ACKLINE_BROKER_ALLOW_VOLATILE",
        "ACKLINE_QUEUE_NAME",
        "ACKLINE_LISTEN",
        "ACKLINE_TOKENS",
    ] {
        c.env_remove(v);
    }
    c.arg("--data-dir").arg(dir);
    c
}

fn work(dir: &Path, broker: &str, queue: &str, db: &Path) -> Proc {
    let mut c = cmd(dir);
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

/// (rows, distinct ids) in the SQLite store; (0, 0) before it exists.
fn counts(db: &Path) -> (i64, i64) {
    let Ok(c) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return (0, 0);
    };
    c.query_row(
        "SELECT count(*), count(DISTINCT id) FROM ackline_records",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap_or((0, 0))
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

#[test]
fn redis_scale_out_survives_a_killed_worker_and_dead_letters_malformed_lines() {
    if !available() {
        return;
    }
    let t0 = Instant::now();
    let redis = Redis::start(true);
    let broker = redis.url();
    let queue = unique("ackline-test.redis");
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
        &broker,
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

    let mut a = work(dir.path(), &broker, &queue, &db);
    wait_for(Duration::from_secs(60), "the worker's first rows", || {
        counts(&db).0 > 0
    });
    a.signal("KILL");
    assert_eq!(a.wait_exit(Duration::from_secs(10)).code(), None);
    for c in 4..8 {
        let lines: Vec<String> = (c * 250..(c + 1) * 250).map(line).collect();
        expected.extend(post(&addr, &queue, &format!("{queue}-{c}"), &lines));
    }
    let mut b = work(dir.path(), &broker, &queue, &db);
    wait_for(Duration::from_secs(120), "every line stored", || {
        counts(&db).0 >= N as i64
    });

    // The malformed line is in Redis' dead-letter stream, listed through the CLI.
    let list = || {
        let mut c = cmd(dir.path());
        c.args([
            "--json", "dlq", "list", "--broker", &broker, "--queue", &queue,
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

    // A mistyped queue is an error, not a new stream.
    let mut c = cmd(dir.path());
    c.args([
        "dlq",
        "list",
        "--broker",
        &broker,
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
        "redis scale-out with a SIGKILLed worker: {N} lines in {:?}",
        t0.elapsed()
    );
}

#[test]
fn work_refuses_a_volatile_redis_unless_allowed() {
    if !available() {
        return;
    }
    let redis = Redis::start(false);
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("records.db").display());
    let args = |extra: &[&str]| {
        let mut c = cmd(dir.path());
        c.args([
            "work",
            "--broker",
            &redis.url(),
            "--queue",
            "volatile",
            "--store",
            &db,
        ])
        .args(extra);
        c
    };
    let o = run_with_deadline(args(&[]), Duration::from_secs(60));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("appendonly no") && err.contains("--allow-volatile"),
        "{err}"
    );

    // With --allow-volatile it starts (and says what is at risk), then stops on SIGTERM.
    let mut c = args(&["--allow-volatile"]);
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
            .unwrap_or_else(|_| panic!("work did not start: {seen:#?}"));
        seen.push(l.clone());
        if l.contains("ackline work: redis://") {
            break;
        }
    }
    assert!(
        seen.iter()
            .any(|l| l.contains("at risk") && l.contains("appendonly no")),
        "{seen:#?}"
    );
    p.signal("TERM");
    assert_eq!(p.wait_exit(Duration::from_secs(30)).code(), Some(0));
}
