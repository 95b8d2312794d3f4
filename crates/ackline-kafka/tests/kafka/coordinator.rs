//! The group coordinator misbehaving, through a proxy in front of tansu that reads the Kafka
//! frames going to the broker (tansu advertises the proxy's port, so every connection of the
//! clients goes through it):
//! - **a JoinGroup never answered**: the proxy passes the first JoinGroup on, then drops every
//!   byte tansu sends back on that connection (tansu processes the join; its answer never
//!   arrives). librdkafka waits for a JoinGroup's answer for `max.poll.interval.ms` + 3 s (it
//!   sends that as the rebalance timeout, for which a Kafka coordinator may hold a JoinGroup),
//!   303 s with librdkafka's default, unless another request on that connection times out
//!   first (`socket.timeout.ms`, 60 s) and takes the connection down. The backend sets
//!   `max.poll.interval.ms` from its own timeouts (`revoke_grace` + `request_timeout` + 10 s),
//!   so the JoinGroup times out, librdkafka drops the connection and joins again.
//! - **answers held past the session timeout**: the proxy holds every answer (it passes the
//!   requests on) for longer than the group session, then lets them through, as a broker slow
//!   to answer does. tansu sees the member's heartbeats; the client sees none answered, gives
//!   its assignment up as lost and joins again with a new member id while tansu still counts
//!   the old one, which is how the bench's stalled rounds began (docs/BENCHMARKS.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ackline_broker::{Broker, Consumer, ConsumerOptions, Settlement};
use ackline_kafka::{KafkaBroker, KafkaOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::{self, Server};
use crate::worker;

/// Kafka's API key of JoinGroup.
const JOIN_GROUP: i16 = 11;

/// Forwards `addr` to `upstream`. It swallows the answers on the connection of the first
/// `budget` JoinGroups, and holds every connection's answers while [`FaultProxy::hold`] is
/// on. Stops when dropped.
struct FaultProxy {
    addr: SocketAddr,
    swallowed: Arc<AtomicUsize>,
    hold: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    async fn start(listen: SocketAddr, upstream: SocketAddr, budget: usize) -> FaultProxy {
        let listener = TcpListener::bind(listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let swallowed = Arc::new(AtomicUsize::new(0));
        let counted = swallowed.clone();
        let (hold, held) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let (counted, mut held) = (counted.clone(), held.clone());
                tokio::spawn(async move {
                    let (mut from_client, mut to_client) = client.into_split();
                    let (mut from_server, mut to_server) = server.into_split();
                    let muted = Arc::new(AtomicBool::new(false));
                    let mute = muted.clone();
                    // Requests: whole frames (a 4-byte length, then the API key first).
                    let requests = async move {
                        loop {
                            let mut len = [0u8; 4];
                            if from_client.read_exact(&mut len).await.is_err() {
                                return;
                            }
                            let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
                            if from_client.read_exact(&mut frame).await.is_err() {
                                return;
                            }
                            let key = frame
                                .get(..2)
                                .map(|k| i16::from_be_bytes([k[0], k[1]]))
                                .unwrap_or(-1);
                            if key == JOIN_GROUP
                                && !mute.load(Ordering::Acquire)
                                && counted
                                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                                        (n < budget).then_some(n + 1)
                                    })
                                    .is_ok()
                            {
                                // Before the request goes on, so its answer is never passed.
                                mute.store(true, Ordering::Release);
                            }
                            if to_server.write_all(&len).await.is_err()
                                || to_server.write_all(&frame).await.is_err()
                            {
                                return;
                            }
                        }
                    };
                    // Answers: held while `hold` is on, dropped once the connection is muted.
                    let answers = async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match from_server.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if held.wait_for(|on| !on).await.is_err() {
                                return;
                            }
                            if !muted.load(Ordering::Acquire)
                                && to_client.write_all(&buf[..n]).await.is_err()
                            {
                                return;
                            }
                        }
                    };
                    // The connection ends when the client closes it (librdkafka does after
                    // a timed-out request); the broker's side is dropped with it.
                    tokio::select! {
                        () = requests => {}
                        () = answers => {}
                    }
                });
            }
        });
        FaultProxy {
            addr,
            swallowed,
            hold,
            task,
        }
    }

    /// JoinGroups whose answer was dropped (never more than the budget).
    fn swallowed(&self) -> usize {
        self.swallowed.load(Ordering::Acquire)
    }

    /// Holds every connection's answers (`true`) or lets them through (`false`).
    fn hold(&self, on: bool) {
        self.hold.send_replace(on);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// tansu behind a [`FaultProxy`] (the proxy's port chosen first, for tansu to advertise).
async fn behind_proxy(budget: usize) -> Option<(Server, FaultProxy)> {
    let port = common::free_port();
    let server = Server::start_behind(port)?;
    let upstream: SocketAddr = format!("127.0.0.1:{}", server.port).parse().unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let proxy = FaultProxy::start(listen, upstream, budget).await;
    Some((server, proxy))
}

/// The consumer's first JoinGroup is never answered: it still gets its assignment, within
/// `max.poll.interval.ms` + 3 s (19 s here) plus a join, and every message is delivered once
/// and acked. With librdkafka's default interval the first delivery came after 61 s (a
/// metadata request behind the JoinGroup timed out at `socket.timeout.ms`), or would after
/// 303 s: this test's patience is 45 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_the_coordinator_never_answers_is_given_up_and_retried() {
    let Some((_server, proxy)) = behind_proxy(1).await else {
        return;
    };
    let topic = common::unique_topic("unanswered-join");
    let opts = KafkaOptions {
        // max.poll.interval.ms = 1 + 5 + 10 = 16 s: the JoinGroup times out after 19 s.
        revoke_grace: Duration::from_secs(1),
        request_timeout: Duration::from_secs(5),
        ..common::options(&topic, 5)
    };
    let url = format!("kafka://{}", proxy.addr);
    let broker = KafkaBroker::connect(&url, &topic, opts).await.unwrap();
    const N: usize = 20;
    broker
        .publish(worker::lines("unanswered", 0..N))
        .await
        .unwrap();
    let started = Instant::now();
    let c = broker
        .consumer(ConsumerOptions {
            prefetch: 100,
            lease: Duration::from_secs(60),
        })
        .await
        .unwrap();
    let got = common::recv_n(&c, N, Duration::from_secs(45), Duration::from_millis(500)).await;
    let took = started.elapsed();
    println!(
        "{} of {N} delivered after {took:?}; JoinGroup answers swallowed: {}",
        got.len(),
        proxy.swallowed()
    );
    assert_eq!(
        proxy.swallowed(),
        1,
        "the fault was made: a JoinGroup went unanswered"
    );
    assert_eq!(got.len(), N, "all delivered within 45 s");
    let mut ids: Vec<String> = got.iter().map(|d| d.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), N, "each once");
    common::ack_all_and_close(&broker, c, &got).await;
}

