//! Thunderbird supercomputer logs (loghub): syslog lines behind a prefix,
//! `LABEL EPOCH YYYY.MM.DD NODE Mmm d hh:mm:ss LOCATION TAG[PID]: MSG`.
//!
//! Invariants: the instant comes from EPOCH (exact); the UTC offset is the
//! difference between the syslog wall-clock time (with the year of the
//! `YYYY.MM.DD` field) and EPOCH when that is a whole quarter hour within
//! ±18h, else UTC. `timestamp_source` is `line`. The syslog part after the
//! location is split like RFC 3164 content.
//!
//! Fields: `alert_type` (LABEL unless `-`), `location` (e.g. `dn228/dn228`).

use chrono::Offset as _;

use super::{Env, Parts, rfc3164};
use crate::error::ErrorKind;
use crate::record::TimestampSource;
use crate::scan::{Cursor, PResult, text};
use crate::timestamp::{Civil, expect_month, from_epoch, hms, offset_between};

pub(crate) fn parse(body: &[u8], _env: &Env) -> PResult<Parts> {
    let mut cur = Cursor::new(body);
    let mut parts = Parts::default();
    let label = cur.expect_token("alert label")?;
    cur.expect_space("SP after label")?;
    let epoch_pos = cur.pos();
    let epoch = cur.digits_between(1, 12, "epoch seconds")?;
    cur.expect_space("SP after epoch")?;
    let year = cur.digits(4, "year (YYYY.MM.DD)")?;
    cur.expect(b'.', "'.' in date")?;
    cur.digits(2, "month (YYYY.MM.DD)")?;
    cur.expect(b'.', "'.' in date")?;
    cur.digits(2, "day (YYYY.MM.DD)")?;
    cur.expect_space("SP after date")?;
    let node = cur.expect_token("node")?;
    cur.expect_space("SP after node")?;
    let wall_pos = cur.pos();
    let month = expect_month(&mut cur)?;
    cur.expect_space("SP after month")?;
    cur.eat(b' ');
    let day = cur.digits_between(1, 2, "day of month")?;
    cur.expect_space("SP after day")?;
    let (hour, minute, second) = hms(&mut cur)?;
    if !cur.is_at_end() {
        cur.expect_space("SP after time")?;
    }
    let location = cur.token();

    let instant = i64::try_from(epoch)
        .ok()
        .and_then(|s| from_epoch(s, 0))
        .ok_or((epoch_pos, ErrorKind::TimestampOutOfRange))?;
    let wall = Civil {
        year: i32::try_from(year).unwrap_or(0),
        month,
        day: u32::try_from(day).unwrap_or(0),
        hour,
        minute,
        second,
        nanos: 0,
    }
    .naive()
    .map_err(|k| (wall_pos, k))?;
    let offset = offset_between(wall, instant).unwrap_or_else(|| chrono::Utc.fix());
    parts.timestamp = Some((instant.with_timezone(&offset), TimestampSource::Line));
    parts.host = Some(text(node));
    if label != b"-" {
        parts.put("alert_type", label);
    }
    if !location.is_empty() {
        parts.put("location", location);
    }
    cur.skip_spaces();
    rfc3164::tag_message(cur.rest(), &mut parts);
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use crate::format::Format::Thunderbird;
    use crate::formats::testutil::{field, ok, parse, ts};

    #[test]
    fn edge_table() {
        let p = ok(
            Thunderbird,
            "- 1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond(pam_unix)[2915]: session closed for user root",
        );
        assert_eq!(ts(&p), "2005-11-09T12:01:01-08:00");
        assert_eq!(p.host.as_deref(), Some("dn228"));
        assert_eq!(field(&p, "location"), "dn228/dn228");
        assert_eq!(p.app.as_deref(), Some("crond(pam_unix)"));
        assert_eq!(p.pid, Some(2915));
        assert_eq!(p.message, "session closed for user root");
        assert_eq!(field(&p, "alert_type"), "<absent>");

        // Labelled alert, wall clock not a quarter-hour offset from epoch: UTC.
        let p = ok(
            Thunderbird,
            "VAPI 1131566461 2005.11.09 tn1 Nov 9 12:01:07 tn1/tn1 kernel: boom",
        );
        assert_eq!(field(&p, "alert_type"), "VAPI");
        assert_eq!(ts(&p), "2005-11-09T20:01:01+00:00");
        assert_eq!(p.app.as_deref(), Some("kernel"));

        assert!(parse(Thunderbird, "- x 2005.11.09 dn228 Nov 9 12:01:01 l t: m").is_err());
        assert!(
            parse(
                Thunderbird,
                "- 1131566461 2005.11.09 dn228 2005-06-03-15.42.50.675872 x"
            )
            .is_err()
        );
        assert!(
            parse(
                Thunderbird,
                "- 1131566461 2005.11.09 dn228 Nov 31 12:01:01 l t: m"
            )
            .is_err()
        );
    }
}
