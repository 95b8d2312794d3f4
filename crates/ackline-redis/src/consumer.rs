//! A consumer: one member of the stream's consumer group, with client-side leases.
//!
//! How each verb maps:
//! - `receive` reads new entries with `XREADGROUP ... >` on the consumer's own connection
//!   (blocking at most `poll_interval` at a time, so the housekeeping below runs while it
//!   waits), at most `prefetch` held. Every `poll_interval` it also moves due delayed copies
//!   back into the stream (PROMOTE) and takes over entries idle longer than its lease
//!   (RECLAIM: `XAUTOCLAIM`), which is how a dead consumer's deliveries come back. Each
//!   delivery gets a fresh consumer-local `key` and its attempt: the entry's `attempts` field
//!   plus the PEL's delivery count.
//! - `Ack` → ACK script (`XACK` + `XDEL`), `Nack`, `Reject`, `Extend` → MOVE script (see
//!   [`crate::scripts`]); acks and moves of one `settle` go as two script calls in parallel, on
//!   the consumer's second connection (settlements and housekeeping), so they wait neither
//!   behind its blocking read nor behind publishers' pipelines.
//! - Lease expiry: a reaper task fences a delivery whose client-side deadline passed
//!   (`SettleError::Stale` from then on) and releases it with a MOVE (`l`): a copy with
//!   attempts + 1 goes to the back of the stream, so another consumer gets it at once; at
//!   `max_attempts` it is dead-lettered instead.
//! - A `settle` that fails with a `BrokerError` (connection lost: none of it is known to be
//!   done) fences its deliveries and hands them to the reaper, which releases them once Redis
//!   answers again (a release of one that was in fact settled finds it gone and does nothing).
//! - `close` releases every held delivery at once and removes the consumer from the group
//!   (only when it holds nothing); dropping the consumer does the same in a background task.
//! - A `receive` whose connection failed may have lost an `XREADGROUP` reply whose entries
//!   Redis already put in this consumer's PEL: the next `receive` claims those back
//!   (`XPENDING ... <self>` against what it holds, then `XCLAIM`), so they are redelivered now,
//!   not after a lease.
//!
//! Fencing: a tag is `(key, attempt, token = this consumer's name)`. Locally, a key already
//! settled is `AlreadySettled`, one fenced (lease expired, settlement failed) `Stale`, one never
//! issued `Unknown`; on Redis, every script checks owner and delivery count (`Stale` when the
//! entry was taken over since).
//!
//! Invariants:
//! - Held (handed out, unsettled) deliveries never exceed `prefetch`.
//! - A key is marked `settling` before any I/O; a concurrent settlement or the reaper skips it.
//! - Receives of one consumer run one at a time (the housekeeping cursor is theirs).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ackline_broker::fence::{self, Ended};
use ackline_broker::{
    BrokerError, ConsumerOptions, Delivery, MAX_REASON_BYTES, SettleError, Settlement, Tag,
};
use parking_lot::Mutex;
use redis::Value;
use redis::aio::ConnectionManager;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::Inner;
use crate::connection::{Backoff, NAME, random_u64};
use crate::entry::{self, Entry, array, int, malformed, text};
use crate::scripts::SCRIPTS;

/// The error recorded when a delivery ends without a settlement.
pub const UNSETTLED: &str =
    "delivery ended without a settlement (worker died, lease expired or connection lost)";

/// Most copies moved back from the delay set per poll.
const PROMOTE_LIMIT: usize = 1000;

/// Releases per MOVE script call.
const RELEASE_CHUNK: usize = 500;

/// How often (at most) other consumers' leftovers are removed from the group, and how long such
/// a consumer must have been idle, holding nothing.
const FORGET_EVERY: Duration = Duration::from_secs(60);
const FORGET_IDLE_MS: u64 = 3_600_000;

