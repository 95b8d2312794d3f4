//! A consumer: one member of the topic's consumer group, with client-side leases, offsets
//! committed per partition as the end of the contiguous settled prefix ([`OffsetTracker`]).
//!
//! Threads and tasks:
//! - The pump thread (one OS thread per consumer) serves librdkafka's consumer queue all the
//!   time (events: rebalances, errors; `max.poll.interval.ms`), whatever the worker does, and
//!   reads ahead of the worker into a buffer of undelivered records (`ready`; retry records
//!   not yet due wait in `delayed`) up to the high-water mark, `prefetch`, whatever the worker
//!   holds. Each assigned partition's records come through a queue of their own, split from
//!   the consumer's queue when the partition is assigned (librdkafka's
//!   `rd_kafka_queue_get_partition`, forwarding turned off): the pump reads those only while
//!   the buffer is below the mark, so at the mark the records wait in librdkafka's fetch
//!   queues (bounded by `queued.max.messages.kbytes`) and the fetch goes on. The pump sleeps
//!   until a queue it reads becomes non-empty, `receive` makes room, or `poll_interval`
//!   passes. (Before, the pump paused the assignment at the mark and resumed it at half of
//!   it; librdkafka drops what it fetched for a paused partition and fetches it again after
//!   the resume, which held the consumer to 48-56% of a bare rdkafka loop that never pauses:
//!   docs/BENCHMARKS.md.) A record can reach the consumer's queue only in the moment between
//!   an assignment and its split, or for a partition librdkafka gives no queue for (a
//!   warning); those are read whatever the room.
//! - `receive` hands buffered records out as deliveries (a fresh key each, the attempt from
//!   `ackline.attempts` + 1, plus what the partition's [`Journal`] says of earlier hand-outs)
//!   with a lease deadline, once the journal records the hand-out durably (a commit of the
//!   unchanged offset with the journal as metadata). Records that arrive past `max_attempts`
//!   that way are dead-lettered by the reaper instead.
//! - The reaper task (every `poll_interval`) releases deliveries whose lease expired, copies
//!   that failed before, and commits what a failed commit left.
//!
//! How each settlement maps:
//! - `Ack`: the record is settled in its tracker and the prefix committed (sync).
//! - `Nack(delay)`: a copy goes to `<topic>.retry` with `ackline.attempts` = this attempt and
//!   `ackline.not_before` = now + delay; at `max_attempts` it goes to `<topic>.dlq` instead
//!   (reason `max attempts exceeded`). Only once the copy is confirmed is the original settled
//!   and committed.
//! - `Reject(reason)`: a copy goes to `<topic>.dlq`, then as above.
//! - `Extend(lease)`: a new deadline; nothing is sent.
//! - An expired lease, `close` and drop release the delivery as a `Nack` with no delay (the
//!   error [`UNSETTLED`]); `close` also hands records it read but never delivered (up to the
//!   high-water mark) to the retry topic (attempts unchanged), so the group's offsets can move
//!   past everything it read.
//!
//! Rebalances: when partitions are revoked (on the pump thread, inside librdkafka's callback)
//! the consumer drops their queues and undelivered records, then waits up to
//! `KafkaOptions::revoke_grace` for the deliveries it holds from them to be settled and
//! committed, so the next owner starts after them; past it, the remaining ones are fenced
//! (`Stale`) and the next owner redelivers them from the committed offset (at the attempt
//! they had). Partitions *lost* (librdkafka's `assignment_lost`: the member was fenced or its
//! session expired) are fenced at once, with no wait: another member may own them already.
//!
//! Invariants:
//! - Held deliveries never exceed `prefetch` (`receive` hands out at most `prefetch` minus
//!   those held).
//! - Undelivered records stop growing at the high-water mark, `prefetch` (the pump reads no
//!   partition queue at the mark), so a consumer keeps at most about 2 x `prefetch` records
//!   of its own in memory: `prefetch` held and `prefetch` read ahead. librdkafka's own fetch
//!   queues (`queued.max.messages.kbytes`, `queued.min.messages`) come on top.
//! - A tracker's records are settled only by settlements of its own generation (a partition
//!   revoked and assigned again gets a new tracker), so a late settlement of an earlier
//!   assignment never moves the new one's offset.
//! - Commits are serialized (one at a time per consumer) and only move forward.
//! - The partition queues hold the librdkafka consumer; the pump empties them when it stops,
//!   before the consumer is closed (it leaves the group when its last holder drops it).
//! - The pump is never away from librdkafka's poll for longer than a revoke (`revoke_grace`,
//!   then a commit within `request_timeout`), and `max.poll.interval.ms` is set above that
//!   (`client::max_poll_interval`, unless the user sets it): short enough that a JoinGroup
//!   the coordinator never answers times out in 33 s by default, not librdkafka's 303 s.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::JoinHandle as ThreadHandle;
use std::time::Duration;

use ackline_broker::fence::{self, Ended};
use ackline_broker::{
    BrokerError, ConsumerOptions, Delivery, MAX_REASON_BYTES, REASON_MAX_ATTEMPTS, SettleError,
    Settlement, Tag, backoff,
};
use parking_lot::{Condvar, Mutex};
use rdkafka::Message as _;
use rdkafka::client::ClientContext;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Headers as _};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client::{self, Record, classify};
use crate::journal::Journal;
use crate::tracker::OffsetTracker;
use crate::{Inner, NAME, now_ms, wire};

