//! One module per format. Each exposes `parse(body, env) -> PResult<Parts>`.
//!
//! Invariants every format parser keeps:
//! - it reads the line only through [`Cursor`](crate::scan::Cursor) or
//!   bounds-checked slice methods, so it cannot panic on any bytes;
//! - it fails fast (within the first few bytes) on a line of another shape,
//!   so automatic detection can try it cheaply;
//! - its work is linear in the line length (no backtracking), so a 10 MB
//!   line costs what its bytes cost;
//! - text it extracts is converted lossily (invalid UTF-8 becomes U+FFFD);
//!   the raw line, kept by the caller, is the lossless copy.

use crate::error::ErrorKind;
use crate::format::Format;
use crate::record::Fields;
use crate::scan::PResult;
use crate::severity::Severity;
use crate::timestamp::{Stamp, TimeEnv};

pub(crate) mod access;
pub(crate) mod apache_error;
pub(crate) mod apt;
pub(crate) mod bgl;
pub(crate) mod container;
pub(crate) mod generic;
pub(crate) mod golog;
pub(crate) mod healthapp;
pub(crate) mod hpc;
pub(crate) mod json;
pub(crate) mod klog;
pub(crate) mod log4j;
pub(crate) mod logback;
pub(crate) mod logcat;
pub(crate) mod logfmt;
pub(crate) mod mapping;
pub(crate) mod mysql;
pub(crate) mod nginx_error;
pub(crate) mod openstack;
pub(crate) mod postgres_csv;
pub(crate) mod pri;
pub(crate) mod proxifier;
pub(crate) mod python;
pub(crate) mod rfc3164;
pub(crate) mod rfc5424;
pub(crate) mod structured;
pub(crate) mod thunderbird;
pub(crate) mod windows_cbs;

/// What a format parser extracted from a line.
#[derive(Debug, Default)]
pub(crate) struct Parts {
    pub(crate) timestamp: Option<Stamp>,
    pub(crate) severity: Option<Severity>,
    pub(crate) host: Option<String>,
    pub(crate) app: Option<String>,
    pub(crate) pid: Option<u64>,
    pub(crate) message: String,
    pub(crate) fields: Fields,
    /// Set by parsers that tell variants apart (access common/combined).
    pub(crate) variant: Option<Format>,
}

impl Parts {
    /// Inserts a string field (lossy UTF-8).
    pub(crate) fn put(&mut self, key: &str, value: &[u8]) {
        self.fields.insert(
            key.to_owned(),
            serde_json::Value::String(crate::scan::text(value)),
        );
    }

    /// Inserts a numeric field.
    pub(crate) fn put_u64(&mut self, key: &str, value: u64) {
        self.fields
            .insert(key.to_owned(), serde_json::Value::from(value));
    }
}

/// Per-line settings the parsers need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Env {
    pub(crate) time: TimeEnv,
    pub(crate) max_json_depth: usize,
    /// Parsing the inner line of a container log: wrappers (CRI, docker
    /// json-file) refuse, so nesting is at most one level deep.
    pub(crate) nested: bool,
}

