//! The broker never drops a message on its own (issue 10, item 15).
//! - The main queue and the dead-letter queue are declared with a delivery limit out of reach
//!   (RabbitMQ 4.x defaults quorum queues to 20 and then drops) and the main queue
//!   dead-letters into ackline's DLQ at least once: checked by redeclaring them with exactly
//!   these arguments (RabbitMQ refuses a redeclaration whose arguments differ), and by a
//!   message RabbitMQ expires, which lands in the DLQ instead of vanishing.
//! - A message returned more than 20 times is still there.
//! - A queue an earlier ackline declared (without these arguments) is used, with a warning; a
//!   queue with other arguments is refused, naming them.
//! - On a classic queue, each crash of a worker counts an attempt, so `max_attempts` ends a
//!   crash loop.

use std::time::{Duration, Instant};

use ackline_broker::{Broker, BrokerError, Consumer, ConsumerOptions, DeadLetters, Message};
use ackline_rabbitmq::{DELIVERY_LIMIT, QueueType, RabbitBroker, RabbitOptions};
use lapin::BasicProperties;
use lapin::options::{BasicGetOptions, BasicNackOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};

use crate::common;

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v.as_bytes().to_vec()))
}

fn n(v: u64) -> AMQPValue {
    AMQPValue::LongLongInt(i64::try_from(v).expect("fits i64"))
}

fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

/// A non-passive declaration of `queue` with `args`: `Ok` only if they are exactly the
/// arguments it exists with.
async fn redeclare(url: &str, queue: &str, args: FieldTable) -> Result<(), lapin::Error> {
    let (conn, ch) = common::raw_channel(url).await;
    let r = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await
        .map(|_| ());
    let _ = conn.close(200, "done".into()).await;
    r
}

