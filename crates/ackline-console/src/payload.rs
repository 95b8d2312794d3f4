//! How a payload (attacker-controlled bytes) is shown: as text only when it is text, and
//! always escaped, hex and base64 besides.
//!
//! Invariants:
//! - [`escaped`] returns printable text only: valid UTF-8 characters that are not control
//!   characters stay (tab and newline too); every other byte is written `\xNN` and a
//!   backslash `\\`, so the escaped text maps back to exactly one byte string.
//! - Nothing here makes HTML: the pages put these strings into the DOM with `textContent`
//!   and the JSON is served as `application/json`, so `<script>` stays text.
//! - Views are bounded: hex and base64 of at most [`MAX_SHOWN`] bytes, the rest counted.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Serialize;

/// Bytes of a payload shown in the detail view (the rest is counted, not sent).
pub const MAX_SHOWN: usize = 256 << 10;

/// A payload as the detail view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PayloadView {
    /// Its length in bytes.
    pub len: usize,
    /// Whether it is valid UTF-8 without control characters other than tab, CR and LF.
    pub is_text: bool,
    /// The escaped text ([`escaped`]) of the shown bytes.
    pub escaped: String,
    /// Hex dump lines (offset, 16 bytes in hex) of the shown bytes.
    pub hex: Vec<String>,
    /// Standard base64 of the shown bytes.
    pub base64: String,
    /// Whether bytes past [`MAX_SHOWN`] were left out.
    pub truncated: bool,
}

/// The view of `p`.
pub fn view(p: &[u8]) -> PayloadView {
    let shown = &p[..p.len().min(MAX_SHOWN)];
    PayloadView {
        len: p.len(),
        is_text: is_text(p),
        escaped: escaped(shown, usize::MAX),
        hex: shown
            .chunks(16)
            .enumerate()
            .map(|(i, c)| {
                let bytes: Vec<String> = c.iter().map(|b| format!("{b:02x}")).collect();
                format!("{:08x}  {}", i * 16, bytes.join(" "))
            })
            .collect(),
        base64: B64.encode(shown),
        truncated: shown.len() < p.len(),
    }
}

fn is_text(p: &[u8]) -> bool {
    std::str::from_utf8(p).is_ok_and(|s| {
        !s.chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    })
}

/// `p` as printable text, at most about `max_chars` characters (then `…`).
pub fn escaped(p: &[u8], max_chars: usize) -> String {
    let mut out = String::new();
    let mut n = 0;
    for chunk in p.utf8_chunks() {
        for c in chunk.valid().chars() {
            if n >= max_chars {
                out.push('…');
                return out;
            }
            n += 1;
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' | '\n' => out.push(c),
                c if c.is_control() => {
                    let mut buf = [0; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            if n >= max_chars {
                out.push('…');
                return out;
            }
            n += 1;
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn hostile_bytes_become_escaped_text() {
        let p = b"<script>alert(1)</script>\x00\xff\xfe\\x41 \xc3\xa9\r\n";
        let v = view(p);
        assert!(!v.is_text);
        assert_eq!(
            v.escaped,
            "<script>alert(1)</script>\\x00\\xff\\xfe\\\\x41 \u{e9}\\x0d\n"
        );
        assert_eq!(
            v.hex[0],
            "00000000  3c 73 63 72 69 70 74 3e 61 6c 65 72 74 28 31 29"
        );
        assert_eq!(B64.decode(&v.base64).unwrap(), p);
        assert!(!v.truncated && v.len == p.len());
        assert!(view("tab\there\n".as_bytes()).is_text);
    }

    #[test]
    fn escaping_is_bounded_and_views_are_cut() {
        assert_eq!(escaped(b"abcdef", 3), "abc…");
        assert_eq!(escaped(b"\xff\xff\xff\xff", 2), "\\xff\\xff…");
        let big = vec![b'a'; MAX_SHOWN + 10];
        let v = view(&big);
        assert!(v.truncated);
        assert_eq!(v.len, MAX_SHOWN + 10);
        assert_eq!(v.escaped.len(), MAX_SHOWN);
    }
}
