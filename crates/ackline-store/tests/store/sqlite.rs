//! SQLite store: idempotence, round trip, migration, errors, queries.

use std::time::Duration;

use ackline_parse::{Record, Severity};
use ackline_store::{
    Query, QueryCursor, SqliteStore, Store, StoreError, StoreOptions, WriteReport,
};
use chrono::DateTime;

use crate::common::{batch, full, hard_records, minimal};

async fn store(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(dir.path().join("records.db"), &StoreOptions::default())
        .await
        .unwrap()
}

fn report(inserted: usize, duplicates: usize) -> WriteReport {
    WriteReport {
        inserted,
        duplicates,
    }
}

#[tokio::test]
async fn sqlite_rewrite_is_all_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    let b = batch("a", 0..50);
    assert_eq!(s.write_batch(&b).await.unwrap(), report(50, 0));
    assert_eq!(s.write_batch(&b).await.unwrap(), report(0, 50));
    assert_eq!(s.count().await.unwrap(), 50);
    drop(s);
    // Idempotence survives a reopen: it is in the data, not in memory.
    let s = store(&dir).await;
    assert_eq!(s.write_batch(&b).await.unwrap(), report(0, 50));
    assert_eq!(s.count().await.unwrap(), 50);
}

#[tokio::test]
async fn sqlite_overlapping_batches_store_each_id_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    assert_eq!(
        s.write_batch(&batch("a", 0..10)).await.unwrap(),
        report(10, 0)
    );
    assert_eq!(
        s.write_batch(&batch("a", 5..15)).await.unwrap(),
        report(5, 5)
    );
    // The same id twice in one batch: the first wins, the second is a duplicate.
    let mut b = batch("a", 15..17);
    b.push(b[0].clone());
    assert_eq!(s.write_batch(&b).await.unwrap(), report(2, 1));
    assert_eq!(s.write_batch(&[]).await.unwrap(), report(0, 0));
    assert_eq!(s.count().await.unwrap(), 17);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_overlapping_writers_store_each_id_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(store(&dir).await);
    let mut tasks = Vec::new();
    for w in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut total = WriteReport::default();
            for k in 0..10 {
                let start = (w * 7 + k * 13) % 100;
                let r = s.write_batch(&batch("c", start..start + 20)).await.unwrap();
                total.inserted += r.inserted;
                total.duplicates += r.duplicates;
            }
            total
        }));
    }
    let mut inserted = 0;
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.inserted + r.duplicates, 200);
        inserted += r.inserted;
    }
    let stored = s.count().await.unwrap();
    assert_eq!(inserted as u64, stored, "every insert counted once");
    let all = s.query(&Query::default()).await.unwrap();
    let mut ids: Vec<_> = all.iter().map(|r| r.id.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len() as u64, stored);
}

#[tokio::test]
async fn sqlite_round_trips_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    let mut records = hard_records(true);
    let mut nul_id = full("id\0with-nul");
    nul_id.timestamp += chrono::Duration::days(1);
    records.push(nul_id);
    assert_eq!(
        s.write_batch(&records).await.unwrap(),
        report(records.len(), 0)
    );
    let mut back = s.query(&Query::default()).await.unwrap();
    let mut want = records.clone();
    want.sort_by_key(key);
    back.sort_by_key(key);
    assert_eq!(back.len(), want.len());
    for (b, w) in back.iter().zip(&want) {
        assert_eq!(b, w, "record {:?}", w.id.get(..40));
        assert_eq!(b.timestamp.offset(), w.timestamp.offset());
        assert_eq!(b.raw.as_bytes(), w.raw.as_bytes());
    }
}

fn key(r: &Record) -> String {
    r.id.clone()
}

