//! A worker PROCESS killed with SIGKILL while holding deliveries loses nothing: Redis keeps
//! them in the dead consumer's pending entries list, and the other worker process takes them
//! over with `XAUTOCLAIM` once they are idle for its lease; they come back with attempt 2
//! within lease + poll interval of the kill, and every message is stored exactly once.
//!
//! The children are this test executable itself, run with `ACKLINE_REDIS_CHILD` set: then the
//! `child_worker` test acts as the worker (and is a no-op otherwise).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ackline_broker::{Broker, DeadLetters};
use ackline_redis::RedisBroker;

use crate::common::{self, Persistence, Server};
use crate::worker;

const CHILD: &str = "ACKLINE_REDIS_CHILD";
const N: usize = 2000;
const LEASE: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_worker() {
    let Some(spec) = worker::child_spec(CHILD) else {
        return; // not the child: nothing to do
    };
    let worker::ChildSpec {
        url,
        queue,
        db,
        log,
    } = spec;
    let broker = RedisBroker::connect(&url, &queue, common::options(5, None))
        .await
        .expect("child connect");
    let (_tx, rx) = tokio::sync::watch::channel(false);
    worker::run(broker, db, log, Duration::from_millis(2), LEASE, rx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_worker_deliveries_come_back_within_the_lease_and_are_stored_once() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let Some(server) = Server::start(Persistence::AofAlways) else {
        return;
    };
    let url = server.url();
    let queue = common::unique_queue("kill");
    let opts = common::options(5, None);
    let poll = opts.poll_interval;
    let broker = RedisBroker::connect(&url, &queue, opts).await.unwrap();
    for chunk in (0..N).step_by(200) {
        broker
            .publish(worker::lines("k", chunk..chunk + 200))
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));

    let mut a = worker::spawn_child(CHILD, &url, &queue, &db, &log_a);
    let mut b = worker::spawn_child(CHILD, &url, &queue, &db, &log_b);
    let before = worker::wait_stored(&db, 300, Duration::from_secs(60)).await;
    // The survivor must be alive to take the killed worker's deliveries over.
    assert!(
        b.running(),
        "worker b exited before the kill (its stderr above says why)"
    );
    a.kill(); // SIGKILL
    let killed_at = common::now_ms();
    let at_kill = worker::stored(&db).await;
    assert!(
        (300..N as u64).contains(&at_kill),
        "the kill must land mid-run: {before} then {at_kill} of {N} stored"
    );

    let stored = worker::wait_stored(&db, N as u64, Duration::from_secs(120)).await;
    // Every settlement applied: nothing pending, nothing in flight.
    let stats = worker::settled(&broker, Duration::from_secs(30)).await;
    b.kill();

    assert_eq!(
        stored, N as u64,
        "every message stored once (ids are unique)"
    );
    assert_eq!(stats.pending, 0, "{stats:?}");
    assert!(broker.dlq_list(None, 10).await.unwrap().is_empty());
    let seen_b = worker::attempts(&log_b);
    let back: Vec<_> = seen_b.iter().filter(|(_, a, _)| *a == 2).collect();
    assert!(
        !back.is_empty(),
        "the killed worker's deliveries came back with attempt 2"
    );
    let all = worker::attempts(&log_a)
        .into_iter()
        .chain(seen_b.iter().cloned());
    assert!(
        all.into_iter().all(|(_, a, _)| a <= 2),
        "no attempt beyond 2"
    );
    let latest = back.iter().map(|(_, _, t)| *t).max().unwrap_or(0);
    let bound = (LEASE + poll).as_millis() as u64;
    // Slack for a loaded 2-core machine: the claim runs in a receive loop that also processes.
    let slack = 1500;
    assert!(
        latest.saturating_sub(killed_at) <= bound + slack,
        "the last redelivery came {} ms after the kill (lease + poll = {bound} ms)",
        latest.saturating_sub(killed_at)
    );
    println!(
        "killed at {at_kill}/{N} stored; {} deliveries came back with attempt 2, the last {} ms \
         after the kill (lease {} ms + poll {} ms)",
        back.len(),
        latest.saturating_sub(killed_at),
        LEASE.as_millis(),
        poll.as_millis()
    );
    drop(server);
}
