//! StdinInput against the embedded queue.

use std::sync::Arc;
use std::time::Duration;

use ackline_input::{At, InputError, StdinConfig, StdinInput, stdin_message_id};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_lines_get_run_ids_headers_and_exact_payloads() {
    let fx = Fixture::new();
    let input = StdinInput::new(fx.broker.clone(), StdinConfig::default()).expect("input");
    let (_tx, rx) = watch::channel(false);
    let data: &[u8] = b"a\r\n\n\xff\x00b\nlast";
    let s = input.run(data, rx).await.expect("run");
    assert_eq!(s.lines, 4);
    let got = fx.take(4).await;
    assert_eq!(
        payloads(&got),
        vec![
            b"a".to_vec(),
            b"".to_vec(),
            b"\xff\x00b".to_vec(),
            b"last".to_vec()
        ]
    );
    let run = input.run_id().to_string();
    assert_eq!(
        ids(&got),
        (1..=4)
            .map(|n| stdin_message_id(&run, n))
            .collect::<Vec<_>>()
    );
    assert!(got.iter().all(|d| d.header("input") == Some("stdin")));
}

/// `multiline = auto` on stdin: a trace is one message whose id is its first line's number;
/// the stream's last record is published at its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_multiline_records_take_their_first_lines_id() {
    let fx = Fixture::new();
    let cfg = StdinConfig {
        multiline: ackline_parse::Multiline::Auto,
        ..Default::default()
    };
    let input = StdinInput::new(fx.broker.clone(), cfg).expect("input");
    let (_tx, rx) = watch::channel(false);
    let data: &[u8] = b"2026-12-05 04:09:25,123 ERROR [main] c.e.App: boom\n\
        java.lang.IllegalStateException: bad\n\
        \tat x.y(Z.java:1)\n\
        2026-12-05 04:09:26,000 INFO [main] c.e.App: next\n\
        \tmore";
    let s = input.run(data, rx).await.expect("run");
    assert_eq!(s.lines, 2);
    let got = fx.take(2).await;
    assert_eq!(
        payloads(&got),
        vec![
            b"2026-12-05 04:09:25,123 ERROR [main] c.e.App: boom\njava.lang.IllegalStateException: bad\n\tat x.y(Z.java:1)".to_vec(),
            b"2026-12-05 04:09:26,000 INFO [main] c.e.App: next\n\tmore".to_vec(),
        ]
    );
    let run = input.run_id().to_string();
    assert_eq!(
        ids(&got),
        vec![stdin_message_id(&run, 1), stdin_message_id(&run, 4)]
    );
}

