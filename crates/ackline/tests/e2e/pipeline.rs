//! The pipeline end to end, with real processes: `ackline run` killed with SIGKILL while it
//! works and restarted, then drained with `--once`; graceful stop on SIGTERM; `check`,
//! `query`, `dlq replay` into a lenient run; and the demo's books.
//!
//! Replay a kill test with its printed seed: `ACKLINE_PIPELINE_SEED=<seed> cargo test -p
//! ackline --test e2e pipeline::`.

#![allow(clippy::unwrap_used)] // tests: a panic is a failed assertion

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::{ackline, json, run_with_deadline};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const LIMIT: Duration = Duration::from_secs(120);

fn run(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .arg("--data-dir")
        .arg(dir)
        .args(args);
    run_with_deadline(c, LIMIT)
}

fn ok(o: &std::process::Output) {
    assert_eq!(
        o.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn seed() -> u64 {
    std::env::var("ACKLINE_PIPELINE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// Polls `cond` every 10 ms until it holds or `limit` passes.
fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// (id -> valid?) for every line appended to `path`.
type Expected = HashMap<String, bool>;

fn line(i: u64, valid: bool) -> String {
    if valid {
        format!(
            r#"{{"ts":"2024-05-01T10:{:02}:{:02}.{:03}Z","level":"{}","host":"h{}","service":"svc","msg":"line {i}"}}"#,
            (i / 60) % 60,
            i % 60,
            i % 1000,
            ["info", "warn", "error"][(i % 3) as usize],
            i % 4
        )
    } else {
        format!("garbage %%% line {i}")
    }
}

/// Appends `n` lines in seeded chunks until done or `stop`; returns what it wrote.
fn append(path: PathBuf, n: u64, seed: u64, stop: Arc<AtomicBool>) -> Expected {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    let md = f.metadata().unwrap();
    let mut offset = md.len();
    // The file's fingerprint (its first line's) is part of every id.
    let mut fp = (offset > 0)
        .then(|| ackline_input::Fingerprint::of_head(&std::fs::read(&path).unwrap()).unwrap());
    let mut rng = StdRng::seed_from_u64(seed);
    let mut expected = Expected::new();
    let mut i = 0;
    while i < n && !stop.load(Ordering::SeqCst) {
        let chunk = rng.random_range(1..60);
        let mut buf = String::new();
        for _ in 0..chunk.min(n - i) {
            let valid = !rng.random_ratio(1, 20);
            let l = line(i, valid);
            let fp = *fp.get_or_insert_with(|| {
                ackline_input::Fingerprint::of_head(format!("{l}\n").as_bytes()).unwrap()
            });
            expected.insert(
                ackline_input::file_message_id(md.dev(), md.ino(), fp, 0, offset),
                valid,
            );
            offset += l.len() as u64 + 1;
            buf += &l;
            buf.push('\n');
            i += 1;
        }
        f.write_all(buf.as_bytes()).unwrap();
        // Pacing of the traffic, not synchronisation.
        std::thread::sleep(Duration::from_millis(rng.random_range(5..40)));
    }
    expected
}

fn spawn_follow(dir: &Path, mode: &str, log: &Path) -> Child {
    let mut c = ackline();
    c.env_remove("ACKLINE_CONFIG")
        .arg("--data-dir")
        .arg(dir)
        .args([
            "run",
            mode,
            "--poll-interval",
            "20ms",
            "--batch-size",
            "50",
            "--prefetch",
            "100",
            "--lease",
            "2s",
        ])
        .arg(log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn stored_ids(dir: &Path) -> (u64, BTreeSet<String>, HashMap<String, String>) {
    let conn = rusqlite::Connection::open(dir.join("records.db")).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM ackline_records", [], |r| r.get(0))
        .unwrap();
    let mut st = conn
        .prepare("SELECT id, format FROM ackline_records")
        .unwrap();
    let pairs: Vec<(String, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let ids = pairs.iter().map(|(i, _)| i.clone()).collect();
    (rows as u64, ids, pairs.into_iter().collect())
}

/// The ids in the dead-letter queue; each must be there once (issue 10 item 8: a crash between
/// a confirmed publish and the input's position commit republished lines, and the queue
/// dead-lettered them again).
fn dead_ids(dir: &Path) -> BTreeSet<String> {
    let v = json(&run(dir, &["--json", "dlq", "list", "--limit", "100000"]));
    let all: Vec<String> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let unique: BTreeSet<String> = all.iter().cloned().collect();
    assert_eq!(
        all.len(),
        unique.len(),
        "ids dead-lettered more than once: {:?}",
        all.iter()
            .filter(|i| all.iter().filter(|j| j == i).count() > 1)
            .collect::<BTreeSet<_>>()
    );
    unique
}

fn kill9_rounds(strict: bool) {
    let seed = seed();
    println!("pipeline kill test seed {seed} (replay with ACKLINE_PIPELINE_SEED={seed})");
    let mode = if strict { "--strict" } else { "--lenient" };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let log = tmp.path().join("app.log");
    std::fs::write(&log, "").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (log, stop) = (log.clone(), stop.clone());
        std::thread::spawn(move || append(log, 4000, seed, stop))
    };
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut kills = Vec::new();
    let status = dir.join("run-status.json");
    for _ in 0..6 {
        let _ = std::fs::remove_file(&status);
        let mut child = spawn_follow(&dir, mode, &log);
        // Kill only once the run works: it has opened the queue and written its status.
        wait_for(Duration::from_secs(30), "the run to start", || {
            std::fs::read(&status)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .is_some_and(|v| v["running"] == true)
        });
        let after = rng.random_range(0..400);
        kills.push(after);
        let deadline = Instant::now() + Duration::from_millis(after);
        while Instant::now() < deadline {
            assert!(child.try_wait().unwrap().is_none(), "run exited by itself");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    println!("kill moments (ms after the run started): {kills:?}");
    stop.store(true, Ordering::SeqCst);
    let expected = writer.join().unwrap();
    let o = run(
        &dir,
        &["--json", "run", mode, "--once", log.to_str().unwrap()],
    );
    ok(&o);
    assert_eq!(json(&o)["pending"], 0);

    let (rows, ids, formats) = stored_ids(&dir);
    let dead = dead_ids(&dir);
    let valid: BTreeSet<String> = expected
        .iter()
        .filter(|(_, v)| **v)
        .map(|(k, _)| k.clone())
        .collect();
    let malformed: BTreeSet<String> = expected
        .iter()
        .filter(|(_, v)| !**v)
        .map(|(k, _)| k.clone())
        .collect();
    let ctx = format!("seed {seed}, kills {kills:?}");
    assert!(
        expected.len() > 100,
        "{ctx}: only {} lines written",
        expected.len()
    );
    assert_eq!(rows, ids.len() as u64, "duplicate rows: {ctx}");
    if strict {
        assert_eq!(ids, valid, "stored != valid lines: {ctx}");
        assert_eq!(dead, malformed, "dead letters != malformed lines: {ctx}");
    } else {
        let all: BTreeSet<String> = expected.keys().cloned().collect();
        assert_eq!(ids, all, "stored != every line: {ctx}");
        assert!(dead.is_empty(), "{ctx}");
        for id in &malformed {
            assert_eq!(formats[id], "raw", "{ctx}");
        }
    }
}

#[test]
fn kill9_while_following_then_drain_strict() {
    kill9_rounds(true);
}

#[test]
fn kill9_while_following_then_drain_lenient() {
    kill9_rounds(false);
}

#[test]
fn sigterm_stops_gracefully_with_exit_0() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let log = tmp.path().join("a.log");
    let text: String = (0..500).map(|i| line(i, true) + "\n").collect();
    std::fs::write(&log, text).unwrap();
    let mut child = spawn_follow(&dir, "--strict", &log);
    let status = dir.join("run-status.json");
    wait_for(Duration::from_secs(60), "500 records stored", || {
        std::fs::read(&status)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| v["stored"].as_u64() == Some(500))
    });
    let st = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&status).unwrap()).unwrap();
    assert_eq!(v["stopped_by_signal"], true);
    assert_eq!(v["running"], false);
    // Positions were committed: a second run reads nothing again.
    let o = run(&dir, &["--json", "run", "--once", log.to_str().unwrap()]);
    ok(&o);
    assert_eq!(json(&o)["lines_read"], 0);
}

fn documented_example() -> String {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.md"))
            .unwrap();
    let start = doc.find("```toml\n").unwrap() + "```toml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    doc[start..end].to_string()
}

fn one_line_exit_2(o: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    err
}

#[test]
fn check_accepts_the_documented_example_and_names_bad_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("ackline.toml");
    std::fs::write(&f, documented_example()).unwrap();
    let o = run(
        tmp.path(),
        &["--json", "--config", f.to_str().unwrap(), "check"],
    );
    ok(&o);
    let v = json(&o);
    assert_eq!(v["ok"], true);
    assert_eq!(v["workers"], 2);
    assert_eq!(v["queue"], "logs");

    // A bad value in the file: key, file:line:column, what is expected.
    let bad = documented_example().replace("base = \"500ms\"", "base = \"fast\"");
    std::fs::write(&f, &bad).unwrap();
    let line = bad.lines().position(|l| l.starts_with("base =")).unwrap() + 1;
    let err = one_line_exit_2(&run(
        tmp.path(),
        &["--config", f.to_str().unwrap(), "check"],
    ));
    assert!(err.contains("retry.base"), "{err}");
    assert!(err.contains(&format!("ackline.toml:{line}:8")), "{err}");
    assert!(err.contains("expected a duration"), "{err}");

    // The default file in the data directory is read when present.
    let err = one_line_exit_2(&run(tmp.path(), &["check"]));
    assert!(err.contains("retry.base"), "{err}");

    // An environment variable.
    std::fs::remove_file(&f).unwrap();
    let mut c = ackline();
    c.env("ACKLINE_WORKER_WORKERS", "zero")
        .arg("--data-dir")
        .arg(tmp.path())
        .arg("check");
    let err = one_line_exit_2(&run_with_deadline(c, LIMIT));
    assert!(
        err.contains("worker.workers") && err.contains("ACKLINE_WORKER_WORKERS"),
        "{err}"
    );

    // Flags: a bad value, a bad store URL, an unknown flag.
    let err = one_line_exit_2(&run(tmp.path(), &["check", "--max-attempts", "0"]));
    assert!(err.contains("--max-attempts"), "{err}");
    let err = one_line_exit_2(&run(tmp.path(), &["check", "--store", "mysql://x"]));
    assert!(
        err.contains("store.url") && err.contains("expected sqlite:"),
        "{err}"
    );
    one_line_exit_2(&run(tmp.path(), &["check", "--wrokers", "2"]));
    // A typo in the file.
    std::fs::write(&f, "[worker]\nwrokers = 2\n").unwrap();
    let err = one_line_exit_2(&run(tmp.path(), &["check"]));
    assert!(
        err.contains("unknown key worker.wrokers") && err.contains(":2:1"),
        "{err}"
    );
}

#[test]
fn query_filters_and_replayed_dead_letters_are_stored_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let log = tmp.path().join("a.log");
    let mut text = String::new();
    for i in 0..120u64 {
        text += &line(i, i % 10 != 9);
        text.push('\n');
    }
    std::fs::write(&log, text).unwrap();
    let p = log.to_str().unwrap();
    ok(&run(&dir, &["run", "--once", "--strict", p]));

    let q = |args: &[&str]| -> Vec<serde_json::Value> {
        let mut a = vec!["--json", "query"];
        if !args.contains(&"--limit") {
            a.extend(["--limit", "1000"]);
        }
        a.extend_from_slice(args);
        let v = json(&run(&dir, &a));
        let rs = v["records"].as_array().unwrap().clone();
        assert_eq!(v["count"].as_u64(), Some(rs.len() as u64));
        rs
    };
    let valid: Vec<u64> = (0..120).filter(|i| i % 10 != 9).collect();
    assert_eq!(q(&[]).len(), valid.len());
    let errors = valid.iter().filter(|i| *i % 3 == 2).count();
    let warn_or_worse = valid.iter().filter(|i| *i % 3 != 0).count();
    assert_eq!(q(&["--severity", "error"]).len(), errors);
    assert_eq!(q(&["--severity", "warning"]).len(), warn_or_worse);
    assert_eq!(
        q(&["--host", "h1"]).len(),
        valid.iter().filter(|i| *i % 4 == 1).count()
    );
    assert_eq!(q(&["--app", "svc"]).len(), valid.len());
    assert_eq!(q(&["--app", "other"]).len(), 0);
    let hit = q(&["--text", "line 17"]);
    assert_eq!(hit.len(), 1);
    assert_eq!(hit[0]["message"], "line 17");
    // Lines 0..59 are in minute 10:00, 60..119 in 10:01.
    let first_minute = valid.iter().filter(|i| **i < 60).count();
    assert_eq!(q(&["--until", "2024-05-01T10:01:00Z"]).len(), first_minute);
    assert_eq!(
        q(&["--since", "2024-05-01T10:01:00Z"]).len(),
        valid.len() - first_minute
    );
    assert_eq!(q(&["--limit", "5"]).len(), 5);
    let o = run(&dir, &["query", "--limit", "3"]);
    ok(&o);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.starts_with("TIME") && table.contains("3 record(s)"),
        "{table}"
    );
    one_line_exit_2(&run(&dir, &["query", "--since", "yesterday"]));
    one_line_exit_2(&run(&dir, &["query", "--severity", "loud"]));

    // The malformed lines are dead letters; replayed into a lenient run they are stored
    // raw, once, even when replayed twice.
    let dead = dead_ids(&dir);
    assert_eq!(dead.len(), 12);
    let r = json(&run(&dir, &["--json", "dlq", "replay", "--all"]));
    assert_eq!(r["count"], 12);
    ok(&run(&dir, &["run", "--once", "--lenient"]));
    let (rows, ids, formats) = stored_ids(&dir);
    assert_eq!(rows, 120);
    assert_eq!(ids.len(), 120);
    for id in &dead {
        assert_eq!(formats[id], "raw");
    }
    assert!(dead_ids(&dir).is_empty());
    // The same line published again (a re-read after a lost position) is not stored twice.
    std::fs::remove_file(dir.join("inputs/positions.json")).unwrap();
    ok(&run(&dir, &["run", "--once", "--lenient", p]));
    let (rows, _, _) = stored_ids(&dir);
    assert_eq!(rows, 120);
    let s = json(&run(&dir, &["--json", "stats"]));
    assert_eq!(s["records"], 120);
    assert_eq!(s["queue"]["pending"], 0);
}

#[test]
fn the_demo_balances_its_books() {
    let tmp = tempfile::tempdir().unwrap();
    let o = run(
        tmp.path(),
        &[
            "--json",
            "demo",
            "--lines",
            "4000",
            "--crashes",
            "2",
            "--max-kill-ms",
            "800",
            "--outage-ms",
            "600",
            "--seed",
            "7",
        ],
    );
    ok(&o);
    let v = json(&o);
    let b = &v["books"];
    assert_eq!(b["balanced"], true, "{b:#}");
    assert_eq!(b["lost"], 0);
    assert_eq!(b["duplicates_in_store"], 0);
    assert_eq!(b["malformed_stored"], 0);
    assert_eq!(b["pending_at_end"], 0);
    assert_eq!(b["published"], 4000);
    let stored = b["stored"].as_u64().unwrap();
    let dead = b["dead_lettered"].as_u64().unwrap();
    assert!(stored + dead >= 4000, "{b:#}");
    let reasons = &b["dead_lettered_by_reason"];
    assert_eq!(reasons["parse error (strict)"], b["malformed"], "{b:#}");
    assert_eq!(
        reasons[ackline_broker::REASON_MAX_ATTEMPTS],
        b["poison"],
        "{b:#}"
    );
    assert!(b["store_outages"].as_u64().unwrap() >= 1, "{b:#}");
    assert!(b["retried"].as_u64().unwrap() > 0, "{b:#}");
    assert_eq!(v["runs"].as_array().unwrap().len(), 3);
}

/// Issue 15 end to end: a 2005 archive (mtime 2006-01-02) read with `--year mtime`,
/// `--timezone Europe/Berlin` and `--multiline auto` stores syslog lines in 2005 and 2006 (not
/// the years before today), in Berlin time, and a Java stack trace as one record whose id is
/// its first line's.
#[test]
fn archive_year_zone_and_multiline_records() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let log = tmp.path().join("archive.log");
    std::fs::write(
        &log,
        "Dec 31 23:59:58 combo sshd[1]: last of 2005\n\
         2005-12-31 23:59:59,000 ERROR [main] c.e.App: boom\n\
         java.lang.IllegalStateException: bad state\n\
         \tat com.example.App.run(App.java:42)\n\
         Jan  1 00:00:02 combo sshd[1]: first of 2006\n",
    )
    .unwrap();
    // 2006-01-02T03:04:05Z, as an archive copied with its times would have.
    std::fs::File::options()
        .write(true)
        .open(&log)
        .and_then(|f| f.set_modified(UNIX_EPOCH + Duration::from_secs(1_136_171_045)))
        .unwrap();
    let p = log.to_str().unwrap();
    ok(&run(
        &dir,
        &[
            "run",
            "--once",
            "--year",
            "mtime",
            "--timezone",
            "Europe/Berlin",
            "--multiline",
            "auto",
            p,
        ],
    ));
    let v = json(&run(&dir, &["--json", "query", "--limit", "100"]));
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs.len(), 3, "{v:#}");
    let instant = |r: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(r["timestamp"].as_str().unwrap())
            .unwrap()
            .timestamp()
    };
    let by_msg = |m: &str| {
        recs.iter()
            .find(|r| r["message"].as_str().unwrap().starts_with(m))
            .unwrap_or_else(|| panic!("no record {m}: {v:#}"))
    };
    // Berlin is UTC+1 in winter.
    assert_eq!(instant(by_msg("last of 2005")), 1_136_069_998); // 2005-12-31T22:59:58Z
    assert_eq!(instant(by_msg("first of 2006")), 1_136_070_002); // 2005-12-31T23:00:02Z
    let trace = by_msg("boom");
    assert_eq!(instant(trace), 1_136_069_999);
    assert_eq!(trace["format"], "log4j");
    assert_eq!(
        trace["message"],
        "boom\njava.lang.IllegalStateException: bad state\n\tat com.example.App.run(App.java:42)"
    );
    let offset = "Dec 31 23:59:58 combo sshd[1]: last of 2005\n".len();
    assert!(
        trace["id"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{offset}")),
        "{trace}"
    );
}

