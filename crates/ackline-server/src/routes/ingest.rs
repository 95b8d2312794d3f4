//! `POST /v1/logs`: log lines in, durably queued, then 2xx.
//!
//! Body formats (`?format=ndjson|json|text`, else the `Content-Type`, else detected from the
//! first non-blank byte: `[` JSON array, `{` NDJSON, anything else text):
//! - NDJSON: one JSON value per line, an object (kept as its line) or a string (its text).
//!   An object's fields, `id` included, are log content only: they never name the message.
//! - JSON: an array of strings and objects, the same way.
//! - text: one line per `\n` (a trailing `\r` dropped), bytes kept as they are (lossless,
//!   invalid UTF-8 included). Blank lines are skipped in every format.
//!
//! Invariants:
//! - 2xx only after every line of the request is durable in the queue (one all-or-nothing
//!   publish); 413 over the body limit or for a line over the queue's message limit; 429
//!   with `Retry-After` when the queue is full; 400 naming the line (1-based) and the reason
//!   for a malformed body — in each refusal nothing of the request was queued.
//! - Ids: one line, one id, never taken from the line's content. With an `Idempotency-Key: K`
//!   header, line i (0-based among the request's kept lines) is `http:K:i`, so a producer
//!   that retries a request with the same key and body sends the same ids and the idempotent
//!   store keeps each line once; without one, each line gets a fresh id from the queue. Two
//!   lines of one request never share an id (their indexes differ), and no `http:` id equals
//!   another input's (`file:`, syslog's queue-assigned ids).
//! - Every message carries the header `input: http`.

use ackline_queue::NewMessage;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::AppState;

/// A body format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Newline-delimited JSON.
    Ndjson,
    /// A JSON array.
    Json,
    /// Text lines.
    Text,
}

/// Query of `POST /v1/logs`.
#[derive(Debug, Deserialize)]
pub struct IngestQuery {
    /// The body format (detected when absent).
    pub format: Option<Format>,
    /// The queue (the server's default when absent).
    pub queue: Option<String>,
}

/// One line to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The payload.
    pub payload: Vec<u8>,
}

/// The message id of line `index` of a request sent with `Idempotency-Key: key`.
pub fn line_id(key: &str, index: usize) -> String {
    format!("http:{key}:{index}")
}

/// Picks the format: query, then content type, then the first non-blank byte.
pub fn detect(explicit: Option<Format>, content_type: Option<&str>, body: &[u8]) -> Format {
    if let Some(f) = explicit {
        return f;
    }
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    if ct.starts_with("application/x-ndjson") || ct.starts_with("application/jsonl") {
        return Format::Ndjson;
    }
    if ct.starts_with("text/plain") {
        return Format::Text;
    }
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => Format::Json,
        Some(b'{') => Format::Ndjson,
        _ if ct.starts_with("application/json") => Format::Json,
        _ => Format::Text,
    }
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Malformed: the reason names the line (1-based) or element (0-based).
    Malformed(String),
    /// More lines than allowed (`limits.max_lines_per_request`).
    TooManyLines {
        /// The limit.
        max: usize,
    },
}

fn malformed<T>(m: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError::Malformed(m.into()))
}

/// Line and column (1-based) of byte `at` of `body`.
fn line_col(body: &[u8], at: usize) -> (usize, usize) {
    let before = body.get(..at).unwrap_or(body);
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let col = 1 + before.iter().rev().take_while(|&&b| b != b'\n').count();
    (line, col)
}

/// "invalid JSON (line L, column C): ..." for serde's error `e` in the value starting at byte
/// `at` of `body`.
fn invalid_at(body: &[u8], at: usize, e: &serde_json::Error) -> String {
    let (l0, c0) = line_col(body, at);
    let (line, col) = if e.line() <= 1 {
        (l0, c0 + e.column().saturating_sub(1))
    } else {
        (l0 + e.line() - 1, e.column())
    };
    format!("invalid JSON (line {line}, column {col}): {e}")
}

/// One JSON value (a line of NDJSON or an element of an array, surrounding whitespace
/// removed) as a payload: an object is kept as sent (`compact` drops whitespace between its
/// tokens first), a string is its text, anything else an error naming `what`. Only the
/// payload is allocated: an object is validated without building a `serde_json::Value`.
fn value_payload(v: &[u8], compact: bool) -> Result<Vec<u8>, NotPayload> {
    match v.first() {
        Some(b'"') => serde_json::from_slice::<String>(v)
            .map(String::into_bytes)
            .map_err(NotPayload::Invalid),
        Some(b'{') => {
            let text = std::str::from_utf8(v)
                .map_err(|e| NotPayload::Refused(format!("invalid JSON: not UTF-8 ({e})")))?;
            serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(NotPayload::Invalid)?;
            Ok(if compact { compact_json(v) } else { v.to_vec() })
        }
        _ => match serde_json::from_slice::<serde::de::IgnoredAny>(v) {
            Err(e) => Err(NotPayload::Invalid(e)),
            Ok(_) => Err(NotPayload::Refused(
                "expected a JSON object or string".into(),
            )),
        },
    }
}

