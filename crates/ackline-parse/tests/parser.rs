//! Parser behaviour end to end: modes, fallback, robustness inputs and the
//! serialised record layout.

// Test helpers may unwrap: a panic there is a failed test with its message.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use ackline_parse::{
    ErrorKind, Format, FormatChoice, LineContext, Parser, ParserConfig, RawLine, Record, Severity,
    TimestampSource,
};
use chrono::{DateTime, FixedOffset, Utc};

fn ctx() -> LineContext {
    LineContext {
        id: "line-42".to_string(),
        input: Arc::from("/var/log/app.log"),
        file_mtime: None,
        ingest_time: DateTime::parse_from_rfc3339("2024-06-15T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc),
    }
}

fn parser(format: FormatChoice, strict: bool) -> Parser {
    Parser::new(ParserConfig {
        format,
        strict,
        ..ParserConfig::default()
    })
}

#[test]
fn lenient_auto_falls_back_to_raw_and_flags_ingest_time() {
    let rec = Parser::default()
        .parse(b"just some words\r\n", &ctx())
        .unwrap();
    assert_eq!(rec.format, Format::Raw);
    assert_eq!(rec.message, "just some words");
    assert_eq!(rec.raw, RawLine::Text("just some words\r\n".to_owned()));
    assert_eq!(rec.timestamp_source, TimestampSource::Ingest);
    assert_eq!(rec.timestamp.to_rfc3339(), "2024-06-15T12:00:00+00:00");
    assert_eq!(rec.id, "line-42");
    assert_eq!(&*rec.input, "/var/log/app.log");
    assert_eq!(rec.parse_error, None);
}

#[test]
fn strict_fixed_returns_typed_error_with_position() {
    let p = parser(FormatChoice::Fixed(Format::Rfc5424), true);
    let err = p
        .parse(b"<34>1 2003-10-11T22:14:15.003Z host app - - [bad", &ctx())
        .unwrap_err();
    assert_eq!(err.format, Some(Format::Rfc5424));
    assert_eq!(err.kind, ErrorKind::Expected("SP or ']' in SD-ELEMENT"));
    assert_eq!(err.position, 48);
    assert_eq!(
        err.to_string(),
        "rfc5424: expected SP or ']' in SD-ELEMENT at byte 48"
    );

    // Positions count from the start of the input, BOM included.
    let err = p.parse(b"\xEF\xBB\xBF<34>2 x", &ctx()).unwrap_err();
    assert_eq!(err.position, 7);
    assert_eq!(err.kind, ErrorKind::Expected("version 1 followed by SP"));
}

#[test]
fn lenient_fixed_falls_back_with_reason() {
    let p = parser(FormatChoice::Fixed(Format::Json), false);
    let rec = p.parse(b"{\"a\":", &ctx()).unwrap();
    assert_eq!(rec.format, Format::Raw);
    assert_eq!(rec.message, "{\"a\":");
    let reason = rec.parse_error.unwrap();
    assert!(
        reason.starts_with("json: invalid JSON: EOF while parsing"),
        "{reason}"
    );
}

#[test]
fn strict_auto_reports_most_likely_format_or_no_match() {
    let p = parser(FormatChoice::Auto, true);
    let err = p.parse(b"Jun 14 25:16:01 combo su: x", &ctx()).unwrap_err();
    assert_eq!(err.format, Some(Format::Rfc3164));
    assert_eq!(err.kind, ErrorKind::TimestampOutOfRange);
    let err = p.parse(b"\x01\x02", &ctx()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::NoFormatMatched);
    assert_eq!(err.format, None);
    assert_eq!(
        err.to_string(),
        "auto: no supported format matched at byte 0"
    );
    let err = p.parse(b"\r\n", &ctx()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Empty);
}

#[test]
fn empty_line_is_raw_when_lenient_and_always_fine_for_fixed_raw() {
    let rec = Parser::default().parse(b"", &ctx()).unwrap();
    assert_eq!((rec.format, rec.message.as_str()), (Format::Raw, ""));
    let rec = parser(FormatChoice::Fixed(Format::Raw), true)
        .parse(b"\n", &ctx())
        .unwrap();
    assert_eq!(rec.format, Format::Raw);
    assert_eq!(rec.raw.as_bytes(), b"\n");
}

#[test]
fn invalid_utf8_is_kept_losslessly() {
    let line = b"<13>1 - host app - - - caf\xE9 \xFF\xFE end\n";
    let rec = Parser::default().parse(line, &ctx()).unwrap();
    assert_eq!(rec.format, Format::Rfc5424);
    assert_eq!(rec.message, "caf\u{FFFD} \u{FFFD}\u{FFFD} end");
    assert_eq!(rec.raw, RawLine::Bytes(line.to_vec()));
    let json = serde_json::to_value(&rec).unwrap();
    assert_eq!(
        json["raw_base64"],
        "PDEzPjEgLSBob3N0IGFwcCAtIC0gLSBjYWbpIP/+IGVuZAo="
    );
    assert!(json.get("raw").is_none());
    let back: Record = serde_json::from_value(json).unwrap();
    assert_eq!(back.raw.as_bytes(), line);
    assert_eq!(
        rec.raw_base64(),
        "PDEzPjEgLSBob3N0IGFwcCAtIC0gLSBjYWbpIP/+IGVuZAo="
    );
}

#[test]
fn nul_bytes_are_ordinary_data() {
    let line = b"Jun 14 15:16:01 combo su: a\0b";
    let rec = Parser::default().parse(line, &ctx()).unwrap();
    assert_eq!(rec.format, Format::Rfc3164);
    assert_eq!(rec.message, "a\0b");
    let json = serde_json::to_string(&rec).unwrap();
    assert!(json.contains(r"a\u0000b"), "{json}");
    let rec = Parser::default().parse(b"\0\0\0", &ctx()).unwrap();
    assert_eq!((rec.format, rec.message.as_str()), (Format::Raw, "\0\0\0"));
}

#[test]
fn ten_megabyte_lines() {
    let big = "x".repeat(10 * 1024 * 1024);
    let syslog = format!("Jun 14 15:16:01 combo app[1]: {big}");
    let rec = Parser::default().parse(syslog.as_bytes(), &ctx()).unwrap();
    assert_eq!(rec.format, Format::Rfc3164);
    assert_eq!(rec.message.len(), big.len());
    let json = format!(r#"{{"msg":"{big}","level":"info"}}"#);
    let rec = Parser::default().parse(json.as_bytes(), &ctx()).unwrap();
    assert_eq!(rec.format, Format::Json);
    assert_eq!(rec.message.len(), big.len());
    let rec = Parser::default().parse(big.as_bytes(), &ctx()).unwrap();
    assert_eq!(rec.format, Format::Raw);
    assert_eq!(rec.raw.as_bytes().len(), big.len());
    // 10 MB of spaces and brackets: nothing quadratic, nothing recursive.
    let brackets = "[".repeat(10 * 1024 * 1024);
    let rec = Parser::default()
        .parse(brackets.as_bytes(), &ctx())
        .unwrap();
    assert_eq!(rec.format, Format::Raw);
}

#[test]
fn deeply_nested_json_is_bounded() {
    let p = Parser::new(ParserConfig {
        format: FormatChoice::Fixed(Format::Json),
        strict: true,
        max_json_depth: 10,
        ..ParserConfig::default()
    });
    let ok = format!("{{\"a\":{}0{}}}", "[".repeat(9), "]".repeat(9));
    assert!(p.parse(ok.as_bytes(), &ctx()).is_ok());
    let deep = format!(
        "{{\"a\":{}0{}}}",
        "[".repeat(1_000_000),
        "]".repeat(1_000_000)
    );
    let err = p.parse(deep.as_bytes(), &ctx()).unwrap_err();
    assert_eq!(err.kind, ErrorKind::JsonTooDeep { limit: 10 });
    // The cap: asking for more than serde_json can do is clamped.
    let p = Parser::new(ParserConfig {
        max_json_depth: 10_000,
        ..ParserConfig::default()
    });
    assert_eq!(
        p.config().max_json_depth,
        ackline_parse::MAX_JSON_DEPTH_LIMIT
    );
    let rec = p.parse(deep.as_bytes(), &ctx()).unwrap();
    assert_eq!(rec.format, Format::Raw);
}

#[test]
fn timestamps_out_of_range_are_typed_errors() {
    let p = parser(FormatChoice::Auto, true);
    for line in [
        "<13>1 2024-02-30T00:00:00Z h a - - - m",
        "<13>1 9999-12-31T23:59:59-24:00 h a - - - m",
        "2024-13-01 00:00:00,000 INFO x: y",
        "[Sun Feb 30 04:47:44 2005] [notice] x",
        "- 1131566461 2005.11.09 dn228 Feb 30 12:01:01 dn228/dn228 crond: x",
        "03-17 24:13:38.811  1702  2395 D WindowManager: x",
    ] {
        match p.parse(line.as_bytes(), &ctx()) {
            Err(err) => assert_eq!(err.kind, ErrorKind::TimestampOutOfRange, "{line}: {err}"),
            Ok(rec) => panic!("{line}: parsed as {rec:?}"),
        }
    }
    // In JSON an unusable time is not an error: ingest time, value kept.
    let rec = p
        .parse(br#"{"time":"9999-99-99T99:99:99Z","msg":"m"}"#, &ctx())
        .unwrap();
    assert_eq!(rec.timestamp_source, TimestampSource::Ingest);
    assert_eq!(rec.fields["time"], "9999-99-99T99:99:99Z");
}

#[test]
fn assume_offset_applies_to_zoneless_timestamps_only() {
    let p = Parser::new(ParserConfig {
        timezone: ackline_parse::Zone::Fixed(FixedOffset::east_opt(2 * 3600).unwrap()),
        ..ParserConfig::default()
    });
    let rec = p
        .parse(b"2015-10-18 18:01:47,978 INFO [main] a.B: m", &ctx())
        .unwrap();
    assert_eq!(rec.timestamp.to_rfc3339(), "2015-10-18T18:01:47.978+02:00");
    assert_eq!(rec.timestamp_source, TimestampSource::LineAssumedOffset);
    let rec = p
        .parse(
            b"<13>1 2003-08-24T05:14:15.000003-07:00 h a - - - m",
            &ctx(),
        )
        .unwrap();
    assert_eq!(
        rec.timestamp.to_rfc3339(),
        "2003-08-24T05:14:15.000003-07:00"
    );
    assert_eq!(rec.timestamp_source, TimestampSource::Line);
}

#[test]
fn access_variants_are_reported() {
    let common =
        br#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#;
    let combined = br#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "-" "curl/8""#;
    for choice in [
        FormatChoice::Auto,
        FormatChoice::Fixed(Format::AccessCommon),
        FormatChoice::Fixed(Format::AccessCombined),
    ] {
        let p = parser(choice, true);
        assert_eq!(
            p.parse(common, &ctx()).unwrap().format,
            Format::AccessCommon,
            "{choice:?}"
        );
        assert_eq!(
            p.parse(combined, &ctx()).unwrap().format,
            Format::AccessCombined,
            "{choice:?}"
        );
    }
}

#[test]
fn serialised_layout_is_stable() {
    let rec = Parser::default()
        .parse(
            b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - [a@1 k=\"v\"] msg\n",
            &ctx(),
        )
        .unwrap();
    let json = serde_json::to_value(&rec).unwrap();
    let expected = serde_json::json!({
        "id": "line-42",
        "input": "/var/log/app.log",
        "format": "rfc5424",
        "timestamp": "2003-08-24T05:14:15.000003-07:00",
        "timestamp_source": "line",
        "severity": {"code": 5, "name": "notice"},
        "host": "192.0.2.1",
        "app": "myproc",
        "pid": 8710,
        "message": "msg",
        "fields": {"facility": "local4", "structured_data": {"a@1": {"k": "v"}}},
        "raw": "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - [a@1 k=\"v\"] msg\n"
    });
    assert_eq!(json, expected);
    assert_eq!(serde_json::from_value::<Record>(json).unwrap(), rec);
    assert_eq!(rec.severity, Some(Severity::Notice));
}

#[test]
fn format_choice_from_str() {
    assert_eq!("auto".parse::<FormatChoice>().unwrap(), FormatChoice::Auto);
    assert_eq!(
        "rfc3164".parse::<FormatChoice>().unwrap(),
        FormatChoice::Fixed(Format::Rfc3164)
    );
    assert!("nope".parse::<FormatChoice>().is_err());
    // Display writes what FromStr reads back, for every format (a file input group's format
    // travels to the parser as text).
    let mut all = vec![FormatChoice::Auto];
    all.extend(Format::ALL.iter().map(|f| FormatChoice::Fixed(*f)));
    for choice in all {
        assert_eq!(choice.to_string().parse::<FormatChoice>().unwrap(), choice);
    }
}

/// Issue 15, point 3: a 2005 archive read in 2026. With `year = mtime` the
/// year comes from the file's mtime (across the New Year), with a fixed year
/// it is that year, and an IANA zone applies its daylight saving rules.
#[test]
fn year_from_mtime_or_fixed_and_iana_zones() {
    let archive = |mtime: &str| LineContext {
        file_mtime: Some(
            DateTime::parse_from_rfc3339(mtime)
                .unwrap()
                .with_timezone(&Utc),
        ),
        ingest_time: DateTime::parse_from_rfc3339("2026-12-05T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc),
        ..ctx()
    };
    let mtime = Parser::new(ParserConfig {
        year_rule: ackline_parse::YearRule::FileMtime,
        ..ParserConfig::default()
    });
    let dec = b"Dec 31 23:59:58 combo sshd[1]: last of 2005";
    let jan = b"Jan  1 00:00:02 combo sshd[1]: first of 2006";
    let c = archive("2006-01-02T03:04:05Z");
    let year = |line: &[u8], p: &Parser, c: &LineContext| {
        let rec = p.parse(line, c).unwrap();
        assert_eq!(rec.timestamp_source, TimestampSource::LineInferredYear);
        rec.timestamp.to_rfc3339()
    };
    assert_eq!(year(dec, &mtime, &c), "2005-12-31T23:59:58+00:00");
    assert_eq!(year(jan, &mtime, &c), "2006-01-01T00:00:02+00:00");
    // Without an mtime (stdin, a socket), the ingest time is the reference.
    let no_mtime = LineContext {
        file_mtime: None,
        ..archive("2006-01-02T03:04:05Z")
    };
    assert_eq!(year(dec, &mtime, &no_mtime), "2025-12-31T23:59:58+00:00");
    // The default rule ignores the mtime: this is what issue 15 reported.
    assert_eq!(
        year(dec, &Parser::default(), &c),
        "2025-12-31T23:59:58+00:00"
    );
    let fixed = Parser::new(ParserConfig {
        year_rule: ackline_parse::YearRule::Fixed(2005),
        ..ParserConfig::default()
    });
    assert_eq!(year(jan, &fixed, &c), "2005-01-01T00:00:02+00:00");

    let berlin = Parser::new(ParserConfig {
        year_rule: ackline_parse::YearRule::Fixed(2005),
        timezone: "Europe/Berlin".parse().unwrap(),
        ..ParserConfig::default()
    });
    assert_eq!(
        year(b"Jul  1 12:00:00 h a: x", &berlin, &c),
        "2005-07-01T12:00:00+02:00"
    );
    assert_eq!(
        year(b"Jan  1 12:00:00 h a: x", &berlin, &c),
        "2005-01-01T12:00:00+01:00"
    );
    // Zone-less ISO lines too; a line's own offset always wins.
    let rec = berlin
        .parse(b"2026-07-01 12:00:00,000 INFO [main] a.B: m", &c)
        .unwrap();
    assert_eq!(rec.timestamp.to_rfc3339(), "2026-07-01T12:00:00+02:00");
    let rec = berlin
        .parse(b"2026-07-01T12:00:00Z level=info msg=x", &c)
        .unwrap();
    assert_eq!(rec.timestamp.to_rfc3339(), "2026-07-01T12:00:00+00:00");
}
