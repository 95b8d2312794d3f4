//! Syslog per RFC 5424:
//! `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [SP MSG]`.
//!
//! Invariants: the header fields honour the RFC's length limits (host 255,
//! app 48, procid 128, msgid 32, SD names 32) and NILVALUE (`-`) means
//! absent; a NILVALUE timestamp leaves the record on ingest time; structured
//! data is kept as `fields.structured_data = {sd-id: {param: value}}` with
//! the RFC's three escapes (`\"`, `\\`, `\]`) undone and any other backslash
//! kept; a UTF-8 BOM opening MSG is dropped from the message.
//!
//! Fields: `facility` (name), `msgid`, `procid` (only when not numeric;
//! numeric goes to `pid`), `structured_data`.

use serde_json::{Map, Value};

use super::{Env, Parts, pri};
use crate::scan::{Cursor, PResult, text};

const BOM: &[u8] = b"\xEF\xBB\xBF";

pub(crate) fn parse(body: &[u8], env: &Env) -> PResult<Parts> {
    let mut cur = Cursor::new(body);
    let (facility, severity) = pri::parse(&mut cur)?;
    if !(cur.eat(b'1') && cur.peek() == Some(b' ')) {
        return Err(cur.expected("version 1 followed by SP"));
    }
    cur.advance(1);
    let mut parts = Parts {
        severity: Some(severity),
        ..Parts::default()
    };
    parts.put("facility", facility.as_bytes());

    if !nil(&mut cur) {
        parts.timestamp = Some(crate::timestamp::rfc3339(&mut cur, false, &env.time)?);
    }
    cur.expect_space("SP after TIMESTAMP")?;
    parts.host = header_field(&mut cur, 255, "HOSTNAME")?.map(text);
    parts.app = header_field(&mut cur, 48, "APP-NAME")?.map(text);
    if let Some(procid) = header_field(&mut cur, 128, "PROCID")? {
        match crate::scan::parse_u64(procid) {
            Some(pid) => parts.pid = Some(pid),
            None => parts.put("procid", procid),
        }
    }
    if let Some(msgid) = header_field(&mut cur, 32, "MSGID")? {
        parts.put("msgid", msgid);
    }
    if !nil(&mut cur) {
        let sd = structured_data(&mut cur)?;
        parts
            .fields
            .insert("structured_data".to_owned(), Value::Object(sd));
    }
    if cur.is_at_end() {
        return Ok(parts);
    }
    cur.expect_space("SP before MSG")?;
    let mut msg = cur.rest();
    if let Some(stripped) = msg.strip_prefix(BOM) {
        msg = stripped;
    }
    parts.message = text(msg);
    Ok(parts)
}

/// `-` followed by SP or end.
fn nil(cur: &mut Cursor<'_>) -> bool {
    if cur.peek() == Some(b'-') && matches!(cur.peek_at(1), None | Some(b' ')) {
        cur.advance(1);
        true
    } else {
        false
    }
}

fn is_print(b: u8) -> bool {
    (33..=126).contains(&b)
}

/// A header field of 1..=max PRINTUSASCII, or NILVALUE (`None`), then SP.
fn header_field<'a>(
    cur: &mut Cursor<'a>,
    max: usize,
    what: &'static str,
) -> PResult<Option<&'a [u8]>> {
    let start = cur.pos();
    let value = cur.take_while(is_print);
    if value.is_empty() || value.len() > max {
        return Err((start, crate::error::ErrorKind::Expected(what)));
    }
    cur.expect_space(match what {
        "HOSTNAME" => "SP after HOSTNAME",
        "APP-NAME" => "SP after APP-NAME",
        "PROCID" => "SP after PROCID",
        _ => "SP after MSGID",
    })?;
    Ok(if value == b"-" { None } else { Some(value) })
}

fn sd_name<'a>(cur: &mut Cursor<'a>, what: &'static str) -> PResult<&'a [u8]> {
    let start = cur.pos();
    let name = cur.take_while(|b| is_print(b) && !matches!(b, b'=' | b']' | b'"'));
    if name.is_empty() || name.len() > 32 {
        return Err((start, crate::error::ErrorKind::Expected(what)));
    }
    Ok(name)
}

fn structured_data(cur: &mut Cursor<'_>) -> PResult<Map<String, Value>> {
    let mut sd = Map::new();
    if cur.peek() != Some(b'[') {
        return Err(cur.expected("STRUCTURED-DATA ('-' or '[')"));
    }
    while cur.eat(b'[') {
        let id = text(sd_name(cur, "SD-ID")?);
        let mut params = Map::new();
        loop {
            if cur.eat(b']') {
                break;
            }
            cur.expect_space("SP or ']' in SD-ELEMENT")?;
            let name = text(sd_name(cur, "PARAM-NAME")?);
            cur.expect(b'=', "'=' after PARAM-NAME")?;
            cur.expect(b'"', "'\"' opening PARAM-VALUE")?;
            let value = param_value(cur)?;
            params.insert(name, Value::String(value));
        }
        // Duplicate SD-IDs are not allowed by the RFC; keep the params of all
        // of them (later values win on clashes) rather than drop data.
        match sd.get_mut(&id) {
            Some(Value::Object(existing)) => existing.extend(params),
            _ => {
                sd.insert(id, Value::Object(params));
            }
        }
    }
    Ok(sd)
}

