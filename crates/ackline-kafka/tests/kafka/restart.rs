//! The broker itself SIGKILLed and restarted: a private tansu on its SQLite engine
//! (`sqlite://`, a file in the test's directory, WAL) is killed mid-run and started again on
//! the same port and file. The client reconnects by itself (producer and group consumer), every
//! confirmed publish is still there, each message is stored once, and a delayed retry and a
//! dead letter written before the kill are still there after it. A broker frozen (SIGSTOP)
//! past the group's session timeout costs the consumers their assignment, and they read on
//! once it answers. A publish to a broker that is gone for good fails within
//! `publish_timeout` instead of hanging.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use ackline_broker::{Broker, Consumer, ConsumerOptions, DeadLetters, Delivery, Settlement};
use ackline_kafka::KafkaBroker;

use crate::common::{self, Server};
use crate::worker;

const N: usize = 2000;
const CHUNK: usize = 250;

/// Publishes messages `<prefix>-<i>` for `range`, `CHUNK` at a time.
async fn publish(broker: &KafkaBroker, prefix: &str, range: std::ops::Range<usize>) {
    for chunk in range.clone().step_by(CHUNK) {
        let end = (chunk + CHUNK).min(range.end);
        broker
            .publish(worker::lines(prefix, chunk..end))
            .await
            .unwrap();
    }
}

/// The worker runtime storing from `broker` into `dir/store.db` (attempts in
/// `dir/attempts.log`) until `stop` is sent `true`.
struct Running {
    db: std::path::PathBuf,
    log: std::path::PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(broker: &KafkaBroker, dir: &std::path::Path) -> Running {
        let (db, log) = (dir.join("store.db"), dir.join("attempts.log"));
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(worker::run(
            broker.clone(),
            db.clone(),
            log.clone(),
            Duration::from_millis(1),
            worker::LONG_LEASE,
            stop_rx,
        ));
        Running {
            db,
            log,
            stop,
            task,
        }
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_mid_run_comes_back_on_its_storage_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut server) = Server::start_persistent(dir.path()) else {
        return;
    };
    let topic = common::unique_topic("restart");
    let broker = KafkaBroker::connect(&server.url(), &topic, common::options(&topic, 5))
        .await
        .unwrap();
    publish(&broker, "r", 0..N / 2).await;
    let run = Running::start(&broker, dir.path());
    let (db, log) = (run.db.clone(), run.log.clone());
    worker::wait_stored(&db, 200, Duration::from_secs(60)).await;

    // SIGKILL the broker mid-run. The second half is published while it is down: a publish
    // that fails (its delivery reports did not come within `publish_timeout`) is published
    // again, as a producer of the contract does; the ids make the copies one row each.
    tokio::task::block_in_place(|| server.kill());
    let at_kill = worker::stored(&db).await;
    let publisher = {
        let b = broker.clone();
        tokio::spawn(async move {
            let mut failed = 0;
            for chunk in (N / 2..N).step_by(CHUNK) {
                let until = Instant::now() + Duration::from_secs(120);
                while let Err(e) = b.publish(worker::lines("r", chunk..chunk + CHUNK)).await {
                    failed += 1;
                    println!("publish across the restart failed, published again: {e}");
                    assert!(
                        Instant::now() < until,
                        "the publisher never got through: {e}"
                    );
                }
            }
            failed
        })
    };
    tokio::task::block_in_place(|| server.restart());
    let failed = publisher.await.unwrap();

    // Offsets the broker had not written when it died bring their records back (stored
    // already: the store absorbs them), so the worker runs until nothing is pending.
    let stored = worker::wait_stored(&db, N as u64, Duration::from_secs(120)).await;
    let stats = worker::settled(&broker, Duration::from_secs(60)).await;
    run.stop().await;

    assert!(
        at_kill < N as u64 / 2,
        "the kill must land mid-run ({at_kill} stored)"
    );
    assert_eq!(
        stored,
        N as u64,
        "every confirmed message stored once (ids are unique): {}",
        server.log()
    );
    assert_eq!(stats.pending, 0, "{stats:?}");
    assert!(broker.dlq_list(None, 10).await.unwrap().is_empty());
    let again = worker::attempts(&log).len().saturating_sub(N);
    println!(
        "broker killed at {at_kill}/{N} stored; {failed} publishes failed and were published \
         again; {again} deliveries beyond one per message"
    );
}

