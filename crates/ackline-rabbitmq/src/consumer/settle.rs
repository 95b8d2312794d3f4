//! `settle`: each settlement in two steps, copies first, acks second.
//!
//! Under the lock, every item is checked against what this consumer issued (fencing: token,
//! key, attempt) and planned: an `Extend` is applied at once; an `Ack` needs no copy; a
//! `Nack` needs a confirmed copy in a delay queue (or the dead-letter queue at
//! `max_attempts`); a `Reject` a confirmed copy in the dead-letter queue. Then, without the
//! lock, every copy of the batch is published and confirmed, and only then are the originals
//! acked.
//!
//! Invariants:
//! - An original is acked only after every copy of its batch is confirmed; if the copies
//!   fail, nothing is acked, the deliveries stay held (their `settling` mark undone) and the
//!   call fails, so the caller may settle them again.
//! - A delivery is marked `settling` before any I/O: a concurrent settlement of it is
//!   `AlreadySettled`, and neither the reaper nor a channel loss takes it meanwhile.
//! - An ack that finds the channel dead (lapin's `Ok(false)`, or an error) is `Stale`, never
//!   success: RabbitMQ redelivers the original (a copy made stays; stores deduplicate by id).

use ackline_broker::fence;
use ackline_broker::{BrokerError, SettleError, Settlement, Tag};
use lapin::Acker;
use lapin::options::BasicAckOptions;
use tokio::time::Instant;

use super::divert::Counted;
use super::state::Shared;
use crate::publish::{Outgoing, in_flight};

/// What a settlement needs on the broker.
enum Plan {
    /// Only the ack.
    Ack,
    /// A confirmed copy, then the ack.
    Copy(Box<Outgoing>, Counted),
}

/// A settlement to carry out on the broker.
struct Step {
    /// Its item's index in the call.
    index: usize,
    key: u64,
    acker: Acker,
    attempt: u32,
    plan: Plan,
}

/// Settles `items`: one result per item, in order (see the module doc).
pub(super) async fn settle(
    sh: &Shared,
    items: Vec<(Tag, Settlement)>,
) -> Result<Vec<Result<(), SettleError>>, BrokerError> {
    let inner = &sh.inner;
    let n = items.len();
    let mut results: Vec<Option<Result<(), SettleError>>> = vec![None; n];
    let mut steps: Vec<Step> = Vec::new();
    {
        let mut st = sh.state.lock();
        let now = Instant::now();
        for (i, (tag, how)) in items.iter().enumerate() {
            let st = &mut *st;
            let h = match fence::admit(&mut st.held, &st.done, tag, &sh.token, false) {
                Ok(h) => h,
                Err(e) => {
                    results[i] = Some(Err(e));
                    continue;
                }
            };
            let plan = match how {
                Settlement::Extend { lease } => {
                    h.deadline = now + *lease;
                    results[i] = Some(Ok(()));
                    continue;
                }
                Settlement::Ack => Plan::Ack,
                Settlement::Nack { delay, error } => {
                    if h.attempt >= inner.opts.max_attempts {
                        Plan::Copy(
                            Box::new(inner.dead_letter_copy(
                                &h.env,
                                h.attempt,
                                ackline_broker::REASON_MAX_ATTEMPTS,
                                error,
                            )),
                            Counted::DeadLettered,
                        )
                    } else {
                        Plan::Copy(
                            Box::new(inner.retry_copy(&h.env, h.attempt, *delay, error)),
                            Counted::Nacked,
                        )
                    }
                }
                Settlement::Reject { reason } => {
                    let last = h.env.last_error.clone().unwrap_or_else(|| reason.clone());
                    Plan::Copy(
                        Box::new(inner.dead_letter_copy(&h.env, h.attempt, reason, &last)),
                        Counted::DeadLettered,
                    )
                }
            };
            h.settling = true;
            steps.push(Step {
                index: i,
                key: tag.key,
                acker: h.acker.clone(),
                attempt: h.attempt,
                plan,
            });
        }
    }
    // 1. Confirm every copy (delay queues are declared on first use).
    let copies: Vec<Outgoing> = steps
        .iter()
        .filter_map(|s| match &s.plan {
            Plan::Copy(o, _) => Some((**o).clone()),
            Plan::Ack => None,
        })
        .collect();
    if !copies.is_empty()
        && let Err(e) = inner.publish_copies(&copies).await
    {
        let mut st = sh.state.lock();
        for s in &steps {
            if let Some(h) = st.held.get_mut(&s.key) {
                h.settling = false;
            }
        }
        return Err(e);
    }
    // 2. Ack the originals.
    let acks = in_flight(
        steps
            .iter()
            .map(|s| s.acker.ack(BasicAckOptions::default()))
            .collect(),
    )
    .await;
    let mut st = sh.state.lock();
    let mut settled = 0;
    let (mut acked, mut nacked, mut dead) = (0, 0, 0);
    for (s, r) in steps.into_iter().zip(acks) {
        st.held.remove(&s.key);
        settled += 1;
        results[s.index] = Some(match r {
            Ok(true) => {
                st.done.settled(s.key);
                match s.plan {
                    Plan::Ack => acked += 1,
                    Plan::Copy(_, Counted::Nacked) => nacked += 1,
                    Plan::Copy(_, Counted::DeadLettered) => dead += 1,
                    Plan::Copy(_, Counted::Nothing) => {}
                }
                Ok(())
            }
            // The channel died: RabbitMQ redelivers the original (a copy made above stays;
            // the store is idempotent by id).
            Ok(false) | Err(_) => {
                let attempt = s.attempt;
                st.done.gone(s.key, attempt);
                Err(SettleError::Stale {
                    attempt,
                    current: attempt + 1,
                })
            }
        });
    }
    drop(st);
    let c = &inner.counters;
    c.in_flight_sub(settled);
    c.add(&c.acked, acked);
    c.add(&c.nacked, nacked);
    c.add(&c.dead_lettered, dead);
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or(Err(SettleError::Unknown)))
        .collect())
}
