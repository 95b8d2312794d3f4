//! One AMQP connection per broker handle, re-established with backoff when it goes away.
//!
//! Every user of the connection (the publisher's confirm channel, each consumer's channel, the
//! dead-letter scans) asks [`Connector`] for it; when it is closed or errored, the first asker
//! reconnects (exponential backoff with jitter, `base`..`cap`) and the others wait for that
//! attempt. Channels are never shared across connections: a channel of a dead connection is
//! dead, and its unacked deliveries are requeued by RabbitMQ.
//!
//! Invariants:
//! - At most one connection attempt is in progress per broker handle.
//! - No error text leaves this module without the URL's password scrubbed from it.
//! - The connection carries the client property `connection_name` (visible in
//!   `rabbitmqctl list_connections name`), so operators and tests can find it.
//! - `amqps` verifies the server's certificate against the system's roots plus the
//!   configured private CA (`RabbitOptions::tls_ca_pem`); a certificate refused is `Fatal`
//!   (waiting does not cure it), never a silent downgrade.

use std::sync::Arc;
use std::time::Duration;

use ackline_broker::BrokerError;
use lapin::options::ConfirmSelectOptions;
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::tcp::OwnedTLSConfig;
use lapin::{Channel, Connection, ConnectionProperties, ErrorKind};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::url::AmqpUrl;

pub(crate) const NAME: &str = "rabbitmq";

pub(crate) use ackline_broker::backoff::{Backoff, random_u64};

/// Whether `e` (or an error it wraps) is a TLS certificate the client refused.
fn certificate_refused(e: &std::io::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|x| x as _);
    while let Some(err) = cur {
        if let Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented) =
            err.downcast_ref::<rustls::Error>()
        {
            return true;
        }
        cur = err.source();
    }
    false
}

struct Live {
    conn: Arc<Connection>,
    publish: Option<Channel>,
}

/// The broker handle's connection.
pub(crate) struct Connector {
    url: AmqpUrl,
    name: String,
    backoff: Backoff,
    connect_timeout: Duration,
    tls: OwnedTLSConfig,
    live: Mutex<Option<Live>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("url", &self.url)
            .field("name", &self.name)
            .finish()
    }
}

impl Connector {
    pub fn new(
        url: AmqpUrl,
        name: String,
        backoff: Backoff,
        connect_timeout: Duration,
        tls_ca_pem: Option<String>,
    ) -> Self {
        Connector {
            url,
            name,
            backoff,
            connect_timeout,
            tls: OwnedTLSConfig {
                identity: None,
                cert_chain: tls_ca_pem,
            },
            live: Mutex::new(None),
        }
    }

    pub fn url(&self) -> &AmqpUrl {
        &self.url
    }

    /// Maps a lapin error to a broker error, password scrubbed. Channel-level refusals that
    /// retrying cannot fix (a queue declared with other arguments, access refused, no such
    /// queue) are `Fatal`; everything else (I/O, closed connections, timeouts) `Unavailable`.
    pub fn error(&self, what: &str, e: &lapin::Error) -> BrokerError {
        let reason = self.url.redact(&format!("{what}: {e}"));
        let fatal = match e.kind() {
            ErrorKind::ProtocolError(p) => matches!(
                p.kind(),
                AMQPErrorKind::Soft(
                    AMQPSoftError::PRECONDITIONFAILED
                        | AMQPSoftError::ACCESSREFUSED
                        | AMQPSoftError::NOTFOUND
                        | AMQPSoftError::RESOURCELOCKED
                )
            ),
            // A certificate the client does not trust (or that names another host) is not
            // cured by waiting.
            ErrorKind::IOError(io) => certificate_refused(io),
            _ => false,
        };
        if fatal {
            BrokerError::Fatal {
                backend: NAME,
                reason,
            }
        } else {
            BrokerError::Unavailable {
                backend: NAME,
                reason,
            }
        }
    }

