//! A consumer: pull requests on its own inbox against the shared durable consumer, leases
//! kept by the client within the server's `AckWait`, settlements as JetStream acks.
//!
//! How each verb maps:
//! - `receive(max, wait)` asks for at most `min(max, prefetch - held)` messages: first a
//!   `no_wait` pull (the server sends what is there and ends the request at once), and, when
//!   nothing was there, a pull of one message that waits up to `wait`, followed by a `no_wait`
//!   pull for the rest. No pull request outlives the call by more than its expiry, so a
//!   consumer that stops asking is not sent deliveries it would only sit on. Each request has
//!   its own reply subject (`<inbox>.<n>`), so a request's end (status 404/408/409) is told
//!   apart from a late one's. A delivery whose attempt is already past `max_attempts` (a
//!   message that crashed its workers) is dead-lettered here instead of handed out.
//! - Attempt = the server's delivery count from the reply subject (`num_delivered`).
//! - `Ack` → `+ACK` ([`AckMode`]: each an AckSync request, or plain acks
//!   closed by one AckSync whose reply confirms them all).
//! - `Nack { delay }` → `-NAK {"delay": ns}` (AckSync); at `max_attempts` the delivery is
//!   dead-lettered instead. `Reject` → a confirmed copy to `<queue>-dlq`, then `+TERM`.
//! - `Extend { lease }` → the client-side lease ends `lease` from now, and `+WPI` (confirmed)
//!   restarts the server's `AckWait`.
//! - Lease expiry: a timer task sends `-NAK` for a delivery whose lease ended (redelivered at
//!   once, attempt + 1) and fences it; while a lease runs past the server's `AckWait`, the same
//!   task sends `+WPI` at half of it.
//! - `close`/drop → `-NAK` for every delivery held or received but not handed out, so they are
//!   redelivered at once (each counted as a delivery by the server: a known over-count, as on
//!   RabbitMQ); a killed process's deliveries come back after `AckWait` instead.
//!
//! Fencing: a tag is `(key, attempt, token = this consumer's id)`. A settlement for a key
//! whose lease expired, or whose server-side `AckWait` may have run out (counted from before
//! the pull request, or from before the last confirmed `+WPI`, less a margin), is `Stale` and
//! is not sent: the server may have redelivered it, and JetStream itself would apply an ack of
//! an old delivery to the new one. A key already settled is `AlreadySettled`; a key, token or
//! attempt this consumer never issued is `Unknown`. A settlement whose confirmation did not
//! come (connection lost) is `Stale` too: the server redelivers it unless it got it.
//!
//! Invariants:
//! - A delivery is terminated only after its dead-letter copy is confirmed.
//! - Each delivery is settled on the server at most once by this consumer: a key is marked
//!   `settling` before any I/O, and a concurrent settlement or lease expiry skips it.
//! - Held (handed out, unsettled) deliveries never exceed `prefetch`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ackline_broker::fence::{self, Ended};
use ackline_broker::{BrokerError, ConsumerOptions, Delivery, SettleError, Settlement, Tag};
use async_nats::{StatusCode, Subject, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::join_all;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::connection::{random_u64, unavailable};
use crate::dlq::{self, Original};
use crate::publish::publish_confirmed;
use crate::wire::{AckInfo, DeadFields, Envelope, now_ms};
use crate::{AckMode, Inner};

/// How many recent pull requests' send times a consumer remembers.
const REQUESTS_KEPT: usize = 64;

/// How long past its expiry a pull request's end is waited for (its status may be late).
const GRACE: Duration = Duration::from_secs(1);

/// The last error recorded when a message comes back without a nack (crash, lease,
/// connection).
pub(crate) const UNSETTLED: &str =
    "delivery ended without a settlement (worker died, lease expired or connection lost)";

const ACK: &[u8] = b"+ACK";
const NAK: &[u8] = b"-NAK";
const TERM: &[u8] = b"+TERM";
const PROGRESS: &[u8] = b"+WPI";

fn nak_with_delay(delay: Duration) -> Bytes {
    if delay.is_zero() {
        Bytes::from_static(NAK)
    } else {
        Bytes::from(format!("-NAK {{\"delay\":{}}}", delay.as_nanos()))
    }
}

/// A message received but not handed out yet.
struct Raw {
    msg: async_nats::Message,
    /// When the server may redeliver it at the earliest (its pull request's send time plus
    /// `AckWait`).
    server_end: Instant,
}

struct Held {
    reply: Subject,
    attempt: u32,
    lease_end: Instant,
    server_end: Instant,
    settling: bool,
    original: Original,
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
}

impl State {}

/// The inbox subscription and what was read from it but not handed out.
struct Reader {
    sub: Subscriber,
    next_request: u64,
    /// (request number, send time), most recent last.
    sent: VecDeque<(u64, Instant)>,
    /// The latest time a request may still deliver (its expiry plus [`GRACE`]).
    open_until: Option<Instant>,
    /// The send time of the earliest request that ended without its status (it may still
    /// deliver); forgotten once anything it delivers would be past `AckWait`.
    unfinished: Option<Instant>,
    buffer: VecDeque<Raw>,
}

impl Reader {
    fn sent_at(&self, request: u64) -> Option<Instant> {
        self.sent
            .iter()
            .rev()
            .find(|(n, _)| *n == request)
            .map(|(_, t)| *t)
    }
}

pub(crate) struct Shared {
    inner: Arc<Inner>,
    opts: ConsumerOptions,
    token: Arc<str>,
    inbox: String,
    reader: tokio::sync::Mutex<Option<Reader>>,
    state: Mutex<State>,
    room: Notify,
    closed: AtomicBool,
    /// How long before the server's `AckWait` runs out a delivery counts as possibly
    /// redelivered.
    margin: Duration,
}

/// A NATS JetStream consumer (see the module doc).
pub struct NatsConsumer {
    shared: Arc<Shared>,
    reaper: JoinHandle<()>,
}

impl std::fmt::Debug for NatsConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConsumer")
            .field("queue", &self.shared.inner.queue)
            .field("token", &self.shared.token)
            .field("opts", &self.shared.opts)
            .finish()
    }
}

