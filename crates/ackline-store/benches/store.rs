//! Records per second for a bare batched insert into each store: the
//! comparison the end-to-end benchmark quotes.
//!
//! `cargo bench -p ackline-store --bench store`. Records are parsed from the
//! loghub sample logs (`shared/data/loghub` beside the repository), each
//! written once under a fresh id (so every insert is a real insert, not a
//! duplicate). PostgreSQL is measured when reachable at
//! `ACKLINE_BENCH_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`):
//! the store's `write_batch` beside a bare binary `COPY` of the same records
//! into a table of the same layout and indexes (no staging, no conflict
//! check: the floor of any idempotent write), with 1 and 4 concurrent
//! writers (the store's pool, one connection each for the bare COPY), in
//! alternating rounds rather than criterion groups (see `postgres_vs_copy`);
//! `-- postgres` skips the SQLite groups, `ACKLINE_BENCH_PG_ROUNDS` sets the
//! rounds.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ackline_parse::{LineContext, Parser, Record, TimestampSource};
use ackline_store::{PostgresStore, SqliteStore, Store, StoreOptions};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

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
    let bare_table = format!("bench_bare_{}", std::process::id());
    let bare_opts = StoreOptions {
        table: bare_table.clone(),
        ..Default::default()
    };
    // Each variant writes its own table, so all three grow alike (a bigger index is a slower one).
    let redelivery_table = format!("bench_redelivery_{}", std::process::id());
    let redelivery_opts = StoreOptions {
        table: redelivery_table.clone(),
        ..Default::default()
    };
    let stores = rt.block_on(async {
        let pg = PostgresStore::connect(&url, &opts).await?;
        let redelivery = PostgresStore::connect(&url, &redelivery_opts).await?;
        // Creates the bare COPY's table with the store's layout and indexes.
        PostgresStore::connect(&url, &bare_opts).await?;
        Ok::<_, ackline_store::StoreError>((pg, redelivery))
    });
    match stores {
        Ok((pg, redelivery)) => {
            postgres_vs_copy(&rt, [&pg, &redelivery], &url, &bare_table, &templates);
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                for t in [&table, &bare_table, &redelivery_table] {
                    client
                        .batch_execute(&format!("DROP TABLE {t}"))
                        .await
                        .unwrap();
                    client
                        .execute(
                            "DELETE FROM ackline_schema_version WHERE table_name = $1",
                            &[t],
                        )
                        .await
                        .unwrap();
                }
            });
        }
        Err(e) => eprintln!("skipped PostgreSQL: {e}"),
    }
}

/// The bare COPY's column types; `fields` is sent as `BYTEA` because the
/// binary `jsonb` form is a version byte (1) and the JSON text, which the
/// bench builds itself (binary COPY carries no type on the wire: the column's
/// own input function reads it).
const BARE_TYPES: [Type; 16] = [
    Type::TEXT,
    Type::INT8,
    Type::INT4,
    Type::INT4,
    Type::TEXT,
    Type::INT2,
    Type::TEXT,
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::BYTEA,
    Type::BYTEA,
    Type::BOOL,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
];

/// One autocommitted binary COPY of `batch` into `table`: no staging, no
/// NUL handling (the loghub lines have none), no duplicate check.
async fn bare_copy(client: &tokio_postgres::Client, table: &str, batch: &[Record]) {
    let sql = format!(
        "COPY {table} (id, ts_ms, ts_nanos, ts_offset, timestamp_source, severity, host, app, \
         pid, message, fields, raw, raw_utf8, input, format, parse_error) \
         FROM STDIN (FORMAT binary)"
    );
    let sink = client.copy_in(&sql).await.unwrap();
    let mut w = std::pin::pin!(BinaryCopyInWriter::new(sink, &BARE_TYPES));
    for r in batch {
        let ts = r.timestamp;
        let nanos = ts.timestamp_subsec_nanos();
        let ms = ts.timestamp() * 1000 + i64::from(nanos.min(999_999_999) / 1_000_000);
        let source = match r.timestamp_source {
            TimestampSource::Line => "line",
            TimestampSource::LineAssumedOffset => "line_assumed_offset",
            TimestampSource::LineInferredYear => "line_inferred_year",
            TimestampSource::Ingest => "ingest",
        };
        let fields = (!r.fields.is_empty()).then(|| {
            let mut v = vec![1u8];
            serde_json::to_writer(&mut v, &r.fields).unwrap();
            v
        });
        let values: [&(dyn ToSql + Sync); 16] = [
            &r.id.as_str(),
            &ms,
            &(nanos as i32),
            &ts.offset().local_minus_utc(),
            &source,
            &r.severity.map(|s| i16::from(s.code())),
            &r.host.as_deref(),
            &r.app.as_deref(),
            &r.pid.map(|p| p as i64),
            &r.message.as_str(),
            &fields,
            &r.raw.as_bytes(),
            &r.raw.is_utf8(),
            &&*r.input,
            &r.format.name(),
            &r.parse_error.as_deref(),
        ];
        w.as_mut().write(&values).await.unwrap();
    }
    assert_eq!(w.finish().await.unwrap(), batch.len() as u64);
}

