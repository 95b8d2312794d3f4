//! Restarts of a private `nats-server -js -sd <tmp>` that the tests start on a free port and
//! kill with SIGKILL: the broker handle reconnects by itself (publisher and consumers), every
//! confirmed message is still there, each is stored once, and a message's attempt count
//! (the consumer's delivery count) does not go back.

use std::time::Duration;

use ackline_broker::{Broker, Consumer, ConsumerOptions, DeadLetters, Message, Settlement};
use ackline_nats::{NatsBroker, NatsOptions};

use crate::common::{self, PrivateServer};

const N: usize = 3000;

fn options() -> NatsOptions {
    NatsOptions {
        ack_wait: Duration::from_secs(3),
        reconnect_cap: Duration::from_millis(500),
        publish_timeout: Duration::from_secs(30),
        ..common::options(5, None)
    }
}

// A publish batch written while the server dies loses the requests the old connection held:
// their PubAcks never come. This test found publishes that waited for them one request
// timeout after another (hanging for minutes) before the round republished on reconnection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_run_reconnects_and_loses_nothing() {
    let Some(bin) = common::server_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut server = PrivateServer::start(bin, dir.path(), &[]);
    let queue = common::unique_queue("restart");
    let broker = NatsBroker::connect(&server.url(), &queue, options())
        .await
        .unwrap();
    broker
        .publish(common::worker::lines("r", 0..N / 2))
        .await
        .unwrap();

    let (db, log) = (dir.path().join("store.db"), dir.path().join("attempts.log"));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(common::worker::run(
        broker.clone(),
        db.clone(),
        log.clone(),
        Duration::from_millis(1),
        common::worker::LONG_LEASE,
        stop_rx,
    ));
    common::wait_until("the worker stores 200", Duration::from_secs(60), || {
        let db = db.clone();
        async move { db.exists() && common::worker::stored(&db).await >= 200 }
    })
    .await;

    // SIGKILL the server mid-run; publish the second half while it is down (the publish
    // waits for the reconnection), and bring the server back on the same port and store.
    tokio::task::block_in_place(|| server.kill());
    let at_kill = common::worker::stored(&db).await;
    let publisher = {
        let b = broker.clone();
        tokio::spawn(async move {
            for chunk in (N / 2..N).step_by(250) {
                b.publish(common::worker::lines("r", chunk..chunk + 250))
                    .await
                    .expect("publish across the restart");
            }
        })
    };
    tokio::task::block_in_place(|| server.restart());
    publisher.await.unwrap();

    // Acks the server had not written when it was killed bring their messages back (already
    // stored: the store absorbs them), so the worker runs until nothing is pending.
    common::wait_until(
        "every message stored and nothing pending",
        Duration::from_secs(120),
        || {
            let (db, b) = (db.clone(), broker.clone());
            async move {
                let n = common::worker::stored(&db).await;
                let pending = b.stats().await.map_or(u64::MAX, |s| s.pending);
                n >= N as u64 && pending == 0
            }
        },
    )
    .await;
    stop_tx.send(true).unwrap();
    worker.await.unwrap();

    assert!(at_kill < N as u64 / 2, "killed mid-run ({at_kill} stored)");
    assert_eq!(
        common::worker::stored(&db).await,
        N as u64,
        "every confirmed message stored once (ids are unique)"
    );
    assert!(broker.dlq_list(None, 10).await.unwrap().is_empty());
    let again = common::worker::attempts(&log)
        .iter()
        .filter(|(_, a, _)| *a > 1)
        .count();
    println!("server killed at {at_kill}/{N} stored; {again} deliveries had attempt > 1");
    broker.delete().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_survive_a_clean_server_restart_and_the_message_a_sigkill() {
    let Some(bin) = common::server_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut server = PrivateServer::start(bin, dir.path(), &[]);
    let queue = common::unique_queue("attempts");
    let broker = NatsBroker::connect(&server.url(), &queue, options())
        .await
        .unwrap();
    broker
        .publish(vec![Message::new("a-1", "line")])
        .await
        .unwrap();
    let c = broker
        .consumer(ConsumerOptions {
            prefetch: 10,
            lease: Duration::from_secs(60),
        })
        .await
        .unwrap();
    let nack = |d: ackline_broker::Delivery, delay: Duration| {
        let c = &c;
        async move {
            let r = c
                .settle(vec![(
                    d.tag,
                    Settlement::Nack {
                        delay,
                        error: "again".into(),
                    },
                )])
                .await
                .unwrap();
            r[0].clone().unwrap();
        }
    };
    for attempt in 1..=3 {
        let d = recv_one(&c).await;
        assert_eq!((d.id.as_str(), d.attempt()), ("a-1", attempt));
        // The last nack's delay outlasts the restart: the message waits on the server, not in
        // this consumer (which would keep it alive with +WPI across the restart).
        let delay = if attempt == 3 {
            Duration::from_secs(1)
        } else {
            Duration::ZERO
        };
        nack(d, delay).await;
    }
    // A clean restart (SIGTERM): the consumer's state is written, the count goes on.
    tokio::task::block_in_place(|| server.restart_clean());
    let d = recv_one(&c).await;
    assert_eq!(
        (d.id.as_str(), d.attempt()),
        ("a-1", 4),
        "the delivery count survives a clean restart"
    );
    nack(d, Duration::from_secs(1)).await;
    // SIGKILL: nats-server 2.9 writes the consumer's state lazily, so the count may go back
    // (docs/nats.md, "Durability"); the message itself must come back.
    tokio::task::block_in_place(|| server.restart());
    let d = recv_one(&c).await;
    assert_eq!(d.id, "a-1", "the message survives the SIGKILL");
    println!(
        "after SIGKILL and restart the message came back with attempt {} (5 if the count was written)",
        d.attempt()
    );
    c.settle(vec![(d.tag, Settlement::Ack)]).await.unwrap()[0]
        .clone()
        .unwrap();
    broker.delete().await.unwrap();
}

