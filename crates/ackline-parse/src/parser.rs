//! The entry point: configuration, per-line context, and the
//! detect → parse → fall back pipeline.
//!
//! Invariants:
//! - [`Parser::parse`] never panics, whatever the bytes, and returns either
//!   a [`Record`] or a typed [`ParseError`];
//! - in auto mode a line no detected candidate accepts is tried with the
//!   generic header extractor ([`Format::Generic`]) last, so it never
//!   changes what a named format parses nor slows a line one accepts;
//! - in lenient mode (`strict: false`) it never returns an error: a line no
//!   format accepts (generic included) becomes a [`Format::Raw`] record;
//! - in strict mode it never returns a `Raw` record (unless `Raw` is the
//!   fixed format): the error says which format failed, where and why;
//! - the record's `raw` is exactly the input bytes; parsing works on the
//!   line without its terminator (`\n`, `\r\n` or `\r`) and without a
//!   leading UTF-8 BOM, and error positions are offsets into the input.

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, ParseError};
use crate::format::{Format, UnknownFormat};
use crate::formats::{self, Env, Parts};
use crate::record::{RawLine, Record, TimestampSource};
use crate::timestamp::{TimeEnv, YearRule};
use crate::zone::Zone;

/// serde_json refuses nesting beyond 128 on its own; our limit stays below.
pub const MAX_JSON_DEPTH_LIMIT: usize = 127;

/// Which format(s) to parse lines as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FormatChoice {
    /// Detect the format of each line.
    #[default]
    Auto,
    /// Every line of the input is in this format.
    Fixed(Format),
}

impl FromStr for FormatChoice {
    type Err = UnknownFormat;

    /// `auto`, or a format name as accepted by [`Format::from_str`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("auto") {
            Ok(FormatChoice::Auto)
        } else {
            s.parse().map(FormatChoice::Fixed)
        }
    }
}

impl std::fmt::Display for FormatChoice {
    /// `auto` or the format's name: what [`FormatChoice::from_str`] reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FormatChoice::Auto => f.write_str("auto"),
            FormatChoice::Fixed(format) => f.write_str(format.name()),
        }
    }
}

/// How a [`Parser`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParserConfig {
    /// Detect per line, or one fixed format.
    pub format: FormatChoice,
    /// `true`: a line the format(s) reject is an error (for dead-lettering);
    /// `false`: it becomes a [`Format::Raw`] record.
    pub strict: bool,
    /// How to complete timestamps without a year.
    pub year_rule: YearRule,
    /// The zone of timestamps that state no UTC offset (a fixed offset or
    /// an IANA zone with its daylight saving rules).
    pub timezone: Zone,
    /// Deepest JSON nesting accepted (capped at [`MAX_JSON_DEPTH_LIMIT`]).
    pub max_json_depth: usize,
}

impl Default for ParserConfig {
    fn default() -> Self {
        Self {
            format: FormatChoice::Auto,
            strict: false,
            year_rule: YearRule::Infer,
            timezone: Zone::utc(),
            max_json_depth: 64,
        }
    }
}

/// Where a line comes from and when it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineContext {
    /// The line's stable id (the queue message id), copied into the record.
    pub id: String,
    /// The input's name (file path, socket, ...), shared between its lines.
    pub input: Arc<str>,
    /// When the line was read: the record's timestamp when the line has
    /// none, and the reference time for [`YearRule::Infer`].
    pub ingest_time: DateTime<Utc>,
    /// The modification time of the file the line came from, when the
    /// input states it: the reference time of [`YearRule::FileMtime`].
    pub file_mtime: Option<DateTime<Utc>>,
}

impl LineContext {
    /// A context with `ingest_time` = now.
    #[must_use]
    pub fn now(id: impl Into<String>, input: Arc<str>) -> Self {
        Self {
            id: id.into(),
            input,
            ingest_time: DateTime::<Utc>::from(std::time::SystemTime::now()),
            file_mtime: None,
        }
    }
}

/// Turns lines into records. Cheap to clone and share between threads.
#[derive(Debug, Clone, Default)]
pub struct Parser {
    config: ParserConfig,
}

impl Parser {
    /// A parser with `config` (`max_json_depth` is capped, see
    /// [`MAX_JSON_DEPTH_LIMIT`]).
    #[must_use]
    pub fn new(mut config: ParserConfig) -> Self {
        config.max_json_depth = config.max_json_depth.min(MAX_JSON_DEPTH_LIMIT);
        Self { config }
    }

    /// The configuration in force.
    #[must_use]
    pub fn config(&self) -> &ParserConfig {
        &self.config
    }