struct Held {
    eid: String,
    count: i64,
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

struct State {
    held: HashMap<u64, Held>,
    /// How deliveries no longer held ended (see [`ackline_broker::fence`]).
    done: Ended,
    next_key: u64,
    /// `(entry id, delivery count)` to release (fenced already).
    release: Vec<(String, i64)>,
    /// A receive failed: the next one looks for entries of its own that it never saw.
    resync: bool,
}

impl State {
    /// Fences held `key` and queues its release.
    fn fence(&mut self, key: u64) -> bool {
        match self.held.remove(&key) {
            Some(h) => {
                self.done.gone(key, h.attempt);
                self.release.push((h.eid, h.count));
                true
            }
            None => false,
        }
    }
}

/// What `receive` keeps between calls.
struct Housekeeping {
    cursor: String,
    last_claim: Option<Instant>,
    last_promote: Option<Instant>,
    last_forget: Option<Instant>,
}

struct Shared {
    inner: Arc<Inner>,
    opts: ConsumerOptions,
    name: Arc<str>,
    /// The blocking `XREADGROUP`'s connection.
    read: ConnectionManager,
    /// Settlements and housekeeping: its own connection, so that neither waits behind the
    /// blocking read nor behind the publishers' pipelines on the broker's connection (Redis
    /// serves a client's requests in order).
    work: ConnectionManager,
    state: Mutex<State>,
    reading: tokio::sync::Mutex<Housekeeping>,
    freed: Notify,
    closed: AtomicBool,
}

/// A Redis Streams consumer (see the module doc).
pub struct RedisConsumer {
    shared: Arc<Shared>,
    reaper: JoinHandle<()>,
}

impl std::fmt::Debug for RedisConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConsumer")
            .field("queue", &self.shared.inner.queue)
            .field("name", &self.shared.name)
            .field("opts", &self.shared.opts)
            .finish()
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A delay in whole ms, rounded up (redelivered no earlier than asked).
fn ceil_ms(d: Duration) -> u64 {
    u64::try_from(d.as_micros().div_ceil(1000)).unwrap_or(u64::MAX)
}

impl RedisConsumer {
    pub(crate) async fn start(
        inner: Arc<Inner>,
        opts: ConsumerOptions,
    ) -> Result<Self, BrokerError> {
        // Its own connection for the blocking read; requests time out after a block's length
        // on top of the command timeout.
        let read = inner.dial.manager(inner.opts.poll_interval).await?;
        let work = inner.dial.manager(Duration::ZERO).await?;
        let name: Arc<str> = Arc::from(format!(
            "ackline-{}-{:08x}",
            std::process::id(),
            random_u64() as u32
        ));
        let shared = Arc::new(Shared {
            inner,
            opts,
            name,
            read,
            work,
            state: Mutex::new(State {
                held: HashMap::new(),
                done: Ended::default(),
                next_key: 1,
                release: Vec::new(),
                resync: false,
            }),
            reading: tokio::sync::Mutex::new(Housekeeping {
                cursor: "0-0".into(),
                last_claim: None,
                last_promote: None,
                last_forget: None,
            }),
            freed: Notify::new(),
            closed: AtomicBool::new(false),
        });
        let reaper = tokio::spawn(reap_loop(shared.clone()));
        Ok(RedisConsumer { shared, reaper })
    }

    /// This consumer's name in the group (`XINFO CONSUMERS <q> <group>`).
    pub fn name(&self) -> &str {
        &self.shared.name
    }
}

impl Shared {
    fn backoff(&self) -> Backoff {
        Backoff {
            base: self.inner.opts.reconnect_base,
            cap: self.inner.opts.reconnect_cap,
        }
    }

    /// Turns entries read with their delivery counts into deliveries (held from now).
    fn admit(&self, got: Vec<(Entry, i64)>) -> Vec<Delivery> {
        let inner = &self.inner;
        let now = Instant::now();
        let mut out = Vec::with_capacity(got.len());
        let mut st = self.state.lock();
        for (mut e, count) in got {
            let at = e.attempts_before();
            let attempt = at.saturating_add(u32::try_from(count.max(1)).unwrap_or(u32::MAX));
            if attempt > inner.opts.max_attempts {
                // Another producer's entry claiming more attempts than allowed: the release
                // (MOVE `l`) dead-letters it.
                st.release.push((e.eid, count));
                continue;
            }
            let key = st.next_key;
            st.next_key += 1;
            out.push(Delivery {
                tag: Tag {
                    key,
                    attempt,
                    token: Some(self.name.clone()),
                },
                id: e.id(),
                headers: e.headers(),
                enqueued_at: e.enqueued_at(),
                payload: e.take_payload(),
            });
            st.held.insert(
                key,
                Held {
                    eid: e.eid,
                    count,
                    attempt,
                    deadline: now + self.opts.lease,
                    settling: false,
                },
            );
        }
        drop(st);
        let c = &inner.counters;
        c.add(&c.in_flight, out.len());
        c.add(&c.delivered, out.len());
        c.add(
            &c.redelivered,
            out.iter().filter(|d| d.attempt() > 1).count(),
        );
        out
    }

