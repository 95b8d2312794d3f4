//! Throughput and latency of the RabbitMQ backend beside a bare lapin loop and the embedded
//! queue, in one run.
//!
//! The workload of the embedded queue's benchmark: 256-byte messages, one producer publishing
//! confirmed batches of 1000 concurrently with one consumer (prefetch 1000) that acks every
//! message individually. A message counts once its ack is done. Latency is from the publish
//! call (the payload carries the time the batch was handed to publish) to receipt.
//!
//! Three variants, each round running all three in a rotated order to spread the noise of a
//! shared machine:
//! - `bare`: plain lapin, as fast as it allows for the same work: one connection, a confirm-mode
//!   publish channel (persistent, mandatory; a batch's 1000 publishes all started, then its
//!   1000 confirms awaited: the backend's window), a consumer channel with `basic.qos(1000)`,
//!   one `basic.ack` per delivery (never `multiple`, as the backend), the acks of every
//!   delivery already there (up to 1000) started together and then awaited, never one ack
//!   awaited before the next is sent. lapin sends a publish's or an ack's frames on the
//!   future's first poll, so starting them all and then awaiting them is its pipelined form.
//! - `rabbitmq`: `ackline-rabbitmq`'s `RabbitBroker` on a fresh quorum queue.
//! - `embedded`: `ackline_broker::embedded::EmbeddedBroker` on an `ackline-queue` queue in a
//!   temporary directory, `Fsync::Always` (confirm after fsync).
//!
//! `rabbitmq` and `embedded` run through the same `Broker`/`Consumer` driver ([`drive`]):
//! `publish` of 1000-message batches in one task, `receive(1000, 100 ms)` and one `settle`
//! of an `Ack` per delivery in another.
//! Queue names are unique per run and deleted afterwards; every variant is bounded by
//! [`LIMIT`].
//!
//! ```text
//! cargo run --release -p ackline-rabbitmq --example rabbitmq_bench -- [MESSAGES] [ROUNDS] [VARIANTS]
//! ```
//! (`ACKLINE_AMQP_URL` or amqp://guest:guest@127.0.0.1:5672/%2f; defaults 200000 messages,
//! 3 rounds, all variants; VARIANTS is a comma-separated subset of bare,rabbitmq,embedded.)

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use ackline_broker::bench::{
    Args, BATCH, BenchResult, LIMIT, Outcome, PREFETCH, SIZE, drive, embedded, latency_us, load,
    payload, print_medians, print_ratios, round_ratios, rounds, unique,
};
use ackline_rabbitmq::{RabbitBroker, RabbitOptions};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};

type R<T> = BenchResult<T>;

/// The variants' keys (on the command line) and names (in the report).
const KEYS: [&str; 3] = ["bare", "rabbitmq", "embedded"];
const NAMES: [&str; 3] = ["bare lapin", "ackline-rabbitmq", "embedded"];

/// Polls every future once (lapin sends a publish's or an ack's frames on the first poll),
/// then awaits each in order: the I/O of all of them is in flight together, and each is
/// polled again only when awaited (not on every wake, as a join would).
async fn in_flight<F: Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let early: Vec<Option<F::Output>> = std::future::poll_fn(|cx| {
        Poll::Ready(
            futs.iter_mut()
                .map(|f| match f.as_mut().poll(cx) {
                    Poll::Ready(v) => Some(v),
                    Poll::Pending => None,
                })
                .collect(),
        )
    })
    .await;
    let mut out = Vec::with_capacity(early.len());
    for (f, e) in futs.into_iter().zip(early) {
        out.push(match e {
            Some(v) => v,
            None => f.await,
        });
    }
    out
}

/// The next delivery, waiting for it.
async fn next(c: &mut lapin::Consumer) -> Option<lapin::Result<lapin::message::Delivery>> {
    std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut *c), cx)).await
}

/// The next delivery if one is already there: `None` if none is, `Some(None)` at the stream's
/// end (which lapin reports only once).
async fn ready(c: &mut lapin::Consumer) -> Option<Option<lapin::Result<lapin::message::Delivery>>> {
    std::future::poll_fn(|cx| {
        Poll::Ready(
            match futures_core::Stream::poll_next(Pin::new(&mut *c), cx) {
                Poll::Ready(d) => Some(d),
                Poll::Pending => None,
            },
        )
    })
    .await
}

/// A persistent, mandatory publish to `q` through the default exchange.
async fn publish(ch: &lapin::Channel, q: &str, p: &[u8]) -> lapin::Result<lapin::PublisherConfirm> {
    ch.basic_publish(
        "".into(),
        q.into(),
        BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        p,
        BasicProperties::default().with_delivery_mode(2),
    )
    .await
}