#[tokio::test]
async fn sqlite_round_trips_parsed_loghub_lines() {
    let Some(records) = loghub_records(400) else {
        eprintln!("skipped: loghub data not found");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    assert_eq!(
        s.write_batch(&records).await.unwrap(),
        report(records.len(), 0)
    );
    let back = s.query(&Query::default()).await.unwrap();
    let mut want = records;
    want.sort_by(|a, b| (a.timestamp, &a.id).cmp(&(b.timestamp, &b.id)));
    assert_eq!(back.len(), want.len());
    let mut back = back;
    back.sort_by(|a, b| (a.timestamp, &a.id).cmp(&(b.timestamp, &b.id)));
    assert_eq!(back, want);
}

/// Up to `per_file` parsed lines of each loghub sample, ids `file:NAME:N`.
pub fn loghub_records(per_file: usize) -> Option<Vec<Record>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/loghub");
    let entries = std::fs::read_dir(dir).ok()?;
    let parser = ackline_parse::Parser::default();
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".log") {
            continue;
        }
        let bytes = std::fs::read(e.path()).ok()?;
        for (n, line) in bytes
            .split_inclusive(|&b| b == b'\n')
            .take(per_file)
            .enumerate()
        {
            let ctx = ackline_parse::LineContext {
                id: format!("file:{name}:{n}"),
                input: std::sync::Arc::from(name.as_str()),
                file_mtime: None,
                ingest_time: DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                    .unwrap()
                    .to_utc(),
            };
            out.push(parser.parse(line, &ctx).unwrap());
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The version 1 layout, as the first release created it.
const V1: &str = "
    CREATE TABLE ackline_schema (table_name TEXT PRIMARY KEY NOT NULL, version INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL) STRICT;
    INSERT INTO ackline_schema VALUES ('ackline_records', 1, 0);
    CREATE TABLE ackline_records (
        id TEXT PRIMARY KEY NOT NULL, ts_ms INTEGER NOT NULL, ts_nanos INTEGER NOT NULL,
        ts_offset INTEGER NOT NULL, timestamp_source TEXT NOT NULL, severity INTEGER, host TEXT,
        app TEXT, pid INTEGER, message TEXT NOT NULL, fields TEXT, raw TEXT, raw_bytes BLOB,
        input TEXT NOT NULL, format TEXT NOT NULL, stored_at_ms INTEGER NOT NULL,
        CHECK ((raw IS NULL) <> (raw_bytes IS NULL))) STRICT;
    CREATE INDEX ackline_records_ts ON ackline_records (ts_ms, ts_nanos, id);
    CREATE INDEX ackline_records_host_ts ON ackline_records (host, ts_ms);
    CREATE INDEX ackline_records_severity_ts ON ackline_records (severity, ts_ms);
    INSERT INTO ackline_records VALUES ('old-1', 1700000000000, 0, 0, 'ingest', NULL, NULL, NULL,
        NULL, 'from v1', NULL, 'from v1', NULL, 'stdin', 'raw', 1700000000000);
";

#[tokio::test]
async fn sqlite_migrates_a_version_1_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(V1)
        .unwrap();
    let s = SqliteStore::open(&path, &StoreOptions::default())
        .await
        .unwrap();
    let old = s.query(&Query::default()).await.unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].id, "old-1");
    assert_eq!(old[0].message, "from v1");
    assert_eq!(old[0].parse_error, None);
    // The old row still counts for idempotence; new rows use the new column.
    let mut again = minimal("old-1");
    again.message = "replayed".to_owned();
    let new = full("new-1");
    assert_eq!(
        s.write_batch(&[again, new.clone()]).await.unwrap(),
        report(1, 1)
    );
    let got = s
        .query(&Query {
            app: Some("nginx".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(got, vec![new]);
    drop(s);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = conn
        .query_row(
            "SELECT version FROM ackline_schema WHERE table_name = 'ackline_records'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(v, 4);
    assert_eq!(indexes(&conn), ["ackline_records_ts"]);
}

/// The indexes of `ackline_records` (besides the primary key's), by name.
fn indexes(conn: &rusqlite::Connection) -> Vec<String> {
    let mut stmt = conn
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'ackline_records' \
             AND sql IS NOT NULL ORDER BY name",
        )
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The version 2 layout: version 1 plus `parse_error` and the app index.
const V2: &str = "
    CREATE TABLE ackline_schema (table_name TEXT PRIMARY KEY NOT NULL, version INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL) STRICT;
    INSERT INTO ackline_schema VALUES ('ackline_records', 2, 0);
    CREATE TABLE ackline_records (
        id TEXT PRIMARY KEY NOT NULL, ts_ms INTEGER NOT NULL, ts_nanos INTEGER NOT NULL,
        ts_offset INTEGER NOT NULL, timestamp_source TEXT NOT NULL, severity INTEGER, host TEXT,
        app TEXT, pid INTEGER, message TEXT NOT NULL, fields TEXT, raw TEXT, raw_bytes BLOB,
        input TEXT NOT NULL, format TEXT NOT NULL, stored_at_ms INTEGER NOT NULL,
        parse_error TEXT, CHECK ((raw IS NULL) <> (raw_bytes IS NULL))) STRICT;
    CREATE INDEX ackline_records_ts ON ackline_records (ts_ms, ts_nanos, id);
    CREATE INDEX ackline_records_host_ts ON ackline_records (host, ts_ms);
    CREATE INDEX ackline_records_severity_ts ON ackline_records (severity, ts_ms);
    CREATE INDEX ackline_records_app_ts ON ackline_records (app, ts_ms);
    INSERT INTO ackline_records VALUES ('old-2', 1700000000000, 5, 3600, 'line', 3, 'web01',
        'nginx', 42, 'from v2', '{\"k\":1}', 'from v2', NULL, 'stdin', 'raw', 1700000000000,
        'why');
";

#[tokio::test]
async fn sqlite_migrates_a_version_2_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(V2)
        .unwrap();
    let s = SqliteStore::open(&path, &StoreOptions::default())
        .await
        .unwrap();
    let old = s.query(&Query::default()).await.unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].id, "old-2");
    assert_eq!(old[0].host.as_deref(), Some("web01"));
    assert_eq!(old[0].parse_error.as_deref(), Some("why"));
    assert_eq!(old[0].fields.get("k"), Some(&serde_json::json!(1)));
    // Idempotence still holds across the migration; filters without their
    // indexes still select exactly.
    let mut again = minimal("old-2");
    again.message = "replayed".to_owned();
    let new = full("new-2");
    assert_eq!(
        s.write_batch(&[again, new.clone()]).await.unwrap(),
        report(1, 1)
    );
    for (q, want) in [
        (
            Query {
                host: Some("web01".into()),
                ..Default::default()
            },
            vec!["old-2", "new-2"],
        ),
        (
            Query {
                app: Some("nginx".into()),
                severity_at_most: Some(Severity::Error),
                ..Default::default()
            },
            vec!["old-2", "new-2"],
        ),
        (
            Query {
                severity_at_most: Some(Severity::Critical),
                ..Default::default()
            },
            vec![],
        ),
    ] {
        let got = s.query(&q).await.unwrap();
        assert_eq!(ids(&got), want, "{q:?}");
    }
    drop(s);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = conn
        .query_row(
            "SELECT version FROM ackline_schema WHERE table_name = 'ackline_records'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(v, 4);
    assert_eq!(indexes(&conn), ["ackline_records_ts"]);
}

/// The version 3 layout (the message always in `message`), with a row
/// whose message is a slice of its raw line, as version 3 stored it.
const V3: &str = "
    CREATE TABLE ackline_schema (table_name TEXT PRIMARY KEY NOT NULL, version INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL) STRICT;
    INSERT INTO ackline_schema VALUES ('ackline_records', 3, 0);
    CREATE TABLE ackline_records (
        id TEXT PRIMARY KEY NOT NULL, ts_ms INTEGER NOT NULL, ts_nanos INTEGER NOT NULL,
        ts_offset INTEGER NOT NULL, timestamp_source TEXT NOT NULL, severity INTEGER, host TEXT,
        app TEXT, pid INTEGER, message TEXT NOT NULL, fields TEXT, raw TEXT, raw_bytes BLOB,
        input TEXT NOT NULL, format TEXT NOT NULL, stored_at_ms INTEGER NOT NULL,
        parse_error TEXT, CHECK ((raw IS NULL) <> (raw_bytes IS NULL))) STRICT;
    CREATE INDEX ackline_records_ts ON ackline_records (ts_ms, ts_nanos, id);
    INSERT INTO ackline_records VALUES ('old-3', 1700000000000, 0, 0, 'line', 6, 'h3',
        'sshd', 7, 'Accepted key for ü', NULL, 'Nov 14 22:13:20 h3 sshd[7]: Accepted key for ü
',
        NULL, 'auth.log', 'rfc3164', 1700000000000, NULL);
";

#[tokio::test]
async fn sqlite_migrates_a_version_3_database_and_reads_old_and_new_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(V3)
        .unwrap();
    let s = SqliteStore::open(&path, &StoreOptions::default())
        .await
        .unwrap();
    let old = s.query(&Query::default()).await.unwrap();
    assert_eq!(ids(&old), ["old-3"]);
    assert_eq!(old[0].message, "Accepted key for ü");
    // A new record whose message is a slice of its raw line (after a multi-byte
    // character, so byte and character offsets differ).
    let mut new = full("new-3");
    new.raw = ackline_parse::RawLine::Text("ü <1> Accepted key for ü, again\n".to_owned());
    new.message = "Accepted key for ü, again".to_owned();
    assert_eq!(
        s.write_batch(&[minimal("old-3"), new.clone()])
            .await
            .unwrap(),
        report(1, 1)
    );
    let got = s.query(&Query::default()).await.unwrap();
    assert_eq!(ids(&got), ["old-3", "new-3"]);
    assert_eq!(got[1], new);
    // The text filter searches both layouts, and only the message's slice.
    for (text, want) in [
        ("Accepted key", vec!["old-3", "new-3"]),
        ("again", vec!["new-3"]),
        ("<1>", vec![]),
        ("sshd[7]", vec![]),
    ] {
        let q = Query {
            text: Some(text.into()),
            ..Default::default()
        };
        assert_eq!(ids(&s.query(&q).await.unwrap()), want, "{text:?}");
    }
    drop(s);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = conn
        .query_row(
            "SELECT version FROM ackline_schema WHERE table_name = 'ackline_records'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(v, 4);
    let stored: Vec<(String, String, Option<i64>, Option<i64>)> = conn
        .prepare("SELECT id, message, msg_start, msg_len FROM ackline_records ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        stored,
        [
            ("new-3".to_owned(), String::new(), Some(7), Some(26)),
            (
                "old-3".to_owned(),
                "Accepted key for ü".to_owned(),
                None,
                None
            ),
        ]
    );
}

/// Which records keep their message in `message` and which point into `raw`.
#[tokio::test]
async fn sqlite_stores_a_message_that_is_a_slice_of_raw_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.db");
    let s = store(&dir).await;
    let text = |id: &str, raw: &str, message: &str| {
        let mut r = full(id);
        r.raw = ackline_parse::RawLine::Text(raw.to_owned());
        r.message = message.to_owned();
        r
    };
    let mut bytes = full("bytes");
    bytes.raw = ackline_parse::RawLine::Bytes(b"\xff tail\n".to_vec());
    bytes.message = "tail".to_owned();
    let records = vec![
        text("tail", "<13>host app: the tail\r\n", "the tail"),
        text("whole", "whole line", "whole line"),
        text("middle", "a [middle] z\n", "middle"),
        text("rewritten", "a b\n", "a  b"),
        text("empty", "x\n", ""),
        text("nul", "a\0b\n", "a\0b"),
        bytes,
    ];
    assert_eq!(
        s.write_batch(&records).await.unwrap(),
        report(records.len(), 0)
    );
    let mut back = s.query(&Query::default()).await.unwrap();
    back.sort_by_key(key);
    let mut want = records.clone();
    want.sort_by_key(key);
    assert_eq!(back, want);
    drop(s);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let stored: Vec<(String, String, Option<i64>, Option<i64>)> = conn
        .prepare("SELECT id, message, msg_start, msg_len FROM ackline_records ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let row = |id: &str, m: &str, span: Option<(i64, i64)>| {
        (
            id.to_owned(),
            m.to_owned(),
            span.map(|s| s.0),
            span.map(|s| s.1),
        )
    };
    assert_eq!(
        stored,
        [
            row("bytes", "tail", None),
            row("empty", "", None),
            row("middle", "", Some((3, 6))),
            row("nul", "", Some((0, 3))),
            row("rewritten", "a  b", None),
            row("tail", "", Some((14, 8))),
            row("whole", "", Some((0, 10))),
        ]
    );
}

