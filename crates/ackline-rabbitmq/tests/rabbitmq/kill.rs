//! A worker PROCESS killed with SIGKILL mid-batch loses nothing: RabbitMQ requeues its
//! deliveries when its connection drops, they come back with attempt + 1, and after a restart
//! every message is stored exactly once (the store is idempotent by id).
//!
//! The child is this test executable itself, run with `ACKLINE_RABBIT_CHILD` set: then the
//! `child_worker` test acts as the worker (and is a no-op otherwise).

use std::time::Duration;

use ackline_broker::{Broker, DeadLetters};
use ackline_rabbitmq::RabbitBroker;

use crate::common;

const CHILD: &str = "ACKLINE_RABBIT_CHILD";
const N: usize = 2000;

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
    let broker = RabbitBroker::connect(&url, &queue, common::options(5, None))
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
    let opts = common::options(5, None);
    cleanup.add(&queue, &opts);
    let broker = RabbitBroker::connect(&url, &queue, opts).await.unwrap();
    for chunk in (0..N).step_by(200) {
        broker
            .publish(common::worker::lines("k", chunk..chunk + 200))
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let (db, log) = (dir.path().join("store.db"), dir.path().join("attempts.log"));

    let mut first = common::worker::spawn_child(CHILD, &url, &queue, &db, &log);
    let before = common::worker::wait_stored(&db, 300, Duration::from_secs(60)).await;
    first.kill(); // SIGKILL
    let at_kill = common::worker::stored(&db).await;
    assert!(
        (300..N as u64).contains(&at_kill),
        "the kill must land mid-run: {before} then {at_kill} of {N} stored"
    );
    let seen_by_first = common::worker::attempts(&log).len();

    let mut second = common::worker::spawn_child(CHILD, &url, &queue, &db, &log);
    let stored = common::worker::wait_stored(&db, N as u64, Duration::from_secs(120)).await;
    // Every settlement applied while the second worker still runs: its last acks follow its
    // last commit, so killing it first could leave them unsent (and their messages requeued).
    let st = common::worker::settled(&broker, Duration::from_secs(30)).await;
    second.kill();

    assert_eq!(
        stored, N as u64,
        "every message stored once (ids are unique)"
    );
    let log = common::worker::attempts(&log);
    let redelivered: Vec<_> = log[seen_by_first..]
        .iter()
        .filter(|(_, a, _)| *a == 2)
        .collect();
    assert!(
        !redelivered.is_empty(),
        "the killed worker's deliveries came back with attempt 2"
    );
    assert!(log.iter().all(|(_, a, _)| *a <= 2), "no attempt beyond 2");
    assert!(broker.dlq_list(None, 10).await.unwrap().is_empty());
    assert_eq!(st.pending, 0, "{st:?}");
    println!(
        "killed at {at_kill}/{N} stored; {} deliveries came back with attempt 2",
        redelivered.len()
    );
}
