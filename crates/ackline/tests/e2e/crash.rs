//! The kill -9 crash test: a worker process publishes, receives, acks, nacks and rejects
//! under load and is killed with SIGKILL at 50 seeded random moments, restarted each time,
//! and finally drains the queue. After each restart every confirmed publish must be below the
//! recovered queue end and accounted for by pending + dead-lettered counts; at the end every
//! confirmed publish is acked, dead-lettered or pending (none missing), no ack succeeds twice,
//! and attempts never go backwards.
//!
//! Replay a failure with the printed seed: `ACKLINE_CRASH_SEED=<seed> cargo test -p ackline
//! --test e2e crash::`, or `ackline demo queue --crashes 50 --messages 60000 --max-kill-ms 300 --seed
//! <seed>`.

#![allow(clippy::unwrap_used)] // tests: a panic is a failed assertion

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::{ackline, json, run_with_deadline};

const CRASHES: u64 = 50;

#[test]
fn fifty_kill9_rounds_lose_nothing() {
    let seed: u64 = std::env::var("ACKLINE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("crash test seed {seed} (replay with ACKLINE_CRASH_SEED={seed})");
    eprintln!("crash test seed {seed} (replay with ACKLINE_CRASH_SEED={seed})");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = ackline();
    cmd.arg("--data-dir")
        .arg(dir.path())
        .arg("--json")
        .args(["demo", "queue"])
        .args(["--crashes", &CRASHES.to_string()])
        .args(["--messages", "60000"])
        .args(["--max-kill-ms", "300"])
        .args(["--drain-timeout", "60"])
        .args(["--seed", &seed.to_string()]);
    let out = run_with_deadline(cmd, Duration::from_secs(170));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let v = json(&out);
    let b = &v["books"];
    let ctx = format!("seed {seed}; books: {b:#}\nstderr: {stderr}");
    assert_eq!(v["seed"].as_u64(), Some(seed));
    let runs = v["runs"].as_array().unwrap();
    let killed = runs.iter().filter(|r| r["killed"] == true).count() as u64;
    let kill_ms: Vec<u64> = runs
        .iter()
        .filter_map(|r| r["kill_after_ms"].as_u64())
        .collect();
    println!("kill moments (ms after the run's first publish or delivery): {kill_ms:?}");

    assert_eq!(b["lost"], 0, "confirmed publishes lost: {ctx}");
    assert_eq!(
        b["duplicates_after_fencing"], 0,
        "an ack succeeded twice: {ctx}"
    );
    assert_eq!(
        b["attempt_regressions"], 0,
        "attempts went backwards: {ctx}"
    );
    assert_eq!(
        b["restart_check_failures"], 0,
        "a restart lost track: {ctx}"
    );
    assert_eq!(b["acked_and_dead_lettered"], 0, "{ctx}");
    assert_eq!(b["rejects_missing_from_dlq"], 0, "{ctx}");
    assert_eq!(b["pending_at_end"], 0, "{ctx}");
    assert_eq!(b["journal_corrupt_lines"], 0, "{ctx}");
    assert_eq!(b["balanced"], true, "{ctx}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "demo must exit 0 when the books balance: {ctx}"
    );

    // The test must have tested something: the kills hit a worker under load, and restarts
    // were checked against what they recovered.
    // A run that finishes its share before its kill moment exits by itself; how many do
    // depends on the machine's speed, so the bound is "enough kills to mean something", not a
    // proportion (a loaded machine once gave 23 of 50).
    assert!(
        killed >= 10,
        "only {killed} of {CRASHES} runs were killed: {ctx}"
    );
    assert!(b["runs_with_deliveries"].as_u64().unwrap() >= 10, "{ctx}");
    assert!(b["runs_with_publishes"].as_u64().unwrap() >= 10, "{ctx}");
    assert!(b["restart_checks"].as_u64().unwrap() >= 10, "{ctx}");
    assert!(b["redelivered"].as_u64().unwrap() > 0, "{ctx}");
    let confirmed = b["published_confirmed"].as_u64().unwrap();
    let unconfirmed = b["published_unconfirmed_delivered"].as_u64().unwrap();
    assert_eq!(confirmed + unconfirmed, 60000, "{ctx}");
    let reasons = &b["dead_lettered_by_reason"];
    assert!(reasons["poison payload"].as_u64().unwrap() > 0, "{ctx}");
    assert!(
        reasons[ackline_broker::REASON_MAX_ATTEMPTS]
            .as_u64()
            .unwrap()
            > 0,
        "{ctx}"
    );
    println!(
        "books: {confirmed} confirmed, {} acked, {} dead-lettered, {} redelivered, {} duplicates processed; recovery max {} us",
        b["acked"],
        b["dead_lettered"],
        b["redelivered"],
        b["duplicates_processed"],
        b["recovery"]["micros_max"]
    );
}
