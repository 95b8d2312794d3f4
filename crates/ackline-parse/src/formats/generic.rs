//! The generic header extractor: the last format tried before `raw`.
//!
//! A line with no named format often still starts with the same few things:
//! a timestamp, a pid, a severity. This module takes them from the front of
//! the line and leaves the rest as the message:
//!
//! ```text
//! [PID-PREFIX] [APP ] [ '[' ] TIMESTAMP [ ']' ] [ UTC|GMT ] [ ':' ] { HEADER-TOKEN } MESSAGE
//! ```
//!
//! - PID-PREFIX: `[1234] ` (NATS) or Redis's `1234:R ` (R = `C`, `M`, `S`,
//!   `X`, the process role, kept as `fields.role`); Redis's signal handler
//!   writes `1234:signal-handler (EPOCH) `, whose epoch is the timestamp.
//! - APP: one word before a digit-led timestamp (`update-alternatives
//!   2025-06-24 14:36:53: ...`).
//! - TIMESTAMP, optionally in brackets: ISO 8601 with `T` or a space, with
//!   or without fraction (`.` or `,`) and offset (`Z`, `±hh:mm`, `±hhmm`,
//!   `±hh`), a following ` UTC`/` GMT` meaning offset zero;
//!   `YYYY/MM/DD HH:MM:SS[.f]`; `DD Mon YYYY HH:MM:SS[.f]`; BSD syslog
//!   `Mon DD HH:MM:SS[.f]` (year inferred); epoch seconds (10 digits,
//!   optional fraction) or milliseconds (13 digits).
//! - HEADER-TOKENs, in any order, each at most once: `[1234]` (pid);
//!   `[LEVEL]` (`[INF]`, `[WRN]`, `[ERR]`, `[DBG]`, `[TRC]`, `[FTL]`,
//!   `[notice]`, `[error]`...); an Erlang pid `<0.223.0>` (`fields.erlang_pid`);
//!   `level=LEVEL`; a PostgreSQL session `user@database` (`fields.user`,
//!   `fields.database`) when a `LEVEL:` follows; `NAME[PID]:` (app and pid);
//!   Redis's level mark `.` `-` `*` `#` after its pid prefix; then a closing
//!   `LEVEL:` (`LOG:`, `ERROR:`, `FATAL:`, `PANIC:`, `WARNING:`, `DEBUG1:`...,
//!   or a PostgreSQL continuation label `DETAIL:`, `STATEMENT:`, `HINT:`,
//!   `CONTEXT:`, `QUERY:`, `LOCATION:`, kept as `fields.label` without a
//!   severity) or a bare upper-case level word (`INFO`, `WARN`...) ends the
//!   header.
//!
//! - NAMING: when the header has a daemon's unmistakable shape the record is
//!   named after it (`parts.variant`): Redis's `PID:ROLE` prefix → `redis`;
//!   `[PID]` prefix, slashed timestamp and `[LVL]` → `nats`; an Erlang pid
//!   → `rabbitmq`; ISO timestamp, zone word, `[PID]` and `LEVEL:`/label →
//!   `postgresql` (a zone abbreviation other than UTC/GMT followed by
//!   ` [digit` is kept as `fields.tz`, the configured zone applying);
//!   `YYYY-MM-DD hh:mm:ss` plus a dpkg action word, or
//!   `update-alternatives` → `dpkg`. Else the record is `generic`.
//!
//! Invariants:
//! - a line is accepted only when it has a timestamp from the line: without
//!   one it is not `generic` but `raw`, so `generic` always means
//!   "timestamp, and whatever else of the header was recognised";
//! - the extractor runs only after every named candidate failed, so it
//!   changes nothing any named format parses and costs a named line nothing;
//! - it reads through [`Cursor`] and bounded lookahead (no token scan goes
//!   past [`MAX_HEADER_TOKEN`] bytes, at most [`MAX_HEADER_TOKENS`] tokens),
//!   so it cannot panic and is linear in the line length;
//! - a token it does not recognise ends the header: it and all after it are
//!   the message, untouched.

