//! Syslog over UDP: one datagram is one message (a trailing LF or CRLF is dropped).
//!
//! Invariants (beyond the module's, see [`super`]):
//! - Datagrams waiting in the socket are read in batches (up to [`BATCH`]) and published
//!   together; the next batch is read only after this one is durable.
//! - UDP has no backpressure: when the queue is full or cannot write, the batch is dropped
//!   and counted (`kind="dropped"`), never retried forever (the socket would drop instead).
//! - An empty datagram is ignored; one over `limits.syslog_max_frame` or with a NUL byte is
//!   refused and counted.

use std::net::SocketAddr;

use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::{FrameError, Refused, is_binary, publish, report};
use crate::state::AppState;

const TRANSPORT: &str = "udp";
/// Most datagrams published in one batch.
pub const BATCH: usize = 1000;

/// Receives until `stop`.
pub(crate) async fn run(st: AppState, sock: UdpSocket, mut stop: watch::Receiver<bool>) {
    let max = st.cfg.limits.syslog_max_frame;
    let mut buf = vec![0u8; 65536];
    loop {
        let first = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = sock.recv_from(&mut buf) => r,
        };
        let mut frames: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        let mut next = Some(first);
        while let Some(r) = next.take() {
            match r {
                Ok((n, peer)) => {
                    if let Some(f) = datagram(&st, peer, &buf[..n], max) {
                        frames.push((peer, f));
                    }
                }
                Err(e) => tracing::debug!(error = %e, "syslog udp receive failed"),
            }
            if frames.len() < BATCH {
                match sock.try_recv_from(&mut buf) {
                    Ok(x) => next = Some(Ok(x)),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => next = Some(Err(e)),
                }
            }
        }
        if frames.is_empty() {
            continue;
        }
        if let Err(r) = publish(&st, TRANSPORT, &frames).await {
            let why = match r {
                Refused::Full => "the queue is full".to_string(),
                Refused::Failed(w) => w,
            };
            for (peer, _) in &frames {
                report(&st, TRANSPORT, *peer, FrameError::Dropped, &why);
            }
        }
    }
}

fn datagram(st: &AppState, peer: SocketAddr, d: &[u8], max: usize) -> Option<Vec<u8>> {
    let mut d = d;
    if d.last() == Some(&b'\n') {
        d = &d[..d.len() - 1];
        if d.last() == Some(&b'\r') {
            d = &d[..d.len() - 1];
        }
    }
    if d.is_empty() {
        return None;
    }
    if d.len() > max {
        let why = format!(
            "a {}-byte datagram, over the maximum frame of {max} bytes",
            d.len()
        );
        report(st, TRANSPORT, peer, FrameError::Oversized, &why);
        return None;
    }
    if is_binary(d) {
        let why = format!("a {}-byte datagram with a NUL byte", d.len());
        report(st, TRANSPORT, peer, FrameError::Binary, &why);
        return None;
    }
    Some(d.to_vec())
}
