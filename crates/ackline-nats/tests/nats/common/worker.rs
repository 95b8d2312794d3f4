//! A worker for the crash tests: the real runtime (`ackline_worker::Runtime`) over a
//! [`NatsBroker`], parsing lines into an idempotent SQLite store, and logging each
//! delivery's `(id, attempt)` to a file so the parent can see redeliveries.

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ackline_broker::Delivery;
use ackline_nats::NatsBroker;
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

impl Process for Logged {
    fn process(&self, d: &Delivery) -> Result<Record, ProcessError> {
        std::thread::sleep(self.pause);
        let _ = writeln!(self.log.lock().unwrap(), "{} {}", d.id, d.attempt());
        self.parse.process(d)
    }
}

/// The worker configuration of these tests: the lease (60 s) is longer than the tests'
/// `ack_wait`, so a live worker keeps its deliveries with `+WPI`, and any redelivery seen
/// comes from the server's `AckWait` after a worker died, not from a lease expiry.
pub fn config() -> WorkerConfig {
    WorkerConfig {
        workers: 2,
        prefetch: 100,
        batch_size: 50,
        batch_wait: Duration::from_millis(20),
        lease: Duration::from_secs(60),
        ..WorkerConfig::default()
    }
}

/// Runs the runtime until `stop` turns true.
pub async fn run(
    broker: NatsBroker,
    db: PathBuf,
    log: PathBuf,
    pause: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let store = SqliteStore::open(&db, &StoreOptions::default())
        .await
        .expect("store");
    let rt = Runtime::new(
        Arc::new(broker),
        Arc::new(store),
        Arc::new(Logged::new(log, pause)),
        config(),
    );
    rt.run(stop).await.expect("runtime");
}

/// Rows in the store.
pub async fn stored(db: &std::path::Path) -> u64 {
    let s = SqliteStore::open(db, &StoreOptions::default())
        .await
        .expect("store");
    s.count().await.expect("count")
}

/// `(id, attempt)` lines of the attempt log.
pub fn attempts(log: &std::path::Path) -> Vec<(String, u32)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (id, a) = l.rsplit_once(' ')?;
            Some((id.to_owned(), a.parse().ok()?))
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
