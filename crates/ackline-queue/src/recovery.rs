//! Recovery: rebuilding a queue's index from its checkpoint and log after any stop.
//!
//! Steps (also in `docs/queue-format.md`):
//! 1. Remove a leftover `checkpoint.tmp` (a checkpoint that was never installed).
//! 2. Load `checkpoint` if present; if it is damaged, report it and replay every segment.
//! 3. Read each segment header. A last segment whose header is torn (a crash while creating
//!    it) is removed; any other bad header is reported and the segment skipped.
//! 4. Replay records from the checkpoint's position to the end, applying each through the same
//!    transitions as live operation.
//! 5. Where a frame is incomplete or fails its checksum, scan forward for the next intact
//!    record. If one is found, report the damaged range (file, offset, length) and go on. If
//!    none is found and this is the last segment, it is a torn tail: truncate it there and
//!    report it. A damaged end of an older segment is reported, not truncated.
//! 6. Every delivery that was leased becomes deliverable again, attempts kept; writing goes on
//!    in a new segment.
//!
//! Invariant: recovery never fails because of damaged data; it reports it and serves the rest.
//! It fails only when a file cannot be read or changed at all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::checkpoint;
use crate::error::OpenError;
use crate::fs::Fs;
use crate::log::{SEG_HEADER, parse_seg_header, parse_seg_name, seg_name};
use crate::record::{Frame, RecordRef, decode};
use crate::state::{Loc, State};

/// What recovery found and did.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// The state came from a checkpoint (so history before it was not replayed).
    pub from_checkpoint: bool,
    /// The checkpoint was unusable, and why (all segments were replayed instead).
    pub checkpoint_error: Option<String>,
    /// Records replayed from the log.
    pub records_replayed: u64,
    /// Bytes of log scanned.
    pub bytes_scanned: u64,
    /// Torn tails cut off.
    pub truncated: Vec<Damage>,
    /// Damaged ranges skipped.
    pub corrupt: Vec<Damage>,
    /// Wall time spent, in microseconds.
    pub micros: u64,
}

/// A damaged range of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The file.
    pub file: PathBuf,
    /// Where the damage starts.
    pub offset: u64,
    /// How many bytes were skipped or cut.
    pub len: u64,
    /// What was wrong.
    pub reason: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at offset {}: {} ({} bytes)",
            self.file.display(),
            self.offset,
            self.reason,
            self.len
        )
    }
}

pub(crate) struct Recovered {
    pub state: State,
    pub segs: BTreeMap<u32, u32>,
    pub next_seg: u32,
    pub report: RecoveryReport,
}

pub(crate) const CHECKPOINT: &str = "checkpoint";
pub(crate) const CHECKPOINT_TMP: &str = "checkpoint.tmp";

pub(crate) fn recover(fs: &dyn Fs, dir: &Path) -> Result<Recovered, OpenError> {
    let started = Instant::now();
    let mut report = RecoveryReport::default();
    let names = fs.list(dir).map_err(|e| OpenError::io("listing", dir, e))?;
    if names.iter().any(|n| n == CHECKPOINT_TMP) {
        let p = dir.join(CHECKPOINT_TMP);
        fs.remove(&p)
            .map_err(|e| OpenError::io("removing", &p, e))?;
    }
    let mut ids: Vec<u32> = names.iter().filter_map(|n| parse_seg_name(n)).collect();
    ids.sort_unstable();

    let (mut state, start) = if names.iter().any(|n| n == CHECKPOINT) {
        let p = dir.join(CHECKPOINT);
        let bytes = fs.read(&p).map_err(|e| OpenError::io("reading", &p, e))?;
        match checkpoint::decode(&bytes) {
            Ok((st, pos)) => {
                report.from_checkpoint = true;
                (st, Some(pos))
            }
            Err(reason) => {
                report.checkpoint_error = Some(format!("{}: {reason}", p.display()));
                (State::default(), None)
            }
        }
    } else {
        (State::default(), None)
    };

    let mut segs = BTreeMap::new();
    let last_id = ids.last().copied();
    for &id in &ids {
        let path = dir.join(seg_name(id));
        let replay_from = match start {
            Some(pos) if id < pos.seg => None,
            Some(pos) if id == pos.seg => Some(pos.off),
            _ => Some(SEG_HEADER as u64),
        };
        let is_last = Some(id) == last_id;
        let bytes = if replay_from.is_some() {
            fs.read(&path)
                .map_err(|e| OpenError::io("reading", &path, e))?
        } else {
            // Covered by the checkpoint: only its header (for the salt) is needed.
            read_header(fs, &path)
        };
        let salt = match parse_seg_header(&bytes) {
            Ok((hid, salt)) if hid == id => salt,
            Ok((hid, _)) => {
                report.corrupt.push(Damage {
                    file: path.clone(),
                    offset: 0,
                    len: bytes.len() as u64,
                    reason: format!("header names segment {hid}; skipped"),
                });
                continue;
            }
            Err(reason) if is_last => {
                // A crash while creating the segment: nothing in it was ever confirmed,
                // because a batch is confirmed only after the header is durable.
                fs.remove(&path)
                    .map_err(|e| OpenError::io("removing torn segment", &path, e))?;
                report.truncated.push(Damage {
                    file: path.clone(),
                    offset: 0,
                    len: bytes.len() as u64,
                    reason: format!("torn segment header ({reason}); removed"),
                });
                continue;
            }
            Err(reason) => {
                report.corrupt.push(Damage {
                    file: path.clone(),
                    offset: 0,
                    len: bytes.len() as u64,
                    reason: format!("{reason}; segment skipped"),
                });
                continue;
            }
        };
        segs.insert(id, salt);
        let Some(from) = replay_from else { continue };
        let from = usize::try_from(from).unwrap_or(usize::MAX);
        replay_segment(
            fs,
            &path,
            id,
            salt,
            &bytes,
            from,
            is_last,
            &mut state,
            &mut report,
        )?;
    }
    state.finish_recovery();
    state.counters = Default::default();
    let next_seg = ids
        .last()
        .copied()
        .max(start.map(|p| p.seg))
        .map_or(1, |m| m + 1);
    report.micros = started.elapsed().as_micros() as u64;
    Ok(Recovered {
        state,
        segs,
        next_seg,
        report,
    })
}

