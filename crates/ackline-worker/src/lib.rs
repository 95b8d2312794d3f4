//! # ackline-worker: the worker runtime
//!
//! Connects a [`Broker`] to a [`Store`] through a [`Process`] (the log parser): N workers lease
//! batches, process each delivery, write the batch's records to the store in one transaction,
//! and ack the batch only after the commit. It knows the broker trait, not which broker.
//!
//! What happens to each delivery:
//!
//! | outcome | settlement |
//! | --- | --- |
//! | processed and stored (or already stored: idempotent) | ack, after the store's commit |
//! | permanent processing error (strict parse error) | reject: dead-letter now, with the error |
//! | transient processing error, or a panic in processing | nack with exponential backoff and full jitter; counts toward `max_attempts` |
//! | the store rejects that one record | reject with the store's reason; the rest of the batch is retried at once |
//! | the store is unavailable | nothing: the batch is held (leases extended), the [circuit breaker](breaker) opens, all workers pause, one probes with backoff, and the write is retried when it closes — no attempt burned, nothing dead-lettered |
//! | the store reports a fatal error (bad configuration) | the runtime stops with the error; unsettled deliveries are released |
//! | the store stays unavailable longer than `max_outage` (when set; `ackline run --once`) | the runtime stops with [`WorkerError::StoreOutage`]; unsettled deliveries are released, still queued, attempts untouched |
//!
//! Leases are extended automatically while a batch is being written or held, in every phase
//! of waiting on the store (a write, a probe, the reconnections inside them, the backoff
//! between probes), however long a store call hangs. On shutdown
//! (the `stop` signal), workers take no new deliveries, finish the batch in hand within
//! `shutdown_deadline`, and release anything left.
//!
//! Each worker overlaps batches: while batch N is written to the store, the settlements of
//! batch N-1 are sent and then batch N+1 is received (taking only what is ready, so N's
//! settlements are not held back) and processed. N-1 is settled before N+1 is received, so a
//! worker holds at most two batches (N and N+1): a prefetch of twice the batch size lets it
//! overlap fully, and the broker's prefetch bounds it either way.
//!
//! Invariants:
//! - A delivery is acked only after the store has durably committed its record. (The ack
//!   itself is sent while the worker writes its next batch, and made durable meanwhile.)
//! - A batch received and processed while another is written has its leases extended with
//!   that write's, so a store outage burns none of its attempts either; on shutdown it is
//!   written too (within the deadline), not dropped.
//! - Each delivery a worker receives is settled at most once by it, or released.
//! - A worker holds at most `prefetch` unsettled deliveries.
//! - A reject's reason and a nack's error are at most [`ackline_broker::MAX_REASON_BYTES`]
//!   (cut with a `… [truncated N bytes]` marker), however long the error that caused them.
//! - While a worker waits on its store, the leases of the batch it holds are extended every
//!   third of a lease, so waiting on the store never spends an attempt.
//! - Every store write call is timed (success or failure), and every ack the broker confirms
//!   durable is observed from its message's `enqueued_at`, in the runtime's [`Stats`]
//!   ([`metrics`] renders them for Prometheus).

pub mod breaker;
pub mod forward;
pub mod metrics;
mod process;
mod retry;
mod stats;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ackline_broker::{Broker, BrokerError, Consumer, ConsumerOptions, Delivery, Settlement, Tag};
use ackline_parse::Record;
use ackline_store::{Store, StoreError};
use tokio::sync::watch;

pub use breaker::{BreakerPolicy, BreakerView};
pub use process::{
    FORMAT_HEADER, INPUT_HEADER, MTIME_HEADER, ParseProcess, Process, ProcessError, STRICT_HEADER,
    TIMEZONE_HEADER, YEAR_HEADER, parse_headers,
};
pub use retry::RetryPolicy;
pub use stats::{
    END_TO_END_BUCKETS, HistogramSnapshot, LatencyHistogram, STORE_BATCH_BUCKETS, Stats,
    StatsSnapshot,
};

use breaker::Breaker;

