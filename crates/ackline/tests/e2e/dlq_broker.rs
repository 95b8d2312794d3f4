//! `ackline dlq list|show|replay|purge` and `ackline queue stats` with `--broker`, as real
//! processes: against the RabbitMQ of this machine (messages dead-lettered through the
//! library: publish, receive, reject with a reason) and against a child `ackline serve`
//! (the same through `HttpBroker`). The JSON is checked field by field (counts, ids,
//! reasons, keys, paging), a replayed message is received again from the queue with its id,
//! and no output ever shows the password.
//!
//! Each RabbitMQ run uses its own queue, deleted afterwards even when the test fails. When
//! RabbitMQ is unreachable the test prints why and returns, except under `CI=true`, where it
//! fails. No sleeps: every wait is on a condition with a deadline.

#![allow(clippy::unwrap_used)] // tests: a panic is a failed assertion

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::common::{ackline, free_port, reachable, run_with_deadline, unique};
use ackline_broker::{Broker, Consumer as _, ConsumerOptions, Delivery, Message, Settlement};
use ackline_http::HttpBroker;
use ackline_rabbitmq::{RabbitBroker, RabbitOptions};
use serde_json::Value;

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const TOKEN: &str = "dlq-broker-token-0123456789";

/// Whether RabbitMQ accepts TCP connections (see [`crate::common::reachable`]).
fn rabbit_reachable() -> bool {
    reachable("RabbitMQ", "127.0.0.1:5672", "rabbitmq-server -detached")
}

/// A runtime whose worker thread keeps the library's connections alive while the test waits
/// for a child process.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Deletes the queue, its delay queues and its dead-letter queue when dropped, even while
/// the test unwinds (on its own thread and runtime).
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let queue = self.0.clone();
        let t = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                match RabbitBroker::connect(AMQP, &queue, RabbitOptions::default()).await {
                    Ok(b) => {
                        if let Err(e) = b.delete().await {
                            eprintln!("cleanup of {queue} failed: {e}");
                        }
                    }
                    Err(e) => eprintln!("cleanup of {queue} failed: {e}"),
                }
            });
        });
        let _ = t.join();
    }
}

/// Runs `ackline --data-dir DIR ARGS...` with the broker-related environment cleared plus
/// `env`; fails if it takes a minute or prints a password.
fn cli(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = ackline();
    for v in [
        "ACKLINE_CONFIG",
        "ACKLINE_BROKER_URL",
        "ACKLINE_BROKER_TLS_CA_FILE",
        "ACKLINE_QUEUE_NAME",
        "ACKLINE_TOKEN",
    ] {
        c.env_remove(v);
    }
    c.envs(env.iter().copied());
    c.arg("--data-dir").arg(dir).args(args);
    let o = run_with_deadline(c, Duration::from_secs(60));
    for text in [&o.stdout, &o.stderr] {
        let text = String::from_utf8_lossy(text);
        assert!(
            !text.contains("guest:guest") && !text.contains(TOKEN),
            "a secret was printed by {args:?}:\n{text}"
        );
    }
    o
}

/// The JSON of a run that must succeed.
fn ok(o: &Output) -> Value {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    crate::common::json(o)
}

/// Entries of a `dlq list`/`show` answer as id -> entry.
fn by_id(v: &Value) -> BTreeMap<String, Value> {
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_str().unwrap().to_string(), e.clone()))
        .collect()
}

/// Publishes `ids` (payload `payload of ID`) and rejects each with reason `bad ID`.
async fn dead_letter<B: Broker>(b: &B, ids: &[&str]) {
    let msgs = ids
        .iter()
        .map(|id| Message::new(*id, format!("payload of {id}")).with_header("origin", "test"))
        .collect();
    b.publish(msgs).await.unwrap();
    let c = b
        .consumer(ConsumerOptions {
            prefetch: 100,
            lease: Duration::from_secs(60),
        })
        .await
        .unwrap();
    let got = receive(&c, ids.len()).await;
    let settle = got
        .iter()
        .map(|d| {
            let reason = format!("bad {}", d.id);
            (d.tag.clone(), Settlement::Reject { reason })
        })
        .collect();
    for r in c.settle(settle).await.unwrap() {
        r.unwrap();
    }
    c.close().await;
}

