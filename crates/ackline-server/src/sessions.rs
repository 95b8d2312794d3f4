//! Lease sessions: the server-side consumers of remote workers.
//!
//! A session is an engine consumer (through [`EmbeddedConsumer`]) with an id, its options and
//! the time it was last heard from.
//!
//! Invariants:
//! - A session not heard from within its lease (no request begun or ended) and with no
//!   request in progress is dropped by the reaper; dropping it releases its unsettled
//!   deliveries at once (they become deliverable again, attempts kept).
//! - An explicit close drops it at once.
//! - Fencing is the engine's: a settlement names (position, attempt); one for a delivery that
//!   was redelivered since is refused as stale, whichever session sends it.
//! - Session ids are 128 random bits, so one cannot be guessed to settle another's deliveries
//!   (fencing still holds if it were).
//! - A session remembers the `enqueued_at` of each delivery it handed out, keyed by its
//!   (key, attempt), until a settlement of it through this session succeeds or is refused (an
//!   `extend` that succeeds keeps it), or the session is dropped; so the lease API can observe
//!   end-to-end latency when an ack settles. It mirrors the engine consumer's own bound: at
//!   most `prefetch` entries, and a delivery handed out beyond that (never, unless settles
//!   failed with an error) is simply not observed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ackline_broker::embedded::EmbeddedConsumer;
use ackline_broker::{ConsumerOptions, Delivery};

/// One session.
#[derive(Debug)]
pub struct Session {
    /// The queue it consumes.
    pub queue: String,
    /// The engine consumer.
    pub consumer: EmbeddedConsumer,
    /// Its options.
    pub opts: ConsumerOptions,
    last_seen: Mutex<Instant>,
    busy: AtomicUsize,
    /// `enqueued_at` (Unix ms) of each delivery handed out and not yet settled, by
    /// (key, attempt).
    enqueued: Mutex<HashMap<(u64, u32), u64>>,
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
        *self.last_seen.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// Remembers when each of `ds` (just handed out) was enqueued, up to `prefetch` entries.
    pub fn handed_out(&self, ds: &[Delivery]) {
        let mut m = self.enqueued.lock().unwrap_or_else(|e| e.into_inner());
        for d in ds {
            if m.len() >= self.opts.prefetch {
                break;
            }
            m.insert((d.tag.key, d.tag.attempt), d.enqueued_at);
        }
    }

    /// Forgets delivery (key, attempt); its `enqueued_at` if it was remembered.
    pub fn forget(&self, key: u64, attempt: u32) -> Option<u64> {
        let mut m = self.enqueued.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(&(key, attempt))
    }

    /// Deliveries whose `enqueued_at` is remembered.
    pub fn remembered(&self) -> usize {
        self.enqueued
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    fn idle_expired(&self, now: Instant) -> bool {
        let seen = *self.last_seen.lock().unwrap_or_else(|e| e.into_inner());
        self.busy.load(Ordering::Acquire) == 0 && now.duration_since(seen) > self.opts.lease
    }
}

/// All sessions of a server.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Arc<Session>>>,
}

impl Sessions {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a session and returns its id.
    pub fn open(&self, queue: &str, consumer: EmbeddedConsumer, opts: ConsumerOptions) -> String {
        let id = format!("{:032x}", rand::random::<u128>());
        let s = Session {
            queue: queue.to_string(),
            consumer,
            opts,
            last_seen: Mutex::new(Instant::now()),
            busy: AtomicUsize::new(0),
            enqueued: Mutex::new(HashMap::new()),
        };
        self.map().insert(id.clone(), Arc::new(s));
        id
    }

    /// The session `id` of `queue`, marked busy until the guard drops.
    pub fn enter(&self, queue: &str, id: &str) -> Option<Busy> {
        let map = self.map();
        let s = map.get(id).filter(|s| s.queue == queue)?.clone();
        s.busy.fetch_add(1, Ordering::AcqRel);
        s.touch();
        Some(Busy { session: s })
    }

    /// Drops session `id` of `queue`; whether it existed. Its deliveries are released when the
    /// last request using it ends.
    pub fn close(&self, queue: &str, id: &str) -> bool {
        let mut map = self.map();
        if map.get(id).is_some_and(|s| s.queue == queue) {
            map.remove(id);
            true
        } else {
            false
        }
    }

    /// Drops sessions idle past their lease; returns how many.
    pub fn reap(&self, now: Instant) -> usize {
        let mut map = self.map();
        let before = map.len();
        map.retain(|_, s| !s.idle_expired(now));
        before - map.len()
    }

    /// Sessions open now.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops them all.
    pub fn clear(&self) {
        self.map().clear();
    }

    /// How often the reaper should look: a quarter of the shortest lease, within 10 ms..1 s.
    pub fn reap_interval(&self) -> Duration {
        let min = self.map().values().map(|s| s.opts.lease).min();
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
            attempt,
        }
    }

    #[tokio::test]
    async fn enqueued_at_is_kept_per_delivery_and_bounded_by_prefetch() {
        let dir = tempfile::tempdir().unwrap();
        let db = ackline_queue::Db::open(dir.path()).unwrap();
        let q = db.queue("logs", Default::default()).unwrap();
        let opts = ConsumerOptions {
            prefetch: 3,
            lease: Duration::from_secs(30),
        };
        let sessions = Sessions::default();
        let consumer = EmbeddedBroker::new(q).consumer(opts).await.unwrap();
        let id = sessions.open("logs", consumer, opts);
        let busy = sessions.enter("logs", &id).unwrap();
        let s = busy.session();
        s.handed_out(&[delivery(1, 1), delivery(2, 1)]);
        s.handed_out(&[delivery(3, 1), delivery(4, 1)]);
        assert_eq!(s.remembered(), 3, "never more than prefetch");
        assert_eq!(s.forget(2, 2), None, "another attempt is another delivery");
        assert_eq!(s.forget(2, 1), Some(1002));
        assert_eq!(s.forget(2, 1), None, "forgotten once");
        assert_eq!(s.forget(4, 1), None, "beyond prefetch: not remembered");
        s.handed_out(&[delivery(2, 2)]);
        assert_eq!(s.forget(2, 2), Some(1002));
        assert_eq!(s.remembered(), 2);
    }
}
