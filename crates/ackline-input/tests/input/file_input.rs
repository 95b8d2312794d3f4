//! FileInput against the embedded queue: payloads, ids, headers, restarts, rotation,
//! truncation, deletion, globs, long lines, odd bytes and a refusing broker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ackline_broker::Broker;
use ackline_input::{
    At, FileGroup, FileInput, FileInputConfig, InputError, JsonPositionStore, PositionStore,
    StartAt, file_message_id,
};
use ackline_queue::QueueOptions;
use tokio::sync::watch;

use crate::common::*;

fn config(fx: &Fixture, paths: &[String]) -> FileInputConfig {
    let mut c = FileInputConfig::new(paths.to_vec(), fx.state());
    c.poll_interval = Duration::from_millis(20);
    c.rotated_grace = Duration::ZERO;
    c
}

fn path_str(p: &std::path::Path) -> String {
    p.display().to_string()
}

async fn once<B: Broker>(
    broker: Arc<B>,
    cfg: FileInputConfig,
) -> Result<ackline_input::CountersSnapshot, InputError> {
    let (_tx, rx) = watch::channel(false);
    let mut input = FileInput::new(broker, cfg)?;
    input.run_once(rx).await
}

/// A following input running in a task; `stop` ends it and returns the input.
struct Running<B> {
    tx: watch::Sender<bool>,
    task: tokio::task::JoinHandle<(
        Result<ackline_input::CountersSnapshot, InputError>,
        FileInput<B>,
    )>,
    counters: Arc<ackline_input::InputCounters>,
}

fn follow<B: Broker>(mut input: FileInput<B>) -> Running<B> {
    let (tx, rx) = watch::channel(false);
    let counters = input.counters();
    let task = tokio::spawn(async move {
        let r = input.run(rx).await;
        (r, input)
    });
    Running { tx, task, counters }
}

impl<B: Broker> Running<B> {
    async fn stop(self) -> FileInput<B> {
        self.tx.send(true).expect("send stop");
        let (r, input) = self.task.await.expect("join");
        r.expect("input ran without error");
        input
    }