#[tokio::test]
async fn sqlite_refuses_a_newer_schema_and_foreign_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.db");
    drop(store(&dir).await);
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("UPDATE ackline_schema SET version = 5")
        .unwrap();
    let err = SqliteStore::open(&path, &StoreOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Fatal { store: "sqlite", reason } if reason.contains("newer")),
        "{err}"
    );

    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE ackline_records (x)")
        .unwrap();
    let err = SqliteStore::open(&other, &StoreOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Fatal { reason, .. } if reason.contains("not an ackline table")),
        "{err}"
    );
}

#[tokio::test]
async fn sqlite_open_errors_are_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteStore::open(
        dir.path().join("no/such/dir/x.db"),
        &StoreOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Fatal {
                store: "sqlite",
                ..
            }
        ),
        "{err}"
    );
    let not_db = dir.path().join("text.db");
    std::fs::write(&not_db, vec![b'x'; 4096]).unwrap();
    let err = SqliteStore::open(&not_db, &StoreOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Fatal {
                store: "sqlite",
                ..
            }
        ),
        "{err}"
    );
    let bad = StoreOptions {
        table: "records; DROP TABLE x".into(),
        ..Default::default()
    };
    let err = SqliteStore::open(dir.path().join("y.db"), &bad)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid table name"), "{err}");
}

