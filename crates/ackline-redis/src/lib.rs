//! # ackline-redis: the delivery contract on Redis Streams
//!
//! [`RedisBroker`] implements [`ackline_broker::Broker`], [`ackline_broker::Consumer`] (as
//! [`RedisConsumer`]) and [`ackline_broker::DeadLetters`] on a Redis stream with a consumer
//! group, so the worker runtime runs on it unchanged and the backend contract suite passes on
//! it. Redis Streams have neither automatic redelivery, nor delayed retry, nor a dead-letter
//! queue; each is built here from Redis primitives, every multi-step move as one Lua script
//! ([`scripts`]). `docs/redis.md` is the operator's version of this page.
//!
//! ## How the contract maps
//!
//! | contract | on Redis |
//! | --- | --- |
//! | durable publish | `XADD <q> * id .. enqueued_at .. [headers ..] payload ..` per message, pipelined; confirmed when Redis answered, plus `WAITAOF 1 0` on Redis >= 7.2 unless `appendfsync always`. Persistence is read at connect ([`durability`]); without AOF the backend refuses to start unless [`RedisOptions::allow_volatile`] |
//! | receive | `XREADGROUP GROUP <group> <consumer> COUNT n BLOCK .. STREAMS <q> >` on the consumer's own connection, at most `prefetch` held |
//! | lease | a client-side deadline per delivery; a live consumer releases an expired delivery itself (a move, so it is redelivered at once); a dead consumer's entries are taken over by `XAUTOCLAIM` of entries idle longer than the claiming consumer's lease, checked every `poll_interval` |
//! | extend | `XCLAIM <q> <group> <self> 0 <id> JUSTID` (idle time reset, delivery count kept) |
//! | attempt | the entry's `attempts` field (deliveries that ended before this copy was made, written by every move) + the PEL's delivery count (grown by each `XAUTOCLAIM`); both are in the AOF, so a crash loop reaches `max_attempts` across restarts of workers and of Redis |
//! | ack | `XACK` + `XDEL`: the stream holds exactly the unsettled entries (no trimming policy needed, `XLEN` is the backlog) |
//! | nack with delay | the entry moves to the delay set `<q>.delay` (a sorted set scored by due time, the copy as a MessagePack member) with `attempts` + 1, then any consumer's poll moves due copies back with `XADD` + `ZREM`; both steps are scripts |
//! | reject, max attempts | a move to the dead-letter stream `<q>.dlq` with payload, headers, attempts, first/last failure, reason and last error |
//! | fencing | every settlement checks the PEL: still owned by this consumer with the delivery count it was made with; otherwise `SettleError::Stale` |
//! | dead-letter list/show/replay/purge | `XRANGE` of `<q>.dlq` (the key is the entry id as a number); replay = a script moving the entry back with attempts reset; purge = `XDEL` |
//! | backpressure | `max_bytes`: a publish script compares Redis' `MEMORY USAGE` of the stream and delay set with the limit; Redis' own `maxmemory` (noeviction) refusals are `BrokerError::Full` as well |
//! | reconnection | redis-rs connection managers reconnect with jittered exponential backoff ([`connection`]) |
//!
//! ## Invariants
//! - Each move (nack, release, reject, dead-lettering, replay, the delay set's return) is one
//!   Lua script, so it is complete or absent after any crash: a message is in the stream, the
//!   delay set, the dead-letter stream, or stored, never lost and never in two of them.
//! - A settlement acts only on an entry this consumer still owns at the same delivery count.
//! - No panic on Redis input: malformed replies and fields of other producers are values.
//!
//! ```no_run
//! # async fn f() -> Result<(), ackline_broker::BrokerError> {
//! use ackline_broker::{Broker, Message};
//! use ackline_redis::{RedisBroker, RedisOptions};
//! let b = RedisBroker::connect("redis://127.0.0.1:6379/0", "logs", RedisOptions::default())
//!     .await?;
//! b.publish(vec![Message::new("line-1", "hello")]).await?;
//! # Ok(()) }
//! ```

