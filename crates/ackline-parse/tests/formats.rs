//! Every line of the fixtures in `tests/fixtures/formats/` (sources in the
//! README there: real output of PostgreSQL, MariaDB and Python's `logging`
//! on the development machine; the documented default layouts of the
//! tools not installed there) parses, in auto mode, to its named format,
//! with the timestamp, severity, pid and message that an independent split
//! of the line (plain string operations and chrono, not the parser's code)
//! gives. Lines that carry a timestamp must get it from the line (issue 15's
//! target is 98% of lines; these fixtures reach 100% of the lines that
//! carry one).

// Test helpers may unwrap: a panic there is a failed test with its message.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ackline_parse::{Format, LineContext, Parser, ParserConfig, Record, Severity};
use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone as _, Utc};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/formats");
/// The ingest time of every line: far from the lines' own times except for
/// the date logback's time-only lines take from it.
const INGEST: &str = "2026-12-05T12:00:00Z";

/// What a line says, split independently of the parser. `timestamp: None`
/// means the line has none (the record must carry the ingest time).
#[derive(Debug, PartialEq)]
struct Want {
    format: Format,
    timestamp: Option<DateTime<FixedOffset>>,
    severity: Option<Severity>,
    pid: Option<u64>,
    message: String,
}

fn naive_utc(s: &str, fmt: &str) -> DateTime<FixedOffset> {
    let n = NaiveDateTime::parse_from_str(s, fmt).unwrap_or_else(|e| panic!("{s}: {e}"));
    Utc.from_utc_datetime(&n).fixed_offset()
}

