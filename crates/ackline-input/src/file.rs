//! [`FileInput`]: follows files like `tail -F`, with persisted positions.
//!
//! # Why polling
//! Files are checked every `poll_interval` (default 250 ms) with `stat`/`fstat` and positioned
//! reads, not watched with inotify. Polling works on every filesystem (NFS, CIFS, FUSE,
//! overlay filesystems in containers, bind mounts, where inotify misses changes made
//! elsewhere), needs no per-file kernel watches (no `max_user_watches` limit), and costs a
//! bounded few system calls per file per interval. inotify would mainly lower the latency from
//! at most one interval to near zero, which a pipeline that batches and fsyncs does not need;
//! and a watcher with a polling fallback would be two code paths to test instead of one.
//!
//! # One round
//! 1. Expand the patterns; `stat` each match. A match whose identity (`dev`, `ino`) is
//!    followed already only updates its path (a rename to another matching name keeps it
//!    followed); a new identity is opened and its first bytes read. It starts at its saved
//!    position if one has its identity and its first bytes match the saved fingerprint (see
//!    [`crate::fingerprint`]). Otherwise it is a new file (an inode reused by another file is
//!    one): it starts at 0, or at its end under [`StartAt::End`](crate::StartAt::End) on the
//!    first scan of a state directory that never saved positions (the very first run).
//! 2. A followed file whose identity no longer appears under any match was renamed away or
//!    deleted. It is kept open and read for `rotated_grace` more (a writer may still be
//!    writing to it), then read to its end, its partial last line published, and dropped.
//!    Such files are read before the others, so the rest of a rotated file comes before the
//!    new file's lines.
//! 3. For each file: if its size is below the position, or it grew and no longer starts with
//!    its fingerprinted bytes, it was truncated in place (copytruncate): generation + 1,
//!    position 0, fingerprint taken again, committed at once. A file without a fingerprint
//!    gets one (committed) before its first line is published. Then complete lines are read
//!    from the position and published in batches, up to [`PUBLISH_WINDOW`] in flight: the next
//!    batch is read and handed to the broker while the earlier ones wait for their fsync (so
//!    they share group commits). As each is confirmed, in order, the position moves past it;
//!    positions are committed in the background (one commit at a time, at most every
//!    [`POSITION_COMMIT_INTERVAL`]) and when the file's drain ends.
//!
//! Invariants:
//! - The committed position of a file is never past a line whose publish was not confirmed.
//! - A file's batches reach the broker in file order: each publish is polled once (the
//!   embedded queue appends then) before the next batch is read, and a batch that had to be
//!   retried is confirmed before the next is handed over.
//! - Position commits land in order: a commit first waits for the background one.
//! - A message's id is a function of (file identity, fingerprint, generation, byte offset):
//!   the same line gets the same id on every run until the position moves past it, and a file
//!   that reuses another's inode but starts with other bytes gets other ids.
//! - The generation and fingerprint a file is read under are committed before any line is
//!   published with them, so a crash cannot make a restart choose others for the same bytes.
//! - A file belongs to one [`FileGroup`](crate::FileGroup), chosen when it is first followed:
//!   the first group one of whose patterns matches it. Its records are cut by that group's
//!   multi-line rule and its messages carry that group's headers for as long as it is
//!   followed (a rename does not move it to another group). A new file matched by two groups
//!   whose settings differ is refused ([`InputError::GroupConflict`]) before any of its lines
//!   is published.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use ackline_broker::{Broker, Message};
use ackline_parse::{Joiner, Multiline};
use tokio::sync::watch;

use crate::fingerprint::{Fingerprint, newline_before, read_head};
use crate::positions::{FilePosition, MAX_RETIRED, Positions, RetiredFile, VERSION};
use crate::publish::{Sent, publish, publish_owned, sleep_or_stop, stopped};
use crate::reader::{Item, Limits, read_chunk, read_part};
use crate::{
    At, CountersSnapshot, FileGroup, FileInputConfig, InputCounters, InputError, JsonPositionStore,
    PositionStore, StartAt,
};

type Key = (u64, u64);

/// Batches of one file a drain keeps in flight: the next is read and handed to the broker
/// while the earlier ones wait for their fsync, so they share group commits.
pub const PUBLISH_WINDOW: usize = 4;

/// The least time between two position commits while a file is being drained; whatever a
/// drain confirmed is committed when it ends. So a kill -9 republishes (same ids) at most
/// this much more than the last few batches.
pub const POSITION_COMMIT_INTERVAL: Duration = Duration::from_millis(100);

type InFlightPublish = Pin<Box<dyn Future<Output = Result<Sent, InputError>> + Send>>;

/// A batch handed to the broker and not yet confirmed.
struct InFlight {
    /// The file offset past its last line.
    end: u64,
    lines: u64,
    bytes: u64,
    publish: InFlightPublish,
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight")
            .field("end", &self.end)
            .field("lines", &self.lines)
            .finish_non_exhaustive()
    }
}

/// The id of the message whose payload starts at `offset` of the file (`dev`, `ino`) that
/// starts with the bytes of `fingerprint` ([`Fingerprint::of_head`]), under `generation`:
/// `file:<dev>:<ino>:<fingerprint as 16 hex digits>:<generation>:<offset>`.
pub fn file_message_id(
    dev: u64,
    ino: u64,
    fingerprint: Fingerprint,
    generation: u64,
    offset: u64,
) -> String {
    IdPrefix::new(dev, ino, Some(fingerprint), generation).id(offset)
}

/// The ids of one file's messages under one generation: everything but the offset, formatted
/// once per chunk rather than once per line (the whole `format!` was 7% of the instructions
/// of `ackline run`). Without a fingerprint it makes the ids of version 1 positions, kept for
/// the files they saved until those are truncated or finished:
/// `file:<dev>:<ino>:<generation>:<offset>`.
struct IdPrefix(String);