use chrono::{FixedOffset, Offset as _, TimeZone as _, Utc};

use super::{Env, Parts, at};
use crate::error::ErrorKind;
use crate::format::Format;
use crate::record::TimestampSource;
use crate::scan::{Cursor, PResult, parse_u64, text};
use crate::severity::Severity;
use crate::timestamp::{Civil, Stamp, TimeEnv, expect_month, from_epoch, hms, month_abbrev};

/// The longest header token looked at (brackets, `LEVEL:`, `user@db`...).
pub(crate) const MAX_HEADER_TOKEN: usize = 64;

/// At most this many header tokens are read after the timestamp.
pub(crate) const MAX_HEADER_TOKENS: usize = 6;

/// Kept out of line: inlined into [`super::parse_as`] it would grow the
/// dispatch every named line goes through.
#[inline(never)]
pub(crate) fn parse(body: &[u8], env: &Env) -> PResult<Parts> {
    let mut cur = Cursor::new(body);
    let mut parts = Parts::default();
    let redis = pid_prefix(&mut cur, &mut parts);
    if redis == Prefix::RedisSignal {
        parts.variant = Some(Format::Redis);
        // `1234:signal-handler (1796436340) Received SIGTERM ...`
        let start = cur.pos();
        let secs = cur.digits_between(9, 12, "epoch seconds")?;
        cur.expect(b')', "')' after epoch seconds")?;
        let secs = i64::try_from(secs).map_err(|_| (start, ErrorKind::TimestampOutOfRange))?;
        let utc = from_epoch(secs, 0).ok_or((start, ErrorKind::TimestampOutOfRange))?;
        parts.timestamp = Some((utc.fixed_offset(), TimestampSource::Line));
        cur.skip_spaces();
        parts.message = text(cur.rest());
        return Ok(parts);
    }
    if redis == Prefix::None {
        app_prefix(&mut cur, &mut parts);
    }
    let bracketed = cur.eat(b'[');
    let ts_start = cur.pos();
    let (mut stamp, layout) = timestamp(&mut cur, &env.time)?;
    let ts_len = cur.pos() - ts_start;
    if bracketed {
        cur.expect(b']', "']' closing timestamp")?;
    }
    let mut zone_word = false;
    if stamp.1 == TimestampSource::LineAssumedOffset {
        let mut look = cur.clone();
        if (look.eat_slice(b" UTC") || look.eat_slice(b" GMT")) && at_boundary(&look) {
            let utc: FixedOffset = Utc.fix();
            if let Some(dt) = utc.from_local_datetime(&stamp.0.naive_local()).single() {
                stamp = (dt, TimestampSource::Line);
                cur = look;
                zone_word = true;
            }
        } else if let Some(abbrev) = zone_abbrev(&cur) {
            // `CET [1234]`: PostgreSQL's `%m` names the server's zone; its
            // offset is not in the line, so the configured zone applies.
            parts.put("tz", abbrev);
            cur.advance(abbrev.len() + 1);
            zone_word = true;
        }
    }
    parts.timestamp = Some(stamp);
    cur.eat(b':');
    if !at_boundary(&cur) {
        return Err(cur.expected("SP after timestamp"));
    }
    let seen = header_tokens(&mut cur, &mut parts, redis == Prefix::Redis);
    cur.skip_spaces();
    parts.message = text(cur.rest());
    parts.variant = classify(redis, layout, ts_len, zone_word, seen, &parts);
    Ok(parts)
}

/// The fixed-format entry for the daemons this extractor names: the line
/// must be one of `format`'s.
pub(crate) fn parse_named(format: Format, body: &[u8], env: &Env) -> PResult<Parts> {
    let parts = parse(body, env)?;
    if parts.variant == Some(format) {
        return Ok(parts);
    }
    Err((
        0,
        ErrorKind::Expected(match format {
            Format::Postgresql => "a PostgreSQL stderr log line (TIMESTAMP ZONE [PID] LEVEL:)",
            Format::Redis => "a Redis log line (PID:ROLE DD Mon YYYY HH:MM:SS.mmm MARK)",
            Format::RabbitMq => "a RabbitMQ log line (TIMESTAMP [level] <0.N.0>)",
            Format::Nats => "a NATS log line ([PID] YYYY/MM/DD HH:MM:SS [LVL])",
            Format::Dpkg => "a dpkg log line (YYYY-MM-DD HH:MM:SS ACTION)",
            _ => "a line of the fixed format",
        }),
    ))
}