fn main_args(dlq: &str) -> Vec<(&'static str, AMQPValue)> {
    vec![
        ("x-queue-type", s("quorum")),
        ("x-dead-letter-exchange", s("")),
        ("x-dead-letter-routing-key", s(dlq)),
        ("x-dead-letter-strategy", s("at-least-once")),
        ("x-overflow", s("reject-publish")),
        ("x-delivery-limit", n(DELIVERY_LIMIT)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_are_declared_so_that_rabbitmq_drops_nothing() {
    let Some(url) = common::reachable() else {
        return;
    };
    let cleanup = common::Cleanup::default();
    let q = common::unique_queue("args");
    let o = common::options(5, None);
    cleanup.add(&q, &o);
    let b = RabbitBroker::connect(&url, &q, o).await.unwrap();
    let dlq = b.dlq_name().to_owned();
    const { assert!(DELIVERY_LIMIT > 20) };
    redeclare(&url, &q, table(&main_args(&dlq)))
        .await
        .expect("the main queue has exactly these arguments");
    redeclare(
        &url,
        &dlq,
        table(&[
            ("x-queue-type", s("quorum")),
            ("x-delivery-limit", n(DELIVERY_LIMIT)),
        ]),
    )
    .await
    .expect("the dead-letter queue has exactly these arguments");
    // The check is real: another delivery limit is refused.
    let mut other = main_args(&dlq);
    other.retain(|(k, _)| *k != "x-delivery-limit");
    other.push(("x-delivery-limit", n(20)));
    assert!(redeclare(&url, &q, table(&other)).await.is_err());
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_rabbitmq_expires_lands_in_the_dlq() {
    let Some(url) = common::reachable() else {
        return;
    };
    let cleanup = common::Cleanup::default();
    let q = common::unique_queue("expired");
    let o = common::options(5, None);
    cleanup.add(&q, &o);
    let b = RabbitBroker::connect(&url, &q, o).await.unwrap();
    // Another producer's message with a 1 ms TTL, which nobody consumes in time.
    let props = BasicProperties::default()
        .with_message_id("short-lived".into())
        .with_expiration("1".into());
    common::publish_raw(&url, &q, vec![(props, b"expiring line".to_vec())]).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let entries = loop {
        let e = b.dlq_list(None, 10).await.unwrap();
        if !e.is_empty() || Instant::now() > deadline {
            break e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(entries.len(), 1, "the expired message was dropped");
    assert_eq!(entries[0].payload, b"expiring line");
    assert_eq!(entries[0].id, "short-lived");
    assert!(
        entries[0].reason.contains("expired"),
        "reason {:?}",
        entries[0].reason
    );
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_returned_more_than_20_times_is_not_dropped() {
    let Some(url) = common::reachable() else {
        return;
    };
    let cleanup = common::Cleanup::default();
    let q = common::unique_queue("returns");
    // Above the 20 returns, so that ackline hands it out rather than dead-letter it.
    let o = common::options(50, None);
    cleanup.add(&q, &o);
    let b = RabbitBroker::connect(&url, &q, o).await.unwrap();
    b.publish(vec![Message::new("m-1", b"x".to_vec())])
        .await
        .unwrap();
    let (conn, ch) = common::raw_channel(&url).await;
    let mut returns = 0u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while returns < 25 {
        assert!(Instant::now() < deadline, "only {returns} returns");
        let Some(m) = ch
            .basic_get(q.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap()
        else {
            assert!(returns > 0, "the message is not in the queue");
            // Requeued, not yet visible again.
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let count = m
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-delivery-count").cloned());
        if returns > 0 {
            assert!(count.is_some(), "return {returns} not counted");
        }
        m.nack(BasicNackOptions {
            requeue: true,
            multiple: false,
        })
        .await
        .unwrap();
        returns += 1;
    }
    let _ = conn.close(200, "done".into()).await;
    // Still there (not dropped, not dead-lettered).
    let c = b
        .consumer(ConsumerOptions {
            prefetch: 1,
            lease: Duration::from_secs(30),
        })
        .await
        .unwrap();
    let d = c.receive(1, Duration::from_secs(10)).await.unwrap();
    assert_eq!(d.len(), 1, "the message returned {returns} times is gone");
    assert_eq!(d[0].attempt(), 26);
    assert!(b.dlq_list(None, 10).await.unwrap().is_empty());
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_versions_queue_is_used_and_other_arguments_are_refused() {
    let Some(url) = common::reachable() else {
        return;
    };
    let cleanup = common::Cleanup::default();
    let q = common::unique_queue("earlier");
    let o = common::options(5, None);
    cleanup.add(&q, &o);
    let dlq = format!("{q}.dlq");
    // As ackline declared them before: only the type.
    let quorum = || table(&[("x-queue-type", s("quorum"))]);
    redeclare(&url, &q, quorum()).await.unwrap();
    redeclare(&url, &dlq, quorum()).await.unwrap();
    let b = RabbitBroker::connect(&url, &q, o.clone())
        .await
        .expect("an earlier version's queues are used");
    b.publish(vec![Message::new("m-1", b"x".to_vec())])
        .await
        .unwrap();
    assert_eq!(b.stats().await.unwrap().pending, 1);
    b.close().await;

    // A queue with arguments ackline never declared is refused, naming them.
    let q2 = common::unique_queue("other-args");
    cleanup.add(&q2, &o);
    redeclare(
        &url,
        &q2,
        table(&[("x-queue-type", s("quorum")), ("x-max-length", n(5))]),
    )
    .await
    .unwrap();
    match RabbitBroker::connect(&url, &q2, o.clone()).await {
        Err(BrokerError::Fatal { reason, .. }) => {
            assert!(reason.contains(&q2), "{reason}");
            assert!(reason.contains("x-delivery-limit="), "{reason}");
            assert!(reason.contains("PRECONDITION_FAILED"), "{reason}");
        }
        other => panic!("expected Fatal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_on_a_classic_queue_reaches_max_attempts() {
    let Some(url) = common::reachable() else {
        return;
    };
    let cleanup = common::Cleanup::default();
    let q = common::unique_queue("classic");
    let o = RabbitOptions {
        queue_type: QueueType::Classic,
        ..common::options(3, None)
    };
    cleanup.add(&q, &o);
    let b = RabbitBroker::connect(&url, &q, o).await.unwrap();
    b.publish(vec![Message::new("poison", b"kills its worker".to_vec())])
        .await
        .unwrap();
    let mut attempts = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.dlq_list(None, 10).await.unwrap().is_empty() {
        assert!(
            Instant::now() < deadline && attempts.len() < 10,
            "never dead-lettered; attempts {attempts:?}"
        );
        let c = b
            .consumer(ConsumerOptions {
                prefetch: 1,
                lease: Duration::from_secs(30),
            })
            .await
            .unwrap();
        let d = c.receive(1, Duration::from_secs(2)).await.unwrap();
        attempts.extend(d.iter().map(|d| d.attempt()));
        // The worker dies holding it: the channel closes without an ack.
        drop(c);
    }
    assert_eq!(attempts, [1, 2, 3]);
    let dl = b.dlq_list(None, 10).await.unwrap();
    assert_eq!(dl[0].payload, b"kills its worker");
    assert_eq!(dl[0].reason, ackline_broker::REASON_MAX_ATTEMPTS);
    assert_eq!(b.stats().await.unwrap().pending, 0);
    b.close().await;
}
