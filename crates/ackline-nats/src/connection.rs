//! One NATS connection per broker handle; async-nats re-establishes it by itself.
//!
//! The first connection is made once, failing fast (the constructor's caller decides whether
//! to wait); after that the client reconnects forever with exponential backoff and jitter
//! (`reconnect_base`..`reconnect_cap`), re-subscribing every subscription under the same
//! subject, so a consumer's inbox survives a reconnection. Requests in flight across the gap
//! fail with a timeout and are retried or reported by their callers.
//!
//! Invariants:
//! - No error text leaves this module without the URL's password or token scrubbed from it.
//! - The connection carries the client name (`connection_name`, visible in the server's
//!   `/connz`), so operators and tests can find it.
//! - `tls://` requires TLS; the server's certificate is verified against the system's roots
//!   plus the configured private CA ([`crate::NatsOptions::tls_ca_pem`]), never skipped. An
//!   authentication or TLS refusal is `Fatal` (waiting does not cure it); anything else is
//!   `Unavailable`.

use std::sync::Arc;
use std::time::Duration;

use ackline_broker::BrokerError;
use async_nats::{Client, ConnectErrorKind, ConnectOptions, Event};

use crate::NatsOptions;
use crate::url::{Auth, NatsUrl};

/// The backend's name in errors and `Broker::name`.
pub(crate) const NAME: &str = "nats";

pub(crate) use ackline_broker::backoff::{Backoff, random_u64};

pub(crate) fn unavailable(url: &NatsUrl, reason: impl AsRef<str>) -> BrokerError {
    BrokerError::Unavailable {
        backend: NAME,
        reason: url.redact(reason.as_ref()),
    }
}

pub(crate) fn fatal(url: &NatsUrl, reason: impl AsRef<str>) -> BrokerError {
    BrokerError::Fatal {
        backend: NAME,
        reason: url.redact(reason.as_ref()),
    }
}

/// Whether `e` (or an error it wraps) is a TLS certificate the client refused: waiting does
/// not cure it.
fn certificate_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented) =
            err.downcast_ref::<rustls::Error>()
        {
            return true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && certificate_refused(inner)
        {
            return true;
        }
        cur = err.source();
    }
    // async-nats may keep only the text.
    e.to_string().contains("invalid peer certificate")
}

/// The rustls configuration: the system's roots plus the private CA.
fn tls_config(url: &NatsUrl, ca_pem: Option<&str>) -> Result<rustls::ClientConfig, BrokerError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A system certificate rustls cannot use is skipped, as every TLS client does.
        let _ = roots.add(cert);
    }
    if let Some(pem) = ca_pem {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| fatal(url, format!("the private CA PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| fatal(url, format!("the private CA certificate: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(fatal(url, "the private CA PEM holds no certificate"));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fatal(url, format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Connects once (no retry: the caller decides), with reconnection afterwards.
///
/// The receiver counts the client's (re)connections: it changes each time the client is
/// connected again after losing the server, so a publisher waiting for PubAcks knows that
/// requests written before the loss may never have reached the server.
pub(crate) async fn connect(
    url: &NatsUrl,
    opts: &NatsOptions,
    name: String,
) -> Result<(Client, tokio::sync::watch::Receiver<u64>), BrokerError> {
    let (reconnected_tx, reconnected) = tokio::sync::watch::channel(0u64);
    let backoff = Backoff {
        base: opts.reconnect_base,
        cap: opts.reconnect_cap,
    };
    let shown = url.to_string();
    let mut co = ConnectOptions::new()
        .name(name)
        .connection_timeout(opts.connect_timeout)
        .request_timeout(Some(opts.request_timeout))
        // Notice a silently dead peer within ~20 s rather than the default 2 min.
        .ping_interval(Duration::from_secs(10))
        .max_reconnects(None)
        .reconnect_delay_callback(move |n| backoff.delay(u32::try_from(n).unwrap_or(u32::MAX)))
        .event_callback(move |event| {
            let shown = shown.clone();
            let reconnected_tx = reconnected_tx.clone();
            async move {
                match event {
                    Event::Disconnected => {
                        tracing::warn!(url = %shown, "NATS connection lost: reconnecting")
                    }
                    Event::Connected => {
                        reconnected_tx.send_modify(|n| *n += 1);
                        tracing::info!(url = %shown, "NATS connected")
                    }
                    Event::SlowConsumer(sid) => {
                        tracing::warn!(url = %shown, sid, "NATS slow consumer: messages dropped by the client (they come back after AckWait)")
                    }
                    other => tracing::debug!(url = %shown, event = %other, "NATS event"),
                }
            }
        });
    co = match &url.auth {
        Auth::None => co,
        Auth::UserPass { user, pass } => co.user_and_password(user.clone(), pass.clone()),
        Auth::Token(t) => co.token(t.clone()),
    };
    if let Some(creds) = &opts.credentials {
        co = co
            .credentials(creds)
            .map_err(|e| fatal(url, format!("the NATS credentials: {e}")))?;
    }
    if url.tls() || opts.tls_ca_pem.is_some() {
        co = co
            .require_tls(url.tls())
            .tls_client_config(tls_config(url, opts.tls_ca_pem.as_deref())?);
    }
    let addr = url.server_addr();
    let connect = co.connect(addr.as_str());
    let limit = opts.connect_timeout + Duration::from_secs(1);
    match tokio::time::timeout(limit, connect).await {
        Ok(Ok(client)) => Ok((client, reconnected)),
        Ok(Err(e)) => {
            let reason = format!("connecting to {url}: {e}");
            if certificate_refused(&e) {
                return Err(fatal(url, reason));
            }
            match e.kind() {
                ConnectErrorKind::AuthorizationViolation
                | ConnectErrorKind::Authentication
                | ConnectErrorKind::Tls
                | ConnectErrorKind::ServerParse => Err(fatal(url, reason)),
                _ => Err(unavailable(url, reason)),
            }
        }
        Err(_) => Err(unavailable(
            url,
            format!("connecting to {url} timed out after {limit:?}"),
        )),
    }
}
