//! Fuzz target: no input makes `Parser::parse` panic, in any configuration,
//! and every outcome keeps its invariants (lossless raw line, lenient mode
//! never errs, error positions in bounds, records serialise).
//!
//! Run: `cargo +nightly fuzz run parse_line` from the repository root.
#![no_main]

use std::sync::Arc;

use ackline_parse::{Format, FormatChoice, LineContext, Parser, ParserConfig, YearRule, Zone};
use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first two bytes pick the configuration; the rest is the line.
    let Some((&[selector, pick], line)) = data.split_first_chunk::<2>() else {
        return;
    };
    let formats = Format::ALL;
    let choice = match usize::from(pick) % (formats.len() + 1) {
        i if i < formats.len() => FormatChoice::Fixed(formats[i]),
        _ => FormatChoice::Auto,
    };
    let strict = selector & 0x20 != 0;
    let year_rule = match (selector & 0x40 != 0, selector & 0x10 != 0) {
        (true, _) => YearRule::Fixed(1970),
        (false, true) => YearRule::FileMtime,
        (false, false) => YearRule::Infer,
    };
    // An IANA zone with DST (and a southern-hemisphere calendar) or UTC.
    let timezone = if selector & 0x08 != 0 {
        "America/Santiago".parse().unwrap_or_default()
    } else {
        Zone::utc()
    };
    let parser = Parser::new(ParserConfig {
        format: choice,
        strict,
        year_rule,
        timezone,
        max_json_depth: 32,
        ..ParserConfig::default()
    });
    let ingest_time = if selector & 0x80 != 0 {
        DateTime::<Utc>::MAX_UTC
    } else {
        DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default()
    };
    let ctx = LineContext {
        id: "fuzz".to_string(),
        input: Arc::from("fuzz"),
        ingest_time,
        file_mtime: (selector & 0x04 != 0).then_some(ingest_time),
    };
    match parser.parse(line, &ctx) {
        Ok(record) => {
            assert_eq!(record.raw.as_bytes(), line);
            let json = serde_json::to_string(&record).expect("records serialise");
            assert!(!json.is_empty());
        }
        Err(err) => {
            assert!(strict, "lenient mode returned {err}");
            assert!(err.position <= line.len());
            let _ = err.to_string();
        }
    }
});
