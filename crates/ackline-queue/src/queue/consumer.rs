//! Consumers: leasing deliveries, settling them, renewing their leases.
//!
//! Invariants:
//! - A delivery is handed out only after the record counting its attempt is durable, so a
//!   crash never lets an attempt number go backwards or repeat.
//! - A message past `max_attempts` deliveries is dead-lettered with
//!   [`REASON_MAX_ATTEMPTS`] instead of being delivered again (at pick time, at a nack, or when
//!   its lease runs out).
//! - Only the current delivery may settle a message: a tag of an earlier attempt is
//!   [`SettleError::Stale`], a settled one [`SettleError::AlreadySettled`], one that never
//!   existed (attempt 0, a future attempt, a lost position) [`SettleError::Unknown`]. A refused
//!   settlement changes nothing.
//! - Settlements take effect in memory at once (no other consumer can get the message) and are
//!   durable when their `Commit` resolves; if the process dies before that, the message is
//!   delivered again (at-least-once), never lost.
//! - Extending a lease writes nothing; a lease that ran out but whose message was not yet
//!   redelivered may still be taken back by its delivery.
//! - Dropping a consumer releases its unsettled deliveries at once (attempts kept).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Queue;
use super::shared::{Inner, Shared};
use super::types::{Delivery, REASON_MAX_ATTEMPTS, Settlement, Tag};
use super::writer::Commit;
use crate::error::{QueueError, SettleError};
use crate::record::runs;
use crate::state::{Loc, SlotState, State};

/// A delivery leased by `pick`, whose message the read path loads next.
#[derive(Debug, Clone, Copy)]
pub(super) struct Picked {
    pub(super) seq: u64,
    /// The attempt this delivery is.
    pub(super) attempt: u32,
    /// Where the message's publish record is.
    pub(super) loc: Loc,
    /// When the lease ends, Unix ms.
    pub(super) lease_until: u64,
}

/// Takes deliveries from a queue and settles them. Dropping it releases its unsettled
/// deliveries at once (they become deliverable again, attempts kept).
pub struct Consumer {
    queue: Queue,
    id: u64,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.queue.shared.name)
            .field("id", &self.id)
            .finish()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let s = &self.queue.shared;
        let mut inner = s.inner.lock();
        let held = inner.st.leased_by(self.id);
        for seq in &held {
            inner.st.release(*seq);
        }
        if !held.is_empty() {
            s.wake_receivers(&inner);
        }
    }
}

impl Consumer {
    pub(super) fn new(queue: Queue) -> Consumer {
        let id = queue.shared.next_consumer.fetch_add(1, Ordering::Relaxed);
        Consumer { queue, id }
    }