pub mod connection;
pub mod consumer;
mod dlq;
pub mod durability;
mod entry;
pub mod scripts;
pub mod url;

use std::sync::Arc;
use std::time::Duration;

use ackline_broker::{
    Broker, BrokerError, BrokerStats, ConsumerOptions, DeadLetter, DeadLetters, DlqSelector,
    Message,
};
use redis::Value;
use redis::aio::ConnectionManager;

use crate::connection::{Class, Dial, NAME, classify};
use crate::durability::{Durability, Fsync, info_field, parse_fsync};
use crate::entry::{array, int, malformed, text};
use crate::scripts::SCRIPTS;

pub use crate::consumer::RedisConsumer;
pub use crate::url::{ENV_URL, RedisUrl, UrlError, redact_text};

/// How a [`RedisBroker`] uses its queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// Deliveries allowed before the dead-letter stream. Default 5.
    pub max_attempts: u32,
    /// Refuse publishes (`BrokerError::Full`) once Redis' estimate of the stream's and the
    /// delay set's memory plus the batch passes this. Default none.
    pub max_bytes: Option<u64>,
    /// The consumer group. Default `ackline`.
    pub group: String,
    /// Start even when Redis has no AOF persistence (a restart of Redis then loses every
    /// queued message). Default false: such a server is refused.
    pub allow_volatile: bool,
    /// How often a waiting consumer moves due delayed messages back and looks for deliveries
    /// of dead consumers (`XAUTOCLAIM`); also the longest single `XREADGROUP` block. Default
    /// 100 ms.
    pub poll_interval: Duration,
    /// First reconnection wait (doubling, jittered). Default 100 ms.
    pub reconnect_base: Duration,
    /// Longest reconnection wait. Default 5 s.
    pub reconnect_cap: Duration,
    /// One connection attempt's limit. Default 10 s.
    pub connect_timeout: Duration,
    /// One command's limit (and `WAITAOF`'s). Default 30 s.
    pub command_timeout: Duration,
    /// How long a publish keeps trying (across reconnections) before `Unavailable`.
    /// Default 30 s.
    pub publish_timeout: Duration,
    /// PEM certificates trusted for `rediss` beside the system's roots (a private CA).
    /// Default none.
    pub tls_ca_pem: Option<String>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            max_attempts: 5,
            max_bytes: None,
            group: "ackline".into(),
            allow_volatile: false,
            poll_interval: Duration::from_millis(100),
            reconnect_base: Duration::from_millis(100),
            reconnect_cap: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(30),
            publish_timeout: Duration::from_secs(30),
            tls_ca_pem: None,
        }
    }
}

pub(crate) use ackline_broker::counters::Counters;

/// What the broker handle and its consumers share.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) dial: Dial,
    pub(crate) conn: ConnectionManager,
    pub(crate) queue: String,
    pub(crate) dlq: String,
    pub(crate) delay: String,
    pub(crate) opts: RedisOptions,
    pub(crate) durability: Durability,
    pub(crate) counters: Counters,
}

impl Inner {
    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub(crate) fn error(&self, what: &str, e: &redis::RedisError) -> BrokerError {
        self.dial.error(what, e)
    }

