//! Apache httpd error log, 2.2 and 2.4 layouts:
//! `[Www Mmm dd hh:mm:ss[.usec] yyyy] [[module:]level] [pid N[:tid M]] [client ADDR] MSG`.
//!
//! Invariants: the weekday must be a real abbreviation (it is not checked
//! against the date, as httpd computes it itself); no offset is stated so
//! the configured one applies; the level must be a known Apache level
//! (`emerg`..`debug`, `trace1`..`trace8`); the optional bracketed
//! `pid`, `client` and `remote` groups are consumed in any order, and the
//! first other bracket starts the message.
//!
//! Fields: `module` (2.4), `tid`, `client`, `remote`.

use super::{Env, Parts, at};
use crate::error::ErrorKind;
use crate::scan::{Cursor, PResult, text};
use crate::severity::Severity;
use crate::timestamp::{Civil, expect_month, hms, is_weekday_abbrev};

pub(crate) fn parse(body: &[u8], env: &Env) -> PResult<Parts> {
    let mut cur = Cursor::new(body);
    cur.expect(b'[', "'[' opening timestamp")?;
    if !cur.rest().get(..3).is_some_and(is_weekday_abbrev) {
        return Err(cur.fail(ErrorKind::InvalidTimestamp("weekday name")));
    }
    cur.advance(3);
    cur.expect_space("SP after weekday")?;
    let month = expect_month(&mut cur)?;
    cur.expect_space("SP after month")?;
    cur.eat(b' ');
    let day = cur.digits_between(1, 2, "day of month")?;
    cur.expect_space("SP after day")?;
    let (hour, minute, second) = hms(&mut cur)?;
    let nanos = if cur.eat(b'.') {
        cur.fraction_nanos(9, "fractional seconds")?
    } else {
        0
    };
    cur.expect_space("SP before year")?;
    let year = cur.digits(4, "year")?;
    cur.expect(b']', "']' closing timestamp")?;
    let stamp = Civil {
        year: i32::try_from(year).unwrap_or(0),
        month,
        day: u32::try_from(day).unwrap_or(0),
        hour,
        minute,
        second,
        nanos,
    }
    .assumed(&env.time)
    .map_err(at(1))?;
    cur.expect_space("SP after timestamp")?;
    cur.expect(b'[', "'[' opening level")?;
    let level_pos = cur.pos();
    let level = cur
        .take_until(b']')
        .ok_or_else(|| cur.expected("']' closing level"))?;
    cur.advance(1);
    let mut parts = Parts {
        timestamp: Some(stamp),
        ..Parts::default()
    };
    let level = match memchr::memrchr(b':', level) {
        Some(i) => {
            parts.put("module", level.get(..i).unwrap_or_default());
            level.get(i + 1..).unwrap_or_default()
        }
        None => level,
    };
    parts.severity = Some(
        Severity::from_text(level).ok_or((level_pos, ErrorKind::Expected("Apache log level")))?,
    );
    loop {
        let mark = cur.clone();
        if !cur.eat_slice(b" [") {
            break;
        }
        let Some(inner) = cur.take_until(b']') else {
            cur = mark;
            break;
        };
        if let Some(pid) = inner.strip_prefix(b"pid ") {
            let (pid, tid) = match memchr::memchr(b':', pid) {
                Some(i) => (pid.get(..i).unwrap_or_default(), pid.get(i + 1..)),
                None => (pid, None),
            };
            let Some(pid) = crate::scan::parse_u64(pid) else {
                cur = mark;
                break;
            };
            parts.pid = Some(pid);
            if let Some(tid) = tid.and_then(|t| t.strip_prefix(b"tid ")) {
                parts.put("tid", tid);
            }
        } else if let Some(client) = inner.strip_prefix(b"client ") {
            parts.put("client", client);
        } else if let Some(remote) = inner.strip_prefix(b"remote ") {
            parts.put("remote", remote);
        } else {
            cur = mark;
            break;
        }
        cur.advance(1);
    }
    cur.eat(b' ');
    parts.message = text(cur.rest());
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use crate::error::ErrorKind;
    use crate::format::Format::ApacheError;
    use crate::formats::testutil::{field, ok, parse, ts};
    use crate::record::TimestampSource;
    use crate::severity::Severity;

    #[test]
    fn edge_table() {
        let p = ok(
            ApacheError,
            "[Sun Dec 04 04:47:44 2005] [notice] workerEnv.init() ok /etc/httpd/conf/workers2.properties",
        );
        assert_eq!(ts(&p), "2005-12-04T04:47:44+00:00");
        assert_eq!(p.timestamp.unwrap().1, TimestampSource::LineAssumedOffset);
        assert_eq!(p.severity, Some(Severity::Notice));
        assert_eq!(
            p.message,
            "workerEnv.init() ok /etc/httpd/conf/workers2.properties"
        );

        let p = ok(
            ApacheError,
            "[Sat Jun 11 03:03:03 2005] [error] [client 216.216.185.130] Directory index forbidden by rule: /var/www/html/",
        );
        assert_eq!(field(&p, "client"), "216.216.185.130");
        assert_eq!(p.severity, Some(Severity::Error));
        assert_eq!(
            p.message,
            "Directory index forbidden by rule: /var/www/html/"
        );

        // httpd 2.4 with module, pid/tid, client with port, microseconds.
        let p = ok(
            ApacheError,
            "[Fri Sep 09 10:42:29.902022 2011] [core:error] [pid 35708:tid 4328636416] [client 72.15.99.187:5544] AH00128: File does not exist: /usr/local/apache2/htdocs/favicon.ico",
        );
        assert_eq!(ts(&p), "2011-09-09T10:42:29.902022+00:00");
        assert_eq!(field(&p, "module"), "core");
        assert_eq!(p.pid, Some(35708));
        assert_eq!(field(&p, "tid"), "4328636416");
        assert_eq!(field(&p, "client"), "72.15.99.187:5544");
        assert_eq!(
            p.message,
            "AH00128: File does not exist: /usr/local/apache2/htdocs/favicon.ico"
        );

        // A bracket that is not a known group starts the message.
        let p = ok(
            ApacheError,
            "[Sun Dec 04 04:47:44 2005] [warn] [ssl] config [x]",
        );
        assert_eq!(p.message, "[ssl] config [x]");
        let p = ok(
            ApacheError,
            "[Sun Dec 04 04:47:44 2005] [trace3] [pid nope] x",
        );
        assert_eq!(p.severity, Some(Severity::Debug));
        assert_eq!(p.message, "[pid nope] x");
        let p = ok(ApacheError, "[Sun Dec 04 04:47:44 2005] [error]");
        assert_eq!(p.message, "");

        let bad: &[(&str, ErrorKind)] = &[
            (
                "[Xyz Dec 04 04:47:44 2005] [notice] x",
                ErrorKind::InvalidTimestamp("weekday name"),
            ),
            (
                "[Sun Dec 04 04:47:44 2005] [loud] x",
                ErrorKind::Expected("Apache log level"),
            ),
            (
                "[Sun Dec 32 04:47:44 2005] [notice] x",
                ErrorKind::TimestampOutOfRange,
            ),
            (
                "[Sun Dec 04 04:47:44 2005 [notice] x",
                ErrorKind::Expected("']' closing timestamp"),
            ),
            (
                "[Sun Dec 04 04:47:44 2005] notice x",
                ErrorKind::Expected("'[' opening level"),
            ),
        ];
        for (line, kind) in bad {
            assert_eq!(&parse(ApacheError, line).unwrap_err().1, kind, "{line}");
        }
    }
}