/// Which timestamp layout the line led with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Iso,
    Slashed,
    DayMonthYear,
    Syslog,
    Epoch,
}

/// What [`header_tokens`] recognised, for [`classify`].
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    bracket_level: bool,
    bracket_pid: bool,
    erlang_pid: bool,
    colon_level: bool,
}

/// dpkg.log's second word (dpkg(1), "LOG FILE" / `--log`).
const DPKG_ACTIONS: &[&[u8]] = &[
    b"startup",
    b"status",
    b"install",
    b"upgrade",
    b"configure",
    b"remove",
    b"purge",
    b"trigproc",
    b"conffile",
];

/// Names the daemon when the header has its unmistakable shape:
/// Redis's `PID:ROLE` prefix; NATS's `[PID]` prefix, slashed timestamp and
/// `[LVL]`; RabbitMQ's Erlang pid; PostgreSQL's zone word, `[PID]` and
/// `LEVEL:`; dpkg's `YYYY-MM-DD HH:MM:SS ACTION` and update-alternatives.
fn classify(
    prefix: Prefix,
    layout: Layout,
    ts_len: usize,
    zone_word: bool,
    seen: Seen,
    parts: &Parts,
) -> Option<Format> {
    if prefix == Prefix::Redis {
        return Some(Format::Redis);
    }
    if prefix == Prefix::Pid && layout == Layout::Slashed && seen.bracket_level {
        return Some(Format::Nats);
    }
    if seen.erlang_pid && layout == Layout::Iso {
        return Some(Format::RabbitMq);
    }
    if layout == Layout::Iso && zone_word && seen.bracket_pid && seen.colon_level {
        return Some(Format::Postgresql);
    }
    if layout == Layout::Iso && ts_len == 19 && prefix == Prefix::None {
        if parts.app.as_deref() == Some("update-alternatives") {
            return Some(Format::Dpkg);
        }
        let word = parts.message.split(' ').next().unwrap_or_default();
        if parts.app.is_none()
            && parts.severity.is_none()
            && DPKG_ACTIONS.contains(&word.as_bytes())
        {
            return Some(Format::Dpkg);
        }
    }
    None
}

/// A time zone abbreviation (`CET`, `EST`, `AEDT`: 2 to 5 upper-case
/// letters, not a level word) after the timestamp, followed by ` [` and a
/// digit (PostgreSQL's `%m [%p]`). Returns the word, the cursor at its
/// leading space.
fn zone_abbrev<'a>(cur: &Cursor<'a>) -> Option<&'a [u8]> {
    let rest = cur.rest().strip_prefix(b" ")?;
    let n = rest
        .iter()
        .take(6)
        .take_while(|b| b.is_ascii_uppercase())
        .count();
    if !(2..=5).contains(&n) {
        return None;
    }
    let after = rest.get(n..n + 3)?;
    let word = rest.get(..n)?;
    (after.starts_with(b" [")
        && after.get(2).is_some_and(u8::is_ascii_digit)
        && level(word).is_none())
    .then_some(word)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prefix {
    None,
    Pid,
    Redis,
    RedisSignal,
}

/// End of line, or a space or tab next.
fn at_boundary(cur: &Cursor<'_>) -> bool {
    matches!(cur.peek(), None | Some(b' ' | b'\t'))
}

