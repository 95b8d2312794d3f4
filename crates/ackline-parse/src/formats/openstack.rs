//! OpenStack service logs (oslo.log default format), optionally prefixed by
//! the log file name as in loghub:
//! `[FILE ]YYYY-MM-DD hh:mm:ss.mmm PID LEVEL logger [context] message`.
//!
//! Invariants: a prefix is only taken when it does not start with a digit
//! and is followed by a date; LEVEL must be a known level; the request
//! context bracket (`[req-… user project - - -]` or `[-]`) is optional;
//! no offset is stated, so the configured one applies.
//!
//! Fields: `log_file`, `context` (the bracket's inside), `request_id`
//! (when the context starts with `req-`).

use super::{Env, Parts};
use crate::error::ErrorKind;
use crate::scan::{Cursor, PResult, text};
use crate::severity::Severity;

pub(crate) fn parse(body: &[u8], env: &Env) -> PResult<Parts> {
    let mut cur = Cursor::new(body);
    let mut parts = Parts::default();
    if !cur.peek().is_some_and(|b| b.is_ascii_digit()) {
        let file = cur.expect_token("log file name or date")?;
        cur.expect_space("SP after log file name")?;
        parts.put("log_file", file);
    }
    if cur.peek_at(4) != Some(b'-') || cur.peek_at(10) != Some(b' ') {
        return Err(cur.expected("date YYYY-MM-DD hh:mm:ss"));
    }
    parts.timestamp = Some(crate::timestamp::rfc3339(&mut cur, true, &env.time)?);
    cur.expect_space("SP after timestamp")?;
    parts.pid = Some(cur.digits_between(1, 19, "pid")?);
    cur.expect_space("SP after pid")?;
    let level_pos = cur.pos();
    let level = cur.token();
    parts.severity =
        Some(Severity::from_text(level).ok_or((level_pos, ErrorKind::Expected("log level")))?);
    cur.expect_space("SP after level")?;
    parts.app = Some(text(cur.expect_token("logger name")?));
    cur.eat(b' ');
    if cur.peek() == Some(b'[') {
        let mut probe = cur.clone();
        probe.advance(1);
        if let Some(context) = probe.take_until(b']') {
            probe.advance(1);
            probe.eat(b' ');
            if context.starts_with(b"req-") {
                let id = context.split(|&b| b == b' ').next().unwrap_or_default();
                parts.put("request_id", id);
            }
            parts.put("context", context);
            cur = probe;
        }
    }
    parts.message = text(cur.rest());
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use crate::format::Format::OpenStack;
    use crate::formats::testutil::{field, ok, parse, ts};
    use crate::severity::Severity;

    #[test]
    fn edge_table() {
        let p = ok(
            OpenStack,
            r#"nova-api.log.1.2017-05-16_13:53:08 2017-05-16 00:00:00.008 25746 INFO nova.osapi_compute.wsgi.server [req-38101a0b-2096-447d-96ea-a692162415ae 113d3a99c3da401fbd62cc2caa5b96d2 54fadb412c4e40cdbaed9335e4c35a9e - - -] 10.11.10.1 "GET /v2/54fadb412c4e40cdbaed9335e4c35a9e/servers/detail HTTP/1.1" status: 200 len: 1893 time: 0.2477829"#,
        );
        assert_eq!(field(&p, "log_file"), "nova-api.log.1.2017-05-16_13:53:08");
        assert_eq!(ts(&p), "2017-05-16T00:00:00.008+00:00");
        assert_eq!(p.pid, Some(25746));
        assert_eq!(p.severity, Some(Severity::Info));
        assert_eq!(p.app.as_deref(), Some("nova.osapi_compute.wsgi.server"));
        assert_eq!(
            field(&p, "request_id"),
            "req-38101a0b-2096-447d-96ea-a692162415ae"
        );
        assert!(p.message.starts_with("10.11.10.1 \"GET /v2/"));

        let p = ok(
            OpenStack,
            "2017-05-16 00:00:10.302 2931 WARNING nova.virt.libvirt.driver [-] [instance: b9] spawned",
        );
        assert_eq!(field(&p, "log_file"), "<absent>");
        assert_eq!(field(&p, "context"), "-");
        assert_eq!(field(&p, "request_id"), "<absent>");
        assert_eq!(p.severity, Some(Severity::Warning));
        assert_eq!(p.message, "[instance: b9] spawned");

        assert!(parse(OpenStack, "nova.log 2017-05-16 00:00:10.302 x INFO a [-] m").is_err());
        assert!(parse(OpenStack, "nova.log 2017-05-16 00:00:10.302 1 LOUD a [-] m").is_err());
        assert!(parse(OpenStack, "Jun 14 15:16:01 combo su: x").is_err());
        assert!(parse(OpenStack, "2015-10-18 18:01:47,978 INFO [main] a.B: m").is_err());
    }
}