/// The error recorded when a delivery ends without a settlement.
pub const UNSETTLED: &str = "delivery ended without a settlement (worker closed or lease expired)";

/// Which of the two topics a consumer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Src {
    Main,
    Retry,
}

type Tp = (Src, i32);

/// A record read, not yet settled.
#[derive(Debug, Clone)]
struct Rec {
    tp: Tp,
    generation: u64,
    offset: i64,
    id: String,
    headers: Vec<(String, String)>,
    payload: Vec<u8>,
    enqueued_at: u64,
    /// Deliveries that ended before this record was written.
    attempts: u32,
    not_before: u64,
    first_failure: Option<u64>,
    error: Option<String>,
}

struct Held {
    rec: Rec,
    attempt: u32,
    deadline: Instant,
    settling: bool,
}

impl fence::Held for Held {
    fn attempt(&self) -> u32 {
        self.attempt
    }
    fn settling(&self) -> bool {
        self.settling
    }
}

/// A copy to write before `rec` may be settled (none for an ack).
#[derive(Clone)]
struct Job {
    rec: Rec,
    copy: Option<Record>,
}

#[derive(Default)]
struct State {
    held: HashMap<u64, Held>,
    ended: Ended,
    next_key: u64,
    ready: VecDeque<Rec>,
    delayed: Vec<Rec>,
    trackers: HashMap<Tp, (u64, OffsetTracker)>,
    next_gen: u64,
    /// Per partition: what was handed out past its committed offset ([`Journal`]), its
    /// version, and the version last committed.
    journals: HashMap<Tp, (Journal, u64, u64)>,
    /// Records past `max_attempts` on arrival (a crash loop): dead-lettered by the reaper.
    overdue: Vec<Rec>,
    /// Releases to (re)try: fenced already.
    releases: Vec<Rec>,
    /// A receive error to report (the pump saw it).
    error: Option<BrokerError>,
    /// Whether the read-ahead is at the high-water mark ([`Buffer`]).
    full: bool,
    /// Records the pump read since the consumer started ([`Buffer`]).
    read: u64,
    /// Rounds of the pump's loop ([`Buffer`]).
    rounds: u64,
}

/// The undelivered records (read, not handed out) at which the pump stops reading the
/// partitions' queues.
fn high_water(prefetch: usize) -> usize {
    prefetch
}

/// Records the pump takes from the consumer's main queue in one round at most (it carries
/// events, and records only of a partition not split: see the module doc).
const MAIN_QUEUE_BURST: usize = 1000;

/// What a consumer holds in memory, for diagnostics and tests ([`KafkaConsumer::buffer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffer {
    /// Deliveries handed out and not settled (at most `prefetch`).
    pub held: usize,
    /// Records read and not handed out yet, retry records not yet due included (at most the
    /// high-water mark, `prefetch`, but for records that reach the consumer's main queue
    /// before their partition's queue is split: see the module doc).
    pub undelivered: usize,
    /// Whether the read-ahead is at the high-water mark: the pump reads no partition's queue
    /// until `receive` takes some (the records wait in librdkafka's queues).
    pub full: bool,
    /// Records read from Kafka since the consumer started.
    pub read: u64,
    /// Rounds of the polling thread's loop (each polls librdkafka's queues once, then waits
    /// for one to fill or for `poll_interval`): a test waits for a few to know the thread had
    /// the chance to read more.
    pub rounds: u64,
}

impl State {
    /// Records read and not handed out: what the read-ahead watermarks count.
    fn undelivered(&self) -> usize {
        self.ready.len() + self.delayed.len()
    }

    /// Whether `tp` still has deliveries out or settled records not yet committed.
    fn busy(&self, tp: Tp) -> bool {
        self.held.values().any(|h| h.rec.tp == tp)
            || self.releases.iter().any(|r| r.tp == tp)
            || self.overdue.iter().any(|r| r.tp == tp)
            || self
                .trackers
                .get(&tp)
                .is_some_and(|(_, t)| t.committable().is_some())
    }

    fn settle_offset(&mut self, rec: &Rec) -> bool {
        match self.trackers.get_mut(&rec.tp) {
            Some((g, t)) if *g == rec.generation => t.settled(rec.offset),
            _ => false,
        }
    }
}

struct Board {
    state: Mutex<State>,
    changed: Condvar,
    ready: Notify,
    /// Wakes the pump (librdkafka's queues becoming non-empty, a hand-out making room, close).
    wake: Arc<Wake>,
    /// The assigned partitions' own queues (split from the consumer's queue at assignment),
    /// read by the pump only while there is room. Each holds the librdkafka consumer, so the
    /// pump empties this when it stops (and revocations take theirs out).
    queues: Mutex<HashMap<Tp, PartitionQueue<Ctx>>>,
    /// The high-water mark of undelivered records.
    high: usize,
}

/// A wake-up flag the pump waits on.
#[derive(Default)]
struct Wake {
    set: Mutex<bool>,
    cv: Condvar,
}

impl Wake {
    fn signal(&self) {
        *self.set.lock() = true;
        self.cv.notify_one();
    }

    /// Waits until signalled (since the last wait) or `timeout`.
    fn wait(&self, timeout: Duration) {
        let mut set = self.set.lock();
        if !*set {
            let _ = self.cv.wait_for(&mut set, timeout);
        }
        *set = false;
    }
}

