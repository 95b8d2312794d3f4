//! JSON objects of a known shape, named and mapped by their own keys:
//!
//! | format | recognised by | mapping |
//! |--------|---------------|---------|
//! | `docker_json` | string `log`, `stream` and `time`, nothing else but `attrs` | the `log` text (its trailing `\n` dropped) is parsed as an inner line, see [`container`](super::container) |
//! | `journald` | `__REALTIME_TIMESTAMP` or `__CURSOR` | time `__REALTIME_TIMESTAMP` (µs), severity `PRIORITY`, message `MESSAGE` (a byte array is decoded), pid `_PID`/`SYSLOG_PID`, app `SYSLOG_IDENTIFIER`/`_COMM`, host `_HOSTNAME` |
//! | `postgresql_json` | `error_severity` and `timestamp` | time `timestamp`, severity `error_severity`, pid `pid`, message `message`, app `application_name`, `user`/`dbname` kept |
//! | `go_slog` | the text starts `{"time":`, then `"level":"LEVEL"` (upper case), then `"msg":` (slog's JSON handler) | the common mapping |
//!
//! Anything else is `json`, with the common mapping ([`mapping`](super::mapping)).
//!
//! Invariants: a key is consumed only when its value was used (the rest
//! stay in `fields`); nothing here fails: a value of the wrong shape is
//! left in `fields`; inside a container line (`env.nested`) a docker
//! object is plain `json`, so unwrapping is one level deep.

use serde_json::{Map, Value};

use super::{Env, Parts, container, mapping};
use crate::format::Format;
use crate::record::TimestampSource;
use crate::scan::text;
use crate::severity::Severity;

/// Names and maps a parsed JSON object (`body` is its text).
pub(crate) fn apply(map: Map<String, Value>, body: &[u8], env: &Env) -> Parts {
    if !env.nested && is_docker(&map) {
        return docker(map, env);
    }
    if map.contains_key("__REALTIME_TIMESTAMP") || map.contains_key("__CURSOR") {
        return journald(map);
    }
    if map.contains_key("error_severity") && map.contains_key("timestamp") {
        return postgresql(map, env);
    }
    let slog = is_slog_json(body);
    let mut parts = mapping::apply(map, env);
    if slog {
        slog_level(&mut parts);
    }
    parts
}

/// Names a record `go_slog` and maps slog's offset levels (`WARN+2`,
/// `DEBUG-4`: the base level's severity), which the common mapping leaves
/// in `fields.level`.
pub(crate) fn slog_level(parts: &mut Parts) {
    parts.variant = Some(Format::GoSlog);
    if parts.severity.is_some() {
        return;
    }
    let base = match parts.fields.get("level") {
        Some(Value::String(l)) => l
            .split(['+', '-'])
            .next()
            .and_then(|b| Severity::from_text(b.as_bytes())),
        _ => None,
    };
    if let Some(sev) = base {
        parts.severity = Some(sev);
        parts.fields.remove("level");
    }
}

fn is_docker(map: &Map<String, Value>) -> bool {
    let is_str = |k: &str| matches!(map.get(k), Some(Value::String(_)));
    is_str("log")
        && is_str("stream")
        && is_str("time")
        && map.len() <= 4
        && (map.len() == 3 || map.contains_key("attrs"))
}

