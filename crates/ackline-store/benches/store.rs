//! Records per second for a bare batched insert into each store: the
//! comparison the end-to-end benchmark quotes.
//!
//! `cargo bench -p ackline-store --bench store`. Records are parsed from the
//! loghub sample logs (`shared/data/loghub` beside the repository), each
//! written once under a fresh id (so every insert is a real insert, not a
//! duplicate). PostgreSQL is measured when reachable at
//! `ACKLINE_BENCH_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`).
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ackline_parse::{LineContext, Parser, Record};
use ackline_store::{PostgresStore, SqliteStore, Store, StoreOptions};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const LOGHUB_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/loghub");

/// Every line of every loghub sample, parsed (synthetic lines without them).
fn templates() -> Vec<Record> {
    let parser = Parser::default();
    let mut lines: Vec<(String, Vec<u8>)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir(LOGHUB_DIR) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".log") {
                let bytes = std::fs::read(e.path()).unwrap();
                for l in bytes.split_inclusive(|&b| b == b'\n') {
                    lines.push((name.clone(), l.to_vec()));
                }
            }
        }
    }
    if lines.is_empty() {
        eprintln!("loghub data not found at {LOGHUB_DIR}: using synthetic lines");
        for i in 0..2000 {
            let l = format!(
                "<34>1 2026-01-01T00:00:{:02}Z host app {i} - - message number {i}\n",
                i % 60
            );
            lines.push(("synthetic".to_owned(), l.into_bytes()));
        }
    }
    lines
        .iter()
        .enumerate()
        .map(|(i, (name, l))| {
            parser
                .parse(
                    l,
                    &LineContext::now(format!("file:{name}:{i}"), Arc::from(name.as_str())),
                )
                .unwrap()
        })
        .collect()
}

/// `n` records cycling through the templates, with ids never used before.
fn fresh(templates: &[Record], next: &AtomicU64, n: usize) -> Vec<Record> {
    let start = next.fetch_add(n as u64, Ordering::Relaxed);
    (0..n)
        .map(|i| {
            let mut r = templates[(start as usize + i) % templates.len()].clone();
            r.id = format!("{}#{}", r.id, start + i as u64);
            r
        })
        .collect()
}

fn measure<S: Store>(
    c: &mut Criterion,
    group: &str,
    rt: &tokio::runtime::Runtime,
    store: &S,
    templates: &[Record],
) {
    let next = AtomicU64::new(0);
    let mut g = c.benchmark_group(group);
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    for size in [100usize, 1000] {
        g.throughput(Throughput::Elements(size as u64));
        g.bench_with_input(BenchmarkId::new("batch", size), &size, |b, &size| {
            b.iter_custom(|iters| {
                let batches: Vec<Vec<Record>> =
                    (0..iters).map(|_| fresh(templates, &next, size)).collect();
                let start = Instant::now();
                rt.block_on(async {
                    for batch in &batches {
                        let r = store.write_batch(batch).await.unwrap();
                        assert_eq!(r.inserted, size);
                    }
                });
                start.elapsed()
            });
        });
    }
    g.finish();
}

fn stores(c: &mut Criterion) {
    let templates = templates();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = rt
        .block_on(SqliteStore::open(
            dir.path().join("bench.db"),
            &StoreOptions::default(),
        ))
        .unwrap();
    measure(c, "sqlite_insert", &rt, &sqlite, &templates);

    let url = std::env::var("ACKLINE_BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let table = format!("bench_store_{}", std::process::id());
    let opts = StoreOptions {
        table: table.clone(),
        ..Default::default()
    };
    match rt.block_on(PostgresStore::connect(&url, &opts)) {
        Ok(pg) => {
            measure(c, "postgres_insert", &rt, &pg, &templates);
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP TABLE {table}"))
                    .await
                    .unwrap();
                client
                    .execute(
                        "DELETE FROM ackline_schema_version WHERE table_name = $1",
                        &[&table],
                    )
                    .await
                    .unwrap();
            });
        }
        Err(e) => eprintln!("skipped PostgreSQL: {e}"),
    }
}

criterion_group!(benches, stores);
criterion_main!(benches);
