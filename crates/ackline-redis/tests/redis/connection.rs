//! The server drops every connection of a running worker (`CLIENT KILL TYPE normal SKIPME
//! yes`, twice, mid-run): its connections come back by themselves (redis-rs' connection
//! manager), the publisher publishes again, settlements lost with a connection are released
//! and redelivered, and every message is stored exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use ackline_broker::{Broker, DeadLetters};
use ackline_redis::RedisBroker;

use crate::common::{self, Persistence, Server};
use crate::worker;

/// Published before the first kill; `N` in all.
const FIRST: usize = 3000;
const N: usize = 4000;

/// Kills every client connection but the killer's own; returns how many.
async fn kill_clients(server: &Server) -> i64 {
    let mut c = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut c)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill_mid_run_reconnects_without_loss_or_duplicates() {
    let Some(server) = Server::start(Persistence::AofAlways) else {
        return;
    };
    let queue = common::unique_queue("connloss");
    let lease = Duration::from_secs(30);
    let broker = RedisBroker::connect(&server.url(), &queue, common::options(5, None))
        .await
        .unwrap();
    broker.publish(worker::lines("c", 0..FIRST)).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (db, log) = (dir.path().join("store.db"), dir.path().join("attempts.log"));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(worker::run(
        broker.clone(),
        db.clone(),
        log.clone(),
        Duration::from_millis(2),
        lease,
        stop_rx,
    ));

    let mut killed = Vec::new();
    for at in [200, 1200] {
        let until = Instant::now() + Duration::from_secs(60);
        while worker::stored(&db).await < at {
            assert!(Instant::now() < until, "the worker never stored {at}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let n = kill_clients(&server).await;
        killed.push((worker::stored(&db).await, n));
    }
    // The publisher reconnects too.
    broker.publish(worker::lines("c", FIRST..N)).await.unwrap();

    // Well within the 30 s lease: what the killed connections lost comes back through the
    // consumers' own recovery, not through a lease expiry.
    let stored = worker::wait_stored(&db, N as u64, Duration::from_secs(25)).await;
    let until = Instant::now() + Duration::from_secs(20);
    let stats = loop {
        let st = broker.stats().await.unwrap();
        if st.pending == 0 || Instant::now() > until {
            break st;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop_tx.send(true).unwrap();
    run.await.unwrap();

    for (at, n) in &killed {
        assert!(*n >= 3, "the broker's and both consumers' connections: {n}");
        assert!(*at < N as u64, "killed mid-run ({at} stored)");
    }
    assert_eq!(
        stored, N as u64,
        "every message stored once (ids are unique)"
    );
    assert_eq!(stats.pending, 0, "{stats:?}");
    assert!(broker.dlq_list(None, 10).await.unwrap().is_empty());
    let again = worker::attempts(&log)
        .iter()
        .filter(|(_, a, _)| *a > 1)
        .count();
    println!("connections killed at {killed:?} (stored, connections); {again} redeliveries");
}