impl IdPrefix {
    fn new(dev: u64, ino: u64, fingerprint: Option<Fingerprint>, generation: u64) -> Self {
        IdPrefix(match fingerprint {
            Some(fp) => format!("file:{dev}:{ino}:{fp}:{generation}:"),
            None => format!("file:{dev}:{ino}:{generation}:"),
        })
    }

    /// The id of the message at `offset`.
    fn id(&self, offset: u64) -> String {
        let mut digits = itoa::Buffer::new();
        let offset = digits.format(offset);
        let mut id = String::with_capacity(self.0.len() + offset.len());
        id.push_str(&self.0);
        id.push_str(offset);
        id
    }
}

/// The headers of a line's message: its input, its group's headers, the file's mtime; the
/// vector allocated once at its final size.
fn line_headers(
    input: &str,
    group: &[(String, String)],
    mtime: Option<&str>,
) -> Vec<(String, String)> {
    let mut h = Vec::with_capacity(1 + group.len() + usize::from(mtime.is_some()));
    h.push(("input".to_owned(), input.to_owned()));
    h.extend(group.iter().cloned());
    if let Some(m) = mtime {
        h.push(("mtime".to_owned(), m.to_owned()));
    }
    h
}
#[derive(Debug, Clone)]
struct Pattern {
    text: String,
    glob: Option<glob::Pattern>,
    /// Index of its group in `FileInput::groups`.
    group: usize,
}

/// The group of the file at `path`: that of the first pattern matching it (`fallback`, the
/// group of the pattern that found it, if none does), or the two groups with different settings
/// that both match it.
fn group_of(
    patterns: &[Pattern],
    groups: &[FileGroup],
    path: &Path,
    fallback: usize,
) -> Result<usize, (usize, usize)> {
    let mut matching = patterns.iter().filter(|p| p.matches(path)).map(|p| p.group);
    let Some(first) = matching.next() else {
        return Ok(fallback);
    };
    for other in matching {
        let same = match (groups.get(first), groups.get(other)) {
            (Some(a), Some(b)) => a.same_settings(b),
            _ => true, // not a group: cannot happen, the patterns are built from the groups
        };
        if other != first && !same {
            return Err((first, other));
        }
    }
    Ok(first)
}

impl Pattern {
    fn matches(&self, path: &Path) -> bool {
        match &self.glob {
            Some(g) => glob_matches(g, path),
            None => path == Path::new(&self.text),
        }
    }
}

/// Whether `glob` matches `path` as expanding it would find it: `*`, `?` and `[...]` never
/// match a `/` (only `**` crosses directories), so `/var/log/*.log` does not match
/// `/var/log/postgresql/main.log`.
pub fn glob_matches(glob: &glob::Pattern, path: &Path) -> bool {
    glob.matches_path_with(
        path,
        glob::MatchOptions {
            require_literal_separator: true,
            ..glob::MatchOptions::new()
        },
    )
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Checks one entry of [`FileInputConfig::paths`](crate::FileInputConfig::paths): a path, or a
/// glob pattern that parses (`[[` does not).
pub fn check_path_pattern(p: &str) -> Result<Option<glob::Pattern>, InputError> {
    if !is_glob(p) {
        return Ok(None);
    }
    glob::Pattern::new(p)
        .map(Some)
        .map_err(|e| InputError::Pattern {
            pattern: p.to_string(),
            reason: e.to_string(),
        })
}

#[derive(Debug)]
struct Gone {
    since: Instant,
}

#[derive(Debug)]
struct Tracked {
    path: PathBuf,
    name: String,
    file: Arc<File>,
    /// `None` until the file has a first line (see [`crate::fingerprint`]).
    fingerprint: Option<Fingerprint>,
    /// Saved by positions version 1: ids without the fingerprint for this generation.
    legacy_ids: bool,
    generation: u64,
    /// The position: the end of the last confirmed publish (what [`FileInput::positions`]
    /// saves).
    offset: u64,
    /// Where the next read starts: past `offset` while publishes are in flight
    /// ([`FileInput::drain`]); equal to it otherwise.
    read_to: u64,
    gone: Option<Gone>,
    /// A multi-line record held back at the end of the data (it may go on).
    pending: Option<Pending>,
    /// Index of its group in `FileInput::groups`.
    group: usize,
}

/// The last record of a file under a multi-line rule, not yet published: the position stays
/// at its first line until the next record starts, the file ends (`run_once`, a rotated
/// file), or the file has not grown for `multiline_timeout`.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// Offset of its first line (the saved position).
    offset: u64,
    /// The file's size when it was last held back.
    size: u64,
    /// When the file last grew while it was held back.
    since: Instant,
}

/// A match of the patterns.
#[derive(Debug)]
struct Found {
    path: PathBuf,
    key: Key,
    /// Opened when its identity was not followed yet: the file, its size and its first bytes.
    opened: Option<(Arc<File>, u64, Vec<u8>)>,
    /// Its group ([`group_of`]); only computed for a file opened here.
    group: Result<usize, (usize, usize)>,
}

/// What to do with a saved position whose file is not followed.
#[derive(Debug)]
enum Recovered {
    /// Still at its path (maybe no longer matched): keep the entry.
    Unchanged,
    /// Renamed while we were down: found here; read it to its end.
    At(PathBuf, Arc<File>),
    /// Gone: retire it.
    Missing,
}

