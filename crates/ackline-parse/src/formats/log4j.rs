//! log4j-style application logs (the HDFS, Hadoop, Spark and Zookeeper
//! families of loghub, and the generic `DATE TIME LEVEL logger: message`).
//!
//! Timestamp layouts:
//! - `YYYY-MM-DD hh:mm:ss[,mmm|.mmm][offset]` (log4j ISO8601, also with `T`);
//! - `YY/MM/DD hh:mm:ss` (Spark; year 20YY);
//! - `YYMMDD hhmmss` (HDFS; year 20YY).
//!
//! After the timestamp, in this order, all optional except LEVEL:
//! `- ` (Zookeeper), `PID ` (HDFS), `[thread] ` (TTCC), `LEVEL`,
//! `PID --- ` (Spring Boot), `[thread]` or Zookeeper's
//! `[thread:Logger@line]`, then `- message`, or `logger: message`,
//! `logger - message`, `logger : message`, or just the message.
//!
//! Invariants: LEVEL must be a known level word (so arbitrary
//! date-prefixed text is not claimed); brackets are matched with nesting
//! (`[QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:...]`) over a bounded
//! distance; without an offset in the line the configured one applies.
//!
//! Fields: `thread`, `line` (Zookeeper).

use super::{Env, Parts, at};
use crate::error::ErrorKind;
use crate::scan::{Cursor, PResult, text};
use crate::severity::Severity;
use crate::timestamp::{Civil, Stamp, TimeEnv, hms};

/// Longest bracketed thread/logger group looked at.
const MAX_BRACKET: usize = 512;

pub(crate) fn parse(body: &[u8], env: &Env) -> PResult<Parts> {
    let mut cur = Cursor::new(body);
    let stamp = timestamp(&mut cur, &env.time)?;
    let mut parts = Parts {
        timestamp: Some(stamp),
        ..Parts::default()
    };
    if cur.skip_spaces() == 0 {
        return Err(cur.expected("SP after timestamp"));
    }
    if cur.eat_slice(b"- ") {
        cur.skip_spaces();
    }
    if let Some(pid) = number_then_space(&mut cur) {
        parts.pid = Some(pid);
    }
    if cur.peek() == Some(b'[') {
        let thread = bracket(&mut cur)?;
        parts.put("thread", thread);
        cur.skip_spaces();
    }
    let level_pos = cur.pos();
    let level = cur.token();
    parts.severity =
        Some(Severity::from_text(level).ok_or((level_pos, ErrorKind::Expected("log level")))?);
    cur.skip_spaces();
    if let Some(pid) = number_then_space(&mut cur) {
        parts.pid = Some(pid);
        if cur.eat_slice(b"---") {
            cur.skip_spaces();
        }
    }
    if cur.peek() == Some(b'[') {
        let inner = bracket(&mut cur)?;
        zookeeper_group(inner, &mut parts);
        cur.skip_spaces();
    }
    if cur.eat_slice(b"- ") {
        parts.message = text(cur.rest());
        return Ok(parts);
    }
    let start = cur.pos();
    let logger = cur.token();
    if let Some(name) = logger.strip_suffix(b":").filter(|n| !n.is_empty()) {
        parts.app = Some(text(name));
        cur.eat(b' ');
    } else if !logger.is_empty() && (cur.eat_slice(b" - ") || cur.eat_slice(b" : ")) {
        parts.app = Some(text(logger));
    } else {
        cur = Cursor::new(body);
        cur.advance(start);
    }
    parts.message = text(cur.rest());
    Ok(parts)
}

/// Digits followed by a space (consumed), else nothing consumed.
fn number_then_space(cur: &mut Cursor<'_>) -> Option<u64> {
    let digits = cur
        .rest()
        .iter()
        .take(20)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || cur.peek_at(digits) != Some(b' ') {
        return None;
    }
    let mut probe = cur.clone();
    let n = probe.digits_between(digits, 19, "number").ok()?;
    probe.skip_spaces();
    *cur = probe;
    Some(n)
}

/// `[...]` with nested brackets; returns the inside.
fn bracket<'a>(cur: &mut Cursor<'a>) -> PResult<&'a [u8]> {
    let start = cur.pos();
    cur.expect(b'[', "'['")?;
    let rest = cur.rest();
    let mut depth = 1usize;
    for (i, &b) in rest.iter().enumerate().take(MAX_BRACKET) {
        match b {
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth == 0 {
                    cur.advance(i + 1);
                    return Ok(rest.get(..i).unwrap_or_default());
                }
            }
            _ => {}
        }
    }
    Err((start, ErrorKind::Expected("matching ']'")))
}

/// `thread:Logger@line` (Zookeeper) or a plain thread name.
fn zookeeper_group(inner: &[u8], parts: &mut Parts) {
    if let Some(colon) = memchr::memrchr(b':', inner) {
        let tail = inner.get(colon + 1..).unwrap_or_default();
        if let Some(at) = memchr::memrchr(b'@', tail) {
            let logger = tail.get(..at).unwrap_or_default();
            let line = tail.get(at + 1..).and_then(crate::scan::parse_u64);
            if let (false, Some(line)) = (logger.is_empty(), line) {
                parts.put("thread", inner.get(..colon).unwrap_or_default());
                parts.app = Some(text(logger));
                parts.put_u64("line", line);
                return;
            }
        }
    }
    parts.put("thread", inner);
}

