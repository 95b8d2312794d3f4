//! The normalised record every line becomes.
//!
//! Invariants (documented field by field in `docs/record.md`):
//! - [`Record::raw`] holds exactly the bytes handed to the parser, terminator
//!   included: `record.raw.as_bytes() == line` always holds.
//! - every record has a timestamp; [`Record::timestamp_source`] says whether
//!   it came from the line or is the ingest time.
//! - serialised field names are stable; optional fields that are absent are
//!   omitted from the serialised form and default to absent on read.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::format::Format;
use crate::severity::Severity;

/// Extra key → value pairs a format carries beyond the common fields.
/// Ordered by key so serialised output is deterministic.
pub type Fields = BTreeMap<String, serde_json::Value>;

/// A parsed, normalised log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The line's stable id (from [`LineContext::id`](crate::LineContext::id)): the queue
    /// message id, which the stores use as their idempotency key.
    pub id: String,
    /// The input the line came from (from [`LineContext::input`](crate::LineContext::input)).
    pub input: Arc<str>,
    /// The format that parsed the line; [`Format::Raw`] for the fallback.
    pub format: Format,
    /// When the event happened, with the UTC offset it was written in (or
    /// the configured offset when the line has none, or UTC for ingest time).
    pub timestamp: DateTime<FixedOffset>,
    /// Where [`Record::timestamp`] came from.
    pub timestamp_source: TimestampSource,
    /// Severity on the syslog scale, when the line states one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// The host that emitted the line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The application, service, logger, tag or component that emitted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The numeric process id, when the line states one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u64>,
    /// The free-text message (empty when the line has none).
    pub message: String,
    /// Everything else the format carries (see `docs/record.md` per format).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: Fields,
    /// The original line, lossless.
    #[serde(flatten)]
    pub raw: RawLine,
    /// Why the line fell back to [`Format::Raw`] when a specific format had
    /// been selected (fixed, or recognised by detection) but failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parse_error: Option<String>,
}

/// Where a record's timestamp came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampSource {
    /// Fully stated by the line, date, time and UTC offset.
    Line,
    /// Date and time from the line, which states no offset: the configured
    /// [`ParserConfig::timezone`](crate::ParserConfig::timezone) was applied.
    LineAssumedOffset,
    /// Month, day and time from the line, which states neither year nor
    /// offset: the year was inferred (see [`YearRule`](crate::YearRule)) and
    /// the configured offset applied.
    LineInferredYear,
    /// The line has no (usable) timestamp: this is the ingest time.
    Ingest,
}

/// The original line, byte for byte.
///
/// Serialised as `"raw": "<text>"` when the line is valid UTF-8, otherwise as
/// `"raw_base64": "<standard base64 with padding>"`, so the JSON form is
/// lossless for any bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RawLine {
    /// The line is valid UTF-8.
    #[serde(rename = "raw")]
    Text(String),
    /// The line is not valid UTF-8.
    #[serde(rename = "raw_base64", with = "base64_bytes")]
    Bytes(Vec<u8>),
}

impl RawLine {
    /// Keeps `line` exactly: as text when it is valid UTF-8.
    #[must_use]
    pub fn from_bytes(line: &[u8]) -> Self {
        match std::str::from_utf8(line) {
            Ok(s) => RawLine::Text(s.to_owned()),
            Err(_) => RawLine::Bytes(line.to_vec()),
        }
    }

    /// The original bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            RawLine::Text(s) => s.as_bytes(),
            RawLine::Bytes(b) => b,
        }
    }

    /// Whether the line was valid UTF-8.
    #[must_use]
    pub fn is_utf8(&self) -> bool {
        matches!(self, RawLine::Text(_))
    }
}

mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

impl Record {
    /// The raw line as base64, whatever its encoding (convenience for sinks
    /// that want one representation).
    #[must_use]
    pub fn raw_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.raw.as_bytes())
    }
}