    /// Moves due delayed copies back, claims what dead consumers (or a lost reply) left, and
    /// now and then forgets consumers that are gone. Returns claimed deliveries.
    async fn housekeeping(
        &self,
        hk: &mut Housekeeping,
        room: usize,
    ) -> Result<Vec<Delivery>, BrokerError> {
        let inner = &self.inner;
        let poll = inner.opts.poll_interval;
        let now = Instant::now();
        let due = |t: Option<Instant>, every: Duration| t.is_none_or(|t| now >= t + every);
        let mut conn = self.work.clone();
        if due(hk.last_promote, poll) {
            hk.last_promote = Some(now);
            let _: Value = SCRIPTS
                .promote
                .key(&inner.queue)
                .key(&inner.delay)
                .arg(PROMOTE_LIMIT)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| inner.error("moving delayed messages back", &e))?;
        }
        let mut out = Vec::new();
        if self.state.lock().resync {
            out.extend(self.resync(room).await?);
            self.state.lock().resync = false;
        }
        let room = room.saturating_sub(out.len());
        if room > 0 && due(hk.last_claim, poll) {
            hk.last_claim = Some(now);
            let (cursor, got) = self
                .claim(
                    "auto",
                    ms(self.opts.lease),
                    room,
                    std::slice::from_ref(&hk.cursor),
                )
                .await?;
            hk.cursor = cursor;
            out.extend(self.admit(got));
        }
        if due(hk.last_forget, FORGET_EVERY) {
            hk.last_forget = Some(now);
            self.forget(false).await;
        }
        Ok(out)
    }

    /// RECLAIM: `XAUTOCLAIM` (`mode` `auto`, `args` = the cursor) or `XCLAIM` (`ids`, `args` =
    /// entry ids). Returns the next cursor and the entries with their delivery counts.
    async fn claim(
        &self,
        mode: &str,
        min_idle_ms: u64,
        count: usize,
        args: &[String],
    ) -> Result<(String, Vec<(Entry, i64)>), BrokerError> {
        let inner = &self.inner;
        let mut inv = SCRIPTS.reclaim.prepare_invoke();
        inv.key(&inner.queue)
            .key(&inner.dlq)
            .arg(&inner.opts.group)
            .arg(&*self.name)
            .arg(min_idle_ms)
            .arg(count.max(1))
            .arg(inner.opts.max_attempts)
            .arg(ackline_broker::REASON_MAX_ATTEMPTS)
            .arg(UNSETTLED)
            .arg(mode);
        for a in args {
            inv.arg(a);
        }
        let v: Value = inv
            .invoke_async(&mut self.work.clone())
            .await
            .map_err(|e| inner.error("claiming idle deliveries", &e))?;
        let bad = || BrokerError::Unavailable {
            backend: NAME,
            reason: "unexpected reply from the reclaim script".into(),
        };
        let mut a = entry::owned_array(v).ok_or_else(bad)?.into_iter();
        let cursor = a
            .next()
            .and_then(entry::owned_bytes)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(bad)?;
        let mut got = Vec::with_capacity(a.len());
        for item in a {
            let mut parts = entry::owned_array(item).ok_or_else(bad)?.into_iter();
            let (Some(eid), Some(count), Some(fields)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(bad());
            };
            let eid = entry::owned_bytes(eid)
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(bad)?;
            let count = int(&count).ok_or_else(bad)?;
            let fields = entry::field_pairs(fields).ok_or_else(bad)?;
            got.push((Entry { eid, fields }, count));
        }
        Ok((cursor, got))
    }

