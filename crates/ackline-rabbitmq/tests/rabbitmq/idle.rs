//! An idle consumer that let a lease expire cancels its `basic.consume` (so the message goes to
//! consumers that ask), and its next `receive` consumes again: the reader must notice the end
//! of the cancelled consume (lapin reports it once) and not wait on it forever.

use std::time::{Duration, Instant};

use ackline_broker::{Broker, Consumer, ConsumerOptions, Message, Settlement};
use ackline_rabbitmq::RabbitBroker;

use crate::common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_consumer_consumes_again_on_its_next_receive() {
    let Some(url) = common::reachable() else {
        return;
    };
    let cleanup = common::Cleanup::default();
    let q = common::unique_queue("idle");
    let o = common::options(5, None);
    cleanup.add(&q, &o);
    let b = RabbitBroker::connect(&url, &q, o).await.unwrap();
    b.publish(vec![Message::new("m-1", b"x".to_vec())])
        .await
        .unwrap();
    let lease = Duration::from_millis(300);
    let c = b
        .consumer(ConsumerOptions {
            prefetch: 10,
            lease,
        })
        .await
        .unwrap();
    let first = c.receive(1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempt(), 1);
    // Not receiving, lease expired: the consumer suspends and the message is requeued.
    tokio::time::sleep(lease * 4).await;
    // Twice: each cycle cancels a consume and must consume again.
    for attempt in [2, 3] {
        let started = Instant::now();
        let again = c.receive(1, Duration::from_secs(10)).await.unwrap();
        assert_eq!(again.len(), 1, "not consumed again after going idle");
        assert_eq!(again[0].attempt(), attempt);
        assert!(started.elapsed() < Duration::from_secs(5));
        if attempt == 3 {
            let r = c
                .settle(vec![(again[0].tag.clone(), Settlement::Ack)])
                .await
                .unwrap();
            assert!(r[0].is_ok());
        } else {
            tokio::time::sleep(lease * 4).await;
        }
    }
    c.close().await;
}
