//! Throughput and latency of the NATS JetStream backend beside a bare async-nats loop and the
//! embedded queue, in one run; and how long a dead consumer's deliveries take to come back.
//!
//! The workload of the embedded queue's benchmark: 256-byte messages, one producer publishing
//! confirmed batches of 1000 concurrently with one consumer (prefetch 1000) that acks every
//! message individually. A message counts once its ack is confirmed. Latency is from the
//! publish call (the payload carries the time the batch was handed to publish) to receipt.
//!
//! Variants, each round running all of them in a rotated order to spread the noise of a
//! shared machine:
//! - `bare-batched` / `bare-sync`: plain async-nats doing the same work as fast as it allows:
//!   the same stream (file storage, work-queue retention) and durable pull consumer, a batch's
//!   1000 publishes (each with `Nats-Msg-Id`) all sent before their PubAcks are awaited,
//!   `fetch` (no_wait) of up to 1000 and, when nothing is there, a pull that waits 100 ms;
//!   acks: `batched` sends plain `+ACK`s with the last one an AckSync request (its answer
//!   confirms the batch), `sync` makes every `+ACK` an AckSync request, all in flight at once.
//! - `nats-batched` / `nats-sync`: `ackline-nats`'s `NatsBroker` with `AckMode::Batched` /
//!   `AckMode::Sync`, through the `Broker`/`Consumer` driver ([`drive`]).
//! - `embedded`: `ackline_broker::embedded::EmbeddedBroker` on an `ackline-queue` queue in a
//!   temporary directory, `Fsync::Always` (confirm after fsync), through the same driver.
//!
//! Then, once: a consumer receives 100 deliveries and dies without settling (JetStream: its
//! connection is closed, nothing is nacked; embedded: the consumer is dropped); the time until
//! another consumer has all 100 back is printed (JetStream: `AckWait`, 5 s here; embedded: at
//! once).
//!
//! ```text
//! cargo run --release -p ackline-nats --example nats_bench -- [MESSAGES] [ROUNDS] [VARIANTS]
//! ```
//! (`ACKLINE_NATS_URL` or nats://127.0.0.1:4222; defaults 200000 messages, 3 rounds, all
//! variants; VARIANTS is a comma-separated subset of the names above.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use ackline_broker::bench::{
    Args, BATCH, BenchResult, LIMIT, Outcome, PREFETCH, SIZE, drive, embedded, latency_us, load,
    paired, payload, print_medians, rate, rounds, unique,
};
use ackline_broker::embedded::EmbeddedBroker;
use ackline_broker::{Broker, Consumer, ConsumerOptions, Message, Settlement};
use ackline_nats::{AckMode, NatsBroker, NatsOptions};
use ackline_queue::{Db, QueueOptions};
use async_nats::jetstream::{self, consumer::pull, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::join_all;

type R<T> = BenchResult<T>;

const VARIANTS: [&str; 5] = [
    "bare-batched",
    "nats-batched",
    "bare-sync",
    "nats-sync",
    "embedded",
];

/// Plain async-nats doing the same work as the backend (see the module doc).
async fn bare(url: &str, q: &str, n: usize, sync: bool) -> R<Outcome> {
    let client = async_nats::connect(url).await?;
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: q.to_owned(),
        subjects: vec![format!("bench.{q}")],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await?;
    let run = tokio::time::timeout(LIMIT, bare_run(&client, &js, q, n, sync)).await;
    let deleted = js.delete_stream(q).await;
    let out = run.map_err(|_| format!("bare: not done within {LIMIT:?}"))??;
    deleted?;
    Ok(out)
}

async fn bare_run(
    client: &async_nats::Client,
    js: &jetstream::Context,
    q: &str,
    n: usize,
    sync: bool,
) -> R<Outcome> {
    let consumer: jetstream::consumer::PullConsumer = js
        .get_stream(q)
        .await?
        .create_consumer(pull::Config {
            durable_name: Some("bare".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_deliver: -1,
            max_ack_pending: 20_000,
            ..Default::default()
        })
        .await?;
    let t0 = Instant::now();
    let (pjs, subject) = (js.clone(), format!("bench.{q}"));
    let producer = tokio::spawn(async move {
        let mut sent = 0;
        while sent < n {
            let k = BATCH.min(n - sent);
            let mut acks = Vec::with_capacity(k);
            for i in sent..sent + k {
                let mut h = async_nats::HeaderMap::new();
                h.insert("Nats-Msg-Id", format!("b-{i}").as_str());
                acks.push(
                    pjs.publish_with_headers(subject.clone(), h, payload(t0).into())
                        .await?,
                );
            }
            for a in acks {
                a.await?;
            }
            sent += k;
        }
        Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    });
    let mut lat = Vec::with_capacity(n);
    while lat.len() < n {
        let mut msgs = Vec::with_capacity(BATCH);
        let mut fetched = consumer.fetch().max_messages(BATCH).messages().await?;
        while let Some(m) = fetched.next().await {
            msgs.push(m?);
        }
        if msgs.is_empty() {
            let mut waited = consumer
                .batch()
                .max_messages(1)
                .expires(Duration::from_millis(100))
                .messages()
                .await?;
            while let Some(m) = waited.next().await {
                msgs.push(m?);
            }
        }
        let mut replies = Vec::with_capacity(msgs.len());
        for m in &msgs {
            lat.push(latency_us(t0, &m.payload));
            if let Some(r) = m.reply.clone() {
                replies.push(r);
            }
        }
        let requests: Vec<_> = if sync {
            replies
        } else {
            let last = replies.pop();
            for r in replies {
                client.publish(r, Bytes::from_static(b"+ACK")).await?;
            }
            last.into_iter().collect()
        };
        for r in join_all(
            requests
                .into_iter()
                .map(|r| client.request(r, Bytes::from_static(b"+ACK"))),
        )
        .await
        {
            r?;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    producer.await??;
    Ok(Outcome::new(n, secs, lat))
}

fn nats_options(mode: AckMode) -> NatsOptions {
    NatsOptions {
        ack_mode: mode,
        ..NatsOptions::default()
    }
}

async fn nats(url: &str, q: &str, n: usize, mode: AckMode) -> R<Outcome> {
    let broker = Arc::new(NatsBroker::connect(url, q, nats_options(mode)).await?);
    let run = tokio::time::timeout(LIMIT, drive(broker.clone(), n)).await;
    let deleted = NatsBroker::clone(&broker).delete().await;
    let out = run.map_err(|_| format!("ackline-nats: not done within {LIMIT:?}"))??;
    deleted?;
    Ok(out)
}

/// Receives until `n` deliveries came; the time it took.
async fn until_back<C: Consumer>(c: &C, n: usize) -> R<Duration> {
    let t = Instant::now();
    let mut got = 0;
    while got < n {
        if t.elapsed() > Duration::from_secs(60) {
            return Err("deliveries did not come back within 60 s".into());
        }
        let ds = c.receive(n - got, Duration::from_millis(200)).await?;
        got += ds.len();
        let items = ds.into_iter().map(|d| (d.tag, Settlement::Ack)).collect();
        c.settle(items).await?;
    }
    Ok(t.elapsed())
}

/// A consumer dies holding 100 deliveries: how long until another has them all.
async fn dead_consumer(url: &str) -> R<(Duration, Duration)> {
    const HELD: usize = 100;
    let ack_wait = Duration::from_secs(5);
    let opts = ConsumerOptions {
        prefetch: HELD,
        lease: Duration::from_secs(60),
    };
    let msgs = || {
        (0..HELD)
            .map(|i| Message::new(format!("d-{i}"), "x"))
            .collect()
    };
    // JetStream: the dying consumer has its own connection, closed without a settlement.
    let q = unique("dead", 0, '-');
    let o = NatsOptions {
        ack_wait,
        ..NatsOptions::default()
    };
    let survivor = NatsBroker::connect(url, &q, o.clone()).await?;
    survivor.publish(msgs()).await?;
    let dying = NatsBroker::connect(url, &q, o).await?;
    let c = dying.consumer(opts).await?;
    let mut held = 0;
    while held < HELD {
        held += c.receive(HELD - held, Duration::from_secs(1)).await?.len();
    }
    std::mem::forget(c); // no release: as if the process died
    dying.close().await;
    let other = survivor.consumer(opts).await?;
    let nats = until_back(&other, HELD).await;
    other.close().await;
    survivor.delete().await?;
    // Embedded: the consumer is dropped (its process's session ends).
    let dir = tempfile::tempdir()?;
    let db = Db::open(dir.path())?;
    let b = EmbeddedBroker::new(db.queue("dead", QueueOptions::default())?);
    b.publish(msgs()).await?;
    let c = b.consumer(opts).await?;
    let mut held = 0;
    while held < HELD {
        held += c.receive(HELD - held, Duration::from_secs(1)).await?.len();
    }
    drop(c);
    let other = b.consumer(opts).await?;
    let emb = until_back(&other, HELD).await?;
    drop(other);
    drop(b);
    db.close();
    Ok((nats?, emb))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> R<()> {
    let args = Args::from_env(&VARIANTS)?;
    let n = args.n;
    let url =
        std::env::var(ackline_nats::ENV_URL).unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    println!(
        "{n} x {SIZE}-byte messages, one producer publishing confirmed batches of {BATCH}, one \
         consumer, prefetch {PREFETCH}, an ack per message; JetStream file storage, work-queue \
         retention; embedded fsync=always"
    );
    println!("load average at start: {}", load());
    let all = rounds(
        &args,
        &VARIANTS,
        &VARIANTS,
        async |i, round| match VARIANTS[i] {
            "bare-batched" => bare(&url, &unique("bare", round, '-'), n, false).await,
            "bare-sync" => bare(&url, &unique("bare", round, '-'), n, true).await,
            "nats-batched" => nats(&url, &unique("nats", round, '-'), n, AckMode::Batched).await,
            "nats-sync" => nats(&url, &unique("nats", round, '-'), n, AckMode::Sync).await,
            _ => embedded(tempfile::tempdir()?.path(), n).await,
        },
        |got| {
            let (bb, nb) = (rate(got, 0)?, rate(got, 1)?);
            let (bs, ns) = (rate(got, 2)?, rate(got, 3)?);
            Some(format!(
                "nats-batched / bare-batched {:.0} %, nats-sync / bare-sync {:.0} %",
                100.0 * nb / bb,
                100.0 * ns / bs
            ))
        },
    )
    .await?;
    print_medians(&all, &VARIANTS);
    println!(
        "  median of the per-round ratios: nats-batched / bare-batched {:.0} %, nats-sync / bare-sync {:.0} % (target >= 90 %), embedded / nats-batched {:.1}x",
        100.0 * paired(&all, 1, 0),
        100.0 * paired(&all, 3, 2),
        paired(&all, 4, 1)
    );
    if args.only.is_empty() {
        let (nats, emb) = dead_consumer(&url).await?;
        println!(
            "a consumer dies holding 100 deliveries: back after {:.2} s on JetStream (AckWait 5 s), {:.1} ms on the embedded queue (released on disconnect)",
            nats.as_secs_f64(),
            emb.as_secs_f64() * 1000.0
        );
    }
    Ok(())
}