/// The value after the opening quote, through the closing quote.
fn param_value(cur: &mut Cursor<'_>) -> PResult<String> {
    let mut out = Vec::new();
    loop {
        let chunk = cur.take_while(|b| b != b'"' && b != b'\\');
        out.extend_from_slice(chunk);
        match cur.peek() {
            Some(b'"') => {
                cur.advance(1);
                return Ok(String::from_utf8_lossy(&out).into_owned());
            }
            Some(b'\\') => {
                cur.advance(1);
                match cur.peek() {
                    Some(c @ (b'"' | b'\\' | b']')) => {
                        out.push(c);
                        cur.advance(1);
                    }
                    _ => out.push(b'\\'),
                }
            }
            _ => return Err(cur.expected("'\"' closing PARAM-VALUE")),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::error::ErrorKind;
    use crate::format::Format::Rfc5424;
    use crate::formats::testutil::{field, ok, parse, ts};
    use crate::severity::Severity;

    #[test]
    fn rfc_examples() {
        // RFC 5424 §6.5 example 1 (BOM before the message).
        let p = ok(
            Rfc5424,
            "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \u{feff}'su root' failed for lonvick on /dev/pts/8",
        );
        assert_eq!(p.severity, Some(Severity::Critical));
        assert_eq!(field(&p, "facility"), "auth");
        assert_eq!(ts(&p), "2003-10-11T22:14:15.003+00:00");
        assert_eq!(p.host.as_deref(), Some("mymachine.example.com"));
        assert_eq!(p.app.as_deref(), Some("su"));
        assert_eq!(p.pid, None);
        assert_eq!(field(&p, "msgid"), "ID47");
        assert_eq!(p.message, "'su root' failed for lonvick on /dev/pts/8");

        // Example 2: offset, fractional micros, no BOM.
        let p = ok(
            Rfc5424,
            "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
        );
        assert_eq!(ts(&p), "2003-08-24T05:14:15.000003-07:00");
        assert_eq!(p.pid, Some(8710));
        assert_eq!(p.severity, Some(Severity::Notice));
        assert_eq!(field(&p, "facility"), "local4");
        assert_eq!(p.message, "%% It's time to make the do-nuts.");

        // Example 3: structured data and a message.
        let p = ok(
            Rfc5424,
            r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] An application event log entry..."#,
        );
        assert_eq!(
            p.fields["structured_data"]["exampleSDID@32473"]["eventSource"],
            "Application"
        );
        assert_eq!(p.message, "An application event log entry...");

        // Example 4: two SD elements, no message.
        let p = ok(
            Rfc5424,
            r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]"#,
        );
        assert_eq!(
            p.fields["structured_data"]["examplePriority@32473"]["class"],
            "high"
        );
        assert_eq!(p.message, "");
    }

    #[test]
    fn edge_table() {
        // All NILVALUEs: no timestamp (ingest time), no host/app/pid.
        let p = ok(Rfc5424, "<13>1 - - - - - -");
        assert!(p.timestamp.is_none());
        assert!(p.host.is_none() && p.app.is_none() && p.pid.is_none());
        assert_eq!(p.message, "");

        // Escapes in PARAM-VALUE; unknown escape keeps the backslash.
        let p = ok(Rfc5424, r#"<13>1 - h a - - [x@1 v="a\"b\\c\]d\e"] m"#);
        assert_eq!(p.fields["structured_data"]["x@1"]["v"], r#"a"b\c]d\e"#);

        // Non-numeric PROCID goes to fields.
        let p = ok(Rfc5424, "<13>1 - h a worker-7 - - m");
        assert_eq!(field(&p, "procid"), "worker-7");
        assert_eq!(p.pid, None);

        // Leap second and lowercase offset letters are accepted.
        let p = ok(Rfc5424, "<13>1 1990-12-31T23:59:60Z h a - - - m");
        assert_eq!(ts(&p), "1990-12-31T23:59:60+00:00");

        // Empty SD element and message made only of a BOM.
        let p = ok(Rfc5424, "<13>1 - h a - - [id] \u{feff}");
        assert_eq!(p.message, "");

        let bad: &[(&str, ErrorKind)] = &[
            (
                "<13>2 - - - - - -",
                ErrorKind::Expected("version 1 followed by SP"),
            ),
            (
                "<13>1 2003-10-11T22:14:15 h a - - - m",
                ErrorKind::Expected("UTC offset ('Z' or '+hh:mm')"),
            ),
            (
                "<13>1 2003-10-11T22:14:15.1234567Z h a - - - m",
                ErrorKind::Expected("fractional seconds"),
            ),
            (
                "<13>1 2003-02-30T22:14:15Z h a - - - m",
                ErrorKind::TimestampOutOfRange,
            ),
            (
                "<13>1 - h a - - [x@1 v=\"unterminated] m",
                ErrorKind::Expected("'\"' closing PARAM-VALUE"),
            ),
            (
                "<13>1 - h a - - [x@1 v=3] m",
                ErrorKind::Expected("'\"' opening PARAM-VALUE"),
            ),
            (
                "<13>1 - h a - - x",
                ErrorKind::Expected("STRUCTURED-DATA ('-' or '[')"),
            ),
            ("<13>1 - h a - -", ErrorKind::Expected("SP after MSGID")),
            ("<13>1 - h", ErrorKind::Expected("SP after HOSTNAME")),
            ("<999>1 - - - - - -", ErrorKind::InvalidPriority),
        ];
        for (line, kind) in bad {
            match parse(Rfc5424, line) {
                Err((_, k)) => assert_eq!(&k, kind, "{line}"),
                Ok(p) => panic!("{line} parsed: {p:?}"),
            }
        }
        // Over-long APP-NAME (49 chars) is rejected with its position.
        let line = format!("<13>1 - h {} - - - m", "a".repeat(49));
        assert_eq!(
            parse(Rfc5424, &line).unwrap_err(),
            (10, ErrorKind::Expected("APP-NAME"))
        );
    }
}