/// Plain lapin doing the same work as the backend (see the module doc).
async fn bare(url: &str, q: &str, n: usize) -> R<Outcome> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let pch = conn.create_channel().await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    pch.queue_declare(
        q.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await?;
    let run = tokio::time::timeout(LIMIT, bare_run(&conn, pch.clone(), q, n)).await;
    // Delete the queue whatever happened.
    let deleted = pch
        .queue_delete(q.into(), QueueDeleteOptions::default())
        .await;
    let _ = conn.close(200, "bench done".into()).await;
    let out = run.map_err(|_| format!("bare lapin: not done within {LIMIT:?}"))??;
    deleted?;
    Ok(out)
}

async fn bare_run(conn: &Connection, pch: lapin::Channel, q: &str, n: usize) -> R<Outcome> {
    pch.confirm_select(ConfirmSelectOptions::default()).await?;
    let cch = conn.create_channel().await?;
    cch.basic_qos(PREFETCH as u16, BasicQosOptions::default())
        .await?;
    let mut consumer = cch
        .basic_consume(
            q.into(),
            "bare".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let t0 = Instant::now();
    let qp = q.to_owned();
    let producer = tokio::spawn(async move {
        let mut sent = 0;
        while sent < n {
            let k = BATCH.min(n - sent);
            let batch: Vec<Vec<u8>> = (0..k).map(|_| payload(t0)).collect();
            // All of a batch's publishes are started, then all its confirms awaited.
            let mut confirms = Vec::with_capacity(k);
            for c in in_flight(batch.iter().map(|p| publish(&pch, &qp, p)).collect()).await {
                confirms.push(c?);
            }
            for c in confirms {
                match c.await? {
                    Confirmation::Ack(None) => {}
                    _ => {
                        return Err::<(), Box<dyn std::error::Error + Send + Sync>>(
                            "not confirmed".into(),
                        );
                    }
                }
            }
            sent += k;
        }
        Ok(())
    });
    let mut lat = Vec::with_capacity(n);
    let mut acks = Vec::with_capacity(BATCH);
    while lat.len() < n {
        // Wait for one delivery, take every one already there (up to a batch), then start
        // their acks together and await them (what the backend's `settle` does).
        let d = next(&mut consumer).await.ok_or("consumer ended")??;
        lat.push(latency_us(t0, &d.data));
        acks.push(d.acker);
        while acks.len() < BATCH
            && lat.len() < n
            && let Some(d) = ready(&mut consumer).await
        {
            let d = d.ok_or("consumer ended")??;
            lat.push(latency_us(t0, &d.data));
            acks.push(d.acker);
        }
        let done = in_flight(
            acks.iter()
                .map(|a| a.ack(BasicAckOptions::default()))
                .collect(),
        )
        .await;
        for r in done {
            if !r? {
                return Err("ack on a dead channel".into());
            }
        }
        acks.clear();
    }
    let secs = t0.elapsed().as_secs_f64();
    producer.await??;
    // Cancel and close explicitly: dropping a consumer and its channel while the queue is
    // deleted races in lapin (an unexpected cancel-ok closes the connection).
    cch.basic_cancel("bare".into(), BasicCancelOptions::default())
        .await?;
    drop(consumer);
    cch.close(200, "bench done".into()).await?;
    Ok(Outcome::new(n, secs, lat))
}

async fn rabbit(url: &str, q: &str, n: usize) -> R<Outcome> {
    let broker = Arc::new(RabbitBroker::connect(url, q, RabbitOptions::default()).await?);
    let run = tokio::time::timeout(LIMIT, drive(broker.clone(), n)).await;
    // Delete the queues whatever happened.
    let deleted = RabbitBroker::clone(&broker).delete().await;
    let out = run.map_err(|_| format!("ackline-rabbitmq: not done within {LIMIT:?}"))??;
    deleted?;
    Ok(out)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> R<()> {
    // Which variants to run (for profiling one alone): the third argument; all by default.
    let args = Args::from_env(&KEYS)?;
    let n = args.n;
    let url = std::env::var(ackline_rabbitmq::ENV_URL)
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    println!(
        "{n} x {SIZE}-byte messages, one producer publishing confirmed batches of {BATCH}, one consumer, \
         prefetch {PREFETCH}, an ack per message; RabbitMQ quorum queues; embedded fsync=always"
    );
    println!("load average at start: {}", load());
    let all = rounds(
        &args,
        &KEYS,
        &NAMES,
        async |i, round| match i {
            0 => bare(&url, &unique("bare", round, '-'), n).await,
            1 => rabbit(&url, &unique("backend", round, '-'), n).await,
            _ => embedded(tempfile::tempdir()?.path(), n).await,
        },
        |got| round_ratios(got, "ackline-rabbitmq", "bare lapin"),
    )
    .await?;
    print_medians(&all, &NAMES);
    print_ratios(&all, "ackline-rabbitmq", "bare lapin");
    Ok(())
}
