//! Live counters of an input, for progress bars and metrics.
//!
//! Invariant: `lines` and `bytes` count only lines whose publish the broker confirmed.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters, updated as the input runs; read them with [`InputCounters::snapshot`].
#[derive(Debug, Default)]
pub struct InputCounters {
    lines: AtomicU64,
    bytes: AtomicU64,
    messages: AtomicU64,
    long_lines: AtomicU64,
    files_followed: AtomicU64,
    files_seen: AtomicU64,
    rotations: AtomicU64,
    deletions: AtomicU64,
    truncations: AtomicU64,
    retries: AtomicU64,
    commits: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// Lines published (a long line split in parts counts once).
    pub lines: u64,
    /// Payload bytes published.
    pub bytes: u64,
    /// Messages published (parts count one each).
    pub messages: u64,
    /// Lines longer than `max_line_bytes`, published in parts.
    pub long_lines: u64,
    /// Files followed now.
    pub files_followed: u64,
    /// Files opened since the start.
    pub files_seen: u64,
    /// Files renamed away from their path (rotation) and then finished.
    pub rotations: u64,
    /// Files deleted and then finished.
    pub deletions: u64,
    /// Files truncated in place (copytruncate): reading restarted at 0, generation + 1.
    pub truncations: u64,
    /// Publish attempts refused as unavailable or full, and retried.
    pub retries: u64,
    /// Position commits.
    pub commits: u64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl InputCounters {
    /// The counters now.
    pub fn snapshot(&self) -> CountersSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountersSnapshot {
            lines: g(&self.lines),
            bytes: g(&self.bytes),
            messages: g(&self.messages),
            long_lines: g(&self.long_lines),
            files_followed: g(&self.files_followed),
            files_seen: g(&self.files_seen),
            rotations: g(&self.rotations),
            deletions: g(&self.deletions),
            truncations: g(&self.truncations),
            retries: g(&self.retries),
            commits: g(&self.commits),
        }
    }

    pub(crate) fn published(&self, lines: u64, messages: u64, bytes: u64) {
        add(&self.lines, lines);
        add(&self.messages, messages);
        add(&self.bytes, bytes);
    }
    pub(crate) fn long_line(&self) {
        add(&self.long_lines, 1);
    }
    pub(crate) fn set_files_followed(&self, n: u64) {
        self.files_followed.store(n, Ordering::Relaxed);
    }
    pub(crate) fn file_seen(&self) {
        add(&self.files_seen, 1);
    }
    pub(crate) fn rotation(&self) {
        add(&self.rotations, 1);
    }
    pub(crate) fn deletion(&self) {
        add(&self.deletions, 1);
    }
    pub(crate) fn truncation(&self) {
        add(&self.truncations, 1);
    }
    pub(crate) fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
    pub(crate) fn retry(&self) {
        add(&self.retries, 1);
    }
    pub(crate) fn commit(&self) {
        add(&self.commits, 1);
    }
}
