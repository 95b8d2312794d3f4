//! Independent splits of real daemon log lines (plain string operations and
//! chrono, not the parser's code), shared by `daemons.rs` (checked-in
//! fixtures) and `live_daemons.rs` (logs written during the test).
//!
//! Invariant: each split panics on a line it does not expect, so a test
//! fails on a layout it has not been taught rather than passing vacuously.

#![allow(dead_code, clippy::unwrap_used)]

use ackline_parse::{Record, Severity, TimestampSource};
use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone as _, Utc};

/// What a line says, split independently of the parser.
#[derive(Debug, PartialEq)]
pub struct Want {
    pub timestamp: DateTime<FixedOffset>,
    pub source: TimestampSource,
    pub severity: Option<Severity>,
    pub pid: Option<u64>,
    pub message: String,
}

pub fn utc(naive: &str, fmt: &str) -> DateTime<FixedOffset> {
    let n = NaiveDateTime::parse_from_str(naive, fmt).unwrap_or_else(|e| panic!("{naive}: {e}"));
    Utc.from_utc_datetime(&n).fixed_offset()
}

pub fn split_postgres(line: &str) -> Want {
    // `2026-12-05 01:20:54.024 UTC [25401] postgres@test ERROR:  msg`
    let (ts, rest) = line.split_once(" UTC [").unwrap();
    let (pid, rest) = rest.split_once("] ").unwrap();
    let (head, message) = rest.split_once(":  ").unwrap();
    let level = head.rsplit(' ').next().unwrap();
    let severity = match level {
        "LOG" => Some(Severity::Info),
        "ERROR" => Some(Severity::Error),
        "FATAL" => Some(Severity::Critical),
        "WARNING" => Some(Severity::Warning),
        "PANIC" => Some(Severity::Emergency),
        "STATEMENT" | "CONTEXT" | "DETAIL" | "HINT" => None,
        other => panic!("unexpected PostgreSQL level {other}: {line}"),
    };
    Want {
        timestamp: utc(ts, "%Y-%m-%d %H:%M:%S%.3f"),
        source: TimestampSource::Line,
        severity,
        pid: Some(pid.parse().unwrap()),
        message: message.to_owned(),
    }
}

pub fn split_redis(line: &str) -> Want {
    let (pid, rest) = line.split_once(':').unwrap();
    let pid = Some(pid.parse().unwrap());
    if let Some(rest) = rest.strip_prefix("signal-handler (") {
        // `2248:signal-handler (1796436340) Received SIGTERM ...`: epoch seconds.
        let (secs, message) = rest.split_once(") ").unwrap();
        return Want {
            timestamp: DateTime::from_timestamp(secs.parse().unwrap(), 0)
                .unwrap()
                .fixed_offset(),
            source: TimestampSource::Line,
            severity: None,
            pid,
            message: message.to_owned(),
        };
    }
    // `2248:M 05 Dec 2026 01:14:41.620 * msg`
    let ts = rest.get(2..26).unwrap();
    let (mark, message) = rest.get(27..).unwrap().split_once(' ').unwrap();
    let severity = match mark {
        "." => Severity::Debug,
        "-" => Severity::Info,
        "*" => Severity::Notice,
        "#" => Severity::Warning,
        other => panic!("unexpected Redis level {other}: {line}"),
    };
    Want {
        timestamp: utc(ts, "%d %b %Y %H:%M:%S%.3f"),
        source: TimestampSource::LineAssumedOffset,
        severity: Some(severity),
        pid,
        message: message.to_owned(),
    }
}

pub fn split_rabbitmq(line: &str) -> Want {
    // `2026-12-05 01:14:53.494914+00:00 [notice] <0.223.0> msg`
    let (ts, rest) = line.split_once(" [").unwrap();
    let (level, rest) = rest.split_once("] ").unwrap();
    let (erlang_pid, message) = rest.split_once(' ').unwrap_or((rest, ""));
    assert!(erlang_pid.starts_with("<0."), "{line}");
    Want {
        timestamp: DateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S%.f%:z").unwrap(),
        source: TimestampSource::Line,
        severity: Some(match level {
            "debug" => Severity::Debug,
            "info" => Severity::Info,
            "notice" => Severity::Notice,
            "warning" => Severity::Warning,
            "error" => Severity::Error,
            other => panic!("unexpected RabbitMQ level {other}: {line}"),
        }),
        pid: None,
        message: message.trim_start().to_owned(),
    }
}

