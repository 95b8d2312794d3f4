//! Cheap per-line format detection.
//!
//! Invariants: detection looks at no more than the first ~25 bytes and
//! never allocates; it returns a short, fixed list of candidate formats in
//! the order they should be tried (most specific first). It does not decide
//! alone: the caller tries each candidate's parser, which fails fast, and
//! the first success wins. A format missing from every list can still be
//! used by fixing it in the configuration.

use crate::format::Format::{self, *};
use crate::timestamp::month_abbrev;

/// Candidate formats for a line (the body, without its terminator).
pub(crate) fn candidates(body: &[u8]) -> &'static [Format] {
    let at = |i: usize| body.get(i).copied();
    let digit = |i: usize| at(i).is_some_and(|b| b.is_ascii_digit());
    let Some(first) = at(0) else { return &[] };
    match first {
        b'{' => &[Json],
        b' ' | b'\t' => {
            let trimmed = body.iter().position(|&b| b != b' ' && b != b'\t');
            if trimmed.and_then(|i| body.get(i)) == Some(&b'{') {
                &[Json]
            } else {
                &[]
            }
        }
        b'<' => {
            // `<PRI>1 ` is RFC 5424; any other `<PRI>` is RFC 3164.
            let close = body.iter().take(5).position(|&b| b == b'>');
            match close.and_then(|i| body.get(i + 1..i + 3)) {
                Some(b"1 ") => &[Rfc5424, Rfc3164],
                _ => &[Rfc3164],
            }
        }
        b'[' => {
            if digit(1) {
                &[Proxifier, Python]
            } else {
                &[ApacheError]
            }
        }
        b'-' if at(1) == Some(b' ') => {
            // BGL and Thunderbird share `LABEL EPOCH YYYY.MM.DD NODE`; the
            // fifth token tells them apart, and their parsers do so quickly.
            &[Bgl, Thunderbird]
        }
        b'0'..=b'9' => digit_led(body),
        b'A'..=b'Z' | b'a'..=b'z' => {
            if at(3) == Some(b' ') && body.get(..3).and_then(month_abbrev).is_some() {
                &[Rfc3164, AccessCommon, Logfmt]
            } else if crate::formats::python::default_prefix(body) {
                &[Python]
            } else if crate::formats::klog::looks_like(body) {
                &[Klog]
            } else if crate::formats::apt::looks_like(body) {
                &[Apt]
            } else if first.is_ascii_uppercase() {
                &[OpenStack, Bgl, Thunderbird, AccessCommon, Logfmt]
            } else {
                &[OpenStack, AccessCommon, Logfmt]
            }
        }
        // IPv6 clients (`::1 - - [...`) and other printable starts.
        _ if first.is_ascii_graphic() => &[AccessCommon, Logfmt],
        _ => &[],
    }
}

fn digit_led(body: &[u8]) -> &'static [Format] {
    let at = |i: usize| body.get(i).copied();
    let digits = |r: std::ops::Range<usize>| {
        body.get(r)
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
    };
    if digits(0..4) && at(4) == Some(b'-') && at(7) == Some(b'-') {
        // YYYY-MM-DD...
        if at(19) == Some(b',') && at(20) == Some(b' ') {
            &[WindowsCbs, Log4j]
        } else if at(10) == Some(b'T') {
            // No loghub family writes the `T`; CRI fails fast otherwise.
            &[Cri, OpenStack, Log4j, Mysql]
        } else {
            &[OpenStack, Log4j, Mysql, Python, PostgresqlCsv]
        }
    } else if digits(0..4) && at(4) == Some(b'/') && at(7) == Some(b'/') {
        // YYYY/MM/DD: nginx's error log, else Go's `log`.
        &[NginxError, GoLog]
    } else if digits(0..8) && at(8) == Some(b'-') {
        &[HealthApp]
    } else if digits(0..2) && at(2) == Some(b'/') {
        &[Log4j]
    } else if digits(0..2) && at(2) == Some(b'-') && at(5) == Some(b' ') {
        &[Logcat]
    } else if digits(0..2) && at(2) == Some(b':') && at(5) == Some(b':') {
        &[Logback]
    } else if digits(0..6) && at(6) == Some(b' ') && digits(7..13) {
        &[Log4j, Hpc, AccessCommon]
    } else {
        &[Hpc, AccessCommon, Logfmt]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_candidate_table() {
        let table: &[(&str, Option<Format>)] = &[
            ("{\"a\":1}", Some(Json)),
            ("  {\"a\":1}", Some(Json)),
            ("  plain", None),
            ("<34>1 - - - - - -", Some(Rfc5424)),
            ("<34>Oct 11 22:14:15 h x: y", Some(Rfc3164)),
            ("<34>", Some(Rfc3164)),
            ("[Sun Dec 04 04:47:44 2005] [notice] x", Some(ApacheError)),
            ("[10.30 16:49:06] chrome.exe - x", Some(Proxifier)),
            ("- 1117838570 2005.06.03 R02 ...", Some(Bgl)),
            ("2016-09-28 04:30:30, Info  CBS  x", Some(WindowsCbs)),
            ("2015-10-18 18:01:47,978 INFO [main] x: y", Some(OpenStack)),
            ("20171223-22:15:29:606|a|1|m", Some(HealthApp)),
            ("17/06/09 20:10:40 INFO x: y", Some(Log4j)),
            ("03-17 16:13:38.811  1702  2395 D x: y", Some(Logcat)),
            ("081109 203615 148 INFO x: y", Some(Log4j)),
            ("134681 node-246 unix.hw s 1077804742 1 m", Some(Hpc)),
            (
                "127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] \"GET /\" 200 1",
                Some(Hpc),
            ),
            ("Jun 14 15:16:01 combo x", Some(Rfc3164)),
            (
                "nova-api.log 2017-05-16 00:00:00.008 1 INFO a [-] m",
                Some(OpenStack),
            ),
            ("KERNDTLB 1117838570 2005.06.03 R02 ...", Some(OpenStack)),
            ("level=info msg=x", Some(OpenStack)),
            (
                "::1 - - [10/Oct/2000:13:55:36 -0700] \"GET /\" 200 1",
                Some(AccessCommon),
            ),
            ("2026-12-05T01:14:51Z stdout F x", Some(Cri)),
            ("2026/12/05 04:09:25 [error] 1#1: x", Some(NginxError)),
            ("04:09:25.123 [main] INFO a - b", Some(Logback)),
            ("WARNING:root:x", Some(Python)),
            ("I1205 04:09:25.123456    1 main.go:42] x", Some(Klog)),
            ("Start-Date: 2025-06-24  14:36:25", Some(Apt)),
            ("", None),
            ("\u{1}\u{2}", None),
            ("\u{e9}t\u{e9}", None),
        ];
        for (line, want) in table {
            assert_eq!(
                candidates(line.as_bytes()).first().copied(),
                *want,
                "{line}"
            );
        }
        assert!(candidates(b"KERNDTLB 1117838570").contains(&Bgl));
        assert!(candidates(b"127.0.0.1 - - [").contains(&AccessCommon));
        assert!(candidates(b"level=info").contains(&Logfmt));
        assert!(candidates(b"2026-12-05  4:09:25 0 [Note] x").contains(&Mysql));
        assert!(candidates(b"2026-12-05 04:09:25,123 - a - INFO - x").contains(&Python));
        assert!(candidates(b"2026-12-05 01:20:54.024 UTC,\"postgres\"").contains(&PostgresqlCsv));
        assert!(candidates(b"2026/12/05 04:09:25 x").contains(&GoLog));
    }
}