/// What one item of a `settle` call does on the server.
enum Plan {
    Ack,
    Nak(Duration),
    Dead(Box<(DeadFields, Original)>),
    Extend,
}

struct Work {
    index: usize,
    key: u64,
    reply: Subject,
    attempt: u32,
    plan: Plan,
}

/// How a message read from the inbox reads.
enum Read {
    /// A delivery.
    Delivery,
    /// A status ending the request `n` (`code` 404, 408, 409, ...), or a heartbeat (100).
    Status { request: Option<u64>, code: u16 },
    /// Anything else.
    Other,
}

fn classify(inbox: &str, m: &async_nats::Message) -> Read {
    let request = m
        .subject
        .as_str()
        .strip_prefix(inbox)
        .and_then(|s| s.strip_prefix('.'))
        .and_then(|s| s.parse::<u64>().ok());
    if let Some(status) = m.status
        && status != StatusCode::OK
    {
        return Read::Status {
            request,
            code: status.as_u16(),
        };
    }
    if m.reply
        .as_ref()
        .is_some_and(|r| r.as_str().starts_with("$JS.ACK."))
    {
        Read::Delivery
    } else {
        Read::Other
    }
}

impl NatsConsumer {
    pub(crate) async fn start(
        inner: Arc<Inner>,
        opts: ConsumerOptions,
    ) -> Result<Self, BrokerError> {
        let inbox = inner.client.new_inbox();
        let sub = inner
            .client
            .subscribe(format!("{inbox}.*"))
            .await
            .map_err(|e| unavailable(&inner.url, format!("subscribing to the inbox: {e}")))?;
        let margin = (inner.opts.ack_wait / 10).min(Duration::from_secs(1));
        let shared = Arc::new(Shared {
            token: Arc::from(format!("{:016x}", random_u64())),
            inbox,
            reader: tokio::sync::Mutex::new(Some(Reader {
                sub,
                next_request: 1,
                sent: VecDeque::new(),
                open_until: None,
                unfinished: None,
                buffer: VecDeque::new(),
            })),
            state: Mutex::new(State {
                held: HashMap::new(),
                done: Ended::default(),
                next_key: 1,
            }),
            room: Notify::new(),
            closed: AtomicBool::new(false),
            margin,
            opts,
            inner,
        });
        let reaper = tokio::spawn(reap_loop(shared.clone()));
        Ok(NatsConsumer { shared, reaper })
    }