pub fn split_nats(line: &str) -> Want {
    // `[2993] 2026/12/05 01:14:51.191716 [INF] msg`
    let (pid, rest) = line.strip_prefix('[').unwrap().split_once("] ").unwrap();
    let ts = rest.get(..26).unwrap();
    let (level, message) = rest.get(27..).unwrap().split_once("] ").unwrap();
    Want {
        timestamp: utc(ts, "%Y/%m/%d %H:%M:%S%.6f"),
        source: TimestampSource::LineAssumedOffset,
        severity: Some(match level {
            "[DBG" | "[TRC" => Severity::Debug,
            "[INF" => Severity::Info,
            "[WRN" => Severity::Warning,
            "[ERR" => Severity::Error,
            "[FTL" => Severity::Critical,
            other => panic!("unexpected NATS level {other}: {line}"),
        }),
        pid: Some(pid.parse().unwrap()),
        message: message.trim_start().to_owned(),
    }
}

pub fn split_dpkg(line: &str) -> Want {
    // `2025-06-24 14:36:25 status unpacked libsystemd0:amd64 252.36-1~deb12u1`
    Want {
        timestamp: utc(line.get(..19).unwrap(), "%Y-%m-%d %H:%M:%S"),
        source: TimestampSource::LineAssumedOffset,
        severity: None,
        pid: None,
        message: line.get(20..).unwrap().to_owned(),
    }
}

pub fn split_alternatives(line: &str) -> Want {
    // `update-alternatives 2025-06-24 14:36:53: run with ...`
    let rest = line.strip_prefix("update-alternatives ").unwrap();
    Want {
        timestamp: utc(rest.get(..19).unwrap(), "%Y-%m-%d %H:%M:%S"),
        source: TimestampSource::LineAssumedOffset,
        severity: None,
        pid: None,
        message: rest.get(21..).unwrap().to_owned(),
    }
}

pub fn split_mariadb(line: &str) -> Want {
    // `2026-12-05  4:38:41 3 [Warning] Access denied for user ...`
    let (level, message) = line.get(21..).unwrap().split_once("] ").unwrap();
    let level = level.split_once('[').unwrap().1;
    Want {
        timestamp: utc(line.get(..19).unwrap(), "%Y-%m-%d %k:%M:%S"),
        source: TimestampSource::LineAssumedOffset,
        severity: Some(match level {
            "Note" => Severity::Info,
            "Warning" => Severity::Warning,
            "ERROR" => Severity::Error,
            other => panic!("unexpected MariaDB level {other}: {line}"),
        }),
        pid: None,
        message: message.to_owned(),
    }
}

/// The fields of a record a split predicts.
pub fn got(rec: &Record) -> Want {
    Want {
        timestamp: rec.timestamp,
        source: rec.timestamp_source,
        severity: rec.severity,
        pid: rec.pid,
        message: rec.message.clone(),
    }
}

pub fn split_postgres_csv(line: &str) -> Want {
    // `2026-12-05 04:26:33.056 UTC,"postgres","postgres",14608,...,ERROR,42P01,"msg",...`
    let level = ["LOG", "ERROR", "FATAL", "WARNING"]
        .into_iter()
        .find(|l| line.contains(&format!(",{l},")))
        .unwrap_or_else(|| panic!("no csvlog level: {line}"));
    let after = line.split_once(&format!(",{level},")).unwrap().1;
    let quoted = after.get(6..).unwrap().strip_prefix('"').unwrap();
    let message = quoted.split("\",").next().unwrap().replace("\"\"", "\"");
    Want {
        timestamp: utc(line.get(..23).unwrap(), "%Y-%m-%d %H:%M:%S%.3f"),
        source: TimestampSource::Line,
        severity: Some(pg_level(level)),
        pid: Some(line.split(',').nth(3).unwrap().parse().unwrap()),
        message,
    }
}

pub fn split_postgres_json(line: &str) -> Want {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let ts = v["timestamp"]
        .as_str()
        .unwrap()
        .strip_suffix(" UTC")
        .unwrap();
    Want {
        timestamp: utc(ts, "%Y-%m-%d %H:%M:%S%.3f"),
        source: TimestampSource::Line,
        severity: Some(pg_level(v["error_severity"].as_str().unwrap())),
        pid: v["pid"].as_u64(),
        message: v["message"].as_str().unwrap().to_owned(),
    }
}

fn pg_level(level: &str) -> Severity {
    match level {
        "LOG" => Severity::Info,
        "ERROR" => Severity::Error,
        "FATAL" => Severity::Critical,
        "WARNING" => Severity::Warning,
        other => panic!("unexpected PostgreSQL level {other}"),
    }
}
