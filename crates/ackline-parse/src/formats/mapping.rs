//! Mapping of common structured-log field names onto record fields, shared
//! by JSON lines and logfmt.
//!
//! | record field | keys, first present and usable wins |
//! |--------------|-------------------------------------|
//! | timestamp | `@timestamp`, `timestamp`, `time`, `ts` |
//! | severity | `level`, `severity`, `lvl`, `log.level` |
//! | message | `message`, `msg` |
//! | host | `host`, `hostname` |
//! | app | `service`, `app`, `logger`, `service.name` |
//! | pid | `pid` |
//!
//! Invariants: a key is removed from `fields` only when its value was
//! used; a value of the wrong shape (a nested object as `host`, an
//! unparseable time...) stays in `fields` and the next key is tried, so
//! nothing is lost and nothing fails because of it. Times accept RFC 3339
//! (also with a space, `,` fraction, or no offset → configured offset),
//! and epoch numbers or numeric strings (seconds, ms, µs or ns by
//! magnitude). Levels accept the words of
//! [`Severity::from_text`](crate::Severity::from_text) and the numbers of
//! [`Severity::from_number`](crate::Severity::from_number).

use serde_json::{Map, Value};

use super::{Env, Parts};
use crate::record::TimestampSource;
use crate::scan::Cursor;
use crate::severity::Severity;
use crate::timestamp::Stamp;

const TIME_KEYS: [&str; 4] = ["@timestamp", "timestamp", "time", "ts"];
const LEVEL_KEYS: [&str; 4] = ["level", "severity", "lvl", "log.level"];
const MESSAGE_KEYS: [&str; 2] = ["message", "msg"];
const HOST_KEYS: [&str; 2] = ["host", "hostname"];
const APP_KEYS: [&str; 4] = ["service", "app", "logger", "service.name"];

/// Builds parts from a structured line's key/value map.
pub(crate) fn apply(mut map: Map<String, Value>, env: &Env) -> Parts {
    let mut parts = Parts {
        timestamp: take_first(&mut map, &TIME_KEYS, |v| time(v, env)),
        severity: take_first(&mut map, &LEVEL_KEYS, level),
        message: take_first(&mut map, &MESSAGE_KEYS, scalar_text).unwrap_or_default(),
        host: take_first(&mut map, &HOST_KEYS, string),
        app: take_first(&mut map, &APP_KEYS, string),
        pid: take_first(&mut map, &["pid"], number),
        ..Parts::default()
    };
    parts.fields = map.into_iter().collect();
    parts
}

fn take_first<T>(
    map: &mut Map<String, Value>,
    keys: &[&str],
    convert: impl Fn(&Value) -> Option<T>,
) -> Option<T> {
    for key in keys {
        if let Some(out) = map.get(*key).and_then(&convert) {
            map.remove(*key);
            return Some(out);
        }
    }
    None
}

fn string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => crate::scan::parse_u64(s.as_bytes()),
        _ => None,
    }
}

fn level(v: &Value) -> Option<Severity> {
    match v {
        Value::String(s) => Severity::from_text(s.trim().as_bytes())
            .or_else(|| s.trim().parse::<i64>().ok().and_then(Severity::from_number)),
        Value::Number(n) => n.as_i64().and_then(Severity::from_number),
        _ => None,
    }
}

fn time(v: &Value, env: &Env) -> Option<Stamp> {
    let instant = match v {
        Value::Number(n) => crate::timestamp::from_epoch_number(n.as_f64()?)?,
        Value::String(s) => {
            let bytes = s.trim().as_bytes();
            if bytes.first().is_some_and(u8::is_ascii_digit) && bytes.get(4) == Some(&b'-') {
                let mut cur = Cursor::new(bytes);
                let stamp = crate::timestamp::rfc3339(&mut cur, true, &env.time).ok()?;
                return cur.is_at_end().then_some(stamp);
            }
            let n: f64 = s.trim().parse().ok()?;
            crate::timestamp::from_epoch_number(n)?
        }
        _ => return None,
    };
    Some((instant.fixed_offset(), TimestampSource::Line))
}
