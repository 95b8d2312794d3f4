//! [`HttpConsumer`]: a server-side lease session.
//!
//! Invariants:
//! - `close` deletes the session, so the server releases its deliveries at once; dropping
//!   without `close` does the same from a spawned task when a runtime is there, and otherwise
//!   the server drops the session once its lease (plus a grace) passes unheard.
//! - A receive to a session the server no longer knows opens a new one and retries once;
//!   deliveries of the lost session were released or will be at their lease, so nothing is
//!   lost.
//! - A settle to a session the server no longer knows applied nothing: each item is refused
//!   as `Unknown` (the server released those deliveries; they come back, and the store
//!   deduplicates). Only the session a delivery was handed to can settle it.
//! - A receive's HTTP deadline is its wait plus a margin, so the client never gives up on a
//!   long-poll the server is still honouring (which would strand deliveries until their lease).

use std::sync::Arc;
use std::time::Duration;

use ackline_broker::{BrokerError, ConsumerOptions, Delivery, SettleError, Settlement, Tag};
use ackline_wire::{self as wire, millis};
use parking_lot::Mutex;

use crate::client::{Client, Error};
use crate::{NAME, bad_payload};

/// A lease session on the server.
#[derive(Debug)]
pub struct HttpConsumer {
    client: Arc<Client>,
    queue: String,
    opts: ConsumerOptions,
    session: Mutex<String>,
    closed: bool,
}

impl HttpConsumer {
    async fn new_session(
        client: &Client,
        queue: &str,
        opts: ConsumerOptions,
    ) -> Result<String, BrokerError> {
        let body = wire::OpenSession {
            prefetch: opts.prefetch,
            lease_ms: millis(opts.lease),
        };
        let s: wire::Session = client
            .post(&format!("/v1/queues/{queue}/sessions"), &body, None)
            .await?;
        Ok(s.session)
    }

    pub(crate) async fn open(
        client: Arc<Client>,
        queue: String,
        opts: ConsumerOptions,
    ) -> Result<HttpConsumer, BrokerError> {
        let session = Self::new_session(&client, &queue, opts).await?;
        Ok(HttpConsumer {
            client,
            queue,
            opts,
            session: Mutex::new(session),
            closed: false,
        })
    }

    fn session(&self) -> String {
        self.session.lock().clone()
    }

    fn path(&self, session: &str, rest: &str) -> String {
        format!("/v1/queues/{}/sessions/{session}{rest}", self.queue)
    }

    async fn receive_once(
        &self,
        session: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, Error> {
        let body = wire::ReceiveRequest {
            max,
            wait_ms: millis(wait),
        };
        let r: wire::Deliveries = self
            .client
            .post(
                &self.path(session, "/receive"),
                &body,
                Some(wait + Duration::from_secs(15)),
            )
            .await?;
        r.deliveries
            .into_iter()
            .map(|d| d.into_broker().map_err(|e| Error::Broker(bad_payload(e))))
            .collect()
    }
}

impl ackline_broker::Consumer for HttpConsumer {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BrokerError> {
        let session = self.session();
        match self.receive_once(&session, max, wait).await {
            Err(Error::NotFound(code)) if code == "session_not_found" => {
                tracing::info!(queue = %self.queue, "lease session lost; opening a new one");
                let fresh = Self::new_session(&self.client, &self.queue, self.opts).await?;
                *self.session.lock() = fresh.clone();
                Ok(self.receive_once(&fresh, max, wait).await?)
            }
            r => Ok(r?),
        }
    }

    async fn settle(
        &self,
        items: Vec<(Tag, Settlement)>,
    ) -> Result<Vec<Result<(), SettleError>>, BrokerError> {
        let n = items.len();
        let items: Vec<wire::SettleItem> = items
            .into_iter()
            .map(|(t, s)| wire::SettleItem::new(&t, s))
            .collect();
        let session = self.session();
        let r: wire::SettleResults = match self
            .client
            .post(
                &self.path(&session, "/settle"),
                &wire::SettleRequest { items },
                None,
            )
            .await
        {
            Err(Error::NotFound(code)) if code == "session_not_found" => {
                tracing::info!(
                    queue = %self.queue,
                    "lease session lost: its deliveries were released, settlements refused"
                );
                return Ok((0..n).map(|_| Err(SettleError::Unknown)).collect());
            }
            r => r?,
        };
        if r.results.len() != n {
            return Err(BrokerError::Fatal {
                backend: NAME,
                reason: format!(
                    "server answered {} results for {n} settlements",
                    r.results.len()
                ),
            });
        }
        Ok(r.results.into_iter().map(Into::into).collect())
    }

    async fn close(mut self) {
        self.closed = true;
        let path = self.path(&self.session(), "");
        if let Err(e) = self.client.delete(&path).await {
            tracing::debug!(error = ?e, "closing the lease session");
        }
    }
}

impl Drop for HttpConsumer {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.client.clone();
        let path = self.path(&self.session(), "");
        rt.spawn(async move {
            let _ = client.delete(&path).await;
        });
    }
}
