//! The test's own redis-server (AOF, `appendfsync always`) is SIGKILLed while a publisher is
//! publishing, and restarted on the same directory: every publish that was confirmed is in the
//! stream after the AOF replay, a delivery held at the kill comes back with its attempt
//! counted (the pending entries list is in the AOF), a delayed nack and a dead letter are still
//! there, and the publisher carries on by itself once Redis is back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ackline_broker::{Broker, Consumer, ConsumerOptions, DeadLetters, Message, Settlement};
use ackline_redis::RedisBroker;
use parking_lot::Mutex;

use crate::common::{self, Persistence, Server};

const BATCH: usize = 50;

/// A stream entry as `XRANGE` returns it: id and field pairs.
type Entry = (String, Vec<(String, Vec<u8>)>);

/// Publishes batches until `stop`; returns the ids of confirmed publishes and how many
/// publishes failed.
async fn publisher(
    broker: RedisBroker,
    confirmed: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) -> usize {
    let mut failed = 0;
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let ids: Vec<String> = (n..n + BATCH).map(|i| format!("p-{i}")).collect();
        n += BATCH;
        let batch = ids
            .iter()
            .map(|id| Message::new(id.clone(), format!("line {id}")))
            .collect();
        match broker.publish(batch).await {
            Ok(()) => confirmed.lock().extend(ids),
            Err(_) => {
                failed += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    failed
}

async fn wait_confirmed(confirmed: &Mutex<Vec<String>>, at_least: usize) {
    let until = Instant::now() + Duration::from_secs(60);
    while confirmed.lock().len() < at_least {
        assert!(Instant::now() < until, "the publisher is stuck");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The `id` field of every entry of `key` (an operator's XRANGE).
async fn ids_in(server: &Server, key: &str) -> BTreeSet<String> {
    let mut c = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let v: Vec<Entry> = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(&mut c)
        .await
        .unwrap();
    v.into_iter()
        .filter_map(|(_, fields)| {
            fields
                .into_iter()
                .find(|(k, _)| k == "id")
                .map(|(_, v)| String::from_utf8_lossy(&v).into_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_redis_keeps_every_confirmed_publish_and_the_attempts() {
    let Some(mut server) = Server::start(Persistence::AofAlways) else {
        return;
    };
    let queue = common::unique_queue("restart");
    let broker = RedisBroker::connect(&server.url(), &queue, common::options(3, None))
        .await
        .unwrap();
    assert!(!broker.durability().lossy(), "{}", broker.durability());

    // State besides the stream: one delivery held, one nacked for a minute, one dead letter.
    broker
        .publish(vec![
            Message::new("held", "h"),
            Message::new("delayed", "d"),
            Message::new("dead", "x"),
        ])
        .await
        .unwrap();
    let lease = Duration::from_millis(500);
    let c = broker
        .consumer(ConsumerOptions {
            prefetch: 10,
            lease: Duration::from_secs(600),
        })
        .await
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        got.extend(c.receive(3, Duration::from_secs(1)).await.unwrap());
    }
    let tag = |id: &str| got.iter().find(|d| d.id == id).unwrap().tag.clone();
    let r = c
        .settle(vec![
            (
                tag("delayed"),
                Settlement::Nack {
                    delay: Duration::from_secs(60),
                    error: "later".into(),
                },
            ),
            (
                tag("dead"),
                Settlement::Reject {
                    reason: "poison".into(),
                },
            ),
        ])
        .await
        .unwrap();
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    // `held` stays unsettled; its consumer is forgotten (as if its worker died with Redis).
    std::mem::forget(c);

    let confirmed = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(publisher(broker.clone(), confirmed.clone(), stop.clone()));
    wait_confirmed(&confirmed, 2000).await;
    server.kill9();
    let at_kill = confirmed.lock().len();
    server.restart();
    // The publisher carries on by itself once Redis answers again.
    wait_confirmed(&confirmed, at_kill + 500).await;
    stop.store(true, Ordering::SeqCst);
    let failed = task.await.unwrap();

    let confirmed: Vec<String> = confirmed.lock().clone();
    let present = ids_in(&server, &queue).await;
    let lost: Vec<&String> = confirmed.iter().filter(|i| !present.contains(*i)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} confirmed publishes lost, e.g. {:?}",
        lost.len(),
        confirmed.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    );
    let st = broker.stats().await.unwrap();
    assert_eq!(st.delayed, 1, "the delayed nack survived: {st:?}");
    let dl = broker.dlq_list(None, 10).await.unwrap();
    assert_eq!(
        (dl.len(), dl[0].id.as_str(), dl[0].reason.as_str()),
        (1, "dead", "poison")
    );

    // The held delivery is still pending for its dead consumer: taken over after the lease,
    // with attempt 2 (the delivery count came back from the AOF).
    let c2 = broker
        .consumer(ConsumerOptions {
            prefetch: 10,
            lease,
        })
        .await
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    let held = loop {
        let ds = c2.receive(1000, Duration::from_millis(300)).await.unwrap();
        let items = ds
            .iter()
            .map(|d| (d.tag.clone(), Settlement::Ack))
            .collect();
        c2.settle(items).await.unwrap();
        if let Some(d) = ds.into_iter().find(|d| d.id == "held") {
            break d;
        }
        assert!(Instant::now() < until, "the held delivery never came back");
    };
    assert_eq!(held.attempt(), 2, "the attempt survived the restart");
    c2.close().await;
    println!(
        "{} confirmed publishes ({at_kill} before the kill), all present after the restart; \
         {failed} publishes failed while Redis was down",
        confirmed.len()
    );
}
