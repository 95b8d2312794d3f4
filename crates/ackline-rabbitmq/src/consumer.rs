//! A consumer: one AMQP channel with `basic.qos(prefetch)` and manual acks, client-side
//! leases, and settlement by publishing confirmed copies before acking.
//!
//! How each verb maps:
//! - `receive` hands out what the channel's `basic.consume` pushed (at most `prefetch`
//!   unacked, enforced by RabbitMQ); each delivery gets a fresh consumer-local `key`, and its
//!   attempt (see [`crate::attempts`]). A delivery past `max_attempts` (a message that crashed
//!   its workers) is dead-lettered here instead of being handed out. A message without any id
//!   (another producer's) is adopted here: a copy under a new id is published, confirmed,
//!   and the original acked; the copy is handed out when it arrives. On a classic queue a
//!   redelivered message is likewise republished with its attempt in `x-ackline-attempt`
//!   first, since the `redelivered` flag cannot count further returns.
//! - `Ack` → `basic.ack`; lapin's `Ok(false)` (the channel is dead) is a failed settlement:
//!   `SettleError::Stale`, since RabbitMQ will redeliver the message. AMQP does not confirm
//!   acks; while the channel lives they reach RabbitMQ in order. `close` first makes a
//!   `basic.qos` round trip on the channel: RabbitMQ handles a channel's frames in order, so
//!   its `qos-ok` means every ack before it was applied, and the close cannot overtake them
//!   (seen over TLS: acks still buffered in the client were lost to the close and their
//!   messages requeued, to be stored again as duplicates).
//! - `Nack { delay }` → a copy with `x-ackline-attempt` = this attempt and the error is
//!   published to the delay bucket (or the main queue for a zero delay) and CONFIRMED, then
//!   the original is acked. At `max_attempts` the copy goes to the dead-letter queue instead.
//! - `Reject` → a confirmed copy to `<queue>.dlq`, then the original is acked.
//! - `Extend { lease }` → the client-side lease ends `lease` from now.
//! - Lease expiry: a timer task `basic.nack(requeue)`s a delivery whose lease ended (RabbitMQ
//!   counts the return in `x-delivery-count`, so the next delivery has attempt + 1). RabbitMQ's
//!   own `consumer_timeout` (30 min by default) would close the whole channel instead, so it
//!   is not the lease.
//! - Idle consumers: one that lets a lease expire, or leaves deliveries unclaimed in its buffer
//!   for a whole lease, while no `receive` is running, cancels its `basic.consume` (so the
//!   requeued delivery goes to a consumer that asks) and gives the buffer back as confirmed
//!   copies that keep their attempt; the next `receive` consumes again.
//! - `close`/drop → the channel is closed (after the ack barrier above, for `close`); RabbitMQ
//!   requeues every unacked delivery at once.
//! - Channel or connection loss → the reader task opens a new channel (reconnecting with
//!   backoff) and consumes again; what the dead channel held comes back through RabbitMQ's
//!   requeue with attempt + 1.
//!
//! Fencing: a tag is `(key, attempt, token = this consumer's id)`. A settlement for a key whose
//! lease expired or whose channel died is `Stale`; for a key already settled,
//! `AlreadySettled`; for a key, token or attempt this consumer never issued, `Unknown`.
//!
//! Invariants:
//! - A delivery is acked only after the copy its settlement requires is confirmed.
//! - Each delivery is settled on the broker at most once by this consumer: a key is marked
//!   `settling` before any I/O, and a concurrent settlement or lease expiry skips it.
//! - Held (handed out, unsettled) deliveries never exceed `prefetch`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ackline_broker::{BrokerError, ConsumerOptions, Delivery, SettleError, Settlement, Tag};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::FieldTable;
use lapin::{Acker, Channel};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::Inner;
use crate::attempts::{Envelope, attempt_of, now_ms};
use crate::publish::{Outgoing, in_flight};

/// How many settled or fenced keys a consumer remembers (to answer `AlreadySettled` or
/// `Stale` rather than `Unknown`).
const REMEMBERED: usize = 100_000;