#[tokio::test]
async fn sqlite_locked_database_is_unavailable_and_nothing_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.db");
    let opts = StoreOptions {
        busy_timeout: Duration::from_millis(50),
        ..Default::default()
    };
    let s = SqliteStore::open(&path, &opts).await.unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let err = s.write_batch(&batch("l", 0..3)).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    other.execute_batch("COMMIT").unwrap();
    assert_eq!(
        s.write_batch(&batch("l", 0..3)).await.unwrap(),
        report(3, 0)
    );
    s.probe().await.unwrap();
}

fn at(s: &str) -> chrono::DateTime<chrono::FixedOffset> {
    DateTime::parse_from_rfc3339(s).unwrap()
}

/// Ten records: hosts h0/h1 alternating, apps a0..a2, severities 0..7
/// cycling, one a second from 2026-01-01T00:00:00Z, "needle" in every third message.
fn query_fixture() -> Vec<Record> {
    (0..10)
        .map(|i| {
            let mut r = full(&format!("q{i:02}"));
            r.timestamp = at("2026-01-01T00:00:00Z") + chrono::Duration::seconds(i);
            r.host = Some(format!("h{}", i % 2));
            r.app = Some(format!("a{}", i % 3));
            r.severity = Severity::from_code((i % 8) as u8);
            r.message = if i % 3 == 0 {
                format!("has needle {i}")
            } else {
                format!("plain {i}")
            };
            r
        })
        .collect()
}

