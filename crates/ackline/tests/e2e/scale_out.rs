//! Scale-out mode with real processes against the RabbitMQ and PostgreSQL of this machine:
//! `ackline serve --broker amqp://...` takes lines over HTTP and relays them to a RabbitMQ
//! quorum queue; `ackline work --broker amqp://... --store postgres://...` stores them. The
//! ingest node takes lines while RabbitMQ is unreachable to it (through a TCP gate the test
//! controls), is killed with SIGKILL holding them in its local queue, and is restarted on the
//! same data directory; a worker is killed with SIGKILL while it works. Every line that got a 202 must
//! be in PostgreSQL exactly once.
//!
//! Each run uses its own queue and table, deleted afterwards. When RabbitMQ or PostgreSQL is
//! unreachable the test prints why and returns, except under `CI=true`, where it fails.
//! No sleeps synchronise anything: every wait polls its condition against a deadline.

#![allow(clippy::unwrap_used)] // tests: a panic is a failed assertion

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Pg, Proc, ackline, free_port, pg_url, reachable, unique, wait_for};

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The value of the sample named exactly `name` in a text exposition.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

/// A TCP proxy to RabbitMQ that the test opens: while closed it accepts connections and
/// closes them at once (RabbitMQ is "down" for whoever connects through it).
struct Gate {
    port: u16,
    open: Arc<AtomicBool>,
}

impl Gate {
    fn start() -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(false));
        let gate = open.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                if !gate.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(upstream) = TcpStream::connect("127.0.0.1:5672") else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), upstream.try_clone().unwrap()),
                    (upstream, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Gate { port, open }
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }
}

/// Starts `serve --json --broker` on a free port; returns it and its address once it listens.
fn serve(dir: &Path, queue: &str, broker: &str) -> (Proc, String) {
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .env_remove("ACKLINE_LISTEN")
        .env_remove("ACKLINE_TOKENS")
        .env_remove("ACKLINE_BROKER_URL")
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--queue",
            queue,
            "--broker",
            broker,
        ]);
    let (p, v) = crate::common::spawn_json_line(c);
    assert!(
        !v.to_string().contains("guest:guest"),
        "the broker password is never printed: {v}"
    );
    assert!(
        v["relay_to"]
            .as_str()
            .unwrap()
            .starts_with("amqp://guest:***@"),
        "{v}"
    );
    (p, v["listening"].as_str().unwrap().to_string())
}

fn work(dir: &Path, queue: &str, table: &str, metrics_port: Option<u16>) -> Proc {
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .env_remove("ACKLINE_BROKER_URL")
        .env("ACKLINE_STORE_TABLE", table)
        .arg("--data-dir")
        .arg(dir)
        .args([
            "work",
            "--broker",
            AMQP,
            "--queue",
            queue,
            "--store",
            &pg_url(),
            "--workers",
            "2",
            "--batch-size",
            "50",
            "--prefetch",
            "100",
            "--lease",
            "5s",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(port) = metrics_port {
        c.args(["--metrics-listen", &format!("127.0.0.1:{port}")]);
    }
    Proc(c.spawn().unwrap())
}

fn post(addr: &str, queue: &str, lines: std::ops::Range<usize>, expected: &mut BTreeSet<String>) {
    // A line's id comes from the request's key and its index, never from its content.
    let key = format!("{queue}-{}", lines.start);
    let mut body = String::new();
    for i in lines.clone() {
        body += &format!(
            "{{\"id\":\"line\",\"ts\":\"2024-05-01T10:00:00Z\",\"level\":\"info\",\"msg\":\"line {i}\"}}\n"
        );
        expected.insert(format!("http:{key}:{}", i - lines.start));
    }
    let (st, resp) = crate::common::http_with(
        addr,
        None,
        "POST",
        &format!("/v1/logs?format=ndjson&queue={queue}"),
        "application/x-ndjson",
        &[("Idempotency-Key", &key)],
        body.as_bytes(),
    );
    assert_eq!(st, 202, "{resp}");
}

/// The local (ingest node's) queue: messages not yet relayed.
fn local_pending(addr: &str, queue: &str) -> u64 {
    let (st, body) = crate::common::http(
        addr,
        None,
        "GET",
        &format!("/v1/queues/{queue}/stats"),
        "application/json",
        b"",
    );
    assert_eq!(st, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["pending"].as_u64().unwrap()
}

/// Deletes the run's RabbitMQ queues when dropped (also while a failed test unwinds).
struct Queues(String);

impl Drop for Queues {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(b) = ackline_rabbitmq::RabbitBroker::connect(
                    AMQP,
                    &name,
                    ackline_rabbitmq::RabbitOptions::default(),
                )
                .await
                {
                    let _ = b.delete().await;
                }
            });
        })
        .join();
    }
}

