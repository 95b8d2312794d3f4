//! The lease API: publish, sessions, receive (long-poll), settle, close.
//!
//! Invariants:
//! - A publish answers 2xx only after its batch is durable (the broker's `publish` awaits the
//!   commit); a full queue answers 429 with `Retry-After`, never a silent drop.
//! - A settle answers only after its settlements are durable, one result per item, in order.
//! - A settle naming an unknown session (closed, dropped after its lease plus the idle grace,
//!   or the server restarted) is 404 `session_not_found`: nothing is applied. A settle item
//!   with attempt 0 (never a delivery) makes the whole request 400. An item for a delivery the
//!   session does not hold is answered without reaching the engine (see `sessions`), so only
//!   the session a delivery was handed to can settle it, and the engine's (key, attempt)
//!   fencing then refuses it if it was redelivered since.
//! - A publish carries at most `limits.max_lines_per_request` messages (413 beyond, nothing
//!   queued), and its body is parsed on the blocking pool.
//! - Bounds: a session's `lease_ms`, an `extend`'s and a nack's `delay_ms` are at most
//!   `limits.max_lease` (400 beyond, nothing applied); a token has at most `limits.max_sessions_per_token` sessions
//!   open (429 `too_many_sessions` beyond); a nack's error and a reject's reason are cut to
//!   `limits.max_reason_bytes` with a `… [truncated N bytes]` marker before the engine sees
//!   them.
//! - A receive waits at most `limits.max_receive_wait` and returns at most
//!   `limits.max_receive_batch` deliveries.
//! - An ack through a session that handed the delivery out is observed once in
//!   `ackline_end_to_end_latency_seconds`, after the settlement is durable and only if it
//!   succeeded (from the message's `enqueued_at` to then, on the server's clock).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ackline_broker::{Broker, Consumer as _, ConsumerOptions, Message, Settlement, Tag};
use ackline_wire as wire;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::error::ApiError;
use crate::routes::json;
use crate::sessions::Owner;
use crate::state::AppState;

/// `POST /v1/queues/{queue}/messages`.
pub async fn publish(
    State(st): State<AppState>,
    Path(queue): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    // Parsed on the blocking pool, like ingest: a body of many small messages takes CPU time
    // in proportion to their number.
    let req: wire::PublishRequest = tokio::task::spawn_blocking(move || json(&body))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "fatal",
                format!("publish task failed: {e}"),
            )
        })??;
    let max = st.cfg.limits.max_lines_per_request;
    if req.messages.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "{} messages in one publish, over the maximum of {max} \
                 (limits.max_lines_per_request; server.max_lines_per_request): nothing was queued",
                req.messages.len()
            ),
        ));
    }
    let broker = st.queues.get(&queue)?;
    let mut batch = Vec::with_capacity(req.messages.len());
    for (i, m) in req.messages.into_iter().enumerate() {
        let payload = wire::decode(m.payload, m.encoding)
            .map_err(|e| ApiError::bad_request(format!("message {i}: {e}")))?;
        let id =
            m.id.unwrap_or_else(|| format!("{:032x}", rand::random::<u128>()));
        batch.push(Message {
            id,
            headers: m.headers,
            payload,
        });
    }
    let n = batch.len();
    broker
        .publish(batch)
        .await
        .map_err(|e| full_after(&st, e))?;
    Ok(Json(wire::Published { published: n }).into_response())
}

/// Maps a broker error, with the configured `Retry-After` on backpressure.
pub fn full_after(st: &AppState, e: ackline_broker::BrokerError) -> ApiError {
    let mut e = ApiError::from(e);
    if e.code == "full" {
        e.retry_after = Some(st.cfg.limits.retry_after);
    }
    e
}

/// Which configured token a request was let in with (its index); `None` when the server has
/// no tokens. Only called after the auth layer accepted the request, so the secret presented
/// is one of them.
fn owner(st: &AppState, headers: &HeaderMap) -> Owner {
    let presented = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, secret) = presented.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let secret = secret.trim().as_bytes();
    st.cfg.tokens.iter().position(|t| t.secret() == secret)
}

