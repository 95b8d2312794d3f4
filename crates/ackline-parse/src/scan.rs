//! A byte cursor over one line: the only way parsers read input.
//!
//! Invariants: the cursor never indexes out of bounds (every access goes
//! through `get`), `pos <= buf.len()` always, it only ever moves forward,
//! and it works on bytes, so there are no char-boundary panics whatever the
//! input. Numeric helpers bound their digit counts so they cannot overflow.

use crate::error::ErrorKind;

/// A parse failure inside a format parser: position and reason. The
/// dispatcher adds the format and the offset of the parsed slice.
pub(crate) type Fail = (usize, ErrorKind);

/// Result of a format parser step.
pub(crate) type PResult<T> = Result<T, Fail>;

#[derive(Debug, Clone)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    pub(crate) fn is_at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub(crate) fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.buf.get(self.pos.checked_add(ahead)?).copied()
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n).min(self.buf.len());
    }

    /// An error at the current position.
    pub(crate) fn fail(&self, kind: ErrorKind) -> Fail {
        (self.pos, kind)
    }

    pub(crate) fn expected(&self, what: &'static str) -> Fail {
        self.fail(ErrorKind::Expected(what))
    }

    pub(crate) fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn expect(&mut self, b: u8, what: &'static str) -> PResult<()> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    pub(crate) fn eat_slice(&mut self, s: &[u8]) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    /// Consumes and returns bytes while `pred` holds (possibly none).
    pub(crate) fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a [u8] {
        let rest = self.rest();
        let n = rest.iter().position(|&b| !pred(b)).unwrap_or(rest.len());
        self.pos += n;
        rest.get(..n).unwrap_or_default()
    }

    /// Consumes and returns bytes up to (not including) the first `b`;
    /// `None` (and nothing consumed) if `b` does not occur.
    pub(crate) fn take_until(&mut self, b: u8) -> Option<&'a [u8]> {
        let rest = self.rest();
        let n = memchr::memchr(b, rest)?;
        self.pos += n;
        rest.get(..n)
    }

    /// Consumes and returns bytes up to the first occurrence of `needle`.
    pub(crate) fn take_until_slice(&mut self, needle: &[u8]) -> Option<&'a [u8]> {
        let rest = self.rest();
        let n = memchr::memmem::find(rest, needle)?;
        self.pos += n;
        rest.get(..n)
    }

    /// A run of non-space bytes (possibly empty).
    pub(crate) fn token(&mut self) -> &'a [u8] {
        self.take_while(|b| b != b' ')
    }

    /// A non-empty run of non-space bytes.
    pub(crate) fn expect_token(&mut self, what: &'static str) -> PResult<&'a [u8]> {
        let t = self.token();
        if t.is_empty() {
            Err(self.expected(what))
        } else {
            Ok(t)
        }
    }

    pub(crate) fn skip_spaces(&mut self) -> usize {
        self.take_while(|b| b == b' ').len()
    }

    pub(crate) fn expect_space(&mut self, what: &'static str) -> PResult<()> {
        self.expect(b' ', what)
    }

    /// Exactly `n` ASCII digits (n <= 9, so the value fits in u32).
    pub(crate) fn digits(&mut self, n: usize, what: &'static str) -> PResult<u32> {
        debug_assert!(n <= 9);
        let Some(chunk) = self.rest().get(..n) else {
            return Err(self.expected(what));
        };
        let mut v: u32 = 0;
        for (i, &b) in chunk.iter().enumerate() {
            if !b.is_ascii_digit() {
                return Err((self.pos + i, ErrorKind::Expected(what)));
            }
            v = v * 10 + u32::from(b - b'0');
        }
        self.pos += n;
        Ok(v)
    }

    /// Between `min` and `max` (<= 19) ASCII digits, as u64.
    pub(crate) fn digits_between(
        &mut self,
        min: usize,
        max: usize,
        what: &'static str,
    ) -> PResult<u64> {
        debug_assert!(max <= 19);
        let rest = self.rest();
        let n = rest
            .iter()
            .take(max)
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(rest.len().min(max));
        if n < min {
            return Err(self.expected(what));
        }
        let mut v: u64 = 0;
        for &b in rest.get(..n).unwrap_or_default() {
            v = v * 10 + u64::from(b - b'0');
        }
        self.pos += n;
        Ok(v)
    }

    /// A fraction after the decimal separator: 1..=`max` digits, scaled to
    /// nanoseconds; digits beyond nanosecond precision are consumed and
    /// ignored (up to `max`).
    pub(crate) fn fraction_nanos(&mut self, max: usize, what: &'static str) -> PResult<u32> {
        let digits = self.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() || digits.len() > max {
            return Err(self.expected(what));
        }
        let mut nanos: u32 = 0;
        for i in 0..9 {
            let d = digits.get(i).map_or(0, |b| u32::from(b - b'0'));
            nanos = nanos * 10 + d;
        }
        Ok(nanos)
    }
}

