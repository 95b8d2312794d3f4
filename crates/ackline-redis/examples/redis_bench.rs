//! Throughput and latency of the Redis Streams backend beside a bare redis-rs loop and the
//! embedded queue, in one run.
//!
//! The workload of the other backends' benchmarks: 256-byte messages, one producer publishing
//! confirmed batches of 1000 concurrently with one consumer (prefetch 1000) that acks every
//! message individually. A message counts once its ack is done. Latency is from the publish
//! call (the payload carries the time the batch was handed to publish) to receipt.
//!
//! Three variants, each round running all three in a rotated order to spread the noise of a
//! shared machine:
//! - `bare`: plain redis-rs, as fast as it allows for the same work: a multiplexed connection
//!   for the producer, whose batch is one pipeline of 1000 `XADD <q> * payload <256 B>` (sent
//!   together, then all answers awaited); a second connection for the consumer,
//!   `XREADGROUP GROUP g c COUNT 1000 BLOCK 100 STREAMS <q> >`, then one pipeline of an
//!   `XACK` per delivered entry (never one `XACK` for many ids, as the backend's unit is one
//!   delivery). Acked entries stay in the stream (no `XDEL`).
//! - `redis`: `ackline-redis`'s `RedisBroker` on a fresh stream (its `publish`, `receive`,
//!   `settle`: `XADD` with id and `enqueued_at` fields, `XREADGROUP`, and the ack script's
//!   fenced `XACK` + `XDEL` per delivery).
//! - `embedded`: `ackline_broker::embedded::EmbeddedBroker` on an `ackline-queue` queue in a
//!   temporary directory, `Fsync::Always` (confirm after fsync).
//!
//! `redis` and `embedded` run through the same `Broker`/`Consumer` driver ([`drive`]).
//! Keys are unique per run and deleted afterwards; every variant is bounded by [`LIMIT`].
//!
//! ```text
//! cargo run --release -p ackline-redis --example redis_bench -- [MESSAGES] [ROUNDS] [VARIANTS]
//! ```
//! (`ACKLINE_REDIS_URL` or redis://127.0.0.1:6379/0 — a server with `appendonly yes`, since the
//! backend refuses one without; defaults 200000 messages, 3 rounds, all variants; VARIANTS is a
//! comma-separated subset of bare,redis,embedded.)

use std::sync::Arc;
use std::time::Instant;

use ackline_broker::bench::{
    Args, BATCH, BenchResult, LIMIT, Outcome, PREFETCH, SIZE, drive, embedded, latency_us, load,
    payload, print_medians, print_ratios, round_ratios, rounds, unique,
};
use ackline_redis::{RedisBroker, RedisOptions};
use redis::Value;
use redis::aio::MultiplexedConnection;

type R<T> = BenchResult<T>;

/// The variants' keys (on the command line) and names (in the report).
const KEYS: [&str; 3] = ["bare", "redis", "embedded"];
const NAMES: [&str; 3] = ["bare redis-rs", "ackline-redis", "embedded"];

/// `(entry id, payload)` of an `XREADGROUP` reply for one stream.
fn read_entries(v: &Value) -> R<Vec<(String, Vec<u8>)>> {
    let Value::Array(streams) = v else {
        return Ok(Vec::new()); // Nil: the block timed out
    };
    let mut out = Vec::new();
    for s in streams {
        let Value::Array(parts) = s else {
            return Err("odd XREADGROUP reply".into());
        };
        let Some(Value::Array(entries)) = parts.get(1) else {
            return Err("odd XREADGROUP reply".into());
        };
        for e in entries {
            let Value::Array(e) = e else {
                return Err("odd entry".into());
            };
            let (Some(Value::BulkString(id)), Some(Value::Array(f))) = (e.first(), e.get(1)) else {
                return Err("odd entry".into());
            };
            let p = match f.get(1) {
                Some(Value::BulkString(p)) => p.clone(),
                _ => Vec::new(),
            };
            out.push((String::from_utf8_lossy(id).into_owned(), p));
        }
    }
    Ok(out)
}

