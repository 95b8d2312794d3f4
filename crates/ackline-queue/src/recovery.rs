//! Recovery: rebuilding a queue's index from its checkpoint and log after any stop.
//!
//! Steps (also in `docs/queue-format.md`):
//! 1. Remove a leftover `checkpoint.tmp` (a checkpoint that was never installed).
//! 2. Load `checkpoint`; if it is damaged, load the previous generation `checkpoint.prev`. A
//!    checkpoint of a format version this build does not know stops the open. With neither
//!    usable, replay every segment, but only if the log is whole (segments `1..=n`, none
//!    reclaimed): replaying a log with holes would resurrect acked messages and lose
//!    dead-letter entries, so recovery refuses instead of guessing.
//! 3. Read each segment header. Only a last segment too short to hold a record (a crash while
//!    creating it) is removed. A damaged header whose records still verify with the salt it
//!    carries is reported and the segment served; any other bad header is reported and the
//!    segment kept in place, unserved.
//! 4. Replay records from the checkpoint's position to the end, applying each through the same
//!    transitions as live operation.
//! 5. Where a frame is incomplete or fails its checksum, scan forward for the next intact
//!    record. The damaged bytes are copied to `quarantine/` (so reclaiming the segment later
//!    deletes no evidence), and the range is reported with file, offset and length. If no
//!    intact record follows in the last segment, it is a torn tail: truncate it (after the
//!    copy) and report it. A damaged end of an older segment is reported, not truncated.
//! 6. Positions that some record proves existed but whose publish record is damaged become
//!    `Lost` slots; the queue dead-letters them with reason `corrupt` as it opens.
//! 7. Every delivery that was leased becomes deliverable again, attempts kept; writing goes on
//!    in a new segment (created when the first record is written).
//!
//! Invariants:
//! - Recovery never fails because of damaged *log* data; it reports it, keeps the damaged
//!   bytes, and serves the rest. It fails when a file cannot be read or changed at all, when
//!   a checkpoint is from an unknown format version, and when no checkpoint is usable over a
//!   log whose history was reclaimed.
//! - In read-only mode it changes no file: no removal, no truncation, no quarantine copy.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::checkpoint::{self, CheckpointError, Pos};
use crate::error::OpenError;
use crate::fs::Fs;
use crate::log::{SEG_HEADER, parse_seg_header, parse_seg_name, seg_name};
use crate::record::{FRAME_HEADER, Frame, RecordRef, decode, kind};
use crate::state::{LOST_UNKNOWN, Loc, SlotState, State};

/// What recovery found and did.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// The state came from a checkpoint (so history before it was not replayed).
    pub from_checkpoint: bool,
    /// The checkpoint used was the previous generation (`checkpoint.prev`), because the
    /// newest one was damaged.
    pub from_previous_checkpoint: bool,
    /// A checkpoint was unusable, and why (the previous generation, or a full replay, stood
    /// in).
    pub checkpoint_error: Option<String>,
    /// Records replayed from the log.
    pub records_replayed: u64,
    /// Bytes of log scanned.
    pub bytes_scanned: u64,
    /// Torn tails cut off.
    pub truncated: Vec<Damage>,
    /// Damaged ranges skipped.
    pub corrupt: Vec<Damage>,
    /// Messages whose publish record was damaged: moved to the dead-letter queue with reason
    /// `corrupt` as the queue opened.
    pub lost_messages: u64,
    /// Wall time spent, in microseconds.
    pub micros: u64,
}

impl RecoveryReport {
    /// Whether recovery found any damage (beyond nothing at all).
    pub fn found_damage(&self) -> bool {
        self.checkpoint_error.is_some() || !self.corrupt.is_empty() || self.lost_messages > 0
    }
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
    /// Where a copy of the damaged bytes was kept (`quarantine/` of the queue), if one was
    /// made (not in read-only mode, not for a segment kept in place whole).
    pub copy: Option<PathBuf>,
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
        )?;
        if let Some(c) = &self.copy {
            write!(f, "; copy kept in {}", c.display())?;
        }
        Ok(())
    }
}

