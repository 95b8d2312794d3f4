//! The store-and-forward relay between two embedded queues, the destination wrapped so the
//! tests can take it down, make it refuse given messages, or fail fatally: each invariant of
//! `ackline_worker::forward`, observed from outside.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ackline_broker::embedded::{EmbeddedBroker, EmbeddedConsumer};
use ackline_broker::{
    Broker, BrokerError, BrokerStats, Consumer, ConsumerOptions, DeadLetters, Message,
};
use ackline_queue::{Db, QueueOptions};
use ackline_worker::RetryPolicy;
use ackline_worker::forward::{ForwardConfig, ForwardError, ForwardStats, forward};
use tokio::sync::watch;

/// An embedded queue whose publishes the test controls.
struct Dest {
    inner: EmbeddedBroker,
    down: AtomicBool,
    fatal: AtomicBool,
    failed: AtomicU64,
}

impl Broker for Dest {
    type Consumer = EmbeddedConsumer;
    fn name(&self) -> &'static str {
        "test-destination"
    }
    async fn publish(&self, batch: Vec<Message>) -> Result<(), BrokerError> {
        if self.fatal.load(Ordering::SeqCst) {
            return Err(BrokerError::Fatal {
                backend: "test-destination",
                reason: "access refused".into(),
            });
        }
        if self.down.load(Ordering::SeqCst) {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(BrokerError::Unavailable {
                backend: "test-destination",
                reason: "connection refused".into(),
            });
        }
        if batch.iter().any(|m| m.payload.starts_with(b"refuse-me")) {
            return Err(BrokerError::Invalid {
                backend: "test-destination",
                reason: "message too large".into(),
            });
        }
        self.inner.publish(batch).await
    }
    async fn consumer(&self, opts: ConsumerOptions) -> Result<EmbeddedConsumer, BrokerError> {
        self.inner.consumer(opts).await
    }
    async fn stats(&self) -> Result<BrokerStats, BrokerError> {
        self.inner.stats().await
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    src: Arc<EmbeddedBroker>,
    dst: Arc<Dest>,
    /// id → payload of what was published to the source and should arrive.
    expected: BTreeMap<String, Vec<u8>>,
}

async fn setup(n: usize, refused: usize) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let src = EmbeddedBroker::new(db.queue("ingest", QueueOptions::default()).unwrap());
    let dst = EmbeddedBroker::new(db.queue("shared", QueueOptions::default()).unwrap());
    let mut expected = BTreeMap::new();
    let mut batch = Vec::new();
    for i in 0..n {
        let id = format!("line-{i}");
        let payload = if i % 97 == 5 && i / 97 < refused {
            format!("refuse-me {i}").into_bytes()
        } else {
            let p = format!("payload {i}").into_bytes();
            expected.insert(id.clone(), p.clone());
            p
        };
        batch.push(Message::new(id, payload).with_header("format", "raw"));
    }
    src.publish(batch).await.unwrap();
    Setup {
        _dir: dir,
        src: Arc::new(src),
        dst: Arc::new(Dest {
            inner: dst,
            down: AtomicBool::new(false),
            fatal: AtomicBool::new(false),
            failed: AtomicU64::new(0),
        }),
        expected,
    }
}

fn config(lease_ms: u64) -> ForwardConfig {
    ForwardConfig {
        tasks: 2,
        batch: 100,
        wait: Duration::from_millis(20),
        lease: Duration::from_millis(lease_ms),
        retry: RetryPolicy {
            base: Duration::from_millis(10),
            factor: 2.0,
            cap: Duration::from_millis(40),
        },
    }
}

