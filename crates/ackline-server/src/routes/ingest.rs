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

fn value_line(v: serde_json::Value, raw: Option<&[u8]>, what: &str) -> Result<Line, String> {
    match v {
        serde_json::Value::String(s) => Ok(Line {
            payload: s.into_bytes(),
        }),
        serde_json::Value::Object(_) => {
            let payload = match raw {
                Some(r) => r.to_vec(),
                None => serde_json::to_vec(&v).map_err(|e| e.to_string())?,
            };
            Ok(Line { payload })
        }
        _ => Err(format!("{what}: expected a JSON object or string")),
    }
}

/// Splits a body into lines; the error names the line (1-based) or element (0-based).
pub fn parse(format: Format, body: &[u8]) -> Result<Vec<Line>, String> {
    let mut out = Vec::new();
    match format {
        Format::Text => {
            for l in body.split(|&b| b == b'\n') {
                let l = l.strip_suffix(b"\r").unwrap_or(l);
                if !l.iter().all(u8::is_ascii_whitespace) {
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
                let what = format!("line {}", n + 1);
                let v: serde_json::Value =
                    serde_json::from_slice(l).map_err(|e| format!("{what}: invalid JSON: {e}"))?;
                out.push(value_line(v, Some(l.trim_ascii()), &what)?);
            }
        }
        Format::Json => {
            let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
                format!(
                    "invalid JSON (line {}, column {}): {e}",
                    e.line(),
                    e.column()
                )
            })?;
            let serde_json::Value::Array(items) = v else {
                return Err("expected a JSON array of strings and objects".into());
            };
            for (i, v) in items.into_iter().enumerate() {
                out.push(value_line(v, None, &format!("element {i}"))?);
            }
        }
    }
    Ok(out)
}

/// `POST /v1/logs`.
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
    let lines = parse(format, &body).map_err(ApiError::bad_request)?;
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
    let n = lines.len();
    let batch: Vec<NewMessage> = lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| NewMessage {
            id: key.as_deref().map(|k| line_id(k, i)),
            headers: vec![("input".into(), "http".into())],
            payload: l.payload,
        })
        .collect();
    if n > 0 {
        let (_, commit) = broker
            .queue()
            .publish_nowait(batch)
            .map_err(|e| publish_error(&st, e))?;
        commit
            .await
            .map_err(|e| ApiError::unavailable(format!("queue write failed: {e}")))?;
        st.metrics.ingested(&queue, n as u64);
    }
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

    #[test]
    fn ndjson_errors_name_the_line_and_an_id_field_is_content() {
        let lines = parse(Format::Ndjson, b"{\"id\":\"a\",\"m\":1}\n\n\"plain\"\r\n").unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].payload, b"{\"id\":\"a\",\"m\":1}");
        assert_eq!(lines[1].payload, b"plain");
        let e = parse(Format::Ndjson, b"{}\n{}\n{oops\n").unwrap_err();
        assert!(e.starts_with("line 3: invalid JSON"), "{e}");
        let lines = parse(Format::Ndjson, b"{\"id\":5}\n{\"id\":null}").unwrap();
        assert_eq!(lines[0].payload, b"{\"id\":5}");
        assert_eq!(lines.len(), 2);
        let e = parse(Format::Ndjson, b"42").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn json_arrays_and_text_are_lossless() {
        let lines = parse(Format::Json, br#"["a", {"id":"x","k":"v"}]"#).unwrap();
        assert_eq!(lines[0].payload, b"a");
        assert_eq!(lines[1].payload, br#"{"id":"x","k":"v"}"#);
        let e = parse(Format::Json, b"[1,").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        let lines = parse(Format::Text, b"one\r\n\xff\x00two\n\n").unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].payload, b"\xff\x00two");
    }
}
