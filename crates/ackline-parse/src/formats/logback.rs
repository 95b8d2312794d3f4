//! The logback and log4j2 default pattern,
//! `%d{HH:mm:ss.SSS} [%thread] %-5level %logger{36} - %msg%n`:
//!
//! ```text
//! 04:09:25.123 [main] INFO  com.example.App - started in 1.2 s
//! ```
//!
//! The line has a time of day only: the date is inferred from the reference
//! time (see `timestamp::time_only`), the configured zone applies, and the
//! record says `line_inferred_year`. `[thread]` → `fields.thread` (matched
//! brackets, as thread names may hold some), the logger → `app`. (With a
//! date, `%d{yyyy-MM-dd HH:mm:ss.SSS} [%thread] ...`, the line is log4j's.)
//!
//! Invariants: the level must be a known level word and ` - ` must follow
//! the logger, so other time-led lines are not claimed; bracket matching
//! looks at most 512 bytes ahead.

use super::{Env, Parts, at};
use crate::error::ErrorKind;
use crate::scan::{Cursor, PResult, text};
use crate::severity::Severity;
use crate::timestamp::hms;

/// Longest `[thread]` looked at.
const MAX_THREAD: usize = 512;

pub(crate) fn parse(body: &[u8], env: &Env) -> PResult<Parts> {
    let mut cur = Cursor::new(body);
    let start = cur.pos();
    let (hour, minute, second) = hms(&mut cur)?;
    cur.expect(b'.', "'.' before milliseconds")?;
    let nanos = cur.fraction_nanos(3, "milliseconds")?;
    let stamp =
        crate::timestamp::time_only(hour, minute, second, nanos, &env.time).map_err(at(start))?;
    cur.expect(b' ', "SP after time")?;
    cur.expect(b'[', "'[' before thread")?;
    let rest = cur.rest();
    let mut depth = 1usize;
    let mut end = None;
    for (i, &b) in rest.iter().take(MAX_THREAD).enumerate() {
        match b {
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth == 0 {
                    end = Some(i);
                    break;
                }
            }
            _ => {}
        }
    }
    let end = end.ok_or_else(|| cur.expected("']' closing thread"))?;
    let thread = rest.get(..end).unwrap_or_default();
    cur.advance(end + 1);
    cur.expect(b' ', "SP after thread")?;
    let level_pos = cur.pos();
    let severity =
        Severity::from_text(cur.token()).ok_or((level_pos, ErrorKind::Expected("log level")))?;
    cur.skip_spaces();
    let logger = cur.expect_token("logger")?;
    if !cur.eat_slice(b" - ") && !cur.eat_slice(b" -") {
        return Err(cur.expected("' - ' after logger"));
    }
    let mut parts = Parts {
        timestamp: Some(stamp),
        severity: Some(severity),
        app: Some(text(logger)),
        message: text(cur.rest()),
        ..Parts::default()
    };
    parts.put("thread", thread);
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use crate::format::Format::Logback;
    use crate::formats::testutil::{field, ok, parse, ts};
    use crate::record::TimestampSource;
    use crate::severity::Severity;

    #[test]
    fn lines() {
        // The test reference time is 2024-06-15T12:00:00Z.
        let p = ok(
            Logback,
            "04:09:25.123 [main] INFO  com.example.App - started in 1.2 s",
        );
        assert_eq!(ts(&p), "2024-06-15T04:09:25.123+00:00");
        assert_eq!(p.timestamp.unwrap().1, TimestampSource::LineInferredYear);
        assert_eq!(p.severity, Some(Severity::Info));
        assert_eq!(p.app.as_deref(), Some("com.example.App"));
        assert_eq!(field(&p, "thread"), "main");
        assert_eq!(p.message, "started in 1.2 s");
        // Later than an hour past the reference: yesterday.
        let p = ok(
            Logback,
            "23:59:59.999 [pool-1-thread-[2]] ERROR c.e.Job - failed",
        );
        assert_eq!(ts(&p), "2024-06-14T23:59:59.999+00:00");
        assert_eq!(field(&p, "thread"), "pool-1-thread-[2]");
        for bad in [
            "04:09:25 [main] INFO a - b",
            "04:09:25.123 main INFO a - b",
            "04:09:25.123 [main] HELLO a - b",
            "04:09:25.123 [main] INFO a b",
            "25:09:25.123 [main] INFO a - b",
        ] {
            assert!(parse(Logback, bad).is_err(), "{bad}");
        }
    }
}