    async fn wait(&self, what: &str, f: impl Fn(&ackline_input::CountersSnapshot) -> bool) {
        let c = self.counters.clone();
        wait_until(what, || {
            let s = c.snapshot();
            let ok = f(&s);
            async move { ok }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_have_payloads_ids_and_headers() {
    let fx = Fixture::new();
    let log = fx.log("app.log");
    append(&log, b"one\r\ntwo\n\nthree");
    let (dev, ino) = identity(&log);
    let fp = fingerprint(&log);
    assert_eq!(Some(fp), ackline_input::Fingerprint::of_head(b"one\r\n"));
    let s = once(fx.broker.clone(), config(&fx, &[path_str(&log)]))
        .await
        .expect("run once");
    assert_eq!(s.lines, 4);
    let got = fx.take(4).await;
    assert_eq!(
        payloads(&got),
        vec![
            b"one".to_vec(),
            b"two".to_vec(),
            b"".to_vec(),
            b"three".to_vec()
        ]
    );
    assert_eq!(
        ids(&got),
        [0, 5, 9, 10]
            .iter()
            .map(|&o| file_message_id(dev, ino, fp, 0, o))
            .collect::<Vec<_>>()
    );
    assert_eq!(ids(&got)[1], format!("file:{dev}:{ino}:{fp}:0:5"));
    assert_eq!(fp.to_string().len(), 16);
    for d in &got {
        assert_eq!(d.header("input"), Some(path_str(&log).as_str()));
    }
}

/// With `mtime_header`, every line carries the file's modification time (Unix ms), the
/// reference of the parser's `year = "mtime"` rule; without it, none does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtime_header_carries_the_files_modification_time() {
    let fx = Fixture::new();
    let log = fx.log("archive.log");
    append(&log, b"Dec 31 23:59:59 h a: x\nJan  1 00:00:01 h a: y\n");
    // 2006-01-02T03:04:05.678Z, as an archive copied with its times would have.
    let when = std::time::UNIX_EPOCH + Duration::from_millis(1_136_171_045_678);
    std::fs::File::options()
        .write(true)
        .open(&log)
        .and_then(|f| f.set_modified(when))
        .expect("set mtime");
    let mut cfg = config(&fx, &[path_str(&log)]);
    cfg.mtime_header = true;
    once(fx.broker.clone(), cfg).await.expect("run once");
    let got = fx.take(2).await;
    for d in &got {
        assert_eq!(d.header("mtime"), Some("1136171045678"));
    }
    let other = fx.log("plain.log");
    append(&other, b"x\n");
    once(fx.broker.clone(), config(&fx, &[path_str(&other)]))
        .await
        .expect("run once");
    let got = fx.take(1).await;
    assert_eq!(got[0].header("mtime"), None);
}

const TRACE: &[u8] = b"2026-12-05 04:09:25,123 ERROR [main] c.e.App: boom
java.lang.IllegalStateException: bad state
\tat com.example.App.run(App.java:42)
Caused by: java.io.IOException: disk full
2026-12-05 04:09:26,000 INFO [main] c.e.App: next
";

/// `multiline = auto`: a stack trace is one message, at its first line's offset; in
/// `run_once` the file's last record is complete at its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiline_joins_a_trace_into_one_message_at_its_first_line() {
    let fx = Fixture::new();
    let log = fx.log("app.log");
    append(&log, TRACE);
    let (dev, ino) = identity(&log);
    let fp = fingerprint(&log);
    let mut cfg = config(&fx, &[path_str(&log)]);
    cfg.multiline = ackline_parse::Multiline::Auto;
    let s = once(fx.broker.clone(), cfg).await.expect("once");
    assert_eq!(s.lines, 2, "records published");
    let got = fx.take(2).await;
    let text = std::str::from_utf8(TRACE).unwrap();
    let second = text.find("2026-12-05 04:09:26").unwrap();
    assert_eq!(
        payloads(&got),
        vec![
            TRACE[..second - 1].to_vec(),
            TRACE[second..TRACE.len() - 1].to_vec()
        ]
    );
    assert_eq!(
        ids(&got),
        vec![
            file_message_id(dev, ino, fp, 0, 0),
            file_message_id(dev, ino, fp, 0, second as u64)
        ]
    );
}

/// A Kubernetes CRI line the runtime split (`P`, `P`, `F`) is one message again, the pieces'
/// headers dropped, at the first piece's offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiline_reassembles_cri_partial_lines() {
    let fx = Fixture::new();
    let log = fx.log("pod.log");
    append(
        &log,
        b"2026-12-05T04:09:27.1Z stdout P {\"msg\":\"a very long\n\
          2026-12-05T04:09:27.2Z stdout P  line the runtime\n\
          2026-12-05T04:09:27.3Z stdout F  split\"}\n\
          2026-12-05T04:09:28Z stdout F next\n",
    );
    let (dev, ino) = identity(&log);
    let fp = fingerprint(&log);
    let mut cfg = config(&fx, &[path_str(&log)]);
    cfg.multiline = ackline_parse::Multiline::Auto;
    once(fx.broker.clone(), cfg).await.expect("once");
    let got = fx.take(2).await;
    assert_eq!(
        payloads(&got),
        vec![
            b"2026-12-05T04:09:27.1Z stdout P {\"msg\":\"a very long line the runtime split\"}"
                .to_vec(),
            b"2026-12-05T04:09:28Z stdout F next".to_vec()
        ]
    );
    assert_eq!(ids(&got)[0], file_message_id(dev, ino, fp, 0, 0));
}

/// The position never passes an incomplete record: a run that stops while the last record
/// may still go on leaves it (and its position) for the next run, which publishes it whole,
/// under the same id, with nothing lost or repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiline_record_cut_by_a_stop_is_published_whole_by_the_next_run() {
    let fx = Fixture::new();
    let log = fx.log("app.log");
    let text = std::str::from_utf8(TRACE).unwrap();
    let cut = text.find("Caused by").unwrap();
    append(&log, &TRACE[..cut]);
    let (dev, ino) = identity(&log);
    let fp = fingerprint(&log);
    let mut cfg = config(&fx, &[path_str(&log)]);
    cfg.multiline = ackline_parse::Multiline::Auto;
    // Without `once_publishes_partial`, run_once treats the files as still being written.
    cfg.once_publishes_partial = false;
    let s = once(fx.broker.clone(), cfg.clone()).await.expect("once");
    assert_eq!(s.lines, 0, "the only record may go on: nothing published");
    append(&log, &TRACE[cut..]);
    let s = once(fx.broker.clone(), cfg).await.expect("once again");
    assert_eq!(
        s.lines, 1,
        "the trace is complete now; the last record is held"
    );
    let got = fx.take(1).await;
    let second = text.find("2026-12-05 04:09:26").unwrap();
    assert_eq!(payloads(&got), vec![TRACE[..second - 1].to_vec()]);
    assert_eq!(ids(&got), vec![file_message_id(dev, ino, fp, 0, 0)]);
    assert_eq!(fx.published().await, 1);
}