/// The broker hangs (SIGSTOP) past the group's session timeout while a worker is storing:
/// the consumer's heartbeats go unanswered, librdkafka gives the assignment up as lost and
/// rejoins once the broker answers again (SIGCONT). The worker must then read on by itself to
/// the end, every message stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_hanging_past_the_session_timeout_loses_the_assignment_and_reading_resumes() {
    let Some(server) = Server::start() else {
        return;
    };
    let topic = common::unique_topic("hang");
    let opts = common::options(&topic, 5);
    let session = opts.session_timeout;
    let broker = KafkaBroker::connect(&server.url(), &topic, opts)
        .await
        .unwrap();
    publish(&broker, "h", 0..N).await;
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(&broker, dir.path());
    let (db, log) = (run.db.clone(), run.log.clone());
    worker::wait_stored(&db, 200, Duration::from_secs(60)).await;
    server.freeze();
    let at_freeze = worker::stored(&db).await;
    // The fault is a hang of a given length: longer than the session timeout, so that the
    // group gives the consumer up.
    tokio::time::sleep(session + Duration::from_secs(4)).await;
    server.thaw();
    let stored = worker::wait_stored(&db, N as u64, Duration::from_secs(120)).await;
    let stats = worker::settled(&broker, Duration::from_secs(60)).await;
    run.stop().await;
    assert!(
        at_freeze < N as u64,
        "the hang must land mid-run ({at_freeze} stored)"
    );
    assert_eq!(
        stored,
        N as u64,
        "reading resumed after the hang and every message is stored once: {}",
        server.log()
    );
    assert_eq!(stats.pending, 0, "{stats:?}");
    let again = worker::attempts(&log).len().saturating_sub(N);
    println!(
        "broker frozen for {:?} at {at_freeze}/{N} stored; {again} deliveries beyond one per \
         message",
        session + Duration::from_secs(4)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_retry_and_a_dead_letter_survive_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut server) = Server::start_persistent(dir.path()) else {
        return;
    };
    let topic = common::unique_topic("restart-settled");
    let broker = KafkaBroker::connect(&server.url(), &topic, common::options(&topic, 5))
        .await
        .unwrap();
    broker.publish(worker::lines("s", 0..2)).await.unwrap();
    let opts = ConsumerOptions {
        prefetch: 10,
        lease: Duration::from_secs(60),
    };
    let c = broker.consumer(opts).await.unwrap();
    let mut got = common::recv_n(&c, 2, Duration::from_secs(30), Duration::from_millis(500)).await;
    assert_eq!(got.len(), 2, "both delivered");
    got.sort_by(|a, b| a.id.cmp(&b.id));
    let (retried, rejected) = (got[0].clone(), got[1].clone());
    // The retry copy waits in the retry topic past the restart.
    let delay = Duration::from_secs(3);
    let nacked_at = common::now_ms();
    let results = c
        .settle(vec![
            (
                retried.tag,
                Settlement::Nack {
                    delay,
                    error: "store down".into(),
                },
            ),
            (
                rejected.tag,
                Settlement::Reject {
                    reason: "unparseable".into(),
                },
            ),
        ])
        .await
        .unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    c.close().await;

    tokio::task::block_in_place(|| server.restart());

    let dead = broker.dlq_list(None, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "the dead letter is still there: {dead:?}");
    assert_eq!(dead[0].id, rejected.id);
    assert_eq!(dead[0].reason, "unparseable");

    let c = broker.consumer(opts).await.unwrap();
    let back: Delivery = common::recv_n(&c, 1, Duration::from_secs(60), Duration::from_millis(500))
        .await
        .pop()
        .expect("the nacked message comes back after the restart");
    let back_at = common::now_ms();
    assert_eq!((back.id.as_str(), back.attempt()), (retried.id.as_str(), 2));
    assert!(
        back_at >= nacked_at + delay.as_millis() as u64,
        "not before its delay: {} ms",
        back_at - nacked_at
    );
    let r = c.settle(vec![(back.tag, Settlement::Ack)]).await.unwrap();
    assert!(r[0].is_ok(), "{r:?}");
    let stats = worker::settled(&broker, Duration::from_secs(30)).await;
    assert_eq!(stats.pending, 0, "{stats:?}");
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_to_a_broker_gone_for_good_fails_within_its_timeout() {
    let Some(mut server) = Server::start() else {
        return;
    };
    let topic = common::unique_topic("gone");
    let opts = ackline_kafka::KafkaOptions {
        publish_timeout: Duration::from_secs(3),
        ..common::options(&topic, 5)
    };
    let publish_timeout = opts.publish_timeout;
    let broker = KafkaBroker::connect(&server.url(), &topic, opts)
        .await
        .unwrap();
    broker.publish(worker::lines("g", 0..10)).await.unwrap();
    tokio::task::block_in_place(|| server.kill());
    let started = Instant::now();
    let err = broker
        .publish(worker::lines("g", 10..260))
        .await
        .expect_err("nothing can confirm these");
    let took = started.elapsed();
    println!("a publish to a dead broker failed after {took:?}: {err}");
    assert!(
        took < publish_timeout + Duration::from_secs(5),
        "failed after {took:?} (publish_timeout {publish_timeout:?})"
    );
    assert!(
        matches!(err, ackline_broker::BrokerError::Unavailable { .. }),
        "a dead broker is a transient failure (retried with backoff, no attempt burnt): {err:?}"
    );
}
