//! `ackline work`: the worker of split and scale-out mode. [`ackline_worker::Runtime`] over a
//! broker into a store, until SIGTERM or SIGINT. The broker is an `ackline serve`
//! ([`ackline_http::HttpBroker`], the lease API), RabbitMQ
//! ([`ackline_rabbitmq::RabbitBroker`]), Redis Streams ([`ackline_redis::RedisBroker`]),
//! NATS JetStream ([`ackline_nats::NatsBroker`]) or Kafka ([`ackline_kafka::KafkaBroker`], a
//! consumer group `ackline-<queue>`): the same runtime, the same contract.
//!
//! Invariants:
//! - A delivery is acked only after the store committed its record (the runtime's rule), and
//!   the store is idempotent by message id, so a worker killed at any moment (SIGKILL
//!   included) loses nothing and duplicates nothing: its leases expire on the server (its
//!   channel closes on RabbitMQ, its entries are claimed after the lease on Redis, JetStream
//!   redelivers them after its `AckWait`, which is the lease; on Kafka the group gives its
//!   partitions to another member after the session timeout, at most the lease when the lease
//!   is 6 s or more, see [`kafka_options`], which reads on from the committed offset) and
//!   another worker stores what it had not acked; what it had stored is skipped.
//! - Graceful stop as in `run`: the first signal stops taking deliveries, the batches in hand
//!   finish within `worker.shutdown_deadline` (the rest is released), exit 0.
//! - Configuration errors (a bad flag value, a bad broker URL, no broker at all, and
//!   `--max-attempts` against an `ackline serve`, whose own setting applies) exit 2
//!   before anything is opened. A broker not reachable yet at start is waited for (probed
//!   with backoff up to 5 s, a signal ends the wait with exit 0), so workers may start before
//!   the server or broker; a refusal waiting cannot fix (a bad token, bad credentials, a Redis
//!   without persistence unless `broker.allow_volatile`) is a runtime error, exit 1.
//! - On Redis and NATS, what the server's persistence promises for confirmed publishes is
//!   noted at start (with what is at risk when a crash of the machine can lose some).
//! - So is a store not reachable yet (refused, silent, a full disk): probed with backoff up
//!   to 5 s, noted every 30 s, a signal ends the wait with exit 0. A bad store URL, bad
//!   credentials or a schema newer than this binary are not waited for: exit 1 with the
//!   store's error.
//! - No password (broker or store URL) is ever printed: URLs are shown redacted.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ackline_broker::{Broker, BrokerError};
use ackline_http::HttpBroker;
use ackline_kafka::{KafkaBroker, KafkaOptions};
use ackline_nats::{NatsBroker, NatsOptions};
use ackline_parse::Parser;
use ackline_rabbitmq::{RabbitBroker, RabbitOptions};
use ackline_redis::{RedisBroker, RedisOptions};
use ackline_store::{AnyStore, Store, StoreError};
use ackline_worker::{ParseProcess, Runtime};
use anyhow::Context;
use serde::Serialize;
use tokio::sync::watch;

use crate::cli::{PipelineFlags, WorkArgs};
use crate::config::{self, BrokerUrl, Config, Env};
use crate::exit::usage;
use crate::output::Out;

#[derive(Debug, Serialize)]
struct Report {
    broker: String,
    queue: String,
    store: String,
    received: u64,
    stored: u64,
    duplicates: u64,
    rejected: u64,
    retried: u64,
    store_outages: u64,
    elapsed_ms: u64,
}

/// `--queue` of `work`: a server URL (split mode, as `--broker`) or a queue name.
/// The bearer token: `--token` / `ACKLINE_TOKEN`, or the contents of `--token-file`
/// (trimmed). A file that cannot be read is a usage error naming the file, never its content.
pub(crate) fn bearer_token(
    token: Option<&String>,
    token_file: Option<&String>,
) -> anyhow::Result<Option<String>> {
    match token_file {
        None => Ok(token.cloned()),
        Some(f) => {
            let text = config::read_secret_file(Path::new(f))
                .map_err(|e| usage(format!("--token-file: {e:#}")))?;
            let t = text.trim();
            if t.is_empty() {
                return Err(usage(format!("--token-file: {f} is empty")));
            }
            Ok(Some(t.to_string()))
        }
    }
}