fn rfc3339(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn sev(word: &str) -> Severity {
    match word.to_ascii_uppercase().as_str() {
        "DEBUG" | "TRACE" | "DEBUG1" => Severity::Debug,
        "INFO" | "LOG" | "NOTE" => Severity::Info,
        "NOTICE" | "SYSTEM" => Severity::Notice,
        "WARN" | "WARNING" => Severity::Warning,
        "ERROR" => Severity::Error,
        "CRIT" | "CRITICAL" | "FATAL" => Severity::Critical,
        "ALERT" => Severity::Alert,
        "EMERG" | "PANIC" => Severity::Emergency,
        other => panic!("unexpected level {other}"),
    }
}

fn ctx(file: &str) -> LineContext {
    LineContext {
        id: "fixture".to_owned(),
        input: Arc::from(file),
        ingest_time: rfc3339(INGEST).with_timezone(&Utc),
        file_mtime: None,
    }
}

fn got(rec: &Record) -> Want {
    Want {
        format: rec.format,
        timestamp: (rec.timestamp_source != ackline_parse::TimestampSource::Ingest)
            .then_some(rec.timestamp),
        severity: rec.severity,
        pid: rec.pid,
        message: rec.message.clone(),
    }
}

/// Parses every line of `file` in auto mode and compares it with `want`;
/// returns the records for further checks.
fn check(file: &str, want: impl Fn(&str) -> Want) -> Vec<Record> {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{file}")).unwrap();
    let parser = Parser::new(ParserConfig::default());
    let ctx = ctx(file);
    let mut records = Vec::new();
    let (mut carrying, mut from_line) = (0usize, 0usize);
    for line in text.lines() {
        let rec = parser.parse(line.as_bytes(), &ctx).unwrap();
        let w = want(line);
        if w.timestamp.is_some() {
            carrying += 1;
            from_line +=
                usize::from(rec.timestamp_source != ackline_parse::TimestampSource::Ingest);
        }
        assert_eq!(got(&rec), w, "{file}: {line}");
        records.push(rec);
    }
    assert!(!records.is_empty(), "{file} is empty");
    eprintln!("{file}: {from_line}/{carrying} lines carrying a timestamp got it from the line");
    records
}

#[test]
fn postgresql_csvlog() {
    check("postgresql.csv", |line| {
        let level = ["LOG", "ERROR", "FATAL", "WARNING"]
            .into_iter()
            .find(|l| line.contains(&format!(",{l},")))
            .unwrap();
        let after = line.split_once(&format!(",{level},")).unwrap().1;
        let quoted = after.get(6..).unwrap().strip_prefix('"').unwrap();
        let message = quoted.split("\",").next().unwrap().replace("\"\"", "\"");
        Want {
            format: Format::PostgresqlCsv,
            timestamp: Some(naive_utc(line.get(..23).unwrap(), "%Y-%m-%d %H:%M:%S%.3f")),
            severity: Some(sev(level)),
            pid: Some(line.split(',').nth(3).unwrap().parse().unwrap()),
            message,
        }
    });
}

#[test]
fn postgresql_jsonlog() {
    let recs = check("postgresql.json", |line| {
        let v: Value = serde_json::from_str(line).unwrap();
        let ts = v["timestamp"]
            .as_str()
            .unwrap()
            .strip_suffix(" UTC")
            .unwrap();
        Want {
            format: Format::PostgresqlJson,
            timestamp: Some(naive_utc(ts, "%Y-%m-%d %H:%M:%S%.3f")),
            severity: Some(sev(v["error_severity"].as_str().unwrap())),
            pid: v["pid"].as_u64(),
            message: v["message"].as_str().unwrap().to_owned(),
        }
    });
    assert!(
        recs.iter()
            .any(|r| r.fields.get("state_code").is_some_and(|c| c == "42P01"))
    );
}

#[test]
fn mariadb_error_log() {
    check("mariadb.log", |line| {
        if !line.starts_with("20") {
            // `Version: ...` continues "ready for connections." without a
            // timestamp of its own: raw unless multi-line joining is on.
            return Want {
                format: Format::Raw,
                timestamp: None,
                severity: None,
                pid: None,
                message: line.to_owned(),
            };
        }
        let (level, message) = line.get(21..).unwrap().split_once("] ").unwrap();
        let level = level.split_once('[').unwrap().1;
        Want {
            format: Format::Mysql,
            timestamp: Some(naive_utc(line.get(..19).unwrap(), "%Y-%m-%d %k:%M:%S")),
            severity: Some(sev(level)),
            pid: None,
            message: message.to_owned(),
        }
    });
}

#[test]
fn mysql8_error_log() {
    check("mysql8.log", |line| {
        let (ts, rest) = line.split_once(' ').unwrap();
        let rest = rest.split_once(" [").unwrap().1;
        let (level, mut message) = rest.split_once("] ").unwrap();
        if message.starts_with("[MY-") {
            message = message
                .split_once("] ")
                .unwrap()
                .1
                .split_once("] ")
                .unwrap()
                .1;
        }
        Want {
            format: Format::Mysql,
            timestamp: Some(rfc3339(ts)),
            severity: Some(sev(level)),
            pid: None,
            message: message.to_owned(),
        }
    });
}

#[test]
fn nginx_error_log() {
    let recs = check("nginx_error.log", |line| {
        let (level, rest) = line.get(21..).unwrap().split_once("] ").unwrap();
        let (pid, rest) = rest.split_once('#').unwrap();
        let mut message = rest.split_once(": ").unwrap().1;
        if message.starts_with('*') {
            message = message.split_once(' ').unwrap().1;
        }
        let message = message.split(", client: ").next().unwrap();
        Want {
            format: Format::NginxError,
            timestamp: Some(naive_utc(line.get(..19).unwrap(), "%Y/%m/%d %H:%M:%S")),
            severity: Some(sev(level)),
            pid: Some(pid.parse().unwrap()),
            message: message.to_owned(),
        }
    });
    assert_eq!(recs[4].fields["referrer"], "http://localhost/");
    assert_eq!(recs[5].fields["upstream"], "http://127.0.0.1:8080/api/");
}

#[test]
fn go_log() {
    check("go_log.log", |line| {
        let (ts, rest) = if line.get(19..20) == Some(".") {
            (line.get(..26).unwrap(), line.get(27..).unwrap())
        } else {
            (line.get(..19).unwrap(), line.get(20..).unwrap())
        };
        let message = match rest.split_once(": ") {
            Some((file, msg)) if file.contains(".go:") => msg,
            _ => rest,
        };
        Want {
            format: Format::GoLog,
            timestamp: Some(naive_utc(ts, "%Y/%m/%d %H:%M:%S%.f")),
            severity: None,
            pid: None,
            message: message.to_owned(),
        }
    });
}

#[test]
fn go_slog_text_and_json() {
    check("go_slog.log", |line| {
        if line.starts_with('{') {
            let v: Value = serde_json::from_str(line).unwrap();
            let level = v["level"].as_str().unwrap();
            return Want {
                format: Format::GoSlog,
                timestamp: Some(rfc3339(v["time"].as_str().unwrap())),
                severity: Some(sev(level.split('+').next().unwrap())),
                pid: None,
                message: v["msg"].as_str().unwrap().to_owned(),
            };
        }
        let ts = line
            .strip_prefix("time=")
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        let level = line
            .split(" level=")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        let msg = line.split(" msg=").nth(1).unwrap();
        let message = match msg.strip_prefix('"') {
            Some(q) => q.split('"').next().unwrap(),
            None => msg.split(' ').next().unwrap(),
        };
        Want {
            format: Format::GoSlog,
            timestamp: Some(rfc3339(ts)),
            severity: Some(sev(level.split(['+', '-']).next().unwrap())),
            pid: None,
            message: message.to_owned(),
        }
    });
}

#[test]
fn python_logging() {
    check("python.log", |line| {
        let (timestamp, level, message) = if let Some(rest) = line.strip_prefix('[') {
            let (ts, rest) = rest.split_once("] ").unwrap();
            let (level, rest) = rest.split_once(" in ").unwrap();
            (Some(ts), level, rest.split_once(": ").unwrap().1)
        } else if line.starts_with("20") {
            let (ts, rest) = line.split_at(23);
            if let Some(rest) = rest.strip_prefix(" - ") {
                let mut parts = rest.splitn(3, " - ");
                let _name = parts.next().unwrap();
                (Some(ts), parts.next().unwrap(), parts.next().unwrap())
            } else {
                let mut parts = rest.strip_prefix(':').unwrap().splitn(3, ':');
                let level = parts.next().unwrap();
                let _name = parts.next().unwrap();
                (Some(ts), level, parts.next().unwrap())
            }
        } else {
            let mut parts = line.splitn(3, ':');
            let level = parts.next().unwrap();
            let _name = parts.next().unwrap();
            (None, level, parts.next().unwrap())
        };
        Want {
            format: Format::Python,
            timestamp: timestamp.map(|t| naive_utc(t, "%Y-%m-%d %H:%M:%S,%3f")),
            severity: Some(sev(level)),
            pid: None,
            message: message.to_owned(),
        }
    });
}

#[test]
fn logback_default_pattern() {
    let recs = check("logback.log", |line| {
        let (time, rest) = line.split_once(" [").unwrap();
        let rest = rest.split_once("] ").unwrap().1;
        let level = rest.split(' ').next().unwrap();
        Want {
            format: Format::Logback,
            // The date is the ingest time's (all lines are before it).
            timestamp: Some(naive_utc(
                &format!("2026-12-05 {time}"),
                "%Y-%m-%d %H:%M:%S%.3f",
            )),
            severity: Some(sev(level)),
            pid: None,
            message: rest.split_once(" - ").unwrap().1.to_owned(),
        }
    });
    assert_eq!(recs[2].fields["thread"], "http-nio-8080-exec-1");
    assert_eq!(recs[2].app.as_deref(), Some("o.s.web.servlet.PageNotFound"));
}

/// (format, timestamp, severity, pid, message, inner format) per line.
type Row<'a> = (
    Format,
    &'a str,
    Option<Severity>,
    Option<u64>,
    &'a str,
    &'a str,
);

