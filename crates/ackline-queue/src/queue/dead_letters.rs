//! The dead-letter queue's operations: list, get, find, replay, purge ([`DeadLetterQueue`],
//! from [`Queue::dead_letters`]).
//!
//! A dead-letter entry keeps the message in its publish record (the entry holds its location),
//! so the segment stays until the entry is replayed or purged.
//!
//! Invariants:
//! - A replay is one publish record naming the entry it replays: after any crash the message
//!   is in the queue or in the dead-letter queue, never both, never neither. It goes back with
//!   attempts reset and the same id, headers, payload and `enqueued_at`.
//! - An entry whose stored message cannot be read (damaged frame, failed read) is still listed
//!   (its payload the raw bytes, up to 1 MiB, its id saying why) but never replayed: one
//!   unreadable entry hides nothing else from an operator.
//! - Replays and purges return once durable; a replay that would take the queue over its
//!   `max_bytes` is refused whole. Dead-letter entries count toward `max_bytes` (their
//!   records hold disk until replayed or purged), so a replay adds only its framing.

use super::Queue;
use super::reader::StoredMessage;
use super::shared::{MessageParts, Shared};
use super::types::{DeadLetter, DlqSelector};
use crate::error::{PublishError, QueueError};
use crate::record::runs;
use crate::state::{DlqEntry, Loc};

/// The dead-letter queue of a [`Queue`]: a borrowed handle from [`Queue::dead_letters`].
#[derive(Debug, Clone, Copy)]
pub struct DeadLetterQueue<'q> {
    queue: &'q Queue,
}

/// An entry as operators see it, and whether its stored message could be read.
struct Viewed {
    entry: DeadLetter,
    readable: bool,
}

impl<'q> DeadLetterQueue<'q> {
    pub(super) fn new(queue: &'q Queue) -> Self {
        DeadLetterQueue { queue }
    }

    /// Lists entries with keys after `after` (all when `None`), at most `limit`.
    pub fn list(&self, after: Option<u64>, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let s = &self.queue.shared;
        let entries: Vec<_> = {
            let inner = s.inner.lock();
            let range = match after {
                Some(k) => inner.st.dlq.range(k.saturating_add(1)..),
                None => inner.st.dlq.range(..),
            };
            range.take(limit).map(|(&k, e)| (k, e.clone())).collect()
        };
        entries
            .into_iter()
            .map(|(k, e)| s.dead_letter_view(k, &e).map(|v| v.entry))
            .collect()
    }

    /// The entry with this key.
    pub fn get(&self, key: u64) -> Result<Option<DeadLetter>, QueueError> {
        let s = &self.queue.shared;
        let entry = s.inner.lock().st.dlq.get(&key).cloned();
        entry
            .map(|e| s.dead_letter_view(key, &e).map(|v| v.entry))
            .transpose()
    }

    /// Entries whose message has this id (reads every entry: an operator's tool).
    pub fn find(&self, id: &str) -> Result<Vec<DeadLetter>, QueueError> {
        Ok(self
            .select(&DlqSelector::Ids(vec![id.to_string()]))?
            .into_iter()
            .map(|v| v.entry)
            .collect())
    }

    /// Replays selected entries: each goes back to the queue as a new delivery with attempts
    /// reset (same id, headers, payload and `enqueued_at`), and leaves the dead-letter queue
    /// in the same record. Returns how many, once durable. Entries whose stored message is
    /// damaged (reason [`REASON_CORRUPT`](crate::REASON_CORRUPT)) cannot be replayed and stay.
    pub fn replay(&self, sel: &DlqSelector) -> Result<usize, PublishError> {
        let s = &self.queue.shared;
        s.check_poisoned()?;
        let chosen: Vec<DeadLetter> = self
            .select(sel)?
            .into_iter()
            .filter_map(|v| v.readable.then_some(v.entry))
            .collect();
        let mut inner = s.inner.lock();
        // Each replayed entry leaves the dead-letter queue as its copy is published: only the
        // copy's extra framing (the replayed key) is new.
        let needed: u64 = chosen
            .iter()
            .filter(|d| inner.st.dlq.contains_key(&d.key))
            .map(|_| 9)
            .sum();
        s.check_room(&inner, needed)?;
        let mut n = 0;
        for d in &chosen {
            if !inner.st.dlq.contains_key(&d.key) {
                continue; // purged or replayed meanwhile
            }
            let fp = inner.st.fp_key.of(&d.id);
            let parts = MessageParts {
                enqueued_at: d.enqueued_at,
                headers: &d.headers,
                payload: &d.payload,
            };
            inner.publish(&d.id, fp, parts, Some(d.key));
            n += 1;
        }
        let commit = s.commit_locked(&inner);
        s.wake(&mut inner, true);
        drop(inner);
        commit.wait()?;
        Ok(n)
    }

