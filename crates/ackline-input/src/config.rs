//! Options shared by the inputs, checked once by `validate` before an input runs.

use std::path::PathBuf;

use ackline_parse::Multiline;
use std::time::Duration;

use crate::InputError;

/// Default longest line published whole: 8 MiB (the embedded queue's default maximum
/// message is 16 MiB).
pub const DEFAULT_MAX_LINE_BYTES: usize = 8 << 20;

/// How many lines go into one publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most lines per publish. Default 1000.
    pub max_lines: usize,
    /// Most payload bytes per publish (a batch holds at least one line, whatever its size).
    /// Default 1 MiB.
    pub max_bytes: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_lines: 1000,
            max_bytes: 1 << 20,
        }
    }
}

/// Backoff between publish attempts refused as `Unavailable` or `Full`: doubles from
/// `initial` up to `max` (a `Full` error's `retry_after` is honoured, capped at `max`).
/// Retries never end by themselves: a line is never dropped; the stop signal ends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    /// First wait. Default 100 ms.
    pub initial: Duration,
    /// Longest wait. Default 5 s.
    pub max: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

/// Where a file seen for the first time (no saved position) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// At offset 0 (default).
    #[default]
    Beginning,
    /// At its end, so only lines written from now on are read. Applies only to files present
    /// at the first scan of the very first run of a state directory (no positions were ever
    /// saved in it): a file met later (a glob match, the new file after a rotation, a file
    /// created or rotated in while the input was stopped) is always read from its beginning,
    /// or the lines written before it was noticed would be lost.
    End,
}

/// A group of paths whose files share how their lines become messages: the multi-line rule and
/// the headers every message carries (a group's parse settings, which the input does not read).
/// The group of a file is the first group (in [`FileInputConfig::groups`] order) one of whose
/// paths matches it when it is first followed; it keeps that group for as long as it is
/// followed, under any name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileGroup {
    /// The group's name, as errors and logs quote it.
    pub name: String,
    /// Paths or glob patterns, as [`FileInputConfig::paths`].
    pub paths: Vec<String>,
    /// How lines are grouped into records, as [`FileInputConfig::multiline`].
    pub multiline: Multiline,
    /// As [`FileInputConfig::multiline_timeout`].
    pub multiline_timeout: Duration,
    /// As [`FileInputConfig::mtime_header`].
    pub mtime_header: bool,
    /// Headers added to every message of the group's files (after `input`).
    pub headers: Vec<(String, String)>,
}

impl FileGroup {
    /// A group named `name` of these paths, with the defaults of [`FileInputConfig::new`].
    pub fn new(name: impl Into<String>, paths: Vec<String>) -> Self {
        FileGroup {
            name: name.into(),
            paths,
            multiline: Multiline::None,
            multiline_timeout: Duration::from_secs(1),
            mtime_header: false,
            headers: Vec::new(),
        }
    }

    /// Whether the files of both groups become messages the same way (everything but the name
    /// and the paths is equal; the multi-line timeout only under a multi-line rule): a file
    /// both match may belong to either.
    pub fn same_settings(&self, other: &FileGroup) -> bool {
        self.multiline == other.multiline
            && (self.multiline == Multiline::None
                || self.multiline_timeout == other.multiline_timeout)
            && self.mtime_header == other.mtime_header
            && self.headers == other.headers
    }
}

/// The name of the group [`FileInputConfig`]'s own `paths` form.
pub const DEFAULT_GROUP: &str = "default";

/// Options of a [`FileInput`](crate::FileInput).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInputConfig {
    /// Paths or glob patterns (`/var/log/*.log`; `*`, `?`, `[...]`, `**`). A path that does
    /// not exist yet is waited for.
    pub paths: Vec<String>,
    /// Directory of `positions.json` (created if missing; one file input per directory).
    pub state_dir: PathBuf,
    /// How often files are checked for new data, rotation and new glob matches. Default
    /// 250 ms.
    pub poll_interval: Duration,
    /// Where a file present at the very first run starts. Default [`StartAt::Beginning`].
    pub start_at: StartAt,
    /// Lines longer than this (without the newline) are published in parts of at most this
    /// many bytes. Default 8 MiB; must be below the queue's maximum message size.
    pub max_line_bytes: usize,
    /// Batching of publishes.
    pub batch: BatchConfig,
    /// Backoff on a full or unavailable queue.
    pub retry: RetryConfig,
    /// How long a file that was renamed away or deleted is still followed (a writer may not
    /// have reopened its log yet) before it is read to its end, its partial last line
    /// published, and dropped. Default 1 s.
    pub rotated_grace: Duration,
    /// In [`FileInput::run_once`](crate::FileInput::run_once), publish a last line that has
    /// no newline (the files are taken as complete). Default true.
    pub once_publishes_partial: bool,
    /// Give every line an `mtime` header: the file's modification time (Unix milliseconds)
    /// when the line was read, for a parser whose year rule is the file's mtime. Default
    /// false (the header costs queue space).
    pub mtime_header: bool,
    /// How lines are grouped into records (`ackline_parse::Multiline`): with a rule other than
    /// `None`, lines that continue a record are joined to it with `\n` and published as one
    /// message whose id is its first line's. Default `None` (one record per line).
    pub multiline: Multiline,
    /// Under a multi-line rule, how long the last record of a file that stopped growing waits
    /// for more lines before it is published. Default 1 s.
    pub multiline_timeout: Duration,
    /// More groups of paths with settings of their own (`paths`, `multiline`,
    /// `multiline_timeout` and `mtime_header` above form the group [`DEFAULT_GROUP`], first
    /// when `paths` is not empty). Default none.
    pub groups: Vec<FileGroup>,
}

