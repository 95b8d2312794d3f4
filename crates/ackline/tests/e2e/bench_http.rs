//! `ackline bench http` with tiny sizes: the JSON report's structure and its books, checked
//! here from the report's independent counts (no timing assertions).

#![allow(clippy::unwrap_used)] // tests: a panic is a failed assertion

use std::time::Duration;

use crate::common::{ackline, json, run_with_deadline};

#[test]
fn bench_http_json_has_the_figures_and_balanced_books() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ackline();
    c.current_dir(dir.path()).args([
        "--json",
        "bench",
        "http",
        "--lines",
        "300",
        "--batch-sizes",
        "1,7,100",
        "--concurrency",
        "3",
        // Far above what 300 lines take, so no phase is cut short by time.
        "--max-phase-secs",
        "60",
        "--messages",
        "1500",
        "--workers",
        "2",
        "--worker-batch",
        "100",
        "--timeout",
        "90",
    ]);
    let o = run_with_deadline(c, Duration::from_secs(240));
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = json(&o);
    assert_eq!(v["books_balance"], serde_json::json!(true), "{v}");
    assert_eq!(v["books"], serde_json::json!([]));
    assert!(v["machine"]["cores"].as_u64().unwrap() >= 1);

    // Ingest: one run per batch size, both sides; every confirmed line is in the queue.
    let ingest = &v["ingest"];
    assert_eq!(ingest["clients"].as_u64(), Some(3));
    let runs = ingest["runs"].as_array().unwrap();
    let batches: Vec<u64> = runs.iter().map(|r| r["batch"].as_u64().unwrap()).collect();
    assert_eq!(batches, [1, 7, 100]);
    let rounds = ingest["rounds"].as_u64().unwrap();
    assert!(rounds >= 1);
    for r in runs {
        let b = r["batch"].as_u64().unwrap();
        // Whole requests in whole slices: at least --lines, less than one slice more.
        let planned = 300_u64.div_ceil(b).div_ceil(rounds) * rounds * b;
        assert_eq!(r["planned_lines"].as_u64(), Some(planned));
        for side in ["http", "in_process"] {
            let s = &r[side];
            let lines = s["lines"].as_u64().unwrap();
            let requests = s["requests"].as_u64().unwrap();
            assert_eq!(
                s["time_capped"],
                serde_json::json!(false),
                "{side} {b}: {s}"
            );
            assert_eq!(lines, planned, "{side} {b}: {s}");
            assert_eq!(lines, requests * b, "{side} {b}: {s}");
            assert_eq!(
                s["queue_pending_after"].as_u64(),
                Some(lines),
                "{side} {b}: confirmed lines must all be pending after a reopen: {s}"
            );
            assert!(s["lines_per_s"].as_f64().unwrap() > 0.0);
            let lat = &s["latency_us"];
            assert!(lat["p50"].as_u64().unwrap() <= lat["p99"].as_u64().unwrap());
            assert!(lat["p99"].as_u64().unwrap() <= lat["max"].as_u64().unwrap());
        }
        assert!(r["ratio"].as_f64().unwrap() > 0.0);
    }

    // Remote workers: for each store, both brokers drained everything, each id stored once.
    let w = &v["workers"];
    assert_eq!(w["messages"].as_u64(), Some(1500));
    let wruns = w["runs"].as_array().unwrap();
    let stores: Vec<&str> = wruns.iter().map(|r| r["store"].as_str().unwrap()).collect();
    assert_eq!(stores, ["memory", "ndjson"]);
    for r in wruns {
        let store = r["store"].as_str().unwrap();
        for side in ["remote", "embedded"] {
            let s = &r[side];
            let what = format!("{store}/{side}: {s}");
            assert_eq!(s["store_rows"].as_u64(), Some(1500), "{what}");
            assert_eq!(s["distinct_ids"].as_u64(), Some(1500), "{what}");
            assert_eq!(s["missing_ids"].as_u64(), Some(0), "{what}");
            assert_eq!(s["queue_pending_after"].as_u64(), Some(0), "{what}");
            assert_eq!(s["dead_letters_after"].as_u64(), Some(0), "{what}");
            assert_eq!(s["rejected"].as_u64(), Some(0), "{what}");
            let stored = s["stored"].as_u64().unwrap() + s["duplicates"].as_u64().unwrap();
            assert_eq!(stored, 1500, "{what}");
            assert!(s["received"].as_u64().unwrap() >= 1500, "{what}");
            assert!(s["msgs_per_s"].as_f64().unwrap() > 0.0, "{what}");
        }
        assert!(r["ratio"].as_f64().unwrap() > 0.0);
    }
    assert!(w["bare_ndjson"]["records_per_s"].as_f64().unwrap() > 0.0);
    for when in ["before", "after"] {
        let d = &v["disk_fdatasync_us"][when];
        assert!(d["p50"].as_u64().unwrap() <= d["max"].as_u64().unwrap());
    }
}

#[test]
fn bench_http_refuses_a_zero_batch_size() {
    let mut c = ackline();
    c.args(["bench", "http", "--batch-sizes", "1,0"]);
    let o = run_with_deadline(c, Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--batch-sizes"), "{err}");
}
