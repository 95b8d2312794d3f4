//! The MySQL and MariaDB error log.
//!
//! ```text
//! MariaDB:   2026-12-05  4:09:25 0 [Note] InnoDB: Using transactional memory
//! MySQL 5.7: 2024-01-02T03:04:05.123456Z 0 [Note] InnoDB: PUNCH HOLE support available
//! MySQL 8:   2024-01-02T03:04:05.123456Z 0 [System] [MY-010116] [Server] /usr/sbin/mysqld ...
//! ```
//!
//! TIMESTAMP (MariaDB pads the hour with a space; MySQL writes ISO 8601
//! with `Z` or, with `log_timestamps=SYSTEM`, an offset), THREAD (the
//! connection id, `fields.thread`, not a pid), `[LEVEL]`, then MySQL 8's
//! `[MY-NNNNNN]` (`fields.error_code`) and `[SUBSYSTEM]` (`fields.subsystem`).
//!
//! Levels: `Note` → info (MySQL itself sends notes to syslog as
//! `LOG_INFO`), `System` → notice, `Warning` → warning, `ERROR`/`Error` →
//! error.
//!
//! Invariants: the level must be one of those four words, so another
//! `DATE TIME N [word]` line is not claimed.

use super::{Env, Parts, at};
use crate::error::ErrorKind;
use crate::scan::{Cursor, PResult, parse_u64, text};
use crate::severity::Severity;
use crate::timestamp::Civil;

pub(crate) fn parse(body: &[u8], env: &Env) -> PResult<Parts> {
    let mut cur = Cursor::new(body);
    let stamp = if body.get(10) == Some(&b'T') {
        crate::timestamp::rfc3339(&mut cur, true, &env.time)?
    } else {
        let start = cur.pos();
        let year = cur.digits(4, "year")?;
        cur.expect(b'-', "'-' after year")?;
        let month = cur.digits(2, "month")?;
        cur.expect(b'-', "'-' after month")?;
        let day = cur.digits(2, "day")?;
        cur.expect(b' ', "SP after date")?;
        let hour = if cur.eat(b' ') {
            cur.digits(1, "hour")?
        } else {
            cur.digits(2, "hour")?
        };
        cur.expect(b':', "':' after hour")?;
        let minute = cur.digits(2, "minute")?;
        cur.expect(b':', "':' after minute")?;
        let second = cur.digits(2, "second")?;
        Civil {
            year: i32::try_from(year).unwrap_or(0),
            month,
            day,
            hour,
            minute,
            second,
            nanos: 0,
        }
        .assumed(&env.time)
        .map_err(at(start))?
    };
    cur.expect(b' ', "SP after timestamp")?;
    let thread = cur.take_while(|b| b.is_ascii_digit());
    let thread = parse_u64(thread).ok_or_else(|| cur.expected("thread id"))?;
    cur.expect(b' ', "SP after thread id")?;
    let level_pos = cur.pos();
    cur.expect(b'[', "'[' before level")?;
    let word = cur.take_until(b']').unwrap_or_default();
    let severity = match word {
        b"Note" => Severity::Info,
        b"System" => Severity::Notice,
        b"Warning" => Severity::Warning,
        b"ERROR" | b"Error" => Severity::Error,
        _ => {
            return Err((
                level_pos,
                ErrorKind::Expected("[Note], [Warning], [ERROR] or [System]"),
            ));
        }
    };
    cur.advance(1);
    let mut parts = Parts {
        timestamp: Some(stamp),
        severity: Some(severity),
        ..Parts::default()
    };
    parts.put_u64("thread", thread);
    let mut look = cur.clone();
    if look.eat_slice(b" [MY-") {
        let code = look.take_until(b']').unwrap_or_default();
        look.advance(1);
        let mut code_full = b"MY-".to_vec();
        code_full.extend_from_slice(code);
        parts.put("error_code", &code_full);
        if look.eat_slice(b" [") {
            let sub = look.take_until(b']').unwrap_or_default();
            look.advance(1);
            parts.put("subsystem", sub);
        }
        cur = look;
    }
    cur.skip_spaces();
    parts.message = text(cur.rest());
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use crate::format::Format::Mysql;
    use crate::formats::testutil::{field, ok, parse, ts};
    use crate::severity::Severity;

    #[test]
    fn layouts() {
        let p = ok(
            Mysql,
            "2026-12-05  4:09:25 0 [Note] InnoDB: Using transactional memory",
        );
        assert_eq!(ts(&p), "2026-12-05T04:09:25+00:00");
        assert_eq!(p.severity, Some(Severity::Info));
        assert_eq!(field(&p, "thread"), "0");
        assert_eq!(p.message, "InnoDB: Using transactional memory");
        let p = ok(
            Mysql,
            "2026-12-05 14:09:25 12 [Warning] Access denied for user 'x'@'localhost'",
        );
        assert_eq!(ts(&p), "2026-12-05T14:09:25+00:00");
        assert_eq!(p.severity, Some(Severity::Warning));
        let p = ok(
            Mysql,
            "2024-01-02T03:04:05.123456Z 0 [System] [MY-010116] [Server] /usr/sbin/mysqld (mysqld 8.0.36) starting as process 1",
        );
        assert_eq!(ts(&p), "2024-01-02T03:04:05.123456+00:00");
        assert_eq!(p.severity, Some(Severity::Notice));
        assert_eq!(field(&p, "error_code"), "MY-010116");
        assert_eq!(field(&p, "subsystem"), "Server");
        assert_eq!(
            p.message,
            "/usr/sbin/mysqld (mysqld 8.0.36) starting as process 1"
        );
        let p = ok(
            Mysql,
            "2024-01-02T03:04:05.123456+01:00 8 [ERROR] [MY-000067] [Server] unknown variable",
        );
        assert_eq!(p.severity, Some(Severity::Error));
        assert_eq!(ts(&p), "2024-01-02T03:04:05.123456+01:00");
        for bad in [
            "2026-12-05  4:09:25 0 [Info] x",
            "2026-12-05  4:09:25 x [Note] x",
            "2026-12-05 4:09:25 0 [Note] x",
            "2015-10-18 18:01:47,978 INFO [main] x",
        ] {
            assert!(parse(Mysql, bad).is_err(), "{bad}");
        }
    }
}