/// `[1234] ` (NATS), `1234:R ` or `1234:signal-handler (` (Redis).
fn pid_prefix(cur: &mut Cursor<'_>, parts: &mut Parts) -> Prefix {
    let mut look = cur.clone();
    if look.eat(b'[') {
        let digits = look.take_while(|b| b.is_ascii_digit());
        if let Some(pid) = parse_u64(digits)
            && look.eat_slice(b"] ")
        {
            parts.pid = Some(pid);
            *cur = look;
            return Prefix::Pid;
        }
        return Prefix::None;
    }
    let digits = look.take_while(|b| b.is_ascii_digit());
    let Some(pid) = parse_u64(digits) else {
        return Prefix::None;
    };
    if !look.eat(b':') {
        return Prefix::None;
    }
    if look.eat_slice(b"signal-handler (") {
        parts.pid = Some(pid);
        parts.app = Some("redis".to_owned());
        *cur = look;
        return Prefix::RedisSignal;
    }
    match (look.peek(), look.peek_at(1)) {
        (Some(role @ (b'C' | b'M' | b'S' | b'X')), Some(b' ')) => {
            parts.pid = Some(pid);
            parts.put("role", &[role]);
            look.advance(2);
            *cur = look;
            Prefix::Redis
        }
        _ => Prefix::None,
    }
}

/// One word before a digit-led timestamp: `update-alternatives 2025-...`.
/// Consumes nothing unless the word is followed by a space and a digit.
fn app_prefix(cur: &mut Cursor<'_>, parts: &mut Parts) {
    if !cur.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
        return;
    }
    let mut look = cur.clone();
    let word = look.take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if word.len() > MAX_HEADER_TOKEN {
        return;
    }
    if look.eat(b' ') && look.peek().is_some_and(|b| b.is_ascii_digit()) {
        parts.app = Some(text(word));
        *cur = look;
    }
}

/// A timestamp in one of the layouts of the module doc.
fn timestamp(cur: &mut Cursor<'_>, env: &TimeEnv) -> PResult<(Stamp, Layout)> {
    let rest = cur.rest();
    let lead = rest
        .iter()
        .take(14)
        .take_while(|b| b.is_ascii_digit())
        .count();
    match (lead, rest.get(lead).copied()) {
        (4, Some(b'-')) => crate::timestamp::rfc3339(cur, true, env).map(|s| (s, Layout::Iso)),
        (4, Some(b'/')) => slashed(cur, env).map(|s| (s, Layout::Slashed)),
        (1 | 2, Some(b' '))
            if rest
                .get(lead + 1..lead + 4)
                .and_then(month_abbrev)
                .is_some() =>
        {
            day_month_year(cur, env).map(|s| (s, Layout::DayMonthYear))
        }
        (10 | 13, None | Some(b' ' | b'\t' | b']' | b'.' | b':')) => {
            epoch(cur, lead).map(|s| (s, Layout::Epoch))
        }
        (0, Some(_))
            if rest.get(3) == Some(&b' ') && rest.get(..3).and_then(month_abbrev).is_some() =>
        {
            syslog(cur, env).map(|s| (s, Layout::Syslog))
        }
        _ => Err(cur.fail(ErrorKind::InvalidTimestamp("a leading timestamp"))),
    }
}

/// Optional `.fraction` (up to 9 digits kept, 12 read).
fn fraction(cur: &mut Cursor<'_>) -> PResult<u32> {
    if cur.eat(b'.') || cur.eat(b',') {
        cur.fraction_nanos(12, "fractional seconds")
    } else {
        Ok(0)
    }
}

/// `YYYY/MM/DD HH:MM:SS[.f]` (Go's `log`, NATS).
pub(crate) fn slashed(cur: &mut Cursor<'_>, env: &TimeEnv) -> PResult<Stamp> {
    let start = cur.pos();
    let year = cur.digits(4, "year")?;
    cur.expect(b'/', "'/' after year")?;
    let month = cur.digits(2, "month")?;
    cur.expect(b'/', "'/' after month")?;
    let day = cur.digits(2, "day")?;
    cur.expect(b' ', "SP between date and time")?;
    let (hour, minute, second) = hms(cur)?;
    let nanos = fraction(cur)?;
    let civil = Civil {
        year: i32::try_from(year).unwrap_or(0),
        month,
        day,
        hour,
        minute,
        second,
        nanos,
    };
    match crate::timestamp::offset(cur)? {
        Some(off) => Ok((civil.at(off).map_err(at(start))?, TimestampSource::Line)),
        None => civil.assumed(env).map_err(at(start)),
    }
}