    fn room(&self, max: usize) -> usize {
        let held = self.shared.state.lock().held.len();
        max.min(self.shared.opts.prefetch.max(1).saturating_sub(held))
    }
}

impl Drop for NatsConsumer {
    fn drop(&mut self) {
        self.reaper.abort();
        if !self.shared.closed.swap(true, Ordering::SeqCst)
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            // Dropped without `close`: release what it holds in the background.
            rt.spawn(release(self.shared.clone()));
        }
    }
}

impl Shared {
    /// Sends a pull request for `batch` messages (`expires`: wait that long; `None`: no_wait).
    async fn pull(
        &self,
        reader: &mut Reader,
        batch: usize,
        expires: Option<Duration>,
    ) -> Result<u64, BrokerError> {
        let n = reader.next_request;
        reader.next_request += 1;
        let body = match expires {
            None => format!("{{\"batch\":{batch},\"no_wait\":true}}"),
            Some(e) => format!("{{\"batch\":{batch},\"expires\":{}}}", e.as_nanos()),
        };
        let sent = Instant::now();
        reader.sent.push_back((n, sent));
        while reader.sent.len() > REQUESTS_KEPT {
            reader.sent.pop_front();
        }
        let until = sent + expires.unwrap_or(Duration::ZERO) + GRACE;
        reader.open_until = Some(reader.open_until.map_or(until, |u| u.max(until)));
        self.inner
            .client
            .publish_with_reply(
                self.inner.next_subject(),
                format!("{}.{n}", self.inbox),
                Bytes::from(body),
            )
            .await
            .map_err(|e| unavailable(&self.inner.url, format!("sending a pull request: {e}")))?;
        Ok(n)
    }

    /// A received delivery: the server delivered it after the latest request was sent (or
    /// after an earlier one that ended without its status, which may still deliver).
    fn raw(&self, reader: &Reader, msg: async_nats::Message) -> Raw {
        let latest = reader.sent.back().map(|(_, t)| *t);
        let from = match (latest, reader.unfinished) {
            (Some(l), Some(u)) => l.min(u),
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => Instant::now(),
        };
        Raw {
            msg,
            server_end: from + self.inner.opts.ack_wait,
        }
    }

    /// Reads the inbox until request `request` delivered `want` messages or ended, or until
    /// `until`. Appends what arrived to `out` and returns the request's final status, if one
    /// came.
    async fn read(
        &self,
        reader: &mut Reader,
        request: u64,
        want: usize,
        until: Instant,
        out: &mut Vec<Raw>,
    ) -> Result<Option<u16>, BrokerError> {
        let sent = reader.sent_at(request).unwrap_or_else(Instant::now);
        let mut got = 0;
        while got < want {
            let next = tokio::time::timeout_at(until, reader.sub.next()).await;
            let msg = match next {
                Ok(Some(m)) => m,
                Ok(None) => {
                    return Err(unavailable(
                        &self.inner.url,
                        "the consumer's inbox subscription ended (connection closed)",
                    ));
                }
                Err(_) => break,
            };
            match classify(&self.inbox, &msg) {
                Read::Delivery => {
                    // Deliveries keep their stream subject, so they cannot be told apart by
                    // request: each counts for the current one (requests are sequential, and
                    // a request's messages come before its status on the connection).
                    got += 1;
                    let raw = self.raw(reader, msg);
                    out.push(raw);
                }
                Read::Status { code: 100, .. } => {}
                Read::Status { request: n, code } if n == Some(request) => {
                    if reader.unfinished.is_none() {
                        reader.open_until = None;
                    }
                    return Ok(Some(code));
                }
                Read::Status { .. } | Read::Other => {}
            }
        }
        if got >= want && reader.unfinished.is_none() {
            reader.open_until = None;
        }
        if got < want {
            // Ended without its status: it may still deliver later.
            reader.unfinished = Some(reader.unfinished.map_or(sent, |u| u.min(sent)));
        }
        Ok(None)
    }

