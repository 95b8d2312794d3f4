//! A worker for the backends' crash tests, shared by the RabbitMQ, Redis, NATS and Kafka test
//! binaries (each includes this file with `#[path]`): the real runtime
//! (`ackline_worker::Runtime`) over any broker, parsing lines into an idempotent SQLite
//! store, and logging each delivery's `(id, attempt, unix ms)` to a file so the parent can see
//! redeliveries and when they came.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ackline_broker::{Broker, Delivery};
use ackline_parse::{Parser, ParserConfig, Record};
use ackline_store::{SqliteStore, StoreOptions};
use ackline_worker::{ParseProcess, Process, ProcessError, Runtime, WorkerConfig};

/// Parses like the pipeline, a little slowly (so a kill lands mid-batch), and logs attempts.
pub struct Logged {
    parse: ParseProcess,
    log: Mutex<std::fs::File>,
    pause: Duration,
}

impl Logged {
    pub fn new(log: PathBuf, pause: Duration) -> Self {
        Logged {
            parse: ParseProcess::new(Parser::new(ParserConfig::default())),
            log: Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .expect("attempt log"),
            ),
            pause,
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

impl Process for Logged {
    fn process(&self, d: &Delivery) -> Result<Record, ProcessError> {
        std::thread::sleep(self.pause);
        let _ = writeln!(
            self.log.lock().unwrap(),
            "{} {} {}",
            d.id,
            d.attempt(),
            now_ms()
        );
        self.parse.process(d)
    }
}

/// A lease longer than any of these tests, so a redelivery they see comes from the broker
/// (a dead connection or channel, a server's `AckWait`), not from a lease expiry.
pub const LONG_LEASE: Duration = Duration::from_secs(60);

/// The worker configuration of these tests, with the given lease.
pub fn config(lease: Duration) -> WorkerConfig {
    WorkerConfig {
        workers: 2,
        prefetch: 100,
        batch_size: 50,
        batch_wait: Duration::from_millis(20),
        lease,
        ..WorkerConfig::default()
    }
}

/// Runs the runtime over `broker` until `stop` turns true.
pub async fn run<B: Broker>(
    broker: B,
    db: PathBuf,
    log: PathBuf,
    pause: Duration,
    lease: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let store = SqliteStore::open(&db, &StoreOptions::default())
        .await
        .expect("store");
    let rt = Runtime::new(
        Arc::new(broker),
        Arc::new(store),
        Arc::new(Logged::new(log, pause)),
        config(lease),
    );
    rt.run(stop).await.expect("runtime");
}

/// Rows in the store (0 before it exists).
pub async fn stored(db: &Path) -> u64 {
    if !db.exists() {
        return 0;
    }
    let s = SqliteStore::open(db, &StoreOptions::default())
        .await
        .expect("store");
    s.count().await.expect("count")
}

/// `(id, attempt, unix ms)` lines of the attempt log.
pub fn attempts(log: &Path) -> Vec<(String, u32, u64)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.rsplitn(3, ' ');
            let t = it.next()?.parse().ok()?;
            let a = it.next()?.parse().ok()?;
            Some((it.next()?.to_owned(), a, t))
        })
        .collect()
}

/// `n` log lines as messages `<prefix>-<i>`.
pub fn lines(prefix: &str, range: std::ops::Range<usize>) -> Vec<ackline_broker::Message> {
    range
        .map(|i| {
            ackline_broker::Message::new(
                format!("{prefix}-{i}"),
                format!("<34>Oct 11 22:14:15 host app[{i}]: line {i} of the crash test"),
            )
        })
        .collect()
}

/// Waits until at least `n` rows are stored or `patience` ran out; returns the count.
pub async fn wait_stored(db: &Path, n: u64, patience: Duration) -> u64 {
    let until = std::time::Instant::now() + patience;
    loop {
        let got = stored(db).await;
        if got >= n || std::time::Instant::now() > until {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The broker's statistics once nothing is pending (every settlement applied), or as they
/// are when `patience` ran out (the caller's assertion then shows them).
pub async fn settled<B: Broker>(broker: &B, patience: Duration) -> ackline_broker::BrokerStats {
    let until = std::time::Instant::now() + patience;
    loop {
        let st = broker.stats().await.expect("broker stats");
        if st.pending == 0 || std::time::Instant::now() > until {
            return st;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a child worker process is given (in one environment variable, `url|queue|db|log`).
pub struct ChildSpec {
    pub url: String,
    pub queue: String,
    pub db: PathBuf,
    pub log: PathBuf,
}

/// This process's spec when it runs as a child worker (the variable `var` set), else `None`.
pub fn child_spec(var: &str) -> Option<ChildSpec> {
    let spec = std::env::var(var).ok()?;
    let mut parts = spec.splitn(4, '|');
    Some(ChildSpec {
        url: parts.next()?.to_owned(),
        queue: parts.next()?.to_owned(),
        db: PathBuf::from(parts.next()?),
        log: PathBuf::from(parts.next()?),
    })
}

/// Starts this test executable again as a child worker: it runs only the test
/// `kill::child_worker`, with `var` holding its spec (and every other test returns at once).
pub fn spawn_child(var: &str, url: &str, queue: &str, db: &Path, log: &Path) -> Reap {
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "kill::child_worker",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            var,
            format!("{url}|{queue}|{}|{}", db.display(), log.display()),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn child");
    Reap(child)
}

/// A child worker, killed (SIGKILL) and reaped when dropped, so a failing test leaves no
/// worker behind.
pub struct Reap(pub std::process::Child);

impl Reap {
    /// SIGKILL, and wait until it is gone.
    pub fn kill(&mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reap");
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.0.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