fn timestamp(cur: &mut Cursor<'_>, env: &TimeEnv) -> PResult<Stamp> {
    let head = cur.rest();
    let sep = |i: usize| head.get(i).copied();
    if sep(4) == Some(b'-') {
        return crate::timestamp::rfc3339(cur, true, env);
    }
    let (year, month, day) = if sep(2) == Some(b'/') {
        let y = cur.digits(2, "year")?;
        cur.expect(b'/', "'/' after year")?;
        let m = cur.digits(2, "month")?;
        cur.expect(b'/', "'/' after month")?;
        let d = cur.digits(2, "day")?;
        cur.expect_space("SP after date")?;
        (y, m, d)
    } else {
        let y = cur.digits(2, "year (YYMMDD)")?;
        let m = cur.digits(2, "month (YYMMDD)")?;
        let d = cur.digits(2, "day (YYMMDD)")?;
        cur.expect_space("SP after date")?;
        let h = cur.digits(2, "hour (hhmmss)")?;
        let mi = cur.digits(2, "minute (hhmmss)")?;
        let s = cur.digits(2, "second (hhmmss)")?;
        return civil(2000 + y, m, d, h, mi, s).assumed(env).map_err(at(0));
    };
    let (h, mi, s) = hms(cur)?;
    civil(2000 + year, month, day, h, mi, s)
        .assumed(env)
        .map_err(at(0))
}

fn civil(year: u32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> Civil {
    Civil {
        year: i32::try_from(year).unwrap_or(0),
        month,
        day,
        hour,
        minute,
        second,
        nanos: 0,
    }
}

#[cfg(test)]
mod tests {
    use crate::error::ErrorKind;
    use crate::format::Format::Log4j;
    use crate::formats::testutil::{field, ok, parse, ts};
    use crate::severity::Severity;

    #[test]
    fn families() {
        // HDFS
        let p = ok(
            Log4j,
            "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38865049064139660 terminating",
        );
        assert_eq!(ts(&p), "2008-11-09T20:36:15+00:00");
        assert_eq!(p.pid, Some(148));
        assert_eq!(p.severity, Some(Severity::Info));
        assert_eq!(p.app.as_deref(), Some("dfs.DataNode$PacketResponder"));
        assert_eq!(
            p.message,
            "PacketResponder 1 for block blk_38865049064139660 terminating"
        );
        // Hadoop
        let p = ok(
            Log4j,
            "2015-10-18 18:01:47,978 INFO [main] org.apache.hadoop.mapreduce.v2.app.MRAppMaster: Created MRAppMaster",
        );
        assert_eq!(ts(&p), "2015-10-18T18:01:47.978+00:00");
        assert_eq!(field(&p, "thread"), "main");
        assert_eq!(
            p.app.as_deref(),
            Some("org.apache.hadoop.mapreduce.v2.app.MRAppMaster")
        );
        assert_eq!(p.message, "Created MRAppMaster");
        // Spark
        let p = ok(
            Log4j,
            "17/06/09 20:10:40 INFO executor.CoarseGrainedExecutorBackend: Registered signal handlers for [TERM, HUP, INT]",
        );
        assert_eq!(ts(&p), "2017-06-09T20:10:40+00:00");
        assert_eq!(
            p.app.as_deref(),
            Some("executor.CoarseGrainedExecutorBackend")
        );
        assert_eq!(p.message, "Registered signal handlers for [TERM, HUP, INT]");
        // Zookeeper
        let p = ok(
            Log4j,
            "2015-07-29 17:41:44,747 - INFO  [QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:FastLeaderElection@774] - Notification time out: 3200",
        );
        assert_eq!(
            field(&p, "thread"),
            "QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181"
        );
        assert_eq!(p.app.as_deref(), Some("FastLeaderElection"));
        assert_eq!(field(&p, "line"), "774");
        assert_eq!(p.message, "Notification time out: 3200");
    }

    #[test]
    fn edge_table() {
        // TTCC: thread before level, logger then " - ".
        let p = ok(
            Log4j,
            "2024-01-02 03:04:05,006 [main] WARN com.example.App - disk low",
        );
        assert_eq!(field(&p, "thread"), "main");
        assert_eq!(p.severity, Some(Severity::Warning));
        assert_eq!(p.app.as_deref(), Some("com.example.App"));
        assert_eq!(p.message, "disk low");
        // Spring Boot with offset.
        let p = ok(
            Log4j,
            "2024-01-02T03:04:05.006+01:00 ERROR 4242 --- [nio-8080-exec-1] c.e.Controller : failed",
        );
        assert_eq!(ts(&p), "2024-01-02T03:04:05.006+01:00");
        assert_eq!(p.pid, Some(4242));
        assert_eq!(field(&p, "thread"), "nio-8080-exec-1");
        assert_eq!(p.app.as_deref(), Some("c.e.Controller"));
        assert_eq!(p.message, "failed");
        // No logger: everything after the level is the message.
        let p = ok(Log4j, "2024-01-02 03:04:05 FATAL something broke");
        assert_eq!(p.severity, Some(Severity::Critical));
        assert_eq!(p.app, None);
        assert_eq!(p.message, "something broke");
        // Plain bracket after level is a thread, not Zookeeper.
        let p = ok(Log4j, "2024-01-02 03:04:05 INFO [pool-1] x.Y: z");
        assert_eq!(field(&p, "thread"), "pool-1");
        assert_eq!(p.app.as_deref(), Some("x.Y"));

        let bad: &[(&str, ErrorKind)] = &[
            (
                "2024-01-02 03:04:05 LOUD x: y",
                ErrorKind::Expected("log level"),
            ),
            (
                "2024-01-02 03:04:05,1 INFO [unclosed x: y",
                ErrorKind::Expected("matching ']'"),
            ),
            (
                "081309 203615 148 INFO x: y",
                ErrorKind::TimestampOutOfRange,
            ),
            (
                "2024-01-02 03:04:05INFO x",
                ErrorKind::Expected("SP after timestamp"),
            ),
        ];
        for (line, kind) in bad {
            assert_eq!(&parse(Log4j, line).unwrap_err().1, kind, "{line}");
        }
    }
}
