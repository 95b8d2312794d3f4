//! The worker runtime on the embedded queue, with an in-memory store whose failures the tests
//! control (ackline-store's test-support `FaultyStore` around its `MemoryStore`): every row
//! of the outcome table in the crate docs, observed from outside.

#![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

use std::sync::Arc;
use std::time::{Duration, Instant};

use ackline_broker::embedded::EmbeddedBroker;
use ackline_broker::{Broker, DeadLetters, Delivery, DlqSelector, Message};
use ackline_parse::{Format, FormatChoice, Parser, ParserConfig, Record};
use ackline_queue::{Db, QueueOptions};
use ackline_store::test_support::{FaultyStore, MemoryStore};
use ackline_store::{Store, StoreError, WriteReport};
use ackline_worker::{
    BreakerPolicy, ParseProcess, Process, ProcessError, RetryPolicy, Runtime, WorkerConfig,
};
use tokio::sync::watch;

struct Setup {
    _dir: tempfile::TempDir,
    broker: Arc<EmbeddedBroker>,
    store: Arc<FaultyStore<MemoryStore>>,
}

fn setup(max_attempts: u32) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let q = db
        .queue(
            "logs",
            QueueOptions {
                max_attempts,
                ..Default::default()
            },
        )
        .unwrap();
    Setup {
        _dir: dir,
        broker: Arc::new(EmbeddedBroker::new(q)),
        store: Arc::new(FaultyStore::new(MemoryStore::new(), "connection refused")),
    }
}

fn config() -> WorkerConfig {
    WorkerConfig {
        workers: 2,
        prefetch: 200,
        batch_size: 100,
        batch_wait: Duration::from_millis(20),
        lease: Duration::from_millis(600),
        retry: RetryPolicy {
            base: Duration::from_millis(20),
            factor: 2.0,
            cap: Duration::from_millis(100),
        },
        breaker: BreakerPolicy {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
        },
        shutdown_deadline: Duration::from_secs(5),
        max_outage: None,
    }
}

