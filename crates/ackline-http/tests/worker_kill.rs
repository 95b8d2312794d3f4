//! A remote worker killed with SIGKILL while it holds leases: its deliveries reach another
//! worker within the lease + 100 ms and are stored once. The killed worker is this test binary
//! re-run with `ACKLINE_WORKER_CHILD` set (a worker runtime over `HttpBroker` whose processing
//! hangs once it holds deliveries).

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ackline_broker::{Broker, Delivery, Message};
use ackline_http::HttpBroker;
use ackline_parse::{Parser, ParserConfig, Record};
use ackline_server::{Server, ServerConfig};
use ackline_store::{SqliteStore, StoreOptions};
use ackline_worker::{ParseProcess, Process, ProcessError, Runtime, WorkerConfig};

const CHILD: &str = "ACKLINE_WORKER_CHILD";
const LEASE: Duration = Duration::from_secs(1);
const N: usize = 100;

/// Marks that it holds deliveries, then hangs (until SIGKILL).
struct Hang(PathBuf);

impl Process for Hang {
    fn process(&self, _: &Delivery) -> Result<Record, ProcessError> {
        let _ = std::fs::write(&self.0, "holding");
        loop {
            std::thread::park();
        }
    }
}

/// Records when each message was first seen, with its attempt.
struct Seen {
    inner: ParseProcess,
    seen: Arc<Mutex<HashMap<String, (Instant, u32)>>>,
}

impl Process for Seen {
    fn process(&self, d: &Delivery) -> Result<Record, ProcessError> {
        self.seen
            .lock()
            .unwrap()
            .entry(d.id.clone())
            .or_insert((Instant::now(), d.attempt()));
        self.inner.process(d)
    }
}

fn cfg(batch_wait: Duration) -> WorkerConfig {
    WorkerConfig {
        workers: 1,
        prefetch: N,
        batch_size: N,
        batch_wait,
        lease: LEASE,
        ..Default::default()
    }
}

#[test]
fn worker_child() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    let (url, marker) = spec.split_once('|').unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let broker = Arc::new(HttpBroker::connect(url, None).unwrap());
        let dir = Path::new(marker).parent().unwrap().join("child.db");
        let store = Arc::new(
            SqliteStore::open(dir, &StoreOptions::default())
                .await
                .unwrap(),
        );
        let rt = Runtime::new(
            broker,
            store,
            Arc::new(Hang(marker.into())),
            cfg(Duration::from_millis(300)),
        );
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let _ = rt.run(rx).await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_leases_go_to_another_worker_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::bind(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::new(dir.path().join("data"))
    })
    .await
    .unwrap();
    let url = format!("http://{}", server.local_addr());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = stop_rx.await;
    }));
    let broker = Arc::new(HttpBroker::connect(&url, None).unwrap());
    let msgs = (0..N)
        .map(|i| Message::new(format!("m-{i}"), format!("line {i}")).with_header("input", "test"))
        .collect();
    broker.publish(msgs).await.unwrap();

    let marker = dir.path().join("holding");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "worker_child", "--nocapture"])
        .env(CHILD, format!("{url}|{}", marker.display()))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the child holds every message (conditions with a deadline, not timers).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(marker.exists() && broker.stats().await.unwrap().in_flight == N as u64) {
        assert!(
            Instant::now() < deadline,
            "the child never held the messages"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap(); // SIGKILL
    let killed = Instant::now();
    child.wait().unwrap();

    let store = Arc::new(
        SqliteStore::open(dir.path().join("records.db"), &StoreOptions::default())
            .await
            .unwrap(),
    );
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let process = Seen {
        inner: ParseProcess::new(Parser::new(ParserConfig::default())),
        seen: seen.clone(),
    };
    let rt = Runtime::new(
        broker.clone(),
        store.clone(),
        Arc::new(process),
        cfg(Duration::from_millis(5)),
    );
    let (tx, rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(async move { rt.run(rx).await });
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.count().await.unwrap() < N as u64 {
        assert!(Instant::now() < deadline, "not everything was stored");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tx.send(true).unwrap();
    worker.await.unwrap().unwrap();
    assert_eq!(store.count().await.unwrap(), N as u64, "stored once each");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), N);
    let last = seen.values().map(|(t, _)| *t).max().unwrap();
    assert!(
        seen.values().all(|(_, a)| *a == 2),
        "every one was a redelivery"
    );
    let took = last.duration_since(killed);
    assert!(
        took <= LEASE + Duration::from_millis(100),
        "redelivered {took:?} after the kill"
    );
    let _ = stop_tx.send(());
}