fn split_queue_flag(a: &WorkArgs) -> anyhow::Result<(Option<String>, Option<String>)> {
    match a.queue.as_deref() {
        Some(q) if q.contains("://") => {
            if a.broker.is_some() {
                return Err(usage(
                    "--queue is a URL and --broker is given too: give the server's URL once, \
                     as --broker URL (and the queue name as --queue NAME)",
                ));
            }
            Ok((None, Some(q.to_string())))
        }
        q => Ok((q.map(str::to_string), a.broker.clone())),
    }
}

/// The configuration of `work` (its flags as the config layer's flags).
pub fn load(a: &WorkArgs, data_dir: &Path, config_file: Option<&Path>) -> anyhow::Result<Config> {
    let (queue, broker) = split_queue_flag(a)?;
    let flags = PipelineFlags {
        queue,
        broker,
        broker_ca: a.broker_ca.clone(),
        allow_volatile: a.allow_volatile,
        worker: a.worker.clone(),
        ..PipelineFlags::default()
    };
    config::load(data_dir, config_file, &flags, &Env::process())
}

/// `http://HOST:PORT` with the configured queue appended when the URL names none.
pub(crate) fn http_queue_url(url: &str, queue: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    match rest.split_once('/') {
        Some((_, path)) if !path.trim_matches('/').is_empty() => url.to_string(),
        _ => format!("{}/{queue}", url.trim_end_matches('/')),
    }
}

/// `ackline work`.
pub fn run(
    a: &WorkArgs,
    data_dir: &Path,
    config_file: Option<&Path>,
    out: Out,
) -> anyhow::Result<()> {
    let cfg = load(a, data_dir, config_file)?;
    let Some(broker_url) = cfg.broker.clone() else {
        return Err(usage(
            "ackline work needs a broker: --broker http://HOST:PORT (an ackline serve), \
             --broker amqp://USER:PASS@HOST:PORT/VHOST (RabbitMQ) or --broker \
             redis://HOST:PORT/DB (Redis Streams), --broker nats://HOST:PORT (NATS \
             JetStream) or --broker kafka://HOST:PORT (Kafka) (or broker.url in the config \
             file, or ACKLINE_BROKER_URL)",
        ));
    };
    if matches!(broker_url, BrokerUrl::Http(_)) && a.worker.max_attempts.is_some() {
        return Err(usage(
            "--max-attempts has no effect in split mode: the server's setting applies \
             (start ackline serve with --max-attempts N, or set retry.max_attempts for it)",
        ));
    }
    let rt = crate::runtime::build()?;
    rt.block_on(async {
        let signal = crate::signals::install()?;
        let shown = broker_url.to_string();
        match broker_url {
            BrokerUrl::Http(u) => {
                let b = HttpBroker::connect(
                    &http_queue_url(&u, &cfg.queue),
                    bearer_token(a.token.as_ref(), a.token_file.as_ref())?,
                )
                .map_err(|e| usage(format!("invalid --broker: {e}")))?;
                let queue = b.queue().to_string();
                if !wait_ready(&b, signal.clone(), out).await? {
                    return stopped_early(out);
                }
                work_on(b, &cfg, shown, queue, signal, out).await
            }
            BrokerUrl::Amqp(url) => {
                let opts = rabbit_options(&cfg);
                let Some(b) = connect_rabbit(url, &cfg.queue, opts, signal.clone(), out).await?
                else {
                    return stopped_early(out);
                };
                work_on(b, &cfg, shown, cfg.queue.clone(), signal, out).await
            }
            BrokerUrl::Redis(url) => {
                let opts = redis_options(&cfg);
                let Some(b) = connect_redis(url, &cfg.queue, opts, signal.clone(), out).await?
                else {
                    return stopped_early(out);
                };
                work_on(b, &cfg, shown, cfg.queue.clone(), signal, out).await
            }
            BrokerUrl::Nats(url) => {
                let opts = nats_options(&cfg);
                let Some(b) = connect_nats(url, &cfg.queue, opts, signal.clone(), out).await?
                else {
                    return stopped_early(out);
                };
                let r = work_on(b.clone(), &cfg, shown, cfg.queue.clone(), signal, out).await;
                b.close().await;
                r
            }
            BrokerUrl::Kafka(url) => {
                let opts = kafka_options(&cfg);
                let Some(b) = connect_kafka(url, &cfg.queue, opts, signal.clone(), out).await?
                else {
                    return stopped_early(out);
                };
                work_on(b, &cfg, shown, cfg.queue.clone(), signal, out).await
            }
        }
    })
}