#[test]
fn killed_ingest_node_and_worker_lose_nothing_and_store_nothing_twice() {
    if !reachable("RabbitMQ", "127.0.0.1:5672", "rabbitmq-server -detached")
        || !reachable(
            "PostgreSQL",
            "127.0.0.1:5432",
            "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
        )
    {
        return;
    }
    let t0 = Instant::now();
    let queue = unique("ackline-test.scaleout");
    let table = unique("scaleout");
    let _queues = Queues(queue.clone());
    let pg = Pg::connect(&table);
    let dir = tempfile::tempdir().unwrap();
    let mut expected = BTreeSet::new();

    const N: usize = 3000;
    // The first node reaches RabbitMQ through a closed gate: what it takes stays in its local
    // queue (its disk buffer), and it is killed with SIGKILL holding all of it.
    let gate = Gate::start();
    let (mut node, addr) = serve(dir.path(), &queue, &gate.url());
    for c in 0..6 {
        post(&addr, &queue, c * 250..(c + 1) * 250, &mut expected);
    }
    assert_eq!(
        local_pending(&addr, &queue),
        1500,
        "nothing relayed while down"
    );
    node.signal("KILL");
    assert_eq!(node.wait_exit(Duration::from_secs(10)).code(), None);
    // Restarted on the same data directory with RabbitMQ reachable: it relays the buffer.
    gate.open.store(true, Ordering::SeqCst);
    let (mut node, addr) = serve(dir.path(), &queue, &gate.url());

    let mut a = work(dir.path(), &queue, &table, None);
    wait_for(Duration::from_secs(60), "worker A's first rows", || {
        pg.counts().0 > 0
    });
    let metrics_port = free_port();
    let mut b = work(dir.path(), &queue, &table, Some(metrics_port));
    a.signal("KILL");
    assert_eq!(a.wait_exit(Duration::from_secs(10)).code(), None);
    for c in 0..6 {
        post(
            &addr,
            &queue,
            1500 + c * 250..1500 + (c + 1) * 250,
            &mut expected,
        );
    }
    wait_for(
        Duration::from_secs(120),
        "every line in PostgreSQL and nothing left to relay",
        || pg.counts().0 == N as i64 && local_pending(&addr, &queue) == 0,
    );

    // Worker B's metrics: every ack it made is one end-to-end observation, and its batches
    // were timed.
    // (Its last batch's ack may still be in flight when the rows are all there: poll.)
    let scrape = || {
        let (st, text) = crate::common::http(
            &format!("127.0.0.1:{metrics_port}"),
            None,
            "GET",
            "/metrics",
            "text/plain",
            b"",
        );
        assert_eq!(st, 200, "{text}");
        text
    };
    let settled = |text: &str| {
        let acked = metric(text, "ackline_worker_acked_total");
        let stored = metric(text, "ackline_worker_stored_total");
        stored > 0.0
            && acked >= stored
            && metric(text, "ackline_end_to_end_latency_seconds_count") == acked
            && metric(text, "ackline_store_batch_duration_seconds_count") >= 1.0
    };
    let mut last = String::new();
    wait_for(Duration::from_secs(30), "worker B's metrics", || {
        last = scrape();
        settled(&last)
    });
    assert!(settled(&last), "{last}");

    b.signal("TERM");
    assert_eq!(b.wait_exit(Duration::from_secs(30)).code(), Some(0));
    node.signal("TERM");
    assert_eq!(node.wait_exit(Duration::from_secs(30)).code(), Some(0));

    assert_eq!(pg.counts(), (N as i64, N as i64), "each line stored once");
    assert_eq!(pg.ids(), expected);
    eprintln!(
        "scale-out with a SIGKILLed ingest node and worker: {N} lines in {:?}",
        t0.elapsed()
    );
}

#[test]
fn work_without_a_broker_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .env_remove("ACKLINE_BROKER_URL")
        .arg("--data-dir")
        .arg(dir.path())
        .arg("work");
    let o = crate::common::run_with_deadline(c, Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--broker"), "{err}");

    // A bad AMQP URL is refused without echoing its password.
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["work", "--broker", "amqp://guest:hunter2-secret@/"]);
    let o = crate::common::run_with_deadline(c, Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("broker.url") && err.contains("--broker"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}
