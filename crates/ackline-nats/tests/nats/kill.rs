//! A worker PROCESS killed with SIGKILL mid-batch loses nothing: its deliveries come back
//! after the consumer's `AckWait` (JetStream does not notice the dead connection), with
//! attempt 2, and after a restart every message is stored exactly once (the store is
//! idempotent by id).
//!
//! The child is this test executable itself, run with `ACKLINE_NATS_CHILD` set: then the
//! `child_worker` test acts as the worker (and is a no-op otherwise).

use std::time::{Duration, Instant};

use ackline_broker::{Broker, DeadLetters};
use ackline_nats::{NatsBroker, NatsOptions};

use crate::common;

const CHILD: &str = "ACKLINE_NATS_CHILD";
const N: usize = 2000;
/// The consumer's AckWait here: how long a dead worker's deliveries stay away.
const ACK_WAIT: Duration = Duration::from_secs(3);

fn options() -> NatsOptions {
    NatsOptions {
        ack_wait: ACK_WAIT,
        ..common::options(5, None)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_worker() {
    let Some(spec) = common::worker::child_spec(CHILD) else {
        return; // not the child: nothing to do
    };
    let common::worker::ChildSpec {
        url,
        queue,
        db,
        log,
    } = spec;
    let broker = NatsBroker::connect(&url, &queue, options())
        .await
        .expect("child connect");
    let (_tx, rx) = tokio::sync::watch::channel(false);
    common::worker::run(
        broker,
        db,
        log,
        Duration::from_millis(2),
        common::worker::LONG_LEASE,
        rx,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_batch_loses_nothing_and_stores_once() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let Some(url) = common::reachable() else {
        return;
    };
    let cleanup = common::Cleanup::default();
    let queue = common::unique_queue("kill");
    cleanup.add(&url, &queue, &options());
    let broker = NatsBroker::connect(&url, &queue, options()).await.unwrap();
    for chunk in (0..N).step_by(200) {
        broker
            .publish(common::worker::lines("k", chunk..chunk + 200))
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let (db, log) = (dir.path().join("store.db"), dir.path().join("attempts.log"));

    let mut first = common::worker::spawn_child(CHILD, &url, &queue, &db, &log);
    common::wait_until(
        "the first worker stores 300",
        Duration::from_secs(60),
        || {
            let db = db.clone();
            async move { common::worker::stored(&db).await >= 300 }
        },
    )
    .await;
    first.kill(); // SIGKILL
    let killed_at = Instant::now();
    let at_kill = common::worker::stored(&db).await;
    assert!(
        (300..N as u64).contains(&at_kill),
        "the kill must land mid-run: {at_kill} of {N} stored"
    );
    let seen_by_first = common::worker::attempts(&log).len();
    // What the dead worker held is still pending on the server until AckWait.
    let held = broker.stats().await.unwrap().in_flight;

    let mut second = common::worker::spawn_child(CHILD, &url, &queue, &db, &log);
    common::wait_until("every message stored", Duration::from_secs(120), || {
        let db = db.clone();
        async move { common::worker::stored(&db).await >= N as u64 }
    })
    .await;
    let all_stored_after = killed_at.elapsed();
    // Every settlement applied while the second worker still runs: its last acks follow its
    // last commit, so killing it first could leave them unsent (and their messages pending).
    common::wait_until("nothing pending", Duration::from_secs(30), || {
        let b = broker.clone();
        async move { b.stats().await.unwrap().pending == 0 }
    })
    .await;
    second.kill();

    assert_eq!(
        common::worker::stored(&db).await,
        N as u64,
        "every message stored once (ids are unique)"
    );
    let log = common::worker::attempts(&log);
    let redelivered: Vec<_> = log[seen_by_first..]
        .iter()
        .filter(|(_, a, _)| *a == 2)
        .collect();
    assert!(
        held > 0 && !redelivered.is_empty(),
        "the killed worker's deliveries ({held} held) came back with attempt 2"
    );
    assert!(
        all_stored_after >= ACK_WAIT,
        "they came back only after AckWait"
    );
    assert!(log.iter().all(|(_, a, _)| *a <= 2), "no attempt beyond 2");
    assert!(broker.dlq_list(None, 10).await.unwrap().is_empty());
    println!(
        "killed at {at_kill}/{N} stored with {held} held; {} deliveries came back with attempt 2; \
         all stored {all_stored_after:?} after the kill",
        redelivered.len()
    );
}
