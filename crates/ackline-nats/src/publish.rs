//! Confirmed publishing: a publish returns only when JetStream answered every message with a
//! PubAck (the message is stored in the stream).
//!
//! All of a batch's messages are sent before any PubAck is awaited (async-nats bounds the
//! PubAcks in flight and waits for room), and the PubAcks are awaited together. Each message
//! carries `Nats-Msg-Id`, so a message whose PubAck was lost (timeout, reconnection) is
//! published again under the same id until `publish_timeout`: inside the stream's duplicate
//! window the server answers the repeat with `duplicate: true` and stores nothing; outside it a
//! duplicate with the same ackline id may be stored, which the stores absorb (idempotent by id).
//!
//! A request the client wrote while the server was dying can be gone with the old connection,
//! and its PubAck never comes: when the client reconnects during a round, the round stops
//! waiting and publishes every message still unconfirmed again at once, rather than after each
//! one's request timeout.
//!
//! Invariants:
//! - `Ok(())` means every message of the batch has a PubAck (or a duplicate's PubAck: it is
//!   already in the stream).
//! - A call returns within about `publish_timeout` (plus one send), whatever the server does:
//!   the PubAcks of a round are awaited concurrently, under the call's deadline, never one
//!   request timeout after another.
//! - A refusal for the stream's byte or message limit (`discard: new`) is `BrokerError::Full`,
//!   never a silent drop; a message too large for the server is `Invalid`.
//! - No confirmed message is withdrawn.

use std::time::Duration;

use ackline_broker::BrokerError;
use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;

use crate::Inner;
use crate::connection::{NAME, unavailable};

/// One message to publish.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

enum Failure {
    Retry(String),
    Full(String),
    Invalid(String),
}

/// How a PubAck's error text reads (2.9 names the limit in the description).
fn classify(kind: PublishErrorKind, text: String) -> Failure {
    match kind {
        PublishErrorKind::MaxPayloadExceeded => Failure::Invalid(text),
        PublishErrorKind::Other
            if text.contains("maximum bytes exceeded")
                || text.contains("maximum messages exceeded")
                || text.contains("resource limits exceeded")
                || text.contains("insufficient resources") =>
        {
            Failure::Full(text)
        }
        PublishErrorKind::Other if text.contains("message size exceeds") => Failure::Invalid(text),
        // Timeouts, a broken connection, no responders while JetStream restarts, ...
        _ => Failure::Retry(text),
    }
}

/// Publishes `items` and waits for every PubAck (see the module doc).
pub(crate) async fn publish_confirmed(
    inner: &Inner,
    items: &[Outgoing],
) -> Result<(), BrokerError> {
    if items.is_empty() {
        return Ok(());
    }
    let deadline = Instant::now() + inner.opts.publish_timeout;
    let mut pending: Vec<usize> = (0..items.len()).collect();
    let mut round = 0u32;
    let mut reconnected = inner.reconnected.clone();
    loop {
        // A reconnection from here on may have lost what this round sends.
        reconnected.mark_unchanged();
        let mut acks = Vec::with_capacity(pending.len());
        let mut retry = Vec::new();
        let mut last_error = None;
        for (n, &i) in pending.iter().enumerate() {
            if Instant::now() >= deadline {
                // A send waits while the client reconnects: stop sending at the deadline.
                last_error = Some(format!("not sent within {:?}", inner.opts.publish_timeout));
                retry.extend_from_slice(&pending[n..]);
                break;
            }
            let it = &items[i];
            let msg = PublishMessage::build()
                .payload(it.payload.clone())
                .headers(it.headers.clone());
            match inner.js.send_publish(it.subject.clone(), msg).await {
                Ok(ack) => acks.push((i, ack)),
                Err(e) => match classify(e.kind(), e.to_string()) {
                    Failure::Invalid(t) => return Err(invalid(inner, t)),
                    Failure::Full(t) => return Err(full(inner, t)),
                    Failure::Retry(t) => {
                        last_error = Some(t);
                        retry.push(i);
                    }
                },
            }
        }
        let mut refused = None;
        let sent: Vec<usize> = acks.iter().map(|(i, _)| *i).collect();
        let mut answered = vec![false; items.len()];
        let mut answers: FuturesUnordered<_> = acks
            .into_iter()
            .map(|(i, ack)| async move { (i, ack.await) })
            .collect();
        // Created once per round, not per answer: a timer and a watch wait per PubAck cost.
        let expired = tokio::time::sleep_until(deadline);
        let lost = async {
            if reconnected.changed().await.is_err() {
                // The client is gone with its callback: no reconnection will be seen.
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(expired, lost);
        loop {
            tokio::select! {
                answer = answers.next() => {
                    let Some((i, answer)) = answer else { break };
                    answered[i] = true;
                    if let Err(e) = answer {
                        match classify(e.kind(), error_text(&e)) {
                            Failure::Invalid(t) => return Err(invalid(inner, t)),
                            Failure::Full(t) => refused = Some(t),
                            Failure::Retry(t) => {
                                last_error = Some(t);
                                retry.push(i);
                            }
                        }
                    }
                }
                () = &mut lost => {
                    last_error = Some("the connection was lost and re-established".to_owned());
                    break;
                }
                () = &mut expired => {
                    last_error = Some(format!("no PubAck within {:?}", inner.opts.publish_timeout));
                    break;
                }
            }
        }
        // Dropped unanswered futures hand their permits to async-nats' acker task.
        drop(answers);
        retry.extend(sent.into_iter().filter(|&i| !answered[i]));
        retry.sort_unstable();
        if let Some(t) = refused {
            return Err(full(inner, t));
        }
        if retry.is_empty() {
            return Ok(());
        }
        let wait = Duration::from_millis(50).saturating_mul(1 << round.min(6));
        round += 1;
        if Instant::now() + wait > deadline {
            return Err(unavailable(
                &inner.url,
                format!(
                    "{} of {} messages not confirmed within {:?}: {}",
                    retry.len(),
                    items.len(),
                    inner.opts.publish_timeout,
                    last_error.unwrap_or_default()
                ),
            ));
        }
        tracing::warn!(
            unconfirmed = retry.len(),
            error = %inner.url.redact(last_error.as_deref().unwrap_or("")),
            "publish not confirmed: publishing again (same Nats-Msg-Id)"
        );
        tokio::time::sleep(wait).await;
        pending = retry;
    }
}

/// The error's text with its source (the server's description).
fn error_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cur = s.source();
    }
    text
}

fn full(inner: &Inner, t: String) -> BrokerError {
    BrokerError::Full {
        backend: NAME,
        reason: format!(
            "stream {:?} refused the message (at its max_bytes): {}",
            inner.queue,
            inner.url.redact(&t)
        ),
        retry_after: Some(Duration::from_secs(1)),
    }
}

fn invalid(inner: &Inner, t: String) -> BrokerError {
    BrokerError::Invalid {
        backend: NAME,
        reason: inner.url.redact(&t),
    }
}
