//! `kafkas://`: the backend over TLS (librdkafka with the system's OpenSSL), verified against
//! a private CA.
//!
//! tansu 0.6 has no TLS listener, so a TLS-terminating proxy (tokio-rustls, loopback) stands in
//! front of it with a certificate for 127.0.0.1 that a CA made for this run issued, and tansu
//! advertises the proxy's port, so that every connection librdkafka makes (bootstrap, then the
//! broker it learns from metadata) goes through TLS. What is proved:
//! - with the CA in `KafkaOptions::tls_ca_pem`, messages are published, consumed and acked,
//!   and the proxy completed TLS sessions;
//! - without it (the system's roots only) the certificate is refused: `connect` fails `Fatal`,
//!   naming the certificate, within `request_timeout`, and no TLS session completes;
//! - `kafkas://` to a plaintext listener is `Fatal` too: never a plaintext fallback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use ackline_broker::{Broker, BrokerError, ConsumerOptions};
use ackline_kafka::{KafkaBroker, KafkaOptions};

use crate::common::{self, Server};
use crate::tls_proxy::{Pki, TlsProxy};
use crate::worker;

/// tansu behind a TLS proxy: the proxy's port is chosen first, so that tansu can advertise it.
async fn behind_tls(pki: &Pki) -> Option<(Server, TlsProxy)> {
    let port = common::free_port();
    let server = Server::start_behind(port)?;
    let upstream = format!("127.0.0.1:{}", server.port);
    let proxy = TlsProxy::start(pki, &format!("127.0.0.1:{port}"), upstream).await;
    Some((server, proxy))
}

/// A `connect` that must fail: its error; panics when it took longer than
/// `request_timeout` + 5 s.
async fn refused(url: &str, topic: &str, opts: KafkaOptions) -> BrokerError {
    let patience = opts.request_timeout + Duration::from_secs(5);
    let started = Instant::now();
    let err = KafkaBroker::connect(url, topic, opts).await.unwrap_err();
    let took = started.elapsed();
    println!("{url} refused after {took:?}: {err}");
    assert!(took < patience, "took {took:?}");
    err
}

fn options(topic: &str, ca: Option<&str>) -> KafkaOptions {
    KafkaOptions {
        tls_ca_pem: ca.map(str::to_owned),
        request_timeout: Duration::from_secs(5),
        ..common::options(topic, 5)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafkas_with_a_private_ca_publishes_consumes_and_acks() {
    let pki = Pki::new();
    let Some((_server, proxy)) = behind_tls(&pki).await else {
        return;
    };
    let topic = common::unique_topic("tls");
    let url = format!("kafkas://{}", proxy.addr);
    let broker = KafkaBroker::connect(&url, &topic, options(&topic, Some(&pki.ca_pem)))
        .await
        .unwrap();
    const N: usize = 50;
    broker.publish(worker::lines("tls", 0..N)).await.unwrap();
    let c = broker
        .consumer(ConsumerOptions {
            prefetch: 100,
            lease: Duration::from_secs(30),
        })
        .await
        .unwrap();
    let got = common::recv_n(&c, N, Duration::from_secs(60), Duration::from_millis(500)).await;
    let mut ids: Vec<String> = got.iter().map(|d| d.id.clone()).collect();
    ids.sort();
    let mut want: Vec<String> = (0..N).map(|i| format!("tls-{i}")).collect();
    want.sort();
    assert_eq!(ids, want, "every message came through, once");
    let sent = worker::lines("tls", 0..N);
    for d in &got {
        let m = sent.iter().find(|m| m.id == d.id).unwrap();
        assert_eq!(d.payload, m.payload, "{} intact", d.id);
    }
    common::ack_all_and_close(&broker, c, &got).await;
    assert!(proxy.handshakes() >= 1, "the traffic went through TLS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafkas_refuses_a_certificate_it_does_not_trust() {
    let pki = Pki::new();
    let Some((_server, proxy)) = behind_tls(&pki).await else {
        return;
    };
    let topic = common::unique_topic("tls-untrusted");
    let url = format!("kafkas://{}", proxy.addr);
    let err = refused(&url, &topic, options(&topic, None)).await;
    assert!(
        matches!(err, BrokerError::Fatal { .. }),
        "a refused certificate is not cured by waiting: {err}"
    );
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_eq!(
        proxy.handshakes(),
        0,
        "no TLS session was completed with the untrusted server"
    );
}

/// tansu reads the TLS hello as a request frame of about 370 MB and waits for the rest, so
/// the handshake never ends: `connect` fails `Unavailable` after `request_timeout`. (Kafka
/// closes such a connection; librdkafka then says "connecting to a PLAINTEXT broker
/// listener?", which the error carries.) Either way nothing is sent in plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafkas_to_a_plaintext_listener_fails_and_never_falls_back() {
    let Some(server) = Server::start() else {
        return;
    };
    let topic = common::unique_topic("tls-plain");
    let pki = Pki::new();
    let url = format!("kafkas://127.0.0.1:{}", server.port);
    let err = refused(&url, &topic, options(&topic, Some(&pki.ca_pem))).await;
    assert!(
        matches!(
            err,
            BrokerError::Unavailable { .. } | BrokerError::Fatal { .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("(TLS"), "{err}");
}
