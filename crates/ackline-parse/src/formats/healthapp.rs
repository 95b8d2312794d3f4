//! Huawei HealthApp logs (loghub): `YYYYMMDD-H:M:S:ms|component|pid|message`.
//!
//! Invariants: hour, minute and second are 1–2 digits and the last time
//! part is 1–3 digits of **milliseconds** (a count, not a decimal fraction:
//! `29:5` is 29 s 5 ms); no offset is stated, so the configured one
//! applies. The message is everything after the third `|` (it may contain
//! more `|`).

use super::{Env, Parts, at};
use crate::scan::{Cursor, PResult, text};
use crate::timestamp::Civil;

pub(crate) fn parse(body: &[u8], env: &Env) -> PResult<Parts> {
    let mut cur = Cursor::new(body);
    let year = cur.digits(4, "year")?;
    let month = cur.digits(2, "month")?;
    let day = cur.digits(2, "day")?;
    cur.expect(b'-', "'-' after date")?;
    let hour = cur.digits_between(1, 2, "hour")?;
    cur.expect(b':', "':' after hour")?;
    let minute = cur.digits_between(1, 2, "minute")?;
    cur.expect(b':', "':' after minute")?;
    let second = cur.digits_between(1, 2, "second")?;
    cur.expect(b':', "':' after second")?;
    let millis = cur.digits_between(1, 3, "milliseconds")?;
    cur.expect(b'|', "'|' after timestamp")?;
    let component = cur
        .take_until(b'|')
        .ok_or_else(|| cur.expected("'|' after component"))?;
    cur.advance(1);
    let pid = cur.digits_between(1, 19, "pid")?;
    cur.expect(b'|', "'|' after pid")?;
    // All values have at most 4 digits: the conversions cannot fail.
    let small = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    let stamp = Civil {
        year: i32::try_from(year).unwrap_or(0),
        month,
        day,
        hour: small(hour),
        minute: small(minute),
        second: small(second),
        nanos: small(millis) * 1_000_000,
    }
    .assumed(&env.time)
    .map_err(at(0))?;
    Ok(Parts {
        timestamp: Some(stamp),
        app: (!component.is_empty()).then(|| text(component)),
        pid: Some(pid),
        message: text(cur.rest()),
        ..Parts::default()
    })
}

#[cfg(test)]
mod tests {
    use crate::format::Format::HealthApp;
    use crate::formats::testutil::{ok, parse, ts};

    #[test]
    fn edge_table() {
        let p = ok(
            HealthApp,
            "20171223-22:15:29:606|Step_LSC|30002312|onStandStepChanged 3579",
        );
        assert_eq!(ts(&p), "2017-12-23T22:15:29.606+00:00");
        assert_eq!(p.app.as_deref(), Some("Step_LSC"));
        assert_eq!(p.pid, Some(30_002_312));
        assert_eq!(p.message, "onStandStepChanged 3579");
        let p = ok(HealthApp, "20171223-22:16:0:5|Step_SPUtils|30002312| a|b");
        assert_eq!(ts(&p), "2017-12-23T22:16:00.005+00:00");
        assert_eq!(p.message, " a|b");
        assert!(parse(HealthApp, "20171223-22:16:0:5|Step_SPUtils|x|m").is_err());
        assert!(parse(HealthApp, "20171223-22:16:0:5|Step_SPUtils").is_err());
        assert!(parse(HealthApp, "20171223-24:16:0:5|a|1|m").is_err());
        assert!(parse(HealthApp, "20171223-22:16:0:1000|a|1|m").is_err());
    }
}
