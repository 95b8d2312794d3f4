//! Multi-line records: which lines continue the record before them.
//!
//! A stack trace, a PostgreSQL statement that spans lines, MariaDB's
//! `Version:` line after "ready for connections" are one event written as
//! several lines. An input with a [`Multiline`] rule other than `none`
//! joins such lines (with `\n`) into one record before publishing it; this
//! module only decides where records start, line by line.
//!
//! Rules:
//! - [`Multiline::None`]: every line is a record (the default).
//! - [`Multiline::Indented`]: a line that starts with a space or a tab
//!   continues the record before it (Java's `\tat ...`, Python's
//!   `  File ...`, PostgreSQL's tab-indented statement lines).
//! - [`Multiline::Auto`]: a line continues the record before it unless it
//!   starts one, i.e. unless auto-detection parses it as a named format or
//!   the generic extractor (a line that would be `raw` continues: `Caused
//!   by: ...`, `Traceback (most recent call last):`, `ValueError: x`,
//!   `Version: ...`, indented lines). A PostgreSQL continuation label
//!   (`DETAIL:`, `HINT:`, `STATEMENT:`, `CONTEXT:`, `QUERY:`, `LOCATION:`)
//!   from the same pid as the record's first line also continues it.
//!
//! Under any rule but `none`, a Kubernetes CRI line that follows a partial
//! (`P`) line of the same stream is spliced onto it without its own header
//! ([`Join::Splice`]), and a docker json-file line that follows a partial one
//! (a `log` without its final `\n`: docker splits lines longer than 16 KiB)
//! of the same stream has its `log` appended to the record's
//! ([`Join::DockerLog`]): the runtime's split line becomes one line again. The
//! pieces must be consecutive lines: a line of the other stream in between
//! ends the splice (the rest becomes a record of its own). [`Join::apply`]
//! is the one place a decision is applied to a record's bytes.
//!
//! Invariants: the first line an input hands over always starts a record
//! (inputs only ever stop at record starts); the decision depends only on
//! the line and the record's first line, so re-reading the same bytes after
//! a restart cuts the same records; nothing here panics.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::format::Format;
use crate::parser::{LineContext, Parser, ParserConfig};

/// How an input groups lines into records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Multiline {
    /// Every line is a record.
    #[default]
    None,
    /// Lines starting with a space or a tab continue the record before.
    Indented,
    /// Lines that do not start a record (see the module doc) continue it.
    Auto,
}

impl Multiline {
    /// `none`, `indented` or `auto`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Multiline::None => "none",
            Multiline::Indented => "indented",
            Multiline::Auto => "auto",
        }
    }
}

impl fmt::Display for Multiline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The string names no multi-line rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown multi-line rule {0:?} (expected none, indented or auto)")]
pub struct UnknownMultiline(pub String);

impl FromStr for Multiline {
    type Err = UnknownMultiline;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "off" => Ok(Multiline::None),
            "indented" => Ok(Multiline::Indented),
            "auto" => Ok(Multiline::Auto),
            _ => Err(UnknownMultiline(s.to_owned())),
        }
    }
}

/// How a line relates to the record before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    /// It starts a new record.
    Start,
    /// It continues the record: append `\n` and the line.
    Continue,
    /// It completes a partial line (Kubernetes CRI `P`): append the line
    /// from this byte offset on (its own CRI header dropped), no `\n`.
    Splice(usize),
    /// It completes a partial docker json-file line: its `log` is appended
    /// to the record's `log` (the record's other fields kept).
    DockerLog,
}

impl Join {
    /// Applies this decision to `record` (the bytes of the record so far)
    /// for `line`, unless that would make the record longer than `max`
    /// bytes or the decision is [`Join::Start`]: then nothing changes and it
    /// returns false (the line starts a record of its own).
    pub fn apply(self, record: &mut Vec<u8>, line: &[u8], max: usize) -> bool {
        match self {
            Join::Start => false,
            Join::Continue => {
                if record.len() + 1 + line.len() > max {
                    return false;
                }
                record.push(b'\n');
                record.extend_from_slice(line);
                true
            }
            Join::Splice(at) => {
                let rest = line.get(at..).unwrap_or_default();
                if record.len() + rest.len() > max {
                    return false;
                }
                record.extend_from_slice(rest);
                true
            }
            Join::DockerLog => match merge_docker_log(record, line) {
                Some(merged) if merged.len() <= max => {
                    *record = merged;
                    true
                }
                _ => false,
            },
        }
    }
}

