//! Dead-letter routes: a page of entries (filters: reason, error text, time range; paging by
//! key), one entry with its payload, replay and purge.
//!
//! Invariants:
//! - A page reads at most `limit + 1` entries when unfiltered, and scans at most
//!   [`MAX_SCAN`] entries when filtered (then says where to go on), so a request costs the
//!   same with 10 or 10 million dead letters.
//! - Strings from a message (id, reason, error, payload) leave here escaped
//!   ([`payload::escaped`]): printable text only.
//! - A replay selects at most `replay_max` entries by key, takes them from the rate limit
//!   whole (429 with `Retry-After` otherwise, nothing replayed), then replays exactly those
//!   keys: an entry that arrives meanwhile is not replayed by a filter chosen before it.
//! - A purge needs `"confirm": true` in its body (the page asks first).

use std::sync::Arc;
use std::time::Instant;

use ackline_broker::{DeadLetter, DlqSelector};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::Shared;
use crate::guard::{self, Refused};
use crate::host::{Host, Role};
use crate::payload::{self, PayloadView};
use crate::routes::{host_error, json_body};

/// Most entries a filtered page or selection examines per request.
pub const MAX_SCAN: usize = 100_000;
/// Entries read per call to the host while scanning.
const CHUNK: usize = 1000;
/// Characters of a string field shown in a list row.
const ROW_CHARS: usize = 200;
/// Characters of the payload preview in a list row.
const PREVIEW_CHARS: usize = 120;

/// Conditions on entries (all that are set must hold).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filter {
    /// The reason contains this text.
    pub reason: Option<String>,
    /// The last error contains this text.
    pub error: Option<String>,
    /// Dead-lettered at or after this time, Unix ms.
    pub since: Option<u64>,
    /// Dead-lettered before this time, Unix ms.
    pub until: Option<u64>,
}

impl Filter {
    fn normalised(mut self) -> Self {
        for f in [&mut self.reason, &mut self.error] {
            if f.as_deref().is_some_and(str::is_empty) {
                *f = None;
            }
        }
        self
    }

    fn is_empty(&self) -> bool {
        self.reason.is_none()
            && self.error.is_none()
            && self.since.is_none()
            && self.until.is_none()
    }

    fn matches(&self, d: &DeadLetter) -> bool {
        self.reason.as_deref().is_none_or(|r| d.reason.contains(r))
            && self
                .error
                .as_deref()
                .is_none_or(|e| d.last_error.contains(e))
            && self.since.is_none_or(|t| d.last_failure >= t)
            && self.until.is_none_or(|t| d.last_failure < t)
    }
}

/// Query of the list.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// Entries with keys after this.
    pub after: Option<u64>,
    /// At most this many (default 50, at most 500).
    pub limit: Option<usize>,
    /// The reason contains this text.
    pub reason: Option<String>,
    /// The last error contains this text.
    pub error: Option<String>,
    /// Dead-lettered at or after this time, Unix ms.
    pub since: Option<u64>,
    /// Dead-lettered before this time, Unix ms.
    pub until: Option<u64>,
}

/// A row of the list.
#[derive(Debug, Serialize)]
struct Row {
    key: u64,
    id: String,
    reason: String,
    attempts: u32,
    first_failure: u64,
    last_failure: u64,
    last_error: String,
    payload_len: usize,
    payload_preview: String,
}

fn row(d: &DeadLetter) -> Row {
    Row {
        key: d.key,
        id: payload::escaped(d.id.as_bytes(), ROW_CHARS),
        reason: payload::escaped(d.reason.as_bytes(), ROW_CHARS),
        attempts: d.attempts,
        first_failure: d.first_failure,
        last_failure: d.last_failure,
        last_error: payload::escaped(d.last_error.as_bytes(), ROW_CHARS),
        payload_len: d.payload.len(),
        payload_preview: payload::escaped(&d.payload, PREVIEW_CHARS),
    }
}

/// Entries of `queue` after `after` that match `filter`: at most `want` of them, examining at
/// most `max_scan`; and the key to go on after (`None`: the end was reached).
async fn scan<H: Host>(
    host: &H,
    queue: &str,
    after: Option<u64>,
    filter: &Filter,
    want: usize,
    max_scan: usize,
) -> Result<(Vec<DeadLetter>, Option<u64>), Refused> {
    let mut found = Vec::new();
    let mut cursor = after;
    let mut scanned = 0;
    let chunk = if filter.is_empty() {
        want.saturating_add(1).min(CHUNK)
    } else {
        CHUNK
    };
    loop {
        let batch = host
            .dlq_list(queue, cursor, chunk)
            .await
            .map_err(host_error)?;
        let n = batch.len();
        for d in batch {
            if found.len() == want {
                // One more exists beyond the page: go on after the last one returned.
                return Ok((found, cursor));
            }
            scanned += 1;
            cursor = Some(d.key);
            if filter.matches(&d) {
                found.push(d);
            }
        }
        if n < chunk {
            return Ok((found, None));
        }
        if scanned >= max_scan {
            return Ok((found, cursor));
        }
    }
}