    /// Moves what is already in the inbox (late deliveries of earlier requests) into `out`.
    fn drain_ready(&self, reader: &mut Reader, out: &mut Vec<Raw>) {
        use futures_util::FutureExt;
        while let Some(Some(msg)) = reader.sub.next().now_or_never() {
            if let Read::Delivery = classify(&self.inbox, &msg) {
                let raw = self.raw(reader, msg);
                out.push(raw);
            }
        }
    }

    /// Turns received messages into deliveries (registering them as held), and sets aside
    /// those past `max_attempts` (to dead-letter) or already stale (left to the server).
    fn hand_out(&self, raws: Vec<Raw>) -> (Vec<Delivery>, Vec<Diverted>) {
        let inner = &self.inner;
        let now = Instant::now();
        let mut out = Vec::with_capacity(raws.len());
        let mut diverted = Vec::new();
        let mut st = self.state.lock();
        for raw in raws {
            let Some(reply) = raw.msg.reply.clone() else {
                continue;
            };
            let Some(info) = AckInfo::parse(reply.as_str()) else {
                continue;
            };
            if raw.server_end <= now + self.margin {
                // Received too long ago: the server may have redelivered it already.
                continue;
            }
            let env = Envelope::decode(raw.msg.headers.as_ref());
            let attempt = u32::try_from(info.delivered).unwrap_or(u32::MAX).max(1);
            let original = Original {
                seq: info.stream_seq,
                id: env
                    .id
                    .unwrap_or_else(|| format!("nats:{}:{}", inner.queue, info.stream_seq)),
                headers: env.headers,
                enqueued_at: env.enqueued_at.unwrap_or(info.published_ms),
                payload: raw.msg.payload,
            };
            if attempt > inner.opts.max_attempts {
                let failure = inner.take_failure(info.stream_seq);
                let now_ms = now_ms();
                diverted.push(Diverted {
                    reply,
                    fields: DeadFields {
                        attempts: attempt - 1,
                        first_failure: failure.as_ref().map_or(now_ms, |f| f.first),
                        last_failure: now_ms,
                        reason: ackline_broker::REASON_MAX_ATTEMPTS.to_owned(),
                        last_error: failure.map_or_else(|| UNSETTLED.to_owned(), |f| f.last_error),
                    },
                    original,
                });
                continue;
            }
            let key = st.next_key;
            st.next_key += 1;
            out.push(Delivery {
                tag: Tag {
                    key,
                    attempt,
                    token: Some(self.token.clone()),
                },
                id: original.id.clone(),
                headers: original.headers.clone(),
                payload: original.payload.to_vec(),
                enqueued_at: original.enqueued_at,
            });
            st.held.insert(
                key,
                Held {
                    reply,
                    attempt,
                    lease_end: now + self.opts.lease,
                    server_end: raw.server_end,
                    settling: false,
                    original,
                },
            );
        }
        drop(st);
        let c = &inner.counters;
        inner.in_flight_add(out.len());
        c.add(&c.delivered, out.len());
        c.add(
            &c.redelivered,
            out.iter().filter(|d| d.attempt() > 1).count(),
        );
        (out, diverted)
    }

