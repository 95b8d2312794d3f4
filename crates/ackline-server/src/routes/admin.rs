//! Admin routes: health, readiness, metrics, the OpenAPI document, queues and their stats,
//! dead-letter list/show/replay/purge.
//!
//! Invariants: reading routes never create a queue (an unknown name is 404; only
//! `PUT /v1/queues/{queue}` does, with the admin scope); replay and purge take an explicit
//! selector (`{"all": true}` for everything), never an empty body.

use ackline_broker::{Broker, DeadLetters};
use ackline_queue::QueueStats;
use ackline_wire as wire;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;

use crate::error::ApiError;
use crate::routes::json;
use crate::state::AppState;

/// `GET /healthz`: the process serves HTTP.
pub async fn healthz() -> Response {
    Json(serde_json::json!({ "status": "ok" })).into_response()
}

/// `GET /readyz`: not draining, and the default queue is open and its writer completes a
/// sync. The check runs at most once per `limits.readiness_interval`, one at a time; requests
/// in between get its result (an open route must not let clients force an fsync each).
pub async fn readyz(State(st): State<AppState>) -> Result<Response, ApiError> {
    if st.is_draining() {
        return Err(ApiError::unavailable("shutting down"));
    }
    let mut last = st.readiness.checking.lock().await;
    let fresh = last
        .as_ref()
        .is_some_and(|(at, _)| at.elapsed() < st.cfg.limits.readiness_interval);
    if !fresh {
        st.readiness
            .checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let r = check_default_queue(&st).await;
        *last = Some((std::time::Instant::now(), r));
    }
    match last.as_ref().map(|(_, r)| r) {
        Some(Err(e)) => Err(ApiError::unavailable(e.clone())),
        _ => Ok(Json(serde_json::json!({ "status": "ready" })).into_response()),
    }
}

async fn check_default_queue(st: &AppState) -> Result<(), String> {
    let q = st
        .queues
        .get(&st.cfg.default_queue)
        .map_err(|e| e.message)?;
    let queue = q.queue().clone();
    tokio::task::spawn_blocking(move || queue.sync())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(State(st): State<AppState>) -> Result<Response, ApiError> {
    let text = st
        .metrics
        .encode()
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "fatal", e.to_string()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// `GET /v1/openapi.json`.
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::DOCUMENT,
    )
        .into_response()
}

/// `GET /v1/queues`: every queue with its counts.
pub async fn list_queues(State(st): State<AppState>) -> Result<Response, ApiError> {
    let mut out = Vec::new();
    for name in st.queues.names() {
        let q = st.queues.get(&name)?;
        out.push(stats(&name, &q.queue().stats()));
    }
    Ok(Json(wire::QueueList { queues: out }).into_response())
}

/// `PUT /v1/queues/{queue}`: creates the queue (201), or finds it (200); 403 at
/// `max_queues`.
pub async fn create_queue(
    State(st): State<AppState>,
    Path(queue): Path<String>,
) -> Result<Response, ApiError> {
    let existed = st.queues.exists(&queue);
    let q = st.queues.get(&queue)?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(stats(&queue, &q.queue().stats()))).into_response())
}

/// `GET /v1/queues/{queue}/stats`.
pub async fn queue_stats(
    State(st): State<AppState>,
    Path(queue): Path<String>,
) -> Result<Response, ApiError> {
    let q = st.queues.existing(&queue)?;
    // Through the broker, so the counts are the ones every backend reports.
    let _ = q.stats().await?;
    Ok(Json(stats(&queue, &q.queue().stats())).into_response())
}

/// Query of `GET /v1/queues/{queue}/dlq`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// Entries with keys after this.
    pub after: Option<u64>,
    /// At most this many (default 100, at most 10,000).
    pub limit: Option<usize>,
}

/// `GET /v1/queues/{queue}/dlq`.
pub async fn dlq_list(
    State(st): State<AppState>,
    Path(queue): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let b = st.queues.existing(&queue)?;
    let limit = q.limit.unwrap_or(100).min(10_000);
    let list = b.dlq_list(q.after, limit).await?;
    let entries = list.into_iter().map(wire::DeadLetter::from).collect();
    Ok(Json(wire::DeadLetterList { entries }).into_response())
}

/// `GET /v1/queues/{queue}/dlq/{key}`.
pub async fn dlq_get(
    State(st): State<AppState>,
    Path((queue, key)): Path<(String, u64)>,
) -> Result<Response, ApiError> {
    let b = st.queues.existing(&queue)?;
    match b.dlq_get(key).await? {
        Some(d) => Ok(Json(wire::DeadLetter::from(d)).into_response()),
        None => Err(ApiError::not_found(format!(
            "no dead letter with key {key}"
        ))),
    }
}

/// `POST /v1/queues/{queue}/dlq/replay`.
pub async fn dlq_replay(
    State(st): State<AppState>,
    Path(queue): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let sel: wire::Selector = json(&body)?;
    let b = st.queues.existing(&queue)?;
    let n = b
        .dlq_replay(selector(sel)?)
        .await
        .map_err(|e| crate::routes::lease::full_after(&st, e))?;
    Ok(Json(wire::Replayed { replayed: n }).into_response())
}

/// `POST /v1/queues/{queue}/dlq/purge`.
pub async fn dlq_purge(
    State(st): State<AppState>,
    Path(queue): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let sel: wire::Selector = json(&body)?;
    let b = st.queues.existing(&queue)?;
    let n = b.dlq_purge(selector(sel)?).await?;
    Ok(Json(wire::Purged { purged: n }).into_response())
}

/// The broker's selector; 400 unless exactly one kind is given, and for a blank `matching`.
fn selector(sel: wire::Selector) -> Result<ackline_broker::DlqSelector, ApiError> {
    sel.into_broker()
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// A queue's counts as the API reports them (the engine's, which has more than the broker
/// trait's: `ready`, `pending_bytes`).
fn stats(queue: &str, s: &QueueStats) -> wire::Stats {
    wire::Stats {
        queue: queue.to_string(),
        pending: s.pending,
        ready: s.ready,
        in_flight: s.leased,
        delayed: s.delayed,
        dead_letters: s.dead_letters,
        pending_bytes: s.pending_bytes,
        published: s.published,
        delivered: s.delivered,
        redelivered: s.redelivered,
        acked: s.acked,
        nacked: s.nacked,
        dead_lettered: s.dead_lettered,
        lease_expired: s.lease_expired,
    }
}
