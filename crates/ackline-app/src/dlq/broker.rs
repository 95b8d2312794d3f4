//! `dlq list|show|replay|purge` and `queue stats` on a broker's queue (`--broker URL`,
//! `broker.url`, `ACKLINE_BROKER_URL`): RabbitMQ ([`RabbitBroker`]), Redis Streams
//! ([`RedisBroker`]), NATS JetStream ([`NatsBroker`]), Kafka ([`KafkaBroker`]) or an `ackline
//! serve` ([`HttpBroker`]),
//! through [`DeadLetters`] and [`Broker::stats`], one generic function per subcommand. The output keeps the local path's shapes (the same [`EntryView`] entries, the
//! same `list`/`show`/`replay`/`purge` objects, `queue stats`'s `{"queues": [...]}`), with the
//! broker (redacted) added; counts a backend does not have (segments, recovery) are left out.
//!
//! Invariants:
//! - The password is never printed: the broker is only ever shown through [`BrokerUrl`]'s
//!   `Display`, and the backends scrub it from their errors.
//! - An unreachable broker is an error (exit 1) within a bound, never a wait: one RabbitMQ,
//!   Redis or NATS connection attempt, or one Kafka metadata request, of at most
//!   [`CONNECT_TIMEOUT`] (unlike `ackline work`, which waits
//!   for the broker), or the HTTP client's few connect tries.
//! - Usage errors (a bad `--queue`, `--limit 0`, a queue named twice) exit 2 before anything
//!   is connected. The data directory is not opened.
//! - Nothing is created on RabbitMQ, Redis, NATS or Kafka: the queue and its dead-letter queue
//!   must exist ([`RabbitBroker::connect_existing`]; the stream and its consumer group,
//!   [`RedisBroker::connect_existing`]; both streams, [`NatsBroker::connect_existing`]; the
//!   three topics, [`KafkaBroker::connect`] with `create_topics` off), so a mistyped name is an
//!   error, not new queues.
//! - On Kafka the group whose committed offsets `queue stats` reads is the workers' group of
//!   the queue acted on ([`crate::work::kafka_group`]).

use std::path::Path;
use std::time::Duration;

use ackline_broker::{Broker, BrokerError, DeadLetter, DeadLetters, DlqSelector};
use ackline_http::HttpBroker;
use ackline_kafka::{KafkaBroker, KafkaOptions};
use ackline_nats::{NatsBroker, NatsOptions};
use ackline_rabbitmq::{RabbitBroker, RabbitOptions};
use ackline_redis::{RedisBroker, RedisOptions};
use anyhow::Context;
use serde::Serialize;

use super::{EntryView, check_name, emit_done, emit_list, emit_show};
use crate::cli::{BrokerFlags, DlqCommand, Selection, WorkArgs, WorkerFlags};
use crate::config::{BrokerUrl, Config};
use crate::exit::usage;
use crate::output::Out;
use crate::work::{
    http_queue_url, kafka_group, kafka_options, nats_options, rabbit_options, redis_options,
};

/// The longest a RabbitMQ, Redis or NATS connection attempt (a Kafka metadata request) may
/// take before the command fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most entries asked for in one `dlq_list` call: one page of `ackline serve`'s API.
const PAGE: usize = 10_000;

/// The configuration with the `--broker` flags, read as `ackline work` reads them (flag >
/// `ACKLINE_BROKER_URL` > `broker.url` in the file; likewise the CA file).
pub(super) fn load(
    flags: &BrokerFlags,
    dir: &Path,
    config_file: Option<&Path>,
) -> anyhow::Result<Config> {
    let args = WorkArgs {
        broker: flags.broker.clone(),
        broker_ca: flags.broker_ca.clone(),
        allow_volatile: flags.allow_volatile,
        queue: None,
        token: None,
        token_file: None,
        worker: WorkerFlags::default(),
    };
    crate::work::load(&args, dir, config_file)
}

/// A connected broker.
enum Target {
    Http(HttpBroker),
    Rabbit(RabbitBroker),
    Redis(RedisBroker),
    Nats(NatsBroker),
    Kafka(KafkaBroker),
}

/// The broker as it may be shown (password redacted) and the queue acted on.
struct On {
    shown: String,
    queue: String,
}

