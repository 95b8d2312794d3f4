//! JSON lines: one object per line, common field names mapped (see
//! [`mapping`](super::mapping)); everything else kept in `fields` with its
//! JSON type (nested objects and arrays included).
//!
//! Invariants:
//! - nesting deeper than `max_json_depth` is rejected *before* parsing by a
//!   linear scan that ignores brackets inside strings, so neither the
//!   parser nor the drop of the value can recurse without bound;
//! - the top level must be an object (`json_not_an_object` otherwise);
//! - invalid UTF-8 inside the JSON text is an error (JSON requires UTF-8);
//! - duplicate keys: the last one wins (serde_json's behaviour);
//! - objects of a known shape are named and mapped by
//!   [`structured`](super::structured) (docker json-file, journald,
//!   PostgreSQL jsonlog, slog); any other object is `json`.

use serde_json::{Map, Value};

use super::{Env, Parts};
use crate::error::ErrorKind;
use crate::format::Format;
use crate::scan::PResult;

pub(crate) fn parse(body: &[u8], env: &Env) -> PResult<Parts> {
    check_depth(body, env.max_json_depth)?;
    let map: Map<String, Value> = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err((0, ErrorKind::JsonNotAnObject)),
        Err(e) => {
            let position = if e.line() <= 1 {
                e.column().saturating_sub(1)
            } else {
                body.len()
            };
            let text = e.to_string();
            let reason = text
                .rsplit_once(" at line ")
                .map_or(text.as_str(), |(head, _)| head)
                .to_owned();
            return Err((position, ErrorKind::Json(reason)));
        }
    };
    Ok(super::structured::apply(map, body, env))
}

/// Fixed formats that are JSON objects of a known shape (docker json-file,
/// journald export, PostgreSQL jsonlog, slog's JSON handler).
pub(crate) fn parse_named(format: Format, body: &[u8], env: &Env) -> PResult<Parts> {
    let parts = parse(body, env)?;
    if parts.variant == Some(format) {
        return Ok(parts);
    }
    Err((
        0,
        ErrorKind::Expected(match format {
            Format::DockerJson => "a docker json-file object (log, stream, time)",
            Format::Journald => "a journald export object (__REALTIME_TIMESTAMP, MESSAGE)",
            Format::PostgresqlJson => "a PostgreSQL jsonlog object (timestamp, error_severity)",
            Format::GoSlog => "a slog JSON object (time, level, msg first)",
            _ => "a JSON object of the fixed format",
        }),
    ))
}