/// Why a JSON value is not a payload.
#[derive(Debug)]
enum NotPayload {
    /// Not valid JSON: serde's error, whose line and column the caller turns into a place.
    Invalid(serde_json::Error),
    /// Not UTF-8, or valid JSON of the wrong kind.
    Refused(String),
}

/// Valid JSON text without the whitespace between its tokens.
fn compact_json(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let (mut in_str, mut escaped) = (false, false);
    for &b in v {
        if in_str {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            in_str = b == b'"';
            out.push(b);
        }
    }
    out
}

fn skip_ws(body: &[u8], mut i: usize) -> usize {
    while body
        .get(i)
        .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        i += 1;
    }
    i
}

/// The end (exclusive) of the JSON value starting at `i`, found by scanning (strings,
/// brackets); serde checks the value itself afterwards. `Err` is the offset where the body
/// ended inside it.
fn value_end(body: &[u8], i: usize) -> Result<usize, usize> {
    let mut j = i;
    match body.get(i) {
        None => Err(i),
        Some(b'"' | b'{' | b'[') => {
            let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
            while let Some(&b) = body.get(j) {
                j += 1;
                if in_str {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_str = false;
                        if depth == 0 {
                            return Ok(j);
                        }
                    }
                    continue;
                }
                match b {
                    b'"' => in_str = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return Ok(j);
                        }
                    }
                    _ => {}
                }
            }
            Err(j)
        }
        Some(_) => {
            while body
                .get(j)
                .is_some_and(|b| !matches!(b, b',' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
            {
                j += 1;
            }
            Ok(j)
        }
    }
}

/// A JSON array body, element by element, without a `serde_json::Value` tree: at most `max`
/// elements are kept, the next one is refused before it is read.
fn parse_array(body: &[u8], max: usize, out: &mut Vec<Line>) -> Result<(), ParseError> {
    let eof = |at: usize| {
        let (line, col) = line_col(body, at);
        malformed(format!(
            "invalid JSON (line {line}, column {col}): EOF while parsing a value"
        ))
    };
    let mut i = skip_ws(body, 0);
    if body.get(i) != Some(&b'[') {
        return match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Err(e) => malformed(invalid_at(body, 0, &e)),
            Ok(_) => malformed("expected a JSON array of strings and objects"),
        };
    }
    i = skip_ws(body, i + 1);
    if body.get(i) == Some(&b']') {
        i += 1;
    } else {
        let mut n = 0;
        loop {
            let end = match value_end(body, i) {
                Ok(end) => end,
                Err(at) => return eof(at),
            };
            if n >= max {
                return Err(ParseError::TooManyLines { max });
            }
            let v = body.get(i..end).unwrap_or_default();
            match value_payload(v, true) {
                Ok(payload) => out.push(Line { payload }),
                Err(NotPayload::Invalid(e)) => return malformed(invalid_at(body, i, &e)),
                Err(NotPayload::Refused(why)) => return malformed(format!("element {n}: {why}")),
            }
            n += 1;
            i = skip_ws(body, end);
            match body.get(i) {
                Some(b',') => i = skip_ws(body, i + 1),
                Some(b']') => {
                    i += 1;
                    break;
                }
                None => return eof(i),
                Some(_) => {
                    let (line, col) = line_col(body, i);
                    return malformed(format!(
                        "invalid JSON (line {line}, column {col}): expected `,` or `]`"
                    ));
                }
            }
        }
    }
    let rest = skip_ws(body, i);
    if rest < body.len() {
        let (line, col) = line_col(body, rest);
        return malformed(format!(
            "invalid JSON (line {line}, column {col}): trailing characters after the array"
        ));
    }
    Ok(())
}

