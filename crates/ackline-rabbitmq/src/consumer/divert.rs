//! Moving deliveries aside without handing them out: a confirmed copy, then the original
//! acked. Used for dead-lettering past `max_attempts`, adopting a message without an id,
//! counting a classic queue's return, waiting out a long delay (`receive`), and for the
//! buffer an idle consumer gives back (`channel`).
//!
//! Invariant: an original is acked only after every copy of its batch is confirmed; if the
//! copies cannot be confirmed, every original is requeued instead (`basic.nack(requeue)`), so
//! a moved-aside message is never lost, at worst published twice (the same id).

use lapin::Acker;
use lapin::options::{BasicAckOptions, BasicNackOptions};

use crate::Inner;
use crate::publish::{Outgoing, in_flight};

/// Which counter a settlement or a moved-aside delivery adds to.
#[derive(Debug, Clone, Copy)]
pub(super) enum Counted {
    Nothing,
    Nacked,
    DeadLettered,
}

/// A delivery that is not handed out: dead-lettered, put back into a delay queue, or given
/// back by an idle consumer.
pub(super) struct Diverted {
    pub acker: Acker,
    /// Its copy.
    pub out: Outgoing,
    pub counted: Counted,
}

/// Publishes the copies of deliveries that are not handed out (confirmed), then acks them.
/// On failure the originals are returned to the queue (and come back later).
pub(super) async fn divert(inner: &Inner, ds: Vec<Diverted>) {
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
