//! `amqps`: the backend over TLS, verified against a private CA.
//!
//! The RabbitMQ on this machine has no TLS listener, so the test runs a TLS-terminating proxy
//! in front of it (tokio-rustls, loopback only) whose certificate is issued per run by a
//! private CA (rcgen). The client side is the backend's own: lapin's rustls connector with the
//! CA given in `RabbitOptions::tls_ca_pem`. What is proved: messages published and consumed
//! over `amqps` arrive intact and acked (through TLS: the proxy counts completed handshakes),
//! and a server certificate the client does not trust is a `Fatal` error naming the
//! certificate, with no password in it, never a plaintext fallback.

use std::time::Duration;

use ackline_broker::{Broker, BrokerError, Consumer, ConsumerOptions, Message, Settlement};
use ackline_rabbitmq::{RabbitBroker, RabbitOptions};

use crate::common;
use crate::tls_proxy::{Pki, TlsProxy};

/// TLS on a free loopback port, plaintext AMQP to the local RabbitMQ behind it.
async fn proxy(pki: &Pki) -> TlsProxy {
    let upstream = ackline_rabbitmq::AmqpUrl::parse(&common::url())
        .unwrap()
        .endpoint();
    TlsProxy::start(pki, "127.0.0.1:0", upstream).await
}

fn url(proxy: &TlsProxy) -> String {
    format!("amqps://guest:guest@{}/%2f", proxy.addr)
}

fn options(ca: Option<&str>) -> RabbitOptions {
    RabbitOptions {
        tls_ca_pem: ca.map(str::to_string),
        connect_timeout: Duration::from_secs(10),
        ..common::options(5, None)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_with_a_private_ca_publishes_consumes_and_acks() {
    publish_consume_ack_over_tls(true).await;
}

/// A consumer dropped instead of closed must not lose the acks it sent either (lapin closes
/// the channel when its last handle goes; no loss was seen on this path in 16 runs, with or
/// without an ack barrier, so `Drop` stays synchronous and this test guards it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_acks_survive_a_dropped_consumer() {
    publish_consume_ack_over_tls(false).await;
}

async fn publish_consume_ack_over_tls(close: bool) {
    if common::reachable().is_none() {
        return;
    }
    let pki = Pki::new();
    let proxy = proxy(&pki).await;
    let cleanup = common::Cleanup::default();
    let queue = common::unique_queue("tls");
    let opts = options(Some(&pki.ca_pem));
    cleanup.add(&queue, &opts);
    let broker = RabbitBroker::connect(&url(&proxy), &queue, opts)
        .await
        .unwrap();
    assert!(broker.url().tls(), "the connection is amqps");

    const N: usize = 50;
    let batch: Vec<Message> = (0..N)
        .map(|i| Message::new(format!("tls-{i}"), format!("over TLS {i}")))
        .collect();
    broker.publish(batch).await.unwrap();

    let consumer = broker
        .consumer(ConsumerOptions {
            prefetch: 100,
            lease: Duration::from_secs(30),
        })
        .await
        .unwrap();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < N {
        assert!(tokio::time::Instant::now() < deadline, "got {}", got.len());
        got.extend(
            consumer
                .receive(N, Duration::from_millis(500))
                .await
                .unwrap(),
        );
    }
    let mut ids: Vec<String> = got.iter().map(|d| d.id.clone()).collect();
    ids.sort();
    let mut want: Vec<String> = (0..N).map(|i| format!("tls-{i}")).collect();
    want.sort();
    assert_eq!(ids, want);
    for d in &got {
        let i = d.id.trim_start_matches("tls-");
        assert_eq!(d.payload, format!("over TLS {i}").into_bytes());
    }
    let acks = got
        .iter()
        .map(|d| (d.tag.clone(), Settlement::Ack))
        .collect();
    let results = consumer.settle(acks).await.unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    if close {
        consumer.close().await;
    } else {
        drop(consumer);
    }
    // AMQP does not confirm acks: RabbitMQ applies them shortly after; none may come back.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stats = broker.stats().await.unwrap();
        if stats.pending == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "acked messages are still in the queue: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(proxy.handshakes() >= 1, "the traffic went through TLS");
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_refuses_a_server_certificate_it_does_not_trust() {
    if common::reachable().is_none() {
        return;
    }
    let pki = Pki::new();
    let proxy = proxy(&pki).await;
    let queue = common::unique_queue("tls-untrusted");
    // Only the system's roots: the private CA is unknown to them.
    let err = RabbitBroker::connect(&url(&proxy), &queue, options(None))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BrokerError::Fatal { .. }),
        "a refused certificate is not cured by waiting: {err}"
    );
    let text = err.to_string();
    assert!(text.contains("certificate"), "{text}");
    assert!(!text.contains("guest:guest"), "{text}");
    assert_eq!(
        proxy.handshakes(),
        0,
        "no TLS session was completed with the untrusted server"
    );
}
