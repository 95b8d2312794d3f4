//! What ackline leaves in Kafka, read back with a plain librdkafka consumer (as another Kafka
//! user would see it): keys, headers, the retry and dead-letter copies, and the group's
//! committed offsets under out-of-order acks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ackline_broker::{Broker, BrokerError, Consumer, ConsumerOptions, Message, Settlement};
use ackline_kafka::KafkaBroker;
use rdkafka::ClientConfig;
use rdkafka::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Headers as _;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::common::{self, Server};

/// One record as a plain consumer reads it.
#[derive(Debug)]
struct Raw {
    offset: i64,
    key: Option<String>,
    headers: Vec<(String, String)>,
    payload: Vec<u8>,
}

impl Raw {
    fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads `n` records of partition 0 of `topic` from its start (at most 20 s).
fn read(server: &Server, topic: &str, n: usize) -> Vec<Raw> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{}", server.port))
        .set("group.id", "ackline-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a plain consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition");
    c.assign(&tpl).expect("assign");
    let until = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    while out.len() < n && Instant::now() < until {
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.expect("a record");
        out.push(Raw {
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            headers: m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            payload: m.payload().unwrap_or_default().to_vec(),
        });
    }
    out
}

async fn broker(server: &Server, max_attempts: u32) -> KafkaBroker {
    let t = common::unique_topic("wire");
    KafkaBroker::connect(&server.url(), &t, common::options(&t, max_attempts))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()))
}

fn opts() -> ConsumerOptions {
    ConsumerOptions {
        prefetch: 100,
        lease: Duration::from_secs(60),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_carry_the_id_as_key_and_ackline_fields_as_headers() {
    let Some(server) = Server::start() else {
        return;
    };
    let b = broker(&server, 5).await;
    let m = Message::new("line-7", "hello")
        .with_header("host", "a")
        .with_header("host", "b");
    b.publish(vec![m]).await.expect("publish");
    let raw = read(&server, b.topic(), 1);
    assert_eq!(raw.len(), 1, "the record never came");
    let r = &raw[0];
    assert_eq!(r.key.as_deref(), Some("line-7"));
    assert_eq!(r.payload, b"hello");
    assert_eq!(r.header("ackline.id"), Some("line-7"));
    assert!(r.header("ackline.enqueued_at").is_some());
    assert_eq!(
        r.header("ackline.attempts"),
        None,
        "a first publish has no attempts"
    );
    let user: Vec<_> = r
        .headers
        .iter()
        .filter(|(k, _)| !k.starts_with("ackline."))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        user,
        [("host", "a"), ("host", "b")],
        "order and duplicates kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_header_names_are_refused() {
    let Some(server) = Server::start() else {
        return;
    };
    let b = broker(&server, 5).await;
    let e = b
        .publish(vec![
            Message::new("x", "y").with_header("ackline.attempts", "9"),
        ])
        .await
        .expect_err("a reserved header name");
    assert!(matches!(e, BrokerError::Invalid { .. }), "{e}");
}

/// Acks out of order: the group's offset stays at the first unacked record until it is
/// acked, then moves past all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_contiguous_acked_prefix_is_committed() {
    let Some(server) = Server::start() else {
        return;
    };
    let b = broker(&server, 5).await;
    // One record batch per message: tansu 0.6 answers ListOffsets (latest) with the last
    // batch's base offset + 1, so a batch of several records would partly hide from the
    // backlog (docs/kafka.md); Kafka answers the log end offset.
    for i in 0..4 {
        b.publish(vec![Message::new(format!("m-{i}"), "p")])
            .await
            .expect("publish");
    }
    let c = b.consumer(opts()).await.expect("consumer");
    let mut ds = Vec::new();
    let until = Instant::now() + Duration::from_secs(20);
    while ds.len() < 4 && Instant::now() < until {
        ds.extend(c.receive(4, Duration::from_secs(1)).await.expect("receive"));
    }
    assert_eq!(ds.len(), 4);
    let ack = |i: usize| (ds[i].tag.clone(), Settlement::Ack);
    let r = c.settle(vec![ack(1), ack(3)]).await.expect("settle");
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    assert_eq!(
        b.stats().await.expect("stats").pending,
        4,
        "m-0 unacked: nothing may be committed"
    );
    c.settle(vec![ack(0)]).await.expect("settle");
    assert_eq!(
        b.stats().await.expect("stats").pending,
        2,
        "m-0 and m-1 acked: committed up to m-2"
    );
    c.settle(vec![ack(2)]).await.expect("settle");
    assert_eq!(b.stats().await.expect("stats").pending, 0);
    c.close().await;
}

/// A nack's retry copy and a reject's dead-letter copy, as Kafka holds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_and_reject_write_confirmed_copies_with_their_fields() {
    let Some(server) = Server::start() else {
        return;
    };
    let b = broker(&server, 5).await;
    b.publish(vec![
        Message::new("a", "pa").with_header("k", "v"),
        Message::new("b", "pb"),
    ])
    .await
    .expect("publish");
    let c = b.consumer(opts()).await.expect("consumer");
    let mut ds = Vec::new();
    let until = Instant::now() + Duration::from_secs(20);
    while ds.len() < 2 && Instant::now() < until {
        ds.extend(c.receive(2, Duration::from_secs(1)).await.expect("receive"));
    }
    let by_id: HashMap<_, _> = ds.iter().map(|d| (d.id.as_str(), d.tag.clone())).collect();
    let before = common::now_ms();
    let r = c
        .settle(vec![
            (
                by_id["a"].clone(),
                Settlement::Nack {
                    delay: Duration::from_secs(60),
                    error: "db busy".into(),
                },
            ),
            (
                by_id["b"].clone(),
                Settlement::Reject {
                    reason: "bad line".into(),
                },
            ),
        ])
        .await
        .expect("settle");
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    let retry = read(&server, &format!("{}.retry", b.topic()), 1);
    assert_eq!(retry.len(), 1, "no retry copy");
    let r = &retry[0];
    assert_eq!(
        (r.key.as_deref(), r.payload.as_slice()),
        (Some("a"), &b"pa"[..])
    );
    assert_eq!(r.header("k"), Some("v"));
    assert_eq!(r.header("ackline.attempts"), Some("1"));
    assert_eq!(r.header("ackline.error"), Some("db busy"));
    let nb: u64 = r
        .header("ackline.not_before")
        .expect("not_before")
        .parse()
        .expect("a number");
    assert!(
        nb >= before + 60_000,
        "not_before {nb} is not 60 s after {before}"
    );
    let dlq = read(&server, &format!("{}.dlq", b.topic()), 1);
    assert_eq!(dlq.len(), 1, "no dead-letter copy");
    let d = &dlq[0];
    assert_eq!(
        (d.key.as_deref(), d.payload.as_slice()),
        (Some("b"), &b"pb"[..])
    );
    assert_eq!(d.header("ackline.reason"), Some("bad line"));
    assert_eq!(d.header("ackline.attempts"), Some("1"));
    assert!(d.header("ackline.last_failure").is_some());
    assert_eq!(d.offset, 0);
    // Both originals are settled: nothing left of the topic, the retry copy pending.
    assert_eq!(
        b.stats().await.expect("stats").pending,
        1,
        "only the retry copy is pending"
    );
    c.close().await;
}

