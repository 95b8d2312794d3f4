//! The logs of real daemons (PostgreSQL, Redis, RabbitMQ, NATS, dpkg,
//! update-alternatives), copied from a Debian machine into
//! `tests/fixtures/daemons/` (sources in the README there), parse with the
//! generic header extractor: for every line, the timestamp comes from the
//! line (never the ingest time), and severity, pid and message are what an
//! independent split of the line (written here with plain string
//! operations, not the parser's code) says they are. Each log must reach at
//! least 98% of its lines timestamped from the line (issue 15's target);
//! today they all reach 100%.

// Test helpers may unwrap: a panic there is a failed test with its message.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ackline_parse::{Format, LineContext, Parser, ParserConfig, TimestampSource};
use chrono::{DateTime, Utc};

mod common;
use common::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/daemons");

/// Parses every line of `file` in auto mode, compares each with `want`, and
/// returns the share of lines timestamped from the line.
fn check(file: &str, format: Format, want: fn(&str) -> Want) -> f64 {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{file}")).unwrap();
    let parser = Parser::new(ParserConfig::default());
    let ctx = LineContext {
        id: "daemon".to_owned(),
        input: Arc::from(file),
        // Far from every line's time, so an ingest-time stamp cannot pass.
        file_mtime: None,
        ingest_time: DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc),
    };
    let mut from_line = 0usize;
    let mut total = 0usize;
    for line in text.lines() {
        total += 1;
        let rec = parser.parse(line.as_bytes(), &ctx).unwrap();
        assert_eq!(rec.format, format, "{file}: {line}");
        assert_eq!(got(&rec), want(line), "{file}: {line}");
        if rec.timestamp_source != TimestampSource::Ingest {
            from_line += 1;
        }
    }
    assert!(total > 0, "{file} is empty");
    #[allow(clippy::cast_precision_loss)]
    let share = from_line as f64 / total as f64;
    eprintln!(
        "{file}: {from_line}/{total} lines timestamped from the line ({:.1}%)",
        share * 100.0
    );
    assert!(share >= 0.98, "{file}: only {:.1}%", share * 100.0);
    share
}

#[test]
fn postgresql_stderr() {
    check("postgresql.log", Format::Postgresql, split_postgres);
}

#[test]
fn postgresql_session_fields() {
    let parser = Parser::new(ParserConfig::default());
    let ctx = LineContext::now("pg", Arc::from("pg"));
    let rec = parser
        .parse(
            b"2026-12-05 01:20:58.902 UTC [25730] no_such_role_ackline@test FATAL:  role \"no_such_role_ackline\" does not exist\n",
            &ctx,
        )
        .unwrap();
    assert_eq!(rec.fields["user"], "no_such_role_ackline");
    assert_eq!(rec.fields["database"], "test");
    let rec = parser
        .parse(
            b"2026-12-05 01:28:30.187 UTC [3339] postgres@test CONTEXT:  unnamed portal parameter $1",
            &ctx,
        )
        .unwrap();
    assert_eq!(rec.fields["label"], "CONTEXT");
    assert_eq!(rec.severity, None);
}

#[test]
fn redis() {
    check("redis.log", Format::Redis, split_redis);
}

#[test]
fn rabbitmq() {
    check("rabbitmq.log", Format::RabbitMq, split_rabbitmq);
}

#[test]
fn nats() {
    check("nats.log", Format::Nats, split_nats);
}

#[test]
fn dpkg() {
    check("dpkg.log", Format::Dpkg, split_dpkg);
}

#[test]
fn update_alternatives() {
    check("alternatives.log", Format::Dpkg, split_alternatives);
}