/// Resolves the queue (`--queue`, checked as the local path checks it; an `http://` URL's
/// path; else `queue.name`) and connects, once, within a bound.
async fn connect(
    url: &BrokerUrl,
    cfg: &Config,
    flags: &BrokerFlags,
    explicit: Option<&str>,
    what: &str,
) -> anyhow::Result<(Target, On)> {
    if let Some(q) = explicit {
        check_name(q)?;
    }
    let queue = explicit.unwrap_or(&cfg.queue);
    let shown = url.to_string();
    match url {
        BrokerUrl::Http(u) => {
            let b = HttpBroker::connect(
                &http_queue_url(u, queue),
                crate::work::bearer_token(flags.token.as_ref(), flags.token_file.as_ref())?,
            )
            .map_err(|e| usage(format!("invalid --broker {shown}: {e}")))?;
            if let Some(q) = explicit
                && b.queue() != q
            {
                return Err(usage(format!(
                    "--broker {shown} names queue {} and --queue names {q}: give the queue once",
                    b.queue()
                )));
            }
            let queue = b.queue().to_string();
            Ok((Target::Http(b), On { shown, queue }))
        }
        BrokerUrl::Amqp(u) => {
            let opts = RabbitOptions {
                connect_timeout: CONNECT_TIMEOUT,
                connection_name: Some(format!("ackline {what} {queue} pid {}", std::process::id())),
                ..rabbit_options(cfg)
            };
            let b = RabbitBroker::connect_existing(u.clone(), queue, opts)
                .await
                .with_context(|| format!("connecting to {shown}"))?;
            let queue = queue.to_string();
            Ok((Target::Rabbit(b), On { shown, queue }))
        }
        BrokerUrl::Redis(u) => {
            let opts = RedisOptions {
                connect_timeout: CONNECT_TIMEOUT,
                ..redis_options(cfg)
            };
            let b = RedisBroker::connect_existing(u.clone(), queue, opts)
                .await
                .with_context(|| format!("connecting to {shown}"))?;
            let queue = queue.to_string();
            Ok((Target::Redis(b), On { shown, queue }))
        }
        BrokerUrl::Nats(u) => {
            let opts = NatsOptions {
                connect_timeout: CONNECT_TIMEOUT,
                connection_name: Some(format!("ackline {what} {queue} pid {}", std::process::id())),
                ..nats_options(cfg)
            };
            let b = NatsBroker::connect_existing(u.clone(), queue, opts)
                .await
                .with_context(|| format!("connecting to {shown}"))?;
            let queue = queue.to_string();
            Ok((Target::Nats(b), On { shown, queue }))
        }
        BrokerUrl::Kafka(u) => {
            let opts = KafkaOptions {
                group: kafka_group(queue),
                create_topics: false,
                request_timeout: CONNECT_TIMEOUT,
                ..kafka_options(cfg)
            };
            let b = KafkaBroker::connect(&u.to_string(), queue, opts)
                .await
                .with_context(|| format!("connecting to {shown}"))?;
            let queue = queue.to_string();
            Ok((Target::Kafka(b), On { shown, queue }))
        }
    }
}

/// Runs `$body` with `$b` bound to the connected broker, whichever it is; closes a RabbitMQ
/// or NATS connection afterwards (also after an error).
macro_rules! on_target {
    ($target:expr, $b:ident => $body:expr) => {
        match $target {
            Target::Http($b) => $body,
            Target::Rabbit($b) => {
                let r = $body;
                $b.close().await;
                r
            }
            Target::Redis($b) => $body,
            Target::Kafka($b) => $body,
            Target::Nats($b) => {
                let r = $body;
                $b.close().await;
                r
            }
        }
    };
}

/// `ackline queue stats` with a broker: the counts of one queue (`queue`, or the
/// configured one).
pub(super) fn queue_stats(
    url: &BrokerUrl,
    cfg: &Config,
    flags: &BrokerFlags,
    queue: Option<&str>,
    out: Out,
) -> anyhow::Result<()> {
    crate::runtime::build()?.block_on(async {
        let (target, on) = connect(url, cfg, flags, queue, "queue stats").await?;
        on_target!(target, b => stats(&b, &on, out).await)
    })
}

/// `ackline dlq ...` with a broker.
pub(super) fn dlq(
    c: &DlqCommand,
    url: &BrokerUrl,
    cfg: &Config,
    flags: &BrokerFlags,
    out: Out,
) -> anyhow::Result<()> {
    let queue = match c {
        DlqCommand::List { limit: 0, .. } => {
            return Err(usage("--limit must be at least 1"));
        }
        DlqCommand::List { queue, .. }
        | DlqCommand::Show { queue, .. }
        | DlqCommand::Replay { queue, .. }
        | DlqCommand::Purge { queue, .. } => queue.as_deref(),
    };
    crate::runtime::build()?.block_on(async {
        let (target, on) = connect(url, cfg, flags, queue, "dlq").await?;
        on_target!(target, b => match c {
            DlqCommand::List { after, limit, .. } => list(&b, &on, *after, *limit, out).await,
            DlqCommand::Show { key, id, .. } => show(&b, &on, *key, id.as_deref(), out).await,
            DlqCommand::Replay { sel, .. } => settle(&b, &on, sel, true, out).await,
            DlqCommand::Purge { sel, .. } => settle(&b, &on, sel, false, out).await,
        })
    })
}