fn check_rows(file: &str, rows: &[Row]) {
    let recs = check(file, |line| {
        let text = std::fs::read_to_string(format!("{FIXTURES}/{file}")).unwrap();
        let i = text.lines().position(|l| l == line).unwrap();
        let (format, ts, severity, pid, message, _) = rows[i];
        Want {
            format,
            timestamp: Some(rfc3339(ts)),
            severity,
            pid,
            message: message.to_owned(),
        }
    });
    assert_eq!(recs.len(), rows.len());
    for (rec, row) in recs.iter().zip(rows) {
        if !row.5.is_empty() {
            assert_eq!(
                rec.fields["inner_format"],
                row.5,
                "{}",
                rec.raw.as_bytes().len()
            );
        }
    }
}

#[test]
fn kubernetes_cri() {
    use Severity::*;
    check_rows(
        "cri.log",
        &[
            (
                Format::Cri,
                "2026-12-05T04:09:25.191716123Z",
                Some(Info),
                Some(1),
                "Starting nats-server",
                "nats",
            ),
            (
                Format::Cri,
                "2026-12-05T04:09:25.204119552Z",
                Some(Notice),
                Some(1),
                "Ready to accept connections tcp",
                "redis",
            ),
            (
                Format::Cri,
                "2026-12-05T04:09:26Z",
                Some(Error),
                None,
                "query failed",
                "go_slog",
            ),
            (
                Format::Cri,
                "2026-12-05T04:09:27.1Z",
                None,
                None,
                "{\"level\":\"info\",\"msg\":\"a very long line the runtime split",
                "raw",
            ),
            (
                Format::Cri,
                "2026-12-05T04:09:27.1Z",
                None,
                None,
                " in two\",\"ok\":true}",
                "raw",
            ),
            (
                Format::Cri,
                "2026-12-05T04:09:28Z",
                Some(Error),
                Some(27),
                "relation \"x\" does not exist at character 15",
                "postgresql",
            ),
            (
                Format::Cri,
                "2026-12-05T04:09:29.5Z",
                None,
                None,
                "plain text without a timestamp",
                "raw",
            ),
        ],
    );
}