/// How the workers run.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Concurrent workers.
    pub workers: usize,
    /// Most unsettled deliveries per worker.
    pub prefetch: usize,
    /// Deliveries per batch (one store transaction).
    pub batch_size: usize,
    /// How long a worker waits for a batch to start filling.
    pub batch_wait: Duration,
    /// Lease (ack timeout) per delivery; extended while a batch is in hand.
    pub lease: Duration,
    /// Backoff for nacked deliveries.
    pub retry: RetryPolicy,
    /// Backoff for probing an unavailable store.
    pub breaker: BreakerPolicy,
    /// How long shutdown waits for batches in hand.
    pub shutdown_deadline: Duration,
    /// How long one store outage may last before the runtime gives up with
    /// [`WorkerError::StoreOutage`]; `None` (the default): wait for the store forever.
    pub max_outage: Option<Duration>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            workers: 2,
            prefetch: 2000,
            batch_size: 1000,
            batch_wait: Duration::from_millis(100),
            lease: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            breaker: BreakerPolicy::default(),
            shutdown_deadline: Duration::from_secs(10),
            max_outage: None,
        }
    }
}

/// Why the runtime stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The broker failed in a way retrying will not fix.
    #[error("broker: {0}")]
    Broker(#[from] BrokerError),
    /// The store failed in a way retrying will not fix.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The store stayed unavailable longer than [`WorkerConfig::max_outage`]. Nothing was
    /// settled on its behalf: what was not stored was released, still queued, with no
    /// attempt spent and nothing dead-lettered.
    #[error(
        "the store has been unavailable for {:.1} s, longer than the {:.1} s allowed; what was not stored is still queued: {last_error}",
        lasted.as_secs_f64(),
        allowed.as_secs_f64()
    )]
    StoreOutage {
        /// How long the outage had lasted.
        lasted: Duration,
        /// The limit.
        allowed: Duration,
        /// The store's last error.
        last_error: String,
    },
    /// A worker task panicked or was cancelled ([`JoinError::is_panic`] tells which, and
    /// [`JoinError::into_panic`] gives the payload to resume it).
    ///
    /// [`JoinError::is_panic`]: tokio::task::JoinError::is_panic
    /// [`JoinError::into_panic`]: tokio::task::JoinError::into_panic
    #[error("worker task: {0}")]
    Task(tokio::task::JoinError),
}

/// A delivery in hand, not yet settled.
struct Held {
    tag: Tag,
    /// Its message's `enqueued_at` (Unix ms).
    enqueued_at: u64,
}

impl Held {
    /// `how` for this delivery; a reject's reason or a nack's error is cut to
    /// [`ackline_broker::MAX_REASON_BYTES`] (with a marker) here, so no broker is sent more.
    fn decide(self, how: Settlement) -> Decided {
        Decided {
            tag: self.tag,
            how: how.bounded(ackline_broker::MAX_REASON_BYTES),
            enqueued_at: self.enqueued_at,
        }
    }
}

/// Why the step that settles the last batch and receives the next one stopped.
enum Next {
    Settle(WorkerError),
    Receive(BrokerError),
}

/// A processed batch, not yet written: its records (one per held delivery) and the
/// settlements decided without the store.
struct Prepared {
    held: Vec<Held>,
    records: Vec<Record>,
    settle: Vec<Decided>,
}

/// A settlement decided for one delivery, not yet sent; `enqueued_at` (Unix ms) gives the
/// end-to-end latency once an ack is confirmed durable.
struct Decided {
    tag: Tag,
    how: Settlement,
    enqueued_at: u64,
}

/// Now, Unix ms (0 for a clock before 1970).
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

struct Ctx<B, S, P> {
    broker: Arc<B>,
    store: Arc<S>,
    process: Arc<P>,
    cfg: WorkerConfig,
    stats: Arc<Stats>,
    breaker: Arc<Breaker>,
}

/// The worker runtime.
pub struct Runtime<B, S, P> {
    ctx: Arc<Ctx<B, S, P>>,
}

impl<B, S, P> std::fmt::Debug for Runtime<B, S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.ctx.cfg)
            .finish()
    }
}