fn json_line(i: usize) -> Message {
    Message::new(
        format!("line-{i}"),
        format!(r#"{{"ts":"2026-11-28T10:00:00Z","level":"info","msg":"event {i}"}}"#),
    )
    .with_header("input", "test")
}

async fn publish(b: &EmbeddedBroker, msgs: Vec<Message>) {
    for chunk in msgs.chunks(100) {
        b.publish(chunk.to_vec()).await.unwrap();
    }
}

/// Polls `cond` until it holds or `limit` passes.
async fn until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// The dead letters of `broker` once there are at least `n` (or what there is after 10 s).
async fn dead_letters(broker: &EmbeddedBroker, n: usize) -> Vec<ackline_broker::DeadLetter> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let dead = broker.dlq_list(None, 10).await.unwrap();
        if dead.len() >= n || Instant::now() > deadline {
            return dead;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Starts a runtime in the background; returns its stop switch and join handle.
fn start<P: Process>(
    s: &Setup,
    process: P,
    cfg: WorkerConfig,
) -> (
    watch::Sender<bool>,
    tokio::task::JoinHandle<Result<(), ackline_worker::WorkerError>>,
    Arc<ackline_worker::Stats>,
) {
    let rt = Runtime::new(s.broker.clone(), s.store.clone(), Arc::new(process), cfg);
    let stats = rt.stats();
    let (tx, rx) = watch::channel(false);
    let h = tokio::spawn(async move { rt.run(rx).await });
    (tx, h, stats)
}

fn lenient() -> ParseProcess {
    ParseProcess::new(Parser::new(ParserConfig::default()))
}

fn strict_json() -> ParseProcess {
    ParseProcess::new(Parser::new(ParserConfig {
        format: FormatChoice::Fixed(Format::Json),
        strict: true,
        ..Default::default()
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_line_is_stored_once_and_acked_after_the_commit() {
    let s = setup(3);
    publish(&s.broker, (0..500).map(json_line).collect()).await;
    let (stop, h, stats) = start(&s, lenient(), config());
    assert!(
        until(Duration::from_secs(20), || s.store.inner().len() == 500).await,
        "stored {}",
        s.store.inner().len()
    );
    let st = s.broker.stats().await.unwrap();
    assert!(until(Duration::from_secs(5), || stats.snapshot().stored == 500).await);
    stop.send(true).unwrap();
    h.await.unwrap().unwrap();
    let st2 = s.broker.stats().await.unwrap();
    assert_eq!(
        (st2.pending, st2.dead_letters),
        (0, 0),
        "before stop: {st:?}"
    );
    let rec = s.store.inner().get("line-7").unwrap();
    assert_eq!(
        (rec.format, rec.message.as_str(), &*rec.input),
        (Format::Json, "event 7", "test")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_parse_errors_are_dead_lettered_with_the_reason() {
    let s = setup(3);
    let mut msgs: Vec<Message> = (0..20).map(json_line).collect();
    msgs.push(Message::new("bad-1", "this is not json").with_header("input", "test"));
    msgs.push(Message::new("bad-2", vec![0xff, 0xfe, b'{']).with_header("input", "test"));
    publish(&s.broker, msgs).await;
    let (stop, h, stats) = start(&s, strict_json(), config());
    assert!(until(Duration::from_secs(20), || s.store.inner().len() == 20).await);
    let dead = dead_letters(&s.broker, 2).await;
    stop.send(true).unwrap();
    h.await.unwrap().unwrap();
    let ids: Vec<_> = dead.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["bad-1", "bad-2"]);
    assert!(
        dead.iter()
            .all(|d| d.reason.starts_with("parse error: json")),
        "{:?}",
        dead[0].reason
    );
    assert_eq!(dead[0].attempts, 1, "dead-lettered at once, no retries");
    // Only acks are observed end to end; the rejects are not.
    let snap = stats.snapshot();
    assert_eq!((snap.acked, snap.rejected), (20, 2));
    assert_eq!(stats.end_to_end_latency().count(), 20);
}

/// Through the runtime: a message's parse headers override the process's lenient auto
/// settings for it alone (strict rfc3164 in Berlin, year 2005), and a message with a header value that
/// does not parse is dead-lettered at once with a reason naming the header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parse_headers_apply_per_message_and_bad_ones_are_dead_lettered() {
    let s = setup(3);
    let syslog = "Dec 31 23:59:58 combo sshd[1]: x";
    let grouped = |id: &str, payload: &str| {
        Message::new(id, payload)
            .with_header("input", "old.log")
            .with_header(ackline_worker::FORMAT_HEADER, "rfc3164")
            .with_header(ackline_worker::YEAR_HEADER, "2005")
            .with_header(ackline_worker::TIMEZONE_HEADER, "Europe/Berlin")
            .with_header(ackline_worker::STRICT_HEADER, "true")
    };
    let msgs = vec![
        grouped("grouped", syslog),
        grouped("grouped-bad", "not syslog"),
        Message::new("plain", "not syslog").with_header("input", "app.log"),
        Message::new("bad-zone", syslog)
            .with_header("input", "x.log")
            .with_header(ackline_worker::TIMEZONE_HEADER, "Mars/Olympus"),
    ];
    publish(&s.broker, msgs).await;
    let (stop, h, _stats) = start(&s, lenient(), config());
    assert!(until(Duration::from_secs(20), || s.store.inner().len() == 2).await);
    let dead = dead_letters(&s.broker, 2).await;
    stop.send(true).unwrap();
    h.await.unwrap().unwrap();
    let rec = s.store.inner().get("grouped").unwrap();
    assert_eq!(rec.format, Format::Rfc3164);
    assert_eq!(rec.timestamp.to_rfc3339(), "2005-12-31T23:59:58+01:00");
    let rec = s.store.inner().get("plain").unwrap();
    assert_eq!(
        rec.format,
        Format::Raw,
        "no headers: the process's lenient auto"
    );
    let mut reasons: Vec<(&str, &str)> = dead
        .iter()
        .map(|d| (d.id.as_str(), d.reason.as_str()))
        .collect();
    reasons.sort();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(reasons[0].0, "bad-zone");
    assert!(
        reasons[0]
            .1
            .starts_with("invalid header timezone = \"Mars/Olympus\": expected"),
        "{reasons:?}"
    );
    assert_eq!(reasons[1].0, "grouped-bad");
    assert!(
        reasons[1].1.starts_with("parse error: rfc3164"),
        "{reasons:?}"
    );
    assert!(
        dead.iter().all(|d| d.attempts == 1),
        "dead-lettered at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histograms_count_every_store_write_and_every_durable_ack() {
    const N: usize = 300;
    let s = setup(3);
    s.store.set_down(true);
    let published = Instant::now();
    publish(&s.broker, (0..N).map(json_line).collect()).await;
    let queued = Instant::now();
    let (stop, h, stats) = start(&s, lenient(), config());
    // Failed writes are timed too: let a few fail before the store comes back.
    assert!(until(Duration::from_secs(20), || s.store.probes() >= 2).await);
    s.store.set_down(false);
    let up = Instant::now();
    assert!(until(Duration::from_secs(20), || s.store.inner().len() == N).await);
    stop.send(true).unwrap();
    h.await.unwrap().unwrap();
    let done = Instant::now();

    let writes = s.store.writes();
    let batches = stats.store_batch_latency();
    assert!(
        writes > 2,
        "some writes failed, then the batches were written"
    );
    assert_eq!(batches.count(), writes, "one observation per write call");
    assert!(batches.sum <= (done - published).as_secs_f64() * writes as f64);

    let acked = s.broker.stats().await.unwrap().acked;
    assert_eq!((acked, stats.snapshot().acked), (N as u64, N as u64));
    let e2e = stats.end_to_end_latency();
    assert_eq!(e2e.count(), N as u64, "one observation per durable ack");
    // Each message waited at least from its enqueue (before `queued`) until the store came
    // back (`up`), and at most from `published` to `done`; enqueued_at and the clock read at
    // the ack are whole milliseconds.
    let slack = 0.002;
    let least = ((up - queued).as_secs_f64() - slack) * N as f64;
    let most = ((done - published).as_secs_f64() + slack) * N as f64;
    assert!(
        (least..=most).contains(&e2e.sum),
        "sum {} not in {least}..={most}",
        e2e.sum
    );

    let text = ackline_worker::metrics::render(&stats).unwrap();
    for want in [
        format!("ackline_end_to_end_latency_seconds_count {N}\n"),
        format!("ackline_end_to_end_latency_seconds_bucket{{le=\"+Inf\"}} {N}\n"),
        format!("ackline_store_batch_duration_seconds_count {writes}\n"),
        format!("ackline_worker_acked_total {N}\n"),
        format!("ackline_worker_stored_total {N}\n"),
        "ackline_worker_store_outages_total 1\n".to_string(),
    ] {
        assert!(text.contains(&want), "{want:?} missing from\n{text}");
    }
}

/// With `max_outage` (`ackline run --once`), an outage that lasts longer ends the run with
/// `StoreOutage`, everything still queued: nothing acked, nothing dead-lettered, no attempt
/// spent, nothing left leased.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_past_max_outage_stops_the_runtime_with_everything_still_queued() {
    let s = setup(1);
    s.store.set_down(true);
    publish(&s.broker, (0..300).map(json_line).collect()).await;
    let cfg = WorkerConfig {
        max_outage: Some(Duration::from_millis(1500)),
        ..config()
    };
    let started = Instant::now();
    let (_stop, h, stats) = start(&s, lenient(), cfg);
    let r = tokio::time::timeout(Duration::from_secs(20), h)
        .await
        .expect("the runtime never gave up on the store")
        .unwrap();
    let e = r.expect_err("an outage past max_outage is an error");
    assert!(
        matches!(e, ackline_worker::WorkerError::StoreOutage { allowed, ref last_error, .. }
            if allowed == Duration::from_millis(1500) && last_error.contains("connection refused")),
        "{e}"
    );
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert!(e.to_string().contains("still queued"), "{e}");
    let after = s.broker.stats().await.unwrap();
    assert_eq!(
        (
            after.pending,
            after.in_flight,
            after.dead_letters,
            after.redelivered
        ),
        (300, 0, 0, 0),
        "everything still queued, untouched"
    );
    assert_eq!((s.store.inner().len(), stats.snapshot().acked), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_longer_than_the_lease_burns_no_attempts_and_dead_letters_nothing() {
    let s = setup(2);
    s.store.set_down(true);
    publish(&s.broker, (0..300).map(json_line).collect()).await;
    let (stop, h, stats) = start(&s, lenient(), config());
    // Let the outage outlast several leases (600 ms) while the breaker probes.
    let since = Instant::now();
    assert!(
        until(Duration::from_secs(20), || s.store.probes() >= 8
            && since.elapsed() > Duration::from_millis(2500))
        .await
    );
    let during = s.broker.stats().await.unwrap();
    assert_eq!(s.store.inner().len(), 0);
    assert_eq!(during.dead_letters, 0, "the outage dead-lettered messages");
    assert_eq!(
        during.redelivered, 0,
        "held batches were redelivered: leases not extended"
    );
    assert!(during.in_flight > 0, "workers should hold their batches");
    s.store.set_down(false);
    assert!(
        until(Duration::from_secs(20), || s.store.inner().len() == 300).await,
        "stored {}",
        s.store.inner().len()
    );
    assert!(until(Duration::from_secs(5), || stats.snapshot().stored == 300).await);
    stop.send(true).unwrap();
    h.await.unwrap().unwrap();
    let after = s.broker.stats().await.unwrap();
    assert_eq!(
        (after.pending, after.dead_letters, after.redelivered),
        (0, 0, 0)
    );
    assert_eq!(stats.snapshot().outages, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_store_refuses_is_dead_lettered_and_the_rest_stored() {
    let s = setup(3);
    s.store.refuse("line-5");
    publish(&s.broker, (0..50).map(json_line).collect()).await;
    let (stop, h, stats) = start(&s, lenient(), config());
    assert!(until(Duration::from_secs(20), || s.store.inner().len() == 49).await);
    assert!(
        until(Duration::from_secs(5), || stats.snapshot().store_rejected
            == 1)
        .await
    );
    stop.send(true).unwrap();
    h.await.unwrap().unwrap();
    let dead = s.broker.dlq_list(None, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, "line-5");
    assert!(
        dead[0].reason.contains("value refused by the schema"),
        "{}",
        dead[0].reason
    );

    // Fixed at the store: replaying it now stores it, once.
    s.store.accept_all();
    assert_eq!(s.broker.dlq_replay(DlqSelector::All).await.unwrap(), 1);
    let (stop, h, stats) = start(&s, lenient(), config());
    assert!(until(Duration::from_secs(20), || s.store.inner().len() == 50).await);
    stop.send(true).unwrap();
    h.await.unwrap().unwrap();
    assert_eq!(stats.snapshot().duplicates, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_messages_already_stored_stores_nothing_twice() {
    let s = setup(3);
    publish(&s.broker, (0..30).map(json_line).collect()).await;
    let (stop, h, _) = start(&s, lenient(), config());
    assert!(until(Duration::from_secs(20), || s.store.inner().len() == 30).await);
    stop.send(true).unwrap();
    h.await.unwrap().unwrap();
    // A producer retrying after a lost confirmation publishes the same ids again.
    publish(&s.broker, (0..30).map(json_line).collect()).await;
    let (stop, h, stats) = start(&s, lenient(), config());
    assert!(
        until(Duration::from_secs(20), || stats.snapshot().duplicates
            == 30)
        .await
    );
    stop.send(true).unwrap();
    h.await.unwrap().unwrap();
    assert_eq!(s.store.inner().len(), 30);
    assert_eq!(stats.snapshot().stored, 0);
}

/// Panics on payloads that say "boom"; otherwise parses.
struct Panicky(ParseProcess);

impl Process for Panicky {
    fn process(&self, d: &Delivery) -> Result<Record, ProcessError> {
        if d.payload == b"boom" {
            panic!("the parser hit a bug on {}", d.id);
        }
        self.0.process(d)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_a_failure_of_that_message_not_of_the_worker() {
    let s = setup(2);
    let mut msgs: Vec<Message> = (0..40).map(json_line).collect();
    msgs.insert(
        10,
        Message::new("boom-1", "boom").with_header("input", "test"),
    );
    publish(&s.broker, msgs).await;
    let (stop, h, stats) = start(&s, Panicky(lenient()), config());
    assert!(until(Duration::from_secs(20), || s.store.inner().len() == 40).await);
    let broker = s.broker.clone();
    let mut dead = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while dead.is_empty() && Instant::now() < deadline {
        dead = broker.dlq_list(None, 10).await.unwrap();
    }
    stop.send(true).unwrap();
    h.await.unwrap().unwrap();
    assert_eq!(
        dead.len(),
        1,
        "retried, then dead-lettered after max attempts"
    );
    assert_eq!((dead[0].id.as_str(), dead[0].attempts), ("boom-1", 2));
    assert_eq!(dead[0].reason, ackline_broker::REASON_MAX_ATTEMPTS);
    assert!(
        dead[0].last_error.contains("panic while processing"),
        "{}",
        dead[0].last_error
    );
    assert_eq!(stats.snapshot().panics, 2);
}

/// Fails every delivery with a 1 MiB error: transient on the first attempt, permanent after.
struct Verbose;

impl Process for Verbose {
    fn process(&self, d: &Delivery) -> Result<Record, ProcessError> {
        let what = "x".repeat(1 << 20);
        if d.attempt() == 1 {
            Err(ProcessError::Transient(what))
        } else {
            Err(ProcessError::Permanent(what))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_errors_and_reasons_are_cut_before_they_reach_the_broker() {
    let s = setup(3);
    publish(&s.broker, vec![json_line(0)]).await;
    let (stop, h, _) = start(&s, Verbose, config());
    let broker = s.broker.clone();
    let mut dead = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while dead.is_empty() && Instant::now() < deadline {
        dead = broker.dlq_list(None, 10).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.send(true).unwrap();
    h.await.unwrap().unwrap();
    assert_eq!(dead.len(), 1);
    let marker = format!("… [truncated {} bytes]", (1 << 20) - 4096);
    assert_eq!(dead[0].attempts, 2);
    for text in [&dead[0].reason, &dead[0].last_error] {
        assert!(text.ends_with(&marker), "...{}", &text[text.len() - 40..]);
        assert_eq!(text.len(), ackline_broker::MAX_REASON_BYTES + marker.len());
    }
}

/// Slow on purpose: a store write that takes longer than the lease.
struct SlowStore(MemoryStore, Duration);

impl Store for SlowStore {
    fn kind(&self) -> &'static str {
        "slow"
    }
    async fn write_batch(&self, batch: &[Record]) -> Result<WriteReport, StoreError> {
        tokio::time::sleep(self.1).await;
        self.0.write_batch(batch).await
    }
    async fn probe(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_are_extended_while_a_slow_write_runs() {
    let s = setup(3);
    publish(&s.broker, (0..10).map(json_line).collect()).await;
    let store = Arc::new(SlowStore(MemoryStore::new(), Duration::from_millis(2000)));
    let rt = Runtime::new(
        s.broker.clone(),
        store.clone(),
        Arc::new(lenient()),
        config(),
    );
    let (tx, rx) = watch::channel(false);
    let h = tokio::spawn(async move { rt.run(rx).await });
    assert!(until(Duration::from_secs(20), || store.0.len() == 10).await);
    tx.send(true).unwrap();
    h.await.unwrap().unwrap();
    let st = s.broker.stats().await.unwrap();
    assert_eq!(
        (st.redelivered, st.lease_expired, st.pending),
        (0, 0, 0),
        "the 600 ms lease lapsed during a 2 s write"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_time_and_leaves_nothing_leased() {
    let s = setup(3);
    publish(&s.broker, (0..200).map(json_line).collect()).await;
    let (stop, h, _) = start(&s, lenient(), config());
    assert!(until(Duration::from_secs(20), || !s.store.inner().is_empty()).await);
    let asked = Instant::now();
    stop.send(true).unwrap();
    h.await.unwrap().unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "took {:?}",
        asked.elapsed()
    );
    let st = s.broker.stats().await.unwrap();
    assert_eq!(st.in_flight, 0, "deliveries left leased after shutdown");
    assert_eq!(
        st.pending as usize + s.store.inner().len(),
        200,
        "lost or double-counted"
    );
}
