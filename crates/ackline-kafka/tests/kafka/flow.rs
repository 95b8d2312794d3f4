//! Flow control: how far a consumer reads ahead of its worker, and that it goes on once the
//! worker takes what it read.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ackline_broker::{Broker, Consumer, ConsumerOptions, Delivery, Message};
use ackline_kafka::KafkaBroker;
use ackline_kafka::consumer::Buffer;

use crate::common::{self, Server};

const PREFETCH: usize = 20;

async fn recv_n<C: Consumer>(c: &C, n: usize, patience: Duration) -> Vec<Delivery> {
    common::recv_n(c, n, patience, Duration::from_millis(300)).await
}

/// The consumer's buffer once `ok` holds of it (checked every 10 ms, at most `patience`).
async fn buffer_once(
    c: &ackline_kafka::KafkaConsumer,
    patience: Duration,
    what: &str,
    ok: impl Fn(&Buffer) -> bool,
) -> Buffer {
    let deadline = Instant::now() + patience;
    loop {
        let b = c.buffer();
        if ok(&b) {
            return b;
        }
        assert!(Instant::now() < deadline, "{what}: still {b:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A worker that holds `prefetch` deliveries and settles none: the consumer reads `prefetch`
/// records more ahead of it (the high-water mark), then stops reading, and reads nothing more
/// while its polling thread goes round (never more than 2 x `prefetch` records read in all,
/// none lost: the rest wait in librdkafka's partition queue). Once the worker acks and takes
/// the records read ahead, the consumer reads on and every one of ten times `prefetch`
/// messages comes, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_ahead_stops_at_prefetch_beyond_the_held_deliveries() {
    let Some(server) = Server::start() else {
        return;
    };
    let t = common::unique_topic("flow");
    let b = KafkaBroker::connect(&server.url(), &t, common::options(&t, 5))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    let total = 10 * PREFETCH;
    b.publish(
        (0..total)
            .map(|i| Message::new(format!("m-{i}"), "p"))
            .collect(),
    )
    .await
    .expect("publish");
    let c = b
        .consumer(ConsumerOptions {
            prefetch: PREFETCH,
            lease: Duration::from_secs(60),
        })
        .await
        .expect("consumer");
    let mut got = recv_n(&c, PREFETCH, Duration::from_secs(20)).await;
    assert_eq!(got.len(), PREFETCH, "{:?}", c.buffer());
    let full = buffer_once(&c, Duration::from_secs(20), "read ahead to the mark", |b| {
        b.full
    })
    .await;
    // The polling thread goes round a few times more (each round polls librdkafka once).
    let later = buffer_once(&c, Duration::from_secs(5), "three more rounds", |b| {
        b.rounds >= full.rounds + 3
    })
    .await;
    assert!(later.full, "{later:?}");
    assert_eq!(later.held, PREFETCH, "{later:?}");
    assert_eq!(
        later.undelivered, PREFETCH,
        "read ahead to the high-water mark: {later:?}"
    );
    assert_eq!(
        later.read,
        (later.held + later.undelivered) as u64,
        "every record read is held or buffered: {later:?}"
    );
    assert!(
        c.receive(1, Duration::from_millis(100))
            .await
            .expect("receive")
            .is_empty(),
        "more than prefetch held"
    );

    // The worker acks all it holds and goes on taking and acking: the consumer reads on.
    let mut ids = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for d in &got {
            assert!(ids.insert(d.id.clone()), "{} delivered twice", d.id);
            assert_eq!(d.attempt(), 1, "{}", d.id);
        }
        common::ack_all(&c, &got).await;
        if ids.len() == total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {total} delivered: {:?}",
            ids.len(),
            c.buffer()
        );
        let room = c.buffer();
        assert!(room.held == 0 && room.undelivered <= PREFETCH, "{room:?}");
        got = c
            .receive(PREFETCH, Duration::from_millis(300))
            .await
            .expect("receive");
    }
    let end = c.buffer();
    assert_eq!(end.read, total as u64, "{end:?}");
    assert_eq!(b.stats().await.expect("stats").pending, 0);
    c.close().await;
}
