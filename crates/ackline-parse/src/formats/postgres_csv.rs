//! PostgreSQL `csvlog` (`log_destination = 'csvlog'`): one CSV record per
//! event, fields quoted with `"` and `""` for a quote inside.
//!
//! Columns (PostgreSQL 13 to 17): log_time, user_name, database_name,
//! process_id, connection_from, session_id, session_line_num, command_tag,
//! session_start_time, virtual_transaction_id, transaction_id,
//! error_severity, sql_state_code, message, detail, hint, internal_query,
//! internal_query_pos, context, query, query_pos, location,
//! application_name, backend_type, then (14+) leader_pid, query_id.
//!
//! Mapping: timestamp `log_time`, severity `error_severity`, pid
//! `process_id`, message `message`, app `application_name`; every other
//! non-empty column is kept in `fields` under its column name
//! (`database_name` as `database`, `user_name` as `user`).
//!
//! Invariants: at least 23 columns; an unterminated quote is an error
//! (a statement with a newline splits the record over lines: join them
//! with the input's multi-line rule, or they fall back); linear in the
//! line length.

use super::{Env, Parts};
use crate::error::ErrorKind;
use crate::format::Format;
use crate::record::TimestampSource;
use crate::scan::{Cursor, PResult, parse_u64, text};
use crate::timestamp::Stamp;

const COLUMNS: [&str; 26] = [
    "log_time",
    "user",
    "database",
    "process_id",
    "connection_from",
    "session_id",
    "session_line_num",
    "command_tag",
    "session_start_time",
    "virtual_transaction_id",
    "transaction_id",
    "error_severity",
    "sql_state_code",
    "message",
    "detail",
    "hint",
    "internal_query",
    "internal_query_pos",
    "context",
    "query",
    "query_pos",
    "location",
    "application_name",
    "backend_type",
    "leader_pid",
    "query_id",
];

pub(crate) fn parse(body: &[u8], env: &Env) -> PResult<Parts> {
    let mut cur = Cursor::new(body);
    let ts_pos = cur.pos();
    let ts = cur.take_while(|b| b != b',');
    let stamp =
        pg_timestamp(ts, env).ok_or((ts_pos, ErrorKind::InvalidTimestamp("csvlog log_time")))?;
    let mut parts = Parts {
        timestamp: Some(stamp),
        variant: Some(Format::PostgresqlCsv),
        ..Parts::default()
    };
    let mut col = 1usize;
    while cur.eat(b',') {
        let value = field(&mut cur)?;
        let name = COLUMNS.get(col).copied();
        col += 1;
        if value.is_empty() {
            continue;
        }
        match name {
            Some("process_id") => parts.pid = parse_u64(&value),
            Some("error_severity") => parts.severity = super::generic::level(&value),
            Some("message") => parts.message = text(&value),
            Some("application_name") => parts.app = Some(text(&value)),
            Some(name) => parts.put(name, &value),
            None => parts.put(&format!("column{col}"), &value),
        }
    }
    if !cur.is_at_end() {
        return Err(cur.expected("',' between csvlog columns"));
    }
    if col < 23 {
        return Err((body.len(), ErrorKind::Expected("23 or more csvlog columns")));
    }
    Ok(parts)
}

/// One CSV field (unquoted up to `,`, or quoted with `""` escapes).
fn field(cur: &mut Cursor<'_>) -> PResult<Vec<u8>> {
    if !cur.eat(b'"') {
        return Ok(cur.take_while(|b| b != b',').to_vec());
    }
    let mut out = Vec::new();
    loop {
        let Some(chunk) = cur.take_until(b'"') else {
            return Err((
                cur.pos() + cur.rest().len(),
                ErrorKind::Expected("'\"' closing csvlog field"),
            ));
        };
        out.extend_from_slice(chunk);
        cur.advance(1);
        if cur.eat(b'"') {
            out.push(b'"');
        } else {
            return Ok(out);
        }
    }
}

/// PostgreSQL's `%m`/log_time: `YYYY-MM-DD HH:MM:SS[.mmm] ZONE`; `UTC` and
/// `GMT` (or a numeric offset) are exact, another abbreviation gets the
/// configured zone.
pub(crate) fn pg_timestamp(bytes: &[u8], env: &Env) -> Option<Stamp> {
    let mut cur = Cursor::new(bytes);
    let stamp = crate::timestamp::rfc3339(&mut cur, true, &env.time).ok()?;
    if cur.is_at_end() || stamp.1 == TimestampSource::Line {
        return cur.is_at_end().then_some(stamp);
    }
    cur.expect(b' ', "").ok()?;
    let zone = cur.rest();
    if !(2..=5).contains(&zone.len()) || !zone.iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    if zone == b"UTC" || zone == b"GMT" {
        let utc = chrono::FixedOffset::east_opt(0)?;
        use chrono::TimeZone as _;
        let dt = utc.from_local_datetime(&stamp.0.naive_local()).single()?;
        return Some((dt, TimestampSource::Line));
    }
    Some(stamp)
}

#[cfg(test)]
mod tests {
    use crate::format::Format::PostgresqlCsv;
    use crate::formats::testutil::{field, ok, parse, ts};
    use crate::severity::Severity;

    #[test]
    fn csvlog() {
        let p = ok(
            PostgresqlCsv,
            r#"2026-12-05 01:20:54.024 UTC,"postgres","test",25401,"[local]",6931f1b6.6339,1,"SELECT",2026-12-05 01:20:54 UTC,3/2,0,ERROR,42P01,"relation ""x"" does not exist",,,,,,"select * from x;",15,,"psql","client backend",,0"#,
        );
        assert_eq!(ts(&p), "2026-12-05T01:20:54.024+00:00");
        assert_eq!(p.severity, Some(Severity::Error));
        assert_eq!(p.pid, Some(25401));
        assert_eq!(p.message, "relation \"x\" does not exist");
        assert_eq!(p.app.as_deref(), Some("psql"));
        assert_eq!(field(&p, "user"), "postgres");
        assert_eq!(field(&p, "database"), "test");
        assert_eq!(field(&p, "query"), "select * from x;");
        assert_eq!(field(&p, "sql_state_code"), "42P01");
        assert_eq!(field(&p, "detail"), "<absent>");
        for bad in [
            "2026-12-05 01:20:54.024 UTC,\"open",
            "2026-12-05 01:20:54.024 UTC,a,b",
            "not a time,a",
            "2026-12-05 01:20:54.024 UTC,\"a\"b,c",
        ] {
            assert!(parse(PostgresqlCsv, bad).is_err(), "{bad}");
        }
    }
}
