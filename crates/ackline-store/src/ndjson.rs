//! The NDJSON file store: one JSON object per record (the form documented in
//! `docs/record.md`), one record per line.
//!
//! Invariants:
//! - **Idempotence** comes from an in-memory index of every id in the file,
//!   loaded at open. A record whose id is in it (or earlier in the batch) is
//!   not written. Memory cost: one `Box<str>` per stored record in a
//!   `HashSet`: about 40 bytes plus the id's length (rounded up by the
//!   allocator), so ~70 bytes for ids like `file:/var/log/syslog:123456`,
//!   ~700 MB for ten million records. Past a few million records, prefer
//!   SQLite.
//! - **One batch, one append, one fsync**: the new lines are written with a
//!   single `write_all` and `sync_data` before `write_batch` returns; only
//!   then are their ids added to the index.
//! - **A failed append is undone**: the file is truncated back to its length
//!   before the batch (and synced), so a later batch never follows a partial
//!   line. If even that fails, the store refuses every later write (`Fatal`)
//!   until it is reopened, and reopening repairs it (next point).
//! - **Torn tail**: at open, bytes after the last `\n` (a line cut by a crash
//!   mid-write, which was never acknowledged) are truncated and the file
//!   synced; [`NdjsonStore::recovery`] reports how many bytes. A complete
//!   line that is not a record with an `id` is left as it is, reported by
//!   byte offset, and not indexed.
//! - **A panic leaves the state consistent**: the state's mutex does not
//!   poison (`parking_lot`), which is sound because a panic while holding it
//!   happens before `len`/`ids` are updated (they change only after a
//!   successful sync).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ackline_parse::Record;
use parking_lot::Mutex;
use serde::Deserialize;

use crate::error::join_error;
use crate::{Store, StoreError, WriteReport};

const KIND: &str = "ndjson";

/// What opening the file found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NdjsonRecovery {
    /// Records indexed (lines with an id).
    pub records: u64,
    /// Bytes of an unterminated last line removed.
    pub truncated_bytes: u64,
    /// Byte offsets of complete lines that are not records (left in place).
    pub unreadable_lines: Vec<u64>,
}

/// Idempotent append-only NDJSON file.
#[derive(Debug)]
pub struct NdjsonStore {
    path: PathBuf,
    recovery: NdjsonRecovery,
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    file: File,
    /// The file's length: everything before it is complete, synced lines.
    len: u64,
    ids: HashSet<Box<str>>,
    /// Why writes are refused (a failed append could not be undone).
    broken: Option<String>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

impl NdjsonStore {
    /// Opens (creating if needed) the file at `path`, truncates a torn last
    /// line and indexes the ids it holds.
    ///
    /// # Errors
    /// `Fatal` when the file cannot be opened, read or repaired.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let p = path.clone();
        let (state, recovery) = tokio::task::spawn_blocking(move || recover(&p))
            .await
            .map_err(|e| join_error(KIND, &e))??;
        Ok(Self {
            path,
            recovery,
            state: Arc::new(Mutex::new(state)),
        })
    }

    /// What the open found and repaired.
    #[must_use]
    pub fn recovery(&self) -> &NdjsonRecovery {
        &self.recovery
    }

    /// The file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn io_fatal(path: &Path, what: &str, e: &std::io::Error) -> StoreError {
    StoreError::fatal(KIND, format!("{}: {what}: {e}", path.display()))
}

fn recover(path: &Path) -> Result<(State, NdjsonRecovery), StoreError> {
    let existed = path.exists();
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| io_fatal(path, "cannot open", &e))?;
    if !existed {
        // Make the new file's directory entry durable too.
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_fatal(dir, "cannot sync directory", &e))?;
    }
    let mut recovery = NdjsonRecovery::default();
    let mut ids = HashSet::new();
    let mut reader = BufReader::with_capacity(1 << 20, &file);
    let mut line = Vec::new();
    let mut offset = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| io_fatal(path, "cannot read", &e))?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') {
            recovery.truncated_bytes = n as u64;
            break;
        }
        match serde_json::from_slice::<IdOnly>(&line) {
            Ok(rec) => {
                ids.insert(rec.id.into_boxed_str());
                recovery.records += 1;
            }
            Err(_) => recovery.unreadable_lines.push(offset),
        }
        offset += n as u64;
    }
    drop(reader);
    if recovery.truncated_bytes > 0 {
        file.set_len(offset)
            .and_then(|()| file.sync_all())
            .map_err(|e| io_fatal(path, "cannot truncate the torn last line", &e))?;
    }
    let state = State {
        file,
        len: offset,
        ids,
        broken: None,
    };
    Ok((state, recovery))
}

fn write(path: &Path, st: &mut State, batch: &[Record]) -> Result<WriteReport, StoreError> {
    if let Some(why) = &st.broken {
        return Err(StoreError::fatal(
            KIND,
            format!("{}: {why}", path.display()),
        ));
    }
    let mut buf = Vec::new();
    let mut new_ids: HashSet<&str> = HashSet::new();
    for (index, r) in batch.iter().enumerate() {
        if st.ids.contains(r.id.as_str()) || !new_ids.insert(r.id.as_str()) {
            continue;
        }
        serde_json::to_writer(&mut buf, r).map_err(|e| StoreError::Rejected {
            index,
            reason: format!("cannot serialise as JSON: {e}"),
        })?;
        buf.push(b'\n');
    }
    if buf.is_empty() {
        return Ok(WriteReport {
            inserted: 0,
            duplicates: batch.len(),
        });
    }
    let result = st.file.write_all(&buf).and_then(|()| st.file.sync_data());
    if let Err(e) = result {
        // Undo whatever part of the append reached the file.
        if let Err(undo) = st.file.set_len(st.len).and_then(|()| st.file.sync_all()) {
            st.broken = Some(format!(
                "an append failed ({e}) and could not be undone ({undo}); reopen to repair"
            ));
        }
        let out_of_space = matches!(
            e.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        );
        return Err(if out_of_space && st.broken.is_none() {
            StoreError::unavailable(KIND, format!("{}: {e}", path.display()))
        } else {
            io_fatal(path, "append failed", &e)
        });
    }
    st.len += buf.len() as u64;
    let inserted = new_ids.len();
    st.ids.extend(new_ids.into_iter().map(Box::from));
    Ok(WriteReport {
        inserted,
        duplicates: batch.len() - inserted,
    })
}

impl Store for NdjsonStore {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn write_batch(
        &self,
        batch: &[Record],
    ) -> impl Future<Output = Result<WriteReport, StoreError>> + Send {
        let (state, path) = (self.state.clone(), self.path.clone());
        let batch = batch.to_vec();
        async move {
            tokio::task::spawn_blocking(move || write(&path, &mut state.lock(), &batch))
                .await
                .map_err(|e| join_error(KIND, &e))?
        }
    }

    fn probe(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        let (state, path) = (self.state.clone(), self.path.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                let st = state.lock();
                if let Some(why) = &st.broken {
                    return Err(StoreError::fatal(
                        KIND,
                        format!("{}: {why}", path.display()),
                    ));
                }
                st.file
                    .metadata()
                    .map(|_| ())
                    .map_err(|e| io_fatal(&path, "cannot stat", &e))
            })
            .await
            .map_err(|e| join_error(KIND, &e))?
        }
    }
}