/// 400 unless `ms` (a lease or a nack's delay) is within `limits.max_lease`.
fn check_lease(st: &AppState, what: &str, ms: u64) -> Result<(), ApiError> {
    let max = st.cfg.limits.max_lease;
    if u128::from(ms) > max.as_millis() {
        return Err(ApiError::bad_request(format!(
            "{what} {ms} is over the maximum of {} ms ({} h; limits.max_lease)",
            max.as_millis(),
            max.as_secs_f64() / 3600.0
        )));
    }
    Ok(())
}

/// `POST /v1/queues/{queue}/sessions`.
pub async fn open_session(
    State(st): State<AppState>,
    Path(queue): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: wire::OpenSession = if body.is_empty() {
        json(&Bytes::from_static(b"{}"))?
    } else {
        json(&body)?
    };
    if req.prefetch == 0 || req.lease_ms == 0 {
        return Err(ApiError::bad_request(
            "prefetch and lease_ms must be above 0",
        ));
    }
    check_lease(&st, "lease_ms", req.lease_ms)?;
    if st.is_draining() {
        return Err(ApiError::unavailable("the server is shutting down"));
    }
    let broker = st.queues.get(&queue)?;
    let opts = ConsumerOptions {
        prefetch: req.prefetch,
        lease: Duration::from_millis(req.lease_ms),
    };
    let consumer = broker.consumer(opts).await?;
    let max = st.cfg.limits.max_sessions_per_token;
    let id = st
        .sessions
        .open(&queue, consumer, opts, owner(&st, &headers), max)
        .map_err(|n| ApiError {
            retry_after: Some(st.cfg.limits.retry_after),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_sessions",
                format!(
                    "this token has {n} sessions open, the maximum (limits.max_sessions_per_token, \
                     server.max_sessions_per_token): close unused ones; one not heard from is \
                     dropped its lease plus 30 s after its last request"
                ),
            )
        })?;
    let body = wire::Session {
        session: id,
        prefetch: req.prefetch,
        lease_ms: req.lease_ms,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

fn session_not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "session_not_found",
        format!("no session {id}: it expired, was closed, or the server restarted"),
    )
}