/// How draining a file ended.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    /// Read to its current end.
    Drained,
    /// Shrank under us; the next round will see the truncation.
    Interrupted,
    /// The stop signal came.
    Stopped,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, InputError> + Send + 'static,
) -> Result<T, InputError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| InputError::Task(e.to_string()))?
}

fn key_of(md: &fs::Metadata) -> Key {
    (md.dev(), md.ino())
}

fn discover(patterns: &[Pattern], groups: &[FileGroup], known: &HashSet<Key>) -> Vec<Found> {
    let mut out = Vec::new();
    let mut seen_paths = HashSet::new();
    for p in patterns {
        let paths: Vec<PathBuf> = match &p.glob {
            None => vec![PathBuf::from(&p.text)],
            Some(_) => match glob::glob(&p.text) {
                Ok(it) => it
                    .filter_map(|r| match r {
                        Ok(path) => Some(path),
                        Err(e) => {
                            tracing::warn!(pattern = %p.text, error = %e, "cannot read a directory while expanding a pattern");
                            None
                        }
                    })
                    .collect(),
                Err(_) => Vec::new(), // checked when the input was built
            },
        };
        for path in paths {
            if !seen_paths.insert(path.clone()) {
                continue;
            }
            let md = match fs::metadata(&path) {
                Ok(m) if m.is_file() => m,
                _ => continue,
            };
            let key = key_of(&md);
            if known.contains(&key) {
                out.push(Found {
                    path,
                    key,
                    opened: None,
                    group: Ok(p.group),
                });
                continue;
            }
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot open a matched file; will retry");
                    continue;
                }
            };
            let Ok(fmd) = file.metadata() else { continue };
            let head = match read_head(&file) {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read a matched file; will retry");
                    continue;
                }
            };
            out.push(Found {
                group: group_of(patterns, groups, &path, p.group),
                path,
                key: key_of(&fmd),
                opened: Some((Arc::new(file), fmd.len(), head)),
            });
        }
    }
    out
}

/// Whether `file`, which has the identity of the saved `entry`, is the file it saved: it starts
/// with the saved fingerprint; without one (a file that had no first line yet, or a version 1
/// position), its saved offset is 0 or just after a `\n`.
fn is_saved_file(file: &File, head: &[u8], entry: &FilePosition) -> std::io::Result<bool> {
    match entry.fingerprint {
        Some(fp) => Ok(fp.matches(head)),
        None => newline_before(file, entry.offset),
    }
}

fn find_in_dir(dir: &Path, entry: &FilePosition) -> Option<(PathBuf, Arc<File>)> {
    let key = (entry.dev, entry.ino);
    let entries = fs::read_dir(dir).ok()?;
    for e in entries.flatten() {
        let path = e.path();
        let Ok(md) = fs::metadata(&path) else {
            continue;
        };
        if md.is_file() && key_of(&md) == key {
            let file = File::open(&path).ok()?;
            let fmd = file.metadata().ok()?;
            if key_of(&fmd) != key {
                continue;
            }
            let head = read_head(&file).ok()?;
            if !is_saved_file(&file, &head, entry).ok()? {
                tracing::warn!(path = %path.display(), "a file has the identity of a saved one but other first bytes: the inode was reused; the saved file is gone");
                return None;
            }
            return Some((path, Arc::new(file)));
        }
    }
    None
}

fn recover(entry: &FilePosition) -> Recovered {
    let key = (entry.dev, entry.ino);
    if let Ok(md) = fs::metadata(&entry.path)
        && key_of(&md) == key
    {
        return Recovered::Unchanged;
    }
    match entry.path.parent().and_then(|d| find_in_dir(d, entry)) {
        Some((path, file)) => Recovered::At(path, file),
        None => Recovered::Missing,
    }
}

/// Follows files and publishes their lines; see the module doc.
#[derive(Debug)]
pub struct FileInput<B> {
    broker: Arc<B>,
    config: FileInputConfig,
    store: Arc<dyn PositionStore>,
    counters: Arc<InputCounters>,
    patterns: Vec<Pattern>,
    tracked: BTreeMap<Key, Tracked>,
    /// Saved positions of files not followed now.
    untouched: Vec<FilePosition>,
    retired: Vec<RetiredFile>,
    /// No positions were ever saved in this state directory: `StartAt::End` applies.
    fresh: bool,
    started: bool,
    /// Every group ([`FileInputConfig::all_groups`]).
    groups: Vec<FileGroup>,
    /// Where records start under each group's multi-line rule (`None` for one record per
    /// line), by group index.
    joiners: Vec<Option<Joiner>>,
    /// Publishes of the file being drained, oldest first (empty between drains).
    inflight: VecDeque<InFlight>,
    /// The position commit running in the background, if any (one at a time, in order).
    saving: Option<tokio::task::JoinHandle<Result<(), InputError>>>,
    /// When the last background commit started.
    last_save: Option<Instant>,
    /// Positions moved since the last commit started.
    save_due: bool,
}

impl<B: Broker> FileInput<B> {
    /// An input over `broker` whose positions live in `config.state_dir/positions.json`
    /// (the directory is created and locked; one input per directory).
    pub fn new(broker: Arc<B>, config: FileInputConfig) -> Result<Self, InputError> {
        config.validate()?;
        let store = JsonPositionStore::open(&config.state_dir)?;
        Self::with_store(broker, config, Arc::new(store))
    }

