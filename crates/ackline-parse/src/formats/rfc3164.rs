//! BSD syslog per RFC 3164, as real systems write it:
//! `[<PRI>]Mmm dd hh:mm:ss [HOST ]TAG[PID]: MSG`.
//!
//! Accepted variations (all seen in the wild, several in loghub):
//! - no `<PRI>` (files written by syslogd: Linux, OpenSSH, macOS);
//! - day padded with a space (`Jun  4`) or not (`Jun 4`);
//! - a year after the day (`Mmm dd yyyy hh:mm:ss`, Cisco) and fractional
//!   seconds (`hh:mm:ss.mmm`); an RFC 3339 timestamp instead of the BSD one
//!   (rsyslog's high-precision template);
//! - no HOST: the first token is taken as the TAG instead of the host when
//!   it ends in `:` or contains `[`;
//! - TAGs with parentheses (`sshd(pam_unix)[19939]:`, `audit(1.2:0):`),
//!   spaces before a `[pid]` (`Microsoft Word[14463]:`), and a macOS
//!   ` (subsystem)` after the pid (kept as `fields.subsystem`).
//!
//! Invariants: the year of a BSD timestamp is inferred with
//! [`YearRule`](crate::YearRule) and the configured offset applied
//! (`timestamp_source = line_inferred_year`); a timestamp with a year but no
//! offset is `line_assumed_offset`. A colon-terminated prefix that contains
//! a space and no `[pid]` is *not* taken as a TAG (it is ambiguous with
//! ordinary text such as `syslogd 1.4.1: restart.`), so the message keeps it.
//! TAG scanning is bounded to [`MAX_TAG_SCAN`] bytes.
//!
//! Fields: `facility` (when PRI is present), `subsystem` (macOS).

use super::{Env, Parts, at, pri};
use crate::scan::{Cursor, PResult, text};
use crate::timestamp::{Civil, Stamp, TimeEnv, expect_month, hms};

/// How far into the content a TAG terminator is looked for.
pub(crate) const MAX_TAG_SCAN: usize = 256;

pub(crate) fn parse(body: &[u8], env: &Env) -> PResult<Parts> {
    let mut cur = Cursor::new(body);
    let mut parts = Parts::default();
    if cur.peek() == Some(b'<') {
        let (facility, severity) = pri::parse(&mut cur)?;
        parts.severity = Some(severity);
        parts.put("facility", facility.as_bytes());
    }
    let stamp = if cur.peek().is_some_and(|b| b.is_ascii_digit()) {
        crate::timestamp::rfc3339(&mut cur, true, &env.time)?
    } else {
        bsd_timestamp(&mut cur, &env.time)?
    };
    parts.timestamp = Some(stamp);
    if !cur.is_at_end() {
        cur.expect_space("SP after TIMESTAMP")?;
    }
    host_tag_message(&mut cur, &mut parts);
    Ok(parts)
}

/// `Mmm dd [yyyy ]hh:mm:ss[.frac]`.
pub(crate) fn bsd_timestamp(cur: &mut Cursor<'_>, env: &TimeEnv) -> PResult<Stamp> {
    let start = cur.pos();
    let month = expect_month(cur)?;
    cur.expect_space("SP after month")?;
    cur.eat(b' ');
    let day = cur.digits_between(1, 2, "day of month")?;
    cur.expect_space("SP after day")?;
    let year = if cur.peek_at(4) == Some(b' ') {
        let y = cur.digits(4, "year or hour")?;
        cur.advance(1);
        i32::try_from(y).ok()
    } else {
        None
    };
    let (hour, minute, second) = hms(cur)?;
    let nanos = if cur.peek() == Some(b'.') && cur.peek_at(1).is_some_and(|b| b.is_ascii_digit()) {
        cur.advance(1);
        cur.fraction_nanos(9, "fractional seconds")?
    } else {
        0
    };
    let civil = Civil {
        year: year.unwrap_or(0),
        month,
        // At most two digits: fits.
        day: u32::try_from(day).unwrap_or(0),
        hour,
        minute,
        second,
        nanos,
    };
    match year {
        Some(_) => civil.assumed(env).map_err(at(start)),
        None => civil.infer_year(env).map_err(at(start)),
    }
}

