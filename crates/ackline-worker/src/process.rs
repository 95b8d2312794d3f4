//! Turning a delivery into a record.
//!
//! [`Process`] is what a worker does to each delivery before the store write; the pipeline's
//! is [`ParseProcess`], which parses the payload as a log line with `ackline-parse`.
//!
//! Per-message parse settings: a message may carry the headers [`FORMAT_HEADER`],
//! [`YEAR_HEADER`], [`TIMEZONE_HEADER`] and [`STRICT_HEADER`] (the file input sets them for
//! the files of an `[[input.files]]` group whose settings differ from the run-wide ones, see
//! [`parse_headers`]); [`ParseProcess`] parses such a message with its own settings overridden
//! by them, so the settings travel with the message through any broker and any number of
//! processes.
//!
//! Invariants:
//! - the record's id is the message id, so a redelivered or replayed message maps to the same
//!   record and the idempotent store keeps one copy;
//! - a message without those headers is parsed with the process's own settings, exactly as
//!   before they existed;
//! - a header value that does not parse is the message's permanent failure (dead-lettered with
//!   a reason naming the header and the value), never a panic and never a silent fallback;
//! - what [`parse_headers`] writes, [`ParseProcess`] reads back to the same settings.

use std::sync::Arc;

use ackline_broker::Delivery;
use ackline_parse::{FormatChoice, LineContext, Parser, ParserConfig, Record, YearRule, Zone};
use chrono::{DateTime, Utc};

/// Header naming the input a line came from (a file path, `stdin`, a socket).
pub const INPUT_HEADER: &str = "input";

/// Header with the modification time (Unix milliseconds) of the file a line came from, set by
/// the file input when the year rule needs it (`input.year = "mtime"`): the reference time of
/// [`ackline_parse::YearRule::FileMtime`].
pub const MTIME_HEADER: &str = "mtime";

/// Header overriding the parser's format for this message: `auto` or a format name.
pub const FORMAT_HEADER: &str = "format";

/// Header overriding the parser's year rule for this message: `auto`, `mtime` or a year.
pub const YEAR_HEADER: &str = "year";

/// Header overriding the zone of offset-less timestamps for this message: `UTC`, an offset or
/// an IANA name.
pub const TIMEZONE_HEADER: &str = "timezone";

/// Header overriding strictness for this message: `true` (a line that does not parse is
/// dead-lettered) or `false` (it is stored raw).
pub const STRICT_HEADER: &str = "strict";

/// The headers that make a [`ParseProcess`] whose parser has the settings `base` parse a
/// message with the settings `own`: one header for each setting in which they differ (none
/// when they agree). `max_json_depth` is not carried (it stays the process's).
pub fn parse_headers(base: &ParserConfig, own: &ParserConfig) -> Vec<(String, String)> {
    let mut h = Vec::new();
    if own.format != base.format {
        h.push((FORMAT_HEADER.to_owned(), own.format.to_string()));
    }
    if own.year_rule != base.year_rule {
        h.push((YEAR_HEADER.to_owned(), own.year_rule.to_string()));
    }
    if own.timezone != base.timezone {
        h.push((TIMEZONE_HEADER.to_owned(), own.timezone.to_string()));
    }
    if own.strict != base.strict {
        h.push((STRICT_HEADER.to_owned(), own.strict.to_string()));
    }
    h
}

/// `base` with the parse headers of `d` applied, or `None` when it has none.
fn settings_of(base: &ParserConfig, d: &Delivery) -> Result<Option<ParserConfig>, ProcessError> {
    fn read<T>(
        d: &Delivery,
        name: &str,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, ProcessError> {
        match d.header(name) {
            None => Ok(None),
            Some(v) => parse(v).map(Some).ok_or_else(|| {
                ProcessError::Permanent(format!(
                    "invalid header {name} = {v:?}: expected {expected}"
                ))
            }),
        }
    }
    let format = read(d, FORMAT_HEADER, "auto or a format name", |v| {
        v.parse::<FormatChoice>().ok()
    })?;
    let year = read(d, YEAR_HEADER, YearRule::EXPECTED, |v| {
        v.parse::<YearRule>().ok()
    })?;
    let zone = read(
        d,
        TIMEZONE_HEADER,
        "UTC, an offset (+02:00, -0530) or an IANA zone name",
        |v| v.parse::<Zone>().ok(),
    )?;
    let strict = read(d, STRICT_HEADER, "true or false", |v| match v {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    })?;
    if format.is_none() && year.is_none() && zone.is_none() && strict.is_none() {
        return Ok(None);
    }
    Ok(Some(ParserConfig {
        format: format.unwrap_or(base.format),
        year_rule: year.unwrap_or(base.year_rule),
        timezone: zone.unwrap_or(base.timezone),
        strict: strict.unwrap_or(base.strict),
        ..*base
    }))
}

/// Why a delivery could not become a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// It never will (a parse error in strict mode): dead-letter it now.
    #[error("{0}")]
    Permanent(String),
    /// It might next time: retry with backoff, counting the attempt.
    #[error("{0}")]
    Transient(String),
}

/// What a worker does to each delivery.
pub trait Process: Send + Sync + 'static {
    /// The record to store for `d`.
    fn process(&self, d: &Delivery) -> Result<Record, ProcessError>;
}