/// librdkafka's callbacks: revocations drain the revoked partitions (see the module doc).
struct Ctx {
    sync: Arc<Board>,
    topics: [String; 2],
    grace: Duration,
    /// The consumer itself, to split an assigned partition's queue (set once it exists).
    kc: OnceLock<Weak<Kc>>,
}

impl ClientContext for Ctx {}

impl Ctx {
    fn src(&self, topic: &str) -> Option<Src> {
        if topic == self.topics[0] {
            Some(Src::Main)
        } else if topic == self.topics[1] {
            Some(Src::Retry)
        } else {
            None
        }
    }
}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let tps: Vec<Tp> = tpl
            .elements()
            .iter()
            .filter_map(|e| Some((self.src(e.topic())?, e.partition())))
            .collect();
        // What librdkafka still queues for them is not read: the next owner reads it.
        self.sync.queues.lock().retain(|tp, _| !tps.contains(tp));
        let mut st = self.sync.state.lock();
        st.ready.retain(|r| !tps.contains(&r.tp));
        st.delayed.retain(|r| !tps.contains(&r.tp));
        // Partitions lost (this member was fenced or its session expired) may be another
        // member's already: nothing is waited for, what is held is fenced at once.
        let lost = consumer.assignment_lost();
        tracing::debug!(partitions = ?tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect::<Vec<_>>(), lost, "kafka: partitions revoked");
        let deadline = std::time::Instant::now() + self.grace;
        while !lost && tps.iter().any(|&tp| st.busy(tp)) {
            if self.sync.changed.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        let fenced: Vec<u64> = st
            .held
            .iter()
            .filter(|(_, h)| tps.contains(&h.rec.tp))
            .map(|(k, _)| *k)
            .collect();
        for k in &fenced {
            if let Some(h) = st.held.remove(k) {
                st.ended.gone(*k, h.attempt);
            }
        }
        st.releases.retain(|r| !tps.contains(&r.tp));
        st.overdue.retain(|r| !tps.contains(&r.tp));
        for tp in &tps {
            st.trackers.remove(tp);
            st.journals.remove(tp);
        }
        if !fenced.is_empty() {
            tracing::warn!(
                fenced = fenced.len(),
                lost,
                "kafka: partitions revoked with deliveries still unsettled; the next owner redelivers them"
            );
        }
        drop(st);
        self.sync.ready.notify_waiters();
    }

    /// Splits each assigned partition's records into a queue of its own, which the pump reads
    /// only while there is room (right after the assignment, before its first fetch).
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(tpl) = rebalance else {
            return;
        };
        let Some(kc) = self.kc.get().and_then(Weak::upgrade) else {
            return;
        };
        let mut queues = self.sync.queues.lock();
        for e in tpl.elements() {
            let Some(src) = self.src(e.topic()) else {
                continue;
            };
            match kc.split_partition_queue(e.topic(), e.partition()) {
                Some(mut q) => {
                    let wake = self.sync.wake.clone();
                    q.set_nonempty_callback(move || wake.signal());
                    queues.insert((src, e.partition()), q);
                }
                None => tracing::warn!(
                    topic = e.topic(),
                    partition = e.partition(),
                    "kafka: librdkafka has no queue for an assigned partition; its records come through the consumer's queue, read ahead without the high-water mark"
                ),
            }
        }
        drop(queues);
        self.sync.wake.signal();
    }
}

type Kc = BaseConsumer<Ctx>;

struct Shared {
    inner: Arc<Inner>,
    opts: ConsumerOptions,
    token: Arc<str>,
    /// Taken out at close, so that the consumer is closed (it leaves the group) off the
    /// runtime's threads.
    kc: Mutex<Option<Arc<Kc>>>,
    sync: Arc<Board>,
    commit_lock: tokio::sync::Mutex<()>,
    /// Receives run one at a time (their journal commit, then the hand-out).
    receiving: tokio::sync::Mutex<()>,
    closed: Arc<AtomicBool>,
}

/// A consumer of a [`crate::KafkaBroker`]'s topic and retry topic.
pub struct KafkaConsumer {
    shared: Arc<Shared>,
    pump: Option<ThreadHandle<()>>,
    reaper: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for KafkaConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConsumer")
            .field("token", &self.shared.token)
            .finish_non_exhaustive()
    }
}

fn rec_of(m: &BorrowedMessage<'_>, src: Src, generation: u64) -> Rec {
    let (meta, headers) = match m.headers() {
        Some(h) => wire::decode(h.iter().map(|h| (h.key, h.value))),
        None => wire::decode(std::iter::empty()),
    };
    let id = meta.id.unwrap_or_else(|| {
        // Not written by ackline: a stable id from where the record is.
        format!("{}:{}:{}", m.topic(), m.partition(), m.offset())
    });
    let enqueued_at = meta.enqueued_at.unwrap_or_else(|| {
        m.timestamp()
            .to_millis()
            .and_then(|t| u64::try_from(t).ok())
            .unwrap_or_else(now_ms)
    });
    Rec {
        tp: (src, m.partition()),
        generation,
        offset: m.offset(),
        id,
        headers,
        payload: m.payload().unwrap_or_default().to_vec(),
        enqueued_at,
        attempts: meta.attempts,
        not_before: meta.not_before.unwrap_or(0),
        first_failure: meta.first_failure,
        error: meta.error,
    }
}

