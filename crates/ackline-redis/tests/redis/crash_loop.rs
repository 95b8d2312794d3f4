//! A crash loop reaches `max_attempts`, across a restart of Redis: a message whose consumer
//! dies holding it, again and again, is counted by the pending entries list's delivery count
//! (persisted in the AOF) and dead-lettered with reason `max attempts exceeded` when the next
//! takeover would pass the limit, instead of being handed out forever.
//!
//! The dead consumers are played with plain commands, exactly what a killed worker leaves
//! behind: `XREADGROUP` (first delivery) and `XCLAIM` (a takeover) under consumer names that
//! never settle.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use ackline_broker::{
    Broker, Consumer, ConsumerOptions, DeadLetters, Message, REASON_MAX_ATTEMPTS,
};
use ackline_redis::RedisBroker;
use redis::Value;

use crate::common::{self, Persistence, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_ends_in_the_dead_letter_queue_across_a_redis_restart() {
    let Some(mut server) = Server::start(Persistence::AofAlways) else {
        return;
    };
    let queue = common::unique_queue("crashloop");
    let opts = common::options(3, None);
    let group = opts.group.clone();
    let broker = RedisBroker::connect(&server.url(), &queue, opts.clone())
        .await
        .unwrap();
    broker
        .publish(vec![Message::new("poison", "kills its worker")])
        .await
        .unwrap();

    // Delivery 1 to a worker that dies with it.
    let mut c = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let read: Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(&group)
        .arg("dead-1")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(&queue)
        .arg(">")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_ne!(read, Value::Nil, "the first delivery");
    let eid: Vec<(String, String, i64, i64)> = redis::cmd("XPENDING")
        .arg(&queue)
        .arg(&group)
        .arg("-")
        .arg("+")
        .arg(10)
        .query_async(&mut c)
        .await
        .unwrap();
    let eid = eid[0].0.clone();

    // Redis dies and comes back: the pending entry and its count come back from the AOF.
    server.restart();
    let mut c = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // Delivery 2, taken over by a second worker that dies as well.
    let _: Value = redis::cmd("XCLAIM")
        .arg(&queue)
        .arg(&group)
        .arg("dead-2")
        .arg(0)
        .arg(&eid)
        .query_async(&mut c)
        .await
        .unwrap();
    let pel: Vec<(String, String, i64, i64)> = redis::cmd("XPENDING")
        .arg(&queue)
        .arg(&group)
        .arg("-")
        .arg("+")
        .arg(10)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!((pel[0].1.as_str(), pel[0].3), ("dead-2", 2));

    // A worker (the backend's own consumer, lease 300 ms) takes it over once idle for its
    // lease: attempt 3, the last allowed. Then it dies too: it runs on a runtime of its own
    // that is shut down with it, so neither its reaper nor a drop releases anything.
    let lease = Duration::from_millis(300);
    let b3 = broker.clone();
    let third = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let d = rt.block_on(async {
            let c = b3
                .consumer(ConsumerOptions {
                    prefetch: 10,
                    lease,
                })
                .await
                .unwrap();
            let until = Instant::now() + Duration::from_secs(10);
            let d = loop {
                let got = c.receive(1, Duration::from_millis(200)).await.unwrap();
                if let Some(d) = got.into_iter().next() {
                    break d;
                }
                assert!(Instant::now() < until, "never taken over");
            };
            std::mem::forget(c);
            d
        });
        rt.shutdown_background();
        d
    })
    .join()
    .unwrap();
    assert_eq!((third.id.as_str(), third.attempt()), ("poison", 3));

    // The next takeover would be attempt 4: dead-lettered instead of handed out.
    let w = broker
        .consumer(ConsumerOptions {
            prefetch: 10,
            lease,
        })
        .await
        .unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    let dl = loop {
        let got = w.receive(1, Duration::from_millis(200)).await.unwrap();
        assert!(got.is_empty(), "handed out past max_attempts: {got:?}");
        let dl = broker.dlq_list(None, 10).await.unwrap();
        if !dl.is_empty() {
            break dl;
        }
        assert!(Instant::now() < until, "never dead-lettered");
    };
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0].id, "poison");
    assert_eq!(dl[0].attempts, 3);
    assert!(
        dl[0].reason.contains(REASON_MAX_ATTEMPTS),
        "{}",
        dl[0].reason
    );
    assert!(
        dl[0].last_error.contains("without a settlement"),
        "{}",
        dl[0].last_error
    );
    assert_eq!(broker.stats().await.unwrap().pending, 0);
    w.close().await;
}
