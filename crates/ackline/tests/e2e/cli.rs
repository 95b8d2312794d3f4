//! The command line's contract: help, exit codes, one JSON object with --json, and the
//! dead-letter tools over a real queue.

#![allow(clippy::unwrap_used)] // tests: a panic is a failed assertion

use std::time::Duration;

use crate::common::{ackline, json, run_with_deadline};

const LIMIT: Duration = Duration::from_secs(120);

fn run(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    let mut c = ackline();
    c.arg("--data-dir").arg(dir).args(args);
    run_with_deadline(c, LIMIT)
}

#[test]
fn help_works_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--help"][..],
        &["demo", "--help"],
        &["demo", "queue", "--help"],
        &["run", "--help"],
        &["check", "--help"],
        &["query", "--help"],
        &["stats", "--help"],
        &["bench", "queue", "--help"],
        &["queue", "stats", "--help"],
        &["dlq", "list", "--help"],
        &["dlq", "replay", "--help"],
    ] {
        let o = run(args, dir.path());
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("Usage: ackline"), "{args:?}: {text}");
    }
    let o = run(&["--help"], dir.path());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("demo") && text.contains("dlq"), "{text}");
    assert!(
        !text.contains("queue-worker"),
        "internal commands are hidden: {text}"
    );
    let internal: [(&[&str], &[&str]); 2] = [
        (&["demo", "--help"], &["queue-worker", "pipeline-node"]),
        (&["bench", "--help"], &["queue-fill"]),
    ];
    for (args, names) in internal {
        let o = run(args, dir.path());
        let text = String::from_utf8_lossy(&o.stdout);
        for name in names {
            assert!(!text.contains(name), "internal commands are hidden: {text}");
        }
    }
}

#[test]
fn bad_flags_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--bogus", "demo"][..],
        &["demo", "queue", "--messages", "many"],
        &["run", "--bogus"],
        &["query", "--limit", "x"],
        &["dlq", "replay", "--queue", "q"],
        &["dlq", "purge", "--queue", "q", "--all", "--key", "1"],
        &["bench", "queue", "--ack", "sometimes"],
    ] {
        let o = run(args, dir.path());
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }
    // Checked after parsing: a bad queue name is a usage error too.
    let o = run(&["dlq", "list", "--queue", "no/slashes"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid queue name"));
}

#[test]
fn dlq_list_on_a_fresh_dir_is_an_empty_list() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["--json", "dlq", "list", "--queue", "logs"], dir.path());
    assert_eq!(o.status.code(), Some(0));
    let v = json(&o);
    assert_eq!(v["entries"], serde_json::json!([]));
    assert_eq!(v["next_after"], serde_json::Value::Null);
    let o = run(&["--json", "queue", "stats"], dir.path());
    assert_eq!(json(&o)["queues"], serde_json::json!([]));
    let o = run(&["queue", "stats", "nosuch"], dir.path());
    assert_eq!(
        o.status.code(),
        Some(1),
        "a missing queue is a runtime failure"
    );
}