    /// Purges selected entries; returns how many, once durable.
    pub fn purge(&self, sel: &DlqSelector) -> Result<usize, QueueError> {
        let s = &self.queue.shared;
        s.check_poisoned()?;
        let keys: Vec<u64> = match sel {
            DlqSelector::All => s.inner.lock().st.dlq.keys().copied().collect(),
            DlqSelector::Keys(k) => k.clone(),
            _ => self.select(sel)?.into_iter().map(|v| v.entry.key).collect(),
        };
        let mut inner = s.inner.lock();
        let keys: Vec<u64> = keys
            .into_iter()
            .filter(|k| inner.st.dlq.contains_key(k))
            .collect();
        if keys.is_empty() {
            return Ok(0);
        }
        let rs = runs(keys.clone());
        inner.log.append(|e| e.purge(&rs));
        for k in &keys {
            inner.st.on_purge(*k);
        }
        let commit = s.commit_locked(&inner);
        s.wake(&mut inner, false);
        drop(inner);
        commit.wait()?;
        Ok(keys.len())
    }

    /// The selected entries, each with whether its stored message could be read.
    fn select(&self, sel: &DlqSelector) -> Result<Vec<Viewed>, QueueError> {
        let s = &self.queue.shared;
        let entries: Vec<_> = {
            let inner = s.inner.lock();
            match sel {
                DlqSelector::Keys(keys) => keys
                    .iter()
                    .filter_map(|k| inner.st.dlq.get(k).map(|e| (*k, e.clone())))
                    .collect(),
                _ => inner.st.dlq.iter().map(|(&k, e)| (k, e.clone())).collect(),
            }
        };
        let mut out = Vec::new();
        for (k, e) in entries {
            let keep_meta = match sel {
                DlqSelector::Filter(f) => {
                    f.reason_contains
                        .as_deref()
                        .is_none_or(|t| e.reason.contains(t))
                        && f.error_contains
                            .as_deref()
                            .is_none_or(|t| e.last_error.contains(t))
                        && f.since.is_none_or(|t| e.last_failure >= t)
                        && f.until.is_none_or(|t| e.last_failure < t)
                }
                _ => true,
            };
            if !keep_meta {
                continue;
            }
            let v = s.dead_letter_view(k, &e)?;
            if let DlqSelector::Ids(ids) = sel
                && !ids.contains(&v.entry.id)
            {
                continue;
            }
            out.push(v);
        }
        Ok(out)
    }
}

impl Shared {
    /// An entry as operators see it, and whether its stored message could be read. An
    /// unreadable one (damaged frame) shows the raw bytes of its location as payload, up to
    /// 1 MiB, and an id saying why.
    fn dead_letter_view(&self, key: u64, e: &DlqEntry) -> Result<Viewed, QueueError> {
        const RAW_MAX: u32 = 1 << 20;
        let salt = self.salts(&[e.loc]).of(e.loc.seg);
        let unreadable = |why: String| StoredMessage {
            id: format!("<unreadable: {why}>"),
            ..StoredMessage::default()
        };
        let (m, readable) = if e.loc.len == 0 {
            // Recovery could not place the damage that held this message.
            (
                unreadable("its record was lost to damage".to_string()),
                false,
            )
        } else {
            let loc = Loc {
                len: e.loc.len.min(RAW_MAX),
                ..e.loc
            };
            let mut read = None;
            self.read_frames(std::slice::from_ref(&loc), |_, frame| {
                read = Some(match frame {
                    Ok(f) => match self.decode_message(e.loc, f, key, salt) {
                        Ok(m) => (m, true),
                        Err(reason) => (
                            StoredMessage {
                                payload: f.to_vec(),
                                ..unreadable(reason)
                            },
                            false,
                        ),
                    },
                    // One entry whose bytes cannot be read must not hide the others from an
                    // operator.
                    Err(err) => (unreadable(err.to_string()), false),
                });
            });
            // `read_frames` hands every location to the closure.
            read.ok_or_else(|| self.closed())?
        };
        Ok(Viewed {
            entry: DeadLetter {
                key,
                id: m.id,
                headers: m.headers,
                payload: m.payload,
                enqueued_at: m.enqueued_at,
                attempts: e.attempts,
                first_failure: e.first_failure,
                last_failure: e.last_failure,
                reason: e.reason.to_string(),
                last_error: e.last_error.to_string(),
            },
            readable,
        })
    }
}