    /// An input whose positions live in `store` (`config.state_dir` is not used).
    pub fn with_store(
        broker: Arc<B>,
        config: FileInputConfig,
        store: Arc<dyn PositionStore>,
    ) -> Result<Self, InputError> {
        config.validate()?;
        let groups = config.all_groups();
        let mut patterns = Vec::new();
        for (group, g) in groups.iter().enumerate() {
            for p in &g.paths {
                let glob = check_path_pattern(p)?;
                patterns.push(Pattern {
                    text: p.clone(),
                    glob,
                    group,
                });
            }
        }
        let saved = store.load()?;
        let fresh = saved.is_none();
        let saved = saved.unwrap_or_default();
        let joiners = groups
            .iter()
            .map(|g| (g.multiline != Multiline::None).then(|| Joiner::new(g.multiline)))
            .collect();
        Ok(FileInput {
            broker,
            config,
            store,
            counters: Arc::new(InputCounters::default()),
            patterns,
            tracked: BTreeMap::new(),
            untouched: saved.files,
            retired: saved.retired,
            fresh,
            started: false,
            groups,
            joiners,
            inflight: VecDeque::new(),
            saving: None,
            last_save: None,
            save_due: false,
        })
    }

    /// Live counters (share them with a progress bar).
    pub fn counters(&self) -> Arc<InputCounters> {
        self.counters.clone()
    }

    /// The positions as last committed (they are committed after every change; after a
    /// failed commit, what would have been committed).
    pub fn positions(&self) -> Positions {
        let mut files: Vec<FilePosition> = self
            .tracked
            .iter()
            .map(|(&(dev, ino), t)| FilePosition {
                path: t.path.clone(),
                dev,
                ino,
                fingerprint: t.fingerprint,
                legacy_ids: t.legacy_ids,
                generation: t.generation,
                offset: t.offset,
            })
            .collect();
        files.extend(self.untouched.iter().cloned());
        Positions {
            version: VERSION,
            files,
            retired: self.retired.clone(),
        }
    }

    /// Follows the files until `stop` turns true (or its sender is dropped); every published
    /// line is committed by then. Returns the counters.
    pub async fn run(
        &mut self,
        mut stop: watch::Receiver<bool>,
    ) -> Result<CountersSnapshot, InputError> {
        loop {
            if self.round(&mut stop, true).await? == Flow::Stopped {
                break;
            }
            if sleep_or_stop(self.config.poll_interval, &mut stop).await {
                break;
            }
        }
        Ok(self.counters.snapshot())
    }

    /// Reads every matched file to its current end, publishes, commits and returns (a last
    /// line without a newline is published if `once_publishes_partial`). `stop` ends it
    /// early (only a broker refusing publishes for long makes that useful).
    pub async fn run_once(
        &mut self,
        mut stop: watch::Receiver<bool>,
    ) -> Result<CountersSnapshot, InputError> {
        self.round(&mut stop, false).await?;
        Ok(self.counters.snapshot())
    }

    /// Commits the positions now (after the background commit, if one runs, so commits
    /// land in order).
    async fn commit(&mut self) -> Result<(), InputError> {
        self.await_saving().await?;
        self.save_due = false;
        let positions = self.positions();
        let store = self.store.clone();
        blocking(move || store.save(&positions)).await?;
        self.counters.commit();
        Ok(())
    }

    /// Commits the positions in the background, unless a commit is running or the last one
    /// started less than [`POSITION_COMMIT_INTERVAL`] ago: then it is due, and made by
    /// [`Self::finish_saving`] at the latest. An earlier background commit's error is
    /// returned here.
    async fn commit_soon(&mut self) -> Result<(), InputError> {
        let busy = self.saving.as_ref().is_some_and(|h| !h.is_finished());
        let recent = self
            .last_save
            .is_some_and(|t| t.elapsed() < POSITION_COMMIT_INTERVAL);
        if busy || recent {
            self.save_due = true;
            return Ok(());
        }
        self.await_saving().await?;
        self.save_due = false;
        self.last_save = Some(Instant::now());
        let positions = self.positions();
        let store = self.store.clone();
        let counters = self.counters.clone();
        self.saving = Some(tokio::task::spawn_blocking(move || {
            store.save(&positions)?;
            counters.commit();
            Ok(())
        }));
        Ok(())
    }

    /// Waits for the background commit, if one runs.
    async fn await_saving(&mut self) -> Result<(), InputError> {
        match self.saving.take() {
            Some(h) => h.await.map_err(|e| InputError::Task(e.to_string()))?,
            None => Ok(()),
        }
    }

    /// Waits for the background commit and commits what is still due.
    async fn finish_saving(&mut self) -> Result<(), InputError> {
        self.await_saving().await?;
        if self.save_due {
            self.commit().await?;
        }
        Ok(())
    }

    async fn round(
        &mut self,
        stop: &mut watch::Receiver<bool>,
        follow: bool,
    ) -> Result<Flow, InputError> {
        self.scan().await?;
        // Files that went away first: the rest of a rotated file precedes the new one.
        let mut keys: Vec<(bool, PathBuf, Key)> = self
            .tracked
            .iter()
            .map(|(k, t)| (t.gone.is_none(), t.path.clone(), *k))
            .collect();
        keys.sort();
        for (present, _, key) in keys {
            let finishing = match (follow, present) {
                (false, true) => self.config.once_publishes_partial,
                (false, false) => true,
                (true, true) => false,
                (true, false) => self.tracked.get(&key).is_some_and(|t| {
                    t.gone
                        .as_ref()
                        .is_some_and(|g| g.since.elapsed() >= self.config.rotated_grace)
                }),
            };
            match self.drain(key, finishing, stop).await? {
                Flow::Stopped => return Ok(Flow::Stopped),
                Flow::Interrupted => continue,
                Flow::Drained => {}
            }
            if finishing && !present {
                self.retire(key).await?;
            }
        }
        self.counters.set_files_followed(self.tracked.len() as u64);
        Ok(Flow::Drained)
    }