pub(crate) struct Recovered {
    pub state: State,
    pub segs: BTreeMap<u32, u32>,
    pub next_seg: u32,
    pub report: RecoveryReport,
    /// Position of the checkpoint recovery used (the next installed one keeps it as the
    /// previous generation, and segments before it must stay).
    pub checkpoint_pos: Option<Pos>,
    /// `Lost` positions still lost after replay, each with the damage that held it.
    pub lost: Vec<(u64, String)>,
}

pub(crate) const CHECKPOINT: &str = "checkpoint";
pub(crate) const CHECKPOINT_PREV: &str = "checkpoint.prev";
pub(crate) const CHECKPOINT_TMP: &str = "checkpoint.tmp";
pub(crate) const QUARANTINE: &str = "quarantine";

/// Whether recovery may change files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    ReadWrite,
    ReadOnly,
}

struct Ctx<'a> {
    fs: &'a dyn Fs,
    dir: &'a Path,
    mode: Mode,
    report: RecoveryReport,
    /// The most recent damage seen, where lost positions are placed.
    last_damage: Option<(Loc, String)>,
    /// Why each `Lost` position is lost (keyed by the damage's location).
    lost_why: HashMap<(u32, u32), String>,
    /// Damaged ranges after the last intact PUBLISH, with the complete PUBLISH frames each
    /// still shows: `(next position when found, how many, where)`. Any PUBLISH replayed later
    /// names the positions it skipped exactly, so it clears them.
    claims: Vec<(u64, u64, Loc)>,
}

pub(crate) fn recover(fs: &dyn Fs, dir: &Path, mode: Mode) -> Result<Recovered, OpenError> {
    let started = Instant::now();
    let mut cx = Ctx {
        fs,
        dir,
        mode,
        report: RecoveryReport::default(),
        last_damage: None,
        lost_why: HashMap::new(),
        claims: Vec::new(),
    };
    let names = fs.list(dir).map_err(|e| OpenError::io("listing", dir, e))?;
    if mode == Mode::ReadWrite && names.iter().any(|n| n == CHECKPOINT_TMP) {
        let p = dir.join(CHECKPOINT_TMP);
        fs.remove(&p)
            .map_err(|e| OpenError::io("removing", &p, e))?;
    }
    let mut ids: Vec<u32> = names.iter().filter_map(|n| parse_seg_name(n)).collect();
    ids.sort_unstable();

    let (mut state, start) = load_checkpoint(&mut cx, &names)?;
    if start.is_none() {
        check_log_is_whole(&cx, &ids)?;
    }

    let mut segs = BTreeMap::new();
    let mut removed_last = false;
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
                cx.damaged_segment(
                    id,
                    &path,
                    bytes.len(),
                    &format!("header names segment {hid}"),
                );
                continue;
            }
            Err(reason) if is_last && bytes.len() <= SEG_HEADER => {
                // A crash while creating the segment: it cannot hold a record, so nothing in
                // it was ever confirmed (a batch is confirmed only after its records are
                // durable, and they follow the header).
                if mode == Mode::ReadWrite {
                    fs.remove(&path)
                        .map_err(|e| OpenError::io("removing torn segment", &path, e))?;
                    removed_last = true;
                }
                cx.report.truncated.push(Damage {
                    file: path.clone(),
                    offset: 0,
                    len: bytes.len() as u64,
                    reason: format!("torn segment header ({reason}), no record in it; removed"),
                    copy: None,
                });
                continue;
            }
            Err(reason) => match salt_that_verifies(fs, &path, &bytes, replay_from.is_some())? {
                Some(salt) => {
                    cx.report.corrupt.push(Damage {
                        file: path.clone(),
                        offset: 0,
                        len: SEG_HEADER as u64,
                        reason: format!(
                            "damaged segment header ({reason}); its records verify with the salt it holds, served"
                        ),
                        copy: None,
                    });
                    salt
                }
                _ => {
                    cx.damaged_segment(
                        id,
                        &path,
                        bytes.len(),
                        &format!("damaged segment header ({reason}), no record verifies"),
                    );
                    if is_last {
                        // No later segment will name the positions it held: read them from
                        // its (unverified) frames, so they are dead-lettered as corrupt
                        // rather than silently given to new messages.
                        let all = fs
                            .read(&path)
                            .map_err(|e| OpenError::io("reading", &path, e))?;
                        if let (Some(top), Some((at, _))) =
                            (highest_publish_unverified(&all), cx.last_damage.clone())
                        {
                            state.note_exists(top, at);
                        }
                    }
                    continue;
                }
            },
        };
        segs.insert(id, salt);
        let Some(from) = replay_from else { continue };
        let from = usize::try_from(from).unwrap_or(usize::MAX);
        replay_segment(&mut cx, &path, id, salt, &bytes, from, is_last, &mut state)?;
    }
    // Damaged PUBLISH frames after which nothing was published held the next positions
    // (positions are assigned in log order), or new messages would be given them.
    for (at, n, loc) in std::mem::take(&mut cx.claims) {
        if n > 0 {
            state.note_exists(at + n - 1, loc);
        }
    }
    state.finish_recovery();
    state.counters = Default::default();
    let lost = state
        .slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.state == SlotState::Lost)
        .map(|(i, s)| {
            let why = cx
                .lost_why
                .get(&(s.seg, s.off))
                .cloned()
                .unwrap_or_else(|| {
                    "its publish record is missing from the log (damage before it)".to_string()
                });
            (state.base + i as u64, why)
        })
        .collect::<Vec<_>>();
    cx.report.lost_messages = lost.len() as u64;
    // The next segment: after every surviving one (a removed torn last segment's id is used
    // again, so ids stay contiguous), and after the checkpoint's segment if that one exists.
    let mut next_seg = ids
        .last()
        .map_or(1, |&m| if removed_last { m } else { m + 1 });
    if let Some(pos) = start {
        let exists = ids.contains(&pos.seg);
        next_seg = next_seg.max(if exists { pos.seg + 1 } else { pos.seg });
    }
    let mut report = cx.report;
    report.micros = started.elapsed().as_micros() as u64;
    Ok(Recovered {
        state,
        segs,
        next_seg,
        report,
        checkpoint_pos: start,
        lost,
    })
}