    /// Runs `f` on the broker's connection, again after a transient failure (at most
    /// [`RETRIES`] times, with backoff): for requests that may be repeated (reads, `XDEL`, the
    /// replay script, which skips entries already moved). The first request after Redis
    /// restarted or dropped the connection finds it broken; the manager reconnects meanwhile.
    pub(crate) async fn retry<T, F, Fut>(&self, what: &str, f: F) -> Result<T, BrokerError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let backoff = connection::Backoff {
            base: self.opts.reconnect_base,
            cap: self.opts.reconnect_cap,
        };
        let mut n = 0;
        loop {
            match f(self.conn()).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let err = self.error(what, &e);
                    if n + 1 >= RETRIES || !matches!(err, BrokerError::Unavailable { .. }) {
                        return Err(err);
                    }
                    tokio::time::sleep(backoff.delay(n)).await;
                    n += 1;
                }
            }
        }
    }

    /// Nine tenths of the command timeout: Redis answers (with too few fsyncs) before the
    /// client gives up on the reply.
    fn waitaof_timeout_ms(&self) -> u64 {
        u64::try_from((self.opts.command_timeout * 9 / 10).as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// `WAITAOF 1 0` when the server needs it for durability (see [`durability`]).
    pub(crate) async fn wait_aof(&self, conn: &mut ConnectionManager) -> Result<(), BrokerError> {
        if !self.durability.wait_aof {
            return Ok(());
        }
        let v: Value = redis::cmd("WAITAOF")
            .arg(1)
            .arg(0)
            .arg(self.waitaof_timeout_ms())
            .query_async(conn)
            .await
            .map_err(|e| self.error("WAITAOF", &e))?;
        check_waitaof(&v)
    }

    /// Creates the consumer group (and the stream) if missing.
    pub(crate) async fn ensure_group(&self) -> Result<(), BrokerError> {
        let r: redis::RedisResult<Value> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.queue)
            .arg(&self.opts.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut self.conn())
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) if e.code() == Some("WRONGTYPE") || e.to_string().contains("WRONGTYPE") => {
                Err(BrokerError::Fatal {
                    backend: NAME,
                    reason: format!(
                        "key {:?} exists and is not a stream; choose another queue name or \
                         remove the key",
                        self.queue
                    ),
                })
            }
            Err(e) => Err(self.error("creating the consumer group", &e)),
        }
    }
}

fn check_waitaof(v: &Value) -> Result<(), BrokerError> {
    let local = array(v).and_then(|a| a.first()).and_then(int);
    match local {
        Some(n) if n >= 1 => Ok(()),
        Some(_) => Err(BrokerError::Unavailable {
            backend: NAME,
            reason: "WAITAOF: the AOF was not fsynced within the command timeout".into(),
        }),
        None => Err(BrokerError::Unavailable {
            backend: NAME,
            reason: malformed("WAITAOF", v),
        }),
    }
}

/// Attempts of a request that may be repeated ([`Inner::retry`]).
const RETRIES: u32 = 4;

/// Unix time in ms.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Whether opening a broker handle creates the stream and group or requires them.
#[derive(Debug, Clone, Copy)]
enum Open {
    Create,
    Existing,
}

fn check_queue_name(q: &str) -> Result<(), BrokerError> {
    let ok = !q.is_empty()
        && q.len() <= 200
        && q.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'{' | b'}')
        });
    if ok {
        Ok(())
    } else {
        Err(BrokerError::Fatal {
            backend: NAME,
            reason: format!(
                "invalid queue name {q:?}: expected 1-200 bytes of letters, digits, '.', '_', \
                 '-', ':' or a '{{hash tag}}'"
            ),
        })
    }
}

/// Reads the server's version and persistence settings (see [`durability`]).
async fn read_durability(
    dial: &Dial,
    conn: &mut ConnectionManager,
) -> Result<Durability, BrokerError> {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(conn)
        .await
        .map_err(|e| dial.error("INFO server", &e))?;
    let version = info_field(&info, "redis_version")
        .unwrap_or("unknown")
        .to_owned();
    let cfg: redis::RedisResult<(Vec<String>, Vec<String>, Vec<String>)> = redis::pipe()
        .cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .cmd("CONFIG")
        .arg("GET")
        .arg("appendfsync")
        .cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(conn)
        .await;
    match cfg {
        Ok((a, f, p)) if a.len() == 2 && f.len() == 2 => Ok(Durability::new(
            version,
            a[1].eq_ignore_ascii_case("yes"),
            parse_fsync(&f[1]),
            "CONFIG GET",
        )
        .with_policy(p.get(1).map_or("", String::as_str))),
        Err(e) if classify(&e) == Class::Unavailable => Err(dial.error("CONFIG GET", &e)),
        // CONFIG renamed, forbidden by an ACL, or answered oddly: INFO says whether the AOF
        // is on and the eviction policy, not the fsync policy.
        _ => {
            let (persistence, memory): (String, String) = redis::pipe()
                .cmd("INFO")
                .arg("persistence")
                .cmd("INFO")
                .arg("memory")
                .query_async(conn)
                .await
                .map_err(|e| dial.error("INFO persistence", &e))?;
            let aof = info_field(&persistence, "aof_enabled") == Some("1");
            Ok(
                Durability::new(version, aof, Fsync::Unknown, "INFO persistence")
                    .with_policy(info_field(&memory, "maxmemory_policy").unwrap_or("")),
            )
        }
    }
}

