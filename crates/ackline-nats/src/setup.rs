//! The streams and the consumer a queue needs, created or checked when a handle opens.
//!
//! | object | settings |
//! | --- | --- |
//! | stream `<queue>` | subject `ackline.<queue>`, file storage, **work-queue retention**, `discard: new`, `max_bytes` from the options (else unlimited), `duplicate_window`, `replicas`; no age or count limit |
//! | consumer `ackline` on it | durable pull consumer, explicit acks, `deliver: all`, `ack_wait`, `max_ack_pending`, **`max_deliver: -1`** |
//! | stream `<queue>-dlq` | subject `ackline.<queue>.dlq`, file storage, limits retention with no limit (entries stay until replayed or purged), `duplicate_window`, `replicas` |
//!
//! Invariants:
//! - Nothing is ever removed from these streams by the server on its own: no age, count or
//!   per-subject limit is set; the only byte limit refuses publishes (`discard: new`); and the
//!   consumer's `max_deliver` is unlimited, because JetStream at `MaxDeliver` stops delivering
//!   a message and leaves it in place without telling anyone but an advisory. ackline counts
//!   attempts (the same delivery count) and dead-letters at `max_attempts` itself.
//! - A stream that exists with a retention or storage ackline cannot use is refused (`Fatal`,
//!   naming the setting); settings the server can change (`max_bytes`, duplicate window, the
//!   consumer's `ack_wait`, `max_ack_pending`, `max_deliver`) are brought to the options'
//!   values, with a log line; a `publish_only` handle leaves an existing consumer's
//!   `ack_wait` and `max_ack_pending` as the workers set them.

use std::time::Duration;

use ackline_broker::BrokerError;
use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};

use crate::Inner;
use crate::connection::{fatal, unavailable};

/// The durable consumer's name.
pub const CONSUMER: &str = "ackline";

/// Classifies a JetStream API failure: the server's "temporarily unavailable" (503) or no
/// API error at all (timeout, no connection, no responders) is `Unavailable`; any other API
/// error is `Fatal` (retrying does not change the answer).
fn api(inner: &Inner, what: &str, text: String, code: Option<usize>) -> BrokerError {
    let text = format!("{what}: {text}");
    match code {
        Some(503) | None => unavailable(&inner.url, text),
        Some(_) => fatal(&inner.url, text),
    }
}

macro_rules! js_code {
    ($e:expr, $kind:path) => {{
        use $kind as K;
        match $e.kind() {
            K::JetStream(j) => Some(j.code()),
            _ => None,
        }
    }};
}

fn main_config(inner: &Inner) -> stream::Config {
    stream::Config {
        name: inner.queue.clone(),
        subjects: vec![inner.subject.clone()],
        retention: RetentionPolicy::WorkQueue,
        storage: StorageType::File,
        discard: DiscardPolicy::New,
        max_bytes: inner
            .opts
            .max_bytes
            .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
        max_messages: -1,
        max_messages_per_subject: -1,
        max_age: Duration::ZERO,
        duplicate_window: inner.opts.duplicate_window,
        num_replicas: inner.opts.replicas.max(1),
        description: Some(format!("ackline queue {}", inner.queue)),
        ..Default::default()
    }
}

fn dlq_config(inner: &Inner) -> stream::Config {
    stream::Config {
        name: inner.dlq.clone(),
        subjects: vec![inner.dlq_subject.clone()],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        discard: DiscardPolicy::New,
        max_bytes: -1,
        max_messages: -1,
        max_messages_per_subject: -1,
        max_age: Duration::ZERO,
        duplicate_window: inner.opts.duplicate_window,
        num_replicas: inner.opts.replicas.max(1),
        description: Some(format!("ackline dead letters of {}", inner.queue)),
        ..Default::default()
    }
}

