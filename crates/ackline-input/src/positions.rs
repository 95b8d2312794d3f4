//! The persisted read positions: `<state-dir>/positions.json`.
//!
//! ```json
//! {"version":2,
//!  "files":[{"path":"/var/log/app.log","dev":2049,"ino":131,
//!            "fingerprint":{"hash":"9ae1c04f5b3c2d11","bytes":61},"generation":0,"offset":4096}],
//!  "retired":[{"dev":2049,"ino":97,"generation":2}]}
//! ```
//!
//! - `files`: one entry per followed file, keyed by its identity (`dev`, `ino`) and checked
//!   against its `fingerprint` (see [`crate::fingerprint`]; absent while the file has no
//!   complete first line); `offset` is the byte after the last line whose publish was
//!   confirmed, `generation` counts the file's truncations (see the crate doc for the id
//!   format). A file found with a saved identity but other first bytes is another file (the
//!   inode was reused) and is read from its start.
//! - `retired`: files that were finished and dropped (rotated away, deleted), at most
//!   [`MAX_RETIRED`], newest last. When a new file gets an inode number that a retired file had
//!   (filesystems reuse them), it starts at that generation + 1.
//! - Version 1 (before fingerprints) is still read: its files are marked `legacy_ids`, which
//!   keeps their ids in the version 1 form (`file:<dev>:<ino>:<generation>:<offset>`) until the
//!   file is truncated or finished, so lines published again after an upgrade keep their ids.
//!   Written back as version 2.
//!
//! Invariant: the file on disk is always a complete, valid version (written to
//! `positions.json.tmp`, fsynced, renamed over `positions.json`, then the directory fsynced), and
//! every offset in it is at or before the end of what was durably published.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::InputError;
use crate::fingerprint::Fingerprint;

/// The version written.
pub const VERSION: u32 = 2;

/// Retired identities kept to detect inode reuse.
pub const MAX_RETIRED: usize = 4096;

/// The read position of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePosition {
    /// The path it was last followed under.
    pub path: PathBuf,
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Its first bytes' checksum, part of every id (`None` until it has a first line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
    /// Saved by version 1: ids keep the version 1 form (no fingerprint) for this generation.
    #[serde(default, skip_serializing_if = "is_false")]
    pub legacy_ids: bool,
    /// Truncations seen (copytruncate), part of every id.
    pub generation: u64,
    /// The next byte to read: every line before it is durably published.
    pub offset: u64,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A file that was finished and dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredFile {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Its last generation.
    pub generation: u64,
}

/// Everything persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Positions {
    /// Format version ([`VERSION`]; 1 is read too).
    pub version: u32,
    /// Followed files.
    pub files: Vec<FilePosition>,
    /// Finished files (bounded, newest last).
    #[serde(default)]
    pub retired: Vec<RetiredFile>,
}

impl Default for Positions {
    fn default() -> Self {
        Positions {
            version: VERSION,
            files: Vec::new(),
            retired: Vec::new(),
        }
    }
}

impl Positions {
    /// The saved position of the file with this identity.
    pub fn file(&self, dev: u64, ino: u64) -> Option<&FilePosition> {
        self.files.iter().find(|f| f.dev == dev && f.ino == ino)
    }

    /// The last generation of a retired file with this identity.
    pub fn retired_generation(&self, dev: u64, ino: u64) -> Option<u64> {
        self.retired
            .iter()
            .rev()
            .find(|r| r.dev == dev && r.ino == ino)
            .map(|r| r.generation)
    }
}

/// Where positions are kept. [`JsonPositionStore`] is the real one; tests substitute a store
/// that fails to simulate a crash between a publish and its commit.
pub trait PositionStore: Send + Sync + std::fmt::Debug + 'static {
    /// The saved positions; `None` when none were ever saved here (a first run).
    fn load(&self) -> Result<Option<Positions>, InputError>;
    /// Replaces the saved positions durably; returns only once they survive a crash.
    fn save(&self, positions: &Positions) -> Result<(), InputError>;
}

/// `positions.json` in a state directory, written atomically, guarded by an exclusive lock on
/// `positions.lock` for as long as the store lives.
#[derive(Debug)]
pub struct JsonPositionStore {
    dir: PathBuf,
    _lock: File,
}

impl JsonPositionStore {
    /// Opens (creating) the state directory and takes its lock.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, InputError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| InputError::io("create", &dir, e))?;
        let lock_path = dir.join("positions.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| InputError::io("open", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(InputError::StateDirInUse { path: dir });
            }
            Err(fs::TryLockError::Error(e)) => return Err(InputError::io("lock", &lock_path, e)),
        }
        Ok(JsonPositionStore { dir, _lock: lock })
    }

    /// The position file.
    pub fn path(&self) -> PathBuf {
        self.dir.join("positions.json")
    }
}

impl PositionStore for JsonPositionStore {
    fn load(&self) -> Result<Option<Positions>, InputError> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(InputError::io("read", &path, e)),
        };
        let mut p: Positions =
            serde_json::from_slice(&bytes).map_err(|e| InputError::PositionsDamaged {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        match p.version {
            VERSION => {}
            1 => {
                for f in &mut p.files {
                    f.fingerprint = None;
                    f.legacy_ids = true;
                }
                p.version = VERSION;
            }
            v => {
                return Err(InputError::PositionsDamaged {
                    path,
                    reason: format!("unknown version {v}"),
                });
            }
        }
        Ok(Some(p))
    }

    fn save(&self, positions: &Positions) -> Result<(), InputError> {
        let path = self.path();
        let tmp = self.dir.join("positions.json.tmp");
        let bytes = serde_json::to_vec(positions).map_err(|e| InputError::Commit {
            reason: e.to_string(),
        })?;
        let mut f = File::create(&tmp).map_err(|e| InputError::io("create", &tmp, e))?;
        f.write_all(&bytes)
            .map_err(|e| InputError::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| InputError::io("fsync", &tmp, e))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(|e| InputError::io("rename", &path, e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| InputError::io("fsync", &self.dir, e))?;
        Ok(())
    }
}