/// A queue on Redis Streams as an ackline broker (see the crate doc).
#[derive(Debug, Clone)]
pub struct RedisBroker {
    inner: Arc<Inner>,
}

impl RedisBroker {
    /// Connects to `url` (see [`RedisUrl`]), checks the server's persistence and creates the
    /// stream `queue` with its consumer group if missing.
    ///
    /// # Errors
    /// `Fatal` for a bad URL or queue name, a key of another type, or a server without AOF
    /// persistence (unless [`RedisOptions::allow_volatile`]); `Unavailable` when Redis cannot
    /// be reached.
    pub async fn connect(url: &str, queue: &str, opts: RedisOptions) -> Result<Self, BrokerError> {
        let url = RedisUrl::parse(url).map_err(|e| BrokerError::Fatal {
            backend: NAME,
            reason: e.to_string(),
        })?;
        Self::connect_url(url, queue, opts).await
    }

    /// As [`RedisBroker::connect`], with the URL from [`ENV_URL`].
    ///
    /// # Errors
    /// As [`RedisBroker::connect`]; `Fatal` when [`ENV_URL`] is unset.
    pub async fn connect_env(queue: &str, opts: RedisOptions) -> Result<Self, BrokerError> {
        let url = RedisUrl::from_env().map_err(|e| BrokerError::Fatal {
            backend: NAME,
            reason: e.to_string(),
        })?;
        Self::connect_url(url, queue, opts).await
    }

    /// As [`RedisBroker::connect`], with a parsed URL.
    ///
    /// # Errors
    /// As [`RedisBroker::connect`].
    pub async fn connect_url(
        url: RedisUrl,
        queue: &str,
        opts: RedisOptions,
    ) -> Result<Self, BrokerError> {
        Self::open(url, queue, opts, Open::Create).await
    }

    /// As [`RedisBroker::connect_url`], but creates nothing: the stream `queue` and its
    /// consumer group must exist. For tools that only look at a queue or its dead letters, so
    /// a mistyped name is an error rather than a new empty stream.
    ///
    /// # Errors
    /// `Fatal` naming the queue when it or its group does not exist; otherwise as
    /// [`RedisBroker::connect`].
    pub async fn connect_existing(
        url: RedisUrl,
        queue: &str,
        opts: RedisOptions,
    ) -> Result<Self, BrokerError> {
        Self::open(url, queue, opts, Open::Existing).await
    }