/// Receives exactly `n` deliveries (within 30 s).
async fn receive<C: ackline_broker::Consumer>(c: &C, n: usize) -> Vec<Delivery> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while got.len() < n {
        assert!(Instant::now() < deadline, "received {} of {n}", got.len());
        got.extend(
            c.receive(n - got.len(), Duration::from_secs(1))
                .await
                .unwrap(),
        );
    }
    got
}

/// The `dlq list` / `show` / `replay` / `purge` and `queue stats` cycle over `broker`
/// (`--broker URL`, plus `extra` flags), with three messages dead-lettered on `lib`.
fn cycle<B: Broker>(
    rt: &tokio::runtime::Runtime,
    lib: &B,
    url: &str,
    queue: &str,
    extra: &[&str],
    shown_prefix: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ids = ["m-1", "m-2", "m-3"];
    rt.block_on(dead_letter(lib, &ids));
    let with = |args: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        v.extend(["--broker", url, "--queue", queue].map(String::from));
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |args: &[&str]| -> Value {
        let a = with(args);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        ok(&cli(&data, &[], &a))
    };

    // list: all three, with their reasons, attempts and payloads; the broker shown redacted.
    let v = run(&["--json", "dlq", "list"]);
    assert_eq!(v["queue"], queue, "{v}");
    assert!(
        v["broker"].as_str().unwrap().starts_with(shown_prefix),
        "{v}"
    );
    assert!(v["next_after"].is_null(), "{v}");
    let entries = by_id(&v);
    assert_eq!(entries.keys().collect::<Vec<_>>(), ids, "{v}");
    for (id, e) in &entries {
        assert_eq!(e["reason"], format!("bad {id}"), "{e}");
        assert_eq!(e["attempts"], 1, "{e}");
        assert_eq!(e["payload"], format!("payload of {id}"), "{e}");
        assert_eq!(e["payload_bytes"], format!("payload of {id}").len(), "{e}");
        assert!(
            e["headers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h[0] == "origin" && h[1] == "test"),
            "{e}"
        );
    }
    let keys: Vec<u64> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_u64().unwrap())
        .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "key order: {keys:?}");

    // Paging: two, then the rest after the second key.
    let p1 = run(&["--json", "dlq", "list", "--limit", "2"]);
    assert_eq!(p1["entries"].as_array().unwrap().len(), 2, "{p1}");
    assert_eq!(p1["next_after"], keys[1], "{p1}");
    let after = keys[1].to_string();
    let p2 = run(&["--json", "dlq", "list", "--after", &after]);
    assert_eq!(p2["entries"].as_array().unwrap().len(), 1, "{p2}");
    assert_eq!(p2["entries"][0]["key"], keys[2], "{p2}");

    // Human output names the entries too.
    let a = with(&["dlq", "list"]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let o = cli(&data, &[], &a);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && ids.iter().all(|id| text.contains(id)),
        "{text}"
    );

    // show: by key and by id.
    let k2 = entries["m-2"]["key"].as_u64().unwrap().to_string();
    let s = run(&["--json", "dlq", "show", &k2]);
    assert_eq!(s["entries"].as_array().unwrap().len(), 1, "{s}");
    assert_eq!(s["entries"][0]["id"], "m-2", "{s}");
    assert_eq!(s["entries"][0]["reason"], "bad m-2", "{s}");
    let s = run(&["--json", "dlq", "show", "--id", "m-3"]);
    assert_eq!(s["entries"][0]["key"], entries["m-3"]["key"], "{s}");
    let a = with(&["--json", "dlq", "show", "--id", "nosuch"]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let o = cli(&data, &[], &a);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no dead-letter entry with id nosuch"),
        "{o:?}"
    );

    // replay m-1: back in the queue, attempts reset; two dead letters left.
    let r = run(&["--json", "dlq", "replay", "--id", "m-1"]);
    assert_eq!(
        (r["action"].as_str(), r["count"].as_u64()),
        (Some("replayed"), Some(1)),
        "{r}"
    );
    let st = run(&["--json", "queue", "stats"]);
    let q = &st["queues"][0];
    assert_eq!(q["queue"], queue, "{st}");
    assert_eq!(
        (q["pending"].as_u64(), q["ready"].as_u64()),
        (Some(1), Some(1)),
        "{st}"
    );
    assert_eq!(q["dead_letters"], 2, "{st}");
    let left = by_id(&run(&["--json", "dlq", "list"]));
    assert_eq!(left.keys().collect::<Vec<_>>(), ["m-2", "m-3"]);
    rt.block_on(async {
        let c = lib.consumer(ConsumerOptions::default()).await.unwrap();
        let d = receive(&c, 1).await;
        assert_eq!(d[0].id, "m-1");
        assert_eq!(d[0].attempt(), 1, "attempts reset: {:?}", d[0]);
        assert_eq!(d[0].payload, b"payload of m-1");
        let r = c
            .settle(vec![(d[0].tag.clone(), Settlement::Ack)])
            .await
            .unwrap();
        r[0].clone().unwrap();
        c.close().await;
    });

    // purge --all: the dead-letter queue is empty.
    let r = run(&["--json", "dlq", "purge", "--all"]);
    assert_eq!(
        (r["action"].as_str(), r["count"].as_u64()),
        (Some("purged"), Some(2)),
        "{r}"
    );
    let v = run(&["--json", "dlq", "list"]);
    assert!(v["entries"].as_array().unwrap().is_empty(), "{v}");
    let st = run(&["--json", "queue", "stats"]);
    assert_eq!(
        (
            st["queues"][0]["pending"].as_u64(),
            st["queues"][0]["dead_letters"].as_u64()
        ),
        (Some(0), Some(0)),
        "{st}"
    );
    assert!(
        !data.exists(),
        "the data directory is not touched with a broker"
    );
}

