//! PostgreSQL store, against the server on this machine (see `common::pg`).

use std::time::Duration;

use ackline_parse::Record;
use ackline_store::{PostgresStore, Store, StoreError, StoreOptions, WriteReport};

use crate::common::{PgTable, batch, full, hard_records, minimal, pg};

async fn open(t: &PgTable) -> PostgresStore {
    PostgresStore::connect(&t.url, &t.opts()).await.unwrap()
}

fn report(inserted: usize, duplicates: usize) -> WriteReport {
    WriteReport {
        inserted,
        duplicates,
    }
}

async fn count(t: &PgTable) -> i64 {
    t.client()
        .await
        .query_one(&format!("SELECT count(*) FROM {}", t.table), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn pg_rewrite_is_all_duplicates() {
    let Some(t) = pg("rewrite").await else { return };
    let s = open(&t).await;
    let b = batch("a", 0..50);
    assert_eq!(s.write_batch(&b).await.unwrap(), report(50, 0));
    assert_eq!(s.write_batch(&b).await.unwrap(), report(0, 50));
    s.probe().await.unwrap();
    // A second store on the same table (another worker) sees them too.
    let s2 = open(&t).await;
    assert_eq!(s2.write_batch(&b).await.unwrap(), report(0, 50));
    assert_eq!(count(&t).await, 50);
}

#[tokio::test]
async fn pg_overlapping_batches_store_each_id_once() {
    let Some(t) = pg("overlap").await else { return };
    let s = open(&t).await;
    assert_eq!(
        s.write_batch(&batch("a", 0..10)).await.unwrap(),
        report(10, 0)
    );
    assert_eq!(
        s.write_batch(&batch("a", 5..15)).await.unwrap(),
        report(5, 5)
    );
    let mut b = batch("a", 15..17);
    b.push(b[0].clone());
    assert_eq!(s.write_batch(&b).await.unwrap(), report(2, 1));
    assert_eq!(s.write_batch(&[]).await.unwrap(), report(0, 0));
    assert_eq!(count(&t).await, 17);
}

/// The fast path (a plain COPY) fails on the batch's last record, already
/// stored: the records COPYed before it must not stay, the stored one must
/// not change, and the batch is written by the idempotent path instead.
#[tokio::test]
async fn pg_a_stored_id_at_the_end_of_a_batch_is_a_duplicate_and_the_rest_is_stored_once() {
    let Some(t) = pg("late_dup").await else {
        return;
    };
    let s = open(&t).await;
    let first = full("d-9");
    assert_eq!(
        s.write_batch(std::slice::from_ref(&first)).await.unwrap(),
        report(1, 0)
    );
    let mut b = batch("d", 0..9);
    let mut again = full("d-9");
    again.message = "a different body under the same id".to_owned();
    b.push(again);
    assert_eq!(s.write_batch(&b).await.unwrap(), report(9, 1));
    assert_eq!(count(&t).await, 10);
    assert_eq!(s.get("d-9").await.unwrap(), Some(first));
    assert_eq!(s.get(&b[3].id).await.unwrap().as_ref(), Some(&b[3]));
    // Nothing is left behind in the session's staging table.
    assert_eq!(s.write_batch(&b).await.unwrap(), report(0, 10));
    assert_eq!(count(&t).await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_concurrent_overlapping_writers_store_each_id_once() {
    let Some(t) = pg("concurrent").await else {
        return;
    };
    let s = std::sync::Arc::new(open(&t).await);
    let mut tasks = Vec::new();
    for w in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut inserted = 0;
            for k in 0..10 {
                let start = (w * 7 + k * 13) % 100;
                let r = s.write_batch(&batch("c", start..start + 20)).await.unwrap();
                assert_eq!(r.inserted + r.duplicates, 20);
                inserted += r.inserted;
            }
            inserted
        }));
    }
    let mut inserted = 0;
    for task in tasks {
        inserted += task.await.unwrap();
    }
    assert_eq!(inserted as i64, count(&t).await);
}