    /// Sends `payload` to each reply subject as an AckSync request; `true` where the server
    /// answered.
    async fn requests(&self, items: Vec<(Subject, Bytes)>) -> Vec<bool> {
        let client = &self.inner.client;
        join_all(
            items
                .into_iter()
                .map(|(reply, p)| async move { client.request(reply, p).await.is_ok() }),
        )
        .await
    }
}

/// A delivery that is not handed out: dead-lettered (its attempt is past `max_attempts`).
struct Diverted {
    reply: Subject,
    fields: DeadFields,
    original: Original,
}

/// Dead-letters diverted deliveries: confirmed copies, then `+TERM`. If the copies cannot be
/// published, the originals are nacked with a delay (they come back and are tried again).
async fn divert(sh: &Shared, ds: Vec<Diverted>) {
    if ds.is_empty() {
        return;
    }
    let inner = &sh.inner;
    let copies: Vec<_> = ds
        .iter()
        .map(|d| dlq::copy(inner, &d.original, &d.fields))
        .collect();
    match publish_confirmed(inner, &copies).await {
        Ok(()) => {
            let done = sh
                .requests(
                    ds.iter()
                        .map(|d| (d.reply.clone(), Bytes::from_static(TERM)))
                        .collect(),
                )
                .await;
            inner.counters.add(
                &inner.counters.dead_lettered,
                done.iter().filter(|ok| **ok).count(),
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not dead-letter deliveries past max_attempts; they come back in 1 s");
            sh.requests(
                ds.iter()
                    .map(|d| (d.reply.clone(), nak_with_delay(Duration::from_secs(1))))
                    .collect(),
            )
            .await;
        }
    }
}

impl ackline_broker::Consumer for NatsConsumer {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BrokerError> {
        let sh = &self.shared;
        let deadline = Instant::now() + wait;
        let mut guard = sh.reader.lock().await;
        let Some(reader) = guard.as_mut() else {
            return Ok(Vec::new());
        };
        let mut room = self.room(max);
        while room == 0 {
            let freed = sh.room.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            room = self.room(max);
            if room > 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Ok(Vec::new());
            }
            room = self.room(max);
        }
        if reader
            .unfinished
            .is_some_and(|u| u + sh.inner.opts.ack_wait < Instant::now())
        {
            reader.unfinished = None;
        }
        let mut raws: Vec<Raw> = Vec::new();
        sh.drain_ready(reader, &mut raws);
        let take = room.min(reader.buffer.len());
        raws.extend(reader.buffer.drain(..take));
        let mut refused = false;
        if raws.len() < room {
            let want = room - raws.len();
            let n = sh.pull(reader, want, None).await?;
            let status = sh
                .read(reader, n, want, Instant::now() + GRACE, &mut raws)
                .await?;
            refused |= status == Some(409);
        }
        if raws.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left >= Duration::from_millis(10) {
                let n = sh.pull(reader, 1, Some(left)).await?;
                let status = sh.read(reader, n, 1, deadline + GRACE, &mut raws).await?;
                refused |= status == Some(409);
                if !raws.is_empty() && room > raws.len() {
                    let want = room - raws.len();
                    let n = sh.pull(reader, want, None).await?;
                    sh.read(reader, n, want, Instant::now() + GRACE, &mut raws)
                        .await?;
                }
            }
        }
        if raws.len() > room {
            // Late deliveries of earlier requests beyond the room: kept for the next call.
            let extra: Vec<Raw> = raws.drain(room..).collect();
            reader.buffer.extend(extra);
        }
        drop(guard);
        let (out, diverted) = sh.hand_out(raws);
        divert(sh, diverted).await;
        if out.is_empty() && refused {
            // 409: the consumer is at max_ack_pending (or max_waiting): do not spin.
            tokio::time::sleep_until(deadline).await;
        }
        Ok(out)
    }

    async fn settle(
        &self,
        items: Vec<(Tag, Settlement)>,
    ) -> Result<Vec<Result<(), SettleError>>, BrokerError> {
        let sh = &self.shared;
        let inner = &sh.inner;
        let n = items.len();
        let mut results: Vec<Option<Result<(), SettleError>>> = vec![None; n];
        let mut work: Vec<Work> = Vec::new();
        let mut fenced = 0;
        {
            let mut st = sh.state.lock();
            let now = Instant::now();
            for (i, (tag, how)) in items.into_iter().enumerate() {
                let st = &mut *st;
                let h = match fence::admit(&mut st.held, &st.done, &tag, &sh.token, true) {
                    Ok(h) => h,
                    Err(e) => {
                        results[i] = Some(Err(e));
                        continue;
                    }
                };
                if now + sh.margin >= h.server_end {
                    // The server may have redelivered it: not ours to settle any more.
                    let attempt = h.attempt;
                    st.held.remove(&tag.key);
                    st.done.gone(tag.key, attempt);
                    fenced += 1;
                    results[i] = Some(Err(SettleError::Stale {
                        attempt,
                        current: attempt + 1,
                    }));
                    continue;
                }
                let plan = match how {
                    Settlement::Extend { lease } => {
                        h.lease_end = now + lease;
                        Plan::Extend
                    }
                    Settlement::Ack => Plan::Ack,
                    Settlement::Nack { delay, error } => {
                        if h.attempt >= inner.opts.max_attempts {
                            let failure = inner.take_failure(h.original.seq);
                            let now_ms = now_ms();
                            Plan::Dead(Box::new((
                                DeadFields {
                                    attempts: h.attempt,
                                    first_failure: failure.map_or(now_ms, |f| f.first),
                                    last_failure: now_ms,
                                    reason: ackline_broker::REASON_MAX_ATTEMPTS.to_owned(),
                                    last_error: error,
                                },
                                h.original.clone(),
                            )))
                        } else {
                            inner.failed(h.original.seq, &error);
                            Plan::Nak(delay)
                        }
                    }
                    Settlement::Reject { reason } => {
                        let failure = inner.take_failure(h.original.seq);
                        let now_ms = now_ms();
                        Plan::Dead(Box::new((
                            DeadFields {
                                attempts: h.attempt,
                                first_failure: failure.as_ref().map_or(now_ms, |f| f.first),
                                last_failure: now_ms,
                                last_error: failure
                                    .map_or_else(|| reason.clone(), |f| f.last_error),
                                reason,
                            },
                            h.original.clone(),
                        )))
                    }
                };
                if !matches!(plan, Plan::Extend) {
                    h.settling = true;
                }
                work.push(Work {
                    index: i,
                    key: tag.key,
                    reply: h.reply.clone(),
                    attempt: h.attempt,
                    plan,
                });
            }
        }
        if fenced > 0 {
            inner.in_flight_sub(fenced);
            sh.room.notify_waiters();
        }
        // 1. Confirm every dead-letter copy.
        let copies: Vec<_> = work
            .iter()
            .filter_map(|w| match &w.plan {
                Plan::Dead(d) => Some(dlq::copy(inner, &d.1, &d.0)),
                _ => None,
            })
            .collect();
        if !copies.is_empty()
            && let Err(e) = publish_confirmed(inner, &copies).await
        {
            let mut st = sh.state.lock();
            for w in &work {
                if let Some(h) = st.held.get_mut(&w.key) {
                    h.settling = false;
                }
            }
            return Err(e);
        }
        // 2. Send the settlements: plain acks first (batched mode), then the requests; the
        // last request of a batched call is an ack, so its answer confirms the plain ones.
        let batched = inner.opts.ack_mode == AckMode::Batched;
        let acks: Vec<usize> = (0..work.len())
            .filter(|&k| matches!(work[k].plan, Plan::Ack))
            .collect();
        let plain: &[usize] = if batched && acks.len() > 1 {
            &acks[..acks.len() - 1]
        } else {
            &[]
        };
        let mut plain_sent = true;
        for &k in plain {
            if inner
                .client
                .publish(work[k].reply.clone(), Bytes::from_static(ACK))
                .await
                .is_err()
            {
                plain_sent = false;
            }
        }
        let mut is_plain = vec![false; work.len()];
        for &k in plain {
            is_plain[k] = true;
        }
        let mut requested: Vec<usize> = Vec::new();
        let mut payloads = Vec::new();
        for (k, w) in work.iter().enumerate() {
            let p = match &w.plan {
                Plan::Ack if is_plain[k] => continue,
                Plan::Ack => Bytes::from_static(ACK),
                Plan::Nak(d) => nak_with_delay(*d),
                Plan::Dead(_) => Bytes::from_static(TERM),
                Plan::Extend => Bytes::from_static(PROGRESS),
            };
            requested.push(k);
            payloads.push((w.reply.clone(), p));
        }
        // Acks go last, so that the barrier ack is sent after every other settlement.
        let sent_at = Instant::now();
        let mut answered = vec![false; work.len()];
        let order: Vec<usize> = {
            let mut o: Vec<usize> = (0..requested.len()).collect();
            o.sort_by_key(|&j| matches!(work[requested[j]].plan, Plan::Ack));
            o
        };
        let ordered: Vec<(Subject, Bytes)> = order.iter().map(|&j| payloads[j].clone()).collect();
        let oks = sh.requests(ordered).await;
        for (&j, ok) in order.iter().zip(oks) {
            answered[requested[j]] = ok;
        }
        if batched && let Some(&last) = acks.last() {
            let barrier = answered[last] && plain_sent;
            for &k in plain {
                answered[k] = barrier;
            }
        }
        // 3. Results.
        let mut st = sh.state.lock();
        let (mut acked, mut nacked, mut dead, mut removed) = (0, 0, 0, 0);
        for (k, w) in work.into_iter().enumerate() {
            let ok = answered[k];
            if let Plan::Extend = w.plan {
                if ok && let Some(h) = st.held.get_mut(&w.key) {
                    h.server_end = h.server_end.max(sent_at + inner.opts.ack_wait);
                }
                results[w.index] = Some(Ok(()));
                continue;
            }
            let seq = st.held.remove(&w.key).map(|h| h.original.seq);
            removed += 1;
            results[w.index] = Some(if ok {
                st.done.settled(w.key);
                match w.plan {
                    Plan::Ack => {
                        acked += 1;
                        if w.attempt > 1
                            && let Some(seq) = seq
                        {
                            inner.take_failure(seq);
                        }
                    }
                    Plan::Nak(_) => nacked += 1,
                    Plan::Dead(_) => dead += 1,
                    Plan::Extend => {}
                }
                Ok(())
            } else {
                st.done.gone(w.key, w.attempt);
                Err(SettleError::Stale {
                    attempt: w.attempt,
                    current: w.attempt + 1,
                })
            });
        }
        drop(st);
        inner.in_flight_sub(removed);
        if removed > 0 {
            sh.room.notify_waiters();
        }
        let c = &inner.counters;
        c.add(&c.acked, acked);
        c.add(&c.nacked, nacked);
        c.add(&c.dead_lettered, dead);
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or(Err(SettleError::Unknown)))
            .collect())
    }

    async fn close(self) {
        self.reaper.abort();
        if !self.shared.closed.swap(true, Ordering::SeqCst) {
            release(self.shared.clone()).await;
        }
    }
}