/// Polls `cond` every 5 ms until it holds; panics after 20 s (a hang is a failure).
async fn until<F: Future<Output = bool>>(what: &str, mut cond: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Everything in the destination, id → (payload, times seen).
async fn drain(dst: &Dest) -> BTreeMap<String, (Vec<u8>, usize)> {
    let c = dst.consumer(ConsumerOptions::default()).await.unwrap();
    let mut seen: BTreeMap<String, (Vec<u8>, usize)> = BTreeMap::new();
    loop {
        let got = c.receive(1000, Duration::from_millis(50)).await.unwrap();
        if got.is_empty() {
            break;
        }
        for d in &got {
            assert_eq!(d.header("format"), Some("raw"), "headers are forwarded");
            seen.entry(d.id.clone()).or_insert((d.payload.clone(), 0)).1 += 1;
        }
        let acks = got
            .into_iter()
            .map(|d| (d.tag, ackline_broker::Settlement::Ack))
            .collect();
        c.settle(acks).await.unwrap();
    }
    c.close().await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_lease_holds_the_batch_and_loses_nothing() {
    let s = setup(600, 3).await;
    s.dst.down.store(true, Ordering::SeqCst);
    let stats = Arc::new(ForwardStats::default());
    let (stop_tx, stop) = watch::channel(false);
    let lease = 600;
    let run = tokio::spawn(forward(
        s.src.clone(),
        s.dst.clone(),
        config(lease),
        stats.clone(),
        stop,
    ));
    // Held for several leases: each task extends every lease/3, so 12 extensions across two
    // tasks span at least two full leases.
    until("the batches to be held across leases", || async {
        s.dst.failed.load(Ordering::SeqCst) > 0 && stats.snapshot().extensions >= 12
    })
    .await;
    s.dst.down.store(false, Ordering::SeqCst);
    until("the source to be drained", || async {
        let st = s.src.stats().await.unwrap();
        st.pending == 0 && st.in_flight == 0
    })
    .await;
    stop_tx.send(true).unwrap();
    run.await.unwrap().unwrap();

    let src = s.src.stats().await.unwrap();
    assert_eq!(src.lease_expired, 0, "held leases were extended");
    assert_eq!(src.redelivered, 0, "an outage burns no attempt");
    assert_eq!(
        src.dead_letters, 3,
        "the refused messages are dead-lettered"
    );
    for dl in s.src.dlq_list(None, 10).await.unwrap() {
        assert!(dl.payload.starts_with(b"refuse-me"), "{dl:?}");
        assert!(dl.reason.contains("message too large"), "{}", dl.reason);
    }
    let snap = stats.snapshot();
    assert_eq!(snap.forwarded, 597);
    assert_eq!(snap.refused, 3);
    assert_eq!(snap.stale, 0);

    let seen = drain(&s.dst).await;
    assert_eq!(seen.len(), s.expected.len(), "every message arrived");
    for (id, payload) in &s.expected {
        let (got, times) = &seen[id];
        assert_eq!(got, payload, "{id}: same payload");
        assert_eq!(*times, 1, "{id}: published once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_during_an_outage_releases_everything_unsettled() {
    let s = setup(300, 0).await;
    s.dst.down.store(true, Ordering::SeqCst);
    let stats = Arc::new(ForwardStats::default());
    let (stop_tx, stop) = watch::channel(false);
    let run = tokio::spawn(forward(
        s.src.clone(),
        s.dst.clone(),
        config(5_000),
        stats.clone(),
        stop,
    ));
    until("a held batch", || async {
        s.dst.failed.load(Ordering::SeqCst) >= 2 && s.src.stats().await.unwrap().in_flight > 0
    })
    .await;
    stop_tx.send(true).unwrap();
    run.await.unwrap().unwrap();
    until("every delivery released", || async {
        s.src.stats().await.unwrap().in_flight == 0
    })
    .await;
    let src = s.src.stats().await.unwrap();
    assert_eq!(src.pending, 300, "nothing was acked");
    assert_eq!(src.in_flight, 0, "the held batch was released at once");
    assert_eq!(src.dead_letters, 0);
    assert_eq!(stats.snapshot().forwarded, 0);
    assert_eq!(s.dst.stats().await.unwrap().published, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_destination_error_stops_the_forwarder_and_keeps_the_messages() {
    let s = setup(200, 0).await;
    s.dst.fatal.store(true, Ordering::SeqCst);
    let (_stop_tx, stop) = watch::channel(false);
    let err = forward(
        s.src.clone(),
        s.dst.clone(),
        config(5_000),
        Arc::new(ForwardStats::default()),
        stop,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ForwardError::Destination(_)), "{err}");
    assert!(err.to_string().contains("access refused"), "{err}");
    // A receive the halt cancelled may still be finishing on the blocking pool (the embedded
    // backend's receive outlives its future by up to `wait`); what it took is released when
    // it ends, since its consumer is closed. Nothing stays leased, nothing is lost.
    until("every delivery released", || async {
        s.src.stats().await.unwrap().in_flight == 0
    })
    .await;
    let src = s.src.stats().await.unwrap();
    assert_eq!((src.pending, src.in_flight, src.dead_letters), (200, 0, 0));
}
