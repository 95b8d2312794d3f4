//! The query API behind `ackline query`.
//!
//! Invariants:
//! - Results come in (timestamp instant, id) order, ascending; paging is by
//!   keyset ([`Query::after`]), so a page never repeats or skips a record
//!   that was stored before the first page was read, however many are added.
//! - Time filters are exact to the nanosecond (`since` inclusive, `until`
//!   exclusive), using the `(ts_ms, ts_nanos, id)` index for the range.
//! - A returned record equals the record that was written, field for field,
//!   raw bytes included.

use std::sync::Arc;

use ackline_parse::{Format, RawLine, Record, Severity};
use chrono::{DateTime, FixedOffset};
use rusqlite::types::Value;
use rusqlite::{Connection, Row};

use super::{classify, severity_from_code};
use crate::{StoreError, row};

/// What to select; every filter present must hold (AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Records at or after this instant.
    pub since: Option<DateTime<FixedOffset>>,
    /// Records strictly before this instant.
    pub until: Option<DateTime<FixedOffset>>,
    /// Records at least this severe (code ≤ this one's); records without a
    /// severity never match when this is set.
    pub severity_at_most: Option<Severity>,
    /// Records with exactly this host.
    pub host: Option<String>,
    /// Records with exactly this app.
    pub app: Option<String>,
    /// Records whose message contains this substring (case-sensitive; a
    /// scan within what the other filters select).
    pub text: Option<String>,
    /// At most this many records; `None` for all.
    pub limit: Option<usize>,
    /// Keyset paging: only records after this position.
    pub after: Option<QueryCursor>,
}

/// A position in the (timestamp, id) order: the next page starts after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryCursor {
    /// The timestamp of the last record seen.
    pub timestamp: DateTime<FixedOffset>,
    /// The id of the last record seen.
    pub id: String,
}

impl QueryCursor {
    /// The cursor for the page after `last`.
    #[must_use]
    pub fn after(last: &Record) -> Self {
        Self {
            timestamp: last.timestamp,
            id: last.id.clone(),
        }
    }
}

const COLUMNS: &str = "id, ts_ms, ts_nanos, ts_offset, timestamp_source, severity, host, app, \
                       pid, message, fields, raw, raw_bytes, input, format, parse_error, \
                       msg_start, msg_len";

/// The message in SQL: its own column, or its slice of the raw line (in
/// bytes: `substr` of a BLOB counts bytes, of TEXT characters).
const MESSAGE_SQL: &str = "CASE WHEN msg_len IS NULL THEN message \
                           ELSE CAST(substr(CAST(raw AS BLOB), msg_start + 1, msg_len) AS TEXT) END";

pub(crate) fn run(conn: &Connection, table: &str, q: &Query) -> Result<Vec<Record>, StoreError> {
    let (sql, args) = sql(table, q);
    let mut stmt = conn.prepare_cached(&sql).map_err(classify)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(args), decode)
        .map_err(classify)?;
    let mut out = Vec::new();
    for r in rows {
        out.push(
            r.map_err(classify)?
                .map_err(|e| StoreError::fatal("sqlite", e))?,
        );
    }
    Ok(out)
}

/// The statement for `q` and its arguments.
fn sql(table: &str, q: &Query) -> (String, Vec<Value>) {
    let mut sql = format!("SELECT {COLUMNS} FROM {table} WHERE 1 = 1");
    let mut args: Vec<Value> = Vec::new();
    let mut arg = |sql: &mut String, clause: &str, values: Vec<Value>| {
        // Each `?` in `clause` takes the next value, numbered explicitly.
        let mut out = String::new();
        let mut values = values.into_iter();
        for ch in clause.chars() {
            if ch == '?' {
                if let Some(v) = values.next() {
                    args.push(v);
                }
                out.push_str(&format!("?{}", args.len()));
            } else {
                out.push(ch);
            }
        }
        sql.push_str(" AND ");
        sql.push_str(&out);
    };
    if let Some(since) = &q.since {
        let (ms, ns, _) = row::ts_parts(since);
        arg(
            &mut sql,
            "ts_ms >= ? AND (ts_ms > ? OR ts_nanos >= ?)",
            vec![ms.into(), ms.into(), i64::from(ns).into()],
        );
    }
    if let Some(until) = &q.until {
        let (ms, ns, _) = row::ts_parts(until);
        arg(
            &mut sql,
            "ts_ms <= ? AND (ts_ms < ? OR ts_nanos < ?)",
            vec![ms.into(), ms.into(), i64::from(ns).into()],
        );
    }
    if let Some(sev) = q.severity_at_most {
        arg(
            &mut sql,
            "severity <= ?",
            vec![i64::from(sev.code()).into()],
        );
    }
    if let Some(host) = &q.host {
        arg(&mut sql, "host = ?", vec![host.clone().into()]);
    }
    if let Some(app) = &q.app {
        arg(&mut sql, "app = ?", vec![app.clone().into()]);
    }
    if let Some(text) = &q.text {
        arg(
            &mut sql,
            &format!("instr({MESSAGE_SQL}, ?) > 0"),
            vec![text.clone().into()],
        );
    }
    if let Some(after) = &q.after {
        let (ms, ns, _) = row::ts_parts(&after.timestamp);
        arg(
            &mut sql,
            "(ts_ms, ts_nanos, id) > (?, ?, ?)",
            vec![ms.into(), i64::from(ns).into(), after.id.clone().into()],
        );
    }
    sql.push_str(" ORDER BY ts_ms, ts_nanos, id");
    if let Some(limit) = q.limit {
        sql.push_str(&format!(
            " LIMIT {}",
            i64::try_from(limit).unwrap_or(i64::MAX)
        ));
    }
    (sql, args)
}