/// The journal of what earlier owners of a partition handed out past its committed offset,
/// taken over (each range one attempt more); empty when it cannot be read (a redelivery is then
/// counted as the attempt it had, as before the journal existed).
fn committed_journal(kc: &Kc, topic: &str, partition: i32, timeout: Duration) -> Journal {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    match kc.committed_offsets(tpl, timeout) {
        Ok(c) => c
            .find_partition(topic, partition)
            .map(|e| Journal::decode(e.metadata()).taken_over())
            .unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, topic, partition, "kafka: reading the committed offset's metadata failed; redeliveries of this partition's uncommitted records keep their attempt");
            Journal::default()
        }
    }
}

/// The pump thread's loop (see the module doc).
fn pump(
    kc: Arc<Kc>,
    sync: Arc<Board>,
    closed: Arc<AtomicBool>,
    every: Duration,
    timeout: Duration,
) {
    let mut failures = 0u32;
    while !closed.load(Ordering::Acquire) {
        sync.state.lock().rounds += 1;
        let mut took = 0usize;
        // Events (rebalances, errors) and records of partitions not split: served whatever
        // the room, so that rebalances and `max.poll.interval.ms` never wait on the worker.
        for _ in 0..MAIN_QUEUE_BURST {
            let Some(r) = kc.poll(Duration::ZERO) else {
                break;
            };
            took += 1;
            take(&kc, &sync, r, timeout, every, &mut failures);
        }
        // The partitions' own queues, only while there is room.
        {
            let queues = sync.queues.lock();
            'partitions: for q in queues.values() {
                loop {
                    if sync.state.lock().undelivered() >= sync.high {
                        break 'partitions;
                    }
                    let Some(r) = q.poll(Duration::ZERO) else {
                        break;
                    };
                    took += 1;
                    take(&kc, &sync, r, timeout, every, &mut failures);
                }
            }
        }
        // Due retry records become deliverable.
        let now = now_ms();
        let mut st = sync.state.lock();
        if st.delayed.iter().any(|r| r.not_before <= now) {
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut st.delayed)
                .into_iter()
                .partition(|r| r.not_before <= now);
            st.delayed = later;
            st.ready.extend(due);
            drop(st);
            sync.ready.notify_waiters();
            st = sync.state.lock();
        }
        st.full = st.undelivered() >= sync.high;
        drop(st);
        if took == 0 {
            sync.wake.wait(every);
        }
    }
    // The queues hold the consumer: it is closed only once they are gone.
    sync.queues.lock().clear();
}

/// Takes what a queue gave: a record into the buffer, or an error to report.
fn take(
    kc: &Kc,
    sync: &Board,
    r: rdkafka::error::KafkaResult<BorrowedMessage<'_>>,
    timeout: Duration,
    every: Duration,
    failures: &mut u32,
) {
    match r {
        Ok(m) => {
            *failures = 0;
            let src = match m.topic() {
                t if t == kc.context().topics[0] => Src::Main,
                _ => Src::Retry,
            };
            let tp = (src, m.partition());
            // A partition's first record: what earlier owners handed out and never
            // committed is read from the committed offset's metadata (a blocking request,
            // on this thread, before the lock).
            let taken = if sync.state.lock().trackers.contains_key(&tp) {
                None
            } else {
                Some(committed_journal(kc, m.topic(), m.partition(), timeout))
            };
            let mut st = sync.state.lock();
            if let Some(journal) = taken {
                st.next_gen += 1;
                let g = st.next_gen;
                st.trackers.insert(tp, (g, OffsetTracker::new()));
                // Version 1, committed 0: the first hand-out commits it.
                st.journals.insert(tp, (journal, 1, 0));
            }
            let generation = st.trackers.get(&tp).map_or(0, |(g, _)| *g);
            let mut rec = rec_of(&m, src, generation);
            if let Some((_, t)) = st.trackers.get_mut(&tp) {
                t.received(rec.offset);
            }
            let extra = st
                .journals
                .get(&tp)
                .map_or(0, |(j, _, _)| j.extra(rec.offset));
            rec.attempts = rec.attempts.saturating_add(extra);
            st.read += 1;
            if rec.not_before > now_ms() {
                st.delayed.push(rec);
            } else {
                st.ready.push_back(rec);
                drop(st);
                sync.ready.notify_waiters();
            }
        }
        Err(e) => {
            let err = classify("consuming", &e);
            tracing::warn!(error = %err, "kafka: poll failed");
            sync.state.lock().error = Some(err);
            sync.ready.notify_waiters();
            std::thread::sleep(
                backoff::Backoff {
                    base: every,
                    cap: Duration::from_secs(2),
                }
                .delay(*failures),
            );
            *failures = failures.saturating_add(1);
        }
    }
}

