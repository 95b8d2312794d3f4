//! `tls://` with a private CA and credentials, against a private nats-server started with its
//! own certificate (signed by a CA made for this run) and a user and password: the backend
//! connects with the CA given in `NatsOptions::tls_ca_pem` and the credentials from the URL;
//! without the CA the certificate is refused (`Fatal`, never a silent downgrade), and a wrong
//! password is `Fatal` too.

use std::time::Duration;

use ackline_broker::{Broker, BrokerError, Consumer, ConsumerOptions, Message, Settlement};
use ackline_nats::{NatsBroker, NatsOptions};

use crate::common::{self, PrivateServer};
use crate::pki::Pki;

/// A CA and a server certificate for 127.0.0.1, written as PEM files; the CA's PEM.
fn pki(dir: &std::path::Path) -> String {
    let pki = Pki::new();
    pki.write(dir);
    pki.ca_pem
}

fn options(ca: Option<String>) -> NatsOptions {
    NatsOptions {
        tls_ca_pem: ca,
        connect_timeout: Duration::from_secs(5),
        ..common::options(3, None)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_and_credentials() {
    let Some(bin) = common::server_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca = pki(dir.path());
    let cert = dir.path().join("server.pem").display().to_string();
    let key = dir.path().join("server.key").display().to_string();
    let server = PrivateServer::start(
        bin,
        dir.path(),
        &[
            "--tls",
            "--tlscert",
            &cert,
            "--tlskey",
            &key,
            "--user",
            "ackline",
            "--pass",
            "s3cret",
        ],
    );
    let port = server.port;
    let url = format!("tls://ackline:s3cret@127.0.0.1:{port}");
    let queue = common::unique_queue("tls");

    let b = NatsBroker::connect(&url, &queue, options(Some(ca.clone())))
        .await
        .expect("tls:// with the private CA and the URL's credentials");
    b.publish(vec![Message::new("t-1", "over TLS")])
        .await
        .unwrap();
    let c = b
        .consumer(ConsumerOptions {
            prefetch: 10,
            lease: Duration::from_secs(30),
        })
        .await
        .unwrap();
    let ds = c.receive(1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(ds.len(), 1);
    assert_eq!(
        (ds[0].id.as_str(), &ds[0].payload[..]),
        ("t-1", &b"over TLS"[..])
    );
    let r = c
        .settle(vec![(ds[0].tag.clone(), Settlement::Ack)])
        .await
        .unwrap();
    r[0].clone().unwrap();
    c.close().await;

    // Without the CA: the certificate is refused, and that is fatal.
    let e = NatsBroker::connect(&url, &queue, options(None))
        .await
        .expect_err("an unknown CA must be refused");
    assert!(matches!(e, BrokerError::Fatal { .. }), "{e}");
    assert!(!e.to_string().contains("s3cret"), "{e}");

    // A wrong password: fatal, and not printed.
    let bad = format!("tls://ackline:wr0ng@127.0.0.1:{port}");
    let e = NatsBroker::connect(&bad, &queue, options(Some(ca)))
        .await
        .expect_err("a wrong password must be refused");
    assert!(matches!(e, BrokerError::Fatal { .. }), "{e}");
    assert!(!e.to_string().contains("wr0ng"), "{e}");
    b.delete().await.unwrap();
}