#[test]
fn demo_json_and_dlq_tools_on_its_queue() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        &[
            "--json",
            "demo",
            "queue",
            "--crashes",
            "2",
            "--messages",
            "3000",
            "--seed",
            "42",
        ],
        dir.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = json(&o);
    assert_eq!(v["books"]["balanced"], true);
    let dead = v["books"]["dead_lettered"].as_u64().unwrap();
    let poison = v["books"]["dead_lettered_by_reason"]["poison payload"]
        .as_u64()
        .unwrap();
    assert!(dead > 5 && poison > 0);

    // A second demo on the same directory is refused as a usage error.
    let o = run(
        &["demo", "queue", "--crashes", "0", "--messages", "10"],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2));

    // Paging walks every entry exactly once.
    let mut after: Option<u64> = None;
    let mut seen = Vec::new();
    loop {
        let mut args = vec!["--json", "dlq", "list", "--queue", "demo", "--limit", "7"];
        let a;
        if let Some(k) = after {
            a = k.to_string();
            args.extend(["--after", a.as_str()]);
        }
        let page = json(&run(&args, dir.path()));
        for e in page["entries"].as_array().unwrap() {
            seen.push(e["key"].as_u64().unwrap());
        }
        match page["next_after"].as_u64() {
            Some(k) => after = Some(k),
            None => break,
        }
    }
    assert_eq!(seen.len() as u64, dead);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));

    // Show by key and by id agree.
    let first = json(&run(
        &[
            "--json",
            "dlq",
            "show",
            "--queue",
            "demo",
            &seen[0].to_string(),
        ],
        dir.path(),
    ));
    let id = first["entries"][0]["id"].as_str().unwrap().to_string();
    let by_id = json(&run(
        &["--json", "dlq", "show", "--queue", "demo", "--id", &id],
        dir.path(),
    ));
    assert_eq!(first["entries"][0], by_id["entries"][0]);
    let o = run(&["dlq", "show", "--queue", "demo", "999999999"], dir.path());
    assert_eq!(o.status.code(), Some(1));

    // The dead letters' bytes are shown (they count toward the queue's byte limit).
    let s = json(&run(&["--json", "queue", "stats", "demo"], dir.path()));
    assert!(
        s["queues"][0]["dead_letter_bytes"].as_u64().unwrap() > 0,
        "{s}"
    );

    // Purge the poison ones, replay the rest; the queue then holds the replayed ones.
    let p = json(&run(
        &[
            "--json",
            "dlq",
            "purge",
            "--queue",
            "demo",
            "--reason-contains",
            "poison",
        ],
        dir.path(),
    ));
    assert_eq!(p["count"].as_u64(), Some(poison));
    let r = json(&run(
        &["--json", "dlq", "replay", "--queue", "demo", "--all"],
        dir.path(),
    ));
    assert_eq!(r["count"].as_u64(), Some(dead - poison));
    let s = json(&run(&["--json", "queue", "stats", "demo"], dir.path()));
    assert_eq!(s["queues"][0]["pending"].as_u64(), Some(dead - poison));
    assert_eq!(s["queues"][0]["dead_letters"].as_u64(), Some(0));
    assert_eq!(s["queues"][0]["dead_letter_bytes"].as_u64(), Some(0));
    let l = json(&run(
        &["--json", "dlq", "list", "--queue", "demo"],
        dir.path(),
    ));
    assert_eq!(l["entries"], serde_json::json!([]));
}

#[test]
fn bench_json_parses() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        &[
            "--json",
            "bench",
            "queue",
            "--messages",
            "3000",
            "--producers",
            "1,2",
            "--consumers",
            "1,2",
            "--ack",
            "individual,batch",
            "--publish",
            "batch,pipelined",
            "--fsync",
            "never",
            "--recovery-messages",
            "5000",
        ],
        dir.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = json(&o);
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 8);
    for r in runs {
        assert!(r["msgs_per_s"].as_f64().unwrap() > 0.0);
        assert!(
            r["end_to_end_us"]["p50"].as_u64().unwrap()
                <= r["end_to_end_us"]["max"].as_u64().unwrap()
        );
    }
    assert_eq!(v["recovery"]["pending_after"].as_u64(), Some(5000));
    assert!(v["memory"]["bytes_per_pending_message"].as_f64().is_some());
}

#[test]
fn logs_go_to_stderr_as_json_lines_and_a_bad_filter_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("app.log");
    std::fs::write(&input, "<14>1 2026-11-28T10:00:00Z web app 1 - - hello\n").unwrap();
    let o = run(
        &[
            "--log",
            "info",
            "--log-format",
            "json",
            "--json",
            "run",
            "--once",
            input.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // stdout is the one result object; stderr carries the log events, each a JSON object.
    let result = json(&o);
    assert_eq!(result["stored"], 1, "{result}");
    let stderr = String::from_utf8_lossy(&o.stderr);
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!events.is_empty(), "no log events at info: {stderr}");
    assert!(
        events
            .iter()
            .all(|e| e["level"].is_string() && e["fields"].is_object()),
        "{stderr}"
    );

    let bad = run(&["--log", "warn,=nonsense[", "stats"], dir.path());
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--log"), "{err}");
}