/// `[HOST ]TAG[PID]: MSG` (all parts optional), filling `parts`.
pub(crate) fn host_tag_message(cur: &mut Cursor<'_>, parts: &mut Parts) {
    cur.skip_spaces();
    let rest = cur.rest();
    let first = rest
        .iter()
        .position(|&b| b == b' ')
        .map_or(rest, |i| rest.get(..i).unwrap_or_default());
    let looks_like_tag = first.ends_with(b":") || first.contains(&b'[');
    if !first.is_empty() && !looks_like_tag {
        parts.host = Some(text(first));
        cur.advance(first.len());
        cur.skip_spaces();
    }
    tag_message(cur.rest(), parts);
}

/// Splits `TAG[PID]: MSG` into app, pid, message (see module doc).
pub(crate) fn tag_message(content: &[u8], parts: &mut Parts) {
    let mut depth = 0usize;
    let limit = content.len().min(MAX_TAG_SCAN);
    let mut i = 0;
    while i < limit {
        let Some(&b) = content.get(i) else { break };
        match b {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b'[' if depth == 0 => {
                if let Some((pid, after)) = bracket_pid(content, i) {
                    let tag = content.get(..i).unwrap_or_default();
                    if !tag.is_empty() && !tag.ends_with(b" ") {
                        parts.app = Some(text(tag));
                        parts.pid = Some(pid);
                        after_pid(content.get(after..).unwrap_or_default(), parts);
                        return;
                    }
                }
            }
            b':' if depth == 0 => {
                let tag = content.get(..i).unwrap_or_default();
                let next = content.get(i + 1).copied();
                if matches!(next, None | Some(b' ')) {
                    if !tag.is_empty() && !tag.contains(&b' ') {
                        parts.app = Some(text(tag));
                        parts.message = text(content.get(i + 2..).unwrap_or_default());
                        return;
                    }
                    break;
                }
            }
            _ => {}
        }
        i += 1;
    }
    parts.message = text(content);
}

/// At `content[open] == '['`: `[digits]` → (pid, index after `]`).
fn bracket_pid(content: &[u8], open: usize) -> Option<(u64, usize)> {
    let inner_start = open + 1;
    let tail = content.get(inner_start..)?;
    let len = tail.iter().take(20).position(|&b| b == b']')?;
    let pid = crate::scan::parse_u64(tail.get(..len)?)?;
    Some((pid, inner_start + len + 1))
}