/// Parses `body` as `format`. `Raw` always succeeds; `Generic` is also the
/// fallback the automatic detection tries last.
pub(crate) fn parse_as(format: Format, body: &[u8], env: &Env) -> PResult<Parts> {
    match format {
        Format::Json => json::parse(body, env),
        Format::Logfmt => logfmt::parse(body, env),
        Format::Rfc5424 => rfc5424::parse(body, env),
        Format::Rfc3164 => rfc3164::parse(body, env),
        Format::AccessCommon | Format::AccessCombined => access::parse(body, env),
        Format::ApacheError => apache_error::parse(body, env),
        Format::Log4j => log4j::parse(body, env),
        Format::Logcat => logcat::parse(body, env),
        Format::Bgl => bgl::parse(body, env),
        Format::Hpc => hpc::parse(body, env),
        Format::Thunderbird => thunderbird::parse(body, env),
        Format::WindowsCbs => windows_cbs::parse(body, env),
        Format::HealthApp => healthapp::parse(body, env),
        Format::Proxifier => proxifier::parse(body, env),
        Format::OpenStack => openstack::parse(body, env),
        Format::Postgresql | Format::Redis | Format::RabbitMq | Format::Nats | Format::Dpkg => {
            generic::parse_named(format, body, env)
        }
        Format::PostgresqlCsv => postgres_csv::parse(body, env),
        Format::PostgresqlJson | Format::DockerJson | Format::Journald => {
            json::parse_named(format, body, env)
        }
        Format::GoSlog => {
            if body.first() == Some(&b'{') {
                json::parse_named(format, body, env)
            } else {
                logfmt::parse_named(format, body, env)
            }
        }
        Format::Mysql => mysql::parse(body, env),
        Format::NginxError => nginx_error::parse(body, env),
        Format::GoLog => golog::parse(body, env),
        Format::Python => python::parse(body, env),
        Format::Logback => logback::parse(body, env),
        Format::Klog => klog::parse(body, env),
        Format::Apt => apt::parse(body, env),
        Format::Cri => container::cri(body, env),
        Format::Generic => generic::parse(body, env),
        Format::Raw => Ok(raw(body)),
    }
}

/// Parses the inner line of a container log as auto mode would (detection,
/// then the generic extractor, then raw), one level deep: wrappers met
/// inside refuse ([`Env::nested`]). Returns the format that parsed it.
pub(crate) fn inner(body: &[u8], env: &Env) -> (Format, Parts) {
    let env = Env {
        nested: true,
        ..*env
    };
    for &format in crate::detect::candidates(body) {
        if let Ok(parts) = parse_as(format, body, &env) {
            return (parts.variant.unwrap_or(format), parts);
        }
    }
    match generic::parse(body, &env) {
        Ok(parts) => (parts.variant.unwrap_or(Format::Generic), parts),
        Err(_) => (Format::Raw, raw(body)),
    }
}

/// The fallback: the whole (terminator-less) line is the message.
pub(crate) fn raw(body: &[u8]) -> Parts {
    Parts {
        message: crate::scan::text(body),
        ..Parts::default()
    }
}

/// Maps a timestamp-construction error to a failure at `pos`.
pub(crate) fn at(pos: usize) -> impl Fn(ErrorKind) -> (usize, ErrorKind) {
    move |k| (pos, k)
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Helpers for the per-format edge-case tables.
    use super::{Env, Parts, parse_as};
    use crate::format::Format;
    use crate::scan::PResult;
    use crate::timestamp::{TimeEnv, YearRule};
    use chrono::{DateTime, Utc};

    pub(crate) fn env() -> Env {
        Env {
            time: TimeEnv {
                reference: DateTime::parse_from_rfc3339("2024-06-15T12:00:00Z")
                    .unwrap()
                    .with_timezone(&Utc),
                file_mtime: None,
                zone: crate::zone::Zone::utc(),
                year_rule: YearRule::Infer,
            },
            max_json_depth: 32,
            nested: false,
        }
    }

    pub(crate) fn parse(format: Format, line: &str) -> PResult<Parts> {
        parse_as(format, line.as_bytes(), &env())
    }

    pub(crate) fn ok(format: Format, line: &str) -> Parts {
        match parse(format, line) {
            Ok(p) => p,
            Err(e) => panic!("{format} failed on {line:?}: {e:?}"),
        }
    }

    pub(crate) fn ts(p: &Parts) -> String {
        p.timestamp
            .map(|(t, _)| t.to_rfc3339())
            .unwrap_or_else(|| "none".to_owned())
    }

    pub(crate) fn field(p: &Parts, key: &str) -> String {
        match p.fields.get(key) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => "<absent>".to_owned(),
        }
    }
}
