//! The backend contract suite: every rule of the delivery contract as a test, written once and
//! run against every backend through a [`Factory`].
//!
//! Backends cannot all take an injected clock (a RabbitMQ server keeps its own time), so these
//! tests use real time with short leases and delays, and wait for conditions with deadlines
//! (a receive that waits is the condition); margins are wide enough for a loaded 2-core machine.
//!
//! Use [`contract_tests!`](crate::contract_tests) to expand the suite into one `#[tokio::test]`
//! per rule in a backend's test file.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test support: a panic is a failed assertion

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use crate::{
    Broker, BrokerError, Consumer, ConsumerOptions, DeadLetters, Delivery, DlqSelector, Message,
    SettleError, Settlement, Tag,
};

/// What a test asks of a fresh queue.
#[derive(Debug, Clone, Copy)]
pub struct ContractOptions {
    /// Deliveries allowed before the dead-letter queue.
    pub max_attempts: u32,
    /// A byte limit for the backpressure test (`None`: the backend's default).
    pub max_bytes: Option<u64>,
}

/// Makes a fresh, empty queue for each test (unique names on shared servers).
pub trait Factory: Sync {
    /// The backend.
    type B: Broker + DeadLetters;
    /// A new queue.
    fn make(&self, opts: ContractOptions) -> impl Future<Output = Self::B> + Send;
}

const OPTS: ContractOptions = ContractOptions {
    max_attempts: 3,
    max_bytes: None,
};
const LONG: Duration = Duration::from_secs(60);
const SHORT_LEASE: Duration = Duration::from_millis(600);
const NACK_DELAY: Duration = Duration::from_millis(800);
const PATIENCE: Duration = Duration::from_secs(10);

fn msgs(range: std::ops::Range<usize>) -> Vec<Message> {
    range
        .map(|i| {
            Message::new(format!("m-{i}"), format!("payload {i}")).with_header("n", i.to_string())
        })
        .collect()
}

fn opts(lease: Duration) -> ConsumerOptions {
    ConsumerOptions {
        prefetch: 1000,
        lease,
    }
}

/// Receives until `n` deliveries arrived or `PATIENCE` ran out.
async fn recv_n<C: Consumer>(c: &C, n: usize) -> Vec<Delivery> {
    let deadline = Instant::now() + PATIENCE;
    let mut out = Vec::new();
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        out.extend(
            c.receive(n - out.len(), left.min(Duration::from_secs(1)))
                .await
                .unwrap(),
        );
    }
    out
}

async fn settle_one<C: Consumer>(c: &C, tag: &Tag, s: Settlement) -> Result<(), SettleError> {
    c.settle(vec![(tag.clone(), s)]).await.unwrap().remove(0)
}

async fn ack<C: Consumer>(c: &C, tag: &Tag) -> Result<(), SettleError> {
    settle_one(c, tag, Settlement::Ack).await
}

