//! `receive`: hands out buffered deliveries, or moves them aside.
//!
//! A buffered delivery of the current channel is, in this order: adopted (no id: a copy under
//! a new id goes back to the queue, and that copy is handed out when it arrives), counted (a
//! classic queue's return: a copy with the attempt written down), dead-lettered (past
//! `max_attempts`: it crashed its workers), put back to wait (a delay longer than the largest
//! bucket), or handed out with a fresh key and a lease. A delivery of an older channel is
//! dropped (RabbitMQ requeued it with the channel).
//!
//! Invariants:
//! - At most `prefetch` deliveries are held: a `receive` hands out only into the room left.
//! - A worker never sees a message whose id is not durable (adoption happens before), nor one
//!   past `max_attempts`.
//! - While a `receive` runs the consumer is not suspended; entering one resumes a suspended
//!   consumer (the reader consumes again).

use std::time::Duration;

use ackline_broker::{BrokerError, Delivery, Tag};
use tokio::time::Instant;

use super::divert::{Counted, Diverted, divert};
use super::state::{Held, Shared};
use crate::attempts::{Envelope, attempt_of, now_ms};

/// The error recorded when a message comes back without a nack (crash, lease, connection).
const UNSETTLED: &str =
    "delivery ended without a settlement (worker died, lease expired or connection lost)";

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

/// What one pass over the buffer took.
struct Taken {
    /// Handed out.
    out: Vec<Delivery>,
    /// To move aside.
    diverted: Vec<Diverted>,
}

/// Up to `max` deliveries, waiting at most `wait` for the first.
pub(super) async fn receive(
    sh: &Shared,
    max: usize,
    wait: Duration,
) -> Result<Vec<Delivery>, BrokerError> {
    let deadline = Instant::now() + wait;
    let _receiving = Receiving::enter(sh);
    loop {
        let notified = sh.arrived.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let Taken { out, diverted } = take(sh, max);
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

/// Takes up to `max` buffered deliveries (within the prefetch bound).
fn take(sh: &Shared, max: usize) -> Taken {
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
            let out = inner.retry_copy_raw(&env, attempt - 1, Duration::from_millis(nb - now_ms));
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
    c.add(
        &c.redelivered,
        out.iter().filter(|d| d.attempt() > 1).count(),
    );
    Taken { out, diverted }
}