/// A quiet stream publishes its open record after `multiline_timeout`, without waiting for
/// the end of the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_multiline_record_is_published_when_the_stream_is_quiet() {
    let fx = Fixture::new();
    let cfg = StdinConfig {
        multiline: ackline_parse::Multiline::Indented,
        multiline_timeout: Duration::from_millis(100),
        ..Default::default()
    };
    let input = Arc::new(StdinInput::new(fx.broker.clone(), cfg).expect("input"));
    let (mut writer, reader) = tokio::io::duplex(1024);
    let (tx, rx) = watch::channel(false);
    let task = {
        let input = input.clone();
        tokio::spawn(async move { input.run(reader, rx).await })
    };
    writer
        .write_all(b"head\n\tcontinued\n")
        .await
        .expect("write");
    fx.wait_published(1).await; // the stream stays open: only the timeout publishes it
    let got = fx.take(1).await;
    assert_eq!(payloads(&got), vec![b"head\n\tcontinued".to_vec()]);
    tx.send(true).expect("stop");
    drop(writer);
    task.await.expect("join").expect("run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stdin_run_has_its_own_ids() {
    let fx = Fixture::new();
    let (_tx, rx) = watch::channel(false);
    let a = StdinInput::new(fx.broker.clone(), StdinConfig::default()).expect("input");
    let b = StdinInput::new(fx.broker.clone(), StdinConfig::default()).expect("input");
    a.run(&b"same\n"[..], rx.clone()).await.expect("run a");
    b.run(&b"same\n"[..], rx).await.expect("run b");
    let got = fx.take(2).await;
    assert_ne!(got[0].id, got[1].id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_stdin_line_is_published_in_parts() {
    let fx = Fixture::new();
    let cfg = StdinConfig {
        max_line_bytes: 1000,
        ..Default::default()
    };
    let input = StdinInput::new(fx.broker.clone(), cfg).expect("input");
    let (_tx, rx) = watch::channel(false);
    let mut data = b"x\n".to_vec();
    data.extend(vec![b'L'; 2500]);
    data.extend_from_slice(b"\ny\n");
    let s = input.run(&data[..], rx).await.expect("run");
    assert_eq!((s.lines, s.messages, s.long_lines), (3, 5, 1));
    let got = fx.take(5).await;
    let run = input.run_id();
    assert_eq!(got[1].id, format!("{}:1", stdin_message_id(run, 2)));
    assert_eq!(got[3].id, format!("{}:3", stdin_message_id(run, 2)));
    assert_eq!(got[3].header("part"), Some("3/3"));
    assert_eq!(got[3].header("line_offset"), Some("2"));
    assert_eq!(got[3].payload.len(), 500);
    assert_eq!(got[4].id, stdin_message_id(run, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_stream_is_flushed_without_waiting_for_a_full_batch() {
    let fx = Fixture::new();
    let cfg = StdinConfig {
        flush_after: Duration::from_millis(20),
        ..Default::default()
    };
    let input = Arc::new(StdinInput::new(fx.broker.clone(), cfg).expect("input"));
    let (mut w, r) = tokio::io::duplex(1024);
    let (_tx, rx) = watch::channel(false);
    let task = {
        let input = input.clone();
        tokio::spawn(async move { input.run(r, rx).await })
    };
    w.write_all(b"first\n").await.expect("write");
    fx.wait_published(1).await; // the stream is still open
    w.write_all(b"second\n").await.expect("write");
    drop(w);
    task.await.expect("join").expect("run");
    assert_eq!(
        payloads(&fx.take(2).await),
        vec![b"first".to_vec(), b"second".to_vec()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_retries_a_full_queue_then_publishes_everything() {
    let fx = Fixture::new();
    let flaky = Arc::new(FlakyBroker::new(
        (*fx.broker).clone(),
        vec![full(), unavailable()],
    ));
    let mut cfg = StdinConfig::default();
    cfg.retry.initial = Duration::from_millis(1);
    let input = StdinInput::new(flaky, cfg).expect("input");
    let (_tx, rx) = watch::channel(false);
    let s = input.run(&b"1\n2\n"[..], rx).await.expect("run");
    assert_eq!((s.retries, s.lines), (2, 2));
    assert_eq!(
        payloads(&fx.take(2).await),
        vec![b"1".to_vec(), b"2".to_vec()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_stdin_while_the_queue_refuses_reports_the_unpublished_lines() {
    let fx = Fixture::new();
    let flaky = Arc::new(FlakyBroker::new((*fx.broker).clone(), Vec::new()));
    *flaky.forever.lock().expect("lock") = Some(unavailable());
    let mut cfg = StdinConfig::default();
    cfg.retry.initial = Duration::from_millis(1);
    cfg.retry.max = Duration::from_millis(5);
    let input = Arc::new(StdinInput::new(flaky, cfg).expect("input"));
    let counters = input.counters();
    let (tx, rx) = watch::channel(false);
    let task = {
        let input = input.clone();
        tokio::spawn(async move { input.run(&b"1\n2\n3\n"[..], rx).await })
    };
    wait_until("retries", || {
        let n = counters.snapshot().retries;
        async move { n >= 2 }
    })
    .await;
    tx.send(true).expect("stop");
    let err = task.await.expect("join").expect_err("unpublished lines");
    assert!(
        matches!(
            err,
            InputError::Unpublished {
                from: At::Line(1),
                messages: 3,
                ..
            }
        ),
        "{err}"
    );
}
