//! Connections to Redis, re-established with backoff, and what their errors mean.
//!
//! Every connection is a redis-rs `ConnectionManager`: one multiplexed connection that, when a
//! request finds it broken, reconnects in the background with exponential backoff
//! (`reconnect_base` doubling up to `reconnect_cap`) while later requests wait for the new
//! connection. The broker handle has one for publishing, settling and the dead-letter and stats
//! commands (requests of all its users are pipelined on it); each consumer has its own for the
//! blocking `XREADGROUP`, which would otherwise hold every other request behind it.
//!
//! Invariants:
//! - No error text leaves this module without the URL's password scrubbed from it.
//! - `rediss` verifies the server's certificate against the system's roots plus the configured
//!   private CA (`RedisOptions::tls_ca_pem`); a certificate refused is `Fatal` (waiting does not
//!   cure it), never a silent downgrade.
//! - Errors are classified so the worker runtime can act on the variant alone: network, timeout,
//!   loading, busy-script, read-only replica and failover states are `Unavailable`; out of
//!   memory (`maxmemory` reached) is `Full`; authentication, permissions, wrong key types and
//!   refused certificates are `Fatal`.

use std::time::Duration;

use ackline_broker::BrokerError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ErrorKind, RedisError, ServerErrorKind};

use crate::url::RedisUrl;

pub(crate) const NAME: &str = "redis";

/// How connections are made and kept.
#[derive(Debug, Clone)]
pub(crate) struct Dial {
    pub url: RedisUrl,
    pub tls_ca_pem: Option<String>,
    pub reconnect_base: Duration,
    pub reconnect_cap: Duration,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

impl Dial {
    fn client(&self) -> Result<Client, BrokerError> {
        let built = match (&self.tls_ca_pem, self.url.tls()) {
            (Some(ca), true) => {
                let mut roots = native_roots_pem();
                roots.push_str(ca);
                Client::build_with_tls(
                    self.url.info().clone(),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(roots.into_bytes()),
                    },
                )
            }
            _ => Client::open(self.url.info().clone()),
        };
        built.map_err(|e| self.error("configuring the Redis client", &e))
    }

    /// Connects once, without retries, and closes again: the constructor fails fast, and a
    /// refused certificate or password is `Fatal` at once (the connection manager would retry
    /// those with backoff).
    pub async fn probe(&self) -> Result<(), BrokerError> {
        let client = self.client()?;
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.command_timeout));
        let connect = client.get_multiplexed_async_connection_with_config(&cfg);
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.error(&format!("connecting to {}", self.url), &e)),
            Err(_) => Err(BrokerError::Unavailable {
                backend: NAME,
                reason: format!(
                    "connecting to {} timed out after {:?}",
                    self.url, self.connect_timeout
                ),
            }),
        }
    }

    /// A connection whose requests time out after `command_timeout + extra` (a blocking read
    /// passes its block time as `extra`). Fails after one round of attempts within
    /// `connect_timeout`.
    pub async fn manager(&self, extra: Duration) -> Result<ConnectionManager, BrokerError> {
        let client = self.client()?;
        let cfg = ConnectionManagerConfig::new()
            .set_min_delay(self.reconnect_base)
            .set_max_delay(self.reconnect_cap)
            .set_exponent_base(2.0)
            .set_number_of_retries(6)
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.command_timeout + extra));
        let connect = client.get_connection_manager_with_config(cfg);
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(m)) => Ok(m),
            Ok(Err(e)) => Err(self.error(&format!("connecting to {}", self.url), &e)),
            Err(_) => Err(BrokerError::Unavailable {
                backend: NAME,
                reason: format!(
                    "connecting to {} timed out after {:?}",
                    self.url, self.connect_timeout
                ),
            }),
        }
    }

    /// Maps a redis-rs error to a broker error, password scrubbed (see the module doc).
    pub fn error(&self, what: &str, e: &RedisError) -> BrokerError {
        let reason = self.url.redact(&format!("{what}: {e}"));
        match classify(e) {
            Class::Unavailable => BrokerError::Unavailable {
                backend: NAME,
                reason,
            },
            Class::Full => BrokerError::Full {
                backend: NAME,
                reason: format!(
                    "{reason} (Redis reached maxmemory; with the noeviction policy it refuses \
                     writes until memory is freed)"
                ),
                retry_after: Some(Duration::from_secs(1)),
            },
            Class::Fatal => BrokerError::Fatal {
                backend: NAME,
                reason,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Unavailable,
    Full,
    Fatal,
}

pub(crate) fn classify(e: &RedisError) -> Class {
    if certificate_refused(e) {
        return Class::Fatal;
    }
    // A pipeline's or a script's error carries the code only in its text.
    if e.code() == Some("OOM") || e.to_string().contains("OOM command not allowed") {
        return Class::Full;
    }
    match e.kind() {
        ErrorKind::Io | ErrorKind::Client | ErrorKind::Parse => Class::Unavailable,
        ErrorKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask,
        ) => Class::Unavailable,
        _ if e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal() => {
            Class::Unavailable
        }
        // A script still running (BUSY) or a server shutting down.
        _ if matches!(e.code(), Some("BUSY" | "LOADING" | "MASTERDOWN")) => Class::Unavailable,
        _ => Class::Fatal,
    }
}

/// Whether `e` (or an error it wraps) is a TLS certificate the client refused.
fn certificate_refused(e: &RedisError) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented) =
            err.downcast_ref::<rustls::Error>()
        {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented,
            ) = inner.downcast_ref::<rustls::Error>()
        {
            return true;
        }
        cur = err.source();
    }
    // redis-rs flattens some I/O errors into text.
    let text = e.to_string();
    text.contains("invalid peer certificate") || text.contains("InvalidCertificate")
}

/// The system's root certificates as PEM (redis-rs replaces its roots by the ones given, so a
/// private CA is appended to these to keep both).
fn native_roots_pem() -> String {
    let found = rustls_native_certs::load_native_certs();
    let mut out = String::new();
    for cert in found.certs {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64(cert.as_ref());
        for line in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

pub(crate) use ackline_broker::backoff::{Backoff, random_u64};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn server_errors_are_classified() {
        let oom = redis::make_extension_error("OOM".into(), Some("command not allowed".into()));
        assert_eq!(classify(&oom), Class::Full);
        let busy = redis::make_extension_error("BUSY".into(), None);
        assert_eq!(classify(&busy), Class::Unavailable);
        let wrong = redis::make_extension_error("WRONGTYPE".into(), None);
        assert_eq!(classify(&wrong), Class::Fatal);
        let io: RedisError = std::io::Error::from(std::io::ErrorKind::ConnectionReset).into();
        assert_eq!(classify(&io), Class::Unavailable);
    }
}
