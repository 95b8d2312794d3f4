//! A data directory holding named queues.
//!
//! Layout: `<dir>/LOCK` (an exclusive lock held while the directory is open) and
//! `<dir>/queues/<name>/` per queue (segments and checkpoint; see `docs/queue-format.md`).
//!
//! Invariants:
//! - One process (one [`Db`]) has the directory open at a time; a second open fails with
//!   [`OpenError::Locked`] instead of corrupting it. The lock lives as long as the `Db` or any
//!   queue opened from it.
//! - Each queue is opened once per `Db`; asking again returns the same queue.
//! - A `Db` opened with [`Db::open_read_only`] takes no lock and changes no file: it creates
//!   nothing, recovers without truncating or moving anything, and its queues refuse writes.
//!   It can inspect a directory another process has open (what it reads may be a moment
//!   old), or one on a read-only mount.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::clock::{Clock, SystemClock};
use crate::error::OpenError;
use crate::fs::{DirLock, Fs, RealFs};
use crate::options::QueueOptions;
use crate::queue::Queue;

/// How a [`Db`] touches the world: the filesystem and the clock.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// The filesystem (tests pass a `sim::SimFs`, with the `sim` feature).
    pub fs: Arc<dyn Fs>,
    /// The clock (tests pass a [`ManualClock`](crate::ManualClock)).
    pub clock: Arc<dyn Clock>,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            fs: Arc::new(RealFs),
            clock: Arc::new(SystemClock::new()),
        }
    }
}

/// An open data directory.
pub struct Db {
    dir: PathBuf,
    opts: DbOptions,
    /// `None` when opened read-only.
    lock: Option<Arc<DirLock>>,
    queues: Mutex<HashMap<String, Queue>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("dir", &self.dir).finish()
    }
}

/// Whether `name` is a valid queue name: 1 to 128 of `A-Z a-z 0-9 . _ -`, not `.` or `..`.
pub fn valid_queue_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Db {
    /// Opens (creating if needed) a data directory on the real filesystem.
    pub fn open(dir: impl AsRef<Path>) -> Result<Db, OpenError> {
        Self::open_with(dir, DbOptions::default())
    }

    /// Opens a data directory with the given filesystem and clock.
    pub fn open_with(dir: impl AsRef<Path>, opts: DbOptions) -> Result<Db, OpenError> {
        let dir = dir.as_ref().to_path_buf();
        let queues = dir.join("queues");
        opts.fs
            .create_dir_all(&queues)
            .map_err(|e| OpenError::io("creating", &queues, e))?;
        let lock = opts.fs.lock_dir(&dir).map_err(|cause| OpenError::Locked {
            dir: dir.clone(),
            cause,
        })?;
        Ok(Db {
            dir,
            opts,
            lock: Some(Arc::new(lock)),
            queues: Mutex::new(HashMap::new()),
        })
    }

    /// Opens an existing data directory for inspection only, on the real filesystem.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Db, OpenError> {
        Self::open_read_only_with(dir, DbOptions::default())
    }

    /// Opens an existing data directory for inspection only: no lock is taken and no file is
    /// created or changed; queues opened from it refuse writes with
    /// [`QueueError::ReadOnly`](crate::QueueError::ReadOnly).
    pub fn open_read_only_with(dir: impl AsRef<Path>, opts: DbOptions) -> Result<Db, OpenError> {
        let dir = dir.as_ref().to_path_buf();
        let queues = dir.join("queues");
        opts.fs
            .list(&queues)
            .map_err(|e| OpenError::io("reading", &queues, e))?;
        Ok(Db {
            dir,
            opts,
            lock: None,
            queues: Mutex::new(HashMap::new()),
        })
    }

    /// Whether another process (or `Db`) holds `dir` open for writing now. Takes no lock
    /// and changes no file (a shared lock on `LOCK` is tried and dropped at once).
    pub fn in_use(dir: impl AsRef<Path>) -> bool {
        match std::fs::File::open(dir.as_ref().join("LOCK")) {
            Ok(f) => matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock)),
            Err(_) => false,
        }
    }

    /// Whether this `Db` was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.lock.is_none()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens (creating if needed) the queue `name`, recovering it from disk.
    pub fn queue(&self, name: &str, opts: QueueOptions) -> Result<Queue, OpenError> {
        if !valid_queue_name(name) {
            return Err(OpenError::InvalidName {
                name: name.to_string(),
            });
        }
        let mut queues = self.queues.lock();
        if let Some(q) = queues.get(name) {
            return Ok(q.clone());
        }
        let parent = self.dir.join("queues");
        let qdir = parent.join(name);
        if self.lock.is_none() && !self.opts.fs.exists(&qdir) {
            return Err(OpenError::io(
                "opening",
                &qdir,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such queue"),
            ));
        }
        if !self.opts.fs.exists(&qdir) {
            self.opts
                .fs
                .create_dir_all(&qdir)
                .map_err(|e| OpenError::io("creating", &qdir, e))?;
            self.opts
                .fs
                .sync_dir(&parent)
                .map_err(|e| OpenError::io("syncing", &parent, e))?;
        }
        let q = Queue::open(
            name,
            qdir,
            self.opts.fs.clone(),
            self.opts.clock.clone(),
            opts,
            self.lock.clone(),
        )?;
        queues.insert(name.to_string(), q.clone());
        Ok(q)
    }

    /// Names of the queues in the directory.
    pub fn queue_names(&self) -> Result<Vec<String>, OpenError> {
        let parent = self.dir.join("queues");
        let mut names: Vec<String> = self
            .opts
            .fs
            .list(&parent)
            .map_err(|e| OpenError::io("listing", &parent, e))?
            .into_iter()
            .filter(|n| valid_queue_name(n))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Closes every queue opened through this `Db` (flushing and checkpointing each).
    pub fn close(self) {
        let queues = std::mem::take(&mut *self.queues.lock());
        for (_, q) in queues {
            q.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_are_checked() {
        assert!(valid_queue_name("logs.app-1_x"));
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(129), "é"] {
            assert!(!valid_queue_name(bad), "{bad:?}");
        }
    }
}
