//! Go's standard `log` package with the default flags (`LstdFlags`) or
//! `Lmicroseconds`, optionally `Lshortfile`/`Llongfile`:
//!
//! ```text
//! 2026/12/05 04:09:25 listening on :8080
//! 2026/12/05 04:09:25.123456 main.go:42: listening on :8080
//! ```
//!
//! The time is local (the configured zone applies; `LUTC` writes UTC, which
//! the line does not say). A `FILE.go:LINE: ` right after it is kept as
//! `fields.file` and `fields.line`. The package has no levels: severity
//! is absent.
//!
//! Invariants: any slashed timestamp followed by a space is accepted
//! (this is the last candidate for such lines, after `nginx_error`);
//! linear in the line length.

use super::{Env, Parts};
use crate::scan::{Cursor, PResult, parse_u64, text};

pub(crate) fn parse(body: &[u8], env: &Env) -> PResult<Parts> {
    let mut cur = Cursor::new(body);
    let stamp = super::generic::slashed(&mut cur, &env.time)?;
    if !cur.is_at_end() {
        cur.expect(b' ', "SP after timestamp")?;
    }
    let mut parts = Parts {
        timestamp: Some(stamp),
        ..Parts::default()
    };
    let mut look = cur.clone();
    let token = look.token();
    if let Some(loc) = token.strip_suffix(b":")
        && let Some(colon) = memchr::memrchr(b':', loc)
        && let (Some(file), Some(line)) = (loc.get(..colon), loc.get(colon + 1..))
        && file.ends_with(b".go")
        && let Some(line) = parse_u64(line)
    {
        parts.put("file", file);
        parts.put_u64("line", line);
        look.skip_spaces();
        cur = look;
    }
    parts.message = text(cur.rest());
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use crate::format::Format::GoLog;
    use crate::formats::testutil::{field, ok, parse, ts};

    #[test]
    fn lines() {
        let p = ok(GoLog, "2026/12/05 04:09:25 listening on :8080");
        assert_eq!(ts(&p), "2026-12-05T04:09:25+00:00");
        assert_eq!(p.severity, None);
        assert_eq!(p.message, "listening on :8080");
        let p = ok(
            GoLog,
            "2026/12/05 04:09:25.123456 /src/app/main.go:42: boom: x",
        );
        assert_eq!(ts(&p), "2026-12-05T04:09:25.123456+00:00");
        assert_eq!(field(&p, "file"), "/src/app/main.go");
        assert_eq!(field(&p, "line"), "42");
        assert_eq!(p.message, "boom: x");
        let p = ok(GoLog, "2026/12/05 04:09:25 key: value");
        assert_eq!(p.message, "key: value");
        assert!(parse(GoLog, "2026/12/05 04:09:25x").is_err());
        assert!(parse(GoLog, "2026-12-05 04:09:25 x").is_err());
    }
}
