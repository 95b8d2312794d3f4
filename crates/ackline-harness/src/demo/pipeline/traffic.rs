//! Realistic log traffic for the demo: RFC 5424 and RFC 3164 syslog, JSON lines, logfmt,
//! Apache access and log4j lines from built-in templates, lines sampled from the loghub
//! collection when it is present, and malformed lines.
//!
//! Invariants:
//! - Generation is a pure function of the seed (and of the loghub files, when present).
//! - Every line's expected outcome ([`Kind`]) is decided by the real parser in strict mode
//!   (plus the demo's fault markers), not assumed from the template: the books compare the
//!   store and the dead-letter queue with what the parser itself says.
//! - No line contains a newline or a carriage return (one line, one message).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ackline_parse::{LineContext, Parser, ParserConfig};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use super::fault::{FLAKY_MARK, POISON_MARK};

/// What must become of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Parses: must be stored.
    Valid,
    /// Parses, but fails once (transiently) before it is stored.
    Flaky,
    /// Fails transiently on every attempt: must reach the dead-letter queue (max attempts).
    Poison,
    /// Does not parse: must be dead-lettered (strict mode).
    Malformed,
}

/// The files the demo writes, one per family.
pub const FILES: [&str; 7] = [
    "syslog-5424.log",
    "syslog-3164.log",
    "app-json.log",
    "app-logfmt.log",
    "access.log",
    "log4j.log",
    "apache-error.log",
];

/// One generated line.
#[derive(Debug, Clone)]
pub struct Line {
    /// Index into [`FILES`].
    pub file: usize,
    /// The bytes, without the newline.
    pub bytes: Vec<u8>,
    /// Its expected outcome.
    pub kind: Kind,
}

const HOSTS: [&str; 6] = ["web-1", "web-2", "db-1", "cache-1", "worker-3", "edge-7"];
const APPS: [&str; 6] = ["api", "auth", "billing", "nginx", "postgres", "scheduler"];
const LEVELS: [&str; 5] = ["debug", "info", "info", "warn", "error"];
const MESSAGES: [&str; 10] = [
    "request completed",
    "user login succeeded",
    "cache miss for key session",
    "connection reset by peer",
    "slow query detected",
    "retrying upstream call",
    "disk usage above threshold",
    "job finished",
    "certificate expires soon",
    "rate limit reached for client",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The loghub samples used when present: (file name, demo file index).
const LOGHUB: [(&str, usize); 4] = [
    ("Linux_2k.log", 1),
    ("OpenSSH_2k.log", 1),
    ("HDFS_2k.log", 5),
    ("Apache_2k.log", 6),
];

/// Where the loghub samples are: `ACKLINE_LOGHUB_DIR`, `../shared/data/loghub` or
/// `shared/data/loghub` from the working directory, or beside the repository this binary was
/// built in.
pub fn loghub_dir() -> Option<PathBuf> {
    let mut c: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("ACKLINE_LOGHUB_DIR") {
        c.push(d.into());
    }
    c.push("../shared/data/loghub".into());
    c.push("shared/data/loghub".into());
    if let Ok(exe) = std::env::current_exe()
        && let Some(repo) = exe.ancestors().nth(3)
    {
        c.push(repo.join("../shared/data/loghub"));
    }
    c.into_iter().find(|d| d.join(LOGHUB[0].0).is_file())
}

fn loghub_lines(dir: &Path) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, file) in LOGHUB {
        let Ok(bytes) = std::fs::read(dir.join(name)) else {
            continue;
        };
        for l in bytes.split(|&b| b == b'\n') {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            if !l.is_empty() && !l.contains(&b'\r') {
                out.push((file, l.to_vec()));
            }
        }
    }
    out
}

struct Clock {
    ms: i64,
}

impl Clock {
    fn next(&mut self, rng: &mut StdRng) -> chrono::DateTime<chrono::Utc> {
        self.ms += rng.random_range(1..40);
        chrono::DateTime::from_timestamp_millis(self.ms).unwrap_or_default()
    }
}