    /// Takes up to `max` deliveries, each leased for `lease`, waiting up to `wait` for the
    /// first. Returns an empty batch if none came in time.
    pub fn receive(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let s = &self.queue.shared;
        let deadline = Instant::now() + wait;
        let mut inner = s.inner.lock();
        loop {
            let (picked, commit) = s.pick(&mut inner, self.id, max, lease)?;
            if !picked.is_empty() {
                s.wake(&mut inner, false);
                drop(inner);
                commit.wait()?;
                return s.load(picked);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let mut timeout = deadline - now;
            if let Some(t) = inner.st.next_timer() {
                let ms = t.saturating_sub(s.clock.now_ms()).max(1);
                timeout = timeout.min(Duration::from_millis(ms));
            }
            inner.receivers_waiting += 1;
            s.avail_cv.wait_for(&mut inner, timeout);
            inner.receivers_waiting -= 1;
        }
    }

    /// Takes up to `max` deliveries that are ready now, without waiting for new ones.
    pub fn try_receive(&self, max: usize, lease: Duration) -> Result<Vec<Delivery>, QueueError> {
        self.receive(max, lease, Duration::ZERO)
    }

    /// Acknowledges a delivery: the message leaves the queue.
    pub fn ack(&self, tag: Tag) -> Result<Commit, SettleError> {
        // The hot path of individual acks: no allocation, one lock.
        let s = &self.queue.shared;
        s.check_poisoned()?;
        let mut inner = s.inner.lock();
        s.check_tag(&inner.st, tag)?;
        inner.st.on_ack(tag.seq);
        inner.log.defer_acks([tag.seq]);
        let commit = s.commit_locked(&inner);
        s.wake(&mut inner, false);
        Ok(commit)
    }

    /// Fails a delivery: deliver it again no earlier than `delay` from now (or dead-letter it
    /// if it has had `max_attempts` deliveries). `error` is kept as its last error.
    pub fn nack(&self, tag: Tag, delay: Duration, error: &str) -> Result<Commit, SettleError> {
        self.settle_one(
            tag,
            Settlement::Nack {
                delay,
                error: error.to_string(),
            },
        )
    }

    /// Dead-letters a delivery now with `reason`.
    pub fn reject(&self, tag: Tag, reason: &str) -> Result<Commit, SettleError> {
        self.settle_one(
            tag,
            Settlement::Reject {
                reason: reason.to_string(),
            },
        )
    }

    /// Renews a delivery's lease to end `lease` from now. Not a settlement: the delivery stays
    /// current and must still be settled; nothing is written.
    pub fn extend(&self, tag: Tag, lease: Duration) -> Result<(), SettleError> {
        let s = &self.queue.shared;
        s.check_poisoned()?;
        let until = s.clock.deadline_ms(lease);
        let mut inner = s.inner.lock();
        s.check_tag(&inner.st, tag)?;
        if inner.st.state_of(tag.seq) == SlotState::Leased {
            inner.st.extend(tag.seq, until);
        } else {
            // Expired but not redelivered: this delivery is still the current one, so it may
            // take the lease back.
            inner.st.lease(tag.seq, self.id, until);
        }
        Ok(())
    }

    fn settle_one(&self, tag: Tag, how: Settlement) -> Result<Commit, SettleError> {
        let (mut results, commit) = self.settle(&[(tag, how)]);
        results.pop().unwrap_or(Ok(())).map(|()| commit)
    }

    /// Settles many deliveries in one step: one result per item, and one [`Commit`] for all.
    pub fn settle(&self, items: &[(Tag, Settlement)]) -> (Vec<Result<(), SettleError>>, Commit) {
        let s = &self.queue.shared;
        if let Err(e) = s.check_poisoned() {
            let err = SettleError::Queue(e);
            return (
                items.iter().map(|_| Err(err.clone())).collect(),
                Commit::done(s.name.clone()),
            );
        }
        let now = s.clock.now_ms();
        let mut inner = s.inner.lock();
        let mut results = Vec::with_capacity(items.len());
        let mut acks = Vec::new();
        let mut woke = false;
        for (tag, how) in items {
            let r = s.check_tag(&inner.st, *tag).map(|()| match how {
                Settlement::Ack => {
                    inner.st.on_ack(tag.seq);
                    acks.push(tag.seq);
                }
                Settlement::Nack { delay, error } => {
                    let attempts = inner.st.slot(tag.seq).map_or(0, |x| x.attempts);
                    if attempts >= s.opts.max_attempts {
                        s.dead_letter(&mut inner, tag.seq, now, REASON_MAX_ATTEMPTS, Some(error));
                    } else {
                        let due = s.clock.deadline_ms(*delay);
                        inner.log.append(|e| e.nack(tag.seq, due, now, error));
                        inner.st.on_nack(tag.seq, due, now, error);
                        woke = true;
                    }
                }
                Settlement::Reject { reason } => {
                    s.dead_letter(&mut inner, tag.seq, now, reason, Some(reason));
                }
            });
            results.push(r);
        }
        inner.log.defer_acks(acks);
        let commit = s.commit_locked(&inner);
        s.wake(&mut inner, woke);
        drop(inner);
        (results, commit)
    }

    /// Releases every unsettled delivery of this consumer and closes it.
    pub fn close(self) {}
}

impl Shared {
    /// Whether `tag` names the current, unsettled delivery of its message.
    fn check_tag(&self, st: &State, tag: Tag) -> Result<(), SettleError> {
        if tag.attempt == 0 {
            // No delivery has attempt 0: a message never delivered has 0 attempts, and a tag
            // quoting 0 would otherwise match it.
            return Err(SettleError::Unknown {
                seq: tag.seq,
                attempt: 0,
            });
        }
        let Some(slot) = st.slot(tag.seq) else {
            return Err(if tag.seq < st.next_seq {
                SettleError::AlreadySettled {
                    seq: tag.seq,
                    attempt: tag.attempt,
                }
            } else {
                SettleError::Unknown {
                    seq: tag.seq,
                    attempt: tag.attempt,
                }
            });
        };
        if slot.state == SlotState::Settled {
            return Err(SettleError::AlreadySettled {
                seq: tag.seq,
                attempt: tag.attempt,
            });
        }
        if slot.attempts != tag.attempt {
            return Err(if tag.attempt > slot.attempts || tag.attempt == 0 {
                SettleError::Unknown {
                    seq: tag.seq,
                    attempt: tag.attempt,
                }
            } else {
                SettleError::Stale {
                    seq: tag.seq,
                    attempt: tag.attempt,
                    current: slot.attempts,
                }
            });
        }
        match slot.state {
            SlotState::Leased | SlotState::Ready => Ok(()),
            SlotState::Lost => Err(SettleError::Unknown {
                seq: tag.seq,
                attempt: tag.attempt,
            }),
            SlotState::Settled | SlotState::Delayed => Err(SettleError::AlreadySettled {
                seq: tag.seq,
                attempt: tag.attempt,
            }),
        }
    }

    /// Leases up to `max` ready messages (dead-lettering those out of attempts) and appends the
    /// record counting their attempts.
    fn pick(
        &self,
        inner: &mut Inner,
        consumer: u64,
        max: usize,
        lease: Duration,
    ) -> Result<(Vec<Picked>, Commit), QueueError> {
        self.check_poisoned()?;
        if inner.closing {
            return Err(self.closed());
        }
        self.tick(inner);
        let now = self.clock.now_ms();
        let until = self.clock.deadline_ms(lease);
        let mut picked = Vec::new();
        while picked.len() < max {
            let Some(seq) = inner.st.peek_ready() else {
                break;
            };
            let Some(slot) = inner.st.slot(seq).copied() else {
                break;
            };
            if slot.attempts >= self.opts.max_attempts {
                self.dead_letter(inner, seq, now, REASON_MAX_ATTEMPTS, None);
                continue;
            }
            inner.st.lease(seq, consumer, until);
            inner.st.on_deliver(seq);
            inner.st.counters.delivered += 1;
            if slot.attempts > 0 {
                inner.st.counters.redelivered += 1;
            }
            picked.push(Picked {
                seq,
                attempt: slot.attempts + 1,
                loc: slot.loc(),
                lease_until: until,
            });
        }
        if !picked.is_empty() {
            let rs = runs(picked.iter().map(|p| p.seq).collect());
            inner.log.append(|e| e.deliver(&rs));
        }
        Ok((picked, self.commit_locked(inner)))
    }
}