/// One delivery, within 30 s (the consumer reconnects and the lease of a lost delivery runs
/// out on the server meanwhile).
async fn recv_one<C: Consumer>(c: &C) -> ackline_broker::Delivery {
    let until = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match c.receive(1, Duration::from_millis(500)).await {
            Ok(mut ds) if !ds.is_empty() => return ds.remove(0),
            Ok(_) => {
                assert!(std::time::Instant::now() < until, "no delivery in 30 s");
            }
            Err(e) => {
                // Reconnecting: the receive reports it; try again.
                println!("receive: {e}");
                assert!(std::time::Instant::now() < until, "no delivery in 30 s");
            }
        }
    }
}

/// A publish to a server that died and does not come back ends `Unavailable` within about
/// `publish_timeout` (the caller retries or reports), not one request timeout per message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_to_a_dead_server_gives_up_within_its_timeout() {
    let Some(bin) = common::server_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut server = PrivateServer::start(bin, dir.path(), &[]);
    let queue = common::unique_queue("dead");
    let opts = NatsOptions {
        publish_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        ..options()
    };
    let (publish_timeout, request_timeout) = (opts.publish_timeout, opts.request_timeout);
    let broker = NatsBroker::connect(&server.url(), &queue, opts)
        .await
        .unwrap();
    broker
        .publish(common::worker::lines("d", 0..10))
        .await
        .unwrap();
    tokio::task::block_in_place(|| server.kill());
    let started = std::time::Instant::now();
    let err = broker
        .publish(common::worker::lines("d", 10..260))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err, ackline_broker::BrokerError::Unavailable { .. }),
        "{err}"
    );
    // One send may still be waiting when the deadline passes: at most one request timeout.
    assert!(
        took < publish_timeout + request_timeout,
        "gave up after {took:?} (publish_timeout {publish_timeout:?})"
    );
    println!("gave up after {took:?}: {err}");
}