#[test]
fn docker_json_file() {
    use Severity::*;
    check_rows(
        "docker.log",
        &[
            (
                Format::DockerJson,
                "2026-12-05T04:09:25.204119552Z",
                Some(Notice),
                Some(1),
                "Ready to accept connections tcp",
                "redis",
            ),
            (
                Format::DockerJson,
                "2026-12-05T04:09:26.012Z",
                Some(Error),
                Some(27),
                "relation \"x\" does not exist at character 15",
                "postgresql",
            ),
            (
                Format::DockerJson,
                "2026-12-05T04:09:27.494914Z",
                Some(Warning),
                None,
                "HTTP access denied: user 'guest' - invalid credentials",
                "rabbitmq",
            ),
            (
                Format::DockerJson,
                "2026-12-05T04:09:28.1Z",
                None,
                None,
                "plain text without a timestamp",
                "raw",
            ),
        ],
    );
}

#[test]
fn journald_export() {
    use Severity::*;
    let recs = {
        check_rows(
            "journald.json",
            &[
                (
                    Format::Journald,
                    "2026-12-05T04:09:25.123456Z",
                    Some(Info),
                    Some(1),
                    "Started nginx.service - A high performance web server.",
                    "",
                ),
                (
                    Format::Journald,
                    "2026-12-05T04:09:26.000001Z",
                    Some(Error),
                    Some(812),
                    "error: kex_exchange_identification: Connection closed by remote host",
                    "",
                ),
                (
                    Format::Journald,
                    "2026-12-05T04:09:27.5Z",
                    Some(Warning),
                    Some(4242),
                    "binary\u{fffd} line",
                    "",
                ),
                (
                    Format::Journald,
                    "2026-12-05T04:09:28Z",
                    Some(Emergency),
                    None,
                    "Kernel panic - not syncing: Fatal exception",
                    "",
                ),
            ],
        );
        let text = std::fs::read_to_string(format!("{FIXTURES}/journald.json")).unwrap();
        let parser = Parser::new(ParserConfig::default());
        text.lines()
            .map(|l| parser.parse(l.as_bytes(), &ctx("journald.json")).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(recs[1].app.as_deref(), Some("sshd"));
    assert_eq!(recs[1].host.as_deref(), Some("web1"));
    assert_eq!(recs[1].fields["_SYSTEMD_UNIT"], "ssh.service");
}

#[test]
fn klog_kubernetes_components() {
    check("klog.log", |line| {
        let level = match line.get(..1).unwrap() {
            "I" => "INFO",
            "W" => "WARN",
            "E" => "ERROR",
            "F" => "FATAL",
            other => panic!("{other}"),
        };
        let (head, message) = line.split_once("] ").unwrap();
        let pid = head.split_whitespace().nth(2).unwrap();
        Want {
            format: Format::Klog,
            // No year in the line: the ingest time's (2026).
            timestamp: Some(naive_utc(
                &format!("2026{}", line.get(1..21).unwrap()),
                "%Y%m%d %H:%M:%S%.6f",
            )),
            severity: Some(sev(level)),
            pid: Some(pid.parse().unwrap()),
            message: message.to_owned(),
        }
    });
}

/// apt's history.log: only `Start-Date:`/`End-Date:` lines carry a time;
/// the lines between are raw on their own, and with the `auto` multi-line
/// rule every record is a dated `apt` record (the transaction).
#[test]
fn apt_history() {
    check("apt_history.log", |line| {
        let dated = ["Start-Date: ", "End-Date: "]
            .iter()
            .find_map(|l| line.strip_prefix(l));
        match dated {
            Some(ts) => Want {
                format: Format::Apt,
                timestamp: Some(naive_utc(ts, "%Y-%m-%d  %H:%M:%S")),
                severity: None,
                pid: None,
                message: String::new(),
            },
            None => Want {
                format: Format::Raw,
                timestamp: None,
                severity: None,
                pid: None,
                message: line.to_owned(),
            },
        }
    });
    let text = std::fs::read_to_string(format!("{FIXTURES}/apt_history.log")).unwrap();
    let mut joiner = ackline_parse::Joiner::new(ackline_parse::Multiline::Auto);
    let mut records: Vec<String> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if joiner.starts_record(line.as_bytes(), i == 0) {
            records.push(line.to_owned());
        } else if let Some(last) = records.last_mut() {
            last.push('\n');
            last.push_str(line);
        }
    }
    // The file starts with a blank line (apt writes one before each
    // transaction): alone before the first record, it is a record of its own.
    assert_eq!(records.remove(0), "");
    let parser = Parser::new(ParserConfig::default());
    let starts = text
        .lines()
        .filter(|l| l.starts_with("Start-Date: "))
        .count();
    assert_eq!(
        records.len(),
        2 * starts,
        "a Start-Date and an End-Date record per transaction"
    );
    for r in &records {
        let rec = parser.parse(r.as_bytes(), &ctx("apt_history.log")).unwrap();
        assert_eq!(rec.format, Format::Apt, "{r}");
        assert_ne!(rec.timestamp_source, ackline_parse::TimestampSource::Ingest);
        if r.starts_with("Start-Date: ") {
            assert!(rec.message.starts_with("Commandline: "), "{r}");
        }
    }
}