impl KafkaConsumer {
    pub(crate) async fn start(
        inner: Arc<Inner>,
        opts: ConsumerOptions,
    ) -> Result<KafkaConsumer, BrokerError> {
        if opts.prefetch == 0 {
            return Err(BrokerError::Invalid {
                backend: NAME,
                reason: "prefetch must be at least 1".into(),
            });
        }
        let token: Arc<str> = format!("c{:016x}", backoff::random_u64()).into();
        let sync = Arc::new(Board {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            ready: Notify::new(),
            wake: Arc::new(Wake::default()),
            queues: Mutex::new(HashMap::new()),
            high: high_water(opts.prefetch),
        });
        let ctx = Ctx {
            sync: sync.clone(),
            topics: [inner.topic.clone(), inner.retry.clone()],
            grace: inner.opts.revoke_grace,
            kc: OnceLock::new(),
        };
        let mut c = inner.endpoint.config();
        c.set("group.id", &inner.opts.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set(
                "session.timeout.ms",
                inner.opts.session_timeout.as_millis().to_string(),
            );
        let user_set = |key: &str| inner.opts.client_config.iter().any(|(k, _)| k == key);
        if !user_set("partition.assignment.strategy") {
            c.set("partition.assignment.strategy", "cooperative-sticky");
        }
        if !user_set("max.poll.interval.ms") {
            c.set(
                "max.poll.interval.ms",
                client::max_poll_interval(&inner.opts)
                    .as_millis()
                    .to_string(),
            );
        }
        let mut kc: Kc = c
            .create_with_context(ctx)
            .map_err(|e| classify("creating the consumer", &e))?;
        let wake = sync.wake.clone();
        kc.set_nonempty_callback(move || wake.signal());
        let kc = Arc::new(kc);
        let _ = kc.context().kc.set(Arc::downgrade(&kc));
        kc.subscribe(&[&inner.topic, &inner.retry])
            .map_err(|e| classify("subscribing", &e))?;
        let closed = Arc::new(AtomicBool::new(false));
        let pump = {
            let (kc, sync, closed) = (kc.clone(), sync.clone(), closed.clone());
            let every = inner.opts.poll_interval;
            let timeout = inner.opts.request_timeout;
            std::thread::Builder::new()
                .name("ackline-kafka-pump".into())
                .spawn(move || pump(kc, sync, closed, every, timeout))
                .map_err(|e| BrokerError::Fatal {
                    backend: NAME,
                    reason: format!("starting the consumer thread: {e}"),
                })?
        };
        let shared = Arc::new(Shared {
            inner,
            opts,
            token,
            kc: Mutex::new(Some(kc)),
            sync,
            commit_lock: tokio::sync::Mutex::new(()),
            receiving: tokio::sync::Mutex::new(()),
            closed,
        });
        let reaper = tokio::spawn(reap_loop(shared.clone()));
        Ok(KafkaConsumer {
            shared,
            pump: Some(pump),
            reaper: Some(reaper),
        })
    }
}

impl Shared {
    /// Takes up to `n` ready records whose hand-out is committed in their journal as
    /// deliveries; those past `max_attempts` (a crash loop) go to the dead-letter topic
    /// instead (the reaper writes them).
    fn hand_out(&self, n: usize) -> Vec<Delivery> {
        let mut st = self.sync.state.lock();
        let lease_end = Instant::now() + self.opts.lease;
        let max_attempts = self.inner.opts.max_attempts;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let covered = st.ready.front().is_some_and(|r| {
                st.journals
                    .get(&r.tp)
                    .is_some_and(|(j, v, c)| v <= c && r.offset < j.end())
            });
            if !covered {
                break;
            }
            let Some(rec) = st.ready.pop_front() else {
                break;
            };
            let attempt = rec.attempts.saturating_add(1);
            if attempt > max_attempts {
                st.overdue.push(rec);
                continue;
            }
            st.next_key += 1;
            let key = st.next_key;
            out.push(Delivery {
                tag: Tag {
                    key,
                    attempt,
                    token: Some(self.token.clone()),
                },
                id: rec.id.clone(),
                headers: rec.headers.clone(),
                payload: rec.payload.clone(),
                enqueued_at: rec.enqueued_at,
            });
            st.held.insert(
                key,
                Held {
                    rec,
                    attempt,
                    deadline: lease_end,
                    settling: false,
                },
            );
        }
        let c = &self.inner.counters;
        c.add(&c.delivered, out.len());
        c.add(&c.in_flight, out.len());
        c.add(
            &c.redelivered,
            out.iter().filter(|d| d.attempt() > 1).count(),
        );
        out
    }

    /// Dead-letters records that arrived past `max_attempts`; those whose copy failed stay
    /// queued for the next round.
    async fn dead_letter_overdue(self: &Arc<Self>) -> Result<(), BrokerError> {
        let recs = std::mem::take(&mut self.sync.state.lock().overdue);
        if recs.is_empty() {
            return Ok(());
        }
        let jobs: Vec<Job> = recs
            .into_iter()
            .map(|rec| {
                let error = rec.error.clone().unwrap_or_else(|| UNSETTLED.to_owned());
                let copy = self.dead_copy(&rec, rec.attempts, REASON_MAX_ATTEMPTS, &error);
                Job {
                    rec,
                    copy: Some(copy),
                }
            })
            .collect();
        self.write_and_settle(jobs, |st| &mut st.overdue).await
    }

