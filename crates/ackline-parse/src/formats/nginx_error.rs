//! The nginx error log (`ngx_log_error_core`):
//!
//! ```text
//! 2026/12/05 04:09:25 [error] 4242#4242: *17 open() "/srv/x" failed (2: No such file or directory), client: 127.0.0.1, server: localhost, request: "GET /x HTTP/1.1", host: "localhost"
//! ```
//!
//! `YYYY/MM/DD HH:MM:SS` (local time: the configured zone applies),
//! `[level]` (`debug` `info` `notice` `warn` `error` `crit` `alert`
//! `emerg`), `PID#TID:` (pid, `fields.tid`), an optional `*CID`
//! connection number (`fields.connection`), then the message. The
//! `, key: value` context nginx appends (`client`, `server`, `request`,
//! `upstream`, `host`, `referrer`) is moved into `fields` when it parses
//! cleanly; otherwise the message keeps it.
//!
//! Invariants: the level must be one of nginx's eight, so a Go `log`
//! line is not claimed; linear in the line length.

use super::{Env, Parts};
use crate::error::ErrorKind;
use crate::scan::{Cursor, PResult, parse_u64, text};
use crate::severity::Severity;

/// The context keys nginx appends to a message.
const CONTEXT_KEYS: &[&str] = &[
    "client", "server", "request", "upstream", "host", "referrer",
];

pub(crate) fn parse(body: &[u8], env: &Env) -> PResult<Parts> {
    let mut cur = Cursor::new(body);
    let stamp = super::generic::slashed(&mut cur, &env.time)?;
    cur.expect(b' ', "SP after timestamp")?;
    let level_pos = cur.pos();
    cur.expect(b'[', "'[' before level")?;
    let word = cur.take_until(b']').unwrap_or_default();
    let severity = match word {
        b"debug" => Severity::Debug,
        b"info" => Severity::Info,
        b"notice" => Severity::Notice,
        b"warn" => Severity::Warning,
        b"error" => Severity::Error,
        b"crit" => Severity::Critical,
        b"alert" => Severity::Alert,
        b"emerg" => Severity::Emergency,
        _ => {
            return Err((
                level_pos,
                ErrorKind::Expected("nginx level ([error], [warn]...)"),
            ));
        }
    };
    cur.advance(1);
    cur.expect(b' ', "SP after level")?;
    let pid =
        parse_u64(cur.take_while(|b| b.is_ascii_digit())).ok_or_else(|| cur.expected("pid"))?;
    cur.expect(b'#', "'#' between pid and thread id")?;
    let tid = parse_u64(cur.take_while(|b| b.is_ascii_digit()))
        .ok_or_else(|| cur.expected("thread id"))?;
    cur.expect(b':', "':' after thread id")?;
    let mut parts = Parts {
        timestamp: Some(stamp),
        severity: Some(severity),
        pid: Some(pid),
        ..Parts::default()
    };
    parts.put_u64("tid", tid);
    cur.skip_spaces();
    let mut look = cur.clone();
    if look.eat(b'*')
        && let Some(cid) = parse_u64(look.take_while(|b| b.is_ascii_digit()))
        && look.eat(b' ')
    {
        parts.put_u64("connection", cid);
        cur = look;
    }
    let msg = cur.rest();
    match context_start(msg).and_then(|at| Some((at, context(msg.get(at + 2..)?)?))) {
        Some((at, pairs)) => {
            parts.message = text(msg.get(..at).unwrap_or_default());
            for (k, v) in pairs {
                parts.put(k, v);
            }
        }
        None => parts.message = text(msg),
    }
    Ok(parts)
}

/// Where `, client: ` starts (nginx's context always begins with it).
fn context_start(msg: &[u8]) -> Option<usize> {
    memchr::memmem::rfind(msg, b", client: ")
}

/// `client: X, server: Y, request: "..."` → pairs, `None` unless it all
/// parses.
fn context(s: &[u8]) -> Option<Vec<(&'static str, &[u8])>> {
    let mut cur = Cursor::new(s);
    let mut out = Vec::new();
    loop {
        let key = cur.take_while(|b| b.is_ascii_lowercase());
        let key = CONTEXT_KEYS.iter().find(|k| k.as_bytes() == key)?;
        if !cur.eat_slice(b": ") {
            return None;
        }
        let value = if cur.eat(b'"') {
            let v = cur.take_until(b'"')?;
            cur.advance(1);
            v
        } else {
            let rest = cur.rest();
            let n = memchr::memmem::find(rest, b", ").unwrap_or(rest.len());
            cur.advance(n);
            rest.get(..n)?
        };
        out.push((*key, value));
        if cur.is_at_end() {
            return Some(out);
        }
        if !cur.eat_slice(b", ") {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::format::Format::NginxError;
    use crate::formats::testutil::{field, ok, parse, ts};
    use crate::severity::Severity;

    #[test]
    fn lines() {
        let p = ok(
            NginxError,
            r#"2026/12/05 04:09:25 [error] 4242#4242: *17 open() "/srv/x" failed (2: No such file or directory), client: 127.0.0.1, server: localhost, request: "GET /x, y HTTP/1.1", host: "localhost""#,
        );
        assert_eq!(ts(&p), "2026-12-05T04:09:25+00:00");
        assert_eq!(p.severity, Some(Severity::Error));
        assert_eq!(p.pid, Some(4242));
        assert_eq!(field(&p, "tid"), "4242");
        assert_eq!(field(&p, "connection"), "17");
        assert_eq!(
            p.message,
            r#"open() "/srv/x" failed (2: No such file or directory)"#
        );
        assert_eq!(field(&p, "client"), "127.0.0.1");
        assert_eq!(field(&p, "request"), "GET /x, y HTTP/1.1");
        assert_eq!(field(&p, "host"), "localhost");
        let p = ok(
            NginxError,
            "2026/12/05 04:09:25 [notice] 1#1: signal process started",
        );
        assert_eq!(p.severity, Some(Severity::Notice));
        assert_eq!(p.message, "signal process started");
        // Context that does not parse stays in the message.
        let p = ok(
            NginxError,
            "2026/12/05 04:09:25 [warn] 1#1: a, client: x, bogus: y",
        );
        assert_eq!(p.message, "a, client: x, bogus: y");
        for bad in [
            "2026/12/05 04:09:25 [ERR] 1#1: x",
            "2026/12/05 04:09:25 hello",
            "2026/12/05 04:09:25 [warn] 1: x",
        ] {
            assert!(parse(NginxError, bad).is_err(), "{bad}");
        }
    }
}