/// Splits a body into at most `max` lines; the error names the line (1-based) or element
/// (0-based). Memory: the lines' payloads (each at most its bytes in the body) and one
/// `Line` each; nothing per line beyond that, and at most `max` of them before a refusal.
pub fn parse(format: Format, body: &[u8], max: usize) -> Result<Vec<Line>, ParseError> {
    let mut out = Vec::new();
    match format {
        Format::Text => {
            for l in body.split(|&b| b == b'\n') {
                let l = l.strip_suffix(b"\r").unwrap_or(l);
                if !l.iter().all(u8::is_ascii_whitespace) {
                    if out.len() >= max {
                        return Err(ParseError::TooManyLines { max });
                    }
                    out.push(Line {
                        payload: l.to_vec(),
                    });
                }
            }
        }
        Format::Ndjson => {
            for (n, l) in body.split(|&b| b == b'\n').enumerate() {
                let l = l.strip_suffix(b"\r").unwrap_or(l);
                if l.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if out.len() >= max {
                    return Err(ParseError::TooManyLines { max });
                }
                let what = format!("line {}", n + 1);
                match value_payload(l.trim_ascii(), false) {
                    Ok(payload) => out.push(Line { payload }),
                    Err(NotPayload::Invalid(e)) => {
                        return malformed(format!("{what}: invalid JSON: {e}"));
                    }
                    Err(NotPayload::Refused(why)) => return malformed(format!("{what}: {why}")),
                }
            }
        }
        Format::Json => parse_array(body, max, &mut out)?,
    }
    Ok(out)
}

/// `POST /v1/logs`.
///
/// The body is split, checked and handed to the queue on the blocking pool
/// (`spawn_blocking`), never on the async workers: a large body takes CPU time in proportion
/// to its lines, and `/healthz` and every other request keep being served meanwhile. Only the
/// durable commit is awaited here.
pub async fn ingest(
    State(st): State<AppState>,
    Query(q): Query<IngestQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    if st.is_draining() {
        return Err(ApiError::unavailable("the server is shutting down"));
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let format = detect(q.format, ct, &body);
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(s) if !s.is_empty() && s.len() <= 200 => Some(s.to_string()),
            _ => {
                return Err(ApiError::bad_request(
                    "Idempotency-Key must be 1 to 200 visible ASCII characters",
                ));
            }
        },
    };
    let queue = q.queue.unwrap_or_else(|| st.cfg.default_queue.clone());
    let broker = st.queues.get(&queue)?;
    let max = st.cfg.limits.max_lines_per_request;
    let st2 = st.clone();
    let queued = tokio::task::spawn_blocking(move || {
        let lines = parse(format, &body, max).map_err(|e| match e {
            ParseError::Malformed(m) => ApiError::bad_request(m),
            ParseError::TooManyLines { max } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "the body has more than {max} lines (limits.max_lines_per_request; \
                     server.max_lines_per_request): send them in smaller requests; \
                     nothing was queued"
                ),
            ),
        })?;
        drop(body);
        let n = lines.len();
        if n == 0 {
            return Ok(None);
        }
        let batch: Vec<NewMessage> = lines
            .into_iter()
            .enumerate()
            .map(|(i, l)| NewMessage {
                id: key.as_deref().map(|k| line_id(k, i)),
                headers: vec![("input".into(), "http".into())],
                payload: l.payload,
            })
            .collect();
        let (_, commit) = broker
            .queue()
            .publish_nowait(batch)
            .map_err(|e| publish_error(&st2, e))?;
        Ok::<_, ApiError>(Some((n, commit)))
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "fatal",
            format!("ingest task failed: {e}"),
        )
    })??;
    let n = match queued {
        None => 0,
        Some((n, commit)) => {
            commit
                .await
                .map_err(|e| ApiError::unavailable(format!("queue write failed: {e}")))?;
            st.metrics.ingested(&queue, n as u64);
            n
        }
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "queued": n, "queue": queue })),
    )
        .into_response())
}