/// Rejects nesting deeper than `limit`, counting `{` and `[` outside strings.
fn check_depth(body: &[u8], limit: usize) -> PResult<()> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in body.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return Err((i, ErrorKind::JsonTooDeep { limit }));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::error::ErrorKind;
    use crate::format::Format::Json;
    use crate::formats::testutil::{field, ok, parse, ts};
    use crate::record::TimestampSource;
    use crate::severity::Severity;

    #[test]
    fn mapped_names() {
        let p = ok(
            Json,
            r#"{"time":"2024-01-02T03:04:05.123Z","level":"warn","msg":"disk low","host":"db1","service":"api","pid":42,"user":{"id":7},"tags":["a","b"]}"#,
        );
        assert_eq!(ts(&p), "2024-01-02T03:04:05.123+00:00");
        assert_eq!(p.severity, Some(Severity::Warning));
        assert_eq!(p.message, "disk low");
        assert_eq!(p.host.as_deref(), Some("db1"));
        assert_eq!(p.app.as_deref(), Some("api"));
        assert_eq!(p.pid, Some(42));
        assert_eq!(p.fields["user"]["id"], 7);
        assert_eq!(p.fields["tags"][1], "b");
        assert_eq!(p.fields.len(), 2, "mapped keys are removed: {:?}", p.fields);

        // Aliases: @timestamp, severity, message, hostname, app, logger.
        let p = ok(
            Json,
            r#"{"@timestamp":"2024-01-02 03:04:05","severity":"ERROR","message":"m","hostname":"h","logger":"com.x"}"#,
        );
        assert_eq!(p.timestamp.unwrap().1, TimestampSource::LineAssumedOffset);
        assert_eq!(p.severity, Some(Severity::Error));
        assert_eq!(p.host.as_deref(), Some("h"));
        assert_eq!(p.app.as_deref(), Some("com.x"));
        // ts as epoch millis, lvl as pino number.
        let p = ok(Json, r#"{"ts":1700000000123,"lvl":30,"msg":"x"}"#);
        assert_eq!(ts(&p), "2023-11-14T22:13:20.123+00:00");
        assert_eq!(p.severity, Some(Severity::Info));
        // ECS dotted keys.
        let p = ok(
            Json,
            r#"{"@timestamp":"2024-01-02T03:04:05Z","log.level":"info","service.name":"svc","message":"m"}"#,
        );
        assert_eq!(p.app.as_deref(), Some("svc"));
        assert_eq!(p.severity, Some(Severity::Info));
    }

    #[test]
    fn edge_table() {
        // Unusable mapped values stay in fields, nothing fails.
        let p = ok(
            Json,
            r#"{"time":"yesterday","level":"chatty","host":{"name":"h"},"pid":-1}"#,
        );
        assert!(p.timestamp.is_none());
        assert!(p.severity.is_none() && p.host.is_none() && p.pid.is_none());
        assert_eq!(field(&p, "time"), "yesterday");
        assert_eq!(p.fields["host"]["name"], "h");
        // Out-of-range times stay in fields too.
        let p = ok(Json, r#"{"time":"2024-13-45T00:00:00Z","ts":1e300}"#);
        assert!(p.timestamp.is_none());
        assert_eq!(p.fields.len(), 2);
        // First usable alias wins: `timestamp` is garbage, `time` is used.
        let p = ok(Json, r#"{"timestamp":"x","time":"2024-01-02T03:04:05Z"}"#);
        assert_eq!(ts(&p), "2024-01-02T03:04:05+00:00");
        assert_eq!(field(&p, "timestamp"), "x");
        // Empty object, leading/trailing whitespace, NUL escape, numbers.
        let p = ok(Json, " {} ");
        assert_eq!(p.message, "");
        let p = ok(
            Json,
            r#"{"msg":"a\u0000b","n":1.5,"big":18446744073709551616}"#,
        );
        assert_eq!(p.message, "a\0b");
        assert_eq!(field(&p, "n"), "1.5");
        // Numeric message is kept as text.
        assert_eq!(ok(Json, r#"{"msg":404}"#).message, "404");

        // Depth: 32 levels fine (test env limit is 32), 33 rejected; brackets in strings ignored.
        let deep_ok = format!("{{\"a\":{}1{}}}", "[".repeat(31), "]".repeat(31));
        assert!(parse(Json, &deep_ok).is_ok());
        let too_deep = format!("{{\"a\":{}1{}}}", "[".repeat(32), "]".repeat(32));
        assert_eq!(
            parse(Json, &too_deep).unwrap_err(),
            (36, ErrorKind::JsonTooDeep { limit: 32 })
        );
        let in_string = format!("{{\"a\":\"{}\"}}", "[".repeat(1000));
        assert!(parse(Json, &in_string).is_ok());
        let escaped_quote = format!("{{\"a\":\"\\\"{}\"}}", "[".repeat(100));
        assert!(parse(Json, &escaped_quote).is_ok());

        assert_eq!(
            parse(Json, "[1,2]").unwrap_err(),
            (0, ErrorKind::JsonNotAnObject)
        );
        let (pos, kind) = parse(Json, r#"{"a":tru}"#).unwrap_err();
        assert_eq!(pos, 8);
        assert!(
            matches!(kind, ErrorKind::Json(ref m) if m.starts_with("expected ident")),
            "{kind:?}"
        );
        assert!(parse(Json, "{\"a\":\"\u{1}\"}").is_err()); // raw control char in string
        assert!(matches!(
            crate::formats::parse_as(Json, b"{\"a\":\"\xff\"}", &crate::formats::testutil::env()),
            Err((_, ErrorKind::Json(_)))
        ));
    }
}