    async fn open(
        url: RedisUrl,
        queue: &str,
        opts: RedisOptions,
        mode: Open,
    ) -> Result<Self, BrokerError> {
        check_queue_name(queue)?;
        if opts.max_attempts == 0 {
            return Err(BrokerError::Fatal {
                backend: NAME,
                reason: "max_attempts must be at least 1".into(),
            });
        }
        if opts.group.is_empty() || opts.poll_interval.is_zero() {
            return Err(BrokerError::Fatal {
                backend: NAME,
                reason: "the consumer group must be named and poll_interval above zero".into(),
            });
        }
        let dial = Dial {
            url,
            tls_ca_pem: opts.tls_ca_pem.clone(),
            reconnect_base: opts.reconnect_base,
            reconnect_cap: opts.reconnect_cap,
            connect_timeout: opts.connect_timeout,
            command_timeout: opts.command_timeout,
        };
        dial.probe().await?;
        let mut conn = dial.manager(Duration::ZERO).await?;
        let durability = read_durability(&dial, &mut conn).await?;
        if durability.volatile() && !opts.allow_volatile {
            let cure = if durability.appendonly {
                "Set maxmemory-policy noeviction"
            } else {
                "Turn the AOF on (`appendonly yes`, and `appendfsync always` for fsync before \
                 each confirm)"
            };
            return Err(BrokerError::Fatal {
                backend: NAME,
                reason: format!(
                    "refusing to use Redis at {} as a durable queue: {}. {cure}, or accept the \
                     loss explicitly with --allow-volatile (config key broker.allow_volatile = \
                     true)",
                    dial.url,
                    durability.risk()
                ),
            });
        }
        if durability.lossy() {
            tracing::warn!(url = %dial.url, queue, %durability, risk = %durability.risk(),
                "Redis does not make every confirmed publish durable");
        } else {
            tracing::info!(url = %dial.url, queue, %durability, "connected to Redis");
        }
        let inner = Arc::new(Inner {
            dial,
            conn,
            queue: queue.to_owned(),
            dlq: format!("{queue}.dlq"),
            delay: format!("{queue}.delay"),
            opts,
            durability,
            counters: Counters::default(),
        });
        let broker = RedisBroker { inner };
        broker.check_types().await?;
        match mode {
            Open::Create => broker.inner.ensure_group().await?,
            Open::Existing => broker.check_exists().await?,
        }
        Ok(broker)
    }

    /// The dead-letter stream and the delay set must be of their types (or absent).
    async fn check_types(&self) -> Result<(), BrokerError> {
        let i = &self.inner;
        let (t_dlq, t_delay): (String, String) = redis::pipe()
            .cmd("TYPE")
            .arg(&i.dlq)
            .cmd("TYPE")
            .arg(&i.delay)
            .query_async(&mut i.conn())
            .await
            .map_err(|e| i.error("TYPE", &e))?;
        for (key, got, want) in [(&i.dlq, t_dlq, "stream"), (&i.delay, t_delay, "zset")] {
            if got != "none" && got != want {
                return Err(BrokerError::Fatal {
                    backend: NAME,
                    reason: format!(
                        "key {key:?} is a {got}, not a {want}: it belongs to something else; \
                         choose another queue name"
                    ),
                });
            }
        }
        Ok(())
    }

