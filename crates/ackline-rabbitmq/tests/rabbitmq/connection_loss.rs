//! The broker closes the worker's connection (`rabbitmqctl close_connection`) mid-run: the
//! consumers reconnect by themselves, the publisher publishes again, nothing is lost and
//! nothing is stored twice.

use std::process::Command;
use std::time::{Duration, Instant};

use ackline_broker::{Broker, DeadLetters};
use ackline_rabbitmq::RabbitBroker;

use crate::common;

/// Published before the close; `N` in all.
const FIRST: usize = 3000;
const N: usize = 4000;

/// The pid of the connection whose client property `connection_name` is `name`
/// (`rabbitmqctl list_connections pid client_properties`: RabbitMQ 3.10's `name` column is the
/// peer address).
fn connection_pid(name: &str) -> Option<String> {
    let out = Command::new("rabbitmqctl")
        .args(["-q", "list_connections", "pid", "client_properties"])
        .output()
        .ok()?;
    let needle = format!("{{\"connection_name\",\"{name}\"}}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains(&needle))
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_connection_reconnects_without_loss_or_duplicates() {
    let Some(url) = common::reachable() else {
        return;
    };
    let cleanup = common::Cleanup::default();
    let queue = common::unique_queue("connloss");
    let name = format!("ackline connloss test {queue}");
    let opts = ackline_rabbitmq::RabbitOptions {
        connection_name: Some(name.clone()),
        ..common::options(5, None)
    };
    cleanup.add(&queue, &opts);
    let broker = RabbitBroker::connect(&url, &queue, opts).await.unwrap();
    broker
        .publish(common::worker::lines("c", 0..FIRST))
        .await
        .unwrap();

    // Found before the run: rabbitmqctl takes a second or two to start.
    let pid = connection_pid(&name).expect("our connection in rabbitmqctl list_connections");
    let dir = tempfile::tempdir().unwrap();
    let (db, log) = (dir.path().join("store.db"), dir.path().join("attempts.log"));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(common::worker::run(
        broker.clone(),
        db.clone(),
        log.clone(),
        Duration::from_millis(4),
        common::worker::LONG_LEASE,
        stop_rx,
    ));

    // Let it store some, then have the broker close the connection under it.
    let until = Instant::now() + Duration::from_secs(60);
    while db.metadata().is_err() || common::worker::stored(&db).await < 200 {
        assert!(Instant::now() < until, "the worker never started storing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let closed = Command::new("rabbitmqctl")
        .args([
            "-q",
            "close_connection",
            &pid,
            "ackline connection-loss test",
        ])
        .status()
        .expect("rabbitmqctl");
    assert!(closed.success());
    let at_close = common::worker::stored(&db).await;

    // The publisher reconnects too.
    broker
        .publish(common::worker::lines("c", FIRST..N))
        .await
        .unwrap();

    let until = Instant::now() + Duration::from_secs(120);
    let mut stored = 0;
    while Instant::now() < until {
        stored = common::worker::stored(&db).await;
        if stored >= N as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_tx.send(true).unwrap();
    worker.await.unwrap();

    assert!(
        at_close < FIRST as u64,
        "closed mid-run ({at_close} stored)"
    );
    assert_eq!(
        stored, N as u64,
        "every message stored once (ids are unique)"
    );
    assert!(broker.dlq_list(None, 10).await.unwrap().is_empty());
    let again = common::worker::attempts(&log)
        .iter()
        .filter(|(_, a, _)| *a > 1)
        .count();
    println!("closed at {at_close}/{N}; {again} deliveries came back with attempt > 1");
    assert!(
        again > 0,
        "what the dead channels held came back with attempt + 1"
    );
    assert_eq!(broker.stats().await.unwrap().pending, 0);
}