#[tokio::test]
async fn pg_round_trips_every_field() {
    let Some(t) = pg("roundtrip").await else {
        return;
    };
    let s = open(&t).await;
    let records = hard_records(true);
    assert_eq!(
        s.write_batch(&records).await.unwrap(),
        report(records.len(), 0)
    );
    for r in &records {
        let back = s.get(&r.id).await.unwrap().unwrap();
        assert_eq!(&back, r, "record {}", r.id);
        assert_eq!(back.timestamp.offset(), r.timestamp.offset());
    }
    assert_eq!(s.get("absent").await.unwrap(), None);
    // NUL lines stay readable in SQL: U+FFFD in the text column, raw exact in bytea.
    let row = t
        .client()
        .await
        .query_one(
            &format!("SELECT message, raw, nul_originals IS NOT NULL FROM {} WHERE id = 'nul:everywhere'", t.table),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "a\u{FFFD}b\u{FFFD}");
    assert_eq!(row.get::<_, Vec<u8>>(1), b"a\0b\0\n");
    assert!(row.get::<_, bool>(2));
}

#[tokio::test]
async fn pg_rejects_a_nul_in_an_id_at_its_index() {
    let Some(t) = pg("nul_id").await else { return };
    let s = open(&t).await;
    let mut b = batch("r", 0..7);
    b[5] = full("bad\0id");
    let err = s.write_batch(&b).await.unwrap_err();
    let StoreError::Rejected { index, reason } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*index, 5, "{reason}");
    assert!(reason.contains("0x00"), "{reason}");
    assert_eq!(count(&t).await, 0, "nothing of the batch committed");
    // The caller dead-letters b[5] and writes the rest.
    b.remove(5);
    assert_eq!(s.write_batch(&b).await.unwrap(), report(6, 0));
}

/// An id no B-tree index entry can hold (incompressible, > 2704 bytes).
fn huge_id() -> String {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..12_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(
                b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                    [(x % 62) as usize],
            )
        })
        .collect()
}

#[tokio::test]
async fn pg_rejects_an_oversized_id_at_its_index() {
    let Some(t) = pg("huge_id").await else { return };
    let s = open(&t).await;
    for bad in [0, 1, 8] {
        let mut b: Vec<Record> = batch("h", 0..9);
        b[bad] = full(&huge_id());
        let err = s.write_batch(&b).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Rejected { index, .. } if *index == bad),
            "{bad}: {err:?}"
        );
    }
    assert_eq!(count(&t).await, 0);
}

#[tokio::test]
async fn pg_unreachable_server_is_unavailable() {
    let opts = StoreOptions {
        connect_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    // Port 1 on loopback: nothing listens, the connection is refused.
    let err = PostgresStore::connect("postgres://postgres@127.0.0.1:1/test", &opts)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Unavailable {
                store: "postgres",
                ..
            }
        ),
        "{err:?}"
    );
    let err = ackline_store::open("postgresql://postgres@127.0.0.1:1/test", &opts)
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
}

#[tokio::test]
async fn pg_bad_urls_and_options_are_fatal() {
    let opts = StoreOptions::default();
    for url in [
        "postgres://u@h:notaport/db",
        "postgres://u@h/db?sslmode=maybe",
    ] {
        let err = PostgresStore::connect(url, &opts).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Fatal {
                    store: "postgres",
                    ..
                }
            ),
            "{url}: {err:?}"
        );
        assert!(!err.to_string().contains('\n'));
    }
    let err = PostgresStore::connect(
        "postgres://u@h/db",
        &StoreOptions {
            table: "a-b".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("invalid table name"), "{err}");
}

#[tokio::test]
async fn pg_unknown_database_is_fatal() {
    let Some(t) = pg("nodb").await else { return };
    let url = t
        .url
        .rsplit_once('/')
        .map(|(base, _)| format!("{base}/ackline_no_such_db"))
        .unwrap();
    let err = PostgresStore::connect(&url, &t.opts()).await.unwrap_err();
    assert!(matches!(err, StoreError::Fatal { .. }), "{err:?}");
}

