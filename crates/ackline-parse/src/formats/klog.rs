//! klog / glog, the format of Kubernetes components (kubelet,
//! kube-apiserver, controllers...) and of Go and C++ programs using glog:
//!
//! ```text
//! I1205 04:09:25.123456    1234 main.go:42] Starting kubelet
//! E1205 04:09:26.000001    1234 pod_workers.go:1298] "Error syncing pod" pod="default/web-0"
//! ```
//!
//! `Lmmdd hh:mm:ss.uuuuuu THREADID FILE:LINE] MSG`: the single letter is
//! the severity (`I` info, `W` warning, `E` error, `F` fatal → critical;
//! klog's own letters, so they are read only in this format), the date has
//! no year (the year rule applies) and the time no zone (the configured
//! zone applies). THREADID is the process's thread (klog writes the pid of
//! the process on Linux, glog the thread id): kept as `pid`. FILE and LINE
//! go to `fields.file` and `fields.line`.
//!
//! Invariants: the letter, four date digits and the `]` after `FILE:LINE`
//! are required, so other letter-led lines are not claimed; linear in the
//! line length.

use super::{Env, Parts, at};
use crate::error::ErrorKind;
use crate::scan::{Cursor, PResult, parse_u64, text};
use crate::severity::Severity;
use crate::timestamp::{Civil, hms};

/// Does `body` start like a klog header (`I1205 `)? For detection.
pub(crate) fn looks_like(body: &[u8]) -> bool {
    matches!(body.first(), Some(b'I' | b'W' | b'E' | b'F'))
        && body
            .get(1..5)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
        && body.get(5) == Some(&b' ')
}

pub(crate) fn parse(body: &[u8], env: &Env) -> PResult<Parts> {
    let mut cur = Cursor::new(body);
    let severity = match cur.peek() {
        Some(b'I') => Severity::Info,
        Some(b'W') => Severity::Warning,
        Some(b'E') => Severity::Error,
        Some(b'F') => Severity::Critical,
        _ => return Err(cur.expected("klog severity letter (I, W, E, F)")),
    };
    cur.advance(1);
    let start = cur.pos();
    let month = cur.digits(2, "month")?;
    let day = cur.digits(2, "day")?;
    cur.expect(b' ', "SP after date")?;
    let (hour, minute, second) = hms(&mut cur)?;
    let nanos = if cur.eat(b'.') {
        cur.fraction_nanos(9, "microseconds")?
    } else {
        0
    };
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
    .map_err(at(start))?;
    if cur.skip_spaces() == 0 {
        return Err(cur.expected("SP after time"));
    }
    let thread = parse_u64(cur.take_while(|b| b.is_ascii_digit()))
        .ok_or_else(|| cur.expected("thread id"))?;
    cur.expect(b' ', "SP after thread id")?;
    let loc_pos = cur.pos();
    let loc = cur
        .take_until(b']')
        .ok_or((loc_pos, ErrorKind::Expected("FILE:LINE]")))?;
    cur.advance(1);
    let colon = memchr::memrchr(b':', loc).ok_or((loc_pos, ErrorKind::Expected("FILE:LINE]")))?;
    let line = parse_u64(loc.get(colon + 1..).unwrap_or_default())
        .ok_or((loc_pos, ErrorKind::Expected("line number")))?;
    let mut parts = Parts {
        timestamp: Some(stamp),
        severity: Some(severity),
        pid: Some(thread),
        ..Parts::default()
    };
    parts.put("file", loc.get(..colon).unwrap_or_default());
    parts.put_u64("line", line);
    cur.eat(b' ');
    parts.message = text(cur.rest());
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use crate::format::Format::Klog;
    use crate::formats::testutil::{field, ok, parse, ts};
    use crate::record::TimestampSource;
    use crate::severity::Severity;

    #[test]
    fn lines() {
        // The test reference time is 2024-06-15T12:00:00Z.
        let p = ok(
            Klog,
            "I0615 04:09:25.123456    1234 main.go:42] Starting kubelet",
        );
        assert_eq!(ts(&p), "2024-06-15T04:09:25.123456+00:00");
        assert_eq!(p.timestamp.unwrap().1, TimestampSource::LineInferredYear);
        assert_eq!(p.severity, Some(Severity::Info));
        assert_eq!(p.pid, Some(1234));
        assert_eq!(field(&p, "file"), "main.go");
        assert_eq!(field(&p, "line"), "42");
        assert_eq!(p.message, "Starting kubelet");
        let p = ok(
            Klog,
            "E1231 23:59:59.000001 7 pod_workers.go:1298] \"Error syncing pod\" pod=\"default/web-0\"",
        );
        assert_eq!(ts(&p), "2023-12-31T23:59:59.000001+00:00");
        assert_eq!(p.severity, Some(Severity::Error));
        assert_eq!(p.message, "\"Error syncing pod\" pod=\"default/web-0\"");
        assert_eq!(
            ok(Klog, "W0101 00:00:00.5 1 a.go:1] x").severity,
            Some(Severity::Warning)
        );
        assert_eq!(
            ok(Klog, "F0101 00:00:00 1 a.go:1] x").severity,
            Some(Severity::Critical)
        );
        for bad in [
            "X0615 04:09:25.123456 1 a.go:1] x",
            "I0615 04:09:25.123456 1 a.go:1 x",
            "I1315 04:09:25.123456 1 a.go:1] x",
            "I0615 04:09:25.123456 a.go:1] x",
            "I0615 04:09:25.123456 1 a.go] x",
        ] {
            assert!(parse(Klog, bad).is_err(), "{bad}");
        }
        assert!(super::looks_like(b"I0615 x"));
        assert!(!super::looks_like(b"INFO x"));
    }
}