fn consumer_config(inner: &Inner) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(CONSUMER.to_owned()),
        name: Some(CONSUMER.to_owned()),
        description: Some("ackline workers".to_owned()),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: inner.opts.ack_wait,
        max_deliver: -1,
        max_ack_pending: inner.opts.max_ack_pending.max(1),
        ..Default::default()
    }
}

/// Creates a stream, or checks and adjusts one that exists.
async fn ensure_stream(inner: &Inner, want: stream::Config) -> Result<(), BrokerError> {
    let name = want.name.clone();
    let mut s = inner
        .js
        .get_or_create_stream(want.clone())
        .await
        .map_err(|e| {
            let code = js_code!(e, async_nats::jetstream::context::CreateStreamErrorKind);
            api(
                inner,
                &format!("creating stream {name:?}"),
                e.to_string(),
                code,
            )
        })?;
    let have = s
        .info()
        .await
        .map_err(|e| {
            api(
                inner,
                &format!("reading stream {name:?}"),
                e.to_string(),
                None,
            )
        })?
        .config
        .clone();
    if have.retention != want.retention || have.storage != want.storage {
        return Err(fatal(
            &inner.url,
            format!(
                "stream {name:?} exists with retention {:?} and storage {:?}; ackline needs \
                 {:?} and {:?}: drain and delete it (nats stream rm {name}) or use another queue",
                have.retention, have.storage, want.retention, want.storage
            ),
        ));
    }
    if !have.subjects.iter().any(|s| s == &want.subjects[0]) {
        return Err(fatal(
            &inner.url,
            format!(
                "stream {name:?} exists without the subject {:?} (it has {:?})",
                want.subjects[0], have.subjects
            ),
        ));
    }
    let drift = have.max_bytes != want.max_bytes
        || have.discard != want.discard
        || have.duplicate_window != want.duplicate_window
        || have.max_age != want.max_age
        || have.max_messages != want.max_messages
        || have.max_messages_per_subject != want.max_messages_per_subject;
    if drift {
        let update = stream::Config {
            subjects: have.subjects.clone(),
            num_replicas: have.num_replicas,
            ..want
        };
        tracing::info!(
            stream = %name,
            "updating stream limits to ackline's options (max_bytes {}, duplicate window {:?}, no age or count limit)",
            update.max_bytes,
            update.duplicate_window
        );
        inner.js.update_stream(update).await.map_err(|e| {
            api(
                inner,
                &format!("updating stream {name:?}"),
                e.to_string(),
                Some(0),
            )
        })?;
    }
    Ok(())
}

/// Creates (or checks) the streams and the consumer.
pub(crate) async fn create(inner: &Inner) -> Result<(), BrokerError> {
    // The dead-letter stream first: nothing may be dead-lettered before it exists.
    ensure_stream(inner, dlq_config(inner)).await?;
    ensure_stream(inner, main_config(inner)).await?;
    ensure_consumer(inner).await
}