fn stopped_early(out: Out) -> anyhow::Result<()> {
    out.note("ackline work: stopped before the broker answered");
    Ok(())
}

/// Runs the workers over `broker` until the signal; prints the report.
async fn work_on<B: Broker>(
    broker: B,
    cfg: &Config,
    shown: String,
    queue: String,
    signal: watch::Receiver<bool>,
    out: Out,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let Some(store) = open_store(cfg, signal.clone(), out, None).await? else {
        out.note("ackline work: stopped before the store answered");
        return Ok(());
    };
    let kind = store.kind().to_string();
    let process = ParseProcess::new(Parser::new(cfg.parser));
    let runtime = Runtime::new(
        Arc::new(broker),
        Arc::new(store),
        Arc::new(process),
        cfg.worker.clone(),
    );
    let stats = runtime.stats();
    if let Some(addr) = cfg.metrics_listen {
        crate::metrics::spawn(addr, stats.clone(), signal.clone(), out).await?;
    }
    out.note(&format!(
        "ackline work: {shown} queue {queue} -> {} ({} workers)",
        cfg.store_display(),
        cfg.worker.workers
    ));
    runtime.run(signal).await.context("the workers stopped")?;
    let s = stats.snapshot();
    let report = Report {
        broker: shown,
        queue,
        store: kind,
        received: s.received,
        stored: s.stored,
        duplicates: s.duplicates,
        rejected: s.rejected,
        retried: s.nacked,
        store_outages: s.outages,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    out.emit(&report, || {
        format!(
            "ackline work: stopped after {:.1} s: received {}, stored {} (+{} dup), dead-lettered {}, retried {}, store outages {}\n",
            report.elapsed_ms as f64 / 1000.0,
            report.received,
            report.stored,
            report.duplicates,
            report.rejected,
            report.retried,
            report.store_outages
        )
    })
}

/// The next wait of a start-up probe loop, or `None` if a signal came first.
async fn backoff(delay: &mut Duration, signal: &mut watch::Receiver<bool>) -> Option<()> {
    tokio::select! {
        _ = signal.wait_for(|s| *s) => return None,
        _ = tokio::time::sleep(*delay) => {}
    }
    *delay = (*delay * 2).min(Duration::from_secs(5));
    Some(())
}

/// Probes the broker until it answers (true) or a signal arrives (false); a refusal that
/// waiting cannot fix (bad token, unknown queue) is an error.
pub(crate) async fn wait_ready<B: Broker>(
    broker: &B,
    mut signal: watch::Receiver<bool>,
    out: Out,
) -> anyhow::Result<bool> {
    let mut delay = Duration::from_millis(100);
    let mut noted = false;
    loop {
        match broker.stats().await {
            Ok(_) => return Ok(true),
            Err(BrokerError::Unavailable { reason, .. }) => {
                if !noted {
                    out.note(&format!("ackline: waiting for the broker ({reason})"));
                    noted = true;
                }
            }
            Err(e) => return Err(anyhow::Error::new(e).context("the broker refused")),
        }
        if backoff(&mut delay, &mut signal).await.is_none() {
            return Ok(false);
        }
    }
}

/// How often a start-up wait for the store is noted again.
const STORE_WAIT_NOTE_EVERY: Duration = Duration::from_secs(30);

/// Opens the configured store, waiting while it is unavailable (refused, silent, a full
/// disk): probed with backoff up to 5 s, noted when the wait starts and every 30 s. `None` if
/// a signal came first. A refusal waiting cannot fix (a bad URL, bad credentials, a schema
/// newer than this binary) is an error at once; so is a wait longer than `limit`, if given.
pub(crate) async fn open_store(
    cfg: &Config,
    mut signal: watch::Receiver<bool>,
    out: Out,
    limit: Option<Duration>,
) -> anyhow::Result<Option<AnyStore>> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    let mut noted: Option<Instant> = None;
    loop {
        if *signal.borrow() {
            return Ok(None);
        }
        // An open can take up to the store's operation timeout (a silent server): a signal
        // ends it too.
        let opened = tokio::select! {
            r = cfg.open_store() => r,
            _ = signal.wait_for(|s| *s) => return Ok(None),
        };
        let e = match opened {
            Ok(store) => {
                if noted.is_some() {
                    out.note(&format!(
                        "ackline: the store answered after {:.1} s",
                        started.elapsed().as_secs_f64()
                    ));
                }
                return Ok(Some(store));
            }
            Err(e) => e,
        };
        let unavailable = e
            .downcast_ref::<StoreError>()
            .is_some_and(StoreError::is_unavailable);
        if !unavailable {
            return Err(e);
        }
        if let Some(limit) = limit {
            let left = limit.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(e.context(format!(
                    "the store stayed unavailable for {:.1} s, longer than worker.max_outage \
                     ({:.1} s) allows",
                    started.elapsed().as_secs_f64(),
                    limit.as_secs_f64()
                )));
            }
            delay = delay.min(left);
        }
        if noted.is_none_or(|at| at.elapsed() >= STORE_WAIT_NOTE_EVERY) {
            let waited = if noted.is_some() {
                format!(" (for {} s)", started.elapsed().as_secs())
            } else {
                String::new()
            };
            out.note(&format!("ackline: waiting for the store{waited}: {:#}", e));
            noted = Some(Instant::now());
        }
        if backoff(&mut delay, &mut signal).await.is_none() {
            return Ok(None);
        }
    }
}

