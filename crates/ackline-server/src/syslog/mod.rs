//! Syslog ingest: TCP (RFC 6587, [`tcp`]) and UDP (one datagram, one message, [`udp`]).
//!
//! Each frame becomes one message in the server's default queue with the header
//! `input: syslog+tcp://PEER` or `input: syslog+udp://PEER`; its id is assigned by the queue.
//!
//! Invariants:
//! - A frame counts as received only once it is durably queued (the publish's commit
//!   returned). Syslog has no acknowledgement: a sender learns nothing, so "confirmed" means
//!   "queued"; over TCP a connection reads its next bytes only after the frames of the
//!   previous read are durable (the socket's backpressure is the flow control), and a full
//!   queue stops reading (never a silent drop over TCP).
//! - A client that disconnects (or stalls past `limits.syslog_frame_timeout`) mid-frame loses
//!   only that incomplete frame; every complete frame before it was queued.
//! - Truncated, oversized and binary frames, and bad octet counts, are never queued: each is
//!   logged with its peer and counted in `ackline_syslog_errors_total{transport,kind}`; none
//!   panics or hangs a task (every read has a timeout).
//! - On shutdown the listeners stop before the queues close; frames already read are
//!   published (or counted as dropped) first.

pub mod tcp;
pub mod udp;

use std::net::SocketAddr;

use ackline_queue::{NewMessage, PublishError};

use crate::state::AppState;

/// Why a frame was refused (the `kind` label of `ackline_syslog_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The connection ended, or stalled past the frame timeout, inside a frame.
    Truncated,
    /// A frame (or an octet count) over `limits.syslog_max_frame`.
    Oversized,
    /// A frame with a NUL byte, or a connection that does not start like syslog.
    Binary,
    /// An octet-counting header that is not `DIGITS SP`.
    BadCount,
    /// Read but not queued: the queue was full (UDP) or could not write.
    Dropped,
}

impl FrameError {
    /// The metric label.
    pub fn kind(self) -> &'static str {
        match self {
            FrameError::Truncated => "truncated",
            FrameError::Oversized => "oversized",
            FrameError::Binary => "binary",
            FrameError::BadCount => "bad_octet_count",
            FrameError::Dropped => "dropped",
        }
    }
}

/// Logs a refused frame with its peer and counts it.
pub(crate) fn report(st: &AppState, transport: &str, peer: SocketAddr, e: FrameError, why: &str) {
    tracing::warn!(%peer, transport, kind = e.kind(), "syslog frame refused: {why}");
    st.metrics.syslog_error(transport, e.kind());
}

/// Why a publish gave up.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The queue is full (the caller may wait and retry).
    Full,
    /// The queue cannot write or cannot be opened.
    Failed(String),
}

/// Publishes `frames` as one batch into the default queue and waits until it is durable.
pub(crate) async fn publish(
    st: &AppState,
    transport: &str,
    frames: &[(SocketAddr, Vec<u8>)],
) -> Result<(), Refused> {
    let queue = &st.cfg.default_queue;
    let broker = st
        .queues
        .get(queue)
        .map_err(|e| Refused::Failed(e.message.clone()))?;
    let batch: Vec<NewMessage> = frames
        .iter()
        .map(|(peer, payload)| NewMessage {
            id: None,
            headers: vec![("input".into(), format!("syslog+{transport}://{peer}"))],
            payload: payload.clone(),
        })
        .collect();
    let (_, commit) = broker.queue().publish_nowait(batch).map_err(|e| match e {
        PublishError::Full { .. } => Refused::Full,
        other => Refused::Failed(other.to_string()),
    })?;
    commit
        .await
        .map_err(|e| Refused::Failed(format!("queue write failed: {e}")))?;
    st.metrics.syslog_frames(transport, frames.len() as u64);
    Ok(())
}

/// Whether a frame is binary (a NUL byte: no syslog sender emits one).
pub(crate) fn is_binary(frame: &[u8]) -> bool {
    frame.contains(&0)
}
