//! Syslog over UDP: one datagram is one message (a trailing LF or CRLF is dropped).
//!
//! Invariants (beyond the module's, see [`super`]):
//! - Datagrams waiting in the socket are read in batches (up to [`BATCH`]) and published
//!   together; the next batch is read only after this one is durable.
//! - UDP has no backpressure: when the queue is full or cannot write, the batch is dropped
//!   and counted (`kind="dropped"`), never retried forever (the socket would drop instead).
//! - An empty datagram is ignored; one over `limits.syslog_max_frame` or with a NUL byte is
//!   refused and counted.
//! - Datagrams the kernel drops before they are read (the socket's receive buffer,
//!   `limits.syslog_udp_recv_buffer`, was full) are counted too: [`KernelDrops`] reads the
//!   socket's own drop counter (Linux: the `drops` column of `/proc/net/udp` for its inode) at
//!   each scrape, as `ackline_syslog_dropped_total{transport="udp"}`, and the receive loop
//!   logs a warning when it grew (at most every [`DROP_CHECK`]). So sent = queued + refused +
//!   dropped (after read) + dropped (by the kernel) holds for what reached the host.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::{FrameError, Refused, is_binary, publish, report};
use crate::state::AppState;

const TRANSPORT: &str = "udp";
/// How often the receive loop looks at the kernel's drop counter (to log growth).
pub const DROP_CHECK: Duration = Duration::from_secs(10);

/// The kernel's count of datagrams dropped on one UDP socket (its receive buffer was full).
#[derive(Debug, Clone)]
pub struct KernelDrops {
    table: PathBuf,
    inode: u64,
}

impl KernelDrops {
    /// The counter of `sock`, where the system exposes it (Linux `/proc`); `None` elsewhere.
    pub fn of(sock: &UdpSocket) -> Option<KernelDrops> {
        use std::os::fd::AsRawFd;
        let link = std::fs::read_link(format!("/proc/self/fd/{}", sock.as_raw_fd())).ok()?;
        let inode = link
            .to_str()?
            .strip_prefix("socket:[")?
            .strip_suffix(']')?
            .parse()
            .ok()?;
        let v6 = sock.local_addr().ok()?.is_ipv6();
        let table = PathBuf::from(if v6 {
            "/proc/net/udp6"
        } else {
            "/proc/net/udp"
        });
        let d = KernelDrops { table, inode };
        d.read().map(|_| d)
    }

    /// Datagrams dropped on the socket since it was opened; `None` if it cannot be read.
    pub fn read(&self) -> Option<u64> {
        let text = std::fs::read_to_string(&self.table).ok()?;
        parse_drops(&text, self.inode)
    }
}

/// The `drops` column of the `/proc/net/udp` line whose `inode` column is `inode`.
fn parse_drops(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.get(9)?.parse::<u64>().ok()? == inode).then_some(())?;
        f.get(12)?.parse().ok()
    })
}
/// Most datagrams published in one batch.
pub const BATCH: usize = 1000;

/// Receives until `stop`.
pub(crate) async fn run(st: AppState, sock: UdpSocket, mut stop: watch::Receiver<bool>) {
    let max = st.cfg.limits.syslog_max_frame;
    let mut buf = vec![0u8; 65536];
    let drops = st.metrics.udp_drops();
    let mut dropped = drops.as_ref().and_then(KernelDrops::read).unwrap_or(0);
    let mut checked = Instant::now();
    loop {
        if let Some(d) = &drops
            && checked.elapsed() >= DROP_CHECK
        {
            checked = Instant::now();
            if let Some(now) = d.read()
                && now > dropped
            {
                tracing::warn!(
                    datagrams = now - dropped,
                    total = now,
                    "syslog udp: the kernel dropped datagrams (receive buffer full; raise limits.syslog_udp_recv_buffer and net.core.rmem_max)"
                );
                dropped = now;
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_column_of_the_socket_inode() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  1: 0100007F:D431 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 0\n\
  2: 0100007F:14F2 00000000:0000 07 00000000:00030000 00:00000000 00000000     0        0 777 2 0000000000000000 1903\n";
        assert_eq!(parse_drops(table, 777), Some(1903));
        assert_eq!(parse_drops(table, 4242), Some(0));
        assert_eq!(parse_drops(table, 1), None);
        assert_eq!(parse_drops("garbage", 1), None);
    }
}