/// What follows `TAG[PID]`: `: MSG`, ` (subsystem): MSG`, or just ` MSG`.
fn after_pid(after: &[u8], parts: &mut Parts) {
    if let Some(msg) = after.strip_prefix(b":") {
        parts.message = text(msg.strip_prefix(b" ").unwrap_or(msg));
        return;
    }
    if let Some(paren) = after.strip_prefix(b" (") {
        let mut depth = 1usize;
        for (j, &b) in paren.iter().enumerate().take(MAX_TAG_SCAN) {
            match b {
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        if let Some(msg) = paren.get(j + 1..).and_then(|r| r.strip_prefix(b":")) {
                            parts.put("subsystem", paren.get(..j).unwrap_or_default());
                            parts.message = text(msg.strip_prefix(b" ").unwrap_or(msg));
                            return;
                        }
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    parts.message = text(after.strip_prefix(b" ").unwrap_or(after));
}

#[cfg(test)]
mod tests {
    use crate::error::ErrorKind;
    use crate::format::Format::Rfc3164;
    use crate::formats::testutil::{field, ok, parse, ts};
    use crate::record::TimestampSource;
    use crate::severity::Severity;

    #[test]
    fn rfc_examples() {
        // RFC 3164 §5.4 examples.
        let p = ok(
            Rfc3164,
            "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
        );
        assert_eq!(p.severity, Some(Severity::Critical));
        assert_eq!(field(&p, "facility"), "auth");
        assert_eq!(ts(&p), "2023-10-11T22:14:15+00:00"); // reference is 2024-06-15
        assert_eq!(p.timestamp.unwrap().1, TimestampSource::LineInferredYear);
        assert_eq!(p.host.as_deref(), Some("mymachine"));
        assert_eq!(p.app.as_deref(), Some("su"));
        assert_eq!(p.message, "'su root' failed for lonvick on /dev/pts/8");

        let p = ok(Rfc3164, "<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!");
        assert_eq!(ts(&p), "2024-02-05T17:32:18+00:00");
        assert_eq!(p.host.as_deref(), Some("10.0.0.99"));
        assert_eq!(p.app, None);
        assert_eq!(p.message, "Use the BFG!");
    }

    #[test]
    fn edge_table() {
        // (line, host, app, pid, message)
        type Row<'a> = (
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
            Option<u64>,
            &'a str,
        );
        let table: &[Row] = &[
            (
                "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: check pass; user unknown",
                Some("combo"),
                Some("sshd(pam_unix)"),
                Some(19939),
                "check pass; user unknown",
            ),
            (
                "Jun 14 15:16:01 sshd[1]: no host here",
                None,
                Some("sshd"),
                Some(1),
                "no host here",
            ),
            (
                "Jun 14 15:16:01 su: no host, no pid",
                None,
                Some("su"),
                None,
                "no host, no pid",
            ),
            (
                "Jul  7 08:06:15 combo  -- root[2421]: ROOT LOGIN ON tty2",
                Some("combo"),
                Some("-- root"),
                Some(2421),
                "ROOT LOGIN ON tty2",
            ),
            (
                "Jun 19 04:09:11 combo syslogd 1.4.1: restart.",
                Some("combo"),
                None,
                None,
                "syslogd 1.4.1: restart.",
            ),
            (
                "Jul  4 23:22:09 mac Microsoft Word[14463]: Cocoa error",
                Some("mac"),
                Some("Microsoft Word"),
                Some(14463),
                "Cocoa error",
            ),
            (
                "Nov 9 12:10:43 h audit(1131538222.234:0): initialized",
                Some("h"),
                Some("audit(1131538222.234:0)"),
                None,
                "initialized",
            ),
            (
                "Jul  1 09:29:02 mac sandboxd[129] ([31211]): deny network",
                Some("mac"),
                Some("sandboxd"),
                Some(129),
                "deny network",
            ),
            (
                "Jun 14 15:16:01 host kernel: ",
                Some("host"),
                Some("kernel"),
                None,
                "",
            ),
            ("Jun 14 15:16:01 host", Some("host"), None, None, ""),
            ("Jun 14 15:16:01", None, None, None, ""),
            (
                "Jun 14 15:16:01 host app[notapid]: text",
                Some("host"),
                Some("app[notapid]"),
                None,
                "text",
            ),
            (
                "Jun 14 15:16:01 host just words: here",
                Some("host"),
                None,
                None,
                "just words: here",
            ),
        ];
        for (line, host, app, pid, msg) in table {
            let p = ok(Rfc3164, line);
            assert_eq!(p.host.as_deref(), *host, "{line}");
            assert_eq!(p.app.as_deref(), *app, "{line}");
            assert_eq!(p.pid, *pid, "{line}");
            assert_eq!(p.message, *msg, "{line}");
        }
        let p = ok(
            Rfc3164,
            "Jul  1 09:29:02 mac sandboxd[129] ([31211]): deny network",
        );
        assert_eq!(field(&p, "subsystem"), "[31211]");

        // Timestamps: single-space day, year, fraction, RFC 3339.
        assert_eq!(
            ts(&ok(Rfc3164, "Nov 9 12:01:01 h x: y")),
            "2023-11-09T12:01:01+00:00"
        );
        let p = ok(Rfc3164, "Mar  1 2019 10:00:00.250 h x: y");
        assert_eq!(ts(&p), "2019-03-01T10:00:00.250+00:00");
        assert_eq!(p.timestamp.unwrap().1, TimestampSource::LineAssumedOffset);
        let p = ok(Rfc3164, "<30>2024-01-02T03:04:05.6+01:00 h x: y");
        assert_eq!(ts(&p), "2024-01-02T03:04:05.600+01:00");
        assert_eq!(p.timestamp.unwrap().1, TimestampSource::Line);

        let bad: &[(&str, ErrorKind)] = &[
            (
                "Foo 14 15:16:01 h x",
                ErrorKind::InvalidTimestamp("month name"),
            ),
            ("Jun 31 15:16:01 h x", ErrorKind::TimestampOutOfRange),
            ("Jun 14 25:16:01 h x", ErrorKind::TimestampOutOfRange),
            ("Jun 14 15:16 h x", ErrorKind::Expected("':' after minute")),
            ("Jun 144 15:16:01 h x", ErrorKind::Expected("SP after day")),
            (
                "Jun 14 15:16:01h x",
                ErrorKind::Expected("SP after TIMESTAMP"),
            ),
            ("<300>Jun 14 15:16:01 h x", ErrorKind::InvalidPriority),
        ];
        for (line, kind) in bad {
            match parse(Rfc3164, line) {
                Err((_, k)) => assert_eq!(&k, kind, "{line}"),
                Ok(p) => panic!("{line} parsed: {p:?}"),
            }
        }
    }
}