/// The RabbitMQ backend's options from the configuration.
pub(crate) fn rabbit_options(cfg: &Config) -> RabbitOptions {
    RabbitOptions {
        max_attempts: cfg.queue_options.max_attempts,
        tls_ca_pem: cfg.broker_tls_ca.clone(),
        ..RabbitOptions::default()
    }
}

/// The Redis backend's options from the configuration.
pub(crate) fn redis_options(cfg: &Config) -> RedisOptions {
    RedisOptions {
        max_attempts: cfg.queue_options.max_attempts,
        tls_ca_pem: cfg.broker_tls_ca.clone(),
        allow_volatile: cfg.broker_allow_volatile,
        ..RedisOptions::default()
    }
}

/// The NATS backend's options from the configuration: the consumer's `AckWait` is the lease,
/// so a dead worker's deliveries come back after one lease, as on the other brokers.
pub(crate) fn nats_options(cfg: &Config) -> NatsOptions {
    NatsOptions {
        max_attempts: cfg.queue_options.max_attempts,
        ack_wait: cfg.worker.lease,
        tls_ca_pem: cfg.broker_tls_ca.clone(),
        credentials: cfg.broker_credentials.clone(),
        ..NatsOptions::default()
    }
}

/// The shortest group session timeout Kafka accepts by default
/// (`group.min.session.timeout.ms`).
const KAFKA_MIN_SESSION: Duration = Duration::from_secs(6);

/// The consumer group of a queue's workers on Kafka: one group per topic, so that workers of
/// other queues never take part in its rebalances.
pub(crate) fn kafka_group(queue: &str) -> String {
    format!("ackline-{queue}")
}

/// The Kafka backend's options from the configuration: the group is [`kafka_group`] (so
/// `queue stats` reads the workers' committed offsets); the client-side lease is the
/// runtime's `worker.lease`; the session timeout (how soon a dead process's partitions, and
/// with them its unsettled deliveries, go to another worker) is the lease, kept between 6 s
/// (Kafka's default minimum) and the backend's 10 s default.
pub(crate) fn kafka_options(cfg: &Config) -> KafkaOptions {
    let d = KafkaOptions::default();
    KafkaOptions {
        max_attempts: cfg.queue_options.max_attempts,
        group: kafka_group(&cfg.queue),
        partitions: cfg.broker_kafka_partitions,
        session_timeout: cfg
            .worker
            .lease
            .clamp(KAFKA_MIN_SESSION, d.session_timeout.max(KAFKA_MIN_SESSION)),
        client_config: cfg.broker_kafka_settings.clone(),
        tls_ca_pem: cfg.broker_tls_ca.clone(),
        ..d
    }
}