    /// Entries in this consumer's PEL that it does not hold (their `XREADGROUP` reply was lost
    /// with a connection): claimed back now.
    async fn resync(&self, room: usize) -> Result<Vec<Delivery>, BrokerError> {
        let inner = &self.inner;
        let v: Value = redis::cmd("XPENDING")
            .arg(&inner.queue)
            .arg(&inner.opts.group)
            .arg("-")
            .arg("+")
            // All of this consumer's entries (held ones included), not just `room` of them.
            .arg(self.opts.prefetch.max(1) * 2 + RELEASE_CHUNK)
            .arg(&*self.name)
            .query_async(&mut self.work.clone())
            .await
            .map_err(|e| inner.error("XPENDING", &e))?;
        let pel: Vec<String> = array(&v)
            .map(|a| {
                a.iter()
                    .filter_map(|p| array(p)?.first().and_then(text))
                    .collect()
            })
            .unwrap_or_default();
        let orphans: Vec<String> = {
            let st = self.state.lock();
            let known: HashSet<&str> = st
                .held
                .values()
                .map(|h| h.eid.as_str())
                .chain(st.release.iter().map(|(e, _)| e.as_str()))
                .collect();
            pel.into_iter()
                .filter(|e| !known.contains(e.as_str()))
                .take(room.max(1))
                .collect()
        };
        if orphans.is_empty() {
            return Ok(Vec::new());
        }
        tracing::info!(
            consumer = %self.name,
            n = orphans.len(),
            "claiming back deliveries whose reply was lost with the connection"
        );
        let (_, got) = self.claim("ids", 0, orphans.len(), &orphans).await?;
        Ok(self.admit(got))
    }

    /// FORGET: removes consumers that hold nothing and were idle for an hour (and this one
    /// when `me`). Best effort.
    async fn forget(&self, me: bool) {
        let inner = &self.inner;
        let r: redis::RedisResult<Value> = SCRIPTS
            .forget
            .key(&inner.queue)
            .arg(&inner.opts.group)
            .arg(&*self.name)
            .arg(if me { "1" } else { "0" })
            .arg(FORGET_IDLE_MS)
            .invoke_async(&mut self.work.clone())
            .await;
        if let Err(e) = r {
            tracing::debug!(error = %inner.error("forgetting consumers", &e), "not forgotten");
        }
    }

    /// MOVE script for `items` = (entry id, count, kind, delay ms, text). One result per item.
    async fn moves(
        &self,
        items: &[(String, i64, &str, u64, String)],
    ) -> Result<Vec<i64>, BrokerError> {
        let inner = &self.inner;
        let mut inv = SCRIPTS.moves.prepare_invoke();
        inv.key(&inner.queue)
            .key(&inner.dlq)
            .key(&inner.delay)
            .arg(&inner.opts.group)
            .arg(&*self.name)
            .arg(inner.opts.max_attempts)
            .arg(ackline_broker::REASON_MAX_ATTEMPTS);
        for (eid, count, kind, delay, text) in items {
            inv.arg(eid).arg(*count).arg(*kind).arg(*delay).arg(text);
        }
        let v: Value = inv
            .invoke_async(&mut self.work.clone())
            .await
            .map_err(|e| inner.error("settling", &e))?;
        codes(&v, items.len(), "the move script")
    }

    async fn acks(&self, items: &[(String, i64)]) -> Result<Vec<i64>, BrokerError> {
        let inner = &self.inner;
        let ids = items.iter().map(|(e, _)| stream_id(e));
        let lo = ids.clone().min().unwrap_or((0, 0));
        let hi = ids.max().unwrap_or((u64::MAX, u64::MAX));
        // This consumer holds at most `prefetch` entries (plus those being released).
        let limit = self.opts.prefetch.max(items.len()) + RELEASE_CHUNK;
        let mut inv = SCRIPTS.ack.prepare_invoke();
        inv.key(&inner.queue)
            .arg(&inner.opts.group)
            .arg(&*self.name)
            .arg(format!("{}-{}", lo.0, lo.1))
            .arg(format!("{}-{}", hi.0, hi.1))
            .arg(limit);
        for (eid, count) in items {
            inv.arg(eid).arg(*count);
        }
        let v: Value = inv
            .invoke_async(&mut self.work.clone())
            .await
            .map_err(|e| inner.error("acking", &e))?;
        codes(&v, items.len(), "the ack script")
    }