/// `dlq list`: one page of at most `limit` entries (and at most [`PAGE`]) after `after`.
async fn list<B: Broker + DeadLetters>(
    b: &B,
    on: &On,
    after: Option<u64>,
    limit: usize,
    out: Out,
) -> anyhow::Result<()> {
    let limit = limit.min(PAGE);
    let entries: Vec<EntryView> = b
        .dlq_list(after, limit)
        .await
        .with_context(|| {
            format!(
                "listing the dead-letter queue of {} on {}",
                on.queue, on.shown
            )
        })?
        .into_iter()
        .map(EntryView::from)
        .collect();
    emit_list(out, Some(&on.shown), &on.queue, &entries, limit)
}

/// `dlq show`: the entry with `key`, or every entry whose message id is `id`.
async fn show<B: Broker + DeadLetters>(
    b: &B,
    on: &On,
    key: Option<u64>,
    id: Option<&str>,
    out: Out,
) -> anyhow::Result<()> {
    let found: Vec<DeadLetter> = match (key, id) {
        (Some(k), _) => b
            .dlq_get(k)
            .await
            .with_context(|| {
                format!(
                    "reading dead-letter entry {k} of {} on {}",
                    on.queue, on.shown
                )
            })?
            .into_iter()
            .collect(),
        (None, Some(id)) => with_id(b, id).await.with_context(|| {
            format!(
                "finding id {id} in the dead-letter queue of {} on {}",
                on.queue, on.shown
            )
        })?,
        (None, None) => return Err(usage("give a KEY or --id ID")),
    };
    let found: Vec<EntryView> = found.into_iter().map(EntryView::from).collect();
    emit_show(out, Some(&on.shown), &on.queue, key, id, &found)
}

/// Every entry whose message id is `id` (the traits find by key only: page through all).
async fn with_id<B: DeadLetters>(b: &B, id: &str) -> Result<Vec<DeadLetter>, BrokerError> {
    let mut found = Vec::new();
    let mut after = None;
    loop {
        let page = b.dlq_list(after, PAGE).await?;
        let full = page.len() == PAGE;
        after = page.last().map(|d| d.key);
        found.extend(page.into_iter().filter(|d| d.id == id));
        if !full {
            return Ok(found);
        }
    }
}

/// The selection as the broker traits name it. `--reason-contains` is
/// [`DlqSelector::Matching`]: the reason on an `ackline serve`, the reason or the last error
/// on RabbitMQ and Redis.
fn selector(sel: &Selection) -> DlqSelector {
    if sel.all {
        DlqSelector::All
    } else if !sel.keys.is_empty() {
        DlqSelector::Keys(sel.keys.clone())
    } else if !sel.ids.is_empty() {
        DlqSelector::Ids(sel.ids.clone())
    } else {
        DlqSelector::Matching(sel.reason_contains.clone().unwrap_or_default())
    }
}

/// `dlq replay` (`replay`) or `dlq purge`: the selected entries; reports how many.
async fn settle<B: Broker + DeadLetters>(
    b: &B,
    on: &On,
    sel: &Selection,
    replay: bool,
    out: Out,
) -> anyhow::Result<()> {
    let s = selector(sel);
    let (verb, n) = if replay {
        let n = b
            .dlq_replay(s)
            .await
            .with_context(|| format!("replaying dead letters of {} on {}", on.queue, on.shown))?;
        ("replayed", n)
    } else {
        let n = b
            .dlq_purge(s)
            .await
            .with_context(|| format!("purging dead letters of {} on {}", on.queue, on.shown))?;
        ("purged", n)
    };
    emit_done(out, Some(&on.shown), &on.queue, verb, n)
}

/// `queue stats`'s entry for a broker's queue: the local path's counts that every backend
/// reports (`ready` is derived: pending less leased and delayed).
#[derive(Debug, Serialize)]
struct StatsView<'a> {
    queue: &'a str,
    broker: &'a str,
    backend: &'static str,
    pending: u64,
    ready: u64,
    leased: u64,
    delayed: u64,
    dead_letters: u64,
}

/// `queue stats`: the counts of the queue, in the local path's `{"queues": [...]}`.
async fn stats<B: Broker + DeadLetters>(b: &B, on: &On, out: Out) -> anyhow::Result<()> {
    let s = b
        .stats()
        .await
        .with_context(|| format!("reading the counts of {} on {}", on.queue, on.shown))?;
    let v = StatsView {
        queue: &on.queue,
        broker: &on.shown,
        backend: b.name(),
        pending: s.pending,
        ready: s.pending.saturating_sub(s.in_flight + s.delayed),
        leased: s.in_flight,
        delayed: s.delayed,
        dead_letters: s.dead_letters,
    };
    #[derive(Serialize)]
    struct All<'a> {
        queues: [&'a StatsView<'a>; 1],
    }
    out.emit(&All { queues: [&v] }, || {
        format!(
            "{}: {} pending ({} ready, {} leased, {} delayed), {} dead letters\n  on {} {}\n",
            v.queue, v.pending, v.ready, v.leased, v.delayed, v.dead_letters, v.backend, v.broker
        )
    })
}
