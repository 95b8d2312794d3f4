//! logfmt: space-separated `key=value` pairs, values bare or double-quoted.
//!
//! Invariants:
//! - a key is 1+ bytes above space other than `=` and `"`; a key without
//!   `=` is a flag (value `null`); `key=` is an empty string;
//! - quoted values undo `\"`, `\\`, `\n`, `\r`, `\t`; other escapes are
//!   kept verbatim; an unterminated quote is an error;
//! - all values stay strings (logfmt has no types);
//! - the line must start with a `key=value` pair and have at least as many
//!   pairs as bare flags, so ordinary prose is not claimed as logfmt;
//! - common names are mapped as for JSON (see [`mapping`](super::mapping));
//! - a line led by `time=`, `level=LEVEL` (upper case) and `msg=`, as Go's
//!   `log/slog` text handler writes, is named `go_slog`.

use serde_json::{Map, Value};

use super::{Env, Parts, mapping};
use crate::error::ErrorKind;
use crate::format::Format;
use crate::scan::{Cursor, PResult, text};

pub(crate) fn parse(body: &[u8], env: &Env) -> PResult<Parts> {
    let mut cur = Cursor::new(body);
    let mut map = Map::new();
    let (mut pairs, mut flags) = (0usize, 0usize);
    loop {
        cur.take_while(|b| b == b' ' || b == b'\t');
        if cur.is_at_end() {
            break;
        }
        let key_pos = cur.pos();
        let key = cur.take_while(|b| b > b' ' && b != b'=' && b != b'"');
        if key.is_empty() {
            return Err(cur.expected("logfmt key"));
        }
        let value = if cur.eat(b'=') {
            pairs += 1;
            if cur.peek() == Some(b'"') {
                Value::String(quoted(&mut cur)?)
            } else {
                let v = cur.take_while(|b| b > b' ' && b != b'"');
                if cur.peek() == Some(b'"') {
                    return Err(cur.expected("space or end after bare value"));
                }
                Value::String(text(v))
            }
        } else {
            if pairs == 0 {
                return Err((
                    key_pos,
                    ErrorKind::Expected("key=value as first logfmt token"),
                ));
            }
            flags += 1;
            Value::Null
        };
        if !matches!(cur.peek(), None | Some(b' ' | b'\t')) {
            return Err(cur.expected("space between logfmt pairs"));
        }
        map.insert(text(key), value);
    }
    if pairs == 0 || flags > pairs {
        return Err((0, ErrorKind::Expected("logfmt key=value pairs")));
    }
    let mut parts = mapping::apply(map, env);
    if is_slog_text(body) {
        super::structured::slog_level(&mut parts);
    }
    Ok(parts)
}

/// Fixed format `go_slog`, text handler: logfmt led by `time=`, `level=`,
/// `msg=`.
pub(crate) fn parse_named(format: Format, body: &[u8], env: &Env) -> PResult<Parts> {
    let parts = parse(body, env)?;
    if parts.variant == Some(format) {
        Ok(parts)
    } else {
        Err((
            0,
            ErrorKind::Expected("time=... level=... msg=... (slog's text handler)"),
        ))
    }
}

/// Go's `log/slog` text handler writes `time=`, `level=` and `msg=` first,
/// in that order (its `Handler` contract), the level in upper case.
fn is_slog_text(body: &[u8]) -> bool {
    let Some(rest) = body.strip_prefix(b"time=") else {
        return false;
    };
    let Some(sp) = memchr::memchr(b' ', rest) else {
        return false;
    };
    let Some(rest) = rest.get(sp + 1..).and_then(|r| r.strip_prefix(b"level=")) else {
        return false;
    };
    let lvl = rest.iter().take_while(|&&b| b != b' ').count();
    let upper = rest
        .get(..lvl)
        .is_some_and(|l| l.first().is_some_and(u8::is_ascii_uppercase));
    upper && rest.get(lvl..).is_some_and(|r| r.starts_with(b" msg="))
}

fn quoted(cur: &mut Cursor<'_>) -> PResult<String> {
    cur.advance(1);
    let mut out = Vec::new();
    loop {
        out.extend_from_slice(cur.take_while(|b| b != b'"' && b != b'\\'));
        match cur.peek() {
            Some(b'"') => {
                cur.advance(1);
                return Ok(String::from_utf8_lossy(&out).into_owned());
            }
            Some(b'\\') => {
                cur.advance(1);
                match cur.peek() {
                    Some(b'"') => out.push(b'"'),
                    Some(b'\\') => out.push(b'\\'),
                    Some(b'n') => out.push(b'\n'),
                    Some(b'r') => out.push(b'\r'),
                    Some(b't') => out.push(b'\t'),
                    Some(other) => out.extend_from_slice(&[b'\\', other]),
                    None => return Err(cur.expected("'\"' closing logfmt value")),
                }
                cur.advance(1);
            }
            _ => return Err(cur.expected("'\"' closing logfmt value")),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::error::ErrorKind;
    use crate::format::Format::Logfmt;
    use crate::formats::testutil::{field, ok, parse, ts};
    use crate::severity::Severity;

    #[test]
    fn edge_table() {
        let p = ok(
            Logfmt,
            r#"ts=2024-01-02T03:04:05Z level=error msg="disk \"sda\" failed\n" host=db1 app=api pid=7 took=1.5s"#,
        );
        assert_eq!(ts(&p), "2024-01-02T03:04:05+00:00");
        assert_eq!(p.severity, Some(Severity::Error));
        assert_eq!(p.message, "disk \"sda\" failed\n");
        assert_eq!(p.host.as_deref(), Some("db1"));
        assert_eq!(p.app.as_deref(), Some("api"));
        assert_eq!(p.pid, Some(7));
        assert_eq!(field(&p, "took"), "1.5s");

        let p = ok(Logfmt, "a=1 b= flag c=\"\" d=x=y");
        assert_eq!(field(&p, "a"), "1");
        assert_eq!(field(&p, "b"), "");
        assert_eq!(field(&p, "flag"), "null");
        assert_eq!(field(&p, "c"), "");
        assert_eq!(field(&p, "d"), "x=y");
        assert_eq!(field(&p, "e"), "<absent>");
        let p = ok(Logfmt, "at=info method=GET path=/ \t");
        assert_eq!(p.severity, None, "`at` is not a mapped key");
        assert_eq!(field(&p, "at"), "info");

        let bad: &[(&str, ErrorKind)] = &[
            (
                "hello world",
                ErrorKind::Expected("key=value as first logfmt token"),
            ),
            ("a=1 b c d", ErrorKind::Expected("logfmt key=value pairs")),
            (
                r#"a="open"#,
                ErrorKind::Expected("'\"' closing logfmt value"),
            ),
            (
                r#"a="x"b"#,
                ErrorKind::Expected("space between logfmt pairs"),
            ),
            (
                r#"a=x"b""#,
                ErrorKind::Expected("space or end after bare value"),
            ),
            ("=1", ErrorKind::Expected("logfmt key")),
            ("", ErrorKind::Expected("logfmt key=value pairs")),
        ];
        for (line, kind) in bad {
            assert_eq!(&parse(Logfmt, line).unwrap_err().1, kind, "{line}");
        }
    }
}