/// Most deliveries the reader moves into the buffer at once.
const BURST: usize = 256;

/// The error recorded when a message comes back without a nack (crash, lease, connection).
pub(crate) const UNSETTLED: &str =
    "delivery ended without a settlement (worker died, lease expired or connection lost)";

struct Raw {
    generation: u64,
    arrived: Instant,
    delivery: lapin::message::Delivery,
}

struct Held {
    generation: u64,
    acker: Acker,
    attempt: u32,
    deadline: Instant,
    env: Envelope,
    settling: bool,
}

#[derive(Debug, Clone, Copy)]
enum Done {
    Settled,
    Gone { attempt: u32 },
}

struct State {
    generation: u64,
    channel: Option<Channel>,
    /// The live `basic.consume`'s tag (none while suspended or reconnecting).
    consumer_tag: Option<String>,
    /// Idle: the consume was cancelled; the next `receive` resumes it.
    suspended: bool,
    /// `receive` calls in progress, and when the last one ended.
    receiving: usize,
    last_receive: Instant,
    buffer: VecDeque<Raw>,
    held: HashMap<u64, Held>,
    done: BTreeMap<u64, Done>,
    next_key: u64,
}

impl State {
    fn remember(&mut self, key: u64, d: Done) {
        self.done.insert(key, d);
        while self.done.len() > REMEMBERED {
            self.done.pop_first();
        }
    }
}

pub(crate) struct Shared {
    inner: Arc<Inner>,
    opts: ConsumerOptions,
    token: Arc<str>,
    state: Mutex<State>,
    arrived: Notify,
    resume: Notify,
    closed: AtomicBool,
}

/// A RabbitMQ consumer (see the module doc).
pub struct RabbitConsumer {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for RabbitConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitConsumer")
            .field("queue", &self.shared.inner.queue)
            .field("token", &self.shared.token)
            .field("opts", &self.shared.opts)
            .finish()
    }
}

enum Plan {
    Ack,
    Copy(Box<Outgoing>, Counted),
}

#[derive(Clone, Copy)]
enum Counted {
    Nothing,
    Nacked,
    DeadLettered,
}

impl RabbitConsumer {
    pub(crate) async fn start(
        inner: Arc<Inner>,
        opts: ConsumerOptions,
    ) -> Result<Self, BrokerError> {
        let token: Arc<str> = Arc::from(format!("{:016x}", crate::connection::random_u64()));
        let shared = Arc::new(Shared {
            inner,
            opts,
            token,
            state: Mutex::new(State {
                generation: 0,
                channel: None,
                consumer_tag: None,
                suspended: false,
                receiving: 0,
                last_receive: Instant::now(),
                buffer: VecDeque::new(),
                held: HashMap::new(),
                done: BTreeMap::new(),
                next_key: 1,
            }),
            arrived: Notify::new(),
            resume: Notify::new(),
            closed: AtomicBool::new(false),
        });
        // The first channel is opened here, so a broker that is down fails the call.
        let first = open(&shared).await?;
        let reader = tokio::spawn(read_loop(shared.clone(), first));
        let reaper = tokio::spawn(reap_loop(shared.clone()));
        Ok(RabbitConsumer {
            shared,
            tasks: vec![reader, reaper],
        })
    }

    fn shutdown(&mut self) -> Option<Channel> {
        self.shared.closed.store(true, Ordering::SeqCst);
        for t in &self.tasks {
            t.abort();
        }
        let mut st = self.shared.state.lock();
        let n = st.held.len();
        st.held.clear();
        st.buffer.clear();
        self.shared.inner.counters.in_flight_sub(n);
        st.channel.take()
    }
}

impl Drop for RabbitConsumer {
    fn drop(&mut self) {
        // Dropping the last handle of the channel closes it (lapin's auto-close), and RabbitMQ
        // requeues what it held.
        drop(self.shutdown());
    }
}