fn ids(records: &[Record]) -> Vec<&str> {
    records.iter().map(|r| r.id.as_str()).collect()
}

#[tokio::test]
async fn sqlite_query_filters() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    let mut records = query_fixture();
    let mut last = minimal("no-severity");
    last.timestamp = at("2026-01-02T00:00:00Z");
    records.push(last);
    s.write_batch(&records).await.unwrap();
    let q = |q: Query| {
        let s = &s;
        async move { s.query(&q).await.unwrap() }
    };
    let all = q(Query::default()).await;
    assert_eq!(all.len(), 11);
    assert_eq!(all[..10], records[..10], "ordered by timestamp");

    let since_until = q(Query {
        since: Some(at("2026-01-01T01:00:03+01:00")),
        until: Some(at("2026-01-01T00:00:06Z")),
        ..Default::default()
    })
    .await;
    assert_eq!(
        ids(&since_until),
        ["q03", "q04", "q05"],
        "since inclusive, until exclusive"
    );

    // Nanosecond-exact bounds.
    let ns = q(Query {
        since: Some(at("2026-01-01T00:00:08.000000001Z")),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&ns), ["q09", "no-severity"]);

    let severe = q(Query {
        severity_at_most: Some(Severity::Error),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&severe), ["q00", "q01", "q02", "q03", "q08", "q09"]);

    let host = q(Query {
        host: Some("h1".into()),
        app: Some("a0".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&host), ["q03", "q09"]);

    let text = q(Query {
        text: Some("needle".into()),
        limit: Some(2),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&text), ["q00", "q03"]);

    let none = q(Query {
        text: Some("NEEDLE".into()),
        ..Default::default()
    })
    .await;
    assert!(none.is_empty(), "text match is case-sensitive");
}