fn pick<'a>(rng: &mut StdRng, xs: &'a [&'a str]) -> &'a str {
    xs.choose(rng).copied().unwrap_or("x")
}

fn template(rng: &mut StdRng, clock: &mut Clock, mark: &str) -> (usize, String) {
    let t = clock.next(rng);
    let host = pick(rng, &HOSTS);
    let app = pick(rng, &APPS);
    let msg = format!("{}{mark}", pick(rng, &MESSAGES));
    let pid: u32 = rng.random_range(100..30000);
    let lvl = pick(rng, &LEVELS);
    let sev = match lvl {
        "debug" => 7,
        "info" => 6,
        "warn" => 4,
        _ => 3,
    };
    let file = rng.random_range(0..6);
    use chrono::{Datelike, Timelike};
    let line = match file {
        0 => format!(
            "<{}>1 {} {host} {app} {pid} - - {msg}",
            8 + sev,
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ),
        1 => format!(
            "<{}>{} {:>2} {:02}:{:02}:{:02} {host} {app}[{pid}]: {msg}",
            24 + sev,
            MONTHS[t.month0() as usize],
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        2 => format!(
            r#"{{"ts":"{}","level":"{lvl}","host":"{host}","service":"{app}","msg":"{msg}","request_id":"{:016x}"}}"#,
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            rng.random::<u64>()
        ),
        3 => format!(
            r#"ts={} level={lvl} host={host} app={app} msg="{msg}" duration_ms={}"#,
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            rng.random_range(1..900)
        ),
        4 => format!(
            r#"10.0.{}.{} - - [{:02}/{}/{}:{:02}:{:02}:{:02} +0000] "GET /api/v1/items/{}?q={} HTTP/1.1" {} {} "-" "curl/8.5.0""#,
            rng.random_range(0..255),
            rng.random_range(1..255),
            t.day(),
            MONTHS[t.month0() as usize],
            t.year(),
            t.hour(),
            t.minute(),
            t.second(),
            rng.random_range(1..10000),
            mark.trim(),
            [200, 200, 200, 201, 304, 404, 500]
                .choose(rng)
                .copied()
                .unwrap_or(200),
            rng.random_range(100..90000)
        ),
        _ => format!(
            "{} {} [{app}-pool-{}] com.example.{app}.Service: {msg}",
            t.format("%Y-%m-%d %H:%M:%S,%3f"),
            lvl.to_ascii_uppercase(),
            rng.random_range(1..9)
        ),
    };
    (file, line)
}

fn malformed(rng: &mut StdRng, clock: &mut Clock) -> (usize, Vec<u8>) {
    let t = clock.next(rng).to_rfc3339();
    match rng.random_range(0..4) {
        0 => (
            2,
            format!(r#"{{"ts":"{t}","level":"info","msg":"truncated by a crashed writer"#)
                .into_bytes(),
        ),
        1 => (0, b"<999>1 this is not syslog at all".to_vec()),
        2 => (3, b"%%%% corrupted ##### \x01\x02 ~~~".to_vec()),
        _ => {
            let mut v = b"\xff\xfe binary junk ".to_vec();
            v.extend((0..12).map(|_| rng.random_range(0x80u8..0xff)));
            (4, v)
        }
    }
}

/// Generates `n` lines with this generator.
pub fn generate(n: u64, rng: &mut StdRng, loghub: Option<&Path>) -> Vec<Line> {
    let strict = Parser::new(ParserConfig {
        strict: true,
        ..ParserConfig::default()
    });
    let ctx = LineContext::now("demo", Arc::from("demo"));
    let parses = |b: &[u8]| strict.parse(b, &ctx).is_ok();
    let samples: Vec<(usize, Vec<u8>)> = loghub
        .map(loghub_lines)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, l)| parses(l))
        .collect();
    let mut clock = Clock {
        ms: chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now()).timestamp_millis()
            - 3_600_000,
    };
    let mut out = Vec::with_capacity(n as usize);
    while (out.len() as u64) < n {
        let roll = rng.random_range(0..1000);
        let line = if roll < 20 {
            let (file, bytes) = malformed(rng, &mut clock);
            if parses(&bytes) {
                continue;
            }
            Line {
                file,
                bytes,
                kind: Kind::Malformed,
            }
        } else if roll < 30 || roll < 33 {
            let poison = roll >= 30;
            let mark = if poison { POISON_MARK } else { FLAKY_MARK };
            let mark = format!(" {}", String::from_utf8_lossy(mark));
            let (file, s) = template(rng, &mut clock, &mark);
            if !parses(s.as_bytes()) {
                continue;
            }
            Line {
                file,
                bytes: s.into_bytes(),
                kind: if poison { Kind::Poison } else { Kind::Flaky },
            }
        } else if roll < 250 && !samples.is_empty() {
            let (file, bytes) = samples[rng.random_range(0..samples.len())].clone();
            Line {
                file,
                bytes,
                kind: Kind::Valid,
            }
        } else {
            let (file, s) = template(rng, &mut clock, "");
            if !parses(s.as_bytes()) {
                continue;
            }
            Line {
                file,
                bytes: s.into_bytes(),
                kind: Kind::Valid,
            }
        };
        out.push(line);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn templates_parse_strictly_and_every_kind_appears() {
        let mut rng = StdRng::seed_from_u64(1);
        let strict = Parser::new(ParserConfig {
            strict: true,
            ..ParserConfig::default()
        });
        let ctx = LineContext::now("t", Arc::from("t"));
        let mut clock = Clock {
            ms: 1_700_000_000_000,
        };
        let mut rejected = Vec::new();
        for _ in 0..600 {
            let (_, s) = template(&mut rng, &mut clock, "");
            if strict.parse(s.as_bytes(), &ctx).is_err() {
                rejected.push(s);
            }
        }
        assert!(
            rejected.is_empty(),
            "templates the parser rejects: {rejected:#?}"
        );
        let lines = generate(3000, &mut rng, None);
        for k in [Kind::Valid, Kind::Flaky, Kind::Poison, Kind::Malformed] {
            assert!(lines.iter().any(|l| l.kind == k), "{k:?} missing");
        }
        assert!(
            lines
                .iter()
                .all(|l| !l.bytes.contains(&b'\n') && !l.bytes.contains(&b'\r'))
        );
    }
}
