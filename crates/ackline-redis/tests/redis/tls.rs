//! `rediss://`: the backend over TLS, verified against a private CA.
//!
//! The test's redis-server gets a TLS port with a certificate issued per run by a private CA
//! (rcgen). What is proved: messages published and consumed over `rediss` with the CA given in
//! `RedisOptions::tls_ca_pem` arrive intact and are acked (the port speaks only TLS), and a
//! server certificate the client does not trust is a `Fatal` error naming the certificate,
//! with no password in it, never a plaintext fallback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ackline_broker::{Broker, BrokerError, Consumer, ConsumerOptions, Message, Settlement};
use ackline_redis::{RedisBroker, RedisOptions};

use crate::common::{self, Persistence, Server};
use crate::pki::Pki;

/// A redis-server with a TLS port whose certificate a fresh private CA issued; returns the
/// server, the TLS port and the CA's PEM.
fn tls_server() -> Option<(Server, u16, String)> {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let (ca_file, cert_file, key_file) = pki.write(dir.path());
    let tls_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let port = tls_port.to_string();
    let server = Server::start_with(
        Persistence::AofAlways,
        &[
            "--tls-port",
            &port,
            "--tls-cert-file",
            cert_file.to_str().unwrap(),
            "--tls-key-file",
            key_file.to_str().unwrap(),
            "--tls-ca-cert-file",
            ca_file.to_str().unwrap(),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            "s3cret-pw",
        ],
    )?;
    // The files are read at start; the directory may go.
    Some((server, tls_port, pki.ca_pem))
}

fn options(ca: Option<&str>) -> RedisOptions {
    RedisOptions {
        tls_ca_pem: ca.map(str::to_owned),
        ..common::options(5, None)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_ca_publishes_consumes_and_acks() {
    let Some((_server, port, ca)) = tls_server() else {
        return;
    };
    let url = format!("rediss://:s3cret-pw@127.0.0.1:{port}/0");
    let queue = common::unique_queue("tls");
    let broker = RedisBroker::connect(&url, &queue, options(Some(&ca)))
        .await
        .unwrap();
    assert!(broker.url().tls(), "the connection is rediss");
    assert!(!broker.url().to_string().contains("s3cret"));

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
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.id, format!("tls-{i}"));
        assert_eq!(d.payload, format!("over TLS {i}").into_bytes());
    }
    let acks = got
        .iter()
        .map(|d| (d.tag.clone(), Settlement::Ack))
        .collect();
    let results = consumer.settle(acks).await.unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    consumer.close().await;
    assert_eq!(broker.stats().await.unwrap().pending, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_refuses_a_server_certificate_it_does_not_trust() {
    let Some((_server, port, _ca)) = tls_server() else {
        return;
    };
    let url = format!("rediss://:s3cret-pw@127.0.0.1:{port}/0");
    // Only the system's roots: the private CA is unknown to them.
    let err = RedisBroker::connect(&url, &common::unique_queue("tls-untrusted"), options(None))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BrokerError::Fatal { .. }),
        "a refused certificate is not cured by waiting: {err}"
    );
    let text = err.to_string();
    assert!(text.contains("certificate"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}