fn publish_error(st: &AppState, e: ackline_queue::PublishError) -> ApiError {
    use ackline_queue::PublishError as E;
    match e {
        E::Full { .. } => ApiError {
            retry_after: Some(st.cfg.limits.retry_after),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "full", e.to_string())
        },
        E::TooLarge { index, size, max } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("line index {index} is {size} bytes framed, over the maximum of {max}"),
        ),
        E::Invalid { .. } => ApiError::bad_request(e.to_string()),
        E::Queue(e) => ApiError::unavailable(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn formats_are_detected() {
        assert_eq!(detect(None, None, b"  [\"a\"]"), Format::Json);
        assert_eq!(detect(None, None, b"{\"a\":1}\n{}"), Format::Ndjson);
        assert_eq!(detect(None, None, b"hello"), Format::Text);
        assert_eq!(detect(None, Some("text/plain"), b"{}"), Format::Text);
        assert_eq!(
            detect(Some(Format::Text), Some("application/json"), b"[]"),
            Format::Text
        );
    }

    fn malformed_text(e: ParseError) -> String {
        match e {
            ParseError::Malformed(m) => m,
            other => panic!("expected a malformed body, got {other:?}"),
        }
    }

    #[test]
    fn ndjson_errors_name_the_line_and_an_id_field_is_content() {
        let lines = parse(
            Format::Ndjson,
            b"{\"id\":\"a\",\"m\":1}\n\n\"plain\"\r\n",
            10,
        )
        .unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].payload, b"{\"id\":\"a\",\"m\":1}");
        assert_eq!(lines[1].payload, b"plain");
        let e = malformed_text(parse(Format::Ndjson, b"{}\n{}\n{oops\n", 10).unwrap_err());
        assert!(e.starts_with("line 3: invalid JSON"), "{e}");
        let lines = parse(Format::Ndjson, b"{\"id\":5}\n{\"id\":null}", 10).unwrap();
        assert_eq!(lines[0].payload, b"{\"id\":5}");
        assert_eq!(lines.len(), 2);
        let e = malformed_text(parse(Format::Ndjson, b"42", 10).unwrap_err());
        assert!(
            e.contains("line 1") && e.contains("object or string"),
            "{e}"
        );
        let e = malformed_text(parse(Format::Ndjson, b"{\"a\":1} x", 10).unwrap_err());
        assert!(e.contains("line 1: invalid JSON"), "{e}");
        let e = malformed_text(parse(Format::Ndjson, b"{\"a\":\"\xff\"}", 10).unwrap_err());
        assert!(e.contains("line 1: invalid JSON"), "{e}");
    }

    #[test]
    fn json_arrays_and_text_are_lossless() {
        let lines = parse(Format::Json, br#"["a", {"id":"x","k":"v"}]"#, 10).unwrap();
        assert_eq!(lines[0].payload, b"a");
        assert_eq!(lines[1].payload, br#"{"id":"x","k":"v"}"#);
        let lines = parse(
            Format::Json,
            b" [ {\n \"b\" : \"x y\\\" }\" ,\"a\":[1, 2]} , \"s\\n\" ] \n",
            10,
        )
        .unwrap();
        assert_eq!(lines[0].payload, br#"{"b":"x y\" }","a":[1,2]}"#);
        assert_eq!(lines[1].payload, b"s\n");
        assert!(parse(Format::Json, b"[]", 10).unwrap().is_empty());
        let e = malformed_text(parse(Format::Json, b"[\"a\",", 10).unwrap_err());
        assert!(e.contains("line 1"), "{e}");
        let e = malformed_text(parse(Format::Json, b"[\"a\",\n  ", 10).unwrap_err());
        assert!(e.contains("line 2"), "{e}");
        let e = malformed_text(parse(Format::Json, b"[\"a\", 5]", 10).unwrap_err());
        assert!(e.contains("element 1"), "{e}");
        let e = malformed_text(parse(Format::Json, b"[\"a\"\n {\"x\":}]", 10).unwrap_err());
        assert!(e.contains("line 2"), "{e}");
        let e = malformed_text(parse(Format::Json, b"[\"a\"] x", 10).unwrap_err());
        assert!(e.contains("trailing"), "{e}");
        let e = malformed_text(parse(Format::Json, b"{\"a\":1}", 10).unwrap_err());
        assert!(e.contains("expected a JSON array"), "{e}");
        let lines = parse(Format::Text, b"one\r\n\xff\x00two\n\n", 10).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].payload, b"\xff\x00two");
    }

    #[test]
    fn lines_beyond_the_limit_refuse_the_body_blank_lines_not_counted() {
        let too_many = ParseError::TooManyLines { max: 3 };
        assert_eq!(parse(Format::Text, b"a\n\nb\n \nc\n", 3).unwrap().len(), 3);
        assert_eq!(parse(Format::Text, b"a\nb\nc\nd", 3).unwrap_err(), too_many);
        assert_eq!(
            parse(Format::Ndjson, b"{}\n\n{}\n{}\n", 3).unwrap().len(),
            3
        );
        assert_eq!(
            parse(Format::Ndjson, b"{}\n{}\n{}\n{}", 3).unwrap_err(),
            too_many
        );
        assert_eq!(parse(Format::Json, b"[{},{},\"x\"]", 3).unwrap().len(), 3);
        assert_eq!(
            parse(Format::Json, b"[{},{},\"x\",\"y\"]", 3).unwrap_err(),
            too_many
        );
    }
}
