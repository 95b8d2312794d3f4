//! The reader task: keeps one channel consuming, for the consumer's whole life.
//!
//! Each channel it opens is a new *generation*. The reader reads deliveries into the shared
//! buffer in bursts; when the channel dies it fences what that generation held and opens a
//! new one (reconnecting with backoff); while the consumer is suspended (idle, see
//! `reaper`) it gives back what it buffered and waits for a `receive` to resume it.
//!
//! Invariants:
//! - A lost generation's held deliveries end as gone ([`ackline_broker::fence::Ended::gone`]:
//!   a settlement is `Stale`, RabbitMQ requeues them with attempt + 1), unless a settlement is under way for them; its
//!   buffered ones are dropped (RabbitMQ requeues them too).
//! - A suspended consumer's buffer goes back to the main queue as confirmed copies that keep
//!   their attempt (never a `nack(requeue)`, which would count a delivery no worker saw), and
//!   each original is acked only after its copy is confirmed.
//! - A channel is used only after its `basic.qos(prefetch)` succeeded.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ackline_broker::BrokerError;
use lapin::Channel;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio::time::Instant;

use super::divert::{Counted, Diverted, divert};
use super::state::{Raw, Shared};
use crate::attempts::{Envelope, attempt_of};

/// Most deliveries the reader moves into the buffer at once.
const BURST: usize = 256;

/// A channel and its generation.
struct Live {
    channel: Channel,
    generation: u64,
}

/// A round trip on `ch` (re-sending its prefetch): RabbitMQ answers it only after handling
/// every frame sent on the channel before it, acks included.
pub(super) async fn barrier(ch: &Channel, prefetch: usize) -> Result<(), lapin::Error> {
    let prefetch = u16::try_from(prefetch.max(1)).unwrap_or(u16::MAX);
    ch.basic_qos(prefetch, BasicQosOptions::default()).await
}

/// Opens a channel and sets the prefetch.
pub(super) async fn open(shared: &Shared) -> Result<Channel, BrokerError> {
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
pub(super) async fn read_loop(shared: Arc<Shared>, first: Channel) {
    let mut failures = 0u32;
    let mut consumes = 0u64;
    let mut current = Some(Live {
        generation: new_generation(&shared, first.clone()),
        channel: first,
    });
    while !shared.closed.load(Ordering::SeqCst) {
        let (ch, generation) = match current.take() {
            Some(live) if live.channel.status().connected() => (live.channel, live.generation),
            dead => {
                if let Some(live) = dead {
                    lose(&shared, live.generation);
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
        current = Some(Live {
            channel: ch.clone(),
            generation,
        });
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
    let gone: Vec<u64> = st
        .held
        .iter()
        .filter(|(_, h)| h.generation == generation && !h.settling)
        .map(|(k, _)| *k)
        .collect();
    for k in &gone {
        if let Some(h) = st.held.remove(k) {
            st.done.gone(*k, h.attempt);
        }
    }
    shared.inner.counters.in_flight_sub(gone.len());
}