/// A round trip on `ch` (re-sending its prefetch): RabbitMQ answers it only after handling
/// every frame sent on the channel before it, acks included.
async fn barrier(ch: &Channel, prefetch: usize) -> Result<(), lapin::Error> {
    let prefetch = u16::try_from(prefetch.max(1)).unwrap_or(u16::MAX);
    ch.basic_qos(prefetch, BasicQosOptions::default()).await
}

/// Opens a channel and sets the prefetch.
async fn open(shared: &Shared) -> Result<Channel, BrokerError> {
    let inner = &shared.inner;
    let ch = inner.conn.channel(None).await?;
    let prefetch = u16::try_from(shared.opts.prefetch.max(1)).unwrap_or(u16::MAX);
    ch.basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| inner.conn.error("basic.qos", &e))?;
    Ok(ch)
}

async fn next(consumer: &mut lapin::Consumer) -> Option<lapin::Result<lapin::message::Delivery>> {
    std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut *consumer), cx)).await
}

/// The next delivery if one is already there: `None` if none is, `Some(None)` at the stream's
/// end (which lapin reports only once: it must not be mistaken for "none yet").
async fn ready(
    consumer: &mut lapin::Consumer,
) -> Option<Option<lapin::Result<lapin::message::Delivery>>> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(
            match futures_core::Stream::poll_next(Pin::new(&mut *consumer), cx) {
                std::task::Poll::Ready(d) => Some(d),
                std::task::Poll::Pending => None,
            },
        )
    })
    .await
}

/// Keeps a channel consuming: reads deliveries into the buffer; on channel loss, fences what
/// it held and opens a new channel (reconnecting with backoff); while suspended, waits for a
/// `receive` to resume.
async fn read_loop(shared: Arc<Shared>, first: Channel) {
    let mut failures = 0u32;
    let mut consumes = 0u64;
    let mut current: Option<(Channel, u64)> = Some((first.clone(), new_generation(&shared, first)));
    while !shared.closed.load(Ordering::SeqCst) {
        let (ch, generation) = match current.take() {
            Some((ch, g)) if ch.status().connected() => (ch, g),
            dead => {
                if let Some((_, g)) = dead {
                    lose(&shared, g);
                }
                match open(&shared).await {
                    Ok(ch) => {
                        failures = 0;
                        let g = new_generation(&shared, ch.clone());
                        (ch, g)
                    }
                    Err(e) => {
                        let wait = shared.inner.opts.backoff().delay(failures);
                        failures += 1;
                        tracing::warn!(error = %e, ?wait, "consumer channel: retrying");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                }
            }
        };
        current = Some((ch.clone(), generation));
        let resumed = shared.resume.notified();
        tokio::pin!(resumed);
        resumed.as_mut().enable();
        if shared.state.lock().suspended {
            // Wake now and then to notice a dead channel or a close.
            let _ = tokio::time::timeout(Duration::from_millis(500), resumed).await;
            continue;
        }
        consumes += 1;
        let tag = format!("ackline-{}-{consumes}", shared.token);
        let mut consumer = match ch
            .basic_consume(
                shared.inner.queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %shared.inner.conn.error("basic.consume", &e), "consume failed");
                current = None;
                lose(&shared, generation);
                tokio::time::sleep(shared.inner.opts.backoff().delay(failures)).await;
                failures += 1;
                continue;
            }
        };
        shared.state.lock().consumer_tag = Some(tag);
        // Deliveries already there are taken together: one lock and one wake-up of `receive`
        // per burst rather than per delivery.
        let mut burst = Vec::new();
        let mut ended = false;
        while !ended && let Some(first) = next(&mut consumer).await {
            let mut failed = None;
            let mut item = Some(first);
            while let Some(r) = item.take() {
                match r {
                    Ok(delivery) => burst.push(delivery),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
                if burst.len() < BURST {
                    match ready(&mut consumer).await {
                        Some(Some(r)) => item = Some(r),
                        Some(None) => ended = true,
                        None => {}
                    }
                }
            }
            if !burst.is_empty() {
                let arrived = Instant::now();
                shared
                    .state
                    .lock()
                    .buffer
                    .extend(burst.drain(..).map(|delivery| Raw {
                        generation,
                        arrived,
                        delivery,
                    }));
                shared.arrived.notify_waiters();
            }
            if let Some(e) = failed {
                tracing::warn!(error = %shared.inner.conn.url().redact(&e.to_string()), "consumer channel failed");
                break;
            }
        }
        let suspended = {
            let mut st = shared.state.lock();
            st.consumer_tag = None;
            st.suspended
        };
        if suspended && ch.status().connected() {
            rehome(&shared, generation).await;
        } else {
            current = None;
            lose(&shared, generation);
        }
    }
}