/// A docker json-file line's `(stream, log)`, if `line` is one.
fn docker_line(line: &[u8]) -> Option<(String, String)> {
    if !line.starts_with(b"{\"log\":") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    let log = v.get("log")?.as_str()?.to_owned();
    let stream = v.get("stream")?.as_str()?.to_owned();
    Some((stream, log))
}

/// `record` (a docker json-file object) with `line`'s `log` appended to its
/// own; `None` if either is not one.
fn merge_docker_log(record: &[u8], line: &[u8]) -> Option<Vec<u8>> {
    let mut rec: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(record).ok()?;
    let (_, more) = docker_line(line)?;
    let log = rec.get_mut("log")?;
    let joined = format!("{}{more}", log.as_str()?);
    *log = serde_json::Value::String(joined);
    serde_json::to_vec(&rec).ok()
}

/// Decides, line by line, where records start under a [`Multiline`] rule.
#[derive(Debug, Clone)]
pub struct Joiner {
    rule: Multiline,
    parser: Parser,
    ctx: LineContext,
    /// The pid of the current record's first line (for PostgreSQL labels).
    pid: Option<u64>,
    /// The stream of a CRI partial (`P`) line the record ends with.
    cri_open: Option<[u8; 6]>,
    /// The stream of a partial docker json-file line the record ends with.
    docker_open: Option<String>,
}

impl Joiner {
    /// A joiner for `rule`.
    #[must_use]
    pub fn new(rule: Multiline) -> Self {
        Joiner {
            rule,
            parser: Parser::new(ParserConfig::default()),
            ctx: LineContext {
                id: String::new(),
                input: Arc::from("multiline"),
                ingest_time: DateTime::<Utc>::UNIX_EPOCH,
                file_mtime: None,
            },
            pid: None,
            cri_open: None,
            docker_open: None,
        }
    }

    /// The rule.
    #[must_use]
    pub fn rule(&self) -> Multiline {
        self.rule
    }

    /// Whether `line` (without its terminator) starts a new record. With
    /// `first`, it does by definition (the first line an input reads from
    /// a saved position); the call still records what a later line is
    /// compared with.
    pub fn starts_record(&mut self, line: &[u8], first: bool) -> bool {
        self.join(line, first) == Join::Start
    }

    /// How `line` joins the record before it (see [`Join`]). Under any rule
    /// but `none`, a Kubernetes CRI line continuing a partial (`P`) line of
    /// the same stream is spliced onto it, so the runtime's split line is
    /// one record again; otherwise as [`Joiner::starts_record`].
    pub fn join(&mut self, line: &[u8], first: bool) -> Join {
        if self.rule == Multiline::None {
            return Join::Start;
        }
        let cri = crate::formats::container::cri_header(line);
        let open = self.cri_open.take();
        if let Some((stream, partial, header)) = cri {
            if partial {
                let mut s = [0u8; 6];
                s.copy_from_slice(stream);
                self.cri_open = Some(s);
            }
            if !first && open.as_ref().is_some_and(|o| o.as_slice() == stream) {
                return Join::Splice(header);
            }
        }
        let docker_open = self.docker_open.take();
        if let Some((stream, log)) = docker_line(line) {
            let continues = !first && docker_open.as_deref() == Some(stream.as_str());
            if !log.ends_with('\n') {
                self.docker_open = Some(stream);
            }
            if continues {
                return Join::DockerLog;
            }
        }
        if self.starts(line, first) {
            Join::Start
        } else {
            Join::Continue
        }
    }