/// The per-input groups example of `docs/config.md`, with `/var/log` moved to a temporary
/// directory, run with `run --once`: PostgreSQL lines in Berlin time with their STATEMENT and
/// indented lines joined, syslog archive lines with the year of the file's mtime and no
/// joining, and the default group's line with the run-wide settings (UTC); `check --json`
/// lists the groups.
#[test]
fn per_input_groups_of_the_documented_example() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.md"))
            .unwrap();
    let section = &doc[doc.find("## Per-input groups").unwrap()..];
    let start = section.find("```toml\n").unwrap() + "```toml\n".len();
    let end = start + section[start..].find("```").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("log");
    let example = section[start..end].replace("/var/log/", &format!("{}/", logs.display()));
    let config = tmp.path().join("ackline.toml");
    std::fs::write(&config, &example).unwrap();
    for d in ["app", "postgresql", "old"] {
        std::fs::create_dir_all(logs.join(d)).unwrap();
    }
    std::fs::write(
        logs.join("postgresql/main.log"),
        "2026-12-05 01:20:54.024 CET [25401] postgres@test ERROR:  relation \"x\" does not exist\n\
         2026-12-05 01:20:54.024 CET [25401] postgres@test STATEMENT:  SELECT * FROM x\n\
         \tWHERE y = 1;\n\
         2026-12-05 01:21:00.000 CET [2228] LOG:  checkpoint starting: time\n",
    )
    .unwrap();
    let archive = logs.join("old/syslog.log.1");
    std::fs::write(
        &archive,
        "Dec 31 23:59:58 combo sshd[1]: last of 2005\n\
         \x20 not joined here\n\
         Jan  1 00:00:02 combo sshd[1]: first of 2006\n",
    )
    .unwrap();
    // 2006-01-02T03:04:05Z, as an archive copied with its times would have.
    std::fs::File::options()
        .write(true)
        .open(&archive)
        .and_then(|f| f.set_modified(UNIX_EPOCH + Duration::from_secs(1_136_171_045)))
        .unwrap();
    std::fs::write(
        logs.join("app/a.log"),
        "2026-12-05 01:20:54 ERROR default group\n  indented, not joined\n",
    )
    .unwrap();
    let dir = tmp.path().join("data");
    let cfg = config.to_str().unwrap();

    let v = json(&run(&dir, &["--json", "--config", cfg, "check"]));
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{v:#}");
    assert_eq!(groups[0]["name"], "input.files[0]");
    assert_eq!(groups[0]["format"], "postgresql");
    assert_eq!(groups[0]["multiline"], "auto");
    assert_eq!(groups[0]["timezone"], "Europe/Berlin");
    assert_eq!(groups[1]["year"], "mtime");
    assert_eq!(groups[1]["timezone"], "UTC");

    ok(&run(&dir, &["--config", cfg, "run", "--once"]));
    let v = json(&run(&dir, &["--json", "query", "--limit", "100"]));
    let recs = v["records"].as_array().unwrap();
    let by_msg = |m: &str| {
        recs.iter()
            .find(|r| r["message"].as_str().unwrap().contains(m))
            .unwrap_or_else(|| panic!("no record {m}: {v:#}"))
    };
    let instant = |r: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(r["timestamp"].as_str().unwrap())
            .unwrap()
            .timestamp_millis()
    };
    assert_eq!(recs.len(), 2 + 3 + 2, "{v:#}");

    // PostgreSQL: Berlin (CET, UTC+1), the STATEMENT and the indented line joined.
    let err = by_msg("relation \"x\" does not exist");
    assert_eq!(err["format"], "postgresql", "{err:#}");
    assert_eq!(instant(err), 1_796_430_054_024, "{err:#}"); // 2026-12-05T00:20:54.024Z
    assert_eq!(
        err["message"],
        "relation \"x\" does not exist\n\
         2026-12-05 01:20:54.024 CET [25401] postgres@test STATEMENT:  SELECT * FROM x\n\
         \tWHERE y = 1;",
        "{err:#}"
    );
    assert!(
        err["input"]
            .as_str()
            .unwrap()
            .ends_with("postgresql/main.log")
    );
    let log = by_msg("checkpoint starting");
    assert_eq!(log["format"], "postgresql");
    assert_eq!(instant(log), 1_796_430_060_000); // 2026-12-05T00:21:00Z

    // The archive: years from the mtime (2005 and 2006), UTC, nothing joined.
    let last = by_msg("last of 2005");
    assert_eq!(last["format"], "rfc3164");
    assert_eq!(instant(last), 1_136_073_598_000); // 2005-12-31T23:59:58Z
    assert_eq!(last["message"], "last of 2005");
    let first = by_msg("first of 2006");
    assert_eq!(first["format"], "rfc3164");
    assert_eq!(instant(first), 1_136_073_602_000); // 2006-01-01T00:00:02Z
    let alone = by_msg("not joined here");
    assert_eq!(alone["message"], "  not joined here", "{alone:#}");
    assert_eq!(
        alone["format"], "raw",
        "lenient: rfc3164 refused it, kept raw"
    );
    assert!(
        alone["input"]
            .as_str()
            .unwrap()
            .ends_with("old/syslog.log.1")
    );

    // The default group: run-wide UTC, no joining.
    let default = by_msg("default group");
    assert_eq!(instant(default), 1_796_433_654_000, "{default:#}"); // 2026-12-05T01:20:54Z
    assert_eq!(default["message"], "default group", "{default:#}");
    assert_eq!(by_msg("indented, not joined")["format"], "raw");

    // The same groups from the command line (`--files`, as docs/config.md shows): the same
    // records (raw records' timestamps are their ingest times, left out).
    let app = format!("{}/app/*.log", logs.display());
    let pg = format!(
        "{}/postgresql/*.log;format=postgresql;multiline=auto;timezone=Europe/Berlin",
        logs.display()
    );
    let old = format!("{}/old/*.log.1;format=rfc3164;year=mtime", logs.display());
    let dir2 = tmp.path().join("data2");
    ok(&run(
        &dir2,
        &["run", "--once", &app, "--files", &pg, "--files", &old],
    ));
    let v2 = json(&run(&dir2, &["--json", "query", "--limit", "100"]));
    let records = |v: &serde_json::Value| -> BTreeSet<String> {
        v["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let ts = if r["format"] == "raw" {
                    String::new()
                } else {
                    r["timestamp"].to_string()
                };
                format!("{} {} {} {ts}", r["id"], r["format"], r["message"])
            })
            .collect()
    };
    assert_eq!(records(&v), records(&v2));
}