fn new_generation(shared: &Shared, ch: Channel) -> u64 {
    let mut st = shared.state.lock();
    st.generation += 1;
    st.channel = Some(ch);
    st.generation
}

/// A suspended consumer gives back what it buffered but never handed out: each goes back to
/// the main queue as a confirmed copy that keeps its attempt count (a `nack(requeue)` would
/// count a delivery the application never saw), then the original is acked.
async fn rehome(shared: &Shared, generation: u64) {
    let raws: Vec<Raw> = {
        let mut st = shared.state.lock();
        let (mine, others): (VecDeque<Raw>, VecDeque<Raw>) = st
            .buffer
            .drain(..)
            .partition(|r| r.generation == generation);
        st.buffer = others;
        mine.into()
    };
    if raws.is_empty() {
        return;
    }
    let inner = &shared.inner;
    let mut diverted = Vec::with_capacity(raws.len());
    for raw in raws {
        let d = raw.delivery;
        let attempt = attempt_of(&d.properties, d.redelivered);
        let acker = d.acker.clone();
        // A message without an id is adopted here too: the copy carries its new id.
        let (env, _) = Envelope::decode_or_adopt(&d.properties, d.data);
        diverted.push(Diverted {
            acker,
            out: inner.retry_copy_raw(&env, attempt - 1, Duration::ZERO),
            counted: Counted::Nothing,
        });
    }
    tracing::debug!(
        n = diverted.len(),
        "idle consumer: returning buffered deliveries"
    );
    divert(inner, diverted).await;
}

/// The channel of `generation` is gone: RabbitMQ requeues what it held, so its deliveries are
/// fenced (`Stale`) and its buffered ones dropped.
fn lose(shared: &Shared, generation: u64) {
    let mut st = shared.state.lock();
    if st.generation == generation {
        st.channel = None;
    }
    st.buffer.retain(|r| r.generation != generation);
    let gone: Vec<(u64, u32)> = st
        .held
        .iter()
        .filter(|(_, h)| h.generation == generation && !h.settling)
        .map(|(k, h)| (*k, h.attempt))
        .collect();
    for (k, attempt) in &gone {
        st.held.remove(k);
        st.remember(*k, Done::Gone { attempt: *attempt });
    }
    shared.inner.counters.in_flight_sub(gone.len());
}

/// Returns expired leases to the queue with `basic.nack(requeue)`.
async fn reap_loop(shared: Arc<Shared>) {
    let tick = (shared.opts.lease / 8).clamp(Duration::from_millis(5), Duration::from_millis(100));
    loop {
        tokio::time::sleep(tick).await;
        let now = Instant::now();
        let (expired, cancel) = {
            let mut st = shared.state.lock();
            let keys: Vec<(u64, u32)> = st
                .held
                .iter()
                .filter(|(_, h)| !h.settling && h.deadline <= now)
                .map(|(k, h)| (*k, h.attempt))
                .collect();
            let expired: Vec<Acker> = keys
                .into_iter()
                .filter_map(|(k, attempt)| {
                    let h = st.held.remove(&k)?;
                    st.remember(k, Done::Gone { attempt });
                    Some(h.acker)
                })
                .collect();
            // A consumer that is not receiving and lets leases expire, or leaves deliveries
            // unclaimed for a whole lease, stops taking deliveries (so they go to consumers
            // that ask) until its next `receive`.
            let stale_buffer = st
                .buffer
                .front()
                .is_some_and(|r| now.duration_since(r.arrived) >= shared.opts.lease);
            let idle = st.receiving == 0 && now.duration_since(st.last_receive) >= tick;
            let cancel = if idle && !st.suspended && (!expired.is_empty() || stale_buffer) {
                match (st.consumer_tag.clone(), st.channel.clone()) {
                    (Some(tag), Some(ch)) => {
                        st.suspended = true;
                        Some((tag, ch))
                    }
                    _ => None,
                }
            } else {
                None
            };
            (expired, cancel)
        };
        if let Some((tag, ch)) = cancel {
            // After cancel-ok nothing more is pushed to this consumer, so the requeues below
            // go to others. Its reader returns the buffer (see `rehome`).
            let _ = ch
                .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                .await;
        }
        if expired.is_empty() {
            continue;
        }
        let c = &shared.inner.counters;
        c.in_flight_sub(expired.len());
        c.add(&c.lease_expired, expired.len());
        for a in expired {
            // Ok(false) or an error: the channel is dead, and RabbitMQ requeues it anyway.
            let _ = a
                .nack(BasicNackOptions {
                    requeue: true,
                    multiple: false,
                })
                .await;
        }
    }
}

