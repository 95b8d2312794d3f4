//! A file's fingerprint: a checksum of its first line, so a file is known by what it starts
//! with as well as by its (`dev`, `ino`), which the filesystem reuses.
//!
//! # The rule
//! The fingerprinted bytes are the file's first line including its `\n`, or its first
//! [`FINGERPRINT_BYTES`] (1 KiB) when no `\n` is among them. A file shorter than that with no
//! complete first line has no fingerprint yet; it gets one as soon as its first line is
//! complete (before that it holds no line to publish), or, when it is finished (deleted,
//! rotated away, or taken as complete by `run_once`), over all of its bytes.
//!
//! The hash is 64-bit FNV-1a over those bytes; it is written as 16 lowercase hex digits in
//! message ids and in `positions.json`, with the number of bytes it covers.
//!
//! Invariants:
//! - The fingerprint of a file that is only appended to never changes: its first line, once
//!   complete, is fixed. So the same line of the same file gets the same id on every run, and
//!   even with its saved position lost.
//! - Two files with the same (`dev`, `ino`) but different first bytes have different
//!   fingerprints (up to a 2^-64 hash collision), so their lines get different ids.
//! - Checking a file against a saved fingerprint hashes exactly the saved number of bytes, so a
//!   fingerprint taken over a partial last line still matches after the line grows.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use serde::{Deserialize, Serialize};

/// The most bytes a fingerprint covers.
pub const FINGERPRINT_BYTES: usize = 1024;

/// A checksum of a file's first bytes (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Repr", into = "Repr")]
pub struct Fingerprint {
    /// FNV-1a 64 of the first `bytes` bytes.
    pub hash: u64,
    /// How many bytes of the file it covers (1 to [`FINGERPRINT_BYTES`]).
    pub bytes: u64,
}

#[derive(Serialize, Deserialize)]
struct Repr {
    hash: String,
    bytes: u64,
}

impl TryFrom<Repr> for Fingerprint {
    type Error = String;

    fn try_from(r: Repr) -> Result<Self, String> {
        if r.hash.len() != 16 || !r.hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "fingerprint hash {:?} is not 16 hex digits",
                r.hash
            ));
        }
        let hash = u64::from_str_radix(&r.hash, 16)
            .map_err(|_| format!("fingerprint hash {:?} is not 16 hex digits", r.hash))?;
        if r.bytes == 0 || r.bytes > FINGERPRINT_BYTES as u64 {
            return Err(format!(
                "fingerprint length {} is not between 1 and {FINGERPRINT_BYTES}",
                r.bytes
            ));
        }
        Ok(Fingerprint {
            hash,
            bytes: r.bytes,
        })
    }
}

impl From<Fingerprint> for Repr {
    fn from(f: Fingerprint) -> Self {
        Repr {
            hash: f.to_string(),
            bytes: f.bytes,
        }
    }
}

impl fmt::Display for Fingerprint {
    /// The hash as 16 lowercase hex digits, as in message ids.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.hash)
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Fingerprint {
    /// The fingerprint of exactly these bytes (empty gives none).
    fn over(bytes: &[u8]) -> Option<Fingerprint> {
        (!bytes.is_empty()).then(|| Fingerprint {
            hash: fnv1a(bytes),
            bytes: bytes.len() as u64,
        })
    }

    /// The fingerprint of a file that starts with `head` (its first bytes, as many as were
    /// read): over its first line through the `\n`, or its first [`FINGERPRINT_BYTES`].
    /// `None` if `head` has neither (the file may still be written).
    pub fn of_head(head: &[u8]) -> Option<Fingerprint> {
        let head = &head[..head.len().min(FINGERPRINT_BYTES)];
        match memchr::memchr(b'\n', head) {
            Some(i) => Self::over(&head[..=i]),
            None if head.len() == FINGERPRINT_BYTES => Self::over(head),
            None => None,
        }
    }

    /// The fingerprint of a finished file (no more bytes will come) that starts with `head`:
    /// as [`of_head`](Self::of_head), or over all of `head` if it is a short file without a
    /// `\n`. `None` only for an empty file.
    pub fn of_finished(head: &[u8]) -> Option<Fingerprint> {
        Self::of_head(head).or_else(|| Self::over(&head[..head.len().min(FINGERPRINT_BYTES)]))
    }

    /// Whether a file that starts with `head` has these first bytes.
    pub fn matches(&self, head: &[u8]) -> bool {
        usize::try_from(self.bytes)
            .ok()
            .and_then(|n| head.get(..n))
            .is_some_and(|b| fnv1a(b) == self.hash)
    }
}

/// The first bytes of `file` (at most [`FINGERPRINT_BYTES`]; fewer if it is shorter).
pub(crate) fn read_head(file: &File) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; FINGERPRINT_BYTES];
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// Whether the byte just before `offset` is a `\n` (or `offset` is 0): true of every position
/// the input saves, except after a finished file's partial last line.
pub(crate) fn newline_before(file: &File, offset: u64) -> io::Result<bool> {
    let Some(at) = offset.checked_sub(1) else {
        return Ok(true);
    };
    let mut b = [0u8; 1];
    loop {
        match file.read_at(&mut b, at) {
            Ok(n) => return Ok(n == 1 && b[0] == b'\n'),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_is_fingerprinted_and_growth_does_not_change_it() {
        let a = Fingerprint::of_head(b"first line\n").expect("fp");
        assert_eq!(a.bytes, 11);
        assert_eq!(Fingerprint::of_head(b"first line\nsecond\nthird"), Some(a));
        assert!(a.matches(b"first line\nanything"));
        assert!(!a.matches(b"first linX\n"));
        assert!(!a.matches(b"first line"), "shorter than the fingerprint");
        assert_ne!(Fingerprint::of_head(b"other line\n"), Some(a));
    }

    #[test]
    fn without_a_newline_it_waits_for_1_kib() {
        assert_eq!(Fingerprint::of_head(b""), None);
        assert_eq!(Fingerprint::of_head(b"no newline yet"), None);
        let long = vec![b'x'; 3000];
        let f = Fingerprint::of_head(&long).expect("fp");
        assert_eq!(f.bytes, FINGERPRINT_BYTES as u64);
        assert!(f.matches(&long[..FINGERPRINT_BYTES]));
    }

    #[test]
    fn a_finished_short_file_is_fingerprinted_whole_and_still_matches_after_growing() {
        assert_eq!(Fingerprint::of_finished(b""), None);
        let f = Fingerprint::of_finished(b"half").expect("fp");
        assert_eq!(f.bytes, 4);
        assert!(f.matches(b"half-done\n"));
        assert_eq!(
            Fingerprint::of_finished(b"a\nb"),
            Fingerprint::of_head(b"a\n")
        );
    }

    #[test]
    fn fnv1a_known_values_and_json_form() {
        // Published FNV-1a 64 test vectors.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let f = Fingerprint::of_head(b"a\n").expect("fp");
        let json = serde_json::to_string(&f).expect("json");
        assert_eq!(json, format!(r#"{{"hash":"{f}","bytes":2}}"#));
        let back: Fingerprint = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, f);
        for bad in [
            r#"{"hash":"xyz","bytes":2}"#,
            r#"{"hash":"+000000000000000","bytes":2}"#,
            r#"{"hash":"00000000000000000","bytes":2}"#,
            r#"{"hash":"0000000000000000","bytes":0}"#,
            r#"{"hash":"0000000000000000","bytes":1025}"#,
        ] {
            assert!(serde_json::from_str::<Fingerprint>(bad).is_err(), "{bad}");
        }
    }
}
