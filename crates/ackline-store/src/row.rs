//! How a [`Record`]'s fields become column values and back, shared by the
//! SQL stores so both encode the same way.
//!
//! Invariants (each checked by the round-trip tests):
//! - `timestamp` ⇄ (`ts_ms`, `ts_nanos`, `ts_offset`) is exact: `ts_ms` is the
//!   UTC instant in whole milliseconds (floor; indexable for range queries),
//!   `ts_nanos` the full sub-second nanoseconds as chrono keeps them
//!   (`1_000_000_000..` for a leap second), `ts_offset` the original UTC
//!   offset in seconds east.
//! - `pid` (a `u64`) is stored as the `i64` with the same 64 bits, so values
//!   above `i64::MAX` survive (they read as negative in SQL).
//! - `fields` is JSON text, `NULL` when empty.

use ackline_parse::{Fields, Record, TimestampSource};
use chrono::{DateTime, FixedOffset};

/// `(ts_ms, ts_nanos, ts_offset)` for a timestamp.
pub(crate) fn ts_parts(ts: &DateTime<FixedOffset>) -> (i64, i32, i32) {
    let nanos = ts.timestamp_subsec_nanos();
    let ms_in_sec = i64::from(nanos.min(999_999_999) / 1_000_000);
    // chrono's range (±262,143 years) is far inside i64 milliseconds.
    let ms = ts
        .timestamp()
        .saturating_mul(1000)
        .saturating_add(ms_in_sec);
    let nanos = i32::try_from(nanos).unwrap_or(i32::MAX);
    (ms, nanos, ts.offset().local_minus_utc())
}

/// The timestamp back from its columns.
pub(crate) fn ts_from_parts(
    ms: i64,
    nanos: i64,
    offset: i64,
) -> Result<DateTime<FixedOffset>, String> {
    let secs = ms.div_euclid(1000);
    let nanos = u32::try_from(nanos).map_err(|_| format!("ts_nanos {nanos} out of range"))?;
    let offset = i32::try_from(offset)
        .ok()
        .and_then(FixedOffset::east_opt)
        .ok_or_else(|| format!("ts_offset {offset} out of range"))?;
    let utc = DateTime::from_timestamp(secs, nanos)
        .ok_or_else(|| format!("timestamp {ms} ms + {nanos} ns out of range"))?;
    Ok(utc.with_timezone(&offset))
}

/// The stored name of a timestamp source (as in the record's JSON form).
pub(crate) fn ts_source_name(source: TimestampSource) -> &'static str {
    match source {
        TimestampSource::Line => "line",
        TimestampSource::LineAssumedOffset => "line_assumed_offset",
        TimestampSource::LineInferredYear => "line_inferred_year",
        TimestampSource::Ingest => "ingest",
    }
}

/// The timestamp source for a stored name.
pub(crate) fn ts_source_from_name(name: &str) -> Result<TimestampSource, String> {
    Ok(match name {
        "line" => TimestampSource::Line,
        "line_assumed_offset" => TimestampSource::LineAssumedOffset,
        "line_inferred_year" => TimestampSource::LineInferredYear,
        "ingest" => TimestampSource::Ingest,
        other => return Err(format!("unknown timestamp_source {other:?}")),
    })
}

/// `pid` as the same 64 bits in an `i64`.
pub(crate) fn pid_to_sql(pid: Option<u64>) -> Option<i64> {
    pid.map(|p| i64::from_ne_bytes(p.to_ne_bytes()))
}

/// `pid` back from its column.
pub(crate) fn pid_from_sql(pid: Option<i64>) -> Option<u64> {
    pid.map(|p| u64::from_ne_bytes(p.to_ne_bytes()))
}

/// `fields` as JSON text, `None` when empty.
pub(crate) fn fields_to_json(fields: &Fields) -> Option<String> {
    if fields.is_empty() {
        None
    } else {
        // A map of String → Value always serialises.
        serde_json::to_string(fields).ok()
    }
}

/// `fields` back from JSON text.
pub(crate) fn fields_from_json(text: Option<&str>) -> Result<Fields, String> {
    match text {
        None => Ok(Fields::new()),
        Some(text) => serde_json::from_str(text).map_err(|e| format!("fields: {e}")),
    }
}

/// A short description of a record for error messages.
pub(crate) fn describe(record: &Record) -> String {
    describe_id(&record.id)
}

/// A short description of the record with this id, for error messages.
pub(crate) fn describe_id(id: &str) -> String {
    let mut id = id.to_owned();
    if id.len() > 80 {
        let mut end = 80;
        while !id.is_char_boundary(end) {
            end -= 1;
        }
        id.truncate(end);
        id.push('…');
    }
    format!("id {id:?}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn timestamps_round_trip_exactly() {
        for text in [
            "2005-06-03T15:42:50.675872123-07:00",
            "1969-12-31T23:59:59.999999999+00:00",
            "1900-01-01T00:00:00+05:45",
            "2016-12-31T23:59:60.5+00:00",
        ] {
            let ts = DateTime::parse_from_rfc3339(text).unwrap();
            let (ms, nanos, off) = ts_parts(&ts);
            let back = ts_from_parts(ms, nanos.into(), off.into()).unwrap();
            assert_eq!(back, ts, "{text}");
            assert_eq!(back.offset(), ts.offset(), "{text}");
            assert_eq!(back.to_rfc3339(), ts.to_rfc3339(), "{text}");
        }
    }

    #[test]
    fn ts_ms_orders_like_the_instant() {
        let a = DateTime::parse_from_rfc3339("1969-12-31T23:59:59.5Z").unwrap();
        let b = DateTime::parse_from_rfc3339("1970-01-01T00:00:00.1+01:00").unwrap();
        assert!(ts_parts(&b).0 < ts_parts(&a).0);
        assert_eq!(ts_parts(&a).0, -500);
    }

    #[test]
    fn pids_above_i64_max_survive() {
        for pid in [0, 1, u64::MAX, 1 << 63] {
            assert_eq!(pid_from_sql(pid_to_sql(Some(pid))), Some(pid));
        }
    }
}