fn docker(mut map: Map<String, Value>, env: &Env) -> Parts {
    let take = |map: &mut Map<String, Value>, k: &str| match map.remove(k) {
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    let log = take(&mut map, "log");
    let stream = take(&mut map, "stream");
    let time = take(&mut map, "time");
    let (line, partial) = match log.strip_suffix('\n') {
        Some(l) => (l.strip_suffix('\r').unwrap_or(l), false),
        None => (log.as_str(), true),
    };
    let outer = {
        let mut cur = crate::scan::Cursor::new(time.as_bytes());
        crate::timestamp::rfc3339(&mut cur, true, &env.time)
            .ok()
            .filter(|_| cur.is_at_end())
    };
    let mut parts = container::wrap(
        Format::DockerJson,
        outer,
        &stream,
        partial,
        line.as_bytes(),
        env,
    );
    if let Some(attrs) = map.remove("attrs") {
        parts.fields.insert("attrs".to_owned(), attrs);
    }
    parts
}

fn string_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn take_string(map: &mut Map<String, Value>, keys: &[&str]) -> Option<String> {
    for k in keys {
        if let Some(s) = map.get(*k).and_then(string_of).filter(|s| !s.is_empty()) {
            map.remove(*k);
            return Some(s);
        }
    }
    None
}

fn take_u64(map: &mut Map<String, Value>, keys: &[&str]) -> Option<u64> {
    for k in keys {
        let n = match map.get(*k) {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => crate::scan::parse_u64(s.as_bytes()),
            _ => None,
        };
        if n.is_some() {
            map.remove(*k);
            return n;
        }
    }
    None
}

/// `journalctl -o json`: every value a string, except binary fields (an
/// array of byte values) and fields with several values (an array of those).
fn journald(mut map: Map<String, Value>) -> Parts {
    let mut parts = Parts {
        variant: Some(Format::Journald),
        ..Parts::default()
    };
    if let Some(us) = take_u64(&mut map, &["__REALTIME_TIMESTAMP"]) {
        let secs = i64::try_from(us / 1_000_000).unwrap_or(i64::MAX);
        let nanos = u32::try_from((us % 1_000_000) * 1000).unwrap_or(0);
        if let Some(t) = crate::timestamp::from_epoch(secs, nanos) {
            parts.timestamp = Some((t.fixed_offset(), TimestampSource::Line));
        }
    }
    if let Some(p) = map
        .get("PRIORITY")
        .and_then(string_of)
        .and_then(|p| p.parse::<u8>().ok())
        .and_then(Severity::from_code)
    {
        parts.severity = Some(p);
        map.remove("PRIORITY");
    }
    match map.get("MESSAGE") {
        Some(Value::String(s)) => {
            parts.message = s.clone();
            map.remove("MESSAGE");
        }
        Some(Value::Array(bytes)) => {
            let raw: Option<Vec<u8>> = bytes
                .iter()
                .map(|b| b.as_u64().and_then(|n| u8::try_from(n).ok()))
                .collect();
            if let Some(raw) = raw {
                parts.message = text(&raw);
                map.remove("MESSAGE");
            }
        }
        _ => {}
    }
    parts.pid = take_u64(&mut map, &["_PID", "SYSLOG_PID"]);
    parts.app = take_string(&mut map, &["SYSLOG_IDENTIFIER", "_COMM"]);
    parts.host = take_string(&mut map, &["_HOSTNAME"]);
    parts.fields = map.into_iter().collect();
    parts
}

/// PostgreSQL `jsonlog` (`src/backend/utils/error/jsonlog.c`).
fn postgresql(mut map: Map<String, Value>, env: &Env) -> Parts {
    let mut parts = Parts {
        variant: Some(Format::PostgresqlJson),
        ..Parts::default()
    };
    if let Some(Value::String(ts)) = map.get("timestamp")
        && let Some(stamp) = super::postgres_csv::pg_timestamp(ts.as_bytes(), env)
    {
        parts.timestamp = Some(stamp);
        map.remove("timestamp");
    }
    if let Some(Value::String(level)) = map.get("error_severity")
        && let Some(sev) = super::generic::level(level.as_bytes())
    {
        parts.severity = Some(sev);
        map.remove("error_severity");
    }
    parts.pid = take_u64(&mut map, &["pid"]);
    parts.message = take_string(&mut map, &["message"]).unwrap_or_default();
    parts.app = take_string(&mut map, &["application_name"]);
    parts.fields = map.into_iter().collect();
    parts
}

/// slog's JSON handler starts every object with `time`, `level`, `msg`
/// (when its time is not zero), the level upper case (`INFO`, `WARN+2`).
fn is_slog_json(body: &[u8]) -> bool {
    let Some(rest) = body.strip_prefix(b"{\"time\":\"") else {
        return false;
    };
    let Some(end) = memchr::memchr(b'"', rest) else {
        return false;
    };
    let Some(rest) = rest
        .get(end + 1..)
        .and_then(|r| r.strip_prefix(b",\"level\":\""))
    else {
        return false;
    };
    let n = rest.iter().take_while(|&&b| b != b'"').count();
    rest.first().is_some_and(u8::is_ascii_uppercase)
        && rest.get(n..).is_some_and(|r| r.starts_with(b"\",\"msg\":"))
}

#[cfg(test)]
mod tests {
    use crate::format::Format;
    use crate::formats::testutil::{field, ok, ts};
    use crate::severity::Severity;

    #[test]
    fn docker_json_file() {
        let p = ok(
            Format::Json,
            r#"{"log":"2026-12-05 01:14:53.494914+00:00 [notice] <0.223.0> Logging: configured\n","stream":"stderr","time":"2026-12-05T01:14:53.495Z"}"#,
        );
        assert_eq!(p.variant, Some(Format::DockerJson));
        assert_eq!(field(&p, "inner_format"), "rabbitmq");
        assert_eq!(field(&p, "stream"), "stderr");
        assert_eq!(p.severity, Some(Severity::Notice));
        assert_eq!(ts(&p), "2026-12-05T01:14:53.494914+00:00");
        assert_eq!(p.message, "Logging: configured");
        // An inner line without a timestamp takes docker's.
        let p = ok(
            Format::DockerJson,
            r#"{"log":"hello","stream":"stdout","time":"2026-12-05T01:14:53.495Z"}"#,
        );
        assert_eq!(ts(&p), "2026-12-05T01:14:53.495+00:00");
        assert_eq!(field(&p, "partial"), "true");
        assert_eq!(field(&p, "inner_format"), "raw");
        assert_eq!(p.message, "hello");
        // Docker inside docker is not unwrapped twice.
        let p = ok(
            Format::Json,
            r#"{"log":"{\"log\":\"x\\n\",\"stream\":\"stdout\",\"time\":\"2026-12-05T01:14:53Z\"}\n","stream":"stdout","time":"2026-12-05T01:14:53.495Z"}"#,
        );
        assert_eq!(field(&p, "inner_format"), "json");
        assert!(crate::formats::testutil::parse(Format::DockerJson, r#"{"log":"x"}"#).is_err());
    }

    #[test]
    fn journald_export() {
        let p = ok(
            Format::Json,
            r#"{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1764897293123456","PRIORITY":"3","_PID":"812","SYSLOG_IDENTIFIER":"sshd","_HOSTNAME":"web1","MESSAGE":"error: kex_exchange_identification: Connection closed","_SYSTEMD_UNIT":"ssh.service"}"#,
        );
        assert_eq!(p.variant, Some(Format::Journald));
        assert_eq!(ts(&p), "2025-12-05T01:14:53.123456+00:00");
        assert_eq!(p.severity, Some(Severity::Error));
        assert_eq!(p.pid, Some(812));
        assert_eq!(p.app.as_deref(), Some("sshd"));
        assert_eq!(p.host.as_deref(), Some("web1"));
        assert_eq!(field(&p, "_SYSTEMD_UNIT"), "ssh.service");
        let p = ok(
            Format::Journald,
            r#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":[104,105,255]}"#,
        );
        assert_eq!(p.message, "hi\u{fffd}");
    }

    #[test]
    fn postgresql_jsonlog() {
        let p = ok(
            Format::Json,
            r#"{"timestamp":"2026-12-05 01:20:54.024 UTC","user":"postgres","dbname":"test","pid":25401,"error_severity":"ERROR","state_code":"42P01","message":"relation \"x\" does not exist","statement":"select * from x","application_name":"psql","backend_type":"client backend","query_id":0}"#,
        );
        assert_eq!(p.variant, Some(Format::PostgresqlJson));
        assert_eq!(ts(&p), "2026-12-05T01:20:54.024+00:00");
        assert_eq!(p.severity, Some(Severity::Error));
        assert_eq!(p.pid, Some(25401));
        assert_eq!(p.app.as_deref(), Some("psql"));
        assert_eq!(field(&p, "dbname"), "test");
        assert_eq!(field(&p, "statement"), "select * from x");
    }

    #[test]
    fn slog_json_and_plain_json() {
        let p = ok(
            Format::Json,
            r#"{"time":"2026-12-05T01:02:03.456789+01:00","level":"WARN","msg":"disk low","free":12}"#,
        );
        assert_eq!(p.variant, Some(Format::GoSlog));
        assert_eq!(p.severity, Some(Severity::Warning));
        assert_eq!(p.message, "disk low");
        let p = ok(
            Format::Json,
            r#"{"level":"info","msg":"x","time":"2026-12-05T01:02:03Z"}"#,
        );
        assert_eq!(p.variant, None, "logrus-style key order is plain json");
        assert!(crate::formats::testutil::parse(Format::GoSlog, r#"{"msg":"x"}"#).is_err());
    }
}
