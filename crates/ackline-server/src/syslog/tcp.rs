//! Syslog over TCP: RFC 6587 octet counting (`LEN SP MSG`) and non-transparent newline
//! framing (`MSG LF`), chosen per connection from its first byte (a digit: octet counting;
//! `<` or other printable text: newline framing; anything else: binary, refused).
//!
//! Invariants (beyond the module's, see [`super`]):
//! - [`Framer`] is pure: bytes in, complete frames and errors out; it never allocates more
//!   than `max_frame` plus one read's bytes per connection, whatever the peer sends.
//! - Octet counting cannot resynchronise after a bad header or a count over the limit, so
//!   those close the connection; newline framing skips an oversized line to its newline and
//!   carries on. A frame with a NUL byte is refused alone.
//! - A frame must be complete within `limits.syslog_frame_timeout` of its first byte (one
//!   deadline per frame, not per read: trickling bytes does not extend it), and a connection
//!   may stay silent `limits.syslog_idle_timeout` after its last complete frame; past either
//!   it is closed (an incomplete frame is dropped and counted `truncated`).
//! - Connections hold slots of the listener's own table (`limits.max_connections`, at most
//!   `limits.max_connections_per_client` per IP address, more refused at once). When it is
//!   full, the connection whose last complete frame is oldest (silent or slow senders) is
//!   closed to make room, never one whose frames are being queued.

use std::net::SocketAddr;
use std::time::Instant;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{FrameError, Refused, is_binary, publish, report};
use crate::slots::{self, Slot};
use crate::state::AppState;

const TRANSPORT: &str = "tcp";
/// Digits in an octet count, at most (a count of 10 digits is already far over any limit).
const MAX_COUNT_DIGITS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Unknown,
    Octet,
    Newline,
}

/// What [`Framer::push`] found besides frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The kind.
    pub error: FrameError,
    /// A sentence for the log.
    pub why: String,
}

/// Splits one connection's bytes into frames.
#[derive(Debug)]
pub struct Framer {
    mode: Mode,
    buf: Vec<u8>,
    max: usize,
    /// Newline framing: skipping the rest of an oversized line.
    skipping: bool,
    /// The connection cannot continue (octet counting lost sync, or binary).
    closed: bool,
}

impl Framer {
    /// A framer refusing frames over `max` bytes.
    pub fn new(max: usize) -> Self {
        Framer {
            mode: Mode::Unknown,
            buf: Vec::new(),
            max,
            skipping: false,
            closed: false,
        }
    }

    /// Whether a frame is begun and not complete.
    pub fn partial(&self) -> bool {
        !self.buf.is_empty() || self.skipping
    }