    fn starts(&mut self, line: &[u8], first: bool) -> bool {
        match self.rule {
            Multiline::None => true,
            Multiline::Indented => first || !matches!(line.first(), Some(b' ' | b'\t')),
            Multiline::Auto => {
                let indented = matches!(line.first(), Some(b' ' | b'\t'));
                let json = line
                    .iter()
                    .find(|&&b| b != b' ' && b != b'\t')
                    .is_some_and(|&b| b == b'{');
                if !first && indented && !json {
                    return false;
                }
                let Ok(rec) = self.parser.parse(line, &self.ctx) else {
                    return first;
                };
                if first {
                    self.pid = rec.pid;
                    return true;
                }
                if rec.format == Format::Raw {
                    return false;
                }
                let label = rec.fields.contains_key("label");
                if label && rec.pid.is_some() && rec.pid == self.pid {
                    return false;
                }
                self.pid = rec.pid;
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits `text` into records under `rule`.
    fn records(rule: Multiline, text: &str) -> Vec<String> {
        let mut j = Joiner::new(rule);
        let mut out: Vec<Vec<u8>> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let how = j.join(line.as_bytes(), i == 0);
            let joined = out
                .last_mut()
                .is_some_and(|last| how.apply(last, line.as_bytes(), usize::MAX));
            if !joined {
                out.push(line.as_bytes().to_vec());
            }
        }
        out.into_iter()
            .map(|r| String::from_utf8_lossy(&r).into_owned())
            .collect()
    }

    /// The runtime split a long line in three (`P`, `P`, `F`): one record
    /// again. Splicing needs the pieces to be consecutive: another stream's
    /// line in between ends it (the rest is then a record of its own).
    #[test]
    fn cri_partial_lines_are_reassembled() {
        let text = "2026-12-05T04:09:27.1Z stdout P {\"level\":\"info\",\"msg\":\"a very long
2026-12-05T04:09:27.3Z stdout P  line the runtime
2026-12-05T04:09:27.4Z stdout F  split\"}
2026-12-05T04:09:28Z stdout F next";
        for rule in [Multiline::Auto, Multiline::Indented] {
            let recs = records(rule, text);
            assert_eq!(recs.len(), 2, "{rule}: {recs:#?}");
            assert_eq!(
                recs[0],
                "2026-12-05T04:09:27.1Z stdout P {\"level\":\"info\",\"msg\":\"a very long line the runtime split\"}"
            );
            // The joined record parses as one CRI line whose inner line is JSON.
            let rec = Parser::default()
                .parse(recs[0].as_bytes(), &LineContext::now("x", Arc::from("x")))
                .unwrap();
            assert_eq!(rec.format, Format::Cri);
            assert_eq!(rec.fields["inner_format"], "json");
            assert_eq!(rec.message, "a very long line the runtime split");
        }
        assert_eq!(records(Multiline::None, text).len(), 4);
        let interleaved = "2026-12-05T04:09:27.1Z stdout P half
2026-12-05T04:09:27.2Z stderr F other stream
2026-12-05T04:09:27.3Z stdout F  rest";
        assert_eq!(records(Multiline::Auto, interleaved).len(), 3);
    }

    /// Docker's json-file splits a line longer than 16 KiB into entries
    /// whose `log` lacks the final `\n`: one record again, its `log` the
    /// whole line, parsed as the inner JSON line. Another stream's entry in
    /// between ends it; a `\n` inside the log is kept; under `none` nothing
    /// is joined.
    #[test]
    fn docker_partial_lines_are_reassembled() {
        let text = r#"{"log":"{\"level\":\"warn\",\"msg\":\"a very long ","stream":"stdout","time":"2026-12-05T04:09:27.1Z"}
{"log":"line docker ","stream":"stdout","time":"2026-12-05T04:09:27.2Z"}
{"log":"split\"}\n","stream":"stdout","time":"2026-12-05T04:09:27.3Z"}
{"log":"next\n","stream":"stdout","time":"2026-12-05T04:09:28Z"}"#;
        for rule in [Multiline::Auto, Multiline::Indented] {
            let recs = records(rule, text);
            assert_eq!(recs.len(), 2, "{rule}: {recs:#?}");
            let p = Parser::new(ParserConfig::default());
            let ctx = LineContext {
                id: "x".into(),
                input: Arc::from("t"),
                ingest_time: DateTime::<Utc>::UNIX_EPOCH,
                file_mtime: None,
            };
            let rec = p.parse(recs[0].as_bytes(), &ctx).unwrap();
            assert_eq!(rec.format, Format::DockerJson);
            assert_eq!(rec.fields["inner_format"], "json");
            assert_eq!(rec.message, "a very long line docker split");
        }
        assert_eq!(records(Multiline::None, text).len(), 4);
        let interleaved = r#"{"log":"half","stream":"stdout","time":"2026-12-05T04:09:27.1Z"}
{"log":"other\n","stream":"stderr","time":"2026-12-05T04:09:27.2Z"}
{"log":"rest\n","stream":"stdout","time":"2026-12-05T04:09:27.3Z"}"#;
        assert_eq!(records(Multiline::Auto, interleaved).len(), 3);
    }

    const JAVA: &str = "2026-12-05 04:09:25,123 ERROR [main] c.e.App: boom
java.lang.IllegalStateException: bad state
\tat com.example.App.run(App.java:42)
\tat com.example.App.main(App.java:7)
Caused by: java.io.IOException: disk full
\t... 2 more
2026-12-05 04:09:26,000 INFO [main] c.e.App: next";

    const PYTHON: &str = "2026-12-05 04:09:25,123 - app - ERROR - failed
Traceback (most recent call last):
  File \"app.py\", line 3, in <module>
    1/0
ZeroDivisionError: division by zero
2026-12-05 04:09:25,124 - app - INFO - next";

    const POSTGRES: &str = "2026-12-05 04:26:33.056 UTC [14608] ERROR:  division by zero
2026-12-05 04:26:33.056 UTC [14608] STATEMENT:  select 'multi
\tline', 1/0;
2026-12-05 04:26:33.057 UTC [99] STATEMENT:  from another backend
2026-12-05 04:26:33.224 UTC [14588] LOG:  received fast shutdown request";

    #[test]
    fn auto_joins_traces_and_postgresql_continuations() {
        let java = records(Multiline::Auto, JAVA);
        assert_eq!(java.len(), 2, "{java:#?}");
        assert!(java[0].ends_with("\t... 2 more"));
        let py = records(Multiline::Auto, PYTHON);
        assert_eq!(py.len(), 2, "{py:#?}");
        assert!(py[0].ends_with("ZeroDivisionError: division by zero"));
        let pg = records(Multiline::Auto, POSTGRES);
        assert_eq!(pg.len(), 3, "{pg:#?}");
        assert!(pg[0].contains("STATEMENT:  select 'multi\n\tline', 1/0;"));
        assert!(
            pg[1].contains("[99] STATEMENT"),
            "another pid's label is its own record"
        );
        let maria = records(
            Multiline::Auto,
            "2026-12-05  4:38:41 0 [Note] mariadbd: ready for connections.\nVersion: '10.11.19-MariaDB'  socket: '/tmp/s'\n2026-12-05  4:38:42 3 [Warning] Access denied",
        );
        assert_eq!(maria.len(), 2, "{maria:#?}");
    }

    /// A csvlog record whose query holds a newline, cut in two by the line
    /// split: `auto` joins it back, and the joined record parses.
    #[test]
    fn auto_joins_a_split_csvlog_record() {
        let text = "2026-12-05 04:26:33.215 UTC,\"postgres\",\"postgres\",14626,\"[local]\",6b139279.3922,1,\"SELECT\",2026-12-05 04:26:33 UTC,3/7,0,ERROR,22012,\"division by zero\",,,,,,\"select 'multi
line' as x, 1/0;\",,,\"psql\",\"client backend\",,0
2026-12-05 04:26:33.224 UTC,,,14588,,6b139278.38fc,4,,2026-12-05 04:26:32 UTC,,0,LOG,00000,\"received fast shutdown request\",,,,,,,,,\"\",\"postmaster\",,0";
        let recs = records(Multiline::Auto, text);
        assert_eq!(recs.len(), 2, "{recs:#?}");
        let rec = Parser::default()
            .parse(recs[0].as_bytes(), &LineContext::now("x", Arc::from("x")))
            .unwrap();
        assert_eq!(rec.format, Format::PostgresqlCsv);
        assert_eq!(rec.fields["query"], "select 'multi\nline' as x, 1/0;");
        assert_eq!(rec.pid, Some(14626));
    }

    #[test]
    fn indented_and_none() {
        let java = records(Multiline::Indented, JAVA);
        // `java.lang...` and `Caused by:` are not indented: records of their own.
        assert_eq!(java.len(), 4, "{java:#?}");
        assert_eq!(records(Multiline::None, JAVA).len(), 7);
        // The first line starts a record even when indented.
        assert_eq!(
            records(Multiline::Indented, "\tx\n\ty\nz"),
            vec!["\tx\n\ty", "z"]
        );
        assert_eq!(records(Multiline::Auto, "\tx\n\ty\nz"), vec!["\tx\n\ty\nz"]);
    }

    #[test]
    fn names() {
        for m in [Multiline::None, Multiline::Indented, Multiline::Auto] {
            assert_eq!(m.name().parse::<Multiline>().unwrap(), m);
        }
        assert!("lines".parse::<Multiline>().is_err());
    }
}