/// Following a file, the last record is published once the file has not grown for
/// `multiline_timeout` (a later record would also complete it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiline_last_record_is_published_after_the_timeout_when_following() {
    let fx = Fixture::new();
    let log = fx.log("app.log");
    append(
        &log,
        b"2026-12-05 04:09:25,123 ERROR [main] c.e.App: boom\n\tat x.y(Z.java:1)\n",
    );
    let mut cfg = config(&fx, &[path_str(&log)]);
    cfg.multiline = ackline_parse::Multiline::Indented;
    cfg.multiline_timeout = Duration::from_millis(200);
    let input = FileInput::new(fx.broker.clone(), cfg).expect("input");
    let started = std::time::Instant::now();
    let run = follow(input);
    fx.wait_published(1).await;
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "published before the timeout"
    );
    append(
        &log,
        b"2026-12-05 04:09:26,000 INFO [main] c.e.App: next\n\tmore\n",
    );
    fx.wait_published(2).await;
    run.stop().await;
    let got = fx.take(2).await;
    assert_eq!(
        payloads(&got),
        vec![
            b"2026-12-05 04:09:25,123 ERROR [main] c.e.App: boom\n\tat x.y(Z.java:1)".to_vec(),
            b"2026-12-05 04:09:26,000 INFO [main] c.e.App: next\n\tmore".to_vec()
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_mode_can_leave_a_partial_line_for_later() {
    let fx = Fixture::new();
    let log = fx.log("app.log");
    append(&log, b"a\nhalf");
    let mut cfg = config(&fx, &[path_str(&log)]);
    cfg.once_publishes_partial = false;
    once(fx.broker.clone(), cfg.clone()).await.expect("once");
    append(&log, b"-done\n");
    once(fx.broker.clone(), cfg).await.expect("once again");
    let got = fx.take(2).await;
    assert_eq!(payloads(&got), vec![b"a".to_vec(), b"half-done".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_publishes_a_partial_line_only_once_completed() {
    let fx = Fixture::new();
    let log = fx.log("app.log");
    append(&log, b"a\nb");
    let input = FileInput::new(fx.broker.clone(), config(&fx, &[path_str(&log)])).expect("input");
    let run = follow(input);
    fx.wait_published(1).await; // the round that published "a" saw the partial "b"
    append(&log, b"c\nd\n");
    fx.wait_published(3).await;
    run.stop().await;
    let got = fx.take(3).await;
    assert_eq!(
        payloads(&got),
        vec![b"a".to_vec(), b"bc".to_vec(), b"d".to_vec()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_before_commit_republishes_the_same_ids_and_skips_nothing() {
    let fx = Fixture::new();
    let log = fx.log("app.log");
    append(&log, b"l1\nl2\nl3\n");
    let mut cfg = config(&fx, &[path_str(&log)]);
    cfg.batch.max_lines = 2;
    // Save 1 registers the new file (offset 0); save 2, after the first batch is confirmed,
    // "crashes". The second batch was handed to the queue before that failure was known (a
    // drain keeps batches in flight), so both were published; the position stays at 0.
    let store = CrashingStore {
        inner: JsonPositionStore::open(fx.state()).expect("store"),
        saves_ok: AtomicU32::new(1),
    };
    let (_tx, rx) = watch::channel(false);
    let mut input =
        FileInput::with_store(fx.broker.clone(), cfg.clone(), Arc::new(store)).expect("input");
    let err = input.run_once(rx).await.expect_err("the commit fails");
    assert!(matches!(err, InputError::Commit { .. }), "{err}");
    assert_eq!(
        input.positions().files[0].offset,
        9,
        "both batches confirmed, not committed"
    );
    drop(input);
    let saved = JsonPositionStore::open(fx.state())
        .expect("store")
        .load()
        .expect("load")
        .expect("saved");
    assert_eq!(saved.files[0].offset, 0, "the failed commit moved nothing");
    let first = fx.take(3).await;
    assert_eq!(
        payloads(&first),
        vec![b"l1".to_vec(), b"l2".to_vec(), b"l3".to_vec()]
    );

    // Restart: from the committed position (0), the same ids again, in order.
    once(fx.broker.clone(), cfg.clone()).await.expect("restart");
    let second = fx.take(3).await;
    assert_eq!(ids(&second), ids(&first));
    assert_eq!(payloads(&second), payloads(&first));

    // A clean restart publishes nothing; a new line only itself.
    once(fx.broker.clone(), cfg.clone())
        .await
        .expect("clean restart");
    assert_eq!(fx.published().await, 6);
    append(&log, b"l4\n");
    once(fx.broker.clone(), cfg).await.expect("after append");
    let third = fx.take(1).await;
    assert_eq!(payloads(&third), vec![b"l4".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_file_is_json_and_the_state_dir_is_locked() {
    let fx = Fixture::new();
    let log = fx.log("app.log");
    append(&log, b"x\n");
    let cfg = config(&fx, &[path_str(&log)]);
    let (_tx, rx) = watch::channel(false);
    let mut input = FileInput::new(fx.broker.clone(), cfg.clone()).expect("input");
    input.run_once(rx).await.expect("once");
    let second = FileInput::new(fx.broker.clone(), cfg);
    assert!(matches!(second, Err(InputError::StateDirInUse { .. })));
    let text = std::fs::read_to_string(fx.state().join("positions.json")).expect("read");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["version"], 2);
    assert_eq!(v["files"][0]["fingerprint"]["bytes"], 2);
    assert_eq!(v["files"][0]["offset"], 2);
    assert_eq!(v["files"][0]["generation"], 0);
    assert!(!fx.state().join("positions.json.tmp").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_by_rename_finishes_the_old_file_then_reads_the_new_one() {
    let fx = Fixture::new();
    let log = fx.log("app.log");
    append(&log, b"1\n2\n");
    let old = identity(&log);
    let old_fp = fingerprint(&log);
    let input = FileInput::new(fx.broker.clone(), config(&fx, &[path_str(&log)])).expect("input");
    let run = follow(input);
    fx.wait_published(2).await;
    append(&log, b"3\npartial");
    std::fs::rename(&log, fx.log("app.log.1")).expect("rotate");
    append(&log, b"new1\n");
    let new = identity(&log);
    let new_fp = fingerprint(&log);
    fx.wait_published(5).await;
    run.wait("the rotation counted", |s| {
        s.rotations == 1 && s.files_followed == 1
    })
    .await;
    run.stop().await;
    let got = fx.take(5).await;
    assert_eq!(
        payloads(&got),
        vec![
            b"1".to_vec(),
            b"2".to_vec(),
            b"3".to_vec(),
            b"partial".to_vec(),
            b"new1".to_vec()
        ]
    );
    assert_eq!(got[3].id, file_message_id(old.0, old.1, old_fp, 0, 6));
    assert_eq!(got[4].id, file_message_id(new.0, new.1, new_fp, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_while_stopped_is_finished_on_restart() {
    let fx = Fixture::new();
    let log = fx.log("app.log");
    append(&log, b"1\n");
    let cfg = config(&fx, &[path_str(&log)]);
    once(fx.broker.clone(), cfg.clone()).await.expect("once");
    append(&log, b"2\n");
    std::fs::rename(&log, fx.log("app.log.1")).expect("rotate");
    append(&log, b"3\n");
    let s = once(fx.broker.clone(), cfg).await.expect("restart");
    assert_eq!(s.rotations, 1);
    let got = fx.take(3).await;
    assert_eq!(
        payloads(&got),
        vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_restarts_at_zero_under_a_new_generation() {
    let fx = Fixture::new();
    let log = fx.log("app.log");
    append(&log, b"aaa\nbbb\n");
    let (dev, ino) = identity(&log);
    let fp0 = fingerprint(&log);
    let input = FileInput::new(fx.broker.clone(), config(&fx, &[path_str(&log)])).expect("input");
    let run = follow(input);
    fx.wait_published(2).await;
    {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .expect("open");
        f.set_len(0).expect("truncate");
    }
    append(&log, b"c\n");
    fx.wait_published(3).await;
    run.wait("the truncation counted", |s| s.truncations == 1)
        .await;
    let input = run.stop().await;
    let got = fx.take(3).await;
    assert_eq!(
        payloads(&got),
        vec![b"aaa".to_vec(), b"bbb".to_vec(), b"c".to_vec()]
    );
    assert_eq!(got[0].id, file_message_id(dev, ino, fp0, 0, 0));
    assert_eq!(
        got[2].id,
        file_message_id(dev, ino, fingerprint(&log), 1, 0)
    );
    let p = input.positions();
    assert_eq!((p.files[0].generation, p.files[0].offset), (1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_file_is_read_to_its_end_and_dropped() {
    let fx = Fixture::new();
    let log = fx.log("app.log");
    append(&log, b"x\ny");
    let input = FileInput::new(fx.broker.clone(), config(&fx, &[path_str(&log)])).expect("input");
    let run = follow(input);
    fx.wait_published(1).await;
    std::fs::remove_file(&log).expect("delete");
    fx.wait_published(2).await;
    run.wait("the deletion counted", |s| {
        s.deletions == 1 && s.files_followed == 0
    })
    .await;
    let input = run.stop().await;
    assert!(input.positions().files.is_empty());
    assert_eq!(input.positions().retired.len(), 1);
    let got = fx.take(2).await;
    assert_eq!(payloads(&got), vec![b"x".to_vec(), b"y".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_glob_picks_up_new_matching_files_only() {
    let fx = Fixture::new();
    append(&fx.log("a.log"), b"a\n");
    let pattern = path_str(&fx.logs().join("*.log"));
    let input = FileInput::new(fx.broker.clone(), config(&fx, &[pattern])).expect("input");
    let run = follow(input);
    fx.wait_published(1).await;
    append(&fx.log("c.txt"), b"not matched\n");
    append(&fx.log("b.log"), b"b\n");
    fx.wait_published(2).await;
    run.wait("two files followed", |s| s.files_followed == 2)
        .await;
    run.stop().await;
    let got = fx.take(2).await;
    assert_eq!(payloads(&got), vec![b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(
        got[1].header("input"),
        Some(path_str(&fx.log("b.log")).as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_at_end_skips_old_lines_but_reads_later_files_whole() {
    let fx = Fixture::new();
    append(&fx.log("a.log"), b"old\n");
    let mut cfg = config(&fx, &[path_str(&fx.logs().join("*.log"))]);
    cfg.start_at = StartAt::End;
    let input = FileInput::new(fx.broker.clone(), cfg).expect("input");
    let run = follow(input);
    run.wait("the first scan", |s| s.files_seen == 1).await;
    append(&fx.log("a.log"), b"new\n");
    append(&fx.log("b.log"), b"b1\n");
    fx.wait_published(2).await;
    run.stop().await;
    let mut got = payloads(&fx.take(2).await);
    got.sort();
    assert_eq!(got, vec![b"b1".to_vec(), b"new".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10_mb_line_is_published_in_parts() {
    let fx = Fixture::new();
    let log = fx.log("big.log");
    let big: Vec<u8> = (0..10_000_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let mut content = b"before\n".to_vec();
    content.extend_from_slice(&big);
    content.extend_from_slice(b"\r\nafter\n");
    append(&log, &content);
    let (dev, ino) = identity(&log);
    let fp = fingerprint(&log);
    let s = once(fx.broker.clone(), config(&fx, &[path_str(&log)]))
        .await
        .expect("once");
    assert_eq!((s.lines, s.messages, s.long_lines), (3, 4, 1));
    let got = fx.take(4).await;
    assert_eq!(got[0].payload, b"before");
    assert_eq!(got[3].payload, b"after");
    let part = 8 << 20;
    assert_eq!(got[1].header("part"), Some("1/2"));
    assert_eq!(got[2].header("part"), Some("2/2"));
    assert_eq!(got[1].header("line_offset"), Some("7"));
    assert_eq!(got[2].header("line_offset"), Some("7"));
    assert_eq!(got[1].id, file_message_id(dev, ino, fp, 0, 7));
    assert_eq!(got[2].id, file_message_id(dev, ino, fp, 0, 7 + part as u64));
    assert_eq!(got[1].payload.len(), part);
    let mut whole = got[1].payload.clone();
    whole.extend_from_slice(&got[2].payload);
    assert!(whole == big, "the parts reassemble the line");
    assert_eq!(
        got[3].id,
        file_message_id(dev, ino, fp, 0, 7 + 10_000_000 + 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_and_nul_bytes_are_published_as_they_are() {
    let fx = Fixture::new();
    let log = fx.log("bin.log");
    let odd = vec![0xff, 0xfe, 0x00, b'a', 0x80, 0x00, b'\r', b'z'];
    let mut content = odd.clone();
    content.push(b'\n');
    content.extend_from_slice(b"\0\0\n");
    append(&log, &content);
    once(fx.broker.clone(), config(&fx, &[path_str(&log)]))
        .await
        .expect("once");
    let got = fx.take(2).await;
    assert_eq!(payloads(&got), vec![odd, b"\0\0".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_queue_refuses_stops_the_input_without_losing_it() {
    let fx = Fixture::with(QueueOptions {
        max_message_bytes: 1024,
        ..Default::default()
    });
    let log = fx.log("app.log");
    let mut content = b"ok\n".to_vec();
    content.extend(vec![b'x'; 2000]);
    content.extend_from_slice(b"\nlater\n");
    append(&log, &content);
    let mut cfg = config(&fx, &[path_str(&log)]);
    cfg.max_line_bytes = 4096; // above the queue's limit: a configuration mistake
    let err = once(fx.broker.clone(), cfg.clone())
        .await
        .expect_err("refused");
    match &err {
        InputError::Refused { input, at, .. } => {
            assert_eq!(input, &path_str(&log));
            assert_eq!(*at, At::Offset(3));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("byte offset 3"), "{err}");
    // "ok" was published alone before, and again (same id) by the second run: the queue
    // keeps one copy. The refused line was not skipped: with a smaller max_line_bytes it is
    // published in parts, then the rest.
    cfg.max_line_bytes = 512;
    once(fx.broker.clone(), cfg)
        .await
        .expect("after fixing the limit");
    let got = fx.take(1 + 4 + 1).await;
    let texts: Vec<usize> = got.iter().map(|d| d.payload.len()).collect();
    assert_eq!(texts, vec![2, 512, 512, 512, 464, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_and_full_are_retried_and_the_position_never_runs_ahead() {
    let fx = Fixture::new();
    let log = fx.log("app.log");
    let content = b"a\nbb\nccc\ndddd\n".to_vec();
    append(&log, &content);
    let flaky = Arc::new(FlakyBroker::new(
        (*fx.broker).clone(),
        vec![unavailable(), full(), unavailable()],
    ));
    let mut cfg = config(&fx, &[path_str(&log)]);
    cfg.batch.max_lines = 2;
    cfg.retry.initial = Duration::from_millis(1);
    cfg.retry.max = Duration::from_millis(10);
    let store = Arc::new(CheckingStore::never_ahead(
        fx.state(),
        flaky.clone(),
        content.clone(),
    ));
    let (_tx, rx) = watch::channel(false);
    let mut input =
        FileInput::with_store(flaky.clone(), cfg, store.clone() as Arc<dyn PositionStore>)
            .expect("input");
    let s = input.run_once(rx).await.expect("once");
    assert_eq!(s.retries, 3);
    assert_eq!(s.lines, 4);
    assert!(store.complaints.lock().expect("lock").is_empty());
    let offsets = store.saved_offsets();
    assert_eq!(offsets, vec![0, 5, 14]);
    assert_eq!(flaky.attempts.load(Ordering::SeqCst), 5);
    let got = fx.take(4).await;
    assert_eq!(payloads(&got)[3], b"dddd");
}

/// A drain keeps several batches in flight: they reach the queue in file order, the position
/// never covers a batch before it is confirmed, and position commits are fewer than batches
/// (coalesced), the last one at the end of the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_in_flight_keep_file_order_and_commits_never_run_ahead() {
    let fx = Fixture::new();
    let log = fx.log("app.log");
    let lines: Vec<String> = (0..40).map(|i| format!("line {i:02}")).collect();
    let content: Vec<u8> = lines
        .iter()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect();
    append(&log, &content);
    let flaky = Arc::new(FlakyBroker::new((*fx.broker).clone(), Vec::new()));
    let mut cfg = config(&fx, &[path_str(&log)]);
    cfg.batch.max_lines = 2;
    let store = Arc::new(CheckingStore::never_ahead(
        fx.state(),
        flaky.clone(),
        content.clone(),
    ));
    let (_tx, rx) = watch::channel(false);
    let mut input =
        FileInput::with_store(flaky.clone(), cfg, store.clone() as Arc<dyn PositionStore>)
            .expect("input");
    let s = input.run_once(rx).await.expect("once");
    assert_eq!(s.lines, 40);
    assert!(store.complaints.lock().expect("lock").is_empty());
    assert!(
        flaky.max_in_flight.load(Ordering::SeqCst) >= 2,
        "batches overlapped: at most {} in flight",
        flaky.max_in_flight.load(Ordering::SeqCst)
    );
    let offsets = store.saved_offsets();
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{offsets:?}");
    assert_eq!(offsets.last().copied(), Some(content.len() as u64));
    assert!(offsets.len() < 20, "20 batches, {} commits", offsets.len());
    let got = fx.take(40).await;
    let want: Vec<Vec<u8>> = lines.iter().map(|l| l.clone().into_bytes()).collect();
    assert_eq!(payloads(&got), want, "file order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_while_the_queue_refuses_keeps_the_lines_for_the_next_run() {
    let fx = Fixture::new();
    let log = fx.log("app.log");
    append(&log, b"1\n2\n");
    let flaky = Arc::new(FlakyBroker::new((*fx.broker).clone(), Vec::new()));
    *flaky.forever.lock().expect("lock") = Some(full());
    let mut cfg = config(&fx, &[path_str(&log)]);
    cfg.retry.initial = Duration::from_millis(1);
    cfg.retry.max = Duration::from_millis(5);
    let input = FileInput::new(flaky.clone(), cfg.clone()).expect("input");
    let run = follow(input);
    run.wait("retries", |s| s.retries >= 3).await;
    let input = run.stop().await;
    assert_eq!(input.positions().files[0].offset, 0);
    drop(input);
    assert_eq!(fx.published().await, 0);
    once(fx.broker.clone(), cfg).await.expect("next run");
    assert_eq!(
        payloads(&fx.take(2).await),
        vec![b"1".to_vec(), b"2".to_vec()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_broker_error_names_the_file_and_offset() {
    let fx = Fixture::new();
    let log = fx.log("app.log");
    append(&log, b"1\n2\n");
    let flaky = Arc::new(FlakyBroker::new(
        (*fx.broker).clone(),
        vec![ackline_broker::BrokerError::Fatal {
            backend: "flaky",
            reason: "disk gone".into(),
        }],
    ));
    let err = once(flaky, config(&fx, &[path_str(&log)]))
        .await
        .expect_err("fatal");
    let text = err.to_string();
    assert!(
        text.contains(&path_str(&log)) && text.contains("byte offset 0"),
        "{text}"
    );
    assert!(matches!(
        err,
        InputError::Publish {
            at: At::Offset(0),
            ..
        }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_named() {
    let fx = Fixture::new();
    let mut cfg = config(&fx, &[]);
    assert!(matches!(
        FileInput::new(fx.broker.clone(), cfg.clone()),
        Err(InputError::Config { field: "paths", .. })
    ));
    cfg.paths = vec!["/tmp/[unclosed".into()];
    assert!(matches!(
        FileInput::new(fx.broker.clone(), cfg),
        Err(InputError::Pattern { .. })
    ));
}

/// Groups: each file's records are cut by its group's multi-line rule and its messages carry
/// its group's headers (and mtime when the group asks); the default group's carry none. A file
/// matched by a later group too keeps the first group's settings when they are equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_group_joins_and_tags_its_own_files() {
    let fx = Fixture::new();
    let plain = fx.log("plain.log");
    append(&plain, b"a\n  b\n");
    let trace = fx.log("trace.log");
    append(&trace, TRACE);
    let archive = fx.log("archive.log.1");
    append(&archive, b"x\n  y\n");
    // 2006-01-02T03:04:05.678Z
    std::fs::File::options()
        .write(true)
        .open(&archive)
        .and_then(|f| {
            f.set_modified(std::time::UNIX_EPOCH + Duration::from_millis(1_136_171_045_678))
        })
        .expect("set mtime");
    let mut cfg = config(&fx, &[path_str(&plain)]);
    let mut traces = FileGroup::new("traces", vec![path_str(&fx.logs().join("trace*"))]);
    traces.multiline = ackline_parse::Multiline::Auto;
    traces.headers = vec![("format".into(), "log4j".into())];
    let mut old = FileGroup::new("old", vec![path_str(&fx.logs().join("*.1"))]);
    old.mtime_header = true;
    old.headers = vec![("year".into(), "mtime".into())];
    // Matches plain.log too, with the default group's settings: no conflict, default first.
    let same = FileGroup::new("same", vec![path_str(&fx.logs().join("plain*"))]);
    cfg.groups = vec![traces, old, same];
    once(fx.broker.clone(), cfg).await.expect("once");
    let got = fx.take(2 + 2 + 2).await;
    let of = |p: &std::path::Path| -> Vec<&ackline_broker::Delivery> {
        got.iter()
            .filter(|d| d.header("input") == Some(path_str(p).as_str()))
            .collect()
    };
    let plain_msgs = of(&plain);
    assert_eq!(
        plain_msgs.len(),
        2,
        "no multi-line rule in the default group"
    );
    for d in &plain_msgs {
        assert_eq!(d.headers.len(), 1, "{:?}", d.headers);
    }
    let trace_msgs = of(&trace);
    assert_eq!(trace_msgs.len(), 2, "the trace joined into one record");
    assert!(
        trace_msgs[0]
            .payload
            .ends_with(b"Caused by: java.io.IOException: disk full")
    );
    for d in &trace_msgs {
        assert_eq!(d.header("format"), Some("log4j"));
        assert_eq!(d.header("mtime"), None);
    }
    let old_msgs = of(&archive);
    assert_eq!(old_msgs.len(), 2, "no multi-line rule in the old group");
    for d in &old_msgs {
        assert_eq!(d.header("year"), Some("mtime"));
        assert_eq!(d.header("mtime"), Some("1136171045678"));
        assert_eq!(d.header("format"), None);
    }
}

/// A glob's `*` stays within its directory: `logs/*.log` (the default group) and
/// `logs/sub/*.log` (a group with other settings) do not both match `logs/sub/x.log`, so each
/// file goes to its own group without a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_star_does_not_cross_directories_between_groups() {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.logs().join("sub")).expect("sub dir");
    append(&fx.log("a.log"), b"top\n");
    append(&fx.logs().join("sub/x.log"), b"nested\n");
    let mut cfg = config(&fx, &[path_str(&fx.logs().join("*.log"))]);
    let mut sub = FileGroup::new("sub", vec![path_str(&fx.logs().join("sub/*.log"))]);
    sub.headers = vec![("timezone".into(), "+02:00".into())];
    cfg.groups = vec![sub];
    once(fx.broker.clone(), cfg).await.expect("no conflict");
    let got = fx.take(2).await;
    let top = got.iter().find(|d| d.payload == b"top").expect("top");
    assert_eq!(top.header("timezone"), None);
    let nested = got.iter().find(|d| d.payload == b"nested").expect("nested");
    assert_eq!(nested.header("timezone"), Some("+02:00"));
}

/// A file matched by two groups whose settings differ is refused with both groups named, and
/// nothing of it is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_of_two_groups_with_different_settings_is_refused() {
    let fx = Fixture::new();
    let log = fx.log("app.log");
    append(&log, b"one\n");
    let mut cfg = config(&fx, &[]);
    let a = FileGroup::new("a", vec![path_str(&fx.logs().join("*.log"))]);
    let mut b = FileGroup::new("b", vec![path_str(&fx.logs().join("app.*"))]);
    b.headers = vec![("timezone".into(), "+02:00".into())];
    cfg.groups = vec![a, b];
    match once(fx.broker.clone(), cfg.clone()).await {
        Err(e @ InputError::GroupConflict { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("app.log is matched by group a and by group b"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fx.published().await, 0);
    // A group without paths is a configuration error.
    cfg.groups = vec![FileGroup::new("empty", vec![])];
    assert!(matches!(
        FileInput::new(fx.broker.clone(), cfg),
        Err(InputError::Config {
            field: "groups",
            ..
        })
    ));
}