/// Marks a `receive` in progress (resuming a suspended consume); on drop, records its end.
struct Receiving<'a>(&'a Shared);

impl<'a> Receiving<'a> {
    fn enter(sh: &'a Shared) -> Self {
        let mut st = sh.state.lock();
        st.receiving += 1;
        if st.suspended {
            st.suspended = false;
            sh.resume.notify_one();
        }
        Receiving(sh)
    }
}

impl Drop for Receiving<'_> {
    fn drop(&mut self) {
        let mut st = self.0.state.lock();
        st.receiving = st.receiving.saturating_sub(1);
        st.last_receive = Instant::now();
    }
}

/// A delivery that is not handed out: dead-lettered, put back into a delay queue, or given
/// back by an idle consumer.
struct Diverted {
    acker: Acker,
    out: Outgoing,
    counted: Counted,
}

impl ackline_broker::Consumer for RabbitConsumer {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BrokerError> {
        let sh = &self.shared;
        let deadline = Instant::now() + wait;
        let _receiving = Receiving::enter(sh);
        loop {
            let notified = sh.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (out, diverted) = self.take(max)?;
            if !diverted.is_empty() {
                divert(&sh.inner, diverted).await;
            }
            if !out.is_empty() {
                return Ok(out);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn settle(
        &self,
        items: Vec<(Tag, Settlement)>,
    ) -> Result<Vec<Result<(), SettleError>>, BrokerError> {
        let sh = &self.shared;
        let inner = &sh.inner;
        let n = items.len();
        let mut results: Vec<Option<Result<(), SettleError>>> = vec![None; n];
        // (index, key, acker, attempt, plan)
        let mut work: Vec<(usize, u64, Acker, u32, Plan)> = Vec::new();
        {
            let mut st = sh.state.lock();
            let now = Instant::now();
            for (i, (tag, how)) in items.iter().enumerate() {
                if tag.token.as_deref().is_some_and(|t| t != &*sh.token) {
                    results[i] = Some(Err(SettleError::Unknown));
                    continue;
                }
                let Some(h) = st.held.get_mut(&tag.key) else {
                    results[i] = Some(Err(match st.done.get(&tag.key) {
                        Some(Done::Settled) => SettleError::AlreadySettled,
                        Some(Done::Gone { attempt }) if *attempt == tag.attempt => {
                            SettleError::Stale {
                                attempt: *attempt,
                                current: attempt + 1,
                            }
                        }
                        _ => SettleError::Unknown,
                    }));
                    continue;
                };
                if h.attempt != tag.attempt {
                    results[i] = Some(Err(SettleError::Unknown));
                    continue;
                }
                if h.settling {
                    results[i] = Some(Err(SettleError::AlreadySettled));
                    continue;
                }
                let plan = match how {
                    Settlement::Extend { lease } => {
                        h.deadline = now + *lease;
                        results[i] = Some(Ok(()));
                        continue;
                    }
                    Settlement::Ack => Plan::Ack,
                    Settlement::Nack { delay, error } => {
                        if h.attempt >= inner.opts.max_attempts {
                            Plan::Copy(
                                Box::new(inner.dead_letter_copy(
                                    &h.env,
                                    h.attempt,
                                    ackline_broker::REASON_MAX_ATTEMPTS,
                                    error,
                                )),
                                Counted::DeadLettered,
                            )
                        } else {
                            Plan::Copy(
                                Box::new(inner.retry_copy(&h.env, h.attempt, *delay, error)),
                                Counted::Nacked,
                            )
                        }
                    }
                    Settlement::Reject { reason } => {
                        let last = h.env.last_error.clone().unwrap_or_else(|| reason.clone());
                        Plan::Copy(
                            Box::new(inner.dead_letter_copy(&h.env, h.attempt, reason, &last)),
                            Counted::DeadLettered,
                        )
                    }
                };
                h.settling = true;
                work.push((i, tag.key, h.acker.clone(), h.attempt, plan));
            }
        }
        // 1. Confirm every copy (delay queues are declared on first use).
        let copies: Vec<Outgoing> = work
            .iter()
            .filter_map(|(_, _, _, _, p)| match p {
                Plan::Copy(o, _) => Some((**o).clone()),
                Plan::Ack => None,
            })
            .collect();
        if !copies.is_empty()
            && let Err(e) = inner.publish_copies(&copies).await
        {
            let mut st = sh.state.lock();
            for (_, key, ..) in &work {
                if let Some(h) = st.held.get_mut(key) {
                    h.settling = false;
                }
            }
            return Err(e);
        }
        // 2. Ack the originals.
        let acks = in_flight(
            work.iter()
                .map(|(_, _, a, _, _)| a.ack(BasicAckOptions::default()))
                .collect(),
        )
        .await;
        let mut st = sh.state.lock();
        let mut settled = 0;
        let (mut acked, mut nacked, mut dead) = (0, 0, 0);
        for ((i, key, _, attempt, plan), r) in work.into_iter().zip(acks) {
            st.held.remove(&key);
            settled += 1;
            results[i] = Some(match r {
                Ok(true) => {
                    st.remember(key, Done::Settled);
                    match plan {
                        Plan::Ack => acked += 1,
                        Plan::Copy(_, Counted::Nacked) => nacked += 1,
                        Plan::Copy(_, Counted::DeadLettered) => dead += 1,
                        Plan::Copy(_, Counted::Nothing) => {}
                    }
                    Ok(())
                }
                // The channel died: RabbitMQ redelivers the original (a copy made above stays;
                // the store is idempotent by id).
                Ok(false) | Err(_) => {
                    st.remember(key, Done::Gone { attempt });
                    Err(SettleError::Stale {
                        attempt,
                        current: attempt + 1,
                    })
                }
            });
        }
        drop(st);
        let c = &inner.counters;
        c.in_flight_sub(settled);
        c.add(&c.acked, acked);
        c.add(&c.nacked, nacked);
        c.add(&c.dead_lettered, dead);
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or(Err(SettleError::Unknown)))
            .collect())
    }