/// Loads the newest usable checkpoint generation.
fn load_checkpoint(cx: &mut Ctx<'_>, names: &[String]) -> Result<(State, Option<Pos>), OpenError> {
    let mut errors = Vec::new();
    for (gen_name, previous) in [(CHECKPOINT, false), (CHECKPOINT_PREV, true)] {
        if !names.iter().any(|n| n == gen_name) {
            continue;
        }
        let p = cx.dir.join(gen_name);
        let bytes = cx
            .fs
            .read(&p)
            .map_err(|e| OpenError::io("reading", &p, e))?;
        match checkpoint::decode(&bytes) {
            Ok((st, pos)) => {
                cx.report.from_checkpoint = true;
                cx.report.from_previous_checkpoint = previous;
                if !errors.is_empty() {
                    cx.report.checkpoint_error = Some(errors.join("; "));
                }
                if previous && cx.mode == Mode::ReadWrite && names.iter().any(|n| n == CHECKPOINT) {
                    // Keep the damaged newest generation as evidence, out of the way of the
                    // next install (which would otherwise rename it over the good one).
                    let copy = cx.quarantine_file(&cx.dir.join(CHECKPOINT), "checkpoint")?;
                    if let Some(e) = cx.report.checkpoint_error.as_mut() {
                        e.push_str(&format!("; moved to {}", copy.display()));
                    }
                }
                return Ok((st, Some(pos)));
            }
            Err(CheckpointError::Version(v)) => {
                return Err(OpenError::Format {
                    path: p,
                    reason: format!(
                        "checkpoint format version {v}, this build reads up to {}: it was written by a newer ackline; open the data directory with that version",
                        checkpoint::VERSION
                    ),
                });
            }
            Err(CheckpointError::Damaged(reason)) => {
                errors.push(format!("{}: {reason}", p.display()))
            }
        }
    }
    if !errors.is_empty() {
        cx.report.checkpoint_error = Some(errors.join("; "));
    }
    Ok((State::default(), None))
}

