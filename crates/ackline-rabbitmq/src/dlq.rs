//! ackline's dead-letter queue on RabbitMQ: the quorum queue `<queue>.dlq`.
//!
//! An entry is a copy of the message (payload, id, headers, enqueued time) with these headers:
//! `x-ackline-dlq-key` (the entry's stable key), `x-ackline-dlq-reason`, `x-ackline-last-error`,
//! `x-ackline-attempts` (deliveries it had), `x-ackline-first-failure` and
//! `x-ackline-last-failure` (Unix ms). The copy is published and CONFIRMED before the source
//! delivery is acked, so a message is never in neither queue (RabbitMQ's own dead-lettering is
//! at-most-once on classic queues and is not used for this).
//!
//! The main queue also dead-letters into this queue itself (RabbitMQ's at-least-once
//! dead-lettering: a message another producer gave a TTL, or a delivery limit a policy
//! lowered); such an entry has no ackline headers and its reason is read from
//! `x-first-death-reason`. The queue's own `x-delivery-limit` is out of reach, because every
//! scan below returns the entries it keeps, which RabbitMQ counts as returns (RabbitMQ 4's
//! default limit of 20 would drop them after 20 listings).
//!
//! Keys: `(unix ms << 22) | 22 random bits`, chosen when the entry is made and carried in its
//! header, so a key is stable for the entry's life and roughly follows dead-letter time.
//!
//! Operations scan the queue: a dedicated channel consumes (manual ack, no prefetch limit) as
//! many entries as `queue.declare(passive)` reports ready, then
//! - list/get keep them all (the channel is closed and RabbitMQ requeues them; entries are
//!   sorted by key, so requeue order does not matter);
//! - replay publishes each selected entry to the main queue with attempts reset (a fresh copy:
//!   same id, headers, payload and enqueued time; no attempt header), CONFIRMED, then acks
//!   its dead-letter copy;
//! - purge acks the selected entries.
//!
//! Why a scan of a queue rather than a stream: replay and purge must remove single entries,
//! which a RabbitMQ stream cannot do (it only truncates by retention), and a queue keeps the
//! move-before-ack rule simple. The cost is that every operation reads the whole dead-letter
//! queue into memory (fine for operator-sized queues; document a purge policy for huge ones).
//!
//! Invariants:
//! - A replayed entry leaves the dead-letter queue only after its copy in the main queue is
//!   confirmed; if the ack of the entry is lost, the entry stays and a second replay
//!   republishes the same id (stored once: stores are idempotent by id).
//! - Operations are serialised per broker handle. An operation running in another process at
//!   the same time sees the entries this one holds as absent (they return when it ends).

use std::time::Duration;

use ackline_broker::{BrokerError, DeadLetter, DlqSelector};
use lapin::options::{BasicAckOptions, BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use tokio::time::Instant;

use crate::Inner;
use crate::attempts::{Envelope, FIRST_FAILURE, LAST_ERROR, get_string, get_u64, int, long_string};
use crate::connection::random_u64;
use crate::publish::Outgoing;

pub(crate) const KEY: &str = "x-ackline-dlq-key";
pub(crate) const REASON: &str = "x-ackline-dlq-reason";
pub(crate) const ATTEMPTS: &str = "x-ackline-attempts";
pub(crate) const LAST_FAILURE: &str = "x-ackline-last-failure";

/// A new entry key.
pub(crate) fn new_key(now_ms: u64) -> u64 {
    (now_ms << 22) | (random_u64() & ((1 << 22) - 1))
}

/// The dead-letter copy of `env`.
pub(crate) fn entry(
    dlq: &str,
    env: &Envelope,
    attempts: u32,
    reason: &str,
    last_error: &str,
    now_ms: u64,
) -> Outgoing {
    let mut copy = env.clone();
    copy.ended = 0;
    copy.not_before = None;
    copy.last_error = None;
    copy.first_failure = None;
    copy.extra.retain(|(k, _)| !k.starts_with("x-ackline-"));
    let mut props = copy.properties();
    let mut t = props.headers().clone().unwrap_or_default();
    t.insert(KEY.into(), int(new_key(now_ms)));
    t.insert(REASON.into(), long_string(reason));
    t.insert(LAST_ERROR.into(), long_string(last_error));
    t.insert(ATTEMPTS.into(), int(u64::from(attempts)));
    t.insert(
        FIRST_FAILURE.into(),
        int(env.first_failure.unwrap_or(now_ms)),
    );
    t.insert(LAST_FAILURE.into(), int(now_ms));
    props = props.with_headers(t);
    Outgoing {
        routing_key: dlq.to_owned(),
        props,
        payload: copy.payload,
        declare_delay: None,
    }
}

/// Reads an entry. Entries ackline did not write get a key derived from their content.
fn decode(d: &lapin::message::Delivery) -> DeadLetter {
    let empty = FieldTable::default();
    let t = d.properties.headers().as_ref().unwrap_or(&empty);
    let env = Envelope::decode(&d.properties, d.data.clone())
        .unwrap_or_else(|| Envelope::new(String::new(), Vec::new(), d.data.clone()));
    let key = get_u64(t, KEY).unwrap_or_else(|| {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut h = DefaultHasher::new();
        env.id.hash(&mut h);
        d.data.hash(&mut h);
        h.finish() >> 1
    });
    DeadLetter {
        key,
        id: env.id,
        headers: env.headers,
        payload: env.payload,
        enqueued_at: env.enqueued_at,
        attempts: get_u64(t, ATTEMPTS)
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(0),
        first_failure: get_u64(t, FIRST_FAILURE).unwrap_or(0),
        last_failure: get_u64(t, LAST_FAILURE).unwrap_or(0),
        // An entry RabbitMQ dead-lettered itself (from the main queue: a delivery limit, a TTL
        // another producer set) has its reason in `x-first-death-reason`.
        reason: get_string(t, REASON)
            .or_else(|| {
                get_string(t, "x-first-death-reason")
                    .map(|r| format!("dead-lettered by RabbitMQ: {r}"))
            })
            .unwrap_or_default(),
        last_error: get_string(t, LAST_ERROR).unwrap_or_default(),
    }
}

/// Whether `sel` selects `d`.
pub(crate) fn selects(sel: &DlqSelector, d: &DeadLetter) -> bool {
    match sel {
        DlqSelector::All => true,
        DlqSelector::Keys(k) => k.contains(&d.key),
        DlqSelector::Ids(ids) => ids.contains(&d.id),
        DlqSelector::Matching(text) => d.reason.contains(text) || d.last_error.contains(text),
    }
}

/// What a scan does with an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Keep,
    Replay,
    Purge,
}