    /// Writes each job's copy; settles the offsets of the records whose copy the broker
    /// confirmed (counting those that went to the dead-letter topic) and puts the others back
    /// in the list `failed` picks, to be tried again; then wakes waiters and commits. Returns
    /// the first write error.
    async fn write_and_settle(
        self: &Arc<Self>,
        jobs: Vec<Job>,
        failed: impl Fn(&mut State) -> &mut Vec<Rec>,
    ) -> Result<(), BrokerError> {
        let outcomes = self.write(&jobs).await;
        let mut first_err = None;
        {
            let mut st = self.sync.state.lock();
            for (j, r) in jobs.into_iter().zip(outcomes) {
                match r {
                    Ok(()) => {
                        st.settle_offset(&j.rec);
                        if j.copy.as_ref().is_some_and(|c| c.topic == self.inner.dlq) {
                            self.inner
                                .counters
                                .add(&self.inner.counters.dead_lettered, 1);
                        }
                    }
                    Err(e) => {
                        first_err.get_or_insert(e);
                        failed(&mut st).push(j.rec);
                    }
                }
            }
        }
        self.sync.changed.notify_all();
        self.commit().await?;
        first_err.map_or(Ok(()), Err)
    }

    fn kc(&self) -> Result<Arc<Kc>, BrokerError> {
        self.kc
            .lock()
            .clone()
            .ok_or_else(|| client::unavailable("the consumer is closed"))
    }

    fn topic(&self, src: Src) -> &str {
        match src {
            Src::Main => &self.inner.topic,
            Src::Retry => &self.inner.retry,
        }
    }

    /// The copy that sends `rec` (delivered `attempt` times in all) back for a retry at
    /// `not_before`, or to the dead-letter topic at `max_attempts`.
    fn retry_or_dead(&self, rec: &Rec, attempt: u32, not_before: u64, error: &str) -> Record {
        if attempt >= self.inner.opts.max_attempts {
            self.dead_copy(rec, attempt, REASON_MAX_ATTEMPTS, error)
        } else {
            let now = now_ms();
            Record {
                topic: self.inner.retry.clone(),
                key: rec.id.clone(),
                headers: rec.headers.clone(),
                meta: wire::Meta {
                    id: Some(rec.id.clone()),
                    enqueued_at: Some(rec.enqueued_at),
                    attempts: attempt,
                    not_before: Some(not_before),
                    first_failure: Some(rec.first_failure.unwrap_or(now)),
                    error: Some(error.to_owned()),
                    ..wire::Meta::default()
                },
                payload: rec.payload.clone(),
            }
        }
    }

    fn dead_copy(&self, rec: &Rec, attempts: u32, reason: &str, error: &str) -> Record {
        let now = now_ms();
        Record {
            topic: self.inner.dlq.clone(),
            key: rec.id.clone(),
            headers: rec.headers.clone(),
            meta: wire::Meta {
                id: Some(rec.id.clone()),
                enqueued_at: Some(rec.enqueued_at),
                attempts,
                first_failure: Some(rec.first_failure.unwrap_or(now)),
                last_failure: Some(now),
                reason: Some(reason.to_owned()),
                error: Some(error.to_owned()),
                ..wire::Meta::default()
            },
            payload: rec.payload.clone(),
        }
    }

    /// Writes the jobs' copies; returns, per job, whether its copy (if any) is confirmed.
    async fn write(&self, jobs: &[Job]) -> Vec<Result<(), BrokerError>> {
        let copies: Vec<Record> = jobs.iter().filter_map(|j| j.copy.clone()).collect();
        let mut outcomes = self.inner.producer.send_each(copies).await.into_iter();
        jobs.iter()
            .map(|j| match j.copy {
                Some(_) => outcomes
                    .next()
                    .unwrap_or_else(|| Err(client::unavailable("a copy went missing"))),
                None => Ok(()),
            })
            .collect()
    }

    /// Commits every tracker's settled prefix, and every journal changed since its last commit
    /// (as the metadata of the partition's offset), one commit at a time.
    async fn commit(self: &Arc<Self>) -> Result<(), BrokerError> {
        let _one = self.commit_lock.lock().await;
        let mut tpl = TopicPartitionList::new();
        let mut planned = Vec::new();
        {
            let st = self.sync.state.lock();
            for (&tp, (generation, t)) in &st.trackers {
                let advance = t.committable();
                let Some(o) = advance.or(t.position()) else {
                    continue;
                };
                let (meta, version, dirty) = match st.journals.get(&tp) {
                    Some((j, v, c)) => {
                        let mut j = j.clone();
                        j.committed(o);
                        (j.encode(), *v, v > c)
                    }
                    None => (String::new(), 0, false),
                };
                if advance.is_none() && !dirty {
                    continue;
                }
                let mut e = tpl.add_partition(self.topic(tp.0), tp.1);
                e.set_offset(Offset::Offset(o))
                    .map_err(|e| classify("commit", &e))?;
                e.set_metadata(meta);
                planned.push((tp, *generation, o, advance.is_some(), version));
            }
        }
        if planned.is_empty() {
            return Ok(());
        }
        let kc = self.kc()?;
        client::blocking(move || {
            kc.commit(&tpl, CommitMode::Sync)
                .map_err(|e| classify("committing offsets", &e))
        })
        .await?;
        let mut st = self.sync.state.lock();
        for (tp, generation, o, advance, version) in planned {
            if !matches!(st.trackers.get(&tp), Some((g, _)) if *g == generation) {
                continue;
            }
            if advance && let Some((_, t)) = st.trackers.get_mut(&tp) {
                t.committed(o);
            }
            if let Some((j, _, c)) = st.journals.get_mut(&tp) {
                j.committed(o);
                *c = (*c).max(version);
            }
        }
        drop(st);
        self.sync.changed.notify_all();
        Ok(())
    }

