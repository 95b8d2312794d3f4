//! Throughput and latency of the Kafka backend beside a bare rdkafka loop and the embedded
//! queue, in one run; and how long a dead consumer's deliveries take to come back.
//!
//! The workload of the other backends' benchmarks: 256-byte messages, one producer publishing
//! confirmed batches of 1000 concurrently with one consumer (prefetch 1000) that acks every
//! message individually. A message counts once its ack is done. Latency is from the publish
//! call (the payload carries the time the batch was handed to publish) to receipt.
//!
//! Three variants, each round running all three in a rotated order to spread the noise of a
//! shared machine:
//! - `bare`: plain rdkafka doing the same work as fast as it allows, with the backend's client
//!   settings: a `FutureProducer` (idempotent, `acks=all`, `linger.ms=1`), whose batch is 1000
//!   `send_result`s (key = the message id, no headers) all queued before their delivery
//!   reports are awaited; a `BaseConsumer` on a thread of its own, in a group of its own
//!   (manual commits, no offset store, `cooperative-sticky`), subscribed to the topic, that
//!   polls up to 1000 records (waiting 100 ms for the first, then taking what is there) and
//!   commits the consumed offsets synchronously once per batch, as the backend's `settle`
//!   does.
//! - `kafka`: `ackline-kafka`'s `KafkaBroker` on a fresh topic, through the `Broker`/`Consumer`
//!   driver ([`drive`]): `publish` (records with `ackline.id` and `ackline.enqueued_at`
//!   headers), `receive` (which commits the partition's hand-out journal before it hands
//!   records out) and `settle` (the tracker's contiguous prefix committed synchronously).
//! - `embedded`: `ackline_broker::embedded::EmbeddedBroker` on an `ackline-queue` queue in a
//!   temporary directory, `Fsync::Always` (confirm after fsync), through the same driver.
//!
//! Both Kafka variants get the same extra librdkafka settings ([`TANSU`], for the test broker
//! tansu; see docs/kafka.md): `batch.num.messages=1` (tansu 0.6 hides all but the first
//! record of a multi-record batch until more is produced, so a run would never finish) and
//! `fetch.wait.max.ms=100`. `ACKLINE_KAFKA_BENCH_CONFIG=k=v,k=v` adds settings after them (for
//! a real Kafka: `batch.num.messages=10000,fetch.wait.max.ms=500`, librdkafka's defaults).
//! Topics are unique per run and deleted afterwards; every variant is bounded by [`LIMIT`].
//!
//! Then, once: a consumer in a child process (this executable again) receives 100 deliveries
//! and is killed with SIGKILL; the time until a consumer of the same group has all 100 back is
//! printed (Kafka: the group session timeout, 10 s here; embedded: the consumer is dropped,
//! its deliveries are back at once).
//!
//! ```text
//! cargo run --release -p ackline-kafka --example kafka_bench -- [MESSAGES] [ROUNDS] [VARIANTS]
//! ```
//! (`ACKLINE_KAFKA_URL` or kafka://127.0.0.1:9092; defaults 200000 messages, 3 rounds, all
//! variants; VARIANTS is a comma-separated subset of bare,kafka,embedded;
//! `ACKLINE_BENCH_LOG=ackline_kafka=debug,librdkafka=info` logs to stderr.)

use std::collections::HashMap;
use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ackline_broker::bench::{
    Args, BATCH, BenchResult, LIMIT, Outcome, PREFETCH, Progress, SIZE, drive_counted, embedded,
    latency_us, load, payload, print_medians, print_ratios, round_ratios, rounds, unique,
};
use ackline_broker::embedded::EmbeddedBroker;
use ackline_broker::{Broker, Consumer, ConsumerOptions, Message, Settlement};
use ackline_kafka::{KafkaBroker, KafkaOptions, KafkaUrl};
use ackline_queue::{Db, QueueOptions};
use rdkafka::ClientConfig;
use rdkafka::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

type R<T> = BenchResult<T>;

