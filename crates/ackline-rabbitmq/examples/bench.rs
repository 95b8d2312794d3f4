//! Throughput and latency of the RabbitMQ backend beside a bare lapin loop, in one run.
//!
//! The workload of the embedded queue's benchmark: 256-byte messages, confirmed publish in
//! batches of 1000 concurrently with one consumer (prefetch 1000) that acks every message
//! individually, on a fresh durable quorum queue. Latency is publish call to receipt.
//!
//! ```text
//! cargo run --release -p ackline-rabbitmq --example bench -- [MESSAGES] [ROUNDS]
//! ```
//! (`ACKLINE_AMQP_URL` or amqp://guest:guest@127.0.0.1:5672/%2f.)

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ackline_broker::{Broker, Consumer, ConsumerOptions, Message, Settlement};
use ackline_rabbitmq::{RabbitBroker, RabbitOptions};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection, ConnectionProperties};

type R<T> = Result<T, Box<dyn Error + Send + Sync>>;

const SIZE: usize = 256;
const BATCH: usize = 1000;
const PREFETCH: u16 = 1000;

struct Outcome {
    secs: f64,
    lat_us: Vec<u64>,
}

impl Outcome {
    fn rate(&self, n: usize) -> f64 {
        n as f64 / self.secs
    }
    fn pct(&mut self, p: f64) -> f64 {
        self.lat_us.sort_unstable();
        let i = ((self.lat_us.len() as f64 - 1.0) * p).round() as usize;
        self.lat_us.get(i).copied().unwrap_or(0) as f64 / 1000.0
    }
}

fn payload(t0: Instant) -> Vec<u8> {
    let mut p = vec![b'x'; SIZE];
    let ns = t0.elapsed().as_nanos() as u64;
    p[..8].copy_from_slice(&ns.to_le_bytes());
    p
}

fn latency_us(t0: Instant, p: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&p[..8]);
    (t0.elapsed().as_nanos() as u64).saturating_sub(u64::from_le_bytes(b)) / 1000
}

async fn bare(url: &str, n: usize) -> R<Outcome> {
    let q = format!("ackline-bench.bare.{}", std::process::id());
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let pch = conn.create_channel().await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    pch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    )
    .await?;
    pch.confirm_select(ConfirmSelectOptions::default()).await?;
    let cch = conn.create_channel().await?;
    cch.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
    let mut consumer = cch
        .basic_consume(
            q.as_str().into(),
            "bare".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let t0 = Instant::now();
    let qp = q.clone();
    let producer = tokio::spawn(async move {
        let mut sent = 0;
        while sent < n {
            let k = BATCH.min(n - sent);
            let mut confirms = Vec::with_capacity(k);
            for _ in 0..k {
                confirms.push(
                    pch.basic_publish(
                        "".into(),
                        qp.as_str().into(),
                        BasicPublishOptions::default(),
                        &payload(t0),
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await?,
                );
            }
            for c in confirms {
                if !c.await?.is_ack() {
                    return Err::<(), Box<dyn Error + Send + Sync>>("nacked".into());
                }
            }
            sent += k;
        }
        Ok(())
    });
    let mut lat = Vec::with_capacity(n);
    while lat.len() < n {
        let d = std::future::poll_fn(|cx| {
            futures_core::Stream::poll_next(std::pin::Pin::new(&mut consumer), cx)
        })
        .await
        .ok_or("consumer ended")??;
        lat.push(latency_us(t0, &d.data));
        if !d.acker.ack(BasicAckOptions::default()).await? {
            return Err("ack on a dead channel".into());
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    producer.await??;
    cch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
        .await?;
    Ok(Outcome { secs, lat_us: lat })
}

async fn ackline(url: &str, n: usize) -> R<Outcome> {
    let q = format!("ackline-bench.ackline.{}", std::process::id());
    let broker = RabbitBroker::connect(url, &q, RabbitOptions::default()).await?;
    let c = broker
        .consumer(ConsumerOptions {
            prefetch: PREFETCH.into(),
            lease: Duration::from_secs(60),
        })
        .await?;
    let t0 = Instant::now();
    let b = Arc::new(broker.clone());
    let producer = tokio::spawn(async move {
        let mut sent = 0;
        while sent < n {
            let k = BATCH.min(n - sent);
            let batch = (sent..sent + k)
                .map(|i| Message::new(format!("b-{i}"), payload(t0)))
                .collect();
            b.publish(batch).await?;
            sent += k;
        }
        Ok::<(), ackline_broker::BrokerError>(())
    });
    let mut lat = Vec::with_capacity(n);
    while lat.len() < n {
        let ds = c.receive(BATCH, Duration::from_millis(100)).await?;
        let mut items = Vec::with_capacity(ds.len());
        for d in ds {
            lat.push(latency_us(t0, &d.payload));
            items.push((d.tag, Settlement::Ack));
        }
        for r in c.settle(items).await? {
            r?;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    producer.await??;
    c.close().await;
    broker.delete().await?;
    Ok(Outcome { secs, lat_us: lat })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> R<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(200_000);
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2);
    let url = std::env::var(ackline_rabbitmq::ENV_URL)
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    println!(
        "{n} x {SIZE}-byte messages, confirmed publish in batches of {BATCH}, one consumer, prefetch {PREFETCH}, an ack per message, quorum queue"
    );
    let (mut best_bare, mut best_ack) = (0f64, 0f64);
    for round in 1..=rounds {
        let mut b = bare(&url, n).await?;
        let mut a = ackline(&url, n).await?;
        println!(
            "round {round}: bare lapin {:>8.0} msgs/s (p50 {:.1} ms, p99 {:.1} ms) | ackline-rabbitmq {:>8.0} msgs/s (p50 {:.1} ms, p99 {:.1} ms) | ratio {:.0} %",
            b.rate(n),
            b.pct(0.5),
            b.pct(0.99),
            a.rate(n),
            a.pct(0.5),
            a.pct(0.99),
            100.0 * a.rate(n) / b.rate(n)
        );
        best_bare = best_bare.max(b.rate(n));
        best_ack = best_ack.max(a.rate(n));
    }
    println!(
        "best: bare {best_bare:.0} msgs/s, ackline {best_ack:.0} msgs/s, ratio {:.0} %",
        100.0 * best_ack / best_bare
    );
    Ok(())
}