    /// Releases fenced records: copies with attempts + 1 (or dead letters), then commits.
    /// Those whose copy failed stay queued for the next round.
    async fn release(self: &Arc<Self>, recs: Vec<Rec>, bump: bool) -> Result<(), BrokerError> {
        if recs.is_empty() {
            return Ok(());
        }
        let jobs: Vec<Job> = recs
            .into_iter()
            .map(|rec| {
                let attempts = rec.attempts + u32::from(bump);
                let copy = if bump {
                    self.retry_or_dead(&rec, attempts, 0, UNSETTLED)
                } else {
                    let mut c = self.retry_or_dead(&rec, 0, rec.not_before, "");
                    // Never delivered: handed back as it was.
                    c.meta.attempts = rec.attempts;
                    c.meta.first_failure = rec.first_failure;
                    c.meta.error = rec.error.clone();
                    c
                };
                Job {
                    rec,
                    copy: Some(copy),
                }
            })
            .collect();
        self.write_and_settle(jobs, |st| &mut st.releases).await
    }

    /// Fences and releases every held delivery and every buffered record (close, drop).
    async fn release_all(self: &Arc<Self>) {
        let (held, buffered) = {
            let mut st = self.sync.state.lock();
            let held: Vec<(u64, Held)> = st.held.drain().collect();
            let mut buffered: Vec<Rec> = st.ready.drain(..).collect();
            buffered.append(&mut st.delayed);
            buffered.append(&mut st.releases);
            // Past max_attempts: handed back as they are; the next reader dead-letters them.
            buffered.append(&mut st.overdue);
            for (k, h) in &held {
                st.ended.gone(*k, h.attempt);
            }
            self.inner.counters.in_flight_sub(held.len());
            (held, buffered)
        };
        let held: Vec<Rec> = held.into_iter().map(|(_, h)| h.rec).collect();
        let backoff = backoff::Backoff {
            base: self.inner.opts.poll_interval,
            cap: Duration::from_secs(1),
        };
        if let Err(e) = self.release(held, true).await {
            tracing::warn!(error = %e, "kafka: releasing deliveries at close failed");
        }
        if let Err(e) = self.release(buffered, false).await {
            tracing::warn!(error = %e, "kafka: handing back buffered records at close failed");
        }
        // Copies that failed: a few more tries, then the group redelivers them.
        for n in 0..3 {
            let again = std::mem::take(&mut self.sync.state.lock().releases);
            if again.is_empty() {
                break;
            }
            tokio::time::sleep(backoff.delay(n)).await;
            let _ = self.release(again, true).await;
        }
    }
}

/// Releases expired leases and retries failed releases and commits, every `poll_interval`.
async fn reap_loop(shared: Arc<Shared>) {
    let every = shared.inner.opts.poll_interval;
    while !shared.closed.load(Ordering::Acquire) {
        tokio::time::sleep(every).await;
        let now = Instant::now();
        let recs = {
            let mut st = shared.sync.state.lock();
            let expired: Vec<u64> = st
                .held
                .iter()
                .filter(|(_, h)| !h.settling && h.deadline <= now)
                .map(|(k, _)| *k)
                .collect();
            let mut recs = std::mem::take(&mut st.releases);
            for k in &expired {
                if let Some(h) = st.held.remove(k) {
                    st.ended.gone(*k, h.attempt);
                    recs.push(h.rec);
                }
            }
            let c = &shared.inner.counters;
            c.add(&c.lease_expired, expired.len());
            c.in_flight_sub(expired.len());
            recs
        };
        if let Err(e) = shared.dead_letter_overdue().await {
            tracing::warn!(error = %e, "kafka: dead-lettering records past max_attempts failed; retrying");
        }
        if !recs.is_empty() {
            shared.sync.changed.notify_all();
            if let Err(e) = shared.release(recs, true).await {
                tracing::warn!(error = %e, "kafka: releasing expired deliveries failed; retrying");
            }
        } else if let Err(e) = shared.commit().await {
            tracing::warn!(error = %e, "kafka: commit failed; retrying");
        }
    }
}

impl ackline_broker::Consumer for KafkaConsumer {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BrokerError> {
        let s = &self.shared;
        let _one = s.receiving.lock().await;
        let deadline = Instant::now() + wait;
        loop {
            let notified = s.sync.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let n = {
                let mut st = s.sync.state.lock();
                if let Some(e) = st.error.take() {
                    return Err(e);
                }
                let room = s.opts.prefetch.saturating_sub(st.held.len());
                let n = max.min(room).min(st.ready.len());
                // Record the hand-out in the partitions' journals first.
                let mut ends: HashMap<Tp, i64> = HashMap::new();
                for r in st.ready.iter().take(n) {
                    let e = ends.entry(r.tp).or_insert(r.offset + 1);
                    *e = (*e).max(r.offset + 1);
                }
                for (tp, end) in ends {
                    if let Some((j, v, _)) = st.journals.get_mut(&tp)
                        && j.hand_out(end)
                    {
                        *v += 1;
                    }
                }
                n
            };
            if n > 0 {
                // Handed out only once the journals say so durably.
                s.commit().await?;
                let out = s.hand_out(n);
                // Room to read ahead again: now, not when the pump's wait runs out.
                s.sync.wake.signal();
                if !out.is_empty() {
                    return Ok(out);
                }
                continue;
            }
            if s.closed.load(Ordering::Acquire)
                || tokio::time::timeout_at(deadline, notified).await.is_err()
            {
                return Ok(Vec::new());
            }
        }
    }