/// The message slice `start..start + len` (bytes) of `raw`.
fn in_raw(raw: &str, start: i64, len: i64) -> Result<&str, String> {
    usize::try_from(start)
        .ok()
        .zip(usize::try_from(len).ok())
        .and_then(|(s, l)| raw.get(s..s.checked_add(l)?))
        .ok_or_else(|| format!("message slice {start}+{len} is not within the raw line"))
}

/// A row back into a record; the outer error is SQLite's, the inner one a
/// value this binary cannot decode.
fn decode(r: &Row<'_>) -> rusqlite::Result<Result<Record, String>> {
    let id: String = r.get(0)?;
    let ts_ms: i64 = r.get(1)?;
    let ts_nanos: i64 = r.get(2)?;
    let ts_offset: i64 = r.get(3)?;
    let source: String = r.get(4)?;
    let severity: Option<i64> = r.get(5)?;
    let host: Option<String> = r.get(6)?;
    let app: Option<String> = r.get(7)?;
    let pid: Option<i64> = r.get(8)?;
    let message: String = r.get(9)?;
    let fields: Option<String> = r.get(10)?;
    let raw: Option<String> = r.get(11)?;
    let raw_bytes: Option<Vec<u8>> = r.get(12)?;
    let input: String = r.get(13)?;
    let format: String = r.get(14)?;
    let parse_error: Option<String> = r.get(15)?;
    let msg_start: Option<i64> = r.get(16)?;
    let msg_len: Option<i64> = r.get(17)?;
    Ok((|| {
        let message = match (msg_start, msg_len, &raw) {
            (None, None, _) => message,
            (Some(start), Some(len), Some(raw)) => in_raw(raw, start, len)?.to_owned(),
            _ => return Err("msg_start and msg_len need each other and a UTF-8 raw".to_owned()),
        };
        let raw = match (raw, raw_bytes) {
            (Some(text), None) => RawLine::Text(text),
            (None, Some(bytes)) => RawLine::Bytes(bytes),
            _ => return Err("exactly one of raw and raw_bytes must be set".to_owned()),
        };
        Ok(Record {
            timestamp: row::ts_from_parts(ts_ms, ts_nanos, ts_offset)?,
            timestamp_source: row::ts_source_from_name(&source)?,
            severity: severity_from_code(severity)?,
            host,
            app,
            pid: row::pid_from_sql(pid),
            message,
            fields: row::fields_from_json(fields.as_deref())?,
            raw,
            input: Arc::from(input),
            format: format.parse::<Format>().map_err(|e| e.to_string())?,
            parse_error,
            id: id.clone(),
        })
    })()
    .map_err(|e| format!("row id {id:?}: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Every query walks the `(ts_ms, ts_nanos, id)` index in order and never
    /// sorts: that is why schema version 3 needs no host, app or severity
    /// index (see `schema.rs`).
    #[test]
    fn every_filter_walks_the_time_index_without_sorting() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn, "t").unwrap();
        let at = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap();
        let queries = [
            Query::default(),
            Query {
                host: Some("h".into()),
                limit: Some(100),
                ..Default::default()
            },
            Query {
                app: Some("a".into()),
                severity_at_most: Some(Severity::Error),
                limit: Some(100),
                ..Default::default()
            },
            Query {
                since: Some(at),
                until: Some(at),
                text: Some("x".into()),
                after: Some(QueryCursor {
                    timestamp: at,
                    id: "i".into(),
                }),
                limit: Some(100),
                ..Default::default()
            },
        ];
        for q in queries {
            let (sql, args) = sql("t", &q);
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(args), |r| r.get(3))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let plan = plan.join("; ");
            assert!(plan.contains("USING INDEX t_ts"), "{q:?}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{q:?}: {plan}");
        }
    }
}