/// `DD Mon YYYY HH:MM:SS[.f]` (Redis).
fn day_month_year(cur: &mut Cursor<'_>, env: &TimeEnv) -> PResult<Stamp> {
    let start = cur.pos();
    let day = cur.digits_between(1, 2, "day of month")?;
    cur.expect(b' ', "SP after day")?;
    let month = expect_month(cur)?;
    cur.expect(b' ', "SP after month")?;
    let year = cur.digits(4, "year")?;
    cur.expect(b' ', "SP after year")?;
    let (hour, minute, second) = hms(cur)?;
    let nanos = fraction(cur)?;
    Civil {
        year: i32::try_from(year).unwrap_or(0),
        month,
        day: u32::try_from(day).unwrap_or(0),
        hour,
        minute,
        second,
        nanos,
    }
    .assumed(env)
    .map_err(at(start))
}

/// BSD syslog `Mon D[D] HH:MM:SS[.f]`, year inferred. (Not
/// `rfc3164::bsd_timestamp`: a second caller would stop it being inlined
/// into the RFC 3164 parser, which the loghub mix measurably feels.)
fn syslog(cur: &mut Cursor<'_>, env: &TimeEnv) -> PResult<Stamp> {
    let start = cur.pos();
    let month = expect_month(cur)?;
    cur.expect(b' ', "SP after month")?;
    cur.eat(b' ');
    let day = cur.digits_between(1, 2, "day of month")?;
    cur.expect(b' ', "SP after day")?;
    let (hour, minute, second) = hms(cur)?;
    let nanos = fraction(cur)?;
    Civil {
        year: 0,
        month,
        day: u32::try_from(day).unwrap_or(0),
        hour,
        minute,
        second,
        nanos,
    }
    .infer_year(env)
    .map_err(at(start))
}

/// Epoch seconds (10 digits, optional fraction) or milliseconds (13).
fn epoch(cur: &mut Cursor<'_>, digits: usize) -> PResult<Stamp> {
    let start = cur.pos();
    let n = cur.digits_between(digits, digits, "epoch")?;
    let n = i64::try_from(n).map_err(|_| (start, ErrorKind::TimestampOutOfRange))?;
    let (secs, nanos) = if digits == 13 {
        (n / 1000, u32::try_from(n % 1000).unwrap_or(0) * 1_000_000)
    } else if cur.peek() == Some(b'.') && cur.peek_at(1).is_some_and(|b| b.is_ascii_digit()) {
        cur.advance(1);
        (n, cur.fraction_nanos(12, "fractional seconds")?)
    } else {
        (n, 0)
    };
    let utc = from_epoch(secs, nanos).ok_or((start, ErrorKind::TimestampOutOfRange))?;
    Ok((utc.fixed_offset(), TimestampSource::Line))
}