/// Lossy UTF-8 to an owned `String` (valid input is copied as is).
pub(crate) fn text(bytes: &[u8]) -> String {
    // `from_utf8` checks valid text (nearly every field) on its fast path, several times
    // cheaper than the chunk walk of `from_utf8_lossy`, which is kept for invalid bytes.
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// `bytes` without trailing ASCII spaces and tabs.
pub(crate) fn trim_end_spaces(bytes: &[u8]) -> &[u8] {
    let n = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |i| i + 1);
    bytes.get(..n).unwrap_or_default()
}

/// Parses a whole slice of 1..=19 digits as u64.
pub(crate) fn parse_u64(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 19 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        bytes
            .iter()
            .fold(0u64, |acc, &b| acc * 10 + u64::from(b - b'0')),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_and_fractions() {
        let mut c = Cursor::new(b"2024x");
        assert_eq!(c.digits(4, "year").unwrap(), 2024);
        assert_eq!(c.digits(1, "d"), Err((4, ErrorKind::Expected("d"))));
        let mut c = Cursor::new(b"12");
        assert!(c.digits(3, "x").is_err());
        assert_eq!(c.pos(), 0);
        let mut c = Cursor::new(b"5Z");
        assert_eq!(c.fraction_nanos(9, "f").unwrap(), 500_000_000);
        let mut c = Cursor::new(b"123456789123");
        assert_eq!(c.fraction_nanos(12, "f").unwrap(), 123_456_789);
        let mut c = Cursor::new(b"1234");
        assert!(c.fraction_nanos(3, "f").is_err());
        let mut c = Cursor::new(b"99999999999999999999999");
        assert_eq!(
            c.digits_between(1, 19, "n").unwrap(),
            9_999_999_999_999_999_999
        );
        assert_eq!(parse_u64(b"18446744073709551615"), None);
        assert_eq!(parse_u64(b"42"), Some(42));
        assert_eq!(parse_u64(b""), None);
    }

    #[test]
    fn text_keeps_valid_utf8_and_replaces_invalid_bytes() {
        assert_eq!(text(b"plain ascii"), "plain ascii");
        assert_eq!(text("ünïcödé 日本 🦀\0".as_bytes()), "ünïcödé 日本 🦀\0");
        assert_eq!(text(b"caf\xe9 ok \xff"), "caf\u{FFFD} ok \u{FFFD}");
        assert_eq!(text(b""), "");
    }

    #[test]
    fn take_helpers() {
        let mut c = Cursor::new(b"abc def");
        assert_eq!(c.token(), b"abc");
        assert_eq!(c.skip_spaces(), 1);
        assert_eq!(c.take_until(b'x'), None);
        assert_eq!(c.take_until(b'f'), Some(&b"de"[..]));
        assert_eq!(c.rest(), b"f");
        c.advance(10);
        assert!(c.is_at_end());
        assert_eq!(trim_end_spaces(b"a \t "), b"a");
        assert_eq!(trim_end_spaces(b"   "), b"");
    }
}