/// The variants' keys (on the command line) and names (in the report).
const KEYS: [&str; 3] = ["bare", "kafka", "embedded"];
const NAMES: [&str; 3] = ["bare rdkafka", "ackline-kafka", "embedded"];

/// The server's URL.
const ENV_URL: &str = "ACKLINE_KAFKA_URL";
/// Extra librdkafka settings for both Kafka variants, `k=v,k=v`, after [`TANSU`].
const ENV_CONFIG: &str = "ACKLINE_KAFKA_BENCH_CONFIG";
/// A tracing filter (`ackline_kafka=debug,librdkafka=info`): the backend's and librdkafka's
/// log lines on stderr.
const ENV_LOG: &str = "ACKLINE_BENCH_LOG";
/// Set in the child process that dies holding deliveries: `url|topic|group`.
const ENV_CHILD: &str = "ACKLINE_KAFKA_BENCH_CHILD";

/// The settings tansu 0.6 needs (module doc; docs/kafka.md, "tansu").
const TANSU: [(&str, &str); 2] = [("batch.num.messages", "1"), ("fetch.wait.max.ms", "100")];

/// The group session timeout of every consumer here: the backend's default. (It was 6 s,
/// Kafka's minimum, until a round stalled now and then: on tansu 0.6 a client-side session
/// timeout or a live member expired across a rebalance can leave the group with a dead
/// leader, and the group then never forms again; docs/kafka.md, "tansu".)
const SESSION: Duration = Duration::from_secs(10);

/// [`TANSU`], then what [`ENV_CONFIG`] adds.
fn client_config() -> R<Vec<(String, String)>> {
    let mut c: Vec<(String, String)> = TANSU
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    if let Ok(extra) = std::env::var(ENV_CONFIG) {
        for kv in extra.split(',').filter(|s| !s.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("{ENV_CONFIG}: expected k=v, got {kv:?}"))?;
            c.push((k.to_owned(), v.to_owned()));
        }
    }
    Ok(c)
}

/// The backend's options for `topic`: a group of its own, replication 1 (one broker).
fn options(topic: &str, config: &[(String, String)]) -> KafkaOptions {
    KafkaOptions {
        group: format!("{topic}.group"),
        replication: Some(1),
        session_timeout: SESSION,
        client_config: config.to_vec(),
        ..KafkaOptions::default()
    }
}

