//! Lease sessions: the server-side consumers of remote workers.
//!
//! A session is an engine consumer (through [`EmbeddedConsumer`]) with an id, its options,
//! the deliveries it handed out and the time it was last heard from.
//!
//! Invariants:
//! - A session not heard from for its lease plus [`IDLE_GRACE`] (no request begun or ended)
//!   and with no request in progress is dropped by the reaper; dropping it releases its
//!   unsettled deliveries at once (they become deliverable again, attempts kept). Within the
//!   grace its deliveries' own leases have run out in the engine already (a receive or settle
//!   touches the session), so the grace holds no message back; it lets a worker that stalled
//!   past its lease still hear `stale` (or settle in time) instead of `session_not_found`.
//! - An explicit close drops it at once.
//! - Fencing, two checks: a settlement through a session is applied only if that session
//!   handed out exactly that delivery (key, attempt) and has not ended it yet; the engine then
//!   refuses one for a delivery that was redelivered since as stale. A settlement for a
//!   delivery the session does not hold answers from the session's memory of deliveries it
//!   ended (`already_settled` for one settled, the same refusal for one refused), or `unknown`,
//!   and never reaches the engine. So no session can settle another's delivery, nor one that
//!   was never delivered (attempt 0).
//! - Session ids are 128 random bits, so one cannot be guessed.
//! - At most `max` sessions per owner (token) are open at once: [`Sessions::open`] counts
//!   and inserts under one lock. With leases bounded (`limits.max_lease`), every session
//!   not heard from is dropped within a bounded time, so the table is bounded too.
//! - A session remembers each delivery it handed out, with its `enqueued_at` (for end-to-end
//!   latency), keyed by (key, attempt), until a settlement of it through this session succeeds
//!   or is refused (an `extend` that succeeds keeps it), or the session is dropped. It mirrors
//!   the engine consumer's own bound: at most `prefetch` entries (the engine consumer never
//!   hands out more than `prefetch` minus what it holds, and it forgets a delivery no earlier
//!   than the session does, so the bound is never what stops one from being remembered).
//! - It remembers the outcome of the last `min(prefetch, ENDED_CAP)` deliveries it ended, so a
//!   retried settle answers as the first did; older ones answer `unknown`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ackline_broker::embedded::EmbeddedConsumer;
use ackline_broker::{ConsumerOptions, Delivery};
use parking_lot::Mutex;

use ackline_wire::SettleResult;

/// How long a session outlives its lease unheard before the reaper drops it.
pub const IDLE_GRACE: Duration = Duration::from_secs(30);

/// Most ended deliveries a session remembers the outcome of.
pub const ENDED_CAP: usize = 4096;

/// Who opened a session: the index of the configured token it was opened with, `None` when
/// the server has no tokens.
pub type Owner = Option<usize>;

/// One session.
#[derive(Debug)]
pub struct Session {
    /// The queue it consumes.
    pub queue: String,
    /// Who opened it.
    pub owner: Owner,
    /// The engine consumer.
    pub consumer: EmbeddedConsumer,
    /// Its options.
    pub opts: ConsumerOptions,
    last_seen: Mutex<Instant>,
    busy: AtomicUsize,
    /// The deliveries it handed out.
    held: Mutex<Held>,
}

/// What a session knows of its deliveries.
#[derive(Debug, Default)]
struct Held {
    /// `enqueued_at` (Unix ms) of each delivery handed out and not yet ended, by
    /// (key, attempt).
    live: HashMap<(u64, u32), u64>,
    /// What a repeated settlement of each recently ended delivery answers.
    ended: HashMap<(u64, u32), SettleResult>,
    /// `ended`'s keys, oldest first.
    ended_order: VecDeque<(u64, u32)>,
}

/// Marks a session busy for as long as it lives (a request in progress).
#[derive(Debug)]
pub struct Busy {
    session: Arc<Session>,
}

