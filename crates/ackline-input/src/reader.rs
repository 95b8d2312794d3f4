//! Cutting a file into lines with positioned reads (blocking; run on the blocking pool).
//!
//! Invariants:
//! - A chunk ends on a line boundary: `end` is just after a newline, or at the end of the
//!   file when `finishing` (the file will not grow any more) and a partial line was taken.
//! - A line is never cut short: one whose content is longer than `max_line` is returned alone
//!   as [`Item::Long`] (offset and length only; its parts are read when published), so memory
//!   stays bounded by the batch size plus one part, whatever the line's length.
//! - Bytes are never altered: only the `\n` and a `\r` just before it are removed.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

const READ_SIZE: usize = 64 << 10;

/// One line (or a long line's extent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// A line of at most `max_line` bytes, without its line ending.
    Line {
        /// Where it starts.
        offset: u64,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// A line longer than `max_line`: `len` content bytes from `offset`.
    Long {
        /// Where it starts.
        offset: u64,
        /// Content length (without the line ending).
        len: u64,
    },
}

/// Lines read from `start` on.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    /// The lines, in file order.
    pub items: Vec<Item>,
    /// The offset after the last item's line ending.
    pub end: u64,
    /// The chunk stopped at a limit or before a long line, not at the end of the data: a
    /// line may follow that is not in it.
    pub more: bool,
}

/// Limits of one chunk.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_line: usize,
    pub max_lines: usize,
    pub max_bytes: usize,
}

fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    loop {
        match file.read_at(buf, offset) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The offset of the next `\n` at or after `from`, or `Err(eof_offset)` if there is none.
fn find_newline(file: &File, from: u64) -> io::Result<Result<u64, u64>> {
    let mut buf = vec![0u8; READ_SIZE];
    let mut at = from;
    loop {
        let n = read_at(file, &mut buf, at)?;
        if n == 0 {
            return Ok(Err(at));
        }
        if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
            return Ok(Ok(at + i as u64));
        }
        at += n as u64;
    }
}

/// Whether the byte at `offset` is `\r`.
fn is_cr_at(file: &File, offset: u64) -> io::Result<bool> {
    let mut b = [0u8; 1];
    Ok(read_at(file, &mut b, offset)? == 1 && b[0] == b'\r')
}

/// Reads the lines from `start`. Without `finishing`, a last line without a newline is left
/// for later; with it, it is returned as a line.
pub(crate) fn read_chunk(
    file: &File,
    start: u64,
    lim: Limits,
    finishing: bool,
) -> io::Result<Chunk> {
    let mut items = Vec::new();
    let mut bytes = 0usize;
    let mut buf: Vec<u8> = Vec::new();
    let mut base = start; // file offset of buf[0]
    let mut cur = 0usize; // start of the current line in buf
    let mut eof = false;
    let mut tmp = vec![0u8; READ_SIZE];
    let mut more = false;
    loop {
        if items.len() >= lim.max_lines || bytes >= lim.max_bytes {
            more = true;
            break;
        }
        let line_start = base + cur as u64;
        if let Some(i) = memchr::memchr(b'\n', &buf[cur..]) {
            let content = strip_cr(&buf[cur..cur + i]);
            if content.len() > lim.max_line {
                if items.is_empty() {
                    items.push(Item::Long {
                        offset: line_start,
                        len: content.len() as u64,
                    });
                    cur += i + 1;
                } else {
                    more = true;
                }
                break;
            }
            if !items.is_empty() && bytes + content.len() > lim.max_bytes {
                more = true;
                break;
            }
            bytes += content.len();
            items.push(Item::Line {
                offset: line_start,
                bytes: content.to_vec(),
            });
            cur += i + 1;
            continue;
        }
        let pending = buf.len() - cur;
        if pending > lim.max_line + 1 {
            // No newline within max_line + 2 bytes: a long line, alone in its chunk.
            if !items.is_empty() {
                more = true;
                break;
            }
            let end = match find_newline(file, base + buf.len() as u64)? {
                Ok(nl) => {
                    let cr = is_cr_at(file, nl - 1)?;
                    let len = nl - line_start - u64::from(cr);
                    Some((len, nl + 1))
                }
                Err(eof_at) if finishing => Some((eof_at - line_start, eof_at)),
                Err(_) => None,
            };
            if let Some((len, next)) = end {
                items.push(Item::Long {
                    offset: line_start,
                    len,
                });
                return Ok(Chunk {
                    items,
                    end: next,
                    more: false,
                });
            }
            break;
        }
        if eof {
            if finishing && pending > 0 {
                if pending > lim.max_line {
                    if items.is_empty() {
                        items.push(Item::Long {
                            offset: line_start,
                            len: pending as u64,
                        });
                        cur = buf.len();
                    }
                } else if items.is_empty() || bytes + pending <= lim.max_bytes {
                    items.push(Item::Line {
                        offset: line_start,
                        bytes: buf[cur..].to_vec(),
                    });
                    cur = buf.len();
                }
                more = cur < buf.len();
            }
            break;
        }
        buf.drain(..cur);
        base += cur as u64;
        cur = 0;
        let n = read_at(file, &mut tmp, base + buf.len() as u64)?;
        if n == 0 {
            eof = true;
        } else {
            buf.extend_from_slice(&tmp[..n]);
        }
    }
    Ok(Chunk {
        items,
        end: base + cur as u64,
        more,
    })
}