/// Dead-letters one message per `(id, payload, reason)` in queue `logs` of `dir`, through the
/// engine (publish, receive, reject), and closes it again.
fn dead_letter(dir: &std::path::Path, entries: &[(&str, &[u8], &str)]) {
    use ackline_queue::{Db, NewMessage, QueueOptions};
    let db = Db::open(dir).unwrap();
    let q = db.queue("logs", QueueOptions::default()).unwrap();
    let msgs = entries
        .iter()
        .map(|(id, payload, _)| NewMessage::new(payload.to_vec()).with_id(*id))
        .collect();
    q.publish(msgs).unwrap();
    let c = q.consumer();
    let got = c
        .receive(
            entries.len(),
            Duration::from_secs(60),
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(got.len(), entries.len());
    for (d, (_, _, reason)) in got.iter().zip(entries) {
        c.reject(d.tag, reason).unwrap().wait().unwrap();
    }
    drop(c);
    q.close();
}

fn dead_letters(dir: &std::path::Path) -> u64 {
    let o = run(&["--json", "queue", "stats", "logs"], dir);
    json(&o)["queues"][0]["dead_letters"].as_u64().unwrap()
}

/// Issue 10 item 13: an empty or blank `--reason-contains` would match every entry; only
/// `--all` selects them all. Refused (exit 2, one line naming the flag) before anything is
/// touched, for purge and replay.
#[test]
fn dlq_purge_and_replay_refuse_an_empty_match() {
    let dir = tempfile::tempdir().unwrap();
    dead_letter(
        dir.path(),
        &[("a", b"one", "parse error"), ("b", b"two", "store refused")],
    );
    assert_eq!(dead_letters(dir.path()), 2);
    for verb in ["purge", "replay"] {
        for text in ["", "  "] {
            let o = run(&["dlq", verb, "--reason-contains", text], dir.path());
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{verb} {text:?}: {err}");
            assert_eq!(err.trim_end().lines().count(), 1, "{err}");
            assert!(err.contains("--reason-contains"), "{err}");
            assert!(o.stdout.is_empty());
            assert_eq!(
                dead_letters(dir.path()),
                2,
                "{verb} {text:?} touched entries"
            );
        }
    }
    // A real match still works, and --all still takes everything.
    let p = json(&run(
        &["--json", "dlq", "purge", "--reason-contains", "parse"],
        dir.path(),
    ));
    assert_eq!(p["count"], 1);
    let p = json(&run(&["--json", "dlq", "purge", "--all"], dir.path()));
    assert_eq!(p["count"], 1);
    assert_eq!(dead_letters(dir.path()), 0);
}

/// Issue 10 item 14: `--json` carries the payload exactly (`payload_base64`) beside the
/// readable `payload`; human `dlq show` and `dlq list` escape control characters and invalid
/// bytes instead of writing them to the terminal; `dlq list` says a reject's reason once.
#[test]
fn dlq_payloads_are_exact_in_json_and_escaped_for_humans() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().unwrap();
    let payload: &[u8] = b"\x1b[31mred\x1b[0m\x00tail \xff\xfe end\n";
    dead_letter(dir.path(), &[("odd", payload, "bad \x1b]0;title\x07 line")]);
    let v = json(&run(&["--json", "dlq", "list"], dir.path()));
    let e = &v["entries"][0];
    let exact = base64::engine::general_purpose::STANDARD
        .decode(e["payload_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(exact, payload, "{e}");
    assert_eq!(e["payload_bytes"], payload.len());
    let shown = json(&run(&["--json", "dlq", "show", "--id", "odd"], dir.path()));
    assert_eq!(shown["entries"][0], *e);

    for args in [&["dlq", "show", "--id", "odd"][..], &["dlq", "list"][..]] {
        let o = run(args, dir.path());
        assert_eq!(o.status.code(), Some(0), "{o:?}");
        let out = &o.stdout;
        for b in [0x1b, 0x00, 0x07, 0xff, 0xfe] {
            assert!(!out.contains(&b), "{args:?} wrote byte {b:#04x}: {out:?}");
        }
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.contains("bad \\x1b]0;title\\x07 line"), "{text}");
        if args[1] == "show" {
            assert!(
                text.contains("\\x1b[31mred\\x1b[0m\\0tail \\xff\\xfe end\\n"),
                "{text}"
            );
        } else {
            assert_eq!(text.matches("title").count(), 1, "reason twice: {text}");
        }
    }
}

/// Issue 10 item 14: an error prints each cause once. A data directory under a regular file
/// cannot be created, even as root.
#[test]
fn an_error_names_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let data = file.join("data");
    let o = run(&["dlq", "purge", "--all"], &data);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let cause = std::io::Error::from_raw_os_error(20).to_string(); // ENOTDIR
    assert_eq!(err.matches(&cause).count(), 1, "{err}");
}

/// One line on stderr starting `error: `, containing `needle` (any case), with exit `code`.
fn one_line_error(o: &std::process::Output, code: i32, needle: &str, what: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "{what}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{what}: {err}");
    assert!(err.starts_with("error: "), "{what}: {err}");
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "{what}: expected {needle:?} in {err}"
    );
}

