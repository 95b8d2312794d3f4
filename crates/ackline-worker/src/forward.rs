//! Store-and-forward: moves every message of one broker's queue into another broker's.
//!
//! This is the ingest node of scale-out mode (`ackline serve --broker amqp://...`): producers
//! get their 2xx once a line is durable in the node's embedded queue, and the forwarder
//! relays it to the shared broker (RabbitMQ), where `ackline work --broker ...` processes
//! consume it. The embedded queue is the node's disk buffer: a broker outage does not stop
//! ingest, it fills the buffer (up to the queue's limits, then producers get 429/503).
//!
//! Invariants:
//! - A source delivery is acked only after the destination confirmed the publish of its
//!   message, with the same id, headers and payload. A crash at any moment loses nothing; a
//!   crash between the confirm and the source's ack forwards the message again under the
//!   same id, and the stores, idempotent by id, keep one copy.
//! - A destination that is unavailable or full burns no attempt: the batch is held, its
//!   leases extended every third of a lease, and the publish retried with backoff (full
//!   jitter) until it succeeds or the forwarder is stopped (then the batch is released,
//!   unsettled, at once).
//! - A message the destination refuses as invalid (too large for it, say) is dead-lettered
//!   in the source with the destination's reason; the rest of its batch is forwarded.
//! - A fatal error of either broker stops the forwarder with that error; what it held is
//!   released.
//! - Each task holds at most one batch (`batch` deliveries) unsettled.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ackline_broker::{
    Broker, BrokerError, Consumer, ConsumerOptions, Delivery, Message, Settlement, Tag,
};
use tokio::sync::watch;

use crate::RetryPolicy;

/// How the forwarder runs.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// Concurrent forwarding tasks (each with its own consumer).
    pub tasks: usize,
    /// Deliveries per destination publish (one confirm round trip).
    pub batch: usize,
    /// How long a receive waits for the first delivery.
    pub wait: Duration,
    /// Lease of each held delivery; extended every third of it.
    pub lease: Duration,
    /// Backoff between publishes to a destination that is unavailable or full.
    pub retry: RetryPolicy,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig {
            tasks: 2,
            batch: 500,
            wait: Duration::from_millis(200),
            lease: Duration::from_secs(30),
            retry: RetryPolicy {
                base: Duration::from_millis(100),
                factor: 2.0,
                cap: Duration::from_secs(5),
            },
        }
    }
}

/// Counts since the forwarder started.
#[derive(Debug, Default)]
pub struct ForwardStats {
    forwarded: AtomicU64,
    refused: AtomicU64,
    retries: AtomicU64,
    extensions: AtomicU64,
    stale: AtomicU64,
}

/// A copy of [`ForwardStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardSnapshot {
    /// Messages the destination confirmed and the source acked.
    pub forwarded: u64,
    /// Messages the destination refused as invalid, dead-lettered in the source.
    pub refused: u64,
    /// Publishes retried after the destination was unavailable or full.
    pub retries: u64,
    /// Lease extensions of held batches.
    pub extensions: u64,
    /// Settlements the source refused as stale (the delivery had been redelivered: its
    /// message may be forwarded twice, under one id).
    pub stale: u64,
}

impl ForwardStats {
    /// A copy of the counts.
    pub fn snapshot(&self) -> ForwardSnapshot {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ForwardSnapshot {
            forwarded: r(&self.forwarded),
            refused: r(&self.refused),
            retries: r(&self.retries),
            extensions: r(&self.extensions),
            stale: r(&self.stale),
        }
    }
}

fn bump(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

/// Why the forwarder stopped before it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The source queue failed.
    #[error("forwarding source: {0}")]
    Source(BrokerError),
    /// The destination failed in a way waiting cannot fix.
    #[error("forwarding destination: {0}")]
    Destination(BrokerError),
    /// A forwarding task panicked or was cancelled (the `JoinError` tells which).
    #[error("forwarding task failed: {0}")]
    Task(tokio::task::JoinError),
}

