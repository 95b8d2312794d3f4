//! The consumer group around a consumer: a consumer dropped without `close`, and a consumer
//! joining while another holds deliveries (the revocation waits for them to be settled).

use std::collections::BTreeSet;
use std::time::Duration;

use ackline_broker::{Broker, Consumer, ConsumerOptions, Delivery, Message, Settlement};
use ackline_kafka::KafkaBroker;

use crate::common::{self, Server};

async fn broker(server: &Server) -> KafkaBroker {
    let t = common::unique_topic("group");
    KafkaBroker::connect(&server.url(), &t, common::options(&t, 5))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()))
}

fn opts() -> ConsumerOptions {
    ConsumerOptions {
        prefetch: 100,
        lease: Duration::from_secs(60),
    }
}

async fn recv_n<C: Consumer>(c: &C, n: usize, patience: Duration) -> Vec<Delivery> {
    common::recv_n(c, n, patience, Duration::from_millis(300)).await
}

/// Dropping a consumer (no `close`) releases what it held, as `close` does: the next consumer
/// gets the messages at once (not after a session timeout), at attempt 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_consumer_releases_its_deliveries() {
    let Some(server) = Server::start() else {
        return;
    };
    let b = broker(&server).await;
    b.publish(vec![Message::new("a", "1")])
        .await
        .expect("publish");
    b.publish(vec![Message::new("b", "2")])
        .await
        .expect("publish");
    let c1 = b.consumer(opts()).await.expect("consumer");
    assert_eq!(recv_n(&c1, 2, Duration::from_secs(10)).await.len(), 2);
    drop(c1);
    let c2 = b.consumer(opts()).await.expect("consumer");
    let again = recv_n(&c2, 2, Duration::from_secs(10)).await;
    let got: BTreeSet<_> = again.iter().map(|d| (d.id.as_str(), d.attempt())).collect();
    assert_eq!(got, BTreeSet::from([("a", 2), ("b", 2)]));
}

/// A consumer joins while another holds deliveries. Whichever partition the assignor moves,
/// the holder's acks go through (a revocation waits for them, up to `revoke_grace`) and the
/// newcomer never gets a message that was acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_consumer_never_gets_what_the_holder_acks() {
    let Some(server) = Server::start() else {
        return;
    };
    let b = broker(&server).await;
    for i in 0..5 {
        b.publish(vec![Message::new(format!("m-{i}"), "p")])
            .await
            .expect("publish");
    }
    let holder = b.consumer(opts()).await.expect("consumer");
    let first = recv_n(&holder, 5, Duration::from_secs(10)).await;
    assert_eq!(first.len(), 5);
    // Held from both topics: two from the topic, three (nacked once) from the retry topic.
    // cooperative-sticky moves one of the holder's two partitions to the newcomer.
    let nacks = first[2..]
        .iter()
        .map(|d| {
            let nack = Settlement::Nack {
                delay: Duration::ZERO,
                error: "again".into(),
            };
            (d.tag.clone(), nack)
        })
        .collect();
    let r = holder.settle(nacks).await.expect("settle");
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    let mut held = first[..2].to_vec();
    held.extend(recv_n(&holder, 3, Duration::from_secs(10)).await);
    assert_eq!(held.len(), 5);
    let newcomer = b.consumer(opts()).await.expect("consumer");
    // Let the group rebalance while the deliveries are held: tansu moves a partition within
    // about a second, and its revocation then waits (revoke_grace, 10 s in the tests) for the
    // acks below. With no wait, the moved partition's deliveries would be fenced (`Stale`) and
    // redelivered to the newcomer: this test fails so when `revoke_grace` is 0.
    let early = recv_n(&newcomer, 1, Duration::from_secs(3)).await;
    assert!(
        early.is_empty(),
        "held deliveries went to the newcomer: {early:?}"
    );
    common::ack_all(&holder, &held).await;
    let late = recv_n(&newcomer, 1, Duration::from_secs(3)).await;
    assert!(late.is_empty(), "acked messages delivered again: {late:?}");
    assert_eq!(b.stats().await.expect("stats").pending, 0);
    newcomer.close().await;
    holder.close().await;
}