    async fn close(mut self) {
        let prefetch = self.shared.opts.prefetch;
        if let Some(ch) = self.shutdown() {
            // Every ack sent so far is applied before the close (which requeues the rest).
            if let Err(e) = barrier(&ch, prefetch).await {
                tracing::debug!(error = %e, "ack barrier before close failed; RabbitMQ redelivers what it lacked");
            }
            let _ = ch.close(200, "consumer closed".into()).await;
        }
    }
}

impl RabbitConsumer {
    /// Takes up to `max` buffered deliveries (within the prefetch bound).
    fn take(&self, max: usize) -> Result<(Vec<Delivery>, Vec<Diverted>), BrokerError> {
        let sh = &self.shared;
        let inner = &sh.inner;
        let mut st = sh.state.lock();
        let room = sh.opts.prefetch.max(1).saturating_sub(st.held.len());
        let mut out = Vec::new();
        let mut diverted = Vec::new();
        let generation = st.generation;
        let now = Instant::now();
        let now_ms = now_ms();
        let classic = inner.opts.queue_type == crate::QueueType::Classic;
        while out.len() < max.min(room) {
            let Some(raw) = st.buffer.pop_front() else {
                break;
            };
            if raw.generation != generation {
                continue;
            }
            let d = raw.delivery;
            let attempt = attempt_of(&d.properties, d.redelivered);
            let acker = d.acker.clone();
            let (env, adopted) = Envelope::decode_or_adopt(&d.properties, d.data);
            if adopted {
                // Another producer's message without an id: its id must be durable before a
                // worker sees it (a redelivery must not bring a second id), so a copy with the
                // new id goes back to the queue, confirmed, before this one is acked.
                diverted.push(Diverted {
                    acker,
                    out: inner.retry_copy_raw(&env, attempt - 1, Duration::ZERO),
                    counted: Counted::Nothing,
                });
                continue;
            }
            if classic && d.redelivered && attempt <= inner.opts.max_attempts {
                // A classic queue marks a returned message only as `redelivered`, which does
                // not grow with further returns: the return is written into a copy's
                // `x-ackline-attempt` (confirmed, then the original acked), so that each
                // crash of a worker on this message counts and `max_attempts` is reached.
                diverted.push(Diverted {
                    acker,
                    out: inner.retry_copy_raw(&env, attempt - 1, Duration::ZERO),
                    counted: Counted::Nothing,
                });
                continue;
            }
            if attempt > inner.opts.max_attempts {
                let last = env
                    .last_error
                    .clone()
                    .unwrap_or_else(|| UNSETTLED.to_owned());
                diverted.push(Diverted {
                    out: inner.dead_letter_copy(
                        &env,
                        attempt - 1,
                        ackline_broker::REASON_MAX_ATTEMPTS,
                        &last,
                    ),
                    acker,
                    counted: Counted::DeadLettered,
                });
                continue;
            }
            if let Some(nb) = env.not_before
                && nb > now_ms
            {
                // A delay longer than the largest bucket: wait again, without an attempt.
                let out =
                    inner.retry_copy_raw(&env, attempt - 1, Duration::from_millis(nb - now_ms));
                diverted.push(Diverted {
                    acker,
                    out,
                    counted: Counted::Nothing,
                });
                continue;
            }
            let key = st.next_key;
            st.next_key += 1;
            let tag = Tag {
                key,
                attempt,
                token: Some(sh.token.clone()),
            };
            out.push(Delivery {
                tag,
                id: env.id.clone(),
                headers: env.headers.clone(),
                payload: env.payload.clone(),
                enqueued_at: env.enqueued_at,
                attempt,
            });
            st.held.insert(
                key,
                Held {
                    generation: raw.generation,
                    acker,
                    attempt,
                    deadline: now + sh.opts.lease,
                    env,
                    settling: false,
                },
            );
        }
        drop(st);
        let c = &inner.counters;
        c.in_flight_add(out.len());
        c.add(&c.delivered, out.len());
        c.add(&c.redelivered, out.iter().filter(|d| d.attempt > 1).count());
        Ok((out, diverted))
    }
}

/// Publishes the copies of deliveries that are not handed out (confirmed), then acks them.
/// On failure the originals are returned to the queue (and come back later).
async fn divert(inner: &Inner, ds: Vec<Diverted>) {
    let copies: Vec<Outgoing> = ds.iter().map(|d| d.out.clone()).collect();
    match inner.publish_copies(&copies).await {
        Ok(()) => {
            let dead = ds
                .iter()
                .filter(|d| matches!(d.counted, Counted::DeadLettered))
                .count();
            let acks = in_flight(
                ds.iter()
                    .map(|d| d.acker.ack(BasicAckOptions::default()))
                    .collect(),
            )
            .await;
            drop(acks);
            inner.counters.add(&inner.counters.dead_lettered, dead);
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not move deliveries aside; returning them");
            for d in ds {
                let _ = d
                    .acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        multiple: false,
                    })
                    .await;
            }
        }
    }
}