/// `GET /ui/api/queues/{queue}/dlq`.
pub async fn list<H: Host>(
    State(st): State<Arc<Shared<H>>>,
    headers: HeaderMap,
    Path(queue): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, Refused> {
    guard::require(&st.sessions, &Method::GET, &headers, Role::Viewer)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let filter = Filter {
        reason: q.reason,
        error: q.error,
        since: q.since,
        until: q.until,
    }
    .normalised();
    let (entries, next) = scan(&*st.host, &queue, q.after, &filter, limit, MAX_SCAN).await?;
    let rows: Vec<Row> = entries.iter().map(row).collect();
    Ok(axum::Json(json!({ "entries": rows, "next_after": next })).into_response())
}

/// One entry in full.
#[derive(Debug, Serialize)]
struct Detail {
    #[serde(flatten)]
    row: Row,
    enqueued_at: u64,
    headers: Vec<(String, String)>,
    payload: PayloadView,
}

/// `GET /ui/api/queues/{queue}/dlq/{key}`.
pub async fn show<H: Host>(
    State(st): State<Arc<Shared<H>>>,
    headers: HeaderMap,
    Path((queue, key)): Path<(String, u64)>,
) -> Result<Response, Refused> {
    guard::require(&st.sessions, &Method::GET, &headers, Role::Viewer)?;
    let Some(d) = st.host.dlq_get(&queue, key).await.map_err(host_error)? else {
        return Err(Refused::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no dead letter with key {key}"),
        ));
    };
    let esc = |s: &str| payload::escaped(s.as_bytes(), 10_000);
    let detail = Detail {
        row: Row {
            id: esc(&d.id),
            reason: esc(&d.reason),
            last_error: esc(&d.last_error),
            ..row(&d)
        },
        enqueued_at: d.enqueued_at,
        headers: d.headers.iter().map(|(k, v)| (esc(k), esc(v))).collect(),
        payload: payload::view(&d.payload),
    };
    Ok(axum::Json(detail).into_response())
}

/// What a replay or purge applies to: exactly one of the three.
#[derive(Debug, Default, Deserialize)]
pub struct Selection {
    /// These keys.
    pub keys: Option<Vec<u64>>,
    /// Entries matching this filter.
    pub filter: Option<Filter>,
    /// Every entry.
    #[serde(default)]
    pub all: bool,
    /// A purge's confirmation.
    #[serde(default)]
    pub confirm: bool,
}

enum Chosen {
    Keys(Vec<u64>),
    Filter(Filter),
}

fn chosen(s: &Selection) -> Result<Chosen, Refused> {
    let bad = |m: &str| Refused::new(StatusCode::BAD_REQUEST, "bad_request", m);
    match (&s.keys, &s.filter, s.all) {
        (Some(k), None, false) if !k.is_empty() => Ok(Chosen::Keys(k.clone())),
        (Some(_), None, false) => Err(bad("no keys selected")),
        (None, Some(f), false) => Ok(Chosen::Filter(f.clone().normalised())),
        (None, None, true) => Ok(Chosen::Filter(Filter::default())),
        _ => Err(bad("give exactly one of keys, filter or all")),
    }
}

/// `POST /ui/api/queues/{queue}/dlq/replay`.
pub async fn replay<H: Host>(
    State(st): State<Arc<Shared<H>>>,
    headers: HeaderMap,
    Path(queue): Path<String>,
    body: Bytes,
) -> Result<Response, Refused> {
    guard::require(&st.sessions, &Method::POST, &headers, Role::Admin)?;
    let sel: Selection = json_body(&body)?;
    let max = st.cfg.replay_max;
    let (keys, more) = match chosen(&sel)? {
        Chosen::Keys(k) if k.len() > max => {
            return Err(Refused::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("at most {max} entries per replay"),
            ));
        }
        Chosen::Keys(k) => (k, false),
        Chosen::Filter(f) => {
            let (found, next) = scan(&*st.host, &queue, None, &f, max, usize::MAX).await?;
            (found.iter().map(|d| d.key).collect(), next.is_some())
        }
    };
    if keys.is_empty() {
        return Ok(
            axum::Json(json!({ "replayed": 0, "selected": 0, "more": false })).into_response(),
        );
    }
    if let Err(wait) = st.replays.take(keys.len(), Instant::now()) {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let mut r = Refused::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "replay limit ({} per second): try again in {secs} s",
                st.cfg.replay_rate
            ),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Ok(r);
    }
    let selected = keys.len();
    let n = st
        .host
        .dlq_replay(&queue, DlqSelector::Keys(keys))
        .await
        .map_err(host_error)?;
    tracing::info!(queue, replayed = n, "console: dead letters replayed");
    Ok(axum::Json(json!({ "replayed": n, "selected": selected, "more": more })).into_response())
}

/// `POST /ui/api/queues/{queue}/dlq/purge`.
pub async fn purge<H: Host>(
    State(st): State<Arc<Shared<H>>>,
    headers: HeaderMap,
    Path(queue): Path<String>,
    body: Bytes,
) -> Result<Response, Refused> {
    guard::require(&st.sessions, &Method::POST, &headers, Role::Admin)?;
    let sel: Selection = json_body(&body)?;
    if !sel.confirm {
        return Err(Refused::new(
            StatusCode::BAD_REQUEST,
            "unconfirmed",
            "a purge needs \"confirm\": true",
        ));
    }
    let selector = match chosen(&sel)? {
        Chosen::Keys(k) => DlqSelector::Keys(k),
        Chosen::Filter(f) if f.is_empty() => DlqSelector::All,
        Chosen::Filter(f) => {
            let (found, _) = scan(&*st.host, &queue, None, &f, usize::MAX, usize::MAX).await?;
            DlqSelector::Keys(found.iter().map(|d| d.key).collect())
        }
    };
    let n = match selector {
        DlqSelector::Keys(k) if k.is_empty() => 0,
        s => st.host.dlq_purge(&queue, s).await.map_err(host_error)?,
    };
    tracing::info!(queue, purged = n, "console: dead letters purged");
    Ok(axum::Json(json!({ "purged": n })).into_response())
}
