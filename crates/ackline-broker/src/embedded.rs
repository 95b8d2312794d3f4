//! The embedded queue ([`ackline_queue`]) as a [`Broker`].
//!
//! How each verb maps:
//! - `publish` → `Queue::publish_nowait`, then awaits its `Commit` (fsync, group commit);
//!   `publish_borrowed` → `Queue::publish_nowait_ref`, the same without copying the batch.
//! - `receive` → `Consumer::receive` on the blocking pool (it waits for messages and for the
//!   durable record of the attempt), bounded by the consumer's prefetch.
//! - `settle` → `Consumer::settle` (takes effect at once), then awaits its `Commit`; an
//!   `Extend` item → `Consumer::extend`, in the batch's order.
//! - `close`/drop → the engine consumer is dropped, which releases its deliveries at once.
//! - dead-letter operations → the engine's, on the blocking pool.
//!
//! Invariant: a consumer never holds more than `prefetch` unsettled deliveries it received;
//! a delivery stops counting once a settlement for it succeeded or was refused as stale,
//! already settled or unknown.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ackline_queue as q;
use parking_lot::Mutex;

use crate::{
    Broker, BrokerError, BrokerStats, ConsumerOptions, DeadLetter, DeadLetters, Delivery,
    DlqSelector, Message, SettleError, Settlement, Tag,
};

const NAME: &str = "embedded";

/// A queue of the embedded engine.
#[derive(Debug, Clone)]
pub struct EmbeddedBroker {
    queue: q::Queue,
}

impl EmbeddedBroker {
    /// Wraps an open queue.
    pub fn new(queue: q::Queue) -> Self {
        EmbeddedBroker { queue }
    }

    /// The engine queue.
    pub fn queue(&self) -> &q::Queue {
        &self.queue
    }
}

fn fatal(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Fatal {
        backend: NAME,
        reason: e.to_string(),
    }
}

fn queue_error(e: q::QueueError) -> BrokerError {
    fatal(e)
}

fn publish_error(e: q::PublishError) -> BrokerError {
    match e {
        q::PublishError::Full { .. } => BrokerError::Full {
            backend: NAME,
            reason: e.to_string(),
            retry_after: Some(Duration::from_secs(1)),
        },
        q::PublishError::TooLarge { .. } | q::PublishError::Invalid { .. } => {
            BrokerError::Invalid {
                backend: NAME,
                reason: e.to_string(),
            }
        }
        q::PublishError::Queue(e) => queue_error(e),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BrokerError> + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| fatal(format!("blocking task failed: {e}")))?
}

fn tag_of(t: q::Tag) -> Tag {
    Tag {
        key: t.seq,
        attempt: t.attempt,
        token: None,
    }
}

/// A broker message as the engine reads it when publishing from a borrowed batch.
impl q::Outgoing for Message {
    fn id(&self) -> Option<&str> {
        Some(&self.id)
    }
    fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
    fn payload(&self) -> &[u8] {
        &self.payload
    }
}

/// The engine's dead-letter entry as the broker trait's.
impl From<q::DeadLetter> for DeadLetter {
    fn from(d: q::DeadLetter) -> Self {
        DeadLetter {
            key: d.key,
            id: d.id,
            headers: d.headers,
            payload: d.payload,
            enqueued_at: d.enqueued_at,
            attempts: d.attempts,
            first_failure: d.first_failure,
            last_failure: d.last_failure,
            reason: d.reason,
            last_error: d.last_error,
        }
    }
}

fn selector(sel: DlqSelector) -> q::DlqSelector {
    match sel {
        DlqSelector::All => q::DlqSelector::All,
        DlqSelector::Keys(k) => q::DlqSelector::Keys(k),
        DlqSelector::Ids(ids) => q::DlqSelector::Ids(ids),
        DlqSelector::Matching(text) => q::DlqSelector::Filter(q::DlqFilter {
            reason_contains: Some(text),
            ..Default::default()
        }),
    }
}

impl Broker for EmbeddedBroker {
    type Consumer = EmbeddedConsumer;