    /// Parses one line. `line` may include its terminator, which is kept in
    /// the raw line but ignored for parsing.
    ///
    /// # Errors
    /// Only in strict mode: the [`ParseError`] of the fixed format; in auto
    /// mode, that of the most plausible candidate format (one whose shape
    /// matched but a value did not, else the one that got furthest), or
    /// [`ErrorKind::NoFormatMatched`] when no format was a candidate.
    pub fn parse(&self, line: &[u8], ctx: &LineContext) -> Result<Record, ParseError> {
        let (offset, body) = body_of(line);
        let env = Env {
            time: TimeEnv {
                reference: ctx.ingest_time,
                file_mtime: ctx.file_mtime,
                zone: self.config.timezone,
                year_rule: self.config.year_rule,
            },
            max_json_depth: self.config.max_json_depth,
            nested: false,
        };
        let outcome = if body.is_empty() && self.config.format != FormatChoice::Fixed(Format::Raw) {
            Err(ParseError::new(
                match self.config.format {
                    FormatChoice::Fixed(f) => Some(f),
                    FormatChoice::Auto => None,
                },
                offset,
                ErrorKind::Empty,
            ))
        } else {
            match self.config.format {
                FormatChoice::Fixed(format) => formats::parse_as(format, body, &env)
                    .map(|parts| (format, parts))
                    .map_err(|(pos, kind)| ParseError::new(Some(format), offset + pos, kind)),
                FormatChoice::Auto => auto(body, offset, &env),
            }
        };
        match outcome {
            Ok((format, parts)) => Ok(build(format, parts, line, ctx, None)),
            Err(err) if self.config.strict => Err(err),
            Err(err) => {
                let reason = match (self.config.format, &err.kind) {
                    (FormatChoice::Fixed(_), _) => Some(err.to_string()),
                    _ => None,
                };
                Ok(build(Format::Raw, formats::raw(body), line, ctx, reason))
            }
        }
    }
}

/// Strips the terminator and a leading BOM: (offset of body, body).
fn body_of(line: &[u8]) -> (usize, &[u8]) {
    let mut body = line;
    if let Some(b) = body.strip_suffix(b"\n") {
        body = b;
    }
    if let Some(b) = body.strip_suffix(b"\r") {
        body = b;
    }
    match body.strip_prefix(b"\xEF\xBB\xBF") {
        Some(b) => (3, b),
        None => (0, body),
    }
}

fn auto(body: &[u8], offset: usize, env: &Env) -> Result<(Format, Parts), ParseError> {
    // The reported error: a value error (bad timestamp, priority, JSON...)
    // beats a shape error (`Expected`), since that format's shape matched;
    // among shape errors, the candidate that got furthest wins; on ties, the
    // earlier (more specific) candidate.
    let rank = |e: &ParseError| (!matches!(e.kind, ErrorKind::Expected(_)), e.position);
    let mut best: Option<ParseError> = None;
    for &format in crate::detect::candidates(body) {
        match formats::parse_as(format, body, env) {
            Ok(parts) => return Ok((format, parts)),
            Err((pos, kind)) => {
                let err = ParseError::new(Some(format), offset + pos, kind);
                if best.as_ref().is_none_or(|b| rank(&err) > rank(b)) {
                    best = Some(err);
                }
            }
        }
    }
    // Last before raw: the generic header extractor (its own error is never
    // the one reported: a named candidate's says more).
    if let Some(parts) = generic_fallback(body, env) {
        return Ok((Format::Generic, parts));
    }
    Err(best.unwrap_or(ParseError::new(None, offset, ErrorKind::NoFormatMatched)))
}

/// The generic header extractor, kept out of line (and cold) so that the
/// detection loop a named line takes is compiled as before.
#[cold]
#[inline(never)]
fn generic_fallback(body: &[u8], env: &Env) -> Option<Parts> {
    formats::generic::parse(body, env).ok()
}

fn build(
    format: Format,
    parts: Parts,
    line: &[u8],
    ctx: &LineContext,
    parse_error: Option<String>,
) -> Record {
    let (timestamp, timestamp_source) = parts
        .timestamp
        .unwrap_or_else(|| (ctx.ingest_time.fixed_offset(), TimestampSource::Ingest));
    Record {
        id: ctx.id.clone(),
        input: Arc::clone(&ctx.input),
        format: parts.variant.unwrap_or(format),
        timestamp,
        timestamp_source,
        severity: parts.severity,
        host: parts.host,
        app: parts.app,
        pid: parts.pid,
        message: parts.message,
        fields: parts.fields,
        raw: RawLine::from_bytes(line),
        parse_error,
    }
}