/// Gives back everything the consumer holds or received: `-NAK` (redelivered at once), then
/// waits out pull requests that may still deliver (nacking what they bring) and unsubscribes.
async fn release(sh: Arc<Shared>) {
    let now = Instant::now();
    let mut naks: Vec<Subject> = Vec::new();
    {
        let mut st = sh.state.lock();
        let keys: Vec<u64> = st
            .held
            .iter()
            .filter(|(_, h)| !h.settling)
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            if let Some(h) = st.held.remove(&k) {
                st.done.gone(k, h.attempt);
                sh.inner.in_flight_sub(1);
                if h.server_end > now + sh.margin {
                    naks.push(h.reply);
                }
            }
        }
    }
    let Some(mut reader) = sh.reader.lock().await.take() else {
        return;
    };
    let mut raws: Vec<Raw> = reader.buffer.drain(..).collect();
    sh.drain_ready(&mut reader, &mut raws);
    naks.extend(
        raws.into_iter()
            .filter(|r| r.server_end > now + sh.margin)
            .filter_map(|r| r.msg.reply),
    );
    sh.requests(
        naks.into_iter()
            .map(|r| (r, Bytes::from_static(NAK)))
            .collect(),
    )
    .await;
    // Requests still open may deliver until they expire: nack what comes.
    if let Some(until) = reader.open_until {
        while let Ok(Some(m)) = tokio::time::timeout_at(until, reader.sub.next()).await {
            if let Read::Delivery = classify(&sh.inbox, &m)
                && let Some(r) = m.reply
            {
                sh.requests(vec![(r, Bytes::from_static(NAK))]).await;
            }
        }
    }
    let _ = reader.sub.unsubscribe().await;
}

