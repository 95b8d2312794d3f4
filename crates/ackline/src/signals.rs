//! SIGTERM and SIGINT: the first asks for a graceful stop, the second exits at once.
//!
//! Invariants:
//! - The first signal only flips the returned watch to `true`; the pipeline then stops in
//!   order (inputs, workers, queue) and the process exits 0.
//! - A second signal exits immediately with code 130. Nothing is lost: the queue confirmed
//!   only durable publishes, unsettled deliveries come back when their leases expire (or at
//!   once on restart), and inputs resume from their committed positions.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Exit code of the immediate exit on a second signal (128 + SIGINT, as shells report it).
pub const SECOND_SIGNAL_EXIT: i32 = 130;

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
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!(
            "ackline: second signal: exiting now; unsettled deliveries return when their leases expire"
        );
        std::process::exit(SECOND_SIGNAL_EXIT);
    });
    Ok(rx)
}