/// Plain redis-rs doing the same work as the backend (see the module doc).
async fn bare(url: &str, q: &str, n: usize) -> R<Outcome> {
    let client = redis::Client::open(url)?;
    let mut admin = client.get_multiplexed_async_connection().await?;
    let _: Value = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(q)
        .arg("g")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut admin)
        .await?;
    let run = tokio::time::timeout(LIMIT, bare_run(&client, q, n)).await;
    let deleted: redis::RedisResult<Value> = redis::cmd("DEL").arg(q).query_async(&mut admin).await;
    let out = run.map_err(|_| format!("bare redis-rs: not done within {LIMIT:?}"))??;
    deleted?;
    Ok(out)
}

async fn bare_run(client: &redis::Client, q: &str, n: usize) -> R<Outcome> {
    let mut pconn: MultiplexedConnection = client.get_multiplexed_async_connection().await?;
    let mut cconn: MultiplexedConnection = client.get_multiplexed_async_connection().await?;
    let t0 = Instant::now();
    let qp = q.to_owned();
    let producer = tokio::spawn(async move {
        let mut sent = 0;
        while sent < n {
            let k = BATCH.min(n - sent);
            let mut pipe = redis::pipe();
            for _ in 0..k {
                pipe.cmd("XADD")
                    .arg(&qp)
                    .arg("*")
                    .arg("payload")
                    .arg(payload(t0))
                    .ignore();
            }
            let () = pipe.query_async(&mut pconn).await?;
            sent += k;
        }
        Ok::<(), redis::RedisError>(())
    });
    let mut lat = Vec::with_capacity(n);
    while lat.len() < n {
        let v: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("COUNT")
            .arg(BATCH)
            .arg("BLOCK")
            .arg(100)
            .arg("STREAMS")
            .arg(q)
            .arg(">")
            .query_async(&mut cconn)
            .await?;
        let entries = read_entries(&v)?;
        if entries.is_empty() {
            continue;
        }
        let mut pipe = redis::pipe();
        for (id, p) in &entries {
            lat.push(latency_us(t0, p));
            pipe.cmd("XACK").arg(q).arg("g").arg(id);
        }
        let acked: Vec<i64> = pipe.query_async(&mut cconn).await?;
        if acked.iter().any(|a| *a != 1) {
            return Err("an XACK acked nothing".into());
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    producer.await??;
    Ok(Outcome::new(n, secs, lat))
}

async fn backend(url: &str, q: &str, n: usize) -> R<Outcome> {
    let broker = Arc::new(RedisBroker::connect(url, q, RedisOptions::default()).await?);
    let run = tokio::time::timeout(LIMIT, drive(broker.clone(), n)).await;
    let deleted = RedisBroker::clone(&broker).delete().await;
    let out = run.map_err(|_| format!("ackline-redis: not done within {LIMIT:?}"))??;
    deleted?;
    Ok(out)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> R<()> {
    let args = Args::from_env(&KEYS)?;
    let n = args.n;
    let url =
        std::env::var(ackline_redis::ENV_URL).unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    // What the server promises (the backend reads it the same way at connect).
    let probe =
        RedisBroker::connect(&url, &unique("probe", 0, '.'), RedisOptions::default()).await?;
    println!(
        "{n} x {SIZE}-byte messages, one producer publishing confirmed batches of {BATCH}, one consumer, \
         prefetch {PREFETCH}, an ack per message; {}; embedded fsync=always",
        probe.durability()
    );
    probe.delete().await?;
    println!("load average at start: {}", load());
    let all = rounds(
        &args,
        &KEYS,
        &NAMES,
        async |i, round| match i {
            0 => bare(&url, &unique("bare", round, '.'), n).await,
            1 => backend(&url, &unique("backend", round, '.'), n).await,
            _ => embedded(tempfile::tempdir()?.path(), n).await,
        },
        |got| round_ratios(got, "ackline-redis", "bare redis-rs"),
    )
    .await?;
    print_medians(&all, &NAMES);
    print_ratios(&all, "ackline-redis", "bare redis-rs");
    Ok(())
}
