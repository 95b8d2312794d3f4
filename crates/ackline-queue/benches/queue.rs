//! Criterion benchmarks of the engine's hot paths, on a real filesystem.
//!
//! - `cycle/fsync=…`: publish a batch, receive it, ack each message individually, wait for
//!   the acks' commit: the engine's full cost per message, with each durability mode.
//! - `publish/…`: confirmed publishes alone, batch sizes 1 and 100.
//!
//! Run: `cargo bench -p ackline-queue --bench queue`. The end-to-end concurrent benchmark
//! with producers and consumers on threads is `ackline bench queue` (see docs/BENCHMARKS.md).

use std::hint::black_box;
use std::time::Duration;

use ackline_queue::{Db, Fsync, NewMessage, QueueOptions};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const BATCH: usize = 1000;

fn batch(n: usize) -> Vec<NewMessage> {
    (0..n).map(|_| NewMessage::new(vec![b'x'; 256])).collect()
}

fn cycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("cycle");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(20);
    for (name, fsync) in [
        ("always", Fsync::Always),
        ("interval", Fsync::Interval(Duration::from_millis(50))),
        ("never", Fsync::Never),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(dir.path()).expect("open");
        let q = db
            .queue(
                "bench",
                QueueOptions {
                    fsync,
                    ..Default::default()
                },
            )
            .expect("queue");
        let consumer = q.consumer();
        g.bench_function(format!("fsync={name}"), |b| {
            b.iter_batched(
                || batch(BATCH),
                |msgs| {
                    q.publish(msgs).expect("publish");
                    let ds = consumer
                        .try_receive(BATCH, Duration::from_secs(60))
                        .expect("receive");
                    let mut last = None;
                    for d in &ds {
                        last = Some(consumer.ack(d.tag).expect("ack"));
                    }
                    if let Some(commit) = last {
                        commit.wait().expect("commit");
                    }
                    black_box(ds.len())
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn publish(c: &mut Criterion) {
    let mut g = c.benchmark_group("publish");
    g.sample_size(20);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path()).expect("open");
    let q = db.queue("bench", QueueOptions::default()).expect("queue");
    for n in [1usize, 100] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("always/batch={n}"), |b| {
            b.iter_batched(
                || batch(n),
                |msgs| q.publish(msgs).expect("publish"),
                BatchSize::SmallInput,
            )
        });
        // Keep the queue from filling up.
        let consumer = q.consumer();
        while let Ok(ds) = consumer.try_receive(10_000, Duration::from_secs(60)) {
            if ds.is_empty() {
                break;
            }
            for d in ds {
                let _ = consumer.ack(d.tag);
            }
        }
    }
    g.finish();
}

criterion_group!(benches, cycle, publish);
criterion_main!(benches);
