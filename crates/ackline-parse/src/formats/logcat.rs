//! Android logcat, `threadtime` layout (`MM-DD hh:mm:ss.mmm PID TID L TAG: MSG`)
//! and `time` layout (`MM-DD hh:mm:ss.mmm L/TAG( PID): MSG`).
//!
//! Invariants: the year is inferred with [`YearRule`](crate::YearRule) and
//! the configured offset applies; the priority letter maps with
//! [`Severity::from_letter`](crate::Severity::from_letter) (`S`/unknown is
//! an error); the TAG runs to the first `: ` (or a final `:`), trailing
//! padding trimmed.
//!
//! Fields: `tid` (threadtime only).

use super::{Env, Parts, at};
use crate::error::ErrorKind;
use crate::scan::{Cursor, PResult, text, trim_end_spaces};
use crate::severity::Severity;
use crate::timestamp::{Civil, hms};

pub(crate) fn parse(body: &[u8], env: &Env) -> PResult<Parts> {
    let mut cur = Cursor::new(body);
    let month = cur.digits(2, "month")?;
    cur.expect(b'-', "'-' after month")?;
    let day = cur.digits(2, "day")?;
    cur.expect_space("SP after date")?;
    let (hour, minute, second) = hms(&mut cur)?;
    cur.expect(b'.', "'.' before milliseconds")?;
    let nanos = cur.fraction_nanos(3, "milliseconds")?;
    let stamp = Civil {
        year: 0,
        month,
        day,
        hour,
        minute,
        second,
        nanos,
    }
    .infer_year(&env.time)
    .map_err(at(0))?;
    if cur.skip_spaces() == 0 {
        return Err(cur.expected("SP after time"));
    }
    let mut parts = Parts {
        timestamp: Some(stamp),
        ..Parts::default()
    };
    if cur.peek().is_some_and(|b| b.is_ascii_digit()) {
        // threadtime
        parts.pid = Some(cur.digits_between(1, 19, "pid")?);
        if cur.skip_spaces() == 0 {
            return Err(cur.expected("SP after pid"));
        }
        let tid = cur.digits_between(1, 19, "tid")?;
        parts.put_u64("tid", tid);
        if cur.skip_spaces() == 0 {
            return Err(cur.expected("SP after tid"));
        }
        parts.severity = Some(letter(&mut cur)?);
        cur.expect_space("SP after priority")?;
        tag_message(&mut cur, &mut parts)?;
    } else {
        // time: L/TAG( PID): MSG
        parts.severity = Some(letter(&mut cur)?);
        cur.expect(b'/', "'/' after priority")?;
        let tag = cur
            .take_until(b'(')
            .ok_or_else(|| cur.expected("'(' before pid"))?;
        cur.advance(1);
        cur.skip_spaces();
        parts.pid = Some(cur.digits_between(1, 19, "pid")?);
        cur.expect(b')', "')' after pid")?;
        cur.expect(b':', "':' after pid")?;
        cur.eat(b' ');
        let tag = trim_end_spaces(tag);
        parts.app = (!tag.is_empty()).then(|| text(tag));
        parts.message = text(cur.rest());
    }
    Ok(parts)
}

fn letter(cur: &mut Cursor<'_>) -> PResult<Severity> {
    let sev = cur
        .peek()
        .and_then(Severity::from_letter)
        .ok_or_else(|| cur.fail(ErrorKind::Expected("priority letter (V D I W E F A)")))?;
    cur.advance(1);
    Ok(sev)
}

fn tag_message(cur: &mut Cursor<'_>, parts: &mut Parts) -> PResult<()> {
    let rest = cur.rest();
    let (tag, msg) = match memchr::memmem::find(rest, b": ") {
        Some(i) => (rest.get(..i), rest.get(i + 2..)),
        None => match rest.strip_suffix(b":") {
            Some(tag) => (Some(tag), Some(&b""[..])),
            None => return Err(cur.expected("': ' after tag")),
        },
    };
    let tag = trim_end_spaces(tag.unwrap_or_default());
    parts.app = (!tag.is_empty()).then(|| text(tag));
    parts.message = text(msg.unwrap_or_default());
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::format::Format::Logcat;
    use crate::formats::testutil::{field, ok, parse, ts};
    use crate::severity::Severity;

    #[test]
    fn edge_table() {
        let p = ok(
            Logcat,
            "03-17 16:13:38.811  1702  2395 D WindowManager: printFreezingDisplayLogsopening app wtoken",
        );
        assert_eq!(ts(&p), "2024-03-17T16:13:38.811+00:00");
        assert_eq!(p.pid, Some(1702));
        assert_eq!(field(&p, "tid"), "2395");
        assert_eq!(p.severity, Some(Severity::Debug));
        assert_eq!(p.app.as_deref(), Some("WindowManager"));
        assert_eq!(p.message, "printFreezingDisplayLogsopening app wtoken");

        let p = ok(Logcat, "12-31 23:59:59.000 1 2 E Some Tag  : a: b");
        assert_eq!(ts(&p), "2023-12-31T23:59:59+00:00");
        assert_eq!(p.app.as_deref(), Some("Some Tag"));
        assert_eq!(p.message, "a: b");
        assert_eq!(p.severity, Some(Severity::Error));

        let p = ok(
            Logcat,
            "03-17 16:13:38.811 I/ActivityManager(  580): Start proc",
        );
        assert_eq!(p.pid, Some(580));
        assert_eq!(p.app.as_deref(), Some("ActivityManager"));
        assert_eq!(p.message, "Start proc");

        let p = ok(Logcat, "03-17 16:13:38.811 1 2 W tag:");
        assert_eq!(p.message, "");
        assert_eq!(p.severity, Some(Severity::Warning));

        assert!(parse(Logcat, "03-17 16:13:38.811 1 2 S tag: silent").is_err());
        assert!(parse(Logcat, "03-17 16:13:38.811 1 2 I no tag here").is_err());
        assert!(parse(Logcat, "02-30 16:13:38.811 1 2 I t: m").is_err());
        assert!(parse(Logcat, "03-17 16:13:38 1 2 I t: m").is_err());
    }
}
