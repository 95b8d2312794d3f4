//! Shared test support: an embedded queue on a tempdir, a broker double that fails on
//! command, position stores that fail or check, and deadline-bounded waits.

use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ackline_broker::embedded::{EmbeddedBroker, EmbeddedConsumer};
use ackline_broker::{
    Broker, BrokerError, BrokerStats, Consumer, ConsumerOptions, Delivery, Message, Settlement,
};
use ackline_input::{Fingerprint, InputError, JsonPositionStore, PositionStore, Positions};
use ackline_queue::{Db, Fsync, QueueOptions};

pub const DEADLINE: Duration = Duration::from_secs(20);

/// A queue, a log directory and a state directory, all in one tempdir.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    /// The data directory, held open (and locked) as long as the fixture lives.
    #[allow(dead_code)]
    pub db: Db,
    pub broker: Arc<EmbeddedBroker>,
}

impl Fixture {
    pub fn new() -> Self {
        Self::with(QueueOptions::default())
    }

    pub fn with(opts: QueueOptions) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path().join("queue")).expect("open db");
        let q = db
            .queue(
                "lines",
                QueueOptions {
                    fsync: Fsync::Never,
                    ..opts
                },
            )
            .expect("queue");
        std::fs::create_dir_all(dir.path().join("logs")).expect("logs dir");
        Fixture {
            dir,
            db,
            broker: Arc::new(EmbeddedBroker::new(q)),
        }
    }

    pub fn logs(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.logs().join(name)
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub async fn published(&self) -> u64 {
        self.broker.stats().await.expect("stats").published
    }

    /// Waits until the queue has had `n` publishes (or fails at the deadline).
    pub async fn wait_published(&self, n: u64) {
        let b = self.broker.clone();
        wait_until(&format!("{n} messages published"), || {
            let b = b.clone();
            async move { b.stats().await.map(|s| s.published >= n).unwrap_or(false) }
        })
        .await;
    }

    /// Receives exactly `n` messages (waiting up to the deadline) and acks them.
    pub async fn take(&self, n: usize) -> Vec<Delivery> {
        take(&*self.broker, n).await
    }
}

pub async fn take<B: Broker>(broker: &B, n: usize) -> Vec<Delivery> {
    let c = broker
        .consumer(ConsumerOptions {
            prefetch: 100_000,
            lease: Duration::from_secs(60),
        })
        .await
        .expect("consumer");
    let start = tokio::time::Instant::now();
    let mut got = Vec::new();
    while got.len() < n && start.elapsed() < DEADLINE {
        let mut d = c
            .receive(n - got.len(), Duration::from_millis(100))
            .await
            .expect("receive");
        got.append(&mut d);
    }
    assert_eq!(got.len(), n, "expected {n} messages before the deadline");
    let extra = c
        .receive(10, Duration::from_millis(0))
        .await
        .expect("receive");
    assert!(
        extra.is_empty(),
        "more messages than expected: {:?}",
        extra.iter().map(|d| &d.id).collect::<Vec<_>>()
    );
    let acks = got
        .iter()
        .map(|d| (d.tag.clone(), Settlement::Ack))
        .collect();
    c.settle(acks).await.expect("ack");
    c.close().await;
    got
}