/// Connects with `connect` (to the broker `name` at `shown`, the URL redacted), waiting while
/// the broker answers `Unavailable`: probed with backoff up to 5 s, noted once. `None` if a
/// signal came first; any other refusal (`Fatal`: bad credentials, a certificate neither
/// trusted root accepts, a Redis without persistence) is an error at once.
pub(crate) async fn connect_waiting<B, F, Fut>(
    name: &str,
    shown: &str,
    mut connect: F,
    mut signal: watch::Receiver<bool>,
    out: Out,
) -> anyhow::Result<Option<B>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<B, BrokerError>>,
{
    let mut delay = Duration::from_millis(100);
    let mut noted = false;
    loop {
        match connect().await {
            Ok(b) => return Ok(Some(b)),
            Err(BrokerError::Unavailable { reason, .. }) => {
                if !noted {
                    out.note(&format!(
                        "ackline: waiting for {name} at {shown} ({reason})"
                    ));
                    noted = true;
                }
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!("connecting to {shown}")));
            }
        }
        if backoff(&mut delay, &mut signal).await.is_none() {
            return Ok(None);
        }
    }
}

/// Connects to RabbitMQ, waiting while it is unreachable; `None` if a signal came first.
pub(crate) async fn connect_rabbit(
    url: ackline_rabbitmq::AmqpUrl,
    queue: &str,
    opts: RabbitOptions,
    signal: watch::Receiver<bool>,
    out: Out,
) -> anyhow::Result<Option<RabbitBroker>> {
    let shown = url.to_string();
    let connect = || RabbitBroker::connect_url(url.clone(), queue, opts.clone());
    connect_waiting("RabbitMQ", &shown, connect, signal, out).await
}

/// Connects to Redis, waiting while it is unreachable; `None` if a signal came first. Notes
/// what the server's persistence promises (and what is at risk when it is lossy).
pub(crate) async fn connect_redis(
    url: ackline_redis::RedisUrl,
    queue: &str,
    opts: RedisOptions,
    signal: watch::Receiver<bool>,
    out: Out,
) -> anyhow::Result<Option<RedisBroker>> {
    let shown = url.to_string();
    let connect = || RedisBroker::connect_url(url.clone(), queue, opts.clone());
    let Some(b) = connect_waiting("Redis", &shown, connect, signal, out).await? else {
        return Ok(None);
    };
    note_durability(&b, out);
    Ok(Some(b))
}

/// Connects to NATS, waiting while it is unreachable; `None` if a signal came first. Notes
/// what a PubAck promises on the server's version.
pub(crate) async fn connect_nats(
    url: ackline_nats::NatsUrl,
    queue: &str,
    opts: NatsOptions,
    signal: watch::Receiver<bool>,
    out: Out,
) -> anyhow::Result<Option<NatsBroker>> {
    let shown = url.to_string();
    let connect = || NatsBroker::connect_url(url.clone(), queue, opts.clone());
    let Some(b) = connect_waiting("NATS", &shown, connect, signal, out).await? else {
        return Ok(None);
    };
    out.note(&format!(
        "ackline: connected to nats-server {}; {}",
        b.server_version(),
        b.durability()
    ));
    Ok(Some(b))
}

/// Connects to Kafka (creating the topic, `<queue>.retry` and `<queue>.dlq` when missing),
/// waiting while it is unreachable; `None` if a signal came first. Notes what a confirmed
/// publish means there.
pub(crate) async fn connect_kafka(
    url: ackline_kafka::KafkaUrl,
    queue: &str,
    opts: KafkaOptions,
    signal: watch::Receiver<bool>,
    out: Out,
) -> anyhow::Result<Option<KafkaBroker>> {
    let shown = url.to_string();
    let group = opts.group.clone();
    let connect = || KafkaBroker::connect(&shown, queue, opts.clone());
    let Some(b) = connect_waiting("Kafka", &shown, connect, signal, out).await? else {
        return Ok(None);
    };
    out.note(&format!(
        "ackline: connected to Kafka at {shown} (group {group}); a publish is confirmed with \
         acks=all, so it survives what the topic's replication and min.insync.replicas allow"
    ));
    Ok(Some(b))
}