impl Busy {
    /// The session.
    pub fn session(&self) -> &Session {
        &self.session
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.session.touch();
        self.session.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Session {
    fn touch(&self) {
        *self.last_seen.lock() = Instant::now();
    }

    /// Remembers each of `ds` (just handed out) and when it was enqueued, up to `prefetch`
    /// entries.
    pub fn handed_out(&self, ds: &[Delivery]) {
        let mut h = self.held.lock();
        for d in ds {
            if h.live.len() >= self.opts.prefetch {
                break;
            }
            // Each delivery has its own attempt, so (key, attempt) is never handed out twice.
            h.live.insert((d.tag.key, d.tag.attempt), d.enqueued_at);
        }
    }

    /// Whether this session handed out delivery (key, attempt) and has not ended it.
    pub fn holds(&self, key: u64, attempt: u32) -> bool {
        self.held.lock().live.contains_key(&(key, attempt))
    }

    /// What a settlement of (key, attempt), which this session does not hold, answers: as the
    /// settlement that ended it here did, or `unknown` (never handed out by this session, or
    /// ended too long ago).
    pub fn not_held(&self, key: u64, attempt: u32) -> SettleResult {
        self.held
            .lock()
            .ended
            .get(&(key, attempt))
            .cloned()
            .unwrap_or(SettleResult::Unknown)
    }

    /// Ends delivery (key, attempt) with `result` (what the settlement that ended it answered);
    /// its `enqueued_at` if it was held.
    pub fn end(&self, key: u64, attempt: u32, result: &SettleResult) -> Option<u64> {
        let mut h = self.held.lock();
        let at = h.live.remove(&(key, attempt))?;
        let repeat = match result {
            SettleResult::Ok => SettleResult::AlreadySettled,
            other => *other,
        };
        let cap = self.opts.prefetch.clamp(1, ENDED_CAP);
        while h.ended_order.len() >= cap {
            if let Some(old) = h.ended_order.pop_front() {
                h.ended.remove(&old);
            }
        }
        h.ended.insert((key, attempt), repeat);
        h.ended_order.push_back((key, attempt));
        Some(at)
    }

    /// Forgets delivery (key, attempt) without an outcome (its settlement failed as a whole);
    /// its `enqueued_at` if it was held.
    pub fn forget(&self, key: u64, attempt: u32) -> Option<u64> {
        self.held.lock().live.remove(&(key, attempt))
    }

    /// Deliveries held now.
    pub fn remembered(&self) -> usize {
        self.held.lock().live.len()
    }

    fn idle_expired(&self, now: Instant) -> bool {
        let seen = *self.last_seen.lock();
        self.busy.load(Ordering::Acquire) == 0
            && now.duration_since(seen) > self.opts.lease.saturating_add(IDLE_GRACE)
    }
}

/// All sessions of a server.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Arc<Session>>>,
}

impl Sessions {
    /// Registers a session of `owner` and returns its id, or `Err(n)` when `owner` has `n`
    /// sessions open already, `n >= max` (the consumer is dropped, nothing registered).
    pub fn open(
        &self,
        queue: &str,
        consumer: EmbeddedConsumer,
        opts: ConsumerOptions,
        owner: Owner,
        max: usize,
    ) -> Result<String, usize> {
        let mut map = self.map.lock();
        let n = map.values().filter(|s| s.owner == owner).count();
        if n >= max {
            return Err(n);
        }
        let id = format!("{:032x}", rand::random::<u128>());
        let s = Session {
            queue: queue.to_string(),
            owner,
            consumer,
            opts,
            last_seen: Mutex::new(Instant::now()),
            busy: AtomicUsize::new(0),
            held: Mutex::new(Held::default()),
        };
        map.insert(id.clone(), Arc::new(s));
        Ok(id)
    }

    /// The session `id` of `queue`, marked busy until the guard drops.
    pub fn enter(&self, queue: &str, id: &str) -> Option<Busy> {
        let map = self.map.lock();
        let s = map.get(id).filter(|s| s.queue == queue)?.clone();
        s.busy.fetch_add(1, Ordering::AcqRel);
        s.touch();
        Some(Busy { session: s })
    }

    /// Drops session `id` of `queue`; whether it existed. Its deliveries are released when the
    /// last request using it ends.
    pub fn close(&self, queue: &str, id: &str) -> bool {
        let mut map = self.map.lock();
        if map.get(id).is_some_and(|s| s.queue == queue) {
            map.remove(id);
            true
        } else {
            false
        }
    }

    /// Drops sessions idle past their lease plus [`IDLE_GRACE`]; returns how many.
    pub fn reap(&self, now: Instant) -> usize {
        let mut map = self.map.lock();
        let before = map.len();
        map.retain(|_, s| !s.idle_expired(now));
        before - map.len()
    }

