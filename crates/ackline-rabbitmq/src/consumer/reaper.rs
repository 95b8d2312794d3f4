//! The reaper task: ends expired leases and suspends an idle consumer.
//!
//! Every tick (an eighth of the lease, between 5 and 100 ms) it takes, under the lock, every
//! held delivery whose lease ended, and requeues each with `basic.nack(requeue)` after the
//! lock is released: RabbitMQ counts the return, so the next delivery has attempt + 1.
//!
//! Invariants:
//! - A delivery with a settlement under way (`settling`) is never reaped; a reaped one ends
//!   as gone ([`ackline_broker::fence::Ended::gone`]) before any I/O, so a late settlement of it is `Stale`, never applied.
//! - The consumer is suspended (its `basic.consume` cancelled, the reader then gives back its
//!   buffer) only while no `receive` runs or ran within the last tick, and only when it let a
//!   lease expire or left a delivery unclaimed for a whole lease; the next `receive` resumes
//!   it.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicCancelOptions, BasicNackOptions};
use lapin::{Acker, Channel};
use tokio::time::Instant;

use super::state::{Shared, State};

/// A `basic.consume` to cancel.
struct Cancel {
    consumer_tag: String,
    channel: Channel,
}

/// Returns expired leases to the queue with `basic.nack(requeue)`.
pub(super) async fn reap_loop(shared: Arc<Shared>) {
    let tick = (shared.opts.lease / 8).clamp(Duration::from_millis(5), Duration::from_millis(100));
    loop {
        tokio::time::sleep(tick).await;
        let now = Instant::now();
        let (expired, cancel) = {
            let mut st = shared.state.lock();
            let expired = take_expired(&mut st, now);
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
                    (Some(consumer_tag), Some(channel)) => {
                        st.suspended = true;
                        Some(Cancel {
                            consumer_tag,
                            channel,
                        })
                    }
                    _ => None,
                }
            } else {
                None
            };
            (expired, cancel)
        };
        if let Some(c) = cancel {
            // After cancel-ok nothing more is pushed to this consumer, so the requeues below
            // go to others. Its reader returns the buffer (see `channel::rehome`).
            let _ = c
                .channel
                .basic_cancel(
                    c.consumer_tag.as_str().into(),
                    BasicCancelOptions::default(),
                )
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

/// Removes every held delivery whose lease ended by `now` (and no settlement is under way),
/// remembering each as gone; their ackers, to requeue them.
fn take_expired(st: &mut State, now: Instant) -> Vec<Acker> {
    let keys: Vec<u64> = st
        .held
        .iter()
        .filter(|(_, h)| !h.settling && h.deadline <= now)
        .map(|(k, _)| *k)
        .collect();
    keys.into_iter()
        .filter_map(|k| {
            let h = st.held.remove(&k)?;
            st.done.gone(k, h.attempt);
            Some(h.acker)
        })
        .collect()
}