    /// Whether `e` is RabbitMQ's PRECONDITION_FAILED (e.g. a queue declared with other
    /// arguments than those it exists with).
    pub fn precondition_failed(e: &lapin::Error) -> bool {
        matches!(e.kind(), ErrorKind::ProtocolError(p)
            if matches!(p.kind(), AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)))
    }

    fn unavailable(&self, reason: String) -> BrokerError {
        BrokerError::Unavailable {
            backend: NAME,
            reason: self.url.redact(&reason),
        }
    }

    async fn connect_once(&self) -> Result<Arc<Connection>, BrokerError> {
        let mut uri = self.url.uri();
        if uri.query.heartbeat.is_none() {
            // Notice a silently dead peer within ~20 s rather than the server's 60 s default.
            uri.query.heartbeat = Some(10);
        }
        let props = ConnectionProperties::default().with_connection_name(self.name.clone().into());
        let runtime = lapin::runtime::default_runtime()
            .map_err(|e| self.error("starting the AMQP client", &e))?;
        let connect = Connection::connect_uri_with_config(uri, props, self.tls.clone(), runtime);
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(c)) => Ok(Arc::new(c)),
            Ok(Err(e)) => Err(self.error(&format!("connecting to {}", self.url), &e)),
            Err(_) => Err(self.unavailable(format!(
                "connecting to {} timed out after {:?}",
                self.url, self.connect_timeout
            ))),
        }
    }

    /// Locks the live slot, giving up at `deadline`.
    async fn lock(
        &self,
        deadline: Option<Instant>,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<Live>>, BrokerError> {
        match deadline {
            None => Ok(self.live.lock().await),
            Some(d) => tokio::time::timeout_at(d, self.live.lock())
                .await
                .map_err(|_| {
                    self.unavailable(format!("{} is unreachable (reconnecting)", self.url))
                }),
        }
    }

    /// The live connection, reconnecting with backoff until `deadline` (forever if `None`).
    async fn ensure<'a>(
        &self,
        slot: &mut tokio::sync::MutexGuard<'a, Option<Live>>,
        deadline: Option<Instant>,
    ) -> Result<Arc<Connection>, BrokerError> {
        if let Some(live) = slot.as_ref()
            && live.conn.status().connected()
        {
            return Ok(live.conn.clone());
        }
        if slot.take().is_some() {
            tracing::warn!(url = %self.url, "connection lost: reconnecting");
        }
        let mut n = 0;
        loop {
            match self.connect_once().await {
                Ok(conn) => {
                    if n > 0 {
                        tracing::info!(url = %self.url, attempts = n + 1, "reconnected");
                    }
                    **slot = Some(Live {
                        conn: conn.clone(),
                        publish: None,
                    });
                    return Ok(conn);
                }
                Err(e) => {
                    let wait = self.backoff.delay(n);
                    n += 1;
                    if deadline.is_some_and(|d| Instant::now() + wait > d) {
                        return Err(e);
                    }
                    tracing::debug!(error = %e, ?wait, "connect failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Connects once (no retry): for the constructor, which should fail fast.
    pub async fn first_connect(&self) -> Result<(), BrokerError> {
        let mut slot = self.live.lock().await;
        let conn = self.connect_once().await?;
        *slot = Some(Live {
            conn,
            publish: None,
        });
        Ok(())
    }

    /// A new channel on the live connection.
    pub async fn channel(&self, deadline: Option<Instant>) -> Result<Channel, BrokerError> {
        let conn = {
            let mut slot = self.lock(deadline).await?;
            self.ensure(&mut slot, deadline).await?
        };
        conn.create_channel()
            .await
            .map_err(|e| self.error("opening a channel", &e))
    }

    /// The shared publisher channel (confirm mode), re-created when it died.
    pub async fn publish_channel(&self, deadline: Option<Instant>) -> Result<Channel, BrokerError> {
        let mut slot = self.lock(deadline).await?;
        let conn = self.ensure(&mut slot, deadline).await?;
        if let Some(live) = slot.as_ref()
            && let Some(ch) = &live.publish
            && ch.status().connected()
        {
            return Ok(ch.clone());
        }
        let ch = conn
            .create_channel()
            .await
            .map_err(|e| self.error("opening the publish channel", &e))?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| self.error("enabling publisher confirms", &e))?;
        if let Some(live) = slot.as_mut() {
            live.publish = Some(ch.clone());
        }
        Ok(ch)
    }

    /// Closes the connection (RabbitMQ requeues what its channels held unacked).
    pub async fn close(&self) {
        let live = self.live.lock().await.take();
        if let Some(live) = live {
            let _ = live.conn.close(200, "closed by ackline".into()).await;
        }
    }
}