/// Polls `cond` every 10 ms until true; panics at the deadline.
pub async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    loop {
        if cond().await {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn payloads(ds: &[Delivery]) -> Vec<Vec<u8>> {
    ds.iter().map(|d| d.payload.clone()).collect()
}

pub fn ids(ds: &[Delivery]) -> Vec<String> {
    ds.iter().map(|d| d.id.clone()).collect()
}

pub fn identity(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(path).expect("stat");
    (md.dev(), md.ino())
}

/// The fingerprint of the file at `path` now.
pub fn fingerprint(path: &Path) -> Fingerprint {
    let bytes = std::fs::read(path).expect("read");
    Fingerprint::of_head(&bytes).expect("the file has a first line")
}

pub fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(bytes).expect("append");
}

/// An embedded broker whose publishes fail as scripted: first the errors in `script`, one
/// per publish, then `forever` while it is set. It records confirmed message ids.
pub struct FlakyBroker {
    pub inner: EmbeddedBroker,
    pub script: Mutex<VecDeque<BrokerError>>,
    pub forever: Mutex<Option<BrokerError>>,
    pub attempts: AtomicU64,
    pub confirmed: Mutex<Vec<String>>,
    /// Publishes handed to the inner broker and not yet returned, and the most at once.
    pub in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
}

impl FlakyBroker {
    pub fn new(inner: EmbeddedBroker, script: Vec<BrokerError>) -> Self {
        FlakyBroker {
            inner,
            script: Mutex::new(script.into()),
            forever: Mutex::new(None),
            attempts: AtomicU64::new(0),
            confirmed: Mutex::new(Vec::new()),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
        }
    }
}

pub fn unavailable() -> BrokerError {
    BrokerError::Unavailable {
        backend: "flaky",
        reason: "test outage".into(),
    }
}

pub fn full() -> BrokerError {
    BrokerError::Full {
        backend: "flaky",
        reason: "test full".into(),
        retry_after: Some(Duration::from_millis(5)),
    }
}

impl Broker for FlakyBroker {
    type Consumer = EmbeddedConsumer;

    fn name(&self) -> &'static str {
        "flaky"
    }

    async fn publish(&self, batch: Vec<Message>) -> Result<(), BrokerError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let scripted = self.script.lock().expect("lock").pop_front();
        if let Some(e) = scripted {
            return Err(e);
        }
        let forever = self.forever.lock().expect("lock").clone();
        if let Some(e) = forever {
            return Err(e);
        }
        let ids: Vec<String> = batch.iter().map(|m| m.id.clone()).collect();
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let r = self.inner.publish(batch).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        r?;
        self.confirmed.lock().expect("lock").extend(ids);
        Ok(())
    }

    async fn consumer(&self, opts: ConsumerOptions) -> Result<EmbeddedConsumer, BrokerError> {
        self.inner.consumer(opts).await
    }

    async fn stats(&self) -> Result<BrokerStats, BrokerError> {
        self.inner.stats().await
    }
}

/// The real store, but saves fail after `saves_ok` successful ones: a crash between a
/// publish and its commit.
#[derive(Debug)]
pub struct CrashingStore {
    pub inner: JsonPositionStore,
    pub saves_ok: AtomicU32,
}

impl PositionStore for CrashingStore {
    fn load(&self) -> Result<Option<Positions>, InputError> {
        self.inner.load()
    }

    fn save(&self, p: &Positions) -> Result<(), InputError> {
        let left = self.saves_ok.load(Ordering::SeqCst);
        if left == 0 {
            return Err(InputError::Commit {
                reason: "simulated crash before the commit".into(),
            });
        }
        self.saves_ok.store(left - 1, Ordering::SeqCst);
        self.inner.save(p)
    }
}

/// Inspects a version about to be saved; `Some(complaint)` if it is wrong.
pub type Check = Box<dyn Fn(&Positions) -> Option<String> + Send + Sync>;

/// The real store, recording every saved version; `check` runs on each save and its
/// complaints are collected.
pub struct CheckingStore {
    pub inner: JsonPositionStore,
    pub saved: Mutex<Vec<Positions>>,
    pub check: Check,
    pub complaints: Mutex<Vec<String>>,
}

impl CheckingStore {
    /// The real store in `state`, complaining when a saved position covers more lines of
    /// `content` (the followed file's bytes) than `broker` has confirmed: a commit must never
    /// run ahead of the queue.
    pub fn never_ahead(state: PathBuf, broker: Arc<FlakyBroker>, content: Vec<u8>) -> Self {
        CheckingStore {
            inner: JsonPositionStore::open(state).expect("store"),
            saved: Mutex::new(Vec::new()),
            check: Box::new(move |p| {
                let done = broker.confirmed.lock().expect("lock").len();
                let f = p.files.first()?;
                let lines_before = content[..f.offset as usize]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count();
                (lines_before > done).then(|| {
                    format!(
                        "offset {} covers {lines_before} lines, {done} confirmed",
                        f.offset
                    )
                })
            }),
            complaints: Mutex::new(Vec::new()),
        }
    }

    /// The file offset of every saved version, in order.
    pub fn saved_offsets(&self) -> Vec<u64> {
        self.saved
            .lock()
            .expect("lock")
            .iter()
            .map(|p| p.files[0].offset)
            .collect()
    }
}

impl std::fmt::Debug for CheckingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckingStore").finish_non_exhaustive()
    }
}

impl PositionStore for CheckingStore {
    fn load(&self) -> Result<Option<Positions>, InputError> {
        self.inner.load()
    }

    fn save(&self, p: &Positions) -> Result<(), InputError> {
        if let Some(c) = (self.check)(p) {
            self.complaints.lock().expect("lock").push(c);
        }
        self.saved.lock().expect("lock").push(p.clone());
        self.inner.save(p)
    }
}