/// `POST /v1/queues/{queue}/sessions/{session}/receive`.
pub async fn receive(
    State(st): State<AppState>,
    Path((queue, session)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: wire::ReceiveRequest = json(&body)?;
    let busy = st
        .sessions
        .enter(&queue, &session)
        .ok_or_else(|| session_not_found(&session))?;
    let limits = &st.cfg.limits;
    let wait = Duration::from_millis(req.wait_ms).min(limits.max_receive_wait);
    let max = req.max.min(limits.max_receive_batch);
    let got = busy.session().consumer.receive(max, wait).await?;
    busy.session().handed_out(&got);
    drop(busy);
    let deliveries = got.into_iter().map(wire::Delivery::from).collect();
    Ok(Json(wire::Deliveries { deliveries }).into_response())
}

/// `POST /v1/queues/{queue}/sessions/{session}/settle`.
pub async fn settle(
    State(st): State<AppState>,
    Path((queue, session)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: wire::SettleRequest = json(&body)?;
    let busy = st
        .sessions
        .enter(&queue, &session)
        .ok_or_else(|| session_not_found(&session))?;
    if let Some(i) = req.items.iter().position(|it| it.attempt == 0) {
        return Err(ApiError::bad_request(format!(
            "item {i}: attempt 0 names no delivery (a delivery's attempt is at least 1)"
        )));
    }
    for (i, it) in req.items.iter().enumerate() {
        match it.op {
            wire::SettleOp::Extend { lease_ms } => {
                check_lease(&st, &format!("item {i}: lease_ms"), lease_ms)?;
            }
            wire::SettleOp::Nack { delay_ms, .. } => {
                check_lease(&st, &format!("item {i}: delay_ms"), delay_ms)?;
            }
            _ => {}
        }
    }
    let max_reason = st.cfg.limits.max_reason_bytes;
    let s = busy.session();
    // Each item's answer, filled now for those this session does not hold (they never reach
    // the engine) and after the engine's settle for the others.
    let mut out: Vec<Option<wire::SettleResult>> = Vec::with_capacity(req.items.len());
    let mut items: Vec<(Tag, Settlement)> = Vec::new();
    // (index in `out`, key, attempt, what) of each item sent to the engine.
    let mut sent: Vec<(usize, u64, u32, Op)> = Vec::new();
    for (i, it) in req.items.into_iter().enumerate() {
        if !s.holds(it.key, it.attempt) {
            out.push(Some(s.not_held(it.key, it.attempt)));
            continue;
        }
        out.push(None);
        let settlement = match it.op {
            wire::SettleOp::Ack => Settlement::Ack,
            wire::SettleOp::Nack { delay_ms, error } => Settlement::Nack {
                delay: Duration::from_millis(delay_ms),
                error: ackline_broker::truncate_reason(error, max_reason),
            },
            wire::SettleOp::Reject { reason } => Settlement::Reject {
                reason: ackline_broker::truncate_reason(reason, max_reason),
            },
            wire::SettleOp::Extend { lease_ms } => Settlement::Extend {
                lease: Duration::from_millis(lease_ms),
            },
        };
        sent.push((i, it.key, it.attempt, Op::of(&settlement)));
        let tag = Tag {
            key: it.key,
            attempt: it.attempt,
            token: None,
        };
        items.push((tag, settlement));
    }
    let results = if items.is_empty() {
        Vec::new()
    } else {
        match s.consumer.settle(items).await {
            Ok(r) => r,
            Err(e) => {
                // None is known durable; the engine consumer stopped counting them too.
                for (_, key, attempt, op) in &sent {
                    if *op != Op::Extend {
                        s.forget(*key, *attempt);
                    }
                }
                return Err(e.into());
            }
        }
    };
    let now_ms = unix_ms();
    for (r, (i, key, attempt, op)) in results.into_iter().zip(sent) {
        let result = wire::SettleResult::from(r);
        // Mirrors the engine consumer: a settlement that succeeded (other than an extend) or
        // was refused ends the delivery for this session.
        let ok = matches!(result, wire::SettleResult::Ok);
        let enqueued_at = if op != Op::Extend || !ok {
            s.end(key, attempt, &result)
        } else {
            None
        };
        if ok {
            match (op, enqueued_at) {
                (Op::Reject, _) => st.metrics.rejected(&queue),
                (Op::Ack, Some(at)) => st
                    .metrics
                    .observe_end_to_end(&queue, Duration::from_millis(now_ms.saturating_sub(at))),
                _ => {}
            }
        }
        if let Some(slot) = out.get_mut(i) {
            *slot = Some(result);
        }
    }
    drop(busy);
    let results = out
        .into_iter()
        .map(|r| r.unwrap_or(wire::SettleResult::Unknown))
        .collect();
    Ok(Json(wire::SettleResults { results }).into_response())
}

/// What a settle item does, as far as accounting goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Ack,
    Reject,
    Nack,
    Extend,
}

impl Op {
    fn of(s: &Settlement) -> Op {
        match s {
            Settlement::Ack => Op::Ack,
            Settlement::Reject { .. } => Op::Reject,
            Settlement::Nack { .. } => Op::Nack,
            Settlement::Extend { .. } => Op::Extend,
        }
    }
}

/// Now, Unix ms (0 for a clock before 1970); `enqueued_at` is on the same clock.
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `DELETE /v1/queues/{queue}/sessions/{session}`: releases its deliveries at once.
pub async fn close_session(
    State(st): State<AppState>,
    Path((queue, session)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if st.sessions.close(&queue, &session) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(session_not_found(&session))
    }
}
