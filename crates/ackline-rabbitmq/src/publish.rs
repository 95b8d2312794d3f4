//! Confirmed publishing: a publish returns only when RabbitMQ confirmed every message.
//!
//! Messages go to the default exchange, routed by queue name, `mandatory` (a message no queue
//! accepts comes back as a `basic.return` and is an error, never a silent drop), persistent,
//! on the broker handle's shared confirm-mode channel.
//!
//! Invariants:
//! - `Ok(())` means every message of the batch was confirmed (`basic.ack`) by the broker:
//!   on a quorum queue, written to a majority of its replicas.
//! - A `basic.nack` is never success: it is `BrokerError::Full` (the queue is at
//!   `x-max-length-bytes` with `x-overflow = reject-publish`, the only cause of a nack on these
//!   queues in normal operation).
//! - A message whose confirm was lost with its channel or connection is published again on a
//!   new one, until `timeout`; a duplicate that results carries the same id, and stores are
//!   idempotent by id. No confirmed message is ever withdrawn.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use ackline_broker::BrokerError;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Confirmation};
use tokio::time::Instant;

use crate::connection::{Connector, NAME};

/// One message to publish.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub routing_key: String,
    pub props: BasicProperties,
    pub payload: Vec<u8>,
    /// The TTL (ms) of the delay queue `routing_key` names, which must be declared first.
    pub declare_delay: Option<u64>,
}

/// Most publishes started together (see [`publish_confirmed`]).
const WINDOW_MESSAGES: usize = 1024;
/// Most payload bytes started together (a larger message goes alone).
const WINDOW_BYTES: usize = 8 << 20;

enum Outcome {
    Confirmed,
    Retry(BrokerError),
    Nacked,
    Returned(String),
}

/// Publishes `items` and waits for every confirm (see the module doc).
pub(crate) async fn publish_confirmed(
    conn: &Connector,
    items: &[Outgoing],
    timeout: Duration,
) -> Result<(), BrokerError> {
    if items.is_empty() {
        return Ok(());
    }
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<usize> = (0..items.len()).collect();
    let mut round = 0u32;
    loop {
        let ch = conn.publish_channel(Some(deadline)).await?;
        // The publishes of a window are all started before any is awaited: lapin writes a
        // publish's frames on its first poll, so a window goes out in a few writes instead of
        // one round trip through lapin's I/O loop per message. The window bounds how much lapin
        // buffers (it copies the payloads into frames).
        let mut started = Vec::with_capacity(pending.len());
        let mut rest = &pending[..];
        while !rest.is_empty() {
            let mut k = 0;
            let mut bytes = 0;
            while let Some(&i) = rest.get(k) {
                let len = items[i].payload.len();
                if k == WINDOW_MESSAGES || (k > 0 && bytes + len > WINDOW_BYTES) {
                    break;
                }
                bytes += len;
                k += 1;
            }
            let (window, after) = rest.split_at(k);
            rest = after;
            let publishes = window
                .iter()
                .map(|&i| {
                    let it = &items[i];
                    ch.basic_publish(
                        "".into(),
                        it.routing_key.as_str().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..Default::default()
                        },
                        &it.payload,
                        it.props.clone(),
                    )
                })
                .collect();
            started.extend(in_flight(publishes).await);
        }
        let mut confirms = Vec::with_capacity(pending.len());
        let mut retry = Vec::new();
        let mut last_error = None;
        for (&i, r) in pending.iter().zip(started) {
            match r {
                Ok(c) => confirms.push((i, c)),
                Err(e) => {
                    last_error = Some(conn.error("publishing", &e));
                    retry.push(i);
                }
            }
        }
        let mut nacked = 0usize;
        let mut returned = None;
        for (i, c) in confirms {
            let outcome = match c.await {
                Ok(Confirmation::Ack(None)) => Outcome::Confirmed,
                Ok(Confirmation::Ack(Some(r))) => Outcome::Returned(format!(
                    "queue {:?} refused the message: {} {}",
                    items[i].routing_key, r.reply_code, r.reply_text
                )),
                Ok(Confirmation::Nack(_)) => Outcome::Nacked,
                Ok(Confirmation::NotRequested) => Outcome::Retry(BrokerError::Fatal {
                    backend: NAME,
                    reason: "publish channel is not in confirm mode".into(),
                }),
                Err(e) => Outcome::Retry(conn.error("waiting for a publisher confirm", &e)),
            };
            match outcome {
                Outcome::Confirmed => {}
                Outcome::Nacked => nacked += 1,
                Outcome::Returned(r) => returned = Some(r),
                Outcome::Retry(e) => {
                    if matches!(e, BrokerError::Fatal { .. }) {
                        return Err(e);
                    }
                    last_error = Some(e);
                    retry.push(i);
                }
            }
        }
        if let Some(reason) = returned {
            return Err(BrokerError::Fatal {
                backend: NAME,
                reason,
            });
        }
        if nacked > 0 {
            return Err(BrokerError::Full {
                backend: NAME,
                reason: format!(
                    "the broker refused {nacked} of {} messages (queue at its x-max-length-bytes)",
                    items.len()
                ),
                retry_after: Some(Duration::from_secs(1)),
            });
        }
        if retry.is_empty() {
            return Ok(());
        }
        let wait = Duration::from_millis(50).saturating_mul(1 << round.min(6));
        round += 1;
        if Instant::now() + wait > deadline {
            return Err(last_error.unwrap_or(BrokerError::Unavailable {
                backend: NAME,
                reason: "publish not confirmed in time".into(),
            }));
        }
        tracing::warn!(
            unconfirmed = retry.len(),
            "publish interrupted: publishing again"
        );
        tokio::time::sleep(wait).await;
        pending = retry;
    }
}

/// Polls every future once, then awaits each in order; outputs in order.
///
/// For lapin's publishes and acks, the first poll sends the frames, and what is awaited
/// afterwards only reports that they were written: so all of them are in flight together, and
/// each is polled again only when its turn comes (a join would poll every pending one on each
/// wake).
pub(crate) async fn in_flight<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let early: Vec<Option<F::Output>> = std::future::poll_fn(|cx| {
        Poll::Ready(
            futs.iter_mut()
                .map(|f| match f.as_mut().poll(cx) {
                    Poll::Ready(v) => Some(v),
                    Poll::Pending => None,
                })
                .collect(),
        )
    })
    .await;
    let mut out = Vec::with_capacity(early.len());
    for (f, e) in futs.into_iter().zip(early) {
        out.push(match e {
            Some(v) => v,
            None => f.await,
        });
    }
    out
}