/// With no checkpoint, a replay from the first segment is right only if no segment was ever
/// reclaimed (reclaiming needs a checkpoint, so segments `1..=n` are all there).
fn check_log_is_whole(cx: &Ctx<'_>, ids: &[u32]) -> Result<(), OpenError> {
    let whole = ids.iter().enumerate().all(|(i, &id)| id as usize == i + 1);
    if whole {
        return Ok(());
    }
    let why = cx
        .report
        .checkpoint_error
        .clone()
        .unwrap_or_else(|| "no checkpoint file".to_string());
    Err(OpenError::Format {
        path: cx.dir.to_path_buf(),
        reason: format!(
            "no usable checkpoint ({why}) and the log's history was reclaimed (segments {:?} present, segment 1 onwards expected): a replay would bring back acked messages and lose dead letters, so the queue is not opened. Restore checkpoint or checkpoint.prev from a backup, or move this queue directory aside to start it empty",
            ids
        ),
    })
}

impl Ctx<'_> {
    /// A segment that cannot be served at all: reported, kept in place (never deleted: it is
    /// not in the segment table, so reclamation does not see it), and whatever positions it
    /// held become lost there.
    fn damaged_segment(&mut self, id: u32, path: &Path, len: usize, why: &str) {
        let loc = Loc {
            seg: id,
            off: 0,
            len: 0,
        };
        let text = format!("{} ({why})", path.display());
        self.report.corrupt.push(Damage {
            file: path.to_path_buf(),
            offset: 0,
            len: len as u64,
            reason: format!("{why}; segment kept in place, not served"),
            copy: None,
        });
        self.lost_why.insert((loc.seg, loc.off), text.clone());
        self.last_damage = Some((loc, text));
    }

    /// Copies `bytes` (a damaged range at `offset` of segment `id`) into `quarantine/`.
    fn quarantine_bytes(
        &self,
        id: u32,
        offset: usize,
        bytes: &[u8],
    ) -> Result<Option<PathBuf>, OpenError> {
        if self.mode == Mode::ReadOnly {
            return Ok(None);
        }
        let p = self
            .dir
            .join(QUARANTINE)
            .join(format!("{}.{offset}", seg_name(id)));
        if self.fs.exists(&p) {
            return Ok(Some(p));
        }
        let qdir = self.quarantine_dir()?;
        let tmp = qdir.join(format!("{}.{offset}.tmp", seg_name(id)));
        if self.fs.exists(&tmp) {
            self.fs
                .remove(&tmp)
                .map_err(|e| OpenError::io("removing", &tmp, e))?;
        }
        let mut f = self
            .fs
            .create(&tmp)
            .map_err(|e| OpenError::io("creating", &tmp, e))?;
        f.append(bytes)
            .and_then(|()| f.sync())
            .map_err(|e| OpenError::io("writing", &tmp, e))?;
        drop(f);
        self.fs
            .rename(&tmp, &p)
            .map_err(|e| OpenError::io("renaming", &tmp, e))?;
        self.sync_quarantine(&qdir)?;
        Ok(Some(p))
    }

    /// Creates `quarantine/` if needed and returns it.
    fn quarantine_dir(&self) -> Result<PathBuf, OpenError> {
        let qdir = self.dir.join(QUARANTINE);
        self.fs
            .create_dir_all(&qdir)
            .map_err(|e| OpenError::io("creating", &qdir, e))?;
        Ok(qdir)
    }

    /// Makes a change inside `quarantine/` (and the directory itself) durable.
    fn sync_quarantine(&self, qdir: &Path) -> Result<(), OpenError> {
        self.fs
            .sync_dir(qdir)
            .map_err(|e| OpenError::io("syncing", qdir, e))?;
        self.fs
            .sync_dir(self.dir)
            .map_err(|e| OpenError::io("syncing", self.dir, e))
    }

    /// Moves a whole file into `quarantine/` under a name that does not exist yet.
    fn quarantine_file(&self, path: &Path, stem: &str) -> Result<PathBuf, OpenError> {
        let qdir = self.quarantine_dir()?;
        let mut n = 1u32;
        let dst = loop {
            let d = qdir.join(format!("{stem}.{n}"));
            if !self.fs.exists(&d) {
                break d;
            }
            n += 1;
        };
        self.fs
            .rename(path, &dst)
            .map_err(|e| OpenError::io("moving aside", path, e))?;
        self.sync_quarantine(&qdir)?;
        Ok(dst)
    }

    /// Records a damaged range `[pos, end)` of segment `id`: quarantines its bytes, reports
    /// it, and notes any publish the damaged frames' headers still name.
    #[allow(clippy::too_many_arguments)]
    fn damaged_range(
        &mut self,
        path: &Path,
        id: u32,
        bytes: &[u8],
        pos: usize,
        end: usize,
        reason: String,
        torn_tail: bool,
        state: &mut State,
    ) -> Result<(), OpenError> {
        let copy = self.quarantine_bytes(id, pos, &bytes[pos..end])?;
        let d = Damage {
            file: path.to_path_buf(),
            offset: pos as u64,
            len: (end - pos) as u64,
            reason,
            copy,
        };
        let loc = Loc {
            seg: id,
            off: u32::try_from(pos).unwrap_or(u32::MAX),
            len: u32::try_from(end - pos).unwrap_or(u32::MAX),
        };
        let text = d.to_string();
        self.lost_why.insert((loc.seg, loc.off), text.clone());
        self.last_damage = Some((loc, text));
        // Complete frames (following declared lengths) whose header reads as a PUBLISH are
        // evidence of messages at the next positions; only complete ones, since a write cut
        // short by a crash leaves an incomplete last frame, never a complete one with wrong
        // bytes. Claimed now, applied at the end unless an intact PUBLISH comes later (which
        // names the skipped positions exactly).
        let n = complete_publishes(&bytes[pos..end]);
        if n > 0 {
            self.claims.push((state.next_seq, n, loc));
        }
        if torn_tail && n == 0 {
            self.report.truncated.push(d);
        } else {
            self.report.corrupt.push(d);
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn replay_segment(
    cx: &mut Ctx<'_>,
    path: &Path,
    id: u32,
    salt: u32,
    bytes: &[u8],
    from: usize,
    is_last: bool,
    state: &mut State,
) -> Result<(), OpenError> {
    let mut pos = from.min(bytes.len());
    cx.report.bytes_scanned += (bytes.len() - pos) as u64;
    while pos < bytes.len() {
        match decode(bytes, pos, salt) {
            Frame::Record(rec, n) => {
                let loc = Loc {
                    seg: id,
                    off: pos as u32,
                    len: n as u32,
                };
                if matches!(rec, RecordRef::Publish { .. }) {
                    cx.claims.clear();
                }
                apply(state, rec, loc, cx.last_damage.as_ref().map(|d| d.0));
                cx.report.records_replayed += 1;
                pos += n;
            }
            bad => {
                let reason = match bad {
                    Frame::Corrupt(r) => r.to_string(),
                    _ => "incomplete record".to_string(),
                };
                match resync(bytes, pos + 1, salt) {
                    Some(next) => {
                        cx.damaged_range(
                            path,
                            id,
                            bytes,
                            pos,
                            next,
                            format!("{reason}; skipped to the next intact record"),
                            false,
                            state,
                        )?;
                        pos = next;
                    }
                    None if is_last => {
                        cx.damaged_range(
                            path,
                            id,
                            bytes,
                            pos,
                            bytes.len(),
                            format!("torn tail ({reason}); truncated"),
                            true,
                            state,
                        )?;
                        if cx.mode == Mode::ReadWrite {
                            cx.fs
                                .truncate(path, pos as u64)
                                .map_err(|e| OpenError::io("truncating torn tail of", path, e))?;
                        }
                        break;
                    }
                    None => {
                        cx.damaged_range(
                            path,
                            id,
                            bytes,
                            pos,
                            bytes.len(),
                            format!("{reason} up to the end of a sealed segment"),
                            false,
                            state,
                        )?;
                        break;
                    }
                }
            }
        }
    }
    Ok(())
}

/// The frames of damaged bytes from `start` on, following declared lengths (unverified: a
/// checksum cannot be trusted there) while each header is plausible and its frame complete:
/// `(offset, kind)` of each.
fn chained_frames(bytes: &[u8], start: usize) -> impl Iterator<Item = (usize, u8)> + '_ {
    let mut p = start;
    std::iter::from_fn(move || {
        let h = bytes.get(p..p.checked_add(FRAME_HEADER)?)?;
        let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
        let k = h[8];
        let end = p.checked_add(FRAME_HEADER + len)?;
        if len > crate::record::MAX_BODY
            || !(kind::PUBLISH..=kind::PURGE).contains(&k)
            || end > bytes.len()
        {
            return None;
        }
        let at = p;
        p = end;
        Some((at, k))
    })
}

/// How many complete PUBLISH frames the damaged `bytes` start with.
fn complete_publishes(bytes: &[u8]) -> u64 {
    chained_frames(bytes, 0)
        .filter(|&(_, k)| k == kind::PUBLISH)
        .count() as u64
}

/// The highest position named by a PUBLISH frame of a segment whose salt is unknown.
fn highest_publish_unverified(bytes: &[u8]) -> Option<u64> {
    chained_frames(bytes, SEG_HEADER)
        .filter(|&(_, k)| k == kind::PUBLISH)
        .filter_map(|(at, _)| {
            let b = bytes.get(at + FRAME_HEADER..at + FRAME_HEADER + 8)?;
            Some(u64::from_le_bytes(b.try_into().ok()?))
        })
        .max()
}

/// The first bytes of a segment (fewer if the file is shorter or unreadable).
fn read_header(fs: &dyn Fs, path: &Path) -> Vec<u8> {
    let mut h = vec![0u8; SEG_HEADER];
    match fs.open_read(path).and_then(|r| r.read_exact_at(&mut h, 0)) {
        Ok(()) => h,
        Err(_) => Vec::new(),
    }
}

/// The salt a damaged header holds, if a record after it verifies with it (a frame verifies
/// under the wrong salt with probability 2^-32). `whole` says `bytes` is the whole file.
fn salt_that_verifies(
    fs: &dyn Fs,
    path: &Path,
    bytes: &[u8],
    whole: bool,
) -> Result<Option<u32>, OpenError> {
    let Some(h) = bytes.get(..SEG_HEADER) else {
        return Ok(None);
    };
    let salt = u32::from_le_bytes([h[16], h[17], h[18], h[19]]);
    let all;
    let bytes = if whole {
        bytes
    } else {
        all = fs
            .read(path)
            .map_err(|e| OpenError::io("reading", path, e))?;
        &all
    };
    Ok(resync(bytes, SEG_HEADER, salt).map(|_| salt))
}

/// The offset of the next intact record at or after `from`.
fn resync(bytes: &[u8], from: usize, salt: u32) -> Option<usize> {
    (from..bytes.len()).find(|&p| matches!(decode(bytes, p, salt), Frame::Record(..)))
}

fn apply(st: &mut State, rec: RecordRef<'_>, loc: Loc, damage: Option<Loc>) {
    let at = damage.unwrap_or(LOST_UNKNOWN);
    match rec {
        RecordRef::Publish {
            seq,
            replay_of,
            msg,
        } => {
            if seq > st.next_seq {
                st.note_exists(seq - 1, at);
            }
            let fp = st.fp_key.of(msg.id);
            st.on_publish(seq, loc, replay_of, fp);
        }
        RecordRef::Deliver(runs) => runs.into_iter().flat_map(|r| r.iter()).for_each(|s| {
            st.note_exists(s, at);
            st.on_deliver(s);
        }),
        RecordRef::Ack(runs) => runs.into_iter().flat_map(|r| r.iter()).for_each(|s| {
            st.note_exists(s, at);
            st.on_ack(s);
        }),
        RecordRef::Nack {
            seq,
            not_before,
            failed_at,
            error,
        } => {
            st.note_exists(seq, at);
            st.on_nack(seq, not_before, failed_at, error);
        }
        RecordRef::Dead {
            seq,
            attempts,
            first_failure,
            last_failure,
            reason,
            last_error,
        } => {
            st.note_exists(seq, at);
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
