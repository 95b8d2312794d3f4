//! Helpers shared by the engine tests.

use std::sync::Arc;
use std::time::Duration;

use ackline_queue::fs::{Fs, RealFs};
use ackline_queue::{Db, DbOptions, ManualClock, NewMessage, Queue, QueueOptions};

pub const LEASE: Duration = Duration::from_secs(30);

/// A data directory on disk with a manual clock.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub clock: ManualClock,
    pub fs: Arc<dyn Fs>,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
            clock: ManualClock::new(1_700_000_000_000),
            fs: Arc::new(RealFs),
        }
    }

    pub fn with_fs(fs: Arc<dyn Fs>) -> Env {
        Env { fs, ..Env::new() }
    }

    pub fn db(&self) -> Db {
        open_db(
            self.dir.path(),
            DbOptions {
                fs: self.fs.clone(),
                clock: Arc::new(self.clock.clone()),
            },
        )
    }

    /// Opens the data directory and queue "q".
    pub fn open(&self, opts: QueueOptions) -> (Db, Queue) {
        let db = self.db();
        let q = db.queue("q", opts).unwrap();
        (db, q)
    }
}

pub fn msgs(ids: impl IntoIterator<Item = usize>) -> Vec<NewMessage> {
    ids.into_iter()
        .map(|i| {
            NewMessage::new(format!("payload {i}"))
                .with_id(format!("m-{i}"))
                .with_header("n", i.to_string())
        })
        .collect()
}

/// The segment files of queue "q" in data directory `dir`, in order.
pub fn segments(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<std::path::PathBuf> = std::fs::read_dir(dir.join("queues/q"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

/// Opens a data directory, waiting (bounded) while its lock is held. Tests reopen directories
/// right after closing them, while `crash_damage` forks child processes in parallel: a child
/// holds a copy of every open descriptor, the `LOCK` file's too, between its fork and its exec,
/// so a just-released flock can look held for that moment.
pub fn open_db(dir: &std::path::Path, opts: DbOptions) -> Db {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Db::open_with(dir, opts.clone()) {
            Err(ackline_queue::OpenError::Locked { .. })
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            r => return r.unwrap(),
        }
    }
}
