//! Container logs: the Kubernetes CRI file format and (through
//! [`structured`](super::structured)) docker's json-file, unwrapped and
//! their inner line parsed as auto mode would.
//!
//! CRI (what the kubelet and containerd/CRI-O write under
//! `/var/log/pods/`): `TIMESTAMP STREAM TAG LINE`, where TIMESTAMP is
//! RFC 3339 with nanoseconds and an offset, STREAM is `stdout` or
//! `stderr`, and TAG is `F` (the line is complete) or `P` (a partial line:
//! the runtime split a long line, the next records continue it).
//!
//! The record: format `cri` / `docker_json`; severity, pid, app, message
//! and fields from the inner line; `fields.inner_format` names the inner
//! line's format, `fields.stream` its stream, `fields.partial` is `true`
//! for a partial line (CRI `P`, docker `log` without its `\n`). The
//! timestamp is the inner line's when it states its offset (the
//! application's own clock), else the runtime's (always complete).
//!
//! Invariants: unwrapping is one level deep (`env.nested`: a wrapper inside
//! a wrapper is parsed as its plain format), so a line cannot recurse; the
//! runtime's timestamp must carry an offset. Partial lines are not joined
//! here: a parser sees one line; joining is the input's multi-line rule.

use super::{Env, Parts};
use crate::error::ErrorKind;
use crate::format::Format;
use crate::record::TimestampSource;
use crate::scan::{Cursor, PResult};
use crate::timestamp::Stamp;

/// `TIMESTAMP (stdout|stderr) (F|P) LINE`.
pub(crate) fn cri(body: &[u8], env: &Env) -> PResult<Parts> {
    if env.nested {
        return Err((0, ErrorKind::Expected("a container line (not nested)")));
    }
    let mut cur = Cursor::new(body);
    let stamp = crate::timestamp::rfc3339(&mut cur, true, &env.time)?;
    if stamp.1 != TimestampSource::Line {
        return Err(cur.expected("UTC offset in CRI timestamp"));
    }
    cur.expect(b' ', "SP after CRI timestamp")?;
    let stream = if cur.eat_slice(b"stdout ") {
        "stdout"
    } else if cur.eat_slice(b"stderr ") {
        "stderr"
    } else {
        return Err(cur.expected("CRI stream (stdout or stderr)"));
    };
    let tag_pos = cur.pos();
    let tag = cur.token();
    // Tags are `:`-separated; the first is P or F.
    let partial = match tag.split(|&b| b == b':').next() {
        Some(b"F") => false,
        Some(b"P") => true,
        _ => return Err((tag_pos, ErrorKind::Expected("CRI tag (F or P)"))),
    };
    // One SP, then the line exactly (it may start with spaces, or be empty).
    cur.eat(b' ');
    Ok(wrap(
        Format::Cri,
        Some(stamp),
        stream,
        partial,
        cur.rest(),
        env,
    ))
}

/// The header of a CRI line, read cheaply (for multi-line joining): the
/// stream, whether the line is partial (`P`), and the header's length
/// (where the container's line starts). `None` for any other line.
pub(crate) fn cri_header(line: &[u8]) -> Option<(&[u8], bool, usize)> {
    if !line.first().is_some_and(u8::is_ascii_digit) || line.get(10) != Some(&b'T') {
        return None;
    }
    let ts_end = memchr::memchr(b' ', line.get(..line.len().min(40))?)?;
    let rest = line.get(ts_end + 1..)?;
    let stream = rest
        .get(..6)
        .filter(|s| *s == b"stdout" || *s == b"stderr")?;
    let tag_start = ts_end + 8;
    if line.get(tag_start - 1) != Some(&b' ') {
        return None;
    }
    let partial = match line.get(tag_start) {
        Some(b'P') => true,
        Some(b'F') => false,
        _ => return None,
    };
    let tag_len = line
        .get(tag_start..)?
        .iter()
        .take_while(|&&b| b != b' ')
        .count();
    let header = (tag_start + tag_len + 1).min(line.len());
    Some((stream, partial, header))
}

/// The record of a container line: the inner line parsed (see the module
/// doc for which timestamp wins).
pub(crate) fn wrap(
    wrapper: Format,
    outer: Option<Stamp>,
    stream: &str,
    partial: bool,
    line: &[u8],
    env: &Env,
) -> Parts {
    let (inner_format, mut parts) = super::inner(line, env);
    let inner_complete = parts
        .timestamp
        .is_some_and(|(_, src)| src == TimestampSource::Line);
    if !inner_complete && outer.is_some() {
        parts.timestamp = outer;
    }
    parts.variant = Some(wrapper);
    parts.put("inner_format", inner_format.name().as_bytes());
    parts.put("stream", stream.as_bytes());
    if partial {
        parts
            .fields
            .insert("partial".to_owned(), serde_json::Value::Bool(true));
    }
    parts
}

#[cfg(test)]
mod tests {
    use crate::format::Format::Cri;
    use crate::formats::testutil::{field, ok, parse, ts};
    use crate::severity::Severity;

    #[test]
    fn cri_lines() {
        let p = ok(
            Cri,
            "2026-12-05T01:14:51.191716123Z stderr F [2993] 2026/12/05 01:14:51.191716 [ERR] boom",
        );
        assert_eq!(field(&p, "inner_format"), "nats");
        assert_eq!(field(&p, "stream"), "stderr");
        assert_eq!(field(&p, "partial"), "<absent>");
        assert_eq!(p.severity, Some(Severity::Error));
        assert_eq!(p.pid, Some(2993));
        // NATS states no offset: the runtime's timestamp wins.
        assert_eq!(ts(&p), "2026-12-05T01:14:51.191716123+00:00");
        assert_eq!(p.message, "boom");

        let p = ok(
            Cri,
            "2026-12-05T01:14:51.5+01:00 stdout P {\"level\":\"error\",\"msg\":\"half",
        );
        assert_eq!(field(&p, "partial"), "true");
        assert_eq!(field(&p, "inner_format"), "raw");
        assert_eq!(ts(&p), "2026-12-05T01:14:51.500+01:00");
        let p = ok(Cri, "2026-12-05T01:14:51Z stdout F ");
        assert_eq!(p.message, "");
        // The inner line's own complete timestamp wins.
        let p = ok(
            Cri,
            "2026-12-05T01:14:51Z stdout F 2026-12-05 01:14:50.123+00:00 [info] <0.1.0> x",
        );
        assert_eq!(ts(&p), "2026-12-05T01:14:50.123+00:00");
        // A CRI line inside a CRI line is not unwrapped again.
        let p = ok(
            Cri,
            "2026-12-05T01:14:51Z stdout F 2026-12-05T01:14:50Z stdout F x",
        );
        assert_eq!(field(&p, "inner_format"), "generic");
        for bad in [
            "2026-12-05T01:14:51 stdout F x",
            "2026-12-05T01:14:51Z stdin F x",
            "2026-12-05T01:14:51Z stdout X x",
            "2026-12-05T01:14:51Z",
        ] {
            assert!(parse(Cri, bad).is_err(), "{bad}");
        }
    }
}