/// What one timed slice of the PostgreSQL comparison writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PgVariant {
    /// An autocommitted binary COPY per batch (no staging, no conflict check).
    BareCopy,
    /// `PostgresStore::write_batch`, every id new.
    Store,
    /// `PostgresStore::write_batch`, each batch's last record a repeat of its first: the
    /// fast path (a plain COPY) fails at the end and the staged, idempotent path writes the
    /// batch (the cost of a batch holding a redelivered record).
    StoreRedelivery,
}

/// The store beside a bare COPY of the same records at batch 1000, with 1
/// and 4 concurrent writers, in alternating rounds (each round times every
/// variant once, `PG_BATCHES` batches per writer), so every variant sees the
/// same load from whatever else runs on the machine. Not a criterion group:
/// criterion times one benchmark after the other, minutes apart, and on a
/// shared machine the load moves more than the difference measured. Prints
/// records/s per round and the median and range of each variant, and of the
/// store's share of the bare COPY's rate (the median of per-round ratios).
/// `ACKLINE_BENCH_PG_ROUNDS` rounds (default 7).
fn postgres_vs_copy(
    rt: &tokio::runtime::Runtime,
    [store, redelivery_store]: [&PostgresStore; 2],
    url: &str,
    bare_table: &str,
    templates: &[Record],
) {
    const BATCH: usize = 1000;
    const PG_BATCHES: usize = 40;
    let rounds: usize = std::env::var("ACKLINE_BENCH_PG_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let next = AtomicU64::new(0);
    let clients: Vec<Arc<tokio_postgres::Client>> = rt.block_on(async {
        let mut out = Vec::new();
        for _ in 0..4 {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            out.push(Arc::new(client));
        }
        out
    });
    let variants = [
        PgVariant::BareCopy,
        PgVariant::Store,
        PgVariant::StoreRedelivery,
    ];
    println!(
        "postgres, batch {BATCH}, {PG_BATCHES} batches per writer per slice, {rounds} rounds \
         (records/s: bare COPY | store | store, a redelivered record per batch)"
    );
    for writers in [1usize, 4] {
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
        for round in 0..rounds {
            // Rotate the order each round, so none always runs first.
            for k in 0..variants.len() {
                let v = (k + round) % variants.len();
                let what = variants[v];
                let per_writer: Vec<Vec<Vec<Record>>> = (0..writers)
                    .map(|_| {
                        (0..PG_BATCHES)
                            .map(|_| {
                                let mut b = fresh(templates, &next, BATCH);
                                if what == PgVariant::StoreRedelivery {
                                    b[BATCH - 1] = b[0].clone();
                                }
                                b
                            })
                            .collect()
                    })
                    .collect();
                let start = Instant::now();
                rt.block_on(async {
                    let mut tasks = Vec::new();
                    for (w, batches) in per_writer.into_iter().enumerate() {
                        let store = if what == PgVariant::StoreRedelivery {
                            redelivery_store.clone()
                        } else {
                            store.clone()
                        };
                        let client = clients[w].clone();
                        let table = bare_table.to_owned();
                        let dups = usize::from(what == PgVariant::StoreRedelivery);
                        tasks.push(tokio::spawn(async move {
                            for batch in &batches {
                                if what == PgVariant::BareCopy {
                                    bare_copy(&client, &table, batch).await;
                                } else {
                                    let r = store.write_batch(batch).await.unwrap();
                                    assert_eq!(r.duplicates, dups);
                                    assert_eq!(r.inserted, batch.len() - dups);
                                }
                            }
                        }));
                    }
                    for t in tasks {
                        t.await.unwrap();
                    }
                });
                let secs = start.elapsed().as_secs_f64();
                rates[v].push((writers * PG_BATCHES * BATCH) as f64 / secs);
            }
            println!(
                "  {writers} writer(s), round {}: {:>8.0} | {:>8.0} | {:>8.0}",
                round + 1,
                rates[0][round],
                rates[1][round],
                rates[2][round]
            );
        }
        let ratios: Vec<f64> = rates[1].iter().zip(&rates[0]).map(|(s, b)| s / b).collect();
        for (name, r) in [
            ("bare COPY", &rates[0]),
            ("store", &rates[1]),
            ("store, redelivery", &rates[2]),
        ] {
            let (med, lo, hi) = median_range(r);
            println!(
                "  {writers} writer(s) {name:<18} median {med:>8.0} records/s (range {lo:.0}-{hi:.0})"
            );
        }
        let (med, lo, hi) = median_range(&ratios);
        println!(
            "  {writers} writer(s) store / bare COPY: median {:.0}% (range {:.0}-{:.0}%)",
            med * 100.0,
            lo * 100.0,
            hi * 100.0
        );
    }
}

/// The median, lowest and highest of `v`.
fn median_range(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        return (0.0, 0.0, 0.0);
    }
    let med = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    (med, s[0], s[n - 1])
}

criterion_group!(benches, stores);
criterion_main!(benches);