    /// Whether the connection must be closed (nothing more can be framed).
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Feeds bytes; pushes complete frames onto `out` and returns the refusals.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Vec<u8>>) -> Vec<Refusal> {
        let mut errs = Vec::new();
        if self.closed {
            return errs;
        }
        if self.mode == Mode::Unknown {
            let Some(&first) = data.first() else {
                return errs;
            };
            self.mode = match first {
                b'1'..=b'9' => Mode::Octet,
                b'<' | b'\t' | 0x20..=0x7e => Mode::Newline,
                b => {
                    self.closed = true;
                    errs.push(Refusal {
                        error: FrameError::Binary,
                        why: format!(
                            "binary data, not syslog (first byte 0x{b:02x}); connection closed"
                        ),
                    });
                    return errs;
                }
            };
        }
        self.buf.extend_from_slice(data);
        match self.mode {
            Mode::Octet => self.octets(out, &mut errs),
            _ => self.lines(out, &mut errs),
        }
        errs
    }

    fn octets(&mut self, out: &mut Vec<Vec<u8>>, errs: &mut Vec<Refusal>) {
        let mut pos = 0;
        loop {
            // Tolerate line ends between frames (some senders add them).
            while pos < self.buf.len() && matches!(self.buf[pos], b'\n' | b'\r') {
                pos += 1;
            }
            let rest = &self.buf[pos..];
            if rest.is_empty() {
                break;
            }
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == rest.len() && digits <= MAX_COUNT_DIGITS {
                break; // the header is not complete yet
            }
            if digits == 0 || digits > MAX_COUNT_DIGITS || rest[digits] != b' ' {
                let shown: String = rest
                    .iter()
                    .take(16)
                    .map(|&b| if b.is_ascii_graphic() { b as char } else { '.' })
                    .collect();
                self.fail(
                    errs,
                    FrameError::BadCount,
                    format!("bad octet count header {shown:?}: expected DIGITS SP"),
                );
                return;
            }
            let len: usize = std::str::from_utf8(&rest[..digits])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(usize::MAX);
            if len > self.max {
                self.fail(
                    errs,
                    FrameError::Oversized,
                    format!(
                        "octet count {len} over the maximum frame of {} bytes",
                        self.max
                    ),
                );
                return;
            }
            let start = digits + 1;
            if rest.len() < start + len {
                break; // the frame is not complete yet
            }
            let frame = &rest[start..start + len];
            if is_binary(frame) {
                errs.push(Refusal {
                    error: FrameError::Binary,
                    why: format!("a {len}-byte frame with a NUL byte"),
                });
            } else if len > 0 {
                out.push(frame.to_vec());
            }
            pos += start + len;
        }
        self.buf.drain(..pos);
    }

    fn lines(&mut self, out: &mut Vec<Vec<u8>>, errs: &mut Vec<Refusal>) {
        let mut pos = 0;
        while let Some(nl) = memchr(b'\n', &self.buf[pos..]) {
            let end = pos + nl;
            if self.skipping {
                self.skipping = false;
            } else {
                let mut line = &self.buf[pos..end];
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                if line.len() > self.max {
                    errs.push(oversized_line(line.len(), self.max));
                } else if is_binary(line) {
                    errs.push(Refusal {
                        error: FrameError::Binary,
                        why: format!("a {}-byte line with a NUL byte", line.len()),
                    });
                } else if !line.is_empty() {
                    out.push(line.to_vec());
                }
            }
            pos = end + 1;
        }
        self.buf.drain(..pos);
        if self.skipping {
            self.buf.clear();
        } else if self.buf.len() > self.max {
            errs.push(oversized_line(self.buf.len(), self.max));
            self.buf.clear();
            self.skipping = true;
        }
    }

    fn fail(&mut self, errs: &mut Vec<Refusal>, error: FrameError, why: String) {
        self.closed = true;
        self.buf.clear();
        errs.push(Refusal {
            error,
            why: format!("{why}; connection closed"),
        });
    }
}

fn oversized_line(len: usize, max: usize) -> Refusal {
    Refusal {
        error: FrameError::Oversized,
        why: format!(
            "a line of more than {len} bytes, over the maximum frame of {max} bytes; skipped to its end"
        ),
    }
}

fn memchr(b: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&x| x == b)
}

/// Accepts connections until `stop`, then waits for the open ones to finish their frames.
pub(crate) async fn run(st: AppState, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let table = st.syslog_slots.clone();
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "syslog tcp accept failed; continuing");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            s = table.admit(peer.ip()) => s,
        };
        match slot {
            Ok(slot) => {
                let st = st.clone();
                let stop = stop.clone();
                conns.spawn(async move {
                    connection(&st, stream, peer, &slot, stop).await;
                });
            }
            Err(slots::Refusal::PerClient) => {
                tracing::debug!(%peer, "syslog tcp connection refused: too many from this address");
            }
            Err(slots::Refusal::Closed) => break,
        }
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

async fn connection(
    st: &AppState,
    mut stream: TcpStream,
    peer: SocketAddr,
    slot: &Slot,
    mut stop: watch::Receiver<bool>,
) {
    let l = &st.cfg.limits;
    let mut framer = Framer::new(l.syslog_max_frame);
    let mut buf = vec![0u8; 64 * 1024];
    let truncated = |why: &str| {
        report(
            st,
            TRANSPORT,
            peer,
            FrameError::Truncated,
            &format!("{why} inside a frame; the incomplete frame is dropped"),
        );
    };
    // When the frame in progress must be complete: set when a frame begins, not moved by
    // the reads that continue it (a sender trickling bytes cannot hold the connection).
    let mut frame_deadline: Option<Instant> = None;
    let mut idle_deadline = Instant::now() + l.syslog_idle_timeout;
    loop {
        let deadline = frame_deadline.unwrap_or(idle_deadline);
        let n = tokio::select! {
            _ = stop.wait_for(|s| *s) => {
                if framer.partial() { truncated("shutdown"); }
                return;
            }
            _ = slot.shed() => {
                if framer.partial() {
                    truncated("the connection table is full and this connection was the longest idle");
                } else {
                    tracing::debug!(%peer, "syslog tcp connection table full: closed this idle connection");
                }
                return;
            }
            r = tokio::time::timeout_at(deadline.into(), stream.read(&mut buf)) => match r {
                Err(_) => {
                    if framer.partial() {
                        truncated(&format!("frame not complete within {:?}", l.syslog_frame_timeout));
                    } else {
                        tracing::debug!(%peer, "syslog tcp connection idle; closed");
                    }
                    return;
                }
                Ok(Ok(0)) => {
                    if framer.partial() { truncated("the peer closed the connection"); }
                    return;
                }
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    if framer.partial() { truncated(&format!("read error ({e})")); }
                    return;
                }
            },
        };
        let mut frames = Vec::new();
        let refusals = framer.push(&buf[..n], &mut frames);
        let progressed = !frames.is_empty() || !refusals.is_empty();
        for r in refusals {
            report(st, TRANSPORT, peer, r.error, &r.why);
        }
        let now = Instant::now();
        if !framer.partial() {
            frame_deadline = None;
        } else if progressed || frame_deadline.is_none() {
            // A new frame began in this read.
            frame_deadline = Some(now + l.syslog_frame_timeout);
        }
        if progressed {
            idle_deadline = now + l.syslog_idle_timeout;
        }
        if !frames.is_empty() {
            let _busy = slot.busy();
            let frames: Vec<(SocketAddr, Vec<u8>)> =
                frames.into_iter().map(|f| (peer, f)).collect();
            if !publish_waiting(st, &frames, &mut stop).await {
                for _ in &frames {
                    st.metrics
                        .syslog_error(TRANSPORT, FrameError::Dropped.kind());
                }
                return;
            }
        }
        if framer.closed() {
            return;
        }
    }
}