/// Reads exactly `len` bytes at `offset`; `Ok(None)` if the file is now shorter (truncated
/// under us: the caller re-checks the file before going on).
pub(crate) fn read_part(file: &File, offset: u64, len: usize) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; len];
    match file.read_exact_at(&mut buf, offset) {
        Ok(()) => Ok(Some(buf)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(content: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        let mut f = File::create(&p).expect("create");
        f.write_all(content).expect("write");
        (dir, File::open(&p).expect("open"))
    }

    fn lim(max_line: usize) -> Limits {
        Limits {
            max_line,
            max_lines: 1000,
            max_bytes: 1 << 20,
        }
    }

    fn lines(c: &Chunk) -> Vec<(u64, Vec<u8>)> {
        c.items
            .iter()
            .map(|i| match i {
                Item::Line { offset, bytes } => (*offset, bytes.clone()),
                Item::Long { offset, len } => (*offset, format!("LONG {len}").into_bytes()),
            })
            .collect()
    }

    #[test]
    fn lines_crlf_empty_and_partial() {
        let (_d, f) = file_with(b"a\r\n\nbc\npart");
        let c = read_chunk(&f, 0, lim(16), false).expect("read");
        assert_eq!(
            lines(&c),
            vec![(0, b"a".to_vec()), (3, b"".to_vec()), (4, b"bc".to_vec())]
        );
        assert_eq!(c.end, 7);
        let c = read_chunk(&f, 7, lim(16), true).expect("read");
        assert_eq!(lines(&c), vec![(7, b"part".to_vec())]);
        assert_eq!(c.end, 11);
    }

    #[test]
    fn long_lines_are_alone_and_measured() {
        let mut content = b"x\n".to_vec();
        content.extend(vec![b'L'; 100]);
        content.extend(b"\r\ny\n");
        let (_d, f) = file_with(&content);
        let c = read_chunk(&f, 0, lim(16), false).expect("read");
        assert_eq!(lines(&c), vec![(0, b"x".to_vec())]);
        let c2 = read_chunk(&f, c.end, lim(16), false).expect("read");
        assert_eq!(lines(&c2), vec![(2, b"LONG 100".to_vec())]);
        assert_eq!(c2.end, 104);
        let c3 = read_chunk(&f, c2.end, lim(16), false).expect("read");
        assert_eq!(lines(&c3), vec![(104, b"y".to_vec())]);
    }

    #[test]
    fn a_long_partial_line_waits_unless_finishing() {
        let (_d, f) = file_with(&[b'z'; 40]);
        let c = read_chunk(&f, 0, lim(16), false).expect("read");
        assert!(c.items.is_empty());
        assert_eq!(c.end, 0);
        let c = read_chunk(&f, 0, lim(16), true).expect("read");
        assert_eq!(lines(&c), vec![(0, b"LONG 40".to_vec())]);
        assert_eq!(c.end, 40);
    }

    #[test]
    fn batches_are_bounded() {
        let (_d, f) = file_with(b"1\n2\n3\n4\n5\n");
        let l = Limits {
            max_line: 16,
            max_lines: 2,
            max_bytes: 100,
        };
        let c = read_chunk(&f, 0, l, false).expect("read");
        assert_eq!(c.items.len(), 2);
        assert_eq!(c.end, 4);
        let l = Limits {
            max_line: 16,
            max_lines: 100,
            max_bytes: 3,
        };
        let c = read_chunk(&f, 0, l, false).expect("read");
        assert_eq!(c.items.len(), 3);
        assert_eq!(c.end, 6);
    }
}
