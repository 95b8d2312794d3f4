//! Apache/nginx access logs, Common and Combined Log Format:
//! `host ident user [dd/Mmm/yyyy:hh:mm:ss ±hhmm] "request" status bytes ["referer" "user-agent"]`.
//!
//! Invariants:
//! - the timestamp states its offset (`timestamp_source = line`);
//! - quoted strings undo `\"` and `\\` (Apache's escaping) and keep other
//!   escapes (`\x22` from nginx) verbatim; a quote only closes the request
//!   when followed by ` <status>`, so an unescaped quote inside a request
//!   (old Apache) does not derail the parse;
//! - the variant is `access_combined` when referer and user agent follow,
//!   `access_common` otherwise; anything after that is kept in
//!   `fields.extra`;
//! - the client address is *not* the record's host (the host is the
//!   server that wrote the log, unknown here): it is `fields.client`;
//! - severity is derived from the status: 5xx error, 4xx warning, other
//!   info; the message is the whole line.
//!
//! Fields: `client`, `ident`, `user` (unless `-`), `request`, `method`,
//! `path`, `protocol` (when the request has three parts), `status`,
//! `bytes` (unless `-`), `referer`, `user_agent`, `extra`.

use super::{Env, Parts};
use crate::error::ErrorKind;
use crate::format::Format;
use crate::record::TimestampSource;
use crate::scan::{Cursor, PResult, text};
use crate::severity::Severity;
use crate::timestamp::{Civil, expect_month, hms, offset};

pub(crate) fn parse(body: &[u8], _env: &Env) -> PResult<Parts> {
    let mut cur = Cursor::new(body);
    let client = cur.expect_token("client address")?;
    cur.expect_space("SP after client")?;
    let ident = cur.expect_token("ident")?;
    cur.expect_space("SP after ident")?;
    let user = cur.expect_token("user")?;
    cur.expect_space("SP after user")?;
    cur.expect(b'[', "'[' opening timestamp")?;
    let ts_pos = cur.pos();
    let day = cur.digits(2, "day")?;
    cur.expect(b'/', "'/' after day")?;
    let month = expect_month(&mut cur)?;
    cur.expect(b'/', "'/' after month")?;
    let year = cur.digits(4, "year")?;
    cur.expect(b':', "':' after year")?;
    let (hour, minute, second) = hms(&mut cur)?;
    cur.expect_space("SP before offset")?;
    let off = offset(&mut cur)?.ok_or_else(|| cur.expected("UTC offset"))?;
    cur.expect(b']', "']' closing timestamp")?;
    let ts = Civil {
        year: i32::try_from(year).unwrap_or(0),
        month,
        day,
        hour,
        minute,
        second,
        nanos: 0,
    }
    .at(off)
    .map_err(|k| (ts_pos, k))?;
    cur.expect_space("SP after timestamp")?;
    let request = quoted(&mut cur, |next| {
        next.len() >= 2
            && next.first() == Some(&b' ')
            && next
                .get(1)
                .is_some_and(|b| b.is_ascii_digit() || *b == b'-')
    })?;
    cur.expect_space("SP after request")?;
    let status_pos = cur.pos();
    let status = cur.digits(3, "3-digit status")?;
    if !(100..=999).contains(&status) {
        return Err((status_pos, ErrorKind::Expected("3-digit status")));
    }
    cur.expect_space("SP after status")?;
    let bytes = if cur.eat(b'-') {
        None
    } else {
        Some(cur.digits_between(1, 19, "response size or '-'")?)
    };

    let mut parts = Parts {
        timestamp: Some((ts, TimestampSource::Line)),
        severity: Some(match status {
            500.. => Severity::Error,
            400..=499 => Severity::Warning,
            _ => Severity::Info,
        }),
        message: text(body),
        variant: Some(Format::AccessCommon),
        ..Parts::default()
    };
    parts.put("client", client);
    if ident != b"-" {
        parts.put("ident", ident);
    }
    if user != b"-" {
        parts.put("user", user);
    }
    let mut pieces = request.split(|&b| b == b' ');
    if let (Some(method), Some(path), Some(protocol), None) =
        (pieces.next(), pieces.next(), pieces.next(), pieces.next())
    {
        parts.put("method", method);
        parts.put("path", path);
        parts.put("protocol", protocol);
    }
    parts.put("request", &request);
    parts.put_u64("status", u64::from(status));
    if let Some(b) = bytes {
        parts.put_u64("bytes", b);
    }

    if cur.is_at_end() {
        return Ok(parts);
    }
    cur.expect_space("SP after size")?;
    let mark = cur.clone();
    let end_of_field = |next: &[u8]| next.is_empty() || next.first() == Some(&b' ');
    let combined = (|| {
        let referer = quoted(&mut cur, end_of_field)?;
        cur.expect_space("SP after referer")?;
        let agent = quoted(&mut cur, end_of_field)?;
        Ok::<_, (usize, ErrorKind)>((referer, agent))
    })();
    match combined {
        Ok((referer, agent)) => {
            parts.put("referer", &referer);
            parts.put("user_agent", &agent);
            parts.variant = Some(Format::AccessCombined);
            cur.eat(b' ');
        }
        Err(_) => cur = mark,
    }
    if !cur.is_at_end() {
        parts.put("extra", cur.rest());
    }
    Ok(parts)
}