/// Bad groups stop `check` and `run` with exit 2 and one line naming the group: a bad value,
/// and two groups with different settings whose globs both match a file that exists (found by
/// the input, before any line of it is queued).
#[test]
fn bad_input_groups_exit_2_naming_the_group() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let config = tmp.path().join("ackline.toml");
    let cfg = config.to_str().unwrap();
    std::fs::write(
        &config,
        "[[input.files]]\npaths = [\"/l/*.log\"]\ntimezone = \"Mars/Olympus\"\n",
    )
    .unwrap();
    let err = one_line_exit_2(&run(&dir, &["--config", cfg, "check"]));
    assert!(
        err.contains("invalid input.files[0].timezone = \"Mars/Olympus\" (in ")
            && err.contains("ackline.toml:3:12)"),
        "{err}"
    );
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join("app.log"), "a line\n").unwrap();
    std::fs::write(
        &config,
        format!(
            "[[input.files]]\npaths = [\"{0}/*.log\"]\n\n\
             [[input.files]]\npaths = [\"{0}/app.*\"]\nyear = \"2005\"\n",
            logs.display()
        ),
    )
    .unwrap();
    ok(&run(&dir, &["--config", cfg, "check"]));
    let err = one_line_exit_2(&run(&dir, &["--config", cfg, "run", "--once"]));
    assert!(
        err.contains("app.log is matched by group input.files[0] and by group input.files[1]"),
        "{err}"
    );
    let v = json(&run(&dir, &["--json", "query", "--limit", "10"]));
    assert_eq!(v["records"].as_array().map(Vec::len), Some(0), "{v:#}");
}