#[tokio::test]
async fn sqlite_query_pages_by_keyset() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(&dir).await;
    let mut records = query_fixture();
    // Ties on the timestamp are ordered by id.
    let mut tie = full("q05-tie");
    tie.timestamp = records[5].timestamp;
    records.push(tie);
    s.write_batch(&records).await.unwrap();
    let mut pages = Vec::new();
    let mut after: Option<QueryCursor> = None;
    loop {
        let page = s
            .query(&Query {
                limit: Some(3),
                after: after.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = page.last().map(QueryCursor::after);
        pages.push(page);
        // A record stored meanwhile, before the cursor, must not shift later pages.
        if pages.len() == 1 {
            let mut early = full("early");
            early.timestamp = at("2025-01-01T00:00:00Z");
            s.write_batch(&[early]).await.unwrap();
        }
    }
    let seen: Vec<Record> = pages.into_iter().flatten().collect();
    assert_eq!(
        ids(&seen),
        [
            "q00", "q01", "q02", "q03", "q04", "q05", "q05-tie", "q06", "q07", "q08", "q09"
        ]
    );
}

const OPENER: &str = "ACKLINE_STORE_OPENER";

/// Opens, writes one record to and closes the store at `path` 40 times (`w` names the ids).
async fn open_write_close(path: &std::path::Path, w: &str) -> Result<(), String> {
    for k in 0..40 {
        let s = SqliteStore::open(path, &StoreOptions::default())
            .await
            .map_err(|e| format!("opener {w}, open {k}: {e}"))?;
        s.write_batch(&batch(w, k..k + 1))
            .await
            .map_err(|e| format!("opener {w}, write {k}: {e}"))?;
    }
    Ok(())
}

/// The child of the test below (a no-op unless `ACKLINE_STORE_OPENER` is set).
#[tokio::test]
async fn sqlite_opener_child() {
    if let Ok(spec) = std::env::var(OPENER) {
        let (path, w) = spec.split_once('|').unwrap();
        open_write_close(std::path::Path::new(path), w)
            .await
            .unwrap();
    }
}

/// Processes that open and close one store at the same moment (workers starting together,
/// `ackline query` while they do) all open it: SQLite answers `SQLITE_BUSY` without calling
/// the busy handler while the last connection of another process cleans up the WAL, and
/// `open` waits that out within the busy timeout instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_processes_opening_and_closing_at_once_all_succeed() {
    if std::env::var(OPENER).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.db");
    let children: Vec<_> = (0..8)
        .map(|w| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "sqlite::sqlite_opener_child", "--test-threads=1"])
                .env(OPENER, format!("{}|o{w}", path.display()))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Meanwhile this process opens and closes it too, as `ackline query` would.
    for _ in 0..40 {
        if path.exists() {
            let s = SqliteStore::open(&path, &StoreOptions::default())
                .await
                .unwrap();
            s.count().await.unwrap();
        }
        tokio::task::yield_now().await;
    }
    let mut failures = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        if !out.status.success() {
            failures.push(String::from_utf8_lossy(&out.stderr).into_owned());
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    let s = SqliteStore::open(&path, &StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(s.count().await.unwrap(), 320);
}