    async fn retire(&mut self, key: Key) -> Result<(), InputError> {
        let Some(t) = self.tracked.remove(&key) else {
            return Ok(());
        };
        let deleted = t.file.metadata().map(|m| m.nlink() == 0).unwrap_or(false);
        if deleted {
            self.counters.deletion();
        } else {
            self.counters.rotation();
        }
        tracing::info!(path = %t.path.display(), offset = t.offset, deleted, "finished a file that went away");
        self.retired.push(RetiredFile {
            dev: key.0,
            ino: key.1,
            generation: t.generation,
        });
        let excess = self.retired.len().saturating_sub(MAX_RETIRED);
        self.retired.drain(..excess);
        self.commit().await
    }

    async fn scan(&mut self) -> Result<(), InputError> {
        let known: HashSet<Key> = self.tracked.keys().copied().collect();
        let patterns = self.patterns.clone();
        let groups = self.groups.clone();
        let found = blocking(move || Ok(discover(&patterns, &groups, &known))).await?;
        let mut paths_of: BTreeMap<Key, Vec<PathBuf>> = BTreeMap::new();
        for f in &found {
            paths_of.entry(f.key).or_default().push(f.path.clone());
        }
        // Followed files: still there (maybe renamed to another match), or gone.
        for (key, t) in self.tracked.iter_mut() {
            match paths_of.get(key) {
                Some(paths) => {
                    if !paths.contains(&t.path)
                        && let Some(p) = paths.first()
                    {
                        t.path = p.clone();
                        t.name = p.display().to_string();
                    }
                    t.gone = None;
                }
                None => {
                    if t.gone.is_none() {
                        tracing::info!(path = %t.path.display(), "file renamed away or deleted; reading it to its end");
                        t.gone = Some(Gone {
                            since: Instant::now(),
                        });
                    }
                }
            }
        }
        let mut changed = false;
        for f in found {
            let Some((file, size, head)) = f.opened else {
                continue;
            };
            if self.tracked.contains_key(&f.key) {
                continue;
            }
            let group = f
                .group
                .map_err(|(first, second)| self.conflict(&f.path, first, second))?;
            let saved = match self.untouched.iter().position(|e| (e.dev, e.ino) == f.key) {
                Some(i) => {
                    let e = self.untouched.remove(i);
                    let same = {
                        let (file, head, entry, path) =
                            (file.clone(), head.clone(), e.clone(), f.path.clone());
                        blocking(move || {
                            is_saved_file(&file, &head, &entry)
                                .map_err(|err| InputError::io("read", path, err))
                        })
                        .await?
                    };
                    if !same {
                        tracing::warn!(path = %f.path.display(), saved_offset = e.offset, "a file has the identity of a saved one but other first bytes: the saved file was replaced while the input was down (inode reused); reading the new one from its start. Lines written to the old file after its saved position, if any, cannot be read");
                    }
                    Some((e, same))
                }
                None => None,
            };
            let (generation, offset, fingerprint, legacy_ids) = match saved {
                Some((e, true)) => (
                    e.generation,
                    e.offset,
                    e.fingerprint.or_else(|| Fingerprint::of_head(&head)),
                    e.legacy_ids,
                ),
                Some((e, false)) => (e.generation + 1, 0, Fingerprint::of_head(&head), false),
                None => {
                    let generation = self
                        .retired
                        .iter()
                        .rev()
                        .find(|r| (r.dev, r.ino) == f.key)
                        .map_or(0, |r| r.generation + 1);
                    // `end` only on the very first run: a file that appeared while the input
                    // was down (or after its first scan) holds lines nobody read yet.
                    let offset =
                        if self.fresh && !self.started && self.config.start_at == StartAt::End {
                            size
                        } else {
                            0
                        };
                    (generation, offset, Fingerprint::of_head(&head), false)
                }
            };
            self.counters.file_seen();
            self.tracked.insert(
                f.key,
                Tracked {
                    name: f.path.display().to_string(),
                    path: f.path,
                    file,
                    fingerprint,
                    legacy_ids,
                    generation,
                    offset,
                    read_to: offset,
                    gone: None,
                    pending: None,
                    group,
                },
            );
            changed = true;
        }
        if !self.started {
            self.started = true;
            changed |= self.recover_moved().await?;
            // Record at once that this state directory has run, so `end` never applies again.
            changed |= self.fresh;
        }
        self.counters.set_files_followed(self.tracked.len() as u64);
        if changed {
            self.commit().await?;
        }
        Ok(())
    }

    /// First scan of a run: a saved file that is no longer at its (matched) path was rotated
    /// while the input was down. Look for it by identity in its directory and finish it.
    async fn recover_moved(&mut self) -> Result<bool, InputError> {
        let mut candidates: Vec<(FilePosition, usize)> = Vec::new();
        for e in &self.untouched {
            if !self.patterns.iter().any(|p| p.matches(&e.path)) {
                continue;
            }
            let group = group_of(&self.patterns, &self.groups, &e.path, 0)
                .map_err(|(first, second)| self.conflict(&e.path, first, second))?;
            candidates.push((e.clone(), group));
        }
        if candidates.is_empty() {
            return Ok(false);
        }
        let outcomes = blocking(move || {
            Ok(candidates
                .into_iter()
                .map(|(e, group)| {
                    let r = recover(&e);
                    (e, group, r)
                })
                .collect::<Vec<_>>())
        })
        .await?;
        let mut changed = false;
        for (e, group, r) in outcomes {
            let key = (e.dev, e.ino);
            match r {
                Recovered::Unchanged => {}
                Recovered::At(path, file) => {
                    self.untouched.retain(|u| (u.dev, u.ino) != key);
                    if self.tracked.contains_key(&key) {
                        continue;
                    }
                    tracing::info!(from = %e.path.display(), to = %path.display(), "file rotated while the input was down; reading it to its end");
                    self.counters.file_seen();
                    self.tracked.insert(
                        key,
                        Tracked {
                            name: path.display().to_string(),
                            path,
                            file,
                            fingerprint: e.fingerprint,
                            legacy_ids: e.legacy_ids,
                            generation: e.generation,
                            offset: e.offset,
                            read_to: e.offset,
                            gone: Some(Gone {
                                since: Instant::now(),
                            }),
                            pending: None,
                            group,
                        },
                    );
                    changed = true;
                }
                Recovered::Missing => {
                    tracing::warn!(path = %e.path.display(), offset = e.offset, "a followed file is gone and was not found in its directory; lines written after its saved position, if any, cannot be read");
                    self.untouched.retain(|u| (u.dev, u.ino) != key);
                    self.retired.push(RetiredFile {
                        dev: e.dev,
                        ino: e.ino,
                        generation: e.generation,
                    });
                    changed = true;
                }
            }
        }
        let excess = self.retired.len().saturating_sub(MAX_RETIRED);
        self.retired.drain(..excess);
        Ok(changed)
    }