/// Scans the dead-letter queue (see the module doc); returns every entry seen and how many
/// were replayed or purged.
pub(crate) async fn scan(
    inner: &Inner,
    mut decide: impl FnMut(&DeadLetter) -> Action,
) -> Result<(Vec<DeadLetter>, usize), BrokerError> {
    let _one_at_a_time = inner.dlq_lock.lock().await;
    let deadline = Instant::now() + inner.opts.publish_timeout;
    let conn = &inner.conn;
    let ch = conn.channel(Some(deadline)).await?;
    let ready = depth(inner, &ch).await?;
    let mut seen = Vec::new();
    if ready == 0 {
        let _ = ch.close(200, "dlq scan done".into()).await;
        return Ok((seen, 0));
    }
    let mut consumer = ch
        .basic_consume(
            inner.dlq.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| conn.error("reading the dead-letter queue", &e))?;
    let mut deliveries = Vec::with_capacity(ready);
    loop {
        // Until the reported depth arrived, then a short tail for entries added meanwhile.
        let idle = if deliveries.len() < ready {
            Duration::from_secs(2)
        } else {
            Duration::from_millis(50)
        };
        let next = std::future::poll_fn(|cx| {
            futures_core::Stream::poll_next(std::pin::Pin::new(&mut consumer), cx)
        });
        match tokio::time::timeout(idle, next).await {
            Ok(Some(Ok(d))) => deliveries.push(d),
            Ok(Some(Err(e))) => return Err(conn.error("reading the dead-letter queue", &e)),
            // Fewer than reported (another reader took some), or the tail is quiet.
            Ok(None) | Err(_) => break,
        }
    }
    let mut replays = Vec::new();
    let mut removals = Vec::new();
    for d in &deliveries {
        let dl = decode(d);
        match decide(&dl) {
            Action::Keep => {}
            Action::Replay => {
                // An entry without an id (another producer's message, dead-lettered by
                // RabbitMQ) is adopted: the replayed copy gets a new id.
                let (mut env, _) = Envelope::decode_or_adopt(&d.properties, d.data.clone());
                env.ended = 0;
                env.last_error = None;
                env.first_failure = None;
                env.not_before = None;
                env.extra.retain(|(k, _)| !k.starts_with("x-ackline-"));
                replays.push(Outgoing {
                    routing_key: inner.queue.clone(),
                    props: env.properties(),
                    payload: env.payload,
                    declare_delay: None,
                });
                removals.push(d.acker.clone());
            }
            Action::Purge => removals.push(d.acker.clone()),
        }
        seen.push(dl);
    }
    // Replayed copies are confirmed before any entry is removed.
    inner.publish_copies(&replays).await?;
    let mut removed = 0;
    for a in &removals {
        if matches!(a.ack(BasicAckOptions::default()).await, Ok(true)) {
            removed += 1;
        }
    }
    // Close-ok means the acks above were processed before the rest is requeued.
    let closed = ch.close(200, "dlq scan done".into()).await;
    // The kept entries return to the queue asynchronously: wait (bounded) until they are
    // ready again, so the next operation's depth counts them.
    let kept = deliveries.len() - removals.len();
    let until = Instant::now() + Duration::from_secs(5);
    while kept > 0 && Instant::now() < until {
        let ch = conn.channel(Some(until)).await?;
        let now_ready = depth(inner, &ch).await?;
        let _ = ch.close(200, "dlq depth".into()).await;
        if now_ready >= kept {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if removed < removals.len() || closed.is_err() {
        return Err(BrokerError::Unavailable {
            backend: crate::connection::NAME,
            reason: format!(
                "dead-letter channel lost: {} of {} selected entries may remain \
                 (replayed ones are in the main queue; a repeat is safe, ids are idempotent)",
                removals.len() - removed.min(removals.len()),
                removals.len()
            ),
        });
    }
    Ok((seen, removed))
}

/// Ready entries in the dead-letter queue.
async fn depth(inner: &Inner, ch: &lapin::Channel) -> Result<usize, BrokerError> {
    Ok(ch
        .queue_declare(
            inner.dlq.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| {
            inner
                .conn
                .error("reading the dead-letter queue's depth", &e)
        })?
        .message_count() as usize)
}
