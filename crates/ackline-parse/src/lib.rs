//! # ackline-parse
//!
//! Turns raw log lines into normalised [`Record`]s. It knows lines and
//! records, never queues: the worker runtime hands it bytes and a
//! [`LineContext`], and gets back a record or a typed [`ParseError`] to
//! dead-letter with.
//!
//! ```
//! use std::sync::Arc;
//! use ackline_parse::{Format, LineContext, Parser, ParserConfig, Severity};
//!
//! let parser = Parser::new(ParserConfig::default()); // auto-detect, lenient
//! let ctx = LineContext::now("line-1", Arc::from("/var/log/auth.log"));
//! let rec = parser
//!     .parse(b"<34>1 2003-10-11T22:14:15.003Z host su - ID47 - 'su root' failed\n", &ctx)
//!     .expect("lenient mode never fails");
//! assert_eq!(rec.format, Format::Rfc5424);
//! assert_eq!(rec.severity, Some(Severity::Critical));
//! assert_eq!(rec.app.as_deref(), Some("su"));
//! assert_eq!(rec.raw.as_bytes(), b"<34>1 2003-10-11T22:14:15.003Z host su - ID47 - 'su root' failed\n");
//! ```
//!
//! ## Formats
//!
//! JSON lines and logfmt (common field names mapped), syslog RFC 5424 and
//! RFC 3164, Apache/nginx common and combined access logs, the Apache error
//! log, log4j-style logs (HDFS, Hadoop, Spark, Zookeeper), Android logcat,
//! and the loghub families BGL, HPC, Thunderbird, Windows CBS, HealthApp,
//! Proxifier and OpenStack (Linux, OpenSSH and Mac are RFC 3164); and the
//! logs operators meet most: PostgreSQL (stderr, csvlog, jsonlog),
//! MySQL/MariaDB, Redis, RabbitMQ, NATS, nginx's error log, Go's `log` and
//! `log/slog`, Python `logging`, the logback/log4j2 default pattern, klog,
//! Kubernetes CRI and docker json-file container logs (unwrapped, the inner
//! line parsed), journald's JSON export, dpkg and apt. See [`Format`] and
//! `docs/formats.md`. Detection is per line ([`FormatChoice::Auto`]) or fixed per
//! input ([`FormatChoice::Fixed`]); the record names the format that parsed
//! it. In auto mode a line no named format accepts is tried last with the
//! generic header extractor ([`Format::Generic`]: a leading timestamp, then
//! pid and severity where recognised, as PostgreSQL, Redis, RabbitMQ, NATS
//! and dpkg write them), and only then falls back to [`Format::Raw`], which
//! keeps the whole line as the message.
//!
//! ## Guarantees
//!
//! - **No panic on any input**, checked by a proptest over arbitrary bytes
//!   (`tests/never_panics.rs`) and a cargo-fuzz target (`fuzz/`).
//! - **Lossless**: `record.raw` holds the exact input bytes; invalid UTF-8
//!   is kept (serialised as `raw_base64`), and text fields get U+FFFD in
//!   its place. NUL bytes are ordinary data.
//! - **Bounded**: JSON nesting is limited ([`ParserConfig::max_json_depth`]),
//!   all parsers are linear in the line length (a 10 MB line is fine), and
//!   timestamps that name no real instant are typed errors, never panics.
//! - **Strict mode** returns [`ParseError`] (format, byte position, reason);
//!   lenient mode falls back to [`Format::Raw`].
//! - **Year inference** for year-less timestamps is documented on
//!   [`YearRule`]; offset-less timestamps get the configured [`Zone`]
//!   (fixed offset or IANA zone).
//! - **Multi-line records**: [`Joiner`] decides, under a [`Multiline`] rule,
//!   which lines continue a record; the inputs (files, stdin) join them.
//!
//! The record layout is documented in `docs/record.md`; benchmark figures are
//! in `docs/BENCHMARKS.md`.
//!
//! ## Data
//!
//! The integration tests run over the loghub sample logs (Zhu et al.,
//! *Loghub: A Large Collection of System Log Datasets for AI-driven Log
//! Analytics*, ISSRE 2023; Jiang et al., *A Large-scale Evaluation for Log
//! Parsing Techniques: How Far are We?*, ISSTA 2024;
//! <https://github.com/logpai/loghub>), read from `shared/data/loghub`
//! beside the repository, never vendored.

mod detect;
mod error;
mod format;
mod formats;
mod multiline;
mod parser;
mod record;
mod scan;
mod severity;
mod timestamp;
mod zone;

pub use error::{ErrorKind, ParseError};
pub use format::{Format, UnknownFormat};
pub use multiline::{Join, Joiner, Multiline, UnknownMultiline};
pub use parser::{FormatChoice, LineContext, MAX_JSON_DEPTH_LIMIT, Parser, ParserConfig};
pub use record::{Fields, RawLine, Record, TimestampSource};
pub use severity::Severity;
pub use timestamp::{UnknownYearRule, YearRule};
pub use zone::{UnknownZone, Zone};