/// A record that arrives with its attempts used up (here written by another producer into the
/// retry topic; after a crash loop, counted by the journal) is never delivered: it goes to the
/// dead-letter topic with reason `max attempts exceeded`, and its offset is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_past_max_attempts_on_arrival_is_dead_lettered_not_delivered() {
    use ackline_broker::DeadLetters;
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let Some(server) = Server::start() else {
        return;
    };
    let b = broker(&server, 3).await;
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", format!("127.0.0.1:{}", server.port))
        .create()
        .expect("a plain producer");
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "ackline.id",
            value: Some("worn"),
        })
        .insert(Header {
            key: "ackline.attempts",
            value: Some("3"),
        })
        .insert(Header {
            key: "ackline.error",
            value: Some("crashed the worker"),
        });
    let retry = format!("{}.retry", b.topic());
    p.send(
        FutureRecord::to(&retry)
            .key("worn")
            .payload("p")
            .headers(headers),
        Duration::from_secs(10),
    )
    .await
    .expect("produce");
    b.publish(vec![Message::new("fresh", "q")])
        .await
        .expect("publish");
    let c = b.consumer(opts()).await.expect("consumer");
    let got = c
        .receive(10, Duration::from_secs(5))
        .await
        .expect("receive");
    let mut ids: Vec<_> = got.iter().map(|d| d.id.clone()).collect();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        ids.extend(
            c.receive(10, Duration::from_millis(300))
                .await
                .expect("receive")
                .into_iter()
                .map(|d| d.id),
        );
    }
    assert_eq!(ids, ["fresh"], "the worn record must not be delivered");
    let until = Instant::now() + Duration::from_secs(10);
    let dl = loop {
        let dl = b.dlq_list(None, 10).await.expect("dlq");
        if !dl.is_empty() || Instant::now() > until {
            break dl;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dl.len(), 1, "not dead-lettered");
    assert_eq!((dl[0].id.as_str(), dl[0].attempts), ("worn", 3));
    assert!(
        dl[0].reason.contains(ackline_broker::REASON_MAX_ATTEMPTS),
        "{}",
        dl[0].reason
    );
    assert_eq!(dl[0].last_error, "crashed the worker");
    c.close().await;
}