    fn name(&self) -> &'static str {
        NAME
    }

    async fn publish(&self, batch: Vec<Message>) -> Result<(), BrokerError> {
        let msgs = batch
            .into_iter()
            .map(|m| q::NewMessage {
                id: Some(m.id),
                headers: m.headers,
                payload: m.payload,
            })
            .collect();
        let (_, commit) = self.queue.publish_nowait(msgs).map_err(publish_error)?;
        commit.await.map_err(queue_error)
    }

    async fn publish_borrowed(&self, batch: &[Message]) -> Result<(), BrokerError> {
        let (_, commit) = self
            .queue
            .publish_nowait_ref(batch)
            .map_err(publish_error)?;
        commit.await.map_err(queue_error)
    }

    async fn consumer(&self, opts: ConsumerOptions) -> Result<EmbeddedConsumer, BrokerError> {
        Ok(EmbeddedConsumer {
            inner: Arc::new(self.queue.consumer()),
            opts,
            held: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    async fn stats(&self) -> Result<BrokerStats, BrokerError> {
        let s = self.queue.stats();
        Ok(BrokerStats {
            pending: s.pending,
            in_flight: s.leased,
            delayed: s.delayed,
            dead_letters: s.dead_letters,
            published: s.published,
            delivered: s.delivered,
            redelivered: s.redelivered,
            acked: s.acked,
            nacked: s.nacked,
            dead_lettered: s.dead_lettered,
            lease_expired: s.lease_expired,
        })
    }
}

impl DeadLetters for EmbeddedBroker {
    async fn dlq_list(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        let q = self.queue.clone();
        blocking(move || {
            q.dead_letters()
                .list(after, limit)
                .map(|v| v.into_iter().map(DeadLetter::from).collect())
                .map_err(queue_error)
        })
        .await
    }

    async fn dlq_get(&self, key: u64) -> Result<Option<DeadLetter>, BrokerError> {
        let q = self.queue.clone();
        blocking(move || {
            q.dead_letters()
                .get(key)
                .map(|d| d.map(DeadLetter::from))
                .map_err(queue_error)
        })
        .await
    }

    async fn dlq_replay(&self, sel: DlqSelector) -> Result<usize, BrokerError> {
        let q = self.queue.clone();
        blocking(move || {
            q.dead_letters()
                .replay(&selector(sel))
                .map_err(publish_error)
        })
        .await
    }

    async fn dlq_purge(&self, sel: DlqSelector) -> Result<usize, BrokerError> {
        let q = self.queue.clone();
        blocking(move || q.dead_letters().purge(&selector(sel)).map_err(queue_error)).await
    }
}

/// A consumer of the embedded queue.
#[derive(Debug)]
pub struct EmbeddedConsumer {
    inner: Arc<q::Consumer>,
    opts: ConsumerOptions,
    held: Arc<Mutex<HashSet<(u64, u32)>>>,
}

impl crate::Consumer for EmbeddedConsumer {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BrokerError> {
        let room = self.opts.prefetch.saturating_sub(self.held.lock().len());
        let max = max.min(room);
        if max == 0 {
            return Ok(Vec::new());
        }
        let inner = self.inner.clone();
        let lease = self.opts.lease;
        let got = blocking(move || inner.receive(max, lease, wait).map_err(queue_error)).await?;
        let mut held = self.held.lock();
        Ok(got
            .into_iter()
            .map(|d| {
                held.insert((d.tag.seq, d.tag.attempt));
                Delivery {
                    tag: tag_of(d.tag),
                    id: d.id,
                    headers: d.headers,
                    payload: d.payload,
                    enqueued_at: d.enqueued_at,
                }
            })
            .collect())
    }

    async fn settle(
        &self,
        items: Vec<(Tag, Settlement)>,
    ) -> Result<Vec<Result<(), SettleError>>, BrokerError> {
        // Settlements go to the engine in runs, one `Commit` each; an extension (not a
        // settlement in the engine) is applied between them, so the batch keeps its order.
        let mut results = Vec::with_capacity(items.len());
        let mut commits = Vec::new();
        let mut run: Vec<(q::Tag, q::Settlement)> = Vec::new();
        let mut settle_run =
            |run: &mut Vec<(q::Tag, q::Settlement)>,
             results: &mut Vec<Result<(), q::SettleError>>| {
                if !run.is_empty() {
                    let (r, commit) = self.inner.settle(run);
                    results.extend(r);
                    commits.push(commit);
                    run.clear();
                }
            };
        for (t, s) in &items {
            let tag = q::Tag {
                seq: t.key,
                attempt: t.attempt,
            };
            let s = match s {
                Settlement::Ack => q::Settlement::Ack,
                Settlement::Nack { delay, error } => q::Settlement::Nack {
                    delay: *delay,
                    error: error.clone(),
                },
                Settlement::Reject { reason } => q::Settlement::Reject {
                    reason: reason.clone(),
                },
                Settlement::Extend { lease } => {
                    settle_run(&mut run, &mut results);
                    results.push(self.inner.extend(tag, *lease));
                    continue;
                }
            };
            run.push((tag, s));
        }
        settle_run(&mut run, &mut results);
        let mut out = Vec::with_capacity(results.len());
        {
            let mut held = self.held.lock();
            for ((tag, how), r) in items.iter().zip(results) {
                let r = match r {
                    Ok(()) => Ok(()),
                    Err(q::SettleError::Stale {
                        attempt, current, ..
                    }) => Err(SettleError::Stale { attempt, current }),
                    Err(q::SettleError::AlreadySettled { .. }) => Err(SettleError::AlreadySettled),
                    Err(q::SettleError::Unknown { .. }) => Err(SettleError::Unknown),
                    Err(q::SettleError::Queue(e)) => return Err(queue_error(e)),
                };
                let done = !matches!(how, Settlement::Extend { .. }) || r.is_err();
                if done {
                    held.remove(&(tag.key, tag.attempt));
                }
                out.push(r);
            }
        }
        for commit in commits {
            commit.await.map_err(queue_error)?;
        }
        Ok(out)
    }

    async fn close(self) {
        drop(self);
    }
}