/// Reads header tokens after the timestamp (see the module doc); stops
/// before the first token it does not recognise.
fn header_tokens(cur: &mut Cursor<'_>, parts: &mut Parts, redis: bool) -> Seen {
    let mut seen = Seen::default();
    for _ in 0..MAX_HEADER_TOKENS {
        let mut look = cur.clone();
        look.skip_spaces();
        let rest = look.rest();
        let end = rest
            .iter()
            .take(MAX_HEADER_TOKEN + 1)
            .position(|&b| b == b' ' || b == b'\t')
            .unwrap_or(rest.len());
        if end > MAX_HEADER_TOKEN || end == 0 {
            return seen;
        }
        let token = rest.get(..end).unwrap_or_default();
        look.advance(end);
        match token {
            [mark @ (b'.' | b'-' | b'*' | b'#')] if redis && parts.severity.is_none() => {
                parts.severity = Some(match mark {
                    b'.' => Severity::Debug,
                    b'-' => Severity::Info,
                    b'*' => Severity::Notice,
                    _ => Severity::Warning,
                });
                *cur = look;
                return seen;
            }
            [b'[', inner @ .., b']'] => {
                if let Some(pid) = parse_u64(inner).filter(|_| parts.pid.is_none()) {
                    parts.pid = Some(pid);
                    seen.bracket_pid = true;
                } else if let Some(sev) = level(inner).filter(|_| parts.severity.is_none()) {
                    parts.severity = Some(sev);
                    seen.bracket_level = true;
                } else {
                    return seen;
                }
            }
            [b'<', inner @ .., b'>'] if is_erlang_pid(inner) => {
                parts.put("erlang_pid", token);
                seen.erlang_pid = true;
            }
            _ if token.starts_with(b"level=") && parts.severity.is_none() => {
                match level(token.get(6..).unwrap_or_default()) {
                    Some(sev) => parts.severity = Some(sev),
                    None => return seen,
                }
            }
            [.., b':'] => {
                let word = token.get(..token.len() - 1).unwrap_or_default();
                if let Some(label) = colon_level(word, parts) {
                    seen.colon_level = true;
                    if let Some(label) = label {
                        parts.put("label", label);
                    }
                    *cur = look;
                    return seen;
                }
                if let Some((app, pid)) = app_pid(word).filter(|_| parts.app.is_none()) {
                    parts.app = Some(text(app));
                    parts.pid = parts.pid.or(Some(pid));
                    *cur = look;
                }
                return seen;
            }
            _ if is_upper_word(token) && parts.severity.is_none() => match level(token) {
                Some(sev) => {
                    parts.severity = Some(sev);
                    *cur = look;
                    return seen;
                }
                None => return seen,
            },
            _ if memchr::memchr(b'@', token).is_some() && parts.severity.is_none() => {
                // A PostgreSQL session (`%u@%d`), only when a `LEVEL:` follows.
                let mut after = look.clone();
                after.skip_spaces();
                let next = after.token();
                let is_level = next
                    .strip_suffix(b":")
                    .is_some_and(|w| is_upper_word(w) && colon_level_of(w).is_some());
                if !is_level {
                    return seen;
                }
                if let Some(at) = memchr::memchr(b'@', token) {
                    parts.put("user", token.get(..at).unwrap_or_default());
                    parts.put("database", token.get(at + 1..).unwrap_or_default());
                }
            }
            _ => return seen,
        }
        *cur = look;
    }
    seen
}

/// `A-Z` / digits only, starting with a letter.
fn is_upper_word(w: &[u8]) -> bool {
    w.first().is_some_and(u8::is_ascii_uppercase)
        && w.iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// A level word or abbreviation, any case: the [`Severity::from_text`]
/// names, PostgreSQL's `LOG` and `DEBUG1`..`DEBUG5`, and the three-letter
/// abbreviations (`INF`, `WRN`, `ERR`, `DBG`, `TRC`, `FTL`, `CRT`, `NTC`).
pub(crate) fn level(word: &[u8]) -> Option<Severity> {
    if let Some(sev) = Severity::from_text(word) {
        return Some(sev);
    }
    let mut buf = [0u8; 6];
    let lower = buf.get_mut(..word.len())?;
    lower.copy_from_slice(word);
    lower.make_ascii_lowercase();
    Some(match &*lower {
        b"inf" | b"log" => Severity::Info,
        b"wrn" => Severity::Warning,
        b"dbg" | b"trc" | b"debug1" | b"debug2" | b"debug3" | b"debug4" | b"debug5" => {
            Severity::Debug
        }
        b"ftl" | b"crt" => Severity::Critical,
        b"ntc" => Severity::Notice,
        _ => return None,
    })
}

/// PostgreSQL's continuation labels: a line of their own, no severity.
const LABELS: &[&[u8]] = &[
    b"DETAIL",
    b"STATEMENT",
    b"HINT",
    b"CONTEXT",
    b"QUERY",
    b"LOCATION",
];

/// What an upper-case `WORD:` means: `Some(None)` a severity, `Some(Some(label))`
/// a continuation label, `None` neither.
fn colon_level_of(word: &[u8]) -> Option<Option<&[u8]>> {
    if LABELS.contains(&word) {
        Some(Some(word))
    } else {
        level(word).map(|_| None)
    }
}

/// As [`colon_level_of`], setting the severity on a match.
fn colon_level<'a>(word: &'a [u8], parts: &mut Parts) -> Option<Option<&'a [u8]>> {
    if !is_upper_word(word) || parts.severity.is_some() {
        return None;
    }
    let found = colon_level_of(word)?;
    if found.is_none() {
        parts.severity = level(word);
    }
    Some(found)
}