/// Whether the stop signal has been given (a dropped sender counts as given).
fn stopped(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

impl<B: Broker, S: Store, P: Process> Runtime<B, S, P> {
    /// A runtime over these parts.
    pub fn new(broker: Arc<B>, store: Arc<S>, process: Arc<P>, cfg: WorkerConfig) -> Self {
        let breaker = Arc::new(Breaker::new(cfg.breaker));
        Runtime {
            ctx: Arc::new(Ctx {
                broker,
                store,
                process,
                cfg,
                stats: Arc::new(Stats::default()),
                breaker,
            }),
        }
    }

    /// Live counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.ctx.stats.clone()
    }

    /// A read-only view of the circuit breaker over the store (its state and outage).
    pub fn breaker(&self) -> BreakerView {
        BreakerView(self.ctx.breaker.clone())
    }

    /// Runs until `stop` turns true (or its sender is dropped), or a worker fails.
    pub async fn run(&self, stop: watch::Receiver<bool>) -> Result<(), WorkerError> {
        let (halt_tx, halt_rx) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..self.ctx.cfg.workers.max(1) {
            let ctx = self.ctx.clone();
            let halt = halt_rx.clone();
            tasks.spawn(async move { ctx.worker(n, halt).await });
        }
        let mut stop = stop;
        let mut first_error = None;
        loop {
            tokio::select! {
                done = tasks.join_next() => match done {
                    None => break,
                    Some(Ok(Ok(()))) => {}
                    Some(Ok(Err(e))) => {
                        tracing::error!(error = %e, "worker stopped");
                        first_error.get_or_insert(e);
                        let _ = halt_tx.send(true);
                    }
                    Some(Err(e)) => {
                        first_error.get_or_insert(WorkerError::Task(e));
                        let _ = halt_tx.send(true);
                    }
                },
                changed = stop.changed(), if !*halt_tx.borrow() => {
                    if changed.is_err() || *stop.borrow() {
                        tracing::info!("stopping: finishing batches in hand");
                        let _ = halt_tx.send(true);
                        let deadline = self.ctx.cfg.shutdown_deadline;
                        if tokio::time::timeout(deadline, async {
                            while tasks.join_next().await.is_some() {}
                        }).await.is_err() {
                            tracing::warn!(?deadline, "shutdown deadline passed: releasing what is left");
                            tasks.abort_all();
                            while tasks.join_next().await.is_some() {}
                        }
                        break;
                    }
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl<B: Broker, S: Store, P: Process> Ctx<B, S, P> {
    async fn worker(&self, n: usize, mut halt: watch::Receiver<bool>) -> Result<(), WorkerError> {
        let consumer = self
            .broker
            .consumer(ConsumerOptions {
                prefetch: self.cfg.prefetch,
                lease: self.cfg.lease,
            })
            .await?;
        let result = self.work(n, &consumer, &mut halt).await;
        consumer.close().await;
        result
    }

    async fn work(
        &self,
        n: usize,
        consumer: &B::Consumer,
        halt: &mut watch::Receiver<bool>,
    ) -> Result<(), WorkerError> {
        let mut broker_backoff = self.cfg.breaker.base;
        // Batches overlap: while the batch processed last round is written to the store, the
        // settlements of the batch written before it are sent, then the next batch is received
        // and processed.
        let mut unsettled: Vec<Decided> = Vec::new();
        let mut ready: Option<Prepared> = None;
        let result = loop {
            if stopped(halt) {
                // The batch in hand is finished, not dropped (the shutdown deadline bounds it).
                if let Some(p) = ready.take() {
                    match self.store_prepared(consumer, p, halt).await {
                        Ok(items) => unsettled.extend(items),
                        Err((items, e)) => {
                            unsettled.extend(items);
                            break Err(e);
                        }
                    }
                }
                break Ok(());
            }
            if self.breaker.is_open() {
                if let Err(e) = self.settle(consumer, std::mem::take(&mut unsettled)).await {
                    break Err(e);
                }
                match ready.take() {
                    // Written when the store is back; its leases are extended meanwhile.
                    Some(p) => match self.store_prepared(consumer, p, halt).await {
                        Ok(items) => unsettled = items,
                        Err((items, e)) => {
                            unsettled = items;
                            break Err(e);
                        }
                    },
                    None => {
                        if let Err(e) = self.wait_for_store(consumer, &[], halt).await {
                            break Err(e);
                        }
                    }
                }
                continue;
            }
            let batch = self.cfg.batch_size.min(self.cfg.prefetch).max(1);
            // With a batch to write, take only what is ready now: waiting for more would hold
            // back the written batch's settlements.
            let wait = if ready.is_some() {
                Duration::ZERO
            } else {
                self.cfg.batch_wait
            };
            let current = ready.take();
            let (written_tx, mut written) = watch::channel(false);
            let (stored, next) = tokio::join!(
                async {
                    let r = match current {
                        Some(p) => Some(self.store_prepared(consumer, p, halt).await),
                        None => None,
                    };
                    let _ = written_tx.send(true);
                    r
                },
                async {
                    // Settled before more is received: the worker never holds more than the
                    // batch being written and the next one (within any broker's prefetch).
                    self.settle(consumer, std::mem::take(&mut unsettled))
                        .await
                        .map_err(Next::Settle)?;
                    let ds = consumer.receive(batch, wait).await.map_err(Next::Receive)?;
                    if ds.is_empty() {
                        return Ok(None);
                    }
                    self.stats.add_received(ds.len());
                    let p = self.prepare(ds);
                    // The write beside it may wait out a store outage: this batch's leases
                    // are extended meanwhile too, so the outage burns none of its attempts.
                    self.extending(consumer, &p.held, async {
                        // An error: the sender is gone, so the write is done too.
                        let _ = written.wait_for(|w| *w).await.map(|_| ());
                    })
                    .await;
                    Ok(Some(p))
                }
            );
            let (settled, received) = match next {
                Ok(p) => (Ok(()), Ok(p)),
                Err(Next::Settle(e)) => (Err(e), Ok(None)),
                Err(Next::Receive(e)) => (Ok(()), Err(e)),
            };
            let mut failed = settled.err();
            match stored {
                Some(Ok(items)) => unsettled = items,
                Some(Err((items, e))) => {
                    unsettled = items;
                    failed.get_or_insert(e);
                }
                None => {}
            }
            match received {
                Ok(Some(p)) => {
                    broker_backoff = self.cfg.breaker.base;
                    ready = Some(p);
                }
                Ok(None) => {}
                Err(e @ (BrokerError::Unavailable { .. } | BrokerError::Full { .. })) => {
                    if failed.is_none() {
                        tracing::warn!(worker = n, error = %e, "broker unavailable; backing off");
                        self.pause(broker_backoff, halt).await;
                        broker_backoff = (broker_backoff * 2).min(self.cfg.breaker.cap);
                    }
                }
                Err(e) => {
                    failed.get_or_insert(e.into());
                }
            }
            if let Some(e) = failed {
                break Err(e);
            }
        };
        // Whatever happened, what was decided is settled before the consumer closes; a
        // processed batch not written (after a failure) is released by the close.
        if let Some(p) = ready {
            unsettled.extend(p.settle);
        }
        let last = self.settle(consumer, unsettled).await;
        result.and(last)
    }

    /// Sleeps `d` unless halted first (a backoff timer, not synchronisation).
    async fn pause(&self, d: Duration, halt: &mut watch::Receiver<bool>) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = halt.changed() => {}
        }
    }

    /// Processes a batch: the records to write, one per held delivery, and the settlements
    /// decided without the store (rejects, nacks).
    fn prepare(&self, ds: Vec<Delivery>) -> Prepared {
        let mut settle: Vec<Decided> = Vec::new();
        let mut held = Vec::with_capacity(ds.len());
        let mut records = Vec::with_capacity(ds.len());
        for d in ds {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| self.process.process(&d)));
            let attempt = d.attempt();
            let h = Held {
                tag: d.tag,
                enqueued_at: d.enqueued_at,
            };
            match outcome {
                Ok(Ok(r)) => {
                    held.push(h);
                    records.push(r);
                }
                Ok(Err(ProcessError::Permanent(reason))) => {
                    self.stats.add_rejected(1);
                    settle.push(h.decide(Settlement::Reject { reason }));
                }
                Ok(Err(ProcessError::Transient(error))) => {
                    settle.push(h.decide(self.nack(attempt, error)));
                }
                Err(panic) => {
                    self.stats.add_panic();
                    let what = panic_message(&panic);
                    tracing::error!(id = %d.id, attempt = attempt, panic = %what, "processing panicked");
                    let nack = self.nack(attempt, format!("panic while processing: {what}"));
                    settle.push(h.decide(nack));
                }
            }
        }
        Prepared {
            held,
            records,
            settle,
        }
    }

    /// Writes a processed batch; returns the settlement of every delivery (acks only for
    /// records the store committed). On a failure, returns what was decided so far.
    async fn store_prepared(
        &self,
        consumer: &B::Consumer,
        p: Prepared,
        halt: &mut watch::Receiver<bool>,
    ) -> Result<Vec<Decided>, (Vec<Decided>, WorkerError)> {
        let Prepared {
            mut held,
            mut records,
            mut settle,
        } = p;
        let outcome = self
            .write(consumer, &mut held, &mut records, &mut settle, halt)
            .await;
        match outcome {
            Ok(()) => Ok(settle),
            Err(e) => Err((settle, e)),
        }
    }

    fn nack(&self, attempt: u32, error: String) -> Settlement {
        self.stats.add_nacked(1);
        let delay = self.cfg.retry.delay(attempt, &mut rand::rng());
        Settlement::Nack { delay, error }
    }

    /// Writes `records` (one per `held` delivery) until stored, moving their settlements to
    /// `settle`. Held records stay unsettled if the runtime is halted during an outage (they
    /// are released on close).
    async fn write(
        &self,
        consumer: &B::Consumer,
        held: &mut Vec<Held>,
        records: &mut Vec<Record>,
        settle: &mut Vec<Decided>,
        halt: &mut watch::Receiver<bool>,
    ) -> Result<(), WorkerError> {
        while !records.is_empty() {
            match self.write_extending(consumer, held, records).await {
                Ok(report) => {
                    self.breaker.close();
                    self.stats.add_stored(report.inserted, report.duplicates);
                    settle.extend(held.drain(..).map(|h| h.decide(Settlement::Ack)));
                    records.clear();
                }
                Err(StoreError::Rejected { index, reason })
                    if index < records.len() && index < held.len() =>
                {
                    self.stats.add_store_rejected();
                    records.remove(index);
                    let reason = format!("store rejected the record: {reason}");
                    settle.push(held.remove(index).decide(Settlement::Reject { reason }));
                }
                Err(e @ StoreError::Unavailable { .. }) => {
                    if self.breaker.trip(&e) {
                        self.stats.add_outage();
                    }
                    self.wait_for_store(consumer, held, halt).await?;
                    if stopped(halt) {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// One store write, extending the batch's leases while it runs; its duration (from the
    /// call to its return, success or failure) is observed.
    async fn write_extending(
        &self,
        consumer: &B::Consumer,
        held: &[Held],
        records: &[Record],
    ) -> Result<ackline_store::WriteReport, StoreError> {
        let started = Instant::now();
        let r = self
            .extending(consumer, held, self.store.write_batch(records))
            .await;
        self.stats.observe_store_batch(started.elapsed());
        r
    }

    /// Awaits `op` (a store call: write, probe, and the reconnections inside them), extending
    /// the leases of `held` every third of a lease meanwhile, however long `op` takes.
    async fn extending<T>(
        &self,
        consumer: &B::Consumer,
        held: &[Held],
        op: impl Future<Output = T>,
    ) -> T {
        tokio::pin!(op);
        let mut tick = self.extend_ticker();
        loop {
            tokio::select! {
                r = &mut op => return r,
                _ = tick.tick() => self.extend(consumer, held).await,
            }
        }
    }

    fn extend_ticker(&self) -> tokio::time::Interval {
        let period = (self.cfg.lease / 3).max(Duration::from_millis(10));
        tokio::time::interval_at(tokio::time::Instant::now() + period, period)
    }

    async fn extend(&self, consumer: &B::Consumer, held: &[Held]) {
        if held.is_empty() {
            return;
        }
        let items = held
            .iter()
            .map(|h| {
                (
                    h.tag.clone(),
                    Settlement::Extend {
                        lease: self.cfg.lease,
                    },
                )
            })
            .collect();
        if let Err(e) = consumer.settle(items).await {
            tracing::warn!(error = %e, "extending leases failed");
        }
    }

    /// The error when the current outage outlasted `max_outage`.
    fn outage_exceeded(&self) -> Option<WorkerError> {
        let allowed = self.cfg.max_outage?;
        let (lasted, last_error) = self.breaker.outage()?;
        (lasted >= allowed).then_some(WorkerError::StoreOutage {
            lasted,
            allowed,
            last_error,
        })
    }

    /// When the current outage reaches `max_outage` (never, without a limit or an outage).
    async fn outage_limit(&self) {
        let lasted = self
            .cfg
            .max_outage
            .and_then(|allowed| Some(allowed.saturating_sub(self.breaker.outage()?.0)));
        match lasted {
            Some(left) => tokio::time::sleep(left).await,
            None => std::future::pending().await,
        }
    }

    /// Waits until the store is back (probing with backoff if no other worker is), extending
    /// the leases of `held` meanwhile. Returns early when halted, and with
    /// [`WorkerError::StoreOutage`] once the outage outlasts `max_outage`.
    async fn wait_for_store(
        &self,
        consumer: &B::Consumer,
        held: &[Held],
        halt: &mut watch::Receiver<bool>,
    ) -> Result<(), WorkerError> {
        let mut tick = self.extend_ticker();
        while self.breaker.is_open() && !stopped(halt) {
            if let Some(e) = self.outage_exceeded() {
                return Err(e);
            }
            if self.breaker.claim_probe() {
                let wait = tokio::time::sleep(self.breaker.next_delay());
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        _ = &mut wait => break,
                        _ = tick.tick() => self.extend(consumer, held).await,
                        _ = halt.changed() => break,
                        _ = self.outage_limit() => break,
                    }
                }
                if let Some(e) = self.outage_exceeded() {
                    self.breaker.probe_done(None);
                    return Err(e);
                }
                if stopped(halt) {
                    self.breaker.probe_done(None);
                    break;
                }
                // The probe may hang as long as the store's operation timeout: the batch in
                // hand keeps its leases meanwhile, or the broker would redeliver it (one
                // attempt burned) while it waits for nothing but the store.
                let probe = tokio::select! {
                    r = self.extending(consumer, held, self.store.probe()) => r,
                    _ = halt.changed() => {
                        self.breaker.probe_done(None);
                        break;
                    }
                    _ = self.outage_limit() => {
                        self.breaker.probe_done(None);
                        continue;
                    }
                };
                match probe {
                    Ok(()) => self.breaker.probe_done(Some(Ok(()))),
                    Err(e @ StoreError::Unavailable { .. }) => {
                        self.breaker.probe_done(Some(Err(&e)));
                    }
                    Err(e) => {
                        self.breaker.probe_done(None);
                        return Err(e.into());
                    }
                }
            } else {
                tokio::select! {
                    _ = self.breaker.closed() => {}
                    _ = tick.tick() => self.extend(consumer, held).await,
                    _ = halt.changed() => {}
                    _ = self.outage_limit() => {}
                }
            }
        }
        Ok(())
    }

    /// Sends `decided`; once the broker confirms them durable, counts the acks and observes
    /// each one's end-to-end latency (refused ones are neither).
    async fn settle(
        &self,
        consumer: &B::Consumer,
        decided: Vec<Decided>,
    ) -> Result<(), WorkerError> {
        if decided.is_empty() {
            return Ok(());
        }
        let mut acks: Vec<Option<u64>> = Vec::with_capacity(decided.len());
        let items: Vec<(Tag, Settlement)> = decided
            .into_iter()
            .map(|d| {
                acks.push(matches!(d.how, Settlement::Ack).then_some(d.enqueued_at));
                (d.tag, d.how)
            })
            .collect();
        match consumer.settle(items).await {
            Ok(results) => {
                let now = unix_ms();
                let mut failed = 0;
                let mut acked = 0;
                for (r, ack) in results.iter().zip(acks) {
                    match (r, ack) {
                        (Err(_), _) => failed += 1,
                        (Ok(()), Some(enqueued_at)) => {
                            acked += 1;
                            let ms = now.saturating_sub(enqueued_at);
                            self.stats.observe_end_to_end(Duration::from_millis(ms));
                        }
                        (Ok(()), None) => {}
                    }
                }
                self.stats.add_acked(acked);
                if failed > 0 {
                    // Redelivered elsewhere after a lease expiry: the store deduplicates.
                    tracing::warn!(failed, "settlements refused (stale deliveries)");
                    self.stats.add_settle_refused(failed);
                }
                Ok(())
            }
            Err(e @ BrokerError::Fatal { .. }) => Err(e.into()),
            Err(e) => {
                // Not durable: the deliveries come back and the store deduplicates.
                tracing::warn!(error = %e, "settling failed; the deliveries will be redelivered");
                Ok(())
            }
        }
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}