/// Notes the durability the Redis server gives confirmed publishes, with its risk when lossy.
pub(crate) fn note_durability(b: &RedisBroker, out: Out) {
    let d = b.durability();
    if d.lossy() {
        out.note(&format!("ackline: connected to {d}; at risk: {}", d.risk()));
    } else {
        out.note(&format!("ackline: connected to {d}"));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::{Duration, Path, http_queue_url, kafka_options};
    use crate::cli::PipelineFlags;
    use crate::config::{self, BrokerUrl, Env};

    fn load(pairs: &[(&str, &str)]) -> anyhow::Result<config::Config> {
        let env = Env {
            vars: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        config::load(Path::new("/d"), None, &PipelineFlags::default(), &env)
    }

    /// `kafka://` is Kafka, `kafkas://` is Kafka over TLS; other schemes and bad servers are
    /// refused with an expectation that names both, without quoting the (secret) value.
    #[test]
    fn kafka_urls_are_parsed_with_or_without_tls() {
        let Some(BrokerUrl::Kafka(u)) = BrokerUrl::parse(" kafka://k1:9092,k2:9093 ") else {
            panic!("not Kafka");
        };
        assert_eq!(u.bootstrap_servers(), "k1:9092,k2:9093");
        assert!(!u.tls());
        let Some(BrokerUrl::Kafka(u)) = BrokerUrl::parse("kafkas://k1:9093") else {
            panic!("not Kafka");
        };
        assert!(u.tls());
        assert_eq!(u.to_string(), "kafkas://k1:9093");
        for bad in ["kafka+ssl://k1:9093", "kafka://k1", "kafkas://u:p@k1:1"] {
            assert!(BrokerUrl::parse(bad).is_none(), "{bad}");
        }
        let e = load(&[("ACKLINE_BROKER_URL", "kafkas://k1")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("kafkas://"), "{e}");
        assert!(
            !e.contains("kafkas://k1"),
            "a secret key's value is not quoted: {e}"
        );
    }

    /// The options `work`, the relay and the dlq tools start from: the group of the queue,
    /// `retry.max_attempts`, the partitions and librdkafka settings of their keys, and the
    /// session timeout = the lease within 6 s to 10 s.
    #[test]
    fn kafka_options_follow_the_configuration() {
        let c = load(&[
            ("ACKLINE_QUEUE_NAME", "web"),
            ("ACKLINE_RETRY_MAX_ATTEMPTS", "7"),
            ("ACKLINE_WORKER_LEASE", "8s"),
            ("ACKLINE_BROKER_KAFKA_PARTITIONS", "12"),
            (
                "ACKLINE_BROKER_KAFKA_SETTINGS",
                "batch.num.messages=1, sasl.mechanism = PLAIN",
            ),
        ])
        .unwrap();
        let o = kafka_options(&c);
        assert_eq!(o.group, "ackline-web");
        assert_eq!(o.max_attempts, 7);
        assert_eq!(o.partitions, 12);
        assert_eq!(o.session_timeout, Duration::from_secs(8));
        assert_eq!(
            o.client_config,
            vec![
                ("batch.num.messages".to_string(), "1".to_string()),
                ("sasl.mechanism".to_string(), "PLAIN".to_string()),
            ]
        );
        assert_eq!(o.tls_ca_pem, None);
        for (lease, session) in [("2s", 6), ("30s", 10)] {
            let c = load(&[("ACKLINE_WORKER_LEASE", lease)]).unwrap();
            let o = kafka_options(&c);
            assert_eq!(o.session_timeout, Duration::from_secs(session), "{lease}");
            assert_eq!((o.group.as_str(), o.partitions), ("ackline-logs", 1));
            assert!(o.client_config.is_empty());
        }
        // broker.tls_ca_file is the CA of Kafka's TLS too.
        let ca = tempfile::NamedTempFile::new().unwrap();
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        std::fs::write(ca.path(), pem).unwrap();
        let path = ca.path().display().to_string();
        let c = load(&[("ACKLINE_BROKER_TLS_CA_FILE", path.as_str())]).unwrap();
        assert_eq!(kafka_options(&c).tls_ca_pem.as_deref(), Some(pem));
        for bad in [
            ("ACKLINE_BROKER_KAFKA_PARTITIONS", "0"),
            ("ACKLINE_BROKER_KAFKA_SETTINGS", "Bad Name=1"),
        ] {
            let e = load(&[bad]).unwrap_err().to_string();
            assert!(e.contains(bad.0), "{e}");
        }
    }

    #[test]
    fn the_configured_queue_is_appended_only_when_the_url_names_none() {
        assert_eq!(
            http_queue_url("http://127.0.0.1:8470", "logs"),
            "http://127.0.0.1:8470/logs"
        );
        assert_eq!(
            http_queue_url("http://127.0.0.1:8470/", "q1"),
            "http://127.0.0.1:8470/q1"
        );
        assert_eq!(
            http_queue_url("http://127.0.0.1:8470/other", "q1"),
            "http://127.0.0.1:8470/other"
        );
    }
}