async fn ensure_consumer(inner: &Inner) -> Result<(), BrokerError> {
    let mut want = consumer_config(inner);
    let stream = inner
        .js
        .get_stream_no_info(&inner.queue)
        .await
        .map_err(|e| {
            let code = js_code!(e, async_nats::jetstream::context::GetStreamErrorKind);
            api(inner, "opening the stream", e.to_string(), code)
        })?;
    let existing = stream.consumer_info(CONSUMER).await;
    let have = match existing {
        Ok(info) => Some(info.config),
        Err(e)
            if matches!(
                e.kind(),
                async_nats::jetstream::context::ConsumerInfoErrorKind::NotFound
            ) =>
        {
            None
        }
        Err(e) => {
            let code = js_code!(e, async_nats::jetstream::context::ConsumerInfoErrorKind);
            return Err(api(inner, "reading the consumer", e.to_string(), code));
        }
    };
    let needed = match &have {
        None => true,
        Some(h) => {
            if h.ack_policy != AckPolicy::Explicit || !h.filter_subject.is_empty() {
                return Err(fatal(
                    &inner.url,
                    format!(
                        "consumer {CONSUMER:?} on stream {:?} exists with ack policy {:?} and \
                         filter {:?}; ackline needs explicit acks and no filter: delete it",
                        inner.queue, h.ack_policy, h.filter_subject
                    ),
                ));
            }
            if inner.opts.publish_only {
                // A publisher keeps the workers' settings; only an unsafe limit is fixed.
                want.ack_wait = h.ack_wait;
                want.max_ack_pending = h.max_ack_pending;
            }
            h.ack_wait != want.ack_wait
                || h.max_ack_pending != want.max_ack_pending
                || h.max_deliver > 0
        }
    };
    if needed {
        if have.is_some() {
            tracing::info!(
                stream = %inner.queue,
                ack_wait = ?want.ack_wait,
                max_ack_pending = want.max_ack_pending,
                "updating the consumer to ackline's options (max_deliver unlimited)"
            );
        }
        stream.create_consumer(want).await.map_err(|e| {
            let code = js_code!(e, async_nats::jetstream::stream::ConsumerErrorKind);
            api(inner, "creating the consumer", e.to_string(), code)
        })?;
    }
    Ok(())
}

/// Checks that both streams exist, creating nothing.
pub(crate) async fn require(inner: &Inner) -> Result<(), BrokerError> {
    for name in [&inner.queue, &inner.dlq] {
        if let Err(e) = inner.js.get_stream(name).await {
            let code = js_code!(e, async_nats::jetstream::context::GetStreamErrorKind);
            let mut err = api(
                inner,
                &format!("opening stream {name:?}"),
                e.to_string(),
                code,
            );
            if let BrokerError::Fatal { reason, .. } = &mut err {
                reason.push_str(" (no such queue on this server?)");
            }
            return Err(err);
        }
    }
    Ok(())
}

/// Deletes both streams (their consumers go with them). A stream already gone is fine.
pub(crate) async fn delete(inner: &Inner) -> Result<(), BrokerError> {
    for name in [&inner.queue, &inner.dlq] {
        if let Err(e) = inner.js.delete_stream(name).await {
            let code = js_code!(e, async_nats::jetstream::context::DeleteStreamErrorKind);
            if code == Some(404) {
                continue;
            }
            return Err(api(
                inner,
                &format!("deleting stream {name:?}"),
                e.to_string(),
                None,
            ));
        }
    }
    Ok(())
}

/// `(pending, in_flight)`: undelivered + ack-pending, and ack-pending, from the consumer; the
/// stream's message count when there is no consumer yet.
pub(crate) async fn depth(inner: &Inner) -> Result<(u64, u64), BrokerError> {
    let mut stream = inner
        .js
        .get_stream(&inner.queue)
        .await
        .map_err(|e| api(inner, "opening the stream", e.to_string(), None))?;
    match stream.consumer_info(CONSUMER).await {
        Ok(c) => {
            let ack_pending = c.num_ack_pending as u64;
            Ok((c.num_pending + ack_pending, ack_pending))
        }
        Err(e)
            if matches!(
                e.kind(),
                async_nats::jetstream::context::ConsumerInfoErrorKind::NotFound
            ) =>
        {
            let info = stream
                .info()
                .await
                .map_err(|e| api(inner, "reading the stream", e.to_string(), None))?;
            Ok((info.state.messages, 0))
        }
        Err(e) => Err(api(inner, "reading the consumer", e.to_string(), None)),
    }
}

/// Entries in the dead-letter stream.
pub(crate) async fn dlq_depth(inner: &Inner) -> Result<u64, BrokerError> {
    let mut s = inner
        .js
        .get_stream(&inner.dlq)
        .await
        .map_err(|e| api(inner, "opening the dead-letter stream", e.to_string(), None))?;
    let info = s
        .info()
        .await
        .map_err(|e| api(inner, "reading the dead-letter stream", e.to_string(), None))?;
    Ok(info.state.messages)
}