/// Answers held for the session timeout + 4 s while the consumer works: librdkafka's session
/// times out on the client side (`SESSTMOUT`) while tansu, which saw the heartbeats, still
/// counts the old member; the consumer rejoins with a new member id. The 10 deliveries it
/// held across the fault must be fenced (their acks refused), and every message must come
/// (back) and be acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_held_past_the_session_timeout_end_in_a_rejoin_that_completes() {
    let Some((_server, proxy)) = behind_proxy(0).await else {
        return;
    };
    let topic = common::unique_topic("held-answers");
    let opts = KafkaOptions {
        // Not the tests' 6 s: tansu counts only heartbeats as a member's contact, not its
        // JoinGroups and SyncGroups, so the rebalances after the fault (3 s or more without
        // a heartbeat each) can expire a live member of a 6 s session, and tansu 0.6 then
        // keeps the group's dead leader for good (docs/kafka.md, "tansu": the group that
        // never forms again). 10 s is the backend's default.
        session_timeout: Duration::from_secs(10),
        ..common::options(&topic, 5)
    };
    let session = opts.session_timeout;
    let url = format!("kafka://{}", proxy.addr);
    let broker = KafkaBroker::connect(&url, &topic, opts).await.unwrap();
    const N: usize = 200;
    broker.publish(worker::lines("held", 0..N)).await.unwrap();
    let c = broker
        .consumer(ConsumerOptions {
            prefetch: 20,
            lease: Duration::from_secs(60),
        })
        .await
        .unwrap();
    let mut acked = std::collections::BTreeSet::new();
    let ack_all = |ds: Vec<ackline_broker::Delivery>| {
        let ids: Vec<String> = ds.iter().map(|d| d.id.clone()).collect();
        let items = ds.into_iter().map(|d| (d.tag, Settlement::Ack)).collect();
        (ids, items)
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    // Before the fault: 50 acked, then up to 10 received and held across it.
    let mut held = Vec::new();
    while held.is_empty() && Instant::now() < deadline {
        let ds = c.receive(10, Duration::from_millis(500)).await.unwrap();
        if acked.len() >= 50 {
            held = ds;
            continue;
        }
        let (ids, items) = ack_all(ds);
        for (id, r) in ids.into_iter().zip(c.settle(items).await.unwrap()) {
            if r.is_ok() {
                acked.insert(id);
            }
        }
    }
    assert!(!held.is_empty(), "deliveries held when the fault starts");
    let fault = session + Duration::from_secs(4);
    println!(
        "{} acked, {} held; holding the answers for {fault:?}",
        acked.len(),
        held.len()
    );
    proxy.hold(true);
    tokio::time::sleep(fault).await; // the fault's length
    proxy.hold(false);
    // The session timed out on the client: the partitions were lost and the held deliveries
    // fenced, so their acks are refused and the next owner (this consumer, rejoined) gets
    // them again.
    let (held_ids, items) = ack_all(held);
    let refused = c.settle(items).await.unwrap();
    assert!(
        refused.iter().all(Result::is_err),
        "deliveries held across a lost session are fenced: {refused:?}"
    );
    while acked.len() < N && Instant::now() < deadline {
        let ds = c.receive(10, Duration::from_millis(500)).await.unwrap();
        let (ids, items) = ack_all(ds);
        for (id, r) in ids.into_iter().zip(c.settle(items).await.unwrap()) {
            if r.is_ok() {
                acked.insert(id);
            }
        }
    }
    println!("{} of {N} acked", acked.len());
    assert_eq!(
        acked.len(),
        N,
        "every message acked after the rejoin, within 120 s"
    );
    assert!(
        held_ids.iter().all(|id| acked.contains(id)),
        "the fenced deliveries came back and were acked"
    );
    let stats = worker::settled(&broker, Duration::from_secs(30)).await;
    assert_eq!(stats.pending, 0, "{stats:?}");
    c.close().await;
}