    async fn settle(
        &self,
        items: Vec<(Tag, Settlement)>,
    ) -> Result<Vec<Result<(), SettleError>>, BrokerError> {
        let s = &self.shared;
        let now = now_ms();
        let mut results: Vec<Option<Result<(), SettleError>>> = vec![None; items.len()];
        let mut jobs = Vec::new(); // (index, key, attempt, Job)
        {
            let mut st = s.sync.state.lock();
            let State { held, ended, .. } = &mut *st;
            for (i, (tag, how)) in items.into_iter().enumerate() {
                let h = match fence::admit(held, ended, &tag, &s.token, true) {
                    Ok(h) => h,
                    Err(e) => {
                        results[i] = Some(Err(e));
                        continue;
                    }
                };
                let copy = match how.bounded(MAX_REASON_BYTES) {
                    Settlement::Extend { lease } => {
                        h.deadline = Instant::now() + lease;
                        results[i] = Some(Ok(()));
                        continue;
                    }
                    Settlement::Ack => None,
                    Settlement::Nack { delay, error } => {
                        let due = now
                            .saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
                        Some(s.retry_or_dead(&h.rec, h.attempt, due, &error))
                    }
                    Settlement::Reject { reason } => {
                        let last = h.rec.error.clone().unwrap_or_else(|| reason.clone());
                        Some(s.dead_copy(&h.rec, h.attempt, &reason, &last))
                    }
                };
                h.settling = true;
                jobs.push((
                    i,
                    tag.key,
                    Job {
                        rec: h.rec.clone(),
                        copy,
                    },
                ));
            }
        }
        let outcomes = s
            .write(&jobs.iter().map(|(_, _, j)| j).cloned().collect::<Vec<_>>())
            .await;
        let mut failed = None;
        {
            let mut st = s.sync.state.lock();
            let c = &s.inner.counters;
            for ((i, key, job), r) in jobs.into_iter().zip(outcomes) {
                if let Err(e) = r {
                    if let Some(h) = st.held.get_mut(&key) {
                        h.settling = false;
                    }
                    failed.get_or_insert(e);
                    continue;
                }
                let Some(h) = st.held.remove(&key) else {
                    // Fenced meanwhile (revoked): its next owner redelivers the original.
                    results[i] = Some(Err(SettleError::Stale {
                        attempt: job.rec.attempts + 1,
                        current: job.rec.attempts + 2,
                    }));
                    continue;
                };
                st.ended.settled(key);
                st.settle_offset(&h.rec);
                c.in_flight_sub(1);
                match &job.copy {
                    None => c.add(&c.acked, 1),
                    Some(r) if r.topic == s.inner.dlq => c.add(&c.dead_lettered, 1),
                    Some(_) => c.add(&c.nacked, 1),
                }
                results[i] = Some(Ok(()));
            }
        }
        s.sync.changed.notify_all();
        s.sync.ready.notify_waiters();
        if let Some(e) = failed {
            return Err(e);
        }
        s.commit().await?;
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or(Err(SettleError::Unknown)))
            .collect())
    }

    async fn close(mut self) {
        self.shutdown().await;
    }
}

impl KafkaConsumer {
    /// What the consumer holds in memory now: deliveries held, records read ahead, whether
    /// the assignment is paused (see the module doc's bound).
    #[must_use]
    pub fn buffer(&self) -> Buffer {
        let st = self.shared.sync.state.lock();
        Buffer {
            held: st.held.len(),
            undelivered: st.undelivered(),
            full: st.full,
            read: st.read,
            rounds: st.rounds,
        }
    }

    async fn shutdown(&mut self) {
        shutdown(self.shared.clone(), self.pump.take(), self.reaper.take()).await;
    }
}

/// Stops the reaper, releases what the consumer holds, stops the pump thread and closes the
/// librdkafka consumer (it leaves the group).
async fn shutdown(s: Arc<Shared>, pump: Option<ThreadHandle<()>>, reaper: Option<JoinHandle<()>>) {
    s.closed.store(true, Ordering::Release);
    s.sync.ready.notify_waiters();
    s.sync.wake.signal();
    if let Some(r) = reaper {
        let _ = r.await;
    }
    s.release_all().await;
    // The pump stops within one poll; leaving the group (rd_kafka_consumer_close in the
    // consumer's drop, which serves the last revocation) blocks, so both happen off the
    // runtime's threads.
    let kc = s.kc.lock().take();
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(p) = pump {
            let _ = p.join();
        }
        drop(kc);
    })
    .await;
}

impl Drop for KafkaConsumer {
    fn drop(&mut self) {
        let Some(pump) = self.pump.take() else {
            return; // closed
        };
        let (shared, reaper) = (self.shared.clone(), self.reaper.take());
        shared.closed.store(true, Ordering::Release);
        shared.sync.wake.signal();
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                // A runtime shutting down drops this task unrun: the pump then stops by the
                // flag, and the group redelivers what was held after the session timeout.
                h.spawn(shutdown(shared, Some(pump), reaper));
            }
            Err(_) => {
                let _ = pump.join();
            }
        }
    }
}
