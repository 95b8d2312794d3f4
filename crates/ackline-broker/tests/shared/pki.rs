//! Test support shared by the backends' TLS tests (included with `#[path]`): a private CA made
//! for the run and a server certificate it issued for 127.0.0.1 (rcgen), as PEM (for servers
//! that read files, and for the client's `tls_ca_pem`) and as DER (for an in-process rustls
//! server).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// A private CA and a server certificate it issued for 127.0.0.1.
pub struct Pki {
    /// The CA's certificate: what a client must trust.
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub server_cert_der: Vec<u8>,
    /// PKCS#8.
    pub server_key_der: Vec<u8>,
}

impl Pki {
    pub fn new() -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ackline test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        Pki {
            ca_pem: ca.pem(),
            server_cert_pem: cert.pem(),
            server_key_pem: key.serialize_pem(),
            server_cert_der: cert.der().to_vec(),
            server_key_der: key.serialize_der(),
        }
    }

    /// Writes `ca.pem`, `server.pem` and `server.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let files = (
            dir.join("ca.pem"),
            dir.join("server.pem"),
            dir.join("server.key"),
        );
        std::fs::write(&files.0, &self.ca_pem).unwrap();
        std::fs::write(&files.1, &self.server_cert_pem).unwrap();
        std::fs::write(&files.2, &self.server_key_pem).unwrap();
        files
    }
}