/// A librdkafka configuration as the backend builds it (`client.rs`): the extra settings,
/// then the servers.
fn base_config(bootstrap: &str, config: &[(String, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in config {
        c.set(k, v);
    }
    c.set("bootstrap.servers", bootstrap)
        .set("socket.keepalive.enable", "true")
        .set("client.id", "ackline-bench");
    c
}

fn admin(bootstrap: &str, config: &[(String, String)]) -> R<AdminClient<DefaultClientContext>> {
    Ok(base_config(bootstrap, config).create()?)
}

/// Deletes `topics` (those missing are no error).
async fn delete_topics(bootstrap: &str, config: &[(String, String)], topics: &[&str]) -> R<()> {
    let a = admin(bootstrap, config)?;
    let ao = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for r in a.delete_topics(topics, &ao).await? {
        match r {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((t, code)) => return Err(format!("deleting topic {t:?}: {code}").into()),
        }
    }
    Ok(())
}

/// Plain rdkafka doing the same work as the backend (see the module doc).
async fn bare(bootstrap: &str, config: &[(String, String)], topic: &str, n: usize) -> R<Outcome> {
    let a = admin(bootstrap, config)?;
    let ao = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for r in a
        .create_topics(&[NewTopic::new(topic, 1, TopicReplication::Fixed(1))], &ao)
        .await?
    {
        r.map_err(|(t, code)| format!("creating topic {t:?}: {code}"))?;
    }
    let run = tokio::time::timeout(LIMIT, bare_run(bootstrap, config, topic, n)).await;
    let deleted = delete_topics(bootstrap, config, &[topic]).await;
    let out = run.map_err(|_| format!("bare rdkafka: not done within {LIMIT:?}"))??;
    deleted?;
    Ok(out)
}

async fn bare_run(
    bootstrap: &str,
    config: &[(String, String)],
    topic: &str,
    n: usize,
) -> R<Outcome> {
    // The backend's producer settings (client.rs, `Producer::new`).
    let producer: FutureProducer = base_config(bootstrap, config)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .set("linger.ms", "1")
        .create()?;
    // The backend's consumer settings (consumer.rs, `KafkaConsumer::start`).
    let consumer: BaseConsumer = base_config(bootstrap, config)
        .set("group.id", format!("{topic}.group"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", SESSION.as_millis().to_string())
        .set("partition.assignment.strategy", "cooperative-sticky")
        .create()?;
    consumer.subscribe(&[topic])?;
    let t0 = Instant::now();
    let pt = topic.to_owned();
    let producer = tokio::spawn(async move {
        let mut sent = 0;
        while sent < n {
            let k = BATCH.min(n - sent);
            let mut reports = Vec::with_capacity(k);
            for i in sent..sent + k {
                let key = format!("b-{i}");
                let p = payload(t0);
                let r = FutureRecord::to(&pt).key(key.as_bytes()).payload(&p);
                reports.push(producer.send_result(r).map_err(|(e, _)| e)?);
            }
            for r in reports {
                r.await
                    .map_err(|_| "the producer was closed before the delivery report")?
                    .map_err(|(e, _)| e)?;
            }
            sent += k;
        }
        Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    });
    let consumed = tokio::task::spawn_blocking(move || bare_consume(&consumer, t0, n)).await?;
    let secs = t0.elapsed().as_secs_f64();
    let lat = consumed?;
    producer.await??;
    Ok(Outcome::new(n, secs, lat))
}

/// The bare consumer's loop: a batch of up to [`BATCH`] records, then one synchronous commit
/// of the offsets after them. Latencies in µs.
fn bare_consume(c: &BaseConsumer, t0: Instant, n: usize) -> R<Vec<u64>> {
    let mut lat = Vec::with_capacity(n);
    while lat.len() < n {
        if t0.elapsed() > LIMIT {
            return Err("bare consumer: not done in time".into());
        }
        let mut next: HashMap<(String, i32), i64> = HashMap::new();
        let mut wait = Duration::from_millis(100);
        let mut got = 0;
        while got < BATCH {
            let Some(m) = c.poll(wait) else { break };
            let m = m?;
            lat.push(latency_us(t0, m.payload().unwrap_or_default()));
            next.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
            got += 1;
            wait = Duration::ZERO;
        }
        if next.is_empty() {
            continue;
        }
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in next {
            tpl.add_partition_offset(&t, p, Offset::Offset(o))?;
        }
        c.commit(&tpl, CommitMode::Sync)?;
    }
    Ok(lat)
}

async fn backend(url: &str, config: &[(String, String)], topic: &str, n: usize) -> R<Outcome> {
    let broker = Arc::new(KafkaBroker::connect(url, topic, options(topic, config)).await?);
    let progress = Arc::new(Progress::default());
    let run = tokio::time::timeout(LIMIT, drive_counted(broker.clone(), n, progress.clone())).await;
    drop(broker);
    let bootstrap = KafkaUrl::parse(url)?.bootstrap_servers();
    let deleted = delete_topics(
        &bootstrap,
        config,
        &[topic, &format!("{topic}.retry"), &format!("{topic}.dlq")],
    )
    .await;
    let out = match run {
        Ok(out) => out?,
        Err(_) => {
            // What the broker holds for the group, read before the topics go.
            let (b, c, t) = (bootstrap.clone(), config.to_vec(), topic.to_owned());
            let seen = tokio::task::spawn_blocking(move || diagnose(&b, &c, &t))
                .await
                .unwrap_or_else(|e| format!("diagnosis panicked: {e}"));
            let _ = deleted;
            return Err(
                format!("ackline-kafka: not done within {LIMIT:?}: {progress}; {seen}").into(),
            );
        }
    };
    deleted?;
    Ok(out)
}

/// For a backend run out of time: the topic's watermarks, the group's committed offset, and
/// what a plain consumer reads from that offset (so a broker that stopped serving records is
/// told apart from a consumer that stopped reading them).
fn diagnose(bootstrap: &str, config: &[(String, String)], topic: &str) -> String {
    let group = format!("{topic}.group");
    let go = || -> R<String> {
        let c: BaseConsumer = base_config(bootstrap, config)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()?;
        let t = Duration::from_secs(10);
        // Each part on its own: tansu once answered the watermarks with UnknownPartition in
        // a stalled round, and the committed offset alone still says where the group is.
        let marks = c.fetch_watermarks(topic, 0, t);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, 0);
        let committed = c
            .committed_offsets(tpl, t)
            .map(|l| l.find_partition(topic, 0).map(|e| e.offset()));
        let holds = match &marks {
            Ok((low, high)) => format!("the topic holds offsets {low}..{high}"),
            Err(e) => format!("the watermarks failed ({e})"),
        };
        let at = match (&committed, &marks) {
            (Ok(Some(Offset::Offset(o))), _) => *o,
            (_, Ok((low, _))) => *low,
            (Err(e), Err(_)) => {
                return Ok(format!("{holds}; the committed offset failed too ({e})"));
            }
            (Ok(_), Err(_)) => 0,
        };
        let group_at = match &committed {
            Ok(Some(Offset::Offset(o))) => format!("the group committed {o}"),
            Ok(_) => "the group committed nothing".to_string(),
            Err(e) => format!("the committed offset failed ({e})"),
        };
        let reader: BaseConsumer = base_config(bootstrap, config)
            .set("group.id", format!("{group}.diagnosis"))
            .set("enable.auto.commit", "false")
            .create()?;
        let mut a = TopicPartitionList::new();
        a.add_partition_offset(topic, 0, Offset::Offset(at))?;
        reader.assign(&a)?;
        let (mut read, mut first) = (0usize, None);
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until && read < 100 {
            if let Some(m) = reader.poll(Duration::from_millis(200)) {
                let m = m?;
                first.get_or_insert(m.offset());
                read += 1;
            }
        }
        Ok(format!(
            "{holds}, {group_at}; a plain consumer assigned at {at} read {read} records in \
             5 s (first {first:?})"
        ))
    };
    go().unwrap_or_else(|e| format!("diagnosis failed: {e}"))
}

/// Receives until `n` deliveries came, acking each; the time it took.
async fn until_back<C: Consumer>(c: &C, n: usize, since: Instant) -> R<Duration> {
    let mut got = 0;
    while got < n {
        if since.elapsed() > Duration::from_secs(60) {
            return Err("deliveries did not come back within 60 s".into());
        }
        let ds = c.receive(n - got, Duration::from_millis(200)).await?;
        got += ds.len();
        let items = ds.into_iter().map(|d| (d.tag, Settlement::Ack)).collect();
        for r in c.settle(items).await? {
            r?;
        }
    }
    Ok(since.elapsed())
}

const HELD: usize = 100;

fn held_options() -> ConsumerOptions {
    ConsumerOptions {
        prefetch: HELD,
        lease: Duration::from_secs(60),
    }
}

/// The child process: receives [`HELD`] deliveries, says so on stdout, then waits to be killed.
async fn child(spec: &str) -> R<()> {
    let mut parts = spec.splitn(2, '|');
    let (Some(url), Some(topic)) = (parts.next(), parts.next()) else {
        return Err(format!("{ENV_CHILD}: expected url|topic").into());
    };
    let config = client_config()?;
    let b = KafkaBroker::connect(url, topic, options(topic, &config)).await?;
    let c = b.consumer(held_options()).await?;
    let mut held = Vec::new();
    let t = Instant::now();
    while held.len() < HELD {
        if t.elapsed() > Duration::from_secs(60) {
            return Err("child: the deliveries did not come".into());
        }
        held.extend(c.receive(HELD - held.len(), Duration::from_secs(1)).await?);
    }
    println!("held {}", held.len());
    std::future::pending::<()>().await;
    Ok(())
}

/// Kills the child when dropped (an error leaves no process behind).
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A consumer dies holding 100 deliveries: how long until another has them all.
async fn dead_consumer(url: &str, config: &[(String, String)]) -> R<(Duration, Duration)> {
    let msgs = || {
        (0..HELD)
            .map(|i| Message::new(format!("d-{i}"), "x"))
            .collect()
    };
    // Kafka: the dying consumer is a process of its own, killed with SIGKILL.
    let topic = unique("dead", 0, '.');
    let survivor = KafkaBroker::connect(url, &topic, options(&topic, config)).await?;
    survivor.publish(msgs()).await?;
    let mut dying = Reap(
        Command::new(std::env::current_exe()?)
            .env(ENV_CHILD, format!("{url}|{topic}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?,
    );
    let out = dying.0.stdout.take().ok_or("the child's stdout")?;
    let line = tokio::task::spawn_blocking(move || {
        let mut l = String::new();
        std::io::BufReader::new(out).read_line(&mut l).map(|_| l)
    })
    .await??;
    if line.trim() != format!("held {HELD}") {
        return Err(format!("the child said {line:?}").into());
    }
    dying.0.kill()?; // SIGKILL
    let killed = Instant::now();
    dying.0.wait()?;
    let other = survivor.consumer(held_options()).await?;
    let kafka = until_back(&other, HELD, killed).await;
    other.close().await;
    drop(survivor);
    let bootstrap = KafkaUrl::parse(url)?.bootstrap_servers();
    delete_topics(
        &bootstrap,
        config,
        &[&topic, &format!("{topic}.retry"), &format!("{topic}.dlq")],
    )
    .await?;
    // Embedded: the consumer is dropped (its process's session ends).
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    let b = EmbeddedBroker::new(db.queue("dead", QueueOptions::default())?);
    b.publish(msgs()).await?;
    let c = b.consumer(held_options()).await?;
    let mut held = 0;
    while held < HELD {
        held += c.receive(HELD - held, Duration::from_secs(1)).await?.len();
    }
    drop(c);
    let dropped = Instant::now();
    let other = b.consumer(held_options()).await?;
    let emb = until_back(&other, HELD, dropped).await?;
    drop(other);
    drop(b);
    db.close();
    Ok((kafka?, emb))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> R<()> {
    if let Ok(filter) = std::env::var(ENV_LOG) {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
    if let Ok(spec) = std::env::var(ENV_CHILD) {
        return child(&spec).await;
    }
    let args = Args::from_env(&KEYS)?;
    let n = args.n;
    let url = std::env::var(ENV_URL).unwrap_or_else(|_| "kafka://127.0.0.1:9092".into());
    let bootstrap = KafkaUrl::parse(&url)?.bootstrap_servers();
    let config = client_config()?;
    let shown: Vec<String> = config.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "{n} x {SIZE}-byte messages, one producer publishing confirmed batches of {BATCH}, one \
         consumer, prefetch {PREFETCH}, an ack per message; Kafka at {url}: idempotent \
         producer, acks=all, one partition, {}; embedded fsync=always",
        shown.join(" ")
    );
    println!("load average at start: {}", load());
    let all = rounds(
        &args,
        &KEYS,
        &NAMES,
        async |i, round| match i {
            0 => bare(&bootstrap, &config, &unique("bare", round, '.'), n).await,
            1 => backend(&url, &config, &unique("backend", round, '.'), n).await,
            _ => embedded(tempfile::tempdir()?.path(), n).await,
        },
        |got| round_ratios(got, "ackline-kafka", "bare rdkafka"),
    )
    .await?;
    print_medians(&all, &NAMES);
    print_ratios(&all, "ackline-kafka", "bare rdkafka");
    if args.only.is_empty() {
        let (kafka, emb) = dead_consumer(&url, &config).await?;
        println!(
            "a consumer process is killed (SIGKILL) holding {HELD} deliveries: back after {:.2} s on Kafka (session timeout {} s), {:.1} ms on the embedded queue (released on disconnect)",
            kafka.as_secs_f64(),
            SESSION.as_secs(),
            emb.as_secs_f64() * 1000.0
        );
    }
    Ok(())
}
