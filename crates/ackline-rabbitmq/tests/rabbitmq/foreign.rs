//! Messages that other AMQP producers put into an ackline queue (issue 10, item 12): published
//! here with plain lapin, consumed through the backend.
//! - Without `message_id` or ackline's headers: adopted under a new id, payload intact, each
//!   line handed out once (byte-identical lines stay two lines), nothing dead-lettered.
//! - Rejected: the DLQ entry keeps the payload.
//! - With `message_id` only: that is the id; payload and attempts behave as for ackline's own.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ackline_broker::{Broker, Consumer, ConsumerOptions, DeadLetters, DlqSelector, Settlement};
use ackline_rabbitmq::RabbitBroker;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString};

use crate::common;

fn opts(lease: Duration) -> ConsumerOptions {
    ConsumerOptions {
        prefetch: 64,
        lease,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_without_an_id_are_adopted_and_handed_out_once() {
    let Some(url) = common::reachable() else {
        return;
    };
    let cleanup = common::Cleanup::default();
    let q = common::unique_queue("foreign");
    let o = common::options(5, None);
    cleanup.add(&q, &o);
    let b = RabbitBroker::connect(&url, &q, o).await.unwrap();
    // 30 lines, three of each text (byte-identical lines are still separate lines), and one
    // that is not text.
    let mut lines: Vec<Vec<u8>> = (0..30)
        .map(|i| format!("GET /health {}", i % 10).into_bytes())
        .collect();
    lines.push(vec![0, 0xff, 0x1b, b'\n']);
    common::publish_raw(
        &url,
        &q,
        lines
            .iter()
            .map(|l| (BasicProperties::default(), l.clone()))
            .collect(),
    )
    .await;

    let c = b.consumer(opts(Duration::from_secs(30))).await.unwrap();
    // A store keyed by id, as ackline's stores are.
    let mut store: HashMap<String, Vec<u8>> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.len() < lines.len() && Instant::now() < deadline {
        let ds = c.receive(64, Duration::from_secs(1)).await.unwrap();
        let mut acks = Vec::new();
        for d in ds {
            assert_eq!(d.attempt(), 1, "adoption is not an attempt");
            assert!(d.id.starts_with("amqp-"), "adopted id {:?}", d.id);
            assert!(d.enqueued_at > 0);
            let before = store.insert(d.id.clone(), d.payload.clone());
            assert!(before.is_none(), "id {} handed out twice", d.id);
            acks.push((d.tag, Settlement::Ack));
        }
        if !acks.is_empty() {
            for r in c.settle(acks).await.unwrap() {
                r.unwrap();
            }
        }
    }
    let mut got: Vec<Vec<u8>> = store.into_values().collect();
    got.sort();
    let mut want = lines.clone();
    want.sort();
    assert_eq!(got, want, "every payload once, intact");
    // Nothing more comes (no second copy under another id).
    let more = c.receive(64, Duration::from_millis(1500)).await.unwrap();
    assert!(more.is_empty(), "{} more deliveries", more.len());
    c.close().await;
    let s = b.stats().await.unwrap();
    assert_eq!((s.pending, s.dead_letters), (0, 0), "{s:?}");
    assert!(b.dlq_list(None, 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_foreign_message_keeps_its_payload_in_the_dlq() {
    let Some(url) = common::reachable() else {
        return;
    };
    let cleanup = common::Cleanup::default();
    let q = common::unique_queue("foreign-reject");
    let o = common::options(5, None);
    cleanup.add(&q, &o);
    let b = RabbitBroker::connect(&url, &q, o).await.unwrap();
    let payload = b"foreign line \x00 with bytes \xfe".to_vec();
    common::publish_raw(
        &url,
        &q,
        vec![(BasicProperties::default(), payload.clone())],
    )
    .await;
    let c = b.consumer(opts(Duration::from_secs(30))).await.unwrap();
    let d = c
        .receive(1, Duration::from_secs(10))
        .await
        .unwrap()
        .pop()
        .expect("the foreign message is handed out");
    assert_eq!(d.payload, payload);
    let r = c
        .settle(vec![(
            d.tag.clone(),
            Settlement::Reject {
                reason: "unparseable".into(),
            },
        )])
        .await
        .unwrap();
    r[0].clone().unwrap();
    let dl = b.dlq_list(None, 10).await.unwrap();
    assert_eq!(dl.len(), 1, "{dl:?}");
    assert_eq!(dl[0].payload, payload);
    assert_eq!(dl[0].id, d.id);
    assert_eq!(dl[0].reason, "unparseable");
    // Replayed, it comes back under the same id with the same payload.
    assert_eq!(b.dlq_replay(DlqSelector::All).await.unwrap(), 1);
    let again = c
        .receive(1, Duration::from_secs(10))
        .await
        .unwrap()
        .pop()
        .expect("replayed");
    assert_eq!(
        (again.id.as_str(), again.payload.as_slice()),
        (d.id.as_str(), &payload[..])
    );
    c.settle(vec![(again.tag, Settlement::Ack)]).await.unwrap()[0]
        .clone()
        .unwrap();
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_message_id_is_kept_with_payload_and_attempts() {
    let Some(url) = common::reachable() else {
        return;
    };
    let cleanup = common::Cleanup::default();
    let q = common::unique_queue("foreign-msgid");
    let o = common::options(5, None);
    cleanup.add(&q, &o);
    let b = RabbitBroker::connect(&url, &q, o).await.unwrap();
    let mut h = FieldTable::default();
    h.insert(
        "their-header".into(),
        AMQPValue::LongString(LongString::from(b"kept".to_vec())),
    );
    let props = BasicProperties::default()
        .with_message_id("ext-7".into())
        .with_headers(h);
    common::publish_raw(&url, &q, vec![(props, b"their line".to_vec())]).await;
    let lease = Duration::from_millis(400);
    let c = b.consumer(opts(lease)).await.unwrap();
    let recv = || async {
        c.receive(1, Duration::from_secs(10))
            .await
            .unwrap()
            .pop()
            .expect("delivered")
    };
    let d1 = recv().await;
    assert_eq!(
        (d1.id.as_str(), d1.payload.as_slice(), d1.attempt()),
        ("ext-7", &b"their line"[..], 1)
    );
    // A nack republishes it (attempt counted in ackline's header) ...
    c.settle(vec![(
        d1.tag,
        Settlement::Nack {
            delay: Duration::ZERO,
            error: "transient".into(),
        },
    )])
    .await
    .unwrap()[0]
        .clone()
        .unwrap();
    let d2 = recv().await;
    assert_eq!(
        (d2.id.as_str(), d2.payload.as_slice(), d2.attempt()),
        ("ext-7", &b"their line"[..], 2)
    );
    // ... and an expired lease is counted by the broker.
    let d3 = recv().await;
    assert_eq!(
        (d3.id.as_str(), d3.payload.as_slice(), d3.attempt()),
        ("ext-7", &b"their line"[..], 3)
    );
    c.settle(vec![(d3.tag, Settlement::Ack)]).await.unwrap()[0]
        .clone()
        .unwrap();
    c.close().await;
    let s = b.stats().await.unwrap();
    assert_eq!((s.pending, s.dead_letters), (0, 0), "{s:?}");
}
