//! Publishing with backoff, shared by the inputs.
//!
//! Invariant: a batch is either confirmed by the broker ([`Sent::Done`]), abandoned because
//! the stop signal came while it was being retried ([`Sent::Stopped`]: the caller must not
//! advance its position), or ends in an error naming the input and the first line not known
//! to be published. `Unavailable` and `Full` are retried forever; nothing is dropped.

use std::sync::Arc;
use std::time::Duration;

use ackline_broker::{Broker, BrokerError, Message};
use tokio::sync::watch;

use crate::{At, InputCounters, InputError, RetryConfig};

/// How a publish ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Confirmed durable.
    Done,
    /// The stop signal came during a retry wait; not known to be published.
    Stopped,
}

/// Whether the stop signal has been given (a dropped sender counts as given).
pub(crate) fn stopped(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Sleeps `d` unless the stop signal comes first; returns whether it came.
pub(crate) async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if stopped(stop) {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stop.changed() => {}
    }
    stopped(stop)
}

/// Publishes `msgs` until confirmed; `Err` only with `Invalid` or `Fatal`.
async fn retrying<B: Broker>(
    broker: &B,
    msgs: &[Message],
    retry: &RetryConfig,
    stop: &mut watch::Receiver<bool>,
    counters: &InputCounters,
) -> Result<Sent, BrokerError> {
    let mut delay = retry.initial;
    loop {
        match broker.publish_borrowed(msgs).await {
            Ok(()) => return Ok(Sent::Done),
            Err(e @ (BrokerError::Unavailable { .. } | BrokerError::Full { .. })) => {
                counters.retry();
                let wait = match &e {
                    BrokerError::Full {
                        retry_after: Some(d),
                        ..
                    } => (*d).clamp(delay, retry.max.max(delay)),
                    _ => delay,
                };
                tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "publish refused for now; retrying");
                if sleep_or_stop(wait, stop).await {
                    return Ok(Sent::Stopped);
                }
                delay = (delay * 2).min(retry.max);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Publishes a batch whose message `i` starts at `ats[i]` of `input`. When the queue refuses
/// the batch as invalid, its messages are published one by one so the error names the one
/// refused (those before it are published; the caller's position does not advance, so they
/// are published again, with the same ids, on the next run).
pub(crate) async fn publish<B: Broker>(
    broker: &B,
    input: &str,
    msgs: Vec<Message>,
    ats: &[At],
    retry: &RetryConfig,
    stop: &mut watch::Receiver<bool>,
    counters: &InputCounters,
) -> Result<Sent, InputError> {
    let first = ats.first().copied().unwrap_or(At::Offset(0));
    let err = match retrying(broker, &msgs, retry, stop, counters).await {
        Ok(s) => return Ok(s),
        Err(e) => e,
    };
    let fail = |at: At, e: BrokerError| match e {
        BrokerError::Invalid { reason, .. } => InputError::Refused {
            input: input.to_string(),
            at,
            reason,
        },
        other => InputError::Publish {
            input: input.to_string(),
            at,
            source: other,
        },
    };
    if !matches!(err, BrokerError::Invalid { .. }) || msgs.len() < 2 {
        return Err(fail(first, err));
    }
    for (i, m) in msgs.iter().enumerate() {
        let at = ats.get(i).copied().unwrap_or(first);
        match retrying(broker, std::slice::from_ref(m), retry, stop, counters).await {
            Ok(Sent::Done) => {}
            Ok(Sent::Stopped) => return Ok(Sent::Stopped),
            Err(e) => return Err(fail(at, e)),
        }
    }
    Ok(Sent::Done)
}

/// [`publish`] with everything owned, so several can be in flight at once.
pub(crate) async fn publish_owned<B: Broker>(
    broker: Arc<B>,
    input: String,
    msgs: Vec<Message>,
    ats: Vec<At>,
    retry: RetryConfig,
    mut stop: watch::Receiver<bool>,
    counters: Arc<InputCounters>,
) -> Result<Sent, InputError> {
    publish(&*broker, &input, msgs, &ats, &retry, &mut stop, &counters).await
}