#[test]
fn dlq_tools_on_rabbitmq() {
    if !rabbit_reachable() {
        return;
    }
    let queue = unique("dlq_cli");
    let _cleanup = Cleanup(queue.clone());
    let rt = runtime();
    let lib = rt
        .block_on(RabbitBroker::connect(
            AMQP,
            &queue,
            RabbitOptions::default(),
        ))
        .unwrap();
    cycle(&rt, &lib, AMQP, &queue, &[], "amqp://guest:***@");

    // The broker may come from ACKLINE_BROKER_URL instead of --broker.
    let dir = tempfile::tempdir().unwrap();
    let o = cli(
        dir.path(),
        &[("ACKLINE_BROKER_URL", AMQP)],
        &["--json", "queue", "stats", &queue],
    );
    let st = ok(&o);
    assert_eq!(st["queues"][0]["backend"], "rabbitmq", "{st}");
    assert_eq!(st["queues"][0]["queue"], queue.as_str(), "{st}");
    rt.block_on(lib.close());

    // A mistyped queue name is an error naming it, and creates nothing on the broker.
    let missing = unique("dlq_cli_missing");
    let _cleanup_missing = Cleanup(missing.clone());
    let o = cli(
        dir.path(),
        &[],
        &["dlq", "list", "--broker", AMQP, "--queue", &missing],
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&missing) && err.contains("no such queue"),
        "{err}"
    );
    let created = rt.block_on(async {
        ackline_rabbitmq::RabbitBroker::connect_existing(
            ackline_rabbitmq::AmqpUrl::parse(AMQP).unwrap(),
            &missing,
            RabbitOptions::default(),
        )
        .await
    });
    assert!(created.is_err(), "dlq list created the queue {missing}");
}