#[allow(clippy::too_many_arguments)]
fn replay_segment(
    fs: &dyn Fs,
    path: &Path,
    id: u32,
    salt: u32,
    bytes: &[u8],
    from: usize,
    is_last: bool,
    state: &mut State,
    report: &mut RecoveryReport,
) -> Result<(), OpenError> {
    let mut pos = from.min(bytes.len());
    report.bytes_scanned += (bytes.len() - pos) as u64;
    while pos < bytes.len() {
        match decode(bytes, pos, salt) {
            Frame::Record(rec, n) => {
                let loc = Loc {
                    seg: id,
                    off: pos as u32,
                    len: n as u32,
                };
                apply(state, rec, loc);
                report.records_replayed += 1;
                pos += n;
            }
            bad => {
                let reason = match bad {
                    Frame::Corrupt(r) => r.to_string(),
                    _ => "incomplete record".to_string(),
                };
                match resync(bytes, pos + 1, salt) {
                    Some(next) => {
                        report.corrupt.push(Damage {
                            file: path.to_path_buf(),
                            offset: pos as u64,
                            len: (next - pos) as u64,
                            reason: format!("{reason}; skipped to the next intact record"),
                        });
                        pos = next;
                    }
                    None if is_last => {
                        fs.truncate(path, pos as u64)
                            .map_err(|e| OpenError::io("truncating torn tail of", path, e))?;
                        report.truncated.push(Damage {
                            file: path.to_path_buf(),
                            offset: pos as u64,
                            len: (bytes.len() - pos) as u64,
                            reason: format!("torn tail ({reason}); truncated"),
                        });
                        break;
                    }
                    None => {
                        report.corrupt.push(Damage {
                            file: path.to_path_buf(),
                            offset: pos as u64,
                            len: (bytes.len() - pos) as u64,
                            reason: format!("{reason} up to the end of a sealed segment"),
                        });
                        break;
                    }
                }
            }
        }
    }
    Ok(())
}

/// The first bytes of a segment (fewer if the file is shorter or unreadable).
fn read_header(fs: &dyn Fs, path: &Path) -> Vec<u8> {
    let mut h = vec![0u8; SEG_HEADER];
    match fs.open_read(path).and_then(|r| r.read_exact_at(&mut h, 0)) {
        Ok(()) => h,
        Err(_) => Vec::new(),
    }
}

/// The offset of the next intact record at or after `from`.
fn resync(bytes: &[u8], from: usize, salt: u32) -> Option<usize> {
    (from..bytes.len()).find(|&p| matches!(decode(bytes, p, salt), Frame::Record(..)))
}

fn apply(st: &mut State, rec: RecordRef<'_>, loc: Loc) {
    match rec {
        RecordRef::Publish { seq, replay_of, .. } => {
            st.on_publish(seq, loc, replay_of);
        }
        RecordRef::Deliver(runs) => runs.into_iter().flat_map(|r| r.iter()).for_each(|s| {
            st.on_deliver(s);
        }),
        RecordRef::Ack(runs) => runs.into_iter().flat_map(|r| r.iter()).for_each(|s| {
            st.on_ack(s);
        }),
        RecordRef::Nack {
            seq,
            not_before,
            failed_at,
            error,
        } => st.on_nack(seq, not_before, failed_at, error),
        RecordRef::Dead {
            seq,
            attempts,
            first_failure,
            last_failure,
            reason,
            last_error,
        } => {
            st.on_dead_recorded(seq, |e| {
                e.attempts = attempts;
                e.first_failure = first_failure;
                e.last_failure = last_failure;
                e.reason = reason.into();
                e.last_error = last_error.into();
            });
        }
        RecordRef::Purge(runs) => runs.into_iter().flat_map(|r| r.iter()).for_each(|k| {
            st.on_purge(k);
        }),
    }
}