/// Forwards from `src` to `dst` with `cfg.tasks` tasks until `stop` turns true, or a fatal
/// error. Returns once every task closed its consumer (releasing what it held; a receive cut
/// short by the stop may finish in the backend afterwards, and what it took is released
/// when it does).
pub async fn forward<S: Broker, D: Broker>(
    src: Arc<S>,
    dst: Arc<D>,
    cfg: ForwardConfig,
    stats: Arc<ForwardStats>,
    stop: watch::Receiver<bool>,
) -> Result<(), ForwardError> {
    // The tasks watch `halt`: the caller's stop, or the first task's failure (then the
    // others stop too and close their consumers, releasing what they hold).
    let (halt_tx, halt) = watch::channel(false);
    let halt_tx = Arc::new(halt_tx);
    let relay = {
        let halt_tx = halt_tx.clone();
        let mut stop = stop;
        tokio::spawn(async move {
            let _ = stop.wait_for(|s| *s).await;
            halt_tx.send_replace(true);
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..cfg.tasks.max(1) {
        let task = Task {
            dst: dst.clone(),
            cfg: cfg.clone(),
            stats: stats.clone(),
            stop: halt.clone(),
        };
        let src = src.clone();
        tasks.spawn(async move { task.run(&*src).await });
    }
    let mut first_err = None;
    while let Some(joined) = tasks.join_next().await {
        let err = match joined {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(ForwardError::Task(e)),
        };
        if let Some(e) = err
            && first_err.is_none()
        {
            halt_tx.send_replace(true);
            first_err = Some(e);
        }
    }
    relay.abort();
    first_err.map_or(Ok(()), Err)
}

struct Task<D> {
    dst: Arc<D>,
    cfg: ForwardConfig,
    stats: Arc<ForwardStats>,
    stop: watch::Receiver<bool>,
}

/// How one publish ended.
enum Sent {
    /// Confirmed by the destination.
    Confirmed,
    /// Refused as invalid, with the destination's reason.
    Refused(String),
    /// The forwarder was stopped while the destination was unavailable.
    Stopped,
}

/// Each delivery's tag (to settle it) and its message (to forward), fields moved, not copied.
fn split(batch: Vec<Delivery>) -> (Vec<Tag>, Vec<Message>) {
    batch
        .into_iter()
        .map(|d| {
            let m = Message {
                id: d.id,
                headers: d.headers,
                payload: d.payload,
            };
            (d.tag, m)
        })
        .unzip()
}

impl<D: Broker> Task<D> {
    async fn run<S: Broker>(self, src: &S) -> Result<(), ForwardError> {
        let opts = ConsumerOptions {
            prefetch: self.cfg.batch.max(1),
            lease: self.cfg.lease,
        };
        let consumer = src.consumer(opts).await.map_err(ForwardError::Source)?;
        let result = self.pump(&consumer).await;
        consumer.close().await;
        result
    }

    async fn pump<C: Consumer>(&self, consumer: &C) -> Result<(), ForwardError> {
        let mut failures = 0u32;
        loop {
            if *self.stop.borrow() {
                return Ok(());
            }
            let mut stop = self.stop.clone();
            let received = tokio::select! {
                r = consumer.receive(self.cfg.batch.max(1), self.cfg.wait) => r,
                _ = stop.wait_for(|s| *s) => return Ok(()),
            };
            let batch = match received {
                Ok(b) => {
                    failures = 0;
                    b
                }
                Err(e @ (BrokerError::Invalid { .. } | BrokerError::Fatal { .. })) => {
                    return Err(ForwardError::Source(e));
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "forwarder: source unavailable, backing off");
                    if !self.pause(failures).await {
                        return Ok(());
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                continue;
            }
            let Some(settlements) = self.send_batch(consumer, batch).await? else {
                return Ok(());
            };
            let results = consumer
                .settle(settlements)
                .await
                .map_err(ForwardError::Source)?;
            let stale = results.iter().filter(|r| r.is_err()).count() as u64;
            bump(&self.stats.stale, stale);
        }
    }

    /// Publishes the batch (holding it through outages) and returns each delivery's
    /// settlement, or `None` when stopped.
    async fn send_batch<C: Consumer>(
        &self,
        consumer: &C,
        batch: Vec<Delivery>,
    ) -> Result<Option<Vec<(Tag, Settlement)>>, ForwardError> {
        let (tags, msgs) = split(batch);
        match self.send(consumer, &tags, &msgs).await? {
            Sent::Stopped => return Ok(None),
            Sent::Confirmed => {
                bump(&self.stats.forwarded, tags.len() as u64);
                return Ok(Some(
                    tags.into_iter().map(|t| (t, Settlement::Ack)).collect(),
                ));
            }
            Sent::Refused(reason) if tags.len() == 1 => {
                bump(&self.stats.refused, 1);
                return Ok(Some(
                    tags.into_iter()
                        .map(|t| (t, refusal(reason.clone())))
                        .collect(),
                ));
            }
            Sent::Refused(_) => {}
        }
        // Some message of the batch is refused: find which, one by one.
        let mut out = Vec::with_capacity(tags.len());
        for (tag, m) in tags.iter().zip(&msgs) {
            let s = match self.send(consumer, &tags, std::slice::from_ref(m)).await? {
                Sent::Stopped => return Ok(None),
                Sent::Confirmed => {
                    bump(&self.stats.forwarded, 1);
                    Settlement::Ack
                }
                Sent::Refused(reason) => {
                    bump(&self.stats.refused, 1);
                    refusal(reason)
                }
            };
            out.push((tag.clone(), s));
        }
        Ok(Some(out))
    }

    /// Publishes `msgs` until confirmed, refused or stopped, keeping the leases of `held`.
    async fn send<C: Consumer>(
        &self,
        consumer: &C,
        held: &[Tag],
        msgs: &[Message],
    ) -> Result<Sent, ForwardError> {
        let mut failures = 0u32;
        let every = (self.cfg.lease / 3).max(Duration::from_millis(10));
        let mut next_extend = tokio::time::Instant::now() + every;
        loop {
            let dst = self.dst.clone();
            let publish = dst.publish(msgs.to_vec());
            match self
                .keeping_leases(consumer, held, &mut next_extend, publish)
                .await
            {
                Ok(()) => return Ok(Sent::Confirmed),
                Err(BrokerError::Invalid { reason, .. }) => return Ok(Sent::Refused(reason)),
                Err(e @ BrokerError::Fatal { .. }) => return Err(ForwardError::Destination(e)),
                Err(e) => {
                    failures += 1;
                    bump(&self.stats.retries, 1);
                    tracing::warn!(error = %e, attempt = failures, "forwarder: destination unavailable, holding the batch");
                    let stop = self.stop.clone();
                    let waited = self
                        .keeping_leases(
                            consumer,
                            held,
                            &mut next_extend,
                            wait_unless_stopped(self.delay(failures), stop),
                        )
                        .await;
                    if !waited {
                        return Ok(Sent::Stopped);
                    }
                }
            }
        }
    }

    /// Runs `fut`, extending the leases of `held` whenever `next_extend` passes (then every
    /// third of a lease); `next_extend` carries over between calls, so a hold made of many
    /// short publish attempts and waits still extends on time.
    async fn keeping_leases<C: Consumer, T>(
        &self,
        consumer: &C,
        held: &[Tag],
        next_extend: &mut tokio::time::Instant,
        fut: impl Future<Output = T>,
    ) -> T {
        let every = (self.cfg.lease / 3).max(Duration::from_millis(10));
        tokio::pin!(fut);
        loop {
            tokio::select! {
                out = &mut fut => return out,
                _ = tokio::time::sleep_until(*next_extend) => {
                    let items = held
                        .iter()
                        .map(|t| (t.clone(), Settlement::Extend { lease: self.cfg.lease }))
                        .collect();
                    // A failed extension is not fatal here: at worst the lease runs out and
                    // the message is forwarded twice under one id.
                    if let Err(e) = consumer.settle(items).await {
                        tracing::warn!(error = %e, "forwarder: extending leases failed");
                    } else {
                        bump(&self.stats.extensions, 1);
                    }
                    *next_extend = tokio::time::Instant::now() + every;
                }
            }
        }
    }

    fn delay(&self, failures: u32) -> Duration {
        self.cfg.retry.delay(failures, &mut rand::rng())
    }

    /// Waits out a source backoff; false when stopped meanwhile.
    async fn pause(&self, failures: u32) -> bool {
        wait_unless_stopped(self.delay(failures), self.stop.clone()).await
    }
}

fn refusal(reason: String) -> Settlement {
    Settlement::Reject {
        reason: format!("the destination broker refused the message: {reason}"),
    }
}

/// Sleeps `d`; false if `stop` turned true first.
async fn wait_unless_stopped(d: Duration, mut stop: watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    !stopped && !*stop.borrow()
}