    /// Every session: (id, queue, deliveries held, idle time), ordered by queue then id.
    pub fn list(&self) -> Vec<(String, String, usize, Duration)> {
        let now = Instant::now();
        let mut v: Vec<_> = self
            .map
            .lock()
            .iter()
            .map(|(id, s)| {
                let idle = now.saturating_duration_since(*s.last_seen.lock());
                (id.clone(), s.queue.clone(), s.remembered(), idle)
            })
            .collect();
        v.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
        v
    }

    /// Sessions open now.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops them all.
    pub fn clear(&self) {
        self.map.lock().clear();
    }

    /// How often the reaper should look: a quarter of the shortest lease, within 10 ms..1 s.
    pub fn reap_interval(&self) -> Duration {
        let min = self.map.lock().values().map(|s| s.opts.lease).min();
        min.map_or(Duration::from_millis(250), |l| l / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ackline_broker::embedded::EmbeddedBroker;
    use ackline_broker::{Broker, Tag};

    use super::*;

    fn delivery(key: u64, attempt: u32) -> Delivery {
        Delivery {
            tag: Tag {
                key,
                attempt,
                token: None,
            },
            id: format!("m{key}"),
            headers: Vec::new(),
            payload: Vec::new(),
            enqueued_at: 1000 + key,
        }
    }

    #[tokio::test]
    async fn deliveries_are_held_per_attempt_and_bounded_by_prefetch() {
        let dir = tempfile::tempdir().unwrap();
        let db = ackline_queue::Db::open(dir.path()).unwrap();
        let q = db.queue("logs", Default::default()).unwrap();
        let opts = ConsumerOptions {
            prefetch: 3,
            lease: Duration::from_secs(30),
        };
        let sessions = Sessions::default();
        let consumer = EmbeddedBroker::new(q).consumer(opts).await.unwrap();
        let id = sessions.open("logs", consumer, opts, None, 8).unwrap();
        let busy = sessions.enter("logs", &id).unwrap();
        let s = busy.session();
        s.handed_out(&[delivery(1, 1), delivery(2, 1)]);
        s.handed_out(&[delivery(3, 1), delivery(4, 1)]);
        assert_eq!(s.remembered(), 3, "never more than prefetch");
        assert!(s.holds(2, 1));
        assert!(!s.holds(2, 2), "another attempt is another delivery");
        assert!(!s.holds(4, 1), "beyond prefetch: not held");
        assert_eq!(s.end(2, 2, &SettleResult::Ok), None);
        assert_eq!(s.end(2, 1, &SettleResult::Ok), Some(1002));
        assert!(!s.holds(2, 1), "ended once");
        assert_eq!(s.end(2, 1, &SettleResult::Ok), None);
        s.handed_out(&[delivery(2, 2)]);
        assert_eq!(s.forget(2, 2), Some(1002));
        assert_eq!(s.remembered(), 2);
    }

    #[tokio::test]
    async fn a_repeated_settlement_answers_as_the_first_within_a_bound() {
        let dir = tempfile::tempdir().unwrap();
        let db = ackline_queue::Db::open(dir.path()).unwrap();
        let q = db.queue("logs", Default::default()).unwrap();
        let opts = ConsumerOptions {
            prefetch: 2,
            lease: Duration::from_secs(30),
        };
        let sessions = Sessions::default();
        let consumer = EmbeddedBroker::new(q).consumer(opts).await.unwrap();
        let id = sessions.open("logs", consumer, opts, None, 8).unwrap();
        let busy = sessions.enter("logs", &id).unwrap();
        let s = busy.session();
        assert!(matches!(s.not_held(1, 1), SettleResult::Unknown));
        s.handed_out(&[delivery(1, 1), delivery(2, 1)]);
        s.end(1, 1, &SettleResult::Ok);
        let stale = SettleResult::Stale {
            attempt: 1,
            current: 2,
        };
        s.end(2, 1, &stale);
        assert!(matches!(s.not_held(1, 1), SettleResult::AlreadySettled));
        assert!(matches!(
            s.not_held(2, 1),
            SettleResult::Stale {
                attempt: 1,
                current: 2
            }
        ));
        s.handed_out(&[delivery(3, 1)]);
        s.end(3, 1, &SettleResult::Ok);
        assert!(
            matches!(s.not_held(1, 1), SettleResult::Unknown),
            "the oldest outcome is forgotten past min(prefetch, ENDED_CAP)"
        );
        assert!(matches!(s.not_held(3, 1), SettleResult::AlreadySettled));
    }
}
