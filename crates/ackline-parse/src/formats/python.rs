//! Python's `logging`: the default format of `logging.basicConfig()` and
//! the common `%(asctime)s` layouts.
//!
//! ```text
//! WARNING:root:disk low                                      %(levelname)s:%(name)s:%(message)s (default)
//! 2026-12-05 04:09:25,123 - app.db - ERROR - query failed    %(asctime)s - %(name)s - %(levelname)s - %(message)s
//! 2026-12-05 04:09:25,123:ERROR:app.db:query failed          %(asctime)s:%(levelname)s:%(name)s:%(message)s
//! [2026-12-05 04:09:25,123] ERROR in app: query failed       Flask's default
//! ```
//!
//! `%(asctime)s` is `YYYY-MM-DD HH:MM:SS,mmm` in local time (the
//! configured zone applies); the default layout has no time (the record
//! gets the ingest time). The logger name is the record's `app`.
//! Levels: the five standard names (`CRITICAL` → critical, `ERROR`,
//! `WARNING`, `INFO`, `DEBUG`).
//!
//! Layouts whose shape is log4j's (`%(asctime)s %(levelname)s %(name)s:
//! %(message)s`) are parsed, and named, as `log4j`: the line cannot tell.
//!
//! Invariants: the level must be a standard level name and the timestamp
//! must have exactly Python's `,mmm` milliseconds, so other lines are not
//! claimed; linear in the line length.

use super::{Env, Parts};
use crate::error::ErrorKind;
use crate::scan::{Cursor, PResult, text};
use crate::severity::Severity;
use crate::timestamp::Stamp;

/// `logging`'s standard level names.
fn level(word: &[u8]) -> Option<Severity> {
    Some(match word {
        b"CRITICAL" => Severity::Critical,
        b"ERROR" => Severity::Error,
        b"WARNING" => Severity::Warning,
        b"INFO" => Severity::Info,
        b"DEBUG" => Severity::Debug,
        _ => return None,
    })
}

/// Does `body` start like the default layout (`LEVEL:`)? For detection.
pub(crate) fn default_prefix(body: &[u8]) -> bool {
    let n = body
        .iter()
        .take(9)
        .take_while(|b| b.is_ascii_uppercase())
        .count();
    body.get(n) == Some(&b':') && body.get(..n).and_then(level).is_some()
}

pub(crate) fn parse(body: &[u8], env: &Env) -> PResult<Parts> {
    let mut cur = Cursor::new(body);
    let mut parts = Parts::default();
    match body.first() {
        Some(b'[') => {
            cur.advance(1);
            parts.timestamp = Some(asctime(&mut cur, env)?);
            cur.expect(b']', "']' after asctime")?;
            cur.expect(b' ', "SP after ']'")?;
            parts.severity = Some(level_word(&mut cur, b' ')?);
            if !cur.eat_slice(b"in ") {
                return Err(cur.expected("'in MODULE:'"));
            }
            let module = cur
                .take_until(b':')
                .ok_or_else(|| cur.expected("':' after module"))?;
            cur.advance(1);
            cur.eat(b' ');
            parts.app = Some(text(module));
        }
        Some(b'0'..=b'9') => {
            parts.timestamp = Some(asctime(&mut cur, env)?);
            if cur.eat_slice(b" - ") {
                let name = cur
                    .take_until_slice(b" - ")
                    .ok_or_else(|| cur.expected("' - ' after logger name"))?;
                cur.advance(3);
                parts.app = Some(text(name));
                let sev = level_word(&mut cur, b' ')?;
                parts.severity = Some(sev);
                if !cur.eat_slice(b"- ") && !cur.is_at_end() {
                    return Err(cur.expected("' - ' after level"));
                }
            } else if cur.eat(b':') {
                parts.severity = Some(level_word(&mut cur, b':')?);
                let name = cur
                    .take_until(b':')
                    .ok_or_else(|| cur.expected("':' after logger name"))?;
                cur.advance(1);
                parts.app = Some(text(name));
            } else {
                return Err(cur.expected("' - ' or ':' after asctime"));
            }
        }
        _ => {
            parts.severity = Some(level_word(&mut cur, b':')?);
            let name = cur
                .take_until(b':')
                .ok_or_else(|| cur.expected("':' after logger name"))?;
            cur.advance(1);
            parts.app = Some(text(name));
        }
    }
    parts.message = text(cur.rest());
    Ok(parts)
}

/// A level name followed by `sep` (both consumed).
fn level_word(cur: &mut Cursor<'_>, sep: u8) -> PResult<Severity> {
    let pos = cur.pos();
    let word = cur.take_while(|b| b.is_ascii_uppercase());
    let sev = level(word).ok_or((pos, ErrorKind::Expected("a Python level name")))?;
    cur.expect(sep, "separator after level")?;
    Ok(sev)
}

/// `YYYY-MM-DD HH:MM:SS,mmm`.
fn asctime(cur: &mut Cursor<'_>, env: &Env) -> PResult<Stamp> {
    let rest = cur.rest();
    let shaped = rest.get(10) == Some(&b' ')
        && rest.get(19) == Some(&b',')
        && rest
            .get(20..23)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
        && !rest.get(23).is_some_and(u8::is_ascii_digit);
    if !shaped {
        return Err(cur.fail(ErrorKind::InvalidTimestamp(
            "Python asctime (YYYY-MM-DD HH:MM:SS,mmm)",
        )));
    }
    let mut ts = Cursor::new(rest.get(..23).unwrap_or_default());
    let stamp =
        crate::timestamp::rfc3339(&mut ts, true, &env.time).map_err(|(p, k)| (cur.pos() + p, k))?;
    cur.advance(23);
    Ok(stamp)
}

#[cfg(test)]
mod tests {
    use crate::format::Format::Python;
    use crate::formats::testutil::{ok, parse, ts};
    use crate::severity::Severity;

    #[test]
    fn layouts() {
        let p = ok(Python, "WARNING:root:disk low: 3% left");
        assert_eq!(ts(&p), "none");
        assert_eq!(p.severity, Some(Severity::Warning));
        assert_eq!(p.app.as_deref(), Some("root"));
        assert_eq!(p.message, "disk low: 3% left");
        let p = ok(
            Python,
            "2026-12-05 04:09:25,123 - app.db - ERROR - query failed",
        );
        assert_eq!(ts(&p), "2026-12-05T04:09:25.123+00:00");
        assert_eq!(p.severity, Some(Severity::Error));
        assert_eq!(p.app.as_deref(), Some("app.db"));
        assert_eq!(p.message, "query failed");
        let p = ok(Python, "2026-12-05 04:09:25,123:CRITICAL:app:down");
        assert_eq!(p.severity, Some(Severity::Critical));
        assert_eq!(p.app.as_deref(), Some("app"));
        assert_eq!(p.message, "down");
        let p = ok(Python, "[2026-12-05 04:09:25,123] INFO in views: GET /");
        assert_eq!(p.app.as_deref(), Some("views"));
        assert_eq!(p.message, "GET /");
        for bad in [
            "WARN:root:x",
            "WARNING root x",
            "2026-12-05 04:09:25.123 - a - ERROR - x",
            "2026-12-05 04:09:25,1234 - a - ERROR - x",
            "2026-12-05 04:09:25,123 - a - BAD - x",
            "[2026-12-05 04:09:25,123] INFO x",
        ] {
            assert!(parse(Python, bad).is_err(), "{bad}");
        }
        assert!(super::default_prefix(b"ERROR:x"));
        assert!(!super::default_prefix(b"ERRORS:x"));
        assert!(!super::default_prefix(b"KERNDTLB 1"));
    }
}