#[test]
fn config_files_store_urls_globs_and_data_dirs_that_cannot_be_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A config "file" without end is read only up to its bound.
    let o = run(&["check", "--config", "/dev/zero"], dir.path());
    one_line_error(&o, 2, "larger than 1024 KiB", "--config /dev/zero");
    // A PostgreSQL URL with no host, in any layer, names the field.
    for url in ["postgres://", "postgresql://user@/db", "postgres:///db"] {
        let o = run(&["check", "--store", url], dir.path());
        one_line_error(&o, 2, "store.url", url);
    }
    let o = run(
        &[
            "check",
            "--store",
            "postgres:///db?host=/var/run/postgresql",
        ],
        dir.path(),
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "a Unix socket directory is a host"
    );
    // A glob that does not parse, from a flag or from the file.
    let o = run(&["check", "[["], dir.path());
    one_line_error(&o, 2, "input.paths", "the glob [[");
    let toml = dir.path().join("bad.toml");
    std::fs::write(
        &toml,
        "[input]\npaths = [\"/var/log/*.log\", \"/var/log/[[\"]\n",
    )
    .unwrap();
    let o = run(&["check", "--config", toml.to_str().unwrap()], dir.path());
    one_line_error(&o, 2, "input.paths", "the glob [[ in a file");
    // A data directory under a file cannot exist: an error, not an empty pipeline.
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    for d in [file.join("sub"), file.clone()] {
        let mut c = ackline();
        c.arg("--data-dir").arg(&d).arg("stats");
        let o = run_with_deadline(c, LIMIT);
        one_line_error(&o, 1, "not a directory", &d.display().to_string());
    }
}

/// Every file under `dir` with its length, sorted.
fn files_and_sizes(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let len = std::fs::metadata(&p).unwrap().len();
                out.push((p, len));
            }
        }
    }
    out.sort();
    out
}

/// Issue 10 items 2 and 6 through the binary: a flipped payload byte that no checkpoint covers
/// is reported at open (ERROR, file and offset), counted by `queue stats`, and listed by `dlq
/// list` as `corrupt`, and these inspections change no file; the next writable open keeps the
/// damaged bytes in `quarantine/` and the dead-letter entry durably.
#[test]
fn damage_is_reported_counted_and_dead_lettered_by_the_cli() {
    use ackline_queue::{Db, NewMessage, QueueOptions};
    let live = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(live.path()).unwrap();
        let q = db.queue("logs", QueueOptions::default()).unwrap();
        let msgs = (0..100)
            .map(|i| NewMessage::new(format!("line {i}")).with_id(format!("m-{i}")))
            .collect();
        q.publish(msgs).unwrap();
        // What a kill -9 leaves: the log as confirmed, no final checkpoint.
        for (p, _) in files_and_sizes(live.path()) {
            let rel = p.strip_prefix(live.path()).unwrap();
            std::fs::create_dir_all(dir.path().join(rel).parent().unwrap()).unwrap();
            std::fs::copy(&p, dir.path().join(rel)).unwrap();
        }
    }
    let seg = dir.path().join("queues/logs/0000000001.seg");
    let mut b = std::fs::read(&seg).unwrap();
    // The 50th record: walk the frames (crc u32, len u32, kind u8, body) from the header on.
    let mut off = 32;
    for _ in 0..50 {
        off += 9 + u32::from_le_bytes(b[off + 4..off + 8].try_into().unwrap()) as usize;
    }
    let len = 9 + u32::from_le_bytes(b[off + 4..off + 8].try_into().unwrap()) as usize;
    b[off + len - 1] ^= 0x01; // the last payload byte
    std::fs::write(&seg, &b).unwrap();
    let before = files_and_sizes(dir.path());

    let o = run(&["--json", "queue", "stats", "logs"], dir.path());
    assert!(o.status.success(), "{o:?}");
    let v = json(&o);
    assert_eq!(v["queues"][0]["corrupt_ranges"], 1, "{v}");
    assert_eq!(v["queues"][0]["corrupt_messages"], 1, "{v}");
    assert_eq!(v["queues"][0]["pending"], 99, "{v}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("ERROR")
            && err.contains("0000000001.seg")
            && err.contains(&format!("offset {off}")),
        "the damage is logged with file and offset: {err}"
    );
    let o = run(&["--json", "dlq", "list"], dir.path());
    let v = json(&o);
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{v}");
    assert_eq!(entries[0]["reason"], ackline_broker::REASON_CORRUPT);
    assert_eq!(entries[0]["key"], 50);
    assert_eq!(
        files_and_sizes(dir.path()),
        before,
        "inspection changed a file"
    );

    // A writable open (dlq purge with a selection that matches nothing) makes it durable.
    let o = run(
        &["dlq", "purge", "--reason-contains", "no such reason"],
        dir.path(),
    );
    assert!(o.status.success(), "{o:?}");
    let quarantine = dir.path().join("queues/logs/quarantine");
    let copies: Vec<_> = std::fs::read_dir(&quarantine).unwrap().collect();
    assert_eq!(copies.len(), 1, "the damaged bytes are kept");
    assert_eq!(dead_letters(dir.path()), 1);
}
