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
//! By actor, each module stating the invariants it keeps:
//!
//! | module | actor |
//! | --- | --- |
//! | `state` | what the actors share under one lock: buffer, held deliveries, how keys ended |
//! | `channel` | the reader task: channel lifecycle (open, consume, loss, reconnection, an idle consumer's buffer given back) |
//! | `reaper` | the lease task: expired leases requeued, an idle consumer suspended |
//! | `receive` | `receive`: hand out, or move aside (adopt, count a classic return, dead-letter, wait longer) |
//! | `settle` | `settle`: copies confirmed, then originals acked |
//! | `divert` | moving deliveries aside: a confirmed copy, then the original acked |
//!
//! Invariants (across the actors):
//! - A delivery is acked only after the copy its settlement requires is confirmed.
//! - Each delivery is settled on the broker at most once by this consumer: a key is marked
//!   `settling` before any I/O, and a concurrent settlement or lease expiry skips it.
//! - Held (handed out, unsettled) deliveries never exceed `prefetch`.

mod channel;
mod divert;
mod reaper;
mod receive;
mod settle;
mod state;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ackline_broker::{BrokerError, ConsumerOptions, Delivery, SettleError, Settlement, Tag};
use lapin::Channel;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::Inner;
use state::{Shared, State};

/// A RabbitMQ consumer (see the module doc).
pub struct RabbitConsumer {
    shared: Arc<Shared>,
    /// The reader and the reaper, aborted at close or drop.
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
            state: Mutex::new(State::new()),
            arrived: Notify::new(),
            resume: Notify::new(),
            closed: AtomicBool::new(false),
        });
        // The first channel is opened here, so a broker that is down fails the call.
        let first = channel::open(&shared).await?;
        let reader = tokio::spawn(channel::read_loop(shared.clone(), first));
        let reaper = tokio::spawn(reaper::reap_loop(shared.clone()));
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

impl ackline_broker::Consumer for RabbitConsumer {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BrokerError> {
        receive::receive(&self.shared, max, wait).await
    }

    async fn settle(
        &self,
        items: Vec<(Tag, Settlement)>,
    ) -> Result<Vec<Result<(), SettleError>>, BrokerError> {
        settle::settle(&self.shared, items).await
    }

    async fn close(mut self) {
        let prefetch = self.shared.opts.prefetch;
        if let Some(ch) = self.shutdown() {
            // Every ack sent so far is applied before the close (which requeues the rest).
            if let Err(e) = channel::barrier(&ch, prefetch).await {
                tracing::debug!(error = %e, "ack barrier before close failed; RabbitMQ redelivers what it lacked");
            }
            let _ = ch.close(200, "consumer closed".into()).await;
        }
    }
}