/// Returns expired leases to the stream with `-NAK` and keeps running leases alive on the
/// server with `+WPI`.
async fn reap_loop(sh: Arc<Shared>) {
    let ack_wait = sh.inner.opts.ack_wait;
    let tick = (sh.opts.lease.min(ack_wait) / 8)
        .clamp(Duration::from_millis(5), Duration::from_millis(100));
    loop {
        tokio::time::sleep(tick).await;
        if sh.closed.load(Ordering::SeqCst) {
            return;
        }
        let now = Instant::now();
        let (removed, expired, refresh) = {
            let mut st = sh.state.lock();
            let gone: Vec<u64> = st
                .held
                .iter()
                .filter(|(_, h)| !h.settling && h.lease_end <= now)
                .map(|(k, _)| *k)
                .collect();
            let mut expired = Vec::new();
            let removed = gone.len();
            for k in gone {
                if let Some(h) = st.held.remove(&k) {
                    st.done.gone(k, h.attempt);
                    // Past the server's AckWait it is being redelivered anyway: a `-NAK`
                    // now could bounce the new delivery.
                    if h.server_end > now + sh.margin {
                        expired.push(h.reply);
                    }
                }
            }
            let refresh: Vec<(u64, Subject)> = st
                .held
                .iter()
                .filter(|(_, h)| {
                    !h.settling
                        && h.lease_end + sh.margin > h.server_end
                        && h.server_end.saturating_duration_since(now) < ack_wait / 2
                })
                .map(|(k, h)| (*k, h.reply.clone()))
                .collect();
            (removed, expired, refresh)
        };
        if removed > 0 {
            let c = &sh.inner.counters;
            sh.inner.in_flight_sub(removed);
            c.add(&c.lease_expired, removed);
            sh.room.notify_waiters();
        }
        if !expired.is_empty() {
            sh.requests(
                expired
                    .into_iter()
                    .map(|r| (r, Bytes::from_static(NAK)))
                    .collect(),
            )
            .await;
        }
        if !refresh.is_empty() {
            let sent_at = Instant::now();
            let oks = sh
                .requests(
                    refresh
                        .iter()
                        .map(|(_, r)| (r.clone(), Bytes::from_static(PROGRESS)))
                        .collect(),
                )
                .await;
            let mut st = sh.state.lock();
            for ((k, _), ok) in refresh.into_iter().zip(oks) {
                if ok && let Some(h) = st.held.get_mut(&k) {
                    h.server_end = h.server_end.max(sent_at + ack_wait);
                }
            }
        }
    }
}
