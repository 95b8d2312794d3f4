//! Windows CBS logs: `YYYY-MM-DD hh:mm:ss, Level<pad>Component<pad>Message`.
//!
//! Invariants: Level must be a known level word (`Info`, `Warning`,
//! `Error`...); the timestamp has no offset, so the configured one applies
//! (`timestamp_source = line_assumed_offset`); padding is any run of spaces.

use super::{Env, Parts, at};
use crate::error::ErrorKind;
use crate::scan::{Cursor, PResult, text};
use crate::timestamp::{Civil, hms};

pub(crate) fn parse(body: &[u8], env: &Env) -> PResult<Parts> {
    let mut cur = Cursor::new(body);
    let year = cur.digits(4, "year")?;
    cur.expect(b'-', "'-' after year")?;
    let month = cur.digits(2, "month")?;
    cur.expect(b'-', "'-' after month")?;
    let day = cur.digits(2, "day")?;
    cur.expect_space("SP after date")?;
    let (hour, minute, second) = hms(&mut cur)?;
    cur.expect(b',', "',' after time")?;
    let stamp = Civil {
        year: i32::try_from(year).unwrap_or(0),
        month,
        day,
        hour,
        minute,
        second,
        nanos: 0,
    }
    .assumed(&env.time)
    .map_err(at(0))?;
    cur.skip_spaces();
    let level_pos = cur.pos();
    let level = cur.expect_token("level")?;
    let severity = crate::severity::Severity::from_text(level)
        .ok_or((level_pos, ErrorKind::Expected("log level")))?;
    cur.skip_spaces();
    let component = cur.expect_token("component")?;
    cur.skip_spaces();
    Ok(Parts {
        timestamp: Some(stamp),
        severity: Some(severity),
        app: Some(text(component)),
        message: text(cur.rest()),
        ..Parts::default()
    })
}

#[cfg(test)]
mod tests {
    use crate::format::Format::WindowsCbs;
    use crate::formats::testutil::{ok, parse, ts};
    use crate::severity::Severity;

    #[test]
    fn edge_table() {
        let p = ok(
            WindowsCbs,
            "2016-09-28 04:30:30, Info                  CBS    Loaded Servicing Stack v6.1.7601.23505",
        );
        assert_eq!(ts(&p), "2016-09-28T04:30:30+00:00");
        assert_eq!(p.severity, Some(Severity::Info));
        assert_eq!(p.app.as_deref(), Some("CBS"));
        assert_eq!(p.message, "Loaded Servicing Stack v6.1.7601.23505");
        let p = ok(
            WindowsCbs,
            "2016-09-28 04:30:31, Error                 CSI    00000001 boom",
        );
        assert_eq!(p.severity, Some(Severity::Error));
        assert!(parse(WindowsCbs, "2016-09-28 04:30:31, Chatty CSI x").is_err());
        assert!(parse(WindowsCbs, "2016-09-28 04:30:31 Info CSI x").is_err());
        assert!(parse(WindowsCbs, "2016-09-28 04:30:31, Info").is_err());
        assert!(parse(WindowsCbs, "2016-02-30 04:30:31, Info CBS x").is_err());
    }
}