    async fn check_exists(&self) -> Result<(), BrokerError> {
        let i = &self.inner;
        let r: redis::RedisResult<Value> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&i.queue)
            .query_async(&mut i.conn())
            .await;
        let missing = || BrokerError::Fatal {
            backend: NAME,
            reason: format!(
                "no queue {:?} with consumer group {:?} on this Redis (a mistyped name?)",
                i.queue, i.opts.group
            ),
        };
        match r {
            Ok(v) => {
                let found = array(&v).is_some_and(|groups| {
                    groups.iter().any(|g| {
                        array(g).is_some_and(|kv| {
                            kv.chunks(2).any(|c| {
                                c.first().and_then(text).as_deref() == Some("name")
                                    && c.get(1).and_then(text).as_deref()
                                        == Some(i.opts.group.as_str())
                            })
                        })
                    })
                });
                if found { Ok(()) } else { Err(missing()) }
            }
            Err(e) if classify(&e) == Class::Fatal => Err(missing()),
            Err(e) => Err(i.error("XINFO GROUPS", &e)),
        }
    }

    /// The stream's key.
    pub fn queue_name(&self) -> &str {
        &self.inner.queue
    }

    /// The dead-letter stream's key.
    pub fn dlq_name(&self) -> &str {
        &self.inner.dlq
    }

    /// The delay set's key.
    pub fn delay_name(&self) -> &str {
        &self.inner.delay
    }

    /// The URL (prints without the password).
    pub fn url(&self) -> &RedisUrl {
        &self.inner.dial.url
    }

    /// What the server's persistence makes of a confirmed publish (read at connect).
    pub fn durability(&self) -> &Durability {
        &self.inner.durability
    }

    /// Deletes the stream (with its group), the delay set and the dead-letter stream (for
    /// tests and teardown).
    ///
    /// # Errors
    /// `Unavailable` when Redis cannot be reached.
    pub async fn delete(self) -> Result<(), BrokerError> {
        let i = &self.inner;
        let _: Value = redis::cmd("DEL")
            .arg(&i.queue)
            .arg(&i.dlq)
            .arg(&i.delay)
            .query_async(&mut i.conn())
            .await
            .map_err(|e| i.error("DEL", &e))?;
        Ok(())
    }

    /// One attempt at publishing `batch` (and `WAITAOF` where needed).
    async fn publish_once(&self, batch: &[Message]) -> Result<(), BrokerError> {
        let i = &self.inner;
        let now = now_ms();
        let mut conn = i.conn();
        match i.opts.max_bytes {
            Some(max) => {
                self.publish_bounded(batch, max, now).await?;
                i.wait_aof(&mut conn).await
            }
            None => {
                let mut pipe = redis::pipe();
                for m in batch {
                    // The fields of `entry::fields`, by reference (no copy of the payload).
                    let c = pipe
                        .cmd("XADD")
                        .arg(&i.queue)
                        .arg("*")
                        .arg("id")
                        .arg(&m.id)
                        .arg("enqueued_at")
                        .arg(now);
                    if !m.headers.is_empty() {
                        c.arg("headers").arg(entry::encode_headers(&m.headers));
                    }
                    c.arg("payload").arg(&m.payload).ignore();
                }
                if i.durability.wait_aof {
                    // In the same pipeline: WAITAOF waits for the writes of its own
                    // connection, and a reconnection in between would leave it none.
                    pipe.cmd("WAITAOF")
                        .arg(1)
                        .arg(0)
                        .arg(i.waitaof_timeout_ms());
                    let (v,): (Value,) = pipe
                        .query_async(&mut conn)
                        .await
                        .map_err(|e| i.error("XADD", &e))?;
                    return check_waitaof(&v);
                }
                let () = pipe
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| i.error("XADD", &e))?;
                Ok(())
            }
        }
    }

    async fn publish_bounded(
        &self,
        batch: &[Message],
        max: u64,
        now: u64,
    ) -> Result<(), BrokerError> {
        let i = &self.inner;
        let bytes: u64 = batch
            .iter()
            .map(|m| (m.payload.len() + m.id.len() + 64) as u64)
            .sum();
        let mut inv = SCRIPTS.publish_bounded.prepare_invoke();
        inv.key(&i.queue).key(&i.delay).arg(max).arg(bytes);
        for m in batch {
            let f = entry::fields(m, now);
            inv.arg(f.len()).arg(f);
        }
        let v: Value = inv
            .invoke_async(&mut i.conn())
            .await
            .map_err(|e| i.error("publishing", &e))?;
        let a = array(&v).ok_or_else(|| BrokerError::Unavailable {
            backend: NAME,
            reason: malformed("the publish script", &v),
        })?;
        if a.first().and_then(int) == Some(-1) {
            let used = a.get(1).and_then(int).unwrap_or(0);
            return Err(BrokerError::Full {
                backend: NAME,
                reason: format!(
                    "queue {:?} holds about {used} bytes (Redis' MEMORY USAGE estimate) of its \
                     {max}-byte limit; a batch of {} messages ({bytes} bytes) does not fit",
                    i.queue,
                    batch.len()
                ),
                retry_after: Some(Duration::from_secs(1)),
            });
        }
        Ok(())
    }
}

/// Redis' default `proto-max-bulk-len`: the largest single value it accepts.
const MAX_VALUE: usize = 512 << 20;

impl Broker for RedisBroker {
    type Consumer = RedisConsumer;