/// `<0.223.0>`: three dot-separated decimal numbers.
fn is_erlang_pid(inner: &[u8]) -> bool {
    let mut groups = 0;
    for part in inner.split(|&b| b == b'.') {
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return false;
        }
        groups += 1;
    }
    groups == 3
}

/// `name[pid]` → (name, pid).
fn app_pid(word: &[u8]) -> Option<(&[u8], u64)> {
    let inner = word.strip_suffix(b"]")?;
    let open = memchr::memrchr(b'[', inner)?;
    let name = inner.get(..open).filter(|n| !n.is_empty())?;
    let pid = parse_u64(inner.get(open + 1..)?)?;
    Some((name, pid))
}

#[cfg(test)]
mod tests {
    use crate::format::Format::Generic;
    use crate::formats::testutil::{field, ok, parse, ts};
    use crate::record::TimestampSource;
    use crate::severity::Severity;

    /// (line, timestamp, severity, pid, app, message)
    type Row<'a> = (
        &'a str,
        &'a str,
        Option<Severity>,
        Option<u64>,
        Option<&'a str>,
        &'a str,
    );

    #[test]
    fn layouts_table() {
        let table: &[Row] = &[
            (
                "2026-12-04 21:15:28.230 UTC [2230] LOG:  database system is ready",
                "2026-12-04T21:15:28.230+00:00",
                Some(Severity::Info),
                Some(2230),
                None,
                "database system is ready",
            ),
            (
                "2250:C 04 Dec 2026 21:15:30.473 # Configuration loaded",
                "2026-12-04T21:15:30.473+00:00",
                Some(Severity::Warning),
                Some(2250),
                None,
                "Configuration loaded",
            ),
            (
                "2250:M 04 Dec 2026 21:15:30.473 * Ready to accept connections",
                "2026-12-04T21:15:30.473+00:00",
                Some(Severity::Notice),
                Some(2250),
                None,
                "Ready to accept connections",
            ),
            (
                "2248:signal-handler (1796436340) Received SIGTERM scheduling shutdown...",
                "2026-12-05T02:05:40+00:00",
                None,
                Some(2248),
                Some("redis"),
                "Received SIGTERM scheduling shutdown...",
            ),
            (
                "2026-12-04 21:15:41.696327+00:00 [notice] <0.223.0> Logging: configured",
                "2026-12-04T21:15:41.696327+00:00",
                Some(Severity::Notice),
                None,
                None,
                "Logging: configured",
            ),
            (
                "[2997] 2026/12/04 21:15:39.262818 [INF] Starting nats-server",
                "2026-12-04T21:15:39.262818+00:00",
                Some(Severity::Info),
                Some(2997),
                None,
                "Starting nats-server",
            ),
            (
                "2025-06-24 14:36:25 startup archives unpack",
                "2025-06-24T14:36:25+00:00",
                None,
                None,
                None,
                "startup archives unpack",
            ),
            (
                "update-alternatives 2025-06-24 14:36:53: run with --quiet",
                "2025-06-24T14:36:53+00:00",
                None,
                None,
                Some("update-alternatives"),
                "run with --quiet",
            ),
            (
                "2024-01-02T03:04:05Z level=warn something odd",
                "2024-01-02T03:04:05+00:00",
                Some(Severity::Warning),
                None,
                None,
                "something odd",
            ),
            (
                "2024-01-02T03:04:05.5+0200 ERROR boom",
                "2024-01-02T03:04:05.500+02:00",
                Some(Severity::Error),
                None,
                None,
                "boom",
            ),
            (
                "[2024-01-02 03:04:05,250] [WRN] careful",
                "2024-01-02T03:04:05.250+00:00",
                Some(Severity::Warning),
                None,
                None,
                "careful",
            ),
            (
                "1700000000 started",
                "2023-11-14T22:13:20+00:00",
                None,
                None,
                None,
                "started",
            ),
            (
                "1700000000123 [ERR] failed",
                "2023-11-14T22:13:20.123+00:00",
                Some(Severity::Error),
                None,
                None,
                "failed",
            ),
            (
                "1700000000.25 myd[42]: hi",
                "2023-11-14T22:13:20.250+00:00",
                None,
                Some(42),
                Some("myd"),
                "hi",
            ),
            (
                "[Jun  4 01:02:03] [notice] x",
                "2024-06-04T01:02:03+00:00",
                Some(Severity::Notice),
                None,
                None,
                "x",
            ),
            (
                "2024-01-02 03:04:05 GMT",
                "2024-01-02T03:04:05+00:00",
                None,
                None,
                None,
                "",
            ),
            // An unknown bracket ends the header: it stays in the message.
            (
                "2024-01-02 03:04:05 [main] INFO x",
                "2024-01-02T03:04:05+00:00",
                None,
                None,
                None,
                "[main] INFO x",
            ),
        ];
        for (line, want_ts, sev, pid, app, msg) in table {
            let p = ok(Generic, line);
            assert_eq!(ts(&p), *want_ts, "{line}");
            assert_eq!(p.severity, *sev, "{line}");
            assert_eq!(p.pid, *pid, "{line}");
            assert_eq!(p.app.as_deref(), *app, "{line}");
            assert_eq!(p.message, *msg, "{line}");
        }
    }

    #[test]
    fn postgres_session_and_labels() {
        let p = ok(
            Generic,
            "2026-12-05 01:20:54.024 UTC [25401] postgres@test ERROR:  relation \"x\" does not exist",
        );
        assert_eq!(p.timestamp.unwrap().1, TimestampSource::Line);
        assert_eq!(p.severity, Some(Severity::Error));
        assert_eq!(field(&p, "user"), "postgres");
        assert_eq!(field(&p, "database"), "test");
        assert_eq!(p.message, "relation \"x\" does not exist");
        let p = ok(
            Generic,
            "2026-12-05 01:20:54.024 UTC [25401] postgres@test STATEMENT:  SELECT 1",
        );
        assert_eq!(p.severity, None);
        assert_eq!(field(&p, "label"), "STATEMENT");
        assert_eq!(p.message, "SELECT 1");
        // `@` not followed by a level is message text.
        let p = ok(Generic, "2026-12-05 01:20:54 mail to a@b failed");
        assert_eq!(p.message, "mail to a@b failed");
        assert_eq!(field(&p, "user"), "<absent>");
        // Another zone's abbreviation is kept; the configured zone applies.
        let p = ok(Generic, "2026-12-05 01:20:54 CET [7] FATAL:  x");
        assert_eq!(p.timestamp.unwrap().1, TimestampSource::LineAssumedOffset);
        assert_eq!(field(&p, "tz"), "CET");
        assert_eq!(p.pid, Some(7));
        assert_eq!(p.message, "x");
        assert_eq!(p.variant, Some(crate::format::Format::Postgresql));
        // A level word is not a zone.
        let p = ok(Generic, "2026-12-05 01:20:54 INFO [7] x");
        assert_eq!(field(&p, "tz"), "<absent>");
        assert_eq!(p.severity, Some(Severity::Info));
    }

    #[test]
    fn refusals() {
        for line in [
            "plain words",
            "",
            "2024-13-01 00:00:00 x",
            "2024-01-02 03:04:05x",
            "12345 not an epoch",
            "[2024-01-02 03:04:05 unclosed",
            "123:C no timestamp",
            "99999999999999 too long",
        ] {
            assert!(parse(Generic, line).is_err(), "{line}");
        }
    }
}
