//! SIGTERM and SIGINT: the first asks for a graceful stop, the second (a second or more
//! later) exits at once.
//!
//! Invariants:
//! - The first signal only flips the returned watch to `true`; the pipeline then stops in
//!   order (inputs, workers, queue) and the process exits 0.
//! - A second signal exits immediately with code 130. Nothing is lost: the queue confirmed
//!   only durable publishes, unsettled deliveries come back when their leases expire (or at
//!   once on restart), and inputs resume from their committed positions.
//! - Signals within [`SAME_STOP`] of the first are the same request to stop, not a second
//!   signal: GNU `timeout` (and some supervisors) signal the process and then its process
//!   group, so one stop arrives as two signals.

use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Exit code of the immediate exit on a second signal (128 + SIGINT, as shells report it).
pub const SECOND_SIGNAL_EXIT: i32 = 130;

/// Signals this soon after the first one are the same stop.
pub const SAME_STOP: Duration = Duration::from_secs(1);

/// Installs the handlers (call inside the Tokio runtime); the receiver turns `true` on the
/// first signal.
pub fn install() -> anyhow::Result<watch::Receiver<bool>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!(
            "ackline: stopping: finishing batches in hand (a second signal exits at once; nothing is lost)"
        );
        let _ = tx.send(true);
        let first = Instant::now();
        loop {
            let got = tokio::select! {
                s = term.recv() => s,
                s = int.recv() => s,
            };
            if got.is_none() {
                return; // the runtime is shutting down
            }
            if first.elapsed() >= SAME_STOP {
                break;
            }
        }
        eprintln!(
            "ackline: second signal: exiting now; unsettled deliveries return when their leases expire"
        );
        std::process::exit(SECOND_SIGNAL_EXIT);
    });
    Ok(rx)
}
