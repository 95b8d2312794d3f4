//! Records for the tests, and the PostgreSQL helper.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ackline_parse::{Format, RawLine, Record, Severity, TimestampSource};
use chrono::DateTime;
use serde_json::json;

/// A record with every field set.
pub fn full(id: &str) -> Record {
    let mut fields = BTreeMap::new();
    fields.insert("status".to_owned(), json!(503));
    fields.insert("big".to_owned(), json!(u64::MAX));
    fields.insert("neg".to_owned(), json!(-42));
    fields.insert("ratio".to_owned(), json!(0.1));
    fields.insert("tiny".to_owned(), json!(1.5e-300));
    fields.insert(
        "nested".to_owned(),
        json!({"a": [1, "two", null, true], "b": {"c": "d"}}),
    );
    let line = format!(
        "<27>1 2024-02-29T23:59:59.123456789-07:00 web01 nginx 4242 - - upstream {id} timed out\n"
    );
    Record {
        id: id.to_owned(),
        input: Arc::from("file:/var/log/syslog"),
        format: Format::Rfc5424,
        timestamp: DateTime::parse_from_rfc3339("2024-02-29T23:59:59.123456789-07:00").unwrap(),
        timestamp_source: TimestampSource::Line,
        severity: Some(Severity::Error),
        host: Some("web01".to_owned()),
        app: Some("nginx".to_owned()),
        pid: Some(4242),
        message: format!("upstream {id} timed out"),
        fields,
        raw: RawLine::Text(line),
        parse_error: Some("rfc5424: expected SP at byte 3".to_owned()),
    }
}

/// A record with every optional field absent.
pub fn minimal(id: &str) -> Record {
    Record {
        id: id.to_owned(),
        input: Arc::from("stdin"),
        format: Format::Raw,
        timestamp: DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap(),
        timestamp_source: TimestampSource::Ingest,
        severity: None,
        host: None,
        app: None,
        pid: None,
        message: String::new(),
        fields: BTreeMap::new(),
        raw: RawLine::Text(String::new()),
        parse_error: None,
    }
}

/// `n` distinct full records `prefix-0` ... with timestamps one second apart.
pub fn batch(prefix: &str, range: std::ops::Range<usize>) -> Vec<Record> {
    range
        .map(|i| {
            let mut r = full(&format!("{prefix}-{i}"));
            r.timestamp += chrono::Duration::seconds(i as i64);
            r
        })
        .collect()
}

/// Records that stress the encoding: non-UTF-8, NUL bytes, unicode, a
/// 10 MB line, leap second, extreme values, empty optionals.
pub fn hard_records(with_big: bool) -> Vec<Record> {
    let mut out = Vec::new();

    let mut r = full("bytes:non-utf8");
    r.raw = RawLine::Bytes(b"caf\xe9 \xff\xfe\x00 end\n".to_vec());
    r.message = "caf\u{FFFD} \u{FFFD}\u{FFFD}\0 end".to_owned();
    out.push(r);

    let mut r = full("nul:everywhere");
    r.raw = RawLine::Text("a\0b\0\n".to_owned());
    r.message = "a\0b\0".to_owned();
    r.host = Some("h\0st".to_owned());
    r.app = Some("\0app".to_owned());
    r.input = Arc::from("file:/tmp/\0odd");
    r.parse_error = Some("bad\0byte".to_owned());
    r.fields.insert("k\0ey".to_owned(), json!("v\0alue"));
    r.fields.insert("deep".to_owned(), json!({"x\0": ["\0"]}));
    out.push(r);

    let mut r = full("unicode:ünïcödé-日本-🦀");
    r.message = "Ünïcødé 日本語 🦀 \u{202E}rtl\u{202C} e\u{301} \u{FEFF}".to_owned();
    r.host = Some("хост".to_owned());
    r.app = Some("アプリ".to_owned());
    r.raw = RawLine::Text(format!("{}\r\n", r.message));
    out.push(r);

    let mut r = minimal("minimal:empty");
    r.timestamp = DateTime::parse_from_rfc3339("1969-12-31T23:59:59.999999999+14:00").unwrap();
    out.push(r);

    let mut r = full("extreme:values");
    r.pid = Some(u64::MAX);
    r.severity = Some(Severity::Emergency);
    r.timestamp = DateTime::parse_from_rfc3339("2016-12-31T23:59:60.5-00:30").unwrap();
    r.timestamp_source = TimestampSource::LineInferredYear;
    r.format = Format::AccessCombined;
    out.push(r);

    let mut r = full("source:assumed");
    r.timestamp_source = TimestampSource::LineAssumedOffset;
    r.severity = Some(Severity::Debug);
    r.pid = Some(0);
    out.push(r);

    if with_big {
        let line = "x".repeat(10 * 1024 * 1024);
        let mut r = full("big:10MB");
        r.message = line.clone();
        r.raw = RawLine::Text(format!("{line}\n"));
        out.push(r);
    }
    out
}

/// A PostgreSQL table for one test, dropped (with its schema-version row)
/// when the guard goes out of scope, even when the test fails.
pub struct PgTable {
    pub url: String,
    pub table: String,
}

impl PgTable {
    pub fn opts(&self) -> ackline_store::StoreOptions {
        ackline_store::StoreOptions {
            table: self.table.clone(),
            ..Default::default()
        }
    }

    /// A plain client for checks behind the store's back.
    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
    }
}

impl Drop for PgTable {
    fn drop(&mut self) {
        let (url, table) = (self.url.clone(), self.table.clone());
        // Drop runs inside the test's runtime: use a thread with its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
                    .await?;
                client
                    .execute(
                        "DELETE FROM ackline_schema_version WHERE table_name = $1",
                        &[&table],
                    )
                    .await
                    .map(|_| ())
                    .or_else(|e| if e.code().is_some() { Ok(()) } else { Err(e) })
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: could not drop test table {}", self.table);
        }
    }
}

/// The server the tests use: `ACKLINE_TEST_POSTGRES` or the local one.
pub fn pg_url() -> String {
    std::env::var("ACKLINE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A fresh table on the test server; `None` (after printing why) when the
/// server is unreachable outside CI. Under `CI=true` an unreachable server
/// fails the test.
pub async fn pg(test: &str) -> Option<PgTable> {
    static N: AtomicU32 = AtomicU32::new(0);
    let url = pg_url();
    let reachable = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_postgres::connect(&url, tokio_postgres::NoTls),
    )
    .await
    .map_err(|_| "connect timed out after 5s".to_owned())
    .and_then(|r| r.map(drop).map_err(|e| e.to_string()));
    if let Err(reason) = reachable {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "PostgreSQL not reachable at {url}: {reason} (CI=true: .ci/run should have started it)"
            );
        }
        eprintln!("skipped: PostgreSQL not reachable at {url}: {reason}");
        return None;
    }
    let table = format!(
        "t_{test}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    Some(PgTable { url, table })
}
