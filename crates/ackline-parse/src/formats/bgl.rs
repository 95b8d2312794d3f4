//! Blue Gene/L RAS logs (loghub BGL):
//! `LABEL EPOCH YYYY.MM.DD NODE YYYY-MM-DD-HH.MM.SS.ffffff NODE TYPE COMPONENT LEVEL MSG`.
//!
//! Invariants: the instant comes from the microsecond wall-clock field and
//! the UTC offset from its difference to EPOCH (whole quarter hour within
//! ±18h; otherwise EPOCH plus the wall clock's fraction, in UTC).
//! `timestamp_source` is `line`. LEVEL must be a known level
//! (`FAILURE` maps to error).
//!
//! Fields: `alert_type` (LABEL unless `-`), `type` (RAS, NULL...),
//! `location` (the second node field, when it differs from the first).

use chrono::{TimeZone as _, Timelike as _};

use super::{Env, Parts};
use crate::error::ErrorKind;
use crate::record::TimestampSource;
use crate::scan::{Cursor, PResult, text};
use crate::severity::Severity;
use crate::timestamp::{Civil, from_epoch, offset_between};

pub(crate) fn parse(body: &[u8], _env: &Env) -> PResult<Parts> {
    let mut cur = Cursor::new(body);
    let mut parts = Parts::default();
    let label = cur.expect_token("alert label")?;
    cur.expect_space("SP after label")?;
    let epoch_pos = cur.pos();
    let epoch = cur.digits_between(1, 12, "epoch seconds")?;
    cur.expect_space("SP after epoch")?;
    cur.digits(4, "year (YYYY.MM.DD)")?;
    cur.expect(b'.', "'.' in date")?;
    cur.digits(2, "month (YYYY.MM.DD)")?;
    cur.expect(b'.', "'.' in date")?;
    cur.digits(2, "day (YYYY.MM.DD)")?;
    cur.expect_space("SP after date")?;
    let node = cur.expect_token("node")?;
    cur.expect_space("SP after node")?;
    let wall_pos = cur.pos();
    let year = cur.digits(4, "year")?;
    cur.expect(b'-', "'-' after year")?;
    let month = cur.digits(2, "month")?;
    cur.expect(b'-', "'-' after month")?;
    let day = cur.digits(2, "day")?;
    cur.expect(b'-', "'-' after day")?;
    let hour = cur.digits(2, "hour")?;
    cur.expect(b'.', "'.' after hour")?;
    let minute = cur.digits(2, "minute")?;
    cur.expect(b'.', "'.' after minute")?;
    let second = cur.digits(2, "second")?;
    cur.expect(b'.', "'.' before microseconds")?;
    let nanos = cur.fraction_nanos(9, "fractional seconds")?;
    cur.expect_space("SP after time")?;
    let location = cur.expect_token("second node field")?;
    cur.expect_space("SP after node")?;
    let kind = cur.expect_token("type")?;
    cur.expect_space("SP after type")?;
    let component = cur.expect_token("component")?;
    cur.expect_space("SP after component")?;
    let level_pos = cur.pos();
    let level = cur.expect_token("level")?;
    let severity = if level == b"FAILURE" {
        Severity::Error
    } else {
        Severity::from_text(level).ok_or((level_pos, ErrorKind::Expected("log level")))?
    };
    cur.eat(b' ');

    let wall = Civil {
        year: i32::try_from(year).unwrap_or(0),
        month,
        day,
        hour,
        minute,
        second,
        nanos,
    }
    .naive()
    .map_err(|k| (wall_pos, k))?;
    let epoch = i64::try_from(epoch).map_err(|_| (epoch_pos, ErrorKind::TimestampOutOfRange))?;
    let instant = from_epoch(epoch, 0).ok_or((epoch_pos, ErrorKind::TimestampOutOfRange))?;
    let whole_seconds = wall.with_nanosecond(0).unwrap_or(wall);
    let ts = match offset_between(whole_seconds, instant) {
        Some(off) => off.from_local_datetime(&wall).single(),
        None => from_epoch(epoch, nanos).map(|t| t.fixed_offset()),
    }
    .ok_or((wall_pos, ErrorKind::TimestampOutOfRange))?;
    parts.timestamp = Some((ts, TimestampSource::Line));
    parts.severity = Some(severity);
    parts.host = Some(text(node));
    parts.app = Some(text(component));
    if label != b"-" {
        parts.put("alert_type", label);
    }
    parts.put("type", kind);
    if location != node {
        parts.put("location", location);
    }
    parts.message = text(cur.rest());
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use crate::format::Format::Bgl;
    use crate::formats::testutil::{field, ok, parse, ts};
    use crate::severity::Severity;

    #[test]
    fn edge_table() {
        let p = ok(
            Bgl,
            "- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11 RAS KERNEL INFO instruction cache parity error corrected",
        );
        assert_eq!(ts(&p), "2005-06-03T15:42:50.675872-07:00");
        assert_eq!(p.severity, Some(Severity::Info));
        assert_eq!(p.host.as_deref(), Some("R02-M1-N0-C:J12-U11"));
        assert_eq!(p.app.as_deref(), Some("KERNEL"));
        assert_eq!(field(&p, "type"), "RAS");
        assert_eq!(field(&p, "location"), "<absent>");
        assert_eq!(p.message, "instruction cache parity error corrected");

        let p = ok(
            Bgl,
            "KERNDTLB 1117838570 2005.06.03 R02 2005-06-03-15.42.50.000001 R03 RAS KERNEL FATAL data TLB error interrupt",
        );
        assert_eq!(field(&p, "alert_type"), "KERNDTLB");
        assert_eq!(field(&p, "location"), "R03");
        assert_eq!(p.severity, Some(Severity::Critical));

        let p = ok(
            Bgl,
            "- 1117838570 2005.06.03 R02 2005-06-03-15.42.50.1 R02 NULL DISCOVERY FAILURE",
        );
        assert_eq!(p.severity, Some(Severity::Error));
        assert_eq!(p.message, "");

        assert!(
            parse(
                Bgl,
                "- 1117838570 2005.06.03 R02 2005-06-03-15.42.50.1 R02 RAS KERNEL LOUD x"
            )
            .is_err()
        );
        assert!(
            parse(
                Bgl,
                "- 1117838570 2005.06.03 R02 2005-13-03-15.42.50.1 R02 RAS KERNEL INFO x"
            )
            .is_err()
        );
        assert!(
            parse(
                Bgl,
                "- 1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond: x"
            )
            .is_err()
        );
    }
}