/// Parses each payload as one log line, with its parser's settings or those the message's
/// parse headers override (see the module doc).
#[derive(Debug, Clone)]
pub struct ParseProcess {
    parser: Parser,
}

impl ParseProcess {
    /// With this parser (its strictness decides whether bad lines are dead-lettered or kept
    /// raw).
    pub fn new(parser: Parser) -> Self {
        ParseProcess { parser }
    }
}

impl Process for ParseProcess {
    fn process(&self, d: &Delivery) -> Result<Record, ProcessError> {
        let ingest_time = i64::try_from(d.enqueued_at)
            .ok()
            .and_then(DateTime::<Utc>::from_timestamp_millis)
            .unwrap_or_else(|| DateTime::<Utc>::from(std::time::SystemTime::now()));
        let ctx = LineContext {
            id: d.id.clone(),
            input: Arc::from(d.header(INPUT_HEADER).unwrap_or("unknown")),
            ingest_time,
            file_mtime: d
                .header(MTIME_HEADER)
                .and_then(|m| m.parse::<i64>().ok())
                .and_then(DateTime::<Utc>::from_timestamp_millis),
        };
        let own = settings_of(self.parser.config(), d)?.map(Parser::new);
        own.as_ref()
            .unwrap_or(&self.parser)
            .parse(&d.payload, &ctx)
            .map_err(|e| ProcessError::Permanent(format!("parse error: {e}")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ackline_broker::Tag;
    use ackline_parse::{ParserConfig, YearRule};

    fn delivery(headers: &[(&str, &str)]) -> Delivery {
        Delivery {
            tag: Tag {
                key: 1,
                attempt: 1,
                token: None,
            },
            id: "m-1".into(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            payload: b"Dec 31 23:59:58 combo sshd[1]: x".to_vec(),
            // 2026-12-05T00:00:00Z
            enqueued_at: 1_796_428_800_000,
        }
    }

    /// The `mtime` header becomes the parser's file mtime: with `year = mtime` a 2005
    /// archive's `Dec 31` is 2005, not the year before the ingest time.
    #[test]
    fn mtime_header_reaches_the_year_rule() {
        let p = ParseProcess::new(Parser::new(ParserConfig {
            year_rule: YearRule::FileMtime,
            ..ParserConfig::default()
        }));
        // 2006-01-02T03:04:05.678Z
        let rec = p
            .process(&delivery(&[
                ("input", "a.log"),
                (MTIME_HEADER, "1136171045678"),
            ]))
            .unwrap();
        assert_eq!(rec.timestamp.to_rfc3339(), "2005-12-31T23:59:58+00:00");
        assert_eq!(&*rec.input, "a.log");
        let rec = p
            .process(&delivery(&[(MTIME_HEADER, "not a number")]))
            .unwrap();
        assert_eq!(rec.timestamp.to_rfc3339(), "2025-12-31T23:59:58+00:00");
    }

    /// A message's parse headers override the process's settings for that message only; what
    /// `parse_headers` writes is read back to the same settings.
    #[test]
    fn parse_headers_override_the_settings_of_their_message() {
        let base = ParserConfig::default();
        let p = ParseProcess::new(Parser::new(base));
        let own = ParserConfig {
            format: "rfc3164".parse().unwrap(),
            year_rule: YearRule::Fixed(2005),
            timezone: "Europe/Berlin".parse().unwrap(),
            strict: true,
            ..base
        };
        let headers = parse_headers(&base, &own);
        assert_eq!(headers.len(), 4, "{headers:?}");
        assert!(parse_headers(&base, &base).is_empty());
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let d = delivery(&pairs);
        assert_eq!(settings_of(&base, &d).unwrap(), Some(own));
        let rec = p.process(&d).unwrap();
        // Berlin is UTC+1 in winter; the year is the fixed one.
        assert_eq!(rec.timestamp.to_rfc3339(), "2005-12-31T23:59:58+01:00");
        assert_eq!(rec.format, ackline_parse::Format::Rfc3164);
        // Strict from the header: a line rfc3164 rejects is an error, not a raw record.
        let mut bad = delivery(&pairs);
        bad.payload = b"not syslog".to_vec();
        assert!(matches!(p.process(&bad), Err(ProcessError::Permanent(_))));
        // Without the headers: the process's own settings (auto, lenient, UTC, inferred year).
        let rec = p.process(&delivery(&[])).unwrap();
        assert_eq!(rec.timestamp.to_rfc3339(), "2025-12-31T23:59:58+00:00");
        bad.headers.clear();
        assert_eq!(p.process(&bad).unwrap().format, ackline_parse::Format::Raw);
    }

    /// A header value that does not parse fails its message permanently (dead-lettered) with a
    /// reason naming the header and the value.
    #[test]
    fn invalid_parse_headers_are_permanent_failures() {
        let p = ParseProcess::new(Parser::new(ParserConfig::default()));
        for (name, value) in [
            (FORMAT_HEADER, "nope"),
            (YEAR_HEADER, "10000"),
            (TIMEZONE_HEADER, "Mars/Olympus"),
            (STRICT_HEADER, "yes"),
        ] {
            match p.process(&delivery(&[(name, value)])) {
                Err(ProcessError::Permanent(reason)) => {
                    assert!(
                        reason
                            .starts_with(&format!("invalid header {name} = {value:?}: expected ")),
                        "{reason}"
                    );
                }
                other => panic!("{name} = {value}: {other:?}"),
            }
        }
    }
}