/// The version 1 layout, as the first release created it.
fn v1(t: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS ackline_schema_version (table_name text PRIMARY KEY,
             version integer NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());
         INSERT INTO ackline_schema_version (table_name, version) VALUES ('{t}', 1);
         CREATE TABLE {t} (id text PRIMARY KEY, ts_ms bigint NOT NULL, ts_nanos integer NOT NULL,
             ts_offset integer NOT NULL, timestamp_source text NOT NULL, severity smallint,
             host text, app text, pid bigint, message text NOT NULL, fields jsonb,
             raw bytea NOT NULL, raw_utf8 boolean NOT NULL, input text NOT NULL,
             format text NOT NULL, nul_originals text,
             stored_at timestamptz NOT NULL DEFAULT now());
         CREATE INDEX {t}_ts ON {t} (ts_ms, ts_nanos, id);
         CREATE INDEX {t}_host_ts ON {t} (host, ts_ms);
         CREATE INDEX {t}_severity_ts ON {t} (severity, ts_ms);
         INSERT INTO {t} (id, ts_ms, ts_nanos, ts_offset, timestamp_source, message, raw,
             raw_utf8, input, format)
             VALUES ('old-1', 1700000000000, 0, 0, 'ingest', 'from v1', 'from v1', true, 'stdin', 'raw');"
    )
}

#[tokio::test]
async fn pg_migrates_a_version_1_table() {
    let Some(t) = pg("migrate").await else { return };
    t.client().await.batch_execute(&v1(&t.table)).await.unwrap();
    let s = open(&t).await;
    let old = s.get("old-1").await.unwrap().unwrap();
    assert_eq!(
        (old.message.as_str(), old.parse_error.as_deref()),
        ("from v1", None)
    );
    let new = full("new-1");
    assert_eq!(
        s.write_batch(&[minimal("old-1"), new.clone()])
            .await
            .unwrap(),
        report(1, 1)
    );
    assert_eq!(s.get("new-1").await.unwrap(), Some(new));
    let client = t.client().await;
    let v: i32 = client
        .query_one(
            "SELECT version FROM ackline_schema_version WHERE table_name = $1",
            &[&t.table],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 3);
    let idx: Vec<String> = client
        .query(
            "SELECT indexname FROM pg_indexes WHERE tablename = $1 ORDER BY indexname",
            &[&t.table],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        idx,
        [format!("{}_pkey", t.table), format!("{}_ts", t.table)]
    );
}

#[tokio::test]
async fn pg_migrates_a_version_2_table_and_keeps_an_operators_index() {
    let Some(t) = pg("migrate2").await else {
        return;
    };
    let tb = &t.table;
    let client = t.client().await;
    client.batch_execute(&v1(tb)).await.unwrap();
    // Version 2 as that release left it, plus an index an operator added.
    client
        .batch_execute(&format!(
            "ALTER TABLE {tb} ADD COLUMN parse_error text;
             CREATE INDEX {tb}_app_ts ON {tb} (app, ts_ms);
             CREATE INDEX {tb}_by_input ON {tb} (input);
             UPDATE ackline_schema_version SET version = 2 WHERE table_name = '{tb}';"
        ))
        .await
        .unwrap();
    let s = open(&t).await;
    assert_eq!(s.get("old-1").await.unwrap().unwrap().message, "from v1");
    assert_eq!(
        s.write_batch(&[minimal("old-1"), full("new-2")])
            .await
            .unwrap(),
        report(1, 1)
    );
    let idx: Vec<String> = client
        .query(
            "SELECT indexname FROM pg_indexes WHERE tablename = $1 ORDER BY indexname",
            &[tb],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        idx,
        [
            format!("{tb}_by_input"),
            format!("{tb}_pkey"),
            format!("{tb}_ts")
        ]
    );
}

#[tokio::test]
async fn pg_refuses_a_newer_schema_and_foreign_tables() {
    let Some(t) = pg("newer").await else { return };
    drop(open(&t).await);
    t.client()
        .await
        .execute(
            "UPDATE ackline_schema_version SET version = 4 WHERE table_name = $1",
            &[&t.table],
        )
        .await
        .unwrap();
    let err = PostgresStore::connect(&t.url, &t.opts()).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Fatal { reason, .. } if reason.contains("newer")),
        "{err}"
    );

    let Some(f) = pg("foreign").await else { return };
    f.client()
        .await
        .batch_execute(&format!("CREATE TABLE {} (x int)", f.table))
        .await
        .unwrap();
    let err = PostgresStore::connect(&f.url, &f.opts()).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Fatal { reason, .. } if reason.contains("not an ackline table")),
        "{err}"
    );
}