    fn name(&self) -> &'static str {
        NAME
    }

    async fn publish(&self, batch: Vec<Message>) -> Result<(), BrokerError> {
        if batch.is_empty() {
            return Ok(());
        }
        let i = &self.inner;
        if let Some(m) = batch.iter().find(|m| m.payload.len() > MAX_VALUE) {
            return Err(BrokerError::Invalid {
                backend: NAME,
                reason: format!(
                    "a {}-byte message exceeds Redis' default proto-max-bulk-len (512 MiB)",
                    m.payload.len()
                ),
            });
        }
        // A connection found broken (Redis restarted, the connection killed) is re-established
        // by the manager; the batch is sent again until `publish_timeout`. A batch whose reply
        // was lost may then be in the stream twice: same ids, stored once.
        let deadline = tokio::time::Instant::now() + i.opts.publish_timeout;
        let backoff = connection::Backoff {
            base: i.opts.reconnect_base,
            cap: i.opts.reconnect_cap,
        };
        let mut failures = 0;
        loop {
            match self.publish_once(&batch).await {
                Ok(()) => break,
                Err(e @ BrokerError::Unavailable { .. }) => {
                    let wait = backoff.delay(failures);
                    failures += 1;
                    if tokio::time::Instant::now() + wait > deadline {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, ?wait, "publish failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e),
            }
        }
        i.counters.add(&i.counters.published, batch.len());
        Ok(())
    }

    async fn consumer(&self, opts: ConsumerOptions) -> Result<RedisConsumer, BrokerError> {
        RedisConsumer::start(self.inner.clone(), opts).await
    }

    /// `pending` = entries in the stream (ready or delivered; acked ones are deleted) + delayed
    /// copies; `in_flight` = the group's pending entries list, all consumers; counters are this
    /// handle's since it was opened.
    async fn stats(&self) -> Result<BrokerStats, BrokerError> {
        let i = &self.inner;
        let mut pipe = redis::pipe();
        pipe.cmd("XLEN")
            .arg(&i.queue)
            .cmd("ZCARD")
            .arg(&i.delay)
            .cmd("XLEN")
            .arg(&i.dlq)
            .cmd("XPENDING")
            .arg(&i.queue)
            .arg(&i.opts.group);
        let (len, delayed, dead, pel): (u64, u64, u64, Value) = i
            .retry("reading queue stats", |mut c| {
                let pipe = pipe.clone();
                async move { pipe.query_async(&mut c).await }
            })
            .await?;
        let in_flight = array(&pel)
            .and_then(|a| a.first())
            .and_then(int)
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        let c = &i.counters;
        Ok(BrokerStats {
            pending: len + delayed,
            in_flight,
            delayed,
            dead_letters: dead,
            published: Counters::get(&c.published),
            delivered: Counters::get(&c.delivered),
            redelivered: Counters::get(&c.redelivered),
            acked: Counters::get(&c.acked),
            nacked: Counters::get(&c.nacked),
            dead_lettered: Counters::get(&c.dead_lettered),
            lease_expired: Counters::get(&c.lease_expired),
        })
    }
}

impl DeadLetters for RedisBroker {
    async fn dlq_list(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, BrokerError> {
        dlq::list(&self.inner, after, limit).await
    }

    async fn dlq_get(&self, key: u64) -> Result<Option<DeadLetter>, BrokerError> {
        dlq::get(&self.inner, key).await
    }

    async fn dlq_replay(&self, sel: DlqSelector) -> Result<usize, BrokerError> {
        dlq::replay(&self.inner, &sel).await
    }

    async fn dlq_purge(&self, sel: DlqSelector) -> Result<usize, BrokerError> {
        dlq::purge(&self.inner, &sel).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_allow_hash_tags_and_refuse_spaces() {
        assert!(check_queue_name("logs").is_ok());
        assert!(check_queue_name("{logs}.eu-1").is_ok());
        assert!(check_queue_name("").is_err());
        assert!(check_queue_name("a b").is_err());
        assert!(check_queue_name(&"x".repeat(201)).is_err());
    }

    #[test]
    fn waitaof_replies() {
        let ok = Value::Array(vec![Value::Int(1), Value::Int(0)]);
        assert!(check_waitaof(&ok).is_ok());
        let late = Value::Array(vec![Value::Int(0), Value::Int(0)]);
        assert!(matches!(
            check_waitaof(&late),
            Err(BrokerError::Unavailable { .. })
        ));
        assert!(check_waitaof(&Value::Nil).is_err());
    }
}
