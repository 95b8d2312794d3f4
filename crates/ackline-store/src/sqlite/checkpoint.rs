//! The checkpointer: copies the WAL back into the database file off the
//! commit path.
//!
//! With SQLite's automatic checkpoint, the commit that crosses the threshold
//! copies (and fsyncs) every page of the WAL before `COMMIT` returns: about a
//! seventh of the writer's time in the profile. Here a thread with its own
//! connection runs `PRAGMA wal_checkpoint(PASSIVE)` when commits wake it.
//!
//! Invariants:
//! - `PASSIVE` never waits for or blocks the writer or readers: it copies
//!   the frames no reader still needs and stops; a busy or failed checkpoint
//!   is simply retried at the next wake-up. It never affects a commit's
//!   durability (the frames stay in the fsynced WAL until the database file
//!   holding their copy is fsynced).
//! - Wake-ups coalesce: at most one is pending, and the thread waits
//!   [`COALESCE`] before checkpointing, so a page written by many commits in
//!   a row is copied once, not once per commit.
//! - The thread ends when the store (the sender) is dropped.

use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Duration;

use rusqlite::Connection;

use super::{KIND, classify, open_error};
use crate::StoreError;

/// How long commits accumulate before one checkpoint copies them.
const COALESCE: Duration = Duration::from_millis(50);

/// Starts the checkpointer for the database at `path`; send `()` after a
/// commit to wake it.
pub(super) fn spawn(path: &Path) -> Result<SyncSender<()>, StoreError> {
    let conn = Connection::open(path).map_err(|e| open_error(path, &e))?;
    // FULL: the database file is fsynced after each checkpoint (NORMAL does
    // too in WAL mode; FULL also syncs the WAL header when it restarts).
    conn.execute_batch("PRAGMA synchronous = FULL;")
        .map_err(classify)?;
    let (wake, woken) = sync_channel(1);
    std::thread::Builder::new()
        .name("ackline-sqlite-checkpoint".to_owned())
        .spawn(move || run(&conn, &woken))
        .map_err(|e| StoreError::fatal(KIND, format!("cannot start the checkpointer: {e}")))?;
    Ok(wake)
}

fn run(conn: &Connection, woken: &Receiver<()>) {
    while woken.recv().is_ok() {
        std::thread::sleep(COALESCE);
        // A wake-up that came while sleeping is covered by this checkpoint.
        let _ = woken.try_recv();
        // Busy (another checkpoint, a lock held elsewhere) or an I/O error:
        // try again at the next wake-up. The writer reports I/O errors of
        // its own, and its automatic checkpoint bounds the WAL meanwhile.
        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    }
}
