//! The stream and consumer settings that keep JetStream from dropping or skipping anything,
//! and a stale settlement fenced by the server's AckWait.

use std::time::Duration;

use ackline_broker::{Broker, Consumer, ConsumerOptions, Message, SettleError, Settlement};
use ackline_nats::{NatsBroker, NatsOptions};
use async_nats::jetstream::consumer::AckPolicy;
use async_nats::jetstream::stream::{DiscardPolicy, RetentionPolicy, StorageType};

use crate::common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_and_consumer_never_drop_or_skip() {
    let Some(url) = common::reachable() else {
        return;
    };
    let cleanup = common::Cleanup::default();
    let queue = common::unique_queue("settings");
    let opts = common::options(3, None);
    cleanup.add(&url, &queue, &opts);
    let b = NatsBroker::connect(&url, &queue, opts.clone())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
    let mut main = js.get_stream(&queue).await.unwrap();
    let cfg = main.info().await.unwrap().config.clone();
    assert_eq!(cfg.retention, RetentionPolicy::WorkQueue);
    assert_eq!(cfg.storage, StorageType::File);
    assert_eq!(cfg.discard, DiscardPolicy::New);
    assert_eq!(cfg.subjects, vec![format!("ackline.{queue}")]);
    assert_eq!((cfg.max_age, cfg.max_messages), (Duration::ZERO, -1));
    assert_eq!(cfg.duplicate_window, Duration::from_secs(120));
    let ci = main.consumer_info("ackline").await.unwrap();
    assert_eq!(ci.config.ack_policy, AckPolicy::Explicit);
    assert_eq!(
        ci.config.max_deliver, -1,
        "the server must never give up on a message"
    );
    assert_eq!(ci.config.ack_wait, opts.ack_wait);
    let mut dlq = js.get_stream(format!("{queue}-dlq")).await.unwrap();
    let dcfg = dlq.info().await.unwrap().config.clone();
    assert_eq!(dcfg.retention, RetentionPolicy::Limits);
    assert_eq!((dcfg.max_age, dcfg.max_bytes), (Duration::ZERO, -1));

    // A consumer someone set to give up after 2 deliveries is put back to unlimited.
    let mut c = ci.config.clone();
    c.max_deliver = 2;
    main.create_consumer(c).await.unwrap();
    drop(b);
    let _b = NatsBroker::connect(&url, &queue, opts).await.unwrap();
    let ci = main.consumer_info("ackline").await.unwrap();
    assert_eq!(ci.config.max_deliver, -1);

    // Publishing the same id twice inside the duplicate window stores it once.
    _b.publish(vec![Message::new("dup", "x")]).await.unwrap();
    _b.publish(vec![Message::new("dup", "x")]).await.unwrap();
    assert_eq!(_b.stats().await.unwrap().pending, 1);
}

/// A relay (`ackline serve --broker nats://`) opens its handle `publish_only`: the workers'
/// `AckWait` (their lease) and `max_ack_pending` stay as they set them, an unsafe
/// `max_deliver` is still fixed, and the handle refuses to consume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_only_handle_keeps_the_workers_consumer_settings() {
    let Some(url) = common::reachable() else {
        return;
    };
    let cleanup = common::Cleanup::default();
    let queue = common::unique_queue("pubonly");
    let workers = NatsOptions {
        ack_wait: Duration::from_secs(2),
        max_ack_pending: 500,
        ..common::options(3, None)
    };
    cleanup.add(&url, &queue, &workers);
    let _w = NatsBroker::connect(&url, &queue, workers.clone())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(async_nats::connect(&url).await.unwrap());
    let main = js.get_stream(&queue).await.unwrap();
    let mut c = main.consumer_info("ackline").await.unwrap().config.clone();
    c.max_deliver = 4;
    main.create_consumer(c).await.unwrap();

    let relay = NatsBroker::connect(
        &url,
        &queue,
        NatsOptions {
            publish_only: true,
            ..common::options(3, None)
        },
    )
    .await
    .unwrap();
    let ci = main.consumer_info("ackline").await.unwrap();
    assert_eq!(ci.config.ack_wait, Duration::from_secs(2));
    assert_eq!(ci.config.max_ack_pending, 500);
    assert_eq!(ci.config.max_deliver, -1, "the unsafe limit is still fixed");
    relay.publish(vec![Message::new("p-1", "x")]).await.unwrap();
    assert_eq!(relay.stats().await.unwrap().pending, 1);
    let refused = relay.consumer(ConsumerOptions::default()).await;
    assert!(
        matches!(refused, Err(ackline_broker::BrokerError::Fatal { .. })),
        "{refused:?}"
    );

    // A handle that is not publish-only brings the consumer back to its own options.
    let _other = NatsBroker::connect(&url, &queue, common::options(3, None))
        .await
        .unwrap();
    let ci = main.consumer_info("ackline").await.unwrap();
    assert_eq!(ci.config.ack_wait, common::options(3, None).ack_wait);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_after_a_redelivery_is_stale_and_not_sent() {
    let Some(url) = common::reachable() else {
        return;
    };
    let cleanup = common::Cleanup::default();
    let queue = common::unique_queue("stale");
    // The slow consumer's lease (300 ms) ends before the server's AckWait (1 s): it gives
    // the delivery back (-NAK), another consumer gets it with attempt 2, and the slow one's
    // ack is refused as stale without reaching the server (JetStream would apply it to the
    // new delivery).
    let opts = NatsOptions {
        ack_wait: Duration::from_secs(1),
        ..common::options(5, None)
    };
    cleanup.add(&url, &queue, &opts);
    let b = NatsBroker::connect(&url, &queue, opts).await.unwrap();
    b.publish(vec![Message::new("s-1", "x")]).await.unwrap();
    let slow = b
        .consumer(ConsumerOptions {
            prefetch: 1,
            lease: Duration::from_millis(300),
        })
        .await
        .unwrap();
    let other = b
        .consumer(ConsumerOptions {
            prefetch: 1,
            lease: Duration::from_secs(30),
        })
        .await
        .unwrap();
    let first = slow
        .receive(1, Duration::from_secs(5))
        .await
        .unwrap()
        .remove(0);
    let mut again = Vec::new();
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while again.is_empty() && std::time::Instant::now() < until {
        again = other.receive(1, Duration::from_millis(500)).await.unwrap();
    }
    assert_eq!(again.len(), 1, "redelivered after the lease");
    assert_eq!(again[0].attempt(), 2);
    let r = slow
        .settle(vec![(first.tag.clone(), Settlement::Ack)])
        .await
        .unwrap();
    assert!(
        matches!(r[0], Err(SettleError::Stale { attempt: 1, .. })),
        "{r:?}"
    );
    let r = other
        .settle(vec![(again[0].tag.clone(), Settlement::Ack)])
        .await
        .unwrap();
    r[0].clone().unwrap();
    assert_eq!(b.stats().await.unwrap().pending, 0);
}