/// Publish (owned and borrowed), receive in order with attempt 1 and intact content, ack; a
/// second ack is an error.
pub async fn publish_receive_ack<F: Factory>(f: &F) {
    let b = f.make(OPTS).await;
    b.publish(msgs(0..2)).await.unwrap();
    let kept = msgs(2..3);
    b.publish_borrowed(&kept).await.unwrap();
    let c = b.consumer(opts(LONG)).await.unwrap();
    let ds = recv_n(&c, 3).await;
    let ids: Vec<_> = ds.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(
        ids,
        ["m-0", "m-1", "m-2"],
        "first deliveries in publish order"
    );
    assert_eq!(ds[1].payload, b"payload 1");
    assert_eq!(ds[1].header("n"), Some("1"));
    assert_eq!(
        ds[2].payload, kept[0].payload,
        "a borrowed batch arrives intact"
    );
    assert_eq!(ds[2].header("n"), Some("2"));
    assert!(ds.iter().all(|d| d.attempt() == 1));
    for d in &ds {
        ack(&c, &d.tag).await.unwrap();
    }
    assert_eq!(ack(&c, &ds[0].tag).await, Err(SettleError::AlreadySettled));
    assert!(
        c.receive(10, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty()
    );
    let st = b.stats().await.unwrap();
    assert_eq!(st.pending, 0);
}

/// A nack redelivers no earlier than its delay, with attempt + 1.
pub async fn nack_redelivers_after_its_delay<F: Factory>(f: &F) {
    let b = f.make(OPTS).await;
    b.publish(msgs(0..1)).await.unwrap();
    let c = b.consumer(opts(LONG)).await.unwrap();
    let d = recv_n(&c, 1).await.remove(0);
    let nacked = Instant::now();
    settle_one(
        &c,
        &d.tag,
        Settlement::Nack {
            delay: NACK_DELAY,
            error: "busy".into(),
        },
    )
    .await
    .unwrap();
    let again = recv_n(&c, 1).await;
    assert_eq!(again.len(), 1, "never redelivered");
    assert!(
        nacked.elapsed() >= NACK_DELAY,
        "redelivered after {:?}, before the delay",
        nacked.elapsed()
    );
    assert_eq!((again[0].id.as_str(), again[0].attempt()), ("m-0", 2));
}

/// A reject dead-letters at once, keeping the message, its attempts and the reason.
pub async fn reject_dead_letters_with_reason<F: Factory>(f: &F) {
    let b = f.make(OPTS).await;
    b.publish(msgs(0..2)).await.unwrap();
    let c = b.consumer(opts(LONG)).await.unwrap();
    let ds = recv_n(&c, 2).await;
    settle_one(
        &c,
        &ds[1].tag,
        Settlement::Reject {
            reason: "parse error at byte 3".into(),
        },
    )
    .await
    .unwrap();
    let list = b.dlq_list(None, 10).await.unwrap();
    assert_eq!(list.len(), 1);
    let dl = &list[0];
    assert_eq!(
        (dl.id.as_str(), dl.payload.as_slice(), dl.attempts),
        ("m-1", &b"payload 1"[..], 1)
    );
    assert!(dl.reason.contains("parse error at byte 3"), "{}", dl.reason);
    assert_eq!(b.dlq_get(dl.key).await.unwrap().as_ref(), Some(dl));
    assert_eq!(ack(&c, &ds[1].tag).await, Err(SettleError::AlreadySettled));
}

/// An expired lease redelivers with attempt + 1; the old delivery is fenced off.
pub async fn lease_expiry_redelivers_and_fences<F: Factory>(f: &F) {
    let b = f.make(OPTS).await;
    b.publish(msgs(0..1)).await.unwrap();
    let slow = b.consumer(opts(SHORT_LEASE)).await.unwrap();
    let fast = b.consumer(opts(LONG)).await.unwrap();
    let first = recv_n(&slow, 1).await.remove(0);
    let second = recv_n(&fast, 1).await;
    assert_eq!(second.len(), 1, "not redelivered after the lease expired");
    assert_eq!(second[0].attempt(), 2);
    assert!(matches!(
        ack(&slow, &first.tag).await,
        Err(SettleError::Stale { .. })
    ));
    ack(&fast, &second[0].tag).await.unwrap();
}

/// Extending a lease keeps the delivery from being redelivered.
pub async fn extend_keeps_the_lease<F: Factory>(f: &F) {
    let b = f.make(OPTS).await;
    b.publish(msgs(0..1)).await.unwrap();
    let holder = b.consumer(opts(SHORT_LEASE)).await.unwrap();
    let other = b.consumer(opts(LONG)).await.unwrap();
    let d = recv_n(&holder, 1).await.remove(0);
    let until = Instant::now() + SHORT_LEASE * 3;
    while Instant::now() < until {
        settle_one(&holder, &d.tag, Settlement::Extend { lease: SHORT_LEASE })
            .await
            .unwrap();
        let got = other.receive(1, SHORT_LEASE / 3).await.unwrap();
        assert!(
            got.is_empty(),
            "redelivered while its lease was being extended"
        );
    }
    ack(&holder, &d.tag).await.unwrap();
}

/// Past `max_attempts` deliveries a message is dead-lettered with that reason and its last error.
pub async fn max_attempts_dead_letters<F: Factory>(f: &F) {
    let b = f.make(OPTS).await;
    b.publish(msgs(0..1)).await.unwrap();
    let c = b.consumer(opts(LONG)).await.unwrap();
    for attempt in 1..=OPTS.max_attempts {
        let d = recv_n(&c, 1).await;
        assert_eq!(d.len(), 1, "attempt {attempt} never came");
        assert_eq!(d[0].attempt(), attempt);
        let error = format!("failure {attempt}");
        settle_one(
            &c,
            &d[0].tag,
            Settlement::Nack {
                delay: Duration::ZERO,
                error,
            },
        )
        .await
        .unwrap();
    }
    assert!(
        c.receive(1, Duration::from_millis(500))
            .await
            .unwrap()
            .is_empty()
    );
    let dl = b.dlq_list(None, 10).await.unwrap();
    assert_eq!(dl.len(), 1);
    assert!(
        dl[0].reason.contains(crate::REASON_MAX_ATTEMPTS),
        "{}",
        dl[0].reason
    );
    assert!(
        dl[0]
            .last_error
            .contains(&format!("failure {}", OPTS.max_attempts)),
        "{}",
        dl[0].last_error
    );
}

/// A closed consumer's deliveries are redelivered at once, not after the lease.
pub async fn close_releases_at_once<F: Factory>(f: &F) {
    let b = f.make(OPTS).await;
    b.publish(msgs(0..2)).await.unwrap();
    let c1 = b.consumer(opts(LONG)).await.unwrap();
    assert_eq!(recv_n(&c1, 2).await.len(), 2);
    c1.close().await;
    let c2 = b.consumer(opts(LONG)).await.unwrap();
    let started = Instant::now();
    let again = recv_n(&c2, 2).await;
    assert_eq!(again.len(), 2, "released deliveries never came back");
    assert!(
        started.elapsed() < LONG / 2,
        "came back only after the lease"
    );
    assert!(again.iter().all(|d| d.attempt() == 2));
}

/// Replay puts dead letters back with attempts reset and the same id; purge removes them.
pub async fn dead_letter_replay_and_purge<F: Factory>(f: &F) {
    let b = f.make(OPTS).await;
    b.publish(msgs(0..3)).await.unwrap();
    let c = b.consumer(opts(LONG)).await.unwrap();
    for d in recv_n(&c, 3).await {
        let reason = if d.id == "m-2" {
            "bad schema"
        } else {
            "store said no"
        };
        settle_one(
            &c,
            &d.tag,
            Settlement::Reject {
                reason: reason.into(),
            },
        )
        .await
        .unwrap();
    }
    assert_eq!(
        b.dlq_replay(DlqSelector::Ids(vec!["m-1".into()]))
            .await
            .unwrap(),
        1
    );
    let d = recv_n(&c, 1).await;
    assert_eq!(
        (d[0].id.as_str(), d[0].attempt(), d[0].payload.as_slice()),
        ("m-1", 1, &b"payload 1"[..])
    );
    assert_eq!(
        b.dlq_purge(DlqSelector::Matching("schema".into()))
            .await
            .unwrap(),
        1
    );
    let left: Vec<_> = b
        .dlq_list(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(left, ["m-0"]);
    assert_eq!(b.dlq_replay(DlqSelector::All).await.unwrap(), 1);
    assert!(b.dlq_list(None, 10).await.unwrap().is_empty());
}

/// A full queue refuses publishes with `Full`, never a silent drop.
pub async fn backpressure_refuses_when_full<F: Factory>(f: &F) {
    let b = f
        .make(ContractOptions {
            max_bytes: Some(64 * 1024),
            ..OPTS
        })
        .await;
    let big = |i: usize| Message::new(format!("b-{i}"), vec![b'x'; 4096]);
    let mut refused = None;
    for i in 0..64 {
        if let Err(e) = b.publish(vec![big(i)]).await {
            refused = Some((i, e));
            break;
        }
    }
    let (i, e) = refused.expect("64 x 4 KiB into a 64 KiB queue: a publish must be refused");
    assert!(matches!(e, BrokerError::Full { .. }), "{e}");
    assert!(b.stats().await.unwrap().pending <= i as u64);
}

/// Settling a delivery the backend never made is an error value.
pub async fn unknown_deliveries_are_refused<F: Factory>(f: &F) {
    let b = f.make(OPTS).await;
    b.publish(msgs(0..1)).await.unwrap();
    let c = b.consumer(opts(LONG)).await.unwrap();
    let bogus = Tag {
        key: 987_654,
        attempt: 1,
        token: None,
    };
    assert!(ack(&c, &bogus).await.is_err());
}

/// Several consumers at once: every message acked exactly once, none lost.
pub async fn no_loss_with_concurrent_consumers<F: Factory>(f: &F) {
    const N: usize = 600;
    let b = f.make(OPTS).await;
    for chunk in (0..N).collect::<Vec<_>>().chunks(50) {
        b.publish(msgs(chunk[0]..chunk[0] + chunk.len()))
            .await
            .unwrap();
    }
    let mut cs = Vec::new();
    for _ in 0..3 {
        cs.push(
            b.consumer(ConsumerOptions {
                prefetch: 40,
                lease: LONG,
            })
            .await
            .unwrap(),
        );
    }
    let acked = std::sync::Mutex::new(Vec::new());
    tokio::join!(
        ack_all(&cs[0], &acked, N),
        ack_all(&cs[1], &acked, N),
        ack_all(&cs[2], &acked, N)
    );
    let acked = acked.into_inner().unwrap();
    let unique: BTreeSet<_> = acked.iter().collect();
    assert_eq!(unique.len(), acked.len(), "a message was acked twice");
    assert_eq!(acked.len(), N, "messages lost");
    assert_eq!(b.stats().await.unwrap().pending, 0);
}

/// Receives and acks until `n` acks were recorded in `acked` (by any consumer).
async fn ack_all<C: Consumer>(c: &C, acked: &std::sync::Mutex<Vec<String>>, n: usize) {
    let deadline = Instant::now() + PATIENCE * 3;
    loop {
        let done = acked.lock().unwrap().len() >= n;
        if done || Instant::now() > deadline {
            return;
        }
        let ds = c.receive(40, Duration::from_millis(200)).await.unwrap();
        let items = ds
            .iter()
            .map(|d| (d.tag.clone(), Settlement::Ack))
            .collect();
        let results = c.settle(items).await.unwrap();
        let mut a = acked.lock().unwrap();
        for (d, r) in ds.into_iter().zip(results) {
            r.unwrap();
            a.push(d.id);
        }
    }
}

/// Expands the suite into one `#[tokio::test]` per rule for a factory expression.
#[macro_export]
macro_rules! contract_tests {
    ($factory:expr) => {
        $crate::contract_tests!(@each $factory;
            publish_receive_ack,
            nack_redelivers_after_its_delay,
            reject_dead_letters_with_reason,
            lease_expiry_redelivers_and_fences,
            extend_keeps_the_lease,
            max_attempts_dead_letters,
            close_releases_at_once,
            dead_letter_replay_and_purge,
            backpressure_refuses_when_full,
            unknown_deliveries_are_refused,
            no_loss_with_concurrent_consumers
        );
    };
    (@each $factory:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::contract::$name(&$factory).await;
            }
        )*
    };
}