/// Publishes, waiting out a full queue (the peer waits on its socket meanwhile); false when
/// the frames could not be queued (queue failure, or shutdown while full).
async fn publish_waiting(
    st: &AppState,
    frames: &[(SocketAddr, Vec<u8>)],
    stop: &mut watch::Receiver<bool>,
) -> bool {
    loop {
        match publish(st, TRANSPORT, frames).await {
            Ok(()) => return true,
            Err(Refused::Full) => {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return false,
                    _ = tokio::time::sleep(st.cfg.limits.retry_after) => {}
                }
            }
            Err(Refused::Failed(why)) => {
                tracing::error!(why, "syslog tcp: frames not queued; closing the connection");
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn feed(f: &mut Framer, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<FrameError>) {
        let mut out = Vec::new();
        let mut errs = Vec::new();
        for c in chunks {
            errs.extend(f.push(c, &mut out).into_iter().map(|r| r.error));
        }
        (out, errs)
    }

    #[test]
    fn octet_counting_across_reads() {
        let mut f = Framer::new(100);
        let (out, errs) = feed(&mut f, &[b"5 he", b"llo3 a", b"bc\n4 ", b"x\0yz2 ok"]);
        assert_eq!(
            out,
            vec![b"hello".to_vec(), b"abc".to_vec(), b"ok".to_vec()]
        );
        assert_eq!(errs, vec![FrameError::Binary]);
        assert!(!f.partial() && !f.closed());
        let (_, errs) = feed(&mut f, &[b"12 short"]);
        assert!(errs.is_empty() && f.partial());
    }

    #[test]
    fn octet_counting_refuses_and_closes() {
        let mut f = Framer::new(10);
        let (_, errs) = feed(&mut f, &[b"11 "]);
        assert_eq!(errs, vec![FrameError::Oversized]);
        assert!(f.closed());
        let mut f = Framer::new(10);
        let (out, errs) = feed(&mut f, &[b"2 ok", b"x2 no"]);
        assert_eq!((out.len(), errs), (1, vec![FrameError::BadCount]));
        let mut f = Framer::new(10);
        let (_, errs) = feed(&mut f, &[b"99999999999999"]);
        assert_eq!(errs, vec![FrameError::BadCount]);
    }

    #[test]
    fn newline_framing() {
        let mut f = Framer::new(8);
        let (out, errs) = feed(
            &mut f,
            &[b"<1>a\r\n\n<2>b\n<3>toolong", b"line\n<4>c\n<5>\0\n<6>d"],
        );
        assert_eq!(
            out,
            vec![b"<1>a".to_vec(), b"<2>b".to_vec(), b"<4>c".to_vec()]
        );
        assert_eq!(errs, vec![FrameError::Oversized, FrameError::Binary]);
        assert!(f.partial());
    }

    #[test]
    fn binary_connection_is_refused() {
        let mut f = Framer::new(8);
        let (out, errs) = feed(&mut f, &[b"\x16\x03\x01", b"<1>a\n"]);
        assert!(out.is_empty());
        assert_eq!(errs, vec![FrameError::Binary]);
        assert!(f.closed());
    }
}
