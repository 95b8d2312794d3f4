//! Test support shared by the backends' TLS tests (included with `#[path]`): a TLS-terminating
//! proxy (tokio-rustls, loopback only) in front of a plaintext server that has no TLS listener
//! of its own, with the server certificate of a [`Pki`] made for the run (`pki.rs`). The proxy
//! counts completed handshakes, so a test can prove that its traffic went through TLS, or that
//! none did.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

#[path = "pki.rs"]
mod pki;
pub use pki::Pki;

/// TLS on `addr`, plaintext to `upstream` behind it; stops when dropped.
pub struct TlsProxy {
    pub addr: SocketAddr,
    handshakes: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsProxy {
    /// Listens on `listen` (`127.0.0.1:0` for any free port) with `pki`'s server
    /// certificate and forwards each connection to `upstream` (`host:port`).
    pub async fn start(pki: &Pki, listen: &str, upstream: String) -> TlsProxy {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(pki.server_cert_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.server_key_der.clone())),
        )
        .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(AtomicU64::new(0));
        let counted = handshakes.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let counted = counted.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    // A client that refuses our certificate aborts the handshake: that
                    // connection ends here.
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        return;
                    };
                    counted.fetch_add(1, Ordering::SeqCst);
                    let Ok(mut plain) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        TlsProxy {
            addr,
            handshakes,
            task,
        }
    }

    /// TLS sessions completed so far.
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
