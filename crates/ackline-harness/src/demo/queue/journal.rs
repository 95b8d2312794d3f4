//! The demo's journal: what a worker process knows for certain, written so that it survives
//! the worker's kill -9 and can be read back by the parent.
//!
//! Format: one file per thread per run (`run-0007-producer.log`, `run-0007-consumer-1.log`),
//! so no file is ever appended to by two writers or by two runs. Each line is
//! `<kind> <id> <attempt> <check>\n`, where `check` is the FNV-1a 32-bit hash of the text
//! before it, in 8 hex digits.
//!
//! Invariants:
//! - A line is written only after the fact it states is true ([`Kind::Published`] after
//!   `publish` returned Ok, [`Kind::Acked`]/[`Kind::Rejected`] after the settlement's commit
//!   resolved Ok); intents ([`Kind::AckIntent`], [`Kind::RejectIntent`]) are written before
//!   the settlement is attempted, and [`Kind::Delivered`] right after `receive` returned.
//! - Lines stating confirmed facts are fsynced before the worker goes on; delivery and intent
//!   lines are written (not fsynced): a process kill cannot lose a completed write(2), only a
//!   kernel crash could, and the demo kills processes, not kernels.
//! - Reading ignores a torn last line (no newline, or a bad check on the last line); a bad
//!   check on any other line is counted as corruption, never silently dropped.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// What a journal line states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `publish` returned Ok for this id (attempt 0).
    Published,
    /// `receive` handed out this (id, attempt).
    Delivered,
    /// The worker is about to ack this delivery.
    AckIntent,
    /// The ack's commit resolved Ok.
    Acked,
    /// The worker is about to reject this delivery.
    RejectIntent,
    /// The reject's commit resolved Ok.
    Rejected,
    /// The worker nacked this delivery.
    Nacked,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Kind::Published => 'P',
            Kind::Delivered => 'D',
            Kind::AckIntent => 'I',
            Kind::Acked => 'A',
            Kind::RejectIntent => 'J',
            Kind::Rejected => 'R',
            Kind::Nacked => 'N',
        }
    }

    fn from_letter(c: &str) -> Option<Kind> {
        Some(match c {
            "P" => Kind::Published,
            "D" => Kind::Delivered,
            "I" => Kind::AckIntent,
            "A" => Kind::Acked,
            "J" => Kind::RejectIntent,
            "R" => Kind::Rejected,
            "N" => Kind::Nacked,
            _ => return None,
        })
    }
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What it states.
    pub kind: Kind,
    /// The message id.
    pub id: String,
    /// The delivery's attempt (0 for publishes).
    pub attempt: u32,
}

fn fnv1a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The path of a thread's journal file for a run.
pub fn path(dir: &Path, run: u32, thread: &str) -> PathBuf {
    dir.join(format!("run-{run:04}-{thread}.log"))
}

/// An append-only journal file owned by one thread.
#[derive(Debug)]
pub struct Writer {
    file: File,
    path: PathBuf,
    buf: Vec<u8>,
}

impl Writer {
    /// Creates the file (it must not exist: one file per thread per run).
    pub fn create(path: PathBuf) -> anyhow::Result<Writer> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("creating journal {}", path.display()))?;
        Ok(Writer {
            file,
            path,
            buf: Vec::with_capacity(64 << 10),
        })
    }

    /// Buffers a line; nothing reaches the file before [`Writer::write`] or [`Writer::sync`].
    pub fn push(&mut self, kind: Kind, id: &str, attempt: u32) {
        let start = self.buf.len();
        // Writing into a Vec cannot fail.
        let _ = write!(self.buf, "{} {id} {attempt}", kind.letter());
        let check = fnv1a(&self.buf[start..]);
        let _ = writeln!(self.buf, " {check:08x}");
    }

    /// Writes the buffered lines to the file (one write call).
    pub fn write(&mut self) -> anyhow::Result<()> {
        if !self.buf.is_empty() {
            self.file
                .write_all(&self.buf)
                .with_context(|| format!("writing journal {}", self.path.display()))?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes the buffered lines and fsyncs the file.
    pub fn sync(&mut self) -> anyhow::Result<()> {
        self.write()?;
        self.file
            .sync_data()
            .with_context(|| format!("fsync of journal {}", self.path.display()))
    }
}

/// What reading a journal file found.
#[derive(Debug, Default)]
pub struct Read {
    /// The intact lines, in file order.
    pub entries: Vec<Entry>,
    /// A torn last line was ignored.
    pub torn_tail: bool,
    /// Lines before the last that failed their check (should be 0).
    pub corrupt: u64,
}

/// Reads a journal file.
pub fn read(path: &Path) -> anyhow::Result<Read> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading journal {}", path.display()))?;
    Ok(parse(&bytes))
}

/// Parses journal bytes (see the module docs for what is ignored and what is counted).
pub fn parse(bytes: &[u8]) -> Read {
    let mut out = Read::default();
    let mut lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    // The part after the last newline is empty for a clean file, or a torn line.
    if let Some(last) = lines.pop()
        && !last.is_empty()
    {
        out.torn_tail = true;
    }
    let n = lines.len();
    for (i, line) in lines.into_iter().enumerate() {
        match parse_line(line) {
            Some(e) => out.entries.push(e),
            None if i + 1 == n => out.torn_tail = true,
            None => out.corrupt += 1,
        }
    }
    out
}

fn parse_line(line: &[u8]) -> Option<Entry> {
    let text = std::str::from_utf8(line).ok()?;
    let (body, check) = text.rsplit_once(' ')?;
    if u32::from_str_radix(check, 16).ok()? != fnv1a(body.as_bytes()) || check.len() != 8 {
        return None;
    }
    let mut parts = body.split(' ');
    let kind = Kind::from_letter(parts.next()?)?;
    let id = parts.next()?.to_string();
    let attempt = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(Entry { kind, id, attempt })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), 1, "t");
        let mut w = Writer::create(p.clone()).unwrap();
        w.push(Kind::Published, "m-1", 0);
        w.push(Kind::Delivered, "m-1", 1);
        w.push(Kind::Acked, "m-1", 1);
        w.sync().unwrap();
        std::fs::read(p).unwrap()
    }

    #[test]
    fn round_trip() {
        let r = parse(&sample());
        assert_eq!(r.entries.len(), 3);
        assert_eq!(r.entries[2].kind, Kind::Acked);
        assert_eq!(r.entries[1].attempt, 1);
        assert!(!r.torn_tail);
        assert_eq!(r.corrupt, 0);
    }

    #[test]
    fn every_truncation_keeps_a_prefix_and_reports_a_torn_tail() {
        let full = sample();
        let whole = parse(&full).entries;
        for cut in 0..full.len() {
            let r = parse(&full[..cut]);
            assert_eq!(r.corrupt, 0, "cut at {cut}");
            assert_eq!(&whole[..r.entries.len()], &r.entries[..], "cut at {cut}");
            let at_boundary = cut == 0 || full[cut - 1] == b'\n';
            assert_eq!(r.torn_tail, !at_boundary, "cut at {cut}");
        }
    }

    #[test]
    fn a_damaged_middle_line_is_counted_not_dropped_silently() {
        let mut b = sample();
        b[2] = b'9'; // inside "P m-1 0 ..."
        let r = parse(&b);
        assert_eq!(r.corrupt, 1);
        assert_eq!(r.entries.len(), 2);
    }
}