    /// The error about a file matched by the groups `first` and `second`.
    fn conflict(&self, path: &Path, first: usize, second: usize) -> InputError {
        let name = |i: usize| {
            self.groups
                .get(i)
                .map_or_else(String::new, |g| g.name.clone())
        };
        InputError::GroupConflict {
            path: path.to_path_buf(),
            first: name(first),
            second: name(second),
        }
    }

    /// Publishes the lines of one file from its position to its current end, up to
    /// [`PUBLISH_WINDOW`] batches in flight; returns once every one of them is confirmed (or
    /// the drain failed or stopped) and the positions they moved are committed.
    async fn drain(
        &mut self,
        key: Key,
        finishing: bool,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Flow, InputError> {
        let read = self.drain_reading(key, finishing, stop).await;
        let confirmed = match read {
            Err(_) => {
                // Not waited for: what was not confirmed is published again on the next run.
                self.abandon(key);
                Ok(Flow::Stopped)
            }
            // Stopped too: a publish in flight ends soon (or at once, stopped in a retry
            // wait), and what it confirmed need not be published again.
            Ok(_) => self.confirm(key, 0).await,
        };
        let saved = self.finish_saving().await;
        let flow = read?;
        if confirmed? == Flow::Stopped {
            saved?;
            return Ok(Flow::Stopped);
        }
        saved?;
        Ok(flow)
    }

    /// Drops the publishes in flight unconfirmed: the file's next read starts at its
    /// position again.
    fn abandon(&mut self, key: Key) {
        self.inflight.clear();
        if let Some(t) = self.tracked.get_mut(&key) {
            t.read_to = t.offset;
        }
    }

    /// Waits for the oldest publishes in flight until at most `keep` are left, in order: each
    /// confirmed one moves the position past its lines (committed soon, in the background).
    /// `Stopped` when one was abandoned for the stop signal (the rest are dropped unconfirmed).
    async fn confirm(&mut self, key: Key, keep: usize) -> Result<Flow, InputError> {
        while self.inflight.len() > keep {
            let Some(mut next) = self.inflight.pop_front() else {
                break;
            };
            match (&mut next.publish).await {
                Ok(Sent::Done) => {}
                Ok(Sent::Stopped) => {
                    self.abandon(key);
                    return Ok(Flow::Stopped);
                }
                Err(e) => {
                    self.abandon(key);
                    return Err(e);
                }
            }
            self.counters.published(next.lines, next.lines, next.bytes);
            if let Some(t) = self.tracked.get_mut(&key) {
                t.offset = next.end;
            }
            self.commit_soon().await?;
        }
        Ok(Flow::Drained)
    }

    /// Reads and publishes batches of one file, leaving up to [`PUBLISH_WINDOW`] in flight.
    async fn drain_reading(
        &mut self,
        key: Key,
        finishing: bool,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Flow, InputError> {
        let limits = Limits {
            max_line: self.config.max_line_bytes,
            max_lines: self.config.batch.max_lines,
            max_bytes: self.config.batch.max_bytes,
        };
        loop {
            if stopped(stop) {
                return Ok(Flow::Stopped);
            }
            let Some(t) = self.tracked.get_mut(&key) else {
                return Ok(Flow::Drained);
            };
            let file = t.file.clone();
            let (name, path, offset, generation, fingerprint, legacy_ids, group) = (
                t.name.clone(),
                t.path.clone(),
                t.read_to,
                t.generation,
                t.fingerprint,
                t.legacy_ids,
                t.group,
            );
            let Some(settings) = self.groups.get(group) else {
                return Ok(Flow::Drained); // every tracked file has a group of `groups`
            };
            let (mtime_header, multiline_timeout, group_headers) = (
                settings.mtime_header,
                settings.multiline_timeout,
                settings.headers.clone(),
            );
            let (size, mtime) = {
                let f = file.clone();
                let p = path.clone();
                blocking(move || {
                    f.metadata()
                        .map(|m| (m.len(), m.modified().ok()))
                        .map_err(|e| InputError::io("stat", p, e))
                })
                .await?
            };
            // `mtime` header (Unix ms) for the parser's year rule, when asked for.
            let mtime = mtime
                .filter(|_| mtime_header)
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_millis().to_string());
            let mut truncated = size < offset;
            if size == offset && !finishing {
                return Ok(Flow::Drained);
            }
            // A held-back multi-line record, the file unchanged since: wait for it to go on.
            let pending = self.tracked.get(&key).and_then(|t| t.pending);
            let timed_out = match pending {
                Some(p) if p.offset == offset && p.size == size && !finishing && !truncated => {
                    if p.since.elapsed() < multiline_timeout {
                        return Ok(Flow::Drained);
                    }
                    true
                }
                _ => false,
            };
            // The file's first bytes (one read of at most 1 KiB per batch): to fingerprint it
            // before its first line is published, and to check that it still starts with them
            // (a copytruncate refilled past the position between two polls keeps the size
            // above the position).
            if !truncated {
                let f = file.clone();
                let p = path.clone();
                let head =
                    blocking(move || read_head(&f).map_err(|e| InputError::io("read", p, e)))
                        .await?;
                match fingerprint {
                    Some(fp) => truncated = !fp.matches(&head),
                    None => {
                        let fp = if finishing {
                            Fingerprint::of_finished(&head)
                        } else {
                            Fingerprint::of_head(&head)
                        };
                        let Some(fp) = fp else {
                            // No first line yet: nothing to publish.
                            return Ok(Flow::Drained);
                        };
                        // Nothing is in flight without a fingerprint; confirm it anyway, so
                        // the commit below is the newest positions.
                        if self.confirm(key, 0).await? == Flow::Stopped {
                            return Ok(Flow::Stopped);
                        }
                        if let Some(t) = self.tracked.get_mut(&key) {
                            t.fingerprint = Some(fp);
                        }
                        self.commit().await?;
                        continue;
                    }
                }
            }
            if truncated {
                // What is in flight was read before the truncation: confirmed under the old
                // generation first, then the new one is committed before its first publish.
                if self.confirm(key, 0).await? == Flow::Stopped {
                    return Ok(Flow::Stopped);
                }
                let Some(t) = self.tracked.get_mut(&key) else {
                    return Ok(Flow::Drained);
                };
                t.generation += 1;
                t.offset = 0;
                t.read_to = 0;
                t.fingerprint = None;
                t.legacy_ids = false;
                tracing::info!(path = %name, size, offset, generation = t.generation, "file truncated in place; reading from 0 under a new generation");
                self.counters.truncation();
                self.commit().await?;
                continue;
            }
            let in_id = match (legacy_ids, fingerprint) {
                (true, _) => None,
                (false, Some(fp)) => Some(fp),
                (false, None) => return Ok(Flow::Drained), // fingerprinted above
            };
            let chunk = {
                let f = file.clone();
                let p = path.clone();
                blocking(move || {
                    read_chunk(&f, offset, limits, finishing)
                        .map_err(|e| InputError::io("read", p, e))
                })
                .await?
            };
            if chunk.items.is_empty() {
                return Ok(Flow::Drained);
            }
            let mut chunk = chunk;
            if let Some(joiner) = self.joiners.get_mut(group).and_then(Option::as_mut) {
                let held = join(
                    joiner,
                    &mut chunk,
                    finishing || timed_out,
                    self.config.max_line_bytes,
                );
                if let Some(t) = self.tracked.get_mut(&key) {
                    t.pending = held.map(|at| Pending {
                        offset: at,
                        size,
                        since: match pending {
                            Some(p) if p.offset == at && p.size == size => p.since,
                            _ => Instant::now(),
                        },
                    });
                }
                if chunk.items.is_empty() {
                    // Only the held-back record: nothing to publish yet.
                    return Ok(Flow::Drained);
                }
            }
            let ids = IdPrefix::new(key.0, key.1, in_id, generation);
            let mut long = None;
            let mut msgs = Vec::with_capacity(chunk.items.len());
            let mut ats = Vec::with_capacity(chunk.items.len());
            let mut bytes = 0u64;
            for item in chunk.items {
                match item {
                    Item::Line { offset, bytes: b } => {
                        bytes += b.len() as u64;
                        ats.push(At::Offset(offset));
                        msgs.push(Message {
                            id: ids.id(offset),
                            headers: line_headers(&name, &group_headers, mtime.as_deref()),
                            payload: b,
                        });
                    }
                    Item::Long { offset, len } => long = Some((offset, len)),
                }
            }
            let lines = msgs.len() as u64;
            if long.is_some() || msgs.is_empty() {
                // A long line's parts are published one by one below, after everything
                // before them is confirmed.
                if !msgs.is_empty() {
                    self.start_publish(&name, msgs, ats, chunk.end, lines, bytes, stop)
                        .await;
                }
                if self.confirm(key, 0).await? == Flow::Stopped {
                    return Ok(Flow::Stopped);
                }
            } else {
                let retried = self
                    .start_publish(&name, msgs, ats, chunk.end, lines, bytes, stop)
                    .await;
                if let Some(t) = self.tracked.get_mut(&key) {
                    t.read_to = chunk.end;
                }
                let keep = if retried { 0 } else { PUBLISH_WINDOW - 1 };
                if self.confirm(key, keep).await? == Flow::Stopped {
                    return Ok(Flow::Stopped);
                }
                continue;
            }
            if let Some((line_offset, len)) = long {
                let part = self.config.max_line_bytes as u64;
                let n = len.div_ceil(part);
                for i in 0..n {
                    let at = line_offset + i * part;
                    let plen = part.min(len - i * part) as usize;
                    let f = file.clone();
                    let p = path.clone();
                    let bytes = blocking(move || {
                        read_part(&f, at, plen).map_err(|e| InputError::io("read", p, e))
                    })
                    .await?;
                    let Some(bytes) = bytes else {
                        return Ok(Flow::Interrupted);
                    };
                    // A line's headers, with the part's right after the input.
                    let mut headers = line_headers(&name, &group_headers, mtime.as_deref());
                    headers.splice(
                        1..1,
                        [
                            ("part".to_owned(), format!("{}/{n}", i + 1)),
                            ("line_offset".to_owned(), line_offset.to_string()),
                        ],
                    );
                    let msg = Message {
                        id: ids.id(at),
                        headers,
                        payload: bytes,
                    };
                    let sent = publish(
                        &*self.broker,
                        &name,
                        vec![msg],
                        &[At::Offset(at)],
                        &self.config.retry,
                        stop,
                        &self.counters,
                    )
                    .await?;
                    if sent == Sent::Stopped {
                        return Ok(Flow::Stopped);
                    }
                }
                self.counters.published(1, n, len);
                self.counters.long_line();
            }
            if let Some(t) = self.tracked.get_mut(&key) {
                t.offset = chunk.end;
                t.read_to = chunk.end;
            }
            self.commit_soon().await?;
        }
    }

    /// Hands a batch to the broker and keeps it in flight (confirmed by [`Self::confirm`]).
    /// The publish is polled once here, before the next batch is read, so the broker takes
    /// batches in file order (the embedded queue appends on that first poll). If it had to
    /// be retried (the queue refused it for now), it returns true: the caller confirms it
    /// before anything else is published, so a retried batch is never overtaken.
    #[allow(clippy::too_many_arguments)]
    async fn start_publish(
        &mut self,
        name: &str,
        msgs: Vec<Message>,
        ats: Vec<At>,
        end: u64,
        lines: u64,
        bytes: u64,
        stop: &watch::Receiver<bool>,
    ) -> bool {
        let retries = self.counters.retries();
        let mut publish: InFlightPublish = Box::pin(publish_owned(
            self.broker.clone(),
            name.to_string(),
            msgs,
            ats,
            self.config.retry,
            stop.clone(),
            self.counters.clone(),
        ));
        if let Poll::Ready(r) =
            std::future::poll_fn(|cx| Poll::Ready(publish.as_mut().poll(cx))).await
        {
            publish = Box::pin(std::future::ready(r));
        }
        self.inflight.push_back(InFlight {
            end,
            lines,
            bytes,
            publish,
        });
        self.counters.retries() != retries
    }
}

/// Joins the lines of `chunk` into records under `joiner`'s rule (as [`ackline_parse::Join::apply`] says:
/// lines joined with `\n`, a container runtime's split line made whole again; the record at
/// its first line's offset). The last record is held back (removed from the chunk,
/// whose `end` becomes its offset, which is returned) unless it is known complete: the data
/// ended and `complete_at_end` (the file is finished, or has not grown for the timeout), or
/// the chunk stopped at a limit and it is the chunk's only record (a record longer than a
/// chunk is cut there). A record never grows past `max_record` bytes: the line that would
/// pass it starts a new one. A long line ([`Item::Long`], alone in its chunk) is its own
/// record.
fn join(
    joiner: &mut Joiner,
    chunk: &mut crate::reader::Chunk,
    complete_at_end: bool,
    max_record: usize,
) -> Option<u64> {
    let items = std::mem::take(&mut chunk.items);
    let mut records: Vec<Item> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Item::Line { offset, bytes } => {
                let how = joiner.join(&bytes, i == 0);
                let joined = match records.last_mut() {
                    Some(Item::Line { bytes: rec, .. }) => how.apply(rec, &bytes, max_record),
                    _ => false,
                };
                if !joined {
                    records.push(Item::Line { offset, bytes });
                }
            }
            long @ Item::Long { .. } => records.push(long),
        }
    }
    let last_complete = if chunk.more {
        records.len() == 1
    } else {
        complete_at_end || matches!(records.last(), Some(Item::Long { .. }))
    };
    let held = if last_complete {
        None
    } else {
        match records.pop() {
            Some(Item::Line { offset, .. }) => {
                chunk.end = offset;
                Some(offset)
            }
            Some(long) => {
                records.push(long);
                None
            }
            None => None,
        }
    };
    chunk.items = records;
    held
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_id_spells_file_dev_ino_fingerprint_generation_and_offset() {
        let Some(fp) = Fingerprint::of_head(b"first line\n") else {
            panic!("a head with a newline has a fingerprint");
        };
        let hex = fp.to_string();
        assert_eq!(hex.len(), 16, "{hex}");
        assert_eq!(
            file_message_id(2049, 77, fp, 3, 12_345),
            format!("file:2049:77:{hex}:3:12345")
        );
        let max = u64::MAX;
        assert_eq!(
            file_message_id(max, 0, fp, max, max),
            format!("file:{max}:0:{hex}:{max}:{max}")
        );
        // One prefix, many offsets: each id is the prefix and its own offset.
        let ids = IdPrefix::new(9, 8, Some(fp), 0);
        assert_eq!(ids.id(0), format!("file:9:8:{hex}:0:0"));
        assert_eq!(ids.id(10), format!("file:9:8:{hex}:0:10"));
    }

    #[test]
    fn a_version_1_id_has_no_fingerprint() {
        let ids = IdPrefix::new(5, 6, None, 2);
        assert_eq!(ids.id(0), "file:5:6:2:0");
        assert_eq!(ids.id(9_876_543_210), "file:5:6:2:9876543210");
    }

    #[test]
    fn a_line_carries_its_input_then_its_group_headers_then_the_mtime() {
        let group = vec![("format".to_owned(), "json".to_owned())];
        let h = line_headers("/var/log/a.log", &group, Some("1700000000000"));
        assert_eq!(
            h,
            vec![
                ("input".to_owned(), "/var/log/a.log".to_owned()),
                ("format".to_owned(), "json".to_owned()),
                ("mtime".to_owned(), "1700000000000".to_owned()),
            ]
        );
        assert_eq!(
            line_headers("-", &[], None),
            vec![("input".to_owned(), "-".to_owned())]
        );
    }
}