/// A `"`-quoted string whose closing quote is followed by bytes that
/// satisfy `closes`. Undoes `\"` and `\\`.
fn quoted(cur: &mut Cursor<'_>, closes: impl Fn(&[u8]) -> bool) -> PResult<Vec<u8>> {
    cur.expect(b'"', "'\"' opening quoted field")?;
    let mut out = Vec::new();
    loop {
        let chunk = cur.take_while(|b| b != b'"' && b != b'\\');
        out.extend_from_slice(chunk);
        match cur.peek() {
            Some(b'\\') => {
                cur.advance(1);
                match cur.peek() {
                    Some(c @ (b'"' | b'\\')) => {
                        out.push(c);
                        cur.advance(1);
                    }
                    _ => out.push(b'\\'),
                }
            }
            Some(b'"') => {
                cur.advance(1);
                if closes(cur.rest()) {
                    return Ok(out);
                }
                out.push(b'"');
            }
            _ => return Err(cur.expected("'\"' closing quoted field")),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::format::Format::{self, AccessCombined, AccessCommon};
    use crate::formats::testutil::{field, ok, parse, ts};
    use crate::severity::Severity;

    #[test]
    fn common_and_combined() {
        // The Apache documentation's examples.
        let p = ok(
            AccessCommon,
            r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#,
        );
        assert_eq!(p.variant, Some(Format::AccessCommon));
        assert_eq!(ts(&p), "2000-10-10T13:55:36-07:00");
        assert_eq!(field(&p, "client"), "127.0.0.1");
        assert_eq!(field(&p, "ident"), "<absent>");
        assert_eq!(field(&p, "user"), "frank");
        assert_eq!(field(&p, "method"), "GET");
        assert_eq!(field(&p, "path"), "/apache_pb.gif");
        assert_eq!(field(&p, "protocol"), "HTTP/1.0");
        assert_eq!(field(&p, "status"), "200");
        assert_eq!(field(&p, "bytes"), "2326");
        assert_eq!(p.severity, Some(Severity::Info));
        assert!(p.host.is_none());

        let p = ok(
            AccessCommon,
            r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)""#,
        );
        assert_eq!(p.variant, Some(Format::AccessCombined));
        assert_eq!(field(&p, "referer"), "http://www.example.com/start.html");
        assert_eq!(field(&p, "user_agent"), "Mozilla/4.08 [en] (Win98; I ;Nav)");
        assert_eq!(field(&p, "extra"), "<absent>");
    }

    #[test]
    fn edge_table() {
        // nginx: '-' size, escaped quote, IPv6 client, 5xx, trailing x-forwarded-for.
        let p = ok(
            AccessCombined,
            r#"::1 - - [01/Jan/2024:00:00:00 +0000] "GET /a\"b HTTP/1.1" 502 - "-" "curl/8.0" "10.0.0.1""#,
        );
        assert_eq!(field(&p, "client"), "::1");
        assert_eq!(field(&p, "path"), "/a\"b");
        assert_eq!(field(&p, "bytes"), "<absent>");
        assert_eq!(p.severity, Some(Severity::Error));
        assert_eq!(field(&p, "referer"), "-");
        assert_eq!(field(&p, "extra"), "\"10.0.0.1\"");
        // Malformed request (TLS handshake on plain port) keeps only `request`.
        let p = ok(
            AccessCommon,
            r#"1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "\x16\x03\x01" 400 157"#,
        );
        assert_eq!(field(&p, "request"), "\\x16\\x03\\x01");
        assert_eq!(field(&p, "method"), "<absent>");
        assert_eq!(p.severity, Some(Severity::Warning));
        // Unescaped quote inside the request (old Apache) and empty request.
        let p = ok(
            AccessCommon,
            r#"h - - [01/Jan/2024:00:00:00 +0000] "GET /"x" HTTP/1.0" 404 0"#,
        );
        assert_eq!(field(&p, "request"), r#"GET /"x" HTTP/1.0"#);
        let p = ok(
            AccessCommon,
            r#"h - - [01/Jan/2024:00:00:00 +0000] "" 408 -"#,
        );
        assert_eq!(field(&p, "request"), "");

        for bad in [
            r#"h - - [01/Jan/2024:00:00:00] "GET / HTTP/1.0" 200 1"#,
            r#"h - - [32/Jan/2024:00:00:00 +0000] "GET / HTTP/1.0" 200 1"#,
            r#"h - - [01/Foo/2024:00:00:00 +0000] "GET / HTTP/1.0" 200 1"#,
            r#"h - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.0 200 1"#,
            r#"h - - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.0" 20 1"#,
            r#"h - [01/Jan/2024:00:00:00 +0000] "GET / HTTP/1.0" 200 1"#,
        ] {
            assert!(parse(AccessCommon, bad).is_err(), "{bad}");
        }
    }
}