    /// Releases what is queued for release (MOVE `l`); on failure puts it back.
    async fn release_pending(&self) -> Result<usize, BrokerError> {
        let batch: Vec<(String, i64)> = {
            let mut st = self.state.lock();
            let n = st.release.len().min(RELEASE_CHUNK);
            st.release.drain(..n).collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        let items: Vec<(String, i64, &str, u64, String)> = batch
            .iter()
            .map(|(e, c)| (e.clone(), *c, "l", 0, UNSETTLED.to_owned()))
            .collect();
        match self.moves(&items).await {
            Ok(_) => {
                self.freed.notify_waiters();
                Ok(batch.len())
            }
            Err(e) => {
                self.state.lock().release.extend(batch);
                Err(e)
            }
        }
    }

    /// Fences every held delivery and releases them all (close and drop).
    async fn release_all(&self) {
        let n = {
            let mut st = self.state.lock();
            let keys: Vec<u64> = st.held.keys().copied().collect();
            keys.into_iter().filter(|k| st.fence(*k)).count()
        };
        self.inner.counters.in_flight_sub(n);
        let mut failures = 0u32;
        loop {
            match self.release_pending().await {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    failures += 1;
                    if failures >= 3 {
                        tracing::warn!(error = %e, consumer = %self.name,
                            "could not release held deliveries; they come back after the lease");
                        return;
                    }
                    tokio::time::sleep(self.backoff().delay(failures)).await;
                }
            }
        }
        self.forget(true).await;
    }
}