impl FileInputConfig {
    /// Defaults for these paths and this state directory.
    pub fn new(paths: Vec<String>, state_dir: impl Into<PathBuf>) -> Self {
        FileInputConfig {
            paths,
            state_dir: state_dir.into(),
            poll_interval: Duration::from_millis(250),
            start_at: StartAt::Beginning,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            batch: BatchConfig::default(),
            retry: RetryConfig::default(),
            rotated_grace: Duration::from_secs(1),
            once_publishes_partial: true,
            mtime_header: false,
            multiline: Multiline::None,
            multiline_timeout: Duration::from_secs(1),
            groups: Vec::new(),
        }
    }

    /// Every group in order: the default group of `paths` (when not empty), then `groups`.
    pub fn all_groups(&self) -> Vec<FileGroup> {
        let mut all = Vec::with_capacity(self.groups.len() + 1);
        if !self.paths.is_empty() {
            all.push(FileGroup {
                name: DEFAULT_GROUP.to_string(),
                paths: self.paths.clone(),
                multiline: self.multiline,
                multiline_timeout: self.multiline_timeout,
                mtime_header: self.mtime_header,
                headers: Vec::new(),
            });
        }
        all.extend(self.groups.iter().cloned());
        all
    }

    /// Checks every option, naming the first one out of range.
    pub fn validate(&self) -> Result<(), InputError> {
        if self.paths.is_empty() && self.groups.is_empty() {
            return Err(bad("paths", "at least one path or glob pattern"));
        }
        if self.groups.iter().any(|g| g.paths.is_empty()) {
            return Err(bad(
                "groups",
                "at least one path or glob pattern in every group",
            ));
        }
        if self.poll_interval.is_zero() {
            return Err(bad("poll_interval", "more than 0"));
        }
        check_common(self.max_line_bytes, &self.batch, &self.retry)
    }
}

/// Options of a [`StdinInput`](crate::StdinInput).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdinConfig {
    /// The `input` header of its messages. Default `stdin`.
    pub name: String,
    /// Lines longer than this are published in parts. Default 8 MiB.
    pub max_line_bytes: usize,
    /// Batching of publishes.
    pub batch: BatchConfig,
    /// Backoff on a full or unavailable queue.
    pub retry: RetryConfig,
    /// A batch that is not full is published at most this long after its first line was
    /// read (so a slow stream is not held back). Default 200 ms.
    pub flush_after: Duration,
    /// How lines are grouped into records, as for files
    /// ([`FileInputConfig::multiline`]); a record's id is its first line's. Default `None`.
    pub multiline: Multiline,
    /// Under a multi-line rule, how long the last record waits for more lines while the
    /// stream is quiet. Default 1 s.
    pub multiline_timeout: Duration,
}

impl Default for StdinConfig {
    fn default() -> Self {
        StdinConfig {
            name: "stdin".to_string(),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            batch: BatchConfig::default(),
            retry: RetryConfig::default(),
            flush_after: Duration::from_millis(200),
            multiline: Multiline::None,
            multiline_timeout: Duration::from_secs(1),
        }
    }
}

impl StdinConfig {
    /// Checks every option, naming the first one out of range.
    pub fn validate(&self) -> Result<(), InputError> {
        if self.name.is_empty() {
            return Err(bad("name", "a non-empty input name"));
        }
        check_common(self.max_line_bytes, &self.batch, &self.retry)
    }
}

fn bad(field: &'static str, expected: &str) -> InputError {
    InputError::Config {
        field,
        expected: expected.to_string(),
    }
}

fn check_common(
    max_line_bytes: usize,
    batch: &BatchConfig,
    retry: &RetryConfig,
) -> Result<(), InputError> {
    if !(16..=64 << 20).contains(&max_line_bytes) {
        return Err(bad("max_line_bytes", "between 16 bytes and 64 MiB"));
    }
    if batch.max_lines == 0 {
        return Err(bad("batch.max_lines", "at least 1"));
    }
    if batch.max_bytes == 0 {
        return Err(bad("batch.max_bytes", "at least 1"));
    }
    if retry.initial.is_zero() || retry.max < retry.initial {
        return Err(bad("retry", "0 < initial <= max"));
    }
    Ok(())
}