#[test]
fn dlq_tools_on_ackline_serve() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .env_remove("ACKLINE_LISTEN")
        .env_remove("ACKLINE_TOKENS")
        .env_remove("ACKLINE_BROKER_URL")
        .arg("--data-dir")
        .arg(dir.path().join("server"))
        .args([
            "--json",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--queue",
            "hq",
            "--token",
            &format!("{TOKEN}:ingest,worker,admin"),
        ]);
    let (_serve, v) = crate::common::spawn_json_line(c);
    let addr = v["listening"].as_str().unwrap().to_string();
    let url = format!("http://{addr}");
    let rt = runtime();
    let lib = HttpBroker::connect(&format!("{url}/hq"), Some(TOKEN.to_string())).unwrap();
    cycle(&rt, &lib, &url, "hq", &["--token", TOKEN], &url);

    // Without the token the server refuses: a runtime error, exit 1.
    let o = cli(
        dir.path(),
        &[],
        &["dlq", "list", "--broker", &url, "--queue", "hq"],
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("401"), "{o:?}");

    // The token from a file (kept off the command line), surrounding whitespace ignored.
    let file = dir.path().join("admin.token");
    std::fs::write(&file, format!("  {TOKEN}\n")).unwrap();
    let file = file.to_str().unwrap();
    let o = cli(
        dir.path(),
        &[],
        &[
            "--json",
            "queue",
            "stats",
            "--broker",
            &url,
            "--queue",
            "hq",
            "--token-file",
            file,
        ],
    );
    assert_eq!(ok(&o)["queues"][0]["queue"], "hq", "{o:?}");
    // A file that cannot be read is a usage error naming the file (exit 2).
    let missing = dir.path().join("nope.token");
    let missing = missing.to_str().unwrap();
    let o = cli(
        dir.path(),
        &[],
        &[
            "dlq",
            "list",
            "--broker",
            &url,
            "--queue",
            "hq",
            "--token-file",
            missing,
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nope.token"),
        "{o:?}"
    );
}

#[test]
fn an_unreachable_broker_is_a_prompt_error_without_the_password() {
    // A port nobody listens on (free a moment ago).
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    for args in [
        vec!["dlq", "list"],
        vec!["dlq", "purge", "--all"],
        vec!["queue", "stats"],
    ] {
        for url in [
            format!("amqp://guest:s3cret@127.0.0.1:{port}/%2f"),
            format!("http://127.0.0.1:{port}"),
            format!("redis://ops:s3cret@127.0.0.1:{port}/0"),
            format!("nats://ops:s3cret@127.0.0.1:{port}"),
            // Kafka takes no credentials in its URL (below).
            format!("kafka://127.0.0.1:{port}"),
        ] {
            let mut a = args.clone();
            a.extend(["--broker", url.as_str()]);
            let started = Instant::now();
            let o = cli(dir.path(), &[], &a);
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(1), "{a:?}: {err}");
            assert!(err.contains("unavailable"), "{a:?}: {err}");
            assert!(!err.contains("s3cret"), "{a:?} printed the password: {err}");
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{a:?} took {:?}",
                started.elapsed()
            );
        }
    }
    // A malformed broker URL is a usage error, quoted without its password.
    let o = cli(
        dir.path(),
        &[],
        &["dlq", "list", "--broker", "amqp://guest:guest@/nohost"],
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    // Credentials in a Kafka URL are refused (they belong in broker.kafka_settings), unquoted.
    let o = cli(
        dir.path(),
        &[],
        &[
            "dlq",
            "list",
            "--broker",
            "kafka://ops:s3cret@127.0.0.1:9092",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(!err.contains("s3cret"), "printed the password: {err}");
}