/// `(ms, seq)` of a stream entry id (`(0, 0)` for one that does not parse: the ack script
/// then looks such an entry up alone).
fn stream_id(eid: &str) -> (u64, u64) {
    let (ms, seq) = eid.split_once('-').unwrap_or((eid, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

fn codes(v: &Value, n: usize, what: &str) -> Result<Vec<i64>, BrokerError> {
    let out: Option<Vec<i64>> = array(v).map(|a| a.iter().filter_map(int).collect());
    match out {
        Some(c) if c.len() == n => Ok(c),
        _ => Err(BrokerError::Unavailable {
            backend: NAME,
            reason: malformed(what, v),
        }),
    }
}

/// Fences deliveries whose lease ended and releases them (and what failed settlements left).
async fn reap_loop(shared: Arc<Shared>) {
    let tick = (shared.opts.lease / 4)
        .min(shared.inner.opts.poll_interval)
        .max(Duration::from_millis(10));
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(tick).await;
        if shared.closed.load(Ordering::SeqCst) {
            return;
        }
        let expired = {
            let mut st = shared.state.lock();
            let now = Instant::now();
            let keys: Vec<u64> = st
                .held
                .iter()
                .filter(|(_, h)| !h.settling && h.deadline <= now)
                .map(|(k, _)| *k)
                .collect();
            keys.into_iter().filter(|k| st.fence(*k)).count()
        };
        if expired > 0 {
            let c = &shared.inner.counters;
            c.in_flight_sub(expired);
            c.add(&c.lease_expired, expired);
        }
        loop {
            match shared.release_pending().await {
                Ok(0) => {
                    failures = 0;
                    break;
                }
                Ok(_) => failures = 0,
                Err(e) => {
                    let wait = shared.backoff().delay(failures);
                    failures += 1;
                    tracing::warn!(error = %e, ?wait, "releasing deliveries failed; retrying");
                    tokio::time::sleep(wait).await;
                    break;
                }
            }
        }
    }
}

/// Records a script's answer for held `key`: `0` done; `-1` no longer pending; `n > 0` the
/// entry's delivery count now (another consumer's delivery: its attempt is this one's minus
/// this count plus `n`).
fn outcome(
    st: &mut State,
    key: u64,
    attempt: u32,
    count: i64,
    code: i64,
) -> Result<(), SettleError> {
    st.held.remove(&key);
    if code == 0 {
        st.done.settled(key);
        return Ok(());
    }
    st.done.gone(key, attempt);
    let current = if code > 0 {
        u32::try_from(i64::from(attempt) - count + code).unwrap_or(attempt + 1)
    } else {
        attempt + 1
    };
    Err(SettleError::Stale { attempt, current })
}

enum Plan {
    Ack,
    Move(&'static str, u64, String),
}

impl ackline_broker::Consumer for RedisConsumer {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BrokerError> {
        let sh = &self.shared;
        let inner = &sh.inner;
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + wait;
        let mut hk = sh.reading.lock().await;
        loop {
            let notified = sh.freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let room = sh
                .opts
                .prefetch
                .max(1)
                .saturating_sub(sh.state.lock().held.len());
            let n = max.min(room);
            if n == 0 {
                // Wait for a settlement to make room.
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return Ok(Vec::new());
                }
                continue;
            }
            let claimed = match sh.housekeeping(&mut hk, n).await {
                Ok(c) => c,
                Err(e) => {
                    sh.state.lock().resync = true;
                    return Err(e);
                }
            };
            if !claimed.is_empty() {
                return Ok(claimed);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let block = ms(left.min(inner.opts.poll_interval));
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(&inner.opts.group)
                .arg(&*sh.name)
                .arg("COUNT")
                .arg(n);
            if block > 0 {
                cmd.arg("BLOCK").arg(block);
            }
            cmd.arg("STREAMS").arg(&inner.queue).arg(">");
            let r: redis::RedisResult<Value> = cmd.query_async(&mut sh.read.clone()).await;
            let v = match r {
                Ok(v) => v,
                Err(e) if e.code() == Some("NOGROUP") || e.to_string().contains("NOGROUP") => {
                    // The stream was deleted (or Redis lost it): create it again.
                    tracing::warn!(queue = %inner.queue, "stream or group missing: creating it");
                    inner.ensure_group().await?;
                    continue;
                }
                Err(e) => {
                    sh.state.lock().resync = true;
                    return Err(inner.error("XREADGROUP", &e));
                }
            };
            let entries = entry::read_reply(v).ok_or_else(|| {
                sh.state.lock().resync = true;
                BrokerError::Unavailable {
                    backend: NAME,
                    reason: "unexpected reply to XREADGROUP".into(),
                }
            })?;
            let got = sh.admit(entries.into_iter().map(|e| (e, 1)).collect());
            if !got.is_empty() {
                return Ok(got);
            }
            if Instant::now() >= deadline {
                return Ok(Vec::new());
            }
        }
    }

    async fn settle(
        &self,
        items: Vec<(Tag, Settlement)>,
    ) -> Result<Vec<Result<(), SettleError>>, BrokerError> {
        let sh = &self.shared;
        let inner = &sh.inner;
        let n = items.len();
        let mut results: Vec<Option<Result<(), SettleError>>> = vec![None; n];
        // (index, key, entry id, count, attempt, plan)
        let mut acks: Vec<(usize, u64, String, i64, u32)> = Vec::new();
        let mut moves: Vec<(usize, u64, String, i64, u32, Plan)> = Vec::new();
        {
            let mut st = sh.state.lock();
            for (i, (tag, how)) in items.into_iter().enumerate() {
                let st = &mut *st;
                let h = match fence::admit(&mut st.held, &st.done, &tag, &sh.name, false) {
                    Ok(h) => h,
                    Err(e) => {
                        results[i] = Some(Err(e));
                        continue;
                    }
                };
                let plan = match how.bounded(MAX_REASON_BYTES) {
                    Settlement::Ack => Plan::Ack,
                    Settlement::Extend { lease } => Plan::Move("x", ms(lease), String::new()),
                    Settlement::Nack { delay, error } => Plan::Move("n", ceil_ms(delay), error),
                    Settlement::Reject { reason } => Plan::Move("r", 0, reason),
                };
                let (eid, count, attempt) = (h.eid.clone(), h.count, h.attempt);
                match plan {
                    Plan::Ack => {
                        h.settling = true;
                        acks.push((i, tag.key, eid, count, attempt));
                    }
                    Plan::Move(kind, d, text) => {
                        if kind != "x" {
                            h.settling = true;
                        }
                        moves.push((i, tag.key, eid, count, attempt, Plan::Move(kind, d, text)));
                    }
                }
            }
        }
        let ack_args: Vec<(String, i64)> = acks.iter().map(|a| (a.2.clone(), a.3)).collect();
        let move_args: Vec<(String, i64, &str, u64, String)> = moves
            .iter()
            .map(|m| match &m.5 {
                Plan::Move(kind, d, text) => (m.2.clone(), m.3, *kind, *d, text.clone()),
                Plan::Ack => (m.2.clone(), m.3, "l", 0, String::new()),
            })
            .collect();
        let (acked, moved) = tokio::join!(
            async {
                if ack_args.is_empty() {
                    Ok(Vec::new())
                } else {
                    sh.acks(&ack_args).await
                }
            },
            async {
                if move_args.is_empty() {
                    Ok(Vec::new())
                } else {
                    sh.moves(&move_args).await
                }
            }
        );
        let (acked, moved) = match (acked, moved) {
            (Ok(a), Ok(m)) => (a, m),
            (Err(e), _) | (_, Err(e)) => {
                // None of it is known to be done: fence what was to be settled and let the
                // reaper release it once Redis answers (a release of one that was in fact
                // settled finds nothing to do). Extends just stay as they were.
                let mut st = sh.state.lock();
                let mut fenced = 0;
                for key in acks.iter().map(|a| a.1).chain(
                    moves
                        .iter()
                        .filter(|m| !matches!(m.5, Plan::Move("x", ..)))
                        .map(|m| m.1),
                ) {
                    if st.fence(key) {
                        fenced += 1;
                    }
                }
                drop(st);
                inner.counters.in_flight_sub(fenced);
                return Err(e);
            }
        };
        let now = Instant::now();
        let max = inner.opts.max_attempts;
        let mut st = sh.state.lock();
        let (mut settled, mut n_acked, mut n_nacked, mut n_dead) = (0, 0, 0, 0);
        for ((i, key, _, count, attempt), code) in acks.into_iter().zip(acked) {
            settled += 1;
            let r = outcome(&mut st, key, attempt, count, code);
            n_acked += usize::from(r.is_ok());
            results[i] = Some(r);
        }
        for ((i, key, _, count, attempt, plan), code) in moves.into_iter().zip(moved) {
            match plan {
                Plan::Move("x", lease, _) => {
                    if code == 0 {
                        if let Some(h) = st.held.get_mut(&key) {
                            h.deadline = now + Duration::from_millis(lease);
                        }
                        results[i] = Some(Ok(()));
                    } else {
                        settled += 1;
                        results[i] = Some(outcome(&mut st, key, attempt, count, code));
                    }
                }
                Plan::Move(kind, ..) => {
                    settled += 1;
                    let r = outcome(&mut st, key, attempt, count, code);
                    if r.is_ok() {
                        if kind == "r" || attempt >= max {
                            n_dead += 1;
                        } else {
                            n_nacked += 1;
                        }
                    }
                    results[i] = Some(r);
                }
                Plan::Ack => {}
            }
        }
        drop(st);
        let c = &inner.counters;
        c.in_flight_sub(settled);
        c.add(&c.acked, n_acked);
        c.add(&c.nacked, n_nacked);
        c.add(&c.dead_lettered, n_dead);
        if settled > 0 {
            sh.freed.notify_waiters();
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or(Err(SettleError::Unknown)))
            .collect())
    }

    async fn close(self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.reaper.abort();
        self.shared.release_all().await;
    }
}

impl Drop for RedisConsumer {
    fn drop(&mut self) {
        self.reaper.abort();
        if self.shared.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        // Not closed: release what it holds in the background when a runtime is there;
        // otherwise other consumers take it over after the lease (XAUTOCLAIM).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let shared = self.shared.clone();
            rt.spawn(async move { shared.release_all().await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_round_up_to_whole_milliseconds() {
        assert_eq!(ceil_ms(Duration::ZERO), 0);
        assert_eq!(ceil_ms(Duration::from_micros(1)), 1);
        assert_eq!(ceil_ms(Duration::from_millis(800)), 800);
        assert_eq!(ceil_ms(Duration::from_micros(800_001)), 801);
    }

    #[test]
    fn stream_ids_order_numerically() {
        assert!(stream_id("10-0") > stream_id("9-5"));
        assert!(stream_id("9-10") > stream_id("9-9"));
        assert_eq!(stream_id("x"), (0, 0));
    }

    #[test]
    fn script_codes_must_match_the_items() {
        let v = Value::Array(vec![Value::Int(0), Value::Int(-1), Value::Int(3)]);
        assert_eq!(codes(&v, 3, "x").ok(), Some(vec![0, -1, 3]));
        assert!(codes(&v, 2, "x").is_err());
        assert!(codes(&Value::Nil, 0, "x").is_err());
    }
}
